import Foundation
@testable import OverlayInject
import OverlayTesting
import Testing

private let islandOpen = #"<script data-overlayd type="application/json" id="overlayd-result">"#

/// The text between the island's start tag and the first `</script`, as the
/// browser would see it.
private func islandText(_ snippet: [UInt8]) throws -> [UInt8] {
    let open = bytes(islandOpen)
    try #require(snippet.starts(with: open))
    let rest = Array(snippet[open.count...])
    let end = try #require(rest.firstRange(of: bytes("</script")))
    return Array(rest[..<end.lowerBound])
}

private let hostileTexts: [String] = [
    "</script><script>alert(1)</script>",
    "</SCRIPT >x", "</script\t", "<!--", "<!-- <script>", "-->", "]]>", "<![CDATA[ x ]]>",
    "\u{2028}\u{2029}", "line\u{2028}sep", "\"}]}, \"x\": \"", "\\", "\\\"", "\\u003c",
    "&lt;&amp;", "<>&'\"", "\0\u{1}\u{1F}\u{7F}", "tab\tnl\ncr\rff\u{0C}bs\u{08}",
    "😀 é 中文 \u{FEFF}", "", "</scr" + "ipt>", "<\u{2028}/script>",
]

@Suite struct OverlaySnippetTests {
    @Test func exactSnippet() {
        let snippet = OverlaySnippet.make(json: #"{"a":"<b>&"}"#, nonce: "abc+/=")
        let expected = islandOpen + #"{"a":"\u003cb\u003e\u0026"}</script>"#
            + #"<script src="/__overlay/overlay.js" defer nonce="abc+/="></script>"#
        #expect(String(decoding: snippet, as: UTF8.self) == expected)
    }

    @Test func withoutNonceAndWithCustomURL() {
        let snippet = String(decoding: OverlaySnippet.make(json: "{}", scriptURL: "/x.js?a=1&b=\"2\""), as: UTF8.self)
        #expect(snippet == islandOpen + "{}</script>"
            + #"<script src="/x.js?a=1&amp;b=&quot;2&quot;" defer></script>"#)
    }

    @Test(arguments: ["abc\" onload=\"alert(1)", "a b", "", "abc===", "ab=c", "<x>", "é"])
    func invalidNonceIsNotUsed(_ nonce: String) {
        #expect(!OverlaySnippet.isValidNonce(nonce))
        let snippet = String(decoding: OverlaySnippet.make(json: "{}", nonce: nonce), as: UTF8.self)
        #expect(!snippet.contains("nonce"))
    }

    @Test(arguments: ["abc", "rAnd0m+/==", "url-safe_base64", "A", "xyz="])
    func validNonce(_ nonce: String) {
        #expect(OverlaySnippet.isValidNonce(nonce))
        let snippet = String(decoding: OverlaySnippet.make(json: "{}", nonce: nonce), as: UTF8.self)
        #expect(snippet.contains(" nonce=\"\(nonce)\"></script>"))
    }

    @Test func islandEscapingHandlesSplitAndPartialSequences() {
        let ls: [UInt8] = [0xE2, 0x80, 0xA8]
        #expect(OverlaySnippet.escapeForDataIsland(ls) == bytes(#"\u2028"#))
        #expect(OverlaySnippet.escapeForDataIsland([0xE2, 0xE2, 0x80, 0xA9, 0x3C]) == [0xE2] + bytes(#"\u2029\u003c"#))
        #expect(OverlaySnippet.escapeForDataIsland([0xE2, 0x80, 0x41]) == [0xE2, 0x80, 0x41])
        #expect(OverlaySnippet.escapeForDataIsland([0x41, 0xE2, 0x80]) == [0x41, 0xE2, 0x80])
        #expect(OverlaySnippet.escapeForDataIsland(bytes("…")) == bytes("…"))  // E2 80 A6
    }

    @Test func jsonStringLiteralForms() {
        #expect(OverlaySnippet.jsonStringLiteral("a\"b\\c") == #""a\"b\\c""#)
        #expect(OverlaySnippet.jsonStringLiteral("\n\r\t\u{8}\u{C}\u{0}\u{1F}\u{7F}") == #""\n\r\t\b\f\u0000\u001f\u007f""#)
        #expect(OverlaySnippet.jsonStringLiteral("\u{2028}é😀") == "\"\\u2028é😀\"")
        #expect(OverlaySnippet.jsonStringLiteral("\u{8}\u{FEFF}") == "\"\\b\u{FEFF}\"")
    }

    @Test(arguments: hostileTexts)
    func hostileModelOutputStaysInsideTheIsland(_ text: String) throws {
        let json = "{\"text\":" + OverlaySnippet.jsonStringLiteral(text) + "}"
        let snippet = OverlaySnippet.make(json: json)
        let island = try islandText(snippet)
        // The island must run exactly up to our own `</script>`.
        #expect(snippet.count - islandOpen.utf8.count - island.count
            == bytes("</script>" + #"<script src="/__overlay/overlay.js" defer></script>"#).count)
        #expect(!island.contains(0x3C))  // no `<` at all: no `</script`, no `<!--`
        #expect(island.firstRange(of: [0xE2, 0x80, 0xA8]) == nil)
        #expect(island.firstRange(of: [0xE2, 0x80, 0xA9]) == nil)
        let object = try #require(JSONSerialization.jsonObject(with: Data(island)) as? [String: Any])
        #expect(object["text"] as? String == text)
        // And an injector scanning the page sees the snippet as one unit.
        let page = bytes("<html><head>") + snippet + bytes("</head><body></body>")
        #expect(HTMLInjector.inject(bytes("[S]"), into: page).outcome == .alreadyPresent)
    }

    @Test func randomStringsRoundTrip() throws {
        var rng = SplitMix64(seed: 7)
        // U+FEFF is left out: swift-corelibs-foundation's JSONSerialization
        // drops it after an escape sequence (a decoder bug, checked separately
        // in `jsonStringLiteralForms`).
        let interesting: [UInt32] = [0, 8, 9, 10, 12, 13, 0x1F, 0x22, 0x26, 0x2F, 0x3C, 0x3E, 0x5C, 0x7F, 0x2028, 0x2029, 0x1F600]
        for _ in 0..<500 {
            var text = ""
            for _ in 0..<Int.random(in: 0...30, using: &rng) {
                let v: UInt32 = Bool.random(using: &rng)
                    ? interesting.randomElement(using: &rng)!
                    : UInt32.random(in: 0...0x10FFFF, using: &rng)
                if v != 0xFEFF, let scalar = Unicode.Scalar(v) { text.unicodeScalars.append(scalar) }
            }
            let snippet = OverlaySnippet.make(json: "[" + OverlaySnippet.jsonStringLiteral(text) + "]")
            let island = try islandText(snippet)
            #expect(!island.contains(0x3C))
            let array = try #require(JSONSerialization.jsonObject(with: Data(island)) as? [Any])
            #expect(array.first as? String == text)
        }
    }
}

/// The run-copying fast paths against the byte- and scalar-at-a-time originals, on inputs dense in
/// the bytes that need escaping (and the near misses of U+2028/U+2029's E2 80 A8/A9).
@Suite struct EscapingFastPathTests {
    @Test func dataIslandEscapingMatchesTheReference() {
        var rng = SystemRandomNumberGenerator()
        let alphabet: [UInt8] = [0x3C, 0x3E, 0x26, 0xE2, 0x80, 0xA8, 0xA9, 0x41, 0x22, 0x5C, 0x00, 0xC3, 0xA9]
        for length in 0..<200 {
            let input = (0..<length).map { _ in alphabet.randomElement(using: &rng)! }
            #expect(OverlaySnippet.escapeForDataIsland(input) == Reference.escapeForDataIsland(input), "\(input)")
            // A non-contiguous collection takes the same path.
            #expect(OverlaySnippet.escapeForDataIsland(input.lazy.map { $0 }) == Reference.escapeForDataIsland(input))
        }
    }

    @Test func jsonStringLiteralMatchesTheReference() {
        var rng = SystemRandomNumberGenerator()
        let alphabet: [Unicode.Scalar] = [
            "\"", "\\", "\u{8}", "\u{C}", "\n", "\r", "\t", "\u{0}", "\u{1F}", "\u{7F}", "\u{2028}", "\u{2029}",
            "\u{2026}", "a", " ", "é", "😀", "\u{FEFF}", "<",
        ]
        for length in 0..<200 {
            var text = ""
            for _ in 0..<length { text.unicodeScalars.append(alphabet.randomElement(using: &rng)!) }
            #expect(OverlaySnippet.jsonStringLiteralBytes(text) == Reference.jsonStringLiteral(text), "\(text.debugDescription)")
        }
    }
}
