import Backends
import CoreMetrics
import ExtProcCore
import ExtProcProto
import Logging
import NIOCore
import NIOHPACK
import NIOHTTP2
import OverlayCore
import SwiftProtobuf

/// What every stream of one server shares: read-only after start, or synchronised inside.
final class ExtProcShared: Sendable {
    static let processPath = "/envoy.service.ext_proc.v3.ExternalProcessor/Process"
    static let healthCheckPath = "/grpc.health.v1.Health/Check"
    static let healthWatchPath = "/grpc.health.v1.Health/Watch"

    let configStore: ConfigStore
    let health: HealthState
    let metrics: ExtProcMetrics
    let logger: Logger
    /// Protocol errors can repeat on every stream (a misconfigured Envoy): their lines are throttled.
    let throttled: ThrottledLogger
    let maxMessageBytes: Int
    /// Runs model calls (nil: overlaid exchanges get a failed result, e.g. in protocol-only tests).
    let engine: OverlayEngine?
    /// gzip/deflate for injecting into encoded pages.
    let codec = CompressCodec()
    /// `CannedResponse.rawValue` → its gRPC frame, encoded once.
    let cannedFrames: [ByteBuffer]

    init(
        configStore: ConfigStore, health: HealthState, metrics: ExtProcMetrics, logger: Logger, maxMessageBytes: Int,
        engine: OverlayEngine? = nil
    ) {
        self.engine = engine
        self.configStore = configStore
        self.health = health
        self.metrics = metrics
        self.logger = logger
        self.throttled = ThrottledLogger(logger)
        self.maxMessageBytes = maxMessageBytes
        let allocator = ByteBufferAllocator()
        cannedFrames = CannedResponse.allCases.map { canned in
            // Encoding a message we build ourselves cannot fail.
            try! GRPCFrame.encode(canned.message, allocator: allocator)
        }
    }
}

/// One HTTP/2 stream: a `Process` call (the ext_proc exchange), a health call, or a rejection.
///
/// Protocol work only: gRPC framing, HTTP/2 frames, status. Every decision about the exchange is the
/// core's ``ExchangeStateMachine``; this object feeds it messages in order and writes its answers,
/// synchronously on the event loop. It lives in its connection's ``ExtProcConnectionHandler``
/// (one per stream, no child channel), which drops it when swift-nio-http2 reports the stream
/// closed: an RST_STREAM from Envoy (its normal end, §1) just frees it.
final class ExtProcStream {
    typealias Context = ChannelHandlerContext

    private enum Mode {
        case awaitingHeaders
        case process
        case healthCheck
        case healthWatch
        /// The response has ended (status sent); everything else from the peer is ignored.
        case closed
    }

    private let shared: ExtProcShared
    private let streamID: HTTP2StreamID
    /// Unowned: the connection handler owns every stream and outlives it.
    private unowned let connection: ExtProcConnectionHandler
    private var mode = Mode.awaitingHeaders
    /// The exchange's protocol state machine (set for `Process` calls).
    private var machine: ExchangeStateMachine?
    private var reader: GRPCMessageReader
    private var responseHeadersSent = false
    private var countedOpen = false
    /// Registered with HealthState as a Watch, and the last status sent to it.
    private var watching = false
    private var lastWatchStatus: Bool?
    /// The client sent END_STREAM.
    private var peerEnded = false
    private var deadline: Scheduled<Void>?
    /// The config snapshot of this exchange (the machine's), for the engine.
    private var config: OverlayConfig?
    /// The served model's call of an overlaid exchange, and its result once in.
    private var call: ModelCall?
    /// Response headers waiting for the result (up to the latency budget), and what came after.
    private var paused: ProcessingRequest?
    private var pausedStarted: NIODeadline?
    private var queued: [ByteBuffer] = []
    private var budgetTimer: Scheduled<Void>?
    /// The injection outcome was counted (once per exchange).
    private var countedInjection = false

    init(id: HTTP2StreamID, connection: ExtProcConnectionHandler, shared: ExtProcShared) {
        self.streamID = id
        self.connection = connection
        self.shared = shared
        self.reader = GRPCMessageReader(maxMessageBytes: shared.maxMessageBytes)
    }

    /// The response ended, or the stream is gone (closed or reset): free what it holds. Idempotent.
    private func reportBuffered(context: ChannelHandlerContext) {
        let now = reader.bufferedBytes
        if now != reportedBuffered {
            connection.bufferedChanged(context: context, by: now - reportedBuffered)
            reportedBuffered = now
        }
    }

    func release() {
        deadline?.cancel()
        deadline = nil
        budgetTimer?.cancel()
        budgetTimer = nil
        paused = nil
        queued = []
        call?.forgetWaiter()
        call = nil
        reader = GRPCMessageReader(maxMessageBytes: shared.maxMessageBytes)
        if reportedBuffered != 0, let context = connection.context {
            connection.bufferedChanged(context: context, by: -reportedBuffered)
            reportedBuffered = 0
        }
        if watching {
            watching = false
            shared.health.removeWatcher(ObjectIdentifier(self))
        }
        if countedOpen {
            countedOpen = false
            shared.metrics.streamsOpen.decrement()
        }
        mode = .closed
        machine = nil
    }

    /// A frame for this stream from the peer.
    func read(context: Context, payload: HTTP2Frame.FramePayload) {
        switch payload {
        case .headers(let headers):
            if case .awaitingHeaders = mode {
                start(context: context, headers: headers.headers)
                if headers.endStream { clientEnded(context: context) }
            } else if headers.endStream {
                // Client trailers (gRPC clients send none, but HTTP/2 allows them): end of input.
                clientEnded(context: context)
            }
        case .data(let frame):
            if case .byteBuffer(let buffer) = frame.data, buffer.readableBytes > 0 {
                received(context: context, bytes: buffer)
            }
            if frame.endStream { clientEnded(context: context) }
        default:
            break
        }
    }

    /// The server is draining (GOAWAY sent): end health watches with NOT_SERVING.
    func quiesce(context: Context) {
        if case .healthWatch = mode {
            writeHealth(context: context, serving: false)
            end(context: context, trailers: GRPCHeaders.okTrailers)
        }
    }

    // MARK: - Stream start

    private func start(context: ChannelHandlerContext, headers: HPACKHeaders) {
        var path = ""
        var method = ""
        var contentType = ""
        var encoding: String?
        var timeout: String?
        for (name, value, _) in headers {
            switch name {
            case ":path": path = value
            case ":method": method = value
            case "content-type": contentType = value
            case "grpc-encoding": encoding = value
            case "grpc-timeout": timeout = value
            default: break
            }
        }
        guard method == "POST" else {
            return rejectHTTP(context: context, status: "405")
        }
        guard contentType.hasPrefix("application/grpc") else {
            return rejectHTTP(context: context, status: "415")
        }
        if let encoding, encoding != "identity" {
            return finishTrailersOnly(
                context: context, .unimplemented, "grpc-encoding \(encoding) is not supported; use identity",
                extra: [("grpc-accept-encoding", "identity")])
        }
        switch path {
        case ExtProcShared.processPath:
            let snapshot = shared.configStore.current
            config = snapshot
            machine = ExchangeStateMachine(
                config: snapshot, seed: connection.nextSeed(), results: shared.engine?.results, codec: shared.codec)
            mode = .process
            countedOpen = true
            shared.metrics.streamsOpen.increment()
            shared.metrics.streamsTotal.increment()
        case ExtProcShared.healthCheckPath:
            mode = .healthCheck
        case ExtProcShared.healthWatchPath:
            mode = .healthWatch
        default:
            return finishTrailersOnly(context: context, .unimplemented, "unknown method \(path)")
        }
        if let timeout {
            guard let nanos = GRPCHeaders.parseTimeout(timeout) else {
                return finishTrailersOnly(context: context, .invalidArgument, "malformed grpc-timeout \(timeout)")
            }
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            deadline = context.eventLoop.scheduleTask(in: .nanoseconds(nanos)) {
                let (stream, context) = loopBound.value
                stream.deadlineExceeded(context: context)
                context.flush()
            }
        }
    }

    private func deadlineExceeded(context: ChannelHandlerContext) {
        if case .closed = mode { return }
        shared.metrics.error("deadline_exceeded")
        end(context: context, trailers: GRPCHeaders.trailers(.deadlineExceeded, message: "deadline exceeded"), thenReset: true)
    }

    // MARK: - Messages

    /// Bytes this stream holds in a partial message (reported to the connection's budget).
    private var reportedBuffered = 0

    private func received(context: ChannelHandlerContext, bytes: ByteBuffer) {
        if case .closed = mode { return }
        if case .awaitingHeaders = mode { return }
        reader.append(bytes)
        defer { reportBuffered(context: context) }
        drain(context: context)
    }

    /// Processes every complete message the reader holds (unless paused for a result).
    private func drain(context: ChannelHandlerContext) {
        while true {
            if paused != nil {
                // Waiting for the AI result: keep later messages, in order, until it resumes.
                while let next = try? reader.next() { queued.append(next) }
                return
            }
            let payload: ByteBuffer
            do throws(GRPCMessageReader.Failure) {
                guard let next = try reader.next() else { return }
                payload = next
            } catch {
                let text: String
                switch error {
                case .compressed: text = "compressed message without a negotiated grpc-encoding"
                case .tooLarge(let size, let limit): text = "message of \(size) bytes exceeds the limit of \(limit) (--max-message-bytes)"
                case .badFlag(let flag): text = "invalid gRPC frame flag \(flag)"
                }
                return protocolFailure(context: context, ExchangeError(.framing, text))
            }
            switch mode {
            case .process:
                if !process(context: context, payload: payload) { return }
            case .healthCheck:
                return answerHealthCheck(context: context, payload: payload)
            case .healthWatch:
                guard decodeHealthRequest(context: context, payload: payload) != nil else { return }
                watchHealth(context: context)
            case .awaitingHeaders, .closed:
                return
            }
        }
    }

    /// Steps the core with one message and writes its answer. Returns false when the stream ended
    /// or paused (waiting for the AI result).
    private func process(context: ChannelHandlerContext, payload: ByteBuffer) -> Bool {
        let request: ProcessingRequest
        do {
            request = try ProcessingRequest(serializedBytes: ProtobufBytes(payload))
        } catch {
            protocolFailure(context: context, ExchangeError(.undecodable, "ProcessingRequest does not decode: \(error)"))
            return false
        }
        if let phase = ExchangePhase(of: request) {
            shared.metrics.messages[phase.rawValue].increment()
        }
        if request.carriesUnknownFields { shared.metrics.unknownFields.increment() }
        if let call, machine?.result == nil, machine?.wantsResult(for: request) == true {
            if let result = call.result {
                machine?.result = result
            } else {
                let budget = TimeAmount.milliseconds(Int64(machine?.overlaySettings?.latencyBudgetMs ?? 0))
                let remaining = call.started + budget - NIODeadline.now()
                if remaining <= .zero {
                    machine?.result = pendingView(call)
                } else {
                    pause(context: context, request, for: remaining)
                    return false
                }
            }
        }
        return handle(context: context, request)
    }

    private func pendingView(_ call: ModelCall) -> OverlayResultView {
        call.pendingView
    }

    /// Holds the response headers until the result arrives or the latency budget runs out.
    private func pause(context: ChannelHandlerContext, _ request: ProcessingRequest, for remaining: TimeAmount) {
        paused = request
        pausedStarted = .now()
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        budgetTimer = context.eventLoop.scheduleTask(in: remaining) {
            let (stream, context) = bound.value
            stream.resume(context: context)
        }
    }

    /// The result arrived or the budget ran out: answer the held headers, then what queued behind.
    private func resume(context: ChannelHandlerContext) {
        guard let request = paused, let call else { return }
        paused = nil
        budgetTimer?.cancel()
        budgetTimer = nil
        machine?.result = call.result ?? pendingView(call)
        guard handle(context: context, request) else {
            context.flush()
            return
        }
        let backlog = queued
        queued = []
        for payload in backlog {
            guard process(context: context, payload: payload) else {
                // Paused again (cannot happen: the result is set) or ended.
                if paused != nil { queued.append(contentsOf: backlog.drop(while: { $0 != payload }).dropFirst()) }
                context.flush()
                return
            }
        }
        drain(context: context)
        if peerEnded, case .process = mode { clientEnded(context: context) }
        context.flush()
    }

    private func handle(context: ChannelHandlerContext, _ request: ProcessingRequest) -> Bool {
        let started = NIODeadline.now()
        let action: ExchangeAction
        do throws(ExchangeError) {
            action = try machine!.receive(request)
        } catch {
            protocolFailure(context: context, error)
            return false
        }
        switch request.request {
        case .requestHeaders: countDecision(machine?.decision)
        case .responseHeaders, .responseBody: countInjection()
        default: break
        }

        switch action {
        case .none:
            break
        case .respondAndCall(let answer, let plan):
            guard let frame = encode(context: context, answer.message) else { return false }
            writeMessage(context: context, frame: frame)
            startCall(context: context, plan: plan)
        case .answerAsk(let plan):
            startCall(context: context, plan: plan)
            let view = call.map(pendingView) ?? OverlayResultView(overlay: plan.overlay, model: plan.model, token: "", status: .failed)
            guard let frame = encode(context: context, ExchangeStateMachine.askAnswer(view)) else { return false }
            writeMessage(context: context, frame: frame)
        case .respond(.canned(let canned)):
            writeMessage(context: context, frame: shared.cannedFrames[canned.rawValue])
        case .respond(.message(let message)):
            guard let frame = encode(context: context, message) else { return false }
            writeMessage(context: context, frame: frame)
        case .respondStreamed(let messages):
            guard let frame = encode(context: context, messages) else { return false }
            writeMessage(context: context, frame: frame)
        }
        shared.metrics.processing.recordNanoseconds(Int64((NIODeadline.now() - started).nanoseconds))
        return true
    }

    private func countDecision(_ decision: RequestDecision?) {
        switch decision {
        case .passThrough, nil: shared.metrics.passThrough.increment()
        case .overlay: shared.metrics.overlaid.increment()
        case .ownEndpoint, .result, .ask: shared.metrics.ownEndpoint.increment()
        }
    }

    private func countInjection() {
        guard !countedInjection, let machine else { return }
        if case .untouched(let reason)? = machine.responsePlan {
            countedInjection = true
            shared.metrics.injections["skipped|" + reason]?.increment()
        } else if let outcome = machine.rewrite?.outcome {
            countedInjection = true
            shared.metrics.injections[outcome + "|"]?.increment()
        }
    }

    /// Starts the served model's call (it overlaps the upstream's work).
    private func startCall(context: ChannelHandlerContext, plan: OverlayPlan) {
        guard let engine = shared.engine, let config else {
            let call = ModelCall(token: "", plan: plan, started: .now())
            call.complete(OverlayResultView(overlay: plan.overlay, model: plan.model, token: "", status: .failed, error: "no engine"))
            self.call = call
            return
        }
        let started = engine.start(plan: plan, config: config)
        call = started
        let loop = context.eventLoop
        let bound = NIOLoopBound((self, context), eventLoop: loop)
        started.onResult { _ in
            // Told only while the stream lives (release() forgets the waiter), so the loop is up.
            loop.execute {
                let (stream, context) = bound.value
                guard stream.call === started, stream.paused != nil else { return }
                stream.resume(context: context)
            }
        }
    }

    private func encode(context: ChannelHandlerContext, _ message: ProcessingResponse) -> ByteBuffer? {
        do {
            return try GRPCFrame.encode(message, allocator: context.channel.allocator)
        } catch {
            finishTrailersOnlyOrEnd(context: context, .internal, "cannot encode the answer: \(error)")
            return nil
        }
    }

    private func encode(context: ChannelHandlerContext, _ messages: [ProcessingResponse]) -> ByteBuffer? {
        do {
            return try GRPCFrame.encode(messages, allocator: context.channel.allocator)
        } catch {
            finishTrailersOnlyOrEnd(context: context, .internal, "cannot encode the answer: \(error)")
            return nil
        }
    }

    /// A protocol violation ends this stream only, with status OK so that Envoy continues the HTTP
    /// exchange unprocessed (fail open, envoy-ext-proc.md §13); the message says what went wrong.
    private func protocolFailure(context: ChannelHandlerContext, _ error: ExchangeError) {
        shared.metrics.error(error.kind.name)
        shared.throttled.log(
            level: .notice, "ext_proc stream ended by a protocol error; Envoy continues unprocessed",
            key: error.kind.name, metadata: ["kind": "\(error.kind)", "error": "\(error.message)"])
        // Answers already written and our trailers must leave before the stream is reset (a reset
        // purges frames still queued for flow control), so close once the trailers are written:
        // the RST_STREAM then only stops the peer sending more on this stream.
        finishTrailersOnlyOrEnd(context: context, .ok, "overlayd: \(error.kind): \(error.message)", thenReset: true)
    }

    private func clientEnded(context: ChannelHandlerContext) {
        peerEnded = true
        switch mode {
        case .closed:
            return
        case .awaitingHeaders, .healthWatch:
            return
        case .healthCheck:
            // Ended without a request message.
            finishTrailersOnlyOrEnd(context: context, .internal, "Health/Check needs one request message")
        case .process:
            if paused != nil { return }  // answered when the result arrives (resume re-checks)
            if reader.hasPartialMessage {
                shared.metrics.error(ExchangeError.Kind.framing.name)
                finishTrailersOnlyOrEnd(context: context, .ok, "overlayd: framing: stream ended inside a message")
            } else {
                finishTrailersOnlyOrEnd(context: context, .ok, nil)
            }
        }
    }

    // MARK: - Health

    private func decodeHealthRequest(context: ChannelHandlerContext, payload: ByteBuffer) -> String? {
        do {
            let request = try Grpc_Health_V1_HealthCheckRequest(serializedBytes: ProtobufBytes(payload))
            guard HealthState.services.contains(request.service) else {
                finishTrailersOnlyOrEnd(context: context, .notFound, "unknown service \(request.service)")
                return nil
            }
            return request.service
        } catch {
            finishTrailersOnlyOrEnd(context: context, .invalidArgument, "HealthCheckRequest does not decode")
            return nil
        }
    }

    private func answerHealthCheck(context: ChannelHandlerContext, payload: ByteBuffer) {
        guard let service = decodeHealthRequest(context: context, payload: payload) else { return }
        writeHealth(context: context, serving: shared.health.isServing, service: service)
        end(context: context, trailers: GRPCHeaders.okTrailers)
    }

    /// A Watch call: the current status now, then every change (config turning valid, draining).
    private func watchHealth(context: ChannelHandlerContext) {
        let loop = context.eventLoop
        let bound = NIOLoopBound((self, context), eventLoop: loop)
        shared.health.addWatcher(ObjectIdentifier(self)) { serving in
            loop.execute {
                let (stream, context) = bound.value
                guard case .healthWatch = stream.mode else { return }
                stream.writeHealth(context: context, serving: serving)
                context.flush()
            }
        }
        watching = true
        writeHealth(context: context, serving: shared.health.isServing)
    }

    private func writeHealth(context: ChannelHandlerContext, serving: Bool, service: String = "") {
        if case .healthWatch = mode {
            guard lastWatchStatus != serving else { return }  // a Watch sends changes only
            lastWatchStatus = serving
        }
        var response = Grpc_Health_V1_HealthCheckResponse()
        response.status = serving ? .serving : .notServing
        guard let frame = try? GRPCFrame.encode(response, allocator: context.channel.allocator) else { return }
        writeMessage(context: context, frame: frame)
    }

    // MARK: - Writing

    private func writeMessage(context: ChannelHandlerContext, frame: ByteBuffer) {
        if !responseHeadersSent {
            responseHeadersSent = true
            write(context, .headers(.init(headers: GRPCHeaders.responseHeaders)))
        }
        write(context, .data(.init(data: .byteBuffer(frame))))
    }

    /// Ends the response with trailers (after response headers were sent).
    private func end(context: ChannelHandlerContext, trailers: HPACKHeaders, thenReset: Bool = false) {
        if case .closed = mode { return }
        if !responseHeadersSent {
            responseHeadersSent = true
            write(context, .headers(.init(headers: GRPCHeaders.responseHeaders)))
        }
        writeLast(context: context, .headers(.init(headers: trailers, endStream: true)), thenReset: thenReset)
    }

    private func finishTrailersOnlyOrEnd(
        context: ChannelHandlerContext, _ code: GRPCStatusCode, _ message: String?, thenReset: Bool = false
    ) {
        if responseHeadersSent {
            end(context: context, trailers: GRPCHeaders.trailers(code, message: message), thenReset: thenReset)
        } else {
            finishTrailersOnly(context: context, code, message, thenReset: thenReset)
        }
    }

    private func finishTrailersOnly(
        context: ChannelHandlerContext, _ code: GRPCStatusCode, _ message: String?, extra: [(String, String)] = [],
        thenReset: Bool = false
    ) {
        if case .closed = mode { return }
        responseHeadersSent = true
        let headers = GRPCHeaders.trailersOnly(code, message: message, extra: extra)
        writeLast(context: context, .headers(.init(headers: headers, endStream: true)), thenReset: thenReset)
    }

    /// Writes the frame that ends our side of the stream; with `thenReset`, resets the stream once
    /// that frame has been written (not before: a reset purges frames still queued).
    private func writeLast(context: ChannelHandlerContext, _ frame: HTTP2Frame.FramePayload, thenReset: Bool) {
        if thenReset && !peerEnded {
            // gRPC over HTTP/2: a server that ends before the client resets with NO_ERROR (CANCEL
            // would read as a cancelled call), and only once our last frame has been written: a
            // reset purges frames still queued for flow control.
            let written = context.eventLoop.makePromise(of: Void.self)
            let id = streamID
            let connection = self.connection
            write(context, frame, promise: written)
            written.futureResult.assumeIsolated().whenSuccess {
                connection.write(context, HTTP2Frame(streamID: id, payload: .rstStream(.noError)), promise: nil)
                context.flush()
            }
        } else {
            write(context, frame)
        }
        release()
    }

    private func write(_ context: Context, _ payload: HTTP2Frame.FramePayload, promise: EventLoopPromise<Void>? = nil) {
        connection.write(context, HTTP2Frame(streamID: streamID, payload: payload), promise: promise)
    }

    private func rejectHTTP(context: ChannelHandlerContext, status: String) {
        responseHeadersSent = true
        let headers: HPACKHeaders = [":status": status]
        writeLast(context: context, .headers(.init(headers: headers, endStream: true)), thenReset: true)
    }

}

@available(*, unavailable)
extension ExtProcStream: Sendable {}
