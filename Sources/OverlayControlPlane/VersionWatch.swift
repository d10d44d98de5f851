import Locking

/// The long poll's waiters: each waits until the store's version differs from the one it has,
/// or its wait ends. Bounded: past `capacity` waiters a new one is refused at once (the handler
/// answers 503 and the sidecar backs off).
public final class VersionWatch: Sendable {
    public enum Outcome: Equatable, Sendable {
        /// The version now differs from the one the waiter had.
        case changed(Int)
        /// The wait ended (or the task was cancelled) with no change.
        case timedOut
        /// Too many waiters.
        case full
    }

    private struct State {
        var version: Int
        var closed = false
        var next: UInt64 = 0
        var waiters: [UInt64: CheckedContinuation<Outcome, Never>] = [:]
    }

    public let capacity: Int
    private let state: Locked<State>

    public init(version: Int, capacity: Int = 10_000) {
        self.capacity = capacity
        self.state = Locked(State(version: version))
    }

    /// Waiters now.
    public var waiting: Int { state.withLock { $0.waiters.count } }

    /// A new version was committed: every waiter is answered.
    public func publish(_ version: Int) {
        let resumed = state.withLock { state -> [CheckedContinuation<Outcome, Never>] in
            guard version > state.version else { return [] }
            state.version = version
            defer { state.waiters.removeAll() }
            return Array(state.waiters.values)
        }
        for waiter in resumed { waiter.resume(returning: .changed(version)) }
    }

    /// The server is shutting down: every waiter is answered now (no change), and later ones at once,
    /// so held long polls do not hold up the drain.
    public func close() {
        let resumed = state.withLock { state -> [CheckedContinuation<Outcome, Never>] in
            state.closed = true
            defer { state.waiters.removeAll() }
            return Array(state.waiters.values)
        }
        for waiter in resumed { waiter.resume(returning: .timedOut) }
    }

    /// Waits while the version is `known`, at most `timeout`.
    public func wait(whileVersionIs known: Int, timeout: Duration) async -> Outcome {
        await withTaskGroup(of: Outcome.self) { group in
            group.addTask { await self.waitForChange(known) }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return .timedOut
            }
            let first = await group.next() ?? .timedOut
            group.cancelAll()
            return first
        }
    }

    private func waitForChange(_ known: Int) async -> Outcome {
        let id = state.withLock { state -> UInt64 in
            state.next += 1
            return state.next
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Outcome, Never>) in
                let immediate: Outcome? = state.withLock { state in
                    if state.version != known { return .changed(state.version) }
                    if Task.isCancelled || state.closed { return .timedOut }
                    if state.waiters.count >= capacity { return .full }
                    state.waiters[id] = continuation
                    return nil
                }
                if let immediate { continuation.resume(returning: immediate) }
            }
        } onCancel: {
            let waiter = state.withLock { $0.waiters.removeValue(forKey: id) }
            waiter?.resume(returning: .timedOut)
        }
    }
}
