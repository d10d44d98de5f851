// inject-bench: MB/s of OverlayInject's HTMLInjector on a ~100 KB HTML page fed in 1 KB and
// 16 KB chunks, next to a plain byte scan of the same chunks (the limit) and a scan that also
// copies every chunk into a new [UInt8] (what the injector has to do anyway, since it returns
// new arrays), measured in the same process, in interleaved rounds.
//
//   inject-bench [--rounds 7] [--seconds 1.0] [--chunks 1024,16384] [--page 102400]
//                [--head 8192] [--only scan|copy+scan|inject|inject-nohead]
//                [--iters N] [--quiet]
//
// 1 MB = 10^6 bytes. Each measurement runs whole pages (fresh injector per page) for at least
// `--seconds`; the table shows the median over the rounds and the ratio of the medians to the
// plain scan with the same chunk size (median of the per-round ratios). `--iters N` runs every
// case exactly N pages per round without calibration (for callgrind / perf); with `--only`, only
// that case runs. Standard library only (plus libc for exit).

import OverlayInject

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Options

struct Options {
    var rounds = 7
    var seconds = 1.0
    var chunkSizes = [1024, 16 * 1024]
    var pageSize = 100 * 1024
    var headSize = 8 * 1024
    var only: String?
    var iters: Int?
    var quiet = false
}

func parseOptions() -> Options {
    var o = Options()
    var args = CommandLine.arguments.dropFirst()
    func value(_ flag: String) -> String {
        guard let v = args.popFirst() else { fatalError("\(flag) needs a value") }
        return v
    }
    while let a = args.popFirst() {
        switch a {
        case "--rounds": o.rounds = Int(value(a)) ?? o.rounds
        case "--seconds": o.seconds = Double(value(a)) ?? o.seconds
        case "--chunks": o.chunkSizes = value(a).split(separator: ",").compactMap { Int($0) }
        case "--page": o.pageSize = Int(value(a)) ?? o.pageSize
        case "--head": o.headSize = Int(value(a)) ?? o.headSize
        case "--only": o.only = value(a)
        case "--iters": o.iters = Int(value(a))
        case "--quiet": o.quiet = true
        case "-h", "--help":
            print("usage: inject-bench [--rounds N] [--seconds S] [--chunks 1024,16384] [--page BYTES] [--head BYTES] [--only CASE] [--quiet]")
            exit0()
        default: fatalError("unknown argument \(a)")
        }
    }
    precondition(o.rounds > 0 && o.seconds > 0 && !o.chunkSizes.isEmpty && o.chunkSizes.allSatisfy { $0 > 0 })
    return o
}

func exit0() -> Never { exit(0) }

// MARK: - A deterministic, realistic page

/// xorshift64*: deterministic, so every run measures the same bytes.
struct Rng: RandomNumberGenerator {
    var s: UInt64
    mutating func next() -> UInt64 {
        s ^= s >> 12; s ^= s << 25; s ^= s >> 27
        return s &* 2_685_821_657_736_338_717
    }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    mutating func pick<T>(_ xs: [T]) -> T { xs[below(xs.count)] }
}

let words = """
    the overlay sidecar streams every response body through a small state machine that looks for \
    the end of the head element while it copies bytes from the upstream to the client and it never \
    buffers a page so latency stays flat price shipping returns warranty colour size stock review \
    customers also bought delivery tomorrow free over fifty euros compare specifications weight \
    battery display resolution storage memory processor graphics wireless bluetooth charger cable
    """.split(separator: " ").map(String.init)

struct Page {
    let bytes: [UInt8]
    /// Offset of the `<` of the real `</head>`.
    let headEnd: Int
}

/// A product page: a head of `headSize`+ bytes (meta/link/style/script/JSON-LD/noscript, a comment
/// and an inline script that both contain "</head>"), then a body of nested divs, tables with
/// attributes, lists, links and text up to exactly `pageSize` bytes.
func makePage(pageSize: Int, headSize: Int, breakHeadAndBody: Bool = false) -> Page {
    var r = Rng(s: 0x9E37_79B9_7F4A_7C15)
    var h = ""
    func text(_ n: Int) -> String { (0..<n).map { _ in r.pick(words) }.joined(separator: " ") }
    func hex(_ n: Int) -> String { String((0..<n).map { _ in "0123456789abcdef".randomElement(using: &r)! }) }

    h += "<!DOCTYPE html>\n<html lang=\"en\" data-theme=\"light\" class=\"no-js\">\n<head>\n"
    h += "<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
    h += "<title>Wireless Headphones X200 &ndash; Example Store</title>\n"
    h += "<meta name=\"description\" content=\"\(text(24))\">\n"
    for p in ["og:title", "og:description", "og:image", "og:url", "twitter:card", "twitter:site"] {
        h += "<meta property=\"\(p)\" content=\"\(text(8))\">\n"
    }
    h += "<link rel=\"preconnect\" href=\"https://cdn.example.com\" crossorigin>\n"
    for i in 0..<6 {
        h += "<link rel=\"stylesheet\" href=\"/assets/css/part\(i).\(hex(10)).css\" integrity=\"sha384-\(hex(48))\" crossorigin=\"anonymous\">\n"
    }
    h += "<link rel=\"preload\" as=\"font\" type=\"font/woff2\" href=\"/assets/fonts/inter.\(hex(8)).woff2\" crossorigin>\n"
    h += "<!-- Tag manager: keep this block before </head>; <script> here is inert -->\n"
    h += "<style>\n"
    for i in 0..<40 {
        h += "  .c\(i) > .item:hover, #nav-\(i) a[href^=\"/p/\"] { margin: \(i % 7)px \(i % 5)px; color: #\(hex(6)); } /* \(text(3)) */\n"
    }
    h += "</style>\n"
    h += """
        <script>
          window.__CONFIG__ = {"api": "/api/v2", "locale": "en-GB", "closing": "</head>", "flags": [1, 2, 3]};
          // document.write with markup in strings must not confuse the tokenizer:
          var marker = "</head>", lt = 1 < 2, gt = 3 > 2;
          if (lt && gt) { document.documentElement.className = 'js'; }
          function esc(s) { return s.replace(/</g, '&lt;').replace(/>/g, '&gt;'); }
          var tpl = '<div class="toast">' + esc("hello") + '<\\/div>';
        </script>

        """
    h += "<script type=\"application/ld+json\">{\"@context\":\"https://schema.org\",\"@type\":\"Product\",\"name\":\"X200\",\"description\":\"\(text(30))\",\"sku\":\"\(hex(12))\"}</script>\n"
    h += "<script src=\"/assets/js/app.\(hex(10)).js\" defer></script>\n"
    h += "<noscript><img height=\"1\" width=\"1\" style=\"display:none\" src=\"https://px.example.com/tr?id=\(hex(16))&amp;ev=PageView&amp;noscript=1\"></noscript>\n"
    var k = 0
    while h.utf8.count < headSize {
        h += "<meta name=\"x-exp-\(k)\" content=\"\(text(6))\" data-k=\"\(k)\">\n"
        if k % 5 == 4 { h += "<link rel=\"alternate\" hreflang=\"l\(k)\" href=\"https://example.com/l\(k)/p/x200?\(hex(6))\">\n" }
        k += 1
    }
    let headEnd = h.utf8.count
    h += breakHeadAndBody ? "</hxad>\n<bxdy class=\"product-page\" data-page=\"pdp\">\n"
        : "</head>\n<body class=\"product-page\" data-page=\"pdp\">\n"

    let closing = breakHeadAndBody ? "</div>\n</bxdy>\n</html>\n" : "</div>\n</body>\n</html>\n"
    h += "<div id=\"app\" class=\"layout\">\n"
    var n = 0
    while h.utf8.count < pageSize - 1500 {
        h += "<div class=\"section s\(n % 9)\" id=\"sec-\(n)\" data-index=\"\(n)\">\n"
        h += "  <div class=\"row\"><div class=\"col col-md-\(1 + n % 12)\">\n"
        h += "    <h2 class=\"title\">\(text(4))</h2>\n"
        h += "    <p>\(text(20)) <a href=\"/p/\(n)?ref=list&amp;utm_source=\(r.pick(words))\" title=\"\(text(3))\">\(text(2))</a> \(text(12)).</p>\n"
        if n % 3 == 0 {
            h += "    <table class=\"grid specs\" cellpadding=\"0\" cellspacing=\"0\"><tbody>\n"
            for row in 0..<4 {
                h += "      <tr class=\"r\(row)\"><th scope=\"row\">\(r.pick(words))</th>"
                for c in 0..<3 { h += "<td class=\"c\(c)\" style=\"width:\(20 + c * 10)%\">\(text(2))</td>" }
                h += "</tr>\n"
            }
            h += "    </tbody></table>\n"
        } else {
            h += "    <ul class=\"list\">"
            for _ in 0..<4 { h += "<li><span class=\"b\">\(r.pick(words))</span> \(text(3))</li>" }
            h += "</ul>\n"
            h += "    <img src=\"/img/\(hex(8)).webp\" alt=\"\(text(3))\" loading=\"lazy\" width=\"320\" height=\"240\">\n"
        }
        h += "  </div></div>\n  <!-- /section \(n) -->\n</div>\n"
        n += 1
    }
    h += "<p class=\"footer\">"
    while true {
        let w = r.pick(words) + " "
        if h.utf8.count + w.utf8.count + 4 + closing.utf8.count > pageSize { break }
        h += w
    }
    h += String(repeating: ".", count: pageSize - h.utf8.count - closing.utf8.count - 4)
    h += "</p>" + closing
    let bytes = Array(h.utf8)
    precondition(bytes.count == pageSize, "page is \(bytes.count) bytes, wanted \(pageSize)")
    return Page(bytes: bytes, headEnd: headEnd)
}

func split(_ bytes: [UInt8], _ size: Int) -> [[UInt8]] {
    stride(from: 0, to: bytes.count, by: size).map { Array(bytes[$0..<min($0 + size, bytes.count)]) }
}

// MARK: - The measured work (one whole page per call)

/// Written by every case, printed at the end: the work cannot be optimised away or hoisted.
nonisolated(unsafe) var sink = 0

/// (a) The injector: a fresh injector, every chunk fed, then finish().
@inline(never) func runInject(_ chunks: [[UInt8]], _ snippet: [UInt8]) {
    var injector = HTMLInjector(snippet: snippet)
    var acc = 0
    for c in chunks {
        let out = injector.feed(c)
        acc &+= out.count &+ Int(out.last ?? 0)
    }
    acc &+= injector.finish().count
    sink &+= acc
}

/// (b) The limit: a plain scan of the same chunks counting `<` bytes (memchr-like minimal work).
@inline(never) func runScan(_ chunks: [[UInt8]]) {
    var acc = 0
    for c in chunks {
        c.withUnsafeBufferPointer { p in
            var n = 0
            for b in p where b == 0x3C { n &+= 1 }
            acc &+= n
        }
    }
    sink &+= acc
}

/// (c) The scan, plus a copy of every chunk into a new [UInt8] (the injector returns new arrays).
@inline(never) func runCopyScan(_ chunks: [[UInt8]]) {
    var acc = 0
    for c in chunks {
        let copy = Array(c)
        copy.withUnsafeBufferPointer { p in
            var n = 0
            for b in p where b == 0x3C { n &+= 1 }
            acc &+= n &+ p.count
        }
    }
    sink &+= acc
}

// MARK: - Timing

let clock = ContinuousClock()

extension Duration {
    var seconds: Double {
        let (s, a) = components
        return Double(s) + Double(a) * 1e-18
    }
}

/// Runs `body` `iterations` times; returns the elapsed seconds.
@inline(never) func time(_ iterations: Int, _ body: () -> Void) -> Double {
    let t0 = clock.now
    for _ in 0..<iterations { body() }
    return (clock.now - t0).seconds
}

/// Warm-up + calibration: iterations needed for about `target` seconds.
func calibrate(target: Double, _ body: () -> Void) -> Int {
    var n = 1
    while true {
        let t = time(n, body)
        if t >= 0.25 { return max(1, Int((Double(n) * target / t).rounded(.up))) }
        n *= t < 0.01 ? 10 : 2
    }
}

func median(_ xs: [Double]) -> Double {
    let s = xs.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

func fmt(_ x: Double, _ decimals: Int) -> String {
    if decimals == 0 { return "\(Int(x.rounded()))" }
    var p = 1.0
    for _ in 0..<decimals { p *= 10 }
    let v = (x * p).rounded() / p
    var s = "\(v)"
    if let dot = s.firstIndex(of: ".") {
        let have = s.distance(from: dot, to: s.endIndex) - 1
        if have < decimals { s += String(repeating: "0", count: decimals - have) }
    } else if decimals > 0 {
        s += "." + String(repeating: "0", count: decimals)
    }
    return s
}

func pad(_ s: String, _ w: Int, left: Bool = false) -> String {
    let n = max(0, w - s.count)
    return left ? String(repeating: " ", count: n) + s : s + String(repeating: " ", count: n)
}

// MARK: - Correctness

func verify(_ page: Page, _ chunks: [[UInt8]], _ snippet: [UInt8], expectInsertAt: Int?) -> String {
    var injector = HTMLInjector(snippet: snippet)
    var out: [UInt8] = []
    for c in chunks { out += injector.feed(c) }
    out += injector.finish()
    let at = expectInsertAt ?? page.bytes.count
    let outcome: HTMLInjector.Outcome = expectInsertAt == nil ? .atEnd : .beforeHeadEnd
    guard injector.outcome == outcome, injector.insertionOffset == at else {
        fatalError("chunk \(chunks[0].count): outcome \(injector.outcome) at \(String(describing: injector.insertionOffset)), expected \(outcome) at \(at)")
    }
    guard out.count == page.bytes.count + snippet.count,
        out[..<at].elementsEqual(page.bytes[..<at]),
        out[at..<(at + snippet.count)].elementsEqual(snippet),
        out[(at + snippet.count)...].elementsEqual(page.bytes[at...])
    else { fatalError("chunk \(chunks[0].count): output minus the snippet differs from the input") }
    return "\(outcome) at \(at)"
}

// MARK: - Main

let opt = parseOptions()
let snippet = OverlaySnippet.make(
    json: #"{"variant":"b","model":"mock","text":"Free delivery tomorrow if you order <b>now</b> & save 10%","score":0.87}"#,
    nonce: "rAnd0mN0nce+/=")
let page = makePage(pageSize: opt.pageSize, headSize: opt.headSize)
let noHead = makePage(pageSize: opt.pageSize, headSize: opt.headSize, breakHeadAndBody: true)
precondition(page.bytes[page.headEnd..<(page.headEnd + 7)].elementsEqual("</head>".utf8))

struct Case {
    let name: String
    let chunkSize: Int
    let run: () -> Void
}

var cases: [Case] = []
for size in opt.chunkSizes {
    let chunks = split(page.bytes, size)
    let noHeadChunks = split(noHead.bytes, size)
    let v1 = verify(page, chunks, snippet, expectInsertAt: page.headEnd)
    let v2 = verify(noHead, noHeadChunks, snippet, expectInsertAt: nil)
    if !opt.quiet { print("verified \(size)-byte chunks: \(v1); no-head page: \(v2)") }
    cases.append(Case(name: "scan", chunkSize: size) { runScan(chunks) })
    cases.append(Case(name: "copy+scan", chunkSize: size) { runCopyScan(chunks) })
    cases.append(Case(name: "inject", chunkSize: size) { runInject(chunks, snippet) })
    cases.append(Case(name: "inject-nohead", chunkSize: size) { runInject(noHeadChunks, snippet) })
}
if let only = opt.only { cases = cases.filter { $0.name == only || ($0.name == "scan" && opt.iters == nil) } }

if !opt.quiet {
    print("page: \(page.bytes.count) bytes, real </head> at \(page.headEnd), snippet \(snippet.count) bytes; inject-nohead: same page with </head>, <body>, </body> renamed (tokenizer over all of it)")
    print("rounds: \(opt.rounds), >= \(opt.seconds) s per measurement, calibrating...")
}
let iterations = cases.map { c in opt.iters ?? calibrate(target: opt.seconds, c.run) }

var mbps = Array(repeating: [Double](), count: cases.count)
for round in 1...opt.rounds {
    var line = "round \(round):"
    for (i, c) in cases.enumerated() {
        let t = time(iterations[i], c.run)
        let v = Double(opt.pageSize) * Double(iterations[i]) / t / 1e6
        mbps[i].append(v)
        line += " \(c.name)/\(c.chunkSize)=\(fmt(v, 0))"
    }
    if !opt.quiet { print(line) }
}

print("")
print("| case | chunk | MB/s (median of \(opt.rounds)) | min–max MB/s | µs/page | ratio vs scan |")
print("|---|---:|---:|---:|---:|---:|")
for (i, c) in cases.enumerated() {
    let m = median(mbps[i])
    let scanIndex = cases.firstIndex { $0.name == "scan" && $0.chunkSize == c.chunkSize }
    // Ratio to the scan measured in the same round, median over rounds.
    let ratio = scanIndex.map { s in median(zip(mbps[i], mbps[s]).map { $0 / $1 }) }
    let kb = c.chunkSize % 1024 == 0 ? "\(c.chunkSize / 1024) KB" : "\(c.chunkSize) B"
    print("| \(pad(c.name, 13)) | \(pad(kb, 5, left: true)) | \(pad(fmt(m, 0), 7, left: true)) | \(fmt(mbps[i].min()!, 0))–\(fmt(mbps[i].max()!, 0)) | \(pad(fmt(Double(opt.pageSize) / m, 2), 7, left: true)) | \(pad(ratio.map { fmt($0, 3) } ?? "n/a", 6, left: true)) |")
}
print("")
print("goal: inject >= 0.3x scan; " + opt.chunkSizes.map { size in
    guard let s = cases.firstIndex(where: { $0.name == "scan" && $0.chunkSize == size }),
        let j = cases.firstIndex(where: { $0.name == "inject" && $0.chunkSize == size })
    else { return "\(size): n/a" }
    let r = median(zip(mbps[j], mbps[s]).map { $0 / $1 })
    return "\(size / 1024) KB: \(fmt(r, 3))x \(r >= 0.3 ? "met" : "NOT met")"
}.joined(separator: ", ") + "   (sink \(sink & 0xFFFF))")
