/// Decides whether the page's Content Security Policy lets the overlay's
/// same-origin `<script src=…>` run, and with which nonce.
///
/// Rules (deliberately small):
///
/// - Only enforced policies count: pass the values of every
///   `Content-Security-Policy` response header. `…-Report-Only` never blocks
///   and must not be passed (``decide(headers:)`` filters by name for you).
/// - Each header value may hold several policies separated by `,`; each
///   policy is a `;`-separated list of directives. Directive names are ASCII
///   case-insensitive; the first occurrence of a directive in a policy wins;
///   whitespace is ASCII whitespace. Empty policies are ignored.
/// - In each policy the effective directive is `script-src-elem`, else
///   `script-src`, else `default-src`. A policy with none of them does not
///   restrict the script.
/// - With the effective directive, a policy accepts the script
///   - with any nonce it lists as `'nonce-VALUE'` (VALUE must be a valid
///     base64/base64url value, see ``OverlaySnippet/isValidNonce(_:)``), and
///   - without nonce if it lists `'self'` or `*`, unless it also lists
///     `'strict-dynamic'`, which makes `'self'`/`*` (host sources) ignored.
///   Anything else (`'none'`, `'unsafe-inline'`, hashes, explicit hosts or
///   schemes) does not allow it; explicit host/scheme sources are not
///   evaluated because the injector does not know the page's origin
///   (conservative: may yield `.blocked` where a browser would allow).
/// - All restricting policies must accept. The element can carry only one
///   nonce: the first nonce (in header order) accepted by every restricting
///   policy is used, and it is preferred over no nonce; if there is none but
///   every restricting policy accepts `'self'`, the result is
///   `.allowed(nonce: nil)`; otherwise `.blocked`.
public enum ContentSecurityPolicy {
    /// The decision for the overlay script.
    public enum Decision: Sendable, Equatable {
        /// The script may be injected, carrying `nonce` when it is non-nil.
        case allowed(nonce: String?)
        /// No single script element would be allowed by every enforced policy.
        case blocked
    }

    /// Decides from the values of all enforced `Content-Security-Policy` headers.
    public static func decide(policies headerValues: [String]) -> Decision {
        var restricting: [SourceList] = []
        for value in headerValues {
            for policy in split(Array(value.utf8), on: 0x2C) {
                if let list = effectiveSourceList(policy) { restricting.append(list) }
            }
        }
        if restricting.isEmpty { return .allowed(nonce: nil) }
        for candidate in restricting.flatMap(\.nonces) {
            if restricting.allSatisfy({ $0.allowsSelf || $0.nonces.contains(candidate) }) {
                return .allowed(nonce: candidate)
            }
        }
        if restricting.allSatisfy(\.allowsSelf) { return .allowed(nonce: nil) }
        return .blocked
    }

    /// Decides from response headers given as name/value pairs: only headers
    /// named `Content-Security-Policy` (case-insensitive) are considered;
    /// `Content-Security-Policy-Report-Only` and all others are ignored.
    public static func decide(headers: [(name: String, value: String)]) -> Decision {
        let wanted = Array("content-security-policy".utf8)
        let values = headers.filter { header in
            header.name.utf8.map(asciiLower).elementsEqual(wanted)
        }.map(\.value)
        return decide(policies: values)
    }

    // MARK: - Parsing

    private struct SourceList {
        var nonces: [String] = []
        var allowsSelf = false
    }

    private static let directiveOrder: [[UInt8]] = ["script-src-elem", "script-src", "default-src"]
        .map { Array($0.utf8) }

    /// The parsed effective directive of one serialized policy, or nil if the
    /// policy has none (does not restrict scripts).
    private static func effectiveSourceList(_ policy: ArraySlice<UInt8>) -> SourceList? {
        var directives: [(name: [UInt8], tokens: [ArraySlice<UInt8>])] = []
        for directive in split(Array(policy), on: 0x3B) {
            let tokens = splitWhitespace(directive)
            guard let first = tokens.first else { continue }
            let name = first.map(asciiLower)
            if directives.contains(where: { $0.name == name }) { continue }
            directives.append((name, Array(tokens.dropFirst())))
        }
        for wanted in directiveOrder {
            if let found = directives.first(where: { $0.name == wanted }) {
                return sourceList(found.tokens)
            }
        }
        return nil
    }

    private static func sourceList(_ tokens: [ArraySlice<UInt8>]) -> SourceList {
        var list = SourceList()
        var hasSelf = false
        var strictDynamic = false
        let noncePrefix = Array("'nonce-".utf8)
        for token in tokens {
            let lower = token.map(asciiLower)
            if lower == Array("'self'".utf8) || lower == [0x2A] {
                hasSelf = true
            } else if lower == Array("'strict-dynamic'".utf8) {
                strictDynamic = true
            } else if lower.count > noncePrefix.count + 1, lower.starts(with: noncePrefix), lower.last == 0x27 {
                let value = String(decoding: token.dropFirst(noncePrefix.count).dropLast(), as: UTF8.self)
                if OverlaySnippet.isValidNonce(value), !list.nonces.contains(value) {
                    list.nonces.append(value)
                }
            }
        }
        list.allowsSelf = hasSelf && !strictDynamic
        return list
    }

    private static func split(_ bytes: [UInt8], on separator: UInt8) -> [ArraySlice<UInt8>] {
        bytes.split(separator: separator, omittingEmptySubsequences: false)
    }

    private static func splitWhitespace(_ bytes: ArraySlice<UInt8>) -> [ArraySlice<UInt8>] {
        bytes.split(whereSeparator: { $0 == 0x20 || $0 == 0x09 || $0 == 0x0A || $0 == 0x0C || $0 == 0x0D })
    }
}
