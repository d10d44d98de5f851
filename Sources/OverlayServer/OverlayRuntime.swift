import Logging
import OverlayCore
import ServiceLifecycle

/// Everything `overlayd serve` runs, as one ServiceGroup: built here so tests can run the same
/// assembly in-process (`main` only parses arguments).
public struct ServeOptions: Sendable {
    public var extProc = ExtProcServerOptions()
    /// `--admin`: default `127.0.0.1:9901`.
    public var adminHost = "127.0.0.1"
    public var adminPort = 9901

    public init() {}
}

public struct OverlayRuntime: Sendable {
    public let configStore: ConfigStore
    public let health: HealthState
    public let metrics: PrometheusMetrics
    public let extProc: ExtProcServer
    public let admin: AdminServer

    public init(options: ServeOptions, config: OverlayConfig, logger: Logger) {
        configStore = ConfigStore(config)
        health = HealthState()
        metrics = PrometheusMetrics()
        extProc = ExtProcServer(
            options: options.extProc, configStore: configStore, health: health, metricsFactory: metrics, logger: logger)
        admin = AdminServer(host: options.adminHost, port: options.adminPort, metrics: metrics, health: health, logger: logger)
    }

    /// The services in start order; they stop in reverse (the admin endpoint outlives the drain).
    public var services: [ServiceGroupConfiguration.ServiceConfiguration] {
        [
            .init(service: admin, successTerminationBehavior: .gracefullyShutdownGroup),
            .init(service: extProc, successTerminationBehavior: .gracefullyShutdownGroup),
        ]
    }
}
