/// Decides whether a request also triggers a shadow (challenger) call.
///
/// * With a user key: `u = unit(StableHash.hash(salt: "overlayd.shadow\0" + overlay, key: key))`
///   and the request is sampled iff `u < rate`. The salt differs from the
///   splitter's (`overlay`), so sampling is statistically independent of the
///   arm a user lands in. Per-user decisions are deterministic and monotone in
///   `rate` (a user sampled at rate r is sampled at every rate ≥ r).
/// * Without a user key: exactly one value is drawn from the injected random
///   generator (even for rate 0 or 1) and compared the same way.
/// * `rate` is clamped to `0...1`; NaN counts as 0. Rate 0 never samples,
///   rate 1 always samples.
public struct ShadowSampler: Sendable, Hashable {
    /// Domain-separation prefix of the sampling salt.
    public static let saltPrefix = "overlayd.shadow"

    public let overlay: String
    /// Effective (clamped) sample rate.
    public let rate: Double
    /// The full salt: `"overlayd.shadow" + "\0" + overlay`.
    public let salt: String

    public init(overlay: String, rate: Double) {
        self.overlay = overlay
        self.rate = rate.isNaN ? 0 : min(max(rate, 0), 1)
        self.salt = Self.saltPrefix + "\u{0}" + overlay
    }

    /// The user's stable position in `[0, 1)`.
    public func unitValue(forKey key: some StringProtocol) -> Double {
        StableHash.unitInterval(StableHash.hash(salt: salt, key: key))
    }

    public func shouldShadow(
        userKey: (some StringProtocol)?,
        random: inout some RandomNumberGenerator
    ) -> Bool {
        let u = userKey.map { unitValue(forKey: $0) } ?? StableHash.unitInterval(random.next())
        return u < rate
    }

    /// `String?` convenience so that a literal `nil` type-checks.
    public func shouldShadow(userKey: String?, random: inout some RandomNumberGenerator) -> Bool {
        let u = userKey.map { unitValue(forKey: $0) } ?? StableHash.unitInterval(random.next())
        return u < rate
    }
}
