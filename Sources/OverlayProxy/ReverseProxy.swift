import AsyncHTTPClient
import CoreMetrics
import ExtProcCore
import HTTPTypes
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import OverlayCore
import OverlayDecisions
import OverlayServer
import ServiceLifecycle
import Synchronization

/// `overlayd proxy`: an HTTP/1.1 reverse proxy in front of one upstream, making the same overlay
/// decisions as the ext_proc adapter (``ExchangeStateMachine``) with the same pure functions:
/// ``RequestRouter``, `Overlay.plan`, ``ResponsePlan``, ``ResponseRewrite``, ``OverlayResultView``,
/// and the same ``OverlayEngine``. This type is transport only.
///
/// Bodies stream both ways: the request body is read from the client as the upstream takes it,
/// and the response body is handed from the upstream to the client one chunk at a time
/// (``Handoff``); only the HTML injector's partial tag or a JSON body being enriched (up to the
/// overlay's `maxBodyBytes`) is ever held.
public final class ReverseProxy: Service, Sendable {
    private let options: ProxyOptions
    private let configStore: ConfigStore
    private let engine: OverlayEngine?
    private let health: HealthState?
    private let logger: Logger
    private let clientConfiguration: HTTPClient.Configuration
    private let watch = ConnectionWatch()
    private let metrics: ProxyMetrics
    private let bound = BoundAddress()
    private let resolveUpstream: (@Sendable () async -> Upstream)?
    /// Decodes gzip/deflate pages so they can be injected (the same codec as ext_proc mode).
    private let codec: any BodyCodec = CompressCodec()

    /// - Parameters:
    ///   - engine: runs the model calls (nil: overlaid requests get a failed result).
    ///   - health: marked listening once bound and draining on shutdown (nil when another
    ///     front end reports readiness).
    public init(
        options: ProxyOptions, configStore: ConfigStore, engine: OverlayEngine?, health: HealthState?,
        metricsFactory: any MetricsFactoryBox, logger: Logger,
        resolveUpstream: (@Sendable () async -> Upstream)? = nil
    ) {
        self.resolveUpstream = resolveUpstream
        self.options = options
        self.configStore = configStore
        self.engine = engine
        self.health = health
        self.logger = logger
        var configuration = HTTPClient.Configuration(
            redirectConfiguration: .disallow,
            timeout: .init(connect: options.connectTimeout.timeAmount),
            connectionPool: .init(idleTimeout: options.upstreamIdleTimeout.timeAmount),
            ignoreUncleanSSLShutdown: false,
            decompression: .disabled)
        // Fail a request at once when the upstream refuses connections (502), instead of retrying
        // until the connect timeout.
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = 1024
        configuration.httpVersion = HTTPClient.Configuration.HTTPVersion.http1Only
        self.clientConfiguration = configuration
        self.metrics = ProxyMetrics(factory: metricsFactory.factory)
    }

    /// The port the proxy listens on, once it does (waits until then).
    public func listeningPort() async -> Int { await bound.port() }

    public func run() async throws {
        // The demo's app binds a free port first: the proxy learns it here.
        let upstream = await resolveUpstream?() ?? options.upstream
        // Made here, not in init: it is shut down when run() ends (an HTTPClient must be).
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: clientConfiguration)
        let server = Server(
            childChannelSetup: HTTP1Channel(
                responder: { [self] request, writer, channel in
                    try await self.respond(
                        to: request, writer: writer, channel: channel, upstream: upstream, client: client)
                },
                configuration: .init(additionalChannelHandlers: [InputClosedObserver(watch: self.watch)])),
            configuration: .init(address: .hostname(options.listenHost, port: options.listenPort), serverName: nil),
            onServerRunning: { [self] channel in
                let port = channel.localAddress?.port ?? options.listenPort
                bound.set(port)
                health?.markListening()
                logger.info("proxy listening on \(options.listenHost):\(port), upstream \(upstream)")
            },
            eventLoopGroup: MultiThreadedEventLoopGroup.singleton,
            logger: logger)
        do {
            try await withGracefulShutdownHandler {
                try await server.run()
            } onGracefulShutdown: { [health] in
                health?.markDraining()
            }
        } catch {
            try? await client.shutdown()
            throw error
        }
        try await client.shutdown()
    }

    // MARK: - One exchange

    /// What the upstream task hands the client side, in order: the head, then body chunks.
    enum UpstreamPart: Sendable {
        case head(status: Int, reason: String, headers: HTTPHeaders)
        case body(ByteBuffer)
    }

    /// An upstream failure before its response head: the client gets this status.
    struct UpstreamFailed: Error {
        var status: HTTPResponse.Status
        var kind: String
        var detail: String
    }

    func respond(
        to request: Request, writer: consuming ResponseWriter, channel: any Channel, upstream: Upstream, client: HTTPClient
    ) async throws {
        let config = configStore.current
        let authority = request.head.authority ?? ""
        let target = request.head.path ?? "/"
        let method = request.method.rawValue
        let decision =
            config.routes.isEmpty
            ? RequestDecision.passThrough
            : RequestRouter.decide(
                config: config, authority: authority[...], path: target[...], method: method[...],
                ifNoneMatch: request.headers[.ifNoneMatch].map { $0[...] })

        var overlay: Overlay?
        var call: ModelCall?
        var extra: [(name: String, value: String)] = []
        switch decision {
        case .passThrough:
            metrics.passThrough.increment()
        case .ownEndpoint(let local):
            metrics.ownEndpoint.increment()
            return try await writeLocal(local, writer: writer)
        case .result(let token):
            metrics.ownEndpoint.increment()
            return try await writeLocal(LocalResponse.result(token: token, results: engine?.results), writer: writer)
        case .ask(let matched):
            metrics.ownEndpoint.increment()
            return try await writeLocal(await ask(request, overlay: matched, host: authority, config: config), writer: writer)
        case .overlay(let matched):
            metrics.overlaid.increment()
            var random = SplitMix64(seed: UInt64.random(in: .min ... .max))
            let plan = matched.plan(
                method: method, host: authority, path: target,
                headers: request.headers.map { (name: $0.name.canonicalName, value: $0.value) },
                random: &random)
            overlay = matched
            extra.append((matched.settings.modelHeader, plan.model))
            call = startCall(plan: plan, config: config)
        }

        // The request body is read from the client by a pump this exchange owns (never by the
        // HTTP client directly), so that it is stopped before the server reads the connection
        // again: an upstream that answers before taking the whole body must not leave a reader
        // of the client connection behind.
        var upstreamRequest = makeUpstreamRequest(
            request, upstream: upstream, authority: authority, target: target, channel: channel, extra: extra)
        var pump: (task: Task<Void, Never>, handoff: Handoff<ByteBuffer>)?
        if let length = upstreamRequest.bodyLength {
            let bodyHandoff = Handoff<ByteBuffer>()
            let source = request.body
            let task = Task {
                do {
                    for try await chunk in source { try await bodyHandoff.send(chunk) }
                    bodyHandoff.finish()
                } catch {
                    bodyHandoff.finish(throwing: error)
                }
            }
            pump = (task, bodyHandoff)
            upstreamRequest.request.body = .stream(HandoffSequence(handoff: bodyHandoff), length: length)
        }
        let outgoing = upstreamRequest.request
        let handoff = Handoff<UpstreamPart>()
        let deadline = NIODeadline.now() + options.upstreamTimeout.timeAmount
        let logger = self.logger

        // The upstream side: its head, then its body, one chunk at a time. Cancelled when this
        // exchange ends for any reason (the client went away, the response is complete).
        let upstreamTask = Task {
            do {
                let response = try await client.execute(outgoing, deadline: deadline, logger: logger)
                try await handoff.send(
                    .head(status: Int(response.status.code), reason: response.status.reasonPhrase, headers: response.headers))
                for try await chunk in response.body {
                    try await handoff.send(.body(chunk))
                }
                handoff.finish()
            } catch {
                handoff.finish(throwing: error)
            }
        }
        let watching = watch.register(channel) { handoff.finish(throwing: ClientGone()) }
        let outcome: Result<Void, any Error>
        do {
            try await relay(
                handoff: handoff, writer: writer, channel: channel, method: method, target: target, overlay: overlay,
                call: call)
            outcome = .success(())
        } catch {
            outcome = .failure(error)
        }
        watch.unregister(watching)
        upstreamTask.cancel()
        if let pump {
            // Stop reading the client before the server reads its next request (a pump blocked
            // on the client's bytes ends that connection: its request body is unfinished).
            pump.handoff.finish(throwing: CancellationError())
            pump.task.cancel()
            await pump.task.value
        }
        try outcome.get()
    }

    /// The client side: the response head (after the overlay decisions), then the body.
    private func relay(
        handoff: Handoff<UpstreamPart>, writer: consuming ResponseWriter, channel: any Channel, method: String, target: String,
        overlay: Overlay?, call: ModelCall?
    ) async throws {
        let first: UpstreamPart?
        do {
            first = try await handoff.next()
        } catch let error as ClientGone {
            metrics.clientAborts.increment()
            throw error
        } catch {
            let failed = classify(error)
            metrics.upstreamError(failed.kind)
            logger.notice(
                "upstream request failed", metadata: ["kind": "\(failed.kind)", "error": "\(failed.detail)", "target": "\(target)"])
            let body = Array("overlayd proxy: upstream \(failed.kind): \(failed.detail)\n".utf8)
            return try await writeLocal(
                LocalResponse(status: failed.status.code, contentType: "text/plain; charset=utf-8", body: body,
                    extraHeaders: [("cache-control", "no-store")]),
                writer: writer)
        }
        guard case .head(let status, let reason, let upstreamHeaders) = first else {
            throw UpstreamFailed(status: .badGateway, kind: "protocol", detail: "no response head")
        }
        var fields = HopByHop.endToEnd(upstreamHeaders)

        // The same response decision as ext_proc mode (ExchangeStateMachine, response headers).
        var rewrite: ResponseRewrite?
        if let overlay, let call {
            let plan = ResponsePlan.decide(
                settings: overlay.settings, method: method[...], path: target[...],
                headers: CollectionOfOne((name: ":status", value: String(status))) + fields, decodable: codec.encodings)
            metrics.responsePlan(plan)
            let hasBody = !fields.contains { $0.name == "content-length" && $0.value == "0" }
            if case .untouched = plan {
            } else if hasBody {
                let view = await call.result(
                    withinBudget: .milliseconds(Int64(overlay.settings.latencyBudgetMs)))
                rewrite = ResponseRewrite(plan: plan, settings: overlay.settings, view: view, codec: codec)
                // The body changes: no content-length (the response goes out chunked).
                fields.removeAll { $0.name == "content-length" }
            }
        }

        var head = HTTPResponse(status: .init(code: status, reasonPhrase: reason))
        for field in fields {
            if let name = HTTPField.Name(field.name) { head.headerFields.append(HTTPField(name: name, value: field.value)) }
        }
        var body = try await writer.writeHead(head)
        do {
            while let part = try await handoff.next() {
                guard case .body(let chunk) = part else { continue }
                if rewrite != nil, let replaced = rewrite!.rewrite(chunk.readableBytesView, endOfStream: false) {
                    if !replaced.isEmpty { try await body.write(ByteBuffer(bytes: replaced)) }
                } else {
                    try await body.write(chunk)
                }
            }
            if rewrite != nil, let tail = rewrite!.rewrite(EmptyCollection<UInt8>(), endOfStream: true), !tail.isEmpty {
                try await body.write(ByteBuffer(bytes: tail))
            }
            if let outcome = rewrite?.outcome { metrics.injection(outcome) }
        } catch {
            // The client went away, or the upstream failed mid-body: the response cannot be
            // completed; closing the connection tells the client it is truncated.
            if error is ClientGone || !channel.isActive {
                metrics.clientAborts.increment()
            } else {
                metrics.upstreamError("body")
            }
            throw error
        }
        try await body.finish(nil)
    }

    /// `POST /__overlay/api/ask`: the question (JSON, at most ``AskRequest/maxBodyBytes``) is
    /// planned like ext_proc mode does it (`Overlay.planAsk`), its call started, and the pending
    /// result with its token answered at once.
    private func ask(_ request: Request, overlay: Overlay, host: String, config: OverlayConfig) async -> LocalResponse {
        var body: [UInt8] = []
        do {
            for try await chunk in request.body {
                body.append(contentsOf: chunk.readableBytesView.prefix(AskRequest.maxBodyBytes + 1 - body.count))
                if body.count > AskRequest.maxBodyBytes { break }
            }
        } catch {
            return LocalResponse.askError("the question's body could not be read")
        }
        if body.isEmpty { return LocalResponse.askError("a question needs a JSON body") }
        switch AskRequest.parse(body) {
        case .failure(let error):
            return LocalResponse.askError(error.message)
        case .success(let question):
            var random = SplitMix64(seed: UInt64.random(in: .min ... .max))
            let plan = overlay.planAsk(
                question, host: host, headers: request.headers.map { (name: $0.name.canonicalName, value: $0.value) },
                random: &random)
            return LocalResponse.askAnswer(startCall(plan: plan, config: config).pendingView)
        }
    }

    private func startCall(plan: OverlayPlan, config: OverlayConfig) -> ModelCall {
        if let engine { return engine.start(plan: plan, config: config) }
        let call = ModelCall(token: "", plan: plan, started: .now())
        call.complete(OverlayResultView(overlay: plan.overlay, model: plan.model, token: "", status: .failed, error: "no engine"))
        return call
    }

    private func writeLocal(_ local: LocalResponse, writer: consuming ResponseWriter) async throws {
        var head = HTTPResponse(status: .init(code: local.status))
        head.headerFields[.contentType] = local.contentType
        for (name, value) in local.extraHeaders {
            if let name = HTTPField.Name(name) { head.headerFields.append(HTTPField(name: name, value: value)) }
        }
        head.headerFields[.contentLength] = String(local.body.count)
        if local.body.isEmpty || local.status == 304 {
            try await writer.writeResponse(head)
        } else {
            var body = try await writer.writeHead(head)
            try await body.write(ByteBuffer(bytes: local.body))
            try await body.finish(nil)
        }
    }

    /// The request for the upstream: the client's end-to-end fields, its Host, and X-Forwarded-*;
    /// and the framing of its body (nil: none).
    private func makeUpstreamRequest(
        _ request: Request, upstream base: Upstream, authority: String, target: String, channel: any Channel,
        extra: [(name: String, value: String)]
    ) -> (request: HTTPClientRequest, bodyLength: HTTPClientRequest.Body.Length?) {
        var upstream = HTTPClientRequest(url: base.url(for: target))
        upstream.method = HTTPMethod(rawValue: request.method.rawValue)
        var headers = HTTPHeaders()
        if !authority.isEmpty { headers.add(name: "host", value: authority) }
        var forwardedFor: [String] = []
        var length: Int64?
        var chunked = false
        for field in request.headers {
            let name = field.name.canonicalName
            if name == "transfer-encoding" { chunked = true }
            if name == "content-length" { length = Int64(field.value) }
        }
        let replaced = Set(extra.map { $0.name.lowercased() })
        for field in HopByHop.endToEnd(request.headers) {
            switch field.name {
            case "content-length", "host", "x-forwarded-proto", "x-forwarded-host": continue
            case "x-forwarded-for": forwardedFor.append(field.value)
            default:
                if replaced.contains(field.name) { continue }
                headers.add(name: field.name, value: field.value)
            }
        }
        for (name, value) in extra { headers.add(name: name, value: value) }
        if let ip = channel.remoteAddress?.ipAddress { forwardedFor.append(ip) }
        if !forwardedFor.isEmpty { headers.add(name: "x-forwarded-for", value: forwardedFor.joined(separator: ", ")) }
        headers.add(name: "x-forwarded-proto", value: "http")
        if !authority.isEmpty { headers.add(name: "x-forwarded-host", value: authority) }
        upstream.headers = headers
        if chunked { return (upstream, .unknown) }
        if let length, length > 0 { return (upstream, .known(length)) }
        if length != nil && request.method != .get && request.method != .head { upstream.body = .bytes(ByteBuffer()) }
        return (upstream, nil)
    }

    /// 504 for timeouts, 502 for everything else (refused, reset, malformed).
    private func classify(_ error: any Error) -> UpstreamFailed {
        if let error = error as? HTTPClientError {
            switch error {
            case .connectTimeout, .deadlineExceeded, .readTimeout, .getConnectionFromPoolTimeout:
                return UpstreamFailed(status: .gatewayTimeout, kind: "timeout", detail: "\(error)")
            default:
                return UpstreamFailed(status: .badGateway, kind: "error", detail: "\(error)")
            }
        }
        if let error = error as? ChannelError, case .connectTimeout = error {
            return UpstreamFailed(status: .gatewayTimeout, kind: "timeout", detail: "\(error)")
        }
        if error is NIOConnectionError || error is IOError {
            return UpstreamFailed(status: .badGateway, kind: "connect", detail: "\(error)")
        }
        return UpstreamFailed(status: .badGateway, kind: "error", detail: "\(error)")
    }
}

/// The bound port, awaited by whoever needs it (tests, the demo's banner).
public final class BoundAddress: Sendable {
    public init() {}
    private let state = Mutex<(port: Int?, waiters: [CheckedContinuation<Int, Never>])>((nil, []))

    public func set(_ port: Int) {
        let waiters = state.withLock { state in
            state.port = port
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume(returning: port) }
    }

    public func port() async -> Int {
        await withCheckedContinuation { continuation in
            let known: Int? = state.withLock { state in
                if let port = state.port { return port }
                state.waiters.append(continuation)
                return nil
            }
            if let known { continuation.resume(returning: known) }
        }
    }
}

/// The proxy's own metrics (the engine's and the config store's are shared with ext_proc mode).
///
/// - `overlayd_proxy_decisions_total{decision}`: pass_through, overlay, own_endpoint.
/// - `overlayd_proxy_upstream_errors_total{kind}`: connect, timeout, error, body.
/// - `overlayd_proxy_client_aborts_total`: client connections closed mid-exchange.
/// - `overlayd_proxy_injections_total{result}`: what happened to overlaid response bodies.
final class ProxyMetrics: Sendable {
    let passThrough: Counter
    let overlaid: Counter
    let ownEndpoint: Counter
    let clientAborts: Counter
    private let errors: [String: Counter]
    private let injections: [String: Counter]
    private let factory: any MetricsFactory

    init(factory: any MetricsFactory) {
        self.factory = factory
        passThrough = Counter(label: "overlayd_proxy_decisions_total", dimensions: [("decision", "pass_through")], factory: factory)
        overlaid = Counter(label: "overlayd_proxy_decisions_total", dimensions: [("decision", "overlay")], factory: factory)
        ownEndpoint = Counter(label: "overlayd_proxy_decisions_total", dimensions: [("decision", "own_endpoint")], factory: factory)
        clientAborts = Counter(label: "overlayd_proxy_client_aborts_total", factory: factory)
        var errors: [String: Counter] = [:]
        for kind in ["connect", "timeout", "error", "body"] {
            errors[kind] = Counter(label: "overlayd_proxy_upstream_errors_total", dimensions: [("kind", kind)], factory: factory)
        }
        self.errors = errors
        var injections: [String: Counter] = [:]
        for result in ["injected", "already_present", "too_large", "not_json_object"] + ResponsePlan.reasons {
            injections[result] = Counter(label: "overlayd_proxy_injections_total", dimensions: [("result", result)], factory: factory)
        }
        self.injections = injections
    }

    func upstreamError(_ kind: String) { errors[kind]?.increment() }
    func injection(_ result: String) { injections[result]?.increment() }
    func responsePlan(_ plan: ResponsePlan) {
        if case .untouched(let reason) = plan { injections[reason]?.increment() }
    }
}

/// A ``Handoff`` read as an `AsyncSequence` (the request body as the HTTP client takes it).
struct HandoffSequence: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    let handoff: Handoff<ByteBuffer>

    struct AsyncIterator: AsyncIteratorProtocol {
        let handoff: Handoff<ByteBuffer>
        mutating func next() async throws -> ByteBuffer? { try await handoff.next() }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(handoff: handoff) }
}
