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
