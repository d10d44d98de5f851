import Foundation
import OverlayDecisions
import Testing

/// SplitMix64 with Box–Muller normals: the same noise on every run and machine.
private struct SeededNoise {
    var state: UInt64

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func uniform() -> Double { (Double(next() >> 11) + 0.5) / Double(1 << 53) }

    mutating func normal(sigma: Double) -> Double {
        let u1 = uniform()
        let u2 = uniform()
        return sigma * (-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2)
    }
}

/// Mean absolute percentage error of the forecaster and of "same as now" over `from..<series.count - h`:
/// after observing bucket t, both forecast bucket t + h.
private func mape(_ series: [Double], horizon h: Int, from: Int) -> (forecast: Double, naive: Double) {
    var forecaster = CallRateForecaster()
    var forecastErrors = 0.0
    var naiveErrors = 0.0
    var n = 0.0
    for t in 0..<(series.count - h) {
        forecaster.observe(series[t])
        guard t >= from else { continue }
        let actual = series[t + h]
        forecastErrors += abs(actual - (forecaster.forecast(h) ?? 0)) / actual
        naiveErrors += abs(actual - series[t]) / actual
        n += 1
    }
    return (forecastErrors / n, naiveErrors / n)
}

private let day = 1440

private func steady() -> [Double] {
    var noise = SeededNoise(state: 1)
    return (0..<720).map { _ in 100 + noise.normal(sigma: 5) }
}

private func ramp() -> [Double] {
    var noise = SeededNoise(state: 2)
    return (0..<720).map { t in 20 + 0.5 * Double(t) + noise.normal(sigma: 2) }
}

/// Three days: a daily wave and a second harmonic around 300 calls per minute, noise sigma 10.
private func daily() -> [Double] {
    var noise = SeededNoise(state: 3)
    return (0..<(3 * day)).map { t in
        let phase = 2 * Double.pi * Double(t) / Double(day)
        return 300 + 150 * sin(phase) + 40 * sin(2 * phase + 1) + noise.normal(sigma: 10)
    }
}

private func step() -> [Double] {
    var noise = SeededNoise(state: 4)
    return (0..<720).map { t in (t < 360 ? 100 : 300) + noise.normal(sigma: 5) }
}

@Suite("CallRateForecaster")
struct CallRateForecastTests {
    @Test("steady series: close to the level, within the noise")
    func steadySeries() {
        let series = steady()
        let m5 = mape(series, horizon: 5, from: 60)
        let m15 = mape(series, horizon: 15, from: 60)
        // MAPE stated in the README.
        #expect(m5.forecast < 0.05, "h=5: \(m5)")
        #expect(m15.forecast < 0.05, "h=15: \(m15)")
        #expect(m5.forecast < m5.naive && m15.forecast < m15.naive, "\(m5) \(m15)")
    }

    @Test("linear ramp: follows the trend and beats same-as-now")
    func rampSeries() {
        let series = ramp()
        let m5 = mape(series, horizon: 5, from: 60)
        let m15 = mape(series, horizon: 15, from: 60)
        #expect(m5.forecast < m5.naive, "h=5: \(m5)")
        #expect(m15.forecast < m15.naive, "h=15: \(m15)")
        #expect(m15.forecast < 0.02, "h=15: \(m15)")
    }

    @Test("daily pattern with noise: Holt-Winters from the second day beats same-as-now")
    func dailySeries() {
        let series = daily()
        let m5 = mape(series, horizon: 5, from: 2 * day)
        let m15 = mape(series, horizon: 15, from: 2 * day)
        #expect(m5.forecast < m5.naive, "h=5: \(m5)")
        #expect(m15.forecast < m15.naive, "h=15: \(m15)")
        #expect(m15.forecast < 0.05, "h=15: \(m15)")
    }

    @Test("a step: the forecast reaches the new level within the hour")
    func stepSeries() {
        let series = step()
        let m5 = mape(series, horizon: 5, from: 60)
        let m15 = mape(series, horizon: 15, from: 60)
        #expect(m5.forecast < 0.1 && m15.forecast < 0.15, "h=5: \(m5), h=15: \(m15)")
        var forecaster = CallRateForecaster()
        for y in series.prefix(420) { forecaster.observe(y) }
        let settled = forecaster.forecast(15) ?? 0
        #expect(abs(settled - 300) < 30, "forecast 60 buckets after the step: \(settled)")
    }

    @Test("Holt's trend until a season of data exists, then Holt-Winters")
    func methodSwitch() {
        var forecaster = CallRateForecaster(configuration: .init(seasonLength: 24))
        #expect(forecaster.method == .none)
        #expect(forecaster.forecast(5) == nil)
        for t in 0..<23 { forecaster.observe(Double(t % 24)) }
        #expect(forecaster.method == .holt)
        forecaster.observe(23)
        #expect(forecaster.method == .holtWinters)
        // A noise-free repeating pattern is forecast exactly once the season is known.
        for t in 24..<(24 * 4) { forecaster.observe(Double(t % 24)) }
        for h in [1, 5, 15] {
            let expected = Double((24 * 4 - 1 + h) % 24)
            #expect(abs((forecaster.forecast(h) ?? -1) - expected) < 0.5, "h=\(h)")
        }
    }

    @Test("the fit's error is the RMS of realised forecasts of that horizon")
    func fitError() {
        var forecaster = CallRateForecaster(configuration: .init(horizons: [5], errorWindow: 3, refitEvery: 1000))
        var made: [Int: Double] = [:]
        var squared: [Double] = []
        let series: [Double] = [10, 12, 9, 14, 11, 13, 10, 15, 9, 12, 16, 8]
        for (t, y) in series.enumerated() {
            if let predicted = made[t] { squared.append((y - predicted) * (y - predicted)) }
            forecaster.observe(y)
            made[t + 5] = forecaster.forecast(5)
            if squared.isEmpty {
                #expect(forecaster.error(5) == nil)
            } else {
                let last = squared.suffix(3)
                let expected = (last.reduce(0, +) / Double(last.count)).squareRoot()
                #expect(abs((forecaster.error(5) ?? -1) - expected) < 1e-9, "t=\(t)")
            }
        }
        #expect(forecaster.error(15) == nil)
    }

    @Test("a falling rate is never forecast below zero")
    func neverNegative() {
        var forecaster = CallRateForecaster()
        for t in 0..<100 { forecaster.observe(Double(max(0, 200 - 4 * t))) }
        #expect(forecaster.forecast(15) == 0)
    }
}
