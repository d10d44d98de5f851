import OverlayDecisions
import Testing

private func compare(_ a: String?, _ b: String?, _ la: Double = 100, _ lb: Double = 120) -> PairComparison {
    DriftScorer.compare(champion: a, challenger: b, championLatencyMs: la, challengerLatencyMs: lb)
}

@Suite("DriftScorer")
struct DriftScorerTests {
    @Test("identical outputs score exactly 1")
    func identical() {
        let c = compare("The quick brown fox.", "The quick brown fox.")
        #expect(c.tokenJaccard == 1)
        #expect(c.editSimilarity == 1)
        #expect(c.similarity == 1)
        #expect(c.lengthRatio == 1)
        #expect(c.latencyDeltaMs == 20)
        #expect(!c.errorMismatch)
        #expect(c.outcome == .bothSucceeded)
    }

    @Test("tokens: lower-cased Unicode letter/digit runs")
    func tokens() {
        #expect(DriftScorer.tokens("Hello, WORLD! hello 42x — Ünïcode café; 日本語 ok") ==
            ["hello", "world", "42x", "ünïcode", "café", "日本語", "ok"])
        #expect(DriftScorer.tokens("  ... !!! ").isEmpty)
    }

    @Test("Jaccard and edit similarity on known inputs")
    func knownValues() {
        #expect(DriftScorer.tokenJaccard("a b c", "b c d") == 0.5)
        #expect(DriftScorer.tokenJaccard("", "...") == 1)
        #expect(DriftScorer.tokenJaccard("a", "") == 0)
        #expect(DriftScorer.levenshtein(Array("kitten".unicodeScalars), Array("sitting".unicodeScalars)) == 3)
        #expect(DriftScorer.levenshtein(Array("flaw".unicodeScalars), Array("lawn".unicodeScalars)) == 2)
        #expect(DriftScorer.levenshtein(Array("".unicodeScalars), Array("abc".unicodeScalars)) == 3)
        #expect(DriftScorer.editSimilarity("kitten", "sitting") == 1 - 3.0 / 7.0)
        #expect(DriftScorer.editSimilarity("", "") == 1)
        #expect(DriftScorer.editSimilarity("é", "e") == 0)  // scalars differ
        let c = compare("aaaa bbbb", "cccc dddd")
        #expect(c.tokenJaccard == 0)
        #expect(c.editSimilarity == 1 - 8.0 / 9.0)
        #expect(c.similarity == (0 + (1 - 8.0 / 9.0)) / 2)
        #expect(compare("ab", "abcd").lengthRatio == 0.5)
        #expect(compare("", "").lengthRatio == 1)
        #expect(compare("", "").similarity == 1)
    }

    @Test("edit distance inputs are capped at 2,000 scalars each")
    func editCap() {
        let a = String(repeating: "a", count: 2_000) + String(repeating: "x", count: 3_000)
        let b = String(repeating: "a", count: 2_000) + String(repeating: "y", count: 3_000)
        #expect(DriftScorer.editSimilarity(a, b) == 1)  // differences lie beyond the cap
        let c = compare(a, b)
        #expect(c.championLength == 5_000)  // lengths are uncapped
        #expect(c.editSimilarity == 1)
        #expect(c.tokenJaccard == 0)  // "aaa…xxx" vs "aaa…yyy" are different tokens
    }

    @Test("exactly one side failed → similarity 0 and error mismatch")
    func mismatch() {
        for c in [compare(nil, "text", 100, 5_000), compare("text", nil, 100, 5_000)] {
            #expect(c.errorMismatch)
            #expect(c.similarity == 0)
            #expect(c.tokenJaccard == 0)
            #expect(c.editSimilarity == 0)
            #expect(c.lengthRatio == 0)
            #expect(c.latencyDeltaMs == 4_900)
        }
        #expect(compare("text", nil).championLength == 4)
        #expect(compare("text", nil).challengerLength == 0)
    }

    @Test("both failed → similarity 1, flagged bothFailed, not a mismatch")
    func bothFailed() {
        let c = compare(nil, nil)
        #expect(c.bothFailed)
        #expect(!c.errorMismatch)
        #expect(c.similarity == 1)
    }
}

@Suite("DriftWindow")
struct DriftWindowTests {
    static let unrelated = compare("aaaa bbbb", "cccc dddd")  // similarity 1/18

    @Test("identical outputs: mean and p10 exactly 1, never drifting over a full window and beyond")
    func identicalNoFlag() {
        var window = DriftWindow()
        for i in 0..<250 {
            window.record(compare("same words here", "same words here"), championModel: "m1", challengerModel: "m1")
            #expect(!window.drifting, "at \(i)")
        }
        #expect(window.count == 100)
        #expect(window.isFull)
        #expect(window.mean == 1)
        #expect(window.p10 == 1)
        #expect(window.totalRecorded == 250)
    }

    @Test("unrelated challenger from a cold start flips exactly at minSamples (20th pair)")
    func coldStartFlip() {
        var window = DriftWindow()
        #expect(window.mean == nil)
        #expect(window.p10 == nil)
        for i in 1...100 {
            window.record(Self.unrelated, championModel: "a", challengerModel: "b")
            #expect(window.drifting == (i >= 20), "after \(i) pairs")
        }
    }

    @Test("healthy full window then unrelated challenger flips exactly at pair 43")
    func warmFlip() {
        // mean after k unrelated = ((100 − k) + k/18) / 100 < 0.6  ⇔  k > 42.35
        var window = DriftWindow()
        for _ in 0..<100 { window.record(compare("x y", "x y"), championModel: "a", challengerModel: "a") }
        var flippedAt: Int?
        for k in 1...100 {
            window.record(Self.unrelated, championModel: "a", challengerModel: "b")
            if flippedAt == nil, window.drifting { flippedAt = k }
            if flippedAt != nil { #expect(window.drifting) }
        }
        #expect(flippedAt == 43)
        #expect(abs(window.mean! - 1.0 / 18.0) < 1e-9)
    }

    @Test("exact threshold boundary: mean == threshold is not drifting")
    func boundary() {
        var window = DriftWindow(capacity: 10, minSamples: 10, threshold: 0.6)
        for _ in 0..<6 { window.record(compare("a", "a"), championModel: "a", challengerModel: "a") }
        for _ in 0..<4 { window.record(compare("a", nil), championModel: "a", challengerModel: "b") }
        #expect(window.mean == 0.6)
        #expect(!window.drifting)
        window.record(compare("a", nil), championModel: "a", challengerModel: "b")
        #expect(window.mean == 0.5)
        #expect(window.drifting)
    }

    @Test("mixed traffic: 3 identical : 1 unrelated stays healthy; 1 : 1 drifts; p10 nearest-rank")
    func mixed() {
        var healthy = DriftWindow()
        var drifting = DriftWindow()
        for i in 0..<100 {
            healthy.record(i % 4 == 3 ? Self.unrelated : compare("z", "z"), championModel: "a", challengerModel: "b")
            drifting.record(i % 2 == 1 ? Self.unrelated : compare("z", "z"), championModel: "a", challengerModel: "b")
        }
        #expect(abs(healthy.mean! - (75 + 25.0 / 18) / 100) < 1e-9)
        #expect(!healthy.drifting)
        #expect(healthy.p10 == Self.unrelated.similarity)  // 25 % low values: rank 10 is low
        #expect(drifting.drifting)
        // Nearest rank: ceil(0.1 × n), 1-based.
        #expect(DriftWindow.nearestRank(percent: 10, of: [5, 1, 4, 2, 3]) == 1)
        #expect(DriftWindow.nearestRank(percent: 10, of: Array(1...20).map(Double.init)) == 2)
        #expect(DriftWindow.nearestRank(percent: 10, of: Array(1...21).map(Double.init)) == 3)
        #expect(DriftWindow.nearestRank(percent: 50, of: [1, 2, 3, 4]) == 2)
        #expect(DriftWindow.nearestRank(percent: 0, of: [7, 3]) == 3)
        #expect(DriftWindow.nearestRank(percent: 100, of: [7, 3]) == 7)
    }

    @Test("error mismatches count as similarity 0 and are tracked; both-failed pairs are excluded")
    func errors() {
        var window = DriftWindow(capacity: 5, minSamples: 2)
        #expect(window.record(compare(nil, nil), championModel: "a", challengerModel: "b") == nil)
        #expect(window.count == 0)
        #expect(window.bothFailedCount == 1)
        window.record(compare("ok", nil), championModel: "a", challengerModel: "b")
        window.record(compare(nil, "ok"), championModel: "a", challengerModel: "b")
        #expect(window.errorMismatchCount == 2)
        #expect(window.mean == 0)
        #expect(window.drifting)
        for _ in 0..<5 { window.record(compare("ok", "ok"), championModel: "a", challengerModel: "b") }
        #expect(window.errorMismatchCount == 0)  // evicted
        #expect(window.mean == 1)
        #expect(window.lastPairs(5).map(\.sequence) == [2, 3, 4, 5, 6])
    }

    @Test("ring buffer wraps: capacity bound, oldest evicted, lastPairs oldest-first with sequence numbers")
    func wraps() {
        var window = DriftWindow(capacity: 4, minSamples: 1, threshold: 0.5)
        for i in 0..<10 {
            let latency = Double(i)
            window.record(
                DriftScorer.compare(champion: "a", challenger: i.isMultiple(of: 2) ? "a" : nil,
                                    championLatencyMs: 10, challengerLatencyMs: latency),
                championModel: "champ", challengerModel: "chal-\(i)")
            #expect(window.count == min(i + 1, 4))
        }
        let last = window.lastPairs(10)
        #expect(last.map(\.sequence) == [6, 7, 8, 9])
        #expect(last.map(\.challengerModel) == ["chal-6", "chal-7", "chal-8", "chal-9"])
        #expect(last.map(\.challengerLatencyMs) == [6, 7, 8, 9])
        #expect(last.map(\.latencyDeltaMs) == [-4, -3, -2, -1])
        #expect(last.map(\.errorMismatch) == [false, true, false, true])
        #expect(window.lastPairs(2).map(\.sequence) == [8, 9])
        #expect(window.lastPairs(0).isEmpty)
        #expect(window.lastPairs(-3).isEmpty)
        #expect(window.mean == 0.5)
        #expect(!window.drifting)
        #expect(window.p10 == 0)
    }

    @Test("summaries carry scores, lengths, latencies and model names only")
    func summaryContents() {
        var window = DriftWindow()
        let s = window.record(compare("hello world", "hello there world", 50, 80), championModel: "gpt-a", challengerModel: "gpt-b")!
        #expect(s.sequence == 0)
        #expect(s.championModel == "gpt-a")
        #expect(s.challengerModel == "gpt-b")
        #expect(s.championLength == 11)
        #expect(s.challengerLength == 17)
        #expect(s.tokenJaccard == 2.0 / 3.0)
        #expect(s.latencyDeltaMs == 30)
        #expect(s.lengthRatio == 11.0 / 17.0)
    }

    @Test("parameters are clamped")
    func clamping() {
        let w = DriftWindow(capacity: 0, minSamples: 50, threshold: .nan)
        #expect(w.capacity == 1)
        #expect(w.minSamples == 1)
        #expect(w.threshold == DriftWindow.defaultThreshold)
        let d = DriftWindow()
        #expect(d.capacity == 100 && d.minSamples == 20 && d.threshold == 0.6)
        #expect(DriftWindow(capacity: 10, minSamples: 0).minSamples == 1)
    }
}
