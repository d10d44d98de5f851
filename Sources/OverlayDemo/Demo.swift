import Logging
import OverlayCore
import OverlayExtProc
import OverlayProxy
import OverlayRuntime
import ServiceLifecycle

/// `overlayd demo`: in one process, the built-in legacy app on a free port of 127.0.0.1, the
/// reverse proxy in front of it, the ext_proc server and the admin endpoint (as `serve` runs
/// them), with the proxy demo configuration (``EmbeddedDemo/proxyDemoText``).
public struct Demo: Sendable {
    public struct Options: Sendable {
        /// `--port`: the proxy (the page a newcomer opens).
        public var port = 8080
        public var adminHost = "127.0.0.1"
        public var adminPort = 9901
        public var extProc: ListenAddress = .tcp(host: "127.0.0.1", port: 50051)
        /// `--instant-models`: the mock models answer at once (for load tests).
        public var instantModels = false
        public init() {}
    }

    public let runtime: OverlayRuntime
    public let extProc: ExtProcServer
    public let proxy: ReverseProxy
    public let appPort: BoundAddress
    private let app: any Service

    public init(options: Options, logger: Logger) {
        var serve = RuntimeOptions()
        serve.adminHost = options.adminHost
        serve.adminPort = options.adminPort
        var extProcOptions = ExtProcServerOptions()
        extProcOptions.listen = options.extProc
        extProcOptions.listenOption = "--ext-proc-listen"
        let config = options.instantModels ? EmbeddedDemo.loadInstantProxyDemo() : EmbeddedDemo.loadProxyDemo()
        let document = options.instantModels ? EmbeddedDemo.instantProxyDemoText : EmbeddedDemo.proxyDemoText
        runtime = OverlayRuntime(options: serve, config: config, document: document, logger: logger)
        extProc = ExtProcServer(
            options: extProcOptions, configStore: runtime.configStore, health: runtime.health,
            metricsFactory: runtime.reporting, logger: logger, engine: runtime.engine)
        let appPort = BoundAddress()
        self.appPort = appPort
        app = EndReporting(DemoApp.application(logger: logger) { port in appPort.set(port) }) { appPort.finish() }
        var proxyOptions = ProxyOptions(upstream: try! Upstream(parsing: "http://127.0.0.1:1"))
        proxyOptions.listenPort = options.port
        proxyOptions.listenOption = "--port"
        proxy = ReverseProxy(
            options: proxyOptions, configStore: runtime.configStore, engine: runtime.engine, health: nil,
            metricsFactory: runtime.reporting, logger: logger,
            resolveUpstream: {
                guard let port = await appPort.port() else { throw DemoAppStopped() }
                return try Upstream(parsing: "http://127.0.0.1:\(port)")
            })
    }

    /// Every service: the runtime's (engine, admin) and ext_proc, then the app, then the proxy
    /// (which stops first on SIGTERM/SIGINT).
    public var services: [ServiceGroupConfiguration.ServiceConfiguration] {
        runtime.services(frontEnd: extProc) + [
            .init(service: app, successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup),
            .init(service: proxy, successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup),
        ]
    }
}

/// The demo's app stopped before it listened (the proxy then has nothing to stand in front of).
struct DemoAppStopped: Error, CustomStringConvertible {
    var description: String { "the demo's legacy app stopped before it listened" }
}

/// Runs a service and reports when it has ended, however it ended.
struct EndReporting: Service {
    let service: any Service
    let onEnd: @Sendable () -> Void

    init(_ service: any Service, onEnd: @escaping @Sendable () -> Void) {
        self.service = service
        self.onEnd = onEnd
    }

    func run() async throws {
        defer { onEnd() }
        try await service.run()
    }
}
