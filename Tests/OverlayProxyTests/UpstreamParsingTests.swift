import Testing

@testable import OverlayProxy

@Suite struct UpstreamParsingTests {
    @Test(arguments: [
        ("http://app:8080", "app", 8080, "", "http://app:8080"),
        ("https://app.internal/base/", "app.internal", 443, "/base", "https://app.internal:443/base"),
        ("http://127.0.0.1", "127.0.0.1", 80, "", "http://127.0.0.1:80"),
        // An IPv6 literal: the host is the address (what a connect takes), written bracketed again.
        ("http://[::1]:18999", "::1", 18999, "", "http://[::1]:18999"),
        ("http://[fd00::2]/crm", "fd00::2", 80, "/crm", "http://[fd00::2]:80/crm"),
    ])
    func parses(text: String, host: String, port: Int, base: String, description: String) throws {
        let upstream = try Upstream(parsing: text)
        #expect(upstream.host == host)
        #expect(upstream.port == port)
        #expect(upstream.basePath == base)
        #expect(upstream.description == description)
    }

    @Test(arguments: [
        ("ftp://app", "--upstream must be an http:// or https:// URL, got \"ftp://app\""),
        ("http://", "--upstream needs a host, got \"http://\""),
        ("http://app/?q=1", "--upstream must not carry a query, fragment or user info, got \"http://app/?q=1\""),
    ])
    func refuses(text: String, message: String) {
        #expect(throws: UpstreamError.self) { try Upstream(parsing: text) }
        do {
            _ = try Upstream(parsing: text)
        } catch {
            #expect(error.description == message)
        }
    }
}
