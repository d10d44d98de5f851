import AsyncHTTPClient
import BackendCore
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import OverlayCore
import Tracing

/// `ModelClient` for any OpenAI-compatible chat-completions API, on a shared `HTTPClient`.
///
/// Per call: resolve API key → take a concurrency slot (fail fast: `saturated`) → ask the circuit breaker
/// (`circuitOpen`) → up to 1 + `retryPolicy.maxRetries` HTTP attempts, all within `spec.totalTimeoutMs`
/// (including `Retry-After` waits) → record the call's outcome in the breaker.
///
/// Connect timeout: async-http-client only supports a client-wide connect timeout, so
/// `spec.connectTimeoutMs` takes effect through the `HTTPClient`'s configuration; build it with
/// `OpenAIClient.httpClientConfiguration(connectTimeoutMs:)` (which also disables the pool's own
/// connect retries, redirects and decompression).
public final class OpenAIClient: ModelClient {
    public let spec: ModelSpec
    public var modelName: String { spec.name }
    public let retryPolicy: RetryPolicy
    public let retryBudget: RetryBudget
    public let breaker: CircuitBreaker<ContinuousClock.Instant>
    public let limiter: ConcurrencyLimiter

    private let httpClient: HTTPClient
    private let logger: Logger
    /// For what can repeat on every call (saturation, a missing key, failed calls).
    private let throttled: ThrottledLogger
    private let keyResolver: APIKeyResolver
    private let endpoint: String?
    private let jitter: @Sendable () -> Double
    private let maxResponseBytes: Int

    /// - Parameters:
    ///   - now: time source of the circuit breaker only (deadlines use the real continuous clock).
    ///   - jitter: random fraction in [0, 1) for retry backoff.
    public init(
        spec: ModelSpec,
        httpClient: HTTPClient,
        logger: Logger,
        retryPolicy: RetryPolicy = .default,
        retryBudget: RetryBudget = RetryBudget(),
        breakerConfiguration: CircuitBreakerConfiguration = .default,
        now: @escaping @Sendable () -> ContinuousClock.Instant = { ContinuousClock.now },
        keyResolver: APIKeyResolver = APIKeyResolver(),
        jitter: @escaping @Sendable () -> Double = { Double.random(in: 0..<1) },
        maxResponseBytes: Int = 8 << 20
    ) {
        self.spec = spec
        self.httpClient = httpClient
        var logger = logger
        logger[metadataKey: "model"] = "\(spec.name)"
        self.logger = logger
        self.throttled = ThrottledLogger(logger)
        self.retryPolicy = retryPolicy
        self.retryBudget = retryBudget
        self.breaker = CircuitBreaker(configuration: breakerConfiguration, now: now)
        self.limiter = ConcurrencyLimiter(limit: spec.maxConcurrency)
        self.keyResolver = keyResolver
        self.jitter = jitter
        self.maxResponseBytes = maxResponseBytes
        self.endpoint = Self.endpoint(baseURL: spec.baseURL)
    }

    /// `HTTPClient` configuration suited to model backends.
    public static func httpClientConfiguration(
        connectTimeoutMs: Int = ModelSpec.defaultConnectTimeoutMs
    ) -> HTTPClient.Configuration {
        var config = HTTPClient.Configuration()
        config.timeout.connect = .milliseconds(Int64(connectTimeoutMs))
        // Our RetryPolicy (with its budget) decides about retries, not the pool.
        config.connectionPool.retryConnectionEstablishment = false
        // Never forward the bearer token to wherever a redirect points.
        config.redirectConfiguration = .disallow
        config.decompression = .disabled
        // The spans of a model call are ours (`overlayd.model_attempt` per HTTP attempt, whose
        // context we send as `traceparent`): the client opens none of its own, nor a root span
        // for a call that no traced exchange made.
        config.tracing.tracer = nil
        return config
    }

    static func endpoint(baseURL: String?) -> String? {
        guard var base = baseURL, base.hasPrefix("http://") || base.hasPrefix("https://") else { return nil }
        while base.hasSuffix("/") { base.removeLast() }
        return base + "/chat/completions"
    }

    // MARK: - Call

    public func complete(_ request: CompletionRequest) async throws(ModelCallError) -> Completion {
        let deadline = ContinuousClock.now.advanced(by: .milliseconds(spec.totalTimeoutMs))
        let name = spec.name
        guard let endpoint else {
            throw .configuration(model: name, reason: "baseURL must be an http(s) URL")
        }
        if Task.isCancelled { throw .cancelled(model: name) }

        var key: String?
        if let source = spec.apiKey {
            guard let resolved = keyResolver.resolve(source) else {
                let error = ModelCallError.missingAPIKey(model: name, source: APIKeyResolver.describe(source))
                throttled.log(
                    level: .error, "model call failed", metadata: ["error_kind": "\(error.kind)", "error": "\(error)"])
                throw error
            }
            key = resolved
        }

        guard limiter.tryAcquire() else {
            throttled.log(level: .warning, "model saturated", metadata: ["max_concurrency": "\(limiter.limit)"])
            throw .saturated(model: name)
        }
        defer { limiter.release() }

        let permission = breaker.acquire()
        guard permission.isAllowed else {
            logger.debug("circuit open, call rejected")
            throw .circuitOpen(model: name)
        }
        if permission == .probe { logger.info("circuit half-open, probing") }
        retryBudget.depositForCall()

        do {
            let completion = try await attempts(request, endpoint: endpoint, key: key, deadline: deadline)
            breaker.record(.success, permission: permission)
            if permission == .probe { logger.info("circuit closed after successful probe") }
            return completion
        } catch {
            let outcome = Self.breakerOutcome(error)
            let before = breaker.phase
            breaker.record(outcome, permission: permission)
            if case .open = breaker.phase, before != breaker.phase {
                logger.warning("circuit opened", metadata: ["error_kind": "\(error.kind)"])
            }
            throw error
        }
    }

    static func breakerOutcome(_ error: ModelCallError) -> CircuitBreakerState<ContinuousClock.Instant>.Outcome {
        switch error {
        case .timeout, .connect, .malformedResponse: .failure
        case .http(_, let status, _): (status >= 500 || status == 429) ? .failure : .ignored
        case .circuitOpen, .saturated, .cancelled, .missingAPIKey, .configuration: .ignored
        }
    }

    private struct AttemptError: Error {
        var error: ModelCallError
        var failure: AttemptFailure
    }

    private func attempts(
        _ request: CompletionRequest, endpoint: String, key: String?, deadline: ContinuousClock.Instant
    ) async throws(ModelCallError) -> Completion {
        let body = ChatCompletionsCodec.encodeRequest(model: spec.model, request: request)
        var attempt = 0
        while true {
            attempt += 1
            var attemptLogger = logger
            attemptLogger[metadataKey: "attempt"] = "\(attempt)"
            attemptLogger.debug(
                "model request",
                metadata: ["stream": "\(request.stream)", "prompt_chars": "\(request.messages.reduce(0) { $0 + $1.content.count })"])
            // Traced (a context is bound): each HTTP attempt is a span (ended before any backoff),
            // and its context travels to the backend as `traceparent`.
            let span = ServiceContext.current.map { startSpan("overlayd.model_attempt", context: $0, ofKind: .client) }
            span?.attributes["overlayd.model.attempt"] = attempt
            span?.attributes["url.full"] = endpoint
            do {
                let (text, finish) = try await attemptOnce(
                    body: body, stream: request.stream, endpoint: endpoint, key: key, deadline: deadline,
                    trace: span?.context)
                attemptLogger.debug("model response", metadata: ["status": "200", "finish_reason": "\(finish ?? "")"])
                span?.attributes["http.response.status_code"] = 200
                span?.end()
                return Completion(text: text, model: spec.name, finishReason: finish, attempts: attempt)
            } catch {
                span?.attributes["overlayd.model.error_kind"] = error.error.kind
                if case .http(_, let status, _) = error.error { span?.attributes["http.response.status_code"] = status }
                span?.setStatus(SpanStatus(code: .error, message: error.error.kind))
                let remaining = ContinuousClock.now.duration(to: deadline)
                let decision = retryPolicy.decide(
                    after: error.failure, attempt: attempt, remaining: remaining, budget: retryBudget, jitter: jitter())
                var meta: Logger.Metadata = [
                    "attempt": "\(attempt)", "error_kind": "\(error.error.kind)", "error": "\(error.error)",
                ]
                if case .http(_, let status, _) = error.error { meta["status"] = "\(status)" }
                switch decision {
                case .retry(let delay):
                    meta["delay_ms"] = "\(delay.milliseconds)"
                    span?.attributes["overlayd.model.retry_delay_ms"] = Int(delay.milliseconds)
                    span?.end()
                    throttled.log(level: .notice, "model attempt failed, retrying", metadata: meta)
                    do {
                        try await Task.sleep(until: ContinuousClock.now.advanced(by: delay), clock: .continuous)
                    } catch {
                        throw .cancelled(model: spec.name)
                    }
                case .giveUp(let reason):
                    meta["give_up"] = "\(reason)"
                    span?.attributes["overlayd.model.give_up"] = "\(reason)"
                    span?.end()
                    throttled.log(level: .warning, "model call failed", metadata: meta)
                    throw error.error
                }
            }
        }
    }

    private func attemptOnce(
        body: [UInt8], stream: Bool, endpoint: String, key: String?, deadline: ContinuousClock.Instant,
        trace: ServiceContext?
    ) async throws(AttemptError) -> (String, String?) {
        let name = spec.name
        let remaining = ContinuousClock.now.duration(to: deadline)
        guard remaining > .zero else {
            throw AttemptError(error: .timeout(model: name), failure: .timeout)
        }
        var http = HTTPClientRequest(url: endpoint)
        http.method = .POST
        http.headers.add(name: "Content-Type", value: "application/json")
        http.headers.add(name: "Accept", value: stream ? "text/event-stream" : "application/json")
        if let key { http.headers.add(name: "Authorization", value: "Bearer \(key)") }
        if let trace { InstrumentationSystem.instrument.inject(trace, into: &http.headers, using: HTTPHeadersInjector()) }
        http.body = .bytes(ByteBuffer(bytes: body))
        let request = http

        let client = httpClient
        let maxBytes = maxResponseBytes
        let result: Result<(String, String?), AttemptError>
        do {
            result = try await withDeadline(deadline) { () async throws -> Result<(String, String?), AttemptError> in
                let response: HTTPClientResponse
                do {
                    response = try await client.execute(request, deadline: .now() + .nanoseconds(remaining.nanoseconds))
                } catch {
                    return .failure(Self.classifyTransport(error, model: name, phase: "connect"))
                }
                return await Self.readResponse(response, stream: stream, model: name, key: key, maxBytes: maxBytes)
            }
        } catch is DeadlineExceeded {
            throw AttemptError(error: .timeout(model: name), failure: .timeout)
        } catch {
            throw AttemptError(error: .cancelled(model: name), failure: .other)
        }
        if Task.isCancelled { throw AttemptError(error: .cancelled(model: name), failure: .other) }
        return try result.get()
    }

    private static func readResponse(
        _ response: HTTPClientResponse, stream: Bool, model: String, key: String?, maxBytes: Int
    ) async -> Result<(String, String?), AttemptError> {
        let status = Int(response.status.code)
        guard (200..<300).contains(status) else {
            let body = (try? await response.body.collect(upTo: 64 << 10)).map { Array($0.readableBytesView) } ?? []
            let message = errorMessage(body: body, status: response.status, key: key)
            var retryAfter: Duration?
            if let header = response.headers.first(name: "Retry-After") {
                retryAfter = RetryAfter.parse(header, nowEpochSeconds: Date().timeIntervalSince1970)
            }
            return .failure(
                AttemptError(
                    error: .http(model: model, status: status, message: message),
                    failure: .http(status: status, retryAfter: retryAfter)))
        }
        let contentType = response.headers.first(name: "Content-Type")?.lowercased() ?? ""
        do {
            if stream && !contentType.contains("application/json") {
                var accumulator = ChatStreamAccumulator()
                var total = 0
                for try await chunk in response.body {
                    total += chunk.readableBytes
                    if total > maxBytes {
                        return .failure(malformed(model, "stream larger than \(maxBytes) bytes"))
                    }
                    try accumulator.feed(chunk.readableBytesView)
                    if accumulator.isDone { break }
                }
                try accumulator.finish()
                return .success((accumulator.text, accumulator.finishReason))
            } else {
                // Non-streaming (also when a server ignores `stream: true` and answers plain JSON).
                let buffer = try await response.body.collect(upTo: maxBytes)
                let decoded = try ChatCompletionsCodec.decodeResponse(Array(buffer.readableBytesView))
                return .success((decoded.text, decoded.finishReason))
            }
        } catch let error as MalformedPayload {
            return .failure(malformed(model, redact(error.reason, key: key)))
        } catch is NIOTooManyBytesError {
            return .failure(malformed(model, "response larger than \(maxBytes) bytes"))
        } catch {
            return .failure(classifyTransport(error, model: model, phase: "body"))
        }
    }

    private static func malformed(_ model: String, _ reason: String) -> AttemptError {
        AttemptError(error: .malformedResponse(model: model, reason: reason), failure: .malformed)
    }

    /// `error.message` of an OpenAI error body (else the status reason), truncated, API key redacted.
    static func errorMessage(body: [UInt8], status: HTTPResponseStatus, key: String?) -> String {
        var message = ChatCompletionsCodec.decodeError(body)?.message ?? status.reasonPhrase
        if message.count > 300 { message = String(message.prefix(300)) + "…" }
        return redact(message, key: key)
    }

    static func redact(_ text: String, key: String?) -> String {
        guard let key, !key.isEmpty else { return text }
        return text.replacingOccurrences(of: key, with: "[REDACTED]")
    }

    private static func classifyTransport(_ error: any Error, model: String, phase: String) -> AttemptError {
        if let e = error as? HTTPClientError {
            switch e {
            case .deadlineExceeded:
                return AttemptError(error: .timeout(model: model), failure: .timeout)
            case .cancelled:
                return AttemptError(error: .cancelled(model: model), failure: .other)
            case .connectTimeout:
                return AttemptError(error: .connect(model: model, reason: "connect timeout"), failure: .connect)
            case .remoteConnectionClosed:
                if phase == "body" {
                    return malformed(model, "connection closed before the response was complete")
                }
                return AttemptError(
                    error: .connect(model: model, reason: "connection closed by server"), failure: .connect)
            default:
                break
            }
        }
        if error is CancellationError {
            return AttemptError(error: .cancelled(model: model), failure: .other)
        }
        if phase == "body" {
            return malformed(model, "body read failed: \(shortDescription(error))")
        }
        return AttemptError(error: .connect(model: model, reason: shortDescription(error)), failure: .connect)
    }

    private static func shortDescription(_ error: any Error) -> String {
        if let e = error as? NIOConnectionError, let first = e.connectionErrors.first {
            return "\(first.error)"
        }
        let text = "\(error)"
        return text.count > 200 ? String(text.prefix(200)) + "…" : text
    }
}

struct DeadlineExceeded: Error {}

/// Runs `operation`, throwing `DeadlineExceeded` (and cancelling it) if it has not finished by `deadline`.
func withDeadline<T: Sendable>(
    _ deadline: ContinuousClock.Instant, _ operation: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await operation() }
        group.addTask {
            try await Task.sleep(until: deadline, clock: .continuous)
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let value = first else { throw DeadlineExceeded() }
        return value
    }
}

extension Duration {
    var nanoseconds: Int64 {
        let (s, a) = components
        return s * 1_000_000_000 + a / 1_000_000_000
    }

    var milliseconds: Int64 {
        let (s, a) = components
        return s * 1000 + a / 1_000_000_000_000_000
    }
}

/// Writes `traceparent` / `tracestate` into a request's headers (replacing any).
struct HTTPHeadersInjector: Injector {
    func inject(_ value: String, forKey key: String, into carrier: inout HTTPHeaders) {
        carrier.replaceOrAdd(name: key, value: value)
    }
}
