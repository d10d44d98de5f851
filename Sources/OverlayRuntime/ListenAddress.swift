/// Where a server listens: `HOST:PORT` (IPv4, `[IPv6]:PORT`, or a name) or `unix:/path/to.sock`.
public enum ListenAddress: Sendable, Equatable, CustomStringConvertible {
    case tcp(host: String, port: Int)
    case unix(path: String)

    public init(parsing text: String) throws(ListenAddressError) {
        if text.hasPrefix("unix:") {
            let path = String(text.dropFirst(5))
            guard !path.isEmpty else { throw ListenAddressError("unix: needs a socket path, e.g. unix:/run/overlayd.sock") }
            guard path.utf8.count < 104 else { throw ListenAddressError("unix socket path is too long (max 103 bytes): \(path)") }
            self = .unix(path: path)
            return
        }
        guard let colon = text.lastIndex(of: ":") else {
            throw ListenAddressError("expected HOST:PORT or unix:/path, got \"\(text)\"")
        }
        var host = String(text[..<colon])
        let portText = text[text.index(after: colon)...]
        guard let port = Int(portText), (0...65535).contains(port) else {
            throw ListenAddressError("port must be 0...65535 (0 picks a free port), got \"\(portText)\" in \"\(text)\"")
        }
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { throw ListenAddressError("expected HOST:PORT, the host is missing in \"\(text)\"") }
        self = .tcp(host: host, port: port)
    }

    public var description: String {
        switch self {
        case .tcp(let host, let port): return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        case .unix(let path): return "unix:\(path)"
        }
    }
}

public struct ListenAddressError: Error, Sendable, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}
