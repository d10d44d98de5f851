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

    /// First non-empty value of cookie `name` across all `cookie` headers (the pairs of
    /// ``parseCookies(_:)``, found by scanning the header's bytes without building them; the
    /// same answer for every cookie header of ASCII names and values, RFC 6265's syntax).
    public static func cookieValue(named name: some StringProtocol, in headers: HeaderList) -> Substring? {
        let wanted = Array(name.utf8)
        for header in headers where asciiCaseInsensitiveEquals(header.name, "cookie") {
            if let value = cookieValue(named: wanted, in: header.value) { return value }
        }
        return nil
    }

    /// The first non-empty value of cookie `wanted` in one `cookie` header value.
    static func cookieValue(named wanted: [UInt8], in header: String) -> Substring? {
        let bytes = header.utf8
        var partStart = bytes.startIndex
        while partStart < bytes.endIndex {
            let partEnd = bytes[partStart...].firstIndex(of: 0x3B) ?? bytes.endIndex  // ';'
            defer { partStart = partEnd < bytes.endIndex ? bytes.index(after: partEnd) : partEnd }
            guard let eq = bytes[partStart..<partEnd].firstIndex(of: 0x3D) else { continue }  // '='
            let name = trimOWS(bytes[partStart..<eq])
            guard !name.isEmpty, name.elementsEqual(wanted) else { continue }
            var value = trimOWS(bytes[bytes.index(after: eq)..<partEnd])
            if value.count >= 2, value.first == 0x22, value.last == 0x22 {
                value = value.dropFirst().dropLast()
            }
            if !value.isEmpty { return Substring(value) }
        }
        return nil
    }

    private static func trimOWS(_ s: Substring.UTF8View) -> Substring.UTF8View {
        var s = s
        while let c = s.first, c == 0x20 || c == 0x09 { s.removeFirst() }
        while let c = s.last, c == 0x20 || c == 0x09 { s.removeLast() }
        return s
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
