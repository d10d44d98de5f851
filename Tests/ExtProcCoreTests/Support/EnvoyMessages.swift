import ExtProcCore
import ExtProcProto
import Foundation
import OverlayCore
import OverlayDecisions
import SwiftProtobuf
import Testing

typealias HeaderValue = Envoy_Config_Core_V3_HeaderValue
typealias HeaderMap = Envoy_Config_Core_V3_HeaderMap
typealias StreamedBodyResponse = Envoy_Service_ExtProc_V3_StreamedBodyResponse
typealias BodyResponse = Envoy_Service_ExtProc_V3_BodyResponse

// MARK: - Fixture configuration

enum Fixture {
    /// `Fixtures/overlays.yaml`: `shop.example.com` (Canary) and `*.apps.example.com` (Shadow).
    static func config() throws -> OverlayConfig {
        let url = try #require(Bundle.module.url(forResource: "overlays", withExtension: "yaml", subdirectory: "Fixtures"))
        let text = try String(contentsOf: url, encoding: .utf8)
        return try ConfigLoader.load(text: text, source: "Fixtures/overlays.yaml")
    }

    static func machine() throws -> ExchangeStateMachine {
        ExchangeStateMachine(config: try config())
    }

    /// The model a fresh machine (seed 0, no user key) plans for an overlaid authority.
    static func model(for authority: String) throws -> String {
        let config = try config()
        let overlay = try #require(config.overlay(forAuthority: authority[...]))
        var random = SplitMix64(seed: 0)
        return overlay.plan(method: "GET", host: authority, path: "/", headers: [], random: &random).model
    }

    static let overlayHost = "shop.example.com"
    static let wildcardHost = "tenant-1.apps.example.com"
    static let unknownHost = "elsewhere.example.org"
}

// MARK: - What Envoy sends (envoy-ext-proc.md §1)

/// Builders for the `ProcessingRequest`s Envoy sends, shaped as §1.2 describes (lower-case keys,
/// pseudo-headers included, values in `raw_value` unless `raw` is false).
enum Envoy {
    static func header(_ key: String, _ value: String, raw: Bool = true) -> HeaderValue {
        var header = HeaderValue()
        header.key = key
        if raw { header.rawValue = Data(value.utf8) } else { header.value = value }
        return header
    }

    static func headerMap(_ pairs: [(String, String)], raw: Bool = true) -> HeaderMap {
        var map = HeaderMap()
        map.headers = pairs.map { header($0.0, $0.1, raw: raw) }
        return map
    }

    static func requestHeaders(
        authority: String, path: String = "/", method: String = "GET", endOfStream: Bool = false, raw: Bool = true
    ) -> ProcessingRequest {
        var headers = Envoy_Service_ExtProc_V3_HttpHeaders()
        headers.headers = headerMap(
            [(":authority", authority), (":path", path), (":method", method), (":scheme", "https"),
             ("user-agent", "curl/8"), ("accept", "*/*")],
            raw: raw)
        headers.endOfStream = endOfStream
        var message = ProcessingRequest()
        message.requestHeaders = headers
        return message
    }

    /// Response headers; text/plain by default, so an overlaid exchange leaves the body alone
    /// (the injection tests pass text/html).
    static func responseHeaders(
        status: String = "200", contentType: String = "text/plain", extra: [(String, String)] = [], endOfStream: Bool = false
    ) -> ProcessingRequest {
        var headers = Envoy_Service_ExtProc_V3_HttpHeaders()
        headers.headers = headerMap([(":status", status), ("content-type", contentType)] + extra)
        headers.endOfStream = endOfStream
        var message = ProcessingRequest()
        message.responseHeaders = headers
        return message
    }

    static func body(_ bytes: Data, endOfStream: Bool) -> Envoy_Service_ExtProc_V3_HttpBody {
        var body = Envoy_Service_ExtProc_V3_HttpBody()
        body.body = bytes
        body.endOfStream = endOfStream
        return body
    }

    static func requestBody(_ text: String, endOfStream: Bool) -> ProcessingRequest {
        requestBody(Data(text.utf8), endOfStream: endOfStream)
    }

    static func requestBody(_ bytes: Data, endOfStream: Bool) -> ProcessingRequest {
        var message = ProcessingRequest()
        message.requestBody = body(bytes, endOfStream: endOfStream)
        return message
    }

    static func responseBody(_ text: String, endOfStream: Bool) -> ProcessingRequest {
        responseBody(Data(text.utf8), endOfStream: endOfStream)
    }

    static func responseBody(_ bytes: Data, endOfStream: Bool) -> ProcessingRequest {
        var message = ProcessingRequest()
        message.responseBody = body(bytes, endOfStream: endOfStream)
        return message
    }

    static func requestTrailers() -> ProcessingRequest {
        var trailers = Envoy_Service_ExtProc_V3_HttpTrailers()
        trailers.trailers = headerMap([("x-checksum", "abc")])
        var message = ProcessingRequest()
        message.requestTrailers = trailers
        return message
    }

    static func responseTrailers() -> ProcessingRequest {
        var trailers = Envoy_Service_ExtProc_V3_HttpTrailers()
        trailers.trailers = headerMap([("grpc-status", "0")])
        var message = ProcessingRequest()
        message.responseTrailers = trailers
        return message
    }

    /// A message with no phase set (the oneof is empty).
    static func empty() -> ProcessingRequest { ProcessingRequest() }
}

extension ProcessingRequest {
    /// This message carrying `protocol_config` (Envoy sends it on the first message only, §1).
    func withProtocolConfig(request: BodySendMode, response: BodySendMode) -> ProcessingRequest {
        var copy = self
        copy.protocolConfig.requestBodyMode = request
        copy.protocolConfig.responseBodyMode = response
        return copy
    }

    /// This message as sent in observability mode (§1.5).
    func observed() -> ProcessingRequest {
        var copy = self
        copy.observabilityMode = true
        return copy
    }
}

// MARK: - What overlayd answers

/// An Equatable mirror of ``ExchangeAction``, so tests can compare whole actions exactly (a canned
/// answer is not the same as an equal message built per exchange).
enum Sent: Equatable, CustomStringConvertible {
    /// An overlaid request's headers: CONTINUE with the chosen model as a request header and the
    /// decision as dynamic metadata (the plan's model is named).
    case overlayRequestHeaders(model: String)
    /// An overlaid exchange's response headers, body untouched: CONTINUE and mode_override
    /// response_body_mode NONE.
    case overlayResponseHeaders
    /// An overlaid exchange's response headers, body rewritten: CONTINUE, content-length removed.
    case rewritingResponseHeaders
    /// A follow-up question to send to this model (answered by the adapter).
    case ask(model: String)
    case canned(CannedResponse)
    case message(ProcessingResponse)
    case streamed([ProcessingResponse])
    case none
    /// The response headers are held for the result (answered at `resume(with:)`).
    case waiting

    var description: String {
        switch self {
        case .overlayRequestHeaders(let model): return ".overlayRequestHeaders(\(model))"
        case .overlayResponseHeaders: return ".overlayResponseHeaders"
        case .rewritingResponseHeaders: return ".rewritingResponseHeaders"
        case .ask(let model): return ".ask(\(model))"
        case .canned(let canned): return ".canned(.\(canned))"
        case .message(let message): return ".message(\(message))"
        case .streamed(let messages): return ".streamed(\(messages.count) messages)"
        case .none: return ".none"
        case .waiting: return ".waiting"
        }
    }
}

extension ExchangeAction {
    var sent: Sent {
        switch self {
        case .respond(.canned(let canned)): return .canned(canned)
        case .respond(.message(let message)):
            if case .responseHeaders(let headers)? = message.response, headers.response.status == .continue {
                let mutation = headers.response.headerMutation
                if message.hasModeOverride, message.modeOverride.responseBodyMode == .none, mutation.removeHeaders.isEmpty,
                    mutation.setHeaders.isEmpty
                {
                    return .overlayResponseHeaders
                }
                if mutation.removeHeaders == ["content-length"] && mutation.setHeaders.isEmpty {
                    return .rewritingResponseHeaders
                }
            }
            return .message(message)
        case .respondStreamed(let messages): return .streamed(messages)
        case .answerAsk(let plan): return .ask(model: plan.model)
        case .respondAndCall(let answer, let plan):
            let message = answer.message
            guard case .requestHeaders(let headers)? = message.response, headers.response.status == .continue,
                headers.response.headerMutation.setHeaders.count == 1,
                headers.response.headerMutation.setHeaders[0].header.key == "x-overlay-model",
                headers.response.headerMutation.setHeaders[0].header.rawValue == Data(plan.model.utf8),
                message.dynamicMetadata.fields["overlayd"] != nil
            else { return .message(message) }
            return .overlayRequestHeaders(model: plan.model)
        case .none: return .none
        case .wait: return .waiting
        }
    }

    /// Every message the adapter would write for this action.
    var answers: [ProcessingResponse] {
        switch self {
        case .respond(let answer): return [answer.message]
        case .respondAndCall(let answer, _): return [answer.message]
        case .answerAsk, .wait: return []
        case .respondStreamed(let messages): return messages
        case .none: return []
        }
    }
}

extension ProcessingResponse {
    /// The phase this message answers (§2), or nil for `immediate_response` / an empty oneof.
    var answeredPhase: ExchangePhase? {
        switch response {
        case .requestHeaders: return .requestHeaders
        case .responseHeaders: return .responseHeaders
        case .requestBody: return .requestBody
        case .responseBody: return .responseBody
        case .requestTrailers: return .requestTrailers
        case .responseTrailers: return .responseTrailers
        case .immediateResponse, nil: return nil
        }
    }
}

/// The `streamed_response` answer a FULL_DUPLEX_STREAMED body chunk gets (§1.3, §6).
func streamedAnswer(_ bytes: Data, endOfStream: Bool, request: Bool) -> ProcessingResponse {
    var streamed = StreamedBodyResponse()
    streamed.body = bytes
    streamed.endOfStream = endOfStream
    var body = BodyResponse()
    body.response.bodyMutation.streamedResponse = streamed
    var answer = ProcessingResponse()
    if request { answer.requestBody = body } else { answer.responseBody = body }
    return answer
}

/// The `streamed_response` inside a body answer, or nil if it has none.
func streamedBody(of answer: ProcessingResponse) -> StreamedBodyResponse? {
    let body: BodyResponse
    switch answer.response {
    case .requestBody(let b), .responseBody(let b): body = b
    default: return nil
    }
    guard case .streamedResponse(let streamed)? = body.response.bodyMutation.mutation else { return nil }
    return streamed
}

/// Deterministic bytes whose period (251, prime) does not divide the 64 KiB chunk size, so a
/// reordered or duplicated chunk cannot go unnoticed.
func patternBytes(_ count: Int) -> Data {
    Data((0..<count).map { UInt8($0 % 251) })
}

// MARK: - Protobuf wire format, by hand

/// Just enough of the protobuf wire format to build messages with fields our proto subset does
/// not know (https://protobuf.dev/programming-guides/encoding/).
enum Wire {
    static func varint(_ value: UInt64) -> [UInt8] {
        var value = value
        var bytes: [UInt8] = []
        while value >= 0x80 {
            bytes.append(UInt8(value & 0x7F) | 0x80)
            value >>= 7
        }
        bytes.append(UInt8(value))
        return bytes
    }

    /// A VARINT field (wire type 0).
    static func varintField(_ number: UInt64, _ value: UInt64) -> [UInt8] {
        varint(number << 3 | 0) + varint(value)
    }

    /// A LEN field (wire type 2): a nested message, string or bytes.
    static func lengthDelimited(_ number: UInt64, _ payload: [UInt8]) -> [UInt8] {
        varint(number << 3 | 2) + varint(UInt64(payload.count)) + payload
    }

    /// Field 99 = 1, unknown to every message in proto/.
    static let unknownVarint = varintField(99, 1)
    /// Field 100 = "new", a length-delimited unknown field.
    static let unknownBytes = lengthDelimited(100, Array("new".utf8))
}
