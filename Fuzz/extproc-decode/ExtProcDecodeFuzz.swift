import ExtProcCore
import ExtProcProto
import Foundation
import SwiftProtobuf

// Input: arbitrary bytes, as the payload of one gRPC message on a Process stream.
//
// Oracle (the server decodes with libprotobuf-c, the tests and tools with swift-protobuf; both
// must read the same request, README "Design"):
// - never traps, and ASan sees no invalid access in DecodedRequest's reads of the C structs, its
//   stack arena or the malloc'ed overflow (every header, value and body byte is read);
// - what both accept, they read the same: phase, end of stream, protocol_config, observability
//   mode, unknown-field flag, `:authority`, `:path`, `:method`, every header (name and text, in
//   order) and body bytes; skipped when a header's string field holds a NUL byte (a C string
//   ends there; HTTP forbids NUL in header names, and Envoy sends values as bytes in raw_value);
// - what swift-protobuf accepts and libprotobuf-c refuses is only a field sent with another
//   wire type than its declared one (swift-protobuf keeps it as an unknown field; either way
//   the server's stream ends failing open): the same message re-encoded by swift-protobuf
//   without its unknown fields is accepted by libprotobuf-c and read the same;
// - what libprotobuf-c accepts and swift-protobuf refuses is only invalid UTF-8 in a string
//   field (swift-protobuf validates proto3 strings, libprotobuf-c does not; the header text is
//   then repaired with U+FFFD, never trapping).

let names: Set<String> = [":authority", ":path", ":method", ":status", "content-type", "cookie", "x"]

struct Reading: Equatable {
    var phase: ExchangePhase?
    var endOfStream: Bool?
    var headers: [String] = []
    var fields: [String] = []
    var head: [String] = []
    var body: [UInt8]?
    var settings: ExtProcProtocolSettings?
    var observability: Bool
    var unknown: Bool

    init(_ request: some ExtProcRequest) {
        settings = request.protocolSettings
        observability = request.observabilityMode
        unknown = request.carriesUnknownFields
        phase = request.phase?.kind
        switch request.phase {
        case .requestHeaders(let list, let eos)?, .responseHeaders(let list, let eos)?:
            endOfStream = eos
            headers = list.values(named: names).map { "\($0.name)=\($0.value)" }
            fields = list.fields.map { "\($0.name)=\($0.value)" }
            head = [list.authority.map(String.init) ?? "-", String(list.path), String(list.method)]
        case .requestBody(let bytes, let eos)?, .responseBody(let bytes, let eos)?:
            endOfStream = eos
            body = Array(bytes)
        case .requestTrailers?, .responseTrailers?, nil:
            break
        }
    }
}

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
    let viaC = DecodedRequest.decode(bytes) { Reading($0) }
    let viaSwift = try? ProcessingRequest(serializedBytes: Array(bytes))
    guard let viaSwift else { return 0 }
    guard !holdsNUL(viaSwift) else { return 0 }
    guard let viaC else {
        var discard = BinaryDecodingOptions()
        discard.discardUnknownFields = true
        let known = try! ProcessingRequest(serializedBytes: Array(bytes), options: discard)
        let canonical: [UInt8] = try! known.serializedBytes()
        let again = canonical.withUnsafeBytes { DecodedRequest.decode($0) { Reading($0) } }
        precondition(again != nil, "libprotobuf-c refuses what swift-protobuf encodes without unknown fields")
        precondition(again == Reading(known), "the carriers disagree on the re-encoded message:\nC     \(again!)\nSwift \(Reading(known))")
        return 0
    }
    let expected = Reading(viaSwift)
    precondition(viaC == expected, "the carriers disagree:\nC     \(viaC)\nSwift \(expected)")
    return 0
}
