import FuzzSupport
import OverlayInject

// Input: a chunking (see readChunkSizes), a hold-back choice, then the page.
//
// Oracle:
// - byte exactness: the output is the page with the snippet inserted once, at `insertionOffset`
//   (or the page unchanged when the outcome is `alreadyPresent`); never two insertions;
// - the output, the outcome and the offset do not depend on the chunking (one shot == chunked);
// - what `feed` returns is emitted for good (the concatenation is a prefix of the final output),
//   and at most `maxHoldBack` bytes are held between calls;
// - the insertion point is where the outcome says: before `</head` or `</body` followed by
//   whitespace, `/` or `>`; right after a `>` that closes a `<body` start tag; or at the end;
// - with OVERLAYD_FUZZ_DUMP set, one JSON line per input (page, offset, outcome) for the html5lib
//   check (Fuzz/tests), which verifies that the point is not inside a comment, script, style,
//   textarea, title, template, CDATA section or attribute value as a browser's tokenizer sees it.

let snippet = Array(#"<script data-overlayd src="/__overlay/overlay.js" defer></script>"#.utf8)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let sizes = readChunkSizes(&input)
    let hold = input.int(0...80)
    let page = input.rest()

    var whole = HTMLInjector(snippet: snippet, maxHoldBack: hold)
    var reference = whole.feed(page)
    reference += whole.finish()

    var streaming = HTMLInjector(snippet: snippet, maxHoldBack: hold)
    var output: [UInt8] = []
    for chunk in chunks(page, sizes: sizes) {
        output += streaming.feed(chunk)
        check(streaming.heldBackCount <= streaming.maxHoldBack,
              "held \(streaming.heldBackCount) bytes > maxHoldBack \(streaming.maxHoldBack)")
    }
    output += streaming.finish()
    check(streaming.outcome == whole.outcome, "outcome \(streaming.outcome) chunked, \(whole.outcome) whole")
    check(streaming.insertionOffset == whole.insertionOffset, "offset depends on the chunking")
    check(output == reference, "output depends on the chunking: \(show(output)) vs \(show(reference))")
    check(streaming.outcome != .pending, "pending after finish")
    check(streaming.bytesConsumed == page.count, "consumed \(streaming.bytesConsumed) of \(page.count)")

    let outcome = streaming.outcome
    if outcome == .alreadyPresent {
        check(streaming.insertionOffset == nil, "alreadyPresent with an insertion offset")
        check(output == page, "alreadyPresent but the page changed")
    } else {
        guard let offset = streaming.insertionOffset, offset >= 0, offset <= page.count else {
            oracleFailure("injected (\(outcome)) without a valid offset: \(String(describing: streaming.insertionOffset))")
        }
        let expected = Array(page[..<offset]) + snippet + Array(page[offset...])
        check(output == expected, "output is not the page plus one snippet at \(offset): \(show(output))")
        checkPlacement(page, offset: offset, outcome: outcome)
    }
    appendLine(toFileIn: "OVERLAYD_FUZZ_DUMP",
               #"{"page":"\#(hex(page))","offset":\#(streaming.insertionOffset.map(String.init) ?? "null"),"outcome":"\#(outcome)"}"#)
    return 0
}

func lower(_ b: UInt8) -> UInt8 { b >= 0x41 && b <= 0x5A ? b | 0x20 : b }

func hasTag(_ page: [UInt8], at offset: Int, _ prefix: String) -> Bool {
    let p = Array(prefix.utf8)
    guard offset + p.count < page.count else { return false }
    for k in 0..<p.count where lower(page[offset + k]) != p[k] { return false }
    let next = page[offset + p.count]
    return next == 0x20 || next == 0x09 || next == 0x0A || next == 0x0C || next == 0x0D || next == 0x2F || next == 0x3E
}

func checkPlacement(_ page: [UInt8], offset: Int, outcome: HTMLInjector.Outcome) {
    switch outcome {
    case .beforeHeadEnd:
        check(hasTag(page, at: offset, "</head"), "beforeHeadEnd at \(offset) but no </head there: \(show(page[offset...]))")
    case .beforeBodyEnd:
        check(hasTag(page, at: offset, "</body"), "beforeBodyEnd at \(offset) but no </body there: \(show(page[offset...]))")
    case .afterBodyStart:
        check(offset > 0 && page[offset - 1] == 0x3E, "afterBodyStart at \(offset) not after a >")
        // The nearest "<body" before the offset must start the tag that this > closes.
        var k = offset - 1
        var found = false
        while k >= 0 {
            if page[k] == 0x3C {
                found = hasTag(page, at: k, "<body")
                if found { break }
            }
            k -= 1
        }
        check(found, "afterBodyStart at \(offset) without a <body start tag before it")
    case .atEnd:
        check(offset == page.count, "atEnd at \(offset) of \(page.count)")
    case .pending, .alreadyPresent:
        oracleFailure("unreachable outcome \(outcome)")
    }
}
