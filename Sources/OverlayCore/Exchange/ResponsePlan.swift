import OverlayDecisions
import OverlayInject

/// What happens to an overlaid exchange's response body, decided at response-header time (pure).
public enum ResponsePlan: Sendable, Equatable {
    /// Inject the overlay snippet into an HTML body (with this CSP nonce, if the page has one);
    /// `encoding`: the body's content-coding (gzip, deflate) to decode and re-encode, or nil.
    case html(nonce: String?, encoding: String?)
    /// Add the result to a JSON object body.
    case json(encoding: String?)
    /// Leave the body alone; the reason is the `reason` label of `overlayd_injections_total`.
    case untouched(reason: String)

    /// The reasons ``untouched(reason:)`` can carry (for pre-registering metrics).
    public static let reasons = [
        "disabled", "status", "head", "not_html", "encoded", "csp_blocked", "too_large", "not_json_path",
    ]

    /// The response header fields ``decide(settings:method:path:headers:decodable:)`` reads.
    public static let relevantHeaders: Set<String> = [
        ":status", "content-type", "content-encoding", "content-length", "content-security-policy",
    ]

    /// The lower-case name of a response field ``decide(settings:method:path:headers:decodable:)``
    /// reads, given its name in any case; nil for every other field. (`:status` is not a field.)
    /// A compare on the length first: no hashing, no lower-cased copy of every name.
    public static func relevantName(_ name: String) -> String? {
        switch name.utf8.count {
        case 12: return ASCIICase.equals(name, lowercased: "content-type") ? "content-type" : nil
        case 14: return ASCIICase.equals(name, lowercased: "content-length") ? "content-length" : nil
        case 16: return ASCIICase.equals(name, lowercased: "content-encoding") ? "content-encoding" : nil
        case 23: return ASCIICase.equals(name, lowercased: "content-security-policy") ? "content-security-policy" : nil
        default: return nil
        }
    }

    /// A field value lower-cased: ASCII without the Unicode tables (media types and codings are
    /// ASCII tokens); anything else as `String.lowercased()` does.
    private static func lowercased(_ value: String) -> String {
        guard value.utf8.allSatisfy({ $0 < 0x80 }) else { return value.lowercased() }
        return ASCIICase.lowercased(value)
    }

    /// Decides from the overlay's settings, the request and the response header fields.
    ///
    /// `headers` are the response's header fields as (lower-case name, value) pairs, with the
    /// status as the `:status` pseudo-header. ``OverlayExchange`` calls it for both front ends.
    ///
    /// - HTML when `injection.html` is on, `content-type` is `text/html`, the status is 2xx other
    ///   than 204/206, the request was not HEAD, the body is not content-encoded or its encoding is
    ///   one of `decodable` (gzip, deflate: decoded, injected, re-encoded; br, zstd, … pass
    ///   through untouched and are counted as `encoded`), a `content-length` (if any) is within
    ///   `maxBodyBytes`, and the Content-Security-Policy lets a same-origin script run (its nonce
    ///   is then used).
    /// - JSON when the path is under `injection.json.paths` and `content-type` is
    ///   `application/json` (or `+json`), with the same status, method, encoding and size rules.
    public static func decide(
        settings: OverlaySettings, method: Substring, path: Substring,
        headers: some Sequence<(name: String, value: String)>, decodable: Set<String> = []
    ) -> ResponsePlan {
        var status = 0
        var contentType = ""
        var encoding = ""
        var length: Int?
        var policies: [String] = []
        for header in headers {
            switch header.name {
            case ":status": status = Int(header.value) ?? 0
            case "content-type": contentType = header.value
            case "content-encoding": encoding = lowercased(header.value)
            case "content-length": length = Int(header.value)
            case "content-security-policy": policies.append(header.value)
            default: continue
            }
        }
        let mediaType = Self.mediaType(of: contentType)
        let wantsJSON =
            !settings.jsonPaths.isEmpty && OverlaySettings.matches(settings.jsonPaths, path: path)
            && (mediaType == "application/json" || mediaType.hasSuffix("+json"))
        let wantsHTML = mediaType == "text/html"
        guard wantsHTML || wantsJSON else { return .untouched(reason: "not_html") }
        if wantsHTML && !settings.injectHTML && !wantsJSON { return .untouched(reason: "disabled") }
        guard (200...299).contains(status), status != 204, status != 206 else { return .untouched(reason: "status") }
        guard method != "HEAD" else { return .untouched(reason: "head") }
        let coding: String? = encoding.isEmpty || encoding == "identity" ? nil : encoding
        if let coding, !decodable.contains(coding) { return .untouched(reason: "encoded") }
        if let length, length > settings.maxBodyBytes { return .untouched(reason: "too_large") }
        if wantsJSON { return .json(encoding: coding) }
        switch ContentSecurityPolicy.decide(policies: policies) {
        case .allowed(let nonce): return .html(nonce: nonce, encoding: coding)
        case .blocked: return .untouched(reason: "csp_blocked")
        }
    }
}

extension ResponsePlan {
    /// The media type of a Content-Type value, lower case: the part before any `;`, without the
    /// spaces and tabs around it. In steps over the UTF-8 bytes (`;`, space and tab are ASCII):
    /// Character steps cost many times more, and only this part is lower-cased.
    static func mediaType(of contentType: String) -> String {
        var contentType = contentType
        return contentType.withUTF8 { bytes in
            var end = bytes.firstIndex(of: UInt8(ascii: ";")) ?? bytes.count
            var start = 0
            while start < end && (bytes[start] == 0x20 || bytes[start] == 0x09) { start += 1 }
            while end > start && (bytes[end - 1] == 0x20 || bytes[end - 1] == 0x09) { end -= 1 }
            return lowercased(String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<end]), as: UTF8.self))
        }
    }
}
