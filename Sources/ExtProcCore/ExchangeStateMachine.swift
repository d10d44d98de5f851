import ExtProcProto
import Foundation
import OverlayCore
import OverlayDecisions
import OverlayInject
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
    /// ``ExchangeStateMachine/askAnswer(_:)`` of the pending result (its token is polled).
    case answerAsk(OverlayPlan)
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

/// The per-exchange protocol state machine: one per `Process` stream, fed every `ProcessingRequest`
/// in arrival order; each call returns what to send. Pure: no I/O, no clock, no shared state.
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

    private let config: OverlayConfig
    private var messages = 0
    private var request = DirectionPhase.idle
    private var response = DirectionPhase.idle
    private var requestBodyMode = BodySendMode.none
    private var responseBodyMode = BodySendMode.none
    private var immediateResponseSent = false

    /// What was decided at request headers (nil until then, or if request headers are skipped).
    public private(set) var decision: RequestDecision?
    /// The overlay plan of an overlaid request (set at request headers).
    public private(set) var plan: OverlayPlan?
    /// What was decided for the response body (set at response headers of an overlaid request).
    public private(set) var responsePlan: ResponsePlan?
    /// The body rewrite under way, if any (its `outcome` is read for metrics).
    public private(set) var rewrite: ResponseRewrite?
    /// The AI result the response phase puts into the page; the adapter sets it before passing
    /// response headers (see ``wantsResult(for:)``).
    public var result: OverlayResultView?
    private var overlay: Overlay?
    /// A follow-up question in progress (`POST /__overlay/api/ask`): its overlay, host, headers, body.
    private var ask: (overlay: Overlay, host: String, headers: HeaderList, body: [UInt8])?
    private var method: Substring = "GET"
    private var path: Substring = "/"
    private var random: SplitMix64
    private let results: (any OverlayResultLookup)?
    private let codec: (any BodyCodec)?

    /// - Parameters:
    ///   - config: the snapshot this exchange keeps for its whole life.
    ///   - seed: the per-exchange random source (splits without a user key, shadow sampling).
    ///   - results: where `/__overlay/results/{token}` looks results up.
    ///   - codec: decodes gzip/deflate pages so they can be injected (nil: encoded pages pass through).
    public init(
        config: OverlayConfig, seed: UInt64 = 0, results: (any OverlayResultLookup)? = nil, codec: (any BodyCodec)? = nil
    ) {
        self.config = config
        self.random = SplitMix64(seed: seed)
        self.results = results
        self.codec = codec
    }

    /// True when `message` is the response headers of an overlaid exchange whose body would be
    /// rewritten: the adapter then sets ``result`` first (waiting up to the latency budget). The
    /// decision is kept, so ``receive(_:)`` does not make it again for the same headers.
    public mutating func wantsResult(for message: ProcessingRequest) -> Bool {
        guard plan != nil, case .responseHeaders(let headers) = message.request, !message.observabilityMode,
            let decided = decideResponse(headers)
        else { return false }
        responsePlan = decided
        switch decided {
        case .html, .json: return true
        case .untouched: return false
        }
    }

    /// The response plan of an overlaid exchange's response headers (nil when not overlaid).
    private func decideResponse(_ headers: Envoy_Service_ExtProc_V3_HttpHeaders) -> ResponsePlan? {
        guard let overlay else { return nil }
        return ResponsePlan.decide(
            settings: overlay.settings, method: method, path: path, headers: headers.headers.headers,
            decodable: codec?.encodings ?? [])
    }

    /// The overlay of this exchange, if it is overlaid.
    public var overlaySettings: OverlaySettings? { overlay?.settings }

    /// Steps the machine with the next message from Envoy.
    public mutating func receive(_ message: ProcessingRequest) throws(ExchangeError) -> ExchangeAction {
        messages += 1
        if message.hasProtocolConfig {
            guard messages == 1 else {
                throw ExchangeError(.protocolConfigNotFirst, "protocol_config on message \(messages); Envoy sends it only on the first")
            }
            requestBodyMode = message.protocolConfig.requestBodyMode
            responseBodyMode = message.protocolConfig.responseBodyMode
        }
        if immediateResponseSent {
            throw ExchangeError(.afterImmediateResponse, "message after the exchange was answered with immediate_response")
        }
        let observe = message.observabilityMode
        switch message.request {
        case nil:
            throw ExchangeError(.emptyRequest, "ProcessingRequest with no phase set")

        case .requestHeaders(let headers):
            if request == .idle && response != .idle {
                throw ExchangeError(.outOfOrder, "request_headers after the response phase began")
            }
            try Self.enterHeaders(&request, direction: "request", endOfStream: headers.endOfStream)
            let decision = Self.decide(config: config, headers: headers.headers.headers)
            self.decision = decision
            if observe { return .none }
            switch decision {
            case .passThrough:
                return .respond(.canned(.passThrough))
            case .overlay(let overlay):
                let list = headers.headers.headers
                var host = ""
                for header in list where header.key == ":authority" || header.key == ":path" || header.key == ":method" {
                    switch header.key {
                    case ":authority": host = header.textValue
                    case ":path": path = header.textValue[...]
                    default: method = header.textValue[...]
                    }
                }
                let plan = overlay.plan(
                    method: String(method), host: host, path: String(path),
                    headers: list.lazy.filter { $0.key.first != ":" }.map { (name: $0.key, value: $0.textValue) },
                    random: &random)
                self.overlay = overlay
                self.plan = plan
                return .respondAndCall(.message(Self.planAnswer(plan, overlay: overlay, version: config.version)), plan)
            case .ownEndpoint(let local):
                immediateResponseSent = true
                return .respond(.message(Self.immediateResponse(local)))
            case .result(let token):
                immediateResponseSent = true
                return .respond(.message(Self.immediateResponse(Self.resultResponse(token: token, results: results))))
            case .ask(let overlay):
                if headers.endOfStream {
                    immediateResponseSent = true
                    return .respond(.message(Self.immediateResponse(Self.askError("a question needs a JSON body"))))
                }
                let list = headers.headers.headers
                let host = list.first(where: { $0.key == ":authority" })?.textValue ?? ""
                ask = (overlay, host, list.filter { $0.key.first != ":" }.map { (name: $0.key, value: $0.textValue) }, [])
                // The question is in the body: have Envoy buffer it and send it whole.
                var answer = ProcessingResponse()
                answer.requestHeaders = .init()
                var mode = ProcessingMode()
                mode.requestBodyMode = .buffered
                answer.modeOverride = mode
                return .respond(.message(answer))
            }

        case .responseHeaders(let headers):
            try Self.enterHeaders(&response, direction: "response", endOfStream: headers.endOfStream)
            if observe { return .none }
            guard let overlay, let plan, let decided = responsePlan ?? decideResponse(headers) else {
                return .respond(.canned(.continueResponseHeaders))
            }
            responsePlan = decided
            let view = result ?? OverlayResultView(overlay: plan.overlay, model: plan.model, token: "", status: .pending)
            rewrite = ResponseRewrite(plan: decided, settings: overlay.settings, view: view, codec: codec)
            if headers.endOfStream {
                // No body follows: nothing to rewrite, nothing to switch off.
                rewrite = nil
                return .respond(.canned(.continueResponseHeaders))
            }
            return .respond(.message(Self.responseHeadersAnswer(rewriting: rewrite != nil, configured: responseBodyMode)))

        case .requestBody(let body):
            try Self.enterBody(&request, direction: "request", endOfStream: body.endOfStream)
            if observe { return .none }
            if var pending = ask {
                pending.body.append(contentsOf: body.body.prefix(AskRequest.maxBodyBytes + 1 - min(pending.body.count, AskRequest.maxBodyBytes + 1)))
                ask = pending
                guard body.endOfStream else { return .respond(.canned(.continueRequestBody)) }
                immediateResponseSent = true
                switch AskRequest.parse(pending.body) {
                case .failure(let error):
                    return .respond(.message(Self.immediateResponse(Self.askError(error.message))))
                case .success(let question):
                    let plan = pending.overlay.planAsk(question, host: pending.host, headers: pending.headers, random: &random)
                    self.plan = plan
                    return .answerAsk(plan)
                }
            }
            if Self.answersStreamed(requestBodyMode) {
                return .respondStreamed(Self.streamedEcho(body, request: true))
            }
            return .respond(.canned(.continueRequestBody))

        case .responseBody(let body):
            try Self.enterBody(&response, direction: "response", endOfStream: body.endOfStream)
            if observe { return .none }
            if rewrite != nil {
                let replaced = rewrite!.rewrite(body.body, endOfStream: body.endOfStream)
                if Self.answersStreamed(responseBodyMode) {
                    var echoed = body
                    if let replaced { echoed.body = Data(replaced) }
                    return .respondStreamed(Self.streamedEcho(echoed, request: false))
                }
                guard let replaced else { return .respond(.canned(.continueResponseBody)) }
                var answer = ProcessingResponse()
                answer.responseBody.response.bodyMutation.body = Data(replaced)
                return .respond(.message(answer))
            }
            if Self.answersStreamed(responseBodyMode) {
                return .respondStreamed(Self.streamedEcho(body, request: false))
            }
            return .respond(.canned(.continueResponseBody))

        case .requestTrailers:
            try Self.enterTrailers(&request, direction: "request")
            return observe ? .none : .respond(.canned(.continueRequestTrailers))

        case .responseTrailers:
            try Self.enterTrailers(&response, direction: "response")
            return observe ? .none : .respond(.canned(.continueResponseTrailers))
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

    /// Finds `:authority` and asks the router; `:path` and `:method` are read only when the host
    /// has an overlay (pass-through, the common case, converts one header value to text).
    static func decide(config: OverlayConfig, headers: [Envoy_Config_Core_V3_HeaderValue]) -> RequestDecision {
        if config.routes.isEmpty { return .passThrough }
        guard let authority = headers.first(where: { $0.key == ":authority" }) else { return .passThrough }
        guard config.overlay(forAuthority: authority.textValue[...]) != nil else { return .passThrough }
        var path: Substring = "/"
        var method: Substring = "GET"
        var ifNoneMatch: Substring?
        for header in headers {
            switch header.key {
            case ":path": path = header.textValue[...]
            case ":method": method = header.textValue[...]
            case "if-none-match": ifNoneMatch = header.textValue[...]
            default: continue
            }
        }
        return RequestRouter.decide(
            config: config, authority: authority.textValue[...], path: path, method: method, ifNoneMatch: ifNoneMatch)
    }

    /// The request-headers answer of an overlaid request: the chosen model as a request header for
    /// the host app, and the decision as dynamic metadata (namespace `overlayd`) for access logs.
    static func planAnswer(_ plan: OverlayPlan, overlay: Overlay, version: String) -> ProcessingResponse {
        var answer = ProcessingResponse()
        var option = Envoy_Config_Core_V3_HeaderValueOption()
        option.header.key = overlay.settings.modelHeader
        option.header.rawValue = Data(plan.model.utf8)
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
    static func responseHeadersAnswer(rewriting: Bool, configured: BodySendMode) -> ProcessingResponse {
        var answer = ProcessingResponse()
        answer.responseHeaders = .init()
        var mode = ProcessingMode()
        if rewriting {
            answer.responseHeaders.response.headerMutation.removeHeaders = ["content-length"]
            switch configured {
            case .streamed, .fullDuplexStreamed, .buffered: return answer
            default: mode.responseBodyMode = .streamed
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

    static func askError(_ message: String) -> LocalResponse {
        LocalResponse.askError(message)
    }

    static func resultResponse(token: String, results: (any OverlayResultLookup)?) -> LocalResponse {
        LocalResponse.result(token: token, results: results)
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

    static func streamedEcho(_ body: Envoy_Service_ExtProc_V3_HttpBody, request: Bool) -> [ProcessingResponse] {
        let bytes = body.body
        var answers: [ProcessingResponse] = []
        var start = bytes.startIndex
        repeat {
            let end = min(start + maxStreamedChunk, bytes.endIndex)
            var streamed = Envoy_Service_ExtProc_V3_StreamedBodyResponse()
            streamed.body = bytes[start..<end]
            streamed.endOfStream = end == bytes.endIndex ? body.endOfStream : false
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

extension Envoy_Config_Core_V3_HeaderValue {
    /// The value as text: `raw_value` when set (current Envoy, §1.2), else `value`.
    public var textValue: String {
        rawValue.isEmpty ? value : String(decoding: rawValue, as: UTF8.self)
    }
}
