import CoreMetrics
import OverlayFleet
import Locking

/// What a sidecar following a control plane reports (`POST /v1/reports`): the counters it
/// already records through swift-metrics, caught by label next to Prometheus and summed until
/// the next report takes them (``take()``).
///
/// Caught: `overlayd_overlay_decisions_total{overlay,model}`, `overlayd_model_calls_total{model,result}`,
/// `overlayd_model_call_seconds{model}` (into the same buckets as `/metrics`) and
/// `overlayd_injections_total{result,reason}`. Everything else goes nowhere. Bounded: at most
/// `maxKeys` distinct label sets; more are not counted.
public final class ReportAccumulator: MetricsFactory, Sendable {
    /// Upper bounds of the latency histogram, seconds (as PrometheusMetrics' model-call buckets).
    public static let latencyBounds: [Double] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]
    public let maxKeys: Int

    struct Counts {
        var decisions: [DecisionKey: Int] = [:]
        var calls: [String: (ok: Int, error: Int)] = [:]
        /// Per model: non-cumulative counts per bound, the last one +Inf.
        var latency: [String: [Int]] = [:]
        var injections: [InjectionKey: Int] = [:]
        var keys: Int { decisions.count + calls.count + latency.count + injections.count }
    }

    struct DecisionKey: Hashable {
        var overlay: String
        var model: String
    }

    struct InjectionKey: Hashable {
        var result: String
        var reason: String
    }

    private let counts = Locked(Counts())

    public init(maxKeys: Int = 4096) {
        self.maxKeys = maxKeys
    }

    /// The counters since the last call, reset to zero.
    public func take() -> (
        decisions: [SidecarReport.Decision], modelCalls: [SidecarReport.ModelCalls], injections: [SidecarReport.Injection]
    ) {
        let taken = counts.withLock { counts in
            defer { counts = Counts() }
            return counts
        }
        let decisions = taken.decisions.map { SidecarReport.Decision(overlay: $0.key.overlay, model: $0.key.model, count: $0.value) }
            .sorted { ($0.overlay, $0.model) < ($1.overlay, $1.model) }
        let models = Set(taken.calls.keys).union(taken.latency.keys).sorted()
        let calls = models.map { model -> SidecarReport.ModelCalls in
            var buckets: [SidecarReport.Bucket] = []
            if let perBound = taken.latency[model] {
                var cumulative = 0
                for (index, count) in perBound.enumerated() {
                    cumulative += count
                    let bound = index < Self.latencyBounds.count ? Self.latencyBounds[index] : .infinity
                    buckets.append(.init(le: bound, count: cumulative))
                }
            }
            let result = taken.calls[model] ?? (0, 0)
            return SidecarReport.ModelCalls(model: model, ok: result.ok, error: result.error, latencyBuckets: buckets)
        }
        let injections = taken.injections.map { SidecarReport.Injection(result: $0.key.result, reason: $0.key.reason, count: $0.value) }
            .sorted { ($0.result, $0.reason) < ($1.result, $1.reason) }
        return (decisions, calls, injections)
    }

    func add(_ update: (inout Counts) -> Void, isNew: (Counts) -> Bool) {
        counts.withLock { counts in
            if isNew(counts) && counts.keys >= maxKeys { return }
            update(&counts)
        }
    }

    // MARK: - MetricsFactory

    final class CountingHandler: CounterHandler, Sendable {
        let record: @Sendable (Int) -> Void
        init(_ record: @escaping @Sendable (Int) -> Void) { self.record = record }
        func increment(by amount: Int64) { record(Int(amount)) }
        func reset() {}
    }

    final class LatencyHandler: TimerHandler, Sendable {
        let record: @Sendable (Int64) -> Void
        init(_ record: @escaping @Sendable (Int64) -> Void) { self.record = record }
        func recordNanoseconds(_ duration: Int64) { record(duration) }
    }

    public func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        let value = { (name: String) in dimensions.first { $0.0 == name }?.1 ?? "" }
        switch label {
        case "overlayd_overlay_decisions_total":
            let key = DecisionKey(overlay: value("overlay"), model: value("model"))
            return CountingHandler { [self] amount in
                add({ $0.decisions[key, default: 0] += amount }, isNew: { $0.decisions[key] == nil })
            }
        case "overlayd_model_calls_total":
            let model = value("model"), ok = value("result") == "ok"
            return CountingHandler { [self] amount in
                add(
                    { counts in
                        var entry = counts.calls[model] ?? (0, 0)
                        if ok { entry.ok += amount } else { entry.error += amount }
                        counts.calls[model] = entry
                    }, isNew: { $0.calls[model] == nil })
            }
        case "overlayd_injections_total":
            let key = InjectionKey(result: value("result"), reason: value("reason"))
            return CountingHandler { [self] amount in
                add({ $0.injections[key, default: 0] += amount }, isNew: { $0.injections[key] == nil })
            }
        default:
            return NOOPMetricsHandler.instance
        }
    }

    public func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        guard label == "overlayd_model_call_seconds", let model = dimensions.first(where: { $0.0 == "model" })?.1 else {
            return NOOPMetricsHandler.instance
        }
        return LatencyHandler { [self] nanoseconds in
            let seconds = Double(nanoseconds) / 1e9
            let index = Self.latencyBounds.firstIndex { seconds <= $0 } ?? Self.latencyBounds.count
            add(
                { counts in
                    var perBound = counts.latency[model] ?? Array(repeating: 0, count: Self.latencyBounds.count + 1)
                    perBound[index] += 1
                    counts.latency[model] = perBound
                }, isNew: { $0.latency[model] == nil })
        }
    }

    public func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
        NOOPMetricsHandler.instance
    }

    public func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler { NOOPMetricsHandler.instance }

    public func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        NOOPMetricsHandler.instance
    }

    public func destroyCounter(_ handler: any CounterHandler) {}
    public func destroyMeter(_ handler: any MeterHandler) {}
    public func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) {}
    public func destroyRecorder(_ handler: any RecorderHandler) {}
    public func destroyTimer(_ handler: any TimerHandler) {}
}

/// Prometheus plus the report accumulator: every metric goes to both.
public final class ReportingMetrics: MetricsFactoryBox {
    public let factory: any MetricsFactory
    public let accumulator: ReportAccumulator

    public init(_ prometheus: PrometheusMetrics, accumulator: ReportAccumulator) {
        self.accumulator = accumulator
        self.factory = MultiplexMetricsHandler(factories: [prometheus.factory, accumulator])
    }
}
