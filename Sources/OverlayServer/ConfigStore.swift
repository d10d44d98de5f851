import OverlayCore
import Synchronization

/// The active configuration snapshot. Readers take one reference per exchange, so an exchange in
/// flight keeps the snapshot it started with while new exchanges see a newer one.
public final class ConfigStore: Sendable {
    private let state: Mutex<OverlayConfig>

    public init(_ initial: OverlayConfig) {
        state = Mutex(initial)
    }

    public var current: OverlayConfig { state.withLock { $0 } }

    /// Replaces the snapshot atomically.
    public func replace(with config: OverlayConfig) {
        state.withLock { $0 = config }
    }
}
