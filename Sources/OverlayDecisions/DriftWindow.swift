/// A user-data-free record of one compared pair, as kept by ``DriftWindow``.
public struct DriftPairSummary: Sendable, Hashable {
    /// 0-based sequence number among pairs recorded in this window's lifetime.
    public let sequence: UInt64
    public let championModel: String
    public let challengerModel: String
    public let similarity: Double
    public let tokenJaccard: Double
    public let editSimilarity: Double
    public let lengthRatio: Double
    public let championLength: Int
    public let challengerLength: Int
    public let championLatencyMs: Double
    public let challengerLatencyMs: Double
    public let errorMismatch: Bool

    public var latencyDeltaMs: Double { challengerLatencyMs - championLatencyMs }
}

/// Fixed-capacity ring buffer of pair results for one overlay.
///
/// * ``record(_:championModel:challengerModel:)`` is O(1) (no reallocation
///   after the buffer fills). Pairs where *both* sides failed are excluded:
///   they are only counted in ``bothFailedCount``.
/// * ``mean`` is exact to ~1e-12: similarities are accumulated as 40-bit
///   fixed point integers, so there is no floating-point drift however many
///   pairs are recorded, and a window of 1.0s has mean exactly 1.0.
/// * ``p10`` uses the nearest-rank method: sort the window ascending and take
///   the element at 1-based rank `ceil(0.10 × count)`. O(N log N) on demand.
/// * ``drifting`` = `count >= minSamples && mean < threshold`.
///   Defaults: capacity 100, minSamples 20, threshold 0.6. `capacity` is
///   clamped to `1...1_048_576`, `minSamples` to `1...capacity`, a NaN
///   threshold becomes the default.
public struct DriftWindow: Sendable {
    public static let defaultCapacity = 100
    public static let defaultMinSamples = 20
    public static let defaultThreshold = 0.6
    public static let maxCapacity = 1 << 20

    static let fixedOne: Double = 0x1p40

    public let capacity: Int
    public let minSamples: Int
    public let threshold: Double

    private var entries: [DriftPairSummary] = []
    private var fixed: [UInt64] = []
    /// Slot that the next record overwrites once the buffer is full.
    private var head = 0
    private var fixedSum: UInt64 = 0

    /// Number of pairs recorded over the window's lifetime (excluding both-failed).
    public private(set) var totalRecorded: UInt64 = 0
    /// Number of both-failed pairs seen (excluded from statistics).
    public private(set) var bothFailedCount: UInt64 = 0
    /// Error mismatches currently inside the window.
    public private(set) var errorMismatchCount = 0

    public init(
        capacity: Int = DriftWindow.defaultCapacity,
        minSamples: Int = DriftWindow.defaultMinSamples,
        threshold: Double = DriftWindow.defaultThreshold
    ) {
        let cap = min(max(capacity, 1), Self.maxCapacity)
        self.capacity = cap
        self.minSamples = min(max(minSamples, 1), cap)
        self.threshold = threshold.isNaN ? Self.defaultThreshold : threshold
        entries.reserveCapacity(cap)
        fixed.reserveCapacity(cap)
    }

    /// Number of pairs currently in the window (≤ capacity).
    public var count: Int { entries.count }
    public var isFull: Bool { entries.count == capacity }

    /// Records a comparison. Returns the stored summary, or `nil` when the
    /// pair was excluded because both sides failed.
    @discardableResult
    public mutating func record(
        _ comparison: PairComparison,
        championModel: String,
        challengerModel: String
    ) -> DriftPairSummary? {
        if comparison.bothFailed {
            bothFailedCount += 1
            return nil
        }
        let summary = DriftPairSummary(
            sequence: totalRecorded,
            championModel: championModel,
            challengerModel: challengerModel,
            similarity: comparison.similarity,
            tokenJaccard: comparison.tokenJaccard,
            editSimilarity: comparison.editSimilarity,
            lengthRatio: comparison.lengthRatio,
            championLength: comparison.championLength,
            challengerLength: comparison.challengerLength,
            championLatencyMs: comparison.championLatencyMs,
            challengerLatencyMs: comparison.challengerLatencyMs,
            errorMismatch: comparison.errorMismatch
        )
        let clamped = comparison.similarity.isNaN ? 0 : min(max(comparison.similarity, 0), 1)
        let value = UInt64((clamped * Self.fixedOne).rounded())
        totalRecorded += 1
        if entries.count < capacity {
            entries.append(summary)
            fixed.append(value)
        } else {
            fixedSum -= fixed[head]
            if entries[head].errorMismatch { errorMismatchCount -= 1 }
            entries[head] = summary
            fixed[head] = value
            head = (head + 1) % capacity
        }
        fixedSum += value
        if summary.errorMismatch { errorMismatchCount += 1 }
        return summary
    }

    /// Mean similarity of the window, `nil` when empty.
    public var mean: Double? {
        guard !entries.isEmpty else { return nil }
        return Double(fixedSum) / Self.fixedOne / Double(entries.count)
    }

    /// 10th percentile (nearest rank) of the window's similarities, `nil` when empty.
    public var p10: Double? {
        Self.nearestRank(percent: 10, of: entries.map(\.similarity))
    }

    /// Nearest-rank percentile: ascending sort, 1-based rank `ceil(p/100 × n)`
    /// (at least 1). `nil` for an empty input; `percent` clamped to 0...100.
    public static func nearestRank(percent: Int, of values: [Double]) -> Double? {
        guard !values.isEmpty else { return nil }
        let sorted = values.sorted()
        let p = min(max(percent, 0), 100)
        let rank = max(1, (p * sorted.count + 99) / 100)
        return sorted[rank - 1]
    }

    /// `count >= minSamples && mean < threshold`.
    public var drifting: Bool {
        guard count >= minSamples, let mean else { return false }
        return mean < threshold
    }

    /// The most recent `n` summaries (clamped to 0...count), oldest first.
    public func lastPairs(_ n: Int) -> [DriftPairSummary] {
        let k = min(max(n, 0), entries.count)
        var result: [DriftPairSummary] = []
        result.reserveCapacity(k)
        // Chronological index i (0 = oldest) lives at (start + i) % count.
        let start = isFull ? head : 0
        for i in (entries.count - k)..<entries.count {
            result.append(entries[(start + i) % entries.count])
        }
        return result
    }
}
