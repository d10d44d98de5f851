@testable import OverlayDecisions
import Testing

@Suite("MockModel")
struct MockModelTests {
    static let prompt = "You are an assistant embedded in a legacy web application. A user sent GET /orders/42"

    @Test("golden reply is stable across runs")
    func golden() {
        #expect(MockModel.reply(model: "mock-a", prompt: Self.prompt) == MockModelGolden.mockA)
    }

    @Test("same model and prompt → identical text, drift similarity exactly 1")
    func identical() {
        let a = MockModel.reply(model: "mock-a", prompt: Self.prompt)
        let b = MockModel.reply(model: "mock-a", prompt: Self.prompt)
        #expect(a == b)
        let c = DriftScorer.compare(champion: a, challenger: b, championLatencyMs: 1, challengerLatencyMs: 1)
        #expect(c.similarity == 1)
    }

    @Test("different models → different text with partial similarity (some drift)")
    func differentModels() {
        let a = MockModel.reply(model: "mock-a", prompt: Self.prompt)
        let b = MockModel.reply(model: "mock-b", prompt: Self.prompt)
        #expect(a != b)
        let c = DriftScorer.compare(champion: a, challenger: b, championLatencyMs: 1, challengerLatencyMs: 1)
        #expect(c.similarity > 0.2)
        #expect(c.similarity < 0.8)
        #expect(b.hasSuffix(". Regarding: You are an assistant embedded in a legacy"))
    }

    @Test("different prompts → different sentences; short and empty prompts work")
    func prompts() {
        #expect(MockModel.reply(model: "m", prompt: "one") != MockModel.reply(model: "m", prompt: "two"))
        #expect(MockModel.reply(model: "m", prompt: "one").hasSuffix(". Regarding: one"))
        #expect(MockModel.reply(model: "m", prompt: "").hasSuffix(". Regarding: "))
        let words = MockModel.reply(model: "m", prompt: "x").split(separator: ".")[0].split(separator: " ")
        #expect(words.count == MockModel.sentenceWords)
        #expect(words.allSatisfy { MockModel.words.contains($0.lowercased()) })
        #expect(words[0].first!.isUppercase)
    }
}

enum MockModelGolden {
    // Cross-checked with an independent Python implementation.
    static let mockA = "Ripple lagoon lagoon inlet delta ivory harbor delta. Regarding: You are an assistant embedded in a legacy"
}

@Suite struct MockEchoFastPathTests {
    /// The byte-level echo of ASCII prompts gives exactly the Character-level one.
    @Test func asciiEchoMatchesTheUnicodeEcho() throws {
        var rng = SystemRandomNumberGenerator()
        let pieces = ["a", "bc", "Word", " ", "  ", "\t", "\n", "\r\n", "\u{0B}", "\u{0C}", "\r", String(repeating: "x", count: 40), "-", "."]
        for _ in 0..<500 {
            let prompt = (0..<Int.random(in: 0..<30, using: &rng)).map { _ in pieces.randomElement(using: &rng)! }.joined()
            let fast = try #require(MockModel.asciiEcho(prompt))
            #expect(fast == MockModel.unicodeEcho(prompt), "\(prompt.debugDescription)")
        }
    }

    @Test func nonASCIIPromptsTakeTheUnicodePath() {
        #expect(MockModel.asciiEcho("caf\u{E9} au lait") == nil)
        #expect(MockModel.asciiEcho("a\u{A0}b") == nil)  // NO-BREAK SPACE is whitespace to Character
        #expect(MockModel.reply(model: "m", prompt: "a\u{A0}b c").hasSuffix("Regarding: a b c"))
    }
}
