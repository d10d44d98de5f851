import NIOCore
import NIOEmbedded
import NIOHTTP1
import OverlayDecisions
import Testing

@testable import OverlayProxy

/// The proxy writes HTTP/1.1 responses as bytes (``ResponseFramer``) instead of through NIO's
/// response encoder: the bytes on the wire must be the encoder's, whatever the method, status,
/// version, fields and body parts.
@Suite struct ResponseFramerTests {
    /// What NIO's server pipeline (request decoder and response encoder) writes for a request with
    /// `method` answered by `informational` (if any), `head`, the body `parts` and the end.
    static func encoderBytes(
        method: HTTPMethod, informational: HTTPResponseHead?, head: HTTPResponseHead, parts: [ByteBuffer]
    ) throws -> [UInt8] {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.configureHTTPServerPipeline(
            withPipeliningAssistance: false, withErrorHandling: false, withOutboundHeaderValidation: false)
        try channel.writeInbound(ByteBuffer(string: "\(method.rawValue) /x HTTP/1.1\r\nHost: a\r\n\r\n"))
        while try channel.readInbound(as: HTTPServerRequestPart.self) != nil {}
        if let informational { channel.write(HTTPServerResponsePart.head(informational), promise: nil) }
        channel.write(HTTPServerResponsePart.head(head), promise: nil)
        // A body part after a response to HEAD fails its promise and writes nothing.
        for part in parts { channel.write(HTTPServerResponsePart.body(.byteBuffer(part)), promise: nil) }
        channel.writeAndFlush(HTTPServerResponsePart.end(nil), promise: nil)
        return try outboundBytes(channel)
    }

    /// Every byte the channel wrote, in order; the channel is finished.
    static func outboundBytes(_ channel: EmbeddedChannel) throws -> [UInt8] {
        var out: [UInt8] = []
        while let data = try channel.readOutbound(as: IOData.self) {
            guard case .byteBuffer(let buffer) = data else { Issue.record("a file region"); continue }
            out += buffer.readableBytesView
        }
        _ = try channel.finish()
        return out
    }

    /// The same exchange as ``ProxyHandler`` writes it with a ``ResponseFramer``.
    /// `built`: the heads as the proxy builds its own (``ProxyResponseHead``, fields in a list).
    static func framerBytes(
        method: HTTPMethod, informational: HTTPResponseHead?, head: HTTPResponseHead, parts: [ByteBuffer], built: Bool = false
    ) -> [UInt8] {
        var framer = ResponseFramer()
        let allocator = ByteBufferAllocator()
        var out: [UInt8] = []
        func write(_ head: HTTPResponseHead) {
            if built {
                let own = ProxyResponseHead(version: head.version, status: head.status, fields: head.headers.map { $0 })
                out += framer.head(own, method: method, allocator: allocator).readableBytesView
            } else {
                out += framer.head(head, method: method, allocator: allocator).readableBytesView
            }
        }
        if let informational { write(informational) }
        write(head)
        for part in parts {
            guard let (sizeLine, data) = framer.body(part, allocator: allocator) else { continue }
            if let sizeLine { out += sizeLine.readableBytesView }
            out += data.readableBytesView
        }
        if let end = framer.end(allocator: allocator) { out += end.readableBytesView }
        return out
    }

    @Test func theBytesAreNIOsEncodersOnThousandsOfRandomResponses() throws {
        var random = SplitMix64(seed: 0x5EED_F4A3)
        func pick<T>(_ values: [T]) -> T { values[Int(random.next() % UInt64(values.count))] }
        let methods: [HTTPMethod] = [.GET, .HEAD, .POST, .PUT, .DELETE, .OPTIONS]
        let statuses: [HTTPResponseStatus] = [
            .ok, .created, .noContent, .notModified, .notFound, .internalServerError, .switchingProtocols,
            .partialContent, .custom(code: 299, reasonPhrase: "Weird"), .init(statusCode: 599), .movedPermanently,
        ]
        let fields: [(String, String)] = [
            ("Content-Type", "text/html"), ("content-length", "5"), ("Content-Length", "12"), ("Transfer-Encoding", "gzip"),
            ("transfer-encoding", "chunked"), ("Set-Cookie", "a=b; Path=/"), ("x-empty", ""), ("ETag", "\"v1\""),
            ("connection", "close"), ("X-A-Rather-Long-Field-Name-Beyond-Sixteen", String(repeating: "v", count: 300)),
        ]
        for round in 0..<3000 {
            let method = pick(methods)
            var headers = HTTPHeaders()
            for _ in 0..<Int(random.next() % 6) { headers.add(name: pick(fields).0, value: pick(fields).1) }
            let head = HTTPResponseHead(version: pick([.http1_1, .http1_1, .http1_0]), status: pick(statuses), headers: headers)
            let informational = random.next() % 5 == 0 ? HTTPResponseHead(version: head.version, status: .continue) : nil
            var parts: [ByteBuffer] = []
            for _ in 0..<Int(random.next() % 4) {
                let size = pick([0, 1, 15, 16, 255, 4096, 70_000])
                parts.append(ByteBuffer(repeating: UInt8(0x61 + round % 26), count: size))
            }
            let expected = try Self.encoderBytes(method: method, informational: informational, head: head, parts: parts)
            #expect(expected.starts(with: Array("HTTP/1.".utf8)))
            let got = Self.framerBytes(method: method, informational: informational, head: head, parts: parts)
            #expect(got == expected, "round \(round): \(method) \(head) parts \(parts.map(\.readableBytes))")
            let built = Self.framerBytes(method: method, informational: informational, head: head, parts: parts, built: true)
            #expect(built == expected, "round \(round), built head: \(method) \(head)")
            if got != expected || built != expected { break }
        }
    }

    /// A head the proxy builds says keep-alive as NIO's head with the same fields would (the
    /// proxy adds `Connection: close` at shutdown only to a head that would keep the connection).
    @Test func aBuiltHeadIsKeepAliveAsNIOsHeadWithItsFields() {
        let values: [String?] = [
            nil, "close", "Close", "keep-alive", "Keep-Alive", "upgrade", "x-a, close", " close ", "keep-alive, close",
            "close, keep-alive", "keep-alive, keep-alive", "closed",
        ]
        for version in [HTTPVersion.http1_1, .http1_0] {
            for value in values {
                var fields: [(name: String, value: String)] = [("content-length", "0")]
                if let value { fields.append(("Connection", value)) }
                let own = ProxyResponseHead(version: version, status: .ok, fields: fields)
                let nio = HTTPResponseHead(version: version, status: .ok, headers: HTTPHeaders(fields.map { ($0.name, $0.value) }))
                #expect(own.isKeepAlive == nio.isKeepAlive, "\(version) \(value ?? "no Connection")")
                #expect(own.contains("content-length") && !own.contains("transfer-encoding"))
            }
        }
    }

    @Test func chunksShareBuffersWithTheCRLFsAround() {
        var framer = ResponseFramer()
        let allocator = ByteBufferAllocator()
        let head = framer.head(HTTPResponseHead(version: .http1_1, status: .ok), method: .GET, allocator: allocator)
        #expect(String(buffer: head) == "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        #expect(framer.chunked)
        let first = framer.body(ByteBuffer(string: "hello"), allocator: allocator)
        #expect(first.map { String(buffer: $0.sizeLine!) } == "5\r\n")
        let second = framer.body(ByteBuffer(repeating: 0x78, count: 300), allocator: allocator)
        #expect(second.map { String(buffer: $0.sizeLine!) } == "\r\n12c\r\n")
        #expect(framer.body(ByteBuffer(), allocator: allocator) == nil)
        #expect(framer.bodyBytes(Array("ab".utf8), allocator: allocator).map { String(buffer: $0) } == "\r\n2\r\nab")
        #expect(framer.end(allocator: allocator).map { String(buffer: $0) } == "\r\n0\r\n\r\n")
        #expect(!framer.chunked, "the next response decides again")
        // A chunked body with no data: the last chunk alone.
        _ = framer.head(HTTPResponseHead(version: .http1_1, status: .ok), method: .GET, allocator: allocator)
        #expect(framer.end(allocator: allocator).map { String(buffer: $0) } == "0\r\n\r\n")
    }

    @Test func headAndConnectResponsesHaveNoBody() {
        let allocator = ByteBufferAllocator()
        var framer = ResponseFramer()
        let head = framer.head(
            HTTPResponseHead(version: .http1_1, status: .ok, headers: ["content-type": "text/html"]), method: .HEAD,
            allocator: allocator)
        // As for GET (the framing field is announced), but nothing of a body is written.
        #expect(String(buffer: head) == "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ntransfer-encoding: chunked\r\n\r\n")
        #expect(framer.suppressesBody && !framer.chunked)
        #expect(framer.body(ByteBuffer(string: "x"), allocator: allocator) == nil)
        #expect(framer.bodyBytes([1, 2], allocator: allocator) == nil)
        #expect(framer.end(allocator: allocator) == nil)
        let connect = framer.head(
            HTTPResponseHead(version: .http1_1, status: .ok, headers: ["content-length": "10", "transfer-encoding": "chunked"]),
            method: .CONNECT, allocator: allocator)
        #expect(String(buffer: connect) == "HTTP/1.1 200 OK\r\n\r\n")
        #expect(framer.body(ByteBuffer(string: "x"), allocator: allocator) == nil)
    }

    @Test func aRefusalIsAWholeClosingResponse() {
        let bytes = ResponseFramer.closingResponse(status: .requestTimeout, allocator: ByteBufferAllocator())
        #expect(String(buffer: bytes) == "HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
    }
}

/// The upstream's request encoder (``RequestEncoder``) against NIO's `HTTPRequestEncoder`.
@Suite struct RequestEncoderTests {
    static func bytes(_ encoder: some ChannelOutboundHandler, _ parts: [HTTPClientRequestPart]) throws -> [UInt8] {
        let channel = EmbeddedChannel(handler: encoder)
        for part in parts { channel.write(part, promise: nil) }
        channel.flush()
        return try ResponseFramerTests.outboundBytes(channel)
    }

    /// `parts` as the proxy writes them: the head and the end by ``RequestEncoder/writeHead(_:)``
    /// and ``RequestEncoder/writeEnd(_:)``, body parts through the pipeline.
    static func directBytes(_ head: HTTPRequestHead, _ parts: [HTTPClientRequestPart]) throws -> [UInt8] {
        let encoder = RequestEncoder()
        let channel = EmbeddedChannel(handler: encoder)
        for part in parts {
            switch part {
            case .head(let head):
                encoder.writeHead(UpstreamRequest(method: head.method, uri: head.uri, fields: head.headers.map { $0 }))
            case .body: channel.write(part, promise: nil)
            case .end(let trailers): encoder.writeEnd(trailers)
            }
        }
        channel.flush()
        return try ResponseFramerTests.outboundBytes(channel)
    }

    @Test func theBytesAreNIOsEncodersOnThousandsOfRandomRequests() throws {
        var random = SplitMix64(seed: 0xC0FF_EE42)
        func pick<T>(_ values: [T]) -> T { values[Int(random.next() % UInt64(values.count))] }
        let methods: [HTTPMethod] = [.GET, .HEAD, .POST, .PUT, .PATCH, .DELETE, .OPTIONS, .TRACE, .RAW(value: "PURGE")]
        let fields: [(String, String)] = [
            ("host", "app.example"), ("Content-Length", "5"), ("content-length", "0"), ("transfer-encoding", "chunked"),
            ("Transfer-Encoding", "gzip"), ("accept", "*/*"), ("x-forwarded-for", "10.0.0.1, 127.0.0.1"), ("x-empty", ""),
            ("X-Overlay-Model", "m"), ("cookie", String(repeating: "c", count: 500)),
        ]
        var directRounds = 0
        for round in 0..<3000 {
            var headers = HTTPHeaders()
            for _ in 0..<Int(random.next() % 6) { headers.add(name: pick(fields).0, value: pick(fields).1) }
            let head = HTTPRequestHead(
                version: pick([.http1_1, .http1_1, .http1_0]), method: pick(methods), uri: pick(["/", "/a/b?c=d&e", "*"]),
                headers: headers)
            var parts: [HTTPClientRequestPart] = [.head(head)]
            for _ in 0..<Int(random.next() % 4) {
                parts.append(.body(.byteBuffer(ByteBuffer(repeating: 0x62, count: pick([0, 1, 17, 255, 5000])))))
            }
            parts.append(.end(random.next() % 4 == 0 ? HTTPHeaders([("x-trailer", "t")]) : nil))
            let expected = try Self.bytes(HTTPRequestEncoder(), parts)
            #expect(expected.starts(with: Array(head.method.rawValue.utf8)))
            let got = try Self.bytes(RequestEncoder(), parts)
            #expect(got == expected, "round \(round): \(head) parts \(parts.count)")
            if got != expected { break }
            if head.version == .http1_1 {
                // The proxy's own heads (HTTP/1.1) are written by the encoder itself, from a list of fields.
                let direct = try Self.directBytes(head, parts)
                #expect(direct == expected, "round \(round), written directly: \(head) parts \(parts.count)")
                directRounds += 1
            }
        }
        #expect(directRounds > 1000)
    }

    /// The proxy writes a bodiless request's end only when the encoder framed the head chunked.
    @Test func theEncoderSaysWhenABodyIsChunked() {
        let allocator = ByteBufferAllocator()
        func chunked(_ method: HTTPMethod, _ fields: [(String, String)], _ version: HTTPVersion = .http1_1) -> Bool {
            let encoder = RequestEncoder()
            _ = encoder.encodeHead(
                HTTPRequestHead(version: version, method: method, uri: "/", headers: HTTPHeaders(fields)), allocator: allocator)
            return encoder.bodyIsChunked
        }
        #expect(!chunked(.GET, [("host", "a")]))
        #expect(!chunked(.HEAD, []))
        #expect(chunked(.GET, [("transfer-encoding", "chunked")]))
        #expect(chunked(.POST, [("host", "a")]), "POST without a length: NIO's rule makes it chunked")
        #expect(!chunked(.POST, [("content-length", "0")]))
        #expect(!chunked(.POST, [], .http1_0))
        #expect(!chunked(.TRACE, [("transfer-encoding", "chunked")]))
    }
}
