import CoreMetrics
import NIOCore
import OverlayCore
import Locking

/// A listener's connection caps (``ConnectionCounts``) and its refusal counters: the proxy's client
/// side and the admin port each have one. Counts `LABEL{reason}` for every refusal reason given,
/// and keeps the gauge of open connections.
public final class ConnectionGate: Sendable {
    private let counts: Locked<ConnectionCounts>
    private let counters: [String: Counter]
    private let open: Gauge

    /// - Parameters:
    ///   - reasons: every reason `count` is called with besides the caps' own (pre-registered).
    ///   - counter: the refusals' counter label (`reason` dimension); `gauge`: the open connections'.
    public init(maxTotal: Int, maxPerClient: Int, reasons: [String], counter: String, gauge: String, factory: any MetricsFactory) {
        counts = Locked(ConnectionCounts(maxTotal: maxTotal, maxPerClient: maxPerClient))
        var counters: [String: Counter] = [:]
        for reason in reasons + [ConnectionCounts.Refusal.maxConnections.rawValue, ConnectionCounts.Refusal.perClient.rawValue] {
            counters[reason] = Counter(label: counter, dimensions: [("reason", reason)], factory: factory)
        }
        self.counters = counters
        open = Gauge(label: gauge, factory: factory)
    }

    public func count(_ reason: String) { counters[reason]?.increment() }

    /// Counts a new connection until it closes, or closes it at once and counts why. Returns
    /// whether it was admitted.
    public func admit(_ channel: any Channel) -> Bool {
        let client = channel.remoteAddress?.ipAddress ?? "unknown"
        let (refusal, total) = counts.withLock { counts in (counts.admit(client), counts.total) }
        if let refusal {
            count(refusal.rawValue)
            channel.close(promise: nil)
            return false
        }
        open.record(total)
        channel.closeFuture.whenComplete { [self] _ in
            let total = counts.withLock { counts in
                counts.release(client)
                return counts.total
            }
            open.record(total)
        }
        return true
    }
}
