@testable import OverlayDecisions
import Testing

@Suite("MockModel")
struct MockModelTests {
    /// The default prompt template's text for GET /orders/42 on shop.example.com.
    static let prompt = "You are an assistant embedded in a web application. The user opened /orders/42 on shop.example.com. "
        + "In two sentences, say what this page is for and suggest one useful next step."
    /// A follow-up question as AskRequest.prompt writes it.
    static let ask = """
        Question from a user of this page: Which plan fits a team of five?
        Page title: Pricing
        Page path: /pricing
        Headings: Plans | Compare features | FAQ | Contact sales
        Selected text: Team plan, 5 seats, monthly billing
        Answer briefly and concretely.
        """

    @Test("golden replies are stable across runs")
    func golden() {
        #expect(MockModel.reply(model: "mock-a", prompt: Self.prompt) == MockModelGolden.mockA)
        #expect(MockModel.reply(model: "mock-a", prompt: Self.ask) == MockModelGolden.mockAAsk)
    }

    @Test("the reply is sentences about the page asked for: its path, host and a next step")
    func aboutThePage() {
        let text = MockModel.reply(model: "mock-a", prompt: Self.prompt)
        #expect(text.contains("/orders/42 on shop.example.com"))
        #expect(text.contains("order 42"))
        #expect(text.contains("delivery date"))  // the next step fits an order page
        #expect(text.hasSuffix("."))
        #expect(text.split(separator: ". ").count >= 2)
    }

    @Test("a follow-up question is answered with its context: question, title, headings, selection")
    func followUp() {
        let text = MockModel.reply(model: "mock-b", prompt: Self.ask)
        #expect(text.contains("“Which plan fits a team of five?”"))
        #expect(text.contains("“Pricing”"))
        #expect(text.contains("/pricing"))
        #expect(text.contains("“Plans”, “Compare features” and “FAQ”"))  // at most three headings
        #expect(!text.contains("Contact sales"))
        #expect(text.contains("Team plan, 5 seats"))
    }

    @Test("same model and prompt → identical text, drift similarity exactly 1")
    func identical() {
        let a = MockModel.reply(model: "mock-a", prompt: Self.prompt)
        let b = MockModel.reply(model: "mock-a", prompt: Self.prompt)
        #expect(a == b)
        let c = DriftScorer.compare(champion: a, challenger: b, championLatencyMs: 1, challengerLatencyMs: 1)
        #expect(c.similarity == 1)
    }

    @Test("different models → different phrasing of the same page, partial similarity (some drift)")
    func differentModels() {
        // Over many pages, two mock models mostly differ in wording but always share the page's words.
        var differing = 0
        var similarities: [Double] = []
        for n in 0..<200 {
            let prompt = Self.prompt.replacingOrders(with: "/orders/\(n)")
            let a = MockModel.reply(model: "mock-fast", prompt: prompt)
            let b = MockModel.reply(model: "mock-smart", prompt: prompt)
            if a != b { differing += 1 }
            #expect(a.contains("/orders/\(n)") && b.contains("/orders/\(n)"))
            similarities.append(DriftScorer.compare(champion: a, challenger: b, championLatencyMs: 1, challengerLatencyMs: 1).similarity)
        }
        #expect(differing > 150)
        let mean = similarities.reduce(0, +) / Double(similarities.count)
        #expect(mean > 0.3)
        #expect(mean < 0.95)
    }

    @Test("pages in words: the path's last segments, the home page, a prompt without a path")
    func topics() {
        #expect(MockModel.PageContext(prompt: "opened /products/red-shoes on shop.example.com.").topic == "the red shoes page")
        #expect(MockModel.PageContext(prompt: "opened /orders/42?tab=items on x.example.").topic == "order 42")
        #expect(MockModel.PageContext(prompt: "opened /categories/7").topic == "category 7")
        #expect(MockModel.PageContext(prompt: "The user opened / on shop.example.com.").topic == "the home page")
        let none = MockModel.PageContext(prompt: "hello world")
        #expect(none.path == nil && none.topic == "this page")
        #expect(MockModel.reply(model: "m", prompt: "").hasSuffix("."))
        #expect(MockModel.reply(model: "m", prompt: "hello world").contains("this page"))
        let host = MockModel.PageContext(prompt: "The user opened /a on crm.example.com. Then")
        #expect(host.host == "crm.example.com" && host.path == "/a")
    }

    @Test("long and multi-line context is quoted on one line and cut")
    func quoting() {
        let long = String(repeating: "word ", count: 100)
        let text = MockModel.reply(model: "m", prompt: "Question from a user of this page: " + long + "\nPage path: /x")
        #expect(text.contains("…”"))
        #expect(!text.contains("\n"))
        #expect(MockModel.quoted("a\n b\tc") == "a b c")
    }
}

private extension String {
    func replacingOrders(with path: String) -> String {
        split(separator: " ", omittingEmptySubsequences: false)
            .map { $0 == "/orders/42" ? path : String($0) }
            .joined(separator: " ")
    }
}

enum MockModelGolden {
    static let mockA = "You are looking at order 42, served at /orders/42 on shop.example.com. "
        + "Next, you could check its status and delivery date, and contact support if it is late."
    static let mockAAsk = "About “Which plan fits a team of five?”: this concerns “Pricing” at /pricing. "
        + "Its sections include “Plans”, “Compare features” and “FAQ”. "
        + "The text you selected begins “Team plan, 5 seats, monthly billing”. "
        + "Try this next: compare the plans by what your team uses every day."
}
