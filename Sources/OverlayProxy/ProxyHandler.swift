import Backends
import CoreMetrics
import Logging
import NIOCore
import NIOHTTP1
import OverlayCore
import OverlayDecisions
import OverlayRuntime
import Tracing

/// What every client connection's handler shares: the desired state, the engine, the upstream
/// pools (one per event loop) and the metrics.
final class ProxyShared: Sendable {
    let options: ProxyOptions
    let upstream: Upstream
    /// The configuration, engine, codec and overlay metrics (shared with ext_proc's kind).
    let services: ExchangeServices
    let metrics: ProxyMetrics
    /// `--upstream-timeout` as NIO's time amount (converted once: a `Duration`'s conversion
    /// multiplies 128-bit numbers on every request otherwise).
    let upstreamTimeout: TimeAmount
    private let pools: [ObjectIdentifier: NIOLoopBound<UpstreamPool>]

    init(
        options: ProxyOptions, upstream: Upstream, services: ExchangeServices, metrics: ProxyMetrics,
        pools: [NIOLoopBound<UpstreamPool>]
    ) {
        self.options = options
        self.upstream = upstream
        self.services = services
        self.metrics = metrics
        self.upstreamTimeout = options.upstreamTimeout.timeAmount
        var byLoop: [ObjectIdentifier: NIOLoopBound<UpstreamPool>] = [:]
        for pool in pools { byLoop[ObjectIdentifier(pool.eventLoop)] = pool }
        self.pools = byLoop
    }

    /// The pool of `eventLoop` (every loop of the group has one).
    func pool(for eventLoop: any EventLoop) -> UpstreamPool {
        pools[ObjectIdentifier(eventLoop)]!.value
    }
}

/// The client side of one connection to the proxy, after the HTTP/1 codec: each request is
/// decided by the same pure functions as ext_proc mode (``RequestRouter``, `Overlay.plan`,
/// ``ResponsePlan``, ``ResponseRewrite``) and then answered locally or forwarded to the upstream
/// on a connection of the loop's ``UpstreamPool``.
///
/// Bodies stream both ways with back-pressure: the client is not read while the upstream
/// connection is not writable (or not yet connected), and the upstream is not read while the
/// client is not writable. Only the injector's partial tag, or a JSON body being enriched (up to
/// the overlay's `maxBodyBytes`), or the parts that arrive while the page waits for its result
/// (one read's worth: reads stop then) are ever held.
final class ProxyHandler: ChannelDuplexHandler, RemovableChannelHandler, UpstreamDelegate {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private let shared: ProxyShared
    /// The HTTP/1 handlers before this one, removed when the connection is upgraded to a tunnel.
    private let codecHandlers: [any RemovableChannelHandler]
    /// nil on an HTTP/2 stream (no Upgrade there).
    private let decoder: RequestDecoding?
    private var context: ChannelHandlerContext!

    private enum Mode {
        /// Between requests.
        case idle
        /// Answered locally: the rest of the request (its body) is read and dropped.
        case discarding
        /// `POST /__overlay/api/ask`: the question's body is collected.
        case asking(Question)
        /// Forwarded to the upstream.
        case proxying(Exchange)
        /// Upgraded: the two connections are glued (``TunnelHandler``); nothing of HTTP is left.
        case tunnel
    }

    private var mode = Mode.idle
    private var clientReadHeld = false
    /// Picks without a user key and shadow sampling: seeded once per connection from the system
    /// generator (a system call per request would cost more than the pick).
    private var random = SplitMix64.seededBySystem()
    /// The span of an exchange that posts a question (`/__overlay/ask`) while its body is read.
    private var askTrace: ExchangeTrace?
    /// After the current response: close the connection (the client asked, or the request was
    /// not read to its end).
    private var closeAfterResponse = false
    /// The response that closes the connection has ended: nothing more is read.
    private var responseClosing = false
    /// Responses whose end has been written but not yet flushed to the socket.
    private var responsesUnwritten = 0
    /// The client closed its side between requests: close once the responses are written.
    private var closeWhenWritten = false
    /// The client's IP address for `X-Forwarded-For`, formatted once per connection (not per request).
    private lazy var clientAddress: String? = context.channel.remoteAddress?.ipAddress

    /// The HTTP/1 connection's guard (nil on an HTTP/2 stream), told of every response head and end
    /// this handler writes.
    private let clientGuard: ClientGuard?

    /// What the client sends, in the order the connection produced it (queued while a response is
    /// owed: see ``RequestSequencer``).
    private enum Inbound {
        case part(HTTPServerRequestPart)
        case malformed(any Error)
        case halfClose
    }

    /// HTTP/1.1's pipelining and shutdown rules (nil on an HTTP/2 stream: one request per stream).
    private var sequencer: RequestSequencer<Inbound>?
    /// The queue is being released (a response written meanwhile does not release it again).
    private var releasing = false

    init(
        shared: ProxyShared, codecHandlers: [any RemovableChannelHandler], decoder: RequestDecoding?,
        clientGuard: ClientGuard? = nil
    ) {
        self.shared = shared
        self.codecHandlers = codecHandlers
        self.decoder = decoder
        self.clientGuard = clientGuard
        if decoder != nil {
            sequencer = RequestSequencer()
            framer = ResponseFramer()
        }
    }

    /// HTTP/1.1: responses are written as bytes, framed here (nil on an HTTP/2 stream, whose codec
    /// takes response parts).
    private var framer: ResponseFramer?
    /// The method of the request being answered (a response to HEAD has no body).
    private var requestMethod = HTTPMethod.GET

    /// Writes bytes straight toward the socket (HTTP/1.1: no encoder follows this handler).
    private func writeBytes(_ buffer: ByteBuffer) {
        context.write(NIOAny(IOData.byteBuffer(buffer)), promise: nil)
    }

    /// Writes a response head, reported to the guard first. During a shutdown the response says
    /// that the connection closes after it.
    private func writeResponseHead(_ head: ProxyResponseHead, flush: Bool = false) {
        clientGuard?.responseHead(status: Int(head.status.code))
        if framer != nil {
            if sequencer!.closesAfterResponse, head.status.code >= 200, head.isKeepAlive {
                var closing = head
                closing.fields.removeAll { ASCIICase.equals($0.name, lowercased: "connection") }
                closing.fields.append(("connection", "close"))
                writeBytes(framer!.head(closing, method: requestMethod, allocator: allocator))
            } else {
                writeBytes(framer!.head(head, method: requestMethod, allocator: allocator))
            }
            if flush { context.flush() }
            return
        }
        if flush {
            context.writeAndFlush(wrapOutboundOut(.head(head.httpResponseHead)), promise: nil)
        } else {
            context.write(wrapOutboundOut(.head(head.httpResponseHead)), promise: nil)
        }
    }

    /// Writes and flushes a response's end, reported to the guard first; the future completes once
    /// it is written.
    private func writeResponseEnd() -> EventLoopFuture<Void> {
        clientGuard?.responseEnd()
        if framer != nil {
            let end = framer!.end(allocator: allocator) ?? allocator.buffer(capacity: 0)
            return context.writeAndFlush(NIOAny(IOData.byteBuffer(end)))
        }
        return context.writeAndFlush(wrapOutboundOut(.end(nil)))
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        allocator = context.channel.allocator
    }

    /// The channel's allocator, read once (each read goes through the channel's getters).
    private var allocator = ByteBufferAllocator()

    /// The upstream pool of this connection's loop, looked up on first use (a dictionary lookup
    /// per request otherwise).
    fileprivate var pool: UpstreamPool {
        if let loopPool { return loopPool }
        let found = shared.pool(for: context.eventLoop)
        loopPool = found
        return found
    }
    private var loopPool: UpstreamPool?

    /// One timer for the upstream's response head per connection, moved only when a deadline comes
    /// earlier than the one it waits for (a schedule and a cancel on every request cost more): when it
    /// fires, the exchange then in flight times out if its deadline has passed, else it waits again.
    private var headTimer: Scheduled<Void>?
    private var headTimerAt = NIODeadline.distantFuture

    fileprivate func watchHead(until deadline: NIODeadline) {
        guard headTimer == nil || deadline < headTimerAt, let context else { return }
        headTimer?.cancel()
        headTimerAt = deadline
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        headTimer = context.eventLoop.scheduleTask(deadline: deadline) {
            let handler = loopBound.value
            handler.headTimer = nil
            handler.headTimerAt = .distantFuture
            guard case .proxying(let exchange) = handler.mode, let due = exchange.headDeadline else { return }
            if due <= .now() {
                exchange.headTimedOut()
            } else {
                handler.watchHead(until: due)
            }
        }
    }

    /// The context holds this handler: keeping it past removal (the channel's close removes every
    /// handler) would keep the whole pipeline, its buffers and the exchange alive, for every
    /// connection ever closed.
    func handlerRemoved(context: ChannelHandlerContext) {
        headTimer?.cancel()
        headTimer = nil
        self.context = nil
        // Removed for a tunnel: the read held while the upgrade's response was owed is the
        // tunnel's first, and a shutdown under way is the tunnel's to carry out.
        if let (read, quiesce) = sequencer?.removed(), context.channel.isActive {
            if quiesce { context.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent()) }
            if read { context.read() }
        }
    }

    // MARK: - Client side

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        guard sequencer != nil else {
            handle(part)
            return
        }
        let kind: RequestSequencer<Inbound>.Kind
        switch part {
        case .head: kind = .head
        case .body: kind = .body
        case .end: kind = .end
        }
        dispatch(.part(part), sequencer!.receive(.part(part), kind: kind))
    }

    /// Carries out the sequencer's disposition of a client event.
    private func dispatch(_ event: Inbound, _ disposition: RequestSequencer<Inbound>.Disposition) {
        switch disposition {
        case .hold:
            return
        case .deliver:
            deliver(event)
        case .deliverThenClose:
            deliver(event)
            context?.close(promise: nil)
        }
    }

    private func deliver(_ event: Inbound) {
        switch event {
        case .part(let part): handle(part)
        case .malformed(let error): failed(error)
        case .halfClose: inputClosed()
        }
    }

    /// A response's end has been written: what the client sent meanwhile is handed on, up to the
    /// next request whose response is owed, and a read held meanwhile goes on.
    private func releaseQueued() {
        guard sequencer != nil, !releasing else { return }
        releasing = true
        defer { releasing = false }
        var deliveredParts = false
        while self.context != nil, let (event, disposition) = sequencer!.nextQueued() {
            if case .part = event { deliveredParts = true }
            dispatch(event, disposition)
        }
        guard let context = self.context else { return }
        // As after a read from the socket: the upstream writes of a request delivered here go out.
        if deliveredParts { channelReadComplete(context: context) }
        if sequencer!.takeHeldRead() { context.read() }
    }

    /// One part of a request, in turn.
    private func handle(_ part: HTTPServerRequestPart) {
        // A response that closes the connection has been written: whatever the client pipelined
        // after that request is never served.
        if responseClosing { return }
        switch part {
        case .head(let head):
            begin(head)
        case .body(let chunk):
            switch mode {
            case .proxying(let exchange):
                exchange.requestBody(chunk)
            case .asking(let question):
                _ = question.core.requestBody(chunk.readableBytesView, end: false)
            case .idle, .discarding, .tunnel:
                break
            }
        case .end(let trailers):
            switch mode {
            case .proxying(let exchange):
                exchange.requestEnd(trailers)
            case .asking(let question):
                mode = .discarding
                switch question.core.requestBody(EmptyCollection(), end: true) {
                case .answer(let local):
                    writeLocal(local)
                case .ask(let plan):
                    let call = shared.services.startCall(
                        plan: plan, config: question.core.configuration, trace: askTrace?.call)
                    writeLocal(LocalResponse.askAnswer(call.pendingView))
                case .more:
                    break
                }
                askTrace?.end()
                askTrace = nil
                requestFinished()
            case .discarding:
                requestFinished()
            case .idle, .tunnel:
                break
            }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if case .proxying(let exchange) = mode { exchange.upstream?.handler.flush() }
        context.fireChannelReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, case .proxying(let exchange) = mode {
            exchange.upstream?.handler.resumeReading()
        }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if case .proxying(let exchange) = mode, !exchange.responseFinished {
            shared.metrics.clientAborts.increment()
            exchange.abort()
        }
        mode = .idle
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, case .inputClosed = event, !isTunnel {
            if sequencer != nil {
                dispatch(.halfClose, sequencer!.receive(.halfClose, kind: .halfClose))
            } else {
                inputClosed()
            }
            return
        }
        if sequencer != nil, event is ChannelShouldQuiesceEvent {
            // Shutdown: an idle connection closes now; else after the response in flight.
            if sequencer!.quiesce() { context.close(promise: nil) }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    private var isTunnel: Bool {
        if case .tunnel = mode { return true }
        return false
    }

    /// The client's half-close, in turn (the tunnel passes it on itself).
    private func inputClosed() {
        switch mode {
        case .proxying(let exchange) where !exchange.responseFinished:
            // Like nginx: a client that stops sending while its request is in flight has aborted.
            shared.metrics.clientAborts.increment()
            exchange.abort()
            mode = .idle
            context?.close(promise: nil)
        default:
            // Nothing in flight: the client closed a keep-alive connection. Close our side now
            // (once the last response is written), not at --keepalive-timeout: the socket would
            // sit in CLOSE_WAIT, counted against the connection caps.
            if framer != nil, let context {
                // HTTP/1.1: an empty write completes after every write before it.
                let channel = context.channel
                context.writeAndFlush(NIOAny(IOData.byteBuffer(channel.allocator.buffer(capacity: 0)))).whenComplete { _ in
                    channel.close(promise: nil)
                }
            } else if responsesUnwritten == 0 {
                context?.close(promise: nil)
            } else {
                closeWhenWritten = true
            }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if sequencer != nil, error is HTTPParserError {
            // A malformed request: answered in turn, after the responses owed before it.
            dispatch(.malformed(error), sequencer!.receive(.malformed(error), kind: .malformed))
            return
        }
        failed(error)
    }

    /// An error of the client connection, in turn.
    private func failed(_ error: any Error) {
        guard let context else { return }
        if error is HTTPParserError, !responseOpen {
            // A malformed request (NIO's decoder): 400, and the connection closes.
            responseOpen = true
            requestMethod = .GET
            writeResponseHead(
                ProxyResponseHead(version: .http1_1, status: .badRequest, fields: [("connection", "close"), ("content-length", "0")]))
            _ = writeResponseEnd()
        }
        if case .proxying(let exchange) = mode, !exchange.responseFinished {
            shared.metrics.clientAborts.increment()
            exchange.abort()
            mode = .idle
        }
        context.close(promise: nil)
    }

    /// Reads from the client are held while a forwarded body cannot be taken by the upstream, and
    /// (HTTP/1.1) while a request read to its end waits for its response.
    func read(context: ChannelHandlerContext) {
        if case .proxying(let exchange) = mode, !exchange.requestFinished, !exchange.upstreamTakesBody {
            clientReadHeld = true
        } else {
            readOn()
        }
    }

    private func readOn() {
        if sequencer != nil, !sequencer!.read() { return }
        context.read()
    }

    fileprivate func resumeClientReads() {
        guard clientReadHeld else { return }
        clientReadHeld = false
        readOn()
    }

    private func begin(_ head: HTTPRequestHead) {
        requestMethod = head.method
        closeAfterResponse = !head.isKeepAlive
        let authority: String
        let target: String
        switch RequestTarget(head.uri, host: head.headers.first(name: "host")) {
        case .resource(let named, let path):
            (authority, target) = (named, path)
        case .invalid(let reason):
            mode = .discarding
            writeLocal(
                LocalResponse(status: 400, contentType: "text/plain; charset=utf-8", body: Array((reason + "\n").utf8)),
                version: head.version, close: true)
            return
        }
        // The decoder de-chunks a body whose last coding is chunked; the proxy forwards it chunked.
        // Any other coding (gzip, identity, …) would be lost on the way: 501, as nginx answers.
        if !Self.transferCodingIsChunkedOnly(head.headers) {
            mode = .discarding
            writeLocal(
                LocalResponse(
                    status: 501, contentType: "text/plain; charset=utf-8",
                    body: Array("transfer codings other than chunked are not supported\n".utf8)),
                version: head.version, close: true)
            return
        }
        // Traced: the exchange's span opens at the request head, joined to the client's trace.
        var trace: ExchangeTrace?
        var traceStarted: DefaultTracerClock.Instant?
        if OverlayTracing.isOn {
            // Not traced (no traceparent, not picked as a new trace): no tracing work at all.
            let traceparent = head.headers.first(name: "traceparent")
            let draw = random.next()
            if ExchangeTrace.mayTrace(hasTraceparent: traceparent != nil, draw: draw) {
                var headers = [":method": head.method.rawValue, ":path": target, ":authority": authority]
                headers["traceparent"] = traceparent
                for name in ["tracestate", "x-request-id"] {
                    if let value = head.headers.first(name: name) { headers[name] = value }
                }
                trace = ExchangeTrace.start(frontend: "proxy", headers: headers, draw: draw)
                traceStarted = DefaultTracerClock.now
            }
        }
        var core = shared.services.makeExchange(seed: random.next())
        let action = core.requestHead(
            ProxyRequestHead(head: head, authority: authority, target: target), endOfStream: false,
            now: context.eventLoop.now.uptimeNanoseconds)
        shared.services.metrics.record(core.decision)
        if let traceStarted { trace?.recordDecision(core, started: traceStarted) }
        var call: ModelCall?
        var extra: (name: String, value: String)?
        switch action {
        case .passThrough:
            break
        case .answer(let local):
            mode = .discarding
            writeLocal(local, version: head.version)
            trace?.span.attributes["http.response.status_code"] = local.status
            trace?.end()
            return
        case .readBody:
            askTrace = trace
            mode = .asking(Question(core))
            if expectsContinue(head) { writeContinue(head) }
            return
        case .forward(let header, let plan):
            extra = header
            call = shared.services.startCall(plan: plan, config: core.configuration, trace: trace?.call)
        }

        // The body is read (and streamed upstream) at once: the client is told to send it now.
        // Expect is not forwarded, or the app's own 100 would be a second one (nginx does the same).
        let continues = expectsContinue(head)
        if continues { writeContinue(head) }
        let upgrade = decoder != nil && Self.isUpgrade(head)
        let exchange = Exchange(
            handler: self, request: head, target: target, core: consume core, call: call, upgrade: upgrade, trace: trace)
        mode = .proxying(exchange)
        let (upstreamHead, bodiless) = makeUpstreamHead(
            head, authority: authority, target: target, extra: extra, upgrade: upgrade, dropExpect: continues)
        exchange.start(upstreamHead: upstreamHead, bodiless: bodiless)
    }

    private func requestFinished() {
        if case .discarding = mode { mode = .idle }
    }

    /// The exchange is over (whoever wrote its end also closes the connection if it must go).
    fileprivate func exchangeEnded(_ exchange: Exchange) {
        exchange.endTrace()
        guard case .proxying(let current) = mode, current === exchange else { return }
        mode = .idle
        resumeClientReads()
    }

    /// Whether the connection closes after the current response.
    fileprivate var closesAfterResponse: Bool { closeAfterResponse }

    // MARK: - Writing to the client

    /// Response parts written to the client since the last flush (a flush with nothing written
    /// still walks the whole outbound pipeline).
    private var clientUnflushed = false

    /// A response head was written and its end not yet (a 400 for a malformed request goes only
    /// between responses).
    private var responseOpen = false

    fileprivate func writeHead(_ head: ProxyResponseHead) {
        clientUnflushed = true
        responseOpen = true
        writeResponseHead(head)
    }

    fileprivate func writeBody(_ buffer: ByteBuffer) {
        clientUnflushed = true
        guard framer != nil else {
            context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
            return
        }
        guard let (sizeLine, part) = framer!.body(buffer, allocator: allocator) else { return }
        if let sizeLine { writeBytes(sizeLine) }
        writeBytes(part)
    }

    fileprivate func writeBody(_ bytes: [UInt8]) {
        clientUnflushed = true
        guard framer != nil else {
            context.write(wrapOutboundOut(.body(.byteBuffer(allocator.buffer(bytes: bytes)))), promise: nil)
            return
        }
        if let framed = framer!.bodyBytes(bytes, allocator: allocator) { writeBytes(framed) }
    }

    fileprivate func writeEnd(close requested: Bool) {
        clientUnflushed = false
        responseOpen = false
        // A shutdown's last response also closes the connection once written.
        let close = (sequencer?.responseEnded() ?? false) || requested
        defer { if !close { releaseQueued() } }
        if close {
            responseClosing = true
            let channel = context.channel
            writeResponseEnd().whenComplete { _ in channel.close(promise: nil) }
        } else if framer != nil {
            // No promise per response: a half-close between requests waits for the writes itself.
            clientGuard?.responseEnd()
            if let end = framer!.end(allocator: allocator) { writeBytes(end) }
            context.flush()
        } else {
            responsesUnwritten += 1
            let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
            writeResponseEnd().whenComplete { _ in
                let handler = loopBound.value
                handler.responsesUnwritten -= 1
                if handler.responsesUnwritten == 0, handler.closeWhenWritten { handler.context?.close(promise: nil) }
            }
        }
    }

    fileprivate func flushClient() {
        guard clientUnflushed, let context else { return }
        clientUnflushed = false
        context.flush()
    }
    fileprivate func closeClient() { context?.close(promise: nil) }
    fileprivate var eventLoop: any EventLoop { context.eventLoop }
    fileprivate var sharedState: ProxyShared { shared }

    fileprivate func writeLocal(_ local: LocalResponse, version: HTTPVersion = .http1_1, close: Bool = false) {
        if close { closeAfterResponse = true }
        var head = ProxyResponseHead(version: version, status: .init(statusCode: local.status))
        head.fields.reserveCapacity(local.extraHeaders.count + 3)
        head.fields.append(("content-type", local.contentType))
        for (name, value) in local.extraHeaders { head.fields.append((name, value)) }
        head.fields.append(("content-length", String(local.body.count)))
        if closeAfterResponse { head.fields.append(("connection", "close")) }
        responseOpen = true
        writeResponseHead(head)
        if !local.body.isEmpty && local.status != 304 { writeBody(local.body) }
        writeEnd(close: closeAfterResponse)
    }

    // MARK: - Upstream events (the current exchange's connection)

    func upstreamRead(_ part: HTTPClientResponsePart) {
        guard case .proxying(let exchange) = mode else { return }
        exchange.upstreamRead(part)
    }

    func upstreamReadComplete() { flushClient() }

    func upstreamWritabilityChanged() {
        guard case .proxying(let exchange) = mode, exchange.upstreamTakesBody else { return }
        resumeClientReads()
    }

    func upstreamClosed(error: (any Error)?) {
        guard case .proxying(let exchange) = mode else { return }
        exchange.upstreamClosed(error: error)
    }

    var mayReadUpstream: Bool {
        guard case .proxying(let exchange) = mode else { return true }
        return !exchange.holdingResponse && (context?.channel.isWritable ?? false)
    }

    // MARK: - Upgrade

    /// The upstream agreed to switch protocols: the 101 goes to the client, and from here on the
    /// two connections are one tunnel of bytes.
    fileprivate func becomeTunnel(_ response: ProxyResponseHead, upstream: UpstreamConnection) {
        mode = .tunnel
        // A 101 is informational to NIO's codec (no `.end` follows it): the head alone.
        writeResponseHead(response, flush: true)
        let clientPipeline = context.pipeline.syncOperations
        let upstreamPipeline = upstream.channel.pipeline.syncOperations
        let clientSide = TunnelHandler()
        let upstreamSide = TunnelHandler()
        clientSide.partner = upstreamSide
        upstreamSide.partner = clientSide
        do {
            try upstreamPipeline.addHandler(upstreamSide)
            try clientPipeline.addHandler(clientSide)
            // The HTTP handlers go; each decoder, removed last, hands its unparsed bytes (the
            // first bytes of the new protocol) to the tunnel.
            upstreamPipeline.removeHandler(upstream.handler, promise: nil)
            upstreamPipeline.removeHandler(upstream.encoder, promise: nil)
            for handler in codecHandlers { clientPipeline.removeHandler(handler, promise: nil) }
            clientPipeline.removeHandler(context: context, promise: nil)
            upstreamPipeline.removeHandler(upstream.decoder, promise: nil)
            if let decoder { clientPipeline.removeHandler(decoder, promise: nil) }
        } catch {
            shared.services.logger.notice("upgrade failed", metadata: ["error": "\(error)"])
            upstream.channel.close(promise: nil)
            context.close(promise: nil)
        }
    }

    // MARK: - Decisions

    static func headerList(_ headers: HTTPHeaders) -> HeaderList {
        // Field names are ASCII tokens (NIO's decoder takes no other): ASCII case folding, without
        // the Unicode tables of `String.lowercased()`, and the name itself when already lower-case.
        headers.map { (name: ASCIICase.lowercased($0.name), value: $0.value) }
    }

    /// An HTTP/1.1 request announcing `Expect: 100-continue` (RFC 9110 §10.1.1): its client waits
    /// for a 100 (curl for a second) before it sends the body. (HTTP/2 streams are left alone.)
    private func expectsContinue(_ head: HTTPRequestHead) -> Bool {
        // Most requests carry no Expect: the cheap scan first, the list parsing only if there is one.
        decoder != nil && head.version == .http1_1 && head.headers.contains(name: "expect")
            && head.headers[canonicalForm: "expect"].contains { $0.lowercased() == "100-continue" }
    }

    private func writeContinue(_ head: HTTPRequestHead) {
        writeResponseHead(ProxyResponseHead(version: head.version, status: .continue), flush: true)
    }

    /// `Connection: upgrade` with an `Upgrade` field (RFC 9110 §7.8).
    /// No `Transfer-Encoding`, or exactly one coding, `chunked` (RFC 9112 §6.1).
    static func transferCodingIsChunkedOnly(_ headers: HTTPHeaders) -> Bool {
        var codings = 0
        for (name, value) in headers where ASCIICase.equals(name, lowercased: "transfer-encoding") {
            for coding in value.split(separator: ",", omittingEmptySubsequences: false) {
                codings += 1
                var trimmed = coding[...]
                while let first = trimmed.first, first == " " || first == "\t" { trimmed = trimmed.dropFirst() }
                while let last = trimmed.last, last == " " || last == "\t" { trimmed = trimmed.dropLast() }
                guard codings == 1, ASCIICase.equals(String(trimmed), lowercased: "chunked") else { return false }
            }
        }
        return true
    }

    static func isUpgrade(_ head: HTTPRequestHead) -> Bool {
        guard head.headers.contains(name: "upgrade") else { return false }
        return head.headers[canonicalForm: "connection"].contains { $0.lowercased() == "upgrade" }
    }

    /// The request fields ``makeUpstreamHead(_:authority:target:extra:upgrade:dropExpect:)`` treats
    /// apart from the rest.
    enum RequestField: Equatable {
        case transferEncoding, contentLength, expect, forwardedFor, other
        /// `Host`, `X-Forwarded-Proto`, `X-Forwarded-Host`: the proxy writes its own.
        case replacedByTheProxy
    }

    /// What a lower-cased request field name is: by its length, then one or two byte compares
    /// (a `switch` over string literals compares the name with each of them in turn).
    static func requestField(_ lower: String) -> RequestField {
        switch lower.utf8.count {
        case 4: return ASCIICase.equals(lower, lowercased: "host") ? .replacedByTheProxy : .other
        case 6: return ASCIICase.equals(lower, lowercased: "expect") ? .expect : .other
        case 14: return ASCIICase.equals(lower, lowercased: "content-length") ? .contentLength : .other
        case 15: return ASCIICase.equals(lower, lowercased: "x-forwarded-for") ? .forwardedFor : .other
        case 16: return ASCIICase.equals(lower, lowercased: "x-forwarded-host") ? .replacedByTheProxy : .other
        case 17:
            if ASCIICase.equals(lower, lowercased: "transfer-encoding") { return .transferEncoding }
            return ASCIICase.equals(lower, lowercased: "x-forwarded-proto") ? .replacedByTheProxy : .other
        default: return .other
        }
    }

    /// The request for the upstream: the client's end-to-end fields, its Host, X-Forwarded-*, the
    /// body's framing as the client sent it, and (for an upgrade) `Connection: upgrade` with the
    /// client's `Upgrade`. `bodiless`: the client's framing says no body follows (no
    /// `Transfer-Encoding`, no `Content-Length` or 0), so the request's end may go with its head.
    private func makeUpstreamHead(
        _ head: HTTPRequestHead, authority: String, target: String, extra: (name: String, value: String)?, upgrade: Bool,
        dropExpect: Bool
    ) -> (head: UpstreamRequest, bodiless: Bool) {
        // One pass over the client's fields, into the list the encoder writes.
        let source = head.headers
        var fields: [(name: String, value: String)] = []
        fields.reserveCapacity(source.count + 8)  // host, the model header, x-forwarded-*, …
        if !authority.isEmpty { fields.append(("host", authority)) }
        var lengthsAt = fields.count  // Content-Length goes right after Host, as it came
        var forwardedFor: String?  // the client's X-Forwarded-For values, then its address
        var chunked = false
        var bodiless = true
        let named = source.contains(name: "connection") ? HopByHop.named(byConnection: source["connection"]) : []
        let replaced = extra.map { HopByHop.lowercasedASCII($0.name) }
        for (name, value) in source {
            let lower = HopByHop.lowercasedASCII(name)
            switch Self.requestField(lower) {
            case .transferEncoding:
                chunked = true
                bodiless = false
            case .contentLength:
                fields.insert(("content-length", value), at: lengthsAt)
                lengthsAt += 1
                if value != "0" { bodiless = false }
            case .replacedByTheProxy: continue
            case .expect where dropExpect: continue
            case .forwardedFor: forwardedFor = forwardedFor.map { $0 + ", " + value } ?? value
            case .expect, .other:
                if HopByHop.isFixed(lower) || (!named.isEmpty && named.contains(lower)) || lower == replaced { continue }
                fields.append((lower, value))
            }
        }
        if let extra { fields.append((extra.name, extra.value)) }
        if let ip = clientAddress { forwardedFor = forwardedFor.map { $0 + ", " + ip } ?? ip }
        if let forwardedFor { fields.append(("x-forwarded-for", forwardedFor)) }
        fields.append(("x-forwarded-proto", "http"))
        if !authority.isEmpty { fields.append(("x-forwarded-host", authority)) }
        if chunked { fields.append(("transfer-encoding", "chunked")) }
        if upgrade {
            for value in source["upgrade"] { fields.append(("upgrade", value)) }
            fields.append(("connection", "upgrade"))
        }
        // Origin-form under the upstream's base path; `*` (OPTIONS) stays `*`.
        let uri = target == "*" ? target : shared.upstream.basePath + target
        return (UpstreamRequest(method: head.method, uri: uri, fields: fields), bodiless)
    }
}

/// A question to overlayd's ask endpoint, while its body arrives (the core collects it).
final class Question {
    var core: OverlayExchange

    init(_ core: OverlayExchange) { self.core = core }
}

/// NIO's HTTP/1 request head as ``OverlayExchange`` reads it.
struct ProxyRequestHead: ExchangeRequestHead {
    let head: HTTPRequestHead
    let authorityText: String
    let target: String

    init(head: HTTPRequestHead, authority: String, target: String) {
        self.head = head
        self.authorityText = authority
        self.target = target
    }

    var authority: Substring? { authorityText[...] }
    var path: Substring { target[...] }
    var method: Substring { head.method.rawValue[...] }
    func firstValue(_ name: String) -> Substring? { head.headers.first(name: name).map { $0[...] } }
    var fields: HeaderList { ProxyHandler.headerList(head.headers) }
}

/// One forwarded request and its response: the upstream connection it uses, the body's
/// back-pressure, the wait for the overlay's result, and the rewrite.
final class Exchange {
    private unowned let handler: ProxyHandler
    let request: HTTPRequestHead
    let target: String
    /// Every overlay decision of this exchange (the same core as ext_proc mode's).
    private var core: OverlayExchange
    let call: ModelCall?
    let upgrade: Bool

    private(set) var upstream: UpstreamConnection?
    /// Request parts after the head that came before the upstream connection was ready.
    private var pending: [HTTPClientRequestPart] = []
    private(set) var requestFinished = false
    private(set) var responseFinished = false
    private var responseStarted = false
    private var upstreamKeepAlive = true
    /// When the upstream's response head is due (``ProxyHandler/watchHead(until:)`` keeps the timer).
    fileprivate private(set) var headDeadline: NIODeadline?
    private var ended = false

    /// Set while the page waits for its overlay result: upstream parts are held, reads stopped.
    private(set) var holdingResponse = false
    private var held: [HTTPClientResponsePart] = []
    private var resultWait: ResultWait?
    private var waitingHead: ProxyResponseHead?

    /// The exchange's spans when tracing is on.
    private var trace: ExchangeTrace?

    init(
        handler: ProxyHandler, request: HTTPRequestHead, target: String, core: OverlayExchange, call: ModelCall?, upgrade: Bool,
        trace: ExchangeTrace? = nil
    ) {
        self.trace = trace
        self.handler = handler
        self.request = request
        self.target = target
        self.core = core
        self.call = call
        self.upgrade = upgrade
    }

    var upstreamTakesBody: Bool { upstream?.handler.isWritable ?? false }

    /// Safe to send twice: an idempotent method without a body (RFC 9110 §9.2.2).
    private var isReplayable: Bool {
        guard !upgrade, !sentBody else { return false }
        switch request.method {
        case .GET, .HEAD, .OPTIONS: return true
        default: return false
        }
    }

    /// Whether request body bytes went out (then the request is not sent again).
    private var sentBody = false

    private var shared: ProxyShared { handler.sharedState }

    /// The request head as sent to the upstream (kept for one retry, see ``upstreamClosed(error:)``).
    private var upstreamHead: UpstreamRequest?
    private var retried = false
    /// Whether anything of the response came on the current connection.
    private var sawResponseBytes = false

    /// `bodiless`: no body follows the head (its framing says so), so the request's end is sent
    /// with the head, in one flush, instead of when the client's end is read.
    func start(upstreamHead: UpstreamRequest, bodiless: Bool) {
        self.upstreamHead = upstreamHead
        endSentWithHead = bodiless && !upgrade
        acquire(fresh: upgrade)
    }

    /// The request's end went (or goes, once connected) with its head: the client's end is not
    /// forwarded again.
    private var endSentWithHead = false
    /// The head went out on the current connection (``connected(_:)`` sends it first).
    private var headSent = false

    private func acquire(fresh: Bool) {
        let pool = handler.pool
        if !fresh, let idle = pool.takeIdle() {
            connected(idle)
            return
        }
        pool.connect().whenComplete { [self] result in
            switch result {
            case .success(let connection):
                if ended {
                    // The client went away while connecting.
                    connection.handler.close()
                    return
                }
                connected(connection)
            case .failure(let error):
                if !ended { failBeforeHead(error, connecting: true) }
            }
        }
    }

    private func connected(_ connection: UpstreamConnection) {
        upstream = connection
        connection.handler.delegate = handler
        if !headSent, let upstreamHead {
            headSent = true
            connection.encoder.writeHead(upstreamHead)
            connection.handler.wroteBelow()
            // The end of a bodiless request (the last chunk when the encoder framed the head
            // chunked; otherwise nothing on the wire).
            if endSentWithHead { connection.encoder.writeEnd(nil) }
        }
        if !pending.isEmpty {
            for part in pending { connection.handler.write(part) }
            pending.removeAll()
        }
        connection.handler.flush()
        headDeadline = .now() + shared.upstreamTimeout
        handler.watchHead(until: headDeadline!)
        connection.handler.resumeReading()
        handler.resumeClientReads()
    }

    func requestBody(_ chunk: ByteBuffer) {
        guard !ended else { return }
        sentBody = true
        if let upstream {
            upstream.handler.write(.body(.byteBuffer(chunk)))
        } else {
            pending.append(.body(.byteBuffer(chunk)))
        }
    }

    func requestEnd(_ trailers: HTTPHeaders?) {
        requestFinished = true
        guard !ended, !endSentWithHead else { return }
        if let upstream {
            upstream.handler.write(.end(trailers), flush: true)
        } else {
            pending.append(.end(trailers))
        }
    }

    // MARK: Upstream → client

    func upstreamRead(_ part: HTTPClientResponsePart) {
        guard !ended else { return }
        sawResponseBytes = true
        if holdingResponse {
            held.append(part)
            return
        }
        switch part {
        case .head(let head):
            responseHead(head)
        case .body(let chunk):
            responseBody(chunk)
        case .end:
            if let switching, let upstream {
                ended = true
                responseFinished = true
                handler.becomeTunnel(switching, upstream: upstream)
                return
            }
            responseEnd()
        }
    }

    /// The upstream's 101 to an upgrade, until its end.
    private var switching: ProxyResponseHead?

    private func responseHead(_ head: HTTPResponseHead) {
        // 1xx other than 101 are dropped by the decoder; a 101 answers an upgrade.
        headDeadline = nil
        upstreamKeepAlive = head.isKeepAlive
        if head.status == .switchingProtocols, upgrade {
            // The tunnel is made at the 101's `.end` (the decoder is still delivering it now).
            var response = ProxyResponseHead(version: request.version, status: head.status, fields: HopByHop.endToEnd(head.headers))
            for value in head.headers["upgrade"] { response.fields.append(("upgrade", value)) }
            response.fields.append(("connection", "upgrade"))
            switching = response
            return
        }
        guard call != nil else {
            // Not overlaid: the head goes on as it came, less its hop-by-hop fields.
            startResponse(ProxyResponseHead(version: request.version, status: head.status, fields: HopByHop.removed(from: head.headers)))
            return
        }
        // The end-to-end fields go on as they came; the core reads the few it decides on (lower case).
        var kept: [(name: String, value: String)] = []
        var relevant: [(name: String, value: String)] = []
        HopByHop.endToEnd(head.headers, kept: &kept, relevant: ResponsePlan.relevantName, picked: &relevant)
        let action = core.responseHead(
            status: Int(head.status.code), fields: relevant, endOfStream: false, ready: call?.result,
            now: handler.eventLoop.now.uptimeNanoseconds)
        recordInjection()
        switch action {
        case .forward, .forwardSkippingBody:
            break
        case .forwardRewriting, .wait:
            // The body changes: no content-length (the response goes out chunked).
            if relevant.contains(where: { $0.name == "content-length" }) {
                kept.removeAll { ASCIICase.equals($0.name, lowercased: "content-length") }
            }
        }
        let out = ProxyResponseHead(version: request.version, status: head.status, fields: kept)
        if case .wait(let deadline) = action, let call {
            // Hold the response until the result is in or the budget is spent.
            holdingResponse = true
            waitingHead = out
            trace?.waitBegan(.now())
            resultWait = call.whenReady(on: handler.eventLoop, deadline: .uptimeNanoseconds(deadline)) { [weak self] view in
                self?.resultArrived(view)
            }
            return
        }
        startResponse(out)
    }

    private func startResponse(_ head: ProxyResponseHead) {
        responseStarted = true
        trace?.span.attributes["http.response.status_code"] = Int(head.status.code)
        if request.version.major == 1 && request.version.minor == 0 && !head.contains("content-length") {
            // An HTTP/1.0 client learns where the body ends from the close.
            upstreamKeepAliveForClient = false
        }
        handler.writeHead(head)
    }

    /// False when the client connection must close after this response.
    private var upstreamKeepAliveForClient = true

    fileprivate func resultArrived(_ view: OverlayResultView) {
        guard holdingResponse, !ended, let head = waitingHead else { return }
        resultWait = nil
        holdingResponse = false
        waitingHead = nil
        trace?.waitEnded(.now())
        _ = core.resume(with: view)
        startResponse(head)
        let parts = held
        held = []
        for part in parts where !ended {
            switch part {
            case .head: break
            case .body(let chunk): responseBody(chunk)
            case .end: responseEnd()
            }
        }
        handler.flushClient()
        upstream?.handler.resumeReading()
    }

    private func responseBody(_ chunk: ByteBuffer) {
        guard core.rewrite != nil else {
            handler.writeBody(chunk)
            return
        }
        // Only what precedes the insertion point is copied; the rest of the page goes out as
        // slices of the buffers read from the upstream.
        let (emitted, restFrom) = chunk.withUnsafeReadableBytes { core.responseBodySplitting($0, end: false) }
        if !emitted.isEmpty { handler.writeBody(emitted) }
        if restFrom < chunk.readableBytes {
            handler.writeBody(chunk.getSlice(at: chunk.readerIndex + restFrom, length: chunk.readableBytes - restFrom)!)
        }
    }

    private func responseEnd() {
        if core.rewrite != nil {
            if let tail = core.responseBodyEnded(), !tail.isEmpty {
                handler.writeBody(tail)
            }
        }
        recordInjection()
        responseFinished = true
        // A request not read to its end leaves the client connection unusable: it is closed.
        let close = !requestFinished || !upstreamKeepAliveForClient || handler.closesAfterResponse
        if requestFinished {
            finish()
        } else {
            // The upstream answered early: neither connection can carry another exchange.
            ended = true
            upstream?.handler.delegate = nil
            upstream?.handler.close()
            upstream = nil
            handler.exchangeEnded(self)
        }
        // Written after the exchange let go of its upstream connection: the next pipelined
        // request, delivered once this end is written, may reuse it.
        handler.writeEnd(close: close)
    }

    /// Both directions are complete: the upstream connection goes back to its pool.
    private func finish() {
        guard !ended else { return }
        ended = true
        if let upstream {
            self.upstream = nil
            if upstreamKeepAlive {
                handler.pool.release(upstream)
            } else {
                upstream.handler.delegate = nil
                upstream.handler.close()
            }
        }
        handler.exchangeEnded(self)
    }

    func upstreamClosed(error: (any Error)?) {
        guard !ended else { return }
        let closed = upstream
        upstream = nil
        if let closed, closed.reused, !retried, !sawResponseBytes, requestFinished, isReplayable {
            // A kept-alive connection the upstream closed as it was reused (its idle timeout
            // raced this request): the request never reached the app, and it has no body, so it is
            // sent once more on a new connection, as nginx does for idempotent requests.
            retried = true
            headDeadline = nil
            headSent = false
            pending = endSentWithHead ? [] : [.end(nil)]
            shared.metrics.upstreamRetries.increment()
            acquire(fresh: true)
            return
        }
        if !responseStarted {
            failBeforeHead(error ?? UpstreamClosedEarly(), connecting: false)
        } else {
            // Mid-body: the response cannot be completed; closing tells the client it is truncated.
            shared.metrics.upstreamError("body")
            ended = true
            responseFinished = true
            handler.exchangeEnded(self)
            handler.closeClient()
        }
    }

    /// Counts the injection once known, and records it in the trace.
    private func recordInjection() {
        guard let injection = shared.services.metrics.recordInjection(of: &core) else { return }
        trace?.recordInjection(injection, bytes: core.rewrite?.bytesSeen, status: call?.result?.status.rawValue)
    }

    /// The exchange is over: its span ends (once).
    func endTrace() {
        trace?.end()
        trace = nil
    }

    fileprivate func headTimedOut() {
        headDeadline = nil
        guard !ended, !responseStarted, !holdingResponse else { return }
        failBeforeHead(UpstreamTimedOut(), connecting: false)
    }

    /// No response head came: the client gets 502 or 504 (text).
    private func failBeforeHead(_ error: any Error, connecting: Bool) {
        guard !ended else { return }
        stopWaitingAndDropUpstream()
        let failed = ReverseProxy.classify(error, connecting: connecting)
        shared.metrics.upstreamError(failed.kind)
        trace?.span.attributes["http.response.status_code"] = failed.status
        trace?.end(error: "upstream_\(failed.kind)")
        trace = nil
        shared.services.throttled.log(
            level: .notice, "upstream request failed", key: "\(failed.kind)",
            metadata: ["kind": "\(failed.kind)", "error": "\(failed.detail)", "target": "\(target)"])
        ended = true
        responseFinished = true
        handler.exchangeEnded(self)
        let body = Array("overlayd proxy: upstream \(failed.kind): \(failed.detail)\n".utf8)
        handler.writeLocal(
            LocalResponse(status: failed.status, contentType: "text/plain; charset=utf-8", body: body,
                extraHeaders: [("cache-control", "no-store")]),
            version: request.version, close: !requestFinished || upgrade)
    }

    /// The client went away: the upstream connection is closed (its exchange cannot finish).
    func abort() {
        endTrace()
        guard !ended else { return }
        ended = true
        stopWaitingAndDropUpstream()
    }

    /// Timers off, the result's waiter forgotten, and the upstream connection (which cannot
    /// carry another exchange now) closed.
    private func stopWaitingAndDropUpstream() {
        headDeadline = nil
        resultWait?.cancel()
        resultWait = nil
        core.cancel()
        if let upstream {
            upstream.handler.delegate = nil
            upstream.handler.close()
            self.upstream = nil
        }
    }
}

struct UpstreamClosedEarly: Error, CustomStringConvertible {
    var description: String { "the upstream closed the connection before its response head" }
}

struct UpstreamTimedOut: Error, CustomStringConvertible {
    var description: String { "no response head within the upstream timeout" }
}
