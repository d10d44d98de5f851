import Foundation
import OverlayCore
import Locking

/// The active configuration snapshot and what happened to the documents offered to it.
///
/// Readers take one reference per exchange (`current`), so an exchange in flight keeps the
/// snapshot it started with while new exchanges see a newer one. A rejected document changes
/// nothing but `status.lastRejection`.
public final class ConfigStore: Sendable {
    /// What `GET /config` reports.
    public struct Status: Sendable {
        public var version: String
        public var source: String
        /// The active document's text (served by `GET /v1/desired-state`).
        public var document: String
        public var appliedAt: Date
        public var lastCheck: Date?
        /// "applied", "unchanged", "rejected", or "unreadable".
        public var lastResult: String
        public var lastRejection: Rejection?
        /// The control-plane poller's last fetch (nil without `--control-plane`).
        public var lastFetch: Fetch?
        /// Documents parsed and validated so far (a 304 or an unchanged file parses nothing).
        public var documentsParsed = 0
    }

    /// One control-plane fetch, as `GET /config` shows it.
    public struct Fetch: Sendable {
        public var at: Date
        public var url: String
        /// "applied", "unchanged", "not_modified", "rejected" or "failed".
        public var result: String
        /// The HTTP status, when one arrived.
        public var httpStatus: Int?
        /// Why it failed ("failed" only).
        public var error: String?
        /// The ETag of the last document received (sent back as If-None-Match).
        public var etag: String?
        public var consecutiveFailures: Int
    }

    public struct Rejection: Sendable {
        public var at: Date
        public var source: String
        public var problems: [String]
    }

    private struct State {
        var config: OverlayConfig
        var status: Status
    }

    private let state: Locked<State>

    /// - Parameter result: what `/config` shows as the last result until the first check
    ///   ("applied", or "last-known-good" for a document read from `--state-dir`).
    public init(_ initial: OverlayConfig, document: String, result: String = "applied") {
        state = Locked(State(
            config: initial,
            status: Status(
                version: initial.version, source: initial.source, document: document, appliedAt: Date(),
                lastCheck: nil, lastResult: result, lastRejection: nil)))
    }

    public var current: OverlayConfig { state.withLock { $0.config } }
    public var status: Status { state.withLock { $0.status } }

    /// Offers a new document: validated whole, applied atomically, or rejected with every problem.
    public enum Outcome: Sendable, Equatable {
        case applied(version: String)
        case unchanged
        case rejected(problems: [String])
    }

    /// - Parameter fetch: the control-plane fetch that brought `text`; recorded (with the outcome as
    ///   its result) in the same step as the outcome, so `/config` never shows one without the other.
    @discardableResult
    public func offer(text: String, source: String, now: Date = Date(), fetch: Fetch? = nil) -> Outcome {
        func record(_ status: inout Status, _ result: String) {
            status.lastCheck = now
            status.lastResult = result
            if var fetch {
                fetch.result = result
                status.lastFetch = fetch
            }
        }
        let version = ConfigLoader.contentVersion(text)
        let unchanged: Bool = state.withLock {
            guard $0.status.version == version && $0.status.source == source else { return false }
            record(&$0.status, "unchanged")
            return true
        }
        if unchanged { return .unchanged }
        state.withLock { $0.status.documentsParsed += 1 }
        do {
            let config = try ConfigLoader.load(text: text, source: source)
            state.withLock {
                $0.config = config
                $0.status.version = config.version
                $0.status.source = source
                $0.status.document = text
                $0.status.appliedAt = now
                record(&$0.status, "applied")
            }
            return .applied(version: config.version)
        } catch {
            let problems = error.problems.map(\.description)
            state.withLock {
                record(&$0.status, "rejected")
                $0.status.lastRejection = Rejection(at: now, source: source, problems: problems)
            }
            return .rejected(problems: problems)
        }
    }

    /// Records the poller's last fetch.
    public func recordFetch(_ fetch: Fetch) {
        state.withLock { $0.status.lastFetch = fetch }
    }

    /// Records a document that could not even be read; the active config stays.
    public func reject(source: String, problems: [String], now: Date = Date(), result: String = "unreadable") {
        state.withLock {
            $0.status.lastCheck = now
            $0.status.lastResult = result
            $0.status.lastRejection = Rejection(at: now, source: source, problems: problems)
        }
    }
}
