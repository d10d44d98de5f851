import HTTPTypes
import Testing

@testable import OverlayProxy

/// `Expect: 100-continue` (RFC 9110 §10.1.1): the client waits for a 100 before it sends the body
/// (curl for a second). The proxy reads the body at once, so it answers 100 itself and does not
/// forward the expectation (the app's own 100 would be a second one).
@Suite struct ExpectContinueTests {
    @Test(.timeLimit(.minutes(1))) func theProxyAnswers100AndTheBodyGoesThrough() async throws {
        try await withProxy(routes: upstreamRoutes(Hooks())) { harness in
            try await withRawConnection(port: harness.proxyPort) { connection in
                try await connection.send(
                    "POST /echo HTTP/1.1\r\nHost: app.example\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
                #expect(try await connection.response().status == 100)
                try await connection.send("hello")
                let answer = try await connection.response()
                #expect(answer.status == 200)
                #expect(answer.text == "hello")
                // The next request on the connection is an ordinary one.
                try await connection.send("POST /echo HTTP/1.1\r\nHost: app.example\r\nContent-Length: 2\r\n\r\nhi")
                #expect(try await connection.response().text == "hi")
            }
            let seen = harness.seen.all
            #expect(seen.count == 2)
            #expect(seen.first?.headers[.expect] == nil)
            #expect(seen.first?.bodyBytes == 5)
        }
    }
}
