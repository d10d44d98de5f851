import OverlayDecisions
import Testing

@Suite struct LogThrottleTests {
    typealias Throttle = LogThrottle<ContinuousClock.Instant>
    let start = ContinuousClock.now

    @Test func writesTheBurstThenSuppressesUntilTheIntervalEnds() {
        var throttle = Throttle(burst: 3, interval: .seconds(10))
        let verdicts = (0..<6).map { i in throttle.admit("upstream failed", at: start + .milliseconds(i)) }
        #expect(verdicts == [
            .write(suppressedBefore: 0), .write(suppressedBefore: 0), .write(suppressedBefore: 0),
            .suppress, .suppress, .suppress,
        ])
        #expect(throttle.admit("upstream failed", at: start + .seconds(9)) == .suppress)
    }

    @Test func theFirstLineOfTheNextIntervalSaysHowManyWereLeftOut() {
        var throttle = Throttle(burst: 2, interval: .seconds(10))
        for i in 0..<7 { _ = throttle.admit("m", at: start + .milliseconds(i)) }  // 2 written, 5 suppressed
        #expect(throttle.admit("m", at: start + .seconds(10)) == .write(suppressedBefore: 5))
        // The new interval counts from that line: one more is written, then suppression again.
        #expect(throttle.admit("m", at: start + .seconds(11)) == .write(suppressedBefore: 0))
        #expect(throttle.admit("m", at: start + .seconds(12)) == .suppress)
        #expect(throttle.admit("m", at: start + .seconds(25)) == .write(suppressedBefore: 1))
    }

    @Test func keysAreCountedApart() {
        var throttle = Throttle(burst: 1, interval: .seconds(10))
        #expect(throttle.admit("a", at: start) == .write(suppressedBefore: 0))
        #expect(throttle.admit("a", at: start) == .suppress)
        #expect(throttle.admit("b", at: start) == .write(suppressedBefore: 0))
    }

    @Test func memoryIsBoundedAndALineBeyondTheBoundIsStillWritten() {
        var throttle = Throttle(burst: 1, interval: .seconds(10), maxKeys: 2)
        _ = throttle.admit("a", at: start)
        _ = throttle.admit("b", at: start)
        #expect(throttle.admit("c", at: start) == .write(suppressedBefore: 0))
        #expect(throttle.admit("c", at: start) == .write(suppressedBefore: 0))  // untracked: never lost
        #expect(throttle.trackedKeys == 2)
        // Once the tracked windows have expired they make room.
        #expect(throttle.admit("c", at: start + .seconds(10)) == .write(suppressedBefore: 0))
        #expect(throttle.admit("c", at: start + .seconds(10)) == .suppress)
        #expect(throttle.trackedKeys == 1)
    }

    @Test func aBurstBelowOneIsOne() {
        var throttle = Throttle(burst: 0, interval: .seconds(1))
        #expect(throttle.admit("m", at: start) == .write(suppressedBefore: 0))
        #expect(throttle.admit("m", at: start) == .suppress)
    }
}
