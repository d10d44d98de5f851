import Foundation
import Yams

/// JSON text, written by hand where the shape is ours (keys in a fixed order, no Foundation
/// bridging of numbers and booleans).
public enum JSONText {
    /// A JSON string literal (RFC 8259 §7): quotes, backslashes and control characters escaped.
    public static func quote(_ text: String) -> String {
        var out = "\""
        out.reserveCapacity(text.utf8.count + 2)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20 || scalar.value == 0x2028 || scalar.value == 0x2029:
                out += String(format: "\\u%04x", scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    /// A number as JSON: integers without a fraction, non-finite values as null.
    public static func number(_ value: Double) -> String {
        guard value.isFinite else { return "null" }
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return String(value)
    }
}

/// Resources as the console's API carries them: JSON in, YAML nodes inside (the same nodes the
/// validator reads), JSON out.
public enum ResourceJSON {
    /// Parses a request body as strict JSON (RFC 8259) into a YAML node, keeping key order and
    /// scalar types. Malformed JSON, duplicate keys or non-UTF-8 bytes: 400 with the reason.
    public static func parse(_ bytes: [UInt8]) throws(APIError) -> Node {
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw .badRequest("the body is not UTF-8 text")
        }
        do {
            _ = try JSONSerialization.jsonObject(with: Data(bytes), options: [])
        } catch {
            throw .badRequest("malformed JSON: \(jsonMessage(error))")
        }
        let node: Node?
        do {
            node = try Yams.compose(yaml: text)
        } catch {
            throw .badRequest("malformed JSON: \(error)".split(separator: "\n").first.map(String.init) ?? "malformed JSON")
        }
        guard let node else { throw .badRequest("malformed JSON: the body is empty") }
        return block(node)
    }

    private static func jsonMessage(_ error: any Error) -> String {
        let nsError = error as NSError
        if let debug = nsError.userInfo["NSDebugDescription"] as? String { return debug }
        return nsError.localizedDescription
    }

    /// A node as JSON text. Mappings keep their key order; scalars keep their YAML type (int,
    /// float, bool, null; anything else is a string).
    public static func render(_ node: Node) -> String {
        var out = ""
        write(node, into: &out)
        return out
    }

    static func write(_ node: Node, into out: inout String) {
        switch node {
        case .scalar(let scalar):
            switch node.tagName {
            case .int:
                if let value = node.int { out += String(value) } else { out += JSONText.quote(scalar.string) }
            case .float:
                if let value = node.float, value.isFinite { out += JSONText.number(value) } else {
                    out += JSONText.quote(scalar.string)
                }
            case .bool: out += node.bool == true ? "true" : "false"
            case .null: out += "null"
            default: out += JSONText.quote(scalar.string)
            }
        case .mapping(let mapping):
            out += "{"
            var first = true
            for (key, value) in mapping {
                if !first { out += "," }
                first = false
                out += JSONText.quote(key.string ?? "\(key)") + ":"
                write(value, into: &out)
            }
            out += "}"
        case .sequence(let sequence):
            out += "["
            for (index, item) in sequence.enumerated() {
                if index > 0 { out += "," }
                write(item, into: &out)
            }
            out += "]"
        case .alias:
            out += "null"
        }
    }

    /// The node with block-style collections (JSON's flow style would be written back as one
    /// line) and strings quoted only where a plain scalar would read as another type.
    public static func block(_ node: Node) -> Node {
        switch node {
        case .scalar(let scalar):
            let tag = node.tagName
            if tag == .str {
                let plainReadsAs = Node(scalar.string).tagName
                let style: Node.Scalar.Style =
                    plainReadsAs == .str && !scalar.string.contains("\n") && !scalar.string.isEmpty ? .any : .doubleQuoted
                return Node(scalar.string, Tag(.str), style)
            }
            return Node(scalar.string, Tag(tag), .plain)
        case .mapping(let mapping):
            return Node(mapping.map { (block($0.key), block($0.value)) }, Tag(.map), .block)
        case .sequence(let sequence):
            return Node(sequence.map(block), Tag(.seq), .block)
        case .alias:
            return node
        }
    }
}

extension Node {
    /// The name of the node's resolved tag (`str`, `int`, `float`, `bool`, `null`, `map`, `seq`).
    package var tagName: Tag.Name { Tag.Name(rawValue: tag.rawValue) }
}
