import Locking

public struct CircuitBreakerConfiguration: Sendable, Hashable {
    /// Consecutive failed calls that open the circuit.
    public var failureThreshold: Int
    /// Time the circuit stays open before one half-open probe is let through.
    public var coolDown: Duration

    public init(failureThreshold: Int = 5, coolDown: Duration = .seconds(10)) {
        self.failureThreshold = max(1, failureThreshold)
        self.coolDown = coolDown
    }

    public static let `default` = CircuitBreakerConfiguration()
}

/// Pure circuit-breaker state machine; time is passed in (`now`), so tests drive it without sleeping.
///
/// closed --(N consecutive failures)--> open --(cool-down passed, next acquire)--> half-open (one probe)
/// half-open --probe success--> closed;  half-open --probe failure--> open (new cool-down).
/// While half-open every other call is rejected. Results of calls admitted before the circuit opened are
/// ignored once it is open/half-open; only the probe decides. `.ignored` outcomes (client errors,
/// cancellation) never count, and an ignored probe frees the probe slot.
public struct CircuitBreakerState<Instant: InstantProtocol>: Sendable where Instant.Duration == Duration {
    public enum Phase: Sendable, Hashable {
        case closed(consecutiveFailures: Int)
        case open(since: Instant)
        case halfOpen
    }

    public enum Permission: Sendable, Hashable {
        case allowed
        case probe
        case rejected(retryIn: Duration)

        public var isAllowed: Bool {
            if case .rejected = self { return false }
            return true
        }
    }

    public enum Outcome: Sendable, Hashable {
        case success, failure, ignored
    }

    public let configuration: CircuitBreakerConfiguration
    public private(set) var phase: Phase = .closed(consecutiveFailures: 0)

    public init(configuration: CircuitBreakerConfiguration = .default) {
        self.configuration = configuration
    }

    public mutating func acquire(now: Instant) -> Permission {
        switch phase {
        case .closed:
            return .allowed
        case .open(let since):
            let reopenAt = since.advanced(by: configuration.coolDown)
            if now >= reopenAt {
                phase = .halfOpen
                return .probe
            }
            return .rejected(retryIn: now.duration(to: reopenAt))
        case .halfOpen:
            return .rejected(retryIn: .zero)
        }
    }

    public mutating func record(_ outcome: Outcome, permission: Permission, now: Instant) {
        switch (phase, permission) {
        case (_, .rejected):
            return
        case (.closed(let failures), _):
            switch outcome {
            case .success: phase = .closed(consecutiveFailures: 0)
            case .ignored: break
            case .failure:
                phase =
                    failures + 1 >= configuration.failureThreshold
                    ? .open(since: now) : .closed(consecutiveFailures: failures + 1)
            }
        case (.halfOpen, .probe):
            switch outcome {
            case .success: phase = .closed(consecutiveFailures: 0)
            case .failure: phase = .open(since: now)
            case .ignored:
                // Free the probe slot: back to open, already cooled down, so the next acquire probes.
                phase = .open(since: now.advanced(by: .zero - configuration.coolDown))
            }
        case (.halfOpen, _), (.open, _):
            return  // stale result of a call admitted before the circuit opened
        }
    }
}

/// Thread-safe circuit breaker over `CircuitBreakerState`, reading time from an injected `now`.
public final class CircuitBreaker<Instant: InstantProtocol>: Sendable where Instant.Duration == Duration {
    private let state: Locked<CircuitBreakerState<Instant>>
    private let now: @Sendable () -> Instant

    public init(configuration: CircuitBreakerConfiguration = .default, now: @escaping @Sendable () -> Instant) {
        self.state = Locked(CircuitBreakerState(configuration: configuration))
        self.now = now
    }

    public func acquire() -> CircuitBreakerState<Instant>.Permission {
        let t = now()
        return state.withLock { $0.acquire(now: t) }
    }

    public func record(_ outcome: CircuitBreakerState<Instant>.Outcome, permission: CircuitBreakerState<Instant>.Permission) {
        let t = now()
        state.withLock { $0.record(outcome, permission: permission, now: t) }
    }

    public var phase: CircuitBreakerState<Instant>.Phase { state.withLock { $0.phase } }
}

extension CircuitBreaker where Instant == ContinuousClock.Instant {
    public convenience init(configuration: CircuitBreakerConfiguration = .default) {
        self.init(configuration: configuration, now: { ContinuousClock.now })
    }
}
