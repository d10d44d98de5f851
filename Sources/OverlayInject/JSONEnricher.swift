/// Adds one member to the top-level object of a JSON body, preserving every
/// other byte exactly.
///
/// `adding(key:value:to:)` returns `body[..<i] + sep + "key":value + body[i...]`
/// where `i` is the offset of the top-level object's closing `}` and `sep` is
/// `,` when the object already has members (nothing for `{}` / `{ }`).
///
/// It returns `nil` (leave the body untouched) when
/// - `body` is not a single valid JSON text (strict RFC 8259: UTF-8 checked,
///   no trailing commas, no comments, no leading zeros, no control characters
///   in strings, only the four JSON whitespace bytes, nothing after the value),
/// - the top-level value is not an object,
/// - the top-level object already has a member named `key` (member names are
///   compared after decoding escapes, so `"k\u0065y"` is `key`),
/// - `value` is not a valid JSON text itself, or
/// - nesting exceeds ``maxDepth`` (the scanner is iterative, so hostile input
///   such as 100 000 `[` cannot overflow the stack).
///
/// A leading UTF-8 byte order mark (EF BB BF) in `body` is tolerated (RFC 8259
/// §8.1 allows parsers to ignore it) and kept as is; a BOM in `value` is
/// rejected.
public enum JSONEnricher {
    /// Maximum nesting depth of arrays/objects accepted.
    public static let maxDepth = 512

    /// Returns `body` with `"key": value` added to its top-level object, or
    /// nil to pass the body through untouched (see the type documentation).
    public static func adding(
        key: String, value: some Collection<UInt8>, to body: some Collection<UInt8>
    ) -> [UInt8]? {
        let valueBytes = Array(value)
        guard JSONScanner.scan(valueBytes, allowBOM: false) != nil else { return nil }
        let bytes = Array(body)
        guard let result = JSONScanner.scan(bytes, allowBOM: true, topLevelKeyToFind: Array(key.utf8)),
              let close = result.topLevelObjectClose,
              !result.foundKey
        else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count + valueBytes.count + key.utf8.count + 8)
        out.append(contentsOf: bytes[..<close])
        if result.topLevelObjectHasMembers { out.append(0x2C) }
        out.append(contentsOf: OverlaySnippet.jsonStringLiteralBytes(key))
        out.append(0x3A)
        out.append(contentsOf: valueBytes)
        out.append(contentsOf: bytes[close...])
        return out
    }

    /// True if `bytes` is a single valid JSON text (RFC 8259; no BOM).
    public static func isValidJSON(_ bytes: some Collection<UInt8>) -> Bool {
        JSONScanner.scan(Array(bytes), allowBOM: false) != nil
    }
}

/// A strict, iterative RFC 8259 scanner.
enum JSONScanner {
    struct Result {
        /// Offset of the `}` closing the top-level object, if the top level is an object.
        var topLevelObjectClose: Int?
        var topLevelObjectHasMembers = false
        var foundKey = false
    }

    private enum Container { case array, object }

    static func scan(_ b: [UInt8], allowBOM: Bool, topLevelKeyToFind key: [UInt8]? = nil) -> Result? {
        var result = Result()
        var i = 0
        let n = b.count
        if allowBOM, n >= 3, b[0] == 0xEF, b[1] == 0xBB, b[2] == 0xBF { i = 3 }
        var stack: [Container] = []

        func skipWS() {
            while i < n, b[i] == 0x20 || b[i] == 0x09 || b[i] == 0x0A || b[i] == 0x0D { i += 1 }
        }
        /// Scans a string starting at `"`; returns the decoded bytes when `decode` is set.
        func scanString(decode: Bool) -> [UInt8]? {
            guard i < n, b[i] == 0x22 else { return nil }
            i += 1
            var decoded: [UInt8] = []
            var pendingHigh: UInt32?
            func put(_ scalar: UInt32) {
                // Lone surrogates cannot occur in a Swift String key: map them
                // to bytes that can never match valid UTF-8.
                guard let s = Unicode.Scalar(scalar) else { decoded.append(0xFF); return }
                decoded.append(contentsOf: String(s).utf8)
            }
            while true {
                guard i < n else { return nil }
                let c = b[i]
                if c == 0x22 {
                    i += 1
                    if let h = pendingHigh, decode { put(h) }
                    return decoded
                }
                if c < 0x20 { return nil }
                if c == 0x5C {
                    guard i + 1 < n else { return nil }
                    let e = b[i + 1]
                    var scalar: UInt32
                    switch e {
                    case 0x22, 0x5C, 0x2F: scalar = UInt32(e); i += 2
                    case 0x62: scalar = 0x08; i += 2
                    case 0x66: scalar = 0x0C; i += 2
                    case 0x6E: scalar = 0x0A; i += 2
                    case 0x72: scalar = 0x0D; i += 2
                    case 0x74: scalar = 0x09; i += 2
                    case 0x75:
                        guard i + 6 <= n else { return nil }
                        var v: UInt32 = 0
                        for k in 2..<6 {
                            guard let d = hexValue(b[i + k]) else { return nil }
                            v = v << 4 | d
                        }
                        scalar = v
                        i += 6
                    default: return nil
                    }
                    if decode {
                        if let h = pendingHigh {
                            pendingHigh = nil
                            if scalar >= 0xDC00 && scalar <= 0xDFFF {
                                put(0x10000 + ((h - 0xD800) << 10) + (scalar - 0xDC00))
                                continue
                            }
                            put(h)
                        }
                        if scalar >= 0xD800 && scalar <= 0xDBFF {
                            pendingHigh = scalar
                        } else {
                            put(scalar)
                        }
                    }
                    continue
                }
                if decode, let h = pendingHigh { put(h); pendingHigh = nil }
                // Raw UTF-8 sequence.
                let start = i
                guard let len = utf8SequenceLength(b, at: i) else { return nil }
                i += len
                if decode { decoded.append(contentsOf: b[start..<i]) }
            }
        }
        func scanNumber() -> Bool {
            if i < n, b[i] == 0x2D { i += 1 }
            guard i < n else { return false }
            if b[i] == 0x30 {
                i += 1
            } else if isDigit(b[i]) {
                while i < n, isDigit(b[i]) { i += 1 }
            } else {
                return false
            }
            if i < n, b[i] == 0x2E {
                i += 1
                guard i < n, isDigit(b[i]) else { return false }
                while i < n, isDigit(b[i]) { i += 1 }
            }
            if i < n, b[i] == 0x65 || b[i] == 0x45 {
                i += 1
                if i < n, b[i] == 0x2B || b[i] == 0x2D { i += 1 }
                guard i < n, isDigit(b[i]) else { return false }
                while i < n, isDigit(b[i]) { i += 1 }
            }
            return true
        }
        func scanLiteral(_ lit: StaticString) -> Bool {
            let count = lit.utf8CodeUnitCount
            guard i + count <= n else { return false }
            let ok = lit.withUTF8Buffer { b[i..<(i + count)].elementsEqual($0) }
            if ok { i += count }
            return ok
        }
        /// Scans an object member name and the `:` after it.
        func scanMemberName() -> Bool {
            let atTop = stack.count == 1
            guard let name = scanString(decode: atTop && key != nil) else { return false }
            if atTop, let key, name == key { result.foundKey = true }
            skipWS()
            guard i < n, b[i] == 0x3A else { return false }
            i += 1
            return true
        }

        skipWS()
        // Each iteration scans one value, then the punctuation after it.
        while true {
            skipWS()
            guard i < n else { return nil }
            var valueDone = true
            switch b[i] {
            case 0x7B:  // {
                guard stack.count < JSONEnricher.maxDepth else { return nil }
                stack.append(.object)
                i += 1
                skipWS()
                if i < n, b[i] == 0x7D {
                    if stack.count == 1 { result.topLevelObjectClose = i }
                    stack.removeLast()
                    i += 1
                } else {
                    if stack.count == 1 { result.topLevelObjectHasMembers = true }
                    guard scanMemberName() else { return nil }
                    valueDone = false
                }
            case 0x5B:  // [
                guard stack.count < JSONEnricher.maxDepth else { return nil }
                stack.append(.array)
                i += 1
                skipWS()
                if i < n, b[i] == 0x5D {
                    stack.removeLast()
                    i += 1
                } else {
                    valueDone = false
                }
            case 0x22:
                guard scanString(decode: false) != nil else { return nil }
            case 0x74:
                guard scanLiteral("true") else { return nil }
            case 0x66:
                guard scanLiteral("false") else { return nil }
            case 0x6E:
                guard scanLiteral("null") else { return nil }
            default:
                guard scanNumber() else { return nil }
            }
            if !valueDone { continue }
            // After a complete value: close containers or expect the next element.
            var needValue = false
            while !needValue {
                skipWS()
                guard let top = stack.last else {
                    return i == n ? result : nil
                }
                guard i < n else { return nil }
                switch (top, b[i]) {
                case (.array, 0x2C):
                    i += 1
                    needValue = true
                case (.object, 0x2C):
                    i += 1
                    skipWS()
                    guard scanMemberName() else { return nil }
                    needValue = true
                case (.array, 0x5D):
                    stack.removeLast()
                    i += 1
                case (.object, 0x7D):
                    if stack.count == 1 { result.topLevelObjectClose = i }
                    stack.removeLast()
                    i += 1
                default:
                    return nil
                }
            }
        }
    }

    private static func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }

    private static func hexValue(_ c: UInt8) -> UInt32? {
        switch c {
        case 0x30...0x39: return UInt32(c - 0x30)
        case 0x41...0x46: return UInt32(c - 0x41 + 10)
        case 0x61...0x66: return UInt32(c - 0x61 + 10)
        default: return nil
        }
    }

    /// Length of the well-formed UTF-8 sequence at `i` (RFC 3629: no
    /// overlongs, no surrogates, nothing above U+10FFFF), or nil.
    private static func utf8SequenceLength(_ b: [UInt8], at i: Int) -> Int? {
        let n = b.count
        let c0 = b[i]
        if c0 < 0x80 { return 1 }
        func cont(_ k: Int, _ lo: UInt8 = 0x80, _ hi: UInt8 = 0xBF) -> Bool {
            i + k < n && b[i + k] >= lo && b[i + k] <= hi
        }
        switch c0 {
        case 0xC2...0xDF: return cont(1) ? 2 : nil
        case 0xE0: return cont(1, 0xA0) && cont(2) ? 3 : nil
        case 0xE1...0xEC, 0xEE...0xEF: return cont(1) && cont(2) ? 3 : nil
        case 0xED: return cont(1, 0x80, 0x9F) && cont(2) ? 3 : nil
        case 0xF0: return cont(1, 0x90) && cont(2) && cont(3) ? 4 : nil
        case 0xF1...0xF3: return cont(1) && cont(2) && cont(3) ? 4 : nil
        case 0xF4: return cont(1, 0x80, 0x8F) && cont(2) && cont(3) ? 4 : nil
        default: return nil
        }
    }
}
