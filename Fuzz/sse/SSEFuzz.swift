import BackendCore
import FuzzSupport

// Input: a chunking, a line limit choice, then the stream.
//
// Oracle:
// - the events equal those of an independent reading of the SSE format (WHATWG HTML §9.2.6, the
//   fields this client uses: lines end at CRLF, LF or CR; blank line dispatches when data was
//   seen; `:` comments; `data` lines joined with LF; `event`; one space after the colon dropped;
//   an unterminated last event discarded);
// - they do not depend on the chunking; a line over the limit throws `LineTooLong` whatever the
//   chunking, and only then;
// - the same bytes through `ChatStreamAccumulator` (chat-completions chunks) never trap, and its
//   text and state do not depend on the chunking either.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let sizes = readChunkSizes(&input)
    let limit = input.bool() ? input.int(1...64) : 1 << 20
    let stream = input.rest()

    let expected = referenceEvents(stream, limit: limit)
    var parser = SSEParser(maxLineBytes: limit)
    var events: [SSEEvent] = []
    var tooLong = false
    for chunk in chunks(stream, sizes: sizes) {
        do { events += try parser.feed(chunk) } catch {
            tooLong = true
            break
        }
    }
    if !tooLong { events += parser.finish() }
    switch expected {
    case nil:
        check(tooLong, "a line over \(limit) bytes was accepted")
    case let want?:
        check(!tooLong, "LineTooLong without a line over \(limit) bytes")
        check(events == want, "events \(events) != reference \(want)")
    }

    var whole = ChatStreamAccumulator(maxLineBytes: limit)
    let wholeResult = run(&whole, [stream[...]])
    var chunked = ChatStreamAccumulator(maxLineBytes: limit)
    let chunkedResult = run(&chunked, chunks(stream, sizes: sizes))
    check(wholeResult == chunkedResult, "accumulator depends on the chunking: \(wholeResult) vs \(chunkedResult)")
    check(whole.text == chunked.text && whole.isDone == chunked.isDone && whole.finishReason == chunked.finishReason,
          "accumulator state depends on the chunking")
    return 0
}

/// The accumulator's outcome and text; the deltas `feed` returned must add up to its text.
func run(_ acc: inout ChatStreamAccumulator, _ parts: [ArraySlice<UInt8>]) -> String {
    var returned = ""
    do {
        for part in parts { returned += try acc.feed(part) }
        try acc.finish()
        check(returned == acc.text, "returned deltas \(returned.debugDescription) != text \(acc.text.debugDescription)")
        return "ok:" + acc.text
    } catch {
        return "error:" + acc.text
    }
}

/// The events of `stream`, or nil when a line is longer than `limit` bytes.
func referenceEvents(_ stream: [UInt8], limit: Int) -> [SSEEvent]? {
    // Split into lines: CRLF, LF or CR end a line; the unterminated rest is a last line.
    var lines: [ArraySlice<UInt8>] = []
    var start = 0
    var i = 0
    var lastTerminated = true
    while i < stream.count {
        let b = stream[i]
        if b == 0x0A || b == 0x0D {
            lines.append(stream[start..<i])
            if b == 0x0D && i + 1 < stream.count && stream[i + 1] == 0x0A { i += 1 }
            i += 1
            start = i
            continue
        }
        if i - start + 1 > limit { return nil }
        i += 1
    }
    if start < stream.count {
        lines.append(stream[start...])
        lastTerminated = false
    }
    var events: [SSEEvent] = []
    var dataLines: [String]?
    var name: String?
    for (index, line) in lines.enumerated() {
        if line.isEmpty {
            if let d = dataLines { events.append(SSEEvent(event: name, data: d.joined(separator: "\n"))) }
            dataLines = nil
            name = nil
            continue
        }
        if line.first == 0x3A { continue }
        var field = line
        var value: ArraySlice<UInt8> = []
        if let colon = line.firstIndex(of: 0x3A) {
            field = line[..<colon]
            value = line[(colon + 1)...]
            if value.first == 0x20 { value = value.dropFirst() }
        }
        let text = String(decoding: value, as: UTF8.self)
        switch String(decoding: field, as: UTF8.self) {
        case "data": dataLines = (dataLines ?? []) + [text]
        case "event": name = text
        default: break
        }
        _ = index
    }
    _ = lastTerminated
    return events
}
