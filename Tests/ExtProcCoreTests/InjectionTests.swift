import ExtProcCore
import ExtProcProto
import Foundation
import OverlayCore
import OverlayDecisions
import OverlayInject
import Testing

/// A result store for the machine (`/__overlay/results/{token}`).
struct FixedResults: OverlayResultLookup {
    var views: [String: OverlayResultView]
    func view(token: String) -> OverlayResultView? { views[token] }
}

private let page = "<!doctype html><html><head><title>CRM</title></head><body><h1>Accounts</h1></body></html>"
private let ready = OverlayResultView(
    overlay: "shop", model: "model-a", token: String(repeating: "a", count: 32), status: .ready, text: "</script><b>hi</b>")
/// What the page gets when the result is not in within the latency budget.
private let pending = OverlayResultView(overlay: "shop", model: "model-a", token: String(repeating: "b", count: 32), status: .pending)
/// `ready` as the page's island carries it (with the page context overlay.js may send back).
private let readyInPage: OverlayResultView = {
    var view = ready
    view.context = OverlaySettings.pageContextKinds
    return view
}()

/// Drives an overlaid exchange up to the response headers; returns the machine and what the
/// response headers got.
private func overlaid(
    mode: BodySendMode = .streamed, contentType: String = "text/html; charset=utf-8", status: String = "200",
    method: String = "GET", path: String = "/accounts", extra: [(String, String)] = [], result: OverlayResultView? = ready,
    config: OverlayConfig? = nil
) throws -> (ExchangeStateMachine, Sent) {
    var machine = ExchangeStateMachine(config: try config ?? Fixture.config())
    _ = try machine.receive(
        Envoy.requestHeaders(authority: Fixture.overlayHost, path: path, method: method, endOfStream: true)
            .withProtocolConfig(request: .none, response: mode))
    let headers = Envoy.responseHeaders(status: status, contentType: contentType, extra: extra)
    var action = try machine.receive(headers, now: 0, ready: result)
    if case .wait = action {
        #expect(result == nil, "the machine waits only while the result is not in")
        guard let resumed = machine.resume(with: pending) else {
            Issue.record("a waiting machine resumes")
            return (machine, .none)
        }
        action = resumed
    }
    let sent = action.sent
    return (machine, sent)
}

/// An overlay that adds the result to JSON under /api/ as the member `ai`.
private func jsonConfig() throws -> OverlayConfig {
    try ConfigLoader.load(text: """
        apiVersion: orchestrator.io/v1
        kind: AIOverlay
        metadata: {name: shop}
        spec:
          hostApp: shop.example.com
          models: [{name: m}]
          injection: {json: {paths: ["/api/"], key: ai}}
        """, source: "t")
}

/// A GET of /api/accounts with these body modes, up to the answer to its JSON response headers.
private func jsonHeaders(_ machine: inout ExchangeStateMachine, request: BodySendMode, response: BodySendMode) throws -> ExchangeAction {
    _ = try machine.receive(
        Envoy.requestHeaders(authority: "shop.example.com", path: "/api/accounts", method: "GET", endOfStream: true)
            .withProtocolConfig(request: request, response: response))
    return try machine.receive(Envoy.responseHeaders(status: "200", contentType: "application/json"), now: 0, ready: ready)
}

/// The body bytes the machine sends for `chunks` (unchanged chunks as they were).
private func bodyOut(_ machine: inout ExchangeStateMachine, _ chunks: [String], lastEndsStream: Bool = true) throws -> Data {
    var out = Data()
    for (index, chunk) in chunks.enumerated() {
        let action = try machine.receive(Envoy.responseBody(chunk, endOfStream: lastEndsStream && index == chunks.count - 1))
        switch action.sent {
        case .canned(.continueResponseBody): out.append(Data(chunk.utf8))
        case .message(let message): out.append(message.responseBody.response.bodyMutation.body)
        case .streamed(let messages): for message in messages { out.append(message.responseBody.response.bodyMutation.streamedResponse.body) }
        default: Issue.record("unexpected answer \(action.sent)")
        }
    }
    return out
}

@Suite("ExchangeStateMachine: injection")
struct InjectionTests {
    @Test("HTML in STREAMED mode: content-length dropped, the snippet before </head>, every other byte kept, at every split")
    func htmlStreamed() throws {
        let snippet = OverlaySnippet.make(json: readyInPage.json)
        let expected = Data(HTMLInjector.inject(snippet, into: Array(page.utf8)).output)
        for size in 1...page.utf8.count {
            var (machine, sent) = try overlaid()
            #expect(sent == .rewritingResponseHeaders)
            let bytes = Array(page.utf8)
            let chunks = stride(from: 0, to: bytes.count, by: size).map {
                String(decoding: bytes[$0..<min($0 + size, bytes.count)], as: UTF8.self)
            }
            // Splitting UTF-8 text by bytes: the page is ASCII, so each chunk decodes losslessly.
            #expect(try bodyOut(&machine, chunks) == expected, "chunk size \(size)")
            #expect(machine.rewrite?.outcome == "injected")
        }
        let text = String(decoding: expected, as: UTF8.self)
        #expect(text.contains(#"<script data-overlayd type="application/json" id="overlayd-result">"#))
        #expect(text.contains("\\u003c/script\\u003e\\u003cb\\u003ehi"))  // the model's markup stays inert
        #expect(text.contains(#""context":["title","selection","headings"]"#))  // what overlay.js may send back
        #expect(text.range(of: "overlayd-result")!.lowerBound < text.range(of: "</head>")!.lowerBound)
    }

    @Test("FULL_DUPLEX_STREAMED: the injected bytes go out as streamed_response")
    func htmlDuplex() throws {
        var (machine, sent) = try overlaid(mode: .fullDuplexStreamed)
        #expect(sent == .rewritingResponseHeaders)
        let out = try bodyOut(&machine, ["<html><head></he", "ad><body>x</body></html>"])
        #expect(String(decoding: out, as: UTF8.self).hasPrefix("<html><head><script data-overlayd"))
    }

    @Test("no protocol_config: the headers answer asks for STREAMED (mode_override)")
    func modeOverride() throws {
        var machine = ExchangeStateMachine(config: try Fixture.config())
        _ = try machine.receive(Envoy.requestHeaders(authority: Fixture.overlayHost, endOfStream: true))
        let action = try machine.receive(Envoy.responseHeaders(contentType: "text/html"), ready: ready)
        let message = action.answers[0]
        #expect(message.hasModeOverride && message.modeOverride.responseBodyMode == .streamed)
        #expect(message.responseHeaders.response.headerMutation.removeHeaders == ["content-length"])
    }

    @Test("a pending result carries its token, for overlay.js to fetch later")
    func pending() throws {
        let pending = OverlayResultView(overlay: "shop", model: "model-a", token: String(repeating: "b", count: 32), status: .pending)
        var (machine, _) = try overlaid(result: pending)
        let out = String(decoding: try bodyOut(&machine, [page]), as: UTF8.self)
        #expect(out.contains(#""status":"pending""#) && out.contains(pending.token) && !out.contains(#""text""#))
    }

    @Test("responses left alone, with the reason", arguments: [
        ("application/pdf", "200", "GET", [(String, String)](), "not_html"),
        ("text/html", "404", "GET", [], "status"),
        ("text/html", "204", "GET", [], "status"),
        ("text/html", "200", "HEAD", [], "head"),
        ("text/html", "200", "GET", [("content-encoding", "gzip")], "encoded"),
        ("text/html", "200", "GET", [("content-encoding", "br")], "encoded"),
        ("text/html", "200", "GET", [("content-length", "99999999")], "too_large"),
        ("text/html", "200", "GET", [("content-security-policy", "script-src 'none'")], "csp_blocked"),
    ])
    func untouched(contentType: String, status: String, method: String, extra: [(String, String)], reason: String) throws {
        var (machine, sent) = try overlaid(contentType: contentType, status: status, method: method, extra: extra)
        #expect(sent == .overlayResponseHeaders)
        #expect(machine.responsePlan == .untouched(reason: reason))
        #expect(try bodyOut(&machine, [page]) == Data(page.utf8))
    }

    @Test("a CSP nonce is carried by our script")
    func cspNonce() throws {
        var (machine, _) = try overlaid(extra: [("content-security-policy", "script-src 'nonce-r4nd0m' 'strict-dynamic'")])
        #expect(machine.responsePlan == .html(nonce: "r4nd0m", encoding: nil))
        let out = String(decoding: try bodyOut(&machine, [page]), as: UTF8.self)
        #expect(out.contains(#"<script src="/__overlay/overlay.js" defer nonce="r4nd0m"></script>"#))
    }

    @Test("a page that already carries the snippet is not injected twice")
    func notTwice() throws {
        let once = String(decoding: HTMLInjector.inject(OverlaySnippet.make(json: readyInPage.json), into: Array(page.utf8)).output, as: UTF8.self)
        var (machine, _) = try overlaid()
        #expect(try bodyOut(&machine, [once]) == Data(once.utf8))
        #expect(machine.rewrite?.outcome == "already_present")
    }

    @Test("a body larger than maxBodyBytes passes through untouched")
    func tooLarge() throws {
        let config = try ConfigLoader.load(text: """
            apiVersion: orchestrator.io/v1
            kind: AIOverlay
            metadata: {name: shop}
            spec:
              hostApp: shop.example.com
              models: [{name: m}]
              injection: {maxBodyBytes: 1024}
            """, source: "t")
        var (machine, _) = try overlaid(config: config)
        let big = "<html>" + String(repeating: "<p>filler</p>", count: 200) + "<head></head></html>"
        #expect(try bodyOut(&machine, Array(repeating: "", count: 0) + stride(from: 0, to: big.count, by: 100).map {
            String(big.dropFirst($0).prefix(100))
        }) == Data(big.utf8))
        #expect(machine.rewrite?.outcome == "too_large")
    }

    @Test("JSON under a configured path gets the result as a member; others pass")
    func json() throws {
        let config = try jsonConfig()
        var (machine, sent) = try overlaid(contentType: "application/json", path: "/api/accounts", config: config)
        #expect(sent == .rewritingResponseHeaders)
        // Asked for as one BUFFERED_PARTIAL message (see jsonAsksForOneMessage), Envoy sends one.
        let out = try bodyOut(&machine, [#"{"accounts": [1, 2]}"#])
        #expect(String(decoding: out, as: UTF8.self) == #"{"accounts": [1, 2],"ai":"# + String(decoding: ready.json, as: UTF8.self) + "}")
        // An Envoy that ignores the override (allow_mode_override false) streams it: not
        // enriched, and every byte goes on unchanged.
        var (streamed, _) = try overlaid(contentType: "application/json", path: "/api/accounts", config: config)
        #expect(try bodyOut(&streamed, [#"{"accounts": [1, "#, "2]}"]) == Data(#"{"accounts": [1, 2]}"#.utf8))

        var (array, _) = try overlaid(contentType: "application/json", path: "/api/list", config: config)
        #expect(try bodyOut(&array, ["[1, 2]"]) == Data("[1, 2]".utf8))
        #expect(array.rewrite?.outcome == "not_json_object")

        var (elsewhere, untouched) = try overlaid(contentType: "application/json", path: "/other", config: config)
        #expect(untouched == .overlayResponseHeaders)
        #expect(try bodyOut(&elsewhere, ["{}"]) == Data("{}".utf8))
    }

    /// Found by the fault soak: with trailers after the body, Envoy sends BUFFERED's one body
    /// message with end_of_stream false (§1.3); a body collected whole (JSON) was then held and
    /// answered empty, and the client got no body at all.
    @Test("BUFFERED with trailers after the body: the one message is the whole body, enriched")
    func bufferedWithTrailers() throws {
        let config = try jsonConfig()
        var (machine, sent) = try overlaid(mode: .buffered, contentType: "application/json", path: "/api/accounts", config: config)
        #expect(sent == .rewritingResponseHeaders)
        let action = try machine.receive(Envoy.responseBody(#"{"accounts": [1, 2]}"#, endOfStream: false))
        guard case .message(let message) = action.sent else {
            Issue.record("expected a body mutation, got \(action.sent)")
            return
        }
        #expect(String(decoding: message.responseBody.response.bodyMutation.body, as: UTF8.self)
            == #"{"accounts": [1, 2],"ai":"# + String(decoding: ready.json, as: UTF8.self) + "}")
        #expect(try machine.receive(Envoy.responseTrailers()).sent == .canned(.continueResponseTrailers))
    }

    /// Found by the fault soak: in FULL_DUPLEX_STREAMED, what the rewrite held when the trailers
    /// came (here the start of `</head`) was never sent.
    @Test("FULL_DUPLEX_STREAMED with trailers: the held bytes go out before the trailers answer")
    func duplexWithTrailers() throws {
        var (machine, _) = try overlaid(mode: .fullDuplexStreamed)
        let first = "<html><head><title>t</title></he"
        var out = Data()
        let action = try machine.receive(Envoy.responseBody(first, endOfStream: false))
        guard case .streamed(let chunks) = action.sent else {
            Issue.record("expected streamed answers, got \(action.sent)")
            return
        }
        for chunk in chunks { out.append(chunk.responseBody.response.bodyMutation.streamedResponse.body) }
        #expect(out.count < first.utf8.count, "the start of </head is held")
        let last = try machine.receive(Envoy.responseTrailers())
        guard case .streamed(let answers) = last.sent, let trailers = answers.last else {
            Issue.record("expected the held bytes, then the trailers answer; got \(last.sent)")
            return
        }
        for answer in answers.dropLast() {
            let streamed = answer.responseBody.response.bodyMutation.streamedResponse
            #expect(!streamed.endOfStream)
            out.append(streamed.body)
        }
        #expect(trailers.responseTrailers == .init())
        let text = String(decoding: out, as: UTF8.self)
        #expect(text.hasPrefix("<html><head><title>t</title>"), "\(text)")
        #expect(text.contains("overlayd-result"), "the snippet went in at the end: \(text)")
        #expect(text.replacingOccurrences(of: #"<script[\s\S]*</script>"#, with: "", options: .regularExpression) == first)
    }

    /// Found by the fault soak: Envoy's BUFFERED_PARTIAL (configured, with allow_mode_override
    /// false Envoy's STREAMED override is ignored) sends one message and the rest unprocessed; the
    /// bytes the injector held at its end (the start of `</head`) were never sent.
    @Test("BUFFERED_PARTIAL cut short: every byte of the message goes on, the held ones too, and no insertion at the cut")
    func bufferedPartialCut() throws {
        var (machine, sent) = try overlaid(mode: .bufferedPartial)
        #expect(sent == .rewritingResponseHeaders, "a configured BUFFERED_PARTIAL is kept (no override)")
        let part = "<html><head><title>t</title></he"
        let action = try machine.receive(Envoy.responseBody(part, endOfStream: false))
        #expect(action.sent == .canned(.continueResponseBody), "the message unchanged: \(action.sent)")
        #expect(machine.rewrite?.outcome == "partial_body")
        // With the insertion point inside the message, the snippet goes in as usual.
        var (whole, _) = try overlaid(mode: .bufferedPartial)
        let answer = try whole.receive(Envoy.responseBody("<html><head></head><body>x", endOfStream: false))
        guard case .message(let message) = answer.sent else {
            Issue.record("expected a body mutation, got \(answer.sent)")
            return
        }
        let text = String(decoding: message.responseBody.response.bodyMutation.body, as: UTF8.self)
        #expect(text.hasPrefix("<html><head><script data-overlayd") && text.hasSuffix("</head><body>x"))
    }

    @Test("a body collected whole (JSON) is asked for as BUFFERED_PARTIAL under STREAMED, and enriched from its one message")
    func jsonAsksForOneMessage() throws {
        let config = try jsonConfig()
        var machine = ExchangeStateMachine(config: config)
        let headers = try jsonHeaders(&machine, request: .none, response: .streamed)
        guard case .respond(.message(let answer)) = headers else {
            Issue.record("expected a headers answer, got \(headers.sent)")
            return
        }
        #expect(answer.modeOverride.responseBodyMode == .bufferedPartial)
        // Whole, with trailers after it (end_of_stream false): enriched.
        let body = try machine.receive(Envoy.responseBody(#"{"a": 1}"#, endOfStream: false))
        guard case .message(let enriched) = body.sent else {
            Issue.record("expected a body mutation, got \(body.sent)")
            return
        }
        #expect(String(decoding: enriched.responseBody.response.bodyMutation.body, as: UTF8.self)
            == #"{"a": 1,"ai":"# + String(decoding: ready.json, as: UTF8.self) + "}")
    }

    /// Found by the fault soak: Envoy ignores `mode_override` when either body mode is
    /// FULL_DUPLEX_STREAMED (§3), so asking for BUFFERED_PARTIAL there left JSON unenriched.
    @Test("with a FULL_DUPLEX_STREAMED request, JSON is not asked for as one message: enriched at the end of the stream")
    func jsonWhenOverridesAreIgnored() throws {
        let config = try jsonConfig()
        var machine = ExchangeStateMachine(config: config)
        let headers = try jsonHeaders(&machine, request: .fullDuplexStreamed, response: .streamed)
        guard case .respond(.message(let answer)) = headers else {
            Issue.record("expected a headers answer, got \(headers.sent)")
            return
        }
        #expect(!answer.hasModeOverride)
        // Its first message is still taken as the last: whole, it is enriched (here with trailers
        // after it, end_of_stream false) ...
        #expect(try bodyOut(&machine, [#"{"a": 1}"#], lastEndsStream: false)
            == Data((#"{"a": 1,"ai":"# + String(decoding: ready.json, as: UTF8.self) + "}").utf8))
        // ... and cut, every byte goes on unchanged (held to an end_of_stream that trailers would
        // withhold, it could have been lost: found by the soak).
        var cut = ExchangeStateMachine(config: config)
        _ = try jsonHeaders(&cut, request: .fullDuplexStreamed, response: .streamed)
        #expect(try bodyOut(&cut, [#"{"a": "#, "1}"], lastEndsStream: false) == Data(#"{"a": 1}"#.utf8))
    }

    @Test("HTML injection can be switched off per overlay")
    func htmlOff() throws {
        let config = try ConfigLoader.load(text: """
            apiVersion: orchestrator.io/v1
            kind: AIOverlay
            metadata: {name: shop}
            spec:
              hostApp: shop.example.com
              models: [{name: m}]
              injection: {html: false}
            """, source: "t")
        let (machine, sent) = try overlaid(config: config)
        #expect(sent == .overlayResponseHeaders && machine.responsePlan == .untouched(reason: "disabled"))
    }
}

@Suite("Own endpoints: overlay.js and results")
struct OwnAssetTests {
    @Test("overlay.js is served with an ETag and cache headers; a matching If-None-Match gets 304; it is small")
    func script() throws {
        var machine = ExchangeStateMachine(config: try Fixture.config())
        let action = try machine.receive(Envoy.requestHeaders(authority: Fixture.overlayHost, path: "/__overlay/overlay.js"))
        let immediate = action.answers[0].immediateResponse
        #expect(immediate.status.code.rawValue == 200)
        #expect(immediate.body == Data(OverlayScript.bytes))
        let headers = Dictionary(uniqueKeysWithValues: immediate.headers.setHeaders.map { ($0.header.key, String(decoding: $0.header.rawValue, as: UTF8.self)) })
        #expect(headers["etag"] == OverlayScript.etag && headers["cache-control"] == "public, max-age=300")
        #expect(headers["content-type"] == "text/javascript; charset=utf-8")
        #expect(OverlayScript.bytes.count < 15 * 1024)

        var again = ExchangeStateMachine(config: try Fixture.config())
        var request = Envoy.requestHeaders(authority: Fixture.overlayHost, path: "/__overlay/overlay.js")
        request.requestHeaders.headers.headers.append(Envoy.header("if-none-match", OverlayScript.etag))
        #expect(try again.receive(request).answers[0].immediateResponse.status.code.rawValue == 304)
    }

    @Test("results by token: 200 with the view, 404 when unknown or malformed")
    func results() throws {
        let lookup = FixedResults(views: [ready.token: ready])
        var machine = ExchangeStateMachine(config: try Fixture.config(), results: lookup)
        let found = try machine.receive(Envoy.requestHeaders(authority: Fixture.overlayHost, path: "/__overlay/results/" + ready.token))
        #expect(found.answers[0].immediateResponse.status.code.rawValue == 200)
        #expect(found.answers[0].immediateResponse.body == Data(ready.json))
        for path in ["/__overlay/results/" + String(repeating: "c", count: 32), "/__overlay/results/not-a-token"] {
            var other = ExchangeStateMachine(config: try Fixture.config(), results: lookup)
            #expect(try other.receive(Envoy.requestHeaders(authority: Fixture.overlayHost, path: path)).answers[0].immediateResponse.status.code.rawValue == 404)
        }
    }
}

@Suite("Own endpoints: /__overlay/api/ask")
struct AskTests {
    func post(_ machine: inout ExchangeStateMachine, eos: Bool = false) throws -> ProcessingResponse {
        try machine.receive(
            Envoy.requestHeaders(authority: Fixture.overlayHost, path: "/__overlay/api/ask", method: "POST", endOfStream: eos)
        ).answers[0]
    }

    @Test("POST asks Envoy for the buffered body, then plans through the same split")
    func question() throws {
        var machine = ExchangeStateMachine(config: try Fixture.config())
        let first = try post(&machine)
        #expect(first.hasModeOverride && first.modeOverride.requestBodyMode == .buffered)
        #expect(first.answeredPhase == .requestHeaders)
        let body = #"{"question": "What is overdue?", "title": "Invoices", "headings": ["Open", "Paid"], "selection": "INV-7"}"#
        let action = try machine.receive(Envoy.requestBody(body, endOfStream: true))
        #expect(action.sent == .ask(model: try Fixture.model(for: Fixture.overlayHost)))
        let prompt = try #require(machine.plan?.prompt)
        #expect(prompt.hasPrefix("Question from a user of this page: What is overdue?\nPage title: Invoices\nHeadings: Open | Paid\nSelected text: INV-7"))
        #expect(machine.plan?.challenger == nil)
        // The exchange is answered: anything more is a protocol error.
        #expect(throws: ExchangeError.self) { try machine.receive(Envoy.responseHeaders()) }
    }

    @Test("bad questions get 400 with the reason; other methods 405", arguments: [
        ("not json", "the body must be a JSON object"),
        (#"{"title": "x"}"#, #"\"question\" is required and must not be empty"#),
        (#"{"question": "   "}"#, #"\"question\" is required and must not be empty"#),
        ("{\"question\": \"" + String(repeating: "q", count: 70_000) + "\"}", "the body must be at most 65536 bytes"),
    ])
    func badQuestion(body: String, message: String) throws {
        var machine = ExchangeStateMachine(config: try Fixture.config())
        _ = try post(&machine)
        let answer = try machine.receive(Envoy.requestBody(body, endOfStream: true)).answers[0].immediateResponse
        #expect(answer.status.code.rawValue == 400)
        #expect(String(decoding: answer.body, as: UTF8.self).contains(message))
    }

    @Test("a POST without a body is 400; GET is 405")
    func noBody() throws {
        var machine = ExchangeStateMachine(config: try Fixture.config())
        #expect(try post(&machine, eos: true).immediateResponse.status.code.rawValue == 400)
        var get = ExchangeStateMachine(config: try Fixture.config())
        let answer = try get.receive(Envoy.requestHeaders(authority: Fixture.overlayHost, path: "/__overlay/api/ask")).answers[0]
        #expect(answer.immediateResponse.status.code.rawValue == 405)
    }
}
