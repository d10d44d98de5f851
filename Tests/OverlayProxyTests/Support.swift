import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOPosix
import OverlayCore
import OverlayProxy
import OverlayRuntime
import ServiceLifecycle
import Locking
import Testing

/// The overlay of the proxy tests: host 127.0.0.1 (any port) is overlaid with two mock models;
/// JSON bodies under /api/ are enriched. Other hosts pass through.
let testConfigText = """
    apiVersion: orchestrator.io/v1
    kind: AIOverlay
    metadata:
      name: proxy-test
    spec:
      hostApp: "127.0.0.1"
      models:
        - name: "mock-a"
          weight: 50
        - name: "mock-b"
          weight: 50
      strategy: "Canary"
      injection:
        json:
          paths: ["/api/"]
    """

/// What the test upstream saw.
final class Seen: Sendable {
    struct Request: Sendable {
        var method: String
        var path: String
        var authority: String?
        var headers: HTTPFields
        var bodyBytes: Int
    }
    private let requests = Locked<[Request]>([])
    func record(_ request: Request) { requests.withLock { $0.append(request) } }
    var all: [Request] { requests.withLock { $0 } }
    var last: Request? { all.last }
}

/// A one-shot signal a test awaits (no sleeps): fired from another task.
final class Signal: Sendable {
    private let stream: AsyncStream<Void>
    private let continuation: AsyncStream<Void>.Continuation
    init() { (stream, continuation) = AsyncStream.makeStream(of: Void.self) }
    func fire() { continuation.finish() }
    func wait() async { for await _ in stream {} }
}

/// A logger that keeps tests quiet.
let quietLogger: Logger = {
    var logger = Logger(label: "proxy-test") { _ in SwiftLogNoOpLogHandler() }
    logger.logLevel = .critical
    return logger
}()

struct ProxyHarness {
    var proxyPort: Int
    var upstreamPort: Int
    var seen: Seen
    var metrics: PrometheusMetrics
}

/// Runs an upstream (Hummingbird, routes from `routes`) and the proxy in front of it, both on
/// 127.0.0.1:0, in one ServiceGroup; shuts both down gracefully after `body`.
func withProxy<T: Sendable>(
    upstreamTimeout: Duration = .seconds(10),
    upstreamIdleTimeout: Duration = .seconds(60),
    upstreamURL: String? = nil,
    routes: (Router<BasicRequestContext>, Seen) -> Void = { _, _ in },
    _ body: (ProxyHarness) async throws -> T
) async throws -> T {
    let seen = Seen()
    let router = Router()
    routes(router, seen)
    let upstreamPort = BoundAddress()
    let app = Application(
        router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
        onServerRunning: { channel in upstreamPort.set(channel.localAddress?.port ?? 0) }, logger: quietLogger)
    let config = try ConfigLoader.load(text: testConfigText, source: "test")
    let metrics = PrometheusMetrics()
    let store = ConfigStore(config, document: testConfigText)
    let engine = OverlayEngine(metricsFactory: metrics, logger: quietLogger)
    var options = ProxyOptions(upstream: try Upstream(parsing: upstreamURL ?? "http://127.0.0.1:1"))
    options.listenPort = 0
    options.upstreamTimeout = upstreamTimeout
    options.upstreamIdleTimeout = upstreamIdleTimeout
    let fixedUpstream = upstreamURL
    let proxy = ReverseProxy(
        options: options, configStore: store, engine: engine, health: nil, metricsFactory: metrics, logger: quietLogger,
        resolveUpstream: {
            if let fixedUpstream { return try! Upstream(parsing: fixedUpstream) }
            let port = try #require(await upstreamPort.port())
            return try! Upstream(parsing: "http://127.0.0.1:\(port)")
        })
    let group = ServiceGroup(
        configuration: .init(
            services: [
                .init(service: engine), .init(service: app), .init(service: proxy),
            ], logger: quietLogger))
    return try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { try await group.run() }
        let harness = ProxyHarness(
            proxyPort: try #require(await proxy.listeningPort()), upstreamPort: try #require(await upstreamPort.port()),
            seen: seen, metrics: metrics)
        do {
            let result = try await body(harness)
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
            return result
        } catch {
            await group.triggerGracefulShutdown()
            try? await tasks.waitForAll()
            throw error
        }
    }
}

func record(_ request: Request, _ seen: Seen, bodyBytes: Int = 0) {
    seen.record(.init(
        method: request.method.rawValue, path: request.uri.string, authority: request.head.authority,
        headers: request.headers, bodyBytes: bodyBytes))
}

/// An HTTP client for the tests: no redirects, no decompression, fresh connections per client.
func withClient<T>(_ body: (HTTPClient) async throws -> T) async throws -> T {
    var configuration = HTTPClient.Configuration(redirectConfiguration: .disallow, decompression: .disabled)
    configuration.timeout = .init(connect: .seconds(5), read: .seconds(60))
    let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    do {
        let result = try await body(client)
        try await client.shutdown()
        return result
    } catch {
        try? await client.shutdown()
        throw error
    }
}

/// One response read off a raw connection.
struct RawResponse {
    var status: Int
    var headers: [(name: String, value: String)]
    var body: [UInt8]
    func header(_ name: String) -> String? { headers.first { $0.name == name.lowercased() }?.value }
    var text: String { String(decoding: body, as: UTF8.self) }
}

/// Runs `body` with a raw HTTP/1.1 connection to 127.0.0.1:`port`, closed when it returns.
func withRawConnection<T>(port: Int, _ body: (RawConnection) async throws -> T) async throws -> T {
    let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .connect(host: "127.0.0.1", port: port) { channel in
            channel.eventLoop.makeCompletedFuture {
                try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
            }
        }
    return try await channel.executeThenClose { inbound, outbound in
        let connection = RawConnection(iterator: inbound.makeAsyncIterator(), outbound: outbound)
        return try await body(connection)
    }
}

/// A raw HTTP/1.1 connection (to control framing and connection reuse exactly).
final class RawConnection {
    private var iterator: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
    private let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    private var pending: [UInt8] = []

    init(iterator: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator, outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>) {
        self.iterator = iterator
        self.outbound = outbound
    }

    func send(_ text: String) async throws {
        try await outbound.write(ByteBuffer(string: text))
    }

    /// Reads more bytes; false at end of stream.
    private func fill() async throws -> Bool {
        guard let buffer = try await iterator.next() else { return false }
        pending.append(contentsOf: buffer.readableBytesView)
        return true
    }

    private func take(_ count: Int) async throws -> [UInt8] {
        while pending.count < count {
            guard try await fill() else { throw RawError.closed }
        }
        defer { pending.removeFirst(count) }
        return Array(pending[..<count])
    }

    func line() async throws -> String {
        while true {
            if let index = pending.firstIndex(of: 0x0A) {
                let bytes = pending[..<index]
                pending.removeFirst(index + 1)
                return String(decoding: bytes.last == 0x0D ? bytes.dropLast() : bytes, as: UTF8.self)
            }
            guard try await fill() else { throw RawError.closed }
        }
    }

    /// Reads one response; `bodiless` for HEAD requests.
    func response(bodiless: Bool = false) async throws -> RawResponse {
        let statusLine = try await line()
        let parts = statusLine.split(separator: " ")
        guard parts.count >= 2, let status = Int(parts[1]) else { throw RawError.malformed(statusLine) }
        var headers: [(name: String, value: String)] = []
        while true {
            let text = try await line()
            if text.isEmpty { break }
            guard let colon = text.firstIndex(of: ":") else { throw RawError.malformed(text) }
            headers.append((text[..<colon].lowercased(), text[text.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
        }
        var response = RawResponse(status: status, headers: headers, body: [])
        if bodiless || status == 304 || status == 204 || status < 200 { return response }
        if response.header("transfer-encoding")?.lowercased() == "chunked" {
            while true {
                let sizeLine = try await line()
                guard let size = Int(sizeLine.split(separator: ";")[0], radix: 16) else { throw RawError.malformed(sizeLine) }
                if size == 0 {
                    while try await line() != "" {}
                    break
                }
                response.body += try await take(size)
                _ = try await line()
            }
        } else if let length = response.header("content-length").flatMap({ Int($0) }) {
            response.body = try await take(length)
        } else {
            while try await fill() {}
            response.body = pending
            pending = []
        }
        return response
    }

    /// True when the peer closed the connection without sending anything more.
    func atEnd() async throws -> Bool {
        if !pending.isEmpty { return false }
        return try await !fill()
    }
}

enum RawError: Error {
    case closed
    case malformed(String)
}

/// This process's resident set size, from /proc/self/status (bytes).
/// The process's resident size from /proc, or nil where it cannot be read (a test that needs it
/// then fails: it cannot measure, so it must not pass).
func residentBytes() -> Int? {
    guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
    for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        if let kib = line.split(separator: " ").compactMap({ Int($0) }).first, kib > 0 { return kib * 1024 }
    }
    return nil
}

/// A raw upstream for abort tests: reads the request head, optionally answers with a head and
/// one body chunk, then writes nothing more and fires `sawClose` when the proxy closes the
/// connection.
func withSilentUpstream<T: Sendable>(
    answerHead: Bool, sawRequest: Signal, sawClose: Signal, _ body: (Int) async throws -> T
) async throws -> T {
    try await withRawUpstream(
        serve: { _, inbound, outbound in
            var received: [UInt8] = []
            var iterator = inbound.makeAsyncIterator()
            while true {
                guard let chunk = try await iterator.next() else { break }
                received += chunk.readableBytesView
                if received.count >= 4 && received.suffix(4).elementsEqual([13, 10, 13, 10]) { break }
            }
            sawRequest.fire()
            if answerHead {
                try await outbound.write(ByteBuffer(
                    string: "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n"))
            }
            // Nothing more: wait for the proxy to close (end of input or a reset).
            do {
                while try await iterator.next() != nil {}
            } catch {}
            sawClose.fire()
        }, body)
}

/// A count shared with the upstream's tasks.
final class Tally: Sendable {
    private let value = Locked(0)
    func next() -> Int { value.withLock { $0 += 1; return $0 } }
    var count: Int { value.withLock { $0 } }
}

typealias RawInbound = NIOAsyncChannelInboundStream<ByteBuffer>
typealias RawOutbound = NIOAsyncChannelOutboundWriter<ByteBuffer>

/// A raw TCP upstream on 127.0.0.1:0: every accepted connection is served by `serve` (with its
/// number, from 1), and closed when `serve` returns. `body` gets the port.
func withRawUpstream<T: Sendable>(
    serve: @escaping @Sendable (_ number: Int, RawInbound, RawOutbound) async throws -> Void,
    _ body: (Int) async throws -> T
) async throws -> T {
    let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .bind(host: "127.0.0.1", port: 0) { channel in
            channel.eventLoop.makeCompletedFuture {
                try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
            }
        }
    let port = server.channel.localAddress?.port ?? 0
    let numbers = Tally()
    return try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask {
            try await withThrowingDiscardingTaskGroup { serving in
                try await server.executeThenClose { accepted in
                    for try await connection in accepted {
                        let number = numbers.next()
                        serving.addTask {
                            try? await connection.executeThenClose { inbound, outbound in
                                try await serve(number, inbound, outbound)
                            }
                        }
                    }
                }
            }
        }
        defer { tasks.cancelAll() }
        return try await body(port)
    }
}

/// Answers the first request of each connection with `connection N` (keep-alive), then closes the
/// connection, unanswered, when a second request arrives on it: the race of a kept-alive
/// connection that the app's idle timeout closes just as the proxy reuses it, made deterministic.
/// `connections` counts the connections accepted.
func withOneShotUpstream<T: Sendable>(connections: Tally, _ body: (Int) async throws -> T) async throws -> T {
    try await withRawUpstream(
        serve: { number, inbound, outbound in
            _ = connections.next()
            var received: [UInt8] = []
            var answered = false
            for try await chunk in inbound {
                received += chunk.readableBytesView
                guard received.count >= 4, received.suffix(4).elementsEqual([13, 10, 13, 10]) || answered else { continue }
                if answered { return }  // the second request: close, unanswered
                answered = true
                received = []
                let text = "connection \(number)"
                try await outbound.write(ByteBuffer(string: "HTTP/1.1 200 OK\r\nContent-Length: \(text.utf8.count)\r\n\r\n\(text)"))
            }
        }, body)
}

/// Answers every request on a connection with `200 "ok"` (keep-alive) and reports each
/// connection's end, with when it ended, on `closed`.
func withKeepAliveUpstream<T: Sendable>(
    _ body: (_ port: Int, _ closed: AsyncStream<ContinuousClock.Instant>) async throws -> T
) async throws -> T {
    let (closed, closedSink) = AsyncStream.makeStream(of: ContinuousClock.Instant.self)
    return try await withRawUpstream(
        serve: { _, inbound, outbound in
            defer { closedSink.yield(.now) }
            var received: [UInt8] = []
            for try await chunk in inbound {
                received += chunk.readableBytesView
                while let end = received.firstRange(of: [13, 10, 13, 10]) {
                    received.removeSubrange(..<end.upperBound)
                    try await outbound.write(ByteBuffer(string: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
                }
            }
        }, { port in try await body(port, closed) })
}
