/// The deadlines of one HTTP/1.1 client connection of the proxy, as nginx keeps them: the whole
/// request head within `header` of the connection's start (`--client-header-timeout`), at most
/// `body` between two reads of a request body (`--client-body-timeout`), and at most `keepalive`
/// idle between a response's end and the next request (`--keepalive-timeout`). While a response
/// is awaited no client deadline runs (the upstream's timeouts apply).
///
/// Pure: times are a monotonic clock's nanoseconds passed in. The I/O side keeps one timer at
/// ``deadline`` and asks ``expired(now:)`` when it fires; most events only move the deadline
/// later, so a request costs no timer operation.
public struct ClientDeadlines: Sendable, Equatable {
    public struct Limits: Sendable, Equatable {
        public var header: Int64
        public var body: Int64
        public var keepalive: Int64

        /// Nanoseconds each.
        public init(header: Int64, body: Int64, keepalive: Int64) {
            self.header = header
            self.body = body
            self.keepalive = keepalive
        }
    }

    public enum Phase: Sendable, Equatable {
        /// No request is being read: the first (header deadline) or a later one (keepalive).
        case awaitingHead(first: Bool)
        /// A request body is being read.
        case readingBody
        /// Every request read is waiting for (or getting) its response.
        case awaitingResponse
    }

    public enum Expiry: Sendable, Equatable {
        /// The first request's head did not arrive in time: 408, then close.
        case headerTimeout
        /// A request body stalled: 408 (when no response has begun), then close.
        case bodyTimeout
        /// Idle between requests: close without a word.
        case keepaliveTimeout
    }

    public let limits: Limits
    public private(set) var phase: Phase
    /// When the current phase times out (nil: no client deadline runs now).
    public private(set) var deadline: Int64?
    /// Requests whose response has not ended (more than one when the client pipelines).
    public private(set) var outstanding = 0
    /// The oldest outstanding response has sent its head (a status of 200 or more).
    public private(set) var responseStarted = false

    public init(limits: Limits, now: Int64) {
        self.limits = limits
        phase = .awaitingHead(first: true)
        deadline = now &+ limits.header
    }

    /// A request head arrived; `hasBody`: it announces a body (a length above 0, or chunked).
    public mutating func head(hasBody: Bool, now: Int64) {
        outstanding += 1
        if hasBody {
            phase = .readingBody
            deadline = now &+ limits.body
        } else {
            phase = .awaitingResponse
            deadline = nil
        }
    }

    /// Part of a request body arrived.
    public mutating func bodyPart(now: Int64) {
        if phase == .readingBody { deadline = now &+ limits.body }
    }

    /// The request (its body) ended.
    public mutating func requestEnd(now: Int64) {
        guard phase == .readingBody else { return }
        phase = .awaitingResponse
        deadline = nil
    }

    /// The response head went out (informational ones, 1xx, do not count).
    public mutating func responseHead(status: Int) {
        if status >= 200 { responseStarted = true }
    }

    /// A response ended: with nothing else outstanding, the keepalive deadline starts.
    public mutating func responseEnd(now: Int64) {
        outstanding = max(0, outstanding - 1)
        responseStarted = false
        if outstanding == 0, phase == .awaitingResponse {
            phase = .awaitingHead(first: false)
            deadline = now &+ limits.keepalive
        }
    }

    /// What has expired at `now` (nil: nothing yet; the timer goes again at ``deadline``).
    public func expired(now: Int64) -> Expiry? {
        guard let deadline, now >= deadline else { return nil }
        switch phase {
        case .awaitingHead(first: true): return .headerTimeout
        case .awaitingHead(first: false): return .keepaliveTimeout
        case .readingBody: return .bodyTimeout
        case .awaitingResponse: return nil
        }
    }

    /// Whether the client may still be told 408 (no response of this connection has begun, and
    /// none is owed before it).
    public var mayAnswer: Bool { !responseStarted && outstanding <= 1 }
}

/// Open client connections, in total and per client address, against their caps
/// (`--max-connections`, `--max-connections-per-client`). Pure; the caller serialises access.
public struct ConnectionCounts: Sendable, Equatable {
    public enum Refusal: String, Sendable, Equatable {
        case maxConnections = "max_connections"
        case perClient = "per_client_connections"
    }

    public let maxTotal: Int
    public let maxPerClient: Int
    public private(set) var total = 0
    public private(set) var perClient: [String: Int] = [:]

    public init(maxTotal: Int, maxPerClient: Int) {
        self.maxTotal = maxTotal
        self.maxPerClient = maxPerClient
    }

    /// Counts a new connection from `client` (its address), or says why it is refused (then
    /// nothing is counted).
    public mutating func admit(_ client: String) -> Refusal? {
        if total >= maxTotal { return .maxConnections }
        let current = perClient[client, default: 0]
        if current >= maxPerClient { return .perClient }
        total += 1
        perClient[client] = current + 1
        return nil
    }

    /// An admitted connection from `client` closed.
    public mutating func release(_ client: String) {
        guard let current = perClient[client] else { return }
        total -= 1
        if current <= 1 { perClient[client] = nil } else { perClient[client] = current - 1 }
    }
}
