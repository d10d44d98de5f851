import Foundation
import HTTPTypes
import Hummingbird
import Logging
import OverlayCore
import OverlayDecisions
import OverlayFleet
import NIOCore
import ServiceLifecycle

/// The admin HTTP endpoint (Hummingbird): `/metrics` (Prometheus text), `/healthz` (alive),
/// `/readyz` (config loaded and ext_proc listening; 503 otherwise or while draining), `/config`
/// (the active version, source, last check and result, last rejection with every problem, the
/// control plane's last fetch, documents parsed) and
/// `/v1/desired-state` (the active document, with an ETag; 304 for a matching If-None-Match).
public final class AdminServer: Service, Sendable {
    private let app: Application<RouterResponder<BasicRequestContext>>
    private let bound = Bound<String>()
    private let host: String
    private let port: Int

    /// The address actually bound (`HOST:PORT`, port 0 resolved), once listening; nil if the
    /// server stopped before it listened.
    public func listeningAddress() async -> String? { await bound.value() }

    public init(
        host: String, port: Int, metrics: PrometheusMetrics, health: HealthState, configStore: ConfigStore, logger: Logger,
        drift: DriftBoard? = nil, fleet: SidecarFleet? = nil, assets: StaticAsset.Lookup? = nil,
        limits: AdminLimits = AdminLimits()
    ) {
        self.host = host
        self.port = port
        let router = Router()
        router.get("/drift") { _, _ -> Response in
            let body = try Self.driftJSON(drift?.report() ?? [:])
            return Response(
                status: .ok, headers: [.contentType: "application/json", .cacheControl: "no-store"],
                body: .init(byteBuffer: ByteBuffer(bytes: body)))
        }
        router.get("/config") { _, _ -> Response in
            let body = try Self.configJSON(configStore.status, config: configStore.current)
            return Response(
                status: .ok, headers: [.contentType: "application/json", .cacheControl: "no-store"],
                body: .init(byteBuffer: ByteBuffer(bytes: body)))
        }
        router.get("/v1/desired-state") { request, _ -> Response in
            // The active document, so one overlayd can be the control plane of others.
            let status = configStore.status
            let etag = "\"\(status.version)\""
            var headers: HTTPFields = [.eTag: etag, .cacheControl: "no-cache"]
            if let match = request.headers[.ifNoneMatch], match.split(separator: ",").contains(where: {
                $0.trimmingCharacters(in: .whitespaces) == etag || $0.trimmingCharacters(in: .whitespaces) == "*"
            }) {
                return Response(status: .notModified, headers: headers)
            }
            headers[.contentType] = "application/yaml; charset=utf-8"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: status.document)))
        }
        // The console, read-only for this one instance (issue 15): the state it serves and its own
        // reports' aggregation; no change routes here.
        router.get("/v1/state") { _, _ -> Response in
            Self.json(Self.stateJSON(configStore.status))
        }
        router.get("/v1/fleet") { _, _ -> Response in
            Self.json(fleet?.fleetJSON(version: Self.appliedVersion(configStore.status)) ?? "{\"instances\":[],\"overlays\":[],\"models\":[],\"drift\":[]}\n")
        }
        if let assets {
            router.get("/") { request, _ -> Response in
                Self.asset(assets, "/index.html", ifNoneMatch: request.headers[.ifNoneMatch])
            }
            router.get("/:file") { request, _ -> Response in
                Self.asset(assets, request.uri.path, ifNoneMatch: request.headers[.ifNoneMatch])
            }
        }
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
            let reason =
                health.isDraining ? "draining\n"
                : !health.isConfigured ? "no valid configuration: serving pass-through (see /config)\n" : "not ready\n"
            return Response(status: .serviceUnavailable, body: .init(byteBuffer: ByteBuffer(string: reason)))
        }
        let bound = self.bound
        let connectionLimits = AdminConnectionLimits(limits, factory: metrics.factory)
        self.app = Application(
            router: router,
            server: .http1(configuration: .init(additionalChannelHandlers: [AdminGuard(limits: connectionLimits)])),
            configuration: .init(address: .hostname(host, port: port), serverName: nil),
            onServerRunning: { channel in
                let text: String
                if let local = channel.localAddress, let ip = local.ipAddress, let port = local.port {
                    text = ip.contains(":") ? "[\(ip)]:\(port)" : "\(ip):\(port)"
                } else {
                    text = "\(host):\(port)"
                }
                bound.set(text)
                logger.info("admin listening on \(text)")
            },
            logger: logger
        )
    }

    static func json(_ text: String) -> Response {
        Response(
            status: .ok, headers: [.contentType: "application/json", .cacheControl: "no-store"],
            body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    static func asset(_ assets: StaticAsset.Lookup, _ path: String, ifNoneMatch: String?) -> Response {
        guard let asset = assets(path) else { return Response(status: .notFound) }
        let answer = asset.answer(ifNoneMatch: ifNoneMatch)
        var headers = HTTPFields()
        for (name, value) in answer.headers { if let field = HTTPField.Name(name) { headers[field] = value } }
        return Response(
            status: HTTPResponse.Status(code: answer.status), headers: headers,
            body: .init(byteBuffer: ByteBuffer(bytes: answer.body)))
    }

    /// The control plane's version this instance serves (its ETag), else the document's content hash.
    static func appliedVersion(_ status: ConfigStore.Status) -> String {
        if let etag = status.lastFetch?.etag, status.lastResult != "rejected" { return ControlPlaneReporter.version(etag) }
        return status.version
    }

    /// `/v1/state` as the control plane answers it, read-only: `"readOnly": true`; the version
    /// is a number when the document came from a control plane, else its content hash (a string).
    static func stateJSON(_ status: ConfigStore.Status) -> String {
        let state = (try? DesiredState.parse(yaml: status.document, source: status.source)) ?? DesiredState()
        let version = appliedVersion(status)
        let versionJSON = Int(version).map(String.init) ?? JSONText.quote(version)
        let overlays = state.overlays.map(\.json).joined(separator: ",")
        let models = state.models.map(\.json).joined(separator: ",")
        return "{\"version\":\(versionJSON),\"readOnly\":true,\"overlays\":[\(overlays)],\"models\":[\(models)]}\n"
    }

    struct ConfigReport: Encodable {
        struct Rejection: Encodable {
            var at: String
            var source: String
            var problems: [String]
        }
        var version: String
        var source: String
        var appliedAt: String
        var lastCheck: String?
        var lastResult: String
        var overlays: [String]
        var models: [String]
        var lastRejection: Rejection?
        struct Fetch: Encodable {
            var at: String
            var url: String
            var result: String
            var httpStatus: Int?
            var error: String?
            var etag: String?
            var consecutiveFailures: Int

            enum CodingKeys: String, CodingKey {
                case at, url, result, httpStatus, error, etag, consecutiveFailures
            }

            func encode(to encoder: any Encoder) throws {
                var container = encoder.container(keyedBy: CodingKeys.self)
                try container.encode(at, forKey: .at)
                try container.encode(url, forKey: .url)
                try container.encode(result, forKey: .result)
                try container.encode(httpStatus, forKey: .httpStatus)
                try container.encode(error, forKey: .error)
                try container.encode(etag, forKey: .etag)
                try container.encode(consecutiveFailures, forKey: .consecutiveFailures)
            }
        }
        var lastFetch: Fetch?
        var documentsParsed: Int

        enum CodingKeys: String, CodingKey {
            case version, source, appliedAt, lastCheck, lastResult, overlays, models, lastRejection, lastFetch,
                documentsParsed
        }

        /// Every key is always present (`null` when unset), so clients see one stable shape.
        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(version, forKey: .version)
            try container.encode(source, forKey: .source)
            try container.encode(appliedAt, forKey: .appliedAt)
            try container.encode(lastCheck, forKey: .lastCheck)
            try container.encode(lastResult, forKey: .lastResult)
            try container.encode(overlays, forKey: .overlays)
            try container.encode(models, forKey: .models)
            try container.encode(lastRejection, forKey: .lastRejection)
            try container.encode(lastFetch, forKey: .lastFetch)
            try container.encode(documentsParsed, forKey: .documentsParsed)
        }
    }

    static func configJSON(_ status: ConfigStore.Status, config: OverlayConfig) throws -> [UInt8] {
        let time = Date.ISO8601FormatStyle()
        let report = ConfigReport(
            version: status.version, source: status.source, appliedAt: status.appliedAt.formatted(time),
            lastCheck: status.lastCheck?.formatted(time), lastResult: status.lastResult,
            overlays: config.overlays.map { "\($0.name) (\($0.host))" }, models: config.models.keys.sorted(),
            lastRejection: status.lastRejection.map {
                ConfigReport.Rejection(at: $0.at.formatted(time), source: $0.source, problems: $0.problems)
            },
            lastFetch: status.lastFetch.map {
                ConfigReport.Fetch(
                    at: $0.at.formatted(time), url: $0.url, result: $0.result, httpStatus: $0.httpStatus, error: $0.error,
                    etag: $0.etag, consecutiveFailures: $0.consecutiveFailures)
            },
            documentsParsed: status.documentsParsed)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return Array(try encoder.encode(report)) + [0x0A]
    }

    struct DriftReport: Encodable {
        struct Pair: Encodable {
            var sequence: UInt64
            var champion: String
            var challenger: String
            var similarity: Double
            var tokenJaccard: Double
            var editSimilarity: Double
            var lengthRatio: Double
            var latencyDeltaMs: Double
            var errorMismatch: Bool
        }
        var windowSize: Int
        var samples: Int
        var mean: Double?
        var p10: Double?
        var threshold: Double
        var drifting: Bool
        var pairsRecorded: UInt64
        var lastPairs: [Pair]
    }

    /// Per Shadow overlay: its drift window (scores, lengths and latencies only: no user data).
    static func driftJSON(_ windows: [String: DriftWindow]) throws -> [UInt8] {
        var report: [String: DriftReport] = [:]
        for (overlay, window) in windows {
            report[overlay] = DriftReport(
                windowSize: window.capacity, samples: window.count, mean: window.mean, p10: window.p10,
                threshold: window.threshold, drifting: window.drifting, pairsRecorded: window.totalRecorded,
                lastPairs: window.lastPairs(20).map {
                    DriftReport.Pair(
                        sequence: $0.sequence, champion: $0.championModel, challenger: $0.challengerModel,
                        similarity: $0.similarity, tokenJaccard: $0.tokenJaccard, editSimilarity: $0.editSimilarity,
                        lengthRatio: $0.lengthRatio, latencyDeltaMs: $0.latencyDeltaMs, errorMismatch: $0.errorMismatch)
                })
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return Array(try encoder.encode(["overlays": report])) + [0x0A]
    }

    public func run() async throws {
        defer { bound.finish() }
        do {
            try await app.run()
        } catch let error as IOError where !bound.isSet {
            // The listener never opened (the port is taken, say): name the option and the address.
            throw ListenFailure(option: "--admin", address: ListenAddress.tcp(host: host, port: port).description, error: error)
        }
    }
}
