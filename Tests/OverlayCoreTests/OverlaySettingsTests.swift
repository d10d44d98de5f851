import OverlayDecisions
import Testing
@testable import OverlayCore

/// The seed as a Shadow overlay (no weights), so `spec.shadow` is allowed.
let shadowSeed = seedYAML.edit("      weight: 80\n", "").edit("      weight: 20\n", "").edit("\"Canary\"", "Shadow")

@Suite("AIOverlay optional settings")
struct OverlaySettingsTests {
    @Test("the seed gets every documented default")
    func defaults() throws {
        let settings = try #require(try load(seedYAML).overlays.first).settings
        #expect(settings == OverlaySettings())
        #expect(settings.paths == ["/"] && settings.userKey == nil && settings.modelHeader == "x-overlay-model")
        #expect(settings.shadowSampleRate == 1 && settings.driftThreshold == 0.6 && settings.driftWindow == 100)
        #expect(settings.injectHTML && settings.jsonPaths.isEmpty && settings.jsonKey == "overlay")
        #expect(settings.latencyBudgetMs == 150 && settings.maxBodyBytes == 4 * 1024 * 1024)
        #expect(settings.pageContext == ["title", "selection", "headings"])
        #expect(!settings.allowSensitiveHeaders && settings.prompt.source == OverlaySettings.defaultPromptTemplate)
    }

    @Test("every field is read")
    func everyField() throws {
        let text = shadowSeed + """

              paths: ["/app/", "/reports"]
              userKey: {cookie: session_id}
              modelHeader: X-Chosen-Model
              shadow: {sampleRate: 0.25, driftThreshold: 0.5, window: 200}
              prompt: {template: "Page {{path}} for {{ user }} in {{header.Accept-Language}}", allowSensitiveHeaders: true}
              injection: {html: false, json: {paths: ["/api/"], key: ai}, latencyBudget: 2s, maxBodyBytes: 2048, context: [headings]}
            """
        let settings = try #require(try load(text).overlays.first).settings
        var expected = OverlaySettings()
        expected.paths = ["/app/", "/reports"]
        expected.userKey = .cookie("session_id")
        expected.modelHeader = "x-chosen-model"
        expected.shadowSampleRate = 0.25
        expected.driftThreshold = 0.5
        expected.driftWindow = 200
        expected.allowSensitiveHeaders = true
        expected.prompt = try PromptTemplate(
            compiling: "Page {{path}} for {{ user }} in {{header.Accept-Language}}", allowSensitiveHeaders: true)
        expected.injectHTML = false
        expected.jsonPaths = ["/api/"]
        expected.jsonKey = "ai"
        expected.latencyBudgetMs = 2_000
        expected.maxBodyBytes = 2048
        expected.pageContext = ["headings"]
        #expect(settings == expected)
    }

    @Test("each bad value is reported with its path and what is allowed", arguments: [
        ("  paths: [\"app/\"]", "spec.paths[0]: must be a path prefix starting with / (ASCII, no spaces, ? or #; at most 1024), got \"app/\""),
        ("  paths: []", "spec.paths: must be a non-empty list of at most 64 path prefixes such as /app/"),
        ("  paths: [\"/a\", \"/a\"]", "spec.paths[1]: duplicate path prefix \"/a\""),
        ("  userKey: {header: x, cookie: y}", "spec.userKey: must have exactly one of header, cookie"),
        ("  userKey: {header: Authorization}", "spec.userKey.header: must not be authorization: name the cookie with userKey.cookie, or a header holding a user id"),
        ("  userKey: {cookie: \"a b\"}", "spec.userKey.cookie: must be a cookie name (letters, digits, !#$%&'*+-.^_`|~; at most 128), got \"a b\""),
        ("  userKey: {session: a}", "spec.userKey.session: unknown field; allowed here: header, cookie"),
        ("  modelHeader: \"x:y\"", "spec.modelHeader: must be an HTTP header name (letters, digits, !#$%&'*+-.^_`|~; at most 128), got \"x:y\""),
        ("  shadow: {sampleRate: 0.5}", "spec.shadow: is only allowed when spec.strategy is Shadow"),
        ("  prompt: {template: \"Hi {{name}}\"}", "spec.prompt.template: unknown template variable '{{name}}' at line 1, column 4; allowed: {{path}}, {{query}}, {{method}}, {{host}}, {{user}}, {{header.NAME}}"),
        ("  prompt: {template: \"{{header.cookie}}\"}", "spec.prompt.template: header 'cookie' at line 1, column 1 is sensitive and may not enter a prompt unless spec.prompt.allowSensitiveHeaders is true"),
        ("  prompt: {template: \"{{path\"}", "spec.prompt.template: unterminated '{{' at line 1, column 1: expected '}}'"),
        ("  prompt: {allowSensitiveHeaders: 1}", "spec.prompt.allowSensitiveHeaders: must be true or false, got 1"),
        ("  injection: {html: \"yes\"}", "spec.injection.html: must be true or false, got \"yes\""),
        ("  injection: {latencyBudget: 11s}", "spec.injection.latencyBudget: must be 0ms...10s, got 11s"),
        ("  injection: {maxBodyBytes: 100}", "spec.injection.maxBodyBytes: must be an integer 1024...67108864, got 100"),
        ("  injection: {json: {key: \"a\\\"b\"}}", "spec.injection.json.key: must be a string of 1-64 characters without quotes, backslashes or control characters, got \"a\"b\""),
        ("  injection: {json: {paths: [\"/x?\"]}}", "spec.injection.json.paths[0]: must be a path prefix starting with / (ASCII, no spaces, ? or #; at most 1024), got \"/x?\""),
        ("  injection: {position: head}", "spec.injection.position: unknown field; allowed here: html, json, latencyBudget, maxBodyBytes, context"),
        ("  injection: {context: [title, cookies]}", "spec.injection.context: must be a list of distinct values among title, selection, headings, got a list"),
        ("  injection: {context: [title, title]}", "spec.injection.context: must be a list of distinct values among title, selection, headings, got a list"),
    ])
    func badValues(line: String, expected: String) {
        #expect(problems(seedYAML + "\n" + line) == ["AIOverlay salesforce-copilot: " + expected])
    }

    @Test("shadow values are range-checked", arguments: [
        ("  shadow: {sampleRate: 1.5}", "spec.shadow.sampleRate: must be a number 0...1, got 1.5"),
        ("  shadow: {driftThreshold: -0.1}", "spec.shadow.driftThreshold: must be a number 0...1, got -0.1"),
        ("  shadow: {window: 5}", "spec.shadow.window: must be an integer 10...10000, got 5"),
    ])
    func shadowValues(line: String, expected: String) {
        #expect(problems(shadowSeed + "\n" + line) == ["AIOverlay salesforce-copilot: " + expected])
    }

    @Test("path prefixes limit the overlay; own endpoints answer on every path")
    func pathPrefixes() throws {
        let config = try load(seedYAML + "\n  paths: [\"/app/\", \"/reports\"]")
        func decide(_ path: String) -> RequestDecision {
            RequestRouter.decide(config: config, authority: "salesforce.com", path: path[...], method: "GET")
        }
        #expect(decide("/app/home") == .overlay(config.overlays[0]))
        #expect(decide("/reports?month=1") == .overlay(config.overlays[0]))
        #expect(decide("/reportsarchive") == .overlay(config.overlays[0]))  // a prefix, not a segment
        #expect(decide("/") == .passThrough)
        #expect(decide("/ap?p=/app/") == .passThrough)  // the query is not part of the path
        #expect(decide("/__overlay/healthz") != .passThrough)
    }
}

@Suite("PollSchedule")
struct PollScheduleTests {
    let schedule = PollSchedule(intervalMs: 10_000, initialBackoffMs: 1_000, maxBackoffMs: 300_000, jitter: 0.1)

    @Test("success: the interval spread ±jitter")
    func interval() {
        #expect(schedule.delayMs(consecutiveFailures: 0, unit: 0) == 9_000)
        #expect(schedule.delayMs(consecutiveFailures: 0, unit: 0.5) == 10_000)
        #expect(schedule.delayMs(consecutiveFailures: 0, unit: 0.999_999) == 11_000)
    }

    @Test("failures double the delay up to the cap, spread downwards only")
    func backoff() {
        let plain = (1...12).map { schedule.delayMs(consecutiveFailures: $0, unit: 0) }
        #expect(plain == [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 64_000, 128_000, 256_000, 300_000, 300_000, 300_000])
        #expect(schedule.delayMs(consecutiveFailures: 3, unit: 0.999_999) == 3_600)
        #expect(schedule.delayMs(consecutiveFailures: 1_000_000, unit: 0) == 300_000)
    }

    @Test("no jitter: exact delays")
    func noJitter() {
        let exact = PollSchedule(intervalMs: 500, initialBackoffMs: 100, maxBackoffMs: 800, jitter: 0)
        #expect((0...5).map { exact.delayMs(consecutiveFailures: $0, unit: 0.7) } == [500, 100, 200, 400, 800, 800])
    }
}
