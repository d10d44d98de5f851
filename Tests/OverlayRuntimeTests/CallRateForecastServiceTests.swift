import CoreMetrics
import Testing

@testable import OverlayRuntime

@Suite struct CallRateForecastServiceTests {
    @Test func modelCallTotalsSumEveryResultPerModelFromTheRegistrysOwnExposition() {
        let metrics = PrometheusMetrics()
        let calls = [("mock-a", "ok", 3), ("mock-a", "error", 2), ("odd \"name\\", "ok", 4), ("mock-b", "ok", 0)]
        for (model, result, n) in calls {
            let counter = Counter(
                label: "overlayd_model_calls_total", dimensions: [("model", model), ("result", result)], factory: metrics.factory)
            if n > 0 { counter.increment(by: n) }
        }
        // Neighbours that must not count: another metric with the same prefix, the histogram.
        Counter(label: "overlayd_model_calls_total_other", dimensions: [("model", "mock-a")], factory: metrics.factory).increment(by: 7)
        CoreMetrics.Timer(label: "overlayd_model_call_seconds", dimensions: [("model", "mock-a")], factory: metrics.factory)
            .recordMilliseconds(5)
        let totals = CallRateForecastService.modelCallTotals(exposition: metrics.render())
        #expect(totals == ["mock-a": 5, "odd \"name\\": 4, "mock-b": 0])
    }

    @Test func modelCallTotalsIgnoreMalformedLines() {
        let text = """
            overlayd_model_calls_total{model="a",result="ok"} 2
            overlayd_model_calls_total{model="b",result="ok"}
            overlayd_model_calls_total{model="c
            overlayd_model_calls_total{result="ok"} 9
            # HELP overlayd_model_calls_total x
            """
        #expect(CallRateForecastService.modelCallTotals(exposition: Array(text.utf8)) == ["a": 2])
    }

    @Test func horizonLabelsAreMinutesWhenWhole() {
        #expect(CallRateForecastService.horizonLabel(seconds: 300) == "5m")
        #expect(CallRateForecastService.horizonLabel(seconds: 900) == "15m")
        #expect(CallRateForecastService.horizonLabel(seconds: 5) == "5s")
        #expect(CallRateForecastService.horizonLabel(seconds: 90) == "90s")
    }
}
