import Foundation
import Yams

/// Parses and validates a desired-state document into an ``OverlayConfig``.
///
/// Accepted containers: one or more YAML documents (`---`), a YAML/JSON list of resources, or a
/// Kubernetes list as the API server returns it (`{"kind": "AIOverlayList", "items": [...]}`).
/// JSON is accepted because it is YAML.
///
/// Every problem is collected and reported at once, each with the resource and key path; a
/// document with any problem is rejected whole (the caller keeps its current config).
public enum ConfigLoader {
    /// The only `apiVersion` accepted for our resources.
    public static let apiVersion = "orchestrator.io/v1"

    public static func load(text: String, source: String) throws(ConfigError) -> OverlayConfig {
        var problems: [ConfigProblem] = []
        let resources = collectResources(text: text, problems: &problems)
        var overlays: [Overlay] = []
        var models: [ModelSpec] = []
        for (index, node) in resources.enumerated() {
            switch parseResource(node, position: index + 1, problems: &problems) {
            case .overlay(let overlay): overlays.append(overlay)
            case .model(let model): models.append(model)
            case nil: break
            }
        }
        checkUniqueness(overlays, problems: &problems)
        checkRegistry(models, overlays: overlays, problems: &problems)
        if !problems.isEmpty { throw ConfigError(source: source, problems: problems) }
        return OverlayConfig(source: source, version: contentVersion(text), overlays: overlays, models: models)
    }

    /// A short stable version string for a document: FNV-1a 64 of its bytes, in hex.
    public static func contentVersion(_ text: String) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash &*= 0x100_0000_01b3
        }
        let hex = String(hash, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    // MARK: - Containers

    static func collectResources(text: String, problems: inout [ConfigProblem]) -> [Node] {
        var documents: [Node] = []
        do {
            var sequence = try compose_all(yaml: text)
            while let node = sequence.next() { documents.append(node) }
            if let error = sequence.error { throw error }
        } catch {
            problems.append(ConfigProblem(resource: nil, path: "", message: "not valid YAML or JSON: \(yamlMessage(error))"))
            return []
        }
        var resources: [Node] = []
        for (index, document) in documents.enumerated() {
            switch document {
            case .sequence(let items):
                resources.append(contentsOf: items)
            case .mapping(let mapping):
                if let kind = mapping["kind"]?.string, kind.hasSuffix("List"), let items = mapping["items"] {
                    if case .sequence(let list) = items {
                        resources.append(contentsOf: list)
                    } else {
                        problems.append(ConfigProblem(
                            resource: "document \(index + 1)", path: "items", message: "must be a list of resources"))
                    }
                } else {
                    resources.append(document)
                }
            case .scalar where document.tag.rawValue == Tag.Name.null.rawValue:
                continue  // an empty document (e.g. a trailing ---)
            default:
                problems.append(ConfigProblem(
                    resource: "document \(index + 1)", path: "",
                    message: "must be a resource (a mapping with apiVersion, kind, metadata, spec) or a list of them"))
            }
        }
        return resources
    }

    static func yamlMessage(_ error: any Error) -> String {
        if let error = error as? YamlError {
            switch error {
            case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _),
                .composer(_, let problem, let mark, _):
                return "\(problem) at line \(mark.line), column \(mark.column)"
            case .duplicatedKeysInMapping(let duplicates, let context):
                return "duplicate key\(duplicates.count == 1 ? "" : "s") \(duplicates.map { "\"\($0)\"" }.joined(separator: ", ")) in one mapping at line \(context.mark.line), column \(context.mark.column)"
            default:
                return "\(error)".split(separator: "\n").first.map(String.init) ?? "\(error)"
            }
        }
        return "\(error)"
    }

    // MARK: - Resources

    enum Resource {
        case overlay(Overlay)
        case model(ModelSpec)
    }

    /// The kinds a document may hold.
    public static let kinds = ["AIOverlay", "AIModel"]

    static func parseResource(_ node: Node, position: Int, problems: inout [ConfigProblem]) -> Resource? {
        guard case .mapping(let resource) = node else {
            problems.append(ConfigProblem(
                resource: "item \(position)", path: "", message: "must be a mapping with apiVersion, kind, metadata, spec"))
            return nil
        }
        let kind = resource["kind"]?.string
        let name = resource["metadata"]?.mapping?["name"]?.string
        let label = "\(kind ?? "resource") \(name ?? "#\(position)")"
        var ctx = Context(resource: label, problems: [])

        switch resource["apiVersion"] {
        case nil: ctx.fail("apiVersion", "is required (\(apiVersion))")
        case .some(let value):
            if value.string != apiVersion { ctx.fail("apiVersion", "must be \(apiVersion), got \(describe(value))") }
        }
        guard let kind else {
            ctx.fail("kind", resource["kind"] == nil ? "is required (one of \(kinds.joined(separator: ", ")))" : "must be a string")
            problems += ctx.problems
            return nil
        }
        let parsed: Resource?
        switch kind {
        case "AIOverlay": parsed = parseOverlay(resource, name: name, ctx: &ctx).map(Resource.overlay)
        case "AIModel": parsed = parseModel(resource, name: name, ctx: &ctx).map(Resource.model)
        default:
            ctx.fail("kind", "must be one of \(kinds.joined(separator: ", ")), got \"\(kind)\"")
            parsed = nil
        }
        problems += ctx.problems
        return ctx.problems.isEmpty ? parsed : nil
    }

    /// apiVersion/kind/metadata/spec/status keys and metadata.name, common to every kind; returns
    /// `spec` when it is a mapping (`specHint` says what a missing spec must hold).
    static func envelopeSpec(
        _ resource: Node.Mapping, name: String?, specHint: String, ctx: inout Context
    ) -> Node.Mapping? {
        checkKeys(resource, allowed: ["apiVersion", "kind", "metadata", "spec", "status"], path: "", ctx: &ctx)
        if resource["metadata"] == nil {
            ctx.fail("metadata", "is required (with metadata.name)")
        } else if resource["metadata"]?.mapping == nil {
            ctx.fail("metadata", "must be a mapping")
        } else if let name {
            if !isDNSSubdomain(name) {
                ctx.fail("metadata.name", "must be a DNS-1123 name (lowercase a-z, 0-9, '-', '.', at most 253 characters), got \"\(name)\"")
            }
        } else {
            ctx.fail("metadata.name", resource["metadata"]?.mapping?["name"] == nil ? "is required" : "must be a string")
        }
        guard let specNode = resource["spec"] else {
            ctx.fail("spec", "is required (\(specHint))")
            return nil
        }
        guard case .mapping(let spec) = specNode else {
            ctx.fail("spec", "must be a mapping")
            return nil
        }
        return spec
    }

    static func parseOverlay(_ resource: Node.Mapping, name: String?, ctx: inout Context) -> Overlay? {
        guard let spec = envelopeSpec(resource, name: name, specHint: "with spec.hostApp and spec.models", ctx: &ctx)
        else { return nil }
        checkKeys(spec, allowed: overlaySpecKeys, path: "spec.", ctx: &ctx)

        var host: HostPattern?
        switch spec["hostApp"] {
        case nil: ctx.fail("spec.hostApp", "is required (a host name such as crm.example.com, or *.example.com)")
        case .some(let value):
            if case .scalar = value, value.tag.rawValue == Tag.Name.str.rawValue, let text = value.string {
                do throws(HostPatternError) { host = try HostPattern(parsing: text) } catch {
                    ctx.fail("spec.hostApp", error.message)
                }
            } else {
                ctx.fail("spec.hostApp", "must be a string, got \(describe(value))")
            }
        }

        var strategy = OverlayStrategy.canary
        if let value = spec["strategy"] {
            if let text = value.string, let parsed = OverlayStrategy(rawValue: text) {
                strategy = parsed
            } else {
                let allowed = OverlayStrategy.allCases.map(\.rawValue).joined(separator: ", ")
                ctx.fail("spec.strategy", "must be one of \(allowed), got \(describe(value))")
            }
        }

        var models: [ModelWeight] = []
        switch spec["models"] {
        case nil: ctx.fail("spec.models", "is required (a list of {name, weight})")
        case .some(let value):
            guard case .sequence(let list) = value, !list.isEmpty else {
                ctx.fail("spec.models", "must be a non-empty list of {name, weight}")
                break
            }
            var seen: Set<String> = []
            for (index, item) in list.enumerated() {
                let path = "spec.models[\(index)]"
                guard case .mapping(let model) = item else {
                    ctx.fail(path, "must be a mapping {name, weight}")
                    continue
                }
                checkKeys(model, allowed: ["name", "weight"], path: path + ".", ctx: &ctx)
                var modelName: String?
                if let value = model["name"], let text = string(value), !text.isEmpty {
                    modelName = text
                    if !seen.insert(text).inserted { ctx.fail(path + ".name", "duplicate model \"\(text)\" in this overlay") }
                } else {
                    ctx.fail(path + ".name", model["name"] == nil ? "is required" : "must be a non-empty string")
                }
                var weight: Int? = strategy == .shadow ? 0 : 100 / list.count
                if let value = model["weight"] {
                    weight = nil
                    if case .scalar = value, value.tag.rawValue == Tag.Name.int.rawValue, let number = value.int {
                        if (0...100).contains(number) { weight = number } else {
                            ctx.fail(path + ".weight", "must be 0...100, got \(number)")
                        }
                    } else {
                        ctx.fail(path + ".weight", "must be an integer 0...100, got \(describe(value))")
                    }
                } else if strategy == .canary && list.count > 1 {
                    weight = nil
                    ctx.fail(path + ".weight", "is required when a Canary overlay has several models")
                }
                if let modelName, let weight { models.append(ModelWeight(name: modelName, weight: weight)) }
            }
            // The sum is checked only when every model and weight is valid (one problem, one message).
            if models.count == list.count {
                switch strategy {
                case .canary:
                    let sum = models.reduce(0) { $0 + $1.weight }
                    if sum != 100 { ctx.fail("spec.models", "weights must sum to 100, got \(sum)") }
                case .shadow:
                    if models.count != 2 {
                        ctx.fail("spec.models", "a Shadow overlay needs exactly 2 models (champion, challenger), got \(models.count)")
                    }
                }
            }
        }
        let settings = parseSettings(spec, strategy: strategy, ctx: &ctx)
        guard let name, let host else { return nil }
        return Overlay(name: name, host: host, models: models, strategy: strategy, settings: settings)
    }

    static func checkUniqueness(_ overlays: [Overlay], problems: inout [ConfigProblem]) {
        var names: [String: Int] = [:]
        for (index, overlay) in overlays.enumerated() {
            if let first = names[overlay.name] {
                _ = first
                problems.append(ConfigProblem(
                    resource: "AIOverlay \(overlay.name)", path: "metadata.name",
                    message: "duplicate name: another AIOverlay is already called \"\(overlay.name)\""))
            } else {
                names[overlay.name] = index
            }
            for other in overlays[..<index] where other.name != overlay.name && other.host.overlaps(overlay.host) {
                problems.append(ConfigProblem(
                    resource: "AIOverlay \(overlay.name)", path: "spec.hostApp",
                    message: "\"\(overlay.host)\" overlaps \"\(other.host)\" of AIOverlay \(other.name); each host may have one overlay"))
            }
        }
    }

    // MARK: - Helpers

    struct Context {
        var resource: String
        var problems: [ConfigProblem]
        mutating func fail(_ path: String, _ message: String) {
            problems.append(ConfigProblem(resource: resource, path: path, message: message))
        }
    }

    static func checkKeys(_ mapping: Node.Mapping, allowed: [String], path: String, ctx: inout Context) {
        for (key, _) in mapping {
            let name = key.string ?? "\(key)"
            if !allowed.contains(name) {
                ctx.fail(path + name, "unknown field; allowed here: \(allowed.joined(separator: ", "))")
            }
        }
    }

    static func describe(_ node: Node) -> String {
        switch node {
        case .scalar(let scalar):
            switch Tag.Name(rawValue: node.tag.rawValue) {
            case .str: return "\"\(scalar.string)\""
            case .null: return "null"
            default: return scalar.string
            }
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        }
    }

    static func isDNSSubdomain(_ name: String) -> Bool {
        guard !name.isEmpty, name.utf8.count <= 253 else { return false }
        for label in name.split(separator: ".", omittingEmptySubsequences: false) {
            guard !label.isEmpty, label.count <= 63, label.first != "-", label.last != "-",
                label.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2D })
            else { return false }
        }
        return true
    }
}
