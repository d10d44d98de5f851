/// The hosts an overlay applies to (`spec.hostApp`).
///
/// - `crm.example.com`: that host exactly (any port; case-insensitive; a trailing dot ignored).
/// - `*.example.com`: every subdomain of `example.com` at any depth, but not `example.com` itself.
public enum HostPattern: Sendable, Hashable, CustomStringConvertible {
    case exact(String)
    /// Stores the suffix with its leading dot: `.example.com`.
    case wildcard(suffix: String)

    /// Parses a `spec.hostApp` value; the error text says what is allowed.
    public init(parsing raw: String) throws(HostPatternError) {
        // ASCII first: some non-ASCII letters lower-case to ASCII ones (U+212A KELVIN SIGN → "k").
        guard raw.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw HostPatternError("must be ASCII without spaces (use the punycode form of an internationalised name), got \"\(raw)\"")
        }
        let text = raw.lowercased()
        if text.isEmpty { throw HostPatternError("must not be empty") }
        if text.hasPrefix("[") {
            throw HostPatternError("IPv6 address literals are not supported; use a host name or an IPv4 address, got \"\(raw)\"")
        }
        if text.contains("://") {
            throw HostPatternError("must be a host name without a scheme (e.g. crm.example.com), got \"\(raw)\"")
        }
        if text.contains("/") { throw HostPatternError("must be a host name without a path, got \"\(raw)\"") }
        if text.contains(":") { throw HostPatternError("must be a host name without a port, got \"\(raw)\"") }
        var name = Substring(text)
        if name.hasSuffix(".") { name = name.dropLast() }
        var wildcard = false
        if name.hasPrefix("*.") {
            wildcard = true
            name = name.dropFirst(2)
        }
        if name.contains("*") {
            throw HostPatternError("a wildcard is allowed only as the whole first label (*.example.com), got \"\(raw)\"")
        }
        let labels = name.split(separator: ".", omittingEmptySubsequences: false)
        for label in labels {
            guard !label.isEmpty, label.count <= 63,
                label.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2D }),
                label.first != "-", label.last != "-"
            else {
                throw HostPatternError(
                    "must be a DNS name (labels of a-z, 0-9 and '-', 1-63 characters) or *.domain, got \"\(raw)\"")
            }
        }
        self = wildcard ? .wildcard(suffix: "." + name) : .exact(String(name))
    }

    public var description: String {
        switch self {
        case .exact(let host): return host
        case .wildcard(let suffix): return "*" + suffix
        }
    }

    /// True when some host is matched by both patterns.
    public func overlaps(_ other: HostPattern) -> Bool {
        switch (self, other) {
        case (.exact(let a), .exact(let b)): return a == b
        case (.exact(let host), .wildcard(let suffix)), (.wildcard(let suffix), .exact(let host)):
            return host.hasSuffix(suffix)
        case (.wildcard(let a), .wildcard(let b)): return a.hasSuffix(b) || b.hasSuffix(a)
        }
    }
}

public struct HostPatternError: Error, Sendable, Hashable {
    public var message: String
    public init(_ message: String) { self.message = message }
}
