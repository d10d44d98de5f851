import BackendCore
import Testing

@Suite struct CircuitBreakerStateTests {
    typealias Breaker = CircuitBreakerState<ContinuousClock.Instant>
    let t0 = ContinuousClock.now
    let config = CircuitBreakerConfiguration(failureThreshold: 3, coolDown: .milliseconds(200))

    @Test func opensAfterNConsecutiveFailures() {
        var b = Breaker(configuration: config)
        for i in 0..<2 {
            let p = b.acquire(now: t0)
            #expect(p == .allowed)
            b.record(.failure, permission: p, now: t0)
            #expect(b.phase == .closed(consecutiveFailures: i + 1))
        }
        let p = b.acquire(now: t0)
        b.record(.failure, permission: p, now: t0)
        #expect(b.phase == .open(since: t0))
        #expect(b.acquire(now: t0 + .milliseconds(50)) == .rejected(retryIn: .milliseconds(150)))
    }

    @Test func successResetsConsecutiveCountAndIgnoredDoesNotCount() {
        var b = Breaker(configuration: config)
        for outcome: Breaker.Outcome in [.failure, .failure, .success, .failure, .ignored, .ignored, .failure] {
            b.record(outcome, permission: b.acquire(now: t0), now: t0)
        }
        #expect(b.phase == .closed(consecutiveFailures: 2))
    }

    private func opened() -> Breaker {
        var b = Breaker(configuration: config)
        for _ in 0..<3 { b.record(.failure, permission: b.acquire(now: t0), now: t0) }
        return b
    }

    @Test func halfOpenAllowsExactlyOneProbeAndSuccessCloses() {
        var b = opened()
        #expect(!b.acquire(now: t0 + .milliseconds(199)).isAllowed)
        let probe = b.acquire(now: t0 + .milliseconds(200))
        #expect(probe == .probe)
        #expect(b.phase == .halfOpen)
        #expect(b.acquire(now: t0 + .milliseconds(201)) == .rejected(retryIn: .zero))
        b.record(.success, permission: probe, now: t0 + .milliseconds(250))
        #expect(b.phase == .closed(consecutiveFailures: 0))
        #expect(b.acquire(now: t0 + .milliseconds(251)) == .allowed)
    }

    @Test func probeFailureReopensWithNewCoolDown() {
        var b = opened()
        let t1 = t0 + .milliseconds(300)
        let probe = b.acquire(now: t1)
        b.record(.failure, permission: probe, now: t1)
        #expect(b.phase == .open(since: t1))
        #expect(!b.acquire(now: t1 + .milliseconds(199)).isAllowed)
        #expect(b.acquire(now: t1 + .milliseconds(200)) == .probe)
    }

    @Test func ignoredProbeFreesTheSlot() {
        var b = opened()
        let probe = b.acquire(now: t0 + .milliseconds(200))
        b.record(.ignored, permission: probe, now: t0 + .milliseconds(210))
        #expect(b.acquire(now: t0 + .milliseconds(211)) == .probe)
    }

    @Test func staleResultsDoNotDecideHalfOpen() {
        var b = Breaker(configuration: config)
        let early = b.acquire(now: t0)  // admitted while closed, finishes late
        for _ in 0..<3 { b.record(.failure, permission: b.acquire(now: t0), now: t0) }
        let probe = b.acquire(now: t0 + .milliseconds(200))
        b.record(.success, permission: early, now: t0 + .milliseconds(201))
        #expect(b.phase == .halfOpen)
        b.record(.failure, permission: probe, now: t0 + .milliseconds(202))
        #expect(b.phase == .open(since: t0 + .milliseconds(202)))
    }

    @Test func threadSafeWrapperUsesInjectedTime() {
        let clock = ManualTime()
        let breaker = CircuitBreaker(configuration: config, now: { clock.now })
        for _ in 0..<3 { breaker.record(.failure, permission: breaker.acquire()) }
        #expect(!breaker.acquire().isAllowed)
        clock.advance(.milliseconds(200))
        let p = breaker.acquire()
        #expect(p == .probe)
        breaker.record(.success, permission: p)
        #expect(breaker.phase == .closed(consecutiveFailures: 0))
    }
}

@Suite struct ConcurrencyLimiterTests {
    @Test func failsFastAtLimit() {
        var l = ConcurrencyLimiterState(limit: 2)
        let first = [l.tryAcquire(), l.tryAcquire(), l.tryAcquire()]
        #expect(first == [true, true, false])
        l.release()
        let again = l.tryAcquire()
        #expect(again)
        #expect(l.inFlight == 2)
    }

    @Test func concurrentAcquiresNeverExceedLimit() async {
        let limiter = ConcurrencyLimiter(limit: 3)
        let granted = await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<50 { group.addTask { limiter.tryAcquire() } }
            var n = 0
            for await ok in group where ok { n += 1 }
            return n
        }
        #expect(granted == 3)
        #expect(limiter.inFlight == 3)
    }
}

import Locking

final class ManualTime: Sendable {
    private let base = ContinuousClock.now
    private let offset = Locked<Duration>(.zero)
    var now: ContinuousClock.Instant { base + offset.withLock { $0 } }
    func advance(_ d: Duration) { offset.withLock { $0 += d } }
}
