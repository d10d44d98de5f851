import CoreMetrics
import OverlayCore

/// The overlay metrics of both front ends: one vocabulary, the same names and labels, created
/// once at start so the per-exchange path only increments. `frontend` is `extproc` or `proxy`
/// (the demo runs both in one process).
///
/// - `overlayd_decisions_total{frontend,decision}`: `pass_through`, `overlay`, `own_endpoint`.
/// - `overlayd_injections_total{frontend,result,reason}`: what happened to overlaid response
///   bodies (``OverlayExchange/Injection``): `injected`, `already_present`, `too_large`,
///   `not_json_object`, `broken_encoding`, `partial_body` (reason empty), or `skipped` with the reason.
///
/// Model calls are counted by the engine (`overlayd_model_calls_total{model,result}` and
/// `overlayd_model_call_seconds{model}`), whichever front end started them.
public final class OverlayMetrics: Sendable {
    private let decisions: [Counter]
    private let injections: [OverlayExchange.Injection: Counter]

    public init(frontend: String, factory: any MetricsFactory) {
        decisions = OverlayExchange.Decision.allCases.map {
            Counter(label: "overlayd_decisions_total", dimensions: [("frontend", frontend), ("decision", $0.rawValue)], factory: factory)
        }
        var injections: [OverlayExchange.Injection: Counter] = [:]
        for injection in OverlayExchange.Injection.all {
            injections[injection] = Counter(
                label: "overlayd_injections_total",
                dimensions: [("frontend", frontend), ("result", injection.result), ("reason", injection.reason)],
                factory: factory)
        }
        self.injections = injections
    }

    /// Records the decision of an exchange's request head.
    public func record(_ decision: OverlayExchange.Decision?) {
        guard let decision else { return }
        switch decision {
        case .passThrough: decisions[0].increment()
        case .overlay: decisions[1].increment()
        case .ownEndpoint: decisions[2].increment()
        }
    }

    /// Records what happened to a response body (every value is pre-registered).
    public func record(_ injection: OverlayExchange.Injection) {
        injections[injection]?.increment()
    }

    /// Records whatever the exchange has learnt about its response body and not reported yet.
    /// Counts the exchange's injection once it is known; returns it (for the trace).
    @discardableResult
    public func recordInjection(of exchange: inout OverlayExchange) -> OverlayExchange.Injection? {
        guard let injection = exchange.takeInjection() else { return nil }
        record(injection)
        return injection
    }
}
