import ArgumentParser
import Foundation
import Logging
import OverlayCore
import OverlayServer
import ServiceLifecycle
import UnixSignals

@main
struct Overlayd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "overlayd",
        abstract: "AI overlays for legacy web apps: an Envoy ext_proc sidecar.",
        subcommands: [Serve.self, Validate.self],
        defaultSubcommand: Serve.self
    )
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the ext_proc gRPC server (h2c or a Unix socket) and the admin endpoint.")

    @Option(help: "AIOverlay resources (YAML or JSON). Without it, the embedded demo configuration is served.")
    var config: String?

    @Option(help: "Seconds between checks of --config for changes (a changed file is validated whole and swapped in, or rejected and the active one kept).")
    var configPollInterval: Double = 1

    @Option(help: "ext_proc listen address: HOST:PORT (port 0 picks a free port) or unix:/path.")
    var listen = "127.0.0.1:50051"

    @Option(help: "Admin HTTP address (/metrics, /healthz, /readyz): HOST:PORT.")
    var admin = "127.0.0.1:9901"

    @Option(help: "Seconds in-flight streams may run after SIGTERM/SIGINT before connections are closed.")
    var drainTimeout: Double = 10

    @Option(help: "Largest gRPC message accepted, in bytes.")
    var maxMessageBytes = 32 * 1024 * 1024

    @Option(help: "HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS per connection.")
    var maxConcurrentStreams = 4096

    @Option(help: "Event-loop threads (default: the CPUs this process may use; taskset and cpusets are honoured).")
    var threads: Int?

    @Flag(help: "Run HTTP/2 semantic header-block and content-length checks on every stream (off by default for the local Envoy peer).")
    var strictHttp2 = false

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel = "info"

    func validate() throws {
        guard configPollInterval >= 0.05, configPollInterval <= 3600 else {
            throw ValidationError("--config-poll-interval must be 0.05...3600 seconds, got \(configPollInterval)")
        }
        guard drainTimeout >= 0, drainTimeout <= 3600 else {
            throw ValidationError("--drain-timeout must be 0...3600 seconds, got \(drainTimeout)")
        }
        guard maxMessageBytes >= 1024, maxMessageBytes <= 1 << 30 else {
            throw ValidationError("--max-message-bytes must be 1024...1073741824, got \(maxMessageBytes)")
        }
        guard (1...1_000_000).contains(maxConcurrentStreams) else {
            throw ValidationError("--max-concurrent-streams must be 1...1000000, got \(maxConcurrentStreams)")
        }
        if let threads, !(1...256).contains(threads) {
            throw ValidationError("--threads must be 1...256, got \(threads)")
        }
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical; got \(logLevel)")
        }
    }

    func run() async throws {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "overlayd")

        var options = ServeOptions()
        do {
            options.extProc.listen = try ListenAddress(parsing: listen)
            guard case .tcp(let host, let port) = try ListenAddress(parsing: admin) else {
                throw ValidationError("--admin must be HOST:PORT, got \(admin)")
            }
            options.adminHost = host
            options.adminPort = port
        } catch let error as ListenAddressError {
            throw ValidationError("\(error)")
        }
        options.extProc.drainTimeout = .milliseconds(Int64(drainTimeout * 1000))
        options.extProc.maxMessageBytes = maxMessageBytes
        options.extProc.maxConcurrentStreams = maxConcurrentStreams
        if let threads { options.extProc.threads = threads }
        options.extProc.strictHTTP2 = strictHttp2

        var overlays: OverlayConfig
        var document: String
        var initialProblems: [String]?
        if let config {
            do {
                (overlays, document) = try loadConfigDocument(path: config)
            } catch {
                // No valid configuration at all: serve pass-through, report not ready, and pick the
                // file up as soon as it is valid (README "Configuration at start").
                logger.error(
                    "no valid configuration: serving pass-through until \(config) is valid",
                    metadata: ["problems": "\(error.problems.map(\.description).joined(separator: "; "))"])
                overlays = OverlayConfig(source: config, version: "none", overlays: [])
                document = ""
                initialProblems = error.problems.map(\.description)
            }
            options.configPath = config
            options.configPollInterval = .milliseconds(Int64(configPollInterval * 1000))
        } else {
            overlays = EmbeddedDemo.load()
            document = EmbeddedDemo.text
        }
        logger.info(
            "configuration loaded",
            metadata: [
                "source": "\(overlays.source)", "version": "\(overlays.version)",
                "overlays": "\(overlays.overlays.map { "\($0.name)=\($0.host)" }.joined(separator: ","))",
            ])

        let runtime = OverlayRuntime(
            options: options, config: overlays, document: document, initialProblems: initialProblems, logger: logger)
        let group = ServiceGroup(
            configuration: .init(
                services: runtime.services,
                gracefulShutdownSignals: [.sigterm, .sigint],
                cancellationSignals: [],
                logger: logger))
        try await group.run()
        logger.info("overlayd stopped")
    }
}

struct Validate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check AIOverlay resources: prints every problem, or \"ok\". Exit code 1 on problems.")

    @Argument(help: "The file to check (YAML or JSON).")
    var file: String

    func run() throws {
        do {
            let config = try loadConfig(path: file)
            print("ok: \(config.overlays.count) overlay\(config.overlays.count == 1 ? "" : "s") (version \(config.version))")
        } catch let error as ConfigError {
            print(error.description)
            throw ExitCode(1)
        }
    }
}

/// Reads and validates a config file; errors name the file and every problem.
func loadConfig(path: String) throws -> OverlayConfig {
    try loadConfigDocument(path: path).0
}

func loadConfigDocument(path: String) throws(ConfigError) -> (OverlayConfig, String) {
    let text: String
    do {
        text = try String(contentsOfFile: path, encoding: .utf8)
    } catch {
        throw ConfigError(source: path, problems: [.init(resource: nil, path: "", message: "cannot read the file: \(error.localizedDescription)")])
    }
    return (try ConfigLoader.load(text: text, source: path), text)
}
