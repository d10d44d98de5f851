import ExtProcProto
import GRPCTransport
import NIOCore
import OverlayRuntime
import SwiftProtobuf

/// `grpc.health.v1.Health`: Check answers the current status once; Watch sends it, then every
/// change (the configuration turning valid, draining), until the call or the server ends.
extension ExtProcStream {
    func decodeHealthRequest(context: ChannelHandlerContext, payload: ByteBuffer) -> String? {
        do {
            let request = try Grpc_Health_V1_HealthCheckRequest(serializedBytes: ProtobufBytes(payload))
            guard HealthState.services.contains(request.service) else {
                finishTrailersOnlyOrEnd(context: context, .notFound, "unknown service \(request.service)")
                return nil
            }
            return request.service
        } catch {
            finishTrailersOnlyOrEnd(context: context, .invalidArgument, "HealthCheckRequest does not decode")
            return nil
        }
    }

    func answerHealthCheck(context: ChannelHandlerContext, payload: ByteBuffer) {
        guard let service = decodeHealthRequest(context: context, payload: payload) else { return }
        writeHealth(context: context, serving: shared.health.isServing, service: service)
        end(context: context, .ok)
    }

    /// A Watch call: the current status now, then every change (config turning valid, draining).
    func watchHealth(context: ChannelHandlerContext) {
        let loop = context.eventLoop
        let bound = NIOLoopBound((self, context), eventLoop: loop)
        shared.health.addWatcher(ObjectIdentifier(self)) { serving in
            loop.execute {
                let (stream, context) = bound.value
                guard case .healthWatch = stream.mode else { return }
                stream.writeHealth(context: context, serving: serving)
                stream.connection.flush(context)
            }
        }
        watching = true
        writeHealth(context: context, serving: shared.health.isServing)
    }

    func writeHealth(context: ChannelHandlerContext, serving: Bool, service: String = "") {
        if case .healthWatch = mode {
            guard lastWatchStatus != serving else { return }  // a Watch sends changes only
            lastWatchStatus = serving
        }
        var response = Grpc_Health_V1_HealthCheckResponse()
        response.status = serving ? .serving : .notServing
        guard let frame = try? GRPCFrame.encode(response, allocator: context.channel.allocator) else { return }
        writeMessage(context: context, frame: frame)
    }
}
