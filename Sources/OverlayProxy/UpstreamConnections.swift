import NIOCore
import NIOExtras
import NIOHTTP1
import NIOPosix
import NIOSSL
import OverlayRuntime

/// What an upstream connection reports to the exchange using it (the client side's handler).
/// All calls come on the connection's event loop, which is the client connection's.
protocol UpstreamDelegate: AnyObject {
    func upstreamRead(_ part: HTTPClientResponsePart)
    func upstreamReadComplete()
    func upstreamWritabilityChanged()
    func upstreamClosed(error: (any Error)?)
    /// Whether the upstream may be read now (false: the client is not writable, or the response is
    /// held while the overlay's result is awaited).
    var mayReadUpstream: Bool { get }
}

/// The handler at the tail of an upstream connection's pipeline: it hands what arrives to the
/// exchange using the connection (``UpstreamDelegate``) and holds reads while that exchange
/// cannot take more (back-pressure toward the upstream).
final class UpstreamHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = HTTPClientRequestPart
    typealias OutboundOut = HTTPClientRequestPart

    private(set) var context: ChannelHandlerContext?
    /// The client side this connection serves now (nil while idle in the pool). A strong
    /// reference, let go of wherever the connection stops serving it: the pool takes it back, it
    /// is closed (or closes), or this handler leaves the pipeline (a tunnel). A weak one would
    /// give the client's handler a side table, and every retain and release of that handler, many
    /// per request, would take the runtime's slow path.
    var delegate: (any UpstreamDelegate)?
    private var readHeld = false
    /// Called once when the connection closes, with this handler (the pool drops its connection).
    var onClose: ((UpstreamHandler) -> Void)?
    private var closed = false

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        delegate = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        if let delegate {
            delegate.upstreamRead(part)
        } else {
            // An idle connection has nothing to say: whatever it sends cannot be framed.
            context.close(promise: nil)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        delegate?.upstreamReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        delegate?.upstreamWritabilityChanged()
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish(error: nil)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        finish(error: error)
        context.close(promise: nil)
    }

    private func finish(error: (any Error)?) {
        guard !closed else { return }
        closed = true
        let delegate = self.delegate
        self.delegate = nil
        onClose?(self)
        onClose = nil
        delegate?.upstreamClosed(error: error)
    }

    func read(context: ChannelHandlerContext) {
        if let delegate, !delegate.mayReadUpstream {
            readHeld = true
        } else {
            context.read()
        }
    }

    /// The exchange can take more: a read held back is issued now.
    func resumeReading() {
        guard readHeld, let context else { return }
        readHeld = false
        context.read()
    }

    /// Request parts written since the last flush (a flush with nothing written still walks the
    /// outbound pipeline).
    private var unflushed = false

    func write(_ part: HTTPClientRequestPart, flush: Bool = false) {
        guard let context else { return }
        if flush {
            unflushed = false
            context.writeAndFlush(wrapOutboundOut(part), promise: nil)
        } else {
            unflushed = true
            context.write(wrapOutboundOut(part), promise: nil)
        }
    }

    /// Something was written by a handler before this one (the encoder writes the request's head
    /// itself): the next ``flush()`` flushes.
    func wroteBelow() { unflushed = true }

    func flush() {
        guard unflushed, let context else { return }
        unflushed = false
        context.flush()
    }

    var isWritable: Bool { context?.channel.isWritable ?? false }
    var isActive: Bool { !closed && (context?.channel.isActive ?? false) }

    func close() { context?.close(promise: nil) }
}

/// One connection to the upstream: its channel, its tail handler and the two HTTP/1 codecs (kept
/// to be removed when the connection is upgraded into a tunnel).
final class UpstreamConnection {
    let channel: any Channel
    let handler: UpstreamHandler
    let encoder: RequestEncoder
    let decoder: ResponseDecoding
    /// When it was last put in the pool (the pool's sweep closes it ``UpstreamPool`` idle time later).
    var idleSince = NIODeadline.uptimeNanoseconds(0)
    /// Served an exchange before (taken from the pool): it may have been closed by the upstream
    /// at the very moment it was reused.
    var reused = false

    init(
        channel: any Channel, handler: UpstreamHandler, encoder: RequestEncoder,
        decoder: ResponseDecoding
    ) {
        self.channel = channel
        self.handler = handler
        self.encoder = encoder
        self.decoder = decoder
    }
}

/// Connections to the upstream, with the idle keep-alive ones of one event loop kept for reuse
/// (a client connection and every upstream connection it uses share an event loop, so nothing
/// here is locked: it is only touched on its loop).
///
/// At most `maxIdle` idle connections are kept per loop; each is closed after `idleTimeout`
/// unused (found by a sweep that runs every quarter of it while any connection is idle, so within
/// 1.25 × `idleTimeout`), or as soon as the upstream closes it. A timer per release would cost a
/// schedule and a cancel on every request.
final class UpstreamPool {
    let eventLoop: any EventLoop
    private let upstream: Upstream
    private let connectTimeout: TimeAmount
    private let idleTimeout: TimeAmount
    private let maxIdle: Int
    private let tls: NIOSSLContext?
    /// Oldest first: connections are reused from the end (the most recently used).
    private var idle: [UpstreamConnection] = []
    private var sweep: Scheduled<Void>?

    init(eventLoop: any EventLoop, upstream: Upstream, options: ProxyOptions, tls: NIOSSLContext?) {
        self.eventLoop = eventLoop
        self.upstream = upstream
        self.connectTimeout = options.connectTimeout.timeAmount
        self.idleTimeout = options.upstreamIdleTimeout.timeAmount
        self.maxIdle = options.maxIdleUpstreamConnections
        self.tls = tls
    }

    /// The most recently used idle connection that is still open, if any (never for an upgrade,
    /// which takes the connection for good: see ``connect()``). No future: most requests on a
    /// busy connection take this path.
    func takeIdle() -> UpstreamConnection? {
        eventLoop.preconditionInEventLoop()
        while let connection = idle.popLast() {
            if connection.handler.isActive {
                connection.reused = true
                return connection
            }
        }
        return nil
    }

    /// A new connection to the upstream.
    func connect() -> EventLoopFuture<UpstreamConnection>.Isolated {
        eventLoop.preconditionInEventLoop()
        let tls = self.tls
        let host = upstream.host
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    if let tls {
                        let serverName = host.first?.isNumber == true || host.contains(":") ? nil : host
                        try sync.addHandler(NIOSSLClientHandler(context: tls, serverHostname: serverName))
                    }
                    // The decoder learns each request's method from the encoder (a response to HEAD
                    // has no body).
                    let decoder = ResponseDecoding(HTTPResponseDecoder(leftOverBytesStrategy: .forwardBytes))
                    let encoder = RequestEncoder(responses: decoder)
                    try sync.addHandlers([encoder, decoder, UpstreamHandler()])
                }
            }
        return bootstrap.connect(host: upstream.host, port: upstream.port).assumeIsolated().flatMapThrowing { [weak self] channel in
            let sync = channel.pipeline.syncOperations
            let handler = try sync.handler(type: UpstreamHandler.self)
            let encoder = try sync.handler(type: RequestEncoder.self)
            let decoder = try sync.handler(type: ResponseDecoding.self)
            let connection = UpstreamConnection(channel: channel, handler: handler, encoder: encoder, decoder: decoder)
            // Set once: a connection that closes leaves the idle list (if it is there). It is found
            // by its handler: a weak reference to the connection would give it a side table (a
            // slow retain and release every time an exchange takes or returns it).
            handler.onClose = { [weak self] closed in
                guard let self else { return }
                self.idle.removeAll { $0.handler === closed }
            }
            return connection
        }
    }

    /// A connection whose exchange ended cleanly (request sent, response read, keep-alive): kept
    /// for the next exchange on this loop, or closed if enough are kept.
    func release(_ connection: UpstreamConnection) {
        eventLoop.preconditionInEventLoop()
        connection.handler.delegate = nil
        guard connection.handler.isActive, idle.count < maxIdle else {
            connection.handler.close()
            return
        }
        connection.idleSince = .now()
        idle.append(connection)
        scheduleSweep()
        // An idle connection is read, so that the upstream closing it is seen at once.
        connection.handler.resumeReading()
    }

    private func scheduleSweep() {
        guard sweep == nil, !idle.isEmpty else { return }
        let interval = TimeAmount.nanoseconds(max(idleTimeout.nanoseconds / 4, 1_000_000))
        sweep = eventLoop.assumeIsolated().scheduleTask(in: interval) { [weak self] in
            guard let self else { return }
            self.sweep = nil
            self.closeExpired(now: .now())
            self.scheduleSweep()
        }
    }

    /// Closes the connections idle for `idleTimeout` or longer (the oldest are first).
    func closeExpired(now: NIODeadline) {
        var expired = 0
        while expired < idle.count && now - idle[expired].idleSince >= idleTimeout { expired += 1 }
        guard expired > 0 else { return }
        let closing = idle[..<expired]
        idle.removeFirst(expired)
        for connection in closing { connection.handler.close() }
    }

    /// Closes every idle connection (shutdown).
    func closeIdle() {
        sweep?.cancel()
        sweep = nil
        let connections = idle
        idle = []
        for connection in connections { connection.handler.close() }
    }
}

/// After an upgrade (101 Switching Protocols), the two connections are glued: the bytes of each
/// are written to the other, reads are held while the other side is not writable, and a close or
/// half-close of one is passed to the other.
final class TunnelHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    weak var partner: TunnelHandler?
    private var context: ChannelHandlerContext?
    private var readHeld = false
    private let onClose: (() -> Void)?

    init(onClose: (() -> Void)? = nil) {
        self.onClose = onClose
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        partner?.context?.write(data, promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        partner?.context?.flush()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { partner?.resumeReading() }
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            // Shutdown: a tunnel has no message boundary to wait for.
            context.close(promise: nil)
            return
        }
        if let event = event as? ChannelEvent, case .inputClosed = event {
            // Half-close: the other side's output is closed too (a WebSocket close handshake or
            // a raw protocol's end of stream).
            if let partnerContext = partner?.context {
                partnerContext.close(mode: .output, promise: nil)
            }
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        partner?.context?.close(promise: nil)
        partner = nil
        onClose?()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    func read(context: ChannelHandlerContext) {
        if let partnerContext = partner?.context, !partnerContext.channel.isWritable {
            readHeld = true
        } else {
            context.read()
        }
    }

    private func resumeReading() {
        guard readHeld, let context else { return }
        readHeld = false
        context.read()
    }
}
