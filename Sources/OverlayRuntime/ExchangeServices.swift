import Backends
import Logging
import OverlayCore
import Tracing

/// What a front end serves every exchange from, the same for ext_proc and the proxy: the
/// configuration, the model-call engine, the body codec and the metrics vocabulary. Read-only
/// after start, or synchronised inside.
public final class ExchangeServices: Sendable {
    public let configStore: ConfigStore
    /// Runs model calls (nil: overlaid exchanges get a failed result, e.g. in protocol-only tests).
    public let engine: OverlayEngine?
    /// Decisions and injections, in the vocabulary both front ends share.
    public let metrics: OverlayMetrics
    /// gzip/deflate, so encoded pages can be injected.
    public let codec = CompressCodec()
    public let logger: Logger
    /// For lines that can repeat on every exchange (protocol errors, upstream failures).
    package let throttled: ThrottledLogger

    /// - Parameter frontend: the `frontend` label of the metrics (`extproc`, `proxy`).
    public init(frontend: String, configStore: ConfigStore, engine: OverlayEngine?, metricsFactory: any MetricsFactoryBox, logger: Logger) {
        self.configStore = configStore
        self.engine = engine
        self.metrics = OverlayMetrics(frontend: frontend, factory: metricsFactory.factory)
        self.logger = logger
        self.throttled = ThrottledLogger(logger)
    }

    /// A new exchange on the configuration snapshot of this moment, which it keeps for its life.
    public func makeExchange(seed: UInt64) -> OverlayExchange {
        OverlayExchange(config: configStore.current, seed: seed, results: engine?.results, codec: codec)
    }

    /// Starts the model call(s) of `plan` (see `Optional<OverlayEngine>.startCall`).
    /// - Parameter trace: the exchange's trace when it is traced (``ExchangeTrace/call``).
    package func startCall(plan: OverlayPlan, config: OverlayConfig, trace: CallTrace? = nil) -> ModelCall {
        engine.startCall(plan: plan, config: config, trace: trace)
    }
}
