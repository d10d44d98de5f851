import Locking

/// A value set once (a bound address), awaited by any number of callers; ``finish()`` tells the
/// ones still waiting that it will never come (the server stopped before it listened).
public final class Bound<Value: Sendable>: Sendable {
    private let state = Locked<(value: Value?, finished: Bool, waiters: [CheckedContinuation<Value?, Never>])>((nil, false, []))

    public init() {}

    public func set(_ value: Value) {
        let waiters = state.withLock { state in
            state.value = value
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume(returning: value) }
    }

    /// No value will come: waiting callers, and later ones, get nil (unless one was set).
    public func finish() {
        let waiters = state.withLock { state in
            state.finished = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume(returning: nil) }
    }

    /// Whether ``set(_:)`` was called.
    public var isSet: Bool { state.withLock { $0.value != nil } }

    /// The value once set; nil once finished without one.
    public func value() async -> Value? {
        await withCheckedContinuation { continuation in
            let known: Value?? = state.withLock { state in
                if let value = state.value { return .some(value) }
                if state.finished { return .some(nil) }
                state.waiters.append(continuation)
                return .none
            }
            if let known { continuation.resume(returning: known) }
        }
    }
}
