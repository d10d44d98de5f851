import CoreMetrics
import Foundation
import Logging
import ServiceLifecycle

/// Reloads `--config FILE` when it changes: checks the file's modification time, size and inode
/// every `interval` (editors and Kubernetes ConfigMap updates replace the file, so watching the
/// path, not an open descriptor, is what works), then offers the text to the ``ConfigStore``,
/// which validates it whole and swaps it in atomically or rejects it and keeps the active one.
///
/// Metrics: `overlayd_config_reloads_total{result=applied|unchanged|rejected|unreadable}`.
public final class ConfigFileWatcher: Service, Sendable {
    private let path: String
    private let interval: Duration
    private let store: ConfigStore
    private let health: HealthState
    private let logger: Logger
    private let counters: [String: Counter]

    public init(
        path: String, interval: Duration, store: ConfigStore, health: HealthState, metricsFactory: any MetricsFactoryBox,
        logger: Logger
    ) {
        self.path = path
        self.interval = interval
        self.store = store
        self.health = health
        self.logger = logger
        var counters: [String: Counter] = [:]
        for result in ["applied", "unchanged", "rejected", "unreadable"] {
            counters[result] = Counter(
                label: "overlayd_config_reloads_total", dimensions: [("result", result)], factory: metricsFactory.factory)
        }
        self.counters = counters
    }

    struct Stamp: Equatable {
        var modified: Date?
        var size: Int?
        var inode: Int?
    }

    func stamp() -> Stamp? {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path) else { return nil }
        return Stamp(
            modified: attributes[.modificationDate] as? Date,
            size: (attributes[.size] as? NSNumber)?.intValue,
            inode: (attributes[.systemFileNumber] as? NSNumber)?.intValue)
    }

    public func run() async throws {
        var last = stamp()
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                try await Task.sleep(for: interval)
            } catch {
                return  // cancelled: shutting down
            }
            let now = stamp()
            guard now != last else { continue }
            last = now
            check()
        }
    }

    /// Reads the file and offers it to the store (also used once at start-up by tests).
    func check() {
        let text: String
        do {
            text = try TextFile.read(path)
        } catch {
            counters["unreadable"]?.increment()
            store.reject(source: path, problems: ["cannot read the file: \(error)"])
            logger.error("config file unreadable; keeping the active configuration", metadata: ["path": "\(path)", "error": "\(error)"])
            return
        }
        switch store.offer(text: text, source: path) {
        case .applied(let version):
            counters["applied"]?.increment()
            health.markConfigured()
            logger.info("configuration reloaded", metadata: ["path": "\(path)", "version": "\(version)"])
        case .unchanged:
            counters["unchanged"]?.increment()
            health.markConfigured()
        case .rejected(let problems):
            counters["rejected"]?.increment()
            logger.error(
                "configuration rejected; keeping the active one",
                metadata: ["path": "\(path)", "problems": "\(problems.joined(separator: "; "))"])
        }
    }
}
