import ExtProcCore
import ExtProcProto
import Foundation
import GRPCTransport
import NIOCore
import SwiftProtobuf
import Testing

@testable import OverlayExtProc
@testable import OverlayRuntime

/// gRPC length-prefixed framing (grpc/doc/PROTOCOL-HTTP2.md "Length-Prefixed-Message"): a message
/// arrives whole whatever the DATA frame boundaries.
@Suite struct GRPCMessageReaderTests {
    static func frame(_ payload: [UInt8], flag: UInt8 = 0) -> [UInt8] {
        let n = UInt32(payload.count)
        return [flag, UInt8(n >> 24), UInt8((n >> 16) & 0xff), UInt8((n >> 8) & 0xff), UInt8(n & 0xff)] + payload
    }

    static func drain(_ reader: inout GRPCMessageReader) throws -> [[UInt8]] {
        var out: [[UInt8]] = []
        while let message = try reader.next() { out.append(Array(message.readableBytesView)) }
        return out
    }

    @Test("three messages, split at every byte boundary, come out whole and in order")
    func everySplit() throws {
        let messages: [[UInt8]] = [Array("first".utf8), [], Array(repeating: 7, count: 300)]
        let wire = messages.flatMap { Self.frame($0) }
        for split in 0...wire.count {
            var reader = GRPCMessageReader(maxMessageBytes: 1024)
            reader.append(ByteBuffer(bytes: wire[..<split]))
            var got = try Self.drain(&reader)
            reader.append(ByteBuffer(bytes: wire[split...]))
            got += try Self.drain(&reader)
            #expect(got == messages, "split at \(split)")
            #expect(!reader.hasPartialMessage)
        }
    }

    @Test("one byte at a time")
    func byteByByte() throws {
        let wire = Self.frame(Array("hello".utf8)) + Self.frame(Array("world".utf8))
        var reader = GRPCMessageReader(maxMessageBytes: 1024)
        var got: [[UInt8]] = []
        for byte in wire {
            reader.append(ByteBuffer(bytes: [byte]))
            got += try Self.drain(&reader)
        }
        #expect(got == [Array("hello".utf8), Array("world".utf8)])
    }

    @Test("a partial message is reported as held")
    func partial() throws {
        var reader = GRPCMessageReader(maxMessageBytes: 1024)
        reader.append(ByteBuffer(bytes: Self.frame(Array("abc".utf8)).dropLast()))
        #expect(try reader.next() == nil)
        #expect(reader.hasPartialMessage)
    }

    @Test("the compressed flag without an encoding is rejected")
    func compressed() {
        var reader = GRPCMessageReader(maxMessageBytes: 1024)
        reader.append(ByteBuffer(bytes: Self.frame([1, 2, 3], flag: 1)))
        #expect(throws: GRPCMessageReader.Failure.compressed) { try reader.next() }
    }

    @Test("an invalid flag byte is rejected")
    func badFlag() {
        var reader = GRPCMessageReader(maxMessageBytes: 1024)
        reader.append(ByteBuffer(bytes: Self.frame([1], flag: 9)))
        #expect(throws: GRPCMessageReader.Failure.badFlag(9)) { try reader.next() }
    }

    @Test("a message over the limit is rejected from its prefix, before its bytes arrive")
    func tooLarge() {
        var reader = GRPCMessageReader(maxMessageBytes: 10)
        reader.append(ByteBuffer(bytes: [0, 0, 0, 0, 11]))
        #expect(throws: GRPCMessageReader.Failure.tooLarge(11, limit: 10)) { try reader.next() }
    }
}

@Suite struct GRPCShapesTests {
    @Test(arguments: [
        ("100m", Int64(100_000_000)), ("5S", 5_000_000_000), ("1H", 3_600_000_000_000), ("2M", 120_000_000_000),
        ("7u", 7_000), ("9n", 9), ("99999999S", 99_999_999_000_000_000),
    ])
    func timeouts(text: String, nanos: Int64) {
        #expect(GRPCTimeout.parse(text) == nanos)
    }

    @Test(arguments: ["", "S", "10", "10x", "123456789S", "-1S", "1.5S"])
    func malformedTimeouts(text: String) {
        #expect(GRPCTimeout.parse(text) == nil)
    }

    @Test func percentEncoding() {
        #expect(GRPCStatusMessage.percentEncode("plain text: ok") == "plain text: ok")
        #expect(GRPCStatusMessage.percentEncode("100%") == "100%25")
        #expect(GRPCStatusMessage.percentEncode("line\nbreak") == "line%0Abreak")
        #expect(GRPCStatusMessage.percentEncode("é") == "%C3%A9")
    }

    @Test func aStatusEndCarriesStatusMessageAndExtraFields() {
        let end = GRPCStatusCode.unimplemented.end("unknown method /x", extra: [("grpc-accept-encoding", "identity")])
        let fields = Dictionary(uniqueKeysWithValues: end.statusFields.map { ($0.name, $0.value) })
        #expect(fields == ["grpc-status": "12", "grpc-message": "unknown method /x", "grpc-accept-encoding": "identity"])
    }
}

@Suite struct ListenAddressTests {
    @Test func parses() throws {
        #expect(try ListenAddress(parsing: "127.0.0.1:50051") == .tcp(host: "127.0.0.1", port: 50051))
        #expect(try ListenAddress(parsing: "[::1]:0") == .tcp(host: "::1", port: 0))
        #expect(try ListenAddress(parsing: "localhost:9901") == .tcp(host: "localhost", port: 9901))
        #expect(try ListenAddress(parsing: "unix:/run/overlayd.sock") == .unix(path: "/run/overlayd.sock"))
        #expect(ListenAddress.tcp(host: "::1", port: 80).description == "[::1]:80")
    }

    @Test(arguments: [
        ("50051", "expected HOST:PORT or unix:/path, got \"50051\""),
        ("127.0.0.1:70000", "port must be 0...65535 (0 picks a free port), got \"70000\" in \"127.0.0.1:70000\""),
        ("127.0.0.1:http", "port must be 0...65535 (0 picks a free port), got \"http\" in \"127.0.0.1:http\""),
        (":80", "expected HOST:PORT, the host is missing in \":80\""),
        ("unix:", "unix: needs a socket path, e.g. unix:/run/overlayd.sock"),
    ])
    func rejects(text: String, message: String) {
        #expect(throws: ListenAddressError.self) { try ListenAddress(parsing: text) }
        do {
            _ = try ListenAddress(parsing: text)
        } catch {
            #expect(error.description == message)
        }
    }
}

@Suite struct CPUAffinityTests {
    @Test func atLeastOneUsableCore() {
        #expect(CPUAffinity.usableCores >= 1)
        #expect(CPUAffinity.usableCores <= System.coreCount)
    }
}

/// Answers are serialized in place after room for the gRPC prefix: the frame must be the prefix
/// and exactly the bytes swift-protobuf's own serialization gives, for empty, small and large messages.
@Suite struct GRPCFrameEncodeTests {
    @Test(arguments: [0, 1, 100, 70_000])
    func theFrameIsThePrefixAndTheSerializedMessage(bodyBytes: Int) throws {
        var response = ProcessingResponse()
        if bodyBytes > 0 {
            var body = Envoy_Service_ExtProc_V3_BodyResponse()
            body.response.bodyMutation.body = Data((0..<bodyBytes).map { UInt8(truncatingIfNeeded: $0 * 7) })
            response.responseBody = body
        }
        let expected: [UInt8] = try response.serializedBytes()
        var frame = try GRPCFrame.encode(response, allocator: ByteBufferAllocator())
        #expect(frame.readInteger(as: UInt8.self) == 0)
        #expect(frame.readInteger(as: UInt32.self) == UInt32(expected.count))
        #expect(frame.readBytes(length: frame.readableBytes) == expected)
        // And a batch is the frames one after the other.
        var batch = try GRPCFrame.encode([response, response], allocator: ByteBufferAllocator())
        #expect(batch.readableBytes == 2 * (5 + expected.count))
        batch.moveReaderIndex(forwardBy: 5)
        #expect(batch.readBytes(length: expected.count) == expected)
    }
}
