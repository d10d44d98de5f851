import NIOCore
import NIOHTTP1

/// NIO's HTTP/1 decoder, `HTTPDecoder` (llhttp, NIO's parser, with NIO's checks and limits),
/// driven the way NIO's `ByteToMessageHandler` drives it, by handlers of this module.
///
/// `ByteToMessageHandler` is generic code of another module that the compiler cannot specialise:
/// it runs with its decoder's type looked up at run time (each read built `Optional<Decoder>`'s
/// metadata through the runtime's cache and cast the read's `NIOAny`), about 2,200 instructions
/// per read and 2,400 per request head it observed, beside the parser's own work. Here the same
/// steps are compiled for the two concrete decoders: ``RequestDecoding`` on a client connection,
/// ``ResponseDecoding`` on an upstream connection.
///
/// What is kept of `ByteToMessageHandler`'s behaviour, for this decoder (which consumes all it is
/// given, unless it has stopped at an upgrade or failed):
/// - each read is decoded as it comes; one that arrives while a read is being decoded (from a
///   handler after this one) is decoded right after it;
/// - bytes the decoder leaves (after an upgrade) are kept, with every read after them;
/// - a decoding error is fired once; after it nothing is decoded, and each read fires
///   `ByteToMessageDecoderError.dataReceivedInErrorState`;
/// - at the end of the input (`channelInactive`, or `inputClosed`) the decoder's last call, with
///   `seenEOF`, is made once, before the event goes on (a response delimited by the close ends
///   there); if the input ends while a read is being decoded, right after that read;
/// - a request head written while a read is being decoded (the next request, sent from inside
///   the previous response's end) reaches the response decoder once that read is decoded: bytes
///   that came before the request was written are not taken as its response (the upstream sent
///   more than it was asked for: `unsolicitedResponse`);
/// - removed from the pipeline (an upgrade's tunnel), its last call without `seenEOF` hands the
///   bytes it did not parse to the next handler (`.forwardBytes`), on the next loop tick, then it
///   leaves; reads between the removal and that tick are kept for it.
final class HTTP1DecoderDriver<In, Out> {
    let decoder: HTTPDecoder<In, Out>
    /// Bytes read and not consumed by the decoder (after an upgrade), or read while decoding.
    private var unparsed: ByteBuffer?
    private var decoding = false
    /// The decoding error, fired once.
    private var failure: (any Error)?
    /// The last call was made (or the handler is gone): nothing more is decoded.
    private var done = false
    /// Removal started: reads are kept for the last call.
    private var removing = false
    /// The input ended while decoding: the last call is due when that read is decoded.
    private var lastDue = false
    /// The decoder as a response decoder, which learns of each request head (nil for requests).
    private let responseDecoder: HTTPResponseDecoder?
    /// Request heads written while decoding, for the response decoder once that read is decoded.
    private var heldRequests: [HTTPRequestHead] = []

    init(_ decoder: HTTPDecoder<In, Out>) {
        self.decoder = decoder
        responseDecoder = decoder as? HTTPResponseDecoder
    }

    /// A request head was written (response decoders only).
    func requestWritten(_ head: HTTPRequestHead) {
        if decoding {
            heldRequests.append(head)
        } else {
            responseDecoder?.write(data: .head(head))
        }
    }

    private func releaseHeldRequests() {
        guard !heldRequests.isEmpty else { return }
        for head in heldRequests { responseDecoder?.write(data: .head(head)) }
        heldRequests.removeAll()
    }

    func added(context: ChannelHandlerContext) { decoder.decoderAdded(context: context) }

    func removed(context: ChannelHandlerContext) {
        done = true
        decoder.decoderRemoved(context: context)
    }

    func read(_ buffer: ByteBuffer, context: ChannelHandlerContext) {
        if let failure {
            context.fireErrorCaught(ByteToMessageDecoderError.dataReceivedInErrorState(failure, buffer))
            return
        }
        // An empty read is not decoded (the parser would report an empty body part).
        guard !done, buffer.readableBytes > 0 else { return }
        if decoding || removing || unparsed != nil {
            var kept = unparsed ?? context.channel.allocator.buffer(capacity: buffer.readableBytes)
            var more = buffer
            kept.writeBuffer(&more)
            unparsed = kept
            if decoding || removing { return }
            decodeUnparsed(context: context)
        } else {
            var buffer = buffer
            decode(&buffer, context: context)
        }
    }

    /// End of input: the decoder's last call with `seenEOF` (now, or once the read being decoded is).
    func inputEnded(context: ChannelHandlerContext) {
        guard failure == nil, !done else { return }
        if decoding {
            lastDue = true
        } else {
            last(seenEOF: true, context: context)
        }
    }

    /// Removal (``RemovableChannelHandler``): the last call without `seenEOF` on the next tick, then
    /// the handler leaves the pipeline.
    func remove(context: ChannelHandlerContext, removalToken: ChannelHandlerContext.RemovalToken) {
        removing = true
        context.eventLoop.assumeIsolated().execute {
            if self.failure == nil && !self.done { self.last(seenEOF: false, context: context) }
            context.leavePipeline(removalToken: removalToken)
        }
    }

    private func decode(_ buffer: inout ByteBuffer, context: ChannelHandlerContext) {
        decoding = true
        do {
            _ = try decoder.decode(context: context, buffer: &buffer)
        } catch {
            decoding = false
            fail(error, context: context)
            return
        }
        decoding = false
        releaseHeldRequests()
        if buffer.readableBytes > 0 {
            // Stopped (an upgrade): these bytes, and any read meanwhile, wait for the last call.
            if var meanwhile = unparsed { buffer.writeBuffer(&meanwhile) }
            unparsed = buffer
        } else if unparsed != nil, !removing {
            // Read while decoding.
            decodeUnparsed(context: context)
            return
        }
        if lastDue {
            lastDue = false
            last(seenEOF: true, context: context)
        }
    }

    private func decodeUnparsed(context: ChannelHandlerContext) {
        guard var buffer = unparsed else { return }
        unparsed = nil
        decode(&buffer, context: context)
    }

    private func last(seenEOF: Bool, context: ChannelHandlerContext) {
        done = true
        var buffer = unparsed ?? context.channel.allocator.buffer(capacity: 0)
        unparsed = nil
        decoding = true
        defer {
            decoding = false
            releaseHeldRequests()
        }
        do {
            _ = try decoder.decodeLast(context: context, buffer: &buffer, seenEOF: seenEOF)
        } catch {
            fail(error, context: context)
        }
    }

    private func fail(_ error: any Error, context: ChannelHandlerContext) {
        failure = error
        unparsed = nil
        context.fireErrorCaught(error)
    }
}

/// A handler around an ``HTTP1DecoderDriver``: its events are the driver's (each conforming class
/// is concrete, so these bodies are compiled for its decoder).
protocol HTTP1Decoding: ChannelInboundHandler, RemovableChannelHandler where InboundIn == ByteBuffer {
    associatedtype Message
    associatedtype Observed
    var driver: HTTP1DecoderDriver<Message, Observed> { get }
}

extension HTTP1Decoding {
    func handlerAdded(context: ChannelHandlerContext) { driver.added(context: context) }
    func handlerRemoved(context: ChannelHandlerContext) { driver.removed(context: context) }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        driver.read(unwrapInboundIn(data), context: context)
    }

    func channelInactive(context: ChannelHandlerContext) {
        driver.inputEnded(context: context)
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed { driver.inputEnded(context: context) }
        context.fireUserInboundEventTriggered(event)
    }

    func removeHandler(context: ChannelHandlerContext, removalToken: ChannelHandlerContext.RemovalToken) {
        driver.remove(context: context, removalToken: removalToken)
    }
}

/// A client connection's request decoder (NIO's `HTTPRequestDecoder`).
final class RequestDecoding: HTTP1Decoding {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = HTTPServerRequestPart
    let driver: HTTP1DecoderDriver<HTTPServerRequestPart, HTTPServerResponsePart>

    init(_ decoder: HTTPRequestDecoder) { driver = HTTP1DecoderDriver(decoder) }
}

/// An upstream connection's response decoder (NIO's `HTTPResponseDecoder`). It must learn of each
/// request head (a response to HEAD has no body): ``RequestEncoder`` tells it
/// (``HTTP1DecoderDriver/requestWritten(_:)``).
final class ResponseDecoding: HTTP1Decoding {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = HTTPClientResponsePart
    let driver: HTTP1DecoderDriver<HTTPClientResponsePart, HTTPClientRequestPart>

    init(_ decoder: HTTPResponseDecoder) { driver = HTTP1DecoderDriver(decoder) }
}
