import AsyncHTTPClient
import BackendCore
import Logging
import OverlayCore
import Tracing

/// Calls a model by name; if it fails (any error but `cancelled`, including `circuitOpen` and `saturated`)
/// and its spec names a `fallback`, calls that model ONCE. The fallback's own `fallback` is not followed
/// (no chains, no loops). The returned `Completion.model` is the model that answered and
/// `fallbackFrom` the primary's name when the fallback answered. If the fallback fails too, its error is
/// thrown (the primary's error is logged).
public struct ModelRouter: Sendable {
    public let specs: [String: ModelSpec]
    public let clients: [String: any ModelClient]
    /// Fallbacks happen on every call while a model is down: their lines are throttled per model.
    private let logger: ThrottledLogger

    public init(specs: [String: ModelSpec], clients: [String: any ModelClient], logger: Logger) {
        self.specs = specs
        self.clients = clients
        self.logger = ThrottledLogger(logger)
    }

    /// Builds an `OpenAIClient` or `MockClient` per spec, sharing `httpClient`.
    public init(
        specs: [String: ModelSpec], httpClient: HTTPClient, logger: Logger,
        retryPolicy: RetryPolicy = .default, breakerConfiguration: CircuitBreakerConfiguration = .default
    ) {
        var clients: [String: any ModelClient] = [:]
        for (name, spec) in specs {
            switch spec.provider {
            case .openai:
                clients[name] = OpenAIClient(
                    spec: spec, httpClient: httpClient, logger: logger, retryPolicy: retryPolicy,
                    breakerConfiguration: breakerConfiguration)
            case .mock:
                clients[name] = MockClient(spec: spec, logger: logger)
            }
        }
        self.init(specs: specs, clients: clients, logger: logger)
    }

    public func complete(model name: String, _ request: CompletionRequest) async throws(ModelCallError) -> Completion {
        guard let client = clients[name] else {
            throw .configuration(model: name, reason: "unknown model")
        }
        let primaryError: ModelCallError
        do {
            return try await call(client, request, fallbackFrom: nil)
        } catch {
            primaryError = error
        }
        guard case .cancelled = primaryError else {
            guard let fallbackName = specs[name]?.fallback, fallbackName != name,
                let fallback = clients[fallbackName]
            else { throw primaryError }
            logger.log(
                level: .notice, "model failed, using fallback", key: name,
                metadata: [
                    "model": "\(name)", "fallback": "\(fallbackName)", "error_kind": "\(primaryError.kind)",
                    "error": "\(primaryError)",
                ])
            do {
                var completion = try await call(fallback, request, fallbackFrom: name)
                completion.fallbackFrom = name
                return completion
            } catch {
                logger.log(
                    level: .warning, "fallback failed too", key: fallbackName,
                    metadata: ["model": "\(fallbackName)", "error_kind": "\(error.kind)", "error": "\(error)"])
                throw error
            }
        }
        throw primaryError
    }

    /// One client's call; in a traced task (a context is bound: tracing is on and the exchange
    /// was given one) it is the span `overlayd.model_call`, child of the bound context.
    private func call(
        _ client: any ModelClient, _ request: CompletionRequest, fallbackFrom: String?
    ) async throws(ModelCallError) -> Completion {
        guard ServiceContext.current != nil else { return try await client.complete(request) }
        let span = startSpan("overlayd.model_call", ofKind: .client)
        defer { span.end() }
        span.attributes["overlayd.model"] = client.modelName
        span.attributes["overlayd.model.provider"] = client is OpenAIClient ? "openai" : "mock"
        if let fallbackFrom { span.attributes["overlayd.model.fallback_from"] = fallbackFrom }
        let result: Result<Completion, ModelCallError> = await ServiceContext.withValue(span.context) {
            do throws(ModelCallError) {
                return .success(try await client.complete(request))
            } catch {
                return .failure(error)
            }
        }
        if let breaker = (client as? OpenAIClient)?.breaker.phase {
            switch breaker {
            case .closed: span.attributes["overlayd.model.breaker"] = "closed"
            case .open: span.attributes["overlayd.model.breaker"] = "open"
            case .halfOpen: span.attributes["overlayd.model.breaker"] = "half_open"
            }
        }
        switch result {
        case .success(let completion):
            span.attributes["overlayd.model.attempts"] = completion.attempts
            span.attributes["overlayd.model.retries"] = max(0, completion.attempts - 1)
            span.attributes["overlayd.model.status"] = "ok"
            return completion
        case .failure(let error):
            span.attributes["overlayd.model.status"] = "error"
            span.attributes["overlayd.model.error_kind"] = error.kind
            if case .http(_, let status, _) = error { span.attributes["http.response.status_code"] = status }
            span.setStatus(SpanStatus(code: .error, message: error.kind))
            throw error
        }
    }
}
