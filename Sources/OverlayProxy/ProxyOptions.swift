import Foundation
import OverlayRuntime

/// The upstream a reverse proxy forwards to: `http://HOST[:PORT][/base]` (https works too).
public struct Upstream: Sendable, Equatable, CustomStringConvertible {
    public var scheme: String
    public var host: String
    public var port: Int
    /// A path prefix put before every request's path ("" for none; no trailing slash).
    public var basePath: String

    public init(parsing text: String) throws(UpstreamError) {
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased(),
            scheme == "http" || scheme == "https"
        else { throw UpstreamError("--upstream must be an http:// or https:// URL, got \"\(text)\"") }
        guard var host = components.host, !host.isEmpty else {
            throw UpstreamError("--upstream needs a host, got \"\(text)\"")
        }
        // An IPv6 literal comes bracketed (`[::1]`): the address itself is what a connect takes.
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard components.query == nil, components.fragment == nil, components.user == nil else {
            throw UpstreamError("--upstream must not carry a query, fragment or user info, got \"\(text)\"")
        }
        self.scheme = scheme
        self.host = host
        self.port = components.port ?? (scheme == "https" ? 443 : 80)
        var base = components.percentEncodedPath
        while base.hasSuffix("/") { base.removeLast() }
        self.basePath = base
    }

    public var description: String {
        let hostText = host.contains(":") ? "[\(host)]" : host
        return "\(scheme)://\(hostText):\(port)\(basePath)"
    }
}

public struct UpstreamError: Error, Sendable, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}

/// `overlayd proxy` settings.
public struct ProxyOptions: Sendable {
    public var upstream: Upstream
    /// `--listen`: default `127.0.0.1:8080` (port 0 picks a free port).
    public var listenHost = "127.0.0.1"
    public var listenPort = 8080
    /// The option that set the listen address, named when it cannot be opened.
    public var listenOption = "--listen"
    /// `--upstream-timeout`: from sending the request to the upstream's response head; past it the
    /// client gets 504. (A body that has started is not timed: streams may be long.)
    public var upstreamTimeout: Duration = .seconds(30)
    /// `--upstream-connect-timeout`: connection establishment; past it the client gets 504.
    public var connectTimeout: Duration = .seconds(5)
    /// Idle keep-alive connections to the upstream are closed after this.
    public var upstreamIdleTimeout: Duration = .seconds(60)
    /// `--threads`: event-loop threads (each serves its client connections and their upstream
    /// connections).
    public var threads = CPUAffinity.usableCores
    /// Idle keep-alive connections to the upstream kept per event loop (beyond these, a finished
    /// exchange closes its connection).
    public var maxIdleUpstreamConnections = 256
    /// On SIGTERM/SIGINT: how long the connections with a response in flight may take to finish
    /// after the listener closes (idle connections close at once).
    public var drainTimeout: Duration = .seconds(10)
    /// `--client-header-timeout`: a new connection's first request head must arrive within this
    /// (408 and close; a connection that sends nothing is closed).
    public var clientHeaderTimeout: Duration = .seconds(60)
    /// `--client-body-timeout`: longest pause between two reads of a request body (408 when no
    /// response has begun, then close).
    public var clientBodyTimeout: Duration = .seconds(60)
    /// `--keepalive-timeout`: an idle client connection (HTTP/1.1 between requests, h2c without
    /// streams) is closed after this.
    public var keepaliveTimeout: Duration = .seconds(75)
    /// `--max-connections`: client connections open at once; more are closed at accept.
    public var maxConnections = 10_000
    /// `--max-connections-per-client`: client connections open at once from one address.
    public var maxConnectionsPerClient = 256
    /// `--max-request-body-bytes`: a larger declared body gets 413; a chunked one that grows past
    /// it ends the exchange and the connection.
    public var maxRequestBodyBytes: Int64 = 100 * 1024 * 1024
    /// `--max-request-head-bytes`: the request line and header fields (names and values, as NIO's
    /// decoder counts them; also any one field, and trailers) at most this; past it 431 and close.
    /// For h2c, `SETTINGS_MAX_HEADER_LIST_SIZE`.
    public var maxRequestHeadBytes = 64 * 1024

    public init(upstream: Upstream) {
        self.upstream = upstream
    }
}
