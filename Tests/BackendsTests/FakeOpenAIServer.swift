import NIOCore
import NIOHTTP1
import NIOPosix
import Locking

/// A scriptable OpenAI-compatible server on 127.0.0.1 (real sockets, OS-assigned port).
final class FakeOpenAIServer: Sendable {
    struct Recorded: Sendable {
        var method: HTTPMethod
        var uri: String
        var headers: HTTPHeaders
        var body: String
        var receivedAt: ContinuousClock.Instant
    }

    enum Reply: Sendable {
        case json(status: HTTPResponseStatus = .ok, headers: [(String, String)] = [], body: String)
        /// Raw byte pieces written one after the other (each flushed separately) as an SSE body.
        case sse(pieces: [[UInt8]])
        /// Never answer (until the server shuts down).
        case hang
    }

    /// Called per request with the request and its 0-based index; may suspend (e.g. on a `Gate`).
    typealias Handler = @Sendable (Recorded, Int) async -> Reply

    let port: Int
    var baseURL: String { "http://127.0.0.1:\(port)/v1" }
    private let state: Recorder
    private let serverChannel: any Channel
    private let task: Task<Void, Never>

    var requests: [Recorded] { state.value.withLock { $0.requests } }
    var inFlight: Int { state.value.withLock { $0.inFlight } }
    var maxInFlight: Int { state.value.withLock { $0.maxInFlight } }

    final class Recorder: Sendable {
        let value = Locked<(requests: [Recorded], inFlight: Int, maxInFlight: Int)>(([], 0, 0))
    }

    static func start(_ handler: @escaping Handler) async throws -> FakeOpenAIServer {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: "127.0.0.1", port: 0) { child in
                child.eventLoop.makeCompletedFuture {
                    try child.pipeline.syncOperations.configureHTTPServerPipeline()
                    return try NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>(
                        wrappingChannelSynchronously: child)
                }
            }
        return FakeOpenAIServer(channel: channel, handler: handler)
    }

    private init(
        channel: NIOAsyncChannel<NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>, Never>,
        handler: @escaping Handler
    ) {
        self.port = channel.channel.localAddress!.port!
        self.serverChannel = channel.channel
        let recorder = Recorder()
        self.state = recorder
        self.task = Task {
            await withDiscardingTaskGroup { group in
                try? await channel.executeThenClose { inbound in
                    for try await connection in inbound {
                        group.addTask { await Self.serve(connection, state: recorder, handler: handler) }
                    }
                }
                group.cancelAll()
            }
        }
    }

    func shutdown() async {
        task.cancel()
        try? await serverChannel.close()
        await task.value
    }

    private static func serve(
        _ connection: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>, state: Recorder,
        handler: Handler
    ) async {
        do {
            try await serveRequests(connection, state: state, handler: handler)
        } catch {
            // Connection errors end this connection only.
        }
    }

    private static func serveRequests(
        _ connection: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>, state: Recorder,
        handler: Handler
    ) async throws {
        try await connection.executeThenClose { inbound, outbound in
            var head: HTTPRequestHead?
            var body = ByteBuffer()
            for try await part in inbound {
                switch part {
                case .head(let h):
                    head = h
                    body.clear()
                case .body(var b):
                    body.writeBuffer(&b)
                case .end:
                    guard let h = head else { continue }
                    let recorded = Recorded(
                        method: h.method, uri: h.uri, headers: h.headers, body: String(buffer: body),
                        receivedAt: .now)
                    let index = state.value.withLock { s in
                        s.requests.append(recorded)
                        s.inFlight += 1
                        s.maxInFlight = max(s.maxInFlight, s.inFlight)
                        return s.requests.count - 1
                    }
                    let reply = await handler(recorded, index)
                    defer { state.value.withLock { $0.inFlight -= 1 } }
                    switch reply {
                    case .json(let status, let extra, let text):
                        var headers = HTTPHeaders([("Content-Type", "application/json"), ("Content-Length", "\(text.utf8.count)")])
                        for (k, v) in extra { headers.add(name: k, value: v) }
                        try await outbound.write(.head(HTTPResponseHead(version: h.version, status: status, headers: headers)))
                        try await outbound.write(.body(.byteBuffer(ByteBuffer(string: text))))
                        try await outbound.write(.end(nil))
                    case .sse(let pieces):
                        let headers = HTTPHeaders([("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")])
                        try await outbound.write(.head(HTTPResponseHead(version: h.version, status: .ok, headers: headers)))
                        for piece in pieces {
                            try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: piece))))
                        }
                        try await outbound.write(.end(nil))
                    case .hang:
                        // Never answer; the task is cancelled at shutdown.
                        try? await Task.sleep(for: .seconds(120))
                        return
                    }
                }
            }
        }
    }
}

/// A latch that handlers wait on until the test opens it.
final class Gate: Sendable {
    private let state = Locked<(open: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    func wait() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let resumeNow = state.withLock { s -> Bool in
                if s.open { return true }
                s.waiters.append(c)
                return false
            }
            if resumeNow { c.resume() }
        }
    }

    func open() {
        let waiters = state.withLock { s in
            s.open = true
            defer { s.waiters = [] }
            return s.waiters
        }
        for w in waiters { w.resume() }
    }
}

/// A port that was bound and then closed: connecting to it is refused.
func closedPort() async throws -> Int {
    let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .bind(host: "127.0.0.1", port: 0).get()
    let port = channel.localAddress!.port!
    try await channel.close()
    return port
}
