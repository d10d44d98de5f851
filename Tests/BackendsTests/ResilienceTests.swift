import AsyncHTTPClient
import BackendCore
import Backends
import Foundation
import Logging
import NIOHTTP1
import OverlayCore
import Locking
import OverlayDecisions
import Testing

@Suite struct CircuitBreakerIntegrationTests {
    @Test func opensAfterFailuresAndRecoversViaHalfOpenProbe() async throws {
        let healthy = Locked(false)
        let time = ManualTime()
        try await withServer({ _, _ in
            healthy.withLock { $0 } ? .json(body: okBody("back")) : .json(status: .internalServerError, body: errorBody("boom"))
        }) { server in
            try await withHTTPClient { http in
                let client = OpenAIClient(
                    spec: .openai("gpt", server.baseURL), httpClient: http, logger: quietLogger,
                    retryPolicy: .none,
                    breakerConfiguration: CircuitBreakerConfiguration(failureThreshold: 3, coolDown: .milliseconds(200)),
                    now: { time.now })
                for _ in 0..<3 {
                    await #expect(throws: ModelCallError.http(model: "gpt", status: 500, message: "boom")) {
                        try await client.complete(CompletionRequest(prompt: "x"))
                    }
                }
                #expect(server.requests.count == 3)
                // Open: rejected without touching the server.
                await #expect(throws: ModelCallError.circuitOpen(model: "gpt")) {
                    try await client.complete(CompletionRequest(prompt: "x"))
                }
                #expect(server.requests.count == 3)

                // Cool-down passes, still failing: the one probe fails and the circuit re-opens.
                time.advance(.milliseconds(200))
                await #expect(throws: ModelCallError.http(model: "gpt", status: 500, message: "boom")) {
                    try await client.complete(CompletionRequest(prompt: "x"))
                }
                #expect(server.requests.count == 4)
                await #expect(throws: ModelCallError.circuitOpen(model: "gpt")) {
                    try await client.complete(CompletionRequest(prompt: "x"))
                }
                time.advance(.milliseconds(199))
                await #expect(throws: ModelCallError.circuitOpen(model: "gpt")) {
                    try await client.complete(CompletionRequest(prompt: "x"))
                }
                #expect(server.requests.count == 4)

                // Backend recovers; after the cool-down the probe succeeds and closes the circuit.
                healthy.withLock { $0 = true }
                time.advance(.milliseconds(1))
                let c = try await client.complete(CompletionRequest(prompt: "x"))
                #expect(c.text == "back")
                #expect(client.breaker.phase == .closed(consecutiveFailures: 0))
                _ = try await client.complete(CompletionRequest(prompt: "x"))
                #expect(server.requests.count == 6)
            }
        }
    }

    @Test func clientErrorsDoNotOpenTheCircuit() async throws {
        try await withServer({ _, _ in .json(status: .badRequest, body: errorBody("bad request", type: "invalid_request_error")) }) { server in
            try await withHTTPClient { http in
                let client = OpenAIClient(
                    spec: .openai("gpt", server.baseURL), httpClient: http, logger: quietLogger,
                    breakerConfiguration: CircuitBreakerConfiguration(failureThreshold: 2))
                for _ in 0..<4 {
                    await #expect(throws: ModelCallError.http(model: "gpt", status: 400, message: "bad request")) {
                        try await client.complete(CompletionRequest(prompt: "x"))
                    }
                }
                #expect(server.requests.count == 4)
                #expect(client.breaker.phase == .closed(consecutiveFailures: 0))
            }
        }
    }
}

@Suite struct FallbackTests {
    @Test func fallbackAnswersWhenPrimaryFails() async throws {
        try await withServer({ _, _ in .json(status: .internalServerError, body: errorBody("primary down")) }) { server in
            try await withHTTPClient { http in
                let specs: [String: ModelSpec] = [
                    "primary": .openai("primary", server.baseURL, fallback: "backup"),
                    "backup": ModelSpec(name: "backup", provider: .mock, model: "mock-1"),
                ]
                let router = ModelRouter(specs: specs, httpClient: http, logger: quietLogger, retryPolicy: fastRetry)
                let request = CompletionRequest(prompt: "hello")
                let completion = try await router.complete(model: "primary", request)
                #expect(completion.model == "backup")
                #expect(completion.fallbackFrom == "primary")
                #expect(completion.text == MockClient.text(model: "mock-1", request: request))
                #expect(server.requests.count == 1)
            }
        }
    }

    @Test func fallbackUsedWhenCircuitIsOpen() async throws {
        try await withServer({ _, _ in .json(status: .serviceUnavailable, body: errorBody("down")) }) { server in
            try await withHTTPClient { http in
                let primary = OpenAIClient(
                    spec: .openai("primary", server.baseURL, fallback: "backup"), httpClient: http, logger: quietLogger,
                    retryPolicy: .none, breakerConfiguration: CircuitBreakerConfiguration(failureThreshold: 1))
                let backup = MockClient(spec: ModelSpec(name: "backup", provider: .mock))
                let router = ModelRouter(
                    specs: ["primary": primary.spec, "backup": backup.spec],
                    clients: ["primary": primary, "backup": backup], logger: quietLogger)
                _ = try await router.complete(model: "primary", CompletionRequest(prompt: "a"))
                #expect(server.requests.count == 1)
                guard case .open = primary.breaker.phase else {
                    Issue.record("breaker should be open")
                    return
                }
                let c = try await router.complete(model: "primary", CompletionRequest(prompt: "b"))
                #expect(c.model == "backup")
                #expect(server.requests.count == 1)  // circuit open: primary not called
            }
        }
    }

    @Test func fallbackIsFollowedOnlyOnceNoLoops() async throws {
        try await withServer({ _, _ in .json(status: .internalServerError, body: errorBody("down")) }) { server in
            try await withHTTPClient { http in
                let specs: [String: ModelSpec] = [
                    "a": .openai("a", server.baseURL, fallback: "b"),
                    "b": .openai("b", server.baseURL, fallback: "a"),
                ]
                let router = ModelRouter(specs: specs, httpClient: http, logger: quietLogger)
                await #expect(throws: ModelCallError.http(model: "b", status: 500, message: "down")) {
                    try await router.complete(model: "a", CompletionRequest(prompt: "x"))
                }
                let models = server.requests.map { $0.body.contains(#""model":"wire-a""#) ? "a" : "b" }
                #expect(models == ["a", "b"])
            }
        }
    }

    @Test func successfulPrimaryIsNotFallenBackFrom() async throws {
        try await withServer({ _, _ in .json(body: okBody("primary")) }) { server in
            try await withHTTPClient { http in
                let specs: [String: ModelSpec] = [
                    "p": .openai("p", server.baseURL, fallback: "m"), "m": ModelSpec(name: "m", provider: .mock),
                ]
                let router = ModelRouter(specs: specs, httpClient: http, logger: quietLogger)
                let c = try await router.complete(model: "p", CompletionRequest(prompt: "x"))
                #expect(c.model == "p" && c.fallbackFrom == nil && c.text == "primary")
                await #expect(throws: ModelCallError.configuration(model: "nope", reason: "unknown model")) {
                    try await router.complete(model: "nope", CompletionRequest(prompt: "x"))
                }
            }
        }
    }
}

@Suite struct APIKeyTests {
    @Test func bearerFromEnvironmentVariable() async throws {
        let variable = uniqueName("OVERLAYD_TEST_KEY")
        setenv(variable, "sk-env-\(variable.suffix(8))", 1)
        defer { unsetenv(variable) }
        try await withServer({ _, _ in .json(body: okBody("ok")) }) { server in
            try await withHTTPClient { http in
                let client = OpenAIClient(spec: .openai("gpt", server.baseURL, apiKey: .env(variable)), httpClient: http, logger: quietLogger)
                _ = try await client.complete(CompletionRequest(prompt: "x"))
                #expect(server.requests.first?.headers[canonicalForm: "Authorization"].map(String.init) == ["Bearer sk-env-\(variable.suffix(8))"])
                // Read per call: a rotated value is used by the next call.
                setenv(variable, "sk-rotated", 1)
                _ = try await client.complete(CompletionRequest(prompt: "x"))
                #expect(server.requests.last?.headers.first(name: "Authorization") == "Bearer sk-rotated")
            }
        }
    }

    @Test func bearerFromFile() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent(uniqueName("overlayd-key")).path
        try "sk-file-123\n".write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        try await withServer({ _, _ in .json(body: okBody("ok")) }) { server in
            try await withHTTPClient { http in
                let client = OpenAIClient(spec: .openai("gpt", server.baseURL, apiKey: .file(path)), httpClient: http, logger: quietLogger)
                _ = try await client.complete(CompletionRequest(prompt: "x"))
                #expect(server.requests.first?.headers.first(name: "Authorization") == "Bearer sk-file-123")
            }
        }
    }

    @Test func missingKeyFailsWithoutCallingTheServer() async throws {
        let variable = uniqueName("OVERLAYD_TEST_UNSET")
        try await withServer({ _, _ in .json(body: okBody("ok")) }) { server in
            try await withHTTPClient { http in
                let client = OpenAIClient(spec: .openai("gpt", server.baseURL, apiKey: .env(variable)), httpClient: http, logger: quietLogger)
                await #expect(throws: ModelCallError.missingAPIKey(model: "gpt", source: "env \(variable)")) {
                    try await client.complete(CompletionRequest(prompt: "x"))
                }
                let fileClient = OpenAIClient(spec: .openai("gpt", server.baseURL, apiKey: .file("/nonexistent/\(variable)")), httpClient: http, logger: quietLogger)
                await #expect(throws: ModelCallError.missingAPIKey(model: "gpt", source: "file /nonexistent/\(variable)")) {
                    try await fileClient.complete(CompletionRequest(prompt: "x"))
                }
                #expect(server.requests.isEmpty)
            }
        }
    }
}

@Suite struct SecretHygieneTests {
    @Test func apiKeyNeverAppearsInLogsOrErrors() async throws {
        let secret = "sk-SECRET-" + UUID().uuidString
        let variable = uniqueName("OVERLAYD_TEST_SECRET")
        setenv(variable, secret, 1)
        defer { unsetenv(variable) }
        let store = LogStore()
        let logger = capturingLogger(store)
        var errors: [String] = []
        let port = try await closedPort()
        try await withServer({ request, _ in
            // Scripted by prompt ("call N"), so retries get the same reply as the first attempt.
            let call = (0..<6).first { request.body.contains("call \($0)") } ?? 0
            switch call {
            case 0: return .json(body: okBody("fine"))
            // Providers echo the key they were given (OpenAI: "Incorrect API key provided: sk-...").
            case 1: return .json(status: .unauthorized, body: errorBody("Incorrect API key provided: \(secret)", type: "invalid_request_error"))
            case 2: return .json(status: .tooManyRequests, headers: [("Retry-After", "0")], body: errorBody("rate limited for \(secret)"))
            case 3: return .json(status: .internalServerError, body: errorBody("internal error, key=\(secret)"))
            case 4: return .json(body: "{\"broken\": \"\(secret)")
            default: return .sse(pieces: [Array("data: {\"error\":{\"message\":\"\(secret)\",\"type\":\"x\"}}\n\n".utf8)])
            }
        }) { server in
            try await withHTTPClient { http in
                let spec = ModelSpec.openai("gpt", server.baseURL, apiKey: .env(variable))
                let client = OpenAIClient(
                    spec: spec, httpClient: http, logger: logger, retryPolicy: fastRetry,
                    breakerConfiguration: CircuitBreakerConfiguration(failureThreshold: 100))
                for i in 0..<6 {
                    do throws(ModelCallError) {
                        _ = try await client.complete(CompletionRequest(prompt: "call \(i)", stream: i == 5))
                    } catch {
                        errors.append("\(error)")
                        errors.append(String(reflecting: error))
                    }
                }
                #expect(server.requests.count == 8)  // the 429 call was retried twice
                #expect(server.requests.allSatisfy { $0.headers.first(name: "Authorization") == "Bearer \(secret)" })

                // Timeout, connection refused, circuit open and fallback paths.
                let slow = OpenAIClient(spec: ModelSpec.openai("slow", "http://127.0.0.1:\(port)/v1", totalMs: 200, apiKey: .env(variable), fallback: "gpt"),
                                        httpClient: http, logger: logger, retryPolicy: fastRetry,
                                        breakerConfiguration: CircuitBreakerConfiguration(failureThreshold: 1))
                let router = ModelRouter(specs: ["slow": slow.spec, "gpt": spec], clients: ["slow": slow, "gpt": client], logger: logger)
                for _ in 0..<3 {
                    do throws(ModelCallError) { _ = try await router.complete(model: "slow", CompletionRequest(prompt: "p")) } catch { errors.append("\(error)") }
                }
            }
        }
        let lines = store.all
        #expect(lines.count > 10)
        #expect(lines.contains { $0.contains("model=gpt") && $0.contains("status=500") })
        #expect(lines.contains { $0.contains("attempt=2") })
        #expect(errors.count >= 4)
        #expect(errors.contains { $0.contains("[REDACTED]") })
        for line in lines + errors {
            #expect(!line.contains(secret), "key leaked: \(line)")
            #expect(!line.contains(String(secret.dropFirst(10).prefix(12))), "key fragment leaked: \(line)")
        }
    }
}

@Suite struct ConcurrencyTests {
    @Test func maxConcurrencyIsEnforced() async throws {
        let gate = Gate()
        let store = LogStore()
        try await withServer({ _, _ in
            await gate.wait()
            return .json(body: okBody("done"))
        }) { server in
            try await withHTTPClient { http in
                let client = OpenAIClient(
                    spec: .openai("gpt", server.baseURL, maxConcurrency: 2), httpClient: http, logger: capturingLogger(store))
                let (ok, saturated) = await withTaskGroup(of: Result<Completion, ModelCallError>.self) { group in
                    for i in 0..<10 {
                        group.addTask { () async -> Result<Completion, ModelCallError> in
                            await result { () async throws(ModelCallError) in try await client.complete(CompletionRequest(prompt: "c\(i)")) }
                        }
                    }
                    var ok = 0
                    var saturated = 0
                    var finished = 0
                    for await result in group {
                        finished += 1
                        switch result {
                        case .success: ok += 1
                        case .failure(.saturated): saturated += 1
                        case .failure(let e): Issue.record("unexpected \(e)")
                        }
                        if finished == 8 {
                            // The 8 rejected calls are done; the 2 admitted ones are blocked in the server.
                            #expect(await eventually { server.inFlight == 2 })
                            gate.open()
                        }
                    }
                    return (ok, saturated)
                }
                #expect(ok == 2)
                #expect(saturated == 8)
                #expect(server.maxInFlight == 2)
                #expect(server.requests.count == 2)
                #expect(client.limiter.inFlight == 0)
                // Saturation repeats on every call: 5 lines of the 8 (the throttle's burst).
                #expect(store.all.filter { $0.contains("model saturated") }.count == 5)
            }
        }
    }
}

@Suite struct ThrottledLoggerTests {
    @Test func aRepeatedMessageIsWrittenAtMostBurstTimesPerInterval() {
        let store = LogStore()
        let log = ThrottledLogger(capturingLogger(store), burst: 3, interval: .seconds(3600))
        for i in 0..<10 { log.log(level: .warning, "upstream request failed", metadata: ["n": "\(i)"]) }
        let lines = store.all
        #expect(lines.count == 3)
        #expect(lines.allSatisfy { $0.hasPrefix("warning upstream request failed") })
        #expect(lines.last?.contains("n=2") == true)
    }

    @Test func keysAreThrottledApartAndTheNextIntervalReportsWhatWasLeftOut() {
        let store = LogStore()
        let time = ManualTime()
        let log = ThrottledLogger(capturingLogger(store), burst: 1, interval: .seconds(10), now: { time.now })
        log.log(level: .notice, "model failed, using fallback", key: "a")
        log.log(level: .notice, "model failed, using fallback", key: "a")
        log.log(level: .notice, "model failed, using fallback", key: "a")
        log.log(level: .notice, "model failed, using fallback", key: "b")
        #expect(store.all.count == 2)
        time.advance(.seconds(10))
        log.log(level: .notice, "model failed, using fallback", key: "a")
        #expect(store.all.count == 3)
        #expect(store.all.last?.contains("suppressed=2") == true)
    }

    @Test func aLevelBelowTheLoggersIsNeitherWrittenNorCounted() {
        let store = LogStore()
        var logger = capturingLogger(store)
        logger.logLevel = .warning
        let log = ThrottledLogger(logger, burst: 1, interval: .seconds(3600))
        for _ in 0..<5 { log.log(level: .info, "m") }
        log.log(level: .warning, "m")
        #expect(store.all.count == 1)
        #expect(store.all.first?.contains("suppressed") == false)
    }
}

@Suite struct MockClientTests {
    @Test func deterministicText() async throws {
        let client = MockClient(spec: ModelSpec(name: "m", provider: .mock, model: "mock-large"))
        let a = try await client.complete(CompletionRequest(prompt: "hello world"))
        let b = try await client.complete(CompletionRequest(prompt: "hello world"))
        let c = try await client.complete(CompletionRequest(prompt: "hello world!"))
        #expect(a.text == b.text)
        #expect(a.text != c.text)
        #expect(a.text == MockModel.reply(model: "mock-large", prompt: "hello world"))  // the upstream model id
        #expect(a.text.contains("this page"))  // no path in the prompt: the mock says so
        #expect(a.model == "m")
    }

    @Test func errorRateIsDeterministicPerPrompt() async throws {
        let half = MockClient(spec: ModelSpec(name: "m", provider: .mock, mockErrorRate: 0.5))
        var failed = 0
        for i in 0..<200 {
            let request = CompletionRequest(prompt: "prompt \(i)")
            let first = await result { () async throws(ModelCallError) in try await half.complete(request) }
            let second = await result { () async throws(ModelCallError) in try await half.complete(request) }
            #expect((try? first.get()) == (try? second.get()))
            if case .failure(let e) = first {
                #expect(e == .http(model: "m", status: 503, message: "mock error (mockErrorRate)"))
                failed += 1
            }
        }
        #expect(failed > 60 && failed < 140)
        let never = MockClient(spec: ModelSpec(name: "m", provider: .mock, mockErrorRate: 0))
        let always = MockClient(spec: ModelSpec(name: "m", provider: .mock, mockErrorRate: 1))
        _ = try await never.complete(CompletionRequest(prompt: "x"))
        await #expect(throws: ModelCallError.self) { try await always.complete(CompletionRequest(prompt: "x")) }
        let injected = MockClient(spec: ModelSpec(name: "m", provider: .mock, mockErrorRate: 0.3), roll: { _ in 0.29 })
        await #expect(throws: ModelCallError.self) { try await injected.complete(CompletionRequest(prompt: "x")) }
    }

    @Test func latencyAndTimeout() async throws {
        let slow = MockClient(spec: ModelSpec(name: "m", provider: .mock, mockLatencyMs: 50))
        let start = ContinuousClock.now
        _ = try await slow.complete(CompletionRequest(prompt: "x"))
        #expect(start.duration(to: .now) >= .milliseconds(50))
        let tooSlow = MockClient(spec: ModelSpec(name: "m", provider: .mock, totalTimeoutMs: 20, mockLatencyMs: 10_000))
        await #expect(throws: ModelCallError.timeout(model: "m")) { try await tooSlow.complete(CompletionRequest(prompt: "x")) }
    }
}

func result(_ operation: () async throws(ModelCallError) -> Completion) async -> Result<Completion, ModelCallError> {
    do {
        return .success(try await operation())
    } catch {
        return .failure(error)
    }
}
