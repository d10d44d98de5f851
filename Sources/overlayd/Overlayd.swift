import ArgumentParser
import Foundation
import Logging
import OverlayControlPlane
import OverlayCore
import OverlayProxy
import OverlayDemo
import OverlayExtProc
import OverlayRuntime
import ServiceLifecycle
import UnixSignals

@main
struct Overlayd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "overlayd",
        abstract: "AI overlays for legacy web apps: an Envoy ext_proc sidecar, or a standalone reverse proxy.",
        subcommands: [Serve.self, Validate.self, Proxy.self, Demo.self, ControlPlane.self],
        defaultSubcommand: Serve.self
    )
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the ext_proc gRPC server (h2c or a Unix socket) and the admin endpoint.")

    @OptionGroup var desiredState: DesiredStateOptions

    @OptionGroup var tracing: TracingFlags

    @Option(help: "Shadow jobs (challenger calls) that may wait; when full, new ones are dropped and counted.")
    var shadowQueue = 256

    @Option(help: "Shadow jobs that may run at once.")
    var shadowConcurrency = 8

    @Option(help: "ext_proc listen address: HOST:PORT (port 0 picks a free port) or unix:/path.")
    var listen = "127.0.0.1:50051"

    @Option(help: "Admin HTTP address (/metrics, /healthz, /readyz): HOST:PORT.")
    var admin = "127.0.0.1:9901"

    @Option(help: "Seconds in-flight streams may run after SIGTERM/SIGINT before connections are closed.")
    var drainTimeout: Double = 10

    @Option(help: "Largest gRPC message accepted, in bytes.")
    var maxMessageBytes = 32 * 1024 * 1024

    @Option(help: "HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS per connection.")
    var maxConcurrentStreams = 4096

    @Option(help: "Event-loop threads (default: the CPUs this process may use; taskset and cpusets are honoured).")
    var threads: Int?

    @Option(help: "ext_proc over TLS: the server's certificate chain (PEM). Needs --tls-key.")
    var tlsCert: String?

    @Option(help: "ext_proc over TLS: the private key of --tls-cert (PEM).")
    var tlsKey: String?

    @Option(help: "ext_proc mTLS: CA certificates (PEM) that must have signed every client's certificate. Needs --tls-cert.")
    var tlsClientCa: String?

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel = "info"

    @Option(help: "Seconds per bucket of the models' call-rate forecast (overlayd_model_call_rate_forecast; horizons are 5 and 15 buckets). Must divide a day.")
    var forecastBucket = 60

    func validate() throws {
        guard (1...3600).contains(forecastBucket), 86_400 % forecastBucket == 0 else {
            throw ValidationError("--forecast-bucket must be 1...3600 seconds and divide 86400, got \(forecastBucket)")
        }
        guard drainTimeout >= 0, drainTimeout <= 3600 else {
            throw ValidationError("--drain-timeout must be 0...3600 seconds, got \(drainTimeout)")
        }
        guard maxMessageBytes >= 1024, maxMessageBytes <= 1 << 30 else {
            throw ValidationError("--max-message-bytes must be 1024...1073741824, got \(maxMessageBytes)")
        }
        guard (1...1_000_000).contains(maxConcurrentStreams) else {
            throw ValidationError("--max-concurrent-streams must be 1...1000000, got \(maxConcurrentStreams)")
        }
        switch (tlsCert, tlsKey) {
        case (nil, nil):
            if tlsClientCa != nil { throw ValidationError("--tls-client-ca needs --tls-cert and --tls-key (mTLS is TLS with client certificates)") }
        case (_?, nil): throw ValidationError("--tls-cert needs --tls-key (the certificate's private key)")
        case (nil, _?): throw ValidationError("--tls-key needs --tls-cert (the certificate it belongs to)")
        case (_?, _?): break
        }
        guard (0...1_000_000).contains(shadowQueue) else {
            throw ValidationError("--shadow-queue must be 0...1000000, got \(shadowQueue)")
        }
        guard (1...10_000).contains(shadowConcurrency) else {
            throw ValidationError("--shadow-concurrency must be 1...10000, got \(shadowConcurrency)")
        }
        if let threads, !(1...256).contains(threads) {
            throw ValidationError("--threads must be 1...256, got \(threads)")
        }
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical; got \(logLevel)")
        }
    }

    func run() async throws {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "overlayd")

        var options = RuntimeOptions()
        var extProc = ExtProcServerOptions()
        do {
            extProc.listen = try ListenAddress(parsing: listen)
            guard case .tcp(let host, let port) = try ListenAddress(parsing: admin) else {
                throw ValidationError("--admin must be HOST:PORT, got \(admin)")
            }
            options.adminHost = host
            options.adminPort = port
        } catch let error as ListenAddressError {
            throw ValidationError("\(error)")
        }
        extProc.drainTimeout = .milliseconds(Int64(drainTimeout * 1000))
        extProc.maxMessageBytes = maxMessageBytes
        extProc.maxConcurrentStreams = maxConcurrentStreams
        if let threads { extProc.threads = threads }
        if let tlsCert, let tlsKey {
            do {
                extProc.tls = try ExtProcTLS.context(certificate: tlsCert, key: tlsKey, clientCA: tlsClientCa)
            } catch {
                throw ValidationError(error.description)
            }
        }
        options.engine.shadowQueueCapacity = shadowQueue
        options.engine.shadowConcurrency = shadowConcurrency
        options.forecastBucketSeconds = forecastBucket
        options.consoleAssets = ConsoleSeam.assets

        let (overlays, document, initialProblems) = try desiredState.load(into: &options, logger: logger)
        logger.info(
            "configuration loaded",
            metadata: [
                "source": "\(overlays.source)", "version": "\(overlays.version)",
                "overlays": "\(overlays.overlays.map { "\($0.name)=\($0.host)" }.joined(separator: ","))",
            ])

        let runtime = OverlayRuntime(
            options: options, config: overlays, document: document, initialProblems: initialProblems, logger: logger)
        let server = ExtProcServer(
            options: extProc, configStore: runtime.configStore, health: runtime.health, metricsFactory: runtime.reporting,
            logger: logger, engine: runtime.engine)
        let exporter = try tracing.bootstrap(instance: runtime.fleet.instance, logger: logger)
        try await signalledGroup(runtime.services(frontEnd: server, tracing: exporter), logger: logger).run()
        logger.info("overlayd stopped")
    }
}

struct Validate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check AIOverlay resources: prints every problem, or \"ok\". Exit code 1 on problems.")

    @Argument(help: "The file to check (YAML or JSON).")
    var file: String

    func run() throws {
        do {
            let config = try loadConfig(path: file)
            print("ok: \(config.overlays.count) overlay\(config.overlays.count == 1 ? "" : "s") (version \(config.version))")
        } catch let error as ConfigError {
            print(error.description)
            throw ExitCode(1)
        }
    }
}

/// Reads and validates a config file; errors name the file and every problem.
func loadConfig(path: String) throws -> OverlayConfig {
    try loadConfigDocument(path: path).0
}

func loadConfigDocument(path: String) throws(ConfigError) -> (OverlayConfig, String) {
    let text: String
    do {
        text = try TextFile.read(path)
    } catch {
        throw ConfigError(source: path, problems: [.init(resource: nil, path: "", message: "cannot read the file: \(error)")])
    }
    return (try ConfigLoader.load(text: text, source: path), text)
}

// MARK: - Proxy mode and the demo (issue 6)
struct Proxy: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run as a standalone HTTP/1.1 reverse proxy in front of one upstream (no Envoy needed).")

    @Option(help: "The legacy app to proxy to: http://HOST[:PORT][/base].")
    var upstream: String

    @Option(help: "Proxy listen address: HOST:PORT (port 0 picks a free port).")
    var listen = "127.0.0.1:8080"

    @OptionGroup var desiredState: DesiredStateOptions

    @OptionGroup var tracing: TracingFlags

    @Option(help: "Admin HTTP address (/metrics, /healthz, /readyz, /config, /drift): HOST:PORT.")
    var admin = "127.0.0.1:9901"

    @Option(help: "Seconds from sending a request to the upstream's response head; past it the client gets 504.")
    var upstreamTimeout: Double = 30

    @Option(help: "Seconds to establish a connection to the upstream; past it the client gets 504.")
    var upstreamConnectTimeout: Double = 5

    @Option(help: "Proxy event-loop threads (default: the CPUs this process may use; taskset and cpusets are honoured).")
    var threads: Int?

    @Option(help: "Seconds responses in flight may take to finish after SIGTERM/SIGINT (the listener closes at once, idle connections too); then the rest are closed.")
    var drainTimeout: Double = 10

    @Option(help: "Seconds a new client connection may take to send its first request head; then 408 and close (a silent connection is closed).")
    var clientHeaderTimeout: Double = 60

    @Option(help: "Longest pause, in seconds, between two reads of a request body; then 408 (when no response has begun) and close.")
    var clientBodyTimeout: Double = 60

    @Option(help: "Seconds an idle client connection is kept (HTTP/1.1 between requests, h2c without streams).")
    var keepaliveTimeout: Double = 75

    @Option(help: "Client connections open at once; more are closed at accept.")
    var maxConnections = 10_000

    @Option(help: "Client connections open at once from one client address; more are closed at accept.")
    var maxConnectionsPerClient = 256

    @Option(help: "Largest request body in bytes: a larger Content-Length gets 413; a chunked body past it ends the exchange and the connection.")
    var maxRequestBodyBytes: Int64 = 100 * 1024 * 1024

    @Option(help: "Largest request head in bytes (request line and header fields); a larger one gets 431. Also h2c's SETTINGS_MAX_HEADER_LIST_SIZE. At most 81920 (NIO's decoder).")
    var maxRequestHeadBytes = 64 * 1024

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel = "info"

    func validate() throws {
        do { _ = try Upstream(parsing: upstream) } catch { throw ValidationError(error.description) }
        for (flag, value) in [
            ("--client-header-timeout", clientHeaderTimeout), ("--client-body-timeout", clientBodyTimeout),
            ("--keepalive-timeout", keepaliveTimeout),
        ] where !(value > 0 && value <= 3600) {
            throw ValidationError("\(flag) must be 0...3600 seconds (exclusive of 0), got \(value)")
        }
        guard (1...1_000_000).contains(maxConnections) else {
            throw ValidationError("--max-connections must be 1...1000000, got \(maxConnections)")
        }
        guard (1...1_000_000).contains(maxConnectionsPerClient) else {
            throw ValidationError("--max-connections-per-client must be 1...1000000, got \(maxConnectionsPerClient)")
        }
        guard (0...(Int64(1) << 40)).contains(maxRequestBodyBytes) else {
            throw ValidationError("--max-request-body-bytes must be 0...1099511627776, got \(maxRequestBodyBytes)")
        }
        guard (1024...80 * 1024).contains(maxRequestHeadBytes) else {
            throw ValidationError("--max-request-head-bytes must be 1024...81920, got \(maxRequestHeadBytes)")
        }
        guard upstreamTimeout > 0, upstreamTimeout <= 3600 else {
            throw ValidationError("--upstream-timeout must be 0...3600 seconds (exclusive of 0), got \(upstreamTimeout)")
        }
        if let threads, !(1...256).contains(threads) {
            throw ValidationError("--threads must be 1...256, got \(threads)")
        }
        guard drainTimeout >= 0, drainTimeout <= 3600 else {
            throw ValidationError("--drain-timeout must be 0...3600 seconds, got \(drainTimeout)")
        }
        guard upstreamConnectTimeout > 0, upstreamConnectTimeout <= 600 else {
            throw ValidationError("--upstream-connect-timeout must be 0...600 seconds (exclusive of 0), got \(upstreamConnectTimeout)")
        }
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical; got \(logLevel)")
        }
    }

    func run() async throws {
        let logger = bootstrapLogging(logLevel)
        var options = RuntimeOptions()
        (options.adminHost, options.adminPort) = try hostPort(admin, flag: "--admin")
        var proxyOptions = ProxyOptions(upstream: try Upstream(parsing: upstream))
        (proxyOptions.listenHost, proxyOptions.listenPort) = try hostPort(listen, flag: "--listen")
        proxyOptions.upstreamTimeout = .milliseconds(Int64(upstreamTimeout * 1000))
        proxyOptions.connectTimeout = .milliseconds(Int64(upstreamConnectTimeout * 1000))
        if let threads { proxyOptions.threads = threads }
        proxyOptions.drainTimeout = .milliseconds(Int64(drainTimeout * 1000))
        proxyOptions.clientHeaderTimeout = .milliseconds(Int64(clientHeaderTimeout * 1000))
        proxyOptions.clientBodyTimeout = .milliseconds(Int64(clientBodyTimeout * 1000))
        proxyOptions.keepaliveTimeout = .milliseconds(Int64(keepaliveTimeout * 1000))
        proxyOptions.maxConnections = maxConnections
        proxyOptions.maxConnectionsPerClient = maxConnectionsPerClient
        proxyOptions.maxRequestBodyBytes = maxRequestBodyBytes
        proxyOptions.maxRequestHeadBytes = maxRequestHeadBytes
        // The admin port gets the same timeouts and caps.
        options.adminLimits.headerTimeout = proxyOptions.clientHeaderTimeout
        options.adminLimits.bodyTimeout = proxyOptions.clientBodyTimeout
        options.adminLimits.keepaliveTimeout = proxyOptions.keepaliveTimeout
        options.adminLimits.maxConnections = maxConnections
        options.adminLimits.maxConnectionsPerClient = maxConnectionsPerClient

        let (overlays, document, initialProblems) = try desiredState.load(into: &options, logger: logger)
        let runtime = OverlayRuntime(
            options: options, config: overlays, document: document, initialProblems: initialProblems, logger: logger)
        let proxy = ReverseProxy(
            options: proxyOptions, configStore: runtime.configStore, engine: runtime.engine, health: runtime.health,
            metricsFactory: runtime.reporting, logger: logger)
        let exporter = try tracing.bootstrap(instance: runtime.fleet.instance, logger: logger)
        try await signalledGroup(runtime.services(frontEnd: proxy, tracing: exporter), logger: logger).run()
        logger.info("overlayd proxy stopped")
    }
}

struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "One-command demo: the console (control plane), a built-in legacy CRM behind the overlay proxy, the ext_proc server and the admin endpoint, following the console.")

    @Option(help: "The proxy's port on 127.0.0.1 (open http://127.0.0.1:PORT/).")
    var port = 8080

    @Option(help: "The console and control plane: HOST:PORT (port 0 picks a free port).")
    var console = "127.0.0.1:9900"

    @Option(help: "The control plane's store and tokens, kept across runs. Default: a new temporary directory, removed when the demo stops.")
    var data: String?

    @Option(help: "Admin HTTP address: HOST:PORT.")
    var admin = "127.0.0.1:9901"

    @Option(help: "ext_proc listen address (as serve --listen): HOST:PORT or unix:/path.")
    var extProcListen = "127.0.0.1:50051"

    @OptionGroup var tracing: TracingFlags

    @Flag(help: "Mock models answer at once (no simulated latency): a load-test target for the whole path.")
    var instantModels = false

    @Option(help: "Seconds the demo's sidecar holds its long poll to the console, and so between its reports: 1...60.")
    var reportInterval = 10

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel = "notice"

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0...65535, got \(port)") }
        guard (1...60).contains(reportInterval) else {
            throw ValidationError("--report-interval must be 1...60 seconds, got \(reportInterval)")
        }
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical; got \(logLevel)")
        }
    }

    func run() async throws {
        let logger = bootstrapLogging(logLevel)
        var options = OverlayDemo.Demo.Options()
        options.port = port
        options.instantModels = instantModels
        options.longPollSeconds = reportInterval
        options.dataDirectory = data
        options.consoleAssets = ConsoleSeam.assets
        (options.adminHost, options.adminPort) = try hostPort(admin, flag: "--admin")
        (options.consoleHost, options.consolePort) = try hostPort(console, flag: "--console")
        do { options.extProc = try ListenAddress(parsing: extProcListen) } catch { throw ValidationError("\(error)") }
        let demo = try OverlayDemo.Demo(options: options, logger: logger)
        defer { demo.removeTemporaryData() }
        let exporter = try tracing.bootstrap(instance: demo.runtime.fleet.instance, logger: logger)
        // The exporter first: it stops last, after the front ends drained (it flushes their spans).
        var services = demo.services
        if let exporter { services.insert(.init(service: exporter, successTerminationBehavior: .ignore), at: 0) }
        let group = signalledGroup(services, logger: logger)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            tasks.addTask {
                // Announced once everything listens. A nil: something stopped before it listened
                // (a port in use, say); the group's error says what, and nothing is announced.
                guard let console = await demo.controlPlane.listeningAddress(),
                    let proxyPort = await demo.proxy.listeningPort(), let appPort = await demo.appPort.port(),
                    let extProc = await demo.extProc.listeningAddress(),
                    let admin = await demo.runtime.admin.listeningAddress()
                else { return }
                let adminBase = "http://" + admin
                let banner =
                    """
                    console:                 http://\(console)/   Apps, Overlays, the traffic splitter, drift, history
                    overlayd demo is running (Ctrl-C to stop)
                      operator token:        \(demo.operatorToken)   (for changes on the console; in \(demo.operatorTokenFile))
                      page (Canary 80/20):   http://127.0.0.1:\(proxyPort)/   also /accounts, /reports (gzip), /api/accounts (JSON)
                      page (Shadow pair):    http://localhost:\(proxyPort)/   drift on the console, or \(adminBase)/drift
                      admin:                 \(adminBase)/metrics  \(adminBase)/drift  \(adminBase)/config  \(adminBase)/readyz
                      ext_proc (gRPC h2c):   \(extProc)
                      legacy app (direct):   http://127.0.0.1:\(appPort)/
                      the proxy and ext_proc follow the console: a change there reaches them within about a second

                    """
                // Unbuffered: the banner shows at once even when stdout is a pipe or a file.
                FileHandle.standardOutput.write(Data(banner.utf8))
            }
            try await tasks.waitForAll()
        }
    }
}

func bootstrapLogging(_ level: String) -> Logger {
    let level = Logger.Level(rawValue: level) ?? .info
    LoggingSystem.bootstrap { label in
        var handler = StreamLogHandler.standardError(label: label)
        handler.logLevel = level
        return handler
    }
    return Logger(label: "overlayd")
}

func hostPort(_ text: String, flag: String) throws -> (String, Int) {
    do {
        guard case .tcp(let host, let port) = try ListenAddress(parsing: text) else {
            throw ValidationError("\(flag) must be HOST:PORT, got \(text)")
        }
        return (host, port)
    } catch let error as ListenAddressError {
        throw ValidationError("\(flag): \(error)")
    }
}

/// The services of a command, shut down gracefully on SIGTERM or SIGINT (never cancelled by a
/// signal: the drain bounds how long that takes).
func signalledGroup(_ services: [ServiceGroupConfiguration.ServiceConfiguration], logger: Logger) -> ServiceGroup {
    ServiceGroup(
        configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], cancellationSignals: [], logger: logger))
}

/// `--otlp-endpoint` and `--trace-sample-ratio` (issue 17), on `serve`, `proxy` and `demo`.
struct TracingFlags: ParsableArguments {
    @Option(help: "OTLP/HTTP (protobuf) receiver for spans, e.g. http://127.0.0.1:4318 (/v1/traces is added when no path is given). Default: tracing off.")
    var otlpEndpoint: String?

    @Option(help: "Share of new traces recorded, 0...1 (a request's sampled traceparent is always followed).")
    var traceSampleRatio: Double = TracingOptions.defaultSampleRatio

    func validate() throws {
        do {
            try TracingOptions.validate(endpoint: otlpEndpoint, sampleRatio: traceSampleRatio)
        } catch {
            throw ValidationError(error.description)
        }
    }

    var options: TracingOptions { TracingOptions(endpoint: otlpEndpoint, sampleRatio: traceSampleRatio) }

    /// Bootstraps the tracer when an endpoint is given; the exporter's service, or nil.
    func bootstrap(instance: String, logger: Logger) throws -> (any Service)? {
        do {
            return try OverlayTracing.bootstrap(options, instance: instance, logger: logger)
        } catch let error as TracingOptionsError {
            throw ValidationError(error.description)
        }
    }
}
