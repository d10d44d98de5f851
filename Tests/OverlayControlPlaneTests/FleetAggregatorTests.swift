import Foundation
import Testing

@testable import OverlayFleet

func report(_ instance: String, version: String = "3", at interval: Double = 10, fast: Int = 0, smart: Int = 0) -> SidecarReport {
    SidecarReport(
        instance: instance, host: "pod-\(instance)", version: version, intervalSeconds: interval,
        decisions: [.init(overlay: "demo-canary", model: "mock-fast", count: fast), .init(overlay: "demo-canary", model: "mock-smart", count: smart)],
        modelCalls: [
            .init(
                model: "mock-fast", ok: fast, error: 0, breaker: "closed",
                latencyBuckets: [.init(le: 0.01, count: 0), .init(le: 0.05, count: fast), .init(le: .infinity, count: fast)]),
            .init(model: "mock-smart", ok: 0, error: smart, breaker: instance == "b" ? "open" : "closed"),
        ],
        drift: [
            .init(overlay: "demo-shadow", pairs: 50, mean: 0.8, p10: 0.6, flag: false, threshold: 0.6, lengthRatio: 1.1,
                  latencyDiffMs: 40, errorMismatches: 0, recentScores: [0.8, 0.9])
        ])
}

@Suite struct FleetAggregatorTests {
    let t0 = Date(timeIntervalSince1970: 1_800_000_000)

    @Test func aggregatesAcrossTheFleet() {
        var fleet = FleetAggregator()
        fleet.add(report("a", fast: 80, smart: 20), now: t0)
        fleet.add(report("b", version: "2", fast: 40, smart: 60), now: t0.addingTimeInterval(1))
        let view = fleet.fleet(now: t0.addingTimeInterval(2), version: "3")
        #expect(view.instances.map(\.instance.instance) == ["a", "b"])
        #expect(view.instances.map(\.lagging) == [false, true])
        let overlay = view.overlays.first
        #expect(overlay?.share == ["mock-fast": 0.6, "mock-smart": 0.4])
        // 200 decisions over the last minute.
        #expect(overlay?.rps == 200.0 / 60)
        // Only mock-smart fails: 80 of 200 decisions.
        #expect(overlay?.errorRate == 0.4)
        let smart = view.models.first { $0.model == "mock-smart" }
        #expect(smart?.errorRate == 1)
        #expect(smart?.breaker == "open")
        let fast = view.models.first { $0.model == "mock-fast" }
        #expect(fast?.p50Ms.map { ($0 * 1000).rounded() / 1000 } == 30)
        #expect(view.drift.first?.series.count == 1)
        #expect(view.drift.first?.latest?.pairs == 50)
    }

    @Test func forecastsAreTheSumOfTheLiveInstancesLatest() {
        var fleet = FleetAggregator()
        var a = report("a", at: 10, fast: 1)
        a.forecasts = [.init(model: "mock-fast", in5m: 30, in15m: 36), .init(model: "mock-smart", in5m: nil, in15m: nil)]
        var b = report("b", at: 10, fast: 1)
        b.forecasts = [.init(model: "mock-fast", in5m: 12, in15m: 10)]
        fleet.add(a, now: t0)
        fleet.add(b, now: t0.addingTimeInterval(1))
        // A later report replaces the instance's earlier forecast (it is not added to it).
        b.forecasts = [.init(model: "mock-fast", in5m: 20, in15m: 14)]
        fleet.add(b, now: t0.addingTimeInterval(2))
        var view = fleet.fleet(now: t0.addingTimeInterval(3), version: "3")
        let fast = view.models.first { $0.model == "mock-fast" }
        #expect(fast?.forecast5m == 50)
        #expect(fast?.forecast15m == 50)
        // A model no instance forecasts yet has none.
        #expect(view.models.first { $0.model == "mock-smart" }?.forecast5m == nil)
        #expect(view.json.contains(#""model":"mock-fast","callRate":"#))
        #expect(view.json.contains(#""forecast5m":50,"forecast15m":50}"#))
        // Once "a" is forgotten (three intervals), only "b"'s forecast counts.
        view = fleet.fleet(now: t0.addingTimeInterval(31), version: "3")
        #expect(view.models.first { $0.model == "mock-fast" }?.forecast5m == 20)
    }

    @Test func forgetsAnInstanceAfterThreeIntervals() {
        var fleet = FleetAggregator()
        fleet.add(report("a", at: 10), now: t0)
        #expect(fleet.fleet(now: t0.addingTimeInterval(30), version: "3").instances.count == 1)
        #expect(fleet.fleet(now: t0.addingTimeInterval(30.5), version: "3").instances.isEmpty)
    }

    @Test func ratesCoverTheLastMinuteAndTheHourIsBounded() {
        var fleet = FleetAggregator()
        for minute in 0..<120 {
            fleet.add(report("a", at: 3600, fast: 10), now: t0.addingTimeInterval(Double(minute) * 60))
        }
        let view = fleet.fleet(now: t0.addingTimeInterval(119 * 60), version: "3")
        // One report of 10 in the last minute (six 10 s slots).
        #expect(view.overlays.first?.rps == 10.0 / 60)
        // The drift series keeps one hour: 60 points at one per minute.
        #expect(view.drift.first?.series.count == 60)
    }

    @Test func boundsInstancesAndKeys() {
        var options = FleetAggregator.Options()
        options.maxInstances = 2
        options.maxKeys = 3
        var fleet = FleetAggregator(options: options)
        #expect(fleet.add(report("a"), now: t0) == .accepted)
        #expect(fleet.add(report("b"), now: t0) == .accepted)
        #expect(fleet.add(report("c"), now: t0) == .tooManyInstances)
        #expect(fleet.droppedKeys > 0)
    }

    @Test func quantileInterpolatesInsideItsBucket() {
        #expect(FleetAggregator.quantile(0.5, [0.1: 50, 0.2: 100, .infinity: 100]) == 0.1)
        #expect(FleetAggregator.quantile(0.75, [0.1: 50, 0.2: 100, .infinity: 100]) == 0.15000000000000002)
        #expect(FleetAggregator.quantile(0.99, [0.1: 0, .infinity: 10]) == 0.1)
        #expect(FleetAggregator.quantile(0.5, [:]) == nil)
    }
}

@Suite struct SidecarReportTests {
    @Test func roundTripsThroughJSON() throws {
        var original = report("a", fast: 3, smart: 1)
        #expect(try SidecarReport.parse(Array(original.json.utf8)) == original)
        original.forecasts = [.init(model: "mock-fast", in5m: 12.5, in15m: nil)]
        #expect(try SidecarReport.parse(Array(original.json.utf8)) == original)
    }

    @Test func aNegativeForecastIs422WithItsPath() {
        let body = #"{"instance":"a","host":"h","version":"1","intervalSeconds":10,"forecasts":[{"model":"m","in5m":-1,"in15m":2}]}"#
        do {
            _ = try SidecarReport.parse(Array(body.utf8))
            Issue.record("expected 422")
        } catch {
            #expect(error.status == 422)
            #expect(error.problems.map(\.path) == ["report: forecasts[0].in5m"])
        }
    }

    @Test func unknownFieldIs400WithItsPath() {
        do {
            _ = try SidecarReport.parse(Array(#"{"instance":"a","intervalSeconds":10,"colour":1}"#.utf8))
            Issue.record("expected 400")
        } catch {
            #expect(error.status == 400)
            #expect(error.problems.map(\.path) == ["report: colour"])
        }
    }

    @Test func invalidValuesAre422WithEveryPath() {
        let body = #"""
            {"instance":"","host":"h","version":"1","intervalSeconds":0,"decisions":[{"overlay":"o","model":"m","count":-1}],
             "modelCalls":[{"model":"m","ok":1,"error":0,"breaker":"ajar"}]}
            """#
        do {
            _ = try SidecarReport.parse(Array(body.utf8))
            Issue.record("expected 422")
        } catch {
            #expect(error.status == 422)
            #expect(Set(error.problems.map(\.path)) == [
                "report: instance", "report: intervalSeconds", "report: decisions[0].count", "report: modelCalls[0].breaker",
            ])
        }
    }
}
