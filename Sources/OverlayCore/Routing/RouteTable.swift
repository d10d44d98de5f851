import OverlayDecisions

/// Host → overlay index lookup, precomputed from the config.
///
/// Exact hosts are a dictionary; wildcards are checked longest suffix first. Validation rejects
/// overlapping patterns, so at most one overlay matches any host.
public struct RouteTable: Sendable {
    @usableFromInline let exact: [String: Int]
    @usableFromInline let wildcards: [(suffix: String, index: Int)]

    public init(_ entries: [(HostPattern, Int)]) {
        var exact: [String: Int] = [:]
        var wildcards: [(suffix: String, index: Int)] = []
        for (pattern, index) in entries {
            switch pattern {
            case .exact(let host): exact[host] = exact[host] ?? index
            case .wildcard(let suffix): wildcards.append((suffix, index))
            }
        }
        self.exact = exact
        self.wildcards = wildcards.sorted { $0.suffix.utf8.count > $1.suffix.utf8.count }
    }

    public var isEmpty: Bool { exact.isEmpty && wildcards.isEmpty }

    /// The index of the overlay for an HTTP authority (`Host`/`:authority`: `host`, `host:port`,
    /// `[v6]:port`), case-insensitive, trailing dot ignored.
    @inlinable
    public func match(authority: Substring) -> Int? {
        if isEmpty { return nil }
        let host = Self.normalisedHost(authority)
        if let index = exact[host] { return index }
        for entry in wildcards where host.hasSuffix(entry.suffix) {
            return entry.index
        }
        return nil
    }

    /// Lowercased host without port or trailing dot. Works on the UTF-8 bytes (the delimiters are
    /// ASCII): this runs for every request, and Character-based scanning cost several times more.
    @inlinable
    static func normalisedHost(_ authority: Substring) -> String {
        let bytes = authority.utf8
        var end = bytes.endIndex
        if bytes.first == UInt8(ascii: "[") {
            if let close = bytes.firstIndex(of: UInt8(ascii: "]")) { end = bytes.index(after: close) }
        } else if let colon = bytes.lastIndex(of: UInt8(ascii: ":")) {
            end = colon
        }
        var host = bytes[bytes.startIndex..<end]
        if host.last == UInt8(ascii: ".") { host = host.dropLast() }
        if host.contains(where: { $0 >= 0x80 }) { return String(Substring(host)).lowercased() }
        return ASCIICase.lowercasedIfNeeded(host) ?? String(Substring(host))
    }
}
