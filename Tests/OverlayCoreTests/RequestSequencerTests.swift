import OverlayCore
import XCTest

/// The proxy's HTTP/1.1 pipelining and shutdown rules (``RequestSequencer``), event by event.
final class RequestSequencerTests: XCTestCase {
    typealias Seq = RequestSequencer<String>

    /// Releases the queue as the handler does after a response's end: the events handed on, with
    /// their dispositions.
    private func release(_ s: inout Seq) -> [String] {
        var out: [String] = []
        while let (event, disposition) = s.nextQueued() {
            out.append(disposition == .deliverThenClose ? event + "+close" : event)
        }
        return out
    }

    func testOneRequestAtATimeHoldsReadsWhileItsResponseIsOwed() {
        var s = Seq()
        XCTAssertTrue(s.read())
        XCTAssertEqual(s.receive("h1", kind: .head), .deliver)
        XCTAssertTrue(s.read(), "the body is still being read")
        XCTAssertEqual(s.receive("b1", kind: .body), .deliver)
        XCTAssertEqual(s.receive("e1", kind: .end), .deliver)
        XCTAssertFalse(s.read(), "read to its end, its response owed: the read is held")
        XCTAssertFalse(s.takeHeldRead())
        XCTAssertFalse(s.responseEnded())
        XCTAssertEqual(release(&s), [])
        XCTAssertTrue(s.takeHeldRead(), "the held read goes on once the response ended")
        XCTAssertFalse(s.takeHeldRead(), "once")
        XCTAssertTrue(s.read())
        XCTAssertEqual(s.receive("h2", kind: .head), .deliver)
    }

    func testPipelinedRequestsWaitForTheResponseBeforeThem() {
        var s = Seq()
        XCTAssertEqual(s.receive("h1", kind: .head), .deliver)
        XCTAssertEqual(s.receive("e1", kind: .end), .deliver)
        XCTAssertEqual(s.receive("h2", kind: .head), .hold)
        XCTAssertEqual(s.receive("b2", kind: .body), .hold)
        XCTAssertEqual(s.receive("e2", kind: .end), .hold)
        XCTAssertEqual(s.receive("h3", kind: .head), .hold)
        XCTAssertEqual(s.receive("e3", kind: .end), .hold)
        XCTAssertEqual(s.queuedCount, 5)
        XCTAssertFalse(s.read())
        XCTAssertEqual(release(&s), [], "nothing before the first response ends")
        XCTAssertFalse(s.responseEnded())
        XCTAssertEqual(release(&s), ["h2", "b2", "e2"], "up to the next request whose response is owed")
        XCTAssertFalse(s.takeHeldRead(), "the second response is owed now")
        XCTAssertFalse(s.responseEnded())
        XCTAssertEqual(release(&s), ["h3", "e3"])
        XCTAssertFalse(s.responseEnded())
        XCTAssertEqual(release(&s), [])
        XCTAssertEqual(s.queuedCount, 0)
        XCTAssertTrue(s.takeHeldRead())
    }

    func testWhatArrivesWhileTheQueueIsNonEmptyJoinsItsEnd() {
        var s = Seq()
        _ = s.receive("h1", kind: .head)
        _ = s.receive("e1", kind: .end)
        XCTAssertEqual(s.receive("h2", kind: .head), .hold)
        _ = s.responseEnded()
        // The queue is released by the handler after the end's write: a part read before that
        // (same read) still goes behind what is queued.
        XCTAssertEqual(s.receive("e2", kind: .end), .hold)
        XCTAssertEqual(release(&s), ["h2", "e2"])
    }

    func testAMalformedRequestIsAnsweredInTurn() {
        var s = Seq()
        _ = s.receive("h1", kind: .head)
        _ = s.receive("e1", kind: .end)
        XCTAssertEqual(s.receive("h2", kind: .head), .hold)
        XCTAssertEqual(s.receive("e2", kind: .end), .hold)
        XCTAssertEqual(s.receive("bad", kind: .malformed), .hold)
        _ = s.responseEnded()
        XCTAssertEqual(release(&s), ["h2", "e2"])
        _ = s.responseEnded()
        XCTAssertEqual(release(&s), ["bad"])
        XCTAssertFalse(s.read(), "the 400 is the response owed now")
        XCTAssertFalse(s.responseEnded())
        XCTAssertTrue(s.read())
    }

    func testAMalformedRequestBetweenRequestsIsDeliveredAtOnce() {
        var s = Seq()
        XCTAssertEqual(s.receive("bad", kind: .malformed), .deliver)
        XCTAssertFalse(s.read(), "its 400 is owed")
        // Mid-request (the head delivered, a broken body): delivered at once too.
        var t = Seq()
        _ = t.receive("h1", kind: .head)
        XCTAssertEqual(t.receive("bad", kind: .malformed), .deliver)
    }

    func testAHalfCloseWaitsOnlyBehindQueuedEvents() {
        var s = Seq()
        _ = s.receive("h1", kind: .head)
        _ = s.receive("e1", kind: .end)
        XCTAssertEqual(s.receive("fin", kind: .halfClose), .deliver, "nothing queued: at once")
        var t = Seq()
        _ = t.receive("h1", kind: .head)
        _ = t.receive("e1", kind: .end)
        _ = t.receive("h2", kind: .head)
        _ = t.receive("e2", kind: .end)
        XCTAssertEqual(t.receive("fin", kind: .halfClose), .hold)
        _ = t.responseEnded()
        XCTAssertEqual(release(&t), ["h2", "e2"])
        _ = t.responseEnded()
        XCTAssertEqual(release(&t), ["fin"])
    }

    func testShutdownOfAnIdleConnectionClosesAtOnce() {
        var s = Seq()
        XCTAssertTrue(s.quiesce())
        XCTAssertEqual(s.receive("h1", kind: .head), .hold, "nothing is served after it")
        XCTAssertFalse(s.read())
        XCTAssertFalse(s.quiesce(), "once")
    }

    func testShutdownWhileAResponseIsOwedClosesAfterIt() {
        var s = Seq()
        _ = s.receive("h1", kind: .head)
        _ = s.receive("e1", kind: .end)
        XCTAssertEqual(s.receive("h2", kind: .head), .hold)
        XCTAssertFalse(s.closesAfterResponse)
        XCTAssertFalse(s.quiesce())
        XCTAssertTrue(s.closesAfterResponse, "the response in flight says Connection: close")
        XCTAssertEqual(s.queuedCount, 0, "what was pipelined behind it is dropped")
        XCTAssertEqual(s.receive("e2", kind: .end), .hold)
        XCTAssertFalse(s.read())
        XCTAssertTrue(s.responseEnded(), "closes once the response is written")
        XCTAssertEqual(release(&s), [])
        XCTAssertFalse(s.takeHeldRead())
    }

    func testShutdownWhileARequestIsReadLetsItFinish() {
        var s = Seq()
        _ = s.receive("h1", kind: .head)
        XCTAssertFalse(s.quiesce())
        XCTAssertTrue(s.closesAfterResponse)
        XCTAssertTrue(s.read(), "the request in flight is still read")
        XCTAssertEqual(s.receive("b1", kind: .body), .deliver)
        XCTAssertEqual(s.receive("e1", kind: .end), .deliver)
        XCTAssertEqual(s.receive("h2", kind: .head), .hold)
        XCTAssertFalse(s.read())
        XCTAssertTrue(s.responseEnded())
        XCTAssertEqual(release(&s), [])
    }

    func testShutdownAfterAnEarlyResponseClosesAtTheRequestsEnd() {
        var s = Seq()
        _ = s.receive("h1", kind: .head)
        XCTAssertFalse(s.responseEnded(), "the response ended before the request did")
        XCTAssertFalse(s.quiesce())
        XCTAssertEqual(s.receive("b1", kind: .body), .deliver)
        XCTAssertEqual(s.receive("e1", kind: .end), .deliverThenClose)
    }

    func testRemovalForATunnelHandsOnTheHeldReadAndAShutdownUnderWay() {
        var s = Seq()
        _ = s.receive("upgrade", kind: .head)
        _ = s.receive("end", kind: .end)
        XCTAssertFalse(s.read(), "held while the 101 is owed")
        XCTAssertEqual(s.removed().read, true, "the tunnel's first read")
        XCTAssertEqual(s.removed().read, false, "once")
        var t = Seq()
        _ = t.receive("upgrade", kind: .head)
        _ = t.receive("end", kind: .end)
        XCTAssertFalse(t.quiesce())
        let removed = t.removed()
        XCTAssertFalse(removed.read)
        XCTAssertTrue(removed.quiesce)
        var u = Seq()
        XCTAssertFalse(u.removed().quiesce)
    }

    func testAnEarlyResponseThenTheRequestsEndLeavesTheConnectionIdle() {
        var s = Seq()
        _ = s.receive("h1", kind: .head)
        XCTAssertFalse(s.responseEnded())
        XCTAssertTrue(s.read(), "the rest of the request is read")
        XCTAssertEqual(s.receive("e1", kind: .end), .deliver)
        XCTAssertTrue(s.read())
        XCTAssertEqual(s.receive("h2", kind: .head), .deliver)
    }
}
