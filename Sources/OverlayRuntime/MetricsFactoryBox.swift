import CoreMetrics
import Prometheus

/// Hands the metrics factory to services without a global bootstrap (tests build their own).
public protocol MetricsFactoryBox: Sendable {
    var factory: any MetricsFactory { get }
}

/// The process's Prometheus registry and the swift-metrics factory that writes into it.
public final class PrometheusMetrics: MetricsFactoryBox {
    public let registry: PrometheusCollectorRegistry
    public let factory: any MetricsFactory

    public init() {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        // Per-message processing is microseconds; keep resolution there.
        factory.defaultDurationHistogramBuckets = [
            .microseconds(5), .microseconds(10), .microseconds(25), .microseconds(50), .microseconds(100),
            .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2.5), .milliseconds(5),
            .milliseconds(10), .milliseconds(25), .milliseconds(100), .seconds(1),
        ]
        // Model calls take milliseconds to many seconds.
        factory.durationHistogramBuckets["overlayd_model_call_seconds"] = [
            .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
            .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5), .seconds(10), .seconds(30),
        ]
        self.registry = registry
        self.factory = factory
    }

    /// The Prometheus text exposition of every metric.
    public func render() -> [UInt8] { registry.emitToBuffer() }
}
