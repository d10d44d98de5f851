import CProtobufC
import Foundation
import ExtProcProto
import ExtProcProtoC
import OverlayDecisions

/// A `ProcessingRequest` decoded by libprotobuf-c (the C messages generated from `proto/` into
/// `ExtProcProtoC`), read in place: the machine's hot path builds no Swift value for a header it
/// does not read (a pass-through request reads `:authority` only). README "Design" says why this
/// carrier and not swift-protobuf's on the server.
///
/// Valid only inside the closure of ``decode(_:_:)``: the C structs are freed when it returns,
/// so neither the request nor its headers or body may escape it.
public struct DecodedRequest: ExtProcRequest {
    let message: UnsafeMutablePointer<Envoy__Service__ExtProc__V3__ProcessingRequest>

    /// Decodes `bytes` (one gRPC message's payload) and hands the request to `body`; nil when the
    /// bytes are not a valid `ProcessingRequest` (`body` is then not called).
    ///
    /// libprotobuf-c allocates every sub-message, string and bytes field on its own; here they
    /// come from a bump arena on this call's stack (``arenaBytes``), so a request head costs no
    /// `malloc` at all. What does not fit (a large body) comes from `malloc` and is freed here.
    public static func decode<Result>(_ bytes: UnsafeRawBufferPointer, _ body: (DecodedRequest) -> Result) -> Result? {
        // A message as large as the arena would not fit it (a body chunk): libprotobuf-c's malloc.
        guard bytes.count < arenaBytes / 2 else { return decode(bytes, allocator: nil, body) }
        return withUnsafeTemporaryAllocation(byteCount: arenaBytes, alignment: 16) { space in
            var arena = Arena(base: space.baseAddress!, capacity: space.count)
            return withUnsafeMutablePointer(to: &arena) { arena in
                var allocator = ProtobufCAllocator(alloc: arenaAlloc, free: arenaFree, allocator_data: UnsafeMutableRawPointer(arena))
                return withUnsafeMutablePointer(to: &allocator) { decode(bytes, allocator: $0, body) }
            }
        }
    }

    private static func decode<Result>(
        _ bytes: UnsafeRawBufferPointer, allocator: UnsafeMutablePointer<ProtobufCAllocator>?, _ body: (DecodedRequest) -> Result
    ) -> Result? {
        var empty: UInt8 = 0
        let decoded = withUnsafeMutablePointer(to: &empty) { placeholder in
            envoy__service__ext_proc__v3__processing_request__unpack(
                allocator, bytes.count, bytes.baseAddress?.assumingMemoryBound(to: UInt8.self) ?? UnsafePointer(placeholder))
        }
        guard let decoded else { return nil }
        defer { envoy__service__ext_proc__v3__processing_request__free_unpacked(decoded, allocator) }
        return body(DecodedRequest(message: decoded))
    }

    /// The arena's size: a request head of 12 typical headers takes about 2 KB of it; one with
    /// large cookies still fits.
    static let arenaBytes = 16 * 1024

    public var phase: ExtProcPhase<DecodedHeaders, UnsafeRawBufferPointer>? {
        let request = message.pointee
        switch request.request_case {
        case ENVOY__SERVICE__EXT_PROC__V3__PROCESSING_REQUEST__REQUEST_REQUEST_HEADERS:
            return .requestHeaders(DecodedHeaders(request.request_headers.pointee.headers), endOfStream: request.request_headers.pointee.end_of_stream != 0)
        case ENVOY__SERVICE__EXT_PROC__V3__PROCESSING_REQUEST__REQUEST_RESPONSE_HEADERS:
            return .responseHeaders(DecodedHeaders(request.response_headers.pointee.headers), endOfStream: request.response_headers.pointee.end_of_stream != 0)
        case ENVOY__SERVICE__EXT_PROC__V3__PROCESSING_REQUEST__REQUEST_REQUEST_BODY:
            let body = request.request_body.pointee
            return .requestBody(UnsafeRawBufferPointer(start: body.body.data, count: body.body.len), endOfStream: body.end_of_stream != 0)
        case ENVOY__SERVICE__EXT_PROC__V3__PROCESSING_REQUEST__REQUEST_RESPONSE_BODY:
            let body = request.response_body.pointee
            return .responseBody(UnsafeRawBufferPointer(start: body.body.data, count: body.body.len), endOfStream: body.end_of_stream != 0)
        case ENVOY__SERVICE__EXT_PROC__V3__PROCESSING_REQUEST__REQUEST_REQUEST_TRAILERS:
            return .requestTrailers
        case ENVOY__SERVICE__EXT_PROC__V3__PROCESSING_REQUEST__REQUEST_RESPONSE_TRAILERS:
            return .responseTrailers
        default:
            return nil
        }
    }

    public var protocolSettings: ExtProcProtocolSettings? {
        guard let config = message.pointee.protocol_config?.pointee else { return nil }
        // An enum is an int32 on the wire; the C enum's raw value is unsigned (a negative value,
        // unknown to the enum, is kept as swift-protobuf keeps it: UNRECOGNIZED(-n)).
        return ExtProcProtocolSettings(
            requestBodyMode: BodySendMode(rawValue: Int(Int32(bitPattern: config.request_body_mode.rawValue))) ?? .none,
            responseBodyMode: BodySendMode(rawValue: Int(Int32(bitPattern: config.response_body_mode.rawValue))) ?? .none,
            sendBodyWithoutWaitingForHeaderResponse: config.send_body_without_waiting_for_header_response != 0)
    }

    public var observabilityMode: Bool { message.pointee.observability_mode != 0 }

    public var carriesUnknownFields: Bool {
        let request = message.pointee
        if request.base.n_unknown_fields > 0 { return true }
        if let config = request.protocol_config, config.pointee.base.n_unknown_fields > 0 { return true }
        switch request.request_case {
        case ENVOY__SERVICE__EXT_PROC__V3__PROCESSING_REQUEST__REQUEST_REQUEST_HEADERS:
            return Self.unknown(in: request.request_headers)
        case ENVOY__SERVICE__EXT_PROC__V3__PROCESSING_REQUEST__REQUEST_RESPONSE_HEADERS:
            return Self.unknown(in: request.response_headers)
        case ENVOY__SERVICE__EXT_PROC__V3__PROCESSING_REQUEST__REQUEST_REQUEST_BODY:
            return request.request_body.pointee.base.n_unknown_fields > 0
        case ENVOY__SERVICE__EXT_PROC__V3__PROCESSING_REQUEST__REQUEST_RESPONSE_BODY:
            return request.response_body.pointee.base.n_unknown_fields > 0
        case ENVOY__SERVICE__EXT_PROC__V3__PROCESSING_REQUEST__REQUEST_REQUEST_TRAILERS:
            return Self.unknown(in: request.request_trailers)
        case ENVOY__SERVICE__EXT_PROC__V3__PROCESSING_REQUEST__REQUEST_RESPONSE_TRAILERS:
            return Self.unknown(in: request.response_trailers)
        default:
            return false
        }
    }

    private static func unknown(in headers: UnsafeMutablePointer<Envoy__Service__ExtProc__V3__HttpHeaders>) -> Bool {
        headers.pointee.base.n_unknown_fields > 0 || DecodedHeaders(headers.pointee.headers).carriesUnknownFields
    }

    private static func unknown(in trailers: UnsafeMutablePointer<Envoy__Service__ExtProc__V3__HttpTrailers>) -> Bool {
        trailers.pointee.base.n_unknown_fields > 0 || DecodedHeaders(trailers.pointee.trailers).carriesUnknownFields
    }
}

/// A decoded `HeaderMap`, read in place: a name is compared as bytes, a value becomes text only
/// when asked for. Valid as long as its ``DecodedRequest``.
public struct DecodedHeaders: EnvoyHeaderList {
    typealias Header = UnsafeMutablePointer<Envoy__Config__Core__V3__HeaderValue>
    let map: UnsafeMutablePointer<Envoy__Config__Core__V3__HeaderMap>?

    init(_ map: UnsafeMutablePointer<Envoy__Config__Core__V3__HeaderMap>?) { self.map = map }

    /// The headers in order (protobuf-c never leaves a hole in a repeated field).
    var headers: UnsafeBufferPointer<Header?> {
        guard let map, map.pointee.n_headers > 0 else { return UnsafeBufferPointer(start: nil, count: 0) }
        return UnsafeBufferPointer(start: map.pointee.headers, count: map.pointee.n_headers)
    }

    public func firstValue(_ name: String) -> Substring? {
        for case let header? in headers where Self.key(of: header, is: name) { return Self.text(of: header)[...] }
        return nil
    }

    public var fields: HeaderList {
        var fields: HeaderList = []
        for case let header? in headers where UInt8(bitPattern: header.pointee.key[0]) != UInt8(ascii: ":") {
            fields.append((name: String(cString: header.pointee.key), value: Self.text(of: header)))
        }
        return fields
    }

    public func values(named names: Set<String>) -> HeaderList {
        var found: HeaderList = []
        for case let header? in headers {
            for name in names where Self.key(of: header, is: name) {
                found.append((name: name, value: Self.text(of: header)))
                break
            }
        }
        return found
    }

    var carriesUnknownFields: Bool {
        guard let map else { return false }
        if map.pointee.base.n_unknown_fields > 0 { return true }
        return headers.contains { $0?.pointee.base.n_unknown_fields ?? 0 > 0 }
    }

    /// Whether the header's name (a NUL-terminated C string) is `name`, byte for byte.
    static func key(of header: Header, is name: String) -> Bool {
        let key = header.pointee.key!
        var index = 0
        for byte in name.utf8 {
            // A shorter key ends with NUL, which no header name contains.
            guard UInt8(bitPattern: key[index]) == byte else { return false }
            index += 1
        }
        return key[index] == 0
    }

    /// The value as text: `raw_value` when set (current Envoy, §1.2), else `value`.
    static func text(of header: Header) -> String {
        let raw = header.pointee.raw_value
        if raw.len > 0 { return String(decoding: UnsafeBufferPointer(start: raw.data, count: raw.len), as: UTF8.self) }
        guard let value = header.pointee.value else { return "" }
        return String(cString: value)
    }
}

/// A bump allocator over one decode's stack space: `free` of its own memory is a no-op (the
/// space goes with the call), of anything else (what did not fit) `free`.
struct Arena {
    let base: UnsafeMutableRawPointer
    let capacity: Int
    var used = 0

    init(base: UnsafeMutableRawPointer, capacity: Int) {
        self.base = base
        self.capacity = capacity
    }

    func owns(_ pointer: UnsafeMutableRawPointer) -> Bool {
        pointer >= base && pointer < base + capacity
    }
}

private let arenaAlloc: @convention(c) (UnsafeMutableRawPointer?, Int) -> UnsafeMutableRawPointer? = { data, size in
    let arena = data!.assumingMemoryBound(to: Arena.self)
    let start = (arena.pointee.used + 15) & ~15
    if size <= arena.pointee.capacity - start {
        arena.pointee.used = start + size
        return arena.pointee.base + start
    }
    return malloc(max(size, 1))
}

private let arenaFree: @convention(c) (UnsafeMutableRawPointer?, UnsafeMutableRawPointer?) -> Void = { data, pointer in
    guard let pointer, !data!.assumingMemoryBound(to: Arena.self).pointee.owns(pointer) else { return }
    free(pointer)
}
