import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import OverlayCore
import OverlayRuntime
import Testing

@testable import OverlayProxy

/// The proxy's client-side handler without sockets: `ProxyHandler` in an `EmbeddedChannel`, fed
/// the parts NIO's HTTP/1 decoder would hand it, answering with the parts the encoder would get.
/// Only exchanges answered locally (own endpoints, questions) run here: a forwarded one needs an
/// upstream connection (ProxyTests covers those over sockets).
@Suite("ProxyHandler (EmbeddedChannel harness)")
struct ProxyHandlerHarnessTests {
    final class Harness {
        let channel: EmbeddedChannel
        let metrics = PrometheusMetrics()

        init() throws {
            let config = try ConfigLoader.load(text: testConfigText, source: "test")
            let logger = Logger(label: "harness") { _ in SwiftLogNoOpLogHandler() }
            let shared = ProxyShared(
                options: ProxyOptions(upstream: try Upstream(parsing: "http://127.0.0.1:1")),
                upstream: try Upstream(parsing: "http://127.0.0.1:1"),
                services: ExchangeServices(
                    frontend: "proxy", configStore: ConfigStore(config, document: testConfigText), engine: nil,
                    metricsFactory: metrics, logger: logger),
                metrics: ProxyMetrics(factory: metrics.factory), pools: [])
            channel = EmbeddedChannel(handler: ProxyHandler(shared: shared, codecHandlers: [], decoder: nil))
        }

        func request(_ method: HTTPMethod, _ uri: String, body: String? = nil) throws -> (HTTPResponseHead, String) {
            var headers = HTTPHeaders([("host", "127.0.0.1:8080")])
            if let body { headers.add(name: "content-length", value: String(body.utf8.count)) }
            try channel.writeInbound(HTTPServerRequestPart.head(HTTPRequestHead(version: .http1_1, method: method, uri: uri, headers: headers)))
            if let body {
                try channel.writeInbound(HTTPServerRequestPart.body(channel.allocator.buffer(string: body)))
            }
            try channel.writeInbound(HTTPServerRequestPart.end(nil))
            var head: HTTPResponseHead?
            var text = ""
            while let part = try channel.readOutbound(as: HTTPServerResponsePart.self) {
                switch part {
                case .head(let received): head = received
                case .body(.byteBuffer(let buffer)): text += String(buffer: buffer)
                case .body: break
                case .end: return (try #require(head), text)
                }
            }
            Issue.record("no complete response")
            return (try #require(head), text)
        }
    }

    @Test("an own endpoint on an overlaid host is answered by the handler itself, and counted")
    func ownEndpoint() throws {
        let harness = try Harness()
        let (head, body) = try harness.request(.GET, "/__overlay/healthz")
        #expect(head.status == .ok && body == "ok\n")
        #expect(head.headers["content-length"] == ["3"])
        let lines = String(decoding: harness.metrics.render(), as: UTF8.self).split(separator: "\n")
        let counted = lines.filter {
            $0.hasPrefix("overlayd_decisions_total{") && $0.contains(#"frontend="proxy""#) && $0.contains(#"decision="own_endpoint""#)
        }
        #expect(counted.count == 1 && counted.first?.hasSuffix(" 1") == true, "\(counted)")
    }

    @Test("a question is read by the core and answered with a pending token; a malformed one gets 400 with the reason")
    func questions() throws {
        let harness = try Harness()
        let (asked, answer) = try harness.request(.POST, "/__overlay/api/ask", body: #"{"question": "what is this?"}"#)
        #expect(asked.status == .ok)
        #expect(answer.contains(#""status":"pending""#) && answer.contains(#""overlay":"proxy-test""#))
        let (bad, reason) = try harness.request(.POST, "/__overlay/api/ask", body: "{nope")
        #expect(bad.status == .badRequest && reason.contains(#""status":"failed""#))
        let (empty, why) = try harness.request(.POST, "/__overlay/api/ask")
        #expect(empty.status == .badRequest && why.contains("needs a JSON body"))
    }

    @Test("the wrong method on an own endpoint is 405 with Allow")
    func methodNotAllowed() throws {
        let harness = try Harness()
        let (head, _) = try harness.request(.DELETE, "/__overlay/overlay.js")
        #expect(head.status == .methodNotAllowed && head.headers["allow"] == ["GET, HEAD"])
    }
}
