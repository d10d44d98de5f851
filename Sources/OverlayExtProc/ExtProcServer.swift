import ExtProcCore
import GRPCTransport
import Logging
import NIOCore
import NIOExtras
import NIOPosix
import NIOSSL
import OverlayCore
import OverlayRuntime
import ServiceLifecycle
import Locking

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
    /// `--tls-cert`/`--tls-key`/`--tls-client-ca`: TLS (ALPN h2, mTLS with a client CA), see
    /// ``ExtProcTLS``; nil: h2c with prior knowledge.
    public var tls: NIOSSLContext?
    /// Event-loop threads (default: the CPUs this process may use, honouring taskset/cpusets).
    public var threads = CPUAffinity.usableCores

    public init() {}
}

/// The ext_proc server as a `Service`: binds, serves until graceful shutdown, then drains.
///
/// HTTP/2 by libnghttp2 under SwiftNIO's sockets (see README "Design"): h2c with prior knowledge
/// or TLS, one ``H2ServerConnection`` per connection whose ``ExtProcH2Connection`` holds an
/// ``ExtProcStream`` per HTTP/2 stream, answering synchronously on the connection's event loop.
/// On graceful shutdown the listener closes, health turns NOT_SERVING, every connection gets
/// GOAWAY (the transport's two-step drain) and in-flight streams have `drainTimeout` to finish
/// before connections are closed.
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
        let grace = options.drainTimeout.timeAmount
        let tls = options.tls
        let bootstrap = ServerBootstrap.overlaydListener(group: group, quiesce: quiesce)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            // A peer that vanished (a shared service's client across the network) is found by TCP
            // keepalive; the libnghttp2 layer sends no PINGs of its own.
            .childChannelOption(.socketOption(.so_keepalive), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls)) }
                    var settings = H2ServerSettings()
                    settings.maxConcurrentStreams = maxStreams
                    settings.streamWindow = Self.streamWindowTarget
                    settings.connectionWindow = Self.connectionWindowTarget
                    // Partial messages of all streams may hold at most two maximum-size messages
                    // before the connection window stops being given back.
                    settings.maxBufferedBytes = 2 * shared.maxMessageBytes
                    settings.graceTime = grace
                    try channel.pipeline.syncOperations.addHandler(ExtProcH2Connection.handler(shared: shared, settings: settings))
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

    static func describe(_ address: SocketAddress?, fallback: ListenAddress) -> String {
        guard let address else { return fallback.description }
        switch address {
        case .v4(let v4): return "\(v4.host):\(address.port ?? 0)"
        case .v6(let v6): return "[\(v6.host)]:\(address.port ?? 0)"
        case .unixDomainSocket: return fallback.description
        }
    }
}
