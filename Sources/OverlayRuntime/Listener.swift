#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore
import NIOExtras
import NIOPosix

extension ServerBootstrap {
    /// The listener settings every overlayd front end uses (ext_proc, proxy): a deep accept
    /// backlog, address reuse, `quiesce` collecting the accepted connections (graceful shutdown)
    /// and no Nagle delay on them. The caller adds its own child options and initializer.
    package static func overlaydListener(group: any EventLoopGroup, quiesce: ServerQuiescingHelper) -> ServerBootstrap {
        ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(quiesce.makeServerChannelHandler(channel: channel))
                }
            }
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
    }
}

/// A listener that could not be opened, said with the option that set it, the address, and what
/// the system's error means (the bare `bind(...)` error names neither the option nor the address).
public struct ListenFailure: Error, CustomStringConvertible {
    /// The command-line option that chose the address (`--listen`, `--admin`, ...).
    public let option: String
    public let address: String
    public let reason: String

    public init(option: String, address: String, error: any Error) {
        self.option = option
        self.address = address
        self.reason = Self.explain(error)
    }

    public var description: String { "cannot listen on \(address) (\(option)): \(reason)" }

    static func explain(_ error: any Error) -> String {
        if let inUse = error as? UnixSocketInUse { return inUse.description }
        if error is UnixDomainSocketPathWrongType {
            return "the path exists and is not a socket (only a stale socket file there is replaced)"
        }
        guard let io = error as? IOError else { return "\(error)" }
        switch io.errnoCode {
        case EADDRINUSE:
            return "the address is already in use (another process listens there, or a connection holds the port); choose another port or stop that process"
        case EACCES:
            return "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE; a socket path needs a writable directory)"
        case EADDRNOTAVAIL:
            return "the address is not one of this host's interfaces"
        case ENOENT:
            return "the socket's directory does not exist"
        default:
            return "\(io)"
        }
    }

    /// Runs `bind`, turning what it throws into a ``ListenFailure`` for `option` and `address`.
    package static func opening<T>(
        option: String, address: String, _ bind: () async throws -> T
    ) async throws -> T {
        do {
            return try await bind()
        } catch {
            throw ListenFailure(option: option, address: address, error: error)
        }
    }
}

/// A Unix socket path where a live listener already answers. NIO's `cleanupExistingSocketFile`
/// would remove it and bind anew: a second overlayd would take the path from a running one.
package struct UnixSocketInUse: Error, CustomStringConvertible {
    package init() {}
    package var description: String { "another process is listening on this socket (only a stale socket file is replaced)" }
}

/// Which file a path names (device and inode), to remove at shutdown only the socket we bound,
/// not one another process has bound at the same path since.
package struct FileIdentity: Equatable {
    let device: UInt64
    let inode: UInt64

    package init?(path: String) {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        device = UInt64(info.st_dev)
        inode = UInt64(info.st_ino)
    }
}

extension ListenAddress {
    /// Whether something accepts connections on this Unix socket path now.
    package func unixSocketAnswers(group: any EventLoopGroup) async -> Bool {
        guard case .unix(let path) = self else { return false }
        do {
            let channel = try await ClientBootstrap(group: group)
                .connectTimeout(.seconds(1))
                .connect(unixDomainSocketPath: path)
                .get()
            try? await channel.close()
            return true
        } catch {
            return false
        }
    }
}
