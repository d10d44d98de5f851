import Testing
@testable import OverlayCore

@Suite("ClientDeadlines")
struct ClientDeadlinesTests {
    static let limits = ClientDeadlines.Limits(header: 60, body: 30, keepalive: 75)

    @Test func aNewConnectionMustSendItsHeadWithinTheHeaderTimeout() {
        let deadlines = ClientDeadlines(limits: Self.limits, now: 1000)
        #expect(deadlines.deadline == 1060)
        #expect(deadlines.expired(now: 1059) == nil)
        #expect(deadlines.expired(now: 1060) == .headerTimeout)
        #expect(deadlines.mayAnswer)
    }

    @Test func noClientDeadlineRunsWhileAResponseIsAwaited() {
        var deadlines = ClientDeadlines(limits: Self.limits, now: 0)
        deadlines.head(hasBody: false, now: 10)
        #expect(deadlines.phase == .awaitingResponse)
        #expect(deadlines.deadline == nil)
        #expect(deadlines.expired(now: 1_000_000) == nil)
    }

    @Test func theKeepaliveTimeoutStartsWhenTheLastResponseEnds() {
        var deadlines = ClientDeadlines(limits: Self.limits, now: 0)
        deadlines.head(hasBody: false, now: 10)
        deadlines.responseHead(status: 200)
        #expect(!deadlines.mayAnswer)
        deadlines.responseEnd(now: 20)
        #expect(deadlines.phase == .awaitingHead(first: false))
        #expect(deadlines.deadline == 95)
        #expect(deadlines.expired(now: 95) == .keepaliveTimeout)
        #expect(deadlines.mayAnswer)
    }

    @Test func aBodyDeadlineIsRenewedByEveryReadAndEndsWithTheRequest() {
        var deadlines = ClientDeadlines(limits: Self.limits, now: 0)
        deadlines.head(hasBody: true, now: 10)
        #expect(deadlines.deadline == 40)
        deadlines.bodyPart(now: 35)
        #expect(deadlines.deadline == 65)
        #expect(deadlines.expired(now: 64) == nil)
        #expect(deadlines.expired(now: 65) == .bodyTimeout)
        #expect(deadlines.mayAnswer)
        deadlines.requestEnd(now: 50)
        #expect(deadlines.deadline == nil)
    }

    @Test func aBodyThatStallsAfterTheResponseBeganCannotBeAnswered408() {
        var deadlines = ClientDeadlines(limits: Self.limits, now: 0)
        deadlines.head(hasBody: true, now: 0)
        deadlines.responseHead(status: 100)  // informational: not the response
        #expect(deadlines.mayAnswer)
        deadlines.responseHead(status: 413)
        #expect(!deadlines.mayAnswer)
        #expect(deadlines.expired(now: 30) == .bodyTimeout)
    }

    @Test func pipelinedRequestsKeepTheConnectionBusyUntilTheLastResponseEnds() {
        var deadlines = ClientDeadlines(limits: Self.limits, now: 0)
        deadlines.head(hasBody: false, now: 1)
        deadlines.head(hasBody: false, now: 1)
        #expect(deadlines.outstanding == 2)
        #expect(!deadlines.mayAnswer)
        deadlines.responseEnd(now: 5)
        #expect(deadlines.deadline == nil)
        deadlines.responseEnd(now: 6)
        #expect(deadlines.deadline == 81)
        // An extra end (never more responses than requests) changes nothing.
        deadlines.responseEnd(now: 7)
        #expect(deadlines.outstanding == 0)
        #expect(deadlines.deadline == 81)
    }
}

@Suite("ConnectionCounts")
struct ConnectionCountsTests {
    @Test func theTotalCapRefusesAnyClientOnceReached() {
        var counts = ConnectionCounts(maxTotal: 2, maxPerClient: 5)
        #expect(counts.admit("a") == nil)
        #expect(counts.admit("b") == nil)
        #expect(counts.admit("c") == .maxConnections)
        #expect(counts.total == 2)
        counts.release("a")
        #expect(counts.admit("c") == nil)
    }

    @Test func thePerClientCapRefusesOnlyThatClient() {
        var counts = ConnectionCounts(maxTotal: 10, maxPerClient: 2)
        #expect(counts.admit("a") == nil)
        #expect(counts.admit("a") == nil)
        #expect(counts.admit("a") == .perClient)
        #expect(counts.admit("b") == nil)
        #expect(counts.perClient == ["a": 2, "b": 1])
        counts.release("a")
        counts.release("a")
        #expect(counts.perClient == ["b": 1])
        #expect(counts.total == 1)
    }

    @Test func releasingAnUnknownClientChangesNothing() {
        var counts = ConnectionCounts(maxTotal: 10, maxPerClient: 2)
        #expect(counts.admit("a") == nil)
        counts.release("zzz")
        #expect(counts.total == 1)
        #expect(counts.perClient == ["a": 1])
    }
}
