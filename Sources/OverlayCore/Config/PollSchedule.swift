/// When the control-plane poller fetches next: the interval with jitter while fetches succeed,
/// exponential backoff while they fail. Pure: the caller passes the random draw.
///
/// - Success (200 applied, unchanged or rejected, 304): `interval × (1 + jitter × (2u − 1))`,
///   u uniform in [0, 1): spread ±jitter around the interval, so a fleet started together does
///   not poll in lockstep.
/// - The n-th consecutive failure (connect error, timeout, HTTP status other than 200/304, oversized
///   or undecodable body): `min(maxBackoff, initialBackoff × 2^(n−1)) × (1 − jitter × u)`: doubles
///   each time up to the cap, spread downwards only, so it never exceeds the cap.
///
/// A rejected document is a success for scheduling: the control plane answered; polling faster
/// would not fix the document.
public struct PollSchedule: Sendable, Hashable {
    public var intervalMs: Int
    public var initialBackoffMs: Int
    public var maxBackoffMs: Int
    /// 0...1: the fraction by which a delay is spread.
    public var jitter: Double

    public init(intervalMs: Int, initialBackoffMs: Int = 1_000, maxBackoffMs: Int = 300_000, jitter: Double = 0.1) {
        self.intervalMs = max(1, intervalMs)
        self.initialBackoffMs = max(1, initialBackoffMs)
        self.maxBackoffMs = max(self.initialBackoffMs, maxBackoffMs)
        self.jitter = min(1, max(0, jitter))
    }

    /// The delay before the next fetch, in milliseconds.
    /// - Parameters:
    ///   - consecutiveFailures: 0 after a success; n after the n-th failure in a row.
    ///   - unit: a uniform draw in [0, 1).
    public func delayMs(consecutiveFailures: Int, unit: Double) -> Int {
        let u = min(max(unit, 0), 1)
        if consecutiveFailures <= 0 {
            let spread = Double(intervalMs) * (1 + jitter * (2 * u - 1))
            return max(1, Int(spread.rounded()))
        }
        let exponent = min(consecutiveFailures - 1, 40)
        let raw = Double(initialBackoffMs) * Double(1 << UInt64(exponent))
        let capped = min(Double(maxBackoffMs), raw)
        return max(1, Int((capped * (1 - jitter * u)).rounded()))
    }
}
