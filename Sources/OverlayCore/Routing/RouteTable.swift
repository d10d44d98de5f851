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

    /// Lowercased host without port or trailing dot.
    @inlinable
    static func normalisedHost(_ authority: Substring) -> String {
        var host = authority
        if host.first == "[" {
            if let close = host.firstIndex(of: "]") { host = host[...close] }
        } else if let colon = host.lastIndex(of: ":") {
            host = host[..<colon]
        }
        if host.last == "." { host = host.dropLast() }
        if host.utf8.contains(where: { $0 >= 0x41 && $0 <= 0x5A }) { return host.lowercased() }
        return String(host)
    }
}
