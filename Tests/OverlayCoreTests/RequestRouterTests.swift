import Testing
@testable import OverlayCore

@Suite("RequestRouter")
struct RequestRouterTests {
    static let overlay = Overlay(
        name: "crm", host: .exact("crm.example.com"), models: [ModelWeight(name: "m", weight: 100)], strategy: .canary)
    let config = OverlayConfig(source: "test", version: "1", overlays: [Self.overlay])

    static let healthz = LocalResponse(
        status: 200, contentType: "text/plain; charset=utf-8", body: Array("ok\n".utf8),
        extraHeaders: [("cache-control", "no-store")])

    func decide(_ authority: String, _ path: String, _ method: String = "GET") -> RequestDecision {
        RequestRouter.decide(config: config, authority: authority[...], path: path[...], method: method[...])
    }

    @Test("an unknown host is passed through, whatever the path", arguments: [
        "/", "/app", "/__overlay/healthz", "/__overlay/x",
    ])
    func unknownHost(path: String) {
        #expect(decide("other.example.com", path) == .passThrough)
        #expect(decide("www.crm.example.com", path) == .passThrough)
        #expect(RequestRouter.decide(config: .empty, authority: "crm.example.com", path: path[...], method: "GET") == .passThrough)
    }

    @Test("a known host gets its overlay", arguments: [
        "/", "/app?x=1", "/__overlay", "/__OVERLAY/healthz", "/x/__overlay/healthz", "*",
    ])
    func knownHost(path: String) {
        #expect(decide("crm.example.com:443", path, "POST") == .overlay(Self.overlay))
    }

    @Test("GET /__overlay/healthz → 200 ok", arguments: [
        "/__overlay/healthz", "/__overlay/healthz?probe=1", "/__overlay/healthz#top", "/__overlay/healthz?",
    ])
    func healthzGET(path: String) {
        #expect(decide("crm.example.com", path) == .ownEndpoint(Self.healthz))
    }

    @Test("HEAD /__overlay/healthz → 200")
    func healthzHEAD() {
        guard case .ownEndpoint(let response) = decide("CRM.example.com.", "/__overlay/healthz", "HEAD") else {
            Issue.record("expected an own endpoint")
            return
        }
        #expect(response.status == 200)
        #expect(response == Self.healthz)
    }

    @Test("other methods on /__overlay/healthz → 405 with allow: GET, HEAD", arguments: ["POST", "PUT", "DELETE", "get"])
    func healthzOtherMethods(method: String) {
        #expect(decide("crm.example.com", "/__overlay/healthz?x=1", method) == .ownEndpoint(LocalResponse(
            status: 405, contentType: "text/plain; charset=utf-8", body: Array("method not allowed\n".utf8),
            extraHeaders: [("allow", "GET, HEAD")])))
    }

    @Test("an unknown /__overlay/ endpoint → 404 naming it (query not included)", arguments: [
        ("/__overlay/x", "x"), ("/__overlay/x?y=1", "x"), ("/__overlay/", ""), ("/__overlay/healthz/", "healthz/"),
        ("/__overlay/HEALTHZ", "HEALTHZ"),
    ])
    func unknownEndpoint(path: String, name: String) {
        #expect(decide("crm.example.com", path) == .ownEndpoint(LocalResponse(
            status: 404, contentType: "text/plain; charset=utf-8",
            body: Array("overlayd: no such endpoint /__overlay/\(name)\n".utf8),
            extraHeaders: [("cache-control", "no-store")])))
    }

    @Test("LocalResponse equality covers extra headers and their order")
    func localResponseEquality() {
        let a = LocalResponse(status: 200, contentType: "t", body: [1], extraHeaders: [("a", "1"), ("b", "2")])
        #expect(a == LocalResponse(status: 200, contentType: "t", body: [1], extraHeaders: [("a", "1"), ("b", "2")]))
        #expect(a != LocalResponse(status: 200, contentType: "t", body: [1], extraHeaders: [("b", "2"), ("a", "1")]))
        #expect(a != LocalResponse(status: 200, contentType: "t", body: [1], extraHeaders: [("a", "1")]))
        #expect(a != LocalResponse(status: 201, contentType: "t", body: [1], extraHeaders: [("a", "1"), ("b", "2")]))
        #expect(a != LocalResponse(status: 200, contentType: "t", body: [2], extraHeaders: [("a", "1"), ("b", "2")]))
    }
}

@Suite("EmbeddedDemo")
struct EmbeddedDemoTests {
    @Test("load() has the documented overlays: localhost canary 80/20, demo.overlayd.local shadow")
    func overlays() {
        let config = EmbeddedDemo.load()
        #expect(config.source == "embedded:demo")
        #expect(config.version == ConfigLoader.contentVersion(EmbeddedDemo.text))
        #expect(config.overlays == [
            Overlay(
                name: "demo-canary", host: .exact("localhost"),
                models: [ModelWeight(name: "mock-fast", weight: 80), ModelWeight(name: "mock-smart", weight: 20)],
                strategy: .canary),
            Overlay(
                name: "demo-shadow", host: .exact("demo.overlayd.local"),
                models: [ModelWeight(name: "mock-fast", weight: 0), ModelWeight(name: "mock-smart", weight: 0)],
                strategy: .shadow),
        ])
    }

    @Test("the demo routes localhost and demo.overlayd.local on any port", arguments: [
        ("localhost", "demo-canary"), ("localhost:8080", "demo-canary"), ("LOCALHOST:10000", "demo-canary"),
        ("demo.overlayd.local", "demo-shadow"), ("demo.overlayd.local:8080", "demo-shadow"),
        ("example.com", nil), ("127.0.0.1:8080", nil), ("[::1]:8080", nil),
    ] as [(String, String?)])
    func routes(authority: String, overlay: String?) {
        #expect(EmbeddedDemo.load().overlay(forAuthority: authority[...])?.name == overlay)
    }

    /// The demo overlays exact hosts only (README "The embedded demo configuration"): subdomains
    /// and other hosts pass through.
    @Test("subdomains of the demo hosts are not overlaid")
    func subdomains() {
        #expect(EmbeddedDemo.load().overlay(forAuthority: "api.demo.overlayd.local") == nil)
        #expect(EmbeddedDemo.load().overlay(forAuthority: "app.localhost") == nil)
    }
}
