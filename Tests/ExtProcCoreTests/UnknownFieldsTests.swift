import ExtProcCore
import ExtProcProto
import Foundation
import SwiftProtobuf
import Testing

/// `carriesUnknownFields`: a newer Envoy than proto/ mirrors is noticed (counted), never fatal.
@Suite("ProcessingRequest.carriesUnknownFields")
struct UnknownFieldsTests {
    static let known: [ProcessingRequest] = [
        Envoy.requestHeaders(authority: Fixture.overlayHost).withProtocolConfig(request: .streamed, response: .buffered),
        Envoy.responseHeaders(),
        Envoy.requestBody("x", endOfStream: true),
        Envoy.responseBody("y", endOfStream: false).observed(),
        Envoy.requestTrailers(),
        Envoy.responseTrailers(),
        Envoy.empty(),
    ]

    @Test("false for the messages Envoy normally sends, also after a round trip through bytes", arguments: known)
    func normalMessage(message: ProcessingRequest) throws {
        #expect(!message.carriesUnknownFields)
        let decoded = try ProcessingRequest(serializedBytes: try message.serializedBytes() as [UInt8])
        #expect(decoded == message)
        #expect(!decoded.carriesUnknownFields)
    }

    @Test("true when an unknown field is appended to a valid request's bytes", arguments: [Wire.unknownVarint, Wire.unknownBytes])
    func topLevel(unknown: [UInt8]) throws {
        let valid = Envoy.requestHeaders(authority: Fixture.overlayHost)
        let bytes: [UInt8] = try valid.serializedBytes() + unknown
        let decoded = try ProcessingRequest(serializedBytes: bytes)
        #expect(decoded.carriesUnknownFields)
        #expect(decoded.requestHeaders == valid.requestHeaders, "the known fields decode as before")
        var machine = try Fixture.machine()
        #expect(try machine.receive(decoded).sent == .overlayRequestHeaders(model: try Fixture.model(for: Fixture.overlayHost)), "unknown fields are not fatal")
    }

    /// Field numbers: ProcessingRequest request_headers 2 … response_trailers 7, protocol_config 11;
    /// HttpHeaders headers 1, end_of_stream 3; HttpBody body 1, end_of_stream 2; HttpTrailers
    /// trailers 1; HeaderMap headers 1; HeaderValue key 1, raw_value 3; ProtocolConfiguration
    /// request_body_mode 1.
    static let nested: [(String, [UInt8])] = {
        let authority = Wire.lengthDelimited(1, Array(":authority".utf8)) + Wire.lengthDelimited(3, Array("shop.example.com".utf8))
        return [
            // request_headers { end_of_stream: true, 99: 1 }
            ("in HttpHeaders (request)", Wire.lengthDelimited(2, Wire.varintField(3, 1) + Wire.unknownVarint)),
            // response_headers { 100: "new" }
            ("in HttpHeaders (response)", Wire.lengthDelimited(3, Wire.unknownBytes)),
            // request_headers { headers { 99: 1 } }
            ("in the HeaderMap", Wire.lengthDelimited(2, Wire.lengthDelimited(1, Wire.unknownVarint))),
            // request_headers { headers { headers { key: ":authority", raw_value: "shop.example.com", 99: 1 } } }
            ("in a HeaderValue", Wire.lengthDelimited(2, Wire.lengthDelimited(1, Wire.lengthDelimited(1, authority + Wire.unknownVarint)))),
            // request_body { body: "x", end_of_stream: true, 99: 1 }
            ("in HttpBody (request)", Wire.lengthDelimited(4, Wire.lengthDelimited(1, [0x78]) + Wire.varintField(2, 1) + Wire.unknownVarint)),
            // response_body { 100: "new" }
            ("in HttpBody (response)", Wire.lengthDelimited(5, Wire.unknownBytes)),
            // request_trailers { 99: 1 }
            ("in HttpTrailers (request)", Wire.lengthDelimited(6, Wire.unknownVarint)),
            // response_trailers { trailers { 99: 1 } }
            ("in the trailers HeaderMap", Wire.lengthDelimited(7, Wire.lengthDelimited(1, Wire.unknownVarint))),
            // request_headers {}, protocol_config { request_body_mode: STREAMED, 99: 1 }
            ("in protocol_config", Wire.lengthDelimited(2, []) + Wire.lengthDelimited(11, Wire.varintField(1, 1) + Wire.unknownVarint)),
        ]
    }()

    @Test("true for an unknown field nested in the phase payload, a header or protocol_config", arguments: nested)
    func nestedUnknown(name: String, bytes: [UInt8]) throws {
        let decoded = try ProcessingRequest(serializedBytes: bytes)
        #expect(decoded.request != nil, "\(name): the phase decodes")
        #expect(decoded.unknownFields.data.isEmpty, "\(name): nothing unknown at the top level")
        #expect(decoded.carriesUnknownFields, "\(name)")
    }

    @Test("the hand-built bytes decode to what they say")
    func handBuiltBytes() throws {
        #expect(Wire.unknownVarint == [0x98, 0x06, 0x01])
        let body = try ProcessingRequest(serializedBytes: Self.nested[4].1)
        #expect(body.requestBody.body == Data("x".utf8))
        #expect(body.requestBody.endOfStream)
        let config = try ProcessingRequest(serializedBytes: Self.nested[8].1)
        #expect(config.hasProtocolConfig && config.protocolConfig.requestBodyMode == .streamed)
        let header = try ProcessingRequest(serializedBytes: Self.nested[3].1)
        #expect(header.requestHeaders.headers.headers.first?.key == ":authority")
        #expect(header.requestHeaders.headers.headers.first?.textValue == "shop.example.com")
    }

    /// Reported: UnknownFields.swift checks each HeaderValue of headers but not of trailers, although
    /// its doc comment promises "a header" in general.
    @Test("true for an unknown field in a trailer's HeaderValue")
    func trailerHeaderValue() throws {
        let entry = Wire.lengthDelimited(1, Array("x-checksum".utf8)) + Wire.unknownVarint
        let bytes = Wire.lengthDelimited(7, Wire.lengthDelimited(1, Wire.lengthDelimited(1, entry)))
        let decoded = try ProcessingRequest(serializedBytes: bytes)
        #expect(decoded.responseTrailers.trailers.headers.first?.key == "x-checksum")
        #expect(decoded.carriesUnknownFields)
    }
}

@Suite("CannedResponse and ExchangePhase")
struct CannedResponseTests {
    @Test("each canned CONTINUE answers its own phase and carries nothing else", arguments: [
        (CannedResponse.continueRequestHeaders, ExchangePhase.requestHeaders),
        (.continueResponseHeaders, .responseHeaders),
        (.continueRequestBody, .requestBody),
        (.continueResponseBody, .responseBody),
        (.continueRequestTrailers, .requestTrailers),
        (.continueResponseTrailers, .responseTrailers),
        (.passThrough, .requestHeaders),
    ])
    func phases(canned: CannedResponse, phase: ExchangePhase) throws {
        let message = canned.message
        #expect(message.answeredPhase == phase)
        #expect(message.hasModeOverride == (canned == .passThrough))
        #expect(!message.hasDynamicMetadata && !message.hasOverrideMessageTimeout)
        // A CONTINUE with no mutation encodes to just the (empty) phase field, plus the override.
        let bytes: [UInt8] = try message.serializedBytes()
        if canned != .passThrough { #expect(bytes.count == 2) }
        #expect(try ProcessingResponse(serializedBytes: bytes) == message)
    }

    @Test("every canned response is covered")
    func allCases() {
        #expect(CannedResponse.allCases.count == 7)
        #expect(Set(CannedResponse.allCases.map { $0.message.answeredPhase }).count == 6)
    }

    @Test("ExchangePhase labels are the proto field names, and init(of:) reads the oneof")
    func exchangePhase() {
        #expect(ExchangePhase.allCases.map(\.label) == [
            "request_headers", "request_body", "request_trailers", "response_headers", "response_body", "response_trailers",
        ])
        #expect(ExchangePhase(of: Envoy.requestHeaders(authority: "a")) == .requestHeaders)
        #expect(ExchangePhase(of: Envoy.requestBody("", endOfStream: true)) == .requestBody)
        #expect(ExchangePhase(of: Envoy.requestTrailers()) == .requestTrailers)
        #expect(ExchangePhase(of: Envoy.responseHeaders()) == .responseHeaders)
        #expect(ExchangePhase(of: Envoy.responseBody("", endOfStream: true)) == .responseBody)
        #expect(ExchangePhase(of: Envoy.responseTrailers()) == .responseTrailers)
        #expect(ExchangePhase(of: Envoy.empty()) == nil)
    }
}
