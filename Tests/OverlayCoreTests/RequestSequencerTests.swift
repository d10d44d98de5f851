import OverlayCore
import Testing

/// The proxy's HTTP/1.1 pipelining and shutdown rules (``RequestSequencer``), event by event.
@Suite struct RequestSequencerTests {
    /// The sequencer under test, driven as the proxy's handler drives it (a reference, so that
    /// its mutating calls can sit inside `#expect`).
    final class Seq {
        var state = RequestSequencer<String>()
        func receive(_ event: String, kind: RequestSequencer<String>.Kind) -> RequestSequencer<String>.Disposition {
            state.receive(event, kind: kind)
        }
        func responseEnded() -> Bool { state.responseEnded() }
        func read() -> Bool { state.read() }
        func takeHeldRead() -> Bool { state.takeHeldRead() }
        func quiesce() -> Bool { state.quiesce() }
        func removed() -> (read: Bool, quiesce: Bool) { state.removed() }
        var queuedCount: Int { state.queuedCount }
        var closesAfterResponse: Bool { state.closesAfterResponse }

        /// Releases the queue as the handler does after a response's end: the events handed on,
        /// with `+close` for a delivery that closes the connection.
        func release() -> [String] {
            var out: [String] = []
            while let (event, disposition) = state.nextQueued() {
                out.append(disposition == .deliverThenClose ? event + "+close" : event)
            }
            return out
        }
    }

    @Test func oneRequestAtATimeHoldsReadsWhileItsResponseIsOwed() {
        let s = Seq()
        #expect(s.read())
        #expect(s.receive("h1", kind: .head) == .deliver)
        #expect(s.read(), "the body is still being read")
        #expect(s.receive("b1", kind: .body) == .deliver)
        #expect(s.receive("e1", kind: .end) == .deliver)
        #expect(!s.read(), "read to its end, its response owed: the read is held")
        #expect(!s.takeHeldRead())
        #expect(!s.responseEnded())
        #expect(s.release() == [])
        #expect(s.takeHeldRead(), "the held read goes on once the response ended")
        #expect(!s.takeHeldRead(), "once")
        #expect(s.read())
        #expect(s.receive("h2", kind: .head) == .deliver)
    }

    @Test func pipelinedRequestsWaitForTheResponseBeforeThem() {
        let s = Seq()
        #expect(s.receive("h1", kind: .head) == .deliver)
        #expect(s.receive("e1", kind: .end) == .deliver)
        #expect(s.receive("h2", kind: .head) == .hold)
        #expect(s.receive("b2", kind: .body) == .hold)
        #expect(s.receive("e2", kind: .end) == .hold)
        #expect(s.receive("h3", kind: .head) == .hold)
        #expect(s.receive("e3", kind: .end) == .hold)
        #expect(s.queuedCount == 5)
        #expect(!s.read())
        #expect(s.release() == [], "nothing before the first response ends")
        #expect(!s.responseEnded())
        #expect(s.release() == ["h2", "b2", "e2"], "up to the next request whose response is owed")
        #expect(!s.takeHeldRead(), "the second response is owed now")
        #expect(!s.responseEnded())
        #expect(s.release() == ["h3", "e3"])
        #expect(!s.responseEnded())
        #expect(s.release() == [])
        #expect(s.queuedCount == 0)
        #expect(s.takeHeldRead())
    }

    @Test func whatArrivesWhileTheQueueIsNonEmptyJoinsItsEnd() {
        let s = Seq()
        _ = s.receive("h1", kind: .head)
        _ = s.receive("e1", kind: .end)
        #expect(s.receive("h2", kind: .head) == .hold)
        _ = s.responseEnded()
        // The queue is released by the handler after the end's write: a part read before that
        // (same read) still goes behind what is queued.
        #expect(s.receive("e2", kind: .end) == .hold)
        #expect(s.release() == ["h2", "e2"])
    }

    @Test func aMalformedRequestIsAnsweredInTurn() {
        let s = Seq()
        _ = s.receive("h1", kind: .head)
        _ = s.receive("e1", kind: .end)
        #expect(s.receive("h2", kind: .head) == .hold)
        #expect(s.receive("e2", kind: .end) == .hold)
        #expect(s.receive("bad", kind: .malformed) == .hold)
        _ = s.responseEnded()
        #expect(s.release() == ["h2", "e2"])
        _ = s.responseEnded()
        #expect(s.release() == ["bad"])
        #expect(!s.read(), "the 400 is the response owed now")
        #expect(!s.responseEnded())
        #expect(s.read())
    }

    @Test func aMalformedRequestBetweenRequestsIsDeliveredAtOnce() {
        let s = Seq()
        #expect(s.receive("bad", kind: .malformed) == .deliver)
        #expect(!s.read(), "its 400 is owed")
        // Mid-request (the head delivered, a broken body): delivered at once too.
        let t = Seq()
        _ = t.receive("h1", kind: .head)
        #expect(t.receive("bad", kind: .malformed) == .deliver)
    }

    @Test func aHalfCloseWaitsOnlyBehindQueuedEvents() {
        let s = Seq()
        _ = s.receive("h1", kind: .head)
        _ = s.receive("e1", kind: .end)
        #expect(s.receive("fin", kind: .halfClose) == .deliver, "nothing queued: at once")
        let t = Seq()
        _ = t.receive("h1", kind: .head)
        _ = t.receive("e1", kind: .end)
        _ = t.receive("h2", kind: .head)
        _ = t.receive("e2", kind: .end)
        #expect(t.receive("fin", kind: .halfClose) == .hold)
        _ = t.responseEnded()
        #expect(t.release() == ["h2", "e2"])
        _ = t.responseEnded()
        #expect(t.release() == ["fin"])
    }

    @Test func shutdownOfAnIdleConnectionClosesAtOnce() {
        let s = Seq()
        #expect(s.quiesce())
        #expect(s.receive("h1", kind: .head) == .hold, "nothing is served after it")
        #expect(!s.read())
        #expect(!s.quiesce(), "once")
    }

    @Test func shutdownWhileAResponseIsOwedClosesAfterIt() {
        let s = Seq()
        _ = s.receive("h1", kind: .head)
        _ = s.receive("e1", kind: .end)
        #expect(s.receive("h2", kind: .head) == .hold)
        #expect(!s.closesAfterResponse)
        #expect(!s.quiesce())
        #expect(s.closesAfterResponse, "the response in flight says Connection: close")
        #expect(s.queuedCount == 0, "what was pipelined behind it is dropped")
        #expect(s.receive("e2", kind: .end) == .hold)
        #expect(!s.read())
        #expect(s.responseEnded(), "closes once the response is written")
        #expect(s.release() == [])
        #expect(!s.takeHeldRead())
    }

    @Test func shutdownWhileARequestIsReadLetsItFinish() {
        let s = Seq()
        _ = s.receive("h1", kind: .head)
        #expect(!s.quiesce())
        #expect(s.closesAfterResponse)
        #expect(s.read(), "the request in flight is still read")
        #expect(s.receive("b1", kind: .body) == .deliver)
        #expect(s.receive("e1", kind: .end) == .deliver)
        #expect(s.receive("h2", kind: .head) == .hold)
        #expect(!s.read())
        #expect(s.responseEnded())
        #expect(s.release() == [])
    }

    @Test func shutdownAfterAnEarlyResponseClosesAtTheRequestsEnd() {
        let s = Seq()
        _ = s.receive("h1", kind: .head)
        #expect(!s.responseEnded(), "the response ended before the request did")
        #expect(!s.quiesce())
        #expect(s.receive("b1", kind: .body) == .deliver)
        #expect(s.receive("e1", kind: .end) == .deliverThenClose)
    }

    @Test func removalForATunnelHandsOnTheHeldReadAndAShutdownUnderWay() {
        let s = Seq()
        _ = s.receive("upgrade", kind: .head)
        _ = s.receive("end", kind: .end)
        #expect(!s.read(), "held while the 101 is owed")
        #expect(s.removed().read == true, "the tunnel's first read")
        #expect(s.removed().read == false, "once")
        let t = Seq()
        _ = t.receive("upgrade", kind: .head)
        _ = t.receive("end", kind: .end)
        #expect(!t.quiesce())
        let removed = t.removed()
        #expect(!removed.read)
        #expect(removed.quiesce)
        let u = Seq()
        #expect(!u.removed().quiesce)
    }

    @Test func anEarlyResponseThenTheRequestsEndLeavesTheConnectionIdle() {
        let s = Seq()
        _ = s.receive("h1", kind: .head)
        #expect(!s.responseEnded())
        #expect(s.read(), "the rest of the request is read")
        #expect(s.receive("e1", kind: .end) == .deliver)
        #expect(s.read())
        #expect(s.receive("h2", kind: .head) == .deliver)
    }
}
