import ExtProcProto
import Foundation
import OverlayCore
import OverlayDecisions
import SwiftProtobuf

/// What the adapter does after one `ProcessingRequest`.
public enum ExchangeAction: Sendable {
    /// Send this one answer.
    case respond(ExchangeAnswer)
    /// Send these answers in order (FULL_DUPLEX_STREAMED re-chunking of one body message).
    case respondStreamed([ProcessingResponse])
    /// Send nothing: observability mode, where Envoy expects no answers (§1.5).
    case none
    /// Send this answer and start the model call(s) of this plan (request headers of an overlaid
    /// request).
    case respondAndCall(ExchangeAnswer, OverlayPlan)
    /// Start the model call of this follow-up question and answer the exchange at once with
    /// ``ExchangeStateMachine/askAnswer(_:)`` of the call's pending result (its token is polled).
    case answerAsk(OverlayPlan)
    /// Hold this message (response headers) and every later one until
    /// ``ExchangeStateMachine/resume(with:)``: call it with the result when it arrives, or at
    /// `deadline` (the clock of `now`) with the call's pending view.
    case wait(deadline: UInt64)
}

/// One answer: a constant the adapter may have pre-encoded, or a message built for this exchange.
public enum ExchangeAnswer: Sendable {
    case canned(CannedResponse)
    case message(ProcessingResponse)

    public var message: ProcessingResponse {
        switch self {
        case .canned(let canned): return canned.message
        case .message(let message): return message
        }
    }
}

/// Envoy's side of one exchange: one per `Process` stream, fed every `ProcessingRequest` in
/// arrival order; each call returns what to send. Pure: no I/O; the clock (`now`) is a parameter.
///
/// It checks Envoy's protocol (phase order, `protocol_config`, observability mode, body modes),
/// turns each message into an event of the transport-neutral ``OverlayExchange`` (which makes
/// every overlay decision, for the reverse proxy too) and turns the exchange's answer into
/// `ProcessingResponse`s.
///
/// Envoy drives the two directions with independent state machines (envoy-ext-proc.md §1), so each
/// direction here moves on its own:
///
///     idle ──headers──▶ headers ──body──▶ body ──body(eos)──▶ ended
///       │                  │  └──────────trailers──────────────▶ ended
///       │                  └──headers(eos)──▶ ended
///       └──body / trailers (header mode SKIP)──▶ body / ended
///
/// A message that does not fit (a duplicate phase, a phase after a later one, anything after the
/// direction ended, `protocol_config` after the first message, an empty oneof) throws
/// ``ExchangeError``; the adapter then ends only this stream, failing open. Request headers after
/// the response direction started are out of order too.
///
/// Answer shapes (§2): each message gets exactly one answer of the matching type, except in
/// observability mode (none) and FULL_DUPLEX_STREAMED bodies (the chunk is echoed back as
/// `streamed_response`, re-chunked to at most ``maxStreamedChunk`` bytes per message, §1.3/§14).
public struct ExchangeStateMachine: Sendable {
    /// Largest `streamed_response` body per message (Envoy recommends ≤ 64 KiB, §14).
    public static let maxStreamedChunk = 64 * 1024

    enum DirectionPhase: Sendable, Equatable {
        case idle, headers, body, ended
    }

    private var messages = 0
    private var request = DirectionPhase.idle
    private var response = DirectionPhase.idle
    private var requestBodyMode = BodySendMode.none
    private var responseBodyMode = BodySendMode.none
    /// The response body comes as BUFFERED_PARTIAL (asked for, or configured): its first message
    /// is the last one.
    private var responseFirstBodyIsLast = false
    private var responseBodySeen = false
    /// `send_body_without_waiting_for_header_response`: Envoy then ignores `mode_override` (§3).
    private var sendsBodyWithoutWaiting = false

    /// Whether Envoy can honour a `mode_override` at all (§3: not with a FULL_DUPLEX_STREAMED body
    /// mode in either direction, nor when bodies do not wait for the headers answer; it also needs
    /// `allow_mode_override`, which the protocol does not tell).
    private var overrideMayBeHonoured: Bool {
        requestBodyMode != .fullDuplexStreamed && responseBodyMode != .fullDuplexStreamed && !sendsBodyWithoutWaiting
    }
    private var immediateResponseSent = false

    /// The transport-neutral exchange: every overlay decision is its.
    public private(set) var exchange: OverlayExchange

    /// What the router decided at request headers (nil until then, or if request headers are skipped).
    public var decision: RequestDecision? { exchange.routing }
    /// The overlay plan of an overlaid request (set at request headers).
    public var plan: OverlayPlan? { exchange.plan }
    /// What was decided for the response body (set at response headers of an overlaid request).
    public var responsePlan: ResponsePlan? { exchange.responsePlan }
    /// The body rewrite under way, if any.
    public var rewrite: ResponseRewrite? { exchange.rewrite }
    /// The overlay of this exchange, if it is overlaid.
    public var overlaySettings: OverlaySettings? { exchange.overlaySettings }

    /// - Parameters:
    ///   - config: the snapshot this exchange keeps for its whole life.
    ///   - seed: the per-exchange random source (splits without a user key, shadow sampling).
    ///   - results: where `/__overlay/results/{token}` looks results up.
    ///   - codec: decodes gzip/deflate pages so they can be injected (nil: encoded pages pass through).
    public init(
        config: OverlayConfig, seed: UInt64 = 0, results: (any OverlayResultLookup)? = nil, codec: (any BodyCodec)? = nil
    ) {
        exchange = OverlayExchange(config: config, seed: seed, results: results, codec: codec)
    }

    /// Envoy's side of `exchange`, a new one (before its request head).
    public init(exchange: OverlayExchange) {
        self.exchange = exchange
    }

    /// What happened to the response body, once known; given once (for the metrics).
    public mutating func takeInjection() -> OverlayExchange.Injection? { exchange.takeInjection() }

    /// Steps the machine with the next message from Envoy. `now` is the monotonic clock in
    /// nanoseconds (the latency budget is measured on it); `ready` is the model call's result if
    /// it is in already.
    public mutating func receive(
        _ message: some ExtProcRequest, now: UInt64 = 0, ready: OverlayResultView? = nil
    ) throws(ExchangeError) -> ExchangeAction {
        messages += 1
        if let settings = message.protocolSettings {
            guard messages == 1 else {
                throw ExchangeError(.protocolConfigNotFirst, "protocol_config on message \(messages); Envoy sends it only on the first")
            }
            requestBodyMode = settings.requestBodyMode
            responseBodyMode = settings.responseBodyMode
            sendsBodyWithoutWaiting = settings.sendBodyWithoutWaitingForHeaderResponse
        }
        if immediateResponseSent {
            throw ExchangeError(.afterImmediateResponse, "message after the exchange was answered with immediate_response")
        }
        let observe = message.observabilityMode
        switch message.phase {
        case nil:
            throw ExchangeError(.emptyRequest, "ProcessingRequest with no phase set")

        case .requestHeaders(let headers, let endOfStream):
            if request == .idle && response != .idle {
                throw ExchangeError(.outOfOrder, "request_headers after the response phase began")
            }
            try Self.enterHeaders(&request, direction: "request", endOfStream: endOfStream)
            let action = exchange.requestHead(headers, endOfStream: endOfStream, now: now)
            if observe { return .none }
            switch action {
            case .passThrough:
                return .respond(.canned(.passThrough))
            case .forward(let header, let plan):
                return .respondAndCall(.message(Self.planAnswer(plan, header: header, version: exchange.configuration.version)), plan)
            case .answer(let local):
                immediateResponseSent = true
                return .respond(.message(Self.immediateResponse(local)))
            case .readBody:
                // The question is in the body: have Envoy buffer it and send it whole.
                var answer = ProcessingResponse()
                answer.requestHeaders = .init()
                var mode = ProcessingMode()
                mode.requestBodyMode = .buffered
                answer.modeOverride = mode
                return .respond(.message(answer))
            }

        case .responseHeaders(let headers, let endOfStream):
            try Self.enterHeaders(&response, direction: "response", endOfStream: endOfStream)
            if observe { return .none }
            // Only the fields the response plan reads are turned into text.
            var status = 0
            var fields: [(name: String, value: String)] = []
            for (name, value) in headers.values(named: ResponsePlan.relevantHeaders) {
                if name == ":status" {
                    status = Int(value) ?? 0
                } else {
                    fields.append((name, value))
                }
            }
            let action = exchange.responseHead(
                status: status, fields: fields, endOfStream: endOfStream, ready: ready, now: now)
            if case .wait(let deadline) = action { return .wait(deadline: deadline) }
            return .respond(responseHeadersAnswer(action))

        case .requestBody(let body, let endOfStream):
            try Self.enterBody(&request, direction: "request", endOfStream: endOfStream)
            if observe { return .none }
            switch exchange.requestBody(body, end: endOfStream) {
            case .answer(let local):
                immediateResponseSent = true
                return .respond(.message(Self.immediateResponse(local)))
            case .ask(let plan):
                immediateResponseSent = true
                return .answerAsk(plan)
            case .more:
                break
            }
            if Self.answersStreamed(requestBodyMode) {
                return .respondStreamed(Self.streamedEcho(Self.data(body), endOfStream: endOfStream, request: true))
            }
            return .respond(.canned(.continueRequestBody))

        case .responseBody(let body, let endOfStream):
            try Self.enterBody(&response, direction: "response", endOfStream: endOfStream)
            if observe { return .none }
            // BUFFERED: the one message is the whole body, even when trailers follow and
            // end_of_stream is false (§1.3); rewriting it must finish the body here.
            // BUFFERED_PARTIAL: the one message may be cut short (the rest passes unprocessed) or
            // be whole with trailers after it; either way no other message comes.
            let replaced =
                responseFirstBodyIsLast && !endOfStream && !responseBodySeen
                ? exchange.responseBodyLast(body)
                : exchange.responseBody(body, end: endOfStream || responseBodyMode == .buffered)
            responseBodySeen = true
            if Self.answersStreamed(responseBodyMode) {
                let echoed = replaced.map { Data($0) } ?? Self.data(body)
                return .respondStreamed(Self.streamedEcho(echoed, endOfStream: endOfStream, request: false))
            }
            guard let replaced else { return .respond(.canned(.continueResponseBody)) }
            var answer = ProcessingResponse()
            answer.responseBody.response.bodyMutation.body = Data(replaced)
            return .respond(.message(answer))

        case .requestTrailers:
            try Self.enterTrailers(&request, direction: "request")
            return observe ? .none : .respond(.canned(.continueRequestTrailers))

        case .responseTrailers:
            try Self.enterTrailers(&response, direction: "response")
            if observe { return .none }
            // FULL_DUPLEX_STREAMED: the body ends with the trailers; what the rewrite still holds
            // (a partial tag, a collected body) goes out first, as a last streamed chunk, then the
            // trailers answer (§1.3: body responses, then the trailers response).
            if Self.answersStreamed(responseBodyMode), let rest = exchange.responseBodyEnded(), !rest.isEmpty {
                var trailers = ProcessingResponse()
                trailers.responseTrailers = .init()
                return .respondStreamed(Self.streamedEcho(Data(rest), endOfStream: false, request: false) + [trailers])
            }
            return .respond(.canned(.continueResponseTrailers))
        }
    }

    /// The result arrived, or the latency budget ran out (`view` is then the call's pending
    /// view): the answer to the held response headers. Nil when nothing is held.
    public mutating func resume(with view: OverlayResultView) -> ExchangeAction? {
        guard let action = exchange.resume(with: view) else { return nil }
        return .respond(responseHeadersAnswer(action))
    }

    /// The exchange ended early (Envoy reset the stream): later events change nothing.
    public mutating func cancel() { exchange.cancel() }

    private mutating func responseHeadersAnswer(_ action: OverlayExchange.ResponseHeadAction) -> ExchangeAnswer {
        switch action {
        case .forward, .wait: return .canned(.continueResponseHeaders)
        case .forwardSkippingBody: return .message(Self.responseHeadersAnswer(rewriting: false, configured: responseBodyMode))
        case .forwardRewriting:
            // A body collected whole is asked for as one BUFFERED_PARTIAL message where Envoy may
            // honour that. Wherever it may still come STREAMED (the override ignored, or not
            // possible), its first message is taken as the last all the same: rewritten if whole
            // in itself, else sent unchanged with the rest. Held to an end_of_stream that trailers
            // would withhold (§15), it could be lost.
            let collectsWhole = exchange.rewrite?.collectsWholeBody ?? false
            let answer = Self.responseHeadersAnswer(
                rewriting: true, configured: responseBodyMode, collectsWhole: overrideMayBeHonoured && collectsWhole)
            let asked = answer.hasModeOverride ? answer.modeOverride.responseBodyMode : responseBodyMode
            responseFirstBodyIsLast =
                asked == .bufferedPartial
                || (collectsWhole && responseBodyMode != .buffered && !Self.answersStreamed(responseBodyMode))
            return .message(answer)
        }
    }

    /// Body modes whose chunks are answered with `streamed_response` (§1.3): FULL_DUPLEX_STREAMED,
    /// and GRPC, which the proto defines the same way though Envoy does not implement it yet.
    static func answersStreamed(_ mode: BodySendMode) -> Bool {
        mode == .fullDuplexStreamed || mode == .grpc
    }

    // MARK: - Transitions

    static func enterHeaders(_ phase: inout DirectionPhase, direction: String, endOfStream: Bool) throws(ExchangeError) {
        switch phase {
        case .idle: phase = endOfStream ? .ended : .headers
        case .headers: throw ExchangeError(.duplicate, "\(direction)_headers received twice")
        case .body: throw ExchangeError(.outOfOrder, "\(direction)_headers after \(direction)_body")
        case .ended: throw ExchangeError(.afterEndOfStream, "\(direction)_headers after the \(direction) ended")
        }
    }

    static func enterBody(_ phase: inout DirectionPhase, direction: String, endOfStream: Bool) throws(ExchangeError) {
        guard phase != .ended else {
            throw ExchangeError(.afterEndOfStream, "\(direction)_body after the \(direction) ended (end_of_stream or trailers seen)")
        }
        phase = endOfStream ? .ended : .body
    }

    static func enterTrailers(_ phase: inout DirectionPhase, direction: String) throws(ExchangeError) {
        guard phase != .ended else {
            throw ExchangeError(.afterEndOfStream, "\(direction)_trailers after the \(direction) ended")
        }
        phase = .ended
    }

    // MARK: - Decisions and answers

    /// The request-headers answer of an overlaid request: the chosen model as a request header for
    /// the host app, and the decision as dynamic metadata (namespace `overlayd`) for access logs.
    static func planAnswer(_ plan: OverlayPlan, header: (name: String, value: String), version: String) -> ProcessingResponse {
        var answer = ProcessingResponse()
        var option = Envoy_Config_Core_V3_HeaderValueOption()
        option.header.key = header.name
        option.header.rawValue = Data(header.value.utf8)
        answer.requestHeaders.response.headerMutation.setHeaders = [option]
        answer.dynamicMetadata = metadata(plan, version: version)
        return answer
    }

    static func metadata(_ plan: OverlayPlan, version: String) -> Google_Protobuf_Struct {
        var fields: [String: Google_Protobuf_Value] = [
            "overlay": Google_Protobuf_Value(stringValue: plan.overlay),
            "model": Google_Protobuf_Value(stringValue: plan.model),
            "config_version": Google_Protobuf_Value(stringValue: version),
            "sticky": Google_Protobuf_Value(boolValue: plan.sticky),
        ]
        if let challenger = plan.challenger { fields["shadow"] = Google_Protobuf_Value(stringValue: challenger) }
        var inner = Google_Protobuf_Struct()
        inner.fields = fields
        var outer = Google_Protobuf_Struct()
        outer.fields = ["overlayd": Google_Protobuf_Value(structValue: inner)]
        return outer
    }

    /// The response-headers answer of an overlaid exchange. Rewriting: drop `content-length`
    /// (the body changes; §8) and make sure the body is streamed to us. Not rewriting: ask Envoy
    /// not to send the body at all.
    ///
    /// A body collected whole (`collectsWhole`: JSON, content-coded) is asked for as
    /// BUFFERED_PARTIAL instead of STREAMED: with trailers after a STREAMED body, its last chunk
    /// comes with end_of_stream false and nothing after it (§15), so a body held to its end would
    /// be lost; one BUFFERED_PARTIAL message is final either way. (Envoy honours the override only
    /// with `allow_mode_override: true`, as the shipped configs set; otherwise such a body is
    /// rewritten only when it comes in one message.) A configured BUFFERED_PARTIAL is kept: an
    /// override Envoy ignores would leave us treating its one message as the first of many.
    static func responseHeadersAnswer(rewriting: Bool, configured: BodySendMode, collectsWhole: Bool = false) -> ProcessingResponse {
        var answer = ProcessingResponse()
        answer.responseHeaders = .init()
        var mode = ProcessingMode()
        if rewriting {
            answer.responseHeaders.response.headerMutation.removeHeaders = ["content-length"]
            switch configured {
            case .fullDuplexStreamed, .buffered, .bufferedPartial: return answer
            case .streamed:
                guard collectsWhole else { return answer }
                mode.responseBodyMode = .bufferedPartial
            default: mode.responseBodyMode = collectsWhole ? .bufferedPartial : .streamed
            }
        } else {
            mode.responseBodyMode = .none
        }
        answer.modeOverride = mode
        return answer
    }

    /// The immediate answer to a follow-up question: the (pending) result with its token.
    public static func askAnswer(_ view: OverlayResultView) -> ProcessingResponse {
        immediateResponse(LocalResponse.askAnswer(view))
    }

    static func immediateResponse(_ local: LocalResponse) -> ProcessingResponse {
        var immediate = Envoy_Service_ExtProc_V3_ImmediateResponse()
        immediate.status.code = Envoy_Type_V3_StatusCode(rawValue: local.status) ?? .internalServerError
        immediate.body = Data(local.body)
        var headers = [(String, String)]()
        headers.append(("content-type", local.contentType))
        headers.append(contentsOf: local.extraHeaders)
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

    /// A body's bytes as `Data`: swift-protobuf's as they are, a C view's copied once.
    static func data(_ body: some Collection<UInt8>) -> Data {
        if let data = body as? Data { return data }
        return body.withContiguousStorageIfAvailable { Data(buffer: $0) } ?? Data(body)
    }

    static func streamedEcho(_ bytes: Data, endOfStream: Bool, request: Bool) -> [ProcessingResponse] {
        var answers: [ProcessingResponse] = []
        var start = bytes.startIndex
        repeat {
            let end = min(start + maxStreamedChunk, bytes.endIndex)
            var streamed = Envoy_Service_ExtProc_V3_StreamedBodyResponse()
            streamed.body = bytes[start..<end]
            streamed.endOfStream = end == bytes.endIndex ? endOfStream : false
            var bodyResponse = Envoy_Service_ExtProc_V3_BodyResponse()
            bodyResponse.response.bodyMutation.streamedResponse = streamed
            var answer = ProcessingResponse()
            if request { answer.requestBody = bodyResponse } else { answer.responseBody = bodyResponse }
            answers.append(answer)
            start = end
        } while start < bytes.endIndex
        return answers
    }
}
