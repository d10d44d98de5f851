import Logging
import OverlayCore
import OverlayFleet
import ServiceLifecycle

/// What every command that serves traffic runs beside its front end (`serve`, `proxy`, `demo`):
/// built here so tests can run the same assembly in-process (`main` only parses arguments).
public struct RuntimeOptions: Sendable {
    /// `--admin`: default `127.0.0.1:9901`.
    public var adminHost = "127.0.0.1"
    public var adminPort = 9901
    /// `--config`: the file to watch for changes (nil: the embedded demo, never reloaded).
    public var configPath: String?
    /// `--config-poll-interval`: how often the file is checked (default 1 s).
    public var configPollInterval: Duration = .seconds(1)
    /// `--control-plane` and its settings (nil: no poller).
    public var controlPlane: ControlPlaneOptions?
    /// The ETag of the starting document when it is the control plane's last known good.
    public var controlPlaneETag: String?
    /// The starting document was read from `--state-dir` (the control plane's last known good).
    public var startedFromStateDir = false
    /// Shadow queue and result store bounds.
    public var engine = OverlayEngine.Options()
    /// `--forecast-bucket`: seconds per bucket of the call-rate forecast (divides a day).
    public var forecastBucketSeconds = 60
    /// The console page's files, served read-only at `/` on the admin port (nil: not built in).
    public var consoleAssets: StaticAsset.Lookup?
    /// The admin port's timeouts and connection caps (`overlayd proxy`: its client flags).
    public var adminLimits = AdminLimits()

    public init() {}
}

/// The config store, health, metrics, model-call engine, admin endpoint and config sources that
/// a front end (``ExtProcServer`` or ``ReverseProxy``) serves from.
public struct OverlayRuntime: Sendable {
    public let configStore: ConfigStore
    public let health: HealthState
    public let metrics: PrometheusMetrics
    public let admin: AdminServer
    public let watcher: ConfigFileWatcher?
    public let poller: ControlPlanePoller?
    public let engine: OverlayEngine
    public let forecast: CallRateForecastService
    public let breakers: BreakerGauges
    /// This instance's reports (to the control plane) and its read-only `/v1/fleet`.
    public let fleet: SidecarFleet
    /// The metrics factory a front end records through: Prometheus, and the accumulator of the
    /// control-plane reports.
    public let reporting: ReportingMetrics

    /// - Parameters:
    ///   - config: the validated configuration to start with; `document` is its text.
    ///   - initialProblems: set when the configuration could not be loaded at start: overlayd then
    ///     serves pass-through (`config` should be empty), reports not ready, and becomes ready
    ///     when the watched file turns valid.
    public init(
        options: RuntimeOptions, config: OverlayConfig, document: String, initialProblems: [String]? = nil, logger: Logger
    ) {
        configStore = ConfigStore(
            config, document: document, result: options.startedFromStateDir ? "last-known-good" : "applied")
        health = HealthState(configured: initialProblems == nil)
        if let problems = initialProblems, let source = options.configPath ?? options.controlPlane?.url {
            configStore.reject(source: source, problems: problems, result: "rejected")
        }
        metrics = PrometheusMetrics()
        // Every metric goes to Prometheus and to the accumulator of the reports (issue 15).
        let reporting = ReportingMetrics(metrics, accumulator: ReportAccumulator())
        self.reporting = reporting
        engine = OverlayEngine(options: options.engine, metricsFactory: reporting, logger: logger)
        let forecast = CallRateForecastService(metrics: metrics, bucketSeconds: options.forecastBucketSeconds, logger: logger)
        self.forecast = forecast
        breakers = BreakerGauges(engine: engine, configStore: configStore, metricsFactory: metrics)
        fleet = SidecarFleet(
            engine: engine, accumulator: reporting.accumulator, reportsToControlPlane: options.controlPlane?.reportTokenFile != nil,
            forecasts: { forecast.forecasts() })
        admin = AdminServer(
            host: options.adminHost, port: options.adminPort, metrics: metrics, health: health, configStore: configStore,
            logger: logger, drift: engine.drift, fleet: fleet, assets: options.consoleAssets, limits: options.adminLimits)
        if let path = options.configPath {
            watcher = ConfigFileWatcher(
                path: path, interval: options.configPollInterval, store: configStore, health: health,
                metricsFactory: metrics, logger: logger)
        } else {
            watcher = nil
        }
        if var controlPlane = options.controlPlane {
            controlPlane.report = { [fleet] version, interval in fleet.report(version: version, intervalSeconds: interval) }
            poller = ControlPlanePoller(
                options: controlPlane, store: configStore, health: health, metricsFactory: metrics, logger: logger,
                etag: options.controlPlaneETag)
        } else {
            poller = nil
        }
    }

    /// The services in start order, with `frontEnd` last; they stop in reverse (the admin
    /// endpoint outlives the front end's drain, shadow work is cancelled after it).
    /// - Parameter tracing: the span exporter (``OverlayTracing/bootstrap(_:instance:logger:)``), first
    ///   so that it stops last: it flushes the spans of the drained exchanges and shadow jobs.
    public func services(frontEnd: (any Service)?, tracing: (any Service)? = nil) -> [ServiceGroupConfiguration.ServiceConfiguration] {
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        if let tracing { services.append(.init(service: tracing, successTerminationBehavior: .ignore)) }
        // First in, last out: shadow work is cancelled only after the ext_proc drain.
        services.append(.init(service: engine, successTerminationBehavior: .ignore))
        services.append(.init(service: forecast, successTerminationBehavior: .ignore))
        services.append(.init(service: breakers, successTerminationBehavior: .ignore))
        if let watcher { services.append(.init(service: watcher, successTerminationBehavior: .ignore)) }
        if let poller { services.append(.init(service: poller, successTerminationBehavior: .ignore)) }
        services.append(.init(service: admin, successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup))
        if let frontEnd {
            services.append(.init(service: frontEnd, successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup))
        }
        return services
    }
}
