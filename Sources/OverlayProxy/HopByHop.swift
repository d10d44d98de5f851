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

    /// Whether a lower-cased name is in ``fixed``; most names are ruled out by their length alone,
    /// before any hashing (this runs for every field of every response).
    static func isFixed(_ lower: String) -> Bool {
        switch lower.utf8.count {
        case 2, 7, 10, 16, 17, 18, 19: return fixed.contains(lower)
        default: return false
        }
    }

    /// `name` lower-cased (field names are ASCII tokens); the same string when it already is.
    static func lowercasedASCII(_ name: String) -> String {
        ASCIICase.lowercasedIfNeeded(name.utf8) ?? name
    }
}
