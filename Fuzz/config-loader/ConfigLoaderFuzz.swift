import FuzzSupport
import OverlayCore
import OverlayFleet
import Yams

// Input: a desired-state document (YAML or JSON text: AIOverlay, AIModel, lists).
//
// Oracle:
// - never traps (whatever the YAML: anchors, tags, deep nesting, odd scalars);
// - every rejection is precise: at least one problem, each names its resource (and key path), or is
//   the one whole-file problem "not valid YAML or JSON … at line L, column C";
// - what it accepts, re-serialised (the composed nodes written out again by the control plane's
//   YAML writer, `ResourceJSON.block` then Yams, and again as JSON), is accepted again with the
//   same overlays and the same model registry. (Yams' own `serialize(nodes:)` drops scalar tags:
//   `!!str on` comes out as `on`, a boolean to a YAML 1.1 reader; the writer quotes such strings.
//   The first run on main found that with the plain Yams round trip: crash-17681082….)
// - loading is deterministic (twice the same text, the same result).

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: data == nil ? 0 : size), as: UTF8.self)
    let config: OverlayConfig
    do {
        config = try ConfigLoader.load(text: text, source: "fuzz.yaml")
    } catch {
        check(!error.problems.isEmpty, "rejected with no problem")
        for problem in error.problems {
            check(!problem.message.isEmpty, "a problem without a message")
            check(problem.resource != nil || problem.message.hasPrefix("not valid YAML or JSON: "),
                  "a problem that names no resource: \(problem)")
        }
        let first = error.problems
        do {
            _ = try ConfigLoader.load(text: text, source: "fuzz.yaml")
            oracleFailure("not deterministic: rejected, then accepted")
        } catch {
            check(error.problems == first, "not deterministic: other problems the second time")
        }
        return 0
    }
    guard let again = try? ConfigLoader.load(text: text, source: "fuzz.yaml") else { oracleFailure("not deterministic") }
    check(same(config, again), "not deterministic")

    // Re-serialised as YAML.
    guard let nodes = try? Array(compose_all(yaml: text)) else { oracleFailure("accepted text Yams cannot compose") }
    let yaml: String
    do { yaml = try serialize(nodes: nodes.map(ResourceJSON.block)) } catch { return 0 }  // Yams cannot write it (not ours)
    do {
        let reloaded = try ConfigLoader.load(text: yaml, source: "reserialised.yaml")
        check(same(config, reloaded), "re-serialised YAML loads differently:\n\(yaml)")
    } catch {
        oracleFailure("re-serialised YAML rejected: \(error)\n--- original:\n\(text)\n--- re-serialised:\n\(yaml)")
    }
    // Re-serialised as JSON (one document, or a list when there were several).
    let documents = nodes.filter { !($0.scalar != nil && $0.tag.rawValue == Tag.Name.null.rawValue) }
    guard documents.count == 1, let json = jsonText(documents[0]) else { return 0 }
    do {
        let reloaded = try ConfigLoader.load(text: json, source: "reserialised.json")
        check(same(config, reloaded), "re-serialised JSON loads differently:\n\(json)")
    } catch {
        oracleFailure("re-serialised JSON rejected: \(error)\n--- original:\n\(text)\n--- JSON:\n\(json)")
    }
    return 0
}

func same(_ a: OverlayConfig, _ b: OverlayConfig) -> Bool { a.overlays == b.overlays && a.models == b.models }

/// The node as JSON text, or nil when it has no JSON form (non-scalar keys, NaN, aliases …).
func jsonText(_ node: Node) -> String? {
    if let scalar = node.scalar {
        switch node.tag.rawValue {
        case Tag.Name.null.rawValue: return "null"
        case Tag.Name.bool.rawValue: return node.bool.map { $0 ? "true" : "false" }
        case Tag.Name.int.rawValue: return node.int.map(String.init)
        case Tag.Name.float.rawValue:
            guard let f = node.float, f.isFinite else { return nil }
            return "\(f)"
        case Tag.Name.str.rawValue: return Array(scalar.string.unicodeScalars).jsonString
        default: return nil
        }
    }
    if let mapping = node.mapping {
        var members: [String] = []
        for (key, value) in mapping {
            guard let k = key.scalar, key.tag.rawValue == Tag.Name.str.rawValue, let v = jsonText(value) else { return nil }
            members.append(Array(k.string.unicodeScalars).jsonString + ":" + v)
        }
        return "{" + members.joined(separator: ",") + "}"
    }
    if let sequence = node.sequence {
        var items: [String] = []
        for item in sequence {
            guard let v = jsonText(item) else { return nil }
            items.append(v)
        }
        return "[" + items.joined(separator: ",") + "]"
    }
    return nil
}

extension Array where Element == Unicode.Scalar {
    var jsonString: String {
        var out = "\""
        for s in self {
            switch s {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case _ where s.value < 0x20:
                let h = String(s.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - h.count) + h
            default: out.unicodeScalars.append(s)
            }
        }
        return out + "\""
    }
}
