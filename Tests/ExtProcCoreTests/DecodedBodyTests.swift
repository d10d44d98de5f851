import ExtProcCore
import OverlayCore
import ExtProcProto
import Foundation
import OverlayInject
import SwiftProtobuf
import Testing

@Suite("Rewriting bodies decoded from the wire")
struct DecodedBodyTests {
    @Test("chunks decoded from serialized messages (Data slices) inject like literal ones")
    func decodedChunks() throws {
        let page = Array("<!doctype html><html><head><title>Accounts</title></head><body><h1>Accounts</h1></body></html>".utf8)
        let snippet = OverlaySnippet.make(json: Array(#"{"status":"pending"}"#.utf8))
        var rewrite = ResponseRewrite(html: snippet, limit: 1 << 20)
        var out: [UInt8] = []
        for start in stride(from: 0, to: page.count, by: 7) {
            let end = min(start + 7, page.count)
            var message = ProcessingRequest()
            message.responseBody.body = Data(page[start..<end])
            message.responseBody.endOfStream = end == page.count
            let wire: [UInt8] = try message.serializedBytes()
            let decoded = try ProcessingRequest(serializedBytes: wire)
            let chunk = decoded.responseBody.body
            out += rewrite.rewrite(chunk, endOfStream: decoded.responseBody.endOfStream) ?? Array(chunk)
        }
        #expect(out == HTMLInjector.inject(snippet, into: page).output)
    }
}
