import ExtProcCore
import ExtProcProto
import Foundation
import SwiftProtobuf

// Decoding one ProcessingRequest, as the ext_proc server does per message, then reading what the
// machine reads. Inputs: bench/extproc's header-only message (12 headers, values in raw_value,
// as ../shared/bench/make_bodies.py builds it) and its body30k message (a 30 KB page).
//
//   swift run -c release --package-path bench/protobuf protobuf-bench [iterations] [repeats]

let headerList: [(String, String)] = [
    (":authority", "app.example.com"),
    (":path", "/dashboard/projects/42?tab=overview&sort=recent"),
    (":method", "GET"),
    (":scheme", "https"),
    ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"),
    ("accept", "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"),
    ("accept-language", "en-US,en;q=0.9,de;q=0.8"),
    ("accept-encoding", "gzip, deflate, br"),
    ("cookie", "session=3f9a1c2e7b8d4e6fa0b1c2d3e4f5a6b7; uid=user-000123456; theme=dark; _ga=GA1.2.1234567890.1700000000"),
    ("x-forwarded-proto", "https"),
    ("x-forwarded-for", "203.0.113.7"),
    ("x-request-id", "6c1f7a52-3d2b-4f0e-9a8c-1b2d3e4f5a6b"),
]

func headersMessage() throws -> [UInt8] {
    var message = ProcessingRequest()
    message.requestHeaders.headers.headers = headerList.map { key, value in
        var header = Envoy_Config_Core_V3_HeaderValue()
        header.key = key
        header.rawValue = Data(value.utf8)
        return header
    }
    message.requestHeaders.endOfStream = true
    return try message.serializedBytes()
}

func bodyMessage() throws -> [UInt8] {
    var page = Array("<!DOCTYPE html><html><head><title>Project 42</title></head><body>".utf8)
    while page.count < 30 * 1024 { page += Array("<div class=\"row\"><a href=\"/p/42\">Project 42</a> overview</div>\n".utf8) }
    var message = ProcessingRequest()
    message.responseBody.body = Data(page)
    message.responseBody.endOfStream = true
    return try message.serializedBytes()
}

/// What the machine reads: `:authority` (a pass-through request reads nothing else), or every
/// regular field too (an overlaid request: the user key and prompt headers come from them), or
/// the body's bytes.
enum Reads: String { case authority, fields, body }

func read(_ request: some ExtProcRequest, _ reads: Reads) -> Int {
    switch request.phase {
    case .requestHeaders(let headers, _)?:
        switch reads {
        case .authority: return headers.authority?.utf8.count ?? 0
        case .fields: return (headers.authority?.utf8.count ?? 0) + headers.fields.reduce(0) { $0 + $1.value.utf8.count }
        case .body: return 0
        }
    case .responseBody(let body, _)?:
        return body.withContiguousStorageIfAvailable { $0.count &+ Int($0.last ?? 0) } ?? body.count
    default:
        return 0
    }
}

let iterations = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1])! : 200_000
let repeats = CommandLine.arguments.count > 2 ? Int(CommandLine.arguments[2])! : 5
/// Median nanoseconds per decode-and-read over `repeats` timed loops of `count` each.
func measure(_ count: Int, _ body: () throws -> Int) rethrows -> Double {
    var samples: [Double] = []
    var sink = 0
    for _ in 0..<repeats {
        let start = ContinuousClock.now
        for _ in 0..<count { sink &+= try body() }
        let elapsed = ContinuousClock.now - start
        let ns = Double(elapsed.components.seconds) * 1e9 + Double(elapsed.components.attoseconds) / 1e9
        samples.append(ns / Double(count))
    }
    if sink == 42 { print("") }  // keeps the reads
    return samples.sorted()[samples.count / 2]
}

var discard = BinaryDecodingOptions()
discard.discardUnknownFields = true

let inputs: [(String, [UInt8], Int, [Reads])] = [
    ("header-only (12 headers)", try headersMessage(), iterations, [.authority, .fields]),
    ("body30k", try bodyMessage(), iterations / 10, [.body]),
]

print("| message | reads | swift-protobuf `init(serializedBytes:)` ns | swift-protobuf, unknown fields discarded ns | libprotobuf-c in place ns | C ÷ swift-protobuf |")
print("|---|---|---:|---:|---:|---:|")
for (name, bytes, count, readsList) in inputs {
    for reads in readsList {
        let swift = try measure(count) { read(try ProcessingRequest(serializedBytes: bytes), reads) }
        let cheapest = try measure(count) { read(try ProcessingRequest(serializedBytes: bytes, options: discard), reads) }
        let c = bytes.withUnsafeBytes { raw in
            measure(count) { DecodedRequest.decode(raw) { read($0, reads) } ?? 0 }
        }
        print("| \(name), \(bytes.count) B | \(reads.rawValue) | \(String(format: "%.0f", swift)) | \(String(format: "%.0f", cheapest)) | \(String(format: "%.0f", c)) | \(String(format: "%.2f", c / min(swift, cheapest)))× |")
    }
}
