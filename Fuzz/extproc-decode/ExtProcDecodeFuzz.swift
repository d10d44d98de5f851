import ExtProcCore
import ExtProcProto
import Foundation
import OverlayTesting
import SwiftProtobuf

// Input: arbitrary bytes, as the payload of one gRPC message on a Process stream.
//
// Oracle (the server decodes with libprotobuf-c, the tests and tools with swift-protobuf; both
// must read the same request, README "Design"):
// - never traps, and ASan sees no invalid access in DecodedRequest's reads of the C structs, its
//   stack arena or the malloc'ed overflow (every header, value and body byte is read);
// - what swift-protobuf accepts, encoded again by swift-protobuf (each field once, in order, its
//   unknown fields dropped: what Envoy's encoder sends), libprotobuf-c accepts and reads the
//   same: phase, end of stream, protocol_config, observability mode, unknown-field flag,
//   `:authority`, `:path`, `:method`, every header (name and text, in order) and body bytes;
//   skipped when a header's string field holds a NUL byte (a C string ends there; HTTP forbids
//   NUL in header names, and Envoy sends values as bytes in raw_value).
//
// On other encodings the two may differ, all found by this target, none sent by Envoy, none
// harmful (the server reads a different but valid request, or ends the stream failing open):
// libprotobuf-c keeps the last of a message field sent twice where the spec (and swift-protobuf)
// merges them; reads a bool sent length-delimited from its payload, and refuses other known
// fields sent with another wire type, where swift-protobuf keeps them as unknown; refuses a map
// entry cut short, which swift-protobuf lets pass (Python's protobuf refuses it too); and does
// not check UTF-8 in string fields, which swift-protobuf refuses.

let names: Set<String> = [":authority", ":path", ":method", ":status", "content-type", "cookie", "x"]

/// Everything the machine reads of a request (`ExtProcReading`, shared with DecodedRequestTests).
func reading(_ request: some ExtProcRequest) -> ExtProcReading { ExtProcReading(request, names: names) }

/// Whether a string field anywhere in `message`'s header lists holds a NUL byte.
func holdsNUL(_ message: ProcessingRequest) -> Bool {
    func inList(_ list: [Envoy_Config_Core_V3_HeaderValue]) -> Bool {
        list.contains { $0.key.utf8.contains(0) || $0.value.utf8.contains(0) }
    }
    switch message.request {
    case .requestHeaders(let h), .responseHeaders(let h): return inList(h.headers.headers)
    case .requestTrailers(let t), .responseTrailers(let t): return inList(t.trailers.headers)
    default: return false
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: size == 0 ? nil : data, count: size)
    _ = DecodedRequest.decode(bytes) { reading($0) }
    let viaSwift = try? ProcessingRequest(serializedBytes: Array(bytes))
    guard let viaSwift, !holdsNUL(viaSwift) else { return 0 }
    // Both read every byte of their own decoding (above: C's every header, value and body byte
    // through reading). What swift-protobuf read, encoded again as a protobuf encoder writes it
    // (canonical: each field once, in order, no unknown field), libprotobuf-c reads the same.
    var discard = BinaryDecodingOptions()
    discard.discardUnknownFields = true
    let known = try! ProcessingRequest(serializedBytes: Array(bytes), options: discard)
    let canonical: [UInt8] = try! known.serializedBytes()
    let again = canonical.withUnsafeBytes { DecodedRequest.decode($0) { reading($0) } }
    precondition(again != nil, "libprotobuf-c refuses what swift-protobuf encodes without unknown fields")
    precondition(again == reading(known), "the carriers disagree on the re-encoded message:\nC     \(again!)\nSwift \(reading(known))")
    return 0
}
