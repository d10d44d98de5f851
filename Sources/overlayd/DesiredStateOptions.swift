import ArgumentParser
import Logging
import OverlayCore
import OverlayRuntime

/// Where the desired state comes from, the same for `serve` and `proxy`: `--config FILE`
/// (watched), `--control-plane URL` (polled, with `--state-dir`), or the embedded demo.
struct DesiredStateOptions: ParsableArguments {
    @Option(help: "AIOverlay resources (YAML or JSON), watched for changes. Without it (and without --control-plane), the embedded demo configuration is served.")
    var config: String?

    @Option(help: "Seconds between checks of --config for changes (a changed file is validated whole and swapped in, or rejected and the active one kept).")
    var configPollInterval: Double = 1

    @Option(help: "Follow the desired state published at this http(s) URL (a Kubernetes API server's AIOverlayList, or another overlayd's /v1/desired-state). Exclusive with --config.")
    var controlPlane: String?

    @Option(help: "Seconds between control-plane fetches (each spread by ±10% jitter; failures back off exponentially from 1 s up to 5 min).")
    var controlPlaneInterval: Double = 10

    @Option(help: "Seconds before the first retry after a failed fetch; doubles with each failure in a row.")
    var controlPlaneBackoff: Double = 1

    @Option(help: "Longest delay between fetches while they fail, in seconds.")
    var controlPlaneMaxBackoff: Double = 300

    @Option(help: "Seconds a control-plane fetch may take, from the request to the last body byte.")
    var controlPlaneTimeout: Double = 5

    @Option(help: "Largest control-plane document accepted, in bytes.")
    var controlPlaneMaxBytes = 4 * 1024 * 1024

    @Option(help: "A file holding a bearer token for the control plane (e.g. /var/run/secrets/kubernetes.io/serviceaccount/token); read before every fetch.")
    var controlPlaneTokenFile: String?

    @Option(help: "A file holding the control plane's report token: after every fetch this sidecar POSTs its counters to the control plane's /v1/reports (an overlayd control-plane URL ending in /v1/desired-state). Read before every report.")
    var controlPlaneReportTokenFile: String?

    @Option(help: "Directory where the last document applied from the control plane is kept (atomically), and read at start when the control plane cannot be reached.")
    var stateDir: String?

    func validate() throws {
        guard configPollInterval >= 0.05, configPollInterval <= 3600 else {
            throw ValidationError("--config-poll-interval must be 0.05...3600 seconds, got \(configPollInterval)")
        }
        if config != nil && controlPlane != nil {
            throw ValidationError("--config and --control-plane are exclusive: the desired state comes from one source")
        }
        if let controlPlane {
            do { try ControlPlaneOptions.validate(url: controlPlane) } catch { throw ValidationError(error.description) }
        } else if stateDir != nil || controlPlaneTokenFile != nil || controlPlaneReportTokenFile != nil {
            throw ValidationError("--state-dir, --control-plane-token-file and --control-plane-report-token-file need --control-plane")
        }
        guard controlPlaneInterval >= 0.05, controlPlaneInterval <= 86_400 else {
            throw ValidationError("--control-plane-interval must be 0.05...86400 seconds, got \(controlPlaneInterval)")
        }
        guard controlPlaneBackoff >= 0.01, controlPlaneBackoff <= 3600 else {
            throw ValidationError("--control-plane-backoff must be 0.01...3600 seconds, got \(controlPlaneBackoff)")
        }
        guard controlPlaneMaxBackoff >= controlPlaneBackoff, controlPlaneMaxBackoff <= 86_400 else {
            throw ValidationError(
                "--control-plane-max-backoff must be --control-plane-backoff (\(controlPlaneBackoff))...86400 seconds, got \(controlPlaneMaxBackoff)")
        }
        guard controlPlaneTimeout >= 0.01, controlPlaneTimeout <= 600 else {
            throw ValidationError("--control-plane-timeout must be 0.01...600 seconds, got \(controlPlaneTimeout)")
        }
        guard controlPlaneMaxBytes >= 1024, controlPlaneMaxBytes <= 1 << 30 else {
            throw ValidationError("--control-plane-max-bytes must be 1024...1073741824, got \(controlPlaneMaxBytes)")
        }
    }

    /// The configuration to start with, its text, and the problems when there is none (then
    /// overlayd serves pass-through and reports not ready until a valid document arrives: README
    /// "Configuration at start"); sets the watcher's or the poller's options.
    func load(into options: inout RuntimeOptions, logger: Logger) throws -> (OverlayConfig, String, [String]?) {
        if let config {
            options.configPath = config
            options.configPollInterval = .milliseconds(Int64(configPollInterval * 1000))
            do {
                let (overlays, document) = try loadConfigDocument(path: config)
                return (overlays, document, nil)
            } catch {
                logger.error(
                    "no valid configuration: serving pass-through until \(config) is valid",
                    metadata: ["problems": "\(error.problems.map(\.description).joined(separator: "; "))"])
                return (OverlayConfig(source: config, version: "none", overlays: []), "", error.problems.map(\.description))
            }
        }
        guard let controlPlane else { return (EmbeddedDemo.load(), EmbeddedDemo.text, nil) }
        var plane = ControlPlaneOptions(url: controlPlane)
        plane.schedule = PollSchedule(
            intervalMs: Int(controlPlaneInterval * 1000), initialBackoffMs: Int(controlPlaneBackoff * 1000),
            maxBackoffMs: Int(controlPlaneMaxBackoff * 1000))
        plane.timeout = .milliseconds(Int64(controlPlaneTimeout * 1000))
        plane.maxBytes = controlPlaneMaxBytes
        plane.tokenFile = controlPlaneTokenFile
        plane.reportTokenFile = controlPlaneReportTokenFile
        // The long poll (when the control plane offers it) is held for one interval at most.
        plane.longPollSeconds = Int(min(60, max(1, controlPlaneInterval.rounded())))
        defer { options.controlPlane = plane }
        // Until the first fetch: the last known good document, or nothing (pass-through, not ready).
        let waiting = (OverlayConfig(source: controlPlane, version: "none", overlays: []), "", Optional(["waiting for the first document from \(controlPlane)"]))
        guard let stateDir else { return waiting }
        let directory = StateDirectory(path: stateDir)
        do { try directory.prepare() } catch { throw ValidationError(error.description) }
        plane.stateDirectory = directory
        switch directory.load() {
        case .success(let saved?) where saved.source == controlPlane:
            do {
                let overlays = try ConfigLoader.load(text: saved.document, source: controlPlane)
                options.controlPlaneETag = saved.etag
                options.startedFromStateDir = true
                logger.notice(
                    "starting from the last known good document until the control plane answers",
                    metadata: ["file": "\(directory.file)", "savedAt": "\(saved.savedAt)"])
                return (overlays, saved.document, nil)
            } catch {
                logger.error(
                    "the last known good document no longer validates; ignoring it",
                    metadata: ["file": "\(directory.file)", "problems": "\(error.problems.map(\.description).joined(separator: "; "))"])
            }
        case .success(let saved?):
            logger.warning(
                "ignoring the last known good document: it came from another control plane",
                metadata: ["file": "\(directory.file)", "savedFrom": "\(saved.source)"])
        case .success(nil):
            break
        case .failure(let error):
            logger.error("cannot use the last known good document", metadata: ["error": "\(error)"])
        }
        return waiting
    }
}
