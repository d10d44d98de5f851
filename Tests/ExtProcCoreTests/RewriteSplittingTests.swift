import ExtProcCore
import OverlayCore
import OverlayDecisions
import OverlayInject
import Testing

/// `ResponseRewrite.rewriteSplitting` (the proxy's path: the rest of a chunk after the insertion
/// point is sent without a copy) answers exactly as `rewrite` (the ext_proc path) for every kind
/// of rewrite, chunking, and body limit.
@Suite struct RewriteSplittingTests {
    static let snippet = OverlaySnippet.make(json: Array(#"{"status":"ready"}"#.utf8))

    static func copying(_ make: () -> ResponseRewrite, _ chunks: [[UInt8]]) -> (body: [UInt8], outcome: String?) {
        var rewrite = make()
        var out: [UInt8] = []
        for (index, chunk) in chunks.enumerated() {
            out += rewrite.rewrite(chunk, endOfStream: index == chunks.count - 1) ?? chunk
        }
        if chunks.isEmpty { out += rewrite.rewrite([UInt8](), endOfStream: true) ?? [] }
        return (out, rewrite.outcome)
    }

    static func splitting(_ make: () -> ResponseRewrite, _ chunks: [[UInt8]]) -> (body: [UInt8], outcome: String?) {
        var rewrite = make()
        var out: [UInt8] = []
        for (index, chunk) in chunks.enumerated() {
            let (emitted, restFrom) = chunk.withUnsafeBytes { rewrite.rewriteSplitting($0, endOfStream: index == chunks.count - 1) }
            out += emitted
            out += chunk[restFrom...]
        }
        if chunks.isEmpty { out += rewrite.rewrite([UInt8](), endOfStream: true) ?? [] }
        return (out, rewrite.outcome)
    }

    static func chunked(_ body: [UInt8], _ rng: inout SplitMix64) -> [[UInt8]] {
        var chunks: [[UInt8]] = []
        var start = 0
        while start < body.count {
            let size = Int.random(in: 0..<3, using: &rng) == 0 ? Int.random(in: 1...400, using: &rng) : Int.random(in: 1...9, using: &rng)
            chunks.append(Array(body[start..<min(body.count, start + size)]))
            start += size
        }
        return chunks
    }

    @Test func htmlPagesAtRandomSplitsAndLimits() {
        let pages = [
            "<!doctype html><html><head><title>CRM</title></head><body>" + String(repeating: "<p>row</p>", count: 60) + "</body></html>",
            "<html><body class=\"x\">" + String(repeating: "text ", count: 80) + "</body></html>",
            "<html><body>" + String(repeating: "<div>", count: 40) + "</html>",
            "<p>no structure at all</p>",
            "<html><head></head><body>" + String(decoding: Self.snippet, as: UTF8.self) + "</body></html>",
        ].map { Array($0.utf8) }
        var rng = SplitMix64(seed: 0xC0FF_EE00_1234_5678)
        var injected = 0
        for iteration in 0..<1500 {
            let page = pages[iteration % pages.count]
            let limit = [1 << 20, 1 << 20, 100, 30, page.count, page.count - 1].randomElement(using: &rng)!
            let chunks = Self.chunked(page, &rng)
            let make = { ResponseRewrite(html: Self.snippet, limit: limit) }
            let expected = Self.copying(make, chunks)
            let got = Self.splitting(make, chunks)
            #expect(got.body == expected.body, "iteration \(iteration)")
            #expect(got.outcome == expected.outcome, "iteration \(iteration)")
            if expected.outcome == "injected" { injected += 1 }
        }
        #expect(injected > 300)
    }

    @Test func jsonBodiesAnswerAsTheCopyingRewrite() {
        var rng = SplitMix64(seed: 7)
        let bodies = [#"{"accounts":[1,2,3]}"#, #"[1,2]"#, #"{"a":"#, ""].map { Array($0.utf8) }
        for iteration in 0..<200 {
            let body = bodies[iteration % bodies.count]
            let limit = [1 << 20, 10].randomElement(using: &rng)!
            let chunks = Self.chunked(body, &rng)
            let make = { ResponseRewrite(jsonKey: "overlay", value: Array(#"{"ok":true}"#.utf8), limit: limit) }
            let expected = Self.copying(make, chunks)
            let got = Self.splitting(make, chunks)
            #expect(got.body == expected.body, "iteration \(iteration)")
            #expect(got.outcome == expected.outcome, "iteration \(iteration)")
        }
    }

    @Test func theRestOfTheInjectedChunkIsLeftInPlace() {
        let page = Array(("<html><head></head><body>" + String(repeating: "x", count: 30_000) + "</body></html>").utf8)
        var rewrite = ResponseRewrite(html: Self.snippet, limit: 1 << 20)
        let (emitted, restFrom) = page.withUnsafeBytes { rewrite.rewriteSplitting($0, endOfStream: false) }
        #expect(emitted == Array("<html><head>".utf8) + Self.snippet + Array("</head>".utf8))
        #expect(restFrom == "<html><head></head>".utf8.count)
        #expect(page[restFrom...].starts(with: "<body>".utf8))
        #expect(rewrite.outcome == "injected")
    }
}
