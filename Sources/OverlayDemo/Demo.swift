import Foundation
import Logging
import OverlayControlPlane
import OverlayCore
import OverlayExtProc
import OverlayFleet
import OverlayProxy
import OverlayRuntime
import ServiceLifecycle

/// `overlayd demo`: in one process, the control plane with its console (seeded with the demo's
/// state), the built-in legacy app on a free port of 127.0.0.1, the reverse proxy in front of it,
/// the ext_proc server and the admin endpoint (as `serve` runs them). The front ends follow the
/// control plane exactly as a `serve --control-plane` sidecar does (long poll, reports), so a
/// split changed on the console reaches the demo's pages within about a second.
public struct Demo: Sendable {
    public struct Options: Sendable {
        /// `--port`: the proxy (the page a newcomer opens).
        public var port = 8080
        public var adminHost = "127.0.0.1"
        public var adminPort = 9901
        public var extProc: ListenAddress = .tcp(host: "127.0.0.1", port: 50051)
        /// `--console`: the control plane and its console.
        public var consoleHost = "127.0.0.1"
        public var consolePort = 9900
        /// `--data`: the control plane's store and tokens; nil: a new temporary directory, removed
        /// when the demo stops (``Demo/temporaryData``).
        public var dataDirectory: String?
        /// The console page's files (nil: not built into this binary; `/` answers 404).
        public var consoleAssets: StaticAsset.Lookup?
        /// `--instant-models`: the mock models answer at once (for load tests).
        public var instantModels = false
        /// Seconds a sidecar's long poll is held, and so between its reports (the console's
        /// live figures): 1...60.
        public var longPollSeconds = 10
        public init() {}
    }

    public let runtime: OverlayRuntime
    public let extProc: ExtProcServer
    public let proxy: ReverseProxy
    public let controlPlane: ControlPlaneServer
    public let appPort: BoundAddress
    /// The operator token file, and a token of it (the console asks for one before a change).
    public let operatorTokenFile: String
    public let operatorToken: String
    /// The store's directory when the demo made it (nil: `--data`); the caller removes it after
    /// the services have stopped.
    public let temporaryData: String?
    private let app: any Service

    public init(options: Options, logger: Logger) throws(DemoError) {
        let document = options.instantModels ? EmbeddedDemo.instantProxyDemoText : EmbeddedDemo.proxyDemoText

        // The control plane: a store seeded with the demo's state (kept when --data holds one).
        let data: String
        if let directory = options.dataDirectory {
            data = directory
            temporaryData = nil
        } else {
            let name = "overlayd-demo-\(ProcessInfo.processInfo.processIdentifier)-\(UInt32.random(in: 0...UInt32.max))"
            data = (NSTemporaryDirectory() as NSString).appendingPathComponent(name)
            temporaryData = data
        }
        let watch = VersionWatch(version: 0)
        let store: VersionStore
        let operatorTokens: TokenFile
        let reportTokens: TokenFile
        do {
            store = try VersionStore(directory: data, onChange: { watch.publish($0) })
            watch.publish(store.head.version)
            operatorTokens = try TokenFile.loadOrCreate(
                path: (data as NSString).appendingPathComponent("operator.token"), defaultName: "operator"
            ).0
            reportTokens = try TokenFile.loadOrCreate(
                path: (data as NSString).appendingPathComponent("report.token"), defaultName: "sidecar"
            ).0
        } catch {
            throw DemoError(description: "--data \(data): \(error.description)")
        }
        do {
            _ = try store.seed(yaml: document, source: "overlayd demo", author: "demo")
        } catch {
            throw DemoError(description: "the demo's state does not validate on the control plane: \(error.error)")
        }
        operatorTokenFile = operatorTokens.path
        operatorToken = operatorTokens.tokens.keys.sorted().first ?? ""
        var planeOptions = ControlPlaneServerOptions()
        planeOptions.host = options.consoleHost
        planeOptions.port = options.consolePort
        let consoleAddress = "\(options.consoleHost):\(options.consolePort)"
        let controlPlane = ControlPlaneServer(
            options: planeOptions, store: store, watch: watch, operatorTokens: operatorTokens, reportTokens: reportTokens,
            assets: options.consoleAssets, logger: logger,
            listenFailure: { error in ListenFailure(option: "--console", address: consoleAddress, error: error) })
        self.controlPlane = controlPlane

        // The sidecar: starts on the demo's state (ready at once), then follows the control plane.
        var serve = RuntimeOptions()
        serve.adminHost = options.adminHost
        serve.adminPort = options.adminPort
        serve.consoleAssets = options.consoleAssets
        var follow = ControlPlaneOptions(url: "http://\(consoleAddress)/v1/desired-state")
        follow.resolveURL = {
            guard let address = await controlPlane.listeningAddress() else { return nil }
            return "http://\(address)/v1/desired-state"
        }
        follow.reportTokenFile = reportTokens.path
        follow.longPollSeconds = min(60, max(1, options.longPollSeconds))
        follow.schedule = PollSchedule(intervalMs: follow.longPollSeconds * 1000)
        serve.controlPlane = follow
        var extProcOptions = ExtProcServerOptions()
        extProcOptions.listen = options.extProc
        extProcOptions.listenOption = "--ext-proc-listen"
        let config = options.instantModels ? EmbeddedDemo.loadInstantProxyDemo() : EmbeddedDemo.loadProxyDemo()
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

    /// Every service: the control plane (which stops last), the runtime's (engine, admin, the
    /// poller) and ext_proc, then the app, then the proxy (which stops first on SIGTERM/SIGINT).
    public var services: [ServiceGroupConfiguration.ServiceConfiguration] {
        [.init(service: controlPlane, successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup)]
            + runtime.services(frontEnd: extProc) + [
                .init(service: app, successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup),
                .init(service: proxy, successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup),
            ]
    }

    /// Removes the temporary store (after the services have stopped); nothing with `--data`.
    public func removeTemporaryData() {
        guard let temporaryData else { return }
        try? FileManager.default.removeItem(atPath: temporaryData)
    }
}

/// The demo cannot start: the message names the option and the reason.
public struct DemoError: Error, Sendable, CustomStringConvertible {
    public var description: String
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
