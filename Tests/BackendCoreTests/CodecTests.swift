import BackendCore
import Foundation
import Testing

@Suite struct CodecTests {
    @Test func encodesRequestWithOptionalFields() throws {
        let request = CompletionRequest(system: "be brief", prompt: "hi \"there\"", maxTokens: 42, stream: true)
        let bytes = ChatCompletionsCodec.encodeRequest(model: "gpt-x", request: request)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
        #expect(json["model"] as? String == "gpt-x")
        #expect(json["max_tokens"] as? Int == 42)
        #expect(json["stream"] as? Bool == true)
        let messages = try #require(json["messages"] as? [[String: String]])
        #expect(messages == [["role": "system", "content": "be brief"], ["role": "user", "content": "hi \"there\""]])
    }

    @Test func omitsStreamAndMaxTokensByDefault() throws {
        let bytes = ChatCompletionsCodec.encodeRequest(model: "m", request: CompletionRequest(prompt: "x"))
        let json = try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
        #expect(json["stream"] == nil)
        #expect(json["max_tokens"] == nil)
        #expect(Set(json.keys) == ["model", "messages"])
    }

    @Test func decodesResponse() throws {
        let body = #"{"id":"c1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hello"},"finish_reason":"stop"}],"usage":{"total_tokens":3}}"#
        let decoded = try ChatCompletionsCodec.decodeResponse(Array(body.utf8))
        #expect(decoded.text == "Hello")
        #expect(decoded.finishReason == "stop")
    }

    @Test(arguments: [
        "{not json", "[]", #"{"choices":[]}"#, #"{"choices":[{"message":{"role":"assistant"}}]}"#, "",
    ])
    func rejectsMalformedResponses(body: String) {
        #expect(throws: MalformedPayload.self) { try ChatCompletionsCodec.decodeResponse(Array(body.utf8)) }
    }

    @Test func decodesErrorBody() throws {
        let body = #"{"error":{"message":"Rate limit reached","type":"rate_limit_error","code":null}}"#
        let error = try #require(ChatCompletionsCodec.decodeError(Array(body.utf8)))
        #expect(error.message == "Rate limit reached")
        #expect(error.type == "rate_limit_error")
        #expect(ChatCompletionsCodec.decodeError(Array("oops".utf8)) == nil)
    }
}
