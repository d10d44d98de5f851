/// HTTP/1.1 pipelining on one client connection of the proxy: requests are served one at a time,
/// in order, and a shutdown lets the request in flight finish. It keeps the rules of NIO's
/// `HTTPServerPipelineHandler` as state of the proxy's own handler: that handler was one more
/// pipeline hop (with a cast of the part) for every request part, response part, flush and read.
///
/// - A request's parts are delivered as they come while no response is owed for an earlier one.
///   Once a request has been read to its end and its response has not ended, whatever the client
///   sends after it (the next requests' parts, a malformed request's error, its half-close) waits
///   in the queue, and reads from the socket are held (``read()``). The response's end
///   (``responseEnded()``) releases the queue in order (``nextQueued()``), up to the next request
///   whose response is owed, and then the held read (``takeHeldRead()``).
/// - Shutdown (``quiesce()``): an idle connection closes at once. Otherwise the request in flight
///   is read to its end and answered, with `Connection: close` (``closesAfterResponse``), and the
///   connection closes once that response has been written; nothing after it is served or read.
///
/// Pure: the events are the handler's (`Event`), kept in order and handed back.
public struct RequestSequencer<Event> {
    /// What an event is, for the rules above.
    public enum Kind: Sendable, Equatable {
        case head, body, end
        /// A malformed request (the decoder's error): answered in turn, after the responses owed.
        case malformed
        /// The client's half-close.
        case halfClose
    }

    /// What to do with an event now.
    public enum Disposition: Sendable, Equatable {
        /// Hand it to the proxy now.
        case deliver
        /// Hand it to the proxy, then close the connection (a shutdown's last request was read).
        case deliverThenClose
        /// Queued (handed back later by ``nextQueued()``) or dropped (after a shutdown's last
        /// request): nothing to do now.
        case hold
    }

    @usableFromInline enum Exchange: Sendable, Equatable {
        case idle
        /// A request is being read and its response has not ended.
        case requestAndResponseEndPending
        /// The request was read to its end; its response has not ended.
        case responseEndPending
        /// The response ended before its request was read to its end.
        case requestEndPending
    }

    @usableFromInline enum Lifecycle: Sendable, Equatable {
        case accepting
        case quiescingWaitingForRequestEnd
        case quiescingLastRequestEndReceived
        case quiescingCompleted
    }

    @usableFromInline var exchange = Exchange.idle
    @usableFromInline var lifecycle = Lifecycle.accepting
    @usableFromInline var queue: [(kind: Kind, event: Event)] = []
    @usableFromInline var queueHead = 0
    @usableFromInline var readHeld = false

    @inlinable public init() {}

    /// Events waiting in the queue.
    @inlinable public var queuedCount: Int { queue.count - queueHead }

    /// A shutdown has begun: the response in flight must say `Connection: close`.
    @inlinable public var closesAfterResponse: Bool { lifecycle != .accepting }

    /// An event from the client (in the order the connection produced them).
    @inlinable public mutating func receive(_ event: Event, kind: Kind) -> Disposition {
        switch kind {
        case .head, .body, .end:
            if lifecycle == .quiescingLastRequestEndReceived || lifecycle == .quiescingCompleted { return .hold }
            if queuedCount > 0 || exchange == .responseEndPending {
                queue.append((kind, event))
                return .hold
            }
            return delivered(kind)
        case .malformed:
            if exchange == .responseEndPending {
                queue.append((kind, event))
                return .hold
            }
            return delivered(kind)
        case .halfClose:
            if exchange == .responseEndPending && queuedCount > 0 {
                queue.append((kind, event))
                return .hold
            }
            return .deliver
        }
    }

    /// A response's end is being written: whether the connection closes once it is written. The
    /// queue may be released after it (``nextQueued()``).
    @inlinable public mutating func responseEnded() -> Bool {
        var close = false
        if lifecycle == .quiescingLastRequestEndReceived
            || (lifecycle == .quiescingWaitingForRequestEnd && exchange == .responseEndPending)
        {
            lifecycle = .quiescingCompleted
            close = true
        }
        switch exchange {
        case .responseEndPending: exchange = .idle
        case .requestAndResponseEndPending: exchange = .requestEndPending
        case .idle, .requestEndPending: break  // a response nobody asked for: nothing to release
        }
        return close
    }

    /// The next queued event to hand to the proxy now, with what to do with it; nil while a
    /// response is owed (or the queue is empty).
    @inlinable public mutating func nextQueued() -> (event: Event, disposition: Disposition)? {
        guard exchange != .responseEndPending, queueHead < queue.count else { return nil }
        let (kind, event) = queue[queueHead]
        queueHead += 1
        if queueHead == queue.count {
            queue.removeAll(keepingCapacity: true)
            queueHead = 0
        }
        if kind == .halfClose {
            readHeld = false
            return (event, .deliver)
        }
        return (event, delivered(kind))
    }

    /// The proxy asks to read from the socket: whether the read goes on now (else it is held
    /// until a response ends, or dropped after a shutdown's last request).
    @inlinable public mutating func read() -> Bool {
        switch lifecycle {
        case .quiescingLastRequestEndReceived, .quiescingCompleted:
            return false
        case .accepting, .quiescingWaitingForRequestEnd:
            if exchange == .responseEndPending {
                readHeld = true
                return false
            }
            return true
        }
    }

    /// After the queue was released: whether the held read goes on now.
    @inlinable public mutating func takeHeldRead() -> Bool {
        guard readHeld, exchange != .responseEndPending else { return false }
        switch lifecycle {
        case .quiescingLastRequestEndReceived, .quiescingCompleted:
            return false
        case .accepting, .quiescingWaitingForRequestEnd:
            readHeld = false
            return true
        }
    }

    /// The handler leaves the pipeline (the connection became a tunnel): whether a read it held
    /// goes on now, and whether a shutdown under way is passed on to what follows it. The queue is
    /// dropped (after an upgrade request the decoder reads nothing more as HTTP).
    @inlinable public mutating func removed() -> (read: Bool, quiesce: Bool) {
        let read = readHeld
        readHeld = false
        dropQueue()
        let quiesce = lifecycle == .quiescingLastRequestEndReceived || lifecycle == .quiescingWaitingForRequestEnd
        return (read, quiesce)
    }

    /// Shutdown: whether the connection closes now (nothing in flight); otherwise it closes after
    /// the response to the request in flight (``responseEnded()``) or, if that response has
    /// already ended, once the request has been read to its end.
    @inlinable public mutating func quiesce() -> Bool {
        guard lifecycle == .accepting else { return false }
        switch exchange {
        case .responseEndPending:
            lifecycle = .quiescingLastRequestEndReceived
            dropQueue()
            return false
        case .idle:
            lifecycle = .quiescingCompleted
            dropQueue()
            return true
        case .requestEndPending, .requestAndResponseEndPending:
            lifecycle = .quiescingWaitingForRequestEnd
            return false
        }
    }

    /// The state after delivering an event of `kind`.
    @inlinable mutating func delivered(_ kind: Kind) -> Disposition {
        switch kind {
        case .head:
            if exchange == .idle { exchange = .requestAndResponseEndPending }
        case .end:
            switch exchange {
            case .requestAndResponseEndPending: exchange = .responseEndPending
            case .requestEndPending: exchange = .idle
            case .idle, .responseEndPending: break
            }
            if lifecycle == .quiescingWaitingForRequestEnd {
                lifecycle = .quiescingLastRequestEndReceived
                dropQueue()
            }
            if lifecycle == .quiescingLastRequestEndReceived && exchange == .idle {
                lifecycle = .quiescingCompleted
                return .deliverThenClose
            }
        case .malformed:
            // Its answer (a 400) is the response owed from now on.
            if exchange == .idle || exchange == .requestEndPending { exchange = .responseEndPending }
        case .body, .halfClose:
            break
        }
        return .deliver
    }

    @inlinable mutating func dropQueue() {
        queue.removeAll()
        queueHead = 0
    }
}
