import NIOCore
import OverlayCore
import Tracing

/// The spans of one traced exchange (issue 17), the same for both front ends: the exchange (a
/// server span, child of the host app's `traceparent`: Envoy forwards it in request_headers, the
/// proxy reads it from the request), the decision, and the injection. Only made when tracing is on
/// (``OverlayTracing/isOn``).
public struct ExchangeTrace {
    public let span: any Span
    /// When the response head began waiting for the result (the latency budget), if it did.
    var waitStarted: NIODeadline?
    var waitedNanos: Int64 = 0

    /// The headers the trace needs from a request head (names lower case, as Envoy sends them).
    public static let wanted: Set<String> = ["traceparent", "tracestate", "x-request-id", ":method", ":path", ":authority"]

    /// Opens the exchange's span, joined to the incoming trace.
    public init(frontend: String, headers: [String: String]) {
        let parent = OverlayTracing.extract(headers)
        span = startSpan("overlayd.exchange", context: parent, ofKind: .server)
        span.attributes[TraceAttribute.frontend] = frontend
        if let method = headers[":method"] { span.attributes["http.request.method"] = method }
        if let path = headers[":path"] { span.attributes["url.path"] = String(path.prefix { $0 != "?" }) }
        if let authority = headers[":authority"] { span.attributes["server.address"] = authority }
        if let requestID = headers["x-request-id"] { span.attributes[TraceAttribute.requestID] = requestID }
    }

    /// The decision at the request head: a child span with the overlay, the model, sticky or not,
    /// and whether Shadow sampled this request (its challenger).
    public func recordDecision(_ exchange: OverlayExchange, started: some TracerInstant) {
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

extension DefaultTracerClock.Instant {
    /// This instant moved by `nanos` (negative: earlier).
    func offset(by nanos: Int64) -> DefaultTracerClock.Instant {
        DefaultTracerClock.Instant(nanosecondsSinceEpoch: UInt64(max(0, Int64(nanosecondsSinceEpoch) + nanos)))
    }
}
