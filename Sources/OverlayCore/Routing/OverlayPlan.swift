import OverlayDecisions

/// What overlayd does for one overlaid request, decided at request-header time (pure).
///
/// - Canary: one model, chosen by ``StickySplitter`` from the user key (same key, same model,
///   for the same weights) or per request without one.
/// - Shadow: the champion (`spec.models[0]`) serves; the challenger (`spec.models[1]`) gets the
///   same prompt in the background when ``ShadowSampler`` picks the request.
public struct OverlayPlan: Sendable, Equatable {
    public var overlay: String
    /// The model whose answer reaches the page.
    public var model: String
    /// The challenger to call in the background (Shadow, sampled), or nil.
    public var challenger: String?
    /// The rendered prompt.
    public var prompt: String
    /// Whether the request carried a user key (sticky) or was split on its own.
    public var sticky: Bool

    public init(overlay: String, model: String, challenger: String?, prompt: String, sticky: Bool) {
        self.overlay = overlay
        self.model = model
        self.challenger = challenger
        self.prompt = prompt
        self.sticky = sticky
    }
}

extension Overlay {
    /// Plans one request.
    /// - Parameters:
    ///   - headers: the request headers (pseudo-headers may be included; they are not offered to
    ///     `{{header.NAME}}` with a leading colon unless named so).
    ///   - random: the source of per-request picks (no user key) and shadow sampling.
    public func plan(
        method: String, host: String, path: String, headers: HeaderList, random: inout some RandomNumberGenerator
    ) -> OverlayPlan {
        let userKey = settings.userKey.flatMap { UserKeyExtractor.extract($0, from: headers) }
        var bare = Substring(path)
        var query = ""
        if let mark = bare.firstIndex(of: "?") {
            query = String(bare[bare.index(after: mark)...])
            bare = bare[..<mark]
        }
        let prompt = settings.prompt.render(
            PromptContext(method: method, host: host, path: String(bare), query: query, userKey: userKey, headers: headers))
        switch strategy {
        case .canary:
            let index = splitter.choose(userKey: userKey, random: &random)
            return OverlayPlan(
                overlay: name, model: models[min(index, models.count - 1)].name, challenger: nil, prompt: prompt,
                sticky: userKey != nil)
        case .shadow:
            let sampled = models.count > 1 && shadowSampler.shouldShadow(userKey: userKey, random: &random)
            return OverlayPlan(
                overlay: name, model: models[0].name, challenger: sampled ? models[1].name : nil, prompt: prompt,
                sticky: userKey != nil)
        }
    }
}

/// A follow-up question from overlay.js (`POST /__overlay/api/ask`, JSON):
/// `{"question": "…", "title": "…", "selection": "…", "headings": ["…"], "path": "/…"}`.
/// Only `question` is required; every field is capped so a page cannot make a huge prompt.
public struct AskRequest: Sendable, Equatable {
    public var question: String
    public var title: String
    public var selection: String
    public var headings: [String]
    public var path: String

    public static let maxBodyBytes = 64 * 1024

    public init(question: String, title: String = "", selection: String = "", headings: [String] = [], path: String = "") {
        self.question = question
        self.title = title
        self.selection = selection
        self.headings = headings
        self.path = path
    }

    /// The prompt: the question, then the page context it came with.
    public var prompt: String {
        var lines = ["Question from a user of this page: " + Self.cap(question, 1_000)]
        if !title.isEmpty { lines.append("Page title: " + Self.cap(title, 300)) }
        if !path.isEmpty { lines.append("Page path: " + Self.cap(path, 500)) }
        if !headings.isEmpty {
            lines.append("Headings: " + headings.prefix(20).map { Self.cap($0, 200) }.joined(separator: " | "))
        }
        if !selection.isEmpty { lines.append("Selected text: " + Self.cap(selection, 2_000)) }
        lines.append("Answer briefly and concretely.")
        return lines.joined(separator: "\n")
    }

    static func cap(_ text: String, _ limit: Int) -> String {
        text.count <= limit ? text : String(text.prefix(limit))
    }
}

extension Overlay {
    /// Plans a follow-up question: the same split as the page (the same user gets the same model),
    /// no shadow call, the prompt built from the question and its page context.
    public func planAsk(
        _ ask: AskRequest, host: String, headers: HeaderList, random: inout some RandomNumberGenerator
    ) -> OverlayPlan {
        var plan = self.plan(method: "POST", host: host, path: ask.path.isEmpty ? "/" : ask.path, headers: headers, random: &random)
        plan.challenger = nil
        plan.prompt = ask.prompt
        return plan
    }
}
