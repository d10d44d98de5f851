import NIOHTTP1
import OverlayDecisions
import Testing

@testable import OverlayProxy

@Suite struct HopByHopTests {
    @Test func everyFixedNameIsRecognisedWhateverItsLength() {
        for name in HopByHop.fixed { #expect(HopByHop.isFixed(name), "\(name)") }
        for name in ["date", "server", "content-type", "content-length", "etag", "x-upgrade", "tee", "trailers", "connections"] {
            #expect(!HopByHop.isFixed(name), "\(name)")
        }
    }

    @Test func lowercasingTouchesOnlyASCIIUpperCase() {
        #expect(HopByHop.lowercasedASCII("Content-Type") == "content-type")
        #expect(HopByHop.lowercasedASCII("already-lower") == "already-lower")
        #expect(HopByHop.lowercasedASCII("X-A_Long-Header-Name-Beyond-Small-String") == "x-a_long-header-name-beyond-small-string")
        #expect(HopByHop.lowercasedASCII("") == "")
        #expect(HopByHop.lowercasedASCII("[@Z`z]") == "[@z`z]")
    }

    @Test func connectionTokensAreTrimmedLowerCasedAndFixedNamesLeftOut() {
        #expect(HopByHop.named(byConnection: ["keep-alive, X-Trace , ,Foo\t", "\tUpgrade,bar"]) == ["x-trace", "foo", "bar"])
        #expect(HopByHop.named(byConnection: ["keep-alive"]).isEmpty)
        #expect(HopByHop.named(byConnection: ["Keep-Alive, TE, Upgrade"]).isEmpty)
        #expect(HopByHop.named(byConnection: ["close"]) == ["close"])
        #expect(HopByHop.named(byConnection: ["", " , ,"]).isEmpty)
        #expect(HopByHop.named(byConnection: ["X-Very-Long-Custom-Header-Name-Over-Small"]) == ["x-very-long-custom-header-name-over-small"])
    }

    @Test func responseFieldsLoseHopByHopAndConnectionNamedOnes() {
        let headers = HTTPHeaders([
            ("Server", "nginx"), ("Connection", "keep-alive, X-Trace"), ("Keep-Alive", "timeout=5"),
            ("X-Trace", "1"), ("Transfer-Encoding", "chunked"), ("Content-Type", "text/html"), ("TE", "trailers"),
            ("Proxy-Authenticate", "Basic"), ("Upgrade", "h2c"), ("ETag", "\"a\""),
        ])
        let kept = HopByHop.endToEnd(headers)
        #expect(kept.map(\.name) == ["server", "content-type", "etag"])
        #expect(kept.map(\.value) == ["nginx", "text/html", "\"a\""])
    }

    @Test func aPassThroughHeadLosesTheSameFieldsAndKeepsNamesAsTheyCame() {
        let headers = HTTPHeaders([
            ("Server", "nginx"), ("Connection", "keep-alive, X-Trace"), ("Keep-Alive", "timeout=5"),
            ("X-Trace", "1"), ("Transfer-Encoding", "chunked"), ("Content-Type", "text/html"), ("TE", "trailers"),
            ("Proxy-Authenticate", "Basic"), ("Upgrade", "h2c"), ("ETag", "\"a\""), ("trailer", "x"),
            ("PROXY-AUTHORIZATION", "y"), ("Proxy-Connection", "close"), ("x-trace", "2"),
        ])
        let kept = HopByHop.removed(from: headers)
        #expect(kept.map(\.name) == ["Server", "Content-Type", "ETag"])
        #expect(kept.map(\.value) == ["nginx", "text/html", "\"a\""])
        // The same fields as the overlaid path keeps, whatever the case of their names.
        #expect(kept.map { $0.name.lowercased() } == HopByHop.endToEnd(headers).map(\.name))
    }

    @Test func aHeadWithoutHopByHopFieldsIsKeptWhole() {
        let headers = HTTPHeaders([
            ("Server", "nginx"), ("Content-Type", "text/html"), ("Content-Length", "30720"), ("Connections", "x"),
            ("X-Upgrade", "y"), ("Trailers", "z"), ("Tee", "w"),
        ])
        #expect(Array(HopByHop.removed(from: headers)).map(\.name) == Array(headers).map(\.name))
        #expect(Array(HopByHop.removed(from: HTTPHeaders([("Connection", "close")]))).isEmpty)
        // The usual Connection value names no field; any other value is read for names.
        #expect(Array(HopByHop.removed(from: HTTPHeaders([("Close", "1"), ("Connection", "close")]))).isEmpty)
        for value in ["Keep-Alive", "close", "keep-alive, x-a", "x-a"] {
            let kept = HopByHop.removed(from: HTTPHeaders([("x-a", "1"), ("Connection", value), ("X-B", "2")]))
            #expect(kept.map(\.name) == (value.contains("x-a") ? ["X-B"] : ["x-a", "X-B"]), "\(value)")
        }
    }

    /// The overlaid head's one pass against the two it replaced (`removed(from:)`, then the relevant
    /// names read off what is left), over random lists of the names that matter, in any case and order.
    @Test func theOverlaidHeadsOnePassKeepsAndPicksWhatTheTwoPassesDid() {
        let names = [
            "Server", "Connection", "connection", "Keep-Alive", "X-Trace", "Content-Type", "CONTENT-LENGTH",
            "content-length", "Content-Encoding", "Content-Security-Policy", "TE", "Upgrade", "ETag", "Trailer",
        ]
        let connectionValues = ["keep-alive", "close", "Keep-Alive, X-Trace", "content-type", "x-other"]
        func relevant(_ name: String) -> String? {
            let lower = name.lowercased()
            return ["content-type", "content-length", "content-encoding", "content-security-policy"].contains(lower) ? lower : nil
        }
        var rng = SplitMix64(seed: 18)
        for round in 0..<2_000 {
            var fields: [(String, String)] = []
            for index in 0..<Int.random(in: 0...8, using: &rng) {
                let name = names.randomElement(using: &rng)!
                let value = name.lowercased() == "connection" ? connectionValues.randomElement(using: &rng)! : "v\(index)"
                fields.append((name, value))
            }
            let headers = HTTPHeaders(fields)
            let expectedKept = HopByHop.removed(from: headers).map { [$0.name, $0.value] }
            let expectedPicked = HopByHop.removed(from: headers).compactMap { field in relevant(field.name).map { [$0, field.value] } }
            var kept: [(name: String, value: String)] = []
            var picked: [(name: String, value: String)] = []
            HopByHop.endToEnd(headers, kept: &kept, relevant: relevant, picked: &picked)
            #expect(kept.map { [$0.0, $0.1] } == expectedKept, "round \(round): \(fields)")
            #expect(picked.map { [$0.name, $0.value] } == expectedPicked, "round \(round): \(fields)")
        }
    }

    @Test func theRequestFieldsTheProxyTreatsApartAreFoundByTheirWholeName() {
        let expected: [String: ProxyHandler.RequestField] = [
            "host": .replacedByTheProxy, "x-forwarded-host": .replacedByTheProxy, "x-forwarded-proto": .replacedByTheProxy,
            "transfer-encoding": .transferEncoding, "content-length": .contentLength, "expect": .expect,
            "x-forwarded-for": .forwardedFor,
        ]
        for (name, field) in expected { #expect(ProxyHandler.requestField(name) == field, "\(name)") }
        for name in ["hosts", "hos", "expects", "content-lengths", "x-forwarded-fox", "transfer-encodinG".lowercased() + "x", "", "te",
            "x-forwarded-prot0", "content-type", "accept", "x-forwarded-hosT".lowercased() + "s"]
        {
            #expect(ProxyHandler.requestField(name) == .other, "\(name)")
        }
    }
}
