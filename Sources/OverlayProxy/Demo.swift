import Logging
import OverlayCore
import OverlayServer
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
    public let proxy: ReverseProxy
    public let appPort: BoundAddress
    private let app: any Service

    public init(options: Options, logger: Logger) {
        var serve = ServeOptions()
        serve.adminHost = options.adminHost
        serve.adminPort = options.adminPort
        serve.extProc.listen = options.extProc
        let config = options.instantModels ? EmbeddedDemo.loadInstantProxyDemo() : EmbeddedDemo.loadProxyDemo()
        let document = options.instantModels ? EmbeddedDemo.instantProxyDemoText : EmbeddedDemo.proxyDemoText
        runtime = OverlayRuntime(options: serve, config: config, document: document, logger: logger)
        let appPort = BoundAddress()
        self.appPort = appPort
        app = DemoApp.application(logger: logger) { port in appPort.set(port) }
        var proxyOptions = ProxyOptions(upstream: try! Upstream(parsing: "http://127.0.0.1:1"))
        proxyOptions.listenPort = options.port
        proxy = ReverseProxy(
            options: proxyOptions, configStore: runtime.configStore, engine: runtime.engine, health: nil,
            metricsFactory: runtime.metrics, logger: logger,
            resolveUpstream: { try! Upstream(parsing: "http://127.0.0.1:\(await appPort.port())") })
    }

    /// Every service: the runtime's (engine, admin, ext_proc), then the app, then the proxy (which
    /// stops first on SIGTERM/SIGINT).
    public var services: [ServiceGroupConfiguration.ServiceConfiguration] {
        runtime.services + [
            .init(service: app, successTerminationBehavior: .gracefullyShutdownGroup),
            .init(service: proxy, successTerminationBehavior: .gracefullyShutdownGroup),
        ]
    }
}
