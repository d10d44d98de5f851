/// Deterministic stand-in for an AI model, for demos and tests: it answers in sentences about the
/// page it was asked for, so a newcomer sees a plausible panel (`overlayd demo`).
///
/// `reply(model:prompt:)` reads what our prompts carry (``PageContext/init(prompt:)``): the page's
/// path (`The user opened /orders/42 on shop.example.com.` from the default template, `Page path:`
/// from a follow-up question, else the first `/…` word), the host after it (`on HOST`), and the lines
/// `Question from a user of this page:`, `Page title:`, `Headings:` and `Selected text:` that a
/// follow-up question adds. It answers with two or three sentences:
///
///     This is order 42 (/orders/42 on shop.example.com). A useful next step: check its status and delivery date.
///     You asked “Which plan fits a team of five?” about the pricing page (/pricing). It covers Plans, FAQ. ...
///
/// The wording (one of a few phrasings per sentence) is chosen by
/// `StableHash.hash(salt: model, key: prompt)`: stable across runs and platforms, identical for an
/// identical (model, prompt), and usually different between model names, so a shadow pair of two
/// mock models shares the page's words but not all of the phrasing — some drift, never random words
/// — while identical names give similarity exactly 1.
public enum MockModel {
    /// Longest piece of a question, title, heading or selection quoted back (in Characters).
    public static let maxQuoted = 80
    /// At most this many headings are named.
    public static let maxHeadings = 3

    public static func reply(model: String, prompt: String) -> String {
        var rng = SplitMix64(seed: StableHash.hash(salt: model, key: prompt))
        let page = PageContext(prompt: prompt)
        let topic = page.topic
        let place = page.place
        var sentences: [String] = []
        if let question = page.question {
            let asked = "“" + quoted(question) + "”"
            sentences.append(pick(&rng, [
                "You asked \(asked) about \(topic)\(place.map { " (\($0))" } ?? "").",
                "About \(asked): this concerns \(topic)\(place.map { " at \($0)" } ?? "").",
                "\(asked) is a question about \(topic)\(place.map { " (\($0))" } ?? "").",
            ]))
        } else if let place {
            sentences.append(pick(&rng, [
                "This is \(topic) (\(place)).",
                "You are looking at \(topic), served at \(place).",
                capitalised(topic) + " is the page at \(place).",
            ]))
        } else {
            sentences.append(pick(&rng, [
                "This request is about \(topic).",
                "You are looking at \(topic).",
                capitalised(topic) + " is what this request is about.",
            ]))
        }
        if !page.headings.isEmpty {
            let names = page.headings.prefix(maxHeadings).map { "“" + quoted($0) + "”" }
            sentences.append(pick(&rng, ["It covers ", "Its sections include ", "The page is organised as "])
                + list(names) + ".")
        }
        if let selection = page.selection {
            sentences.append(pick(&rng, ["The text you selected begins “", "Your selection starts with “"])
                + quoted(selection, limit: 48) + "”.")
        }
        let next = nextStep(for: page)
        sentences.append(pick(&rng, [
            "A useful next step: \(next).",
            "Next, you could \(next).",
            "Try this next: \(next).",
        ]))
        return sentences.joined(separator: " ")
    }

    /// What the prompt says about the page (the parts of it our prompt templates put there).
    public struct PageContext: Sendable, Equatable {
        public var path: String?
        public var host: String?
        public var title: String?
        public var question: String?
        public var headings: [String] = []
        public var selection: String?

        public init(prompt: String) {
            for rawLine in prompt.utf8.split(separator: 0x0A, omittingEmptySubsequences: true).map({ Substring($0) }) {
                let line = rawLine.drop(while: { $0 == " " || $0 == "\t" })
                if let rest = Self.value(line, after: "Question from a user of this page:") {
                    question = rest
                } else if let rest = Self.value(line, after: "Page title:") {
                    title = rest
                } else if let rest = Self.value(line, after: "Page path:") {
                    path = rest
                } else if let rest = Self.value(line, after: "Headings:") {
                    headings = rest.split(separator: "|").map { Self.trimmed($0) }.filter { !$0.isEmpty }
                } else if let rest = Self.value(line, after: "Selected text:") {
                    selection = rest
                }
            }
            // Words split on ASCII whitespace, over UTF-8 (Character's Unicode properties cost
            // more than the whole rest of a reply: this runs for every mock call of a load test).
            let words = prompt.utf8.split(whereSeparator: { $0 == 0x20 || ($0 >= 0x09 && $0 <= 0x0D) }).map { Substring($0) }
            if path == nil, let index = words.firstIndex(where: { $0.first == "/" }) {
                path = Self.stripPunctuation(words[index])
                // "... opened /orders/42 on shop.example.com."
                if index + 2 < words.count, words[index + 1] == "on" {
                    let candidate = Self.stripPunctuation(words[index + 2])
                    if candidate.contains("."), candidate.first?.isLetter == true || candidate.first?.isNumber == true {
                        host = candidate
                    }
                }
            }
            if path?.isEmpty == true { path = nil }
        }

        /// The page in words: its title, else its path's last meaningful segments
        /// (`/orders/42` → "order 42", `/products/red-shoes` → "the red shoes page", `/` → "the home page").
        public var topic: String {
            if let title, !title.isEmpty { return "“" + MockModel.quoted(title) + "”" }
            guard let path else { return "this page" }
            let clean = path.split(whereSeparator: { $0 == "?" || $0 == "#" }).first.map(String.init) ?? ""
            let segments = clean.split(separator: "/").map { MockModel.humanised($0) }.filter { !$0.isEmpty }
            guard let last = segments.last else { return "the home page" }
            if last.allSatisfy({ $0.isNumber || $0 == " " }), segments.count >= 2 {
                return MockModel.singular(segments[segments.count - 2]) + " " + last
            }
            return "the " + last + " page"
        }

        /// "/orders/42 on shop.example.com", "/orders/42", or nil.
        public var place: String? {
            guard let path else { return nil }
            return host.map { "\(path) on \($0)" } ?? path
        }

        static func value(_ line: Substring, after prefix: String) -> String? {
            guard line.hasPrefix(prefix) else { return nil }
            let rest = trimmed(line.dropFirst(prefix.count))
            return rest.isEmpty ? nil : rest
        }

        static func trimmed(_ text: Substring) -> String {
            String(text.drop(while: { $0.isWhitespace }).reversed().drop(while: { $0.isWhitespace }).reversed())
        }

        static func stripPunctuation(_ word: Substring) -> String {
            var w = word
            while let last = w.last, ".,;:!?)\"'”".contains(last) { w = w.dropLast() }
            return String(w)
        }
    }

    /// A next step that fits the kind of page (by the words in its path, title and question).
    static func nextStep(for page: PageContext) -> String {
        let words = Array([page.path ?? "", page.title ?? "", page.question ?? ""].joined(separator: " ").lowercased().utf8)
        for entry in steps where entry.keys.contains(where: { contains(words, $0) }) {
            return entry.step
        }
        if !page.headings.isEmpty { return "jump to the section that matches what you came for" }
        return "follow the page's main link to what you came for"
    }

    /// Whether `key` (ASCII) occurs in `text`: a plain byte search (`String.contains` builds a
    /// search table for every call).
    static func contains(_ text: [UInt8], _ key: [UInt8]) -> Bool {
        guard !key.isEmpty, text.count >= key.count else { return key.isEmpty }
        let first = key[0]
        var index = 0
        let last = text.count - key.count
        while index <= last {
            if text[index] == first {
                var matched = 1
                while matched < key.count, text[index + matched] == key[matched] { matched += 1 }
                if matched == key.count { return true }
            }
            index += 1
        }
        return false
    }

    /// Kinds of page by the words in their path, title or question, with a next step for each.
    static let steps: [(keys: [[UInt8]], step: String)] = [
        (["order", "shipment", "delivery"], "check its status and delivery date, and contact support if it is late"),
        (["invoice", "billing", "payment"], "compare the amounts with the last invoice and download a copy"),
        (["cart", "checkout", "basket"], "review the items and the total before paying"),
        (["product", "item", "catalog", "shop"], "compare it with similar products and read the reviews"),
        (["account", "profile", "setting", "customer", "contact"], "review the saved details and update what changed"),
        (["search", "query", "find"], "narrow the results with a filter"),
        (["report", "dashboard", "stats", "analytics"], "look at the largest change since last week"),
        (["pricing", "plan", "price"], "compare the plans by what your team uses every day"),
        (["help", "faq", "support", "doc"], "search the answers for your exact error message"),
    ].map { (keys: $0.0.map { Array($0.utf8) }, step: $0.1) }

    static func pick(_ rng: inout SplitMix64, _ options: [String]) -> String {
        options[StableHash.scale(rng.next(), into: options.count)]
    }

    /// `text` on one line, cut to `limit` Characters (with an ellipsis when cut).
    static func quoted(_ text: String, limit: Int = maxQuoted) -> String {
        let oneLine = text.split(whereSeparator: { $0.isWhitespace }).joined(separator: " ")
        return oneLine.count <= limit ? oneLine : String(oneLine.prefix(limit - 1)) + "…"
    }

    /// A path segment in words: `red-shoes` → "red shoes", `42` → "42".
    static func humanised(_ segment: Substring) -> String {
        let words = segment.split(whereSeparator: { $0 == "-" || $0 == "_" || $0 == "+" || $0 == "." })
        return words.joined(separator: " ").lowercased()
    }

    /// "orders" → "order" (a plain English plural only).
    static func singular(_ word: String) -> String {
        if word.hasSuffix("ies"), word.count > 3 { return String(word.dropLast(3)) + "y" }
        if word.hasSuffix("s"), !word.hasSuffix("ss"), word.count > 1 { return String(word.dropLast()) }
        return word
    }

    static func capitalised(_ text: String) -> String {
        guard let first = text.first else { return text }
        return first.uppercased() + text.dropFirst()
    }

    /// "a", "a and b", "a, b and c".
    static func list(_ items: [String]) -> String {
        if items.count <= 1 { return items.first ?? "" }
        return items.dropLast().joined(separator: ", ") + " and " + items[items.count - 1]
    }
}
