import BackendCore
import OverlayCore

/// Every way a model call can fail. Descriptions never contain an API key or the prompt.
public enum ModelCallError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The call's total deadline (`ModelSpec.totalTimeoutMs`) passed.
    case timeout(model: String)
    /// Could not connect to the backend (refused, DNS, connect timeout, TLS).
    case connect(model: String, reason: String)
    /// The backend answered with a non-2xx status; `message` is `error.message` (redacted, truncated).
    case http(model: String, status: Int, message: String)
    /// The backend's answer was not a valid chat-completions response.
    case malformedResponse(model: String, reason: String)
    /// The model's circuit breaker is open; the backend was not called.
    case circuitOpen(model: String)
    /// All `maxConcurrency` slots of the model are busy; the backend was not called.
    case saturated(model: String)
    /// The calling task was cancelled.
    case cancelled(model: String)
    /// The API key's source (env var / file) is missing or empty. Names the source, never a value.
    case missingAPIKey(model: String, source: String)
    /// Configuration problem (unknown model name, missing/invalid baseURL).
    case configuration(model: String, reason: String)

    public var model: String {
        switch self {
        case .timeout(let m), .connect(let m, _), .http(let m, _, _), .malformedResponse(let m, _),
            .circuitOpen(let m), .saturated(let m), .cancelled(let m), .missingAPIKey(let m, _),
            .configuration(let m, _):
            return m
        }
    }

    /// Short machine-readable kind, for logs and metrics.
    public var kind: String {
        switch self {
        case .timeout: "timeout"
        case .connect: "connect"
        case .http: "http"
        case .malformedResponse: "malformed_response"
        case .circuitOpen: "circuit_open"
        case .saturated: "saturated"
        case .cancelled: "cancelled"
        case .missingAPIKey: "missing_api_key"
        case .configuration: "configuration"
        }
    }

    public var description: String {
        switch self {
        case .timeout(let m): "model \(m): timed out"
        case .connect(let m, let r): "model \(m): connect failed: \(r)"
        case .http(let m, let s, let msg): "model \(m): HTTP \(s): \(msg)"
        case .malformedResponse(let m, let r): "model \(m): malformed response: \(r)"
        case .circuitOpen(let m): "model \(m): circuit open"
        case .saturated(let m): "model \(m): saturated (max concurrency reached)"
        case .cancelled(let m): "model \(m): cancelled"
        case .missingAPIKey(let m, let src): "model \(m): API key missing (\(src))"
        case .configuration(let m, let r): "model \(m): configuration error: \(r)"
        }
    }
}

/// A model backend.
public protocol ModelClient: Sendable {
    /// Name of the model spec this client serves.
    var modelName: String { get }
    func complete(_ request: CompletionRequest) async throws(ModelCallError) -> Completion
}
