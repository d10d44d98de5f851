import NIOCore
import Synchronization

/// The client connection closed while its request was in flight.
struct ClientGone: Error {}

/// Tells the request in flight on a client connection that the connection closed (the client
/// aborted), so that its upstream request is cancelled at once rather than at the next write.
///
/// One close callback per connection (not per request: a keep-alive connection serves many), and
/// the connection's entry is dropped when it closes.
final class ConnectionWatch: Sendable {
    private let current = Mutex<[ObjectIdentifier: @Sendable () -> Void]>([:])
    private let watched = Mutex<Set<ObjectIdentifier>>([])

    /// Calls `onClose` if `channel` closes before ``unregister(_:)`` (at once if it is closed).
    func register(_ channel: any Channel, onClose: @escaping @Sendable () -> Void) -> ObjectIdentifier {
        let id = ObjectIdentifier(channel)
        let first = watched.withLock { $0.insert(id).inserted }
        current.withLock { $0[id] = onClose }
        if first {
            channel.closeFuture.whenComplete { [self] _ in
                let callback = current.withLock { $0.removeValue(forKey: id) }
                _ = watched.withLock { $0.remove(id) }
                callback?()
            }
        }
        if !channel.isActive { onClose() }
        return id
    }

    /// The client closed its sending side (FIN; the server allows half-closure, so the channel
    /// stays open): like nginx, a request still in flight counts that as an abort.
    func inputClosed(_ channel: any Channel) {
        let callback = current.withLock { $0.removeValue(forKey: ObjectIdentifier(channel)) }
        callback?()
    }

    /// The request is over: its callback is dropped.
    func unregister(_ id: ObjectIdentifier) {
        _ = current.withLock { $0.removeValue(forKey: id) }
    }
}

/// Reports a client's FIN (`ChannelEvent.inputClosed`) to the ``ConnectionWatch``; added to every
/// client connection's pipeline.
final class InputClosedObserver: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    private let watch: ConnectionWatch

    init(watch: ConnectionWatch) {
        self.watch = watch
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed {
            watch.inputClosed(context.channel)
        }
        context.fireUserInboundEventTriggered(event)
    }
}
