import Foundation

/// One chat message of an OpenAI-compatible chat-completions request.
public struct ChatMessage: Sendable, Hashable, Codable {
    public enum Role: String, Sendable, Hashable, Codable {
        case system, user, assistant
    }

    public var role: Role
    public var content: String

    public init(role: Role, content: String) {
        self.role = role
        self.content = content
    }
}

/// What overlayd asks a model. Provider-neutral; the wire model id comes from the model's spec.
public struct CompletionRequest: Sendable, Hashable {
    public var messages: [ChatMessage]
    public var maxTokens: Int?
    /// Ask the backend for an SSE stream (`"stream": true`); deltas are accumulated into one `Completion`.
    public var stream: Bool

    public init(messages: [ChatMessage], maxTokens: Int? = nil, stream: Bool = false) {
        self.messages = messages
        self.maxTokens = maxTokens
        self.stream = stream
    }

    /// Convenience: an optional system message followed by one user message.
    public init(system: String? = nil, prompt: String, maxTokens: Int? = nil, stream: Bool = false) {
        var messages: [ChatMessage] = []
        if let system { messages.append(ChatMessage(role: .system, content: system)) }
        messages.append(ChatMessage(role: .user, content: prompt))
        self.init(messages: messages, maxTokens: maxTokens, stream: stream)
    }
}

/// A model's answer.
public struct Completion: Sendable, Hashable {
    /// The generated text (`choices[0].message.content`, or the concatenated stream deltas).
    public var text: String
    /// Name of the model spec that actually answered (after any fallback).
    public var model: String
    /// `finish_reason` if the backend sent one.
    public var finishReason: String?
    /// HTTP attempts used (1 = no retry). 0 for the mock.
    public var attempts: Int
    /// Set by the router when a fallback answered: the name of the primary model that failed.
    public var fallbackFrom: String?

    public init(text: String, model: String, finishReason: String? = nil, attempts: Int = 1, fallbackFrom: String? = nil) {
        self.text = text
        self.model = model
        self.finishReason = finishReason
        self.attempts = attempts
        self.fallbackFrom = fallbackFrom
    }
}

/// Why a chat-completions payload could not be decoded.
public struct MalformedPayload: Error, Sendable, Hashable, CustomStringConvertible {
    public var reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { "malformed payload: \(reason)" }
}

/// Encoding/decoding of the OpenAI chat-completions schema (pure; no I/O).
public enum ChatCompletionsCodec {
    struct WireRequest: Encodable {
        var model: String
        var messages: [ChatMessage]
        var max_tokens: Int?
        var stream: Bool?
    }

    struct WireResponse: Decodable {
        struct Choice: Decodable {
            struct Message: Decodable { var content: String? }
            var message: Message?
            var finish_reason: String?
        }
        var choices: [Choice]
    }

    struct WireChunk: Decodable {
        struct Choice: Decodable {
            struct Delta: Decodable { var content: String? }
            var delta: Delta?
            var finish_reason: String?
        }
        var choices: [Choice]?
    }

    struct WireError: Decodable {
        struct Body: Decodable {
            var message: String?
            var type: String?
        }
        var error: Body
    }

    /// JSON body for `POST {baseURL}/chat/completions`. `stream` is only sent when true.
    public static func encodeRequest(model: String, request: CompletionRequest) -> [UInt8] {
        let wire = WireRequest(
            model: model, messages: request.messages, max_tokens: request.maxTokens,
            stream: request.stream ? true : nil)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        // Encoding plain strings/ints cannot fail.
        return Array((try? encoder.encode(wire)) ?? Data("{}".utf8))
    }

    /// `choices[0].message.content` and `finish_reason` of a non-streaming response.
    public static func decodeResponse(_ body: [UInt8]) throws(MalformedPayload) -> (text: String, finishReason: String?) {
        let wire: WireResponse
        do {
            wire = try JSONDecoder().decode(WireResponse.self, from: Data(body))
        } catch {
            throw MalformedPayload("response is not a chat-completions JSON object")
        }
        guard let first = wire.choices.first else { throw MalformedPayload("response has no choices") }
        guard let content = first.message?.content else { throw MalformedPayload("choices[0].message.content missing") }
        return (content, first.finish_reason)
    }

    /// One SSE `data:` payload of a streaming response: the delta text (may be empty) and finish reason.
    public static func decodeChunk(_ data: String) throws(MalformedPayload) -> (delta: String, finishReason: String?) {
        let wire: WireChunk
        do {
            wire = try JSONDecoder().decode(WireChunk.self, from: Data(data.utf8))
        } catch {
            throw MalformedPayload("stream chunk is not a chat-completions chunk")
        }
        let first = wire.choices?.first
        return (first?.delta?.content ?? "", first?.finish_reason)
    }

    /// `error.message` (and `error.type`) of an OpenAI error body, if the body has that shape.
    public static func decodeError(_ body: [UInt8]) -> (message: String, type: String?)? {
        guard let wire = try? JSONDecoder().decode(WireError.self, from: Data(body)) else { return nil }
        return (wire.error.message ?? "", wire.error.type)
    }
}
