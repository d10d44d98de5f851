import AsyncHTTPClient
import BackendCore
import Backends
import Foundation
import Logging
import NIOHTTP1
import OverlayCore
import Testing

@Suite struct OpenAIClientTests {
    let logger = quietLogger

    @Test func nonStreamingSuccess() async throws {
        try await withServer({ _, _ in .json(body: okBody("Bonjour")) }) { server in
            try await withHTTPClient { http in
                let client = OpenAIClient(spec: .openai("gpt", server.baseURL), httpClient: http, logger: logger)
                let completion = try await client.complete(CompletionRequest(system: "sys", prompt: "Say hi", maxTokens: 5))
                #expect(completion.text == "Bonjour")
                #expect(completion.model == "gpt")
                #expect(completion.attempts == 1)
                #expect(completion.finishReason == "stop")
                let request = try #require(server.requests.first)
                #expect(request.method == .POST)
                #expect(request.uri == "/v1/chat/completions")
                #expect(request.headers.first(name: "Content-Type") == "application/json")
                #expect(request.headers.first(name: "Authorization") == nil)
                let json = try #require(try JSONSerialization.jsonObject(with: Data(request.body.utf8)) as? [String: Any])
                #expect(json["model"] as? String == "wire-gpt")
                #expect(json["max_tokens"] as? Int == 5)
                #expect(json["stream"] == nil)
                #expect((json["messages"] as? [[String: String]])?.last?["content"] == "Say hi")
            }
        }
    }

    @Test func sseStreaming() async throws {
        let data = [
            #"{"choices":[{"index":0,"delta":{"role":"assistant"},"finish_reason":null}]}"#,
            #"{"choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}"#,
            #"{"choices":[{"index":0,"delta":{"content":"lo wörld"},"finish_reason":null}]}"#,
            #"{"choices":[{"index":0,"delta":{"content":"!"},"finish_reason":"stop"}]}"#,
        ]
        let wire = data.map { "data: \($0)\r\n\r\n" }.joined() + "data: [DONE]\r\n\r\n"
        // Split into pieces at awkward places (inside "data:", inside JSON, between CR and LF, inside "ö").
        let bytes = Array(wire.utf8)
        let crlf = bytes.firstIndex(of: 13)! + 1  // between CR and LF
        let umlaut = bytes.firstIndex(of: 0xC3)! + 1  // inside the two bytes of "ö"
        let cuts = Set([3, 40, crlf, 120, 151, umlaut, bytes.count - 5]).sorted()
        var pieces: [[UInt8]] = []
        var start = 0
        for cut in cuts + [bytes.count] {
            pieces.append(Array(bytes[start..<cut]))
            start = cut
        }
        #expect(pieces.count == cuts.count + 1)
        let replyPieces = pieces
        try await withServer({ _, _ in .sse(pieces: replyPieces) }) { server in
            try await withHTTPClient { http in
                let client = OpenAIClient(spec: .openai("gpt", server.baseURL), httpClient: http, logger: logger)
                let completion = try await client.complete(CompletionRequest(prompt: "stream please", stream: true))
                #expect(completion.text == "Hello wörld!")
                #expect(completion.finishReason == "stop")
                let request = try #require(server.requests.first)
                #expect(request.body.contains(#""stream":true"#))
                #expect(request.headers.first(name: "Accept") == "text/event-stream")
            }
        }
    }

    @Test func sseStreamCutBeforeDoneIsMalformed() async throws {
        let pieces = [Array((#"data: {"choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}"# + "\n\n").utf8)]
        try await withServer({ _, _ in .sse(pieces: pieces) }) { server in
            try await withHTTPClient { http in
                let client = OpenAIClient(spec: .openai("gpt", server.baseURL), httpClient: http, logger: logger)
                await #expect(throws: ModelCallError.malformedResponse(model: "gpt", reason: "stream ended before [DONE]")) {
                    try await client.complete(CompletionRequest(prompt: "x", stream: true))
                }
            }
        }
    }

    @Test func retryAfterIsHonoured() async throws {
        try await withServer({ _, index in
            index == 0
                ? .json(status: .tooManyRequests, headers: [("Retry-After", "1")], body: errorBody("slow down", type: "rate_limit_error"))
                : .json(body: okBody("after wait"))
        }) { server in
            try await withHTTPClient { http in
                let client = OpenAIClient(spec: .openai("gpt", server.baseURL), httpClient: http, logger: logger, retryPolicy: fastRetry)
                let completion = try await client.complete(CompletionRequest(prompt: "hi"))
                #expect(completion.text == "after wait")
                #expect(completion.attempts == 2)
                let requests = server.requests
                #expect(requests.count == 2)
                let gap = requests[0].receivedAt.duration(to: requests[1].receivedAt)
                #expect(gap >= .seconds(1), "retried after \(gap), server asked for 1 s")
                #expect(gap < .seconds(3))
            }
        }
    }

    @Test func retryAfterBeyondDeadlineIsNotWaitedFor() async throws {
        try await withServer({ _, _ in
            .json(status: .serviceUnavailable, headers: [("Retry-After", "60")], body: errorBody("busy"))
        }) { server in
            try await withHTTPClient { http in
                // Retry-After (60 s) is past the deadline (30 s): the 503 is the answer at once, not
                // after a wait; the bound is far below the deadline, and far above a busy machine's
                // round trip.
                let client = OpenAIClient(spec: .openai("gpt", server.baseURL, totalMs: 30_000), httpClient: http, logger: logger)
                let start = ContinuousClock.now
                await #expect(throws: ModelCallError.http(model: "gpt", status: 503, message: "busy")) {
                    try await client.complete(CompletionRequest(prompt: "hi"))
                }
                #expect(start.duration(to: .now) < .seconds(20))
                #expect(server.requests.count == 1)
            }
        }
    }

    @Test func serverErrorIsNotRetried() async throws {
        try await withServer({ _, _ in .json(status: .internalServerError, body: errorBody("The server had an error")) }) { server in
            try await withHTTPClient { http in
                let client = OpenAIClient(spec: .openai("gpt", server.baseURL), httpClient: http, logger: logger, retryPolicy: fastRetry)
                await #expect(throws: ModelCallError.http(model: "gpt", status: 500, message: "The server had an error")) {
                    try await client.complete(CompletionRequest(prompt: "hi"))
                }
                #expect(server.requests.count == 1)
            }
        }
    }

    @Test func badGatewayIsRetriedTwiceThenFails() async throws {
        try await withServer({ _, _ in .json(status: .badGateway, body: "<html>bad gateway</html>") }) { server in
            try await withHTTPClient { http in
                let client = OpenAIClient(spec: .openai("gpt", server.baseURL), httpClient: http, logger: logger, retryPolicy: fastRetry)
                await #expect(throws: ModelCallError.http(model: "gpt", status: 502, message: "Bad Gateway")) {
                    try await client.complete(CompletionRequest(prompt: "hi"))
                }
                #expect(server.requests.count == 3)
            }
        }
    }

    @Test func retryBudgetLimitsRetriesAcrossCalls() async throws {
        try await withServer({ _, _ in .json(status: .serviceUnavailable, body: errorBody("down")) }) { server in
            try await withHTTPClient { http in
                let client = OpenAIClient(
                    spec: .openai("gpt", server.baseURL), httpClient: http, logger: logger, retryPolicy: fastRetry,
                    retryBudget: RetryBudget(ratio: 0.1, maxTokens: 2),
                    breakerConfiguration: CircuitBreakerConfiguration(failureThreshold: 100))
                for _ in 0..<5 {
                    await #expect(throws: ModelCallError.self) { try await client.complete(CompletionRequest(prompt: "x")) }
                }
                // 5 calls + 2 budgeted retries (0.5 tokens deposited: not enough for a third).
                #expect(server.requests.count == 7)
            }
        }
    }

    @Test func hangingServerTimesOutWithinTotalTimeout() async throws {
        try await withServer({ _, _ in .hang }) { server in
            try await withHTTPClient { http in
                let client = OpenAIClient(spec: .openai("gpt", server.baseURL, totalMs: 300), httpClient: http, logger: logger)
                let start = ContinuousClock.now
                await #expect(throws: ModelCallError.timeout(model: "gpt")) {
                    try await client.complete(CompletionRequest(prompt: "hi"))
                }
                let elapsed = start.duration(to: .now)
                #expect(elapsed >= .milliseconds(290))
                #expect(elapsed < .milliseconds(1_500))
            }
        }
    }

    @Test func malformedJSON() async throws {
        try await withServer({ _, _ in .json(body: "{\"choices\": [{\"mess") }) { server in
            try await withHTTPClient { http in
                let client = OpenAIClient(spec: .openai("gpt", server.baseURL), httpClient: http, logger: logger, retryPolicy: fastRetry)
                await #expect(throws: ModelCallError.malformedResponse(model: "gpt", reason: "response is not a chat-completions JSON object")) {
                    try await client.complete(CompletionRequest(prompt: "hi"))
                }
                #expect(server.requests.count == 1)
            }
        }
    }

    @Test func connectionRefused() async throws {
        let port = try await closedPort()
        try await withHTTPClient { http in
            // A refused connect fails at once, long before the minute a wait for the total timeout
            // would take; the bound leaves room for a machine busy with the rest of the suite.
            let client = OpenAIClient(
                spec: .openai("gpt", "http://127.0.0.1:\(port)/v1", totalMs: 60_000), httpClient: http, logger: logger,
                retryPolicy: fastRetry)
            let start = ContinuousClock.now
            do throws(ModelCallError) {
                _ = try await client.complete(CompletionRequest(prompt: "hi"))
                Issue.record("expected a connect error")
            } catch {
                guard case .connect(let model, _) = error else {
                    Issue.record("expected .connect, got \(error)")
                    return
                }
                #expect(model == "gpt")
            }
            #expect(start.duration(to: .now) < .seconds(20))
        }
    }

    @Test func invalidBaseURLIsAConfigurationError() async throws {
        try await withHTTPClient { http in
            let client = OpenAIClient(spec: ModelSpec(name: "x", provider: .openai), httpClient: http, logger: logger)
            await #expect(throws: ModelCallError.configuration(model: "x", reason: "baseURL must be an http(s) URL")) {
                try await client.complete(CompletionRequest(prompt: "hi"))
            }
        }
    }

    @Test func cancellationIsReported() async throws {
        try await withServer({ _, _ in .hang }) { server in
            try await withHTTPClient { http in
                let client = OpenAIClient(spec: .openai("gpt", server.baseURL), httpClient: http, logger: logger)
                let task = Task { () async throws(ModelCallError) -> Completion in
                    try await client.complete(CompletionRequest(prompt: "hi"))
                }
                #expect(await eventually { server.requests.count == 1 })
                task.cancel()
                let result = await task.result
                #expect(throws: ModelCallError.cancelled(model: "gpt")) { try result.get() }
            }
        }
    }
}
