/// A streaming injector that inserts a snippet of bytes into an HTML body
/// exactly once, without buffering the page.
///
/// ## Where the snippet goes
///
/// Scanning the body once, front to back, the **first** of these events wins:
///
/// 1. an end tag `</head>`: the snippet goes immediately **before** its `<`
///    (``Outcome/beforeHeadEnd``);
/// 2. a start tag `<body ...>`: the snippet goes immediately **after** the
///    `>` that closes that whole start tag (``Outcome/afterBodyStart``);
///    this is what happens on a page that has no `</head>`;
/// 3. an end tag `</body>`: the snippet goes immediately **before** its `<`
///    (``Outcome/beforeBodyEnd``);
/// 4. otherwise the snippet is appended at the very end, by ``finish()``
///    (``Outcome/atEnd``).
///
/// If, before any of these events, a start tag carries an attribute named
/// `data-overlayd` (the marker our own snippet carries), the page already has
/// the overlay and nothing is inserted (``Outcome/alreadyPresent``). Because a
/// previously injected snippet *follows* `<body ...>`, the injector also looks
/// just past that tag: if, after optional whitespace, the next start tag gets
/// a `data-overlayd` attribute within the first `maxHoldBack` bytes, the
/// outcome is ``Outcome/alreadyPresent`` too (``OverlaySnippet`` puts the
/// marker first, at byte 8 of its first tag, so this always works for it).
///
/// Tags are recognised the way the HTML tokenizer of a browser recognises
/// them: tag and attribute names are ASCII case-insensitive, `</HEAD >`,
/// `</head\n>` and `</head/>` are end tags, `</header>` and `<bodyx>` are not.
/// Nothing is recognised inside comments (`<!-- -->`, including the `<!-->`,
/// `<!--->` and `--!>` forms), bogus comments (`<? >`, `<!DOCTYPE >`,
/// `<!anything >`, `</ >`), CDATA sections (`<![CDATA[ ... ]]>`), attribute
/// values (single-, double- or un-quoted; a `>` inside quotes does not end
/// the tag), or the text of raw-text / RCDATA elements (`<script>`,
/// `<style>`, `<textarea>`, `<title>`, `<xmp>`, `<iframe>`, `<noembed>`,
/// `<noframes>`, `<noscript>`), which ends only at the matching end tag name
/// followed by whitespace, `/` or `>`. Script text follows the browser's
/// "escaped" / "double escaped" rules (`<!-- <script> </script> -->` inside a
/// script does not end it). Everything after `<plaintext>` is text.
/// Content of `<template>` elements (nesting counted) is inert: `<body>`,
/// `</head>`, `</body>` and markers inside a template do not count.
///
/// Deliberate simplifications: `<![CDATA[` is opaque until `]]>` everywhere
/// (browsers do that only inside SVG/MathML, and elsewhere end it at the
/// first `>` like a bogus comment); SVG/MathML content is tokenized as HTML.
/// If the body ends inside an unterminated construct (comment, tag, raw
/// text), the snippet appended at the end lands inside it and is inert.
///
/// ## Streaming and memory
///
/// Bytes are emitted as soon as they are read. Bytes are held back at a chunk
/// end only
/// - for the prefix of a possible `</head` or `</body` end tag (at most 6
///   bytes, `</head`), because the snippet must go *before* the `<` and the
///   tag is only known to be an end tag once the byte after the name is seen;
/// - right after `<body ...>`, while checking whether our snippet is already
///   there: this stops at the first text byte, comment, end tag, completed
///   start tag, or when `maxHoldBack` bytes are held, whichever comes first.
///
/// Tags of any length (huge attribute lists) are handled by tracking state,
/// never by buffering. ``heldBackCount`` is `<= maxHoldBack` between calls
/// (and `<= 6` except just after `<body ...>`).
///
/// ## Byte exactness
///
/// For any input (invalid HTML or binary garbage included) the concatenation
/// of everything returned by ``feed(_:)`` and ``finish()``, with the one
/// inserted snippet removed, is exactly the input, and it does not depend on
/// how the input was split into chunks.
public struct HTMLInjector: Sendable {
    /// What the injector did (or has not done yet).
    public enum Outcome: Sendable, Equatable {
        /// No decision yet (more input needed, or ``HTMLInjector/finish()`` not called).
        case pending
        /// The snippet was inserted immediately before the first `</head>` end tag.
        case beforeHeadEnd
        /// The snippet was inserted immediately after the first `<body ...>` start tag.
        case afterBodyStart
        /// The snippet was inserted immediately before the first `</body>` end tag.
        case beforeBodyEnd
        /// The snippet was appended after the last byte of the body.
        case atEnd
        /// A start tag with a `data-overlayd` attribute came first: nothing inserted.
        case alreadyPresent
    }

    /// The most bytes the state machine needs to hold back to find
    /// `</head` / `</body`; `maxHoldBack` is never below this.
    public static let requiredHoldBack = 6

    /// The bytes inserted into the page.
    public let snippet: [UInt8]
    /// The bound on held-back bytes requested at initialisation.
    public let maxHoldBack: Int
    /// The current outcome; ``Outcome/pending`` until a decision is made.
    public private(set) var outcome: Outcome = .pending
    /// Offset in the *input* stream where the snippet was inserted, once injected.
    public private(set) var insertionOffset: Int?
    /// Number of input bytes consumed so far.
    public private(set) var bytesConsumed = 0

    /// True once the snippet has been emitted.
    public var injected: Bool {
        switch outcome {
        case .beforeHeadEnd, .afterBodyStart, .beforeBodyEnd, .atEnd: return true
        case .pending, .alreadyPresent: return false
        }
    }

    /// Number of input bytes currently held back (not yet returned).
    public var heldBackCount: Int { held.count }

    private var state: State = .data
    private var held: [UInt8] = []
    private var holding = false
    /// After `<body ...>`: holding the following bytes to see whether our
    /// snippet is already there (see `probeInject`).
    private var probing = false
    private var probeOffset = 0
    private var finished = false
    /// The byte being stepped was held and a flush in this step put it at the end of `out`.
    private var byteReleased = false
    private var isEndTag = false
    private var tagHasMarker = false
    private var name = NameBuffer()
    private var attrName = NameBuffer()
    private var temp = NameBuffer()
    private var rawEndName = NameBuffer()
    private var cdataMatch = 0
    private var templateDepth = 0

    /// Creates an injector.
    /// - Parameters:
    ///   - snippet: the bytes to insert once.
    ///   - maxHoldBack: upper bound on bytes held back at a chunk end. The state
    ///     machine needs ``requiredHoldBack`` (6) bytes; smaller values are
    ///     raised to that. It also bounds the look past `<body ...>` for an
    ///     existing snippet (``OverlaySnippet``'s marker is recognised after
    ///     22 bytes, plus any whitespace between `<body ...>` and it).
    public init(snippet: [UInt8], maxHoldBack: Int = 64) {
        self.snippet = snippet
        self.maxHoldBack = max(maxHoldBack, Self.requiredHoldBack)
        held.reserveCapacity(Self.requiredHoldBack + 1)
    }

    /// Consumes the next chunk of the body and returns the bytes that may be
    /// sent now (possibly including the snippet). After ``finish()`` the chunk
    /// is returned unchanged.
    public mutating func feed(_ chunk: some Collection<UInt8>) -> [UInt8] {
        if finished || outcome != .pending {
            bytesConsumed += chunk.count
            return Array(chunk)
        }
        // One dynamic dispatch per chunk, then a non-generic loop over contiguous bytes: the
        // generic `for b in chunk` ran unspecialised across the module boundary (a witness-table
        // `next()` per byte). Collections without contiguous storage are copied once.
        if let out = chunk.withContiguousStorageIfAvailable({ feedBytes($0) }) { return out }
        return Array(chunk).withUnsafeBufferPointer { feedBytes($0) }
    }

    /// Like ``feed(_:)``, for a caller that can send the end of a chunk without copying it: the
    /// output for `chunk` is `emitted` followed by `chunk[restFrom...]` (the bytes after the
    /// decision, which pass unchanged). `restFrom` is `chunk.count` while undecided, and 0 for
    /// every chunk once decided (or after ``finish()``).
    public mutating func feedSplitting(_ chunk: UnsafeRawBufferPointer) -> (emitted: [UInt8], restFrom: Int) {
        if finished || outcome != .pending {
            bytesConsumed += chunk.count
            return ([], 0)
        }
        let bytes = UnsafeBufferPointer(start: chunk.baseAddress?.assumingMemoryBound(to: UInt8.self), count: chunk.count)
        return feedBytes(bytes, stopAtDecision: true)
    }

    private mutating func feedBytes(_ chunk: UnsafeBufferPointer<UInt8>) -> [UInt8] {
        feedBytes(chunk, stopAtDecision: false).emitted
    }

    /// `stopAtDecision`: the bytes after the decision are left in the chunk (their offset is
    /// returned); otherwise they are copied into the output.
    private mutating func feedBytes(
        _ chunk: UnsafeBufferPointer<UInt8>, stopAtDecision: Bool
    ) -> (emitted: [UInt8], restFrom: Int) {
        var out: [UInt8] = []
        out.reserveCapacity((stopAtDecision ? min(chunk.count, 1024) : chunk.count) + held.count + snippet.count)
        var restFrom = chunk.count
        // Bytes emitted unchanged are not appended one by one: `chunk[run..<i]` is the run of them
        // not yet in `out`, appended in one go when something else must go out after it (the
        // held bytes, the snippet) or at the end. While holding, the run is empty (run == i).
        var run = 0
        var i = 0
        while i < chunk.count {
            if outcome != .pending {
                out.append(contentsOf: UnsafeBufferPointer(rebasing: chunk[run..<i]))
                run = i
                bytesConsumed += chunk.count - i
                if stopAtDecision {
                    restFrom = i
                } else {
                    // Decided: the rest of the chunk goes out in one copy.
                    out.append(contentsOf: UnsafeBufferPointer(rebasing: chunk[i...]))
                }
                run = chunk.count
                break
            }
            // States that only wait for one byte value: the run goes on up to it.
            if !holding, let stop = skipUntil {
                var j = i
                while j < chunk.count && chunk[j] != stop { j += 1 }
                if j > i {
                    bytesConsumed += j - i
                    i = j
                    continue
                }
            }
            // The end tag of a script or raw-text element, whole in this chunk (`</script>`,
            // `</title>`): matched here instead of a step per byte. Anything else after the `<`
            // (another name, a tag split across chunks) is left to the steps.
            if !holding && chunk[i] == A.lt && (state == .scriptData || state == .rawText) {
                let target = state == .scriptData ? A.script : rawEndName
                if let end = rawEndTagEnd(chunk, from: i, name: target) {
                    temp = target
                    endRawTag(chunk[end], &out)
                    bytesConsumed += end + 1 - i
                    i = end + 1
                    continue
                }
            }
            // A start tag's `<` and first letter in text: the step would hold the `<` (it may start
            // `</head`) and release it with the letter; both stay in the run instead. The same for
            // an end tag whose name cannot be `head` or `body` (not `h` or `b`).
            if !holding && state == .data && i + 1 < chunk.count && chunk[i] == A.lt {
                let next = chunk[i + 1]
                if isAlpha(next) {
                    beginTag(end: false, next)
                    bytesConsumed += 2
                    i += 2
                    continue
                }
                if next == A.slash && i + 2 < chunk.count && isAlpha(chunk[i + 2]) && asciiLower(chunk[i + 2]) != 0x68
                    && asciiLower(chunk[i + 2]) != 0x62 {
                    beginTag(end: true, chunk[i + 2])
                    bytesConsumed += 3
                    i += 3
                    continue
                }
            }
            // A tag's name and its attributes, outside a hold: the step would only add bytes to a
            // name or move between the attribute states, so they run here on locals (the tag's end,
            // `>` or `/`, is left to the step).
            if !holding {
                var j = i
                if state == .tagName {
                    while j < chunk.count && !isNameEnd(chunk[j]) {
                        name.append(chunk[j])
                        j += 1
                    }
                    if j < chunk.count && isSpace(chunk[j]) {
                        state = .beforeAttrName
                        j += 1
                    }
                }
                if state.isAttributes { j = scanAttributes(chunk, from: j) }
                // The `>` that ends the tag (in every state these leave off at it, the step would
                // complete the tag): done here, without a step.
                if j < chunk.count && chunk[j] == A.gt && (state == .tagName || state.isAttributes) {
                    bytesConsumed += j - i  // up to the `>`, which the tag's end counts from
                    emitTag(&out)
                    bytesConsumed += 1
                    j += 1
                    i = j
                    if holding {
                        // `<body ...>` ended: what follows it is held; the run ends with its `>`.
                        out.append(contentsOf: UnsafeBufferPointer(rebasing: chunk[run..<j]))
                        run = j
                        if probing && held.count >= maxHoldBack { probeInject(&out) }
                    }
                    continue
                }
                if j > i {
                    bytesConsumed += j - i
                    i = j
                    continue
                }
            }
            let b = chunk[i]
            byteReleased = false
            if holding {
                held.append(b)
                step(b, &out)
                if probing && held.count >= maxHoldBack { probeInject(&out) }
                run = i + 1  // `b` is in `held` or, released with it, in `out`
            } else {
                step(b, &out)
                if holding {
                    // This byte started a hold: `<` is held (the run ends before it), or `<body ...>`
                    // ended and what follows it is held (the run ends with its `>`).
                    let through = held.isEmpty ? i + 1 : i
                    out.append(contentsOf: UnsafeBufferPointer(rebasing: chunk[run..<through]))
                    run = i + 1
                    if probing && held.count >= maxHoldBack { probeInject(&out) }
                }
            }
            bytesConsumed += 1
            i += 1
        }
        if run < chunk.count && restFrom == chunk.count {
            out.append(contentsOf: UnsafeBufferPointer(rebasing: chunk[run..<chunk.count]))
        }
        return (out, restFrom)
    }

    /// Signals the end of the body; returns the held-back bytes and, if no
    /// insertion point was found, the snippet (``Outcome/atEnd``). Calling it
    /// again returns nothing.
    public mutating func finish() -> [UInt8] {
        if finished { return [] }
        finished = true
        var out: [UInt8] = []
        if probing {
            probeInject(&out)
            return out
        }
        out = held
        held.removeAll()
        holding = false
        if outcome == .pending {
            out.append(contentsOf: snippet)
            outcome = .atEnd
            insertionOffset = bytesConsumed
        }
        return out
    }

    /// Gives up without inserting (the body turned out too large): returns the held-back bytes;
    /// later ``feed(_:)`` calls return their chunk unchanged and ``finish()`` returns nothing.
    /// Does nothing once the snippet was inserted.
    public mutating func abandon() -> [UInt8] {
        if finished { return [] }
        finished = true
        let out = held
        held.removeAll()
        holding = false
        probing = false
        return out
    }

    /// Injects into a whole body in one call.
    public static func inject(
        _ snippet: [UInt8], into body: some Collection<UInt8>
    ) -> (output: [UInt8], outcome: Outcome) {
        var injector = HTMLInjector(snippet: snippet)
        var out = injector.feed(body)
        out.append(contentsOf: injector.finish())
        return (out, injector.outcome)
    }

    // MARK: - State machine

    private enum State: Sendable {
        case data, tagOpen, endTagOpen, tagName
        case beforeAttrName, attrName, afterAttrName, beforeAttrValue
        case attrValueDouble, attrValueSingle, attrValueUnquoted, afterAttrValueQuoted
        case selfClosing
        case markupDeclOpen, markupDash, markupCDATA
        case commentStart, commentStartDash, comment, commentEndDash, commentEnd, commentEndBang
        case bogusComment
        case cdata, cdataBracket, cdataEnd
        case rawText, rawLessThan, rawEndTagOpen, rawEndTagName
        case scriptData, scriptLessThan, scriptEndTagOpen, scriptEndTagName
        case scriptEscapeStart, scriptEscapeStartDash
        case scriptEscaped, scriptEscapedDash, scriptEscapedDashDash
        case scriptEscapedLessThan, scriptEscapedEndTagOpen, scriptEscapedEndTagName
        case scriptDoubleEscapeStart, scriptDoubleEscaped, scriptDoubleEscapedDash
        case scriptDoubleEscapedDashDash, scriptDoubleEscapedLessThan, scriptDoubleEscapeEnd
        case plaintext

        /// Between a tag's name and its end: the states ``scanAttributes(_:from:)`` runs.
        var isAttributes: Bool {
            switch self {
            case .beforeAttrName, .attrName, .afterAttrName, .beforeAttrValue, .attrValueDouble,
                .attrValueSingle, .attrValueUnquoted, .afterAttrValueQuoted:
                return true
            default:
                return false
            }
        }
    }

    /// Processes one input byte `b`: while holding, it has already been appended to `held`;
    /// otherwise it is part of the run of input bytes the caller emits in one go (``feedBytes``),
    /// unless this step starts holding with it.
    private mutating func step(_ b: UInt8, _ out: inout [UInt8]) {
        var reconsume = true
        while reconsume && outcome == .pending {
            reconsume = false
            switch state {
            case .data:
                if probing && b != A.lt && !isSpace(b) {
                    probeInject(&out)
                } else if b == A.lt {
                    state = .tagOpen
                    if templateDepth == 0 && !holding {
                        // `b` is held, not emitted: the caller ends its run before it, or (a flush
                        // in this step released it) it leaves `out` again.
                        if byteReleased { out.removeLast() }
                        held.append(b)
                        holding = true
                    }
                }

            case .tagOpen:
                if probing && !isAlpha(b) {
                    probeInject(&out)
                } else if b == A.slash {
                    state = .endTagOpen
                } else {
                    flush(&out)
                    if b == A.bang {
                        state = .markupDeclOpen
                    } else if isAlpha(b) {
                        beginTag(end: false, b)
                    } else if b == A.question {
                        state = .bogusComment
                    } else {
                        state = .data
                        reconsume = true
                    }
                }

            case .endTagOpen:
                if isAlpha(b) {
                    beginTag(end: true, b)
                    if holdingEndTag && !name.isPrefix(of: A.head) && !name.isPrefix(of: A.body) {
                        flush(&out)
                    }
                } else {
                    flush(&out)
                    if b == A.gt {
                        state = .data
                    } else {
                        state = .bogusComment
                        reconsume = true
                    }
                }

            case .tagName:
                if isSpace(b) || b == A.slash || b == A.gt {
                    if holdingEndTag {
                        if name.equals(A.head) {
                            injectBeforeHeldTag(.beforeHeadEnd, &out)
                            return
                        } else if name.equals(A.body) {
                            injectBeforeHeldTag(.beforeBodyEnd, &out)
                            return
                        }
                        flush(&out)
                    }
                    if isSpace(b) {
                        state = .beforeAttrName
                    } else if b == A.slash {
                        state = .selfClosing
                    } else {
                        emitTag(&out)
                    }
                } else {
                    name.append(b)
                    if holdingEndTag && !name.isPrefix(of: A.head) && !name.isPrefix(of: A.body) {
                        flush(&out)
                    }
                }

            case .beforeAttrName:
                if isSpace(b) {
                    // stay
                } else if b == A.slash || b == A.gt {
                    state = .afterAttrName
                    reconsume = true
                } else {
                    attrName.reset()
                    attrName.append(b)
                    state = .attrName
                }

            case .attrName:
                if isSpace(b) || b == A.slash || b == A.gt {
                    endAttrName(&out)
                    state = .afterAttrName
                    reconsume = true
                } else if b == A.eq {
                    endAttrName(&out)
                    state = .beforeAttrValue
                } else {
                    attrName.append(b)
                }

            case .afterAttrName:
                if isSpace(b) {
                    // stay
                } else if b == A.slash {
                    state = .selfClosing
                } else if b == A.eq {
                    state = .beforeAttrValue
                } else if b == A.gt {
                    emitTag(&out)
                } else {
                    attrName.reset()
                    attrName.append(b)
                    state = .attrName
                }

            case .beforeAttrValue:
                if isSpace(b) {
                    // stay
                } else if b == A.dquote {
                    state = .attrValueDouble
                } else if b == A.squote {
                    state = .attrValueSingle
                } else if b == A.gt {
                    emitTag(&out)
                } else {
                    state = .attrValueUnquoted
                }

            case .attrValueDouble:
                if b == A.dquote { state = .afterAttrValueQuoted }

            case .attrValueSingle:
                if b == A.squote { state = .afterAttrValueQuoted }

            case .attrValueUnquoted:
                if isSpace(b) {
                    state = .beforeAttrName
                } else if b == A.gt {
                    emitTag(&out)
                }

            case .afterAttrValueQuoted:
                if isSpace(b) {
                    state = .beforeAttrName
                } else if b == A.slash {
                    state = .selfClosing
                } else if b == A.gt {
                    emitTag(&out)
                } else {
                    state = .beforeAttrName
                    reconsume = true
                }

            case .selfClosing:
                if b == A.gt {
                    emitTag(&out)
                } else {
                    state = .beforeAttrName
                    reconsume = true
                }

            case .markupDeclOpen:
                if b == A.dash {
                    state = .markupDash
                } else if b == A.lbracket {
                    cdataMatch = 1
                    state = .markupCDATA
                } else {
                    // `<!DOCTYPE ...>` and every other `<!...>` end at the first `>`.
                    state = .bogusComment
                    reconsume = true
                }

            case .markupDash:
                if b == A.dash {
                    state = .commentStart
                } else {
                    state = .bogusComment
                    reconsume = true
                }

            case .markupCDATA:
                if b == A.cdataOpen[cdataMatch] {
                    cdataMatch += 1
                    if cdataMatch == A.cdataOpen.count { state = .cdata }
                } else {
                    state = .bogusComment
                    reconsume = true
                }

            case .commentStart:
                if b == A.dash {
                    state = .commentStartDash
                } else if b == A.gt {
                    state = .data  // `<!-->`
                } else {
                    state = .comment
                    reconsume = true
                }

            case .commentStartDash:
                if b == A.dash {
                    state = .commentEnd
                } else if b == A.gt {
                    state = .data  // `<!--->`
                } else {
                    state = .comment
                    reconsume = true
                }

            case .comment:
                if b == A.dash { state = .commentEndDash }

            case .commentEndDash:
                if b == A.dash {
                    state = .commentEnd
                } else {
                    state = .comment
                    reconsume = true
                }

            case .commentEnd:
                if b == A.gt {
                    state = .data
                } else if b == A.bang {
                    state = .commentEndBang
                } else if b != A.dash {
                    state = .comment
                    reconsume = true
                }

            case .commentEndBang:
                if b == A.dash {
                    state = .commentEndDash
                } else if b == A.gt {
                    state = .data  // `--!>`
                } else {
                    state = .comment
                    reconsume = true
                }

            case .bogusComment:
                if b == A.gt { state = .data }

            case .cdata:
                if b == A.rbracket { state = .cdataBracket }

            case .cdataBracket:
                if b == A.rbracket {
                    state = .cdataEnd
                } else {
                    state = .cdata
                    reconsume = true
                }

            case .cdataEnd:
                if b == A.gt {
                    state = .data
                } else if b != A.rbracket {
                    state = .cdata
                    reconsume = true
                }

            // RAWTEXT / RCDATA: ends only at `</name` + whitespace, `/` or `>`.
            case .rawText:
                if b == A.lt { state = .rawLessThan }

            case .rawLessThan:
                if b == A.slash {
                    temp.reset()
                    state = .rawEndTagOpen
                } else {
                    state = .rawText
                    reconsume = true
                }

            case .rawEndTagOpen:
                state = isAlpha(b) ? .rawEndTagName : .rawText
                reconsume = true

            case .rawEndTagName:
                if isAlpha(b) {
                    temp.append(b)
                } else if (isSpace(b) || b == A.slash || b == A.gt) && temp.equals(rawEndName) {
                    endRawTag(b, &out)
                } else {
                    state = .rawText
                    reconsume = true
                }

            // Script data, including the escaped / double-escaped states.
            case .scriptData:
                if b == A.lt { state = .scriptLessThan }

            case .scriptLessThan:
                if b == A.slash {
                    temp.reset()
                    state = .scriptEndTagOpen
                } else if b == A.bang {
                    state = .scriptEscapeStart
                } else {
                    state = .scriptData
                    reconsume = true
                }

            case .scriptEndTagOpen:
                state = isAlpha(b) ? .scriptEndTagName : .scriptData
                reconsume = true

            case .scriptEndTagName:
                if isAlpha(b) {
                    temp.append(b)
                } else if (isSpace(b) || b == A.slash || b == A.gt) && temp.equals(A.script) {
                    endRawTag(b, &out)
                } else {
                    state = .scriptData
                    reconsume = true
                }

            case .scriptEscapeStart:
                if b == A.dash {
                    state = .scriptEscapeStartDash
                } else {
                    state = .scriptData
                    reconsume = true
                }

            case .scriptEscapeStartDash:
                if b == A.dash {
                    state = .scriptEscapedDashDash
                } else {
                    state = .scriptData
                    reconsume = true
                }

            case .scriptEscaped:
                if b == A.dash {
                    state = .scriptEscapedDash
                } else if b == A.lt {
                    state = .scriptEscapedLessThan
                }

            case .scriptEscapedDash:
                if b == A.dash {
                    state = .scriptEscapedDashDash
                } else if b == A.lt {
                    state = .scriptEscapedLessThan
                } else {
                    state = .scriptEscaped
                }

            case .scriptEscapedDashDash:
                if b == A.dash {
                    // stay
                } else if b == A.lt {
                    state = .scriptEscapedLessThan
                } else if b == A.gt {
                    state = .scriptData
                } else {
                    state = .scriptEscaped
                }

            case .scriptEscapedLessThan:
                if b == A.slash {
                    temp.reset()
                    state = .scriptEscapedEndTagOpen
                } else if isAlpha(b) {
                    temp.reset()
                    state = .scriptDoubleEscapeStart
                    reconsume = true
                } else {
                    state = .scriptEscaped
                    reconsume = true
                }

            case .scriptEscapedEndTagOpen:
                state = isAlpha(b) ? .scriptEscapedEndTagName : .scriptEscaped
                reconsume = true

            case .scriptEscapedEndTagName:
                if isAlpha(b) {
                    temp.append(b)
                } else if (isSpace(b) || b == A.slash || b == A.gt) && temp.equals(A.script) {
                    endRawTag(b, &out)
                } else {
                    state = .scriptEscaped
                    reconsume = true
                }

            case .scriptDoubleEscapeStart:
                if isSpace(b) || b == A.slash || b == A.gt {
                    state = temp.equals(A.script) ? .scriptDoubleEscaped : .scriptEscaped
                } else if isAlpha(b) {
                    temp.append(b)
                } else {
                    state = .scriptEscaped
                    reconsume = true
                }

            case .scriptDoubleEscaped:
                if b == A.dash {
                    state = .scriptDoubleEscapedDash
                } else if b == A.lt {
                    state = .scriptDoubleEscapedLessThan
                }

            case .scriptDoubleEscapedDash:
                if b == A.dash {
                    state = .scriptDoubleEscapedDashDash
                } else if b == A.lt {
                    state = .scriptDoubleEscapedLessThan
                } else {
                    state = .scriptDoubleEscaped
                }

            case .scriptDoubleEscapedDashDash:
                if b == A.dash {
                    // stay
                } else if b == A.lt {
                    state = .scriptDoubleEscapedLessThan
                } else if b == A.gt {
                    state = .scriptData
                } else {
                    state = .scriptDoubleEscaped
                }

            case .scriptDoubleEscapedLessThan:
                if b == A.slash {
                    temp.reset()
                    state = .scriptDoubleEscapeEnd
                } else {
                    state = .scriptDoubleEscaped
                    reconsume = true
                }

            case .scriptDoubleEscapeEnd:
                if isSpace(b) || b == A.slash || b == A.gt {
                    state = temp.equals(A.script) ? .scriptEscaped : .scriptDoubleEscaped
                } else if isAlpha(b) {
                    temp.append(b)
                } else {
                    state = .scriptDoubleEscaped
                    reconsume = true
                }

            case .plaintext:
                break
            }
        }
    }

    // MARK: - Helpers

    /// For states where `step` ignores every byte but one value, that value.
    private var skipUntil: UInt8? {
        switch state {
        case .data, .scriptData, .rawText: return A.lt
        case .comment: return A.dash
        case .attrValueDouble: return A.dquote
        case .attrValueSingle: return A.squote
        case .bogusComment: return A.gt
        case .cdata: return A.rbracket
        default: return nil
        }
    }

    /// The attribute states of ``step(_:_:)`` (``State/isAttributes``) from `chunk[start]` on,
    /// outside a hold (so not probing after `<body>`: the end of a marker attribute only marks
    /// the tag): the same transitions on a local state. Stops before a `>` or `/` that ends or may
    /// end the tag, or at the end of the chunk; returns the index of the first byte not consumed.
    private mutating func scanAttributes(_ chunk: UnsafeBufferPointer<UInt8>, from start: Int) -> Int {
        var s = state
        var j = start
        let count = chunk.count
        scan: while j < count {
            let b = chunk[j]
            switch s {
            case .beforeAttrName, .afterAttrName:
                if isSpace(b) {
                    j += 1
                } else if b == A.slash || b == A.gt {
                    break scan
                } else if b == A.eq && s == .afterAttrName {
                    s = .beforeAttrValue
                    j += 1
                } else {
                    attrName.reset()
                    attrName.append(b)
                    s = .attrName
                    j += 1
                }
            case .attrName:
                // The rest of the name in one run (not a dispatch per byte).
                var c = b
                while c != A.eq && !isNameEnd(c) {
                    attrName.append(c)
                    j += 1
                    if j == count { break scan }
                    c = chunk[j]
                }
                if attrNameIsMarker { tagHasMarker = true }
                if c == A.eq {
                    s = .beforeAttrValue
                    j += 1
                } else {
                    s = .afterAttrName  // the byte is seen again there
                }
            case .beforeAttrValue:
                if b == A.gt { break scan }
                if b == A.dquote {
                    s = .attrValueDouble
                } else if b == A.squote {
                    s = .attrValueSingle
                } else if !isSpace(b) {
                    s = .attrValueUnquoted
                }
                j += 1
            case .attrValueDouble, .attrValueSingle:
                let quote = s == .attrValueDouble ? A.dquote : A.squote
                while j < count && chunk[j] != quote { j += 1 }
                if j < count {
                    s = .afterAttrValueQuoted
                    j += 1
                }
            case .attrValueUnquoted:
                var c = b
                while c != A.gt && !isSpace(c) {
                    j += 1
                    if j == count { break scan }
                    c = chunk[j]
                }
                if c == A.gt { break scan }
                s = .beforeAttrName
                j += 1
            case .afterAttrValueQuoted:
                if b == A.slash || b == A.gt { break scan }
                if isSpace(b) { j += 1 }
                s = .beforeAttrName  // any other byte is seen again there
            default:
                break scan
            }
        }
        state = s
        return j
    }

    /// Where the end tag `</name` at `chunk[from]` has its byte after the name (whitespace, `/`
    /// or `>`, which ends the raw text as in ``step(_:_:)``'s end-tag-name states), or nil when
    /// the bytes there are not that end tag or it does not end inside the chunk.
    @inline(__always)
    private func rawEndTagEnd(_ chunk: UnsafeBufferPointer<UInt8>, from i: Int, name: NameBuffer) -> Int? {
        let end = i &+ 2 &+ name.length
        guard end < chunk.count, chunk[i &+ 1] == A.slash, name.isLettersSpelled(by: chunk, at: i &+ 2),
            isNameEnd(chunk[end])
        else { return nil }
        return end
    }

    /// Holding a possible `</head` / `</body` (not probing after `<body>`).
    private var holdingEndTag: Bool { holding && !probing }

    /// Releases held bytes, unless probing after `<body>` (which ends only
    /// through `probeInject` or the marker).
    private mutating func flush(_ out: inout [UInt8]) {
        guard holding && !probing else { return }
        byteReleased = byteReleased || !held.isEmpty
        out.append(contentsOf: held)
        held.removeAll(keepingCapacity: true)
        holding = false
    }

    /// Ends the probe after `<body ...>`: snippet, then the held bytes.
    private mutating func probeInject(_ out: inout [UInt8]) {
        probing = false
        insertionOffset = probeOffset
        outcome = .afterBodyStart
        out.append(contentsOf: snippet)
        flush(&out)
    }

    /// Inserts the snippet before the held `</head` / `</body` (+ current byte).
    private mutating func injectBeforeHeldTag(_ kind: Outcome, _ out: inout [UInt8]) {
        insertionOffset = bytesConsumed + 1 - held.count
        outcome = kind
        out.append(contentsOf: snippet)
        flush(&out)
    }

    private mutating func beginTag(end: Bool, _ b: UInt8) {
        isEndTag = end
        tagHasMarker = false
        name.reset()
        name.append(b)
        state = .tagName
    }

    /// The attribute name just ended is our snippet's marker (on a start tag).
    private var attrNameIsMarker: Bool { !isEndTag && attrName.equals(A.marker) }

    private mutating func endAttrName(_ out: inout [UInt8]) {
        guard attrNameIsMarker else { return }
        tagHasMarker = true
        if probing {
            // Our snippet already follows `<body ...>`: emit what was held, no snippet.
            probing = false
            outcome = .alreadyPresent
            flush(&out)
        }
    }

    /// The byte after an appropriate raw-text end tag name was seen.
    private mutating func endRawTag(_ b: UInt8, _ out: inout [UInt8]) {
        isEndTag = true
        tagHasMarker = false
        name = temp
        if isSpace(b) {
            state = .beforeAttrName
        } else if b == A.slash {
            state = .selfClosing
        } else {
            emitTag(&out)
        }
    }

    /// Called on the `>` that completes a tag.
    private mutating func emitTag(_ out: inout [UInt8]) {
        state = .data
        if probing {
            probeInject(&out)
            return
        }
        if isEndTag {
            if templateDepth > 0 && name.equals(A.template) { templateDepth -= 1 }
            return
        }
        if templateDepth == 0 && outcome == .pending {
            if tagHasMarker {
                outcome = .alreadyPresent
                return
            }
            if name.equals(A.body) {
                // Insertion point is right here, but first look (bounded by
                // maxHoldBack) whether the next start tag is our marker.
                probing = true
                probeOffset = bytesConsumed + 1
                holding = true
                return
            }
        }
        if name.equals(A.template) {
            templateDepth += 1
        } else if name.equals(A.script) {
            state = .scriptData
        } else if name.equals(A.plaintext) {
            state = .plaintext
        } else {
            if let raw = A.rawTextElement(name) {
                rawEndName = raw
                state = .rawText
            }
        }
    }
}

extension HTMLInjector {
    /// The names the injector compares tag and attribute names with, each with its text (for the
    /// test that checks their words).
    static var nameConstants: [(text: String, value: NameBuffer)] { A.names }

    /// Whether `name` is a raw-text element's name (for the test of the lookup by length).
    static func isRawTextElement(_ name: String) -> Bool { A.rawTextElement(NameBuffer(name)) != nil }

    /// The raw-text elements' names.
    static var rawTextElementNames: [String] { A.rawTextElementNames }
}

/// A lower-cased name, of which only the first 16 bytes are stored (enough to
/// compare against every name the injector cares about). Inline storage (two words): no heap
/// array, so `reset`/`append`/copies (`name = temp`) never allocate or hit copy-on-write.
struct NameBuffer: Sendable, Equatable {
    private var lo: UInt64 = 0
    private var hi: UInt64 = 0
    private(set) var length = 0
    static let capacity = 16

    init() {}

    /// A name given as its two words (little-endian bytes, lower case) and length: the injector's
    /// constants, made at no cost where they are used.
    @inline(__always) init(lo: UInt64, hi: UInt64 = 0, length: Int) {
        self.lo = lo
        self.hi = hi
        self.length = length
    }

    /// A name to compare with (at most ``capacity`` bytes, lower case).
    init(_ literal: String) {
        precondition(literal.utf8.count <= Self.capacity)
        for byte in literal.utf8 { append(byte) }
    }

    @inline(__always) mutating func reset() {
        lo = 0
        hi = 0
        length = 0
    }

    @inline(__always) mutating func append(_ b: UInt8) {
        if length < 8 {
            lo |= UInt64(asciiLower(b)) << (UInt64(length) &* 8)
        } else if length < Self.capacity {
            hi |= UInt64(asciiLower(b)) << (UInt64(length &- 8) &* 8)
        }
        length += 1
    }

    /// The same name (a name over ``capacity`` bytes equals no literal: a literal has at most
    /// that many, and the lengths differ).
    @inline(__always) func equals(_ lit: NameBuffer) -> Bool { self == lit }

    /// Whether `chunk[start...]` spells this name in either case, for a name of at most 8 lower-case
    /// ASCII letters (a byte whose lower case is a letter is that letter in upper or lower case;
    /// the caller checks that the name's bytes are in the chunk).
    @inline(__always) func isLettersSpelled(by chunk: UnsafeBufferPointer<UInt8>, at start: Int) -> Bool {
        guard length <= 8 else { return false }
        var k = 0
        while k < length {
            if chunk[start &+ k] | 0x20 != UInt8(truncatingIfNeeded: lo >> (UInt64(k) &* 8)) { return false }
            k &+= 1
        }
        return true
    }

    /// Whether this name is where `lit` starts (both lower case).
    @inline(__always) func isPrefix(of lit: NameBuffer) -> Bool {
        guard length <= lit.length else { return false }
        if length <= 8 {
            let mask: UInt64 = length == 8 ? ~0 : (1 << (UInt64(length) &* 8)) &- 1
            return (lo ^ lit.lo) & mask == 0
        }
        let rest = length &- 8
        let mask: UInt64 = rest >= 8 ? ~0 : (1 << (UInt64(rest) &* 8)) &- 1
        return lo == lit.lo && (hi ^ lit.hi) & mask == 0
    }
}

@inline(__always) func asciiLower(_ b: UInt8) -> UInt8 {
    (b >= 0x41 && b <= 0x5A) ? b | 0x20 : b
}

@inline(__always) private func isAlpha(_ b: UInt8) -> Bool {
    let l = b | 0x20
    return l >= 0x61 && l <= 0x7A
}

/// HTML whitespace as the tokenizer sees it: TAB, LF, FF, CR, SPACE.
@inline(__always) private func isSpace(_ b: UInt8) -> Bool {
    b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0C || b == 0x0D
}

/// A byte that ends a tag or attribute name: space, `/` or `>`.
@inline(__always) private func isNameEnd(_ b: UInt8) -> Bool {
    isSpace(b) || b == 0x2F || b == 0x3E
}

/// Byte constants.
private enum A {
    static let lt: UInt8 = 0x3C
    static let gt: UInt8 = 0x3E
    static let slash: UInt8 = 0x2F
    static let bang: UInt8 = 0x21
    static let question: UInt8 = 0x3F
    static let dash: UInt8 = 0x2D
    static let eq: UInt8 = 0x3D
    static let dquote: UInt8 = 0x22
    static let squote: UInt8 = 0x27
    static let lbracket: UInt8 = 0x5B
    static let rbracket: UInt8 = 0x5D
    // Names as NameBuffer values (comparing one is two word compares, not a loop over an array),
    // written as their words: a stored `static let` would be a lazy global, initialised through
    // swift_once on every access, many times per page. `names` holds the text of each for the
    // test that checks the words.
    static var head: NameBuffer { NameBuffer(lo: 0x6461_6568, length: 4) }
    static var body: NameBuffer { NameBuffer(lo: 0x7964_6F62, length: 4) }
    static var script: NameBuffer { NameBuffer(lo: 0x7470_6972_6373, length: 6) }
    static var template: NameBuffer { NameBuffer(lo: 0x6574_616C_706D_6574, length: 8) }
    static var plaintext: NameBuffer { NameBuffer(lo: 0x7865_746E_6961_6C70, hi: 0x74, length: 9) }
    static var marker: NameBuffer { NameBuffer(lo: 0x6576_6F2D_6174_6164, hi: 0x64_7961_6C72, length: 13) }
    static let cdataOpen = Array("[CDATA[".utf8)

    /// The raw-text element (RCDATA and RAWTEXT in the HTML standard: its content is text up to
    /// its own end tag) that `name` is, if any.
    @inline(__always) static func rawTextElement(_ name: NameBuffer) -> NameBuffer? {
        switch name.length {
        case 3: return name.equals(xmp) ? name : nil
        case 5: return name.equals(style) || name.equals(title) ? name : nil
        case 6: return name.equals(iframe) ? name : nil
        case 7: return name.equals(noembed) ? name : nil
        case 8: return name.equals(textarea) || name.equals(noframes) || name.equals(noscript) ? name : nil
        default: return nil
        }
    }
    static var style: NameBuffer { NameBuffer(lo: 0x65_6C79_7473, length: 5) }
    static var textarea: NameBuffer { NameBuffer(lo: 0x6165_7261_7478_6574, length: 8) }
    static var title: NameBuffer { NameBuffer(lo: 0x65_6C74_6974, length: 5) }
    static var xmp: NameBuffer { NameBuffer(lo: 0x70_6D78, length: 3) }
    static var iframe: NameBuffer { NameBuffer(lo: 0x656D_6172_6669, length: 6) }
    static var noembed: NameBuffer { NameBuffer(lo: 0x64_6562_6D65_6F6E, length: 7) }
    static var noframes: NameBuffer { NameBuffer(lo: 0x7365_6D61_7266_6F6E, length: 8) }
    static var noscript: NameBuffer { NameBuffer(lo: 0x7470_6972_6373_6F6E, length: 8) }

    /// Each constant above with the name it stands for (for the test that checks its words).
    static var names: [(text: String, value: NameBuffer)] {
        [("head", head), ("body", body), ("script", script), ("template", template), ("plaintext", plaintext),
         ("data-overlayd", marker), ("style", style), ("textarea", textarea), ("title", title), ("xmp", xmp),
         ("iframe", iframe), ("noembed", noembed), ("noframes", noframes), ("noscript", noscript)]
    }

    /// The raw-text elements, by name (for the test of ``rawTextElement(_:)``).
    static let rawTextElementNames = ["style", "textarea", "title", "xmp", "iframe", "noembed", "noframes", "noscript"]
}
