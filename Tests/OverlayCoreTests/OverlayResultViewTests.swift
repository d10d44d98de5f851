import OverlayDecisions
import OverlayInject
import Testing

@testable import OverlayCore

/// The page's data island written in one pass (``OverlayResultView/appendJSON(to:islandSafe:)``
/// with `islandSafe`) against the two-pass form it replaces: the JSON, then escaped for the island.
@Suite("OverlayResultView")
struct OverlayResultViewTests {
    static func twoPass(_ view: OverlayResultView, nonce: String?) -> [UInt8] {
        OverlaySnippet.make(json: view.json, nonce: nonce)
    }

    static func onePass(_ view: OverlayResultView, nonce: String?) -> [UInt8] {
        OverlaySnippet.make(islandJSONCount: view.estimatedJSONCount, nonce: nonce) { view.appendJSON(to: &$0, islandSafe: true) }
    }

    @Test("hostile text, error and context give the two-pass island's bytes, with no < in it")
    func hostile() {
        var view = OverlayResultView(
            overlay: "crm<&>", model: "m\"\\", token: "t\u{2028}", status: .ready,
            text: "</script><script>alert(1)</script><!-- & \u{2029} \"q\" \\ \n\t\u{7}\u{7F} é 🙂 \u{E2}")
        view.error = "</SCRIPT>&amp;"
        view.context = ["<b>bold</b>", "", "a&b", "\u{2028}\u{2029}"]
        for nonce in [nil, "abc123=="] as [String?] {
            let one = Self.onePass(view, nonce: nonce)
            #expect(one == Self.twoPass(view, nonce: nonce))
            let island = Self.island(one)
            #expect(!island.contains(0x3C) && !island.contains(0x3E) && !island.contains(0x26))
        }
        #expect(view.json == { var out: [UInt8] = []; view.appendJSON(to: &out); return out }())
    }

    @Test("random strings over the escaped characters: the same bytes as the two passes")
    func random() {
        let alphabet: [String] = ["a", "<", ">", "&", "\"", "\\", "\n", "\u{1}", "\u{7F}", "\u{2028}", "\u{2029}", "\u{2027}", "é", "🙂", "/", " "]
        var rng = SplitMix64(seed: 18)
        func text() -> String { (0..<Int(rng.next() % 24)).map { _ in alphabet[Int(rng.next() % UInt64(alphabet.count))] }.joined() }
        for _ in 0..<500 {
            var view = OverlayResultView(
                overlay: text(), model: text(), token: text(), status: [.ready, .pending, .failed][Int(rng.next() % 3)],
                text: rng.next() % 2 == 0 ? text() : nil, error: rng.next() % 2 == 0 ? text() : nil)
            if rng.next() % 2 == 0 { view.context = (0..<Int(rng.next() % 3)).map { _ in text() } }
            #expect(Self.onePass(view, nonce: nil) == Self.twoPass(view, nonce: nil))
        }
    }

    /// The bytes between the island's opening tag and its `</script>`.
    static func island(_ snippet: [UInt8]) -> ArraySlice<UInt8> {
        let open = Array(#"id="overlayd-result">"#.utf8)
        let close = Array("</script>".utf8)
        var start = 0
        while Array(snippet[start..<start + open.count]) != open { start += 1 }
        start += open.count
        var end = start
        while Array(snippet[end..<end + close.count]) != close { end += 1 }
        return snippet[start..<end]
    }
}
