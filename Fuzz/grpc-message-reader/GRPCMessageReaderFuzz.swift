import FuzzSupport
import GRPCTransport
import NIOCore

// The reader is GRPCTransport's (Sources/GRPCTransport/GRPCFraming.swift).
//
// Input: a chunking (the HTTP/2 DATA frame boundaries), a message size limit, then the stream.
//
// Oracle: an independent reading of gRPC's length-prefixed framing (1 flag byte: 0 = plain,
// 1 = compressed, else invalid; 4-byte big-endian length; payload) over the whole stream gives
// the messages, byte for byte, and the first failure (compressed, too large, bad flag) at the same
// message; without failure, the bytes left over are exactly what the reader holds, never more than
// one message (5 + limit bytes); none of it depends on the chunking.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let sizes = readChunkSizes(&input)
    let limit = input.int(0...300)
    let stream = input.rest()

    // Reference.
    var expected: [[UInt8]] = []
    var expectedFailure: GRPCMessageReader.Failure?
    var pos = 0
    while stream.count - pos >= 5 {
        let flag = stream[pos]
        let length = Int(stream[pos + 1]) << 24 | Int(stream[pos + 2]) << 16 | Int(stream[pos + 3]) << 8 | Int(stream[pos + 4])
        if flag == 1 { expectedFailure = .compressed; break }
        if flag > 1 { expectedFailure = .badFlag(flag); break }
        if length > limit { expectedFailure = .tooLarge(length, limit: limit); break }
        guard stream.count - pos >= 5 + length else { break }
        expected.append(Array(stream[(pos + 5)..<(pos + 5 + length)]))
        pos += 5 + length
    }
    let leftover = stream.count - pos

    var reader = GRPCMessageReader(maxMessageBytes: limit)
    var messages: [[UInt8]] = []
    var failure: GRPCMessageReader.Failure?
    outer: for chunk in chunks(stream, sizes: sizes) {
        reader.append(ByteBuffer(bytes: chunk))
        while true {
            do {
                guard let message = try reader.next() else { break }
                messages.append(Array(message.readableBytesView))
            } catch {
                failure = error
                break outer
            }
        }
        check(reader.bufferedBytes < 5 + limit || reader.bufferedBytes < 5, "holds \(reader.bufferedBytes) bytes, limit \(limit)")
    }
    check(messages == expected, "messages \(messages.map(\.count)) != reference \(expected.map(\.count))")
    check(failure == expectedFailure, "failure \(String(describing: failure)) != reference \(String(describing: expectedFailure))")
    if failure == nil {
        check(reader.bufferedBytes == leftover, "holds \(reader.bufferedBytes) bytes, \(leftover) left over")
        check(reader.hasPartialMessage == (leftover > 0), "hasPartialMessage wrong")
    }
    return 0
}
