import CNGHTTP2
import NIOCore

/// What a server does with the streams of one connection. Every call comes on the connection's
/// event loop; the delegate answers through the ``H2ServerConnection`` it is given.
public protocol H2StreamDelegate: AnyObject {
    /// A request head arrived (HEADERS, and any CONTINUATION); `endStream` when the client sent
    /// nothing more.
    func streamStarted(_ connection: H2ServerConnection, context: ChannelHandlerContext, stream: Int32, head: GRPCRequestHead, endStream: Bool)
    /// Bytes of the request body (DATA), in order; slices of what was read, no copy.
    func streamData(_ connection: H2ServerConnection, context: ChannelHandlerContext, stream: Int32, data: ByteBuffer)
    /// The client ended its side (END_STREAM on DATA or trailers).
    func streamEnded(_ connection: H2ServerConnection, context: ChannelHandlerContext, stream: Int32)
    /// The stream is closed or was reset (by either side): whatever it holds can go.
    func streamClosed(_ connection: H2ServerConnection, stream: Int32)
    /// The server drains: GOAWAY is on its way; long-lived calls should end.
    func connectionQuiescing(_ connection: H2ServerConnection, context: ChannelHandlerContext)
    /// The connection is gone: every stream still held can go.
    func connectionClosed(_ connection: H2ServerConnection)
}

/// HTTP/2 settings and limits of a server connection.
public struct H2ServerSettings: Sendable {
    /// SETTINGS_MAX_CONCURRENT_STREAMS.
    public var maxConcurrentStreams = 4096
    /// SETTINGS_INITIAL_WINDOW_SIZE: bytes each stream may have in flight.
    public var streamWindow = 1 << 20
    /// The connection's receive window.
    public var connectionWindow = 1 << 24
    /// SETTINGS_MAX_HEADER_LIST_SIZE (advertised; nghttp2 bounds each header block on its own).
    public var maxHeaderListSize = 1 << 16
    /// The rapid-reset guard (CVE-2023-44487): a token bucket of stream resets, `resetBurst` deep,
    /// refilled at `resetRate` per second. Envoy ends most ext_proc streams with RST_STREAM, so
    /// the reset rate equals the exchange rate: libnghttp2's default (1,000 deep, 33 per second)
    /// would end a busy Envoy connection within a second. libnghttp2 refills the bucket once per
    /// whole second, so the depth is what one connection may reset in a second: 200,000, above
    /// any exchange rate this server reaches (the swift-nio-http2 layer allowed the same, 20,000
    /// per 100 ms); a reset costs the client as much as it costs us beyond that.
    public var resetBurst: UInt64 = 200_000
    public var resetRate: UInt64 = 200_000
    /// Request bytes the delegate may hold (partial messages) before the connection window stops
    /// being refilled.
    public var maxBufferedBytes = 64 << 20
    /// After GOAWAY on drain, how long in-flight streams may run before the connection is closed.
    public var graceTime: TimeAmount = .seconds(10)

    public init() {}
}

/// One HTTP/2 server connection on libnghttp2 (Debian's libnghttp2, in memory mode): SwiftNIO reads
/// and writes the socket, nghttp2 owns the connection preface, framing, HPACK, flow control,
/// SETTINGS, stream states and the flood guards. Bytes read go to `nghttp2_session_mem_recv`; what
/// the session has to send is written once per read batch (and after writes from timers or other
/// tasks, see ``flush(context:)``).
///
/// Responses are gRPC-shaped: response headers with the first message, messages as DATA, then
/// trailers; or a trailers-only HEADERS frame. Everything runs on the channel's event loop.
public final class H2ServerConnection: ChannelDuplexHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer
    public typealias OutboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    private let settings: H2ServerSettings
    private let delegate: any H2StreamDelegate
    private var session: OpaquePointer?
    public private(set) var context: ChannelHandlerContext?

    /// The response side of each stream we answer.
    private var outbound: [Int32: Outbound] = [:]
    /// The request head being collected (HEADERS and CONTINUATION come in one piece).
    private var headStream: Int32 = 0
    private var head = GRPCRequestHead()
    /// The decoded size of the header list being collected (RFC 9113 §6.5.2: name + value + 32
    /// per field), held to SETTINGS_MAX_HEADER_LIST_SIZE: an HPACK bomb is refused early.
    private var headBytes = 0
    /// While nghttp2 parses a read: the buffer, so DATA is handed on as slices of it.
    private var input: ByteBuffer?
    private var inputBase: UnsafeRawPointer?
    /// Inside `mem_recv` or `mem_send` (callbacks run there): sending now would re-enter nghttp2.
    private var busy = false
    /// Connection-window bytes received but not given back while the delegate holds too much.
    private var unconsumed = 0
    private var buffered = 0
    private var readPending = false
    private var draining = false
    private var closed = false
    private var graceTimer: Scheduled<Void>?

    /// The PING that tells the drain the client has seen the first GOAWAY.
    private static let drainPing: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) = (0x64, 0x72, 0x61, 0x69, 0x6e, 0x21, 0x21, 0x21)

    /// The stream as libnghttp2 holds it (tests: closed streams must not be kept).
    func sessionHoldsStream(_ stream: Int32) -> Bool {
        guard let session else { return false }
        return nghttp2_session_find_stream(session, stream) != nil
    }

    public init(settings: H2ServerSettings, delegate: any H2StreamDelegate) {
        self.settings = settings
        self.delegate = delegate
    }

    deinit {
        if let session { nghttp2_session_del(session) }
    }

    final class Outbound {
        var queue = CircularBuffer<ByteBuffer>(initialCapacity: 2)
        /// Response headers were submitted (with the data source, or as trailers-only).
        var started = false
        /// The data source returned DEFERRED and waits for ``resume``.
        var deferred = false
        /// The end to send once the queue is empty.
        var ending: GRPCStreamEnd?
        /// RST_STREAM(NO_ERROR) once our END_STREAM is written (the client's side is still open).
        var resetAfterEnd = false
    }

    // MARK: - Lifecycle

    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        guard session == nil else { return }
        var callbacks: OpaquePointer?
        guard nghttp2_session_callbacks_new(&callbacks) == 0 else {
            context.close(promise: nil)
            return
        }
        defer { nghttp2_session_callbacks_del(callbacks) }
        Self.install(callbacks)
        var option: OpaquePointer?
        guard nghttp2_option_new(&option) == 0 else {
            context.close(promise: nil)
            return
        }
        defer { nghttp2_option_del(option) }
        nghttp2_option_set_no_auto_window_update(option, 1)
        // No closed streams kept for RFC 7540 priorities (deprecated by RFC 9113, and Envoy sends
        // none): libnghttp2 would otherwise hold up to SETTINGS_MAX_CONCURRENT_STREAMS of them per
        // connection, ~6 MB on a busy one.
        nghttp2_option_set_no_closed_streams(option, 1)
        nghttp2_option_set_stream_reset_rate_limit(option, settings.resetBurst, settings.resetRate)
        let user = Unmanaged.passUnretained(self).toOpaque()
        guard nghttp2_session_server_new2(&session, callbacks, user, option) == 0 else {
            context.close(promise: nil)
            return
        }
        var entries = [
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS.rawValue), value: UInt32(settings.maxConcurrentStreams)),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue), value: UInt32(settings.streamWindow)),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE.rawValue), value: UInt32(settings.maxHeaderListSize)),
        ]
        _ = nghttp2_submit_settings(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), &entries, entries.count)
        if settings.connectionWindow > 65_535 {
            _ = nghttp2_session_set_local_window_size(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), 0, Int32(settings.connectionWindow))
        }
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        graceTimer?.cancel()
        graceTimer = nil
        closeStreams()
        if let session {
            nghttp2_session_del(session)
            self.session = nil
        }
        self.context = nil
    }

    public func channelActive(context: ChannelHandlerContext) {
        send(context: context)  // our SETTINGS and the connection window
        context.fireChannelActive()
    }

    public func channelInactive(context: ChannelHandlerContext) {
        graceTimer?.cancel()
        graceTimer = nil
        closeStreams()
        context.fireChannelInactive()
    }

    private func closeStreams() {
        guard !closed else { return }
        closed = true
        outbound.removeAll()
        delegate.connectionClosed(self)
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    // MARK: - Reading

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let session, !closed else { return }
        let buffer = unwrapInboundIn(data)
        busy = true
        let result = buffer.withUnsafeReadableBytes { raw -> Int in
            guard let base = raw.baseAddress else { return 0 }
            input = buffer
            inputBase = base
            return nghttp2_session_mem_recv(session, base.assumingMemoryBound(to: UInt8.self), raw.count)
        }
        input = nil
        inputBase = nil
        busy = false
        if result < 0 {
            // A fatal error (bad preface, a flood, no memory): say what nghttp2 queued (GOAWAY),
            // then close.
            send(context: context)
            context.close(promise: nil)
        }
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        send(context: context)
        context.fireChannelReadComplete()
    }

    public func read(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            context.read()
        } else {
            readPending = true
        }
    }

    public func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable && readPending {
            readPending = false
            context.read()
        }
        context.fireChannelWritabilityChanged()
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            drain(context: context)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// Graceful shutdown: a GOAWAY that admits every stream (so none in flight is refused), a PING;
    /// once the client acknowledges it, the final GOAWAY with the last stream we took. The
    /// connection closes when the last stream ends, or after the grace time.
    private func drain(context: ChannelHandlerContext) {
        guard !draining, let session else { return }
        draining = true
        delegate.connectionQuiescing(self, context: context)
        _ = nghttp2_submit_shutdown_notice(session)
        var opaque = Self.drainPing
        _ = withUnsafeBytes(of: &opaque) { nghttp2_submit_ping(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), $0.baseAddress?.assumingMemoryBound(to: UInt8.self)) }
        send(context: context)
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        graceTimer = context.eventLoop.scheduleTask(in: settings.graceTime) {
            loopBound.value.close(promise: nil)
        }
    }

    // MARK: - Writing

    /// Sends what the session has queued (after writes from outside a read: timers, results).
    public func flush(context: ChannelHandlerContext) {
        if !busy { send(context: context) }
    }

    /// One gRPC message frame (prefix and payload) on `stream`; the first one carries the response
    /// headers (`:status: 200`, `content-type: application/grpc`).
    public func sendMessage(stream: Int32, frame: ByteBuffer) {
        guard let session else { return }
        let out = outboundState(stream)
        guard out.ending == nil else { return }
        out.queue.append(frame)
        if !out.started {
            out.started = true
            var provider = nghttp2_data_provider(source: nghttp2_data_source(ptr: nil), read_callback: Self.readCallback)
            _ = nghttp2_submit_response(session, stream, StaticFields.responseHeaders.nva, StaticFields.responseHeaders.count, &provider)
        } else if out.deferred {
            out.deferred = false
            _ = nghttp2_session_resume_data(session, stream)
        }
    }

    /// Ends our side of `stream`: trailers after the response headers and what was sent (the
    /// headers go first when nothing was), or with `trailersOnly` (and for a plain HTTP answer)
    /// one HEADERS frame with everything. With `thenReset`, RST_STREAM(NO_ERROR) follows once our
    /// END_STREAM is written (gRPC: a server that ends before the client resets its side with
    /// NO_ERROR).
    public func sendEnd(stream: Int32, _ end: GRPCStreamEnd, trailersOnly: Bool, thenReset: Bool) {
        guard let session else { return }
        let out = outboundState(stream)
        guard out.ending == nil else { return }
        out.resetAfterEnd = thenReset
        out.ending = end
        if case .http(let status) = end {
            guard !out.started else { return }
            out.started = true
            _ = withFields([GRPCStreamEnd.Field(":status", String(status))]) { nghttp2_submit_response(session, stream, $0, $1, nil) }
        } else if out.started {
            if out.deferred {
                out.deferred = false
                _ = nghttp2_session_resume_data(session, stream)
            }
        } else if !trailersOnly {
            out.started = true
            var provider = nghttp2_data_provider(source: nghttp2_data_source(ptr: nil), read_callback: Self.readCallback)
            _ = nghttp2_submit_response(session, stream, StaticFields.responseHeaders.nva, StaticFields.responseHeaders.count, &provider)
        } else if end == .ok {
            out.started = true
            _ = nghttp2_submit_response(session, stream, StaticFields.trailersOnlyOK.nva, StaticFields.trailersOnlyOK.count, nil)
        } else {
            out.started = true
            var fields = [GRPCStreamEnd.Field(":status", "200"), GRPCStreamEnd.Field("content-type", "application/grpc")]
            fields.append(contentsOf: end.statusFields)
            _ = withFields(fields) { nghttp2_submit_response(session, stream, $0, $1, nil) }
        }
    }

    /// Resets `stream` now (frames still queued for it are dropped).
    public func reset(stream: Int32, code: UInt32 = NGHTTP2_CANCEL.rawValue) {
        guard let session else { return }
        _ = nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), stream, code)
    }

    /// The delegate's partial-message bytes changed by `delta`; the connection window is refilled
    /// again once they are back under the budget.
    public func bufferedChanged(by delta: Int) {
        buffered += delta
        if unconsumed > 0, buffered <= settings.maxBufferedBytes, let session {
            _ = nghttp2_session_consume_connection(session, unconsumed)
            unconsumed = 0
            if let context { flush(context: context) }
        }
    }

    private func outboundState(_ stream: Int32) -> Outbound {
        if let out = outbound[stream] { return out }
        let out = Outbound()
        outbound[stream] = out
        return out
    }

    private func send(context: ChannelHandlerContext) {
        guard let session, !busy else { return }
        busy = true
        defer { busy = false }
        var out: ByteBuffer?
        while true {
            var chunk: UnsafePointer<UInt8>?
            let count = nghttp2_session_mem_send(session, &chunk)
            if count < 0 {
                context.close(promise: nil)
                return
            }
            guard count > 0, let chunk else { break }
            if out == nil { out = context.channel.allocator.buffer(capacity: max(count, 512)) }
            out!.writeBytes(UnsafeRawBufferPointer(start: chunk, count: count))
        }
        if let out { context.writeAndFlush(wrapOutboundOut(out), promise: nil) }
        if nghttp2_session_want_read(session) == 0 && nghttp2_session_want_write(session) == 0 {
            context.close(promise: nil)
        }
    }

    // MARK: - nghttp2 callbacks (on the event loop, inside mem_recv / mem_send)

    private static func connection(_ user: UnsafeMutableRawPointer?) -> H2ServerConnection {
        Unmanaged<H2ServerConnection>.fromOpaque(user!).takeUnretainedValue()
    }

    private static func install(_ callbacks: OpaquePointer?) {
        nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks) { _, frame, user in
            guard let frame else { return 0 }
            let connection = H2ServerConnection.connection(user)
            connection.headBytes = 0
            guard frame.pointee.headers.cat == NGHTTP2_HCAT_REQUEST else { return 0 }
            connection.headStream = frame.pointee.hd.stream_id
            connection.head = GRPCRequestHead()
            return 0
        }
        nghttp2_session_callbacks_set_on_header_callback(callbacks) { session, frame, name, nameLength, value, valueLength, _, user in
            guard let frame, let name, let value else { return 0 }
            let connection = H2ServerConnection.connection(user)
            let stream = frame.pointee.hd.stream_id
            connection.headBytes += nameLength + valueLength + 32
            if connection.headBytes > connection.settings.maxHeaderListSize {
                // The rest of the block is still decoded (HPACK state), but not delivered; the
                // stream is reset with PROTOCOL_ERROR.
                _ = nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), stream, NGHTTP2_PROTOCOL_ERROR.rawValue)
                return Int32(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue)
            }
            guard stream == connection.headStream, frame.pointee.headers.cat == NGHTTP2_HCAT_REQUEST else { return 0 }
            connection.header(name: UnsafeBufferPointer(start: name, count: nameLength), value: UnsafeBufferPointer(start: value, count: valueLength))
            return 0
        }
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks) { _, frame, user in
            guard let frame else { return 0 }
            H2ServerConnection.connection(user).received(frame)
            return 0
        }
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks) { _, _, stream, data, length, user in
            guard let data else { return 0 }
            H2ServerConnection.connection(user).received(stream: stream, data: data, length: length)
            return 0
        }
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks) { _, stream, _, user in
            let connection = H2ServerConnection.connection(user)
            connection.outbound.removeValue(forKey: stream)
            if !connection.closed { connection.delegate.streamClosed(connection, stream: stream) }
            return 0
        }
        nghttp2_session_callbacks_set_on_frame_send_callback(callbacks) { session, frame, user in
            guard let frame else { return 0 }
            let type = UInt32(frame.pointee.hd.type)
            let endStream = frame.pointee.hd.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0
            guard endStream, type == NGHTTP2_HEADERS.rawValue || type == NGHTTP2_DATA.rawValue else { return 0 }
            let connection = H2ServerConnection.connection(user)
            let stream = frame.pointee.hd.stream_id
            if let out = connection.outbound[stream], out.resetAfterEnd {
                out.resetAfterEnd = false
                _ = nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), stream, NGHTTP2_NO_ERROR.rawValue)
            }
            return 0
        }
    }

    /// The data source of every response: the stream's queued message frames, then its trailers.
    private static let readCallback: nghttp2_data_source_read_callback = { session, stream, buffer, length, flags, _, user in
        guard let buffer, let flags else { return Int(NGHTTP2_ERR_CALLBACK_FAILURE.rawValue) }
        return H2ServerConnection.connection(user).read(session: session, stream: stream, into: buffer, length: length, flags: flags)
    }

    private func read(session: OpaquePointer?, stream: Int32, into buffer: UnsafeMutablePointer<UInt8>, length: Int, flags: UnsafeMutablePointer<UInt32>) -> Int {
        guard let out = outbound[stream] else {
            flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
            return 0
        }
        var written = 0
        while written < length, var first = out.queue.first {
            let count = min(first.readableBytes, length - written)
            first.withUnsafeReadableBytes { bytes in
                (buffer + written).update(from: bytes.baseAddress!.assumingMemoryBound(to: UInt8.self), count: count)
            }
            written += count
            first.moveReaderIndex(forwardBy: count)
            if first.readableBytes == 0 {
                out.queue.removeFirst()
            } else {
                out.queue[out.queue.startIndex] = first
            }
        }
        if out.queue.isEmpty, let end = out.ending {
            flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue | NGHTTP2_DATA_FLAG_NO_END_STREAM.rawValue
            if end == .ok {
                _ = nghttp2_submit_trailer(session, stream, StaticFields.okTrailers.nva, StaticFields.okTrailers.count)
            } else {
                _ = withFields(end.statusFields) { nghttp2_submit_trailer(session, stream, $0, $1) }
            }
            return written
        }
        if written == 0 {
            out.deferred = true
            return Int(NGHTTP2_ERR_DEFERRED.rawValue)
        }
        return written
    }

    private func header(name: UnsafeBufferPointer<UInt8>, value: UnsafeBufferPointer<UInt8>) {
        switch name.count {
        case 5 where Self.equal(name, ":path"): head.path = String(decoding: value, as: UTF8.self)
        case 7 where Self.equal(name, ":method"): head.method = String(decoding: value, as: UTF8.self)
        case 12 where Self.equal(name, "content-type"): head.contentType = String(decoding: value, as: UTF8.self)
        case 12 where Self.equal(name, "grpc-timeout"): head.timeout = String(decoding: value, as: UTF8.self)
        case 13 where Self.equal(name, "grpc-encoding"): head.encoding = String(decoding: value, as: UTF8.self)
        default: break
        }
    }

    private static func equal(_ bytes: UnsafeBufferPointer<UInt8>, _ name: StaticString) -> Bool {
        bytes.elementsEqual(UnsafeBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount))
    }

    private func received(_ frame: UnsafePointer<nghttp2_frame>) {
        guard let context else { return }
        let header = frame.pointee.hd
        let endStream = header.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0
        switch UInt32(header.type) {
        case NGHTTP2_HEADERS.rawValue:
            if frame.pointee.headers.cat == NGHTTP2_HCAT_REQUEST {
                let head = self.head
                self.head = GRPCRequestHead()
                headStream = 0
                delegate.streamStarted(self, context: context, stream: header.stream_id, head: head, endStream: endStream)
            } else if endStream {
                delegate.streamEnded(self, context: context, stream: header.stream_id)
            }
        case NGHTTP2_DATA.rawValue:
            if endStream { delegate.streamEnded(self, context: context, stream: header.stream_id) }
        case NGHTTP2_PING.rawValue:
            guard draining, header.flags & UInt8(NGHTTP2_FLAG_ACK.rawValue) != 0, let session else { return }
            var opaque = frame.pointee.ping.opaque_data
            var expected = Self.drainPing
            let ours = withUnsafeBytes(of: &opaque) { a in withUnsafeBytes(of: &expected) { b in a.elementsEqual(b) } }
            if ours {
                _ = nghttp2_submit_goaway(
                    session, UInt8(NGHTTP2_FLAG_NONE.rawValue), nghttp2_session_get_last_proc_stream_id(session),
                    NGHTTP2_NO_ERROR.rawValue, nil, 0)
            }
        default:
            break
        }
    }

    private func received(stream: Int32, data: UnsafePointer<UInt8>, length: Int) {
        if let session {
            _ = nghttp2_session_consume_stream(session, stream, length)
            if buffered <= settings.maxBufferedBytes && unconsumed == 0 {
                _ = nghttp2_session_consume_connection(session, length)
            } else {
                unconsumed += length
            }
        }
        guard let context, length > 0 else { return }
        let slice: ByteBuffer
        if let input, let base = inputBase, UnsafeRawPointer(data) >= base,
            UnsafeRawPointer(data) + length <= base + input.readableBytes
        {
            slice = input.getSlice(at: input.readerIndex + (UnsafeRawPointer(data) - base), length: length)!
        } else {
            var copy = context.channel.allocator.buffer(capacity: length)
            copy.writeBytes(UnsafeRawBufferPointer(start: data, count: length))
            slice = copy
        }
        delegate.streamData(self, context: context, stream: stream, data: slice)
    }
}

@available(*, unavailable)
extension H2ServerConnection: Sendable {}

/// Header blocks we send on every stream, built once, passed to nghttp2 without copies.
private final class StaticFields: @unchecked Sendable {
    let nva: UnsafeMutablePointer<nghttp2_nv>
    let count: Int

    /// Immutable after init and never freed (process-lifetime constants).
    init(_ fields: [(StaticString, StaticString)]) {
        count = fields.count
        nva = .allocate(capacity: fields.count)
        let flags = UInt8(NGHTTP2_NV_FLAG_NO_COPY_NAME.rawValue | NGHTTP2_NV_FLAG_NO_COPY_VALUE.rawValue)
        for (index, (name, value)) in fields.enumerated() {
            (nva + index).initialize(to: nghttp2_nv(
                name: UnsafeMutablePointer(mutating: name.utf8Start), value: UnsafeMutablePointer(mutating: value.utf8Start),
                namelen: name.utf8CodeUnitCount, valuelen: value.utf8CodeUnitCount, flags: flags))
        }
    }

    static let responseHeaders = StaticFields([(":status", "200"), ("content-type", "application/grpc")])
    static let okTrailers = StaticFields([("grpc-status", "0")])
    static let trailersOnlyOK = StaticFields([(":status", "200"), ("content-type", "application/grpc"), ("grpc-status", "0")])
}

/// `fields` as an `nghttp2_nv` array valid during `body` (nghttp2 copies them).
private func withFields<R>(_ fields: [GRPCStreamEnd.Field], _ body: (UnsafePointer<nghttp2_nv>, Int) -> R) -> R {
    var bytes: [UInt8] = []
    var spans: [(Int, Int, Int, Int)] = []
    for field in fields {
        let nameStart = bytes.count
        bytes.append(contentsOf: field.name.utf8)
        let valueStart = bytes.count
        bytes.append(contentsOf: field.value.utf8)
        spans.append((nameStart, valueStart - nameStart, valueStart, bytes.count - valueStart))
    }
    bytes.append(0)  // never empty, so the base address exists
    return bytes.withUnsafeMutableBufferPointer { storage in
        let base = storage.baseAddress!
        let nva = spans.map { span in
            nghttp2_nv(
                name: base + span.0, value: base + span.2, namelen: span.1, valuelen: span.3,
                flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue))
        }
        return nva.withUnsafeBufferPointer { body($0.baseAddress!, $0.count) }
    }
}
