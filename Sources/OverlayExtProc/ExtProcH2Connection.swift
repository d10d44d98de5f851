import GRPCTransport
import NIOCore
import OverlayDecisions
import OverlayRuntime

/// The ext_proc streams of one connection carried by libnghttp2 (``H2ServerConnection``): routes
/// the transport's stream events to one ``ExtProcStream`` each and carries their answers back.
final class ExtProcH2Connection: H2StreamDelegate, ExtProcConnection {
    private let shared: ExtProcShared
    private var streams: [Int32: ExtProcStream] = [:]
    /// The transport owns this object; set right after both are made.
    unowned var transport: H2ServerConnection?
    /// Seeds the per-exchange random sources (splits without a user key, shadow sampling).
    private var seeds = SplitMix64.seededBySystem()

    init(shared: ExtProcShared) {
        self.shared = shared
    }

    /// The transport handler for a new connection, with its ext_proc streams.
    static func handler(shared: ExtProcShared, settings: H2ServerSettings) -> H2ServerConnection {
        let streams = ExtProcH2Connection(shared: shared)
        let transport = H2ServerConnection(settings: settings, delegate: streams)
        streams.transport = transport
        return transport
    }

    var context: ChannelHandlerContext? { transport?.context }

    func nextSeed() -> UInt64 { seeds.next() }

    // MARK: - From the transport

    func streamStarted(_ connection: H2ServerConnection, context: ChannelHandlerContext, stream: Int32, head: GRPCRequestHead, endStream: Bool) {
        let call = ExtProcStream(id: stream, connection: self, shared: shared)
        streams[stream] = call
        call.headersReceived(context: context, head: head, endStream: endStream)
    }

    func streamData(_ connection: H2ServerConnection, context: ChannelHandlerContext, stream: Int32, data: ByteBuffer) {
        streams[stream]?.received(context: context, bytes: data)
    }

    func streamEnded(_ connection: H2ServerConnection, context: ChannelHandlerContext, stream: Int32) {
        streams[stream]?.clientEnded(context: context)
    }

    func streamClosed(_ connection: H2ServerConnection, stream: Int32) {
        streams.removeValue(forKey: stream)?.release()
    }

    func connectionQuiescing(_ connection: H2ServerConnection, context: ChannelHandlerContext) {
        for stream in streams.values { stream.quiesce(context: context) }
    }

    func connectionClosed(_ connection: H2ServerConnection) {
        let open = streams
        streams.removeAll()
        for stream in open.values { stream.release() }
    }

    // MARK: - From the streams

    func bufferedChanged(context: ChannelHandlerContext, by delta: Int) {
        transport?.bufferedChanged(by: delta)
    }

    func sendMessage(_ context: ChannelHandlerContext, stream: Int32, frame: ByteBuffer) {
        transport?.sendMessage(stream: stream, frame: frame)
    }

    func sendEnd(_ context: ChannelHandlerContext, stream: Int32, _ end: GRPCStreamEnd, trailersOnly: Bool, thenReset: Bool) {
        transport?.sendEnd(stream: stream, end, trailersOnly: trailersOnly, thenReset: thenReset)
    }

    func flush(_ context: ChannelHandlerContext) {
        transport?.flush(context: context)
    }
}

@available(*, unavailable)
extension ExtProcH2Connection: Sendable {}
