// nio-floor: the least an HTTP/1 reverse proxy on SwiftNIO's own HTTP/1 codecs costs here.
//
// A measuring stick for issue 18, not a product: NIO's server pipeline (HTTPRequestDecoder,
// HTTPResponseEncoder, optionally the pipelining and error handlers) before one handler that
// forwards each request to a pooled keep-alive upstream connection (HTTPRequestEncoder,
// HTTPResponseDecoder) and streams the response back. A host other than `passthrough.test` gets
// nginx sub_filter's constant tag inserted before the first `</head>` of an HTML body (found within
// one read; re-framed as chunked). It has no timeouts, limits, hop-by-hop filtering,
// X-Forwarded-For, metrics, logs, drain, request bodies or back-pressure: what overlayd does on
// top of this is its own cost.
//
// usage: nio-floor LISTEN_PORT UPSTREAM_PORT [THREADS=2] [PIPELINING=0|1]
#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOHTTP1
import NIOPosix

let tagBytes = ByteBuffer(string: #"<script src="/__overlay/overlay.js"></script>"#)
let needle: [UInt8] = Array("</head>".utf8)

/// One event loop's idle upstream connections (used on that loop only).
final class Pool {
    let eventLoop: any EventLoop
    let upstreamPort: Int
    var idle: [UpstreamConnection] = []

    init(eventLoop: any EventLoop, upstreamPort: Int) {
        self.eventLoop = eventLoop
        self.upstreamPort = upstreamPort
    }

    /// Calls `body` with an idle connection at once, or with a new one once connected.
    func withConnection(_ body: @escaping (UpstreamConnection?) -> Void) {
        if let connection = idle.popLast() {
            body(connection)
            return
        }
        ClientBootstrap(group: eventLoop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(UpstreamHandler())
                }
            }
            .connect(host: "127.0.0.1", port: upstreamPort)
            .assumeIsolated()
            .whenComplete { [self] result in
                switch result {
                case .success(let channel):
                    guard let handler = try? channel.pipeline.syncOperations.handler(type: UpstreamHandler.self) else {
                        body(nil)
                        return
                    }
                    let connection = UpstreamConnection(channel: channel, handler: handler)
                    handler.onClose = { [weak self, weak connection] in
                        self?.idle.removeAll { $0 === connection }
                    }
                    body(connection)
                case .failure:
                    body(nil)
                }
            }
    }
}

final class UpstreamConnection {
    let channel: any Channel
    let handler: UpstreamHandler
    init(channel: any Channel, handler: UpstreamHandler) {
        self.channel = channel
        self.handler = handler
    }
}

/// The last handler of an upstream connection: hands the response to the client it serves.
final class UpstreamHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    var client: ClientHandler?
    var onClose: (() -> Void)?
    private var context: ChannelHandlerContext?

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func send(_ head: HTTPRequestHead) {
        guard let context else { return }
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        client?.upstream(unwrapInboundIn(data))
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        client?.flush()
    }

    func channelInactive(context: ChannelHandlerContext) {
        onClose?()
        onClose = nil
        if let client {
            self.client = nil
            client.upstreamFailed()
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

/// The client connection's last handler: one request at a time to the upstream.
final class ClientHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let pool: Pool
    private var context: ChannelHandlerContext?
    private var head: HTTPRequestHead?
    private var upstream: UpstreamConnection?
    private var inject = false
    private var injected = false
    private var pendingFlush = false

    init(pool: Pool) { self.pool = pool }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
        case .body:
            break
        case .end:
            guard let head else { return }
            self.head = nil
            inject = head.headers.first(name: "host") != "passthrough.test"
            injected = false
            let upstreamHead = HTTPRequestHead(version: .http1_1, method: head.method, uri: head.uri, headers: head.headers)
            pool.withConnection { [self] connection in
                guard let connection else {
                    self.context?.close(promise: nil)
                    return
                }
                upstream = connection
                connection.handler.client = self
                connection.handler.send(upstreamHead)
            }
        }
    }

    func upstream(_ part: HTTPClientResponsePart) {
        guard let context else { return }
        switch part {
        case .head(var head):
            if inject, head.headers.first(name: "content-type")?.hasPrefix("text/html") == true {
                head.headers.remove(name: "content-length")
            } else {
                inject = false
            }
            context.write(wrapOutboundOut(.head(head)), promise: nil)
            pendingFlush = true
        case .body(var buffer):
            if inject, !injected, let at = Self.find(in: buffer) {
                injected = true
                let before = buffer.readSlice(length: at)!
                context.write(wrapOutboundOut(.body(.byteBuffer(before))), promise: nil)
                context.write(wrapOutboundOut(.body(.byteBuffer(tagBytes))), promise: nil)
            }
            context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
            pendingFlush = true
        case .end:
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            pendingFlush = false
            if let upstream {
                self.upstream = nil
                upstream.handler.client = nil
                pool.idle.append(upstream)
            }
        }
    }

    func flush() {
        if pendingFlush {
            pendingFlush = false
            context?.flush()
        }
    }

    func upstreamFailed() {
        upstream = nil
        context?.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let upstream {
            self.upstream = nil
            upstream.handler.client = nil
            upstream.channel.close(promise: nil)
        }
    }

    /// The offset of the first `</head>` in `buffer` (memchr for each `<`, then a compare).
    private static func find(in buffer: ByteBuffer) -> Int? {
        buffer.withUnsafeReadableBytes { raw -> Int? in
            guard let base = raw.baseAddress else { return nil }
            var from = 0
            while from + needle.count <= raw.count,
                  let hit = memchr(base + from, 0x3C, raw.count - from) {
                let at = UnsafeRawPointer(hit) - base
                if at + needle.count <= raw.count, memcmp(base + at, needle, needle.count) == 0 { return at }
                from = at + 1
            }
            return nil
        }
    }
}

let arguments = CommandLine.arguments
guard arguments.count >= 3, let listenPort = Int(arguments[1]), let upstreamPort = Int(arguments[2]) else {
    print("usage: nio-floor LISTEN_PORT UPSTREAM_PORT [THREADS=2] [PIPELINING=0|1]")
    exit(2)
}
let threads = arguments.count > 3 ? Int(arguments[3]) ?? 2 : 2
let pipelining = arguments.count > 4 && arguments[4] == "1"
let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
var pools: [ObjectIdentifier: NIOLoopBound<Pool>] = [:]
for loop in group.makeIterator() {
    pools[ObjectIdentifier(loop)] = try loop.submit {
        NIOLoopBound(Pool(eventLoop: loop, upstreamPort: upstreamPort), eventLoop: loop)
    }.wait()
}
let loopPools = pools
let server = try ServerBootstrap(group: group)
    .serverChannelOption(.backlog, value: 1024)
    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
    .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
    .childChannelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
            let pool = loopPools[ObjectIdentifier(channel.eventLoop)]!.value
            try channel.pipeline.syncOperations.configureHTTPServerPipeline(
                withPipeliningAssistance: pipelining, withErrorHandling: true)
            try channel.pipeline.syncOperations.addHandler(ClientHandler(pool: pool))
        }
    }
    .bind(host: "127.0.0.1", port: listenPort).wait()
print("nio-floor on \(server.localAddress!), upstream 127.0.0.1:\(upstreamPort), \(threads) threads, pipelining assistance \(pipelining)")
try server.closeFuture.wait()
