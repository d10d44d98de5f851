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
///
/// Decisions and injections are counted in the vocabulary both front ends share (``OverlayMetrics``).
final class ExtProcMetrics: Sendable {
    let streamsOpen: Meter
    let streamsTotal: Counter
    let messages: [Counter]
    let processing: Timer
    let errors: [String: Counter]
    let unknownFields: Counter

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
        // Make the gauge appear at 0 before the first stream.
        streamsOpen.set(0)
    }

    func error(_ kind: String) {
        errors[kind]?.increment()
    }
}
