import NIOHTTP1
import OverlayDecisions

/// Hop-by-hop header fields (RFC 9110 §7.6.1): meaningful for one connection only, so a proxy
/// never forwards them, in either direction.
enum HopByHop {
    /// Always hop-by-hop: `Connection` and the fields RFC 9110 / RFC 9112 define as connection-specific,
    /// plus the legacy `Proxy-Connection` and the proxy authentication pair.
    static let fixed: Set<String> = [
        "connection", "keep-alive", "proxy-connection", "te", "transfer-encoding", "upgrade", "trailer",
        "proxy-authenticate", "proxy-authorization",
    ]

    /// The field names listed in `Connection` values (lower-cased), other than those in ``fixed``
    /// (dropped anyway): for the usual `keep-alive` or `upgrade` the set stays empty.
    static func named(byConnection values: some Sequence<String>) -> Set<String> {
        var names: Set<String> = []
        for value in values {
            var value = value
            value.withUTF8 { bytes in
                var start = 0
                while start < bytes.count {
                    var end = start
                    while end < bytes.count && bytes[end] != UInt8(ascii: ",") { end += 1 }
                    var low = start
                    var high = end
                    while low < high && (bytes[low] == 0x20 || bytes[low] == 0x09) { low += 1 }
                    while high > low && (bytes[high - 1] == 0x20 || bytes[high - 1] == 0x09) { high -= 1 }
                    if high > low {
                        let name = lowercasedASCII(String(decoding: UnsafeBufferPointer(rebasing: bytes[low..<high]), as: UTF8.self))
                        if !isFixed(name) { names.insert(name) }
                    }
                    start = end + 1
                }
            }
        }
        return names
    }

    /// The end-to-end fields of a response received from the upstream (NIOHTTP1).
    static func endToEnd(_ headers: HTTPHeaders) -> [(name: String, value: String)] {
        let named = headers.contains(name: "connection") ? named(byConnection: headers["connection"]) : []
        var out: [(name: String, value: String)] = []
        out.reserveCapacity(headers.count)
        for (name, value) in headers {
            let lower = lowercasedASCII(name)
            if isFixed(lower) || (!named.isEmpty && named.contains(lower)) { continue }
            out.append((lower, value))
        }
        return out
    }

    /// `headers` without their hop-by-hop fields, names as they came (the pass-through response
    /// head), in one pass, as the list the response's head is written from.
    static func removed(from headers: HTTPHeaders) -> [(name: String, value: String)] {
        var kept: [(name: String, value: String)] = []
        kept.reserveCapacity(headers.count)
        var connectionNames = false  // a Connection value other than the usual keep-alive
        for (name, value) in headers {
            if isFixedName(name) {
                if ASCIICase.equals(name, lowercased: "connection") && !isPlainConnection(value) { connectionNames = true }
            } else {
                kept.append((name, value))
            }
        }
        if connectionNames {
            let named = named(byConnection: headers["connection"])
            if !named.isEmpty { kept.removeAll { named.contains(lowercasedASCII($0.name)) } }
        }
        return kept
    }

    /// The end-to-end fields of `headers` into `kept`, names as they came, and into `picked` those
    /// of them that `relevant` names (its lower-case name, the value), in one pass: the overlaid
    /// response head, which the core decides on and which may lose its content-length before it is
    /// written (``ProxyResponseHead``).
    static func endToEnd(
        _ headers: HTTPHeaders, kept: inout [(name: String, value: String)], relevant: (String) -> String?,
        picked: inout [(name: String, value: String)]
    ) {
        kept.reserveCapacity(headers.count)
        picked.reserveCapacity(4)
        var connectionNames = false  // a Connection value other than the usual keep-alive
        for (name, value) in headers {
            if isFixedName(name) {
                if ASCIICase.equals(name, lowercased: "connection") && !isPlainConnection(value) { connectionNames = true }
                continue
            }
            kept.append((name, value))
            if let lower = relevant(name) { picked.append((lower, value)) }
        }
        if connectionNames {
            // Rare: the Connection value names fields, which go too (and are not read).
            let named = named(byConnection: headers["connection"])
            if !named.isEmpty {
                kept.removeAll { named.contains(lowercasedASCII($0.name)) }
                picked = kept.compactMap { field in relevant(field.name).map { ($0, field.value) } }
            }
        }
    }

    /// Whether a name, in any case, is one of ``fixed``: by its length, then a byte compare with
    /// the one or two names of that length (no lower-cased copy, no hashing).
    static func isFixedName(_ name: String) -> Bool {
        switch name.utf8.count {
        case 2: return ASCIICase.equals(name, lowercased: "te")
        case 7: return ASCIICase.equals(name, lowercased: "upgrade") || ASCIICase.equals(name, lowercased: "trailer")
        case 10: return ASCIICase.equals(name, lowercased: "connection") || ASCIICase.equals(name, lowercased: "keep-alive")
        case 16: return ASCIICase.equals(name, lowercased: "proxy-connection")
        case 17: return ASCIICase.equals(name, lowercased: "transfer-encoding")
        case 18: return ASCIICase.equals(name, lowercased: "proxy-authenticate")
        case 19: return ASCIICase.equals(name, lowercased: "proxy-authorization")
        default: return false
        }
    }

    /// `keep-alive` (any case): a Connection value that names no field that is not hop-by-hop
    /// anyway. (`close` is read like any other value: a field named `close` would be hop-by-hop.)
    private static func isPlainConnection(_ value: String) -> Bool {
        ASCIICase.equals(value, lowercased: "keep-alive")
    }

    /// Whether a lower-cased name is in ``fixed``; most names are ruled out by their length alone,
    /// before any hashing (this runs for every field of every response).
    static func isFixed(_ lower: String) -> Bool { isFixedName(lower) }

    /// `name` lower-cased (field names are ASCII tokens); the same string when it already is.
    static func lowercasedASCII(_ name: String) -> String { ASCIICase.lowercased(name) }
}
