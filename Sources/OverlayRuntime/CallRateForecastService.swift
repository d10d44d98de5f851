import CoreMetrics
import Logging
import OverlayDecisions
import OverlayFleet
import ServiceLifecycle
import Locking

/// Forecasts each model's call rate for predictive scaling of model backends (README "Scaling
/// forecast"): once per bucket (`--forecast-bucket`, 60 s) it reads the served-model call
/// counters (`overlayd_model_calls_total`, every result) from the registry's own exposition,
/// feeds each model's calls in that bucket to a ``CallRateForecaster`` (Holt's linear trend, then
/// Holt–Winters with a daily season once a day of buckets exists) and exports, in calls per
/// minute:
///
/// - `overlayd_model_call_rate_forecast{model,horizon}`: the rate expected 5 and 15 buckets
///   ahead (`horizon="5m"`, `"15m"` with one-minute buckets);
/// - `overlayd_model_call_rate_forecast_error{model,horizon}`: the fit's error, the root mean
///   square error of that horizon's last 60 forecasts whose bucket has been observed.
///
/// A model appears with its first call. Reading the exposition costs one render per bucket and
/// nothing on the request path.
public final class CallRateForecastService: Service, Sendable {
    private let metrics: PrometheusMetrics
    private let bucketSeconds: Int
    private let logger: Logger
    /// The latest forecast per model (calls per minute), for the reports to a control plane.
    private let latest = Locked<[String: SidecarReport.Forecast]>([:])

    /// - Parameter bucketSeconds: the bucket length; it must divide a day (86400 s).
    public init(metrics: PrometheusMetrics, bucketSeconds: Int = 60, logger: Logger) {
        precondition(bucketSeconds >= 1 && 86_400 % bucketSeconds == 0)
        self.metrics = metrics
        self.bucketSeconds = bucketSeconds
        self.logger = logger
    }

    static let horizons = [5, 15]

    /// Every model's latest forecast, 5 and 15 buckets ahead, in calls per minute (sorted by model).
    public func forecasts() -> [SidecarReport.Forecast] {
        latest.withLock { Array($0.values) }.sorted { $0.model < $1.model }
    }

    /// "5m" for 300 s, "45s" for 45 s.
    static func horizonLabel(seconds: Int) -> String {
        seconds % 60 == 0 ? "\(seconds / 60)m" : "\(seconds)s"
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown { await self.loop() }
    }

    private struct Series {
        var forecaster: CallRateForecaster
        var forecasts: [Gauge]
        var errors: [Gauge]
    }

    private func loop() async {
        let configuration = CallRateForecaster.Configuration(
            seasonLength: 86_400 / bucketSeconds, horizons: Self.horizons)
        let perMinute = 60 / Double(bucketSeconds)
        let clock = ContinuousClock()
        var previous = Self.modelCallTotals(exposition: metrics.render())
        var series: [String: Series] = [:]
        var next = clock.now + .seconds(bucketSeconds)
        while !Task.isCancelled {
            do {
                try await clock.sleep(until: next)
            } catch {
                return  // cancelled: shutting down
            }
            next += .seconds(bucketSeconds)
            let totals = Self.modelCallTotals(exposition: metrics.render())
            for (model, total) in totals {
                let count = max(0, total - (previous[model] ?? 0))
                var entry = series[model] ?? makeSeries(model: model, configuration: configuration)
                entry.forecaster.observe(count)
                var ahead: [Double?] = []
                for (i, h) in Self.horizons.enumerated() {
                    let forecast = entry.forecaster.forecast(h).map { $0 * perMinute }
                    if let forecast { entry.forecasts[i].record(forecast) }
                    if let error = entry.forecaster.error(h) { entry.errors[i].record(error * perMinute) }
                    ahead.append(forecast)
                }
                series[model] = entry
                latest.withLock { $0[model] = SidecarReport.Forecast(model: model, in5m: ahead[0], in15m: ahead[1]) }
            }
            previous = totals
        }
    }

    private func makeSeries(model: String, configuration: CallRateForecaster.Configuration) -> Series {
        let factory = metrics.factory
        let labels = Self.horizons.map { Self.horizonLabel(seconds: $0 * bucketSeconds) }
        logger.debug("forecasting a model's call rate", metadata: ["model": "\(model)"])
        return Series(
            forecaster: CallRateForecaster(configuration: configuration),
            forecasts: labels.map {
                Gauge(label: "overlayd_model_call_rate_forecast", dimensions: [("model", model), ("horizon", $0)], factory: factory)
            },
            errors: labels.map {
                Gauge(label: "overlayd_model_call_rate_forecast_error", dimensions: [("model", model), ("horizon", $0)], factory: factory)
            })
    }

    /// Per model, the sum over results of `overlayd_model_calls_total` in Prometheus text
    /// exposition (label values unescaped: `\\`, `\"`, `\n`).
    static func modelCallTotals(exposition: [UInt8]) -> [String: Double] {
        let prefix = Array("overlayd_model_calls_total{".utf8)
        var totals: [String: Double] = [:]
        for line in exposition.split(separator: UInt8(ascii: "\n")) where line.starts(with: prefix) {
            var i = line.startIndex + prefix.count
            var model: String?
            // name="value" pairs up to '}'.
            while i < line.endIndex, line[i] != UInt8(ascii: "}") {
                guard let eq = line[i...].firstIndex(of: UInt8(ascii: "=")), eq + 1 < line.endIndex,
                    line[eq + 1] == UInt8(ascii: "\"")
                else { break }
                let name = String(decoding: line[i..<eq], as: UTF8.self)
                var value: [UInt8] = []
                var j = eq + 2
                while j < line.endIndex, line[j] != UInt8(ascii: "\"") {
                    if line[j] == UInt8(ascii: "\\"), j + 1 < line.endIndex {
                        value.append(line[j + 1] == UInt8(ascii: "n") ? UInt8(ascii: "\n") : line[j + 1])
                        j += 2
                    } else {
                        value.append(line[j])
                        j += 1
                    }
                }
                if name == "model" { model = String(decoding: value, as: UTF8.self) }
                i = j + 1
                if i < line.endIndex, line[i] == UInt8(ascii: ",") { i += 1 }
            }
            guard let model, i < line.endIndex,
                let number = Double(String(decoding: line[(i + 1)...], as: UTF8.self).split(separator: " ").first ?? "")
            else { continue }
            totals[model, default: 0] += number
        }
        return totals
    }
}
