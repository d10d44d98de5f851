import HTTPTypes
import NIOHTTP1

/// Hop-by-hop header fields (RFC 9110 §7.6.1): meaningful for one connection only, so a proxy
/// never forwards them, in either direction.
enum HopByHop {
    /// Always hop-by-hop: `Connection` and the fields RFC 9110 / RFC 9112 define as connection-specific,
    /// plus the legacy `Proxy-Connection` and the proxy authentication pair.
    static let fixed: Set<String> = [
        "connection", "keep-alive", "proxy-connection", "te", "transfer-encoding", "upgrade", "trailer",
        "proxy-authenticate", "proxy-authorization",
    ]

    /// The field names listed in `Connection` values (lower-cased).
    static func named(byConnection values: some Sequence<String>) -> Set<String> {
        var names: Set<String> = []
        for value in values {
            for token in value.split(separator: ",") {
                let name = token.trimmingCharacters(in: " \t").lowercased()
                if !name.isEmpty { names.insert(name) }
            }
        }
        return names
    }

    /// The end-to-end fields of a request or response received from the client (HTTPTypes).
    static func endToEnd(_ fields: HTTPFields) -> [(name: String, value: String)] {
        let named = named(byConnection: fields[values: .connection])
        var out: [(name: String, value: String)] = []
        out.reserveCapacity(fields.count)
        for field in fields {
            let name = field.name.canonicalName
            if fixed.contains(name) || named.contains(name) { continue }
            out.append((name, field.value))
        }
        return out
    }

    /// The end-to-end fields of a response received from the upstream (NIOHTTP1).
    static func endToEnd(_ headers: HTTPHeaders) -> [(name: String, value: String)] {
        let named = headers.contains(name: "connection") ? named(byConnection: headers["connection"]) : []
        var out: [(name: String, value: String)] = []
        out.reserveCapacity(headers.count)
        for (name, value) in headers {
            let lower = lowercasedASCII(name)
            if fixed.contains(lower) || (!named.isEmpty && named.contains(lower)) { continue }
            out.append((lower, value))
        }
        return out
    }

    /// `name` lower-cased (field names are ASCII tokens); the same string when it already is.
    static func lowercasedASCII(_ name: String) -> String {
        if !name.utf8.contains(where: { $0 >= 0x41 && $0 <= 0x5A }) { return name }
        return String(decoding: name.utf8.map { $0 >= 0x41 && $0 <= 0x5A ? $0 | 0x20 : $0 }, as: UTF8.self)
    }
}

extension Substring {
    func trimmingCharacters(in set: String) -> String {
        var text = self
        while let first = text.first, set.contains(first) { text = text.dropFirst() }
        while let last = text.last, set.contains(last) { text = text.dropLast() }
        return String(text)
    }
}
