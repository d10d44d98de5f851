import OverlayDecisions
import Testing

private let userCount = 100_000

private func keys() -> [String] {
    (0..<userCount).map { "user-\($0)" }
}

@Suite("StickySplitter")
struct StickySplitterTests {
    @Test(
        "10^5 distinct keys land within ±1 percentage point of each weight",
        arguments: [
            [80, 20], [50, 50], [34, 33, 33], [100, 0], [0, 100], [10, 20, 30, 40],
        ]
    )
    func distribution(weights: [Int]) {
        let splitter = StickySplitter(
            salt: "checkout",
            arms: weights.enumerated().map { (name: "arm\($0.offset)", weight: $0.element) }
        )
        var rng = SplitMix64(seed: 1)
        var counts = [Int](repeating: 0, count: weights.count)
        for key in keys() {
            counts[splitter.choose(userKey: key, random: &rng)] += 1
        }
        for (index, weight) in weights.enumerated() {
            let percent = Double(counts[index]) * 100 / Double(userCount)
            #expect(abs(percent - Double(weight)) <= 1.0, "arm \(index): \(percent)% vs \(weight)%")
            if weight == 0 { #expect(counts[index] == 0) }
            if weight == 100 { #expect(counts[index] == userCount) }
        }
        // A keyed choice never consumes randomness.
        #expect(rng == SplitMix64(seed: 1))
    }

    @Test("bucket boundaries are exactly weight × 100")
    func boundaries() {
        let s = StickySplitter(salt: "x", arms: [(name: "a", weight: 80), (name: "b", weight: 20)])
        #expect(s.upperBounds == [8_000, 10_000])
        #expect(s.arm(forBucket: 0) == 0)
        #expect(s.arm(forBucket: 7_999) == 0)
        #expect(s.arm(forBucket: 8_000) == 1)
        #expect(s.arm(forBucket: 9_999) == 1)
        let three = StickySplitter(salt: "x", arms: [(name: "a", weight: 10), (name: "b", weight: 0), (name: "c", weight: 90)])
        #expect(three.upperBounds == [1_000, 1_000, 10_000])
        #expect(three.arm(forBucket: 999) == 0)
        #expect(three.arm(forBucket: 1_000) == 2)
    }

    @Test("golden key → bucket values (independently computed) pin the hash")
    func golden() {
        #expect(StickySplitter.bucket(salt: "checkout", key: "alice") == 8_027)
        #expect(StickySplitter.bucket(salt: "checkout", key: "bob") == 4_613)
        #expect(StickySplitter.bucket(salt: "checkout", key: "") == 4_054)
        #expect(StickySplitter.bucket(salt: "search", key: "alice") == 2_050)
        #expect(StickySplitter.bucket(salt: "search", key: "user-42") == 8_643)
        #expect(StickySplitter.bucket(salt: "checkout", key: "ünïcödé-ユーザー") == 7_439)
        let s = StickySplitter(salt: "checkout", arms: [(name: "a", weight: 80), (name: "b", weight: 20)])
        var rng = SplitMix64(seed: 0)
        #expect(s.choose(userKey: "alice", random: &rng) == 1)  // bucket 8027 ≥ 8000
        #expect(s.choose(userKey: "bob", random: &rng) == 0)
    }

    @Test("sticky: same key → same arm across instances; Substring keys agree with String keys")
    func stickiness() {
        let arms = [(name: "a", weight: 34), (name: "b", weight: 33), (name: "c", weight: 33)]
        let first = StickySplitter(salt: "checkout", arms: arms)
        let second = StickySplitter(salt: "checkout", arms: arms)
        var r1 = SplitMix64(seed: 1)
        var r2 = SplitMix64(seed: 999)
        for i in 0..<5_000 {
            let key = "user-\(i)"
            let a = first.choose(userKey: key, random: &r1)
            #expect(a == first.choose(userKey: key, random: &r1))
            #expect(a == second.choose(userKey: key, random: &r2))
            let sub: Substring = ("<" + key + ">").dropFirst().dropLast()
            #expect(a == second.choose(userKey: sub, random: &r2))
        }
    }

    @Test("different salts assign users independently")
    func saltIndependence() {
        var same = 0
        for key in keys().prefix(20_000) {
            if StickySplitter.bucket(salt: "checkout", key: key) / 5_000
                == StickySplitter.bucket(salt: "search", key: key) / 5_000 { same += 1 }
        }
        // Independent halves agree ~50 % of the time.
        #expect(abs(Double(same) / 20_000 - 0.5) < 0.02)
    }

    @Test("80/20 → 50/50 moves exactly the buckets in [5000, 8000), all from arm 0 to arm 1")
    func minimalMovement() {
        let before = StickySplitter(salt: "checkout", arms: [(name: "champ", weight: 80), (name: "canary", weight: 20)])
        let after = StickySplitter(salt: "checkout", arms: [(name: "champ", weight: 50), (name: "canary", weight: 50)])
        var rng = SplitMix64(seed: 7)
        var moved = 0
        var movedBackwards = 0
        for key in keys() {
            let a = before.choose(userKey: key, random: &rng)
            let b = after.choose(userKey: key, random: &rng)
            let bucket = before.bucket(forKey: key)
            let shouldMove = (5_000..<8_000).contains(bucket)
            #expect((a != b) == shouldMove)
            if a != b {
                moved += 1
                if !(a == 0 && b == 1) { movedBackwards += 1 }
            }
        }
        let fraction = Double(moved) / Double(userCount)
        #expect(abs(fraction - 0.30) <= 0.01, "moved \(fraction)")
        #expect(movedBackwards == 0)
    }

    @Test("no user key: bucket drawn from the injected generator, deterministic per seed")
    func randomPath() {
        let s = StickySplitter(salt: "checkout", arms: [(name: "a", weight: 80), (name: "b", weight: 20)])
        var rng = SplitMix64(seed: 42)
        var counts = [0, 0]
        var sequence: [Int] = []
        for _ in 0..<userCount {
            let arm = s.choose(userKey: nil, random: &rng)
            counts[arm] += 1
            if sequence.count < 50 { sequence.append(arm) }
        }
        #expect(abs(Double(counts[1]) / Double(userCount) - 0.20) <= 0.01)
        var replay = SplitMix64(seed: 42)
        #expect(sequence == (0..<50).map { _ in s.choose(userKey: nil, random: &replay) })
        // Exactly one draw per un-keyed decision.
        var one = SplitMix64(seed: 42)
        _ = s.choose(userKey: nil, random: &one)
        var expected = SplitMix64(seed: 42)
        _ = expected.next()
        #expect(one == expected)
        // Generic (Substring?) nil also draws.
        let none: Substring? = nil
        var g = SplitMix64(seed: 42)
        _ = s.choose(userKey: none, random: &g)
        #expect(g == expected)
    }

    @Test("weights are normalised; zero, negative and empty lists never trap")
    func normalisation() {
        let quarter = StickySplitter(salt: "n", arms: [(name: "a", weight: 1), (name: "b", weight: 3)])
        #expect(quarter.upperBounds == [2_500, 10_000])
        var rng = SplitMix64(seed: 3)
        var b = 0
        for key in keys().prefix(40_000) where quarter.choose(userKey: key, random: &rng) == 1 { b += 1 }
        #expect(abs(Double(b) / 40_000 - 0.75) <= 0.01)

        let zero = StickySplitter(salt: "n", arms: [(name: "a", weight: 0), (name: "b", weight: 0)])
        #expect(zero.choose(userKey: "alice", random: &rng) == 0)
        #expect(zero.choose(userKey: nil, random: &rng) == 0)

        let negative = StickySplitter(salt: "n", arms: [(name: "a", weight: -5), (name: "b", weight: 0), (name: "c", weight: 7)])
        for key in keys().prefix(1_000) { #expect(negative.choose(userKey: key, random: &rng) == 2) }

        let huge = StickySplitter(salt: "n", arms: [(name: "a", weight: Int.max), (name: "b", weight: Int.max)])
        #expect(huge.upperBounds == [5_000, 10_000])

        let empty = StickySplitter(salt: "n", arms: [StickySplitter.Arm]())
        #expect(empty.isEmpty)
        #expect(empty.choose(userKey: "alice", random: &rng) == 0)
    }
}
