import CoreMetrics
import HTTPTypes
import NIOCore
import NIOHTTPTypes
import OverlayCore

/// The admin port's limits against clients that hold connections without using them: the same
/// deadlines (``ClientDeadlines``) and connection caps (``ConnectionCounts``) as the proxy's
/// client side (README "Proxy mode: limits"). `overlayd proxy` passes its own flags' values;
/// the other commands use these defaults (nginx's).
public struct AdminLimits: Sendable, Equatable {
    /// A connection's first request head must arrive within this (408 and close).
    public var headerTimeout: Duration = .seconds(60)
    /// Longest pause between two reads of a request body (close).
    public var bodyTimeout: Duration = .seconds(60)
    /// An idle connection between requests is closed after this.
    public var keepaliveTimeout: Duration = .seconds(75)
    /// Connections open at once; more are closed at accept.
    public var maxConnections = 10_000
    /// The same from one client address.
    public var maxConnectionsPerClient = 256

    public init() {}
}

/// The admin port's connection gate and deadlines: `overlayd_admin_client_limits_total{reason}`
/// and the gauge `overlayd_admin_client_connections`.
final class AdminConnectionLimits: Sendable {
    let deadlines: ClientDeadlines.Limits
    let gate: ConnectionGate

    init(_ limits: AdminLimits, factory: any MetricsFactory) {
        deadlines = .init(
            header: limits.headerTimeout.timeAmount.nanoseconds, body: limits.bodyTimeout.timeAmount.nanoseconds,
            keepalive: limits.keepaliveTimeout.timeAmount.nanoseconds)
        gate = ConnectionGate(
            maxTotal: limits.maxConnections, maxPerClient: limits.maxConnectionsPerClient,
            reasons: ["header_timeout", "body_timeout", "keepalive_timeout"],
            counter: "overlayd_admin_client_limits_total", gauge: "overlayd_admin_client_connections", factory: factory)
    }

    func count(_ reason: String) { gate.count(reason) }
    func admit(_ channel: any Channel) -> Bool { gate.admit(channel) }
}

/// Enforces ``AdminLimits`` on one admin connection. Sits after Hummingbird's HTTP/1 codec (its
/// `additionalChannelHandlers`), so it sees decoded requests and the responses going out; one
/// timer per connection, moved only when a deadline comes earlier. A header timeout on a
/// connection that has never been answered gets 408 and the close; every other expiry just
/// closes (the server may be answering).
final class AdminGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private let limits: AdminConnectionLimits
    private var deadlines: ClientDeadlines?
    private var timer: Scheduled<Void>?
    private var timerAt: Int64 = .max
    private var closing = false

    init(limits: AdminConnectionLimits) {
        self.limits = limits
    }

    private func now(_ context: ChannelHandlerContext) -> Int64 {
        Int64(truncatingIfNeeded: context.eventLoop.now.uptimeNanoseconds)
    }

    func channelActive(context: ChannelHandlerContext) {
        // Admitted here, once the server's pipeline is complete (a close during its setup would
        // fail the setup instead).
        context.fireChannelActive()
        guard limits.admit(context.channel) else {
            closing = true
            return
        }
        deadlines = ClientDeadlines(limits: limits.deadlines, now: now(context))
        arm(context)
    }

    func handlerRemoved(context: ChannelHandlerContext) { cancelTimer() }

    func channelInactive(context: ChannelHandlerContext) {
        cancelTimer()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if closing { return }
        let time = now(context)
        switch unwrapInboundIn(data) {
        case .head(let request):
            let length = request.headerFields[.contentLength].flatMap { Int64($0) } ?? 0
            deadlines?.head(hasBody: length > 0 || request.headerFields[.transferEncoding] != nil, now: time)
        case .body:
            deadlines?.bodyPart(now: time)
        case .end:
            deadlines?.requestEnd(now: time)
        }
        arm(context)
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(let response):
            deadlines?.responseHead(status: response.status.code)
        case .end:
            deadlines?.responseEnd(now: now(context))
            arm(context)
        case .body:
            break
        }
        context.write(data, promise: promise)
    }

    private func cancelTimer() {
        timer?.cancel()
        timer = nil
        timerAt = .max
    }

    private func arm(_ context: ChannelHandlerContext) {
        guard let deadline = deadlines?.deadline, deadline < timerAt else { return }
        timer?.cancel()
        timerAt = deadline
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(deadline: NIODeadline.uptimeNanoseconds(UInt64(max(0, deadline)))) {
            let (handler, context) = loopBound.value
            handler.fired(context)
        }
    }

    private func fired(_ context: ChannelHandlerContext) {
        timer = nil
        timerAt = .max
        guard let deadlines, let expiry = deadlines.expired(now: now(context)) else {
            arm(context)
            return
        }
        closing = true
        switch expiry {
        case .headerTimeout:
            limits.count("header_timeout")
            if deadlines.outstanding == 0 {
                let head = HTTPResponse(status: .requestTimeout, headerFields: [.connection: "close", .contentLength: "0"])
                context.write(wrapOutboundOut(.head(head)), promise: nil)
                let channel = context.channel
                context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
                return
            }
        case .bodyTimeout:
            limits.count("body_timeout")
        case .keepaliveTimeout:
            limits.count("keepalive_timeout")
        }
        context.close(promise: nil)
    }
}
