import OverlayDecisions

/// Reference implementations the tests compare the fast paths with: the straightforward first
/// versions of code that was later made faster. Tests only; nothing in the product uses them.
public enum Reference {
    /// The byte-at-a-time original, kept as the reference the tests compare the fast path with.
    public static func escapeForDataIsland(_ json: some Collection<UInt8>) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(json.count)
        var it = json.makeIterator()
        // Up to two bytes of a possible E2 80 A8/A9 sequence waiting for a decision.
        var pending: [UInt8] = []
        func emitEscape(_ s: StaticString) {
            s.withUTF8Buffer { out.append(contentsOf: $0) }
        }
        while let b = it.next() {
            if !pending.isEmpty {
                if pending.count == 1 {
                    if b == 0x80 { pending.append(b); continue }
                } else if b == 0xA8 || b == 0xA9 {
                    emitEscape(b == 0xA8 ? #"\u2028"# : #"\u2029"#)
                    pending.removeAll()
                    continue
                }
                out.append(contentsOf: pending)
                pending.removeAll()
            }
            switch b {
            case 0x3C: emitEscape(#"\u003c"#)
            case 0x3E: emitEscape(#"\u003e"#)
            case 0x26: emitEscape(#"\u0026"#)
            case 0xE2: pending.append(b)
            default: out.append(b)
            }
        }
        out.append(contentsOf: pending)
        return out
    }

    /// The scalar-at-a-time original, kept as the reference the tests compare the fast path with.
    public static func jsonStringLiteral(_ text: String) -> [UInt8] {
        let hex = Array("0123456789abcdef".utf8)
        var out: [UInt8] = [0x22]
        out.reserveCapacity(text.utf8.count + 2)
        for scalar in text.unicodeScalars {
            switch scalar.value {
            case 0x22: out.append(contentsOf: [0x5C, 0x22])
            case 0x5C: out.append(contentsOf: [0x5C, 0x5C])
            case 0x08: out.append(contentsOf: [0x5C, 0x62])
            case 0x0C: out.append(contentsOf: [0x5C, 0x66])
            case 0x0A: out.append(contentsOf: [0x5C, 0x6E])
            case 0x0D: out.append(contentsOf: [0x5C, 0x72])
            case 0x09: out.append(contentsOf: [0x5C, 0x74])
            case 0x00...0x1F, 0x7F, 0x2028, 0x2029:
                let v = scalar.value
                out.append(contentsOf: [0x5C, 0x75])
                out.append(hex[Int((v >> 12) & 0xF)])
                out.append(hex[Int((v >> 8) & 0xF)])
                out.append(hex[Int((v >> 4) & 0xF)])
                out.append(hex[Int(v & 0xF)])
            default:
                out.append(contentsOf: String(scalar).utf8)
            }
        }
        out.append(0x22)
        return out
    }

    /// ``cookieValue(named:in:)`` as first written, over ``parseCookies(_:)``: the reference the
    /// tests compare the byte scan with.
    public static func cookieValue(named name: some StringProtocol, in headers: HeaderList) -> Substring? {
        for header in headers where UserKeyExtractor.asciiCaseInsensitiveEquals(header.name, "cookie") {
            for cookie in UserKeyExtractor.parseCookies(header.value) where cookie.name == name && !cookie.value.isEmpty {
                return cookie.value
            }
        }
        return nil
    }
}
