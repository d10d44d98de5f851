import CoreMetrics
import NIOCore
import NIOEmbedded
import NIOHTTP1
import OverlayRuntime
import Testing

@testable import OverlayProxy

/// ClientGuard asks for the next read while the one request read waits for its response, so the
/// socket stays in epoll (NIO's pipelining handler would hold the read and take it out, then put
/// it back after the response: two epoll_ctl calls per request). What a client pipelines is still
/// held, and neither a request body nor an upgrade is read past.
@Suite struct ClientGuardReadAheadTests {
    /// Counts the reads that reach the channel (it sits between the head and ClientGuard).
    final class ReadCounter: ChannelOutboundHandler {
        typealias OutboundIn = NIOAny
        var reads = 0
        func read(context: ChannelHandlerContext) {
            reads += 1
            context.read()
        }
    }

    /// Stands for NIO's pipelining handler while a response is owed: it holds every read.
    final class HoldsReads: ChannelOutboundHandler {
        typealias OutboundIn = NIOAny
        func read(context: ChannelHandlerContext) {}
    }

    final class Setup {
        let channel = EmbeddedChannel()
        let counter = ReadCounter()
        let clientGuard: ClientGuard

        init() throws {
            let options = ProxyOptions(upstream: try Upstream(parsing: "http://127.0.0.1:1"))
            let limits = ClientLimits(options: options, factory: PrometheusMetrics().factory)
            clientGuard = ClientGuard(limits: limits, now: .now())
            try channel.pipeline.syncOperations.addHandlers([counter, clientGuard, HoldsReads()])
        }

        func head(_ headers: [(String, String)] = [], method: HTTPMethod = .GET) throws {
            let head = HTTPRequestHead(
                version: .http1_1, method: method, uri: "/", headers: HTTPHeaders([("host", "app")] + headers))
            try channel.writeInbound(HTTPServerRequestPart.head(head))
        }

        func end() throws { try channel.writeInbound(HTTPServerRequestPart.end(nil)) }

        /// The end of a read batch: how many reads reached the channel because of it.
        func readComplete() -> Int {
            let before = counter.reads
            channel.pipeline.fireChannelReadComplete()
            return counter.reads - before
        }

        /// A response went out: the proxy's handler reports its head and end to the guard as it
        /// writes them (the guard is not on the outbound path).
        func responseEnds() throws {
            clientGuard.responseHead(status: 200)
            clientGuard.responseEnd()
        }
    }

    @Test func theSocketIsReadWhileARequestWaitsForItsResponse() throws {
        let setup = try Setup()
        try setup.head()
        try setup.end()
        #expect(setup.readComplete() == 1)
        // The next request on the keep-alive connection: the same again.
        try setup.responseEnds()
        try setup.head()
        try setup.end()
        #expect(setup.readComplete() == 1)
    }

    @Test func aPipelinedRequestIsHeldUntilTheFirstResponseEnds() throws {
        let setup = try Setup()
        try setup.head()
        try setup.end()
        try setup.head()  // pipelined behind the first
        try setup.end()
        #expect(setup.readComplete() == 0)
        try setup.responseEnds()
        #expect(setup.readComplete() == 1)  // only the second is outstanding now
    }

    @Test func aRequestBodyIsNotReadPast() throws {
        let setup = try Setup()
        try setup.head([("content-length", "10")], method: .POST)
        #expect(setup.readComplete() == 0)
        try setup.channel.writeInbound(HTTPServerRequestPart.body(setup.channel.allocator.buffer(string: "0123456789")))
        #expect(setup.readComplete() == 0)
        try setup.end()
        #expect(setup.readComplete() == 1)
    }

    @Test func anUpgradeRequestIsNotReadPast() throws {
        let setup = try Setup()
        try setup.head([("connection", "upgrade"), ("upgrade", "websocket")])
        try setup.end()
        #expect(setup.readComplete() == 0)
    }
}
