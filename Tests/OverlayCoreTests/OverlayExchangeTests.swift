import Foundation
import OverlayDecisions
import OverlayTesting
import Testing

@testable import OverlayCore

/// ``OverlayExchange`` as event sequences in, actions out: the one exchange core both front ends
/// drive (ext_proc through ExtProcCore, the proxy through its NIO handlers).
@Suite("OverlayExchange")
struct OverlayExchangeTests {
    static let yaml = """
        apiVersion: orchestrator.io/v1
        kind: AIOverlay
        metadata: {name: shop}
        spec:
          hostApp: shop.example.com
          models: [{name: model-a, weight: 100}]
          injection:
            json: {paths: [/api], key: ai}
            latencyBudget: 150ms
        """
    static let config: OverlayConfig = try! ConfigLoader.load(text: yaml, source: "test")
    static let ms: UInt64 = 1_000_000
    static let ready = OverlayResultView(
        overlay: "shop", model: "model-a", token: String(repeating: "a", count: 32), status: .ready, text: "hello")
    static let pending = OverlayResultView(
        overlay: "shop", model: "model-a", token: String(repeating: "b", count: 32), status: .pending)
    static let page = Array("<html><head><title>t</title></head><body>x</body></html>".utf8)

    func exchange(codec: (any BodyCodec)? = nil, results: (any OverlayResultLookup)? = nil) -> OverlayExchange {
        OverlayExchange(config: Self.config, seed: 1, results: results, codec: codec)
    }

    /// An overlaid exchange after its request head (at t = 0).
    func overlaid(path: String = "/accounts", method: String = "GET", codec: (any BodyCodec)? = nil) -> OverlayExchange {
        var core = exchange(codec: codec)
        guard case .forward(let header, let plan) = core.requestHead(
            PlainRequestHead(authority: "shop.example.com", path: path, method: method), endOfStream: true, now: 0)
        else {
            Issue.record("expected forward")
            return core
        }
        #expect(header.name == "x-overlay-model" && header.value == "model-a" && plan.model == "model-a")
        return core
    }

    @Test("an unknown host and an empty configuration pass through, and read nothing else")
    func passThrough() {
        var core = exchange()
        guard case .passThrough = core.requestHead(PlainRequestHead(authority: "other.example.com"), endOfStream: true, now: 0)
        else { Issue.record("expected pass-through"); return }
        #expect(core.decision == .passThrough)
        #expect(core.responseHead(status: 200, fields: [(name: "content-type", value: "text/html")], endOfStream: false, ready: nil, now: 0) == .forward)
        #expect(core.responseBody(Self.page, end: true) == nil)
        #expect(core.takeInjection() == nil, "nothing to record for a pass-through")

        var empty = OverlayExchange(config: .empty, seed: 1)
        guard case .passThrough = empty.requestHead(PlainRequestHead(authority: "shop.example.com"), endOfStream: true, now: 0)
        else { Issue.record("expected pass-through"); return }
    }

    @Test("an overlaid HTML page with the result in: the head loses content-length, the body gets the snippet once")
    func overlayReady() throws {
        var core = overlaid()
        #expect(core.decision == .overlay)
        let action = core.responseHead(
            status: 200, fields: [(name: "content-type", value: "text/html; charset=utf-8"), (name: "content-length", value: "60")], endOfStream: false,
            ready: Self.ready, now: 1 * Self.ms)
        #expect(action == .forwardRewriting)
        var out: [UInt8] = []
        for (index, byte) in Self.page.enumerated() {
            out += core.responseBody([byte], end: index == Self.page.count - 1) ?? [byte]
        }
        let text = String(decoding: out, as: UTF8.self)
        #expect(text.hasPrefix("<html><head><title>t</title><script"))
        #expect(text.components(separatedBy: "data-overlayd").count == 2, "the island once")
        #expect(core.takeInjection() == OverlayExchange.Injection(result: "injected"))
        #expect(core.takeInjection() == nil, "recorded once")
    }

    @Test("the result not in: wait until the budget's end; resume with the late result injects it")
    func budgetWaitThenResult() {
        var core = overlaid()
        let action = core.responseHead(
            status: 200, fields: [(name: "content-type", value: "text/html")], endOfStream: false, ready: nil, now: 20 * Self.ms)
        #expect(action == .wait(deadline: 150 * Self.ms), "the budget counts from the request head")
        #expect(core.isWaiting)
        #expect(core.rewrite == nil)
        #expect(core.resume(with: Self.ready) == .forwardRewriting)
        #expect(core.resume(with: Self.pending) == nil, "a second resume changes nothing")
        let out = core.responseBody(Self.page, end: true) ?? Self.page
        #expect(String(decoding: out, as: UTF8.self).contains(#""status":"ready""#))
    }

    /// Found by the fault soak: with the budget already spent, the core answered at once with a
    /// pending view it made itself, whose token was empty, so overlay.js could never fetch the late
    /// result. It now waits for a deadline already past: the front end's timer fires at once with
    /// the call's own pending view, token and all.
    @Test("the budget spent already at the response head: a wait that ends at once, with the call's pending token")
    func budgetExpired() {
        var core = overlaid()
        let action = core.responseHead(
            status: 200, fields: [(name: "content-type", value: "text/html")], endOfStream: false, ready: nil, now: 151 * Self.ms)
        #expect(action == .wait(deadline: 150 * Self.ms))
        #expect(core.resume(with: Self.pending) == .forwardRewriting)
        let out = String(decoding: core.responseBody(Self.page, end: true) ?? Self.page, as: UTF8.self)
        #expect(out.contains(#""status":"pending""#))
        #expect(!Self.pending.token.isEmpty && out.contains(Self.pending.token))
    }

    @Test("budget expiry: resume with the pending view injects the token for overlay.js to poll")
    func budgetExpiryResume() {
        var core = overlaid()
        guard case .wait = core.responseHead(status: 200, fields: [(name: "content-type", value: "text/html")], endOfStream: false, ready: nil, now: 0)
        else { Issue.record("expected wait"); return }
        #expect(core.resume(with: Self.pending) == .forwardRewriting)
        let out = core.responseBody(Self.page, end: true) ?? Self.page
        #expect(String(decoding: out, as: UTF8.self).contains(Self.pending.token))
    }

    @Test("bodies left alone are skipped with their reason, and no wait", arguments: [
        (200, "application/pdf", "GET", "/accounts", "not_html"),
        (404, "text/html", "GET", "/accounts", "status"),
        (200, "text/html", "HEAD", "/accounts", "head"),
    ])
    func skipped(status: Int, type: String, method: String, path: String, reason: String) {
        var core = overlaid(path: path, method: method)
        let action = core.responseHead(status: status, fields: [("content-type", type)], endOfStream: false, ready: nil, now: 0)
        #expect(action == .forwardSkippingBody)
        #expect(core.takeInjection() == .skipped(reason))
        #expect(core.responseBody(Self.page, end: true) == nil)
    }

    @Test("a content type is read by its media type: any case, spaces and tabs around it, parameters after it", arguments: [
        ("Text/HTML; charset=UTF-8", true), (" text/html ", true), ("\ttext/html\t; q=1", true), ("text/html;", true),
        ("TEXT/HTML", true), ("text/htmlx", false), ("text/ html", false), ("", false), (";text/html", false),
        ("t\u{E9}xt/html", false),
    ])
    func mediaTypes(type: String, html: Bool) {
        var core = overlaid()
        let action = core.responseHead(status: 200, fields: [("content-type", type)], endOfStream: false, ready: Self.ready, now: 0)
        if html {
            #expect(action == .forwardRewriting)
        } else {
            #expect(action == .forwardSkippingBody)
            #expect(core.takeInjection() == .skipped("not_html"))
        }
    }

    @Test("no body (end of stream, content-length 0): nothing to wait for or rewrite")
    func noBody() {
        var core = overlaid()
        #expect(core.responseHead(status: 200, fields: [(name: "content-type", value: "text/html")], endOfStream: true, ready: nil, now: 0) == .forward)
        #expect(core.takeInjection() == .skipped("no_body"))
        var zero = overlaid()
        #expect(
            zero.responseHead(
                status: 200, fields: [(name: "content-type", value: "text/html"), (name: "content-length", value: "0")], endOfStream: false, ready: nil,
                now: 0) == .forwardSkippingBody)
        #expect(zero.takeInjection() == .skipped("no_body"))
    }

    @Test("an encoded page: decoded, injected and encoded again by the codec; an unknown coding is skipped")
    func encoded() {
        var core = overlaid(codec: ReversingCodec())
        #expect(
            core.responseHead(
                status: 200, fields: [(name: "content-type", value: "text/html"), (name: "content-encoding", value: "x-reverse")], endOfStream: false,
                ready: Self.ready, now: 0) == .forwardRewriting)
        let body: [UInt8] = Self.page.reversed()
        var out = core.responseBody(body[..<10], end: false) ?? Array(body[..<10])
        out += core.responseBody(body[10...], end: true) ?? Array(body[10...])
        let decoded = String(decoding: out.reversed(), as: UTF8.self)
        #expect(decoded.contains("data-overlayd") && decoded.hasSuffix("</html>"))
        #expect(core.takeInjection() == OverlayExchange.Injection(result: "injected"))

        var unknown = overlaid(codec: ReversingCodec())
        #expect(
            unknown.responseHead(
                status: 200, fields: [(name: "content-type", value: "text/html"), (name: "content-encoding", value: "br")], endOfStream: false,
                ready: Self.ready, now: 0) == .forwardSkippingBody)
        #expect(unknown.takeInjection() == .skipped("encoded"))
    }

    @Test("a body that does not decode passes unchanged and is counted broken_encoding")
    func brokenEncoding() {
        var core = overlaid(codec: ReversingCodec())
        _ = core.responseHead(
            status: 200, fields: [(name: "content-type", value: "text/html"), (name: "content-encoding", value: "x-reverse")], endOfStream: false,
            ready: Self.ready, now: 0)
        let broken: [UInt8] = [0xFF, 1, 2, 3]
        #expect(core.responseBody(broken, end: true) == broken)
        #expect(core.takeInjection() == OverlayExchange.Injection(result: "broken_encoding"))
    }

    @Test("own endpoints are answered locally; results are looked up by token")
    func ownEndpoints() {
        var core = exchange()
        guard case .answer(let local) = core.requestHead(
            PlainRequestHead(authority: "shop.example.com", path: "/__overlay/healthz"), endOfStream: true, now: 0)
        else { Issue.record("expected a local answer"); return }
        #expect(local.status == 200 && core.decision == .ownEndpoint)
        #expect(core.responseHead(status: 200, fields: [], endOfStream: false, ready: nil, now: 0) == .forward)

        var lookup = exchange(results: FixedResultLookup([Self.ready]))
        guard case .answer(let found) = lookup.requestHead(
            PlainRequestHead(authority: "shop.example.com", path: "/__overlay/results/" + Self.ready.token), endOfStream: true,
            now: 0)
        else { Issue.record("expected a local answer"); return }
        #expect(found.status == 200 && found.body == Self.ready.json)
    }

    @Test("a question: the body is read in chunks, then planned with the page's split and no shadow")
    func ask() {
        var core = exchange()
        guard case .readBody = core.requestHead(
            PlainRequestHead(authority: "shop.example.com", path: "/__overlay/api/ask", method: "POST"), endOfStream: false, now: 0)
        else { Issue.record("expected readBody"); return }
        let body = Array(#"{"question": "what is this?", "path": "/accounts"}"#.utf8)
        #expect(core.requestBody(body[..<7], end: false) == .more)
        guard case .ask(let plan) = core.requestBody(body[7...], end: true) else { Issue.record("expected ask"); return }
        #expect(plan.model == "model-a" && plan.challenger == nil && plan.prompt.contains("what is this?"))
    }

    @Test("a question without a body, or with a malformed one, is answered 400 with the reason")
    func askErrors() {
        var none = exchange()
        guard case .answer(let noBody) = none.requestHead(
            PlainRequestHead(authority: "shop.example.com", path: "/__overlay/api/ask", method: "POST"), endOfStream: true, now: 0)
        else { Issue.record("expected an answer"); return }
        #expect(noBody.status == 400 && String(decoding: noBody.body, as: UTF8.self).contains("needs a JSON body"))

        var empty = exchange()
        _ = empty.requestHead(
            PlainRequestHead(authority: "shop.example.com", path: "/__overlay/api/ask", method: "POST"), endOfStream: false, now: 0)
        guard case .answer(let emptyBody) = empty.requestBody([UInt8](), end: true) else { Issue.record("expected an answer"); return }
        #expect(emptyBody == LocalResponse.askError("a question needs a JSON body"))

        var malformed = exchange()
        _ = malformed.requestHead(
            PlainRequestHead(authority: "shop.example.com", path: "/__overlay/api/ask", method: "POST"), endOfStream: false, now: 0)
        guard case .answer(let bad) = malformed.requestBody(Array("{not json".utf8), end: true) else {
            Issue.record("expected an answer"); return
        }
        #expect(bad.status == 400)
    }

    @Test("JSON under the configured path gets the result as a member")
    func json() {
        var core = overlaid(path: "/api/accounts")
        #expect(
            core.responseHead(status: 200, fields: [(name: "content-type", value: "application/json")], endOfStream: false, ready: Self.ready, now: 0)
                == .forwardRewriting)
        #expect(core.responseBody(Array(#"{"a": 1"#.utf8), end: false) == [])
        let out = core.responseBody(Array("}".utf8), end: true) ?? []
        #expect(String(decoding: out, as: UTF8.self) == #"{"a": 1,"ai":"# + String(decoding: Self.ready.json, as: UTF8.self) + "}")
    }

    @Test("cancelled mid-body: later chunks pass unchanged, a held head is dropped, nothing more is recorded")
    func cancellation() {
        var core = overlaid()
        _ = core.responseHead(status: 200, fields: [(name: "content-type", value: "text/html")], endOfStream: false, ready: Self.ready, now: 0)
        _ = core.responseBody(Self.page[..<5], end: false)
        core.cancel()
        #expect(core.responseBody(Self.page[5...], end: true) == nil)
        #expect(core.takeInjection() == nil)

        var waiting = overlaid()
        guard case .wait = waiting.responseHead(status: 200, fields: [(name: "content-type", value: "text/html")], endOfStream: false, ready: nil, now: 0)
        else { Issue.record("expected wait"); return }
        waiting.cancel()
        #expect(waiting.resume(with: Self.ready) == nil, "a cancelled exchange does not resume")
    }

    @Test("the split is the seed's: the same seed plans the same model; every injection value is registered")
    func vocabulary() {
        #expect(Set(OverlayExchange.Injection.all).count == OverlayExchange.Injection.all.count)
        #expect(OverlayExchange.Injection.all.contains(OverlayExchange.Injection(result: "broken_encoding")))
        #expect(OverlayExchange.Injection.all.contains(.skipped("no_body")))
    }

    @Test("the response fields the plan reads are found in any case, and no others")
    func relevantResponseFieldNames() {
        for name in ResponsePlan.relevantHeaders where name != ":status" {
            #expect(ResponsePlan.relevantName(name) == name)
            #expect(ResponsePlan.relevantName(name.uppercased()) == name)
        }
        #expect(ResponsePlan.relevantName("Content-Security-Policy") == "content-security-policy")
        for other in ["content-typf", "content_type", "Content-Length ", "x-content-type", "etag", "", ":status",
                      "content-security-policy-report-only", "Contént-type"] {
            #expect(ResponsePlan.relevantName(other) == nil, "\(other)")
        }
    }
}
