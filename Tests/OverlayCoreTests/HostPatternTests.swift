import Testing
@testable import OverlayCore
import OverlayDecisions

@Suite("HostPattern")
struct HostPatternTests {
    @Test("exact hosts are lowercased and lose a trailing dot", arguments: [
        ("crm.example.com", "crm.example.com"),
        ("CRM.Example.COM", "crm.example.com"),
        ("crm.example.com.", "crm.example.com"),
        ("localhost", "localhost"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("a-b.c0", "a-b.c0"),
    ])
    func exact(raw: String, host: String) throws {
        let pattern = try HostPattern(parsing: raw)
        #expect(pattern == .exact(host))
        #expect(pattern.description == host)
    }

    @Test("wildcards store their suffix with the leading dot", arguments: [
        ("*.example.com", ".example.com"),
        ("*.Example.COM.", ".example.com"),
        ("*.com", ".com"),
    ])
    func wildcard(raw: String, suffix: String) throws {
        let pattern = try HostPattern(parsing: raw)
        #expect(pattern == .wildcard(suffix: suffix))
        #expect(pattern.description == "*" + suffix)
    }

    @Test("a 63-character label is allowed, 64 is not")
    func labelLength() throws {
        let ok = String(repeating: "a", count: 63) + ".example.com"
        #expect(try HostPattern(parsing: ok) == .exact(ok))
        let long = String(repeating: "a", count: 64) + ".example.com"
        #expect(throws: HostPatternError("must be a DNS name (labels of a-z, 0-9 and '-', 1-63 characters) or *.domain, got \"\(long)\"")) {
            try HostPattern(parsing: long)
        }
    }

    @Test("malformed patterns are rejected with a message that says what is allowed", arguments: [
        ("", "must not be empty"),
        ("http://crm.example.com", "must be a host name without a scheme (e.g. crm.example.com), got \"http://crm.example.com\""),
        ("crm.example.com/", "must be a host name without a path, got \"crm.example.com/\""),
        ("crm.example.com:8080", "must be a host name without a port, got \"crm.example.com:8080\""),
        ("[::1]", "IPv6 address literals are not supported; use a host name or an IPv4 address, got \"[::1]\""),
        ("10.0.0.5:80", "must be a host name without a port, got \"10.0.0.5:80\""),
        ("crm example.com", "must be ASCII without spaces (use the punycode form of an internationalised name), got \"crm example.com\""),
        ("\u{212A}elvin.example.com", "must be ASCII without spaces (use the punycode form of an internationalised name), got \"\u{212A}elvin.example.com\""),
        (".example.com", "must be a DNS name (labels of a-z, 0-9 and '-', 1-63 characters) or *.domain, got \".example.com\""),
        ("crm-.example.com", "must be a DNS name (labels of a-z, 0-9 and '-', 1-63 characters) or *.domain, got \"crm-.example.com\""),
        ("bücher.example", "must be ASCII without spaces (use the punycode form of an internationalised name), got \"bücher.example\""),
        ("*.", "a wildcard is allowed only as the whole first label (*.example.com), got \"*.\""),
        ("*.*.example.com", "a wildcard is allowed only as the whole first label (*.example.com), got \"*.*.example.com\""),
        ("crm.*", "a wildcard is allowed only as the whole first label (*.example.com), got \"crm.*\""),
        ("*crm.example.com", "a wildcard is allowed only as the whole first label (*.example.com), got \"*crm.example.com\""),
    ])
    func rejected(raw: String, message: String) {
        #expect(throws: HostPatternError(message)) { try HostPattern(parsing: raw) }
    }

    @Test("overlaps(): some host is matched by both", arguments: [
        // exact vs exact
        (HostPattern.exact("a.example.com"), HostPattern.exact("a.example.com"), true),
        (.exact("a.example.com"), .exact("b.example.com"), false),
        // exact vs wildcard: any depth, never the apex, label boundaries respected
        (.exact("a.example.com"), .wildcard(suffix: ".example.com"), true),
        (.exact("a.b.example.com"), .wildcard(suffix: ".example.com"), true),
        (.exact("example.com"), .wildcard(suffix: ".example.com"), false),
        (.exact("notexample.com"), .wildcard(suffix: ".example.com"), false),
        // wildcard vs wildcard
        (.wildcard(suffix: ".example.com"), .wildcard(suffix: ".example.com"), true),
        (.wildcard(suffix: ".example.com"), .wildcard(suffix: ".x.example.com"), true),
        (.wildcard(suffix: ".example.com"), .wildcard(suffix: ".example.org"), false),
        (.wildcard(suffix: ".ample.com"), .wildcard(suffix: ".example.com"), false),
    ])
    func overlaps(a: HostPattern, b: HostPattern, expected: Bool) {
        #expect(a.overlaps(b) == expected)
        #expect(b.overlaps(a) == expected, "overlaps() must be symmetric")
    }
}

@Suite("RouteTable")
struct RouteTableTests {
    /// exact `crm.example.com` → 0, `*.apps.example.com` → 1, exact `example.com` → 2.
    let table = RouteTable([
        (.exact("crm.example.com"), 0),
        (.wildcard(suffix: ".apps.example.com"), 1),
        (.exact("example.com"), 2),
    ])

    @Test("exact hosts: any case, any port, trailing dot ignored", arguments: [
        "crm.example.com", "CRM.EXAMPLE.COM", "crm.example.com:443", "crm.example.com.", "Crm.Example.Com.:8080",
    ])
    func exact(authority: String) {
        #expect(table.match(authority: authority[...]) == 0)
    }

    @Test("wildcards match subdomains at any depth, not the apex", arguments: [
        ("a.apps.example.com", 1), ("a.b.c.apps.example.com:8443", 1), ("X.APPS.example.COM.", 1),
        ("apps.example.com", nil), ("apps.example.com:443", nil), ("xapps.example.com", nil),
        ("example.com", 2), ("www.example.com", nil), ("crm.example.com.evil.io", nil), ("", nil),
    ] as [(String, Int?)])
    func wildcard(authority: String, expected: Int?) {
        #expect(table.match(authority: authority[...]) == expected)
    }

    @Test("IPv6 literals: the port after ']' is dropped, the colons inside are kept")
    func ipv6() {
        let table = RouteTable([(.exact("[::1]"), 7), (.exact("[2001:db8::1]"), 8)])
        #expect(table.match(authority: "[::1]:8080") == 7)
        #expect(table.match(authority: "[::1]") == 7)
        #expect(table.match(authority: "[2001:DB8::1]:443") == 8)
        #expect(table.match(authority: "[::2]:8080") == nil)
        #expect(self.table.match(authority: "[::1]:8080") == nil)
        #expect(RouteTable.normalisedHost("[::1]:8080") == "[::1]")
        #expect(RouteTable.normalisedHost("[2001:DB8::1]") == "[2001:db8::1]")
    }

    @Test("normalised host: lowercased, no port, no trailing dot", arguments: [
        ("Example.COM.:443", "example.com"), ("example.com:", "example.com"), ("example.com", "example.com"),
        ("localhost:8080", "localhost"), ("127.0.0.1:80", "127.0.0.1"),
    ])
    func normalised(authority: String, host: String) {
        #expect(RouteTable.normalisedHost(authority[...]) == host)
    }

    /// The byte-level normalisation answers as the Character-level one it replaced, on random
    /// authorities built from the characters that matter (brackets, colons, dots, case, non-ASCII).
    @Test("normalised host equals the Character-based reference on random authorities")
    func normalisedMatchesReference() {
        func reference(_ authority: Substring) -> String {
            var host = authority
            if host.first == "[" {
                if let close = host.firstIndex(of: "]") { host = host[...close] }
            } else if let colon = host.lastIndex(of: ":") {
                host = host[..<colon]
            }
            if host.last == "." { host = host.dropLast() }
            return host.lowercased()
        }
        let pieces = ["a", "B", "x-y", ".", ":", "[", "]", "::1", "8080", "É", "ß", "é", "İ", "0", "Z.", "app"]
        var rng = SplitMix64(seed: 0xA11_7E57)
        for _ in 0..<5_000 {
            let authority = (0..<Int.random(in: 0...8, using: &rng)).map { _ in pieces.randomElement(using: &rng)! }.joined()
            let prefixed = "x" + authority  // also as a Substring that does not start at its base's start
            #expect(RouteTable.normalisedHost(authority[...]) == reference(authority[...]), "\(authority)")
            #expect(RouteTable.normalisedHost(prefixed.dropFirst()) == reference(prefixed.dropFirst()), "\(authority)")
        }
    }

    @Test("the longest wildcard suffix wins")
    func longestSuffix() {
        let table = RouteTable([(.wildcard(suffix: ".example.com"), 0), (.wildcard(suffix: ".x.example.com"), 1)])
        #expect(table.match(authority: "a.x.example.com") == 1)
        #expect(table.match(authority: "a.y.example.com") == 0)
        #expect(table.match(authority: "x.example.com") == 0)
    }

    @Test("an exact host beats a wildcard that also matches it")
    func exactBeforeWildcard() {
        let table = RouteTable([(.wildcard(suffix: ".example.com"), 0), (.exact("a.example.com"), 1)])
        #expect(table.match(authority: "a.example.com") == 1)
        #expect(table.match(authority: "b.example.com") == 0)
    }

    @Test("the first of two equal exact entries wins")
    func firstExactWins() {
        let table = RouteTable([(.exact("a.example.com"), 3), (.exact("a.example.com"), 4)])
        #expect(table.match(authority: "a.example.com") == 3)
    }

    @Test("an empty table matches nothing")
    func empty() {
        let table = RouteTable([])
        #expect(table.isEmpty)
        #expect(table.match(authority: "localhost") == nil)
        #expect(!self.table.isEmpty)
        #expect(RouteTable([(.wildcard(suffix: ".a.com"), 0)]).isEmpty == false)
    }

    @Test("OverlayConfig routes through its table to the overlay")
    func overlayConfig() {
        let overlays = [
            Overlay(name: "crm", host: .exact("crm.example.com"), models: [ModelWeight(name: "m", weight: 100)], strategy: .canary),
            Overlay(name: "apps", host: .wildcard(suffix: ".apps.example.com"), models: [ModelWeight(name: "m", weight: 100)], strategy: .canary),
        ]
        let config = OverlayConfig(source: "test", version: "1", overlays: overlays)
        #expect(config.overlay(forAuthority: "CRM.example.com:443") == overlays[0])
        #expect(config.overlay(forAuthority: "a.apps.example.com") == overlays[1])
        #expect(config.overlay(forAuthority: "apps.example.com") == nil)
        #expect(OverlayConfig.empty.overlay(forAuthority: "crm.example.com") == nil)
        #expect(OverlayConfig.empty.overlays.isEmpty)
    }
}

@Suite("hostApp values that are not text or are addresses")
struct HostAppScalarTests {
    static func problems(_ hostApp: String) -> [String] {
        let text = """
            apiVersion: orchestrator.io/v1
            kind: AIOverlay
            metadata: {name: legacy}
            spec:
              hostApp: \(hostApp)
              models: [{name: m, weight: 100}]
            """
        do {
            _ = try ConfigLoader.load(text: text, source: "t")
            return []
        } catch {
            return error.problems.map(\.description)
        }
    }

    @Test("an IPv4 address is a valid exact host (intranet apps are often reached by address)")
    func ipv4() throws {
        #expect(Self.problems("\"10.0.0.5\"") == [])
        let config = try ConfigLoader.load(
            text: "apiVersion: orchestrator.io/v1\nkind: AIOverlay\nmetadata: {name: a}\nspec: {hostApp: \"10.0.0.5\", models: [{name: m, weight: 100}]}\n",
            source: "t")
        #expect(config.overlay(forAuthority: "10.0.0.5:8080")?.name == "a")
    }

    @Test("an unquoted number is not a host name")
    func number() {
        #expect(Self.problems("5") == ["AIOverlay legacy: spec.hostApp: must be a string, got 5"])
    }
}

@Suite("YAML syntax errors say where")
struct YAMLLocationTests {
    @Test("a duplicate key names the key and its line")
    func duplicateKey() {
        let text = "apiVersion: orchestrator.io/v1\nkind: AIOverlay\nkind: AIOverlay\n"
        do {
            _ = try ConfigLoader.load(text: text, source: "t")
            Issue.record("a duplicate key was accepted")
        } catch {
            #expect(error.problems.count == 1)
            #expect(error.problems.first?.description.hasPrefix("not valid YAML or JSON: duplicate key \"kind\" in one mapping at line ") == true,
                    "\(error.problems)")
        }
    }
}
