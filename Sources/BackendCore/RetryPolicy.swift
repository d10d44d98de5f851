import Locking

/// How one failed HTTP attempt failed, as far as retrying is concerned.
public enum AttemptFailure: Sendable, Hashable {
    /// Could not connect (refused, DNS, connect timeout, TLS handshake). Nothing reached the model.
    case connect
    /// The call's total deadline passed.
    case timeout
    /// The server answered with a non-2xx status; `retryAfter` is the parsed `Retry-After` header.
    case http(status: Int, retryAfter: Duration?)
    /// The body was not a valid chat-completions response.
    case malformed
    /// Anything else (cancellation, configuration, client-side errors).
    case other
}

/// Per-call retry rules. Defaults: at most 2 retries; retry connect errors, 429, 502, 503, 504;
/// exponential backoff 100 ms → 2 s with equal jitter; `Retry-After` honoured exactly when ≤ 5 s
/// (a longer one ends the call with the error, it is never shortened); never sleep past the call's deadline.
/// Timeouts, 500 and other statuses, and malformed responses are not retried.
public struct RetryPolicy: Sendable, Hashable {
    public var maxRetries: Int
    public var baseBackoff: Duration
    public var maxBackoff: Duration
    public var maxRetryAfter: Duration
    /// Statuses that are retried.
    public var retryableStatuses: Set<Int>

    public init(
        maxRetries: Int = 2, baseBackoff: Duration = .milliseconds(100), maxBackoff: Duration = .seconds(2),
        maxRetryAfter: Duration = .seconds(5), retryableStatuses: Set<Int> = [429, 502, 503, 504]
    ) {
        self.maxRetries = maxRetries
        self.baseBackoff = baseBackoff
        self.maxBackoff = maxBackoff
        self.maxRetryAfter = maxRetryAfter
        self.retryableStatuses = retryableStatuses
    }

    public static let `default` = RetryPolicy()
    public static let none = RetryPolicy(maxRetries: 0)

    public enum GiveUp: Sendable, Hashable {
        case notRetryable
        case attemptsExhausted
        case retryAfterTooLong
        case deadline
        case budgetExhausted
    }

    public enum Decision: Sendable, Hashable {
        case retry(after: Duration)
        case giveUp(GiveUp)
    }

    /// Backoff before retry number `retry` (1-based), with `jitter` in [0, 1): delay ∈ [b/2, b).
    public func backoff(retry: Int, jitter: Double) -> Duration {
        var b = baseBackoff
        var i = 1
        while i < retry && b < maxBackoff {
            b = b * 2
            i += 1
        }
        if b > maxBackoff { b = maxBackoff }
        let j = min(max(jitter, 0), 1)
        return b * (0.5 + 0.5 * j)
    }

    /// Decides whether to retry after the `attempt`-th attempt (1-based) failed with `failure`, with
    /// `remaining` time left before the call's deadline. The budget is only charged when the answer is
    /// `.retry`. `jitter` in [0, 1) (random in production, fixed in tests).
    public func decide(
        after failure: AttemptFailure, attempt: Int, remaining: Duration, budget: RetryBudget?, jitter: Double
    ) -> Decision {
        var retryAfter: Duration?
        switch failure {
        case .connect:
            break
        case .http(let status, let ra):
            guard retryableStatuses.contains(status) else { return .giveUp(.notRetryable) }
            retryAfter = ra
        case .timeout, .malformed, .other:
            return .giveUp(.notRetryable)
        }
        guard attempt <= maxRetries else { return .giveUp(.attemptsExhausted) }
        let delay: Duration
        if let retryAfter {
            guard retryAfter <= maxRetryAfter else { return .giveUp(.retryAfterTooLong) }
            delay = retryAfter
        } else {
            delay = backoff(retry: attempt, jitter: jitter)
        }
        guard delay < remaining else { return .giveUp(.deadline) }
        if let budget, !budget.tryWithdraw() { return .giveUp(.budgetExhausted) }
        return .retry(after: delay)
    }
}

/// Token-bucket retry budget shared by all calls to one model, so retries cannot amplify an outage:
/// every call deposits `ratio` tokens (capped at `maxTokens`), every retry withdraws one whole token.
/// With the defaults (ratio 0.2, 10 tokens, starting full) a sustained outage gets at most
/// 10 + 20 % extra attempts, instead of 3× the traffic.
public struct RetryBudgetState: Sendable, Hashable {
    public var ratio: Double
    public var maxTokens: Double
    public private(set) var tokens: Double

    public init(ratio: Double = 0.2, maxTokens: Double = 10) {
        self.ratio = ratio
        self.maxTokens = maxTokens
        self.tokens = maxTokens
    }

    public mutating func depositForCall() {
        tokens = min(maxTokens, tokens + ratio)
    }

    public mutating func tryWithdraw() -> Bool {
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }
}

/// Thread-safe `RetryBudgetState`.
public final class RetryBudget: Sendable {
    private let state: Locked<RetryBudgetState>

    public init(ratio: Double = 0.2, maxTokens: Double = 10) {
        state = Locked(RetryBudgetState(ratio: ratio, maxTokens: maxTokens))
    }

    public func depositForCall() { state.withLock { $0.depositForCall() } }
    public func tryWithdraw() -> Bool { state.withLock { $0.tryWithdraw() } }
    public var tokens: Double { state.withLock { $0.tokens } }
}
