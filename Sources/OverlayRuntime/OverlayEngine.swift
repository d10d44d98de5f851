import AsyncHTTPClient
import BackendCore
import Backends
import CoreMetrics
import Foundation
import Logging
import NIOCore
import OverlayCore
import OverlayDecisions
import ServiceLifecycle
import Locking
import Synchronization
import Tracing

/// One model call started at request headers; the response phase picks its result up.
///
/// The result is handed over through a lock, not an event-loop promise: a call may finish after
/// its stream (and, at shutdown, its event loop) is gone, and then nobody is told.
package final class ModelCall: Sendable {
    package let token: String
    package let plan: OverlayPlan
    package let started: NIODeadline
    private let state: Locked<(result: OverlayResultView?, waiter: (@Sendable (OverlayResultView) -> Void)?)>

    package init(token: String, plan: OverlayPlan, started: NIODeadline) {
        self.token = token
        self.plan = plan
        self.started = started
        state = Locked((nil, nil))
    }

    /// A call whose result is already in (an instant mock answers inline).
    package init(token: String, plan: OverlayPlan, started: NIODeadline, result: OverlayResultView) {
        self.token = token
        self.plan = plan
        self.started = started
        state = Locked((result, nil))
    }

    /// The result, once in.
    package var result: OverlayResultView? { state.withLock { $0.result } }

    /// Calls `waiter` once with the result (at once if it is in). One waiter at a time.
    package func onResult(_ waiter: @escaping @Sendable (OverlayResultView) -> Void) {
        let ready: OverlayResultView? = state.withLock { state in
            if let result = state.result { return result }
            state.waiter = waiter
            return nil
        }
        if let ready { waiter(ready) }
    }

    /// The stream is gone: tell nobody.
    package func forgetWaiter() {
        state.withLock { $0.waiter = nil }
    }

    /// What the page gets when the result is not in within the latency budget: `pending` with the
    /// token (overlay.js fetches it later).
    package var pendingView: OverlayResultView {
        OverlayResultView(overlay: plan.overlay, model: plan.model, token: token, status: .pending)
    }

    /// Calls `resume` once on `loop`, which must be the caller's: with the result as soon as it
    /// arrives, or at `deadline` (the latency budget's end) with the result if it is in by then,
    /// else ``pendingView``. Both front ends hold a response head this way while
    /// ``OverlayExchange`` waits (``OverlayExchange/ResponseHeadAction/wait(deadline:)``).
    /// Cancel the returned wait when the exchange ends first.
    package func whenReady(
        on loop: any EventLoop, deadline: NIODeadline, _ resume: @escaping (OverlayResultView) -> Void
    ) -> ResultWait {
        let resume = NIOLoopBound(resume, eventLoop: loop)
        let done = NIOLoopBoundBox(false, eventLoop: loop)
        let timer = loop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
            guard !done.value else { return }
            done.value = true
            forgetWaiter()
            resume.value(result ?? pendingView)
        }
        let scheduled = timer
        onResult { view in
            loop.execute {
                guard !done.value else { return }
                done.value = true
                scheduled.cancel()
                resume.value(view)
            }
        }
        return ResultWait(call: self, timer: scheduled, done: done)
    }

    package func complete(_ view: OverlayResultView) {
        let waiter = state.withLock { state -> (@Sendable (OverlayResultView) -> Void)? in
            state.result = view
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?(view)
    }
}

/// A wait for a call's result (``ModelCall/whenReady(on:deadline:_:)``), cancelled when the exchange
/// ends first: neither the result nor the timer calls back afterwards.
package struct ResultWait {
    fileprivate let call: ModelCall
    fileprivate let timer: Scheduled<Void>
    fileprivate let done: NIOLoopBoundBox<Bool>

    package func cancel() {
        done.value = true
        timer.cancel()
        call.forgetWaiter()
    }
}

extension Optional where Wrapped == OverlayEngine {
    /// Starts the model call(s) of `plan`. Without an engine (protocol-only tests) the call has
    /// already failed with "no engine", so the page gets a failed result rather than a wait.
    package func startCall(plan: OverlayPlan, config: OverlayConfig, trace: CallTrace? = nil) -> ModelCall {
        if let engine = self { return engine.start(plan: plan, config: config, trace: trace) }
        let call = ModelCall(token: "", plan: plan, started: .now())
        call.complete(OverlayResultView(overlay: plan.overlay, model: plan.model, token: "", status: .failed, error: "no engine"))
        return call
    }
}

extension SplitMix64 {
    /// A generator seeded once from the system's (each front end keeps one per connection and
    /// seeds every exchange from it: a system call per exchange would cost more than its picks).
    package static func seededBySystem() -> SplitMix64 {
        var system = SystemRandomNumberGenerator()
        return SplitMix64(seed: system.next())
    }
}

/// Runs the model calls of overlaid exchanges (the adapter between the pure plan and the
/// backends): the served model's call, started at request headers so it overlaps the upstream's
/// work; the shadow challenger's call, in the background through a bounded queue; drift.
///
/// - Results are kept by token in a bounded store (``ResultStore``) for `/__overlay/results/{token}`.
/// - Models named by an overlay but absent from the registry (a document without any AIModel,
///   such as the seed example alone) are served by the built-in mock.
/// - Shadow jobs wait in a queue of `shadowQueueCapacity`; when it is full the job is dropped and
///   counted (`overlayd_shadow_jobs_total{result="dropped"}`); at most `shadowConcurrency` run at
///   once. A shadow job never delays a response: the page only ever waits for the champion. On
///   shutdown, queued jobs are dropped and running ones cancelled.
///
/// Metrics: `overlayd_model_calls_total{model,result}`, `overlayd_model_call_seconds{model}`,
/// `overlayd_overlay_decisions_total{overlay,model}`,
/// `overlayd_shadow_jobs_total{result}`, `overlayd_drift_similarity_mean{overlay}`,
/// `overlayd_drift_flag{overlay}`.
public final class OverlayEngine: Service, Sendable {
    public struct Options: Sendable {
        public var shadowQueueCapacity = 256
        public var shadowConcurrency = 8
        public var resultCapacity = 10_000
        public var resultTTL: Duration = .seconds(120)
        public init() {}
    }

    struct Job: Sendable {
        let plan: OverlayPlan
        let challenger: String
        let champion: Task<OverlayResultView, Never>
        let router: ModelRouter
        let window: Int
        let threshold: Double
        /// The exchange's trace (traced exchanges): when recorded, the challenger's span links to it.
        let trace: CallTrace?
    }

    public let results: ResultStore
    public let drift: DriftBoard
    private let options: Options
    /// One async-http-client per connect timeout in use (it is a client-wide setting), so each
    /// AIModel's `timeouts.connect` holds; created on first use, shut down with the engine.
    private let httpClients = Locked<[Int: HTTPClient]>([:])
    private let logger: Logger
    private let factory: any MetricsFactory
    private let clients = Locked<[String: (spec: ModelSpec, client: any ModelClient)]>([:])
    private let routerCache = Locked<(version: String, router: ModelRouter)?>(nil)
    private let jobs: AsyncStream<Job>
    private let jobSink: AsyncStream<Job>.Continuation
    private let shadowCounters: [String: Counter]
    private let stopping = Atomic<Bool>(false)

    public init(options: Options = Options(), metricsFactory: any MetricsFactoryBox, logger: Logger) {
        self.options = options
        self.logger = logger
        self.factory = metricsFactory.factory
        self.results = ResultStore(capacity: options.resultCapacity, ttl: options.resultTTL)
        self.drift = DriftBoard(factory: metricsFactory.factory)
        (jobs, jobSink) = AsyncStream.makeStream(of: Job.self, bufferingPolicy: .bufferingOldest(options.shadowQueueCapacity))
        var counters: [String: Counter] = [:]
        for result in ["queued", "dropped", "done", "cancelled"] {
            counters[result] = Counter(label: "overlayd_shadow_jobs_total", dimensions: [("result", result)], factory: factory)
        }
        shadowCounters = counters
    }

    /// The router for a config snapshot; clients whose spec did not change are kept (with their
    /// circuit breakers and concurrency limits) across config versions.
    func router(for config: OverlayConfig) -> ModelRouter {
        if let cached = routerCache.withLock({ $0 }), cached.version == config.version { return cached.router }
        var specs = config.models
        for overlay in config.overlays {
            for model in overlay.models where specs[model.name] == nil {
                specs[model.name] = ModelSpec(name: model.name, provider: .mock)
            }
        }
        let built: [String: any ModelClient] = clients.withLock { clients in
            var next: [String: (spec: ModelSpec, client: any ModelClient)] = [:]
            for (name, spec) in specs {
                if let existing = clients[name], existing.spec == spec {
                    next[name] = existing
                    continue
                }
                let client: any ModelClient
                switch spec.provider {
                case .openai:
                    client = OpenAIClient(
                        spec: spec, httpClient: httpClient(connectTimeoutMs: spec.connectTimeoutMs), logger: logger)
                case .mock: client = MockClient(spec: spec, logger: logger)
                }
                next[name] = (spec, client)
            }
            clients = next
            return next.mapValues(\.client)
        }
        let router = ModelRouter(specs: specs, clients: built, logger: logger)
        routerCache.withLock { $0 = (config.version, router) }
        return router
    }

    private func httpClient(connectTimeoutMs: Int) -> HTTPClient {
        httpClients.withLock { clients in
            if let client = clients[connectTimeoutMs] { return client }
            let client = HTTPClient(
                eventLoopGroupProvider: .singleton,
                configuration: OpenAIClient.httpClientConfiguration(connectTimeoutMs: connectTimeoutMs))
            clients[connectTimeoutMs] = client
            return client
        }
    }

    /// Starts the served model's call (and queues the shadow job); returns at once.
    /// - Parameter trace: the exchange's trace when it is traced: its context is bound while the
    ///   backend is called (its `traceparent` travels on, sampled or not); when recorded, the model
    ///   call's spans are its children and the challenger's span links to it.
    package func start(plan: OverlayPlan, config: OverlayConfig, trace: CallTrace? = nil) -> ModelCall {
        let token = Self.newToken()
        let started = NIODeadline.now()
        let router = self.router(for: config)
        let results = self.results
        let instruments = instruments(overlay: plan.overlay, model: plan.model)
        let calls = instruments.calls
        instruments.decisions.increment()
        let request = CompletionRequest(prompt: plan.prompt, maxTokens: 512)
        if let spec = router.specs[plan.model], spec.provider == .mock, spec.mockLatencyMs == 0, spec.mockErrorRate == 0 {
            // An instant mock (demos, load tests) answers inline: no task, no hand-over, no wait.
            let view = OverlayResultView(
                overlay: plan.overlay, model: plan.model, token: token, status: .ready,
                text: MockClient.text(model: spec.model, request: request))
            calls.ok.increment()
            calls.duration.recordNanoseconds(Int64((NIODeadline.now() - started).nanoseconds))
            if let trace, trace.recorded {
                let span = startSpan("overlayd.model_call", context: trace.context, ofKind: .client)
                span.attributes["overlayd.model"] = plan.model
                span.attributes["overlayd.model.provider"] = "mock"
                span.attributes["overlayd.model.status"] = "ok"
                span.end()
            }
            results.put(view)
            if plan.challenger != nil {
                enqueueShadow(plan: plan, config: config, router: router, champion: Task { view }, trace: trace)
            }
            return ModelCall(token: token, plan: plan, started: started, result: view)
        }
        let call = ModelCall(token: token, plan: plan, started: started)
        results.put(OverlayResultView(overlay: plan.overlay, model: plan.model, token: token, status: .pending))
        let champion = Task {
            let view: OverlayResultView
            do throws(ModelCallError) {
                let completion = try await Self.traced(trace?.context) { () async throws(ModelCallError) -> Completion in
                    try await router.complete(model: plan.model, request)
                }
                view = OverlayResultView(
                    overlay: plan.overlay, model: completion.model, token: token, status: .ready, text: completion.text)
                calls.ok.increment()
            } catch {
                view = OverlayResultView(
                    overlay: plan.overlay, model: plan.model, token: token, status: .failed, error: error.kind)
                calls.failed.increment()
            }
            calls.duration.recordNanoseconds(Int64((NIODeadline.now() - started).nanoseconds))
            results.put(view)
            call.complete(view)
            return view
        }
        if plan.challenger != nil { enqueueShadow(plan: plan, config: config, router: router, champion: champion, trace: trace) }
        return call
    }

    /// Runs `operation` with `trace` bound as the task's context (the router opens its spans under
    /// it); untraced, it just runs it.
    static func traced<T: Sendable>(
        _ trace: ServiceContext?, _ operation: () async throws(ModelCallError) -> T
    ) async throws(ModelCallError) -> T {
        guard let trace else { return try await operation() }
        let result: Result<T, ModelCallError> = await ServiceContext.withValue(trace) {
            do throws(ModelCallError) {
                return .success(try await operation())
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    /// Queues the challenger's call of a sampled Shadow request (dropped and counted when full).
    private func enqueueShadow(
        plan: OverlayPlan, config: OverlayConfig, router: ModelRouter, champion: Task<OverlayResultView, Never>,
        trace: CallTrace?
    ) {
        guard let challenger = plan.challenger, let overlay = config.overlays.first(where: { $0.name == plan.overlay })
        else { return }
        let job = Job(
            plan: plan, challenger: challenger, champion: champion, router: router,
            window: overlay.settings.driftWindow, threshold: overlay.settings.driftThreshold, trace: trace)
        if stopping.load(ordering: .relaxed) {
            shadowCounters["dropped"]?.increment()
            return
        }
        switch jobSink.yield(job) {
        case .enqueued: shadowCounters["queued"]?.increment()
        case .dropped, .terminated: shadowCounters["dropped"]?.increment()
        @unknown default: shadowCounters["dropped"]?.increment()
        }
    }

    struct CallMetrics {
        let ok: Counter
        let failed: Counter
        let duration: CoreMetrics.Timer
    }

    /// A model's call metrics and its decision counter for one overlay, made on first use.
    struct Instruments {
        let decisions: Counter
        let calls: CallMetrics
    }

    private struct InstrumentKey: Hashable {
        let overlay: String
        let model: String
    }

    private let instrumentCache = Locked<[InstrumentKey: Instruments]>([:])

    /// `overlayd_overlay_decisions_total{overlay,model}` (exchanges the model was chosen for) and the
    /// model's call metrics, under one lock.
    private func instruments(overlay: String, model: String) -> Instruments {
        instrumentCache.withLock { cache in
            let key = InstrumentKey(overlay: overlay, model: model)
            if let found = cache[key] { return found }
            let made = Instruments(
                decisions: Counter(
                    label: "overlayd_overlay_decisions_total", dimensions: [("overlay", overlay), ("model", model)], factory: factory),
                calls: callMetrics(model: model))
            cache[key] = made
            return made
        }
    }

    /// The model's circuit-breaker state (`closed`, `open`, `half_open`) for models with one
    /// (OpenAI-compatible backends), for the control plane's reports.
    public func breakerStates() -> [String: String] {
        clients.withLock { clients in
            var states: [String: String] = [:]
            for (name, entry) in clients {
                guard let client = entry.client as? OpenAIClient else { continue }
                switch client.breaker.phase {
                case .closed: states[name] = "closed"
                case .open: states[name] = "open"
                case .halfOpen: states[name] = "half_open"
                }
            }
            return states
        }
    }

    private let callMetricsCache = Locked<[String: CallMetrics]>([:])

    private func callMetrics(model: String) -> CallMetrics {
        callMetricsCache.withLock { cache in
            if let found = cache[model] { return found }
            let made = CallMetrics(
                ok: Counter(label: "overlayd_model_calls_total", dimensions: [("model", model), ("result", "ok")], factory: factory),
                failed: Counter(label: "overlayd_model_calls_total", dimensions: [("model", model), ("result", "error")], factory: factory),
                duration: CoreMetrics.Timer(label: "overlayd_model_call_seconds", dimensions: [("model", model)], factory: factory))
            cache[model] = made
            return made
        }
    }

    /// 128 random bits, hex.
    static func newToken() -> String { RandomTokens.next() }

    // MARK: - Shadow jobs

    public func run() async throws {
        let concurrency = options.shadowConcurrency
        await withGracefulShutdownHandler {
            // On shutdown the whole consumer is cancelled: running jobs stop (their model calls see
            // the cancellation), queued ones are never started.
            await cancelWhenGracefulShutdown {
                await withTaskGroup(of: Void.self) { group in
                    var running = 0
                    for await job in self.jobs {
                        if running >= concurrency {
                            await group.next()
                            running -= 1
                        }
                        if Task.isCancelled { break }
                        running += 1
                        group.addTask { await self.runShadow(job) }
                    }
                    group.cancelAll()
                }
            }
        } onGracefulShutdown: {
            // From now on new shadow jobs are dropped (and counted).
            self.stopping.store(true, ordering: .relaxed)
            self.jobSink.finish()
        }
        for client in httpClients.withLock({ Array($0.values) }) { try? await client.shutdown() }
    }

    func runShadow(_ job: Job) async {
        // Traced (its exchange is recorded): the challenger's call is a trace of its own (it never
        // delays the exchange), linked to the exchange's span rather than its child.
        var span: (any Span)?
        if let exchange = job.trace, exchange.recorded {
            let made = startSpan("overlayd.challenger_call", context: .topLevel, ofKind: .internal)
            made.addLink(SpanLink(context: exchange.context, attributes: [:]))
            made.attributes[TraceAttribute.overlay] = job.plan.overlay
            made.attributes[TraceAttribute.model] = job.challenger
            made.attributes["overlayd.champion"] = job.plan.model
            span = made
        }
        defer { span?.end() }
        let started = NIODeadline.now()
        let challenger: String?
        do throws(ModelCallError) {
            let router = job.router
            let request = CompletionRequest(prompt: job.plan.prompt, maxTokens: 512)
            let challengerModel = job.challenger
            challenger = try await Self.traced(span?.context) { () async throws(ModelCallError) -> Completion in
                try await router.complete(model: challengerModel, request)
            }.text
        } catch {
            span?.attributes["overlayd.model.error_kind"] = error.kind
            span?.setStatus(SpanStatus(code: .error, message: error.kind))
            if case .cancelled = error {
                shadowCounters["cancelled"]?.increment()
                return
            }
            challenger = nil
        }
        let challengerMs = Double((NIODeadline.now() - started).nanoseconds) / 1e6
        guard !Task.isCancelled else {
            shadowCounters["cancelled"]?.increment()
            return
        }
        let champion = await job.champion.value
        let comparison = DriftScorer.compare(
            champion: champion.status == .ready ? champion.text : nil, challenger: challenger,
            championLatencyMs: results.latencyMs(token: champion.token) ?? 0, challengerLatencyMs: challengerMs)
        drift.record(
            overlay: job.plan.overlay, comparison, champion: job.plan.model, challenger: job.challenger,
            window: job.window, threshold: job.threshold)
        span?.attributes["overlayd.drift.similarity"] = comparison.similarity
        shadowCounters["done"]?.increment()
    }
}

/// Results by token, bounded (oldest evicted) and expiring.
///
/// A large store (capacity 4,096 and more, as the engine's 10,000) is split into 16 shards by the
/// token's last hex digit (tokens are random hex), each with its own lock and a 16th of the capacity, so
/// the two event loops putting a result on every overlaid exchange rarely meet on one lock; the
/// oldest result of a shard leaves first.
public final class ResultStore: OverlayResultLookup, Sendable {
    private let shards: [Shard]

    init(capacity: Int, ttl: Duration) {
        let capacity = max(1, capacity)
        let count = capacity >= 4096 ? 16 : 1
        shards = (0..<count).map { _ in Shard(capacity: capacity / count, ttl: ttl) }
    }

    /// The shard of a token: its last hex digit's value (any other last byte lands somewhere too).
    private func shard(_ token: String) -> Shard {
        guard shards.count > 1 else { return shards[0] }
        let last = Int(token.utf8.last ?? 0)
        let digit = last >= 0x61 ? last - 0x61 + 10 : last - 0x30
        return shards[digit & (shards.count - 1)]
    }

    func put(_ view: OverlayResultView) { shard(view.token).put(view) }

    public func view(token: String) -> OverlayResultView? { shard(token).view(token: token) }

    /// How long the call took (for drift), once completed.
    func latencyMs(token: String) -> Double? { shard(token).latencyMs(token: token) }

    var count: Int { shards.reduce(0) { $0 + $1.count } }

    private final class Shard: Sendable {
        struct Entry {
            var view: OverlayResultView
            var created: ContinuousClock.Instant
            var completed: ContinuousClock.Instant?
        }

        private struct State {
            var entries: [String: Entry] = [:]
            /// Tokens in the order they came, with when (the TTL is checked here, not on the entry).
            var order: [(token: String, created: ContinuousClock.Instant)] = []
            var head = 0
        }

        private let state: Locked<State>
        private let capacity: Int
        private let ttl: Duration

        init(capacity: Int, ttl: Duration) {
            self.capacity = max(1, capacity)
            self.ttl = ttl
            // Room for the whole shard from the start (it holds one over the capacity for a moment):
            // the dictionary is not rehashed, all of it at once under the lock, as the store fills.
            var state = State()
            state.entries.reserveCapacity(self.capacity + 1)
            self.state = Locked(state)
        }

        func put(_ view: OverlayResultView) {
            let now = ContinuousClock.now
            let entry = Entry(view: view, created: now, completed: view.status == .pending ? nil : now)
            state.withLock { state in
                // One hash for the common case, a new token.
                if var existing = state.entries.updateValue(entry, forKey: view.token) {
                    existing.view = view
                    if view.status != .pending { existing.completed = now }
                    state.entries[view.token] = existing
                    return
                }
                state.order.append((view.token, now))
                // Oldest first: over the capacity, or past the TTL (a lookup would miss them anyway;
                // leaving them to the capacity kept up to `capacity` dead results in memory). A token
                // a lookup already dropped is simply not there any more.
                while state.head < state.order.count {
                    let oldest = state.order[state.head]
                    if state.entries.count <= capacity, now - oldest.created <= ttl { break }
                    state.entries.removeValue(forKey: oldest.token)
                    state.head += 1
                }
                if state.head > 1024 && state.head * 2 > state.order.count {
                    state.order.removeFirst(state.head)
                    state.head = 0
                }
            }
        }

        func view(token: String) -> OverlayResultView? {
            let now = ContinuousClock.now
            return state.withLock { state in
                guard let entry = state.entries[token] else { return nil }
                if now - entry.created > ttl {
                    state.entries[token] = nil
                    return nil
                }
                return entry.view
            }
        }

        func latencyMs(token: String) -> Double? {
            state.withLock { state in
                guard let entry = state.entries[token], let completed = entry.completed else { return nil }
                let elapsed = completed - entry.created
                return Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
            }
        }

        var count: Int { state.withLock { $0.entries.count } }
    }
}

/// The rolling drift window of every Shadow overlay (`GET /drift`).
public final class DriftBoard: Sendable {
    private let windows = Locked<[String: DriftWindow]>([:])
    private let factory: any MetricsFactory
    private let gauges = Locked<[String: (mean: Gauge, flag: Gauge)]>([:])

    init(factory: any MetricsFactory) {
        self.factory = factory
    }

    func record(
        overlay: String, _ comparison: PairComparison, champion: String, challenger: String, window capacity: Int,
        threshold: Double
    ) {
        let (mean, drifting) = windows.withLock { windows in
            var window = windows[overlay] ?? DriftWindow(capacity: capacity, minSamples: min(20, capacity), threshold: threshold)
            if window.capacity != capacity || window.threshold != threshold {
                window = DriftWindow(capacity: capacity, minSamples: min(20, capacity), threshold: threshold)
            }
            window.record(comparison, championModel: champion, challengerModel: challenger)
            windows[overlay] = window
            return (window.mean, window.drifting)
        }
        let gauge = gauges.withLock { gauges in
            if let found = gauges[overlay] { return found }
            let made = (
                mean: Gauge(label: "overlayd_drift_similarity_mean", dimensions: [("overlay", overlay)], factory: factory),
                flag: Gauge(label: "overlayd_drift_flag", dimensions: [("overlay", overlay)], factory: factory)
            )
            gauges[overlay] = made
            return made
        }
        if let mean { gauge.mean.record(mean) }
        gauge.flag.record(drifting ? 1 : 0)
    }

    /// Per overlay: window size, mean, p10, flag, the last pairs (scores only, no user data).
    public func report(lastPairs: Int = 20) -> [String: DriftWindow] {
        windows.withLock { $0 }
    }
}
