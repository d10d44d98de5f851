import CompressNIO
import OverlayCore
import NIOCore

/// gzip and deflate for the injector, on compress-nio (zlib).
///
/// HTTP's `deflate` is the zlib format (RFC 9110 §8.4.1.2); some servers send raw deflate, so
/// decoding tries zlib first, then raw. Bodies are re-encoded as they came (deflate as zlib).
public struct CompressCodec: BodyCodec {
    public let encodings: Set<String> = ["gzip", "x-gzip", "deflate"]

    public init() {}

    public func decode(_ bytes: [UInt8], encoding: String, limit: Int) -> [UInt8]? {
        let algorithms: [CompressionAlgorithm]
        switch encoding {
        case "gzip", "x-gzip": algorithms = [.gzip()]
        case "deflate": algorithms = [.zlib(), .deflate()]
        default: return nil
        }
        for algorithm in algorithms {
            var buffer = ByteBuffer(bytes: bytes)
            // maxSize + 1: a body of exactly `limit` bytes is fine, one more is too large.
            guard let decoded = try? buffer.decompress(with: algorithm, maxSize: limit + 1) else { continue }
            guard decoded.readableBytes <= limit else { return nil }
            return Array(decoded.readableBytesView)
        }
        return nil
    }

    public func encode(_ bytes: [UInt8], encoding: String) -> [UInt8]? {
        let algorithm: CompressionAlgorithm
        switch encoding {
        case "gzip", "x-gzip": algorithm = .gzip()
        case "deflate": algorithm = .zlib()
        default: return nil
        }
        var buffer = ByteBuffer(bytes: bytes)
        guard let encoded = try? buffer.compress(with: algorithm) else { return nil }
        return Array(encoded.readableBytesView)
    }
}
