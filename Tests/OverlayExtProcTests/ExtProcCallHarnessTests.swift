import ExtProcCore
import ExtProcProto
import Foundation
import GRPCTransport
import Logging
import NIOCore
import NIOEmbedded
import OverlayCore
import OverlayRuntime
import OverlayTesting
import SwiftProtobuf
import Testing

@testable import OverlayExtProc

/// The ext_proc call without sockets: the server's connection (libnghttp2 behind
/// `H2ServerConnection`, with `ExtProcH2Connection`'s streams) in an `EmbeddedChannel`, and an
/// nghttp2 client in memory as Envoy. The embedded loop's clock is the exchange's clock, so the
/// latency budget is driven by advancing it.
@Suite("ext_proc call (EmbeddedChannel harness)")
struct ExtProcCallHarnessTests {
    static let yaml = """
        apiVersion: orchestrator.io/v1
        kind: AIOverlay
        metadata: {name: shop}
        spec:
          hostApp: shop.example.com
          models: [{name: slow, weight: 100}]
          injection: {latencyBudget: 150ms}
        ---
        apiVersion: orchestrator.io/v1
        kind: AIModel
        metadata: {name: slow}
        spec:
          provider: mock
          mock: {latency: 10m}
        """

    /// One server connection in an embedded channel, the client, and the runtime pieces it serves from.
    final class Harness {
        let channel: EmbeddedChannel
        let loop: EmbeddedEventLoop
        let client = H2TestClient()
        let metrics = PrometheusMetrics()
        /// How many of the client's events were read by ``written()``.
        private var seen = 0

        init(engine: Bool) throws {
            let config = try ConfigLoader.load(text: ExtProcCallHarnessTests.yaml, source: "test")
            let logger = Logger(label: "harness") { _ in SwiftLogNoOpLogHandler() }
            let shared = ExtProcShared(
                services: ExchangeServices(
                    frontend: "extproc", configStore: ConfigStore(config, document: ExtProcCallHarnessTests.yaml),
                    engine: engine ? OverlayEngine(metricsFactory: metrics, logger: logger) : nil, metricsFactory: metrics,
                    logger: logger),
                health: HealthState(), metrics: ExtProcMetrics(factory: metrics.factory), maxMessageBytes: 1 << 20)
            loop = EmbeddedEventLoop()
            channel = EmbeddedChannel(loop: loop)
            try channel.pipeline.syncOperations.addHandler(ExtProcH2Connection.handler(shared: shared, settings: H2ServerSettings()))
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        }

        deinit {
            _ = try? channel.finish(acceptAlreadyClosed: true)
        }

        /// Opens a Process call; its stream id.
        func open() throws -> Int32 {
            let stream = client.request(path: ExtProcShared.processPath)
            try client.exchange(with: channel)
            return stream
        }

        /// Sends one ProcessingRequest as a gRPC message on `stream`.
        func send(_ request: ProcessingRequest, on stream: Int32, end: Bool = false) throws {
            let frame = try GRPCFrame.encode(request, allocator: channel.allocator)
            client.send(stream: stream, Array(frame.readableBytesView), end: end)
            try client.exchange(with: channel)
        }

        /// Envoy resets `stream` (RST_STREAM CANCEL).
        func reset(_ stream: Int32) throws {
            client.reset(stream)
            try client.exchange(with: channel)
        }

        /// Forgets the events read so far (after the client's list was emptied).
        func rewind() { seen = 0 }

        /// Every frame the client received since the last call (after moving what is pending).
        func written() throws -> [H2TestClient.Event] {
            try client.exchange(with: channel)
            defer { seen = client.events.count }
            return Array(client.events[seen...])
        }

        /// The ProcessingResponses among `events`.
        static func answers(_ events: [H2TestClient.Event]) throws -> [ProcessingResponse] {
            var out: [ProcessingResponse] = []
            for case .data(_, let bytes, _) in events {
                var buffer = ByteBuffer(bytes: bytes)
                while buffer.readableBytes >= 5 {
                    _ = buffer.readInteger(as: UInt8.self)
                    let length = Int(buffer.readInteger(as: UInt32.self)!)
                    out.append(try ProcessingResponse(serializedBytes: Array(buffer.readBytes(length: length)!)))
                }
            }
            return out
        }

        /// The `grpc-status` of the trailers among `events`, if any.
        static func status(_ events: [H2TestClient.Event]) -> String? {
            for case .headers(_, let fields, true) in events {
                return fields["grpc-status"]
            }
            return nil
        }

        func metricLine(_ prefix: String, _ parts: String...) -> Substring? {
            String(decoding: metrics.render(), as: UTF8.self).split(separator: "\n").first { line in
                line.hasPrefix(prefix) && parts.allSatisfy { line.contains($0) }
            }
        }
    }

    static func requestHeaders(authority: String, path: String = "/") -> ProcessingRequest {
        var request = ProcessingRequest()
        request.requestHeaders.endOfStream = true
        request.requestHeaders.headers.headers = [(":authority", authority), (":path", path), (":method", "GET")].map {
            var header = Envoy_Config_Core_V3_HeaderValue()
            header.key = $0.0
            header.rawValue = Data($0.1.utf8)
            return header
        }
        return request
    }

    static func responseHeaders(contentType: String) -> ProcessingRequest {
        var request = ProcessingRequest()
        request.responseHeaders.headers.headers = [(":status", "200"), ("content-type", contentType)].map {
            var header = Envoy_Config_Core_V3_HeaderValue()
            header.key = $0.0
            header.rawValue = Data($0.1.utf8)
            return header
        }
        return request
    }

    static func responseBody(_ text: String, end: Bool) -> ProcessingRequest {
        var request = ProcessingRequest()
        request.responseBody.body = Data(text.utf8)
        request.responseBody.endOfStream = end
        return request
    }

    @Test("a host without an overlay: one pass-through answer, then status 0 when Envoy ends the call")
    func passThrough() throws {
        let harness = try Harness(engine: false)
        let stream = try harness.open()
        try harness.send(Self.requestHeaders(authority: "elsewhere.example.org"), on: stream, end: true)
        let frames = try harness.written()
        let answers = try Harness.answers(frames)
        #expect(answers.count == 1)
        #expect(answers.first?.requestHeaders.response.status == .continue)
        #expect(answers.first?.modeOverride.responseHeaderMode == .skip, "every later phase is switched off")
        #expect(Harness.status(frames) == "0")
        #expect(harness.metricLine("overlayd_decisions_total{", #"decision="pass_through""#)?.hasSuffix(" 1") == true)
    }

    @Test("an overlaid page whose model is slow: the response headers wait for the budget on the loop's clock, then the token goes in")
    func budgetOnTheLoopClock() throws {
        let harness = try Harness(engine: true)
        let stream = try harness.open()
        try harness.send(Self.requestHeaders(authority: "shop.example.com"), on: stream)
        let first = try Harness.answers(try harness.written())
        #expect(first.count == 1)
        #expect(first.first?.requestHeaders.response.headerMutation.setHeaders.first?.header.key == "x-overlay-model")

        try harness.send(Self.responseHeaders(contentType: "text/html"), on: stream)
        try harness.send(Self.responseBody("<html><head></head><body>hi</body></html>", end: true), on: stream)
        #expect(try Harness.answers(try harness.written()).isEmpty, "held while the budget runs")

        harness.loop.advanceTime(by: .milliseconds(149))
        #expect(try Harness.answers(try harness.written()).isEmpty, "149 ms: still within the budget")
        harness.loop.advanceTime(by: .milliseconds(1))
        let resumed = try Harness.answers(try harness.written())
        #expect(resumed.count == 2, "the held headers, then the body queued behind them")
        #expect(resumed.first?.responseHeaders.response.headerMutation.removeHeaders == ["content-length"])
        let page = String(decoding: resumed.last?.responseBody.response.bodyMutation.body ?? Data(), as: UTF8.self)
        #expect(page.contains(#""status":"pending""#) && page.contains("data-overlayd"))
        #expect(
            harness.metricLine("overlayd_injections_total{", #"frontend="extproc""#, #"result="injected""#)?.hasSuffix(" 1") == true)
    }

    @Test("Envoy resets the stream while the headers wait: the wait is dropped and nothing more is written")
    func resetWhileWaiting() throws {
        let harness = try Harness(engine: true)
        let stream = try harness.open()
        try harness.send(Self.requestHeaders(authority: "shop.example.com"), on: stream)
        _ = try harness.written()
        try harness.send(Self.responseHeaders(contentType: "text/html"), on: stream)
        try harness.reset(stream)
        harness.loop.advanceTime(by: .seconds(1))
        #expect(try harness.written().isEmpty)
    }

    /// The C boundary end to end (libnghttp2 and libprotobuf-c; `scripts/sanitize asan` runs this
    /// under AddressSanitizer): many calls on one connection, of which some carry bytes that are
    /// not a ProcessingRequest and some are reset by the client after their request headers.
    @Test("30,000 calls on one connection: pass-through, undecodable and reset ones mixed; each ends as it should")
    func manyCallsAcrossTheCBoundary() throws {
        let harness = try Harness(engine: false)
        let request = try GRPCFrame.encode(Self.requestHeaders(authority: "elsewhere.example.org"), allocator: harness.channel.allocator)
        var garbage = ByteBuffer()
        garbage.writeInteger(UInt8(0))
        garbage.writeInteger(UInt32(3))
        garbage.writeBytes([0x12, 0xFF, 0xFF])  // request_headers, a length past the end
        var passed = 0, failedOpen = 0, reset = 0
        for call in 0..<30_000 {
            let stream = harness.client.request(path: ExtProcShared.processPath)
            // The stream exists once its HEADERS went out (libnghttp2 takes DATA or a reset only then).
            try harness.client.exchange(with: harness.channel)
            switch call % 3 {
            case 0: harness.client.send(stream: stream, Array(request.readableBytesView), end: true)
            case 1: harness.client.send(stream: stream, Array(garbage.readableBytesView), end: true)
            default: harness.client.reset(stream)
            }
            if call % 100 == 99 {
                let events = try harness.written()
                for case .headers(_, let fields, true) in events {
                    if fields["grpc-status"] == "0", fields["grpc-message"] == nil { passed += 1 } else if fields["grpc-status"] == "0" { failedOpen += 1 }
                }
                reset += 100 - events.filter { if case .headers(_, _, true) = $0 { true } else { false } }.count
                harness.client.events.removeAll()
                harness.rewind()
            }
        }
        #expect(passed == 10_000, "every pass-through call answered and ended with status 0")
        #expect(failedOpen == 10_000, "every undecodable call ended failing open (status 0 with a message)")
        #expect(reset == 10_000, "no answer for a call the client reset")
        #expect(harness.metricLine("overlayd_extproc_errors_total{", #"kind="undecodable""#)?.hasSuffix(" 10000") == true)
        #expect(harness.metricLine("overlayd_decisions_total{", #"decision="pass_through""#)?.hasSuffix(" 10000") == true)
    }
}

