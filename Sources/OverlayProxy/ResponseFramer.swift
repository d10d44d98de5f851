import NIOCore
import NIOHTTP1
import OverlayDecisions

/// An HTTP/1.1 client connection's responses as bytes: the head's block and the body's framing,
/// written by the proxy's handler straight to the socket's end of the pipeline. NIO's response
/// encoder, which did this before, was one more pipeline hop (with a cast of the part) for every
/// response part, built each head field by field through `ByteBuffer`'s checked writes, and wrote
/// every chunk of a chunked body as three buffers.
///
/// The framing rules are that encoder's (RFC 9112 §6):
/// - no body after a 1xx, 204 or 304, nor in answer to `CONNECT`: `Content-Length` and
///   `Transfer-Encoding` are dropped from the head;
/// - otherwise a head with `Content-Length` keeps it (and loses any `Transfer-Encoding`); one
///   without gets `Transfer-Encoding: chunked` on HTTP/1.1 (replacing any other coding), and
///   nothing on HTTP/1.0 (the close ends the body);
/// - a response to `HEAD` keeps its head as it would be for `GET`, and no body bytes are written;
/// - a 1xx other than 101 is not the response: the framing of the one that follows it is decided
///   by that one.
///
/// A chunk's closing CRLF goes out with what follows it (the next chunk's size line, or the last
/// chunk), so a chunk costs one small buffer besides its data.
struct ResponseFramer {
    /// The body of the response in progress is chunked.
    private(set) var chunked = false
    /// The response in progress has no body (HEAD): body bytes are dropped.
    private(set) var suppressesBody = false
    private var chunks = ChunkFraming()

    /// The head's bytes (status line, fields with the framing applied, blank line), and the body's
    /// framing from here on; `method` is the request's.
    mutating func head(_ head: HTTPResponseHead, method: HTTPMethod, allocator: ByteBufferAllocator) -> ByteBuffer {
        self.head(version: head.version, status: head.status, fields: FieldBlock(head.headers), method: method, allocator: allocator)
    }

    /// The same for a head the proxy built (its fields a list).
    mutating func head(_ head: ProxyResponseHead, method: HTTPMethod, allocator: ByteBufferAllocator) -> ByteBuffer {
        self.head(version: head.version, status: head.status, fields: FieldBlock(head.fields), method: method, allocator: allocator)
    }

    private mutating func head<Fields>(
        version: HTTPVersion, status: HTTPResponseStatus, fields: FieldBlock<Fields>, method: HTTPMethod,
        allocator: ByteBufferAllocator
    ) -> ByteBuffer {
        let code = Int(status.code)
        let informational = code >= 100 && code < 200 && code != 101
        let mayHaveBody = !(code >= 100 && code < 200) && code != 204 && code != 304
        let hasBody = mayHaveBody && method != .CONNECT
        var fields = fields
        let addChunked = hasBody && !fields.hasLength && version.major == 1 && version.minor >= 1
        if !informational {
            suppressesBody = method == .HEAD || method == .CONNECT
            chunked = addChunked && !suppressesBody
            chunks = ChunkFraming()
        }
        fields.dropLength = fields.hasLength && !hasBody
        fields.dropCoding = fields.hasCoding && (!hasBody || fields.hasLength || addChunked)  // chunked is set again
        fields.addChunked = addChunked
        return Self.block(version: version, status: status, fields, allocator: allocator)
    }

    /// What to write for a body part: its chunk's size line (after the previous chunk's CRLF; nil
    /// when the body is not chunked), then the part itself; nil when nothing is written (an empty
    /// part, or a response without a body).
    mutating func body(_ part: ByteBuffer, allocator: ByteBufferAllocator) -> (sizeLine: ByteBuffer?, part: ByteBuffer)? {
        let count = part.readableBytes
        guard !suppressesBody, count > 0 else { return nil }
        guard chunked else { return (nil, part) }
        return (chunks.sizeLine(count, allocator: allocator), part)
    }

    /// A body part held in an array, framed, in one buffer; nil when nothing is to be written
    /// (empty, or a response without a body).
    mutating func bodyBytes(_ bytes: [UInt8], allocator: ByteBufferAllocator) -> ByteBuffer? {
        guard !suppressesBody, !bytes.isEmpty else { return nil }
        guard chunked else { return allocator.buffer(bytes: bytes) }
        var buffer = chunks.sizeLine(bytes.count, allocator: allocator, reserving: bytes.count)
        buffer.writeBytes(bytes)
        return buffer
    }

    /// The response's end: the last chunk of a chunked body (after the previous chunk's CRLF); nil
    /// when nothing is to be written.
    mutating func end(allocator: ByteBufferAllocator) -> ByteBuffer? {
        defer {
            chunked = false
            suppressesBody = false
        }
        guard chunked else { return nil }
        return chunks.lastChunk(trailers: nil, allocator: allocator)
    }

    /// A whole response without a body, for answers written before (or instead of) the proxy's
    /// handler: the status, `Content-Length: 0`, `Connection: close`.
    static func closingResponse(status: HTTPResponseStatus, allocator: ByteBufferAllocator) -> ByteBuffer {
        let fields: [(name: String, value: String)] = [("content-length", "0"), ("connection", "close")]
        return block(version: .http1_1, status: status, FieldBlock(fields), allocator: allocator)
    }

    /// The status line and the fields.
    private static func block<Fields>(
        version: HTTPVersion, status: HTTPResponseStatus, _ fields: FieldBlock<Fields>, allocator: ByteBufferAllocator
    ) -> ByteBuffer {
        let reason = status.reasonPhrase
        var buffer = allocator.buffer(capacity: 16 + reason.utf8.count + fields.capacity)
        switch (version.major, version.minor) {
        case (1, 1): buffer.writeStaticString("HTTP/1.1 ")
        case (1, 0): buffer.writeStaticString("HTTP/1.0 ")
        default: buffer.writeString("HTTP/\(version.major).\(version.minor) ")
        }
        let code = Int(status.code)
        if code >= 100 && code <= 999 {
            buffer.writeInteger(UInt8(truncatingIfNeeded: 0x30 + code / 100))
            buffer.writeInteger(UInt8(truncatingIfNeeded: 0x30 + code / 10 % 10))
            buffer.writeInteger(UInt8(truncatingIfNeeded: 0x30 + code % 10))
        } else {
            buffer.writeString(String(code))
        }
        buffer.writeInteger(UInt8(ascii: " "))
        buffer.writeString(reason)
        buffer.writeStaticString("\r\n")
        fields.write(to: &buffer)
        return buffer
    }
}

/// A message head's fields as bytes (HTTP/1.1 requests and responses): looked at once for their
/// size and framing fields, then written into one buffer, each string's bytes copied in one go,
/// with `Content-Length` / `Transfer-Encoding` left out or `Transfer-Encoding: chunked` added as
/// the framing decided, and the blank line. The fields are NIO's `HTTPHeaders` or, for heads the
/// proxy builds itself, an array (whose elements are read without a call into NIO's module).
struct FieldBlock<Fields: Collection> where Fields.Element == (name: String, value: String) {
    let headers: Fields
    /// The bytes of the fields as they stand (each `name: value` and its CRLF).
    private(set) var fieldsSize = 0
    /// The fields include `Content-Length` / `Transfer-Encoding` (any case of the name).
    private(set) var hasLength = false
    private(set) var hasCoding = false
    /// The first `Transfer-Encoding` value is exactly `chunked`.
    private(set) var firstCodingIsChunked = false
    var dropLength = false
    var dropCoding = false
    var addChunked = false

    init(_ headers: Fields) {
        self.headers = headers
        var size = 0
        for (name, value) in headers {
            let count = name.utf8.count
            size &+= count &+ value.utf8.count &+ 4
            if count == 14 {
                hasLength = hasLength || ASCIICase.equals(name, lowercased: "content-length")
            } else if count == 17, ASCIICase.equals(name, lowercased: "transfer-encoding") {
                if !hasCoding { firstCodingIsChunked = value == "chunked" }
                hasCoding = true
            }
        }
        fieldsSize = size
    }

    /// What the fields, a chunked field and the blank line take at most.
    var capacity: Int { fieldsSize + 30 }

    func write(to buffer: inout ByteBuffer) {
        let dropping = dropLength || dropCoding
        let headers = self.headers
        let dropLength = self.dropLength
        let dropCoding = self.dropCoding
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: fieldsSize) { out in
            var at = 0
            for (name, value) in headers {
                if dropping {
                    switch name.utf8.count {
                    case 14 where dropLength && ASCIICase.equals(name, lowercased: "content-length"): continue
                    case 17 where dropCoding && ASCIICase.equals(name, lowercased: "transfer-encoding"): continue
                    default: break
                    }
                }
                Self.copy(name, to: out, at: &at)
                out[at] = UInt8(ascii: ":")
                out[at &+ 1] = UInt8(ascii: " ")
                at &+= 2
                Self.copy(value, to: out, at: &at)
                out[at] = UInt8(ascii: "\r")
                out[at &+ 1] = UInt8(ascii: "\n")
                at &+= 2
            }
            return at
        }
        if addChunked { buffer.writeStaticString("transfer-encoding: chunked\r\n") }
        buffer.writeStaticString("\r\n")
    }

    @inline(__always) private static func copy(_ string: String, to out: UnsafeMutableRawBufferPointer, at: inout Int) {
        // A native string's bytes are read in place (`withUTF8` needs a mutable copy: a retain).
        let copied: Void? = string.utf8.withContiguousStorageIfAvailable { bytes in
            guard let base = bytes.baseAddress, bytes.count > 0 else { return }
            (out.baseAddress! + at).copyMemory(from: base, byteCount: bytes.count)
            at &+= bytes.count
        }
        if copied == nil {
            for byte in string.utf8 {
                out[at] = byte
                at &+= 1
            }
        }
    }
}

/// A chunked body's framing (RFC 9112 §7.1), for both directions: each chunk's CRLF is sent with
/// what follows it (the next chunk's size line, or the last chunk), so a chunk costs one small
/// buffer besides its data; the bytes on the wire are the same.
struct ChunkFraming {
    /// A chunk's data was written: its CRLF is owed.
    private var open = false

    /// The size line of a chunk of `count` (> 0) bytes, after the previous chunk's CRLF, in a buffer
    /// with room for `reserving` more bytes (the chunk's data, when it is copied in).
    mutating func sizeLine(_ count: Int, allocator: ByteBufferAllocator, reserving: Int = 0) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: 20 + reserving)
        if open { buffer.writeStaticString("\r\n") }
        let digits: StaticString = "0123456789abcdef"
        var shift = max(0, (Int.bitWidth - count.leadingZeroBitCount + 3) / 4 * 4 - 4)
        digits.withUTF8Buffer { table in
            while shift >= 0 {
                buffer.writeInteger(table[(count >> shift) & 0xF])
                shift -= 4
            }
        }
        buffer.writeStaticString("\r\n")
        open = true
        return buffer
    }

    /// The last chunk, with `trailers` (or none), after the previous chunk's CRLF; the framing
    /// starts over.
    mutating func lastChunk(trailers: HTTPHeaders?, allocator: ByteBufferAllocator) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: 16)
        if open { buffer.writeStaticString("\r\n") }
        buffer.writeStaticString("0\r\n")
        if let trailers {
            FieldBlock(trailers).write(to: &buffer)  // the fields and the blank line
        } else {
            buffer.writeStaticString("\r\n")
        }
        open = false
        return buffer
    }
}

/// A response head as the proxy builds it for its client: its fields stay a list until they are
/// written (NIO's `HTTPHeaders` is read element by element through calls into NIO's module, each
/// retaining the field's two strings). An HTTP/2 stream's codec takes it as `HTTPResponseHead`.
struct ProxyResponseHead {
    var version: HTTPVersion
    var status: HTTPResponseStatus
    var fields: [(name: String, value: String)] = []

    var httpResponseHead: HTTPResponseHead {
        HTTPResponseHead(version: version, status: status, headers: HTTPHeaders(fields.map { ($0.name, $0.value) }))
    }

    /// Whether the fields include `name` (lower-case), in any case.
    func contains(_ name: StaticString) -> Bool {
        fields.contains { ASCIICase.equals($0.name, lowercased: name) }
    }

    /// Whether the connection stays open after this response by its version and `Connection`
    /// fields, by NIO's rule for `HTTPResponseHead.isKeepAlive`: `close` closes; `keep-alive`
    /// keeps it open unless any other of the two was seen before; neither: HTTP/1.1 keeps it open.
    var isKeepAlive: Bool {
        var seen: Bool?  // nil: neither; true: keep-alive; false: close
        for field in fields where ASCIICase.equals(field.name, lowercased: "connection") {
            for token in field.value.split(separator: ",") {
                var trimmed = token[...]
                while let first = trimmed.first, first == " " || first == "\t" { trimmed = trimmed.dropFirst() }
                while let last = trimmed.last, last == " " || last == "\t" { trimmed = trimmed.dropLast() }
                if ASCIICase.equals(String(trimmed), lowercased: "close") {
                    seen = false
                } else if ASCIICase.equals(String(trimmed), lowercased: "keep-alive") {
                    seen = seen == nil
                }
            }
        }
        return seen ?? (version.major == 1 && version.minor >= 1)
    }
}
