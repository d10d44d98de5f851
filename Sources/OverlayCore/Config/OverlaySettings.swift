import OverlayDecisions

/// The optional parts of an `AIOverlay` spec, each with a documented default.
///
/// ```yaml
/// spec:
///   paths: ["/"]                      # path prefixes the overlay applies to (default: every path)
///   userKey: {header: x-user-id}      # or {cookie: session}: the key of sticky splits (default: none,
///                                     #   a per-request pick)
///   modelHeader: x-overlay-model      # request header that tells the host app the chosen model
///   shadow:                           # Shadow overlays only
///     sampleRate: 1.0                 # 0..1: share of requests whose challenger is called (1.0)
///     driftThreshold: 0.6             # 0..1: mean similarity below this flags drift (0.6)
///     window: 100                     # 10..10000: pairs in the rolling drift window (100)
///   prompt:
///     template: "..."                 # variables: {{method}} {{host}} {{path}} {{query}} {{user}}
///                                     #   {{header.NAME}}; at most 8 KiB (default: PromptDefaults)
///     allowSensitiveHeaders: false    # let {{header.cookie}} / {{header.authorization}} in (false)
///   injection:
///     html: true                      # inject the overlay into text/html responses (true)
///     json: {paths: ["/api/"], key: overlay}  # add the result to application/json object bodies
///                                     #   under these path prefixes (default: none), under `key`
///     latencyBudget: 150ms            # 0ms..10s: how long a response waits for the AI result (150ms)
///     maxBodyBytes: 4194304           # 1 KiB..64 MiB: larger bodies pass through untouched (4 MiB)
///     context: [title, selection, headings]  # page context overlay.js sends with questions (all three)
/// ```
public struct OverlaySettings: Sendable, Hashable {
    /// Where the sticky-split key comes from.
    public typealias UserKeySource = OverlayDecisions.UserKeySource

    public var paths: [String] = ["/"]
    public var userKey: UserKeySource?
    public var modelHeader = OverlaySettings.defaultModelHeader
    public var shadowSampleRate = 1.0
    public var driftThreshold = 0.6
    public var driftWindow = 100
    /// `spec.prompt.template`, compiled (its text is `prompt.source`).
    public var prompt = OverlaySettings.defaultPrompt
    public var allowSensitiveHeaders = false
    public var injectHTML = true
    public var jsonPaths: [String] = []
    public var jsonKey = "overlay"
    public var latencyBudgetMs = 150
    public var maxBodyBytes = 4 * 1024 * 1024
    /// What overlay.js sends with a follow-up question: any of `title`, `selection`, `headings`.
    public var pageContext = OverlaySettings.pageContextKinds

    public init() {}

    public static let defaultModelHeader = "x-overlay-model"
    public static let defaultPromptTemplate =
        "You are an assistant embedded in a web application. The user opened {{path}} on {{host}}. "
        + "In two sentences, say what this page is for and suggest one useful next step."
    public static let maxPromptTemplateBytes = 8 * 1024
    // A constant that a test compiles too.
    public static let defaultPrompt = try! PromptTemplate(compiling: defaultPromptTemplate)
    public static let maxPaths = 64
    public static let pageContextKinds = ["title", "selection", "headings"]

    /// True when `path` (the request's `:path`, query included) falls under one of `prefixes`.
    @inlinable
    public static func matches(_ prefixes: [String], path: Substring) -> Bool {
        if prefixes.count == 1 && prefixes[0] == "/" { return true }  // the default: every request, `*` too
        var bare = path
        if let query = bare.firstIndex(where: { $0 == "?" || $0 == "#" }) { bare = bare[..<query] }
        for prefix in prefixes where bare.utf8.starts(with: prefix.utf8) { return true }
        return false
    }
}
