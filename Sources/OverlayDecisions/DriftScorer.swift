/// Result of comparing one champion/challenger pair.
public struct PairComparison: Sendable, Hashable {
    public enum Outcome: Sendable, Hashable {
        /// Both models answered; scores are computed from the texts.
        case bothSucceeded
        /// Exactly one side failed (nil = error/timeout): all similarities 0.
        case errorMismatch
        /// Both failed: similarities are reported as 1 (they "agree"), but
        /// ``DriftWindow`` EXCLUDES such pairs from its statistics because
        /// they say nothing about output drift (see ``DriftWindow/record(_:championModel:challengerModel:)``).
        case bothFailed
    }

    public let outcome: Outcome
    /// `|A ∩ B| / |A ∪ B|` over token sets; 1 when both token sets are empty.
    public let tokenJaccard: Double
    /// `1 − levenshtein(a, b) / max(|a|, |b|)` over Unicode scalars of the
    /// inputs capped to ``DriftScorer/maxEditScalars`` each; 1 when both empty.
    public let editSimilarity: Double
    /// `(tokenJaccard + editSimilarity) / 2`.
    public let similarity: Double
    /// `min(len) / max(len)` in Unicode scalars (uncapped); 1 when both are
    /// empty or both failed, 0 on an error mismatch.
    public let lengthRatio: Double
    /// Output lengths in Unicode scalars (0 for a failed side).
    public let championLength: Int
    public let challengerLength: Int
    public let championLatencyMs: Double
    public let challengerLatencyMs: Double

    /// `challengerLatencyMs − championLatencyMs` (positive = challenger slower).
    public var latencyDeltaMs: Double { challengerLatencyMs - championLatencyMs }
    /// Exactly one side failed.
    public var errorMismatch: Bool { outcome == .errorMismatch }
    public var bothFailed: Bool { outcome == .bothFailed }
}

/// Pure text-similarity scoring for shadow pairs.
public enum DriftScorer {
    /// Each input to the edit distance is truncated to this many Unicode
    /// scalars, bounding the DP to 2,000 × 2,000 cells.
    public static let maxEditScalars = 2_000
    /// Tokenisation only looks at this many leading Characters of each input.
    public static let maxTokenCharacters = 16_384

    /// Compares a champion and challenger output (`nil` = error / timeout).
    public static func compare(
        champion: String?,
        challenger: String?,
        championLatencyMs: Double,
        challengerLatencyMs: Double
    ) -> PairComparison {
        switch (champion, challenger) {
        case let (a?, b?):
            let jaccard = tokenJaccard(a, b)
            let edit = editSimilarity(a, b)
            let la = a.unicodeScalars.count
            let lb = b.unicodeScalars.count
            return PairComparison(
                outcome: .bothSucceeded,
                tokenJaccard: jaccard,
                editSimilarity: edit,
                similarity: (jaccard + edit) / 2,
                lengthRatio: lengthRatio(la, lb),
                championLength: la,
                challengerLength: lb,
                championLatencyMs: championLatencyMs,
                challengerLatencyMs: challengerLatencyMs
            )
        case (nil, nil):
            return PairComparison(
                outcome: .bothFailed,
                tokenJaccard: 1, editSimilarity: 1, similarity: 1, lengthRatio: 1,
                championLength: 0, challengerLength: 0,
                championLatencyMs: championLatencyMs,
                challengerLatencyMs: challengerLatencyMs
            )
        default:
            return PairComparison(
                outcome: .errorMismatch,
                tokenJaccard: 0, editSimilarity: 0, similarity: 0, lengthRatio: 0,
                championLength: champion?.unicodeScalars.count ?? 0,
                challengerLength: challenger?.unicodeScalars.count ?? 0,
                championLatencyMs: championLatencyMs,
                challengerLatencyMs: challengerLatencyMs
            )
        }
    }

    /// Lower-cased maximal runs of letters/digits (`Character.isLetter ||
    /// Character.isNumber`), over the first ``maxTokenCharacters`` Characters.
    public static func tokens(_ text: some StringProtocol) -> Set<String> {
        var result = Set<String>()
        var current = ""
        for character in text.prefix(maxTokenCharacters) {
            if character.isLetter || character.isNumber {
                current += character.lowercased()
            } else if !current.isEmpty {
                result.insert(current)
                current = ""
            }
        }
        if !current.isEmpty { result.insert(current) }
        return result
    }

    /// Token-set Jaccard similarity; 1 when both token sets are empty.
    public static func tokenJaccard(_ a: some StringProtocol, _ b: some StringProtocol) -> Double {
        let ta = tokens(a)
        let tb = tokens(b)
        if ta.isEmpty && tb.isEmpty { return 1 }
        let intersection = ta.intersection(tb).count
        let union = ta.count + tb.count - intersection
        return Double(intersection) / Double(union)
    }

    /// `1 − levenshtein / maxLen` over the capped Unicode scalars; 1 when both empty.
    public static func editSimilarity(_ a: some StringProtocol, _ b: some StringProtocol) -> Double {
        let sa = Array(a.unicodeScalars.prefix(maxEditScalars))
        let sb = Array(b.unicodeScalars.prefix(maxEditScalars))
        let longest = max(sa.count, sb.count)
        if longest == 0 { return 1 }
        return 1 - Double(levenshtein(sa, sb)) / Double(longest)
    }

    /// Classic Levenshtein distance (unit insert/delete/substitute) with
    /// common prefix/suffix stripping and a two-row DP: O(n·m) time, O(m) space.
    public static func levenshtein<T: Equatable>(_ a: [T], _ b: [T]) -> Int {
        var lo = 0
        var hiA = a.count
        var hiB = b.count
        while lo < hiA, lo < hiB, a[lo] == b[lo] { lo += 1 }
        while hiA > lo, hiB > lo, a[hiA - 1] == b[hiB - 1] {
            hiA -= 1
            hiB -= 1
        }
        let x = a[lo..<hiA]
        let y = b[lo..<hiB]
        if x.isEmpty { return y.count }
        if y.isEmpty { return x.count }
        var previous = Array(0...y.count)
        var current = [Int](repeating: 0, count: y.count + 1)
        for (i, ca) in x.enumerated() {
            current[0] = i + 1
            for (j, cb) in y.enumerated() {
                let substitution = previous[j] + (ca == cb ? 0 : 1)
                current[j + 1] = min(substitution, previous[j + 1] + 1, current[j] + 1)
            }
            swap(&previous, &current)
        }
        return previous[y.count]
    }

    /// `min / max`; 1 when both are 0.
    public static func lengthRatio(_ a: Int, _ b: Int) -> Double {
        let longest = max(a, b)
        if longest == 0 { return 1 }
        return Double(min(a, b)) / Double(longest)
    }
}
