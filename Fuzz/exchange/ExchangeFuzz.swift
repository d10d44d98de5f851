import ExtProcCore
import ExtProcProto
import FuzzSupport
import Foundation
import OverlayCore
import SwiftProtobuf

// Input: a sequence of ProcessingRequests, each from a few decision bytes (phase, end_of_stream,
// observability mode, protocol_config and its body modes, host, path, method, content type and
// encoding, body size and bytes), or decoded from raw bytes as protobuf.
//
// Oracle (envoy-ext-proc.md §1–2, §13):
// - never traps;
// - a message is refused (ExchangeError, the adapter then ends the stream with the fail-open status)
//   exactly when an independent model of the two directions' phases says it is a violation, and
//   with that kind;
// - every other message gets an answer of the kind Envoy expects for it: request headers →
//   request_headers (or immediate_response for overlayd's own endpoints), request body →
//   request_body (or immediate_response / a follow-up answer for a question), response headers →
//   response_headers, response body → response_body, trailers → trailers; nothing at all in
//   observability mode, and only then;
// - FULL_DUPLEX_STREAMED (and GRPC) bodies: streamed_response messages of ≤ 64 KiB whose bodies
//   concatenate to the (rewritten) chunk, end_of_stream only on the last, equal to the chunk's;
// - an exchange whose host has no overlay never has a byte of its bodies changed.

let configText = """
    apiVersion: orchestrator.io/v1
    kind: AIOverlay
    metadata:
      name: shop
    spec:
      hostApp: "shop.example.com"
      models:
        - name: "model-a"
          weight: 80
        - name: "model-b"
          weight: 20
      strategy: "Canary"
    ---
    apiVersion: orchestrator.io/v1
    kind: AIOverlay
    metadata:
      name: apps
    spec:
      hostApp: "*.apps.example.com"
      models:
        - name: "champion"
        - name: "challenger"
      strategy: "Shadow"
    """
let config = try! ConfigLoader.load(text: configText, source: "fuzz")

let authorities = ["shop.example.com", "tenant-1.apps.example.com", "elsewhere.example.org", "", "SHOP.example.com:443"]
let overlaid: Set<String> = ["shop.example.com", "tenant-1.apps.example.com", "SHOP.example.com:443"]
let paths = ["/", "/__overlay/overlay.js", "/__overlay/results/abc", "/__overlay/api/ask", "/page?x=1", "/a.json"]
let methods = ["GET", "POST", "HEAD"]
let contentTypes = ["text/html; charset=utf-8", "application/json", "text/plain", "", "TEXT/HTML"]
let encodings = ["", "gzip", "identity", "br"]
let bodyModes: [BodySendMode] = [.none, .streamed, .buffered, .bufferedPartial, .fullDuplexStreamed, .grpc]

enum Phase { case idle, headers, body, ended }

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    var machine = ExchangeStateMachine(config: config, seed: UInt64(input.byte()))
    var request = Phase.idle, response = Phase.idle
    var messages = 0
    var immediate = false
    var passThrough = true  // until request headers for an overlaid host are seen
    var steps = 0
    while !input.isAtEnd && steps < 64 {
        steps += 1
        let message = nextMessage(&input)
        // The model.
        messages += 1
        var expected: ExchangeError.Kind?
        func headers(_ p: inout Phase, _ eos: Bool) -> ExchangeError.Kind? {
            switch p {
            case .idle: p = eos ? .ended : .headers; return nil
            case .headers: return .duplicate
            case .body: return .outOfOrder
            case .ended: return .afterEndOfStream
            }
        }
        func body(_ p: inout Phase, _ eos: Bool) -> ExchangeError.Kind? {
            if p == .ended { return .afterEndOfStream }
            p = eos ? .ended : .body
            return nil
        }
        func trailers(_ p: inout Phase) -> ExchangeError.Kind? {
            if p == .ended { return .afterEndOfStream }
            p = .ended
            return nil
        }
        if message.hasProtocolConfig && messages != 1 {
            expected = .protocolConfigNotFirst
        } else if immediate {
            expected = .afterImmediateResponse
        } else {
            switch message.request {
            case nil: expected = .emptyRequest
            case .requestHeaders(let h):
                expected = request == .idle && response != .idle ? .outOfOrder : headers(&request, h.endOfStream)
                if expected == nil {
                    let authority = h.headers.headers.first { $0.key == ":authority" }?.textValue ?? ""
                    passThrough = !overlaid.contains(authority)
                }
            case .requestBody(let b): expected = body(&request, b.endOfStream)
            case .requestTrailers: expected = trailers(&request)
            case .responseHeaders(let h): expected = headers(&response, h.endOfStream)
            case .responseBody(let b): expected = body(&response, b.endOfStream)
            case .responseTrailers: expected = trailers(&response)
            }
        }
        // The result in already, or not (then the core may hold the response headers until the
        // budget's end, measured from `now` at the request headers).
        let ready = input.bool() ? fuzzResult(status: .ready) : nil
        let now: UInt64 = input.bool() ? 0 : 1 << 40

        var action: ExchangeAction
        do {
            action = try machine.receive(message, now: now, ready: ready)
        } catch {
            check(error.kind == expected, "refused with \(error.kind) (\(error.message)), model says \(String(describing: expected))")
            check(ExchangeError.Kind.all.contains(error.kind), "unknown error kind \(error.kind)")
            return 0  // the stream ends here, failing open
        }
        check(expected == nil, "accepted a message the model refuses (\(expected!)): \(message)")
        if case .wait = action {
            check(ExchangePhase(of: message) == .responseHeaders, "a wait at \(String(describing: ExchangePhase(of: message)))")
            check(ready == nil, "a wait although the result was in")
            guard let resumed = machine.resume(with: fuzzResult(status: .pending)) else {
                oracleFailure("a waiting exchange did not resume")
            }
            check(machine.resume(with: fuzzResult(status: .ready)) == nil, "resumed twice")
            action = resumed
        }
        immediate = checkAnswer(action, to: message, passThrough: passThrough)
    }
    return 0
}

/// Checks the action's kind; returns whether the exchange was answered with immediate_response.
func checkAnswer(_ action: ExchangeAction, to message: ProcessingRequest, passThrough: Bool) -> Bool {
    if message.observabilityMode {
        guard case .none = action else { oracleFailure("an answer in observability mode: \(action)") }
        return false
    }
    let phase = ExchangePhase(of: message)!
    func kind(_ r: ProcessingResponse) -> String {
        switch r.response {
        case .requestHeaders: return "request_headers"
        case .responseHeaders: return "response_headers"
        case .requestBody: return "request_body"
        case .responseBody: return "response_body"
        case .requestTrailers: return "request_trailers"
        case .responseTrailers: return "response_trailers"
        case .immediateResponse: return "immediate_response"
        case nil: return "nothing"
        }
    }
    switch action {
    case .none:
        oracleFailure("no answer to \(phase.label) outside observability mode")
    case .respond(let answer), .respondAndCall(let answer, _):
        let got = kind(answer.message)
        if got == "immediate_response" {
            check(phase == .requestHeaders || phase == .requestBody, "immediate_response to \(phase.label)")
            return true
        }
        check(got == phase.label, "\(got) answers \(phase.label)")
        if case .respondAndCall = action { check(phase == .requestHeaders, "a model call started at \(phase.label)") }
        if passThrough, case .responseBody(let b) = answer.message.response {
            check(!b.response.hasBodyMutation, "a pass-through exchange's body was mutated")
        }
        if passThrough, case .requestBody(let b) = answer.message.response {
            check(!b.response.hasBodyMutation, "a pass-through exchange's request body was mutated")
        }
        return false
    case .respondStreamed(let answers) where phase == .responseTrailers:
        // FULL_DUPLEX_STREAMED: what the rewrite still held goes out as streamed body chunks
        // (end_of_stream false), then the one trailers answer (§1.3).
        check(!passThrough, "bytes released at the trailers of a pass-through exchange")
        check(answers.count >= 2 && kind(answers.last!) == "response_trailers", "streamed answers to response_trailers end without its answer")
        for answer in answers.dropLast() {
            guard case .responseBody(let b) = answer.response, case .streamedResponse(let s)? = b.response.bodyMutation.mutation else {
                oracleFailure("a \(kind(answer)) before the trailers answer, not a streamed body chunk")
            }
            check(!s.endOfStream, "end_of_stream on a body chunk before the trailers")
            check(s.body.count <= ExchangeStateMachine.maxStreamedChunk, "streamed chunk of \(s.body.count) bytes")
        }
        return false
    case .respondStreamed(let answers):
        check(phase == .requestBody || phase == .responseBody, "streamed answers to \(phase.label)")
        check(!answers.isEmpty, "no streamed answer")
        var joined = Data()
        for (index, answer) in answers.enumerated() {
            check(kind(answer) == phase.label, "\(kind(answer)) in a streamed answer to \(phase.label)")
            let bodyResponse: Envoy_Service_ExtProc_V3_BodyResponse
            switch answer.response {
            case .requestBody(let b), .responseBody(let b): bodyResponse = b
            default: oracleFailure("unreachable")
            }
            guard case .streamedResponse(let s)? = bodyResponse.response.bodyMutation.mutation else {
                oracleFailure("a streamed answer without streamed_response")
            }
            check(s.body.count <= ExchangeStateMachine.maxStreamedChunk, "streamed chunk of \(s.body.count) bytes")
            let eos: Bool
            switch message.request {
            case .requestBody(let b), .responseBody(let b): eos = b.endOfStream
            default: eos = false
            }
            check(s.endOfStream == (index == answers.count - 1 ? eos : false), "end_of_stream on chunk \(index)")
            joined.append(s.body)
        }
        if passThrough {
            switch message.request {
            case .requestBody(let b), .responseBody(let b):
                check(joined == b.body, "a pass-through exchange's streamed body changed")
            default: break
            }
        }
        return false
    case .answerAsk:
        check(phase == .requestBody, "a question answered at \(phase.label)")
        return true
    case .wait:
        oracleFailure("a wait left unresumed")
    }
}

/// A result for the overlay of the fuzz configuration.
func fuzzResult(status: OverlayResultView.Status) -> OverlayResultView {
    OverlayResultView(overlay: "fuzz", model: "m", token: String(repeating: "f", count: 32), status: status, text: "t")
}

func nextMessage(_ input: inout FuzzInput) -> ProcessingRequest {
    let op = input.byte()
    let flags = input.byte()
    var message = ProcessingRequest()
    if op & 0x0F == 15 {
        // Raw protobuf: whatever swift-protobuf decodes from the next bytes.
        let raw = input.take(input.int(0...64))
        return (try? ProcessingRequest(serializedBytes: raw)) ?? message
    }
    let eos = flags & 1 != 0
    message.observabilityMode = flags & 2 != 0
    if flags & 4 != 0 {
        message.protocolConfig.requestBodyMode = bodyModes[input.int(0...(bodyModes.count - 1))]
        message.protocolConfig.responseBodyMode = bodyModes[input.int(0...(bodyModes.count - 1))]
    }
    let raw = flags & 8 != 0
    func header(_ key: String, _ value: String) -> Envoy_Config_Core_V3_HeaderValue {
        var h = Envoy_Config_Core_V3_HeaderValue()
        h.key = key
        if raw { h.rawValue = Data(value.utf8) } else { h.value = value }
        return h
    }
    func bodyBytes() -> Data {
        let large = input.int(0...15) == 0
        let count = large ? input.int(0...200_000) : input.int(0...200)
        let seed = input.take(min(count, 256))
        if seed.isEmpty { return Data(count: count) }
        return Data((0..<count).map { seed[$0 % seed.count] })
    }
    switch (op & 0x0F) % 7 {
    case 0:
        var h = Envoy_Service_ExtProc_V3_HttpHeaders()
        h.endOfStream = eos
        var list = [header(":method", methods[input.int(0...2)]), header(":path", paths[input.int(0...(paths.count - 1))])]
        let a = input.int(0...authorities.count)
        if a < authorities.count { list.append(header(":authority", authorities[a])) }
        if input.bool() { list.append(header("cookie", "overlayd_uid=u\(input.byte())")) }
        h.headers.headers = list
        message.requestHeaders = h
    case 1:
        var b = Envoy_Service_ExtProc_V3_HttpBody()
        b.endOfStream = eos
        b.body = bodyBytes()
        message.requestBody = b
    case 2:
        message.requestTrailers = .init()
    case 3:
        var h = Envoy_Service_ExtProc_V3_HttpHeaders()
        h.endOfStream = eos
        var list = [header(":status", input.bool() ? "200" : "404")]
        let ct = contentTypes[input.int(0...(contentTypes.count - 1))]
        if !ct.isEmpty { list.append(header("content-type", ct)) }
        let ce = encodings[input.int(0...(encodings.count - 1))]
        if !ce.isEmpty { list.append(header("content-encoding", ce)) }
        if input.bool() { list.append(header("content-length", "\(input.int(0...500))")) }
        h.headers.headers = list
        message.responseHeaders = h
    case 4:
        var b = Envoy_Service_ExtProc_V3_HttpBody()
        b.endOfStream = eos
        b.body = bodyBytes()
        message.responseBody = b
    case 5:
        message.responseTrailers = .init()
    default:
        break  // no phase set
    }
    return message
}
