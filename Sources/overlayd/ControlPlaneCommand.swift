import ArgumentParser
import Foundation
import Logging
import OverlayControlPlane
import OverlayCore
import OverlayFleet
import OverlayRuntime
import ServiceLifecycle

/// `overlayd control-plane`: the fleet's desired state, its history and the console (issue 15).
struct ControlPlane: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "control-plane",
        abstract: "Run the fleet's control plane: the versioned desired state (SQLite), the console and its JSON API, the sidecars' long poll and reports.")

    @Option(help: "Listen address: HOST:PORT (port 0 picks a free port). Loopback by default: reads need no token.")
    var listen = "127.0.0.1:9900"

    @Option(help: "Directory of the store (overlayd.sqlite: every version of the desired state); created when missing.")
    var data = "./overlayd-data"

    @Option(help: "AIOverlay/AIModel documents (YAML or JSON) loaded as version 1 into an empty store; ignored once the store holds versions.")
    var seed: String?

    @Option(help: "The operator token file (NAME:TOKEN or TOKEN lines; the name is recorded as each version's author). Created with a random token when missing. Default: DATA/operator.token.")
    var tokenFile: String?

    @Option(help: "The token file sidecars present when they POST /v1/reports. Created with a random token when missing. Default: DATA/report.token.")
    var reportTokenFile: String?

    @Option(help: "Long polls that may wait at once; more get 503 and back off.")
    var maxWaiters = 10_000

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel = "info"

    func validate() throws {
        guard (1...1_000_000).contains(maxWaiters) else {
            throw ValidationError("--max-waiters must be 1...1000000, got \(maxWaiters)")
        }
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical; got \(logLevel)")
        }
    }

    func run() async throws {
        let logger = bootstrapLogging(logLevel)
        var options = ControlPlaneServerOptions()
        (options.host, options.port) = try hostPort(listen, flag: "--listen")
        options.maxWaiters = maxWaiters

        let watch = VersionWatch(version: 0, capacity: maxWaiters)
        let store: VersionStore
        do {
            store = try VersionStore(directory: data, onChange: { watch.publish($0) })
        } catch {
            throw ValidationError(error.description)
        }
        watch.publish(store.head.version)
        if let seed {
            let text: String
            do { text = try TextFile.read(seed) } catch { throw ValidationError("--seed \(seed): cannot read the file: \(error)") }
            do {
                if try store.seed(yaml: text, source: seed) {
                    logger.notice("store seeded", metadata: ["seed": "\(seed)", "version": "\(store.head.version)"])
                } else {
                    logger.info(
                        "the store already holds versions; --seed ignored",
                        metadata: ["seed": "\(seed)", "version": "\(store.head.version)"])
                }
            } catch {
                let problems = error.problems.map { "  - \($0.path): \($0.message)" }.joined(separator: "\n")
                throw ValidationError("--seed \(seed): \(error.error)\n\(problems)")
            }
        }
        let operatorTokens = try tokens(tokenFile, default: "operator.token", name: "operator", flag: "--token-file", logger: logger)
        let reportTokens = try tokens(
            reportTokenFile, default: "report.token", name: "sidecar", flag: "--report-token-file", logger: logger)
        logger.info(
            "store open", metadata: ["file": "\(store.path)", "version": "\(store.head.version)"])

        let address = listen
        let server = ControlPlaneServer(
            options: options, store: store, watch: watch, operatorTokens: operatorTokens, reportTokens: reportTokens,
            assets: ConsoleSeam.assets, logger: logger,
            listenFailure: { error in ListenFailure(option: "--listen", address: address, error: error) })
        try await signalledGroup(
            [.init(service: server, successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup)],
            logger: logger
        ).run()
        logger.info("overlayd control-plane stopped")
    }

    func tokens(_ path: String?, default file: String, name: String, flag: String, logger: Logger) throws -> TokenFile {
        let path = path ?? (data as NSString).appendingPathComponent(file)
        do {
            let (tokens, created) = try TokenFile.loadOrCreate(path: path, defaultName: name)
            if created { logger.notice("created \(flag) with a random token", metadata: ["file": "\(path)"]) }
            return tokens
        } catch {
            throw ValidationError("\(flag): \(error.description)")
        }
    }
}
