import BackendCore
import Testing

@Suite struct RetryAfterTests {
    let now: Double = 784_111_777  // Sun, 06 Nov 1994 08:49:37 GMT

    @Test func deltaSeconds() {
        #expect(RetryAfter.parse("1", nowEpochSeconds: now) == .seconds(1))
        #expect(RetryAfter.parse(" 120 ", nowEpochSeconds: now) == .seconds(120))
        #expect(RetryAfter.parse("0", nowEpochSeconds: now) == .zero)
    }

    @Test(arguments: [
        "Sun, 06 Nov 1994 08:49:47 GMT", "Sunday, 06-Nov-94 08:49:47 GMT", "Sun Nov  6 08:49:47 1994",
    ])
    func httpDateFormats(value: String) {
        #expect(RetryAfter.parse(value, nowEpochSeconds: now) == .seconds(10))
    }

    @Test func knownEpoch() {
        #expect(RetryAfter.parseHTTPDate("Sun, 06 Nov 1994 08:49:37 GMT") == 784_111_777)
        #expect(RetryAfter.parseHTTPDate("Thu, 01 Jan 1970 00:00:00 GMT") == 0)
        #expect(RetryAfter.parseHTTPDate("Tue, 29 Feb 2028 23:59:59 GMT") == 1_835_481_599)
    }

    @Test func pastDateIsZeroAndFractionRoundsUp() {
        #expect(RetryAfter.parse("Sun, 06 Nov 1994 08:49:00 GMT", nowEpochSeconds: now) == .zero)
        #expect(RetryAfter.parse("Sun, 06 Nov 1994 08:49:38 GMT", nowEpochSeconds: now + 0.25) == .milliseconds(750))
    }

    @Test(arguments: ["", "-1", "1.5", "soon", "Sun, 06 Nov 1994 25:49:37 GMT", "Sun, 06 Foo 1994 08:49:37 GMT", "99999999999"])
    func invalid(value: String) {
        #expect(RetryAfter.parse(value, nowEpochSeconds: now) == nil)
    }
}

@Suite struct RetryPolicyTests {
    let policy = RetryPolicy.default

    @Test func retryableFailures() {
        #expect(policy.decide(after: .connect, attempt: 1, remaining: .seconds(10), budget: nil, jitter: 0) == .retry(after: .milliseconds(50)))
        for status in [429, 502, 503, 504] {
            #expect(policy.decide(after: .http(status: status, retryAfter: nil), attempt: 1, remaining: .seconds(10), budget: nil, jitter: 0.999_999).isRetry)
        }
    }

    @Test func notRetryable() {
        for failure: AttemptFailure in [.timeout, .malformed, .other, .http(status: 500, retryAfter: nil), .http(status: 400, retryAfter: nil), .http(status: 401, retryAfter: .seconds(1))] {
            #expect(policy.decide(after: failure, attempt: 1, remaining: .seconds(10), budget: nil, jitter: 0) == .giveUp(.notRetryable))
        }
    }

    @Test func atMostTwoRetries() {
        #expect(policy.decide(after: .connect, attempt: 2, remaining: .seconds(10), budget: nil, jitter: 0).isRetry)
        #expect(policy.decide(after: .connect, attempt: 3, remaining: .seconds(10), budget: nil, jitter: 0) == .giveUp(.attemptsExhausted))
    }

    @Test func honoursRetryAfterUpToCapAndDeadline() {
        let ra = AttemptFailure.http(status: 429, retryAfter: .seconds(1))
        #expect(policy.decide(after: ra, attempt: 1, remaining: .seconds(10), budget: nil, jitter: 0.7) == .retry(after: .seconds(1)))
        #expect(policy.decide(after: .http(status: 503, retryAfter: .seconds(6)), attempt: 1, remaining: .seconds(60), budget: nil, jitter: 0) == .giveUp(.retryAfterTooLong))
        #expect(policy.decide(after: ra, attempt: 1, remaining: .milliseconds(999), budget: nil, jitter: 0) == .giveUp(.deadline))
        #expect(policy.decide(after: .connect, attempt: 1, remaining: .milliseconds(10), budget: nil, jitter: 0) == .giveUp(.deadline))
    }

    @Test func exponentialBackoffIsCapped() {
        #expect(policy.backoff(retry: 1, jitter: 0) == .milliseconds(50))
        #expect(policy.backoff(retry: 2, jitter: 0) == .milliseconds(100))
        #expect(policy.backoff(retry: 3, jitter: 0) == .milliseconds(200))
        #expect(policy.backoff(retry: 30, jitter: 0) == .seconds(1))
        #expect(policy.backoff(retry: 30, jitter: 1) == .seconds(2))
    }

    @Test func budgetIsChargedOnlyForRetries() {
        let budget = RetryBudget(ratio: 0.2, maxTokens: 2)
        #expect(policy.decide(after: .timeout, attempt: 1, remaining: .seconds(10), budget: budget, jitter: 0) == .giveUp(.notRetryable))
        #expect(budget.tokens == 2)
        #expect(policy.decide(after: .connect, attempt: 1, remaining: .seconds(10), budget: budget, jitter: 0).isRetry)
        #expect(policy.decide(after: .connect, attempt: 1, remaining: .seconds(10), budget: budget, jitter: 0).isRetry)
        #expect(policy.decide(after: .connect, attempt: 1, remaining: .seconds(10), budget: budget, jitter: 0) == .giveUp(.budgetExhausted))
    }
}

@Suite struct RetryBudgetTests {
    @Test func outageCannotAmplifyTraffic() {
        var budget = RetryBudgetState(ratio: 0.2, maxTokens: 10)
        var retries = 0
        // 1000 calls during a total outage, each wanting 2 retries.
        for _ in 0..<1000 {
            budget.depositForCall()
            for _ in 0..<2 where budget.tryWithdraw() { retries += 1 }
        }
        // Initial 10 tokens + 20 % of calls (floating-point accumulation may lose the last token).
        #expect(retries >= 209 && retries <= 210)
    }

    @Test func depositsAreCapped() {
        var budget = RetryBudgetState(ratio: 0.5, maxTokens: 3)
        for _ in 0..<100 { budget.depositForCall() }
        #expect(budget.tokens == 3)
        var granted: [Bool] = []
        for _ in 0..<4 { granted.append(budget.tryWithdraw()) }
        #expect(granted == [true, true, true, false])
        budget.depositForCall()
        let afterOneDeposit = budget.tryWithdraw()
        #expect(!afterOneDeposit)
        budget.depositForCall()
        let afterTwoDeposits = budget.tryWithdraw()
        #expect(afterTwoDeposits)
    }
}

extension RetryPolicy.Decision {
    var isRetry: Bool {
        if case .retry = self { return true }
        return false
    }
}
