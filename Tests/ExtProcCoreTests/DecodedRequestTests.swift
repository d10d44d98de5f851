import ExtProcCore
import ExtProcProto
import Foundation
import OverlayCore
import OverlayDecisions
import OverlayTesting
import SwiftProtobuf
import Testing

/// Decodes `message`'s bytes with libprotobuf-c and hands the view to `body`.
func withDecoded<R>(_ message: ProcessingRequest, _ body: (DecodedRequest) throws -> R) throws -> R {
    let bytes: [UInt8] = try message.serializedBytes()
    return try withDecoded(bytes, body)
}

func withDecoded<R>(_ bytes: [UInt8], _ body: (DecodedRequest) throws -> R) throws -> R {
    let result = bytes.withUnsafeBytes { raw in DecodedRequest.decode(raw) { request in Result { try body(request) } } }
    guard let result else { throw DecodeRefused() }
    return try result.get()
}

struct DecodeRefused: Error {}

typealias Reading = ExtProcReading

@Suite("DecodedRequest: libprotobuf-c's carrier reads what swift-protobuf's does")
struct DecodedRequestTests {
    static let names: Set<String> = [
        ":authority", ":path", ":method", ":status", "content-type", "cookie", "x-user", "if-none-match", "absent", "",
    ]

    static let messages: [(String, ProcessingRequest)] = {
        var list: [(String, ProcessingRequest)] = [
            ("request headers + protocol_config", Envoy.requestHeaders(authority: Fixture.overlayHost, path: "/a?b=c", method: "POST")
                .withProtocolConfig(request: .streamed, response: .fullDuplexStreamed)),
            ("request headers, end of stream, values in `value`", Envoy.requestHeaders(authority: "x.example", endOfStream: true, raw: false)),
            ("response headers with extra fields", Envoy.responseHeaders(
                status: "404", contentType: "text/html", extra: [("content-encoding", "gzip"), ("cookie", "a=1"), ("cookie", "b=2")])),
            ("response headers, end of stream", Envoy.responseHeaders(endOfStream: true)),
            ("request body", Envoy.requestBody("{\"q\": \"why?\"}", endOfStream: true)),
            ("empty response body", Envoy.responseBody("", endOfStream: false)),
            ("100 KiB response body", Envoy.responseBody(Data((0..<102_400).map { UInt8(truncatingIfNeeded: $0 &* 31) }), endOfStream: true)),
            ("observed body", Envoy.responseBody("y", endOfStream: false).observed()),
            ("request trailers", Envoy.requestTrailers()),
            ("response trailers", Envoy.responseTrailers()),
            ("no phase", Envoy.empty()),
        ]
        // Every body mode in protocol_config, and values beyond the enum (an open enum keeps
        // them), a negative one too (found by the extproc-decode fuzz target).
        for mode in [BodySendMode.none, .streamed, .buffered, .bufferedPartial, .fullDuplexStreamed, .grpc, .UNRECOGNIZED(9), .UNRECOGNIZED(-1_342_177_281)] {
            var message = Envoy.requestHeaders(authority: "a").withProtocolConfig(request: mode, response: .buffered)
            message.protocolConfig.sendBodyWithoutWaitingForHeaderResponse = true
            list.append(("protocol_config \(mode)", message))
        }
        // Headers as they come from a browser: repeated names, empty values, non-ASCII bytes, a
        // key that only shares a prefix with a wanted one, both `value` and `raw_value` set.
        var browser = Envoy.requestHeaders(authority: Fixture.overlayHost)
        browser.requestHeaders.headers.headers += [
            Envoy.header("x-user", "ada"), Envoy.header("x-user", "grace"), Envoy.header("cookie", ""),
            Envoy.header("x-usera", "not x-user"), Envoy.header("x-use", "nor this"), Envoy.header("accept-language", "fr-CH, fr;q=0.9, é"),
            // A pseudo-header by its first byte, though ':' and the combining mark after it are
            // one Character (found by the extproc-decode fuzz target).
            Envoy.header(":\u{064D}x", "pseudo"),
        ]
        var both = Envoy.header("if-none-match", "\"from-raw\"")
        both.value = "from-value"
        browser.requestHeaders.headers.headers.append(both)
        list.append(("browser-like headers", browser))
        // Past the decoding arena (DecodedRequest.arenaBytes): 500 short headers under its
        // size limit (5.6 KB) whose structs overflow it (arena and malloc mixed), and a 12 KB cookie
        // (the message alone is too large for the arena: malloc throughout).
        var many = Envoy.requestHeaders(authority: Fixture.overlayHost)
        many.requestHeaders.headers.headers += (0..<500).map { Envoy.header("x-\($0 % 7)", "\($0)") }
        list.append(("500 headers: arena and malloc mixed", many))
        var large = Envoy.requestHeaders(authority: Fixture.overlayHost)
        large.requestHeaders.headers.headers.append(Envoy.header("cookie", String(repeating: "k=v; ", count: 2_400)))
        list.append(("a 12 KB cookie: malloc throughout", large))
        return list
    }()

    @Test("phase, end of stream, headers, fields, body, protocol_config, observability: the same", arguments: messages)
    func sameReading(name: String, message: ProcessingRequest) throws {
        let expected = Reading(message, names: Self.names)
        let decoded = try withDecoded(message) { Reading($0, names: Self.names) }
        #expect(decoded == expected, "\(name)")
    }

    @Test("raw_value wins over value; value alone is read (an older Envoy)")
    func valueSources() throws {
        var both = Envoy.header(":authority", "raw.example")
        both.value = "value.example"
        var message = Envoy.requestHeaders(authority: "ignored")
        message.requestHeaders.headers.headers = [both, Envoy.header(":path", "/old", raw: false)]
        try withDecoded(message) { request in
            guard case .requestHeaders(let headers, _)? = request.phase else { Issue.record("not request headers"); return }
            #expect(headers.authority == "raw.example")
            #expect(headers.path == "/old")
            #expect(headers.method == "GET", "absent :method reads as GET, as for swift-protobuf's carrier")
        }
    }

    @Test("unknown fields are noticed where swift-protobuf notices them", arguments: UnknownFieldsTests.nested)
    func unknownFields(name: String, bytes: [UInt8]) throws {
        #expect(try withDecoded(bytes) { $0.carriesUnknownFields }, "\(name)")
        #expect(try withDecoded(bytes) { $0.phase != nil }, "\(name): the phase decodes")
    }

    @Test("unknown fields at the top level are noticed; known messages carry none", arguments: [Wire.unknownVarint, Wire.unknownBytes])
    func topLevelUnknown(unknown: [UInt8]) throws {
        let valid = Envoy.requestHeaders(authority: Fixture.overlayHost)
        #expect(try withDecoded(try valid.serializedBytes() + unknown) { $0.carriesUnknownFields })
        #expect(try !withDecoded(valid) { $0.carriesUnknownFields })
    }

    /// Bytes swift-protobuf refuses for their structure are refused here too (nil: the adapter
    /// ends the stream failing open, kind `undecodable`).
    static let malformed: [(String, [UInt8])] = [
        ("a truncated varint", [0x10, 0xFF]),
        ("a length past the end", Wire.lengthDelimited(2, [1, 2, 3]).dropLast(2)),
        ("wire type 7 (none such)", [0x17, 0x00]),
        ("field number 0", [0x00, 0x01]),
        ("a header map entry cut short", Wire.lengthDelimited(2, Wire.lengthDelimited(1, Wire.lengthDelimited(1, [0x0A, 0x05, 0x61])))),
    ]

    @Test("bytes that are not a ProcessingRequest are refused by both", arguments: malformed)
    func refused(name: String, bytes: [UInt8]) {
        #expect(throws: (any Error).self, "\(name): swift-protobuf") { try ProcessingRequest(serializedBytes: bytes) }
        #expect(throws: DecodeRefused.self, "\(name): libprotobuf-c") { try withDecoded(bytes) { _ in () } }
    }

    @Test("no bytes: a message with no phase, refused by the machine as by swift-protobuf's carrier")
    func empty() throws {
        var machine = try Fixture.machine()
        let kind = try withDecoded([UInt8]()) { request -> ExchangeError.Kind? in
            do throws(ExchangeError) {
                _ = try machine.receive(request)
                return nil
            } catch {
                return error.kind
            }
        }
        #expect(kind == .emptyRequest)
    }

    @Test("a whole exchange decides the same from either carrier, every body mode, with and without trailers",
          arguments: bodyModes, [true, false])
    func sameDecisions(mode: BodySendMode, trailers: Bool) throws {
        let config = try Fixture.config()
        var protobuf = ExchangeStateMachine(config: config)
        var c = ExchangeStateMachine(config: config)
        for (message, expected) in try FullExchangeTests.exchange(mode: mode, trailers: trailers, authority: Fixture.overlayHost) {
            let viaSwift = try protobuf.receive(message).sent
            let viaC = try withDecoded(message) { request in try c.receive(request).sent }
            #expect(viaSwift == expected)
            #expect(viaC == viaSwift, "\(ExchangePhase(of: message)!.label)")
        }
    }

    @Test("an HTML page is rewritten the same from either carrier (FULL_DUPLEX_STREAMED and STREAMED)",
          arguments: [BodySendMode.fullDuplexStreamed, .streamed])
    func sameRewrite(mode: BodySendMode) throws {
        let config = try Fixture.config()
        let ready = OverlayResultView(overlay: "crm", model: "m", token: "t0k3n", status: .ready, text: "hello")
        let messages = [
            Envoy.requestHeaders(authority: Fixture.overlayHost).withProtocolConfig(request: .none, response: mode),
            Envoy.responseHeaders(contentType: "text/html"),
            Envoy.responseBody("<html><head><title>x</title>", endOfStream: false),
            Envoy.responseBody("</head><body>page</body></html>", endOfStream: true),
        ]
        var protobuf = ExchangeStateMachine(config: config, seed: 3)
        var c = ExchangeStateMachine(config: config, seed: 3)
        for message in messages {
            let viaSwift = try protobuf.receive(message, ready: ready).sent
            let viaC = try withDecoded(message) { request in try c.receive(request, ready: ready).sent }
            #expect(viaC == viaSwift, "\(ExchangePhase(of: message)!.label)")
        }
        let injected = protobuf.takeInjection()
        #expect(injected?.result == "injected")
        #expect(c.takeInjection() == injected)
    }
}
