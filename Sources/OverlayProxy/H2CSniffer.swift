import NIOCore
import NIOExtras

/// The first handler of a client connection: it reads until it can tell whether the client
/// speaks HTTP/2 by prior knowledge (h2c: the connection preface `PRI * HTTP/2.0…`, RFC 9113 §3.3)
/// or HTTP/1.x, has the matching pipeline built after itself, hands on what it read, and leaves.
/// At most the 24 bytes of the preface are held.
final class H2CSniffer: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    private var buffered: ByteBuffer?
    private let http1: (any Channel) throws -> Void
    private let http2: (any Channel) throws -> Void
    /// Until the protocol is known (`--client-header-timeout`): then the connection is closed.
    private let timeout: TimeAmount?
    private let onTimeout: () -> Void
    private var timer: Scheduled<Void>?

    init(
        timeout: TimeAmount? = nil, onTimeout: @escaping () -> Void = {},
        http1: @escaping (any Channel) throws -> Void, http2: @escaping (any Channel) throws -> Void
    ) {
        self.timeout = timeout
        self.onTimeout = onTimeout
        self.http1 = http1
        self.http2 = http2
    }

    func handlerAdded(context: ChannelHandlerContext) {
        guard let timeout else { return }
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(in: timeout) {
            // A connection that has not told its protocol (it sent nothing, or a few bytes).
            let (sniffer, context) = loopBound.value
            sniffer.timer = nil
            sniffer.onTimeout()
            context.close(promise: nil)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
    }

    /// Whether `bytes` begin the preface (true), cannot (false), or are too few to tell (nil).
    static func isPreface(_ bytes: ByteBufferView) -> Bool? {
        let count = min(bytes.count, preface.count)
        guard bytes.prefix(count).elementsEqual(preface.prefix(count)) else { return false }
        return count == preface.count ? true : nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var chunk = unwrapInboundIn(data)
        if buffered == nil {
            buffered = chunk
        } else {
            buffered!.writeBuffer(&chunk)
        }
        guard let http2 = Self.isPreface(buffered!.readableBytesView) else { return }
        let bytes = buffered!
        buffered = nil
        do {
            if http2 { try self.http2(context.channel) } else { try http1(context.channel) }
        } catch {
            context.close(promise: nil)
            return
        }
        context.fireChannelRead(wrapInboundOut(bytes))
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        buffered = nil
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, case .inputClosed = event {
            // The client sent (part of) nothing and left.
            context.close(promise: nil)
            return
        }
        if event is ChannelShouldQuiesceEvent {
            // Shutdown: no request has begun on this connection (browsers open spare ones).
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }
}

/// Client connections allow half-closure (so that HTTP/1's proxy handler can finish the
/// responses owed, ``RequestSequencer``); where nothing else reacts to the client's FIN (before the protocol is
/// known, and on an HTTP/2 connection, whose streams are reset by the close), it closes the
/// connection.
final class CloseOnInputClosed: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, case .inputClosed = event {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }
}
