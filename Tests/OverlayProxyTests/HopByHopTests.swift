import NIOHTTP1
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
}
