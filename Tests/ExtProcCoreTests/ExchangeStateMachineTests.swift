import ExtProcCore
import ExtProcProto
import Foundation
import OverlayCore
import Testing

/// Feeds `messages` in order and returns what the machine decided for each; a thrown error fails.
func drive(_ machine: inout ExchangeStateMachine, _ messages: [ProcessingRequest]) throws -> [ExchangeAction] {
    var actions: [ExchangeAction] = []
    for message in messages { actions.append(try machine.receive(message)) }
    return actions
}

/// The body modes Envoy implements (§1.3; GRPC is `not-implemented-hide`).
let bodyModes: [BodySendMode] = [.none, .streamed, .buffered, .bufferedPartial, .fullDuplexStreamed]

// MARK: - Pass-through (§3)

@Suite("ExchangeStateMachine: pass-through")
struct PassThroughTests {
    @Test("request_headers for an unknown host → the canned pass-through", arguments: [
        Fixture.unknownHost, "shop.example.com.evil.io", "www.shop.example.com", "apps.example.com",
    ])
    func unknownHost(authority: String) throws {
        var machine = try Fixture.machine()
        let action = try machine.receive(Envoy.requestHeaders(authority: authority).withProtocolConfig(request: .streamed, response: .buffered))
        #expect(action.sent == .canned(.passThrough))
        #expect(machine.decision == .passThrough)
    }

    @Test("an empty configuration passes everything through, own endpoints included")
    func emptyConfig() throws {
        var machine = ExchangeStateMachine(config: .empty)
        #expect(try machine.receive(Envoy.requestHeaders(authority: Fixture.overlayHost, path: "/__overlay/healthz")).sent == .canned(.passThrough))
        #expect(machine.decision == .passThrough)
    }

    @Test("the pass-through message: CONTINUE request headers, mode_override turning off every later phase (§3)")
    func passThroughMessage() {
        let message = CannedResponse.passThrough.message
        guard case .requestHeaders(let headers)? = message.response else {
            Issue.record("pass-through must answer request_headers, got \(message)")
            return
        }
        #expect(headers.response.status == .continue)
        #expect(!headers.response.hasHeaderMutation && !headers.response.hasBodyMutation)
        #expect(message.hasModeOverride)
        let mode = message.modeOverride
        #expect(mode.requestHeaderMode == .default)
        #expect(mode.responseHeaderMode == .skip)
        #expect(mode.requestBodyMode == .none)
        #expect(mode.responseBodyMode == .none)
        #expect(mode.requestTrailerMode == .skip)
        #expect(mode.responseTrailerMode == .skip)
        #expect(mode == CannedResponse.passThroughModeOverride)
        #expect(!message.hasDynamicMetadata && !message.hasOverrideMessageTimeout && !message.requestDrain)
    }

    @Test("without allow_mode_override Envoy keeps sending: every later phase is answered CONTINUE (§3)")
    func laterPhasesAfterPassThrough() throws {
        var machine = try Fixture.machine()
        let actions = try drive(&machine, [
            Envoy.requestHeaders(authority: Fixture.unknownHost, method: "POST").withProtocolConfig(request: .buffered, response: .streamed),
            Envoy.requestBody("{}", endOfStream: true),
            Envoy.responseHeaders(),
            Envoy.responseBody("<html>", endOfStream: false),
            Envoy.responseBody("</html>", endOfStream: true),
        ])
        #expect(actions.map(\.sent) == [
            .canned(.passThrough), .canned(.continueRequestBody), .canned(.continueResponseHeaders),
            .canned(.continueResponseBody), .canned(.continueResponseBody),
        ])
    }

    @Test("FULL_DUPLEX_STREAMED ignores mode_override (§1.3), so pass-through bodies are still echoed")
    func passThroughFullDuplex() throws {
        var machine = try Fixture.machine()
        let actions = try drive(&machine, [
            Envoy.requestHeaders(authority: Fixture.unknownHost, method: "POST")
                .withProtocolConfig(request: .fullDuplexStreamed, response: .fullDuplexStreamed),
            Envoy.requestBody("payload", endOfStream: true),
        ])
        #expect(actions.map(\.sent) == [
            .canned(.passThrough),
            .streamed([streamedAnswer(Data("payload".utf8), endOfStream: true, request: true)]),
        ])
    }
}

// MARK: - Overlay host: full exchanges (§1, §2)

@Suite("ExchangeStateMachine: full exchanges on an overlay host")
struct FullExchangeTests {
    /// Body chunks Envoy sends in each mode (§1.3): NONE none; BUFFERED and BUFFERED_PARTIAL one
    /// message; STREAMED and FULL_DUPLEX_STREAMED several, pipelined (sent without waiting).
    static func chunks(_ mode: BodySendMode, _ prefix: String) -> [String] {
        switch mode {
        case .none: return []
        case .buffered, .bufferedPartial: return ["\(prefix)-whole-body"]
        default: return ["\(prefix)-1", "\(prefix)-22", "\(prefix)-333"]
        }
    }

    /// One HTTP exchange as Envoy drives it, with what each message must get back.
    static func exchange(mode: BodySendMode, trailers: Bool, authority: String) throws -> [(ProcessingRequest, Sent)] {
        var script: [(ProcessingRequest, Sent)] = []
        func body(_ text: String, eos: Bool, request: Bool) -> (ProcessingRequest, Sent) {
            let message = request ? Envoy.requestBody(text, endOfStream: eos) : Envoy.responseBody(text, endOfStream: eos)
            if mode == .fullDuplexStreamed {
                return (message, .streamed([streamedAnswer(Data(text.utf8), endOfStream: eos, request: request)]))
            }
            return (message, .canned(request ? .continueRequestBody : .continueResponseBody))
        }
        script.append((
            Envoy.requestHeaders(authority: authority, path: "/chat", method: "POST").withProtocolConfig(request: mode, response: mode),
            .overlayRequestHeaders(model: try Fixture.model(for: authority))))
        let requestChunks = chunks(mode, "req")
        for (index, chunk) in requestChunks.enumerated() {
            // end_of_stream only on the last chunk, and only when no trailers follow (§1.3).
            script.append(body(chunk, eos: !trailers && index == requestChunks.count - 1, request: true))
        }
        if trailers { script.append((Envoy.requestTrailers(), .canned(.continueRequestTrailers))) }
        script.append((Envoy.responseHeaders(), .overlayResponseHeaders))
        let responseChunks = chunks(mode, "resp")
        for (index, chunk) in responseChunks.enumerated() {
            script.append(body(chunk, eos: !trailers && index == responseChunks.count - 1, request: false))
        }
        if trailers { script.append((Envoy.responseTrailers(), .canned(.continueResponseTrailers))) }
        return script
    }

    @Test("headers → body chunks → trailers, both directions: exactly one answer of the matching type each (§2)",
          arguments: bodyModes, [true, false])
    func fullExchange(mode: BodySendMode, trailers: Bool) throws {
        let config = try Fixture.config()
        var machine = ExchangeStateMachine(config: config)
        for (message, expected) in try Self.exchange(mode: mode, trailers: trailers, authority: Fixture.overlayHost) {
            let action = try machine.receive(message)
            #expect(action.sent == expected, "\(ExchangePhase(of: message)!.label)")
            let answers = action.answers
            #expect(answers.count == 1, "\(ExchangePhase(of: message)!.label)")
            #expect(answers.first?.answeredPhase == ExchangePhase(of: message))
        }
        #expect(machine.decision == .overlay(config.overlays[0]))
    }

    @Test("a wildcard overlay host gets the same treatment", arguments: bodyModes)
    func wildcardHost(mode: BodySendMode) throws {
        let config = try Fixture.config()
        var machine = ExchangeStateMachine(config: config)
        for (message, expected) in try Self.exchange(mode: mode, trailers: true, authority: Fixture.wildcardHost + ":8443") {
            #expect(try machine.receive(message).sent == expected)
        }
        #expect(machine.decision == .overlay(config.overlays[1]))
    }

    @Test("request headers with end_of_stream (a GET): the response side still runs", arguments: bodyModes)
    func bodylessRequest(mode: BodySendMode) throws {
        var machine = try Fixture.machine()
        let actions = try drive(&machine, [
            Envoy.requestHeaders(authority: Fixture.overlayHost, endOfStream: true).withProtocolConfig(request: mode, response: mode),
            Envoy.responseHeaders(endOfStream: true),
        ])
        // A response without a body: nothing to rewrite or switch off, a plain CONTINUE.
        #expect(actions.map(\.sent) == [.overlayRequestHeaders(model: try Fixture.model(for: Fixture.overlayHost)), .canned(.continueResponseHeaders)])
    }

    @Test("early upstream answer: response_headers while the request body is still streaming is accepted (§1 note)",
          arguments: [BodySendMode.streamed, .fullDuplexStreamed])
    func earlyUpstreamAnswer(mode: BodySendMode) throws {
        var machine = try Fixture.machine()
        let duplex = mode == .fullDuplexStreamed
        func requestBodyAnswer(_ text: String, _ eos: Bool) -> Sent {
            duplex ? .streamed([streamedAnswer(Data(text.utf8), endOfStream: eos, request: true)]) : .canned(.continueRequestBody)
        }
        func responseBodyAnswer(_ text: String, _ eos: Bool) -> Sent {
            duplex ? .streamed([streamedAnswer(Data(text.utf8), endOfStream: eos, request: false)]) : .canned(.continueResponseBody)
        }
        let actions = try drive(&machine, [
            Envoy.requestHeaders(authority: Fixture.overlayHost, method: "POST").withProtocolConfig(request: mode, response: mode),
            Envoy.requestBody("part-1", endOfStream: false),
            Envoy.responseHeaders(status: "413"),
            Envoy.responseBody("too big", endOfStream: false),
            Envoy.requestBody("part-2", endOfStream: true),
            Envoy.responseBody("!", endOfStream: true),
        ])
        #expect(actions.map(\.sent) == [
            .overlayRequestHeaders(model: try Fixture.model(for: Fixture.overlayHost)), requestBodyAnswer("part-1", false),
            .overlayResponseHeaders,
            responseBodyAnswer("too big", false), requestBodyAnswer("part-2", true), responseBodyAnswer("!", true),
        ])
    }

    @Test("the two directions may use different body modes")
    func mixedModes() throws {
        var machine = try Fixture.machine()
        let actions = try drive(&machine, [
            Envoy.requestHeaders(authority: Fixture.overlayHost, method: "POST").withProtocolConfig(request: .fullDuplexStreamed, response: .buffered),
            Envoy.requestBody("q", endOfStream: true),
            Envoy.responseHeaders(),
            Envoy.responseBody("a", endOfStream: true),
        ])
        #expect(actions.map(\.sent) == [
            .overlayRequestHeaders(model: try Fixture.model(for: Fixture.overlayHost)),
            .streamed([streamedAnswer(Data("q".utf8), endOfStream: true, request: true)]),
            .overlayResponseHeaders, .canned(.continueResponseBody),
        ])
    }

    @Test("without protocol_config the body modes are NONE: bodies are answered CONTINUE")
    func noProtocolConfig() throws {
        var machine = try Fixture.machine()
        let actions = try drive(&machine, [
            Envoy.requestHeaders(authority: Fixture.overlayHost),
            Envoy.requestBody("x", endOfStream: true),
        ])
        #expect(actions.map(\.sent) == [.overlayRequestHeaders(model: try Fixture.model(for: Fixture.overlayHost)), .canned(.continueRequestBody)])
    }
}

// MARK: - Header mode SKIP (§1.1)

@Suite("ExchangeStateMachine: header mode SKIP")
struct HeaderSkipTests {
    @Test("the first message may be a body, trailers or the response side", arguments: [
        (Envoy.requestBody("b", endOfStream: false), Sent.canned(.continueRequestBody)),
        (Envoy.requestBody("b", endOfStream: true), Sent.canned(.continueRequestBody)),
        (Envoy.requestTrailers(), Sent.canned(.continueRequestTrailers)),
        (Envoy.responseHeaders(), Sent.canned(.continueResponseHeaders)),
        (Envoy.responseBody("b", endOfStream: true), Sent.canned(.continueResponseBody)),
        (Envoy.responseTrailers(), Sent.canned(.continueResponseTrailers)),
    ])
    func firstMessage(message: ProcessingRequest, expected: Sent) throws {
        var machine = try Fixture.machine()
        #expect(try machine.receive(message.withProtocolConfig(request: .streamed, response: .streamed)).sent == expected)
        #expect(machine.decision == nil, "no decision without request headers")
    }

    @Test("request headers skipped: body chunks then trailers, then the response")
    func requestHeadersSkipped() throws {
        var machine = try Fixture.machine()
        let actions = try drive(&machine, [
            Envoy.requestBody("1", endOfStream: false).withProtocolConfig(request: .streamed, response: .none),
            Envoy.requestBody("2", endOfStream: false),
            Envoy.requestTrailers(),
            Envoy.responseHeaders(),
        ])
        #expect(actions.map(\.sent) == [
            .canned(.continueRequestBody), .canned(.continueRequestBody), .canned(.continueRequestTrailers),
            .canned(.continueResponseHeaders),
        ])
    }

    @Test("response headers skipped: the response body comes straight after the request")
    func responseHeadersSkipped() throws {
        var machine = try Fixture.machine()
        let actions = try drive(&machine, [
            Envoy.requestHeaders(authority: Fixture.overlayHost, endOfStream: true).withProtocolConfig(request: .none, response: .buffered),
            Envoy.responseBody("whole", endOfStream: false),
            Envoy.responseTrailers(),
        ])
        #expect(actions.map(\.sent) == [.overlayRequestHeaders(model: try Fixture.model(for: Fixture.overlayHost)), .canned(.continueResponseBody), .canned(.continueResponseTrailers)])
    }

    @Test("FULL_DUPLEX_STREAMED body as the first message is echoed")
    func duplexFirst() throws {
        var machine = try Fixture.machine()
        let action = try machine.receive(
            Envoy.requestBody("first", endOfStream: true).withProtocolConfig(request: .fullDuplexStreamed, response: .none))
        #expect(action.sent == .streamed([streamedAnswer(Data("first".utf8), endOfStream: true, request: true)]))
    }
}

// MARK: - FULL_DUPLEX_STREAMED (§1.3, §6, §14)

@Suite("ExchangeStateMachine: FULL_DUPLEX_STREAMED")
struct FullDuplexTests {
    static func machine() throws -> ExchangeStateMachine {
        var machine = try Fixture.machine()
        let first = try machine.receive(
            Envoy.requestHeaders(authority: Fixture.overlayHost, method: "POST")
                .withProtocolConfig(request: .fullDuplexStreamed, response: .fullDuplexStreamed))
        #expect(first.sent == .overlayRequestHeaders(model: try Fixture.model(for: Fixture.overlayHost)))
        return machine
    }

    @Test("chunks are echoed as streamed_response with the same bytes and end_of_stream", arguments: [true, false])
    func echo(request: Bool) throws {
        var machine = try Self.machine()
        if !request { #expect(try machine.receive(Envoy.responseHeaders()).sent == .overlayResponseHeaders) }
        func send(_ text: String, _ eos: Bool) throws -> ExchangeAction {
            try machine.receive(request ? Envoy.requestBody(text, endOfStream: eos) : Envoy.responseBody(text, endOfStream: eos))
        }
        for (text, eos) in [("Hello, ", false), ("wor", false), ("ld", true)] {
            let action = try send(text, eos)
            #expect(action.sent == .streamed([streamedAnswer(Data(text.utf8), endOfStream: eos, request: request)]))
            let answer = try #require(action.answers.first)
            #expect(answer.answeredPhase == (request ? .requestBody : .responseBody))
            let streamed = try #require(streamedBody(of: answer))
            #expect(streamed.body == Data(text.utf8))
            #expect(streamed.endOfStream == eos)
        }
    }

    @Test("a 200 KiB chunk becomes ceil(200/64) = 4 messages of ≤ 64 KiB; only the last carries end_of_stream",
          arguments: [true, false], [true, false])
    func rechunk(request: Bool, endOfStream: Bool) throws {
        var machine = try Self.machine()
        if !request { _ = try machine.receive(Envoy.responseHeaders()) }
        let input = patternBytes(200 * 1024)
        let action = try machine.receive(
            request ? Envoy.requestBody(input, endOfStream: endOfStream) : Envoy.responseBody(input, endOfStream: endOfStream))
        guard case .respondStreamed(let answers) = action else {
            Issue.record("expected respondStreamed, got \(action.sent)")
            return
        }
        #expect(ExchangeStateMachine.maxStreamedChunk == 64 * 1024)
        #expect(answers.count == (200 + 63) / 64)
        let parts = answers.compactMap(streamedBody(of:))
        #expect(parts.count == answers.count, "every message carries a streamed_response")
        #expect(parts.map(\.body.count) == [65536, 65536, 65536, 8192])
        #expect(parts.reduce(into: Data()) { $0.append($1.body) } == input)
        #expect(parts.map(\.endOfStream) == [false, false, false, endOfStream])
        #expect(answers.allSatisfy { $0.answeredPhase == (request ? .requestBody : .responseBody) })
    }

    @Test("chunk boundaries at exactly 64 KiB", arguments: [
        (1, [1]), (65535, [65535]), (65536, [65536]), (65537, [65536, 1]), (131072, [65536, 65536]),
    ])
    func boundaries(size: Int, expected: [Int]) throws {
        var machine = try Self.machine()
        let input = patternBytes(size)
        let answers = try machine.receive(Envoy.requestBody(input, endOfStream: true)).answers
        let parts = answers.compactMap(streamedBody(of:))
        #expect(parts.map(\.body.count) == expected)
        #expect(parts.reduce(into: Data()) { $0.append($1.body) } == input)
        #expect(parts.last?.endOfStream == true)
        #expect(parts.dropLast().allSatisfy { !$0.endOfStream })
    }

    @Test("an empty final chunk with end_of_stream → one empty streamed_response with end_of_stream")
    func emptyFinalChunk() throws {
        var machine = try Self.machine()
        #expect(try machine.receive(Envoy.requestBody("data", endOfStream: false)).sent
            == .streamed([streamedAnswer(Data("data".utf8), endOfStream: false, request: true)]))
        let action = try machine.receive(Envoy.requestBody(Data(), endOfStream: true))
        #expect(action.sent == .streamed([streamedAnswer(Data(), endOfStream: true, request: true)]))
        let streamed = try #require(action.answers.first.flatMap(streamedBody(of:)))
        #expect(streamed.body.isEmpty && streamed.endOfStream)
    }

    @Test("a body that is a slice of a larger buffer (non-zero startIndex) is echoed exactly")
    func sliceInput() throws {
        var machine = try Self.machine()
        let backing = patternBytes(70_000)
        let slice = backing[1000..<70_000]
        #expect(slice.startIndex == 1000)
        let parts = try machine.receive(Envoy.requestBody(slice, endOfStream: true)).answers.compactMap(streamedBody(of:))
        #expect(parts.map(\.body.count) == [65536, 69000 - 65536])
        #expect(parts.reduce(into: Data()) { $0.append($1.body) } == Data(slice))
    }

    @Test("trailers end a duplex direction with a trailers response (§1.3)")
    func trailers() throws {
        var machine = try Self.machine()
        let actions = try drive(&machine, [
            Envoy.requestBody("x", endOfStream: false),
            Envoy.requestTrailers(),
            Envoy.responseHeaders(),
            Envoy.responseBody("y", endOfStream: false),
            Envoy.responseTrailers(),
        ])
        #expect(actions.map(\.sent) == [
            .streamed([streamedAnswer(Data("x".utf8), endOfStream: false, request: true)]),
            .canned(.continueRequestTrailers), .overlayResponseHeaders,
            .streamed([streamedAnswer(Data("y".utf8), endOfStream: false, request: false)]),
            .canned(.continueResponseTrailers),
        ])
    }
}

// MARK: - Observability mode (§1.5)

@Suite("ExchangeStateMachine: observability mode")
struct ObservabilityTests {
    @Test("every message → .none, request headers included", arguments: [
        Fixture.overlayHost, Fixture.unknownHost, Fixture.wildcardHost,
    ])
    func everyMessageIsSilent(authority: String) throws {
        var machine = try Fixture.machine()
        // No protocol_config in observability mode (§1); only STREAMED bodies are sent (§1.5).
        let messages = [
            Envoy.requestHeaders(authority: authority, method: "POST"),
            Envoy.requestBody("a", endOfStream: false),
            Envoy.requestBody("b", endOfStream: false),
            Envoy.requestTrailers(),
            Envoy.responseHeaders(),
            Envoy.responseBody("c", endOfStream: true),
        ].map { $0.observed() }
        for action in try drive(&machine, messages) {
            #expect(action.sent == .none)
            #expect(action.answers.isEmpty)
        }
        #expect(machine.decision != nil, "the decision is still taken")
    }

    @Test("an own endpoint is not answered either, and the exchange goes on")
    func ownEndpointIsSilent() throws {
        var machine = try Fixture.machine()
        let actions = try drive(&machine, [
            Envoy.requestHeaders(authority: Fixture.overlayHost, path: "/__overlay/healthz").observed(),
            Envoy.responseHeaders().observed(),
        ])
        #expect(actions.map(\.sent) == [.none, .none])
    }

    @Test("protocol violations are still violations in observability mode")
    func violations() throws {
        var machine = try Fixture.machine()
        _ = try machine.receive(Envoy.requestHeaders(authority: Fixture.overlayHost).observed())
        let error = #expect(throws: ExchangeError.self) { try machine.receive(Envoy.requestHeaders(authority: Fixture.overlayHost).observed()) }
        #expect(error?.kind == .duplicate)
    }
}

// MARK: - Protocol violations (§1, §1.2, §2)

/// A message sequence whose last message violates the protocol.
struct Violation: Sendable, CustomTestStringConvertible {
    var name: String
    var accepted: [ProcessingRequest]
    var offending: ProcessingRequest
    var kind: ExchangeError.Kind
    var testDescription: String { name }
}

@Suite("ExchangeStateMachine: protocol violations")
struct ViolationTests {
    static let headers = Envoy.requestHeaders(authority: Fixture.overlayHost, method: "POST")
        .withProtocolConfig(request: .streamed, response: .streamed)

    static let violations: [Violation] = [
        Violation(
            name: "§1.2 request headers with end_of_stream, then a body", accepted: [Envoy.requestHeaders(authority: Fixture.overlayHost, endOfStream: true)],
            offending: Envoy.requestBody("x", endOfStream: true), kind: .afterEndOfStream),
        Violation(
            name: "§1.2 request headers with end_of_stream, then trailers", accepted: [Envoy.requestHeaders(authority: Fixture.overlayHost, endOfStream: true)],
            offending: Envoy.requestTrailers(), kind: .afterEndOfStream),
        Violation(
            name: "§1.2 response headers with end_of_stream, then a body", accepted: [headers, Envoy.requestBody("x", endOfStream: true), Envoy.responseHeaders(endOfStream: true)],
            offending: Envoy.responseBody("y", endOfStream: true), kind: .afterEndOfStream),
        Violation(
            name: "duplicate request_headers", accepted: [headers], offending: Envoy.requestHeaders(authority: Fixture.overlayHost),
            kind: .duplicate),
        Violation(
            name: "duplicate response_headers", accepted: [headers, Envoy.responseHeaders()], offending: Envoy.responseHeaders(), kind: .duplicate),
        Violation(
            name: "request_headers after request_body", accepted: [headers, Envoy.requestBody("x", endOfStream: false)],
            offending: Envoy.requestHeaders(authority: Fixture.overlayHost), kind: .outOfOrder),
        Violation(
            name: "response_headers after response_body", accepted: [headers, Envoy.responseHeaders(), Envoy.responseBody("x", endOfStream: false)],
            offending: Envoy.responseHeaders(), kind: .outOfOrder),
        Violation(
            name: "request body after request trailers", accepted: [headers, Envoy.requestBody("x", endOfStream: false), Envoy.requestTrailers()],
            offending: Envoy.requestBody("y", endOfStream: true), kind: .afterEndOfStream),
        Violation(
            name: "response body after response trailers", accepted: [headers, Envoy.responseHeaders(), Envoy.responseTrailers()],
            offending: Envoy.responseBody("y", endOfStream: true), kind: .afterEndOfStream),
        Violation(
            name: "request body after the last chunk (end_of_stream)", accepted: [headers, Envoy.requestBody("x", endOfStream: true)],
            offending: Envoy.requestBody("y", endOfStream: true), kind: .afterEndOfStream),
        Violation(
            name: "request trailers twice", accepted: [headers, Envoy.requestTrailers()], offending: Envoy.requestTrailers(), kind: .afterEndOfStream),
        Violation(
            name: "§1 protocol_config on message 2", accepted: [headers],
            offending: Envoy.requestBody("x", endOfStream: true).withProtocolConfig(request: .streamed, response: .streamed),
            kind: .protocolConfigNotFirst),
        Violation(name: "empty oneof as the first message", accepted: [], offending: Envoy.empty(), kind: .emptyRequest),
        Violation(name: "empty oneof mid-exchange", accepted: [headers], offending: Envoy.empty(), kind: .emptyRequest),
        Violation(
            name: "request_headers after response_headers (request body still streaming)",
            accepted: [headers, Envoy.requestBody("x", endOfStream: false), Envoy.responseHeaders()],
            offending: Envoy.requestHeaders(authority: Fixture.overlayHost), kind: .outOfOrder),
        // The request side is checked first: once the request ended, that is what gets reported.
        Violation(
            name: "request_headers after response_headers (request ended)",
            accepted: [headers, Envoy.requestBody("x", endOfStream: true), Envoy.responseHeaders()],
            offending: Envoy.requestHeaders(authority: Fixture.overlayHost), kind: .afterEndOfStream),
        Violation(
            name: "request_headers after response_headers (request headers skipped)", accepted: [Envoy.responseHeaders()],
            offending: Envoy.requestHeaders(authority: Fixture.overlayHost), kind: .outOfOrder),
    ]

    @Test("each violation throws its kind; everything before it was accepted", arguments: violations)
    func violation(_ violation: Violation) throws {
        var machine = try Fixture.machine()
        _ = try drive(&machine, violation.accepted)
        let error = #expect(throws: ExchangeError.self) { try machine.receive(violation.offending) }
        #expect(error?.kind == violation.kind)
        #expect(error?.description.hasPrefix("\(violation.kind.name): ") == true)
    }

    @Test("after an immediate_response every message is a violation (§4)", arguments: [
        Envoy.requestBody("x", endOfStream: true), Envoy.requestTrailers(), Envoy.responseHeaders(),
        Envoy.responseBody("x", endOfStream: true), Envoy.responseTrailers(),
        Envoy.requestHeaders(authority: Fixture.overlayHost), Envoy.empty(),
    ])
    func afterImmediateResponse(next: ProcessingRequest) throws {
        var machine = try Fixture.machine()
        let first = try machine.receive(Envoy.requestHeaders(authority: Fixture.overlayHost, path: "/__overlay/healthz"))
        #expect(first.answers.first?.hasImmediateResponse == true)
        let error = #expect(throws: ExchangeError.self) { try machine.receive(next) }
        #expect(error?.kind == .afterImmediateResponse)
    }

    @Test("error kinds carry their metric labels")
    func kindLabels() {
        #expect(ExchangeError.Kind.all.map(\.name) == [
            "empty_request", "duplicate", "out_of_order", "after_end_of_stream", "protocol_config_not_first",
            "after_immediate_response", "undecodable", "framing",
        ])
        #expect(Set(ExchangeError.Kind.all).count == ExchangeError.Kind.all.count)
        #expect(ExchangeError(.framing, "oversized").description == "framing: oversized")
    }
}

private extension ProcessingResponse {
    var hasImmediateResponse: Bool {
        if case .immediateResponse? = response { return true }
        return false
    }
}

// MARK: - Own endpoints (§4)

@Suite("ExchangeStateMachine: own endpoints")
struct OwnEndpointTests {
    static func immediate(_ code: Envoy_Type_V3_StatusCode, body: String, headers: [(String, String)]) -> ProcessingResponse {
        var immediate = Envoy_Service_ExtProc_V3_ImmediateResponse()
        immediate.status.code = code
        immediate.body = Data(body.utf8)
        immediate.headers.setHeaders = headers.map { name, value in
            var option = Envoy_Config_Core_V3_HeaderValueOption()
            option.header.key = name
            option.header.rawValue = Data(value.utf8)
            return option
        }
        immediate.details = "overlayd_own_endpoint"
        var response = ProcessingResponse()
        response.immediateResponse = immediate
        return response
    }

    static let healthz = immediate(.ok, body: "ok\n", headers: [("content-type", "text/plain; charset=utf-8"), ("cache-control", "no-store")])

    @Test("/__overlay/healthz on an overlay host → immediate_response 200 \"ok\\n\"", arguments: [
        (Fixture.overlayHost, "GET"), (Fixture.overlayHost + ":443", "HEAD"), (Fixture.wildcardHost, "GET"),
    ])
    func healthz(authority: String, method: String) throws {
        var machine = try Fixture.machine()
        let action = try machine.receive(
            Envoy.requestHeaders(authority: authority, path: "/__overlay/healthz?from=k8s", method: method, endOfStream: true)
                .withProtocolConfig(request: .buffered, response: .buffered))
        #expect(action.sent == .message(Self.healthz))

        let answer = try #require(action.answers.first)
        guard case .immediateResponse(let immediate)? = answer.response else {
            Issue.record("expected immediate_response, got \(answer)")
            return
        }
        #expect(immediate.status.code == .ok)
        #expect(immediate.status.code.rawValue == 200)
        #expect(immediate.body == Data("ok\n".utf8))
        let contentType = try #require(immediate.headers.setHeaders.first { $0.header.key == "content-type" })
        // §5: Envoy reads raw_value only, and value + raw_value together is an error.
        #expect(contentType.header.rawValue == Data("text/plain; charset=utf-8".utf8))
        #expect(contentType.header.value.isEmpty)
        #expect(immediate.headers.setHeaders.allSatisfy { !$0.header.rawValue.isEmpty && $0.header.value.isEmpty })
        guard case .ownEndpoint(let local)? = machine.decision else {
            Issue.record("expected an own-endpoint decision, got \(String(describing: machine.decision))")
            return
        }
        #expect(local.status == 200)
    }

    @Test("other methods → 405 with allow; unknown endpoints → 404")
    func errors() throws {
        var post = try Fixture.machine()
        #expect(try post.receive(Envoy.requestHeaders(authority: Fixture.overlayHost, path: "/__overlay/healthz", method: "POST")).sent
            == .message(Self.immediate(.methodNotAllowed, body: "method not allowed\n", headers: [
                ("content-type", "text/plain; charset=utf-8"), ("allow", "GET, HEAD"),
            ])))
        var unknown = try Fixture.machine()
        #expect(try unknown.receive(Envoy.requestHeaders(authority: Fixture.overlayHost, path: "/__overlay/nope")).sent
            == .message(Self.immediate(.notFound, body: "overlayd: no such endpoint /__overlay/nope\n", headers: [
                ("content-type", "text/plain; charset=utf-8"), ("cache-control", "no-store"),
            ])))
    }

    @Test("/__overlay/healthz on an unknown host is passed through")
    func unknownHost() throws {
        var machine = try Fixture.machine()
        #expect(try machine.receive(Envoy.requestHeaders(authority: Fixture.unknownHost, path: "/__overlay/healthz")).sent == .canned(.passThrough))
    }
}

// MARK: - Header values (§1.2)

@Suite("ExchangeStateMachine: header values")
struct HeaderValueTests {
    @Test("values in `value` (older Envoy, no raw_value) are honoured for :authority, :path and :method")
    func valueField() throws {
        let config = try Fixture.config()
        var overlay = ExchangeStateMachine(config: config)
        #expect(try overlay.receive(Envoy.requestHeaders(authority: "SHOP.example.com:443", raw: false)).sent == .overlayRequestHeaders(model: try Fixture.model(for: Fixture.overlayHost)))
        #expect(overlay.decision == .overlay(config.overlays[0]))

        var own = ExchangeStateMachine(config: config)
        #expect(try own.receive(Envoy.requestHeaders(authority: Fixture.overlayHost, path: "/__overlay/healthz", method: "HEAD", raw: false)).sent
            == .message(OwnEndpointTests.healthz))

        var unknown = ExchangeStateMachine(config: config)
        #expect(try unknown.receive(Envoy.requestHeaders(authority: Fixture.unknownHost, raw: false)).sent == .canned(.passThrough))
    }

    @Test("raw_value wins over value when both are set")
    func rawWins() throws {
        var headers = Envoy_Service_ExtProc_V3_HttpHeaders()
        var authority = Envoy.header(":authority", Fixture.overlayHost)
        authority.value = Fixture.unknownHost
        headers.headers.headers = [authority]
        var message = ProcessingRequest()
        message.requestHeaders = headers
        var machine = try Fixture.machine()
        #expect(try machine.receive(message).sent == .overlayRequestHeaders(model: try Fixture.model(for: Fixture.overlayHost)))
    }

    @Test("a missing :authority is an unknown host; a missing :path or :method is / and GET")
    func missingPseudoHeaders() throws {
        var noAuthority = ProcessingRequest()
        noAuthority.requestHeaders.headers = Envoy.headerMap([(":path", "/__overlay/healthz"), ("host", Fixture.overlayHost)])
        var machine = try Fixture.machine()
        #expect(try machine.receive(noAuthority).sent == .canned(.passThrough))

        var authorityOnly = ProcessingRequest()
        authorityOnly.requestHeaders.headers = Envoy.headerMap([(":authority", Fixture.overlayHost)])
        var second = try Fixture.machine()
        #expect(try second.receive(authorityOnly).sent == .overlayRequestHeaders(model: try Fixture.model(for: Fixture.overlayHost)))
    }

    @Test("textValue: raw_value when set, else value; binary raw values do not trap", arguments: [
        (Data("raw".utf8), "value", "raw"), (Data(), "value", "value"), (Data(), "", ""),
        (Data([0x76, 0xC3, 0x28]), "", "v\u{FFFD}("),
    ])
    func textValue(raw: Data, value: String, expected: String) {
        var header = HeaderValue()
        header.rawValue = raw
        header.value = value
        #expect(header.textValue == expected)
    }
}

// MARK: - Configuration snapshot

@Suite("ExchangeStateMachine: configuration snapshot")
struct SnapshotTests {
    @Test("a machine keeps deciding by the configuration it was created with")
    func keepsItsSnapshot() throws {
        let configA = try Fixture.config()
        let configB = try ConfigLoader.load(text: """
            apiVersion: orchestrator.io/v1
            kind: AIOverlay
            metadata: {name: other}
            spec: {hostApp: other.example.com, models: [{name: m, weight: 100}]}
            """, source: "b.yaml")
        var store = configA  // what a ConfigStore would hand out
        var machineA = ExchangeStateMachine(config: store)
        store = configB  // a reload happens while the exchange is in flight
        var machineB = ExchangeStateMachine(config: store)

        #expect(try machineA.receive(Envoy.requestHeaders(authority: Fixture.overlayHost)).sent == .overlayRequestHeaders(model: try Fixture.model(for: Fixture.overlayHost)))
        #expect(machineA.decision == .overlay(configA.overlays[0]))
        #expect(try machineB.receive(Envoy.requestHeaders(authority: Fixture.overlayHost)).sent == .canned(.passThrough))

        var machineA2 = ExchangeStateMachine(config: configA)
        #expect(try machineA2.receive(Envoy.requestHeaders(authority: "other.example.com")).sent == .canned(.passThrough))
        var machineB2 = ExchangeStateMachine(config: configB)
        #expect(try machineB2.receive(Envoy.requestHeaders(authority: "other.example.com")).sent == .overlayRequestHeaders(model: "m"))
    }

    @Test("copies of a machine move independently (value semantics)")
    func valueSemantics() throws {
        var original = try Fixture.machine()
        _ = try original.receive(Envoy.requestHeaders(authority: Fixture.overlayHost))
        var copy = original
        #expect(try copy.receive(Envoy.requestBody("x", endOfStream: true)).sent == .canned(.continueRequestBody))
        #expect(try original.receive(Envoy.requestBody("y", endOfStream: false)).sent == .canned(.continueRequestBody))
        let error = #expect(throws: ExchangeError.self) { try copy.receive(Envoy.requestBody("z", endOfStream: true)) }
        #expect(error?.kind == .afterEndOfStream)
    }
}
