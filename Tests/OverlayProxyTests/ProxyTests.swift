import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import NIOHTTP1
import NIOPosix
import OverlayControlPlane
import OverlayCore
@testable import OverlayProxy
@testable import OverlayDemo
import OverlayExtProc
import OverlayRuntime
import ServiceLifecycle
import Testing

/// Signals the upstream routes give the tests.
final class Hooks: Sendable {
    let releaseSlow = Signal()
    let endlessStarted = Signal()
    let endlessCancelled = Signal()
}

let bigChunk = ByteBuffer(repeating: 0x61, count: 64 * 1024)
let bigChunks = 4096  // 256 MiB

/// The test upstream's routes.
func upstreamRoutes(_ hooks: Hooks) -> (Router<BasicRequestContext>, Seen) -> Void {
    { router, seen in
        router.get("/broken-gzip") { request, _ in
            record(request, seen)
            // Says gzip, is not: the page cannot be decoded, so it must pass through untouched.
            return Response(
                status: .ok, headers: [.contentType: "text/html", .contentEncoding: "gzip"],
                body: .init(byteBuffer: ByteBuffer(string: "<html><head></head><body>not gzip</body></html>")))
        }
        router.get("/fixed") { request, _ in
            record(request, seen)
            return Response(status: .ok, headers: [.contentType: "text/plain"], body: .init(byteBuffer: ByteBuffer(string: "hello")))
        }
        router.head("/fixed") { request, _ in
            record(request, seen)
            return Response(status: .ok, headers: [.contentType: "text/plain", .contentLength: "5"])
        }
        router.get("/chunked") { request, _ in
            record(request, seen)
            return Response(status: .ok, headers: [.contentType: "text/plain"], body: .init { writer in
                for part in ["one,", "two,", "three"] { try await writer.write(ByteBuffer(string: part)) }
                try await writer.finish(nil)
            })
        }
        router.post("/echo") { request, _ in
            var received: [UInt8] = []
            for try await chunk in request.body { received += chunk.readableBytesView }
            record(request, seen, bodyBytes: received.count)
            let body = received
            return Response(
                status: .ok,
                headers: [
                    HTTPField.Name("x-saw-length")!: request.headers[.contentLength] ?? "none",
                    HTTPField.Name("x-saw-te")!: request.headers[.transferEncoding] ?? "none",
                ],
                body: .init { writer in
                    try await writer.write(ByteBuffer(bytes: body))
                    try await writer.finish(nil)
                })
        }
        router.post("/reject") { request, _ in
            record(request, seen)
            return Response(status: .contentTooLarge, headers: [.connection: "close"])
        }
        router.get("/etag") { request, _ in
            record(request, seen)
            if request.headers[.ifNoneMatch] == "\"v1\"" {
                return Response(status: .notModified, headers: [.eTag: "\"v1\""])
            }
            return Response(status: .ok, headers: [.eTag: "\"v1\""], body: .init(byteBuffer: ByteBuffer(string: "fresh")))
        }
        router.get("/headers") { request, _ in
            record(request, seen)
            return Response(
                status: .ok,
                headers: [
                    .connection: "x-resp-hop", HTTPField.Name("x-resp-hop")!: "1", HTTPField.Name("keep-alive")!: "timeout=5",
                    .proxyAuthenticate: "Basic", HTTPField.Name("x-end-to-end")!: "yes", .contentType: "text/plain",
                ],
                body: .init(byteBuffer: ByteBuffer(string: "ok")))
        }
        router.get("/page") { request, _ in
            record(request, seen)
            return Response(
                status: .ok, headers: [.contentType: "text/html; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(string: "<html><head><title>t</title></head><body>hi</body></html>")))
        }
        router.get("/gz") { request, _ in
            record(request, seen)
            return Response(
                status: .ok, headers: [.contentType: "text/html", .contentEncoding: "gzip"],
                body: .init(byteBuffer: ByteBuffer(bytes: CompressCodec().encode(Array(plainPage.utf8), encoding: "gzip")!)))
        }
        router.get("/br") { request, _ in
            record(request, seen)
            return Response(
                status: .ok, headers: [.contentType: "text/html", .contentEncoding: "br"],
                body: .init(byteBuffer: ByteBuffer(bytes: brotliPage)))
        }
        router.get("/api/data") { request, _ in
            record(request, seen)
            return Response(
                status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: "{\"a\":1}")))
        }
        router.get("/big") { request, _ in
            record(request, seen)
            return Response(
                status: .ok, headers: [.contentType: "application/octet-stream"],
                body: .init(contentLength: bigChunks * bigChunk.readableBytes) { writer in
                    for _ in 0..<bigChunks { try await writer.write(bigChunk) }
                    try await writer.finish(nil)
                })
        }
        router.get("/slow") { request, _ in
            record(request, seen)
            await hooks.releaseSlow.wait()
            return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: "late")))
        }
        router.get("/endless") { request, _ in
            record(request, seen)
            return Response(status: .ok, headers: [.contentType: "text/plain"], body: .init { writer in
                hooks.endlessStarted.fire()
                do {
                    while true { try await writer.write(ByteBuffer(repeating: 0x62, count: 16 * 1024)) }
                } catch {
                    hooks.endlessCancelled.fire()
                    throw error
                }
            })
        }
    }
}

/// Bytes labelled `br` (an encoding overlayd does not decode): passed through untouched.
let brotliPage: [UInt8] = [0x8B, 0x02, 0x80] + Array("<html><head></head><body>not really</body></html>".utf8)
let plainPage = "<html><head><title>g</title></head><body>zipped</body></html>"

@Suite(.serialized, .timeLimit(.minutes(2)))
struct ReverseProxyTests {
    @Test func keepAliveServesTwoRequestsOnOneConnection() async throws {
        let hooks = Hooks()
        try await withProxy(routes: upstreamRoutes(hooks)) { harness in
            try await withRawConnection(port: harness.proxyPort) { connection in
                for _ in 0..<2 {
                    try await connection.send("GET /fixed HTTP/1.1\r\nHost: app.example\r\n\r\n")
                    let response = try await connection.response()
                    #expect(response.status == 200)
                    #expect(response.text == "hello")
                    #expect(response.header("content-length") == "5")
                }
            }
            #expect(harness.seen.all.count == 2)
        }
    }

    /// HTTP/1.1 pipelining (RFC 9112 §9.3.2): requests sent back to back on one connection, before
    /// any answer, are answered in order, whatever each one is (overlaid page, own endpoint, a
    /// forwarded body, pass-through).
    @Test func pipelinedRequestsAreAnsweredInOrder() async throws {
        let hooks = Hooks()
        try await withProxy(routes: upstreamRoutes(hooks)) { harness in
            try await withRawConnection(port: harness.proxyPort) { connection in
                let overlaid = "127.0.0.1:\(harness.proxyPort)"
                try await connection.send(
                    "GET /page HTTP/1.1\r\nHost: \(overlaid)\r\n\r\n"
                        + "GET /__overlay/overlay.js HTTP/1.1\r\nHost: \(overlaid)\r\n\r\n"
                        + "POST /echo HTTP/1.1\r\nHost: app.example\r\nContent-Length: 5\r\n\r\nabcde"
                        + "GET /fixed HTTP/1.1\r\nHost: app.example\r\n\r\n"
                        + "GET /page HTTP/1.1\r\nHost: app.example\r\n\r\n")
                let page = try await connection.response()
                #expect(page.status == 200 && page.text.contains("id=\"overlayd-result\"") && page.text.hasSuffix("<body>hi</body></html>"))
                let script = try await connection.response()
                #expect(script.status == 200 && script.body == OverlayScript.bytes)
                let echo = try await connection.response()
                #expect(echo.status == 200 && echo.text == "abcde")
                let fixed = try await connection.response()
                #expect(fixed.status == 200 && fixed.text == "hello")
                let plain = try await connection.response()
                #expect(plain.status == 200 && plain.text == "<html><head><title>t</title></head><body>hi</body></html>")
            }
            #expect(harness.seen.all.map(\.path) == ["/page", "/echo", "/fixed", "/page"])
        }
    }

    @Test func contentLengthBodiesBothWays() async throws {
        let hooks = Hooks()
        try await withProxy(routes: upstreamRoutes(hooks)) { harness in
            try await withRawConnection(port: harness.proxyPort) { connection in
                try await connection.send("POST /echo HTTP/1.1\r\nHost: app.example\r\nContent-Length: 11\r\n\r\nhello world")
                let echoed = try await connection.response()
                #expect(echoed.status == 200)
                #expect(echoed.text == "hello world")
                #expect(echoed.header("x-saw-length") == "11")
                #expect(echoed.header("x-saw-te") == "none")
                try await connection.send("GET /fixed HTTP/1.1\r\nHost: app.example\r\n\r\n")
                let fixed = try await connection.response()
                #expect(fixed.header("content-length") == "5")
                #expect(fixed.header("transfer-encoding") == nil)
                #expect(fixed.text == "hello")
            }
            #expect(harness.seen.all.first?.bodyBytes == 11)
        }
    }

    @Test func chunkedBodiesBothWays() async throws {
        let hooks = Hooks()
        try await withProxy(routes: upstreamRoutes(hooks)) { harness in
            try await withRawConnection(port: harness.proxyPort) { connection in
                try await connection.send(
                    "POST /echo HTTP/1.1\r\nHost: app.example\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
                let echoed = try await connection.response()
                #expect(echoed.status == 200)
                #expect(echoed.text == "hello world")
                #expect(echoed.header("x-saw-te") == "chunked")
                #expect(echoed.header("x-saw-length") == "none")
                #expect(echoed.header("transfer-encoding") == "chunked")
                try await connection.send("GET /chunked HTTP/1.1\r\nHost: app.example\r\n\r\n")
                let chunked = try await connection.response()
                #expect(chunked.header("transfer-encoding") == "chunked")
                #expect(chunked.header("content-length") == nil)
                #expect(chunked.text == "one,two,three")
            }
        }
    }

    /// 256 MiB through the proxy: it never holds more than one upstream chunk (``Handoff``), so
    /// the process's resident size grows by far less than the body (a buffering proxy grows by at
    /// least 256 MiB; with the margin for other suites running in this process, 64 MiB).
    @Test func largeStreamedDownloadKeepsMemoryBounded() async throws {
        let hooks = Hooks()
        try await withProxy(routes: upstreamRoutes(hooks)) { harness in
            try await withClient { client in
                let before = try #require(residentBytes(), "the resident size must be readable to measure it")
                var peak = before
                var request = HTTPClientRequest(url: "http://127.0.0.1:\(harness.proxyPort)/big")
                request.headers.add(name: "host", value: "app.example")
                let response = try await client.execute(request, timeout: .seconds(120))
                #expect(response.status == .ok)
                #expect(response.headers["content-length"].first == String(bigChunks * bigChunk.readableBytes))
                var total = 0
                var chunks = 0
                for try await chunk in response.body {
                    total += chunk.readableBytes
                    chunks += 1
                    if chunks % 256 == 0 { peak = max(peak, try #require(residentBytes())) }
                }
                peak = max(peak, try #require(residentBytes()))
                #expect(total == bigChunks * bigChunk.readableBytes)
                let growth = peak - before
                #expect(growth < 64 * 1024 * 1024, "resident size grew by \(growth / 1024 / 1024) MiB")
            }
        }
    }

    /// The upstream answers before reading the request body: the client gets that answer, then
    /// the proxy closes the connection (the rest of the body is never read; no second reader of
    /// the client connection is left behind), and it keeps serving other connections.
    @Test func earlyUpstreamAnswerWhileTheRequestBodyIsStillComing() async throws {
        let hooks = Hooks()
        try await withProxy(routes: upstreamRoutes(hooks)) { harness in
            try await withRawConnection(port: harness.proxyPort) { connection in
                try await connection.send("POST /reject HTTP/1.1\r\nHost: app.example\r\nContent-Length: 200000\r\n\r\n")
                try await connection.send(String(repeating: "x", count: 1000))
                let response = try await connection.response()
                #expect(response.status == 413)
                #expect(try await connection.atEnd())
            }
            try await withRawConnection(port: harness.proxyPort) { connection in
                try await connection.send("GET /fixed HTTP/1.1\r\nHost: app.example\r\n\r\n")
                let next = try await connection.response()
                #expect(next.status == 200)
                #expect(next.text == "hello")
            }
        }
    }

    @Test func headHasNoBodyAndKeepsTheConnectionUsable() async throws {
        let hooks = Hooks()
        try await withProxy(routes: upstreamRoutes(hooks)) { harness in
            try await withRawConnection(port: harness.proxyPort) { connection in
                try await connection.send("HEAD /fixed HTTP/1.1\r\nHost: app.example\r\n\r\n")
                let head = try await connection.response(bodiless: true)
                #expect(head.status == 200)
                #expect(head.header("content-length") == "5")
                try await connection.send("GET /fixed HTTP/1.1\r\nHost: app.example\r\n\r\n")
                let get = try await connection.response()
                #expect(get.status == 200)
                #expect(get.text == "hello")
            }
            #expect(harness.seen.all.map(\.method) == ["HEAD", "GET"])
        }
    }

    @Test func notModifiedHasNoBody() async throws {
        let hooks = Hooks()
        try await withProxy(routes: upstreamRoutes(hooks)) { harness in
            try await withRawConnection(port: harness.proxyPort) { connection in
                try await connection.send("GET /etag HTTP/1.1\r\nHost: 127.0.0.1\r\nIf-None-Match: \"v1\"\r\n\r\n")
                let notModified = try await connection.response()
                #expect(notModified.status == 304)
                #expect(notModified.header("etag") == "\"v1\"")
                #expect(notModified.body.isEmpty)
                try await connection.send("GET /etag HTTP/1.1\r\nHost: app.example\r\n\r\n")
                let fresh = try await connection.response()
                #expect(fresh.status == 200)
                #expect(fresh.text == "fresh")
            }
        }
    }

    @Test func upstreamDownIs502() async throws {
        // A port that was just free: bind it, note it, close it.
        let listener = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).get()
        let port = listener.localAddress?.port ?? 1
        try await listener.close()
        try await withProxy(upstreamURL: "http://127.0.0.1:\(port)") { harness in
            try await withRawConnection(port: harness.proxyPort) { connection in
                try await connection.send("GET /anything HTTP/1.1\r\nHost: app.example\r\n\r\n")
                let response = try await connection.response()
                #expect(response.status == 502)
                #expect(response.text.contains("upstream"))
            }
            #expect(String(decoding: harness.metrics.render(), as: UTF8.self).contains("overlayd_proxy_upstream_errors_total{kind=\"connect\"} 1"))
        }
    }

    @Test func slowUpstreamIs504() async throws {
        let hooks = Hooks()
        try await withProxy(upstreamTimeout: .milliseconds(300), routes: upstreamRoutes(hooks)) { harness in
            try await withRawConnection(port: harness.proxyPort) { connection in
                try await connection.send("GET /slow HTTP/1.1\r\nHost: app.example\r\n\r\n")
                let response = try await connection.response()
                #expect(response.status == 504)
            }
            hooks.releaseSlow.fire()
        }
    }

    /// One head timer per connection, armed for the first request: when it fires during a later
    /// request on the same connection, that request still gets its whole upstream timeout (its
    /// 504 comes no sooner than its own deadline; the bound holds however loaded the machine is).
    @Test func aLaterRequestOnTheConnectionGetsItsWholeUpstreamTimeout() async throws {
        let hooks = Hooks()
        try await withProxy(upstreamTimeout: .milliseconds(400), routes: upstreamRoutes(hooks)) { harness in
            try await withRawConnection(port: harness.proxyPort) { connection in
                try await connection.send("GET /fixed HTTP/1.1\r\nHost: app.example\r\n\r\n")
                #expect(try await connection.response().status == 200)
                // The scenario, not a synchronization: the second request starts well after the first.
                try await Task.sleep(for: .milliseconds(250))
                let sent = ContinuousClock.now
                try await connection.send("GET /slow HTTP/1.1\r\nHost: app.example\r\n\r\n")
                let response = try await connection.response()
                let waited = ContinuousClock.now - sent
                #expect(response.status == 504)
                #expect(waited >= .milliseconds(400), "timed out after \(waited), before its own deadline")
            }
            hooks.releaseSlow.fire()
        }
    }

    @Test func clientAbortCancelsTheUpstreamRequest() async throws {
        let hooks = Hooks()
        try await withProxy(routes: upstreamRoutes(hooks)) { harness in
            try await withRawConnection(port: harness.proxyPort) { connection in
                try await connection.send("GET /endless HTTP/1.1\r\nHost: app.example\r\n\r\n")
                await hooks.endlessStarted.wait()
                // Go away in the middle of the body (returning closes the connection).
            }
            // The upstream's next write fails once the proxy dropped its connection.
            await hooks.endlessCancelled.wait()
            let metrics = String(decoding: harness.metrics.render(), as: UTF8.self)
            #expect(metrics.contains("overlayd_proxy_client_aborts_total 1"))
        }
    }

    /// The upstream writes nothing after its first chunk, so only the proxy noticing the client's
    /// close (not a failed write) can end the upstream request.
    @Test(arguments: [true, false])
    func clientAbortCancelsAnIdleUpstreamAtOnce(afterHead: Bool) async throws {
        let sawRequest = Signal()
        let sawClose = Signal()
        try await withSilentUpstream(answerHead: afterHead, sawRequest: sawRequest, sawClose: sawClose) { upstreamPort in
            try await withProxy(upstreamURL: "http://127.0.0.1:\(upstreamPort)") { harness in
                try await withRawConnection(port: harness.proxyPort) { connection in
                    try await connection.send("GET /idle HTTP/1.1\r\nHost: app.example\r\n\r\n")
                    await sawRequest.wait()
                    if afterHead {
                        // The head and the first chunk arrived: the proxy is waiting for more.
                        let statusLine = try await connection.line()
                        #expect(statusLine == "HTTP/1.1 200 OK")
                    }
                }
                await sawClose.wait()
                let metrics = String(decoding: harness.metrics.render(), as: UTF8.self)
                #expect(metrics.contains("overlayd_proxy_client_aborts_total 1"))
            }
        }
    }

    /// A kept-alive upstream connection closed by the app as it is reused: a GET is sent again on
    /// a new connection (the client never sees the race), a POST with a body is not (502).
    @Test func aReusedConnectionClosedByTheAppIsRetriedForIdempotentRequestsOnly() async throws {
        let accepted = Tally()
        try await withOneShotUpstream(connections: accepted) { upstreamPort in
            try await withProxy(upstreamURL: "http://127.0.0.1:\(upstreamPort)") { harness in
                try await withRawConnection(port: harness.proxyPort) { connection in
                    try await connection.send("GET /a HTTP/1.1\r\nHost: other.example\r\n\r\n")
                    let first = try await connection.response()
                    #expect(first.status == 200 && first.text == "connection 1")
                    // Reuses connection 1, which the app closes: retried on connection 2.
                    try await connection.send("GET /b HTTP/1.1\r\nHost: other.example\r\n\r\n")
                    let second = try await connection.response()
                    #expect(second.status == 200 && second.text == "connection 2")
                    // Reuses connection 2, closed as well; a request with a body is not sent twice.
                    try await connection.send("POST /c HTTP/1.1\r\nHost: other.example\r\nContent-Length: 3\r\n\r\nabc")
                    let third = try await connection.response()
                    #expect(third.status == 502)
                }
                #expect(accepted.count == 2)
                let metrics = String(decoding: harness.metrics.render(), as: UTF8.self)
                #expect(metrics.contains("overlayd_proxy_upstream_retries_total 1"))
                #expect(metrics.contains("overlayd_proxy_upstream_errors_total{kind=\"error\"} 1"))
            }
        }
    }

    /// A keep-alive connection to the app left unused for the idle timeout is closed by the proxy
    /// (not earlier; the pool's sweep finds it within a quarter of the timeout more).
    @Test(.timeLimit(.minutes(1))) func idleUpstreamConnectionsAreClosedAfterTheIdleTimeout() async throws {
        try await withKeepAliveUpstream { upstreamPort, closed in
            try await withProxy(upstreamIdleTimeout: .milliseconds(300), upstreamURL: "http://127.0.0.1:\(upstreamPort)") { harness in
                try await withRawConnection(port: harness.proxyPort) { connection in
                    try await connection.send("GET /a HTTP/1.1\r\nHost: other.example\r\n\r\n")
                    let response = try await connection.response()
                    #expect(response.status == 200 && response.text == "ok")
                    let answered = ContinuousClock.now
                    // The app sees its connection end without another request: the idle timeout.
                    // (The client's answer comes a little after the connection went idle, so the
                    // bound leaves a margin instead of racing the delivery.)
                    var ends = closed.makeAsyncIterator()
                    let end = try #require(await ends.next())
                    #expect(end - answered >= .milliseconds(200))
                    // The client's own connection is untouched: a new request gets a new upstream
                    // connection.
                    try await connection.send("GET /b HTTP/1.1\r\nHost: other.example\r\n\r\n")
                    #expect(try await connection.response().status == 200)
                }
            }
        }
    }

    /// Cancelled (not shut down gracefully), e.g. when another service of its group fails: `run()`
    /// returns although a keep-alive client connection is still open.
    @Test(.timeLimit(.minutes(1))) func cancellingTheProxyEndsItsRun() async throws {
        let config = try ConfigLoader.load(text: testConfigText, source: "test")
        var options = ProxyOptions(upstream: try Upstream(parsing: "http://127.0.0.1:1"))
        options.listenPort = 0
        let proxy = ReverseProxy(
            options: options, configStore: ConfigStore(config, document: testConfigText), engine: nil, health: nil,
            metricsFactory: PrometheusMetrics(), logger: quietLogger)
        let running = Task { try await proxy.run() }
        let port = try #require(await proxy.listeningPort())
        try await withRawConnection(port: port) { connection in
            try await connection.send("GET /__overlay/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            #expect(try await connection.response().status == 200)
            running.cancel()
            _ = await running.result
            // The connection was closed by the proxy's shutdown.
            #expect(try await connection.atEnd())
        }
    }

    @Test func undecodableEncodingsPassThroughUntouchedAndGzipHTMLAndJSONAreRewritten() async throws {
        let hooks = Hooks()
        try await withProxy(routes: upstreamRoutes(hooks)) { harness in
            try await withRawConnection(port: harness.proxyPort) { connection in
                let host = "127.0.0.1:\(harness.proxyPort)"
                try await connection.send("GET /br HTTP/1.1\r\nHost: \(host)\r\n\r\n")
                let brotli = try await connection.response()
                #expect(brotli.body == brotliPage)
                #expect(brotli.header("content-encoding") == "br")
                #expect(brotli.header("content-length") == String(brotliPage.count))

                // gzip is decoded, injected and encoded again (as ext_proc mode does, same codec).
                try await connection.send("GET /gz HTTP/1.1\r\nHost: \(host)\r\n\r\n")
                let gzip = try await connection.response()
                #expect(gzip.header("content-encoding") == "gzip")
                #expect(gzip.header("content-length") == nil)
                let decoded = try #require(CompressCodec().decode(gzip.body, encoding: "gzip", limit: 1 << 20))
                let text = String(decoding: decoded, as: UTF8.self)
                #expect(text.contains("<script data-overlayd"))
                #expect(text.hasSuffix("<body>zipped</body></html>"))

                try await connection.send("GET /page HTTP/1.1\r\nHost: \(host)\r\n\r\n")
                let page = try await connection.response()
                #expect(page.status == 200)
                #expect(page.header("content-length") == nil)
                #expect(page.header("transfer-encoding") == "chunked")
                #expect(page.text.contains("<script data-overlayd type=\"application/json\" id=\"overlayd-result\">"))
                #expect(page.text.contains("<script src=\"/__overlay/overlay.js\" defer></script></head>"))
                #expect(page.text.hasSuffix("<body>hi</body></html>"))

                try await connection.send("GET /api/data HTTP/1.1\r\nHost: \(host)\r\n\r\n")
                let json = try await connection.response()
                #expect(json.text.hasPrefix("{\"a\":1,\"overlay\":{\"overlay\":\"proxy-test\""))

                // The page's token fetches the result from the shared engine's store.
                let marker = "\"token\":\""
                let token = try #require(page.text.range(of: marker).map {
                    String(page.text[$0.upperBound...].prefix(32))
                })
                try await connection.send("GET /__overlay/results/\(token) HTTP/1.1\r\nHost: \(host)\r\n\r\n")
                let result = try await connection.response()
                #expect(result.status == 200)
                #expect(result.text.contains(token))
            }
            // br, gzip, page and api reached the upstream; the results lookup did not.
            #expect(harness.seen.all.map(\.path) == ["/br", "/gz", "/page", "/api/data"])
        }
    }

    /// The proxy counts what happened to a page in the vocabulary ext_proc mode uses: a page that
    /// does not decode is `broken_encoding` (the proxy used to drop that outcome silently).
    @Test func aBrokenEncodingIsCountedAsInExtProcMode() async throws {
        try await withProxy(routes: upstreamRoutes(Hooks())) { harness in
            try await withRawConnection(port: harness.proxyPort) { connection in
                try await connection.send("GET /broken-gzip HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                let response = try await connection.response()
                #expect(response.header("content-encoding") == "gzip")
                #expect(String(decoding: response.body, as: UTF8.self) == "<html><head></head><body>not gzip</body></html>")
            }
            let lines = String(decoding: harness.metrics.render(), as: UTF8.self).split(separator: "\n")
            let counted = lines.filter {
                $0.hasPrefix("overlayd_injections_total{") && $0.contains(#"frontend="proxy""#)
                    && $0.contains(#"result="broken_encoding""#)
            }
            #expect(counted.count == 1 && counted.first?.hasSuffix(" 1") == true, "\(counted)")
            let decided = lines.filter { $0.hasPrefix("overlayd_decisions_total{") && $0.contains(#"decision="overlay""#) }
            #expect(decided.count == 1 && decided.first?.contains(#"frontend="proxy""#) == true && decided.first?.hasSuffix(" 1") == true)
        }
    }

    @Test func hopByHopHeadersAreDroppedBothWays() async throws {
        let hooks = Hooks()
        try await withProxy(routes: upstreamRoutes(hooks)) { harness in
            try await withRawConnection(port: harness.proxyPort) { connection in
                try await connection.send(
                    "GET /headers HTTP/1.1\r\nHost: app.example\r\nConnection: keep-alive, X-Hop\r\nX-Hop: secret\r\n"
                        + "Keep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Authorization: Basic eA==\r\n"
                        + "Proxy-Connection: keep-alive\r\nX-Kept: yes\r\n\r\n")
                let response = try await connection.response()
                #expect(response.status == 200)
                for name in ["x-resp-hop", "keep-alive", "proxy-authenticate"] {
                    #expect(response.header(name) == nil, "\(name) reached the client")
                }
                #expect(response.header("connection") != "x-resp-hop")
                #expect(response.header("x-end-to-end") == "yes")
            }
            let seen = try #require(harness.seen.last)
            for name in ["x-hop", "keep-alive", "te", "proxy-authorization", "proxy-connection", "transfer-encoding"] {
                #expect(seen.headers[HTTPField.Name(name)!] == nil, "\(name) reached the upstream")
            }
            #expect(seen.headers[.connection] != "keep-alive, X-Hop")
            #expect(seen.headers[HTTPField.Name("x-kept")!] == "yes")
        }
    }

    @Test func hostIsKeptAndForwardedHeadersAreAdded() async throws {
        let hooks = Hooks()
        try await withProxy(routes: upstreamRoutes(hooks)) { harness in
            try await withRawConnection(port: harness.proxyPort) { connection in
                try await connection.send(
                    "GET /headers HTTP/1.1\r\nHost: crm.example:8443\r\nX-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: gopher\r\n\r\n")
                _ = try await connection.response()
            }
            let seen = try #require(harness.seen.last)
            #expect(seen.authority == "crm.example:8443")
            #expect(seen.headers[HTTPField.Name("x-forwarded-for")!] == "203.0.113.9, 127.0.0.1")
            #expect(seen.headers[values: HTTPField.Name("x-forwarded-proto")!] == ["http"])
            #expect(seen.headers[HTTPField.Name("x-forwarded-host")!] == "crm.example:8443")
        }
    }

    @Test func ownEndpointIsServedByTheProxy() async throws {
        let hooks = Hooks()
        try await withProxy(routes: upstreamRoutes(hooks)) { harness in
            try await withRawConnection(port: harness.proxyPort) { connection in
                try await connection.send("GET /__overlay/overlay.js HTTP/1.1\r\nHost: 127.0.0.1:\(harness.proxyPort)\r\n\r\n")
                let script = try await connection.response()
                #expect(script.status == 200)
                #expect(script.header("content-type") == "text/javascript; charset=utf-8")
                #expect(script.body == OverlayScript.bytes)
                let etag = try #require(script.header("etag"))
                try await connection.send(
                    "GET /__overlay/overlay.js HTTP/1.1\r\nHost: 127.0.0.1:\(harness.proxyPort)\r\nIf-None-Match: \(etag)\r\n\r\n")
                let cached = try await connection.response()
                #expect(cached.status == 304)
                // On a host without an overlay, /__overlay/ is the app's: passed through.
                try await connection.send("GET /__overlay/overlay.js HTTP/1.1\r\nHost: app.example\r\n\r\n")
                #expect(try await connection.response().status == 404)
            }
            #expect(harness.seen.all.isEmpty)
        }
    }

    @Test func followUpQuestionsAreAnsweredByTheProxy() async throws {
        let hooks = Hooks()
        try await withProxy(routes: upstreamRoutes(hooks)) { harness in
            try await withRawConnection(port: harness.proxyPort) { connection in
                let host = "127.0.0.1:\(harness.proxyPort)"
                let question = #"{"question":"What is overdue?","path":"/accounts"}"#
                try await connection.send(
                    "POST /__overlay/api/ask HTTP/1.1\r\nHost: \(host)\r\nContent-Type: application/json\r\n"
                        + "Content-Length: \(question.utf8.count)\r\n\r\n\(question)")
                let answer = try await connection.response()
                #expect(answer.status == 200)
                #expect(answer.text.contains("\"status\":\"pending\""))
                let token = try #require(answer.text.range(of: "\"token\":\"").map { String(answer.text[$0.upperBound...].prefix(32)) })
                try await connection.send("GET /__overlay/results/\(token) HTTP/1.1\r\nHost: \(host)\r\n\r\n")
                #expect(try await connection.response().status == 200)
                try await connection.send(
                    "POST /__overlay/api/ask HTTP/1.1\r\nHost: \(host)\r\nContent-Length: 5\r\n\r\nnope!")
                #expect(try await connection.response().status == 400)
            }
            #expect(harness.seen.all.isEmpty)
        }
    }

    @Test func overlaidRequestsCarryTheModelHeaderToTheUpstream() async throws {
        let hooks = Hooks()
        try await withProxy(routes: upstreamRoutes(hooks)) { harness in
            try await withRawConnection(port: harness.proxyPort) { connection in
                try await connection.send(
                    "GET /headers HTTP/1.1\r\nHost: 127.0.0.1:\(harness.proxyPort)\r\nX-Overlay-Model: forged\r\n\r\n")
                _ = try await connection.response()
                try await connection.send("GET /page HTTP/1.1\r\nHost: app.example\r\n\r\n")
                let passed = try await connection.response()
                #expect(!passed.text.contains("data-overlayd"))
            }
            let seen = harness.seen.all
            let models = seen[0].headers[values: HTTPField.Name("x-overlay-model")!]
            #expect(models.count == 1)
            #expect(models.first == "mock-a" || models.first == "mock-b")
            #expect(seen[1].headers[HTTPField.Name("x-overlay-model")!] == nil)
        }
    }
}

@Suite struct DemoTests {
    @Test func theProxyDemoConfigurationLoadsAndOverlaysTheNamesABrowserSends() throws {
        let config = EmbeddedDemo.loadProxyDemo()
        #expect(config.overlay(forAuthority: "127.0.0.1:8080")?.name == "crm-canary")
        #expect(config.overlay(forAuthority: "localhost:8080")?.name == "crm-shadow")
        #expect(config.overlay(forAuthority: "example.com") == nil)
    }

    /// `--instant-models`: the same document but for the mocks' latency, which is 0 (the engine's
    /// inline path); everything else (overlays, split, fallback) is unchanged.
    @Test func theInstantDemoDiffersOnlyInTheMockLatency() throws {
        let slow = EmbeddedDemo.loadProxyDemo()
        let instant = EmbeddedDemo.loadInstantProxyDemo()
        #expect(slow.models.values.map(\.mockLatencyMs).sorted() == [20, 120])
        #expect(instant.models.values.allSatisfy { $0.mockLatencyMs == 0 })
        #expect(instant.overlay(forAuthority: "127.0.0.1:8080")?.name == "crm-canary")
        #expect(Set(instant.models.keys) == Set(slow.models.keys))
        #expect(instant.models["mock-fast"]?.fallback == "mock-smart")
        let changed = zip(EmbeddedDemo.proxyDemoText.split(separator: "\n"), EmbeddedDemo.instantProxyDemoText.split(separator: "\n"))
            .filter { $0 != $1 }
        #expect(changed.map { String($0.1) } == ["    latency: 0ms", "    latency: 0ms"])
    }

    @Test func theReportsPageIsValidGzip() throws {
        let page = DemoApp.reportsGzip
        #expect(Array(page.prefix(3)) == [0x1F, 0x8B, 0x08])
        let decoded = try #require(CompressCodec().decode(page, encoding: "gzip", limit: 1 << 20))
        #expect(String(decoding: decoded, as: UTF8.self).contains("Quarterly report"))
    }
}

extension DemoTests {
    @Test func theDemoServesTheOverlaidLegacyApp() async throws {
        var options = Demo.Options()
        options.port = 0
        options.adminPort = 0
        options.extProc = .tcp(host: "127.0.0.1", port: 0)
        options.consolePort = 0
        let demo = try Demo(options: options, logger: quietLogger)
        defer { demo.removeTemporaryData() }
        let data = try #require(demo.temporaryData)
        #expect(FileManager.default.fileExists(atPath: data + "/overlayd.sqlite"))
        let group = ServiceGroup(configuration: .init(services: demo.services, logger: quietLogger))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            let console = try #require(await demo.controlPlane.listeningAddress())
            let consolePort = try #require(Int(console.split(separator: ":").last ?? ""))
            try await withRawConnection(port: consolePort) { connection in
                // The control plane serves the demo's state as version 1, seeded by the demo.
                try await connection.send("GET /v1/desired-state HTTP/1.1\r\nHost: \(console)\r\n\r\n")
                let state = try await connection.response()
                #expect(state.status == 200)
                #expect(state.header("etag") == "\"1\"")
                #expect(state.text.contains("crm-canary") && state.text.contains("crm-shadow"))
            }
            let proxyPort = try #require(await demo.proxy.listeningPort())
            let appPort = try #require(await demo.appPort.port())
            #expect(await demo.extProc.listeningAddress() != nil)
            try await withRawConnection(port: proxyPort) { connection in
                try await connection.send("GET / HTTP/1.1\r\nHost: 127.0.0.1:\(proxyPort)\r\n\r\n")
                let home = try await connection.response()
                #expect(home.text.contains("LegacyCRM"))
                #expect(home.text.contains("{\"overlay\":\"crm-canary\""))
                try await connection.send("GET /accounts HTTP/1.1\r\nHost: localhost:\(proxyPort)\r\n\r\n")
                #expect(try await connection.response().text.contains("{\"overlay\":\"crm-shadow\",\"model\":\"mock-fast\""))
                try await connection.send("GET /reports HTTP/1.1\r\nHost: 127.0.0.1:\(proxyPort)\r\n\r\n")
                let reports = try await connection.response()
                #expect(reports.header("content-encoding") == "gzip")
                let decoded = try #require(CompressCodec().decode(reports.body, encoding: "gzip", limit: 1 << 20))
                #expect(String(decoding: decoded, as: UTF8.self).contains("{\"overlay\":\"crm-canary\""))
                try await connection.send("GET /api/accounts HTTP/1.1\r\nHost: 127.0.0.1:\(proxyPort)\r\n\r\n")
                #expect(try await connection.response().text.contains(",\"overlay\":{\"overlay\":\"crm-canary\""))
                try await connection.send("HEAD /accounts HTTP/1.1\r\nHost: 127.0.0.1:\(proxyPort)\r\n\r\n")
                let head = try await connection.response(bodiless: true)
                #expect(head.status == 200)
                #expect(head.header("content-length") == String(DemoApp.accountsPage.count))
            }
            try await withRawConnection(port: appPort) { connection in
                try await connection.send("GET /reports HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                #expect(try await connection.response().body == DemoApp.reportsGzip)
            }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
    }
}
