import BackendCore
import Backends
import CoreMetrics
import ServiceLifecycle

/// `overlayd_model_breaker_open{model}`: 1 while the circuit breaker of an `openai` model is not
/// closed (open, or half-open while a probe decides), else 0; 0 for mock models (they have none)
/// and for models no longer configured. Sampled every `interval` (1 s) from the clients of the
/// active configuration, so the request path pays nothing for it.
public final class BreakerGauges: Service, Sendable {
    private let engine: OverlayEngine
    private let configStore: ConfigStore
    private let factory: any MetricsFactory
    private let interval: Duration

    public init(engine: OverlayEngine, configStore: ConfigStore, metricsFactory: any MetricsFactoryBox, interval: Duration = .seconds(1)) {
        self.engine = engine
        self.configStore = configStore
        self.factory = metricsFactory.factory
        self.interval = interval
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown { await self.loop() }
    }

    private func loop() async {
        var gauges: [String: Gauge] = [:]
        while !Task.isCancelled {
            let clients = engine.router(for: configStore.current).clients
            for model in clients.keys where gauges[model] == nil {
                gauges[model] = Gauge(label: "overlayd_model_breaker_open", dimensions: [("model", model)], factory: factory)
            }
            for (model, gauge) in gauges {
                gauge.record(Self.isOpen(clients[model]) ? 1 : 0)
            }
            do {
                try await Task.sleep(for: interval)
            } catch {
                return  // cancelled: shutting down
            }
        }
    }

    static func isOpen(_ client: (any ModelClient)?) -> Bool {
        guard let openAI = client as? OpenAIClient else { return false }
        if case .closed = openAI.breaker.phase { return false }
        return true
    }
}
