/// One server-sent event (only the fields chat-completions uses).
public struct SSEEvent: Sendable, Hashable {
    public var event: String?
    /// `data:` lines joined with "\n".
    public var data: String

    public init(event: String? = nil, data: String) {
        self.event = event
        self.data = data
    }
}

/// Incremental SSE parser (WHATWG event-stream rules, subset): feed bytes split anywhere, get complete events.
///
/// Lines end in LF, CRLF or CR; a blank line dispatches the event; lines starting with ":" are comments;
/// `field: value` strips one leading space from the value; events without any `data` line are dropped.
/// Bytes are buffered until a line is complete, so multi-byte UTF-8 split across chunks is fine.
public struct SSEParser: Sendable {
    private var line: [UInt8] = []
    private var lastWasCR = false
    private var dataLines: [String] = []
    private var hasData = false
    private var eventName: String?
    /// Upper bound for one line, to bound memory against a hostile/broken server.
    public let maxLineBytes: Int

    public init(maxLineBytes: Int = 1 << 20) {
        self.maxLineBytes = maxLineBytes
    }

    public struct LineTooLong: Error, Sendable, Hashable {}

    /// Feeds bytes; returns the events completed by them.
    public mutating func feed(_ bytes: some Sequence<UInt8>) throws(LineTooLong) -> [SSEEvent] {
        var out: [SSEEvent] = []
        try feed(bytes, into: &out)
        return out
    }

    /// Feeds bytes, appending the events they complete to `out`; on a line over the limit, the
    /// events completed before it are in `out` when it throws.
    public mutating func feed(_ bytes: some Sequence<UInt8>, into out: inout [SSEEvent]) throws(LineTooLong) {
        for byte in bytes {
            switch byte {
            case UInt8(ascii: "\n"):
                if lastWasCR {
                    lastWasCR = false  // the LF of a CRLF; line already ended at CR
                    continue
                }
                endLine(into: &out)
            case UInt8(ascii: "\r"):
                lastWasCR = true
                endLine(into: &out)
            default:
                lastWasCR = false
                line.append(byte)
                if line.count > maxLineBytes { throw LineTooLong() }
            }
        }
    }

    /// End of stream: a final unterminated line is processed; an event not followed by a blank line is
    /// discarded, as the SSE spec requires.
    public mutating func finish() -> [SSEEvent] {
        var out: [SSEEvent] = []
        if !line.isEmpty { endLine(into: &out) }
        dataLines = []
        hasData = false
        eventName = nil
        return out
    }

    private mutating func endLine(into out: inout [SSEEvent]) {
        defer { line.removeAll(keepingCapacity: true) }
        if line.isEmpty {
            if hasData {
                out.append(SSEEvent(event: eventName, data: dataLines.joined(separator: "\n")))
            }
            dataLines = []
            hasData = false
            eventName = nil
            return
        }
        if line.first == UInt8(ascii: ":") { return }
        let field: [UInt8]
        var value: ArraySlice<UInt8>
        if let colon = line.firstIndex(of: UInt8(ascii: ":")) {
            field = Array(line[..<colon])
            value = line[(colon + 1)...]
            if value.first == UInt8(ascii: " ") { value = value.dropFirst() }
        } else {
            field = line
            value = []
        }
        let valueString = String(decoding: value, as: UTF8.self)
        switch String(decoding: field, as: UTF8.self) {
        case "data":
            dataLines.append(valueString)
            hasData = true
        case "event":
            eventName = valueString
        default:
            break  // id, retry and unknown fields are irrelevant here
        }
    }
}

/// Accumulates a chat-completions SSE stream: `choices[0].delta.content` of each event until `data: [DONE]`.
public struct ChatStreamAccumulator: Sendable {
    public private(set) var text = ""
    public private(set) var finishReason: String?
    public private(set) var isDone = false
    public private(set) var chunkCount = 0
    private var parser: SSEParser

    public init(maxLineBytes: Int = 1 << 20) {
        parser = SSEParser(maxLineBytes: maxLineBytes)
    }

    /// Feeds raw body bytes; returns the delta text they completed (possibly empty).
    @discardableResult
    public mutating func feed(_ bytes: some Sequence<UInt8>) throws(MalformedPayload) -> String {
        guard !isDone else { return "" }
        var events: [SSEEvent] = []
        var tooLong = false
        do {
            try parser.feed(bytes, into: &events)
        } catch {
            tooLong = true
        }
        // What came before the long line counts, as it would have in a feed of its own; after
        // `[DONE]` nothing is read.
        let delta = try apply(events)
        if tooLong && !isDone { throw MalformedPayload("SSE line too long") }
        return delta
    }

    /// End of body. Throws if the stream ended before `[DONE]` and no finish_reason was seen.
    public mutating func finish() throws(MalformedPayload) {
        if !isDone {
            _ = try apply(parser.finish())
        }
        if !isDone && finishReason == nil {
            throw MalformedPayload("stream ended before [DONE]")
        }
    }

    private mutating func apply(_ events: [SSEEvent]) throws(MalformedPayload) -> String {
        var delta = ""
        for event in events where !isDone {
            if event.data.trimmingSpaces == "[DONE]" {
                isDone = true
                break
            }
            if let error = ChatCompletionsCodec.decodeError(Array(event.data.utf8)) {
                throw MalformedPayload("stream error event: \(error.message)")
            }
            let chunk = try ChatCompletionsCodec.decodeChunk(event.data)
            chunkCount += 1
            delta += chunk.delta
            // Per chunk, with the count and the reason: a later bad event in the same feed must not
            // drop it (the state would then depend on how the body was split).
            text += chunk.delta
            if let reason = chunk.finishReason { finishReason = reason }
        }
        return delta
    }
}

extension String {
    var trimmingSpaces: Substring {
        var s = self[...]
        while s.first == " " || s.first == "\t" { s = s.dropFirst() }
        while s.last == " " || s.last == "\t" { s = s.dropLast() }
        return s
    }
}
