import Backends
import GRPCTransport
import CoreMetrics
import ExtProcCore
import ExtProcProto
import Logging
import NIOCore
import OverlayCore
import OverlayRuntime
import SwiftProtobuf

/// What every stream of one server shares: read-only after start, or synchronised inside.
final class ExtProcShared: Sendable {
    static let processPath = "/envoy.service.ext_proc.v3.ExternalProcessor/Process"
    static let healthCheckPath = "/grpc.health.v1.Health/Check"
    static let healthWatchPath = "/grpc.health.v1.Health/Watch"

    /// The configuration, engine, codec and overlay metrics (shared with the proxy's kind).
    let services: ExchangeServices
    let health: HealthState
    let metrics: ExtProcMetrics
    let maxMessageBytes: Int
    /// `CannedResponse.rawValue` → its gRPC frame, encoded once.
    let cannedFrames: [ByteBuffer]

    init(services: ExchangeServices, health: HealthState, metrics: ExtProcMetrics, maxMessageBytes: Int) {
        self.services = services
        self.health = health
        self.metrics = metrics
        self.maxMessageBytes = maxMessageBytes
        let allocator = ByteBufferAllocator()
        cannedFrames = CannedResponse.allCases.map { canned in
            // Encoding a message we build ourselves cannot fail.
            try! GRPCFrame.encode(canned.message, allocator: allocator)
        }
    }
}

/// What a stream needs from its connection (``ExtProcH2Connection`` on libnghttp2): the stream
/// knows nothing of the HTTP/2 layer.
protocol ExtProcConnection: AnyObject {
    var context: ChannelHandlerContext? { get }
    /// Seeds the per-exchange random sources (splits without a user key, shadow sampling).
    func nextSeed() -> UInt64
    /// A stream's partial-message bytes changed by `delta` (the connection's buffer budget).
    func bufferedChanged(context: ChannelHandlerContext, by delta: Int)
    /// One gRPC message frame (the transport sends the response headers with the first).
    func sendMessage(_ context: ChannelHandlerContext, stream: Int32, frame: ByteBuffer)
    /// Ends our side: trailers, or a trailers-only response when nothing was sent; with
    /// `thenReset`, RST_STREAM(NO_ERROR) once the end is written.
    func sendEnd(_ context: ChannelHandlerContext, stream: Int32, _ end: GRPCStreamEnd, trailersOnly: Bool, thenReset: Bool)
    /// Writes what was sent outside a read (timers, results, health changes).
    func flush(_ context: ChannelHandlerContext)
}

/// One HTTP/2 stream: a `Process` call (the ext_proc exchange), a health call, or a rejection.
///
/// Protocol work only: gRPC framing, status. Every decision about the exchange is the
/// core's ``ExchangeStateMachine``; this object feeds it messages in order and writes its answers,
/// synchronously on the event loop. It lives in its connection's ``ExtProcH2Connection`` (one per
/// stream, no child channel), which drops it when libnghttp2 reports the stream closed: an
/// RST_STREAM from Envoy (its normal end, §1) just frees it.
final class ExtProcStream {
    typealias Context = ChannelHandlerContext

    enum Mode {
        case awaitingHeaders
        case process
        case healthCheck
        case healthWatch
        /// The response has ended (status sent); everything else from the peer is ignored.
        case closed
    }

    let shared: ExtProcShared
    let streamID: Int32
    /// Unowned: the connection owns every stream and outlives it.
    unowned let connection: any ExtProcConnection
    var mode = Mode.awaitingHeaders
    /// The exchange's protocol state machine (set for `Process` calls).
    var machine: ExchangeStateMachine?
    var reader: GRPCMessageReader
    var responseHeadersSent = false
    var countedOpen = false
    /// Registered with HealthState as a Watch, and the last status sent to it.
    var watching = false
    var lastWatchStatus: Bool?
    /// The client sent END_STREAM.
    var peerEnded = false
    var deadline: Scheduled<Void>?
    /// The served model's call of an overlaid exchange, and its result once in.
    var call: ModelCall?
    /// The response headers wait for the result (up to the latency budget); messages that came
    /// after them are queued, in order.
    var paused = false
    var wait: ResultWait?
    var queued: [ByteBuffer] = []
    /// The exchange's spans when tracing is on (opened at request headers).
    var trace: ExchangeTrace?

    init(id: Int32, connection: any ExtProcConnection, shared: ExtProcShared) {
        self.streamID = id
        self.connection = connection
        self.shared = shared
        self.reader = GRPCMessageReader(maxMessageBytes: shared.maxMessageBytes)
    }

    /// The response ended, or the stream is gone (closed or reset): free what it holds. Idempotent.
    func reportBuffered(context: ChannelHandlerContext) {
        let now = reader.bufferedBytes
        if now != reportedBuffered {
            connection.bufferedChanged(context: context, by: now - reportedBuffered)
            reportedBuffered = now
        }
    }

    func release() {
        deadline?.cancel()
        deadline = nil
        wait?.cancel()
        wait = nil
        paused = false
        queued = []
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
        trace?.end()
        trace = nil
    }

    /// The request head arrived (`endStream`: and nothing more will).
    func headersReceived(context: Context, head: GRPCRequestHead, endStream: Bool) {
        if case .awaitingHeaders = mode { start(context: context, head: head) }
        if endStream { clientEnded(context: context) }
    }

    /// The server is draining (GOAWAY sent): end health watches with NOT_SERVING.
    func quiesce(context: Context) {
        if case .healthWatch = mode {
            writeHealth(context: context, serving: false)
            end(context: context, .ok)
        }
    }

    // MARK: - Stream start

    func start(context: ChannelHandlerContext, head: GRPCRequestHead) {
        let path = head.path
        let method = head.method
        let contentType = head.contentType
        let encoding = head.encoding
        let timeout = head.timeout
        guard method == "POST" else {
            return rejectHTTP(context: context, status: 405)
        }
        guard contentType.hasPrefix("application/grpc") else {
            return rejectHTTP(context: context, status: 415)
        }
        if let encoding, encoding != "identity" {
            return finishTrailersOnly(
                context: context, .unimplemented, "grpc-encoding \(encoding) is not supported; use identity",
                extra: [("grpc-accept-encoding", "identity")])
        }
        switch path {
        case ExtProcShared.processPath:
            machine = ExchangeStateMachine(exchange: shared.services.makeExchange(seed: connection.nextSeed()))
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
            guard let nanos = GRPCTimeout.parse(timeout) else {
                return finishTrailersOnly(context: context, .invalidArgument, "malformed grpc-timeout \(timeout)")
            }
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            deadline = context.eventLoop.scheduleTask(in: .nanoseconds(nanos)) {
                let (stream, context) = loopBound.value
                stream.deadlineExceeded(context: context)
                stream.connection.flush(context)
            }
        }
    }

    func deadlineExceeded(context: ChannelHandlerContext) {
        if case .closed = mode { return }
        shared.metrics.error("deadline_exceeded")
        end(context: context, GRPCStatusCode.deadlineExceeded.end("deadline exceeded"), thenReset: true)
    }

    // MARK: - Messages

    /// Bytes this stream holds in a partial message (reported to the connection's budget).
    var reportedBuffered = 0

    func received(context: ChannelHandlerContext, bytes: ByteBuffer) {
        if case .closed = mode { return }
        if case .awaitingHeaders = mode { return }
        reader.append(bytes)
        defer { reportBuffered(context: context) }
        drain(context: context)
    }

    /// Processes every complete message the reader holds (unless paused for a result).
    func drain(context: ChannelHandlerContext) {
        while true {
            if paused {
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

    func encode(context: ChannelHandlerContext, _ message: ProcessingResponse) -> ByteBuffer? {
        do {
            return try GRPCFrame.encode(message, allocator: context.channel.allocator)
        } catch {
            finishTrailersOnlyOrEnd(context: context, .internal, "cannot encode the answer: \(error)")
            return nil
        }
    }

    func encode(context: ChannelHandlerContext, _ messages: [ProcessingResponse]) -> ByteBuffer? {
        do {
            return try GRPCFrame.encode(messages, allocator: context.channel.allocator)
        } catch {
            finishTrailersOnlyOrEnd(context: context, .internal, "cannot encode the answer: \(error)")
            return nil
        }
    }

    /// A protocol violation ends this stream only, with status OK so that Envoy continues the HTTP
    /// exchange unprocessed (fail open, envoy-ext-proc.md §13); the message says what went wrong.
    func protocolFailure(context: ChannelHandlerContext, _ error: ExchangeError) {
        shared.metrics.error(error.kind.name)
        trace?.end(error: error.kind.name)
        trace = nil
        shared.services.throttled.log(
            level: .notice, "ext_proc stream ended by a protocol error; Envoy continues unprocessed",
            key: error.kind.name, metadata: ["kind": "\(error.kind)", "error": "\(error.message)"])
        // Answers already written and our trailers must leave before the stream is reset (a reset
        // purges frames still queued for flow control), so close once the trailers are written:
        // the RST_STREAM then only stops the peer sending more on this stream.
        finishTrailersOnlyOrEnd(context: context, .ok, "overlayd: \(error.kind): \(error.message)", thenReset: true)
    }

    func clientEnded(context: ChannelHandlerContext) {
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
            if paused { return }  // answered when the result arrives (resume re-checks)
            if reader.hasPartialMessage {
                shared.metrics.error(ExchangeError.Kind.framing.name)
                finishTrailersOnlyOrEnd(context: context, .ok, "overlayd: framing: stream ended inside a message")
            } else {
                finishTrailersOnlyOrEnd(context: context, .ok, nil)
            }
        }
    }

    // MARK: - Writing

    func writeMessage(context: ChannelHandlerContext, frame: ByteBuffer) {
        responseHeadersSent = true
        connection.sendMessage(context, stream: streamID, frame: frame)
    }

    /// Ends the response with trailers (response headers are sent first if they were not).
    func end(context: ChannelHandlerContext, _ end: GRPCStreamEnd, thenReset: Bool = false) {
        if case .closed = mode { return }
        responseHeadersSent = true
        writeLast(context: context, end, trailersOnly: false, thenReset: thenReset)
    }

    func finishTrailersOnlyOrEnd(
        context: ChannelHandlerContext, _ code: GRPCStatusCode, _ message: String?, thenReset: Bool = false
    ) {
        if responseHeadersSent {
            end(context: context, code.end(message), thenReset: thenReset)
        } else {
            finishTrailersOnly(context: context, code, message, thenReset: thenReset)
        }
    }

    func finishTrailersOnly(
        context: ChannelHandlerContext, _ code: GRPCStatusCode, _ message: String?, extra: [(String, String)] = [],
        thenReset: Bool = false
    ) {
        if case .closed = mode { return }
        responseHeadersSent = true
        writeLast(context: context, code.end(message, extra: extra), trailersOnly: true, thenReset: thenReset)
    }

    /// Writes the end of our side; with `thenReset` (and the client's side still open), the stream
    /// is reset once that end has been written (not before: a reset purges frames still queued).
    func writeLast(context: ChannelHandlerContext, _ end: GRPCStreamEnd, trailersOnly: Bool, thenReset: Bool) {
        // gRPC over HTTP/2: a server that ends before the client resets with NO_ERROR (CANCEL would
        // read as a cancelled call).
        connection.sendEnd(context, stream: streamID, end, trailersOnly: trailersOnly, thenReset: thenReset && !peerEnded)
        release()
    }

    func rejectHTTP(context: ChannelHandlerContext, status: Int) {
        responseHeadersSent = true
        writeLast(context: context, .http(status: status), trailersOnly: true, thenReset: true)
    }

}

@available(*, unavailable)
extension ExtProcStream: Sendable {}
