import CoreMetrics
import ExtProcCore

/// Every ext_proc metric, created once at start so the per-message path only increments.
///
/// - `overlayd_extproc_streams_open` (gauge): Process streams open now.
/// - `overlayd_extproc_streams_total` (counter): Process streams opened.
/// - `overlayd_extproc_messages_total{phase}` (counter): messages received, by phase.
/// - `overlayd_extproc_processing_seconds` (histogram): time from a decoded message to its answer written.
/// - `overlayd_extproc_errors_total{kind}` (counter): streams ended by a protocol error, by kind.
/// - `overlayd_extproc_unknown_fields_total` (counter): messages carrying fields our proto subset lacks.
/// - `overlayd_extproc_decisions_total{decision}` (counter): pass_through, overlay, own_endpoint.
/// - `overlayd_injections_total{result,reason}` (counter): what happened to overlaid response bodies.
final class ExtProcMetrics: Sendable {
    let streamsOpen: Meter
    let streamsTotal: Counter
    let messages: [Counter]
    let processing: Timer
    let errors: [String: Counter]
    let unknownFields: Counter
    let passThrough: Counter
    let overlaid: Counter
    let ownEndpoint: Counter
    /// "result|reason" → counter.
    let injections: [String: Counter]

    init(factory: any MetricsFactory) {
        streamsOpen = Meter(label: "overlayd_extproc_streams_open", factory: factory)
        streamsTotal = Counter(label: "overlayd_extproc_streams_total", factory: factory)
        messages = ExchangePhase.allCases.map {
            Counter(label: "overlayd_extproc_messages_total", dimensions: [("phase", $0.label)], factory: factory)
        }
        processing = Timer(label: "overlayd_extproc_processing_seconds", factory: factory)
        var errors: [String: Counter] = [:]
        for kind in ExchangeError.Kind.all.map(\.name) + ["deadline_exceeded"] {
            errors[kind] = Counter(label: "overlayd_extproc_errors_total", dimensions: [("kind", kind)], factory: factory)
        }
        self.errors = errors
        unknownFields = Counter(label: "overlayd_extproc_unknown_fields_total", factory: factory)
        passThrough = Counter(label: "overlayd_extproc_decisions_total", dimensions: [("decision", "pass_through")], factory: factory)
        overlaid = Counter(label: "overlayd_extproc_decisions_total", dimensions: [("decision", "overlay")], factory: factory)
        ownEndpoint = Counter(label: "overlayd_extproc_decisions_total", dimensions: [("decision", "own_endpoint")], factory: factory)
        var injections: [String: Counter] = [:]
        for reason in ResponsePlan.reasons {
            injections["skipped|" + reason] = Counter(
                label: "overlayd_injections_total", dimensions: [("result", "skipped"), ("reason", reason)], factory: factory)
        }
        for result in ["injected", "already_present", "too_large", "not_json_object", "broken_encoding"] {
            injections[result + "|"] = Counter(
                label: "overlayd_injections_total", dimensions: [("result", result), ("reason", "")], factory: factory)
        }
        self.injections = injections
        // Make the gauge appear at 0 before the first stream.
        streamsOpen.set(0)
    }

    func error(_ kind: String) {
        errors[kind]?.increment()
    }
}
