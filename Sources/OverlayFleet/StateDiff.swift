import Yams

/// What changed between two desired states, in words (a version's summary) and as a unified diff
/// of their YAML (a version's diff).
public enum StateDiff {
    /// E.g. `weights of demo-canary: mock-fast 80→50, mock-smart 20→50`, `created AIModel gpt-4`,
    /// `AIOverlay demo-shadow: spec.strategy Canary→Shadow`; `no change` when equal.
    public static func summary(from old: DesiredState, to new: DesiredState) -> String {
        var parts: [String] = []
        for resource in new.resources where old.resource(resource.kind, named: resource.name) == nil {
            parts.append("created \(resource.kind.rawValue) \(resource.name)")
        }
        for resource in old.resources where new.resource(resource.kind, named: resource.name) == nil {
            parts.append("deleted \(resource.kind.rawValue) \(resource.name)")
        }
        for resource in new.resources {
            guard let before = old.resource(resource.kind, named: resource.name), before.node != resource.node else { continue }
            parts.append(changeSummary(before, resource))
        }
        return parts.isEmpty ? "no change" : parts.joined(separator: "; ")
    }

    /// One changed resource: the weights in one line when only weights changed, else the key paths
    /// that changed (scalars with old→new), at most six.
    static func changeSummary(_ old: Resource, _ new: Resource) -> String {
        var changes: [(path: String, old: String?, new: String?)] = []
        collect(old.node, new.node, path: "", into: &changes)
        if old.kind == .overlay, !changes.isEmpty,
            changes.allSatisfy({ $0.path.hasPrefix("spec.models[") && $0.path.hasSuffix("].weight") })
        {
            let oldWeights = weights(old.node)
            let newWeights = weights(new.node)
            let moved = newWeights.map { model, weight in
                "\(model) \(oldWeights.first { $0.0 == model }?.1 ?? "–")→\(weight)"
            }
            return "weights of \(new.name): " + moved.joined(separator: ", ")
        }
        let shown = changes.prefix(6).map { change -> String in
            if let before = change.old, let after = change.new { return "\(change.path) \(before)→\(after)" }
            if change.old == nil, let after = change.new { return "\(change.path) added (\(after))" }
            if change.new == nil, change.old != nil { return "\(change.path) removed" }
            return change.path
        }
        let more = changes.count > 6 ? " and \(changes.count - 6) more" : ""
        return "\(new.kind.rawValue) \(new.name): " + shown.joined(separator: ", ") + more
    }

    public static func weights(_ node: Node) -> [(String, String)] {
        guard case .sequence(let models)? = node["spec"]?["models"] else { return [] }
        return models.map { ($0["name"]?.string ?? "?", $0["weight"]?.string ?? "–") }
    }

    /// Key paths whose values differ. A scalar's value is shown when short; a collection that
    /// appeared or vanished is one change.
    static func collect(_ old: Node?, _ new: Node?, path: String, into changes: inout [(path: String, old: String?, new: String?)]) {
        switch (old, new) {
        case (nil, nil): return
        case (.mapping(let a)?, .mapping(let b)?):
            var keys: [String] = a.keys.compactMap(\.string)
            for key in b.keys.compactMap(\.string) where !keys.contains(key) { keys.append(key) }
            for key in keys {
                collect(a[key], b[key], path: path.isEmpty ? key : path + "." + key, into: &changes)
            }
        case (.sequence(let a)?, .sequence(let b)?) where a.count == b.count:
            for index in a.indices { collect(a[index], b[index], path: "\(path)[\(index)]", into: &changes) }
        default:
            if old == new { return }
            changes.append((path.isEmpty ? "(resource)" : path, old.map(short), new.map(short)))
        }
    }

    static func short(_ node: Node) -> String {
        switch node {
        case .scalar(let scalar): return scalar.string.count <= 40 ? scalar.string : String(scalar.string.prefix(37)) + "..."
        case .mapping: return "{...}"
        case .sequence(let items): return "[\(items.count) items]"
        case .alias: return "*alias"
        }
    }

    /// A unified diff (three lines of context) of two texts, with `--- a` / `+++ b` headers; empty
    /// when they are equal.
    public static func unified(from old: String, to new: String, oldLabel: String, newLabel: String) -> String {
        let a = lines(old), b = lines(new)
        if a == b { return "" }
        // Edit script from the standard library's Myers diff.
        let difference = b.difference(from: a)
        var removed = Set<Int>(), inserted = Set<Int>()
        for change in difference {
            switch change {
            case .remove(let offset, _, _): removed.insert(offset)
            case .insert(let offset, _, _): inserted.insert(offset)
            }
        }
        // Walk both texts in step: one row per line, tagged ' ', '-' or '+'.
        var rows: [(tag: Character, text: String, oldLine: Int, newLine: Int)] = []
        var i = 0, j = 0
        while i < a.count || j < b.count {
            if i < a.count, removed.contains(i) {
                rows.append(("-", a[i], i, j)); i += 1
            } else if j < b.count, inserted.contains(j) {
                rows.append(("+", b[j], i, j)); j += 1
            } else {
                rows.append((" ", i < a.count ? a[i] : "", i, j)); i += 1; j += 1
            }
        }
        let context = 3
        var keep = [Bool](repeating: false, count: rows.count)
        for (index, row) in rows.enumerated() where row.tag != " " {
            for near in max(0, index - context)...min(rows.count - 1, index + context) { keep[near] = true }
        }
        var out = "--- \(oldLabel)\n+++ \(newLabel)\n"
        var index = 0
        while index < rows.count {
            guard keep[index] else { index += 1; continue }
            var end = index
            while end < rows.count, keep[end] { end += 1 }
            let hunk = rows[index..<end]
            let oldCount = hunk.filter { $0.tag != "+" }.count
            let newCount = hunk.filter { $0.tag != "-" }.count
            let first = hunk.first!
            out += "@@ -\(first.oldLine + (oldCount > 0 ? 1 : 0)),\(oldCount) +\(first.newLine + (newCount > 0 ? 1 : 0)),\(newCount) @@\n"
            for row in hunk { out += "\(row.tag)\(row.text)\n" }
            index = end
        }
        return out
    }

    static func lines(_ text: String) -> [String] {
        var result = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if result.last == "" { result.removeLast() }
        return result
    }
}
