import CoreMetrics
import NIOCore
import NIOHTTP1
import NIOHPACK
import NIOHTTP2
import OverlayCore
import OverlayDecisions
import OverlayRuntime

/// The proxy's limits against clients that hold connections without using them (README "Proxy
/// mode: limits"): what each refusal is counted as, `overlayd_proxy_client_limits_total{reason}`.
final class ClientLimits: Sendable {
    let deadlines: ClientDeadlines.Limits
    let maxRequestBodyBytes: Int64
    let gate: ConnectionGate

    static let reasons = [
        "header_timeout", "body_timeout", "keepalive_timeout", "body_too_large", "head_too_large",
        "h2_rapid_reset", "h2_control_frame_flood", "h2_glitches", "h2_header_block_too_large",
    ]

    init(options: ProxyOptions, factory: any MetricsFactory) {
        deadlines = .init(
            header: options.clientHeaderTimeout.timeAmount.nanoseconds, body: options.clientBodyTimeout.timeAmount.nanoseconds,
            keepalive: options.keepaliveTimeout.timeAmount.nanoseconds)
        maxRequestBodyBytes = options.maxRequestBodyBytes
        gate = ConnectionGate(
            maxTotal: options.maxConnections, maxPerClient: options.maxConnectionsPerClient, reasons: Self.reasons,
            counter: "overlayd_proxy_client_limits_total", gauge: "overlayd_proxy_client_connections", factory: factory)
    }

    func count(_ reason: String) { gate.count(reason) }

    /// Admits a new connection (counted until it closes), or closes it at once and counts why.
    func admit(_ channel: any Channel) -> Bool { gate.admit(channel) }
}

/// Enforces ``ClientDeadlines`` and the request body limit on an HTTP/1.1 client connection.
/// Sits right after NIO's request decoder: it sees every request part as decoded, and the proxy's
/// handler tells it of each response head and end as it writes them (``responseHead(status:)``,
/// ``responseEnd()``). One timer per connection, moved only when a deadline comes
/// earlier than the one it waits for. A 408 is written here (straight toward the socket) only when no
/// response is owed; otherwise the connection is just closed. Removed with the HTTP handlers when
/// the connection becomes a tunnel.
final class ClientGuard: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let limits: ClientLimits
    private var deadlines: ClientDeadlines
    private var timer: Scheduled<Void>?
    private var timerAt: Int64 = .max
    /// Bytes of the current request body so far.
    private var bodyBytes: Int64 = 0
    /// A refused request: everything the client sends after it is dropped.
    private var refusing = false
    /// The current request may be read past (see ``channelReadComplete(context:)``): not an
    /// upgrade, whose first bytes of the new protocol wait in the socket until the tunnel is made.
    private var readAhead = false

    init(limits: ClientLimits, now: NIODeadline) {
        self.limits = limits
        self.deadlines = ClientDeadlines(limits: limits.deadlines, now: Int64(truncatingIfNeeded: now.uptimeNanoseconds))
    }

    private func now(_ context: ChannelHandlerContext) -> Int64 {
        Int64(truncatingIfNeeded: context.eventLoop.now.uptimeNanoseconds)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        arm(context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        timer?.cancel()
        timer = nil
    }

    /// Its own context while in the pipeline, for the responses the proxy reports.
    private var context: ChannelHandlerContext?

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if refusing { return }
        let part = unwrapInboundIn(data)
        switch part {
        case .head(let head):
            // One pass over the fields for the three it reads (the first Content-Length).
            var length: Int64?
            var seenLength = false
            var chunked = false
            var upgrade = false
            for (name, value) in head.headers {
                switch name.utf8.count {
                case 7: upgrade = upgrade || ASCIICase.equals(name, lowercased: "upgrade")
                case 14 where !seenLength && ASCIICase.equals(name, lowercased: "content-length"):
                    seenLength = true
                    length = Int64(value)
                case 17: chunked = chunked || ASCIICase.equals(name, lowercased: "transfer-encoding")
                default: break
                }
            }
            if let length, length > limits.maxRequestBodyBytes {
                refuse(context, status: .payloadTooLarge, reason: "body_too_large")
                return
            }
            readAhead = !upgrade
            bodyBytes = 0
            deadlines.head(hasBody: chunked || (length ?? 0) > 0, now: now(context))
        case .body(let chunk):
            bodyBytes += Int64(chunk.readableBytes)
            if bodyBytes > limits.maxRequestBodyBytes {
                // A chunked body past the limit: its head has gone on; the exchange is ended.
                limits.count("body_too_large")
                refusing = true
                context.fireErrorCaught(RequestBodyTooLarge(limit: limits.maxRequestBodyBytes))
                context.close(promise: nil)
                return
            }
            deadlines.bodyPart(now: now(context))
        case .end:
            deadlines.requestEnd(now: now(context))
        }
        arm(context)
        context.fireChannelRead(data)
    }

    /// Keeps the socket's read interest while the one request read waits for its response.
    ///
    /// The proxy's handler holds every read while a response is owed (``RequestSequencer``), so the
    /// event loop would take the socket out of epoll after each request and put it back after each
    /// response: two `epoll_ctl` calls per request on a keep-alive connection. Asking for the next
    /// read here, before that handler can hold it, leaves the socket registered; nothing is read
    /// unless the client sends. What a client pipelines behind the request is still queued by that
    /// handler: its head makes two requests outstanding, and from then on reads wait again for the
    /// first response's end (one read's worth is queued). Not while a request body is read (the
    /// proxy's back-pressure toward the upstream decides those reads) nor after an upgrade request.
    func channelReadComplete(context: ChannelHandlerContext) {
        if readAhead, !refusing, deadlines.outstanding == 1, deadlines.phase == .awaitingResponse {
            context.read()
        }
        context.fireChannelReadComplete()
    }

    /// A head over `--max-request-head-bytes` (NIO's decoder counts it): 431 and close, instead of
    /// the 400 ``ProxyHandler`` answers other malformed requests with. Errors after a refusal are
    /// the decoder's echo of it.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if refusing { return }
        if let error = error as? HTTPParserError, error == .headerOverflow {
            refuse(context, status: .requestHeaderFieldsTooLarge, reason: "head_too_large")
            return
        }
        context.fireErrorCaught(error)
    }

    // The responses are reported by the proxy's handler as it writes them, rather than seen going
    // through here: an outbound handler would be one more hop, with a cast of the part, for every
    // response part and flush (about 1,500 instructions a write, measured).

    /// A response head is being written (a 1xx does not count: see ``ClientDeadlines``).
    func responseHead(status: Int) {
        deadlines.responseHead(status: status)
    }

    /// A response's end is being written: with nothing else outstanding, the keep-alive deadline
    /// starts. Reported before the end is written, as the end's write may deliver the next
    /// pipelined request at once.
    func responseEnd() {
        guard let context else { return }
        deadlines.responseEnd(now: now(context))
        arm(context)
    }

    /// Keeps one timer at the deadline (moved only when the deadline comes earlier).
    private func arm(_ context: ChannelHandlerContext) {
        guard let deadline = deadlines.deadline, deadline < timerAt else { return }
        timer?.cancel()
        timerAt = deadline
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(deadline: NIODeadline.uptimeNanoseconds(UInt64(max(0, deadline)))) {
            let (handler, context) = loopBound.value
            handler.fired(context)
        }
    }

    private func fired(_ context: ChannelHandlerContext) {
        timer = nil
        timerAt = .max
        guard let expiry = deadlines.expired(now: now(context)) else {
            arm(context)
            return
        }
        switch expiry {
        case .keepaliveTimeout:
            limits.count("keepalive_timeout")
            context.close(promise: nil)
        case .headerTimeout:
            refuse(context, status: .requestTimeout, reason: "header_timeout")
        case .bodyTimeout:
            if deadlines.mayAnswer {
                refuse(context, status: .requestTimeout, reason: "body_timeout")
            } else {
                limits.count("body_timeout")
                context.close(promise: nil)
            }
        }
    }

    /// Answers `status` with `Connection: close` (as bytes, straight toward the socket: the request
    /// is not passed on) and closes; everything read after it is dropped.
    private func refuse(_ context: ChannelHandlerContext, status: HTTPResponseStatus, reason: String) {
        limits.count(reason)
        refusing = true
        timer?.cancel()
        timer = nil
        if deadlines.outstanding > (deadlines.phase == .readingBody ? 1 : 0) || deadlines.responseStarted {
            // A response is owed or under way before this one: the connection just closes.
            context.close(promise: nil)
            return
        }
        let channel = context.channel
        let response = ResponseFramer.closingResponse(status: status, allocator: channel.allocator)
        context.writeAndFlush(NIOAny(IOData.byteBuffer(response))).whenComplete { _ in channel.close(promise: nil) }
    }
}

/// A request body passed `--max-request-body-bytes` after its head had been forwarded.
struct RequestBodyTooLarge: Error, CustomStringConvertible {
    var limit: Int64
    var description: String { "the request body exceeds --max-request-body-bytes (\(limit))" }
}

/// The h2c connection's end for abuse. NIO's HTTP/2 handler answers a connection error (RST_STREAM
/// flood: rapid reset; PING/SETTINGS/PRIORITY flood; too many "glitches": empty DATA,
/// CONTINUATION floods, stream errors; a header block past `SETTINGS_MAX_HEADER_LIST_SIZE`; any
/// other protocol error) with GOAWAY and raises the error, but leaves the connection open: this
/// closes it (RFC 9113 §5.4.1) and counts the abuse by kind. Stream errors (RST_STREAM of one
/// stream) go on untouched. Sits after the HTTP/2 handler.
final class H2ConnectionGuard: ChannelInboundHandler {
    typealias InboundIn = NIOAny

    private let limits: ClientLimits
    private var closing = false

    init(limits: ClientLimits) { self.limits = limits }

    static func reason(_ error: any Error) -> String? {
        switch error {
        case is NIOHTTP2Errors.ExcessiveRSTFrames: "h2_rapid_reset"
        case is NIOHTTP2Errors.ExcessiveControlFrames: "h2_control_frame_flood"
        case is NIOHTTP2Errors.ExcessiveNumberOfGlitches, is NIOHTTP2Errors.ExcessiveEmptyDataFrames,
            is NIOHTTP2Errors.ExcessiveContinuationFrames, is NIOHTTP2Errors.ExcessiveStreamErrors:
            "h2_glitches"
        case is NIOHTTP2Errors.ExcessivelyLargeHeaderBlock, is NIOHPACKErrors.MaxHeaderListSizeViolation:
            "h2_header_block_too_large"
        default: nil
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if !closing, !(error is NIOHTTP2Errors.StreamError) {
            closing = true  // one refusal per connection
            if let reason = Self.reason(error) { limits.count(reason) }
            // The GOAWAY has been written and flushed before the error was raised.
            context.close(promise: nil)
        }
        context.fireErrorCaught(error)
    }
}
