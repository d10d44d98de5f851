import NIOCore

extension Duration {
    /// The same span as NIO's `TimeAmount` (nanosecond precision).
    package var timeAmount: TimeAmount {
        .nanoseconds(Int64(components.seconds) * 1_000_000_000 + components.attoseconds / 1_000_000_000)
    }
}
