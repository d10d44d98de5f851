import Foundation
import OverlayCore
import Synchronization

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

    private let state: Mutex<State>

    public init(_ initial: OverlayConfig, document: String) {
        state = Mutex(State(
            config: initial,
            status: Status(
                version: initial.version, source: initial.source, document: document, appliedAt: Date(),
                lastCheck: nil, lastResult: "applied", lastRejection: nil)))
    }

    public var current: OverlayConfig { state.withLock { $0.config } }
    public var status: Status { state.withLock { $0.status } }

    /// Offers a new document: validated whole, applied atomically, or rejected with every problem.
    public enum Outcome: Sendable, Equatable {
        case applied(version: String)
        case unchanged
        case rejected(problems: [String])
    }

    @discardableResult
    public func offer(text: String, source: String, now: Date = Date()) -> Outcome {
        let version = ConfigLoader.contentVersion(text)
        if state.withLock({ $0.status.version == version && $0.status.source == source }) {
            state.withLock {
                $0.status.lastCheck = now
                $0.status.lastResult = "unchanged"
            }
            return .unchanged
        }
        do {
            let config = try ConfigLoader.load(text: text, source: source)
            state.withLock {
                $0.config = config
                $0.status.version = config.version
                $0.status.source = source
                $0.status.document = text
                $0.status.appliedAt = now
                $0.status.lastCheck = now
                $0.status.lastResult = "applied"
            }
            return .applied(version: config.version)
        } catch {
            let problems = error.problems.map(\.description)
            reject(source: source, problems: problems, now: now, result: "rejected")
            return .rejected(problems: problems)
        }
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
