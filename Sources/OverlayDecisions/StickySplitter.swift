/// Weighted canary choice that is sticky per user.
///
/// ## Algorithm
/// * With a user key: `bucket = floor(StableHash.hash(salt: salt, key: key) * 10000 / 2^64)`,
///   i.e. a bucket in `0..<10000` derived from a hash that is stable across
///   processes, platforms and Swift versions (see ``StableHash``).
/// * Without a user key: exactly one value is drawn from the injected random
///   generator and scaled the same way.
/// * Each arm owns the half-open bucket range `[lower_i, upper_i)` with
///   `upper_i = floor(cumulativeWeight_i * 10000 / totalWeight)`. When weights
///   sum to 100 this is exactly `weight * 100` buckets per arm, laid out in
///   arm order, so changing weights only moves users whose bucket lies
///   between the old and new boundaries (minimal movement).
///
/// ## Weight handling (never traps)
/// * Negative weights are treated as 0; weights are clamped to `UInt32.max`.
/// * Weights need not sum to 100: they are normalised by their total.
/// * All-zero weights: every request goes to arm 0.
/// * An empty arm list returns index 0 (there is no valid index; callers are
///   expected to validate configuration elsewhere and check ``isEmpty``).
public struct StickySplitter: Sendable, Hashable {
    /// Number of buckets (resolution 0.01 %).
    public static let bucketCount = 10_000

    public struct Arm: Sendable, Hashable {
        public let name: String
        /// The weight as given (not clamped).
        public let weight: Int

        public init(name: String, weight: Int) {
            self.name = name
            self.weight = weight
        }
    }

    /// The salt (normally the overlay name).
    public let salt: String
    public let arms: [Arm]
    /// Exclusive upper bucket bound of each arm (non-decreasing; last is
    /// `bucketCount` unless all weights are zero, in which case all are 0).
    public let upperBounds: [Int]

    public init(salt: String, arms: [(name: String, weight: Int)]) {
        self.init(salt: salt, arms: arms.map { Arm(name: $0.name, weight: $0.weight) })
    }

    public init(salt: String, arms: [Arm]) {
        self.salt = salt
        self.arms = arms
        let weights = arms.map { UInt64(min(max($0.weight, 0), Int(UInt32.max))) }
        let total = weights.reduce(0, +)  // <= count * 2^32: cannot overflow in practice
        var bounds: [Int] = []
        bounds.reserveCapacity(weights.count)
        var cumulative: UInt64 = 0
        for weight in weights {
            cumulative += weight
            if total == 0 {
                bounds.append(0)
            } else {
                let product = cumulative.multipliedFullWidth(by: UInt64(Self.bucketCount))
                bounds.append(Int(total.dividingFullWidth(product).quotient))
            }
        }
        self.upperBounds = bounds
    }

    public var isEmpty: Bool { arms.isEmpty }

    /// The sticky bucket (`0..<10000`) of a user key under this splitter's salt.
    public func bucket(forKey key: some StringProtocol) -> Int {
        Self.bucket(salt: salt, key: key)
    }

    /// The sticky bucket (`0..<10000`) of `key` under `salt`.
    public static func bucket(salt: some StringProtocol, key: some StringProtocol) -> Int {
        StableHash.scale(StableHash.hash(salt: salt, key: key), into: bucketCount)
    }

    /// Index of the arm whose bucket range contains `bucket` (clamped into range).
    /// Zero-weight arms are never returned unless every weight is zero (→ 0).
    public func arm(forBucket bucket: Int) -> Int {
        let b = min(max(bucket, 0), Self.bucketCount - 1)
        for (index, upper) in upperBounds.enumerated() where b < upper {
            return index
        }
        return 0
    }

    /// Chooses an arm index. With a user key the choice is sticky and
    /// deterministic; with `nil` exactly one value is drawn from `random`.
    public func choose(
        userKey: (some StringProtocol)?,
        random: inout some RandomNumberGenerator
    ) -> Int {
        if let userKey {
            return arm(forBucket: bucket(forKey: userKey))
        }
        return arm(forBucket: StableHash.scale(random.next(), into: Self.bucketCount))
    }

    /// `String?` convenience so that a literal `nil` type-checks.
    public func choose(userKey: String?, random: inout some RandomNumberGenerator) -> Int {
        if let userKey {
            return arm(forBucket: bucket(forKey: userKey))
        }
        return arm(forBucket: StableHash.scale(random.next(), into: Self.bucketCount))
    }
}
