import BackendCore
import Logging
import OverlayCore
import OverlayDecisions
import Locking

/// `ModelClient` for provider `mock`: deterministic text, simulated latency, deterministic errors.
///
/// Text: ``MockModel/reply(model:prompt:)`` of the last message (deterministic; two different
/// mock models give partly similar texts, so a shadow pair of them shows some drift).
/// Latency: sleeps `spec.mockLatencyMs` (cut at `totalTimeoutMs` → `timeout`).
/// Errors: a call fails with HTTP 503 when `roll(request) < spec.mockErrorRate`; the default roll is a
/// stable hash of the prompt mapped to [0, 1), so the same prompt always succeeds or always fails.
/// `maxConcurrency` is enforced like for real backends.
public final class MockClient: ModelClient {
    public let spec: ModelSpec
    public var modelName: String { spec.name }
    public let limiter: ConcurrencyLimiter
    private let logger: Logger
    private let roll: @Sendable (CompletionRequest) -> Double

    public init(
        spec: ModelSpec, logger: Logger = Logger(label: "overlayd.backends.mock"),
        roll: (@Sendable (CompletionRequest) -> Double)? = nil
    ) {
        self.spec = spec
        var logger = logger
        logger[metadataKey: "model"] = "\(spec.name)"
        self.logger = logger
        self.limiter = ConcurrencyLimiter(limit: spec.maxConcurrency)
        self.roll = roll ?? { Double(MockClient.hash($0) >> 11) / Double(1 << 53) }
    }

    /// FNV-1a 64 over roles and contents (stable across processes and platforms).
    public static func hash(_ request: CompletionRequest) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for message in request.messages {
            for byte in Array(message.role.rawValue.utf8) + [0] + Array(message.content.utf8) + [0xff] {
                h ^= UInt64(byte)
                h = h &* 0x0000_0100_0000_01b3
            }
        }
        return h
    }

    public static func text(model: String, request: CompletionRequest) -> String {
        let prompt = request.messages.last?.content ?? ""
        let key = ReplyKey(model: model, prompt: prompt)
        if let known = replies.withLock({ $0[key] }) { return known }
        let text = MockModel.reply(model: model, prompt: prompt)
        replies.withLock { memo in
            if memo.count >= maxMemoized { memo.removeAll(keepingCapacity: true) }
            memo[key] = text
        }
        return text
    }

    /// Replies already made: a load test asks for the same few pages over and over, and a reply
    /// costs tens of microseconds to write, a lookup well under one. Bounded: emptied when full.
    static let maxMemoized = 1024
    private static let replies = Locked<[ReplyKey: String]>([:])

    struct ReplyKey: Hashable, Sendable {
        var model: String
        var prompt: String
    }

    public func complete(_ request: CompletionRequest) async throws(ModelCallError) -> Completion {
        let name = spec.name
        guard limiter.tryAcquire() else { throw .saturated(model: name) }
        defer { limiter.release() }
        if spec.mockLatencyMs > 0 {
            let latency = min(spec.mockLatencyMs, spec.totalTimeoutMs)
            do {
                try await Task.sleep(for: .milliseconds(latency))
            } catch {
                throw .cancelled(model: name)
            }
            if spec.mockLatencyMs > spec.totalTimeoutMs { throw .timeout(model: name) }
        } else if Task.isCancelled {
            throw .cancelled(model: name)
        }
        if spec.mockErrorRate > 0, roll(request) < spec.mockErrorRate {
            logger.debug("mock error injected", metadata: ["status": "503"])
            throw .http(model: name, status: 503, message: "mock error (mockErrorRate)")
        }
        return Completion(
            text: Self.text(model: spec.model, request: request), model: name, finishReason: "stop", attempts: 0)
    }
}
