/// Which kind of backend serves a model (`AIModel.spec.provider`).
public enum ModelProvider: String, Sendable, Hashable, CaseIterable {
    /// Any OpenAI-compatible chat-completions API (OpenAI, vLLM, Ollama, llama.cpp).
    case openai
    /// The built-in deterministic mock (demos and load tests).
    case mock
}

/// Where an API key comes from. Never inline in the document, never logged.
public enum APIKeySource: Sendable, Hashable {
    /// An environment variable of the overlayd process.
    case env(String)
    /// A file (e.g. a mounted Kubernetes secret); read when the model is called.
    case file(String)
}

/// One validated `AIModel` resource: an entry of the model registry.
///
/// ```yaml
/// apiVersion: orchestrator.io/v1
/// kind: AIModel
/// metadata: {name: gpt-4-turbo}
/// spec:
///   provider: openai                      # openai | mock (required)
///   baseURL: https://api.openai.com/v1    # openai: required (http/https, a host, no query or fragment); mock: forbidden
///   model: gpt-4-turbo                    # upstream model id (default: metadata.name)
///   apiKey: {env: OPENAI_API_KEY}         # openai only; exactly one of env / file (absolute path)
///   timeouts: {connect: 2s, total: 30s}   # durations Nms|Ns|Nm; connect 1ms..60s (2s), total 1ms..10m (30s)
///   maxConcurrency: 16                    # 1..10000 (16)
///   fallback: llama-3-local               # another AIModel (not itself, no cycles)
///   mock: {latency: 50ms, errorRate: 0}   # mock only; latency ≤ 10m (0ms), errorRate 0..1 (0)
/// ```
public struct ModelSpec: Sendable, Hashable {
    public var name: String
    public var provider: ModelProvider
    public var baseURL: String?
    public var model: String
    public var apiKey: APIKeySource?
    public var connectTimeoutMs: Int
    public var totalTimeoutMs: Int
    public var maxConcurrency: Int
    public var fallback: String?
    public var mockLatencyMs: Int
    public var mockErrorRate: Double

    public init(
        name: String, provider: ModelProvider, baseURL: String? = nil, model: String? = nil,
        apiKey: APIKeySource? = nil, connectTimeoutMs: Int = ModelSpec.defaultConnectTimeoutMs,
        totalTimeoutMs: Int = ModelSpec.defaultTotalTimeoutMs, maxConcurrency: Int = ModelSpec.defaultMaxConcurrency,
        fallback: String? = nil, mockLatencyMs: Int = 0, mockErrorRate: Double = 0
    ) {
        self.name = name
        self.provider = provider
        self.baseURL = baseURL
        self.model = model ?? name
        self.apiKey = apiKey
        self.connectTimeoutMs = connectTimeoutMs
        self.totalTimeoutMs = totalTimeoutMs
        self.maxConcurrency = maxConcurrency
        self.fallback = fallback
        self.mockLatencyMs = mockLatencyMs
        self.mockErrorRate = mockErrorRate
    }

    public static let defaultConnectTimeoutMs = 2_000
    public static let defaultTotalTimeoutMs = 30_000
    public static let defaultMaxConcurrency = 16
}
