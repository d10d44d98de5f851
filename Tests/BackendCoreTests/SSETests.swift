import BackendCore
import Testing

private func chunk(_ content: String, finish: String? = nil) -> String {
    let f = finish.map { #""\#($0)""# } ?? "null"
    return #"{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"\#(content)"},"finish_reason":\#(f)}]}"#
}

private func stream(_ newline: String) -> String {
    [
        ": keep-alive comment",
        "",
        "data: " + #"{"choices":[{"index":0,"delta":{"role":"assistant"},"finish_reason":null}]}"#,
        "",
        "data: " + chunk("Hel"),
        "",
        "data:" + chunk("lo, wörld 👋"),
        "",
        "event: message",
        "data: " + chunk("!", finish: "stop"),
        "",
        "data: [DONE]",
        "",
        "data: " + chunk("IGNORED AFTER DONE"),
        "",
    ].joined(separator: newline)
}

/// Accumulates `bytes` fed in the given pieces.
private func accumulate(_ pieces: [ArraySlice<UInt8>]) throws -> ChatStreamAccumulator {
    var acc = ChatStreamAccumulator()
    for piece in pieces { try acc.feed(piece) }
    try acc.finish()
    return acc
}

@Suite struct SSEParserTests {
    @Test(arguments: ["\n", "\r\n", "\r"])
    func accumulatesWholeStream(newline: String) throws {
        let bytes = Array(stream(newline).utf8)
        let acc = try accumulate([bytes[...]])
        #expect(acc.text == "Hello, wörld 👋!")
        #expect(acc.finishReason == "stop")
        #expect(acc.isDone)
    }

    @Test(arguments: ["\n", "\r\n"])
    func everyTwoWaySplitPositionGivesSameResult(newline: String) throws {
        let bytes = Array(stream(newline).utf8)
        for split in 0...bytes.count {
            let acc = try accumulate([bytes[..<split], bytes[split...]])
            #expect(acc.text == "Hello, wörld 👋!", "split at \(split)")
            #expect(acc.isDone, "split at \(split)")
        }
    }

    @Test(arguments: ["\n", "\r\n"])
    func everyThreeWaySplitGivesSameEvents(newline: String) throws {
        let bytes = Array(stream(newline).utf8)
        var whole = SSEParser()
        let expected = try whole.feed(bytes)
        #expect(expected.count == 5)
        // Three pieces: all (i, j) pairs, stepping j to keep the test quick but covering every i.
        for i in 0...bytes.count {
            for j in stride(from: i, through: bytes.count, by: 7) {
                var parser = SSEParser()
                var events = try parser.feed(bytes[..<i])
                events += try parser.feed(bytes[i..<j])
                events += try parser.feed(bytes[j...])
                #expect(events == expected, "split at \(i), \(j)")
            }
        }
    }

    @Test func byteByByte() throws {
        let bytes = Array(stream("\r\n").utf8)
        let acc = try accumulate(bytes.indices.map { bytes[$0...$0] })
        #expect(acc.text == "Hello, wörld 👋!")
    }

    @Test func multiLineDataAndFields() throws {
        var parser = SSEParser()
        let events = try parser.feed(Array("event: update\ndata: a\ndata:b\nid: 7\nretry: 10\n\n:comment\n\ndata\n\n".utf8))
        #expect(events == [SSEEvent(event: "update", data: "a\nb"), SSEEvent(data: "")])
    }

    @Test func unterminatedEventIsDiscardedAtEnd() throws {
        var parser = SSEParser()
        #expect(try parser.feed(Array("data: x".utf8)).isEmpty)
        #expect(parser.finish().isEmpty)
    }

    @Test func streamWithoutDoneFails() throws {
        var acc = ChatStreamAccumulator()
        try acc.feed(Array("data: \(chunk("a"))\n\n".utf8))
        #expect(acc.text == "a")
        #expect(throws: MalformedPayload.self) { try acc.finish() }
    }

    @Test func finishReasonWithoutDoneIsAccepted() throws {
        var acc = ChatStreamAccumulator()
        try acc.feed(Array("data: \(chunk("a", finish: "length"))\n\n".utf8))
        try acc.finish()
        #expect(acc.finishReason == "length")
    }

    @Test func badChunkAndErrorEventFail() {
        var acc = ChatStreamAccumulator()
        #expect(throws: MalformedPayload.self) { try acc.feed(Array("data: {nope\n\n".utf8)) }
        var acc2 = ChatStreamAccumulator()
        #expect(throws: MalformedPayload.self) {
            try acc2.feed(Array("data: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}\n\n".utf8))
        }
    }

    @Test func lineLengthIsBounded() {
        var parser = SSEParser(maxLineBytes: 16)
        #expect(throws: SSEParser.LineTooLong.self) { try parser.feed(Array(repeating: UInt8(ascii: "a"), count: 17)) }
    }

    /// Found by Fuzz/sse (regression): the accumulator's state after a failed feed must not depend
    /// on how the body was split. Fed at once, the chunks before a bad event set `finishReason` and
    /// `chunkCount` but their text was dropped; fed event by event, it was kept.
    @Test func aFailedFeedKeepsTheTextOfTheChunksBeforeIt() {
        let events = ["data: \(chunk("Hi"))\n\n", "data: \(chunk(" there", finish: "stop"))\n\n", "data: [DONE].\n\n"]
        var whole = ChatStreamAccumulator()
        #expect(throws: MalformedPayload.self) { try whole.feed(Array(events.joined().utf8)) }
        var split = ChatStreamAccumulator()
        #expect(throws: MalformedPayload.self) {
            for event in events { try split.feed(Array(event.utf8)) }
        }
        #expect(split.text == "Hi there")
        #expect(whole.text == split.text)
        #expect(whole.finishReason == "stop" && whole.chunkCount == 2)
    }

    /// Found by Fuzz/sse on main (crash-1170f61d…): a line over the limit after `[DONE]` failed the
    /// stream when both came in one feed, but not when `[DONE]` came in a feed of its own (the
    /// accumulator stops reading at `[DONE]`). Likewise the events completed before a line over the
    /// limit in the same feed were lost. The parser now hands over what it completed before it
    /// throws, and the accumulator applies it first.
    @Test func aLineOverTheLimitAfterDoneDoesNotDependOnTheChunking() throws {
        let stream = "data: \(chunk("Hi", finish: "stop"))\n\ndata: [DONE]\n\n" + String(repeating: "x", count: 400)
        var whole = ChatStreamAccumulator(maxLineBytes: 256)
        try whole.feed(Array(stream.utf8))
        try whole.finish()
        var split = ChatStreamAccumulator(maxLineBytes: 256)
        let cut = stream.utf8.count - 400
        try split.feed(Array(stream.utf8.prefix(cut)))
        try split.feed(Array(stream.utf8.dropFirst(cut)))
        try split.finish()
        #expect(whole.text == "Hi" && whole.isDone)
        #expect(split.text == whole.text && split.isDone)
    }

    @Test func eventsBeforeALineOverTheLimitInTheSameFeedAreKept() {
        let stream = "data: \(chunk("Hi"))\n\n" + String(repeating: "x", count: 400)
        var whole = ChatStreamAccumulator(maxLineBytes: 256)
        #expect(throws: MalformedPayload.self) { try whole.feed(Array(stream.utf8)) }
        #expect(whole.text == "Hi" && whole.chunkCount == 1)
        var parser = SSEParser(maxLineBytes: 256)
        var events: [SSEEvent] = []
        #expect(throws: SSEParser.LineTooLong.self) { try parser.feed(Array(stream.utf8), into: &events) }
        #expect(events.count == 1)
    }
}
