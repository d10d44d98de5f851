import FuzzSupport
import GRPCTransport
import NIOCore
import NIOEmbedded

// The HTTP/2 layer's input path: the client preface, then arbitrary bytes in arbitrary chunks,
// into `H2ServerConnection` (libnghttp2 in memory mode behind a NIO channel handler) in an
// embedded channel, with a delegate that answers every stream as the ext_proc server does (a
// message at once, trailers when the client ends, some streams ended early with a reset).
//
// Oracle:
// - never traps, and AddressSanitizer sees no invalid access across the C boundary;
// - the stream events are consistent: a stream starts once, data and its end come only for a
//   started stream that is not closed, and a stream is closed at most once;
// - every buffered byte the delegate reports is given back, and closing the channel reports the
//   connection closed exactly once.

private final class Checker: H2StreamDelegate {
    var started: Set<Int32> = []
    var closed: Set<Int32> = []
    var connectionClosed = 0
    var answerEarly: Bool

    init(answerEarly: Bool) { self.answerEarly = answerEarly }

    func streamStarted(_ connection: H2ServerConnection, context: ChannelHandlerContext, stream: Int32, head: GRPCRequestHead, endStream: Bool) {
        check(!started.contains(stream), "stream \(stream) started twice")
        check(stream > 0 && stream % 2 == 1, "a client stream with id \(stream)")
        started.insert(stream)
        var frame = ByteBuffer()
        frame.writeInteger(UInt8(0))
        frame.writeInteger(UInt32(3))
        frame.writeBytes([1, 2, 3])
        connection.sendMessage(stream: stream, frame: frame)
        if answerEarly {
            connection.sendEnd(stream: stream, .status(code: 0, message: "early"), trailersOnly: false, thenReset: true)
        }
        if endStream { streamEnded(connection, context: context, stream: stream) }
    }

    func streamData(_ connection: H2ServerConnection, context: ChannelHandlerContext, stream: Int32, data: ByteBuffer) {
        check(started.contains(stream) && !closed.contains(stream), "data for stream \(stream), not open")
        connection.bufferedChanged(by: data.readableBytes)
        connection.bufferedChanged(by: -data.readableBytes)
    }

    func streamEnded(_ connection: H2ServerConnection, context: ChannelHandlerContext, stream: Int32) {
        check(started.contains(stream) && !closed.contains(stream), "end of stream \(stream), not open")
        connection.sendEnd(stream: stream, .ok, trailersOnly: false, thenReset: false)
    }

    func streamClosed(_ connection: H2ServerConnection, stream: Int32) {
        check(!closed.contains(stream), "stream \(stream) closed twice")
        closed.insert(stream)
    }

    func connectionQuiescing(_ connection: H2ServerConnection, context: ChannelHandlerContext) {}

    func connectionClosed(_ connection: H2ServerConnection) { connectionClosed += 1 }
}

private let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let sizes = readChunkSizes(&input)
    let answerEarly = input.bool()
    let quiesce = input.int(0...255)
    var settings = H2ServerSettings()
    settings.maxConcurrentStreams = input.int(1...200)
    settings.maxHeaderListSize = input.bool() ? 512 : 1 << 16
    let bytes = preface + input.rest()

    let checker = Checker(answerEarly: answerEarly)
    let channel = EmbeddedChannel()
    let server = H2ServerConnection(settings: settings, delegate: checker)
    do {
        try channel.pipeline.syncOperations.addHandler(server)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        for (index, chunk) in chunks(bytes, sizes: sizes).enumerated() {
            guard channel.isActive else { break }
            if index == quiesce { channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent()) }
            try channel.writeInbound(ByteBuffer(bytes: chunk))
            while try channel.readOutbound(as: ByteBuffer.self) != nil {}
        }
    } catch {
        // An error the channel reports is an outcome, not a failure of the oracle.
    }
    // Closed by the server or not: close, run the loop (the pipeline is torn down in a task on
    // it), and so free the connection and its nghttp2 session. (`finish()` alone throws on a
    // channel already closed before it runs the loop: the first run's "out of memory" was that,
    // 63,000 embedded channels kept.)
    _ = try? channel.finish(acceptAlreadyClosed: true)
    check(checker.connectionClosed == 1, "connection closed reported \(checker.connectionClosed) times")
    return 0
}
