import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle

/// The admin HTTP endpoint (Hummingbird): `/metrics` (Prometheus text), `/healthz` (alive),
/// `/readyz` (config loaded and ext_proc listening; 503 otherwise or while draining).
public final class AdminServer: Service, Sendable {
    private let app: Application<RouterResponder<BasicRequestContext>>

    public init(host: String, port: Int, metrics: PrometheusMetrics, health: HealthState, logger: Logger) {
        let router = Router()
        router.get("/metrics") { _, _ -> Response in
            let bytes = metrics.render()
            return Response(
                status: .ok,
                headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
        }
        router.get("/healthz") { _, _ -> String in "ok\n" }
        router.get("/readyz") { _, _ -> Response in
            if health.isServing {
                return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: "ready\n")))
            }
            let reason = health.isDraining ? "draining\n" : "not ready\n"
            return Response(status: .serviceUnavailable, body: .init(byteBuffer: ByteBuffer(string: reason)))
        }
        self.app = Application(
            router: router,
            configuration: .init(address: .hostname(host, port: port), serverName: nil),
            onServerRunning: { channel in
                let text: String
                if let local = channel.localAddress, let ip = local.ipAddress, let port = local.port {
                    text = ip.contains(":") ? "[\(ip)]:\(port)" : "\(ip):\(port)"
                } else {
                    text = "\(host):\(port)"
                }
                logger.info("admin listening on \(text)")
            },
            logger: logger
        )
    }

    public func run() async throws {
        try await app.run()
    }
}
