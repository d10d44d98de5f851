import CoreMetrics
import OverlayFleet
import Testing

@testable import OverlayRuntime

/// The counters a sidecar reports to its control plane, caught next to Prometheus: summed per
/// label set without a lock on the recording path, taken (and reset) by each report.
@Suite struct ReportAccumulatorTests {
    @Test func countsAreSummedPerLabelSetAndResetWhenTaken() {
        let accumulator = ReportAccumulator()
        let crmA = Counter(label: "overlayd_overlay_decisions_total", dimensions: [("overlay", "crm"), ("model", "a")], factory: accumulator)
        let crmB = Counter(label: "overlayd_overlay_decisions_total", dimensions: [("overlay", "crm"), ("model", "b")], factory: accumulator)
        let ok = Counter(label: "overlayd_model_calls_total", dimensions: [("model", "a"), ("result", "ok")], factory: accumulator)
        let failed = Counter(label: "overlayd_model_calls_total", dimensions: [("model", "a"), ("result", "error")], factory: accumulator)
        let injected = Counter(
            label: "overlayd_injections_total", dimensions: [("frontend", "proxy"), ("result", "injected"), ("reason", "")],
            factory: accumulator)
        let seconds = CoreMetrics.Timer(label: "overlayd_model_call_seconds", dimensions: [("model", "a")], factory: accumulator)
        let ignored = Counter(label: "overlayd_decisions_total", dimensions: [("decision", "overlay")], factory: accumulator)
        for _ in 0..<3 { crmA.increment() }
        crmB.increment(by: 2)
        ok.increment(by: 5)
        failed.increment()
        injected.increment()
        ignored.increment()
        seconds.recordNanoseconds(5_000_000)  // 5 ms: the first bucket (10 ms)
        seconds.recordNanoseconds(40_000_000_000)  // 40 s: +Inf

        let taken = accumulator.take()
        #expect(
            taken.decisions == [.init(overlay: "crm", model: "a", count: 3), .init(overlay: "crm", model: "b", count: 2)])
        #expect(taken.injections == [.init(result: "injected", reason: "", count: 1)])
        #expect(taken.modelCalls.count == 1)
        let calls = taken.modelCalls[0]
        #expect(calls.model == "a" && calls.ok == 5 && calls.error == 1)
        #expect(calls.latencyBuckets.count == ReportAccumulator.latencyBounds.count + 1)
        #expect(calls.latencyBuckets.first == .init(le: 0.01, count: 1))
        #expect(calls.latencyBuckets[ReportAccumulator.latencyBounds.count - 1].count == 1)
        #expect(calls.latencyBuckets.last == .init(le: .infinity, count: 2))

        // Taken: the next report starts from zero, and label sets with nothing new are left out.
        crmB.increment()
        let next = accumulator.take()
        #expect(next.decisions == [.init(overlay: "crm", model: "b", count: 1)])
        #expect(next.modelCalls.isEmpty && next.injections.isEmpty)
    }

    /// Both event loops record at once: nothing is lost.
    @Test func concurrentIncrementsAreAllCounted() async {
        let accumulator = ReportAccumulator()
        let counter = Counter(label: "overlayd_overlay_decisions_total", dimensions: [("overlay", "o"), ("model", "m")], factory: accumulator)
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<4 {
                group.addTask { for _ in 0..<10_000 { counter.increment() } }
            }
        }
        #expect(accumulator.take().decisions == [.init(overlay: "o", model: "m", count: 40_000)])
    }

    /// Past `maxKeys` label sets, a new one is not counted; the ones made before still are.
    @Test func labelSetsAreBounded() {
        let accumulator = ReportAccumulator(maxKeys: 2)
        let counters = (0..<3).map {
            Counter(label: "overlayd_overlay_decisions_total", dimensions: [("overlay", "o\($0)"), ("model", "m")], factory: accumulator)
        }
        for counter in counters { counter.increment() }
        #expect(accumulator.take().decisions.map(\.overlay) == ["o0", "o1"])
    }
}
