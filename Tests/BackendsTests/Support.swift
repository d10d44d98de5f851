import AsyncHTTPClient
import Backends
import BackendCore
import Foundation
import Logging
import NIOPosix
import OverlayCore
import Locking

/// Runs `body` with a fresh HTTPClient configured as overlayd would, and shuts it down afterwards.
func withHTTPClient<T>(_ body: (HTTPClient) async throws -> T) async throws -> T {
    let client = HTTPClient(
        eventLoopGroup: MultiThreadedEventLoopGroup.singleton,
        configuration: OpenAIClient.httpClientConfiguration(connectTimeoutMs: 1_000))
    do {
        let result = try await body(client)
        try await client.shutdown()
        return result
    } catch {
        try? await client.shutdown()
        throw error
    }
}

/// Runs `body` with a started fake server and shuts it down afterwards.
func withServer<T>(
    _ handler: @escaping FakeOpenAIServer.Handler, _ body: (FakeOpenAIServer) async throws -> T
) async throws -> T {
    let server = try await FakeOpenAIServer.start(handler)
    do {
        let result = try await body(server)
        await server.shutdown()
        return result
    } catch {
        await server.shutdown()
        throw error
    }
}

func okBody(_ text: String) -> String {
    #"{"id":"chatcmpl-1","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"\#(text)"},"finish_reason":"stop"}]}"#
}

func errorBody(_ message: String, type: String = "server_error") -> String {
    #"{"error":{"message":"\#(message)","type":"\#(type)","code":null}}"#
}

/// Collects every log record (message, metadata, error) of a Logger it is injected into.
final class LogStore: Sendable {
    private let lines = Locked<[String]>([])
    func append(_ line: String) { lines.withLock { $0.append(line) } }
    var all: [String] { lines.withLock { $0 } }
}

struct CapturingLogHandler: LogHandler {
    let store: LogStore
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        let rendered = merged.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        store.append("\(event.level) \(event.message) \(rendered) \(event.error.map { "\($0)" } ?? "")")
    }
}

func capturingLogger(_ store: LogStore) -> Logger {
    Logger(label: "test.backends", factory: { _ in CapturingLogHandler(store: store) })
}

/// A time source the tests move by hand (for the circuit breaker).
final class ManualTime: Sendable {
    private let base = ContinuousClock.now
    private let offset = Locked<Duration>(.zero)
    var now: ContinuousClock.Instant { base + offset.withLock { $0 } }
    func advance(_ d: Duration) { offset.withLock { $0 += d } }
}

/// Polls `condition` (yielding between checks) until it holds or `timeout` passes.
func eventually(timeout: Duration = .seconds(5), _ condition: () -> Bool) async -> Bool {
    let end = ContinuousClock.now + timeout
    while ContinuousClock.now < end {
        if condition() { return true }
        await Task.yield()
        try? await Task.sleep(for: .milliseconds(2))
    }
    return condition()
}

func uniqueName(_ prefix: String) -> String {
    prefix + "_" + UUID().uuidString.replacingOccurrences(of: "-", with: "")
}

extension ModelSpec {
    /// A spec for the fake server. The total timeout is long by default (30 s): a test that is not
    /// about timeouts must not see one when the machine is busy with the rest of the suite (a 5 s
    /// default was overrun there); the timeout tests set theirs.
    static func openai(_ name: String, _ baseURL: String, totalMs: Int = 30_000, apiKey: APIKeySource? = nil,
                       maxConcurrency: Int = 16, fallback: String? = nil) -> ModelSpec {
        ModelSpec(name: name, provider: .openai, baseURL: baseURL, model: "wire-\(name)", apiKey: apiKey,
                  connectTimeoutMs: 1_000, totalTimeoutMs: totalMs, maxConcurrency: maxConcurrency, fallback: fallback)
    }
}

/// Retry policy with short backoffs so tests stay fast (Retry-After still honoured up to 5 s).
let fastRetry = RetryPolicy(baseBackoff: .milliseconds(10), maxBackoff: .milliseconds(40))

/// Logger that drops everything (keeps test output readable; the hygiene test uses a capturing one).
let quietLogger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
