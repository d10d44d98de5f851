/// Builds the bytes that ``HTMLInjector`` inserts into a page:
///
/// ```html
/// <script data-overlayd type="application/json" id="overlayd-result">{…escaped JSON…}</script>
/// <script src="/__overlay/overlay.js" defer nonce="…"></script>
/// ```
///
/// (without the line breaks). Both elements are allowed in `<head>`, so inserting them before
/// `</head>` leaves the page's structure alone; overlay.js adds its `<overlay-panel>` element to
/// the body itself. The first tag carries the `data-overlayd`
/// marker that ``HTMLInjector`` uses to avoid injecting twice; it is the first
/// attribute so that the marker is seen within a few bytes when the snippet
/// directly follows `<body ...>`.
public enum OverlaySnippet {
    /// The default URL of the overlay script.
    public static let defaultScriptURL = "/__overlay/overlay.js"

    /// Builds the snippet.
    /// - Parameters:
    ///   - json: the JSON text for the data island (UTF-8). It is passed
    ///     through ``escapeForDataIsland(_:)``, so it can never close the
    ///     `<script>` element; for valid JSON the escaping does not change the
    ///     parsed value.
    ///   - scriptURL: the `src` of the overlay script (HTML-attribute-escaped).
    ///   - nonce: a CSP nonce for the script; used only if
    ///     ``isValidNonce(_:)`` accepts it, otherwise omitted.
    public static func make(
        json: some Collection<UInt8>,
        scriptURL: String = defaultScriptURL,
        nonce: String? = nil
    ) -> [UInt8] {
        make(islandJSONCount: json.count + json.count / 8, scriptURL: scriptURL, nonce: nonce) { out in
            appendEscapedForDataIsland(json, to: &out)
        }
    }

    /// Builds the snippet, its data island written by `writeIslandJSON`, which must append JSON
    /// that is already escaped for the island (no `<`, `>`, `&`, U+2028 or U+2029 bytes: what
    /// ``appendJSONStringLiteral(_:to:islandSafe:)`` with `islandSafe: true` writes for every
    /// string, around keys and punctuation of plain ASCII). One pass over the JSON instead of
    /// writing it, then escaping it into the snippet. `islandJSONCount` is an estimate of its size.
    public static func make(
        islandJSONCount: Int,
        scriptURL: String = defaultScriptURL,
        nonce: String? = nil,
        writeIslandJSON: (inout [UInt8]) -> Void
    ) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(islandJSONCount + 256)  // the tags, a nonce, some escapes
        out.append(contentsOf: #"<script data-overlayd type="application/json" id="overlayd-result">"#.utf8)
        writeIslandJSON(&out)
        out.append(contentsOf: "</script><script src=\"".utf8)
        if scriptURL == defaultScriptURL {
            out.append(contentsOf: defaultScriptURL.utf8)  // nothing in it to escape
        } else {
            out.append(contentsOf: escapeAttribute(scriptURL))
        }
        out.append(contentsOf: "\" defer".utf8)
        if let nonce, isValidNonce(nonce) {
            out.append(contentsOf: " nonce=\"".utf8)
            out.append(contentsOf: nonce.utf8)
            out.append(0x22)
        }
        out.append(contentsOf: "></script>".utf8)
        return out
    }

    /// Builds the snippet from JSON given as a `String`.
    public static func make(
        json: String, scriptURL: String = defaultScriptURL, nonce: String? = nil
    ) -> [UInt8] {
        make(json: Array(json.utf8), scriptURL: scriptURL, nonce: nonce)
    }

    /// Escapes JSON text so that it can sit inside a `<script>` element:
    /// `<` → `\u003c`, `>` → `\u003e`, `&` → `\u0026`, U+2028 → `\u2028`,
    /// U+2029 → `\u2029`. In valid JSON these characters can only occur
    /// inside string literals, where the escapes denote the same characters.
    /// The result contains no `<` at all, so it cannot contain `</script` or
    /// `<!--`.
    public static func escapeForDataIsland(_ json: some Collection<UInt8>) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(json.count + 16)
        appendEscapedForDataIsland(json, to: &out)
        return out
    }

    /// ``escapeForDataIsland(_:)`` appended to `out`.
    static func appendEscapedForDataIsland(_ json: some Collection<UInt8>, to out: inout [UInt8]) {
        if json.withContiguousStorageIfAvailable({ appendEscapedForDataIsland(contiguous: $0, to: &out) }) != nil { return }
        Array(json).withUnsafeBufferPointer { appendEscapedForDataIsland(contiguous: $0, to: &out) }
    }

    /// The same over contiguous bytes: runs of bytes that need nothing are copied whole.
    private static func appendEscapedForDataIsland(contiguous json: UnsafeBufferPointer<UInt8>, to out: inout [UInt8]) {
        var start = 0
        var index = 0
        let count = json.count
        let classes = escapeClasses
        while index < count {
            let b = json[index]
            if classes[Int(b)] & islandEscape == 0 {
                index += 1
                continue
            }
            let escape: StaticString
            var width = 1
            switch b {
            case 0x3C: escape = #"\u003c"#
            case 0x3E: escape = #"\u003e"#
            case 0x26: escape = #"\u0026"#
            case 0xE2 where index + 2 < count && json[index + 1] == 0x80 && (json[index + 2] == 0xA8 || json[index + 2] == 0xA9):
                escape = json[index + 2] == 0xA8 ? #"\u2028"# : #"\u2029"#
                width = 3
            default:
                index += 1
                continue
            }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: json[start..<index]))
            escape.withUTF8Buffer { out.append(contentsOf: $0) }
            index += width
            start = index
        }
        out.append(contentsOf: UnsafeBufferPointer(rebasing: json[start..<count]))
    }


    /// Encodes `text` as a JSON string literal (with the surrounding quotes):
    /// `"` and `\` are backslash-escaped, control characters U+0000–U+001F
    /// become `\b \f \n \r \t` or `\u00XX`, U+007F becomes `\u007f`, and
    /// U+2028 / U+2029 become `\u2028` / `\u2029`. Everything else is copied
    /// as UTF-8.
    public static func jsonStringLiteral(_ text: String) -> String {
        String(decoding: jsonStringLiteralBytes(text), as: UTF8.self)
    }

    static func jsonStringLiteralBytes(_ text: String) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count + 2)
        appendJSONStringLiteral(text, to: &out)
        return out
    }

    /// Appends `text` as a JSON string literal (see ``jsonStringLiteral(_:)``) to `out`: runs of
    /// bytes that need no escape are copied whole. `islandSafe`: `<`, `>` and `&` are written as
    /// `\u003c`, `\u003e`, `\u0026` too, so the literal is already what
    /// ``escapeForDataIsland(_:)`` would make of it (the same bytes, in one pass).
    public static func appendJSONStringLiteral(_ text: String, to out: inout [UInt8], islandSafe: Bool = false) {
        var text = text
        let classes = escapeClasses
        let escaped = islandSafe ? literalEscape | islandEscape : literalEscape
        text.withUTF8 { bytes in
            out.append(0x22)
            var start = 0
            var index = 0
            let count = bytes.count
            while index < count {
                let b = bytes[index]
                // Fast path: printable ASCII other than `"` and `\` (and, island-safe, `<`, `>`,
                // `&`), and UTF-8 other than E2.
                if classes[Int(b)] & escaped == 0 {
                    index += 1
                    continue
                }
                var width = 1
                var code: UInt32 = UInt32(b)
                if b == 0xE2 {
                    guard index + 2 < count, bytes[index + 1] == 0x80, bytes[index + 2] == 0xA8 || bytes[index + 2] == 0xA9 else {
                        index += 1
                        continue
                    }
                    code = bytes[index + 2] == 0xA8 ? 0x2028 : 0x2029
                    width = 3
                }
                out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[start..<index]))
                switch code {
                case 0x22: out.append(0x5C); out.append(0x22)
                case 0x5C: out.append(0x5C); out.append(0x5C)
                case 0x08: out.append(0x5C); out.append(0x62)
                case 0x0C: out.append(0x5C); out.append(0x66)
                case 0x0A: out.append(0x5C); out.append(0x6E)
                case 0x0D: out.append(0x5C); out.append(0x72)
                case 0x09: out.append(0x5C); out.append(0x74)
                default:
                    out.append(0x5C)
                    out.append(0x75)
                    out.append(hexDigits[Int((code >> 12) & 0xF)])
                    out.append(hexDigits[Int((code >> 8) & 0xF)])
                    out.append(hexDigits[Int((code >> 4) & 0xF)])
                    out.append(hexDigits[Int(code & 0xF)])
                }
                index += width
                start = index
            }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[start..<count]))
            out.append(0x22)
        }
    }

    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    /// What each byte value may need, as bits: ``literalEscape`` (a JSON string literal escapes
    /// it: `"`, `\`, the controls, DEL, and E2, which may start U+2028 / U+2029) and
    /// ``islandEscape`` (the data island escapes it: `<`, `>`, `&`, E2). One table lookup per byte
    /// where the loops above would compare it five times.
    private static let escapeClasses: [UInt8] = (0...255).map { (b: Int) -> UInt8 in
        var bits: UInt8 = 0
        if b < 0x20 || b == 0x22 || b == 0x5C || b == 0x7F || b == 0xE2 { bits |= literalEscape }
        if b == 0x3C || b == 0x3E || b == 0x26 || b == 0xE2 { bits |= islandEscape }
        return bits
    }
    private static var literalEscape: UInt8 { 1 }
    private static var islandEscape: UInt8 { 2 }


    /// True if `nonce` is a CSP `base64-value`: one or more of
    /// `A–Z a–z 0–9 + / - _`, followed by at most two `=`.
    public static func isValidNonce(_ nonce: String) -> Bool {
        var sawChar = false
        var padding = 0
        for b in nonce.utf8 {
            if b == 0x3D {
                padding += 1
                if padding > 2 { return false }
                continue
            }
            if padding > 0 { return false }
            let ok = (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39)
                || b == 0x2B || b == 0x2F || b == 0x2D || b == 0x5F
            if !ok { return false }
            sawChar = true
        }
        return sawChar
    }

    /// Escapes a value for a double-quoted HTML attribute.
    static func escapeAttribute(_ value: String) -> [UInt8] {
        var out: [UInt8] = []
        for b in value.utf8 {
            switch b {
            case 0x26: out.append(contentsOf: "&amp;".utf8)
            case 0x22: out.append(contentsOf: "&quot;".utf8)
            case 0x27: out.append(contentsOf: "&#39;".utf8)
            case 0x3C: out.append(contentsOf: "&lt;".utf8)
            case 0x3E: out.append(contentsOf: "&gt;".utf8)
            default: out.append(b)
            }
        }
        return out
    }
}
