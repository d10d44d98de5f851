import CoreMetrics
import ExtProcCore
import ExtProcProto
import NIOCore
import OverlayCore
import OverlayRuntime
import SwiftProtobuf
import Tracing

/// The `Process` call: each gRPC message is decoded, handed to the core (``ExchangeStateMachine``,
/// over the transport-neutral ``OverlayExchange``) and its answer encoded and written; the model
/// call is started when the core asks, and the response headers wait for its result when the core
/// says so (the latency budget), with every later message queued behind them.
extension ExtProcStream {
    /// Steps the core with one message and writes its answer. Returns false when the stream ended
    /// or paused (waiting for the AI result).
    func process(context: ChannelHandlerContext, payload: ByteBuffer) -> Bool {
        // libprotobuf-c decodes in place (README "Design"); the request lives for this call only.
        let handled = payload.withUnsafeReadableBytes { bytes in
            DecodedRequest.decode(bytes) { request in
                if let phase = request.phase?.kind { shared.metrics.messages[phase.rawValue].increment() }
                if request.carriesUnknownFields { shared.metrics.unknownFields.increment() }
                return handle(context: context, request)
            }
        }
        guard let handled else {
            protocolFailure(context: context, ExchangeError(.undecodable, "ProcessingRequest does not decode (\(payload.readableBytes) bytes)"))
            return false
        }
        return handled
    }

    /// Holds the response headers (and what follows) until the result arrives or the latency
    /// budget the core computed runs out.
    func pause(context: ChannelHandlerContext, until deadline: UInt64) {
        guard let call else { return }
        paused = true
        trace?.waitBegan(.now())
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        wait = call.whenReady(on: context.eventLoop, deadline: .uptimeNanoseconds(deadline)) { view in
            let (stream, context) = bound.value
            stream.resume(context: context, with: view)
        }
    }

    /// The result arrived or the budget ran out: answer the held headers, then what queued behind.
    func resume(context: ChannelHandlerContext, with view: OverlayResultView) {
        guard paused else { return }
        paused = false
        wait = nil
        trace?.waitEnded(.now())
        guard let action = machine?.resume(with: view) else { return }
        countInjection()
        guard write(context: context, action) else {
            connection.flush(context)
            return
        }
        let backlog = queued
        queued = []
        for (index, payload) in backlog.enumerated() {
            guard process(context: context, payload: payload) else {
                // Ended (a pause cannot come twice: the response headers came once).
                if paused { queued.append(contentsOf: backlog[(index + 1)...]) }
                connection.flush(context)
                return
            }
        }
        drain(context: context)
        if peerEnded, case .process = mode { clientEnded(context: context) }
        connection.flush(context)
    }

    func handle(context: ChannelHandlerContext, _ request: some ExtProcRequest) -> Bool {
        // The loop's clock: the exchange's budget is measured on it (a test's embedded loop
        // advances it by hand).
        let started = context.eventLoop.now
        // Traced: the exchange's span opens at the request head, joined to the host app's trace.
        var traceStarted: DefaultTracerClock.Instant?
        if OverlayTracing.isOn, trace == nil, case .requestHeaders(let head, _)? = request.phase {
            // Not traced (no traceparent, not picked as a new trace): no tracing work at all.
            let draw = connection.nextSeed()
            if ExchangeTrace.mayTrace(hasTraceparent: !head.values(named: ExchangeTrace.parentNames).isEmpty, draw: draw) {
                var headers: [String: String] = [:]
                for (name, value) in head.values(named: ExchangeTrace.wanted) {
                    headers[name] = value
                }
                trace = ExchangeTrace.start(frontend: "extproc", headers: headers, draw: draw)
                traceStarted = DefaultTracerClock.now
            }
        }
        let action: ExchangeAction
        do throws(ExchangeError) {
            action = try machine!.receive(request, now: started.uptimeNanoseconds, ready: call?.result)
        } catch {
            protocolFailure(context: context, error)
            return false
        }
        switch request.phase {
        case .requestHeaders:
            shared.services.metrics.record(machine?.exchange.decision)
            if let traceStarted, let exchange = machine?.exchange { trace?.recordDecision(exchange, started: traceStarted) }
        case .responseHeaders, .responseBody: countInjection()
        default: break
        }
        if case .wait(let deadline) = action {
            pause(context: context, until: deadline)
            return false
        }
        guard write(context: context, action) else { return false }
        shared.metrics.processing.recordNanoseconds(Int64((context.eventLoop.now - started).nanoseconds))
        return true
    }

    /// Carries out one action of the core; false when the stream ended.
    func write(context: ChannelHandlerContext, _ action: ExchangeAction) -> Bool {
        switch action {
        case .none, .wait:
            break
        case .respondAndCall(let answer, let plan):
            guard let frame = encode(context: context, answer.message) else { return false }
            writeMessage(context: context, frame: frame)
            startCall(context: context, plan: plan)
        case .answerAsk(let plan):
            startCall(context: context, plan: plan)
            let view = call?.pendingView ?? OverlayResultView(overlay: plan.overlay, model: plan.model, token: "", status: .failed)
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
        return true
    }

    func countInjection() {
        if let injection = machine?.takeInjection() {
            shared.services.metrics.record(injection)
            trace?.recordInjection(
                injection, bytes: machine?.exchange.rewrite?.bytesSeen, status: call?.result?.status.rawValue)
        }
    }

    /// Starts the served model's call (it overlaps the upstream's work).
    func startCall(context: ChannelHandlerContext, plan: OverlayPlan) {
        guard let config = machine?.exchange.configuration else { return }
        call = shared.services.startCall(plan: plan, config: config, trace: trace?.call)
    }
}
