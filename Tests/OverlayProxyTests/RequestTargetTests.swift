import NIOCore
import Locking
import Testing

@testable import OverlayProxy

/// RFC 9112 §3.2: a reverse proxy accepts origin-form, absolute-form and asterisk-form targets.
@Suite struct RequestTargetTests {
    @Test(arguments: [
        ("/a/b?c=1", "app.example", "app.example", "/a/b?c=1"),
        // absolute-form: its authority replaces Host (§3.2.2), the path keeps its query.
        ("http://crm.example:8080/a?b=1", "ignored.example", "crm.example:8080", "/a?b=1"),
        ("HTTPS://crm.example", "ignored.example", "crm.example", "/"),
        ("http://crm.example?x", nil, "crm.example", "/?x"),
        ("http://user:pw@crm.example/p#frag", nil, "crm.example", "/p"),
        ("*", "app.example", "app.example", "*"),
    ] as [(String, String?, String, String)])
    func resources(target: String, host: String?, authority: String, path: String) {
        #expect(RequestTarget(target, host: host) == .resource(authority: authority, path: path))
    }

    @Test(arguments: ["crm.example:443", "http://", "http:///path", "ftp://crm.example/", "a/b"])
    func invalid(target: String) {
        guard case .invalid(let reason) = RequestTarget(target, host: "h") else {
            Issue.record("\(target) was accepted")
            return
        }
        #expect(reason == "the request target must be a path (/…), an http(s) URL or *; got \"\(target)\"")
    }

    @Test(.timeLimit(.minutes(1))) func theUpstreamGetsOriginFormUnderItsBasePath() async throws {
        let lines = Locked<[String]>([])
        try await withRawUpstream(
            serve: { _, inbound, outbound in
                var received: [UInt8] = []
                for try await chunk in inbound {
                    received += chunk.readableBytesView
                    while let end = received.firstRange(of: [13, 10, 13, 10]) {
                        let head = String(decoding: received[..<end.lowerBound], as: UTF8.self).split(separator: "\r\n")
                        let host = head.first { $0.lowercased().hasPrefix("host:") } ?? "no host"
                        lines.withLock { $0.append("\(head[0]) | \(host)") }
                        received.removeSubrange(..<end.upperBound)
                        try await outbound.write(ByteBuffer(string: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
                    }
                }
            },
            { port in
                try await withProxy(upstreamURL: "http://127.0.0.1:\(port)/base") { harness in
                    try await withRawConnection(port: harness.proxyPort) { connection in
                        try await connection.send("GET http://crm.example:8080/a?b=1 HTTP/1.1\r\nHost: ignored.example\r\n\r\n")
                        #expect(try await connection.response().status == 200)
                        try await connection.send("OPTIONS * HTTP/1.1\r\nHost: app.example\r\n\r\n")
                        #expect(try await connection.response().status == 200)
                    }
                    try await withRawConnection(port: harness.proxyPort) { connection in
                        try await connection.send("CONNECT crm.example:443 HTTP/1.1\r\nHost: crm.example:443\r\n\r\n")
                        // NIO sends a response to CONNECT without content; the status says it.
                        #expect(try await connection.response().status == 400)
                    }
                }
            })
        #expect(lines.withLock { $0 } == [
            "GET /base/a?b=1 HTTP/1.1 | host: crm.example:8080",
            "OPTIONS * HTTP/1.1 | host: app.example",
        ])
    }
}
