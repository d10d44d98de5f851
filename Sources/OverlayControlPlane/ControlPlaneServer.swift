import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import OverlayCore
import OverlayFleet
import ServiceLifecycle
import Locking
import Yams

/// `overlayd control-plane`'s settings (README "Control plane and console").
public struct ControlPlaneServerOptions: Sendable {
    /// `--listen`: default 127.0.0.1:9900 (loopback: reads need no token).
    public var host = "127.0.0.1"
    public var port = 9900
    /// Largest request body, in bytes (413 past it).
    public var maxBodyBytes = 1024 * 1024
    /// Longest `?wait=` of the long poll, in seconds.
    public var maxWaitSeconds = 60
    /// Long polls waiting at once; more get 503.
    public var maxWaiters = 10_000
    public var fleet = FleetAggregator.Options()
    public init() {}
}

/// The control plane's HTTP API (Hummingbird): the sidecars' `/v1/desired-state` (ETag, 304,
/// long poll) and `/v1/reports`, the console's JSON API, and the console page at `/`.
///
/// Thin: every decision is the store's (``VersionStore``, ``ChangePlanner``) or the aggregator's
/// (``FleetAggregator``); this layer checks the token, the Origin and the body's size, parses
/// JSON and maps ``APIError`` to its status.
public final class ControlPlaneServer: Service, Sendable {
    public typealias Assets = StaticAsset.Lookup

    private let options: ControlPlaneServerOptions
    private let store: VersionStore
    private let watch: VersionWatch
    private let fleet: Locked<FleetAggregator>
    private let operatorTokens: TokenFile
    private let reportTokens: TokenFile
    private let logger: Logger
    private let assets: Assets?
    private let listenFailure: @Sendable (any Error) -> any Error
    private let listening = Locked<(address: String?, waiters: [CheckedContinuation<String?, Never>], done: Bool)>((nil, [], false))

    /// - Parameters:
    ///   - assets: the console's files by path (`/` is `/index.html`); nil: `/` answers 404
    ///     with a note (the page is not built into this binary).
    ///   - listenFailure: turns the error of a listener that never opened into the command's own
    ///     (naming `--listen` and the address).
    public init(
        options: ControlPlaneServerOptions, store: VersionStore, watch: VersionWatch, operatorTokens: TokenFile,
        reportTokens: TokenFile, assets: Assets?, logger: Logger,
        listenFailure: @escaping @Sendable (any Error) -> any Error = { $0 }
    ) {
        self.options = options
        self.store = store
        self.watch = watch
        self.fleet = Locked(FleetAggregator(options: options.fleet))
        self.operatorTokens = operatorTokens
        self.reportTokens = reportTokens
        self.assets = assets
        self.logger = logger
        self.listenFailure = listenFailure
    }

    /// `HOST:PORT` once listening (port 0 resolved); nil if the server stopped first.
    public func listeningAddress() async -> String? {
        await withCheckedContinuation { continuation in
            let known: String?? = listening.withLock { state in
                if let address = state.address { return .some(address) }
                if state.done { return .some(nil) }
                state.waiters.append(continuation)
                return .none
            }
            if let known { continuation.resume(returning: known) }
        }
    }

    private func setListening(_ address: String?) {
        let waiters = listening.withLock { state in
            if let address { state.address = address } else { state.done = true }
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume(returning: address) }
    }

    public func run() async throws {
        let router = Router()
        routes(router)
        let logger = self.logger
        let app = Application(
            router: router,
            configuration: .init(address: .hostname(options.host, port: options.port), serverName: nil),
            onServerRunning: { [self] channel in
                let text: String
                if let local = channel.localAddress, let ip = local.ipAddress, let port = local.port {
                    text = ip.contains(":") ? "[\(ip)]:\(port)" : "\(ip):\(port)"
                } else {
                    text = "\(options.host):\(options.port)"
                }
                setListening(text)
                logger.notice("control plane listening on \(text)", metadata: ["console": "http://\(text)/"])
            },
            logger: logger
        )
        defer { setListening(nil) }
        do {
            // Held long polls are answered (304) as the drain starts, so they do not hold it up.
            try await withGracefulShutdownHandler {
                try await app.run()
            } onGracefulShutdown: { [watch] in
                watch.close()
            }
        } catch {
            if listening.withLock({ $0.address == nil }) { throw listenFailure(error) }
            throw error
        }
    }

    // MARK: - Routes

    func routes(_ router: Router<BasicRequestContext>) {
        router.get("/healthz") { _, _ in "ok\n" }
        router.get("/v1/desired-state") { request, _ in await self.desiredState(request) }
        router.post("/v1/reports") { request, _ in await self.handle { try await self.report(request) } }
        router.get("/v1/state") { _, _ in self.stateResponse() }
        for kind in ResourceKind.allCases {
            let collection = "/v1/\(kind.plural)"
            router.get(RouterPath(collection)) { _, _ in
                let head = self.store.head
                let items = head.state.resources.filter { $0.kind == kind }.map(\.json)
                return Self.json("[" + items.joined(separator: ",") + "]\n", version: head.version)
            }
            router.get(RouterPath(collection + "/:name")) { _, context in
                await self.handle {
                    let name = context.parameters.get("name") ?? ""
                    let head = self.store.head
                    guard let resource = head.state.resource(kind, named: name) else {
                        throw APIError.notFound("no \(kind.rawValue) named \"\(name)\"")
                    }
                    return Self.json(resource.json + "\n", version: head.version)
                }
            }
            router.post(RouterPath(collection)) { request, _ in
                await self.change(request, status: .created) { body in .create(kind, try ResourceJSON.parse(body)) }
            }
            router.put(RouterPath(collection + "/:name")) { request, context in
                let name = context.parameters.get("name") ?? ""
                return await self.change(request) { body in .replace(kind, name: name, try ResourceJSON.parse(body)) }
            }
            router.delete(RouterPath(collection + "/:name")) { request, context in
                let name = context.parameters.get("name") ?? ""
                return await self.change(request, needsBody: false) { _ in .delete(kind, name: name) }
            }
        }
        router.put("/v1/overlays/:name/weights") { request, context in
            let name = context.parameters.get("name") ?? ""
            return await self.change(request) { body in .setWeights(overlay: name, weights: try Self.weights(body)) }
        }
        router.post("/v1/import") { request, _ in
            await self.change(request) { body in
                guard let text = String(validating: body, as: UTF8.self) else { throw APIError.badRequest("the body is not UTF-8 text") }
                return .replaceAll(yaml: text)
            }
        }
        router.post("/v1/rollback") { request, _ in
            await self.handle {
                let (author, body) = try await self.authorizedBody(request)
                let node = try ResourceJSON.parse(body)
                let target = try Self.rollbackTarget(node)
                let version = try self.store.rollback(to: target, ifMatch: try Self.ifMatch(request), author: author)
                self.logger.notice("rollback", metadata: ["version": "\(version)", "restores": "\(target)", "author": "\(author)"])
                return Self.json("{\"version\":\(version)}\n", version: version)
            }
        }
        router.post("/v1/validate") { request, _ in
            await self.handle {
                let (_, body) = try await self.authorizedBody(request)
                return try self.validate(body)
            }
        }
        router.get("/v1/history") { request, _ in
            await self.handle {
                var limit = 50
                if let text = request.uri.queryParameters["limit"] {
                    guard let value = Int(text), (1...10_000).contains(value) else {
                        throw APIError.badRequest("limit must be an integer 1...10000, got \"\(text)\"")
                    }
                    limit = value
                }
                let versions = try self.store.history(limit: limit)
                let list = versions.map { Self.versionJSON($0, extra: "") }.joined(separator: ",")
                return Self.json("{\"versions\":[\(list)]}\n", version: self.store.head.version)
            }
        }
        router.get("/v1/history/:version") { _, context in
            await self.handle {
                let text = context.parameters.get("version") ?? ""
                guard let number = Int(text), number > 0 else {
                    throw APIError.badRequest("a version is a positive integer, got \"\(text)\"")
                }
                guard let version = try self.store.version(number) else {
                    throw APIError.notFound("no version \(number) (the newest is \(self.store.head.version))")
                }
                let previous = number > 1 ? try self.store.version(number - 1)?.document ?? "" : ""
                let diff = StateDiff.unified(
                    from: previous, to: version.document, oldLabel: "version \(number - 1)", newLabel: "version \(number)")
                let extra = ",\"yaml\":\(JSONText.quote(version.document)),\"diff\":\(JSONText.quote(diff))"
                return Self.json(Self.versionJSON(version, extra: extra) + "\n", version: self.store.head.version)
            }
        }
        router.get("/v1/export") { _, _ in
            let head = self.store.head
            return Response(
                status: .ok,
                headers: [.contentType: "application/yaml; charset=utf-8", .eTag: "\"\(head.version)\"", .cacheControl: "no-store"],
                body: .init(byteBuffer: ByteBuffer(string: head.document)))
        }
        router.get("/v1/fleet") { _, _ in
            let version = self.store.head.version
            let fleet = self.fleet.withLock { $0.fleet(now: Date(), version: String(version)) }
            return Self.json(fleet.json, version: version)
        }
        router.get("/v1/split-preview") { request, _ in
            await self.handle { try self.splitPreview(request) }
        }
        router.get("/") { request, _ in self.asset("/index.html", ifNoneMatch: request.headers[.ifNoneMatch]) }
        router.get("/:file") { request, _ in self.asset(request.uri.path, ifNoneMatch: request.headers[.ifNoneMatch]) }
    }

    // MARK: - Sidecars

    func desiredState(_ request: Request) async -> Response {
        var head = store.head
        let etag = "\"\(head.version)\""
        let match = request.headers[.ifNoneMatch]
        let matches = { (tag: String) in
            match?.split(separator: ",").contains { $0.trimmingCharacters(in: .whitespaces) == tag } ?? false
        }
        if let waitText = request.uri.queryParameters["wait"] {
            guard let wait = Int(waitText), (1...options.maxWaitSeconds).contains(wait) else {
                return Self.problem(
                    .badRequest("wait must be an integer number of seconds 1...\(options.maxWaitSeconds), got \"\(waitText)\""))
            }
            if matches(etag) {
                switch await watch.wait(whileVersionIs: head.version, timeout: .seconds(wait)) {
                case .full:
                    var response = Self.problem(APIError(status: 503, "too many long polls waiting (\(watch.capacity)); retry later"))
                    response.headers[.retryAfter] = "5"
                    return response
                case .changed, .timedOut:
                    head = store.head
                }
            }
        }
        let tag = "\"\(head.version)\""
        var headers: HTTPFields = [.eTag: tag, .cacheControl: "no-cache"]
        headers[HTTPField.Name("X-Overlayd-Long-Poll")!] = "1"
        if matches(tag) || match?.trimmingCharacters(in: .whitespaces) == "*" {
            return Response(status: .notModified, headers: headers)
        }
        headers[.contentType] = "application/yaml; charset=utf-8"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: head.document)))
    }

    func report(_ request: Request) async throws -> Response {
        guard reportTokens.name(authorization: request.headers[.authorization]) != nil else {
            throw APIError(
                status: 401,
                request.headers[.authorization] == nil
                    ? "a report needs the report token (Authorization: Bearer <token from --report-token-file>)"
                    : "wrong report token")
        }
        let body = try await Self.body(request, limit: SidecarReport.maxBytes)
        let report = try SidecarReport.parse(body)
        let admitted = fleet.withLock { $0.add(report, now: Date()) }
        if admitted == .tooManyInstances {
            throw APIError(status: 429, "too many instances reporting (\(options.fleet.maxInstances)); this one is not tracked")
        }
        return Response(status: .noContent)
    }

    // MARK: - Changes

    /// Checks Origin and token, reads the body, applies the change; the JSON answer carries the
    /// new version.
    func change(
        _ request: Request, status: HTTPResponse.Status = .ok, needsBody: Bool = true,
        _ make: @escaping @Sendable ([UInt8]) throws -> StateChange
    ) async -> Response {
        await handle {
            let (author, body) = try await self.authorizedBody(request, read: needsBody)
            let change = try make(body)
            let version = try self.store.apply(change, ifMatch: try Self.ifMatch(request), author: author)
            self.logger.notice("new version", metadata: ["version": "\(version)", "author": "\(author)"])
            var response = Self.json("{\"version\":\(version)}\n", version: version)
            response.status = status
            return response
        }
    }

    /// The token's name and the body (at most `maxBodyBytes`), after the Origin check (403) and
    /// the token check (401).
    func authorizedBody(_ request: Request, read: Bool = true) async throws -> (String, [UInt8]) {
        if let origin = request.headers[.origin] {
            let host = request.head.authority ?? ""
            guard origin == "http://\(host)" || origin == "https://\(host)" else {
                throw APIError(
                    status: 403, "foreign Origin \"\(origin)\": changes are accepted only from the console's own page (http://\(host))")
            }
        }
        guard let author = operatorTokens.name(authorization: request.headers[.authorization]) else {
            throw APIError(
                status: 401,
                request.headers[.authorization] == nil
                    ? "a change needs the operator token (Authorization: Bearer <token from --token-file>)"
                    : "wrong operator token")
        }
        return (author, read ? try await Self.body(request, limit: options.maxBodyBytes) : [])
    }

    static func body(_ request: Request, limit: Int) async throws -> [UInt8] {
        if let length = request.headers[.contentLength].flatMap(Int.init), length > limit {
            throw APIError(status: 413, "the body is \(length) bytes; the limit is \(limit)")
        }
        do {
            let buffer = try await request.body.collect(upTo: limit)
            return Array(buffer.readableBytesView)
        } catch is NIOTooManyBytesError {
            throw APIError(status: 413, "the body exceeds the limit of \(limit) bytes")
        }
    }

    static func ifMatch(_ request: Request) throws(APIError) -> Int? {
        guard var text = request.headers[.ifMatch]?.trimmingCharacters(in: .whitespaces) else { return nil }
        if text == "*" { return nil }
        if text.hasPrefix("W/") { text.removeFirst(2) }
        if text.hasPrefix("\""), text.hasSuffix("\""), text.count >= 2 { text = String(text.dropFirst().dropLast()) }
        guard let version = Int(text), version >= 0 else {
            throw .badRequest("If-Match must be a version (\"N\"), got \(request.headers[.ifMatch] ?? "")")
        }
        return version
    }

    static func weights(_ body: [UInt8]) throws -> [(model: String, weight: Int)] {
        let node = try ResourceJSON.parse(body)
        guard case .mapping(let root) = node else { throw APIError.badRequest("the body must be an object {\"weights\": {...}}") }
        for key in root.keys where key.string != "weights" {
            throw APIError.badRequest(
                "unknown field \"\(key.string ?? "?")\"; allowed: weights",
                problems: [APIProblem(path: "body: \(key.string ?? "?")", message: "unknown field; allowed here: weights")])
        }
        guard case .mapping(let weights)? = root["weights"] else {
            throw APIError.invalid([APIProblem(path: "weights", message: "is required: an object of model name → integer weight 0...100")])
        }
        var result: [(model: String, weight: Int)] = []
        var problems: [APIProblem] = []
        for (key, value) in weights {
            let model = key.string ?? "?"
            if value.tagName == .int, let weight = value.int {
                result.append((model, weight))
            } else {
                problems.append(APIProblem(path: "weights.\(model)", message: "must be an integer 0...100, got \(ResourceJSON.render(value))"))
            }
        }
        if !problems.isEmpty { throw APIError.invalid(problems) }
        return result
    }

    static func rollbackTarget(_ node: Yams.Node) throws(APIError) -> Int {
        guard case .mapping(let root) = node else { throw .badRequest("the body must be an object {\"version\": N}") }
        for key in root.keys where key.string != "version" {
            throw .badRequest(
                "unknown field \"\(key.string ?? "?")\"; allowed: version",
                problems: [APIProblem(path: "body: \(key.string ?? "?")", message: "unknown field; allowed here: version")])
        }
        guard let value = root["version"], value.tagName == .int, let version = value.int, version > 0 else {
            throw .invalid([APIProblem(path: "version", message: "is required: the positive integer of the version to restore")])
        }
        return version
    }

    func validate(_ body: [UInt8]) throws -> Response {
        let node = try ResourceJSON.parse(body)
        guard case .mapping(let root) = node, root.count == 1, let key = root.keys.first?.string,
            ["overlay", "model", "yaml"].contains(key), let value = root[key]
        else {
            throw APIError.badRequest("the body must be one of {\"overlay\": {...}}, {\"model\": {...}}, {\"yaml\": \"...\"}")
        }
        let state = store.head.state
        switch key {
        case "yaml":
            guard let text = value.string, value.tagName == .str else { throw APIError.invalid([APIProblem(path: "yaml", message: "must be a string")]) }
            do { _ = try DesiredState.parse(yaml: text, source: "yaml") } catch { throw APIError.invalid(error) }
        default:
            // As a create when the name is new, else as a replace of the stored one.
            let kind: ResourceKind = key == "overlay" ? .overlay : .model
            let name = try ChangePlanner.checkedName(value, kind: kind)
            let change: StateChange = state.resource(kind, named: name) == nil ? .create(kind, value) : .replace(kind, name: name, value)
            _ = try ChangePlanner.apply(change, to: state, version: store.head.version)
        }
        return Self.json("{\"ok\":true}\n", version: store.head.version)
    }

    func splitPreview(_ request: Request) throws -> Response {
        guard let overlayName = request.uri.queryParameters["overlay"].map(String.init) else {
            throw APIError.badRequest("overlay is required (?overlay=NAME&weights=model-a:50,model-b:50)")
        }
        guard let weightsText = request.uri.queryParameters["weights"].map(String.init) else {
            throw APIError.badRequest("weights is required (?overlay=NAME&weights=model-a:50,model-b:50)")
        }
        let head = store.head
        guard let overlay = head.state.resource(.overlay, named: overlayName) else {
            throw APIError.notFound("no AIOverlay named \"\(overlayName)\"")
        }
        var proposed: [(model: String, weight: Int)] = []
        for part in weightsText.split(separator: ",") {
            let pieces = part.split(separator: ":")
            guard pieces.count == 2, let weight = Int(pieces[1]) else {
                throw APIError.badRequest("weights must be NAME:INTEGER pairs separated by commas, got \"\(part)\"")
            }
            proposed.append((String(pieces[0]), weight))
        }
        // Checked as the change itself would be (every model, 0...100, summing to 100).
        _ = try ChangePlanner.apply(.setWeights(overlay: overlayName, weights: proposed), to: head.state, version: head.version)
        let current = StateDiff.weights(overlay.node).map { (name: $0.0, weight: Int($0.1) ?? 0) }
        let preview = SplitPreview(overlay: overlayName, from: current, to: proposed.map { (name: $0.model, weight: $0.weight) })
        return Self.json(preview.json, version: head.version)
    }

    // MARK: - Responses

    func stateResponse() -> Response {
        let head = store.head
        let overlays = head.state.overlays.map(\.json).joined(separator: ",")
        let models = head.state.models.map(\.json).joined(separator: ",")
        return Self.json("{\"version\":\(head.version),\"overlays\":[\(overlays)],\"models\":[\(models)]}\n", version: head.version)
    }

    static func versionJSON(_ version: VersionStore.Version, extra: String) -> String {
        "{\"version\":\(version.number),\"author\":\(JSONText.quote(version.author)),"
            + "\"time\":\(JSONText.quote(version.time.formatted(Date.ISO8601FormatStyle()))),"
            + "\"summary\":\(JSONText.quote(version.summary)),\"rollbackOf\":\(version.rollbackOf.map(String.init) ?? "null")\(extra)}"
    }

    func asset(_ path: String, ifNoneMatch: String?) -> Response {
        guard let assets else {
            return Response(
                status: .notFound, headers: [.contentType: "text/plain; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(string: "the console page is not built into this binary; the JSON API is under /v1/\n")))
        }
        guard let asset = assets(path) else { return Self.problem(.notFound("no such page: \(path)")) }
        return Self.response(asset.answer(ifNoneMatch: ifNoneMatch))
    }

    static func response(_ answer: (status: Int, headers: [(name: String, value: String)], body: [UInt8])) -> Response {
        var headers = HTTPFields()
        for (name, value) in answer.headers { if let field = HTTPField.Name(name) { headers[field] = value } }
        return Response(
            status: HTTPResponse.Status(code: answer.status), headers: headers,
            body: .init(byteBuffer: ByteBuffer(bytes: answer.body)))
    }

    static func json(_ text: String, version: Int) -> Response {
        Response(
            status: .ok,
            headers: [.contentType: "application/json", .eTag: "\"\(version)\"", .cacheControl: "no-store"],
            body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    static func problem(_ error: APIError) -> Response {
        Response(
            status: HTTPResponse.Status(code: error.status),
            headers: [.contentType: "application/json", .cacheControl: "no-store"],
            body: .init(byteBuffer: ByteBuffer(string: error.json)))
    }

    /// Runs a handler; an ``APIError`` becomes its status and JSON body, anything else a 500.
    func handle(_ body: () async throws -> Response) async -> Response {
        do {
            return try await body()
        } catch let error as APIError {
            return Self.problem(error)
        } catch let error as HTTPParserError {
            // The request itself broke (most often: the client went away inside its body, as a data
            // plane shutting down does); nothing of ours failed and nobody may read the answer.
            logger.notice("request unreadable", metadata: ["error": "\(error)"])
            return Self.problem(APIError(status: 400, "the request could not be read: \(error)"))
        } catch {
            logger.error("request failed", metadata: ["error": "\(error)"])
            return Self.problem(APIError(status: 500, "internal error: \(error)"))
        }
    }
}
