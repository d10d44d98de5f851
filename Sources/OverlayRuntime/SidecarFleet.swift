import Foundation
import OverlayDecisions
import OverlayFleet
import Locking

/// One sidecar's own view of what it reports: builds the report a control plane receives
/// (``ReportAccumulator``'s counters, the drift windows, breaker states) and keeps the same
/// fleet aggregation for this single instance, for the admin port's read-only `/v1/fleet`.
public final class SidecarFleet: Sendable {
    public let accumulator: ReportAccumulator
    public let instance: String
    public let host: String
    private let engine: OverlayEngine
    private let aggregator = Locked(FleetAggregator())
    private let lastTake = Locked(ContinuousClock.now)
    /// No control plane takes the reports: `/v1/fleet` takes the counters itself when read.
    private let drainsOnRead: Bool
    /// The models' latest call-rate forecasts (``CallRateForecastService``).
    private let forecasts: @Sendable () -> [SidecarReport.Forecast]

    public init(
        engine: OverlayEngine, accumulator: ReportAccumulator, reportsToControlPlane: Bool,
        forecasts: @escaping @Sendable () -> [SidecarReport.Forecast] = { [] }
    ) {
        self.forecasts = forecasts
        self.engine = engine
        self.accumulator = accumulator
        self.drainsOnRead = !reportsToControlPlane
        let hostName = ProcessInfo.processInfo.environment["POD_NAME"] ?? ProcessInfo.processInfo.hostName
        self.host = hostName
        self.instance = hostName + "-" + String(RandomTokens.next().prefix(8))
    }

    /// The counters since the last report, the drift windows and breaker states; kept for
    /// `/v1/fleet` too.
    public func report(version: String, intervalSeconds: Double) -> SidecarReport {
        lastTake.withLock { $0 = .now }
        let (decisions, calls, injections) = accumulator.take()
        let breakers = engine.breakerStates()
        var modelCalls = calls.map { calls -> SidecarReport.ModelCalls in
            var calls = calls
            calls.breaker = breakers[calls.model] ?? "closed"
            return calls
        }
        for (model, state) in breakers.sorted(by: { $0.key < $1.key }) where !modelCalls.contains(where: { $0.model == model }) {
            modelCalls.append(.init(model: model, ok: 0, error: 0, breaker: state))
        }
        let drift = engine.drift.report().sorted { $0.key < $1.key }.map { overlay, window -> SidecarReport.Drift in
            let pairs = window.lastPairs(20)
            let average = { (values: [Double]) -> Double? in values.isEmpty ? nil : values.reduce(0, +) / Double(values.count) }
            return SidecarReport.Drift(
                overlay: overlay, pairs: window.count, mean: window.mean, p10: window.p10, flag: window.drifting,
                threshold: window.threshold, lengthRatio: average(pairs.map(\.lengthRatio).filter(\.isFinite)),
                latencyDiffMs: average(pairs.map(\.latencyDeltaMs)), errorMismatches: window.errorMismatchCount,
                recentScores: pairs.map(\.similarity))
        }
        let report = SidecarReport(
            instance: instance, host: host, version: version, intervalSeconds: intervalSeconds, decisions: decisions,
            modelCalls: modelCalls, injections: injections, drift: drift, forecasts: forecasts())
        _ = aggregator.withLock { $0.add(report, now: Date()) }
        return report
    }

    /// `/v1/fleet` for this one instance.
    public func fleetJSON(version: String) -> String {
        if drainsOnRead {
            let elapsed = lastTake.withLock { ContinuousClock.now - $0 }
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            _ = report(version: version, intervalSeconds: max(10, min(86_400, seconds)))
        }
        return aggregator.withLock { $0.fleet(now: Date(), version: version) }.json
    }
}
