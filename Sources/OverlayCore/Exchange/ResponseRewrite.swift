import OverlayInject

/// Rewrites one response body chunk by chunk, bounded in memory.
///
/// HTML: the streaming ``HTMLInjector`` (holds at most a few bytes of a partial tag). JSON: the
/// body is collected (up to `maxBodyBytes`) and answered as one enriched body at its end.
/// A body that grows past `maxBodyBytes` before anything was inserted passes through untouched
/// from there on (what was held is released unchanged).
public struct ResponseRewrite: Sendable {
    enum Kind: Sendable {
        case html(HTMLInjector)
        case json(collected: [UInt8], key: String, value: [UInt8])
        /// A content-coded body: collected whole (up to the limit), then decoded, rewritten with
        /// `inner` in one go, and encoded again.
        case encoded(collected: [UInt8], encoding: String, inner: Inner, codec: any BodyCodec)
        case passing
    }

    enum Inner: Sendable {
        case html([UInt8])
        case json(key: String, value: [UInt8])
    }

    var kind: Kind
    let limit: Int
    public private(set) var bytesSeen = 0
    /// What happened, for metrics: one of ``outcomes``, or nil while undecided.
    public private(set) var outcome: String?

    /// Every value ``outcome`` can take (the `result` label of `overlayd_injections_total`).
    public static let outcomes = ["injected", "already_present", "too_large", "not_json_object", "broken_encoding", "partial_body"]

    /// The body is collected whole before it is rewritten (JSON, content-coded): a transport that
    /// may cut the body short should ask for it in one piece.
    public var collectsWholeBody: Bool {
        switch kind {
        case .json, .encoded: true
        case .html, .passing: false
        }
    }

    /// The last chunk this rewrite sees, while the body may go on without it (Envoy's
    /// BUFFERED_PARTIAL past its buffer limit, or trailers after a BUFFERED_PARTIAL body): HTML
    /// releases what the injector holds, with no insertion at the end (the document may go on:
    /// `partial_body` when nothing was inserted); JSON is enriched only if it is a whole object
    /// in itself (a cut one never is), else sent unchanged; a content-coded body is sent unchanged
    /// (`partial_body`: a decoder may accept a cut stream). Nil: send `chunk` unchanged.
    public mutating func rewriteLast(_ chunk: some Collection<UInt8>) -> [UInt8]? {
        switch kind {
        case .json:
            return rewrite(chunk, endOfStream: true)
        case .encoded(var collected, _, _, _):
            kind = .passing
            collected.append(contentsOf: chunk)
            outcome = "partial_body"
            return collected.count == chunk.count ? nil : collected
        case .passing:
            return rewrite(chunk, endOfStream: false)
        case .html:
            var out = rewrite(chunk, endOfStream: false) ?? Array(chunk)
            guard case .html(var injector) = kind else { return out.elementsEqual(chunk) ? nil : out }
            kind = .passing
            out.append(contentsOf: injector.abandon())
            noteOutcome(of: injector)
            if outcome == nil { outcome = "partial_body" }
            return out.elementsEqual(chunk) ? nil : out
        }
    }

    public init(html snippet: [UInt8], limit: Int) {
        kind = .html(HTMLInjector(snippet: snippet))
        self.limit = limit
    }

    public init(jsonKey: String, value: [UInt8], limit: Int) {
        kind = .json(collected: [], key: jsonKey, value: value)
        self.limit = limit
    }

    /// An encoded body: `html` snippet or JSON `key`/`value`, after decoding with `codec`.
    public init(encoding: String, codec: any BodyCodec, html snippet: [UInt8]? = nil, jsonKey: String = "", value: [UInt8] = [], limit: Int) {
        let inner: Inner = snippet.map { .html($0) } ?? .json(key: jsonKey, value: value)
        kind = .encoded(collected: [], encoding: encoding, inner: inner, codec: codec)
        self.limit = limit
    }

    /// The rewrite a response plan calls for, with `view` as the result put into the body; nil for
    /// ``ResponsePlan/untouched(reason:)``. `codec` decodes the encodings the plan was decided with
    /// (`decodable`); it must be given for a plan with an encoding. Shared by both adapters.
    public init?(plan: ResponsePlan, settings: OverlaySettings, view: OverlayResultView, codec: (any BodyCodec)?) {
        let limit = settings.maxBodyBytes
        var page = view
        page.context = settings.pageContext  // the HTML island only: what overlay.js may send back
        switch plan {
        case .html(let nonce, let encoding?):
            guard let codec else { return nil }
            self.init(encoding: encoding, codec: codec, html: Self.snippet(page, nonce: nonce), limit: limit)
        case .html(let nonce, nil):
            self.init(html: Self.snippet(page, nonce: nonce), limit: limit)
        case .json(let encoding?):
            guard let codec else { return nil }
            self.init(encoding: encoding, codec: codec, jsonKey: settings.jsonKey, value: view.json, limit: limit)
        case .json(nil):
            self.init(jsonKey: settings.jsonKey, value: view.json, limit: limit)
        case .untouched:
            return nil
        }
    }

    /// The page's snippet with `page` as its data island, written island-safe in one pass.
    private static func snippet(_ page: OverlayResultView, nonce: String?) -> [UInt8] {
        OverlaySnippet.make(islandJSONCount: page.estimatedJSONCount, nonce: nonce) { page.appendJSON(to: &$0, islandSafe: true) }
    }

    /// Like ``rewrite(_:endOfStream:)``, for an adapter that can send the end of a chunk without
    /// copying it (the proxy's buffers): send `emitted`, then `chunk[restFrom...]`. An HTML page
    /// is copied only up to the insertion point; every other kind answers as `rewrite` does
    /// (`restFrom` 0 for "unchanged", `chunk.count` when `emitted` replaces the chunk).
    public mutating func rewriteSplitting(_ chunk: UnsafeRawBufferPointer, endOfStream: Bool) -> (emitted: [UInt8], restFrom: Int) {
        guard case .html(var injector) = kind else {
            guard let replaced = rewrite(chunk, endOfStream: endOfStream) else { return ([], 0) }
            return (replaced, chunk.count)
        }
        let before = injector.injected || injector.outcome == .alreadyPresent
        if !before && bytesSeen + chunk.count > limit {
            return (rewrite(chunk, endOfStream: endOfStream) ?? Array(chunk), chunk.count)
        }
        bytesSeen += chunk.count
        kind = .passing  // drop the enum's copy, so `injector` is uniquely referenced (no copy on write)
        var (emitted, restFrom) = injector.feedSplitting(chunk)
        if endOfStream {
            let tail = injector.finish()
            if !tail.isEmpty {
                emitted.append(contentsOf: chunk[restFrom...])
                emitted.append(contentsOf: tail)
                restFrom = chunk.count
            }
        }
        noteOutcome(of: injector)
        kind = .html(injector)
        return (emitted, restFrom)
    }

    /// Records what the HTML injector did (the `result` label of the injection metrics).
    private mutating func noteOutcome(of injector: HTMLInjector) {
        switch injector.outcome {
        case .pending: break
        case .alreadyPresent: outcome = "already_present"
        default: outcome = "injected"
        }
    }

    /// The bytes to send instead of `chunk`, or nil to send `chunk` unchanged.
    public mutating func rewrite(_ chunk: some Collection<UInt8>, endOfStream: Bool) -> [UInt8]? {
        bytesSeen += chunk.count
        switch kind {
        case .passing:
            return nil
        case .html(let decided) where decided.injected || decided.outcome == .alreadyPresent:
            // Decided: the injector passes every later byte unchanged and holds none back.
            return nil
        case .html(var injector):
            kind = .passing  // drop the enum's copy, so `injector` is uniquely referenced (no copy on write)
            let before = injector.injected || injector.outcome == .alreadyPresent
            if !before && bytesSeen > limit {
                // Too large and nothing inserted yet: release what is held, pass the rest.
                var out = injector.abandon()
                out.append(contentsOf: chunk)
                outcome = "too_large"
                return out
            }
            var out = injector.feed(chunk)
            if endOfStream { out.append(contentsOf: injector.finish()) }
            noteOutcome(of: injector)
            let unchanged = out.count == chunk.count && (before || injector.heldBackCount == 0) && out.elementsEqual(chunk)
            kind = .html(injector)
            return unchanged ? nil : out
        case .json(var collected, let key, let value):
            kind = .passing  // uniquely referenced from here on
            if bytesSeen > limit {
                collected.append(contentsOf: chunk)
                kind = .passing
                outcome = "too_large"
                return collected
            }
            collected.append(contentsOf: chunk)
            guard endOfStream else {
                kind = .json(collected: collected, key: key, value: value)
                return []  // held until the end
            }
            kind = .passing
            if let enriched = JSONEnricher.adding(key: key, value: value, to: collected) {
                outcome = "injected"
                return enriched
            }
            outcome = "not_json_object"
            return collected
        case .encoded(var collected, let encoding, let inner, let codec):
            kind = .passing  // uniquely referenced from here on
            collected.append(contentsOf: chunk)
            if bytesSeen > limit {
                kind = .passing
                outcome = "too_large"
                return collected
            }
            guard endOfStream else {
                kind = .encoded(collected: collected, encoding: encoding, inner: inner, codec: codec)
                return []
            }
            kind = .passing
            // Decoded size is bounded by the same limit (a small body may inflate enormously).
            guard let plain = codec.decode(collected, encoding: encoding, limit: limit) else {
                outcome = "broken_encoding"
                return collected
            }
            let rewritten: [UInt8]
            switch inner {
            case .html(let snippet):
                let (output, result) = HTMLInjector.inject(snippet, into: plain)
                guard result != .alreadyPresent else {
                    outcome = "already_present"
                    return collected
                }
                rewritten = output
            case .json(let key, let value):
                guard let enriched = JSONEnricher.adding(key: key, value: value, to: plain) else {
                    outcome = "not_json_object"
                    return collected
                }
                rewritten = enriched
            }
            guard let encoded = codec.encode(rewritten, encoding: encoding) else {
                outcome = "broken_encoding"
                return collected
            }
            outcome = "injected"
            return encoded
        }
    }
}
