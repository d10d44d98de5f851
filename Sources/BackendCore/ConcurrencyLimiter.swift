import Locking

/// Bounded concurrent calls per model, FAIL-FAST: a call that finds all `limit` slots busy is refused at
/// once (the client reports `saturated`, the router then tries the fallback). No queue: overlayd sits in
/// a request path with its own deadline, and queueing behind a slow backend only adds latency and hides
/// overload from the caller.
public struct ConcurrencyLimiterState: Sendable, Hashable {
    public let limit: Int
    public private(set) var inFlight = 0

    public init(limit: Int) {
        self.limit = max(1, limit)
    }

    public mutating func tryAcquire() -> Bool {
        guard inFlight < limit else { return false }
        inFlight += 1
        return true
    }

    public mutating func release() {
        precondition(inFlight > 0, "release without acquire")
        inFlight -= 1
    }
}

/// Thread-safe `ConcurrencyLimiterState`.
public final class ConcurrencyLimiter: Sendable {
    private let state: Locked<ConcurrencyLimiterState>

    public init(limit: Int) {
        state = Locked(ConcurrencyLimiterState(limit: limit))
    }

    public func tryAcquire() -> Bool { state.withLock { $0.tryAcquire() } }
    public func release() { state.withLock { $0.release() } }
    public var inFlight: Int { state.withLock { $0.inFlight } }
    public var limit: Int { state.withLock { $0.limit } }
}
