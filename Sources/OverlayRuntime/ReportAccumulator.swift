import CoreMetrics
import OverlayFleet
import Locking
import Synchronization

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

    /// The label sets seen so far, each with its counts. A handler holds its slot and adds to it
    /// with atomics: recording takes no lock (both event loops record on every overlaid exchange);
    /// only a new label set does, once, when its handler is made.
    private struct Registry {
        var decisions: [DecisionKey: AtomicCounts] = [:]
        /// Per model: ok, error.
        var calls: [String: AtomicCounts] = [:]
        /// Per model: non-cumulative counts per bound, the last one +Inf.
        var latency: [String: AtomicCounts] = [:]
        var injections: [InjectionKey: AtomicCounts] = [:]
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

    private let registry = Locked(Registry())

    public init(maxKeys: Int = 4096) {
        self.maxKeys = maxKeys
    }

    /// The counters since the last call, reset to zero (label sets with nothing counted since
    /// then are left out).
    public func take() -> (
        decisions: [SidecarReport.Decision], modelCalls: [SidecarReport.ModelCalls], injections: [SidecarReport.Injection]
    ) {
        let registry = self.registry.withLock { $0 }
        var decisions: [SidecarReport.Decision] = []
        for (key, slot) in registry.decisions {
            let count = slot.take(0)
            if count > 0 { decisions.append(.init(overlay: key.overlay, model: key.model, count: count)) }
        }
        decisions.sort { ($0.overlay, $0.model) < ($1.overlay, $1.model) }
        var calls: [SidecarReport.ModelCalls] = []
        for model in Set(registry.calls.keys).union(registry.latency.keys).sorted() {
            let ok = registry.calls[model]?.take(0) ?? 0
            let error = registry.calls[model]?.take(1) ?? 0
            var buckets: [SidecarReport.Bucket] = []
            if let slot = registry.latency[model] {
                let perBound = (0..<slot.count).map { slot.take($0) }
                if perBound.contains(where: { $0 > 0 }) {
                    var cumulative = 0
                    for (index, count) in perBound.enumerated() {
                        cumulative += count
                        let bound = index < Self.latencyBounds.count ? Self.latencyBounds[index] : .infinity
                        buckets.append(.init(le: bound, count: cumulative))
                    }
                }
            }
            guard ok > 0 || error > 0 || !buckets.isEmpty else { continue }
            calls.append(SidecarReport.ModelCalls(model: model, ok: ok, error: error, latencyBuckets: buckets))
        }
        var injections: [SidecarReport.Injection] = []
        for (key, slot) in registry.injections {
            let count = slot.take(0)
            if count > 0 { injections.append(.init(result: key.result, reason: key.reason, count: count)) }
        }
        injections.sort { ($0.result, $0.reason) < ($1.result, $1.reason) }
        return (decisions, calls, injections)
    }

    /// The slot of a label set: the existing one, a new one (counted against `maxKeys`), or nil
    /// past the bound (then nothing of it is counted).
    private func slot<Key: Hashable>(
        _ path: WritableKeyPath<Registry, [Key: AtomicCounts]>, _ key: Key, count: Int
    ) -> AtomicCounts? {
        registry.withLock { registry in
            if let found = registry[keyPath: path][key] { return found }
            guard registry.keys < maxKeys else { return nil }
            let made = AtomicCounts(count: count)
            registry[keyPath: path][key] = made
            return made
        }
    }

    // MARK: - MetricsFactory

    final class CountingHandler: CounterHandler, Sendable {
        let slot: AtomicCounts
        let index: Int
        init(_ slot: AtomicCounts, index: Int) {
            self.slot = slot
            self.index = index
        }
        func increment(by amount: Int64) { slot.add(Int(amount), at: index) }
        func reset() {}
    }

    final class LatencyHandler: TimerHandler, Sendable {
        let slot: AtomicCounts
        init(_ slot: AtomicCounts) { self.slot = slot }
        func recordNanoseconds(_ duration: Int64) {
            let seconds = Double(duration) / 1e9
            slot.add(1, at: ReportAccumulator.latencyBounds.firstIndex { seconds <= $0 } ?? ReportAccumulator.latencyBounds.count)
        }
    }

    public func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        let value = { (name: String) in dimensions.first { $0.0 == name }?.1 ?? "" }
        let made: CountingHandler?
        switch label {
        case "overlayd_overlay_decisions_total":
            made = slot(\.decisions, DecisionKey(overlay: value("overlay"), model: value("model")), count: 1)
                .map { CountingHandler($0, index: 0) }
        case "overlayd_model_calls_total":
            made = slot(\.calls, value("model"), count: 2).map { CountingHandler($0, index: value("result") == "ok" ? 0 : 1) }
        case "overlayd_injections_total":
            made = slot(\.injections, InjectionKey(result: value("result"), reason: value("reason")), count: 1)
                .map { CountingHandler($0, index: 0) }
        default:
            made = nil
        }
        return made ?? NOOPMetricsHandler.instance
    }

    public func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        guard label == "overlayd_model_call_seconds", let model = dimensions.first(where: { $0.0 == "model" })?.1,
            let slot = slot(\.latency, model, count: Self.latencyBounds.count + 1)
        else {
            return NOOPMetricsHandler.instance
        }
        return LatencyHandler(slot)
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

/// A fixed number of integers, each added to and taken atomically (relaxed: they are counts).
final class AtomicCounts: @unchecked Sendable {
    // @unchecked: the buffer is written only through `Atomic`, and freed once, in deinit.
    private let base: UnsafeMutablePointer<Atomic<Int>>
    let count: Int

    init(count: Int) {
        self.count = count
        base = .allocate(capacity: count)
        for index in 0..<count { (base + index).initialize(to: Atomic(0)) }
    }

    deinit {
        base.deinitialize(count: count)
        base.deallocate()
    }

    func add(_ amount: Int, at index: Int) {
        base[index].wrappingAdd(amount, ordering: .relaxed)
    }

    /// The count at `index`, which restarts at zero.
    func take(_ index: Int) -> Int {
        base[index].exchange(0, ordering: .relaxed)
    }
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
