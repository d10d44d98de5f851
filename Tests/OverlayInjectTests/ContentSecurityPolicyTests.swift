import OverlayInject
import Testing

private typealias CSP = ContentSecurityPolicy

@Suite struct ContentSecurityPolicyTests {
    struct Case: Sendable, CustomTestStringConvertible {
        let policies: [String]
        let expected: ContentSecurityPolicy.Decision
        var testDescription: String { policies.description }
    }

    static let cases: [Case] = [
        // No policy / no script restriction.
        Case(policies: [], expected: .allowed(nonce: nil)),
        Case(policies: [""], expected: .allowed(nonce: nil)),
        Case(policies: ["img-src *; frame-ancestors 'none'"], expected: .allowed(nonce: nil)),
        // Single policies.
        Case(policies: ["default-src 'self'"], expected: .allowed(nonce: nil)),
        Case(policies: ["script-src *"], expected: .allowed(nonce: nil)),
        Case(policies: ["script-src 'none'"], expected: .blocked),
        Case(policies: ["default-src 'none'"], expected: .blocked),
        Case(policies: ["script-src 'unsafe-inline'"], expected: .blocked),
        Case(policies: ["script-src 'unsafe-inline' 'self'"], expected: .allowed(nonce: nil)),
        Case(policies: ["script-src https://cdn.example.com https:"], expected: .blocked),
        Case(policies: ["script-src 'nonce-abc123' 'strict-dynamic'"], expected: .allowed(nonce: "abc123")),
        Case(policies: ["script-src 'self' 'nonce-abc'"], expected: .allowed(nonce: "abc")),
        Case(policies: ["script-src 'strict-dynamic' 'self' *"], expected: .blocked),
        Case(policies: ["script-src 'none' 'self'"], expected: .allowed(nonce: nil)),
        Case(policies: ["script-src 'nonce-a\"b' 'nonce-'"], expected: .blocked),
        // Directive fallback order.
        Case(policies: ["default-src 'none'; script-src 'self'"], expected: .allowed(nonce: nil)),
        Case(policies: ["script-src 'self'; default-src 'none'"], expected: .allowed(nonce: nil)),
        Case(policies: ["script-src 'none'; script-src-elem 'self'"], expected: .allowed(nonce: nil)),
        Case(policies: ["script-src-elem 'none'; script-src 'self'; default-src *"], expected: .blocked),
        Case(policies: ["default-src 'self'; script-src-attr 'none'"], expected: .allowed(nonce: nil)),
        // First occurrence of a directive wins.
        Case(policies: ["script-src 'none'; script-src 'self'"], expected: .blocked),
        // Case-insensitive names and keywords, case-sensitive nonce values, whitespace.
        Case(policies: ["SCRIPT-SRC 'SELF'"], expected: .allowed(nonce: nil)),
        Case(policies: ["Script-Src 'NONCE-AbC'"], expected: .allowed(nonce: "AbC")),
        Case(policies: ["  script-src\t'nonce-xyz=='  ;  ;  default-src 'none' "], expected: .allowed(nonce: "xyz==")),
        Case(policies: [" ; \t ; "], expected: .allowed(nonce: nil)),
        // Several header values: every policy must accept the one element.
        Case(policies: ["script-src 'self'", "default-src 'none'"], expected: .blocked),
        Case(policies: ["script-src 'self'", "img-src 'none'"], expected: .allowed(nonce: nil)),
        Case(policies: ["script-src 'nonce-a'", "script-src 'nonce-b'"], expected: .blocked),
        Case(policies: ["script-src 'nonce-a'", "script-src 'self'"], expected: .allowed(nonce: "a")),
        Case(policies: ["script-src 'nonce-a'", "script-src 'nonce-b' 'nonce-a'"], expected: .allowed(nonce: "a")),
        Case(policies: ["script-src 'nonce-a' 'strict-dynamic'", "default-src 'nonce-b' 'self'"], expected: .allowed(nonce: "a")),
        Case(policies: ["script-src 'nonce-a' 'strict-dynamic'", "default-src 'nonce-b' 'self' 'strict-dynamic'"], expected: .blocked),
        Case(policies: ["script-src 'self'", "script-src 'self' 'nonce-q'"], expected: .allowed(nonce: "q")),
        // Comma-separated policies inside one header value.
        Case(policies: ["script-src 'self', script-src 'none'"], expected: .blocked),
        Case(policies: ["default-src 'self', img-src 'none'"], expected: .allowed(nonce: nil)),
        Case(policies: ["script-src 'nonce-n1', default-src 'nonce-n2' 'nonce-n1'"], expected: .allowed(nonce: "n1")),
        Case(policies: ["script-src 'nonce-n1',script-src 'nonce-n2'"], expected: .blocked),
    ]

    @Test(arguments: cases)
    func decision(_ c: Case) {
        #expect(CSP.decide(policies: c.policies) == c.expected)
    }

    @Test func reportOnlyHeadersNeverBlock() {
        #expect(CSP.decide(headers: [("Content-Security-Policy-Report-Only", "script-src 'none'")]) == .allowed(nonce: nil))
        #expect(CSP.decide(headers: [
            ("content-security-policy-report-only", "script-src 'nonce-r'"),
            ("CONTENT-SECURITY-POLICY", "script-src 'nonce-q' 'strict-dynamic'"),
            ("X-Content-Security-Policy", "script-src 'none'"),
        ]) == .allowed(nonce: "q"))
        #expect(CSP.decide(headers: [
            ("Content-Security-Policy", "script-src 'self'"),
            ("Content-Security-Policy", "script-src 'none'"),
        ]) == .blocked)
    }

    @Test func chosenNonceIsUsableInTheSnippet() {
        guard case .allowed(let nonce?) = CSP.decide(policies: ["script-src 'nonce-r4nd0m+/=='"]) else {
            Issue.record("expected a nonce")
            return
        }
        let snippet = String(decoding: OverlaySnippet.make(json: "{}", nonce: nonce), as: UTF8.self)
        #expect(snippet.contains("nonce=\"r4nd0m+/==\""))
    }
}
