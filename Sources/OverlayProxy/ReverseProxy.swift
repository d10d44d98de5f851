import CoreMetrics
import Logging
import NIOCore
import NIOExtras
import NIOHTTP1
import NIOHTTP2
import NIOPosix
import NIOSSL
import OverlayRuntime
import ServiceLifecycle

/// `overlayd proxy`: an HTTP/1.1 reverse proxy in front of one upstream, making the same overlay
/// decisions as the ext_proc adapter (``ExchangeStateMachine``) with the same pure functions:
/// ``RequestRouter``, `Overlay.plan`, ``ResponsePlan``, ``ResponseRewrite``, ``OverlayResultView``,
/// and the same ``OverlayEngine``. This type and its handlers are transport only.
///
/// The data path is SwiftNIO's HTTP/1 codec on both sides (``ProxyHandler`` for the client,
/// ``UpstreamPool`` for keep-alive connections to the upstream on the client's own event loop):
/// no task or thread hop per request or per chunk. Bodies stream both ways with back-pressure;
/// only the HTML injector's partial tag or a JSON body being enriched (up to the overlay's
/// `maxBodyBytes`) is ever held. `Upgrade` requests (WebSocket) get a connection of their own,
/// glued to the client's byte for byte once the upstream answers 101.
public final class ReverseProxy: Service, Sendable {
    private let options: ProxyOptions
    private let configStore: ConfigStore
    private let engine: OverlayEngine?
    private let health: HealthState?
    private let logger: Logger
    private let metrics: ProxyMetrics
    private let limits: ClientLimits
    private let services: ExchangeServices
    private let bound = BoundAddress()
    private let resolveUpstream: (@Sendable () async throws -> Upstream)?

    /// - Parameters:
    ///   - engine: runs the model calls (nil: overlaid requests get a failed result).
    ///   - health: marked listening once bound and draining on shutdown (nil when another
    ///     front end reports readiness).
    public init(
        options: ProxyOptions, configStore: ConfigStore, engine: OverlayEngine?, health: HealthState?,
        metricsFactory: any MetricsFactoryBox, logger: Logger,
        resolveUpstream: (@Sendable () async throws -> Upstream)? = nil
    ) {
        self.resolveUpstream = resolveUpstream
        self.options = options
        self.configStore = configStore
        self.engine = engine
        self.health = health
        self.logger = logger
        self.metrics = ProxyMetrics(factory: metricsFactory.factory)
        self.limits = ClientLimits(options: options, factory: metricsFactory.factory)
        self.services = ExchangeServices(
            frontend: "proxy", configStore: configStore, engine: engine, metricsFactory: metricsFactory, logger: logger)
    }

    /// The port the proxy listens on, once it does (waits until then); nil if the proxy stopped
    /// before it listened.
    public func listeningPort() async -> Int? { await bound.port() }

    public func run() async throws {
        defer { bound.finish() }
        // The demo's app binds a free port first: the proxy learns it here.
        let upstream = try await resolveUpstream?() ?? options.upstream
        let group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, options.threads))
        do {
            try await serve(upstream: upstream, group: group)
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
        try await group.shutdownGracefully()
    }

    private func serve(upstream: Upstream, group: MultiThreadedEventLoopGroup) async throws {
        let tls = upstream.scheme == "https" ? try NIOSSLContext(configuration: .makeClientConfiguration()) : nil
        var pools: [NIOLoopBound<UpstreamPool>] = []
        for loop in group.makeIterator() {
            pools.append(
                try await loop.submit {
                    NIOLoopBound(UpstreamPool(eventLoop: loop, upstream: upstream, options: self.options, tls: tls), eventLoop: loop)
                }.get())
        }
        let shared = ProxyShared(options: options, upstream: upstream, services: services, metrics: metrics, pools: pools)
        let limits = self.limits
        let quiesce = ServerQuiescingHelper(group: group)
        let bootstrap = ServerBootstrap.overlaydListener(group: group, quiesce: quiesce)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    // Over a connection cap: closed at accept (counted by the limits).
                    guard limits.admit(channel) else { return }
                    try Self.configureClient(channel, shared: shared, limits: limits)
                }
            }
        let (host, port) = (options.listenHost, options.listenPort)
        let server = try await ListenFailure.opening(
            option: options.listenOption, address: ListenAddress.tcp(host: host, port: port).description
        ) {
            try await bootstrap.bind(host: host, port: port).get()
        }
        let boundPort = server.localAddress?.port ?? port
        bound.set(boundPort)
        health?.markListening()
        logger.info("proxy listening on \(ListenAddress.tcp(host: host, port: boundPort)), upstream \(upstream)")

        try await withTaskCancellationHandler {
            try await withGracefulShutdownHandler {
                try await server.closeFuture.get()
            } onGracefulShutdown: { [health] in
                health?.markDraining()
                // Stop accepting; idle connections close, busy ones once their response is written.
                quiesce.initiateShutdown(promise: nil)
            }
        } onCancel: {
            // Cancelled (another service of the group failed): the same stop, and the drain wait
            // below ends at once (its sleep is cancelled too); the group's shutdown closes the rest.
            quiesce.initiateShutdown(promise: nil)
        }
        // The listener is closed: wait until every connection has closed, the drain timeout has
        // passed, or this task is cancelled, whichever comes first (a future's get() would not
        // end on cancellation). What is still open then is closed by the group's shutdown.
        let loop = group.next()
        let drained = loop.makePromise(of: Void.self)
        let (done, finish) = AsyncStream<Void>.makeStream()
        drained.futureResult.whenComplete { _ in finish.finish() }
        let timer = loop.scheduleTask(in: options.drainTimeout.timeAmount) { [logger] in
            logger.notice("proxy drain timeout: closing the connections still open")
            finish.finish()
        }
        quiesce.initiateShutdown(promise: drained)
        for await _ in done {}
        timer.cancel()
        for pool in pools {
            try? await pool.eventLoop.submit { pool.value.closeIdle() }.get()
        }
    }

    /// A client connection's pipeline: HTTP/1.1, or HTTP/2 by prior knowledge (h2c), told apart by
    /// the first bytes (``H2CSniffer``).
    private static func configureClient(_ channel: any Channel, shared: ProxyShared, limits: ClientLimits) throws {
        let accepted = channel.eventLoop.now
        try channel.pipeline.syncOperations.addHandler(
            H2CSniffer(
                timeout: shared.options.clientHeaderTimeout.timeAmount,
                onTimeout: { limits.count("header_timeout") },
                http1: { channel in try configureHTTP1(channel, shared: shared, guard: ClientGuard(limits: limits, now: accepted)) },
                http2: { channel in try configureHTTP2(channel, shared: shared, limits: limits) }))
    }

    /// h2c: NIO's HTTP/2 handler with a stream multiplexer; each stream gets the HTTP/2-to-HTTP/1
    /// codec and its own ``ProxyHandler`` (HTTP/2 has no Upgrade: streams are never tunnels).
    private static func configureHTTP2(_ channel: any Channel, shared: ProxyShared, limits: ClientLimits) throws {
        var connection = NIOHTTP2Handler.ConnectionConfiguration()
        connection.initialSettings = [
            HTTP2Setting(parameter: .maxConcurrentStreams, value: 256),
            HTTP2Setting(parameter: .initialWindowSize, value: 1 << 20),
            HTTP2Setting(parameter: .maxHeaderListSize, value: shared.options.maxRequestHeadBytes),
        ]
        // Shutdown (ChannelShouldQuiesceEvent) and idleness end a connection with GOAWAY, letting
        // its streams finish (at most the drain timeout); the handler counts streams through the
        // multiplexer's stream delegate.
        let manager = NIOHTTP2ServerConnectionManagementHandler(
            eventLoop: channel.eventLoop,
            configuration: .init(
                maxIdleTime: shared.options.keepaliveTimeout.timeAmount, maxAge: nil, maxGraceTime: shared.options.drainTimeout.timeAmount, keepalive: nil))
        _ = try channel.pipeline.syncOperations.configureHTTP2Pipeline(
            mode: .server, connectionConfiguration: connection, streamConfiguration: .init(),
            streamDelegate: manager.http2StreamDelegate
        ) { stream in
            stream.eventLoop.makeCompletedFuture {
                let sync = stream.pipeline.syncOperations
                try sync.addHandler(HTTP2FramePayloadToHTTP1ServerCodec())
                try sync.addHandler(ProxyHandler(shared: shared, codecHandlers: [], decoder: nil))
            }
        }
        let sync = channel.pipeline.syncOperations
        try sync.addHandlers([manager, H2ConnectionGuard(limits: limits), CloseOnInputClosed()])
        // The connection is already active (the sniffer read its preface): the manager starts its
        // idle timer on channelActive, so it gets one now, or a connection that never opens a
        // stream would never be closed by --keepalive-timeout.
        try sync.context(handlerType: NIOHTTP2Handler.self).fireChannelActive()
    }

    /// HTTP/1.1: NIO's request decoder (driven by ``RequestDecoding``), the ``ClientGuard``, then
    /// ``ProxyHandler``, which serves pipelined requests in turn and finishes the one in flight at
    /// shutdown (``RequestSequencer``), writes its responses as bytes (``ResponseFramer``) and
    /// answers a malformed request with 400 itself: NIO's pipelining handler, response encoder and
    /// protocol error handler would each be one more handler that every part passes.
    private static func configureHTTP1(_ channel: any Channel, shared: ProxyShared, guard clientGuard: ClientGuard) throws {
        let sync = channel.pipeline.syncOperations
        // The request decoder keeps the bytes after an `Upgrade` request for the tunnel (the proxy
        // does the upgrade itself).
        // The head limit is NIO's decoder's (the request line and the fields, and any one field):
        // past it the decoder fails with `headerOverflow`, which the guard answers with 431.
        var decoderLimits = NIOHTTPDecoderLimitConfiguration()
        decoderLimits.maxHeaderListSize = shared.options.maxRequestHeadBytes
        decoderLimits.maxHeaderFieldSize = shared.options.maxRequestHeadBytes
        let decoder = RequestDecoding(HTTPRequestDecoder(leftOverBytesStrategy: .forwardBytes, limitConfiguration: decoderLimits))
        // No response encoder: the proxy's handler writes its responses as bytes (ResponseFramer).
        try sync.addHandlers([decoder, clientGuard])
        let codecHandlers: [any RemovableChannelHandler] = [clientGuard]
        try sync.addHandler(ProxyHandler(shared: shared, codecHandlers: codecHandlers, decoder: decoder, clientGuard: clientGuard))
    }

    /// An upstream failure before its response head: the client gets this status.
    struct UpstreamFailed: Error {
        var status: Int
        var kind: String
        var detail: String
    }

    /// 504 for timeouts, 502 for everything else. The kind says when it happened: `connect`
    /// (refused, unreachable: no connection was made), `timeout`, or `error` (the connection
    /// was made, then reset, closed or answered with something malformed before the head).
    static func classify(_ error: any Error, connecting: Bool) -> UpstreamFailed {
        if error is UpstreamTimedOut {
            return UpstreamFailed(status: 504, kind: "timeout", detail: "\(error)")
        }
        if let error = error as? ChannelError, case .connectTimeout = error {
            return UpstreamFailed(status: 504, kind: "timeout", detail: "\(error)")
        }
        if connecting {
            return UpstreamFailed(status: 502, kind: "connect", detail: "\(error)")
        }
        return UpstreamFailed(status: 502, kind: "error", detail: "\(error)")
    }
}

/// The bound port, awaited by whoever needs it (tests, the demo's banner).
public typealias BoundAddress = Bound<Int>

extension Bound<Int> {
    /// The bound port, once there is one; nil if the server stopped without binding.
    public func port() async -> Int? { await value() }
}

/// The proxy's own metrics. Decisions and injections are counted in the vocabulary both front
/// ends share (``OverlayMetrics``, `frontend="proxy"`); the engine's and the config store's are
/// shared with ext_proc mode.
///
/// - `overlayd_proxy_upstream_errors_total{kind}`: connect, timeout, error, body.
/// - `overlayd_proxy_client_aborts_total`: client connections closed mid-exchange.
/// - `overlayd_proxy_upstream_retries_total`: idempotent requests sent again because the reused
///   keep-alive connection was closed by the upstream before any answer.
final class ProxyMetrics: Sendable {
    let clientAborts: Counter
    let upstreamRetries: Counter
    private let errors: [String: Counter]

    init(factory: any MetricsFactory) {
        clientAborts = Counter(label: "overlayd_proxy_client_aborts_total", factory: factory)
        upstreamRetries = Counter(label: "overlayd_proxy_upstream_retries_total", factory: factory)
        var errors: [String: Counter] = [:]
        for kind in ["connect", "timeout", "error", "body"] {
            errors[kind] = Counter(label: "overlayd_proxy_upstream_errors_total", dimensions: [("kind", kind)], factory: factory)
        }
        self.errors = errors
    }

    func upstreamError(_ kind: String) { errors[kind]?.increment() }
}
