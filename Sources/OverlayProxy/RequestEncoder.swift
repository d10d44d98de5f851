import NIOCore
import NIOHTTP1

/// The upstream connection's HTTP/1.1 request encoder: NIO's `HTTPRequestEncoder`'s framing, with
/// the head's block written in one buffer sized once (``FieldBlock``; NIO's encoder wrote it field
/// by field through `ByteBuffer`'s checked writes) and a chunk's CRLF sent with what follows it.
/// It tells the connection's response decoder of every request head it writes (the decoder needs
/// the method to frame the response: a response to HEAD has no body).
///
/// The framing rules are that encoder's: `TRACE` has no body (`Content-Length` and
/// `Transfer-Encoding` are dropped); a head with `Content-Length` keeps it and loses any
/// `Transfer-Encoding`; without it, `POST`, `PUT` and `PATCH` are sent chunked on HTTP/1.1 (the
/// field set to `chunked`), and other methods are chunked only when their first
/// `Transfer-Encoding` value is `chunked`.
final class RequestEncoder: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = HTTPClientRequestPart
    typealias OutboundOut = IOData

    private var chunked = false
    private var chunks = ChunkFraming()
    /// The decoder of the responses to the requests written here (nil: none, in tests).
    private let responses: ResponseDecoding?
    private var context: ChannelHandlerContext?

    init(responses: ResponseDecoding? = nil) { self.responses = responses }

    /// The channel's allocator, read once (each read goes through the channel's getters).
    private var allocator = ByteBufferAllocator()

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        allocator = context.channel.allocator
    }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    /// The proxy's request head, written from this handler's place in the pipeline: no pipeline
    /// hop (with its cast) from the handler after it, and its fields never become `HTTPHeaders`.
    func writeHead(_ request: UpstreamRequest) {
        guard let context else { return }
        responses?.driver.requestWritten(HTTPRequestHead(version: .http1_1, method: request.method, uri: request.uri))
        let bytes = encodeHead(
            method: request.method, uri: request.uri, version: .http1_1, fields: FieldBlock(request.fields),
            allocator: allocator)
        context.write(wrapOutboundOut(.byteBuffer(bytes)), promise: nil)
    }

    /// The request's end, written as ``writeHead(_:)`` is (the last chunk of a chunked body;
    /// nothing otherwise).
    func writeEnd(_ trailers: HTTPHeaders?) {
        guard let context, let last = encodeEnd(trailers, allocator: allocator) else { return }
        context.write(wrapOutboundOut(.byteBuffer(last)), promise: nil)
    }

    /// The body of the request whose head was written last is framed chunked (its end is the
    /// last chunk; any other end is nothing on the wire).
    var bodyIsChunked: Bool { chunked }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(let head):
            responses?.driver.requestWritten(head)
            context.write(wrapOutboundOut(.byteBuffer(encodeHead(head, allocator: allocator))), promise: promise)
        case .body(let part):
            let count = part.readableBytes
            if chunked && count > 0 {
                let sizeLine = chunks.sizeLine(count, allocator: allocator)
                context.write(wrapOutboundOut(.byteBuffer(sizeLine)), promise: nil)
            }
            context.write(wrapOutboundOut(part), promise: promise)
        case .end(let trailers):
            if let last = encodeEnd(trailers, allocator: allocator) {
                context.write(wrapOutboundOut(.byteBuffer(last)), promise: promise)
            } else if let promise {
                context.write(wrapOutboundOut(.byteBuffer(allocator.buffer(capacity: 0))), promise: promise)
            }
        }
    }

    /// The head's block, and the body's framing from here on.
    func encodeHead(_ head: HTTPRequestHead, allocator: ByteBufferAllocator) -> ByteBuffer {
        encodeHead(method: head.method, uri: head.uri, version: head.version, fields: FieldBlock(head.headers), allocator: allocator)
    }

    private func encodeHead<Fields>(
        method: HTTPMethod, uri: String, version: HTTPVersion, fields: FieldBlock<Fields>, allocator: ByteBufferAllocator
    ) -> ByteBuffer {
        var fields = fields
        let is11 = version.major == 1 && version.minor >= 1
        switch method {
        case .TRACE:
            fields.dropLength = fields.hasLength
            fields.dropCoding = fields.hasCoding
            chunked = false
        case .POST, .PUT, .PATCH:
            if fields.hasLength {
                fields.dropCoding = fields.hasCoding
                chunked = false
            } else if is11 {
                fields.dropCoding = fields.hasCoding
                fields.addChunked = true
                chunked = true
            } else {
                chunked = false
            }
        default:
            if fields.hasLength {
                fields.dropCoding = fields.hasCoding
                chunked = false
            } else {
                chunked = is11 && fields.firstCodingIsChunked
            }
        }
        chunks = ChunkFraming()
        let name = method.rawValue
        var buffer = allocator.buffer(capacity: name.utf8.count + uri.utf8.count + 12 + fields.capacity)
        buffer.writeString(name)
        buffer.writeInteger(UInt8(ascii: " "))
        buffer.writeString(uri)
        switch (version.major, version.minor) {
        case (1, 1): buffer.writeStaticString(" HTTP/1.1\r\n")
        case (1, 0): buffer.writeStaticString(" HTTP/1.0\r\n")
        default: buffer.writeString(" HTTP/\(version.major).\(version.minor)\r\n")
        }
        fields.write(to: &buffer)
        return buffer
    }

    /// The last chunk and the trailers of a chunked body; nil otherwise.
    func encodeEnd(_ trailers: HTTPHeaders?, allocator: ByteBufferAllocator) -> ByteBuffer? {
        defer { chunked = false }
        guard chunked else { return nil }
        return chunks.lastChunk(trailers: trailers, allocator: allocator)
    }
}

/// A request head for the upstream as the proxy builds it (HTTP/1.1): its fields stay an array
/// until ``RequestEncoder`` writes them. NIO's `HTTPHeaders` is read element by element through
/// calls into NIO's module, each retaining the field's two strings.
struct UpstreamRequest {
    var method: HTTPMethod
    var uri: String
    var fields: [(name: String, value: String)]
}
