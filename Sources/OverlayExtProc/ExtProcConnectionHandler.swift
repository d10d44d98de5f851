import GRPCTransport
import NIOCore
import NIOHPACK
import NIOHTTP2
import OverlayDecisions
import OverlayRuntime

/// One HTTP/2 connection from Envoy: routes swift-nio-http2's frames to per-stream state.
///
/// Sits after `NIOHTTP2Handler` in frame mode (no stream multiplexer). Envoy opens a new stream for
/// every HTTP exchange, so a child channel and pipeline per stream would dominate the cost; here a
/// stream is one ``ExtProcStream`` object in a dictionary. `NIOHTTP2Handler` still parses and
/// encodes frames, runs HPACK and the per-stream state machines, and reports streams created and
/// closed; this handler adds what the multiplexer would: the inbound flow-control policy (refill
/// windows to their target as data is consumed) and read back-pressure while the socket is not
/// writable.
final class ExtProcConnectionHandler: ChannelDuplexHandler, ExtProcConnection {
    typealias InboundIn = HTTP2Frame
    typealias InboundOut = HTTP2Frame
    typealias OutboundIn = HTTP2Frame
    typealias OutboundOut = HTTP2Frame

    private let shared: ExtProcShared
    private var streams: [HTTP2StreamID: ExtProcStream] = [:]
    /// Target inbound windows: the connection's, and each stream's (SETTINGS_INITIAL_WINDOW_SIZE).
    private let connectionWindowTarget: Int
    private let streamWindowTarget: Int
    private var needsFlush = false
    private var readPending = false
    /// Bytes all streams hold in partial messages, and the cap above which the connection window
    /// is not refilled (so a client cannot make us buffer more than about cap + one window).
    private var buffered = 0
    private let maxBuffered: Int
    /// The connection's inbound window as last reported, and whether a refill waits for the budget.
    private var connectionWindow = 65_535
    private var refillDeferred = false
    private(set) var context: ChannelHandlerContext?
    /// Seeds the per-exchange random sources (splits without a user key, shadow sampling).
    private var seeds = SplitMix64.seededBySystem()

    private static let windowUpdated = ObjectIdentifier(NIOHTTP2WindowUpdatedEvent.self)
    private static let streamClosed = ObjectIdentifier(StreamClosedEvent.self)
    private static let shouldQuiesce = ObjectIdentifier(ChannelShouldQuiesceEvent.self)

    func nextSeed() -> UInt64 { seeds.next() }

    init(shared: ExtProcShared, connectionWindowTarget: Int, streamWindowTarget: Int, maxBufferedBytes: Int) {
        self.shared = shared
        self.connectionWindowTarget = connectionWindowTarget
        self.streamWindowTarget = streamWindowTarget
        self.maxBuffered = maxBufferedBytes
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        // The connection window starts at 65,535 and only WINDOW_UPDATE raises it.
        let increment = connectionWindowTarget - 65_535
        if increment > 0 {
            context.writeAndFlush(
                wrapOutboundOut(HTTP2Frame(streamID: .rootStream, payload: .windowUpdate(windowSizeIncrement: increment))),
                promise: nil)
        }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        for stream in streams.values { stream.release() }
        streams.removeAll()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        let id = frame.streamID
        guard id != .rootStream else {
            context.fireChannelRead(data)  // connection frames: the management handler wants PING acks
            return
        }
        if let stream = streams[id] {
            Self.deliver(context: context, frame.payload, to: stream)
        } else if case .headers = frame.payload {
            let stream = ExtProcStream(id: Int32(id), connection: self, shared: shared)
            streams[id] = stream
            Self.deliver(context: context, frame.payload, to: stream)
        }
        // Anything else for an unknown stream (e.g. DATA after we reset it) is dropped.
    }

    /// A frame for `stream` from the peer.
    private static func deliver(context: ChannelHandlerContext, _ payload: HTTP2Frame.FramePayload, to stream: ExtProcStream) {
        switch payload {
        case .headers(let headers):
            if case .awaitingHeaders = stream.mode {
                var head = GRPCRequestHead()
                for (name, value, _) in headers.headers {
                    switch name {
                    case ":path": head.path = value
                    case ":method": head.method = value
                    case "content-type": head.contentType = value
                    case "grpc-encoding": head.encoding = value
                    case "grpc-timeout": head.timeout = value
                    default: break
                    }
                }
                stream.headersReceived(context: context, head: head, endStream: headers.endStream)
            } else if headers.endStream {
                // Client trailers (gRPC clients send none, but HTTP/2 allows them): end of input.
                stream.clientEnded(context: context)
            }
        case .data(let frame):
            if case .byteBuffer(let buffer) = frame.data, buffer.readableBytes > 0 {
                stream.received(context: context, bytes: buffer)
            }
            if frame.endStream { stream.clientEnded(context: context) }
        default:
            break
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        flushIfNeeded(context: context)
        context.fireChannelReadComplete()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // Exact-type checks first: every stream raises several events, and a cascade of failing
        // `as?` casts costs more than the events' handling.
        let type = ObjectIdentifier(Swift.type(of: event))
        if type == Self.windowUpdated, let window = event as? NIOHTTP2WindowUpdatedEvent {
            // The most frequent event (several per stream) and ours alone: the management handler
            // after us only wants streams created and closed, and quiescing.
            refillWindow(context: context, window)
            return
        } else if type == Self.streamClosed, let closed = event as? StreamClosedEvent {
            streams.removeValue(forKey: closed.streamID)?.release()
        } else if type == Self.shouldQuiesce {
            for stream in streams.values { stream.quiesce(context: context) }
            flushIfNeeded(context: context)
        }
        context.fireUserInboundEventTriggered(event)
    }

    // MARK: - Writing (used by the streams)

    func write(_ context: ChannelHandlerContext, _ frame: HTTP2Frame, promise: EventLoopPromise<Void>?) {
        context.write(wrapOutboundOut(frame), promise: promise)
        needsFlush = true
    }

    func sendMessage(_ context: ChannelHandlerContext, stream: Int32, frame: ByteBuffer, first: Bool) {
        let id = HTTP2StreamID(stream)
        if first { write(context, HTTP2Frame(streamID: id, payload: .headers(.init(headers: GRPCHeaders.responseHeaders))), promise: nil) }
        write(context, HTTP2Frame(streamID: id, payload: .data(.init(data: .byteBuffer(frame)))), promise: nil)
    }

    func sendEnd(_ context: ChannelHandlerContext, stream: Int32, _ end: GRPCStreamEnd, _ shape: EndShape, thenReset: Bool) {
        let id = HTTP2StreamID(stream)
        if case .headersAndTrailers = shape {
            write(context, HTTP2Frame(streamID: id, payload: .headers(.init(headers: GRPCHeaders.responseHeaders))), promise: nil)
        }
        let trailersOnly = shape == .trailersOnly
        let block = !trailersOnly && end == .ok ? GRPCHeaders.okTrailers : GRPCHeaders.block(end, trailersOnly: trailersOnly)
        let frame = HTTP2Frame(streamID: id, payload: .headers(.init(headers: block, endStream: true)))
        guard thenReset else {
            write(context, frame, promise: nil)
            return
        }
        // Reset only once the end has been written: a reset purges frames still queued for flow
        // control.
        let written = context.eventLoop.makePromise(of: Void.self)
        write(context, frame, promise: written)
        written.futureResult.assumeIsolated().whenSuccess { [self] in
            write(context, HTTP2Frame(streamID: id, payload: .rstStream(.noError)), promise: nil)
            context.flush()
        }
    }

    func flush(_ context: ChannelHandlerContext) {
        context.flush()
    }

    private func flushIfNeeded(context: ChannelHandlerContext) {
        if needsFlush {
            needsFlush = false
            context.flush()
        }
    }

    // MARK: - Flow control and back-pressure

    /// Data is consumed as soon as it arrives (a stream holds at most one partial message, bounded
    /// by --max-message-bytes), so a window is refilled to its target once it is half used.
    private func refillWindow(context: ChannelHandlerContext, _ event: NIOHTTP2WindowUpdatedEvent) {
        guard let window = event.inboundWindowSize else { return }
        let target: Int
        if event.streamID == .rootStream {
            connectionWindow = window
            guard buffered <= maxBuffered else {
                refillDeferred = true  // resumed by bufferedChanged once messages complete
                return
            }
            target = connectionWindowTarget
        } else {
            guard streams[event.streamID] != nil else { return }
            target = streamWindowTarget
        }
        guard window <= target / 2 else { return }
        write(context, HTTP2Frame(streamID: event.streamID, payload: .windowUpdate(windowSizeIncrement: target - window)), promise: nil)
    }

    /// A stream's partial-message bytes changed by `delta`.
    func bufferedChanged(context: ChannelHandlerContext, by delta: Int) {
        buffered += delta
        if refillDeferred && buffered <= maxBuffered {
            refillDeferred = false
            let increment = connectionWindowTarget - connectionWindow
            if increment > 0 {
                connectionWindow = connectionWindowTarget
                write(context, HTTP2Frame(streamID: .rootStream, payload: .windowUpdate(windowSizeIncrement: increment)), promise: nil)
                flushIfNeeded(context: context)
            }
        }
    }

    func read(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            context.read()
        } else {
            readPending = true
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable && readPending {
            readPending = false
            context.read()
        }
        context.fireChannelWritabilityChanged()
    }
}

@available(*, unavailable)
extension ExtProcConnectionHandler: Sendable {}
