import NIOCore
import NIOEmbedded
import NIOHTTP1
import OverlayDecisions
import Testing

@testable import OverlayProxy

/// ``RequestDecoding`` and ``ResponseDecoding`` drive NIO's `HTTPDecoder` themselves instead of
/// through NIO's `ByteToMessageHandler`: what the next handler sees must be the same, however the
/// bytes are split into reads, through pipelining, bodies, trailers, malformed input, reads after
/// an error, an upgrade's leftover bytes, and the end of input.
@Suite struct HTTP1DecodingTests {
    /// Everything that reaches the handler after the decoder, as text. On the upstream side, the
    /// head of the next request is written from inside the `.end` of a response (as the proxy does
    /// when it reuses the connection), that is, while the decoder is decoding.
    final class Recorder: ChannelInboundHandler {
        typealias InboundIn = NIOAny
        var log: [String] = []
        var nextRequests: [HTTPRequestHead] = []

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch Self.payload(data) {
            case let part as HTTPServerRequestPart:
                switch part {
                case .head(let head): log.append("head \(head.method) \(head.uri) \(head.version) \(head.headers)")
                case .body(let body): log.append("body \(String(buffer: body))")
                case .end(let trailers): log.append("end \(trailers.map { "\($0)" } ?? "-")")
                }
            case let part as HTTPClientResponsePart:
                switch part {
                case .head(let head): log.append("head \(head.status.code) \(head.version) \(head.headers)")
                case .body(let body): log.append("body \(String(buffer: body))")
                case .end(let trailers):
                    log.append("end \(trailers.map { "\($0)" } ?? "-")")
                    if !nextRequests.isEmpty {
                        context.writeAndFlush(NIOAny(HTTPClientRequestPart.head(nextRequests.removeFirst())), promise: nil)
                    }
                }
            case .byteBuffer(let bytes) as IOData:
                log.append("bytes \(String(buffer: bytes))")
            case let other:
                log.append("unexpected \(other)")
            }
        }

        /// What a `NIOAny` carries (its storage is an enum of one payload: IOData, or any other value).
        static func payload(_ data: NIOAny) -> Any {
            guard let storage = Mirror(reflecting: data).children.first?.value,
                let payload = Mirror(reflecting: storage).children.first?.value
            else { return data }
            return payload
        }

        func channelInactive(context: ChannelHandlerContext) { log.append("inactive") }

        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) { log.append("event \(event)") }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            switch error {
            case ByteToMessageDecoderError.dataReceivedInErrorState(let first, let data):
                log.append("error after \(first): \(String(buffer: data))")
            default:
                log.append("error \(error)")
            }
        }
    }

    /// How the input ends.
    enum Ending: CaseIterable { case open, inputClosed, inactive, removed }

    /// Feeds `bytes` in reads split at random points to a channel with `decoder` then a recorder,
    /// ends the input as `ending` says (a removal is followed by one more read), and returns the log.
    static func run(
        decoder: any RemovableChannelHandler & ChannelInboundHandler, before: (any ChannelHandler)? = nil,
        requests: [HTTPRequestHead] = [], bytes: [UInt8], cuts: [Int], ending: Ending
    ) throws -> [String] {
        let channel = EmbeddedChannel()
        let recorder = Recorder()
        recorder.nextRequests = requests
        if let before { try channel.pipeline.syncOperations.addHandler(before) }
        try channel.pipeline.syncOperations.addHandlers([decoder, recorder])
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        if !recorder.nextRequests.isEmpty {
            channel.writeAndFlush(HTTPClientRequestPart.head(recorder.nextRequests.removeFirst()), promise: nil)
        }
        var start = 0
        for cut in cuts + [bytes.count] where cut >= start {
            try channel.writeInbound(ByteBuffer(bytes: bytes[start..<cut]))
            start = cut
        }
        switch ending {
        case .open: break
        case .inputClosed: channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        case .inactive:
            channel.close(promise: nil)
            channel.embeddedEventLoop.run()
        case .removed:
            // Both decoders leave on the loop's next tick (after their last call).
            let removal = channel.pipeline.syncOperations.removeHandler(decoder)
            channel.embeddedEventLoop.run()
            try removal.wait()
            try channel.writeInbound(ByteBuffer(string: "after"))
        }
        while (try? channel.readOutbound(as: IOData.self)) != nil {}
        _ = try? channel.finish()
        return recorder.log
    }

    static let requestPieces = [
        "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /x?y=z HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n",
        "POST /form HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world",
        "PUT /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 1\r\n\r\n",
        "HEAD /h HTTP/1.1\r\nHost: a\r\nX-Long: \(String(repeating: "v", count: 300))\r\n\r\n",
        "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\nRAW-FRAME-BYTES",
        "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "GARBAGE\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nab",
    ]

    @Test func requestsDecodeAsThroughNIOsHandlerWhateverTheReads() throws {
        var random = SplitMix64(seed: 0x0DEC_0DE5)
        var upgrades = 0
        var errors = 0
        for round in 0..<1500 {
            var text = ""
            for _ in 0..<(1 + Int(random.next() % 4)) {
                text += Self.requestPieces[Int(random.next() % UInt64(Self.requestPieces.count))]
            }
            let bytes = Array(text.utf8)
            let cuts = (0..<Int(random.next() % 6)).map { _ in Int(random.next() % UInt64(bytes.count + 1)) }.sorted()
            let ending = Ending.allCases[Int(random.next() % 4)]
            func decoder() -> HTTPRequestDecoder { HTTPRequestDecoder(leftOverBytesStrategy: .forwardBytes) }
            let expected = try Self.run(decoder: ByteToMessageHandler(decoder()), bytes: bytes, cuts: cuts, ending: ending)
            let actual = try Self.run(decoder: RequestDecoding(decoder()), bytes: bytes, cuts: cuts, ending: ending)
            #expect(actual == expected, "round \(round): \(text.debugDescription) cut at \(cuts), \(ending)")
            if expected.contains(where: { $0.hasPrefix("bytes ") }) { upgrades += 1 }
            if expected.contains(where: { $0.hasPrefix("error after") }) { errors += 1 }
        }
        // The rounds did reach an upgrade's leftover bytes and reads after an error.
        #expect(upgrades > 20 && errors > 20, "upgrades \(upgrades), reads after an error \(errors)")
    }

    static let responsePieces: [(method: HTTPMethod, response: String)] = [
        (.GET, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: s\r\n\r\nhello"),
        (.GET, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n"),
        (.HEAD, "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"),
        (.GET, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nDate: d\r\n\r\n"),
        (.GET, "HTTP/1.1 304 Not Modified\r\nETag: \"e\"\r\n\r\n"),
        (.GET, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\nRAW"),
        (.GET, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the close"),
        (.GET, "HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n"),
    ]

    @Test func responsesDecodeAsThroughNIOsHandlerWhateverTheReads() throws {
        var random = SplitMix64(seed: 0x5EED_2026)
        var closeDelimited = 0
        for round in 0..<1500 {
            var text = ""
            var requests: [HTTPRequestHead] = []
            for _ in 0..<(1 + Int(random.next() % 4)) {
                let piece = Self.responsePieces[Int(random.next() % UInt64(Self.responsePieces.count))]
                text += piece.response
                requests.append(HTTPRequestHead(version: .http1_1, method: piece.method, uri: "/r\(requests.count)"))
            }
            let bytes = Array(text.utf8)
            let cuts = (0..<Int(random.next() % 6)).map { _ in Int(random.next() % UInt64(bytes.count + 1)) }.sorted()
            let ending = Ending.allCases[Int(random.next() % 4)]
            func decoder() -> HTTPResponseDecoder { HTTPResponseDecoder(leftOverBytesStrategy: .forwardBytes) }
            let expected = try Self.run(
                decoder: ByteToMessageHandler(decoder()), requests: requests, bytes: bytes, cuts: cuts, ending: ending)
            let responses = ResponseDecoding(decoder())
            let actual = try Self.run(
                decoder: responses, before: RequestEncoder(responses: responses), requests: requests,
                bytes: bytes, cuts: cuts, ending: ending)
            #expect(actual == expected, "round \(round): \(text.debugDescription) cut at \(cuts), \(ending)")
            if expected.contains("body until the close") && expected.contains("end -") { closeDelimited += 1 }
        }
        #expect(closeDelimited > 20, "responses ended by the close: \(closeDelimited)")
    }
}
