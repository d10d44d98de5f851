import Foundation
import Testing

@testable import OverlayCore

/// `AIModel` resources (the model registry) and the cross-resource rules.
@Suite("AIModel")
struct ModelRegistryTests {
    static func model(_ name: String, _ spec: String) -> String {
        "apiVersion: orchestrator.io/v1\nkind: AIModel\nmetadata: {name: \(name)}\nspec:\n" + spec + "\n---\n"
    }

    static let openAI = model("gpt-4-turbo", """
          provider: openai
          baseURL: https://api.openai.com/v1
          model: gpt-4-turbo-2024-04-09
          apiKey: {env: OPENAI_API_KEY}
          timeouts: {connect: 500ms, total: 1m}
          maxConcurrency: 32
          fallback: llama-3-local
        """)
    static let local = model("llama-3-local", """
          provider: openai
          baseURL: http://127.0.0.1:11434/v1
        """)
    /// The seed example (ConfigLoaderTests.swift), as one document of a stream.
    static let seedOverlay = seedYAML + "\n"

    static func problems(_ text: String) -> [String] {
        do {
            _ = try ConfigLoader.load(text: text, source: "t")
            return []
        } catch {
            return error.problems.map(\.description)
        }
    }

    @Test("a registry with the seed overlay loads, with every field and default")
    func loads() throws {
        let config = try ConfigLoader.load(text: Self.openAI + Self.local + Self.seedOverlay, source: "t")
        let gpt = try #require(config.models["gpt-4-turbo"])
        #expect(gpt.provider == .openai)
        #expect(gpt.baseURL == "https://api.openai.com/v1")
        #expect(gpt.model == "gpt-4-turbo-2024-04-09")
        #expect(gpt.apiKey == .env("OPENAI_API_KEY"))
        #expect(gpt.connectTimeoutMs == 500)
        #expect(gpt.totalTimeoutMs == 60_000)
        #expect(gpt.maxConcurrency == 32)
        #expect(gpt.fallback == "llama-3-local")
        let llama = try #require(config.models["llama-3-local"])
        #expect(llama.model == "llama-3-local")
        #expect(llama.connectTimeoutMs == 2_000)
        #expect(llama.totalTimeoutMs == 30_000)
        #expect(llama.maxConcurrency == 16)
        #expect(llama.apiKey == nil)
        #expect(config.overlay(forAuthority: "salesforce.com")?.name == "salesforce-copilot")
    }

    @Test("the seed overlay alone (no registry) loads: model names are checked only against a registry")
    func seedAlone() throws {
        #expect(Self.problems(Self.seedOverlay) == [])
    }

    @Test("a mock model with latency and error rate")
    func mock() throws {
        let config = try ConfigLoader.load(
            text: Self.model("m", "  provider: mock\n  mock: {latency: 50ms, errorRate: 0.25}"), source: "t")
        #expect(config.models["m"]?.mockLatencyMs == 50)
        #expect(config.models["m"]?.mockErrorRate == 0.25)
    }

    @Test("the embedded demo's overlays refer to its own mock models")
    func demoRegistry() {
        let demo = EmbeddedDemo.load()
        #expect(Set(demo.models.keys) == ["mock-fast", "mock-smart"])
        #expect(demo.models.values.allSatisfy { $0.provider == .mock })
    }

    @Test("each rule gives one exact message", arguments: [
        ("  provider: bedrock", "AIModel m: spec.provider: must be one of openai, mock, got \"bedrock\""),
        ("  baseURL: http://x", "AIModel m: spec.provider: is required (one of openai, mock)"),
        ("  provider: openai", "AIModel m: spec.baseURL: is required for provider openai (e.g. https://api.openai.com/v1)"),
        ("  provider: openai\n  baseURL: ftp://x/v1", "AIModel m: spec.baseURL: must be an http:// or https:// URL, got \"ftp://x/v1\""),
        ("  provider: openai\n  baseURL: https://api/v1?k=1", "AIModel m: spec.baseURL: must not have a query or fragment (the API path is appended to it), got \"https://api/v1?k=1\""),
        ("  provider: mock\n  baseURL: http://x", "AIModel m: spec.baseURL: is not used by the mock provider; remove it"),
        ("  provider: openai\n  baseURL: http://x\n  apiKey: sk-123", "AIModel m: spec.apiKey: must be a mapping with exactly one of env, file (keys are never written inline)"),
        ("  provider: openai\n  baseURL: http://x\n  apiKey: {env: A, file: /k}", "AIModel m: spec.apiKey: must have exactly one of env, file; got both"),
        ("  provider: openai\n  baseURL: http://x\n  apiKey: {env: 1BAD}", "AIModel m: spec.apiKey.env: must be an environment variable name ([A-Za-z_][A-Za-z0-9_]*), got \"1BAD\""),
        ("  provider: openai\n  baseURL: http://x\n  apiKey: {file: key.txt}", "AIModel m: spec.apiKey.file: must be an absolute file path, got \"key.txt\""),
        ("  provider: mock\n  timeouts: {connect: 2h}", "AIModel m: spec.timeouts.connect: must be a duration such as 500ms, 2s or 1m (1ms...1m), got \"2h\""),
        ("  provider: mock\n  timeouts: {connect: \"+5s\"}", "AIModel m: spec.timeouts.connect: must be a duration such as 500ms, 2s or 1m (1ms...1m), got \"+5s\""),
        ("  provider: mock\n  timeouts: {connect: 90s}", "AIModel m: spec.timeouts.connect: must be 1ms...1m, got 90s"),
        ("  provider: mock\n  timeouts: {total: 0ms}", "AIModel m: spec.timeouts.total: must be 1ms...10m, got 0ms"),
        ("  provider: mock\n  timeouts: {total: 5}", "AIModel m: spec.timeouts.total: must be a duration such as 500ms, 2s or 1m (1ms...10m), got 5"),
        ("  provider: mock\n  maxConcurrency: 0", "AIModel m: spec.maxConcurrency: must be 1...10000, got 0"),
        ("  provider: mock\n  maxConcurrency: many", "AIModel m: spec.maxConcurrency: must be an integer 1...10000, got \"many\""),
        ("  provider: mock\n  fallback: m", "AIModel m: spec.fallback: must name another AIModel, not this one"),
        ("  provider: mock\n  mock: {errorRate: 1.5}", "AIModel m: spec.mock.errorRate: must be a number 0...1, got 1.5"),
        ("  provider: openai\n  baseURL: http://x\n  mock: {latency: 1s}", "AIModel m: spec.mock: is only for provider mock"),
        ("  provider: mock\n  temperature: 0.2", "AIModel m: spec.temperature: unknown field; allowed here: provider, baseURL, model, apiKey, timeouts, maxConcurrency, fallback, mock"),
    ])
    func rule(spec: String, message: String) {
        #expect(Self.problems(Self.model("m", spec)) == [message])
    }

    @Test("an inline key is refused twice over: the unknown field, and the missing env/file")
    func inlineKey() {
        #expect(Self.problems(Self.model("m", "  provider: openai\n  baseURL: http://x\n  apiKey: {value: sk-123}")) == [
            "AIModel m: spec.apiKey.value: unknown field; allowed here: env, file",
            "AIModel m: spec.apiKey: must have exactly one of env, file",
        ])
    }

    @Test("a fallback that does not exist")
    func unknownFallback() {
        #expect(Self.problems(Self.model("a", "  provider: mock\n  fallback: b")) == [
            "AIModel a: spec.fallback: unknown model \"b\"; known models: a"
        ])
    }

    @Test("fallbacks that loop are one problem")
    func cycle() {
        let text = Self.model("a", "  provider: mock\n  fallback: b") + Self.model("b", "  provider: mock\n  fallback: c")
            + Self.model("c", "  provider: mock\n  fallback: a")
        #expect(Self.problems(text) == ["AIModel a: spec.fallback: fallbacks form a cycle: a -> b -> c -> a"])
    }

    @Test("duplicate model names")
    func duplicate() {
        let text = Self.model("a", "  provider: mock") + Self.model("a", "  provider: mock")
        #expect(Self.problems(text) == ["AIModel a: metadata.name: duplicate name: another AIModel is already called \"a\""])
    }

    @Test("with a registry, an overlay's models must be in it")
    func unknownModelInOverlay() {
        #expect(Self.problems(Self.openAI.replacingOccurrences(of: "  fallback: llama-3-local\n", with: "") + Self.seedOverlay) == [
            "AIOverlay salesforce-copilot: spec.models[1].name: unknown model \"llama-3-local\"; known models: gpt-4-turbo"
        ])
    }

    @Test("an unknown kind lists the kinds allowed")
    func unknownKind() {
        #expect(Self.problems("apiVersion: orchestrator.io/v1\nkind: AIPolicy\nmetadata: {name: p}\nspec: {}\n") == [
            "AIPolicy p: kind: must be one of AIOverlay, AIModel, got \"AIPolicy\""
        ])
    }
}
