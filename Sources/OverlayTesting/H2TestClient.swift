import CNGHTTP2
import NIOCore
import NIOEmbedded

/// An HTTP/2 client on libnghttp2 in memory mode that records every frame it receives, in order.
public final class H2TestClient {
    public private(set) var session: OpaquePointer?
    public enum Event: Equatable, Sendable {
        case headers(stream: Int32, fields: [String: String], endStream: Bool)
        case data(stream: Int32, bytes: [UInt8], endStream: Bool)
        case reset(stream: Int32, code: UInt32)
        case goaway(lastStream: Int32, code: UInt32)
    }
    public var events: [Event] = []
    private var fields: [Int32: [String: String]] = [:]
    private var data: [Int32: [UInt8]] = [:]

    public init() {
        var callbacks: OpaquePointer?
        precondition(nghttp2_session_callbacks_new(&callbacks) == 0)
        defer { nghttp2_session_callbacks_del(callbacks) }
        nghttp2_session_callbacks_set_on_header_callback(callbacks) { _, frame, name, nameLength, value, valueLength, _, user in
            let client = Unmanaged<H2TestClient>.fromOpaque(user!).takeUnretainedValue()
            let stream = frame!.pointee.hd.stream_id
            client.fields[stream, default: [:]][String(decoding: UnsafeBufferPointer(start: name, count: nameLength), as: UTF8.self)] =
                String(decoding: UnsafeBufferPointer(start: value, count: valueLength), as: UTF8.self)
            return 0
        }
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks) { _, _, stream, bytes, length, user in
            let client = Unmanaged<H2TestClient>.fromOpaque(user!).takeUnretainedValue()
            client.data[stream, default: []].append(contentsOf: UnsafeBufferPointer(start: bytes, count: length))
            return 0
        }
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks) { _, frame, user in
            let client = Unmanaged<H2TestClient>.fromOpaque(user!).takeUnretainedValue()
            let header = frame!.pointee.hd
            let stream = header.stream_id
            let endStream = header.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0
            switch UInt32(header.type) {
            case NGHTTP2_HEADERS.rawValue:
                client.events.append(.headers(stream: stream, fields: client.fields.removeValue(forKey: stream) ?? [:], endStream: endStream))
            case NGHTTP2_DATA.rawValue:
                client.events.append(.data(stream: stream, bytes: client.data.removeValue(forKey: stream) ?? [], endStream: endStream))
            case NGHTTP2_RST_STREAM.rawValue:
                client.events.append(.reset(stream: stream, code: frame!.pointee.rst_stream.error_code))
            case NGHTTP2_GOAWAY.rawValue:
                client.events.append(.goaway(lastStream: frame!.pointee.goaway.last_stream_id, code: frame!.pointee.goaway.error_code))
            default:
                break
            }
            return 0
        }
        let user = Unmanaged.passUnretained(self).toOpaque()
        precondition(nghttp2_session_client_new(&session, callbacks, user) == 0)
        precondition(nghttp2_submit_settings(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), nil, 0) == 0)
    }

    deinit { nghttp2_session_del(session) }

    /// Everything the client has to send now.
    public func output() -> ByteBuffer {
        var out = ByteBuffer()
        while true {
            var chunk: UnsafePointer<UInt8>?
            let count = nghttp2_session_mem_send(session, &chunk)
            precondition(count >= 0)
            if count == 0 { return out }
            out.writeBytes(UnsafeRawBufferPointer(start: chunk, count: count))
        }
    }

    /// Bytes from the server.
    public func input(_ buffer: ByteBuffer) {
        let consumed = buffer.withUnsafeReadableBytes {
            nghttp2_session_mem_recv(session, $0.baseAddress?.assumingMemoryBound(to: UInt8.self), $0.count)
        }
        precondition(consumed == buffer.readableBytes, "client refused the server's bytes: \(consumed)")
    }

    /// A gRPC request head (ending the stream when `end`).
    @discardableResult
    public func request(path: String, extra: [(String, String)] = [], end: Bool = false) -> Int32 {
        let headers = [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "sidecar"),
                       ("content-type", "application/grpc"), ("te", "trailers")] + extra
        var bytes: [UInt8] = []
        var spans: [(Int, Int, Int, Int)] = []
        for (name, value) in headers {
            let nameStart = bytes.count
            bytes += Array(name.utf8)
            let valueStart = bytes.count
            bytes += Array(value.utf8)
            spans.append((nameStart, valueStart - nameStart, valueStart, bytes.count - valueStart))
        }
        let endHeaders = end
        let stream = bytes.withUnsafeMutableBufferPointer { storage in
            let fields = spans.map {
                nghttp2_nv(name: storage.baseAddress! + $0.0, value: storage.baseAddress! + $0.2, namelen: $0.1,
                           valuelen: $0.3, flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue))
            }
            return fields.withUnsafeBufferPointer {
                nghttp2_submit_headers(session, UInt8(endHeaders ? NGHTTP2_FLAG_END_STREAM.rawValue : NGHTTP2_FLAG_NONE.rawValue),
                                       -1, nil, $0.baseAddress, $0.count, nil)
            }
        }
        return stream
    }

    private var pending: [Int32: [UInt8]] = [:]

    /// DATA on `stream` (ending it when `end`).
    public func send(stream: Int32, _ bytes: [UInt8], end: Bool) {
        pending[stream] = bytes
        var provider = nghttp2_data_provider(source: nghttp2_data_source(ptr: nil)) { _, stream, buffer, length, flags, _, user in
            let client = Unmanaged<H2TestClient>.fromOpaque(user!).takeUnretainedValue()
            let bytes = client.pending.removeValue(forKey: stream) ?? []
            precondition(bytes.count <= length)
            bytes.withUnsafeBufferPointer { buffer!.update(from: $0.baseAddress!, count: bytes.count) }
            flags!.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
            if client.keepOpen.contains(stream) { flags!.pointee |= NGHTTP2_DATA_FLAG_NO_END_STREAM.rawValue }
            return bytes.count
        }
        if !end { keepOpen.insert(stream) } else { keepOpen.remove(stream) }
        let submitted = nghttp2_submit_data(session, UInt8(end ? NGHTTP2_FLAG_END_STREAM.rawValue : NGHTTP2_FLAG_NONE.rawValue), stream, &provider)
        precondition(submitted == 0, "nghttp2_submit_data on stream \(stream): \(String(cString: nghttp2_strerror(submitted)))")
    }

    private var keepOpen: Set<Int32> = []

    /// RST_STREAM(CANCEL), as Envoy ends a call early.
    public func reset(_ stream: Int32) {
        precondition(nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), stream, NGHTTP2_CANCEL.rawValue) == 0)
    }
}

extension H2TestClient {
    /// Moves bytes between this client and the server handler in `channel` until neither has
    /// anything to say.
    public func exchange(with channel: EmbeddedChannel) throws {
        while true {
            let toServer = output()
            if toServer.readableBytes > 0, channel.isActive { try channel.writeInbound(toServer) }
            var any = toServer.readableBytes > 0
            while let bytes = try channel.readOutbound(as: ByteBuffer.self) {
                any = true
                input(bytes)
            }
            if !any { return }
        }
    }

    /// The events of `stream`, in order.
    public func events(of stream: Int32) -> [Event] {
        events.filter {
            switch $0 {
            case .headers(let id, _, _), .data(let id, _, _), .reset(let id, _): id == stream
            case .goaway: false
            }
        }
    }
}
