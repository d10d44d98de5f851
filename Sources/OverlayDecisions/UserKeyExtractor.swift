/// Request headers as ordered `(name, value)` pairs, as delivered by Envoy
/// ext_proc. Names are compared ASCII case-insensitively.
public typealias HeaderList = [(name: String, value: String)]

/// Where the sticky user key comes from.
public enum UserKeySource: Sendable, Hashable {
    /// A request header, e.g. `.header("x-user-id")` (name case-insensitive).
    case header(String)
    /// A cookie carried in the `cookie` header(s), e.g. `.cookie("session")`
    /// (cookie names are case-sensitive, RFC 6265).
    case cookie(String)
}

/// Pure helpers that extract the sticky user key from request headers.
///
/// Rules:
/// * Header names are matched ASCII case-insensitively; values are trimmed of
///   optional whitespace (space / horizontal tab).
/// * The first *non-empty* match wins (header occurrences in order; cookies
///   in order across all `cookie` headers, as RFC 6265 §5.4 has the most
///   specific cookie first). Absent or empty → `nil`.
/// * Cookie parsing (RFC 6265 §4.2.1/§5.2, lenient): pairs separated by `;`,
///   surrounding whitespace ignored, split at the first `=`, a pair without
///   `=` or with an empty name is ignored, a value wrapped in double quotes is
///   unquoted, several `cookie` headers (HTTP/2 splits them) are all scanned.
/// * Key length is capped at ``maxKeyBytes`` UTF-8 bytes. A longer key is
///   replaced by `"h:" + 16 hex digits` of its stable 64-bit hash over *all*
///   its bytes, so long keys stay sticky and distinct (up to 64-bit
///   collisions) while memory and hashing cost per decision stay bounded.
public enum UserKeyExtractor {
    /// Maximum user key length in UTF-8 bytes before it is replaced by a digest.
    public static let maxKeyBytes = 256

    /// Extracts (and caps) the user key for `source`; `nil` when absent or empty.
    public static func extract(_ source: UserKeySource, from headers: HeaderList) -> String? {
        let raw: Substring?
        switch source {
        case .header(let name):
            raw = headerValue(named: name, in: headers)
        case .cookie(let name):
            raw = cookieValue(named: name, in: headers)
        }
        return raw.map { capKey(String($0)) }
    }

    /// First non-empty (after trimming) value of header `name`.
    public static func headerValue(named name: some StringProtocol, in headers: HeaderList) -> Substring? {
        for header in headers where asciiCaseInsensitiveEquals(header.name, name) {
            let value = trimOWS(header.value[...])
            if !value.isEmpty { return value }
        }
        return nil
    }

    /// First non-empty value of cookie `name` across all `cookie` headers.
    public static func cookieValue(named name: some StringProtocol, in headers: HeaderList) -> Substring? {
        for header in headers where asciiCaseInsensitiveEquals(header.name, "cookie") {
            for cookie in parseCookies(header.value) where cookie.name == name && !cookie.value.isEmpty {
                return cookie.value
            }
        }
        return nil
    }

    /// Parses one `cookie` header value into ordered `(name, value)` pairs.
    public static func parseCookies(_ header: String) -> [(name: Substring, value: Substring)] {
        var result: [(name: Substring, value: Substring)] = []
        for part in header.split(separator: ";", omittingEmptySubsequences: true) {
            guard let eq = part.firstIndex(of: "=") else { continue }
            let name = trimOWS(part[..<eq])
            guard !name.isEmpty else { continue }
            var value = trimOWS(part[part.index(after: eq)...])
            if value.count >= 2, value.first == "\"", value.last == "\"" {
                value = value.dropFirst().dropLast()
            }
            result.append((name: name, value: value))
        }
        return result
    }

    /// Returns `key` unchanged when it has at most `maxBytes` UTF-8 bytes,
    /// otherwise `"h:" + hex(mix64(fnv1a64(utf8(key))))` (18 bytes).
    public static func capKey(_ key: String, maxBytes: Int = maxKeyBytes) -> String {
        if key.utf8.count <= maxBytes { return key }
        return "h:" + StableHash.hex(StableHash.mix64(StableHash.fnv1a64(key.utf8)))
    }

    /// ASCII case-insensitive equality (HTTP field names are ASCII tokens).
    public static func asciiCaseInsensitiveEquals(_ a: some StringProtocol, _ b: some StringProtocol) -> Bool {
        var ia = a.utf8.makeIterator()
        var ib = b.utf8.makeIterator()
        while true {
            switch (ia.next(), ib.next()) {
            case (nil, nil):
                return true
            case let (x?, y?):
                if asciiLower(x) != asciiLower(y) { return false }
            default:
                return false
            }
        }
    }

    static func asciiLower(_ byte: UInt8) -> UInt8 {
        (byte >= 0x41 && byte <= 0x5A) ? byte | 0x20 : byte
    }

    static func trimOWS(_ s: Substring) -> Substring {
        var s = s
        while let c = s.first, c == " " || c == "\t" { s.removeFirst() }
        while let c = s.last, c == " " || c == "\t" { s.removeLast() }
        return s
    }
}
