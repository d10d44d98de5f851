import NIOCore
import OverlayCore
import Tracing

/// The spans of one traced exchange (issue 17), the same for both front ends: the exchange (a
/// server span, child of the host app's `traceparent`: Envoy forwards it in request_headers, the
/// proxy reads it from the request), the decision, and the injection. Only made when tracing is on
/// (``OverlayTracing/isOn``) and the exchange is traced (``start(frontend:headers:draw:)``).
///
/// An exchange whose parent says "not sampled" keeps its (unrecorded) span: its context still
/// travels to the backends, but no child span is opened below it.
public struct ExchangeTrace {
    public let span: any Span
    /// What the exchange's model calls get of it.
    public let call: CallTrace
    /// When the response head began waiting for the result (the latency budget), if it did.
    var waitStarted: NIODeadline?
    var waitedNanos: Int64 = 0

    /// The headers the trace needs from a request head (names lower case, as Envoy sends them).
    public static let wanted: Set<String> = ["traceparent", "tracestate", "x-request-id", ":method", ":path", ":authority"]
    /// The header that carries a parent span (``mayTrace(hasTraceparent:draw:)``).
    public static let parentNames: Set<String> = ["traceparent"]

    /// Whether an exchange may be traced, before its headers are collected: it carries a
    /// `traceparent`, or it is a new trace that `draw` picks (``OverlayTracing/rootSampler``).
    /// False: the exchange does no tracing work at all.
    public static func mayTrace(hasTraceparent: Bool, draw: UInt64) -> Bool {
        hasTraceparent || OverlayTracing.rootSampler.picks(draw)
    }

    /// Opens the exchange's span, joined to the request's trace: nil when the request has no
    /// valid `traceparent` and `draw` (the same as given to ``mayTrace(hasTraceparent:draw:)``)
    /// does not pick it as a new trace.
    public static func start(frontend: String, headers: [String: String], draw: UInt64) -> ExchangeTrace? {
        switch OverlayTracing.parent(headers) {
        case .sampled(let parent):
            return ExchangeTrace(frontend: frontend, span: startSpan("overlayd.exchange", context: parent, ofKind: .server), headers: headers)
        case .notSampled(let parent):
            // Nothing is recorded in this trace: no span of ours, the app's context carried as is.
            return ExchangeTrace(frontend: frontend, span: NoOpTracer.NoOpSpan(context: parent), headers: headers)
        case nil:
            guard OverlayTracing.rootSampler.picks(draw) else { return nil }
            return ExchangeTrace(frontend: frontend, span: startSpan("overlayd.exchange", context: .topLevel, ofKind: .server), headers: headers)
        }
    }

    private init(frontend: String, span: any Span, headers: [String: String]) {
        self.span = span
        call = CallTrace(context: span.context, recorded: span.isRecording)
        guard span.isRecording else { return }
        span.attributes[TraceAttribute.frontend] = frontend
        if let method = headers[":method"] { span.attributes["http.request.method"] = method }
        if let path = headers[":path"] { span.attributes["url.path"] = String(path.prefix { $0 != "?" }) }
        if let authority = headers[":authority"] { span.attributes["server.address"] = authority }
        if let requestID = headers["x-request-id"] { span.attributes[TraceAttribute.requestID] = requestID }
    }

    /// The decision at the request head: a child span with the overlay, the model, sticky or not,
    /// and whether Shadow sampled this request (its challenger).
    public func recordDecision(_ exchange: OverlayExchange, started: some TracerInstant) {
        guard span.isRecording else { return }
        let decision = startSpan("overlayd.decision", at: started, context: span.context)
        let name = exchange.decision?.rawValue ?? "none"
        decision.attributes[TraceAttribute.decision] = name
        span.attributes[TraceAttribute.decision] = name
        if let plan = exchange.plan {
            decision.attributes[TraceAttribute.overlay] = plan.overlay
            decision.attributes[TraceAttribute.model] = plan.model
            decision.attributes[TraceAttribute.sticky] = plan.sticky
            decision.attributes[TraceAttribute.shadowSampled] = plan.challenger != nil
            if let challenger = plan.challenger { decision.attributes[TraceAttribute.challenger] = challenger }
            span.attributes[TraceAttribute.overlay] = plan.overlay
            span.attributes[TraceAttribute.model] = plan.model
        }
        decision.end()
    }

    public mutating func waitBegan(_ now: NIODeadline) { waitStarted = now }

    public mutating func waitEnded(_ now: NIODeadline) {
        if let waitStarted { waitedNanos = (now - waitStarted).nanoseconds }
    }

    /// The injection's outcome: a child span from the wait's start (or now) with its result,
    /// reason, the bytes rewritten so far, the result's status, and the wait on the budget.
    public func recordInjection(_ injection: OverlayExchange.Injection, bytes: Int?, status: String?) {
        guard span.isRecording else { return }
        let started = waitStarted.map { DefaultTracerClock.now.offset(by: -(NIODeadline.now() - $0).nanoseconds) }
        let injected = startSpan("overlayd.injection", at: started ?? DefaultTracerClock.now, context: span.context)
        injected.attributes[TraceAttribute.injectionResult] = injection.result
        if !injection.reason.isEmpty { injected.attributes[TraceAttribute.injectionReason] = injection.reason }
        if let bytes { injected.attributes[TraceAttribute.injectionBytes] = bytes }
        if let status { injected.attributes[TraceAttribute.resultStatus] = status }
        injected.attributes[TraceAttribute.waitMs] = Double(waitedNanos) / 1e6
        injected.end()
    }

    public func end(error: String? = nil) {
        if let error {
            span.attributes["overlayd.error"] = error
            span.setStatus(SpanStatus(code: .error, message: error))
        }
        span.end()
    }
}

/// What a model call gets of its exchange's trace.
public struct CallTrace: Sendable {
    /// The exchange's span context, bound while the backend is called: its `traceparent` goes
    /// to OpenAI-compatible backends, sampled or not.
    public let context: ServiceContext
    /// Whether the exchange's span is recorded: only then are the instant mock's call and the
    /// challenger's call given spans (the router's and the client's spans follow the bound context).
    public let recorded: Bool

    public init(context: ServiceContext, recorded: Bool) {
        self.context = context
        self.recorded = recorded
    }
}

extension DefaultTracerClock.Instant {
    /// This instant moved by `nanos` (negative: earlier).
    func offset(by nanos: Int64) -> DefaultTracerClock.Instant {
        DefaultTracerClock.Instant(nanosecondsSinceEpoch: UInt64(max(0, Int64(nanosecondsSinceEpoch) + nanos)))
    }
}
