import NIOCore
import SwiftProtobuf

/// gRPC's message framing (grpc/doc/PROTOCOL-HTTP2.md "Length-Prefixed-Message"), both ways.

/// Reassembles gRPC length-prefixed messages (1-byte compressed flag, 4-byte big-endian length,
/// payload) from HTTP/2 DATA frames, whatever their boundaries. Holds at most one partial message.
public struct GRPCMessageReader: Sendable {
    public enum Failure: Error, Equatable, Sendable {
        /// The compressed flag is set, but we accept only `identity` (we advertise no other encoding).
        case compressed
        /// A message larger than the configured limit.
        case tooLarge(Int, limit: Int)
        /// A flag byte other than 0 or 1.
        case badFlag(UInt8)
    }

    public let maxMessageBytes: Int
    private var buffer: ByteBuffer?

    public init(maxMessageBytes: Int) {
        self.maxMessageBytes = maxMessageBytes
    }

    /// True while a partial message is held (the stream must not end here).
    public var hasPartialMessage: Bool { (buffer?.readableBytes ?? 0) > 0 }

    /// Bytes held for a message not complete yet.
    public var bufferedBytes: Int { buffer?.readableBytes ?? 0 }

    public mutating func append(_ data: ByteBuffer) {
        if var existing = buffer, existing.readableBytes > 0 {
            var data = data
            existing.writeBuffer(&data)
            buffer = existing
        } else {
            buffer = data
        }
    }

    /// The next complete message payload, or nil when more bytes are needed.
    public mutating func next() throws(Failure) -> ByteBuffer? {
        guard var buf = buffer, buf.readableBytes >= 5 else { return nil }
        let start = buf.readerIndex
        let flag = buf.getInteger(at: start, as: UInt8.self)!
        let length = Int(buf.getInteger(at: start + 1, as: UInt32.self)!)
        switch flag {
        case 0: break
        case 1: throw .compressed
        default: throw .badFlag(flag)
        }
        if length > maxMessageBytes { throw .tooLarge(length, limit: maxMessageBytes) }
        guard buf.readableBytes >= 5 + length else { return nil }
        buf.moveReaderIndex(forwardBy: 5)
        let message = buf.readSlice(length: length)!
        buffer = buf.readableBytes > 0 ? buf : nil
        return message
    }
}

/// Lets swift-protobuf decode straight from a NIO `ByteBuffer` and encode into one
/// (swift-protobuf's documented extension point for byte containers).
public struct ProtobufBytes: SwiftProtobufContiguousBytes {
    public var buffer: ByteBuffer

    public init(_ buffer: ByteBuffer) { self.buffer = buffer }
    public init(repeating: UInt8, count: Int) { buffer = ByteBuffer(repeating: repeating, count: count) }
    public init<S: Sequence>(_ sequence: S) where S.Element == UInt8 { buffer = ByteBuffer(bytes: sequence) }
    public var count: Int { buffer.readableBytes }
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try buffer.withUnsafeReadableBytes(body)
    }
    public mutating func withUnsafeMutableBytes<R>(_ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
        try buffer.withUnsafeMutableReadableBytes(body)
    }
}

/// What swift-protobuf serializes into for ``GRPCFrame/encode(_:allocator:)``: a buffer with room
/// for the 5-byte gRPC prefix before the message, so the frame is the same memory (no copy of the
/// message, no zero-filling: swift-protobuf writes every byte it asks for).
struct GRPCFramedBytes: SwiftProtobufContiguousBytes {
    var buffer: ByteBuffer

    init(repeating: UInt8, count: Int) {
        buffer = ByteBufferAllocator().buffer(capacity: GRPCFrame.prefixLength + count)
        if repeating == 0 {
            buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: GRPCFrame.prefixLength + count) { _ in
                GRPCFrame.prefixLength + count
            }
        } else {
            buffer.writeRepeatingByte(repeating, count: GRPCFrame.prefixLength + count)
        }
        buffer.moveReaderIndex(forwardBy: GRPCFrame.prefixLength)
    }

    init<S: Sequence>(_ sequence: S) where S.Element == UInt8 {
        buffer = ByteBuffer(repeating: 0, count: GRPCFrame.prefixLength)
        buffer.writeBytes(sequence)
        buffer.moveReaderIndex(forwardBy: GRPCFrame.prefixLength)
    }

    var count: Int { buffer.readableBytes }

    func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try buffer.withUnsafeReadableBytes(body)
    }

    mutating func withUnsafeMutableBytes<R>(_ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
        try buffer.withUnsafeMutableReadableBytes(body)
    }
}

public enum GRPCFrame {
    public static let prefixLength = 5

    /// A gRPC length-prefixed frame holding the serialized message (serialized in place after the
    /// prefix, see ``GRPCFramedBytes``).
    public static func encode(_ message: some SwiftProtobuf.Message, allocator: ByteBufferAllocator) throws -> ByteBuffer {
        let payload: GRPCFramedBytes = try message.serializedBytes()
        var frame = payload.buffer
        let length = frame.readableBytes
        frame.moveReaderIndex(to: frame.readerIndex - prefixLength)
        frame.setInteger(UInt8(0), at: frame.readerIndex)
        frame.setInteger(UInt32(length), at: frame.readerIndex + 1)
        return frame
    }

    /// Several messages in one buffer (one DATA frame for a batch of answers).
    public static func encode(_ messages: [some SwiftProtobuf.Message], allocator: ByteBufferAllocator) throws -> ByteBuffer {
        var frame = allocator.buffer(capacity: 64)
        for message in messages {
            var one = try encode(message, allocator: allocator)
            frame.writeBuffer(&one)
        }
        return frame
    }
}
