import OverlayDecisions

/// A request head as ``OverlayExchange`` reads it. Each front end conforms its own header type
/// (Envoy's header list, NIO's HTTP/1 head), so nothing is converted that the decision does not
/// read: a pass-through exchange reads `authority` only.
public protocol ExchangeRequestHead {
    /// `:authority` (HTTP/2, Envoy) or the `Host` / absolute-form authority (HTTP/1), nil if absent.
    var authority: Substring? { get }
    /// `:path` / the origin-form request target, query included.
    var path: Substring { get }
    /// `:method`.
    var method: Substring { get }
    /// The value of the first field named `name` (lower case), e.g. `if-none-match`.
    func firstValue(_ name: String) -> Substring?
    /// The regular (non-pseudo) header fields as (lower-case name, value) pairs, in order: the
    /// user key and `{{header.NAME}}` of the prompt come from them.
    var fields: HeaderList { get }
}

/// One HTTP exchange as overlayd sees it, whichever front end carries it: Envoy's ext_proc
/// (``ExtProcCore``) or the reverse proxy. Pure: no I/O; the clock (`now`, monotonic
/// nanoseconds) and randomness (`seed`) are parameters.
///
/// The front end feeds it the exchange's events in order and carries out what each returns:
///
///     requestHead ──▶ passThrough                              (nothing more is wanted)
///                 ──▶ answer(local)                            (done; nothing is forwarded)
///                 ──▶ readBody ──requestBody*──▶ answer | ask(plan)      (a question to overlayd)
///                 ──▶ forward(header, startCall: plan)
///                        └─ responseHead ──▶ forward | forwardSkippingBody
///                                        ──▶ forwardRewriting ──responseBody*──▶ bytes
///                                        ──▶ wait(deadline) ──resume(with:)──▶ forwardRewriting
///
/// It owns routing (``RequestRouter``), the plan (split and shadow sampling), the follow-up
/// question's body, the latency budget, the response plan (``ResponsePlan``), the body rewrite
/// (``ResponseRewrite``) and the facts the metrics record (``decision``, ``takeInjection()``).
/// Events that do not apply (a body with no head, a second resume, anything after
/// ``cancel()``) change nothing and ask for nothing: the front end's protocol rules (Envoy's
/// phase order, NIO's HTTP codec) decide what is an error.
public struct OverlayExchange: Sendable {
    /// The `decision` label of `overlayd_decisions_total`.
    public enum Decision: String, Sendable, CaseIterable {
        case passThrough = "pass_through"
        case overlay
        case ownEndpoint = "own_endpoint"
    }

    /// What to do with the request head.
    public enum RequestAction: Sendable {
        /// No overlay applies: forward the exchange untouched; no later event matters (ext_proc
        /// switches every later phase off).
        case passThrough
        /// Forward the request with `header` set (the chosen model, for the host app) and start the
        /// model call(s) of `plan` now, so they overlap the upstream's work.
        case forward(header: (name: String, value: String), startCall: OverlayPlan)
        /// Answer with this response; nothing is forwarded and the exchange is over.
        case answer(LocalResponse)
        /// A follow-up question to overlayd: deliver the request body (``requestBody(_:end:)``);
        /// nothing is forwarded.
        case readBody
    }

    /// What to do after a chunk of a question's body.
    public enum RequestBodyAction: Sendable, Equatable {
        /// Keep delivering the body.
        case more
        /// Answer with this response (the question cannot be asked); the exchange is over.
        case answer(LocalResponse)
        /// Start the model call of `plan` and answer at once with
        /// `LocalResponse.askAnswer(pending view of that call)`: overlay.js polls its token.
        case ask(OverlayPlan)
    }

    /// What to do with the response head.
    public enum ResponseHeadAction: Sendable, Equatable {
        /// Forward it unchanged; the body passes untouched (not an overlaid exchange, or no body).
        case forward
        /// An overlaid exchange whose body stays as it is: forward the head unchanged; the body
        /// need not be delivered (ext_proc asks Envoy not to send it).
        case forwardSkippingBody
        /// The body is rewritten: forward the head without `content-length` and deliver every
        /// body chunk (``responseBody(_:end:)`` or ``responseBodySplitting(_:end:)``).
        case forwardRewriting
        /// Hold the head (and what follows it) until ``resume(with:)``: call it with the result
        /// when it arrives, or at `deadline` (the same clock as `now`) with the call's pending view.
        /// The answer then is ``forwardRewriting``.
        case wait(deadline: UInt64)
    }

    /// What happened to an overlaid response body: the `result` and `reason` labels of
    /// `overlayd_injections_total`.
    public struct Injection: Sendable, Hashable, CustomStringConvertible {
        public var result: String
        public var reason: String

        public init(result: String, reason: String = "") {
            self.result = result
            self.reason = reason
        }

        public static func skipped(_ reason: String) -> Injection { Injection(result: "skipped", reason: reason) }

        /// Every value, for pre-registering metrics.
        public static let all: [Injection] =
            (ResponsePlan.reasons + ["no_body"]).map(skipped)
            + ResponseRewrite.outcomes.map { Injection(result: $0) }

        public var description: String { reason.isEmpty ? result : "\(result)/\(reason)" }
    }

    private enum Phase: Sendable {
        /// Before the request head.
        case start
        /// Not overlaid (pass-through, answered locally): later events change nothing.
        case untouched
        /// Collecting a question's body.
        case asking(overlay: Overlay, host: String, headers: HeaderList, body: [UInt8])
        /// Overlaid: forwarded, the response head not yet seen.
        case overlaid
        /// Holding the response head for the result.
        case waiting(ResponsePlan)
        /// The response head was answered; the body goes through `rewrite` (if any).
        case responding
        /// Cancelled or finished.
        case done
    }

    private let config: OverlayConfig
    private let results: (any OverlayResultLookup)?
    private let codec: (any BodyCodec)?
    private var random: SplitMix64
    private var phase = Phase.start
    private var overlay: Overlay?
    private var method: Substring = "GET"
    private var path: Substring = "/"
    private var requestStarted: UInt64 = 0
    private var reportedInjection = false

    /// The decision at the request head (nil before it): recorded by the front end.
    public private(set) var decision: Decision?
    /// The router's full decision at the request head (nil before it).
    public private(set) var routing: RequestDecision?
    /// The plan of an overlaid exchange or a question.
    public private(set) var plan: OverlayPlan?
    /// What was decided for the response body of an overlaid exchange.
    public private(set) var responsePlan: ResponsePlan?
    /// The body rewrite under way, if any.
    public private(set) var rewrite: ResponseRewrite?
    private var injection: Injection?

    /// - Parameters:
    ///   - config: the snapshot this exchange keeps for its whole life.
    ///   - seed: the exchange's random source (splits without a user key, shadow sampling).
    ///   - results: where `/__overlay/results/{token}` looks results up.
    ///   - codec: decodes gzip/deflate pages so they can be injected (nil: encoded pages pass
    ///     through untouched, counted as `skipped/encoded`).
    public init(config: OverlayConfig, seed: UInt64, results: (any OverlayResultLookup)? = nil, codec: (any BodyCodec)? = nil) {
        self.config = config
        self.random = SplitMix64(seed: seed)
        self.results = results
        self.codec = codec
    }

    /// The overlay's settings, for an overlaid exchange or a question.
    public var overlaySettings: OverlaySettings? { overlay?.settings }

    /// The configuration snapshot the exchange was made with.
    public var configuration: OverlayConfig { config }

    // MARK: - Request

    /// The request head. `endOfStream`: no body follows (ext_proc knows; the proxy passes false).
    public mutating func requestHead(_ head: some ExchangeRequestHead, endOfStream: Bool, now: UInt64) -> RequestAction {
        guard case .start = phase else { return .passThrough }
        requestStarted = now
        let routed = Self.route(config: config, head)
        routing = routed
        switch routed {
        case .passThrough:
            return untouched(.passThrough, .passThrough)
        case .ownEndpoint(let local):
            return untouched(.ownEndpoint, .answer(local))
        case .result(let token):
            return untouched(.ownEndpoint, .answer(LocalResponse.result(token: token, results: results)))
        case .ask(let matched):
            decision = .ownEndpoint
            if endOfStream {
                phase = .done
                return .answer(LocalResponse.askError("a question needs a JSON body"))
            }
            phase = .asking(overlay: matched, host: String(head.authority ?? ""), headers: head.fields, body: [])
            return .readBody
        case .overlay(let matched):
            decision = .overlay
            method = head.method
            path = head.path
            let plan = matched.plan(
                method: String(method), host: String(head.authority ?? ""), path: String(path), headers: head.fields,
                random: &random)
            overlay = matched
            self.plan = plan
            phase = .overlaid
            return .forward(header: (matched.settings.modelHeader, plan.model), startCall: plan)
        }
    }

    private mutating func untouched(_ decided: Decision, _ action: RequestAction) -> RequestAction {
        decision = decided
        phase = .untouched
        return action
    }

    /// The routing decision: the empty-configuration and unknown-host shortcuts first (the
    /// common case reads `authority` only), then ``RequestRouter``.
    static func route(config: OverlayConfig, _ head: some ExchangeRequestHead) -> RequestDecision {
        if config.routes.isEmpty { return .passThrough }
        guard let authority = head.authority, let index = config.routes.match(authority: authority) else { return .passThrough }
        return RequestRouter.decide(
            overlay: config.overlays[index], path: head.path, method: head.method, ifNoneMatch: head.firstValue("if-none-match"))
    }

    /// A chunk of the request body. Only a question's body is read (up to
    /// ``AskRequest/maxBodyBytes``); for every other exchange the body is not the core's business.
    public mutating func requestBody(_ chunk: some Collection<UInt8>, end: Bool) -> RequestBodyAction {
        guard case .asking(let overlay, let host, let headers, var body) = phase else { return .more }
        phase = .done  // the body array is uniquely referenced while it grows
        let room = AskRequest.maxBodyBytes + 1 - min(body.count, AskRequest.maxBodyBytes + 1)
        body.append(contentsOf: chunk.prefix(room))
        guard end else {
            phase = .asking(overlay: overlay, host: host, headers: headers, body: body)
            return .more
        }
        if body.isEmpty { return .answer(LocalResponse.askError("a question needs a JSON body")) }
        switch AskRequest.parse(body) {
        case .failure(let error):
            return .answer(LocalResponse.askError(error.message))
        case .success(let question):
            let plan = overlay.planAsk(question, host: host, headers: headers, random: &random)
            self.plan = plan
            return .ask(plan)
        }
    }

    // MARK: - Response

    /// The response head: `status` and the header fields (lower-case names). `ready` is the
    /// model call's result if it is in already; `endOfStream`: no body follows.
    public mutating func responseHead(
        status: Int, fields: some Sequence<(name: String, value: String)>, endOfStream: Bool,
        ready: OverlayResultView?, now: UInt64
    ) -> ResponseHeadAction {
        responseHead(status: status, fields: Array(fields), endOfStream: endOfStream, ready: ready, now: now)
    }

    /// ``responseHead(status:fields:endOfStream:ready:now:)`` for fields in an array: not generic,
    /// so a caller in another module does not walk them through a protocol witness.
    public mutating func responseHead(
        status: Int, fields: [(name: String, value: String)], endOfStream: Bool,
        ready: OverlayResultView?, now: UInt64
    ) -> ResponseHeadAction {
        guard case .overlaid = phase, let overlay, plan != nil else { return .forward }
        // Whether the transport delivers a body at all, and whether it can have content.
        let bodyFollows = !endOfStream
        var hasBody = bodyFollows && method != "HEAD" && status != 204 && status != 304
        var relevant: [(name: String, value: String)] = []
        relevant.reserveCapacity(fields.count + 1)
        relevant.append((":status", String(status)))
        for field in fields where ResponsePlan.relevantName(field.name) == field.name {
            if field.name == "content-length" && field.value == "0" { hasBody = false }
            relevant.append(field)
        }
        let decided = ResponsePlan.decide(
            settings: overlay.settings, method: method, path: path, headers: relevant, decodable: codec?.encodings ?? [])
        responsePlan = decided
        if case .untouched(let reason) = decided {
            phase = .responding
            injection = .skipped(reason)
            // With no body to come there is nothing to skip: a plain forward.
            return bodyFollows ? .forwardSkippingBody : .forward
        }
        guard hasBody else {
            phase = .responding
            injection = .skipped("no_body")
            return bodyFollows ? .forwardSkippingBody : .forward
        }
        if let ready { return respond(decided, with: ready) }
        // A deadline already past too: the front end's wait then ends at once with the call's
        // pending view, which carries the token overlay.js fetches the late result with.
        let deadline = requestStarted &+ UInt64(max(0, overlay.settings.latencyBudgetMs)) &* 1_000_000
        phase = .waiting(decided)
        return .wait(deadline: deadline)
    }

    /// The result arrived, or the latency budget ran out (`view` is then the call's pending view):
    /// the held response head goes on. Nil when nothing was held (a late second call).
    public mutating func resume(with view: OverlayResultView) -> ResponseHeadAction? {
        guard case .waiting(let decided) = phase else { return nil }
        return respond(decided, with: view)
    }

    private mutating func respond(_ decided: ResponsePlan, with view: OverlayResultView) -> ResponseHeadAction {
        phase = .responding
        rewrite = overlay.flatMap { ResponseRewrite(plan: decided, settings: $0.settings, view: view, codec: codec) }
        return .forwardRewriting
    }

    /// A chunk of the response body: the bytes to send instead, or nil to send it unchanged.
    public mutating func responseBody(_ chunk: some Collection<UInt8>, end: Bool) -> [UInt8]? {
        guard rewrite != nil else { return nil }
        let out = rewrite!.rewrite(chunk, endOfStream: end)
        noteOutcome()
        return out
    }

    /// The response body has ended (after its last chunk was given to ``responseBody(_:end:)`` or
    /// ``responseBodySplitting(_:end:)`` with `end` false): the bytes still to send, or nil.
    /// Specialised here, where the empty chunk's type is known (a generic call from another module
    /// runs the rewrite unspecialised).
    public mutating func responseBodyEnded() -> [UInt8]? {
        guard rewrite != nil else { return nil }
        let out = rewrite!.rewrite(EmptyCollection<UInt8>(), endOfStream: true)
        noteOutcome()
        return out
    }

    /// The last chunk of the response body the transport hands over, while the body may go on
    /// without it (``ResponseRewrite/rewriteLast(_:)``): the bytes to send instead, or nil.
    public mutating func responseBodyLast(_ chunk: some Collection<UInt8>) -> [UInt8]? {
        guard rewrite != nil else { return nil }
        let out = rewrite!.rewriteLast(chunk)
        noteOutcome()
        return out
    }

    /// Like ``responseBody(_:end:)`` for a front end that can send the end of a chunk
    /// without copying it: send `emitted`, then `chunk[restFrom...]`. An HTML page is copied only
    /// up to the insertion point.
    public mutating func responseBodySplitting(_ chunk: UnsafeRawBufferPointer, end: Bool) -> (emitted: [UInt8], restFrom: Int) {
        guard rewrite != nil else { return ([], 0) }
        let out = rewrite!.rewriteSplitting(chunk, endOfStream: end)
        noteOutcome()
        return out
    }

    private mutating func noteOutcome() {
        if injection == nil, let outcome = rewrite?.outcome { injection = Injection(result: outcome) }
    }

    /// What happened to the response body, once it is known; given once, for the metrics.
    public mutating func takeInjection() -> Injection? {
        guard !reportedInjection, let injection else { return nil }
        reportedInjection = true
        return injection
    }

    /// The exchange is over early (the client went away, Envoy reset the stream): later events
    /// change nothing; a held response head is dropped.
    public mutating func cancel() {
        phase = .done
        rewrite = nil
    }

    /// Whether the response head is held for the result.
    public var isWaiting: Bool {
        if case .waiting = phase { return true }
        return false
    }
}
