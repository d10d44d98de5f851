import ExtProcCore
import GRPCTransport
import Logging
import NIOCore
import NIOExtras
import NIOHTTP2
import NIOPosix
import NIOSSL
import OverlayCore
import OverlayRuntime
import ServiceLifecycle
import Locking

/// The HTTP/2 implementation under the ext_proc listener.
public enum HTTP2Layer: String, Sendable, CaseIterable {
    case nghttp2
    case swiftNIO = "swift-nio-http2"
}

/// Options of the ext_proc gRPC server.
public struct ExtProcServerOptions: Sendable {
    /// `--listen`: default `127.0.0.1:50051`.
    public var listen: ListenAddress = .tcp(host: "127.0.0.1", port: 50051)
    /// The option that set ``listen``, named when the address cannot be opened.
    public var listenOption = "--listen"
    /// `--drain-timeout`: how long in-flight streams may run after SIGTERM (default 10 s).
    public var drainTimeout: Duration = .seconds(10)
    /// `--max-message-bytes`: the largest gRPC message accepted (default 32 MiB; Envoy's BUFFERED
    /// bodies are bounded by its buffer limit, 1 MiB by default, §14).
    public var maxMessageBytes = 32 * 1024 * 1024
    /// `--max-concurrent-streams`: HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS per connection (default 4096;
    /// Envoy multiplexes every exchange of a worker over few connections).
    public var maxConcurrentStreams = 4096
    /// `--strict-http2` (swift-nio-http2 layer only; libnghttp2 always checks): run swift-nio-http2's semantic header-block and content-length checks on
    /// every stream (default off: the peer is the local Envoy, frames and HPACK are still fully
    /// parsed and checked, and overlayd validates every header it uses; the checks cost ~7 % of
    /// the per-stream CPU).
    public var strictHTTP2 = false
    /// `--http2`: the HTTP/2 layer of the listener: libnghttp2 (``H2ServerConnection``, the
    /// default) or swift-nio-http2 (``ExtProcConnectionHandler``, the earlier layer, kept while
    /// the new one settles).
    public var http2: HTTP2Layer = .nghttp2
    /// `--tls-cert`/`--tls-key`/`--tls-client-ca`: TLS (ALPN h2, mTLS with a client CA), see
    /// ``ExtProcTLS``; nil: h2c with prior knowledge.
    public var tls: NIOSSLContext?
    /// Event-loop threads (default: the CPUs this process may use, honouring taskset/cpusets).
    public var threads = CPUAffinity.usableCores

    public init() {}
}

/// The ext_proc server as a `Service`: binds, serves until graceful shutdown, then drains.
///
/// Built on swift-nio-http2 directly (see README "Design"): h2c with prior knowledge, one
/// ``ExtProcConnectionHandler`` per connection holding an ``ExtProcStream`` per HTTP/2 stream (no
/// child channel), answering synchronously on the connection's event loop. On graceful shutdown
/// the listener closes, health turns NOT_SERVING, every connection gets GOAWAY (swift-nio-http2's
/// connection management handler) and in-flight streams have `drainTimeout` to finish before
/// connections are closed.
public final class ExtProcServer: Service, Sendable {
    private let options: ExtProcServerOptions
    private let shared: ExtProcShared
    private let group: MultiThreadedEventLoopGroup
    private let boundAddress = Locked<String?>(nil)
    private let bound: AsyncStream<String>
    private let boundContinuation: AsyncStream<String>.Continuation

    public init(
        options: ExtProcServerOptions, configStore: ConfigStore, health: HealthState,
        metricsFactory: any MetricsFactoryBox, logger: Logger, engine: OverlayEngine? = nil
    ) {
        self.options = options
        self.shared = ExtProcShared(
            services: ExchangeServices(
                frontend: "extproc", configStore: configStore, engine: engine, metricsFactory: metricsFactory, logger: logger),
            health: health, metrics: ExtProcMetrics(factory: metricsFactory.factory), maxMessageBytes: options.maxMessageBytes)
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, options.threads))
        (bound, boundContinuation) = AsyncStream.makeStream(of: String.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// The address actually bound (port 0 resolved), once listening.
    public func listeningAddress() async -> String? {
        if let address = boundAddress.withLock({ $0 }) { return address }
        for await address in bound { return address }
        return nil
    }

    public func run() async throws {
        defer { boundContinuation.finish() }
        do {
            // The quiescing helper must be gone before the loops stop (its deinit uses them).
            try await serveAndDrain()
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
        try? await group.shutdownGracefully()
    }

    private func serveAndDrain() async throws {
        let quiesce = ServerQuiescingHelper(group: group)
        let shared = self.shared
        let options = self.options
        let channel = try await bind(quiesce: quiesce, shared: shared, options: options)
        let socketFile: FileIdentity? = if case .unix(let path) = options.listen { FileIdentity(path: path) } else { nil }
        let address = Self.describe(channel.localAddress, fallback: options.listen)
        boundAddress.withLock { $0 = address }
        boundContinuation.yield(address)
        boundContinuation.finish()
        shared.health.markListening()
        shared.services.logger.info("ext_proc listening on \(address)", metadata: ["threads": "\(options.threads)"])

        // Serve until graceful shutdown (SIGTERM/SIGINT) or cancellation.
        try? await gracefulShutdown()

        shared.health.markDraining()
        if !Task.isCancelled {
            shared.services.logger.info("ext_proc draining", metadata: ["drain_timeout": "\(options.drainTimeout)"])
        }
        let drained = group.next().makePromise(of: Void.self)
        quiesce.initiateShutdown(promise: drained)
        let timeout = options.drainTimeout
        let finished = await withTaskGroup(of: Bool.self) { tasks in
            tasks.addTask {
                (try? await drained.futureResult.get()) != nil
            }
            tasks.addTask {
                try? await Task.sleep(for: timeout)
                return false
            }
            let first = await tasks.next() ?? false
            tasks.cancelAll()
            return first
        }
        if finished {
            shared.services.logger.info("ext_proc drained: every stream finished")
        } else if Task.isCancelled {
            // Not a drain: another service of the group failed, and everything stops at once.
            shared.services.logger.info("ext_proc stopping: cancelled, closing the connections")
        } else {
            shared.services.logger.warning("ext_proc drain timeout: closing the remaining connections", metadata: ["drain_timeout": "\(timeout)"])
        }
        // The quiescing helper can report "drained" before the listener has finished closing.
        try? await channel.closeFuture.get()
        // Our socket file only: if the path names another file now, someone replaced ours and it
        // is theirs to remove.
        if case .unix(let path) = options.listen, let socketFile, FileIdentity(path: path) == socketFile { _ = unlink(path) }
    }

    private func bind(quiesce: ServerQuiescingHelper, shared: ExtProcShared, options: ExtProcServerOptions) async throws -> any Channel {
        let maxStreams = options.maxConcurrentStreams
        let strict = options.strictHTTP2
        let grace = options.drainTimeout.timeAmount
        let layer = options.http2
        let tls = options.tls
        let bootstrap = ServerBootstrap.overlaydListener(group: group, quiesce: quiesce)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            // A peer that vanished (a shared service's client across the network) is found by TCP
            // keepalive; the libnghttp2 layer sends no PINGs of its own.
            .childChannelOption(.socketOption(.so_keepalive), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls)) }
                    switch layer {
                    case .nghttp2:
                        var settings = H2ServerSettings()
                        settings.maxConcurrentStreams = maxStreams
                        settings.streamWindow = Self.streamWindowTarget
                        settings.connectionWindow = Self.connectionWindowTarget
                        settings.maxBufferedBytes = 2 * shared.maxMessageBytes
                        settings.graceTime = grace
                        try channel.pipeline.syncOperations.addHandler(ExtProcH2Connection.handler(shared: shared, settings: settings))
                    case .swiftNIO:
                        try Self.configureConnection(channel, shared: shared, maxStreams: maxStreams, grace: grace, strict: strict)
                    }
                }
            }
        return try await ListenFailure.opening(option: options.listenOption, address: "\(options.listen)") {
            switch options.listen {
            case .tcp(let host, let port):
                return try await bootstrap.bind(host: host, port: port).get()
            case .unix(let path):
                // A stale socket file (left by a crash) is replaced; a live one is not taken over.
                if await options.listen.unixSocketAnswers(group: group) { throw UnixSocketInUse() }
                return try await bootstrap.bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true).get()
            }
        }
    }

    /// Inbound flow-control targets: each stream may have 1 MiB in flight (a BUFFERED body
    /// message of Envoy's default buffer limit, §14), the connection 16 MiB.
    static let streamWindowTarget = 1 << 20
    static let connectionWindowTarget = 1 << 24

    static func configureConnection(
        _ channel: any Channel, shared: ExtProcShared, maxStreams: Int, grace: TimeAmount, strict: Bool
    ) throws {
        let sync = channel.pipeline.syncOperations
        let management = NIOHTTP2ServerConnectionManagementHandler(
            eventLoop: channel.eventLoop,
            configuration: .init(
                maxIdleTime: nil, maxAge: nil, maxGraceTime: grace,
                keepalive: .init(pingInterval: .hours(2), ackTimeout: .seconds(20))))
        var connection = NIOHTTP2Handler.ConnectionConfiguration()
        connection.initialSettings = [
            HTTP2Setting(parameter: .maxConcurrentStreams, value: maxStreams),
            HTTP2Setting(parameter: .initialWindowSize, value: streamWindowTarget),
            HTTP2Setting(parameter: .maxHeaderListSize, value: 1 << 16),
        ]
        connection.headerBlockValidation = strict ? .enabled : .disabled
        connection.contentLengthValidation = strict ? .enabled : .disabled
        // Envoy ends every Process stream with RST_STREAM (§1): the reset rate equals the exchange
        // rate. swift-nio-http2's rapid-reset guard (CVE-2023-44487) allows 200 resets per 30 s by
        // default and would GOAWAY(ENHANCE_YOUR_CALM) a busy Envoy connection within a second.
        // Allow 20,000 per 100 ms (200k/s per connection, above any exchange rate we can serve) so
        // a reset flood is still bounded. The limiter preallocates `maximumCount` timestamps.
        var stream = NIOHTTP2Handler.StreamConfiguration()
        stream.streamResetFrameRateLimit.maximumCount = 20_000
        stream.streamResetFrameRateLimit.windowLength = .milliseconds(100)
        // Frame mode: NIOHTTP2Handler hands every stream's frames to ExtProcConnectionHandler.
        // Stream frames stop at ExtProcConnectionHandler; connection frames (PING acks) and every
        // user event but window updates go on to the management handler (GOAWAY on drain, keepalive,
        // grace timer).
        try sync.addHandler(NIOHTTP2Handler(mode: .server, connectionConfiguration: connection, streamConfiguration: stream))
        // Partial messages of all streams may hold at most two maximum-size messages before the
        // connection window stops being refilled.
        try sync.addHandler(ExtProcConnectionHandler(
            shared: shared, connectionWindowTarget: connectionWindowTarget, streamWindowTarget: streamWindowTarget,
            maxBufferedBytes: 2 * shared.maxMessageBytes))
        try sync.addHandler(management)
    }

    static func describe(_ address: SocketAddress?, fallback: ListenAddress) -> String {
        guard let address else { return fallback.description }
        switch address {
        case .v4(let v4): return "\(v4.host):\(address.port ?? 0)"
        case .v6(let v6): return "[\(v6.host)]:\(address.port ?? 0)"
        case .unixDomainSocket: return fallback.description
        }
    }
}
