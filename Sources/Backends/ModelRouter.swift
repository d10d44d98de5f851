import AsyncHTTPClient
import BackendCore
import Logging
import OverlayCore

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
            return try await client.complete(request)
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
                var completion = try await fallback.complete(request)
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
}
