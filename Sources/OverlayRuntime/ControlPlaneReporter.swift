import AsyncHTTPClient
import CoreMetrics
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import OverlayCore
import OverlayFleet
import Locking

/// Sends a sidecar's report (``SidecarReport``) to its control plane's `/v1/reports` after every
/// fetch, with the bearer token of `--control-plane-report-token-file`.
///
/// Only to a control plane that offers the long poll (an `overlayd control-plane`) and whose URL
/// ends in `/v1/desired-state`; the reports' URL is its sibling `/v1/reports`. A report that
/// cannot be sent is dropped (its counters with it) and counted:
/// `overlayd_control_plane_reports_total{result=sent|failed}`.
final class ControlPlaneReporter: Sendable {
    /// The reports' URL, or nil: no reports (no token file, or not an overlayd control plane's URL).
    let url: String?
    let tokenFile: String?
    let timeout: Duration
    /// Seconds until the next report at most, in steady state: the long poll's wait, or the interval.
    let expectedInterval: Double
    let build: (@Sendable (String, Double) -> SidecarReport)?
    let logger: Logger
    let sent: Counter
    let failed: Counter
    private let failures = Locked(0)

    init(options: ControlPlaneOptions, logger: Logger, metricsFactory: any MetricsFactoryBox) {
        self.tokenFile = options.reportTokenFile
        self.timeout = options.timeout
        self.expectedInterval = max(Double(options.longPollSeconds), Double(options.schedule.intervalMs) / 1000)
        self.build = options.report
        self.logger = logger
        self.url = options.reportTokenFile == nil || options.report == nil ? nil : Self.reportsURL(options.url)
        sent = Counter(label: "overlayd_control_plane_reports_total", dimensions: [("result", "sent")], factory: metricsFactory.factory)
        failed = Counter(label: "overlayd_control_plane_reports_total", dimensions: [("result", "failed")], factory: metricsFactory.factory)
        if options.reportTokenFile != nil && url == nil {
            logger.warning(
                "--control-plane-report-token-file is set but the control-plane URL does not end in /v1/desired-state: no reports",
                metadata: ["url": "\(options.url)"])
        }
    }

    /// `http://cp:9900/v1/reports` for `http://cp:9900/v1/desired-state[?query]`; nil otherwise.
    static func reportsURL(_ desiredState: String) -> String? {
        guard var components = URLComponents(string: desiredState), components.path.hasSuffix("/v1/desired-state") else {
            return nil
        }
        components.path = String(components.path.dropLast("/v1/desired-state".count)) + "/v1/reports"
        components.query = nil
        return components.string
    }

    /// `"3"` → `3`, `W/"3"` → `3`.
    static func version(_ etag: String?) -> String {
        guard var text = etag else { return "" }
        if text.hasPrefix("W/") { text.removeFirst(2) }
        return text.trimmingCharacters(in: CharacterSet(charactersIn: "\""))
    }

    func send(client: HTTPClient, url: String, version etag: String?, interval: Duration) async {
        guard let build, let tokenFile else { return }
        // The interval the control plane expects the next report within (it forgets an instance
        // after three): the time since the last one, but never less than the poll's own period.
        let elapsed = Double(interval.components.seconds) + Double(interval.components.attoseconds) / 1e18
        let seconds = max(0.05, min(86_400, max(elapsed, expectedInterval)))
        let report = build(Self.version(etag), seconds)
        do {
            let token = try TextFile.read(tokenFile).trimmingCharacters(in: .whitespacesAndNewlines)
            var request = HTTPClientRequest(url: url)
            request.method = .POST
            request.headers.add(name: "content-type", value: "application/json")
            request.headers.add(name: "authorization", value: "Bearer \(token)")
            request.headers.add(name: "user-agent", value: "overlayd")
            request.body = .bytes(ByteBuffer(string: report.json))
            let response = try await client.execute(request, timeout: timeout.timeAmount)
            let body = try await response.body.collect(upTo: 64 * 1024)
            guard response.status.code == 204 || response.status.code == 200 else {
                throw ControlPlaneError(
                    "HTTP \(response.status.code): \(body.getString(at: body.readerIndex, length: min(body.readableBytes, 300)) ?? "")",
                    status: Int(response.status.code))
            }
            sent.increment()
            let recovered = failures.withLock { count in
                defer { count = 0 }
                return count > 0
            }
            if recovered { logger.notice("reports to the control plane are delivered again", metadata: ["url": "\(url)"]) }
        } catch {
            // Cancelled: the sidecar is stopping (as in the follower's fetch); not a failed report.
            if Task.isCancelled { return }
            failed.increment()
            let count = failures.withLock { count in
                count += 1
                return count
            }
            // The first failure and then every 2^n-th: a control plane down for long is not one line per fetch.
            if count & (count - 1) == 0 {
                logger.warning(
                    "cannot send the report to the control plane; its counters are dropped",
                    metadata: ["url": "\(url)", "error": "\(error)", "consecutiveFailures": "\(count)"])
            }
        }
    }
}
