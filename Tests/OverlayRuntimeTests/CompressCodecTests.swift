import Foundation
import OverlayRuntime
import Testing

@Suite("CompressCodec (gzip, deflate)")
struct CompressCodecTests {
    let codec = CompressCodec()
    let page = Array("<html><head></head><body>".utf8) + Array(repeating: UInt8(ascii: "x"), count: 10_000) + Array("</body></html>".utf8)

    @Test("gzip and deflate round-trip", arguments: ["gzip", "x-gzip", "deflate"])
    func roundTrip(encoding: String) throws {
        let encoded = try #require(codec.encode(page, encoding: encoding))
        #expect(encoded.count < page.count)
        #expect(codec.decode(encoded, encoding: encoding, limit: page.count) == page)
        #expect(codec.decode(encoded, encoding: encoding, limit: 4 * 1024 * 1024) == page)
    }

    @Test("broken data, a body over the limit, and unknown encodings give nil")
    func failures() throws {
        let encoded = try #require(codec.encode(page, encoding: "gzip"))
        #expect(codec.decode(Array(encoded.dropLast(12)) + Array("garbage!1234".utf8), encoding: "gzip", limit: 1 << 20) == nil)
        #expect(codec.decode(Array("not gzip at all".utf8), encoding: "gzip", limit: 1 << 20) == nil)
        #expect(codec.decode(encoded, encoding: "gzip", limit: page.count - 1) == nil)
        #expect(codec.decode(encoded, encoding: "br", limit: 1 << 20) == nil)
        #expect(codec.encode(page, encoding: "zstd") == nil)
    }
}
