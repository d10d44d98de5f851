import AsyncHTTPClient
import CoreMetrics
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import OverlayCore
import OverlayFleet
import ServiceLifecycle

/// `--control-plane URL`: how the poller fetches.
public struct ControlPlaneOptions: Sendable {
    /// An http or https URL serving the desired-state document (YAML or JSON; a Kubernetes API
    /// server's `AIOverlayList`, or another overlayd's `/v1/desired-state`).
    public var url: String
    /// Interval, jitter and backoff (``PollSchedule``).
    public var schedule = PollSchedule(intervalMs: 10_000)
    /// Per fetch, from the request until the last body byte.
    public var timeout: Duration = .seconds(5)
    /// Largest document accepted, in bytes.
    public var maxBytes = 4 * 1024 * 1024
    /// A file holding a bearer token (a Kubernetes service-account token), read before every fetch
    /// so a rotated token is picked up.
    public var tokenFile: String?
    /// `--state-dir`: the last applied document is written here.
    public var stateDirectory: StateDirectory?
    /// Seconds a long poll may be held (`?wait=`), when the server offers it
    /// (`X-Overlayd-Long-Poll: 1`, as `overlayd control-plane` does): 1...60.
    public var longPollSeconds = 10
    /// `--control-plane-report-token-file`: after every fetch a report goes to the control plane's
    /// `/v1/reports` with this bearer token (only to a control plane that offers the long poll and
    /// whose URL ends in `/v1/desired-state`).
    public var reportTokenFile: String?
    /// Builds the report (version applied, seconds since the last report); set by the runtime.
    public var report: (@Sendable (_ version: String, _ intervalSeconds: Double) -> SidecarReport)?
    /// When the URL is known only once something listens (`overlayd demo`'s own control plane on
    /// a port picked at start): asked once before the first fetch, and it replaces `url`; nil
    /// from it means the control plane stopped before it listened, and the poller ends with the
    /// group's shutdown.
    public var resolveURL: (@Sendable () async -> String?)?

    public init(url: String) {
        self.url = url
    }

    /// Checks the URL: http or https with a host; the error says what is allowed.
    public static func validate(url: String) throws(ControlPlaneError) {
        guard let parsed = URL(string: url), let scheme = parsed.scheme?.lowercased(), scheme == "http" || scheme == "https"
        else {
            throw ControlPlaneError("--control-plane must be an http:// or https:// URL, got \"\(url)\"")
        }
        guard let host = parsed.host, !host.isEmpty else {
            throw ControlPlaneError("--control-plane must name a host, got \"\(url)\"")
        }
        guard parsed.fragment == nil else {
            throw ControlPlaneError("--control-plane must not carry a #fragment, got \"\(url)\"")
        }
    }
}

public struct ControlPlaneError: Error, Sendable, CustomStringConvertible {
    public var description: String
    /// The HTTP status, when the failure is one.
    public var status: Int?
    public init(_ description: String, status: Int? = nil) {
        self.description = description
        self.status = status
    }
}

/// Follows the desired state published at a control-plane URL.
///
/// Every fetch sends `If-None-Match` with the last ETag received, so an unchanged document costs a
/// 304 and no parsing. A 200 body (at most `maxBytes`, within `timeout`) is offered to the
/// ``ConfigStore``, which validates it whole and swaps it in atomically or rejects it and keeps the
/// active one. An applied document is saved to `--state-dir`. Failures (connect errors, timeouts,
/// statuses other than 200/304, oversized or non-UTF-8 bodies) change nothing and back off
/// exponentially (``PollSchedule``); the active configuration keeps serving.
///
/// Metrics: `overlayd_control_plane_fetches_total{result=applied|unchanged|not_modified|rejected|failed}`,
/// `overlayd_control_plane_consecutive_failures`.
public final class ControlPlanePoller: Service, Sendable {
    private let options: ControlPlaneOptions
    private let store: ConfigStore
    private let health: HealthState
    private let metricsFactory: any MetricsFactoryBox
    private let logger: Logger
    private let etag: String?

    /// - Parameter etag: the ETag of the document the store starts with (from `--state-dir`), if
    ///   it came from this URL: the first fetch may then be a 304.
    public init(
        options: ControlPlaneOptions, store: ConfigStore, health: HealthState, metricsFactory: any MetricsFactoryBox,
        logger: Logger, etag: String? = nil
    ) {
        self.options = options
        self.store = store
        self.health = health
        self.metricsFactory = metricsFactory
        self.logger = logger
        self.etag = etag
    }

    public func run() async throws {
        var options = self.options
        if let resolve = options.resolveURL {
            guard let url = await resolve() else {
                // Nothing to follow; ending now, while the group shuts down in order, would
                // cut that short: wait for the shutdown the control plane's failure started.
                try? await gracefulShutdown()
                return
            }
            options.url = url
            options.resolveURL = nil
        }
        try await ControlPlaneFollower(
            options: options, store: store, health: health, metricsFactory: metricsFactory, logger: logger, etag: etag
        ).run()
    }
}

/// The poller's loop, once its URL is known.
final class ControlPlaneFollower: Sendable {
    private let options: ControlPlaneOptions
    private let store: ConfigStore
    private let health: HealthState
    private let logger: Logger
    private let counters: [String: Counter]
    private let failureGauge: Gauge
    private let initialETag: String?
    private let reporter: ControlPlaneReporter

    init(
        options: ControlPlaneOptions, store: ConfigStore, health: HealthState, metricsFactory: any MetricsFactoryBox,
        logger: Logger, etag: String?
    ) {
        self.options = options
        self.store = store
        self.health = health
        self.logger = logger
        self.initialETag = etag
        self.reporter = ControlPlaneReporter(options: options, logger: logger, metricsFactory: metricsFactory)
        var counters: [String: Counter] = [:]
        for result in ["applied", "unchanged", "not_modified", "rejected", "failed"] {
            counters[result] = Counter(
                label: "overlayd_control_plane_fetches_total", dimensions: [("result", result)],
                factory: metricsFactory.factory)
        }
        self.counters = counters
        self.failureGauge = Gauge(label: "overlayd_control_plane_consecutive_failures", factory: metricsFactory.factory)
    }

    func run() async throws {
        var configuration = HTTPClient.Configuration()
        configuration.timeout = .init(connect: options.timeout.timeAmount)
        configuration.redirectConfiguration = .follow(max: 5, allowCycles: false)
        // Our own backoff retries; the pool retrying a failed connect or TLS handshake until the
        // timeout would hide the reason (a certificate problem would read as a timeout).
        configuration.connectionPool.retryConnectionEstablishment = false
        // Polls and reports are not traced: no root span per request.
        configuration.tracing.tracer = nil
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        // A held long poll would delay shutdown by up to its wait: the whole loop is cancelled instead.
        await cancelWhenGracefulShutdown { await self.follow(client: client) }
        try? await client.shutdown()
    }

    /// Fetches until cancelled (or shut down), spacing fetches by the schedule.
    private func follow(client: HTTPClient) async {
        var etag = initialETag
        var applied = initialETag
        var failures = 0
        var longPoll = false
        var lastReport = ContinuousClock.now
        var generator = SystemRandomNumberGenerator()
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            let started = ContinuousClock.now
            let outcome = await fetchOnce(client: client, etag: etag, longPoll: longPoll && etag != nil)
            if Task.isCancelled { break }
            switch outcome {
            case .failed: failures += 1
            default: failures = 0
            }
            if case .received(let result, let newTag, _) = outcome {
                etag = newTag
                if result != "rejected" { applied = newTag }
            }
            switch outcome {
            case .received(_, _, let offered), .notModified(let offered): longPoll = offered
            case .failed: break
            }
            failureGauge.record(failures)
            if longPoll, outcome.succeeded, let reportURL = reporter.url {
                let now = ContinuousClock.now
                await reporter.send(client: client, url: reportURL, version: applied, interval: now - lastReport)
                lastReport = now
            }
            var delay = options.schedule.delayMs(
                consecutiveFailures: failures, unit: Double.random(in: 0..<1, using: &generator))
            // Long polling: ask again at once, unless the server answered a held request early
            // without a change (then wait the interval, so a server that does not hold is not hammered).
            if longPoll, outcome.succeeded {
                let held = ContinuousClock.now - started >= .seconds(options.longPollSeconds) / 2
                if case .received = outcome { delay = 0 } else if held { delay = 0 }
            }
            do {
                try await Task.sleep(for: .milliseconds(delay))
            } catch {
                break  // cancelled: shutting down
            }
        }
    }

    enum Outcome {
        /// `longPoll`: the server offers the long poll (`X-Overlayd-Long-Poll: 1`).
        case received(result: String, etag: String?, longPoll: Bool)
        case notModified(longPoll: Bool)
        case failed

        var succeeded: Bool {
            if case .failed = self { return false }
            return true
        }
    }

    /// Fetches once (held up to `longPollSeconds` when `longPoll`), offers what arrived, records
    /// and counts the result.
    func fetchOnce(client: HTTPClient, etag: String?, longPoll: Bool = false) async -> Outcome {
        let started = Date()
        var record = ConfigStore.Fetch(
            at: started, url: options.url, result: "failed", httpStatus: nil, error: nil, etag: etag,
            consecutiveFailures: (store.status.lastFetch?.consecutiveFailures ?? 0))
        let fetched: Fetched
        do {
            let wait = longPoll ? options.longPollSeconds : 0
            fetched = try await withTimeout(options.timeout + .seconds(wait)) {
                try await self.fetch(client: client, etag: etag, wait: wait)
            }
        } catch {
            // Cancelled: the sidecar is stopping and cut the fetch short (a held long poll, or one
            // the control plane is slow to answer). Not the control plane failing: nothing to
            // record, count or warn about; the loop ends.
            if Task.isCancelled { return .failed }
            record.error = "\(error)"
            record.httpStatus = (error as? ControlPlaneError)?.status
            record.consecutiveFailures += 1
            store.recordFetch(record)
            counters["failed"]?.increment()
            logger.warning(
                "control-plane fetch failed; keeping the active configuration",
                metadata: ["url": "\(options.url)", "error": "\(error)", "consecutiveFailures": "\(record.consecutiveFailures)"])
            return .failed
        }
        record.httpStatus = fetched.status
        record.consecutiveFailures = 0
        guard let text = fetched.text else {
            record.result = "not_modified"
            store.recordFetch(record)
            counters["not_modified"]?.increment()
            return .notModified(longPoll: fetched.longPoll)
        }
        record.etag = fetched.etag
        let result: String
        switch store.offer(text: text, source: options.url, now: started, fetch: record) {
        case .applied(let version):
            result = "applied"
            health.markConfigured()
            logger.info("configuration applied from the control plane", metadata: ["url": "\(options.url)", "version": "\(version)"])
            save(text: text, etag: fetched.etag, at: started)
        case .unchanged:
            result = "unchanged"
            health.markConfigured()
        case .rejected(let problems):
            result = "rejected"
            logger.error(
                "control-plane document rejected; keeping the active configuration",
                metadata: ["url": "\(options.url)", "problems": "\(problems.joined(separator: "; "))"])
        }
        counters[result]?.increment()
        return .received(result: result, etag: fetched.etag, longPoll: fetched.longPoll)
    }

    struct Fetched {
        var status: Int
        /// nil for 304.
        var text: String?
        var etag: String?
        var longPoll = false
    }

    func fetch(client: HTTPClient, etag: String?, wait: Int = 0) async throws -> Fetched {
        var url = options.url
        if wait > 0 { url += (url.contains("?") ? "&" : "?") + "wait=\(wait)" }
        var request = HTTPClientRequest(url: url)
        request.headers.add(name: "accept", value: "application/yaml, application/json;q=0.9, */*;q=0.1")
        request.headers.add(name: "user-agent", value: "overlayd")
        if let etag { request.headers.add(name: "if-none-match", value: etag) }
        if let tokenFile = options.tokenFile {
            let token: String
            do {
                token = try TextFile.read(tokenFile).trimmingCharacters(in: .whitespacesAndNewlines)
            } catch {
                throw ControlPlaneError("cannot read --control-plane-token-file \(tokenFile): \(error)")
            }
            guard !token.isEmpty else { throw ControlPlaneError("--control-plane-token-file \(tokenFile) is empty") }
            request.headers.add(name: "authorization", value: "Bearer \(token)")
        }
        // The whole fetch is bounded by `withTimeout` in `fetchOnce`; this deadline is a backstop.
        let response = try await client.execute(request, timeout: options.timeout.timeAmount + .seconds(Int64(wait) + 1))
        let longPoll = response.headers.first(name: "x-overlayd-long-poll") == "1"
        switch response.status.code {
        case 304:
            return Fetched(status: 304, text: nil, etag: etag, longPoll: longPoll)
        case 200:
            break
        default:
            throw ControlPlaneError(
                "HTTP \(response.status.code) \(response.status.reasonPhrase)", status: Int(response.status.code))
        }
        if let length = response.headers.first(name: "content-length").flatMap(Int.init), length > options.maxBytes {
            throw ControlPlaneError("document of \(length) bytes exceeds the limit of \(options.maxBytes) (--control-plane-max-bytes)")
        }
        let body: ByteBuffer
        do {
            body = try await response.body.collect(upTo: options.maxBytes)
        } catch is NIOTooManyBytesError {
            throw ControlPlaneError("document exceeds the limit of \(options.maxBytes) bytes (--control-plane-max-bytes)")
        }
        guard let text = body.getString(at: body.readerIndex, length: body.readableBytes), text.utf8.count == body.readableBytes,
            !body.readableBytesView.contains(0)
        else {
            throw ControlPlaneError("the body is not UTF-8 text")
        }
        return Fetched(status: 200, text: text, etag: response.headers.first(name: "etag"), longPoll: longPoll)
    }

    private func save(text: String, etag: String?, at: Date) {
        guard let directory = options.stateDirectory else { return }
        do {
            try directory.save(.init(source: options.url, etag: etag, savedAt: at, document: text))
        } catch {
            logger.error("cannot save the last known good document", metadata: ["error": "\(error)"])
        }
    }
}

/// Runs `operation`, cancelling it and throwing when `timeout` passes first.
func withTimeout<T: Sendable>(_ timeout: Duration, _ operation: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await operation() }
        group.addTask {
            try await Task.sleep(for: timeout)
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let value = first else {
            throw ControlPlaneError("timed out after \(timeout) (--control-plane-timeout)")
        }
        return value
    }
}
