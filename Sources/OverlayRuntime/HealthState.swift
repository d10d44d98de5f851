import Locking
import Synchronization

/// Serving status shared by the gRPC health service (`grpc.health.v1`) and the admin `/readyz`.
public final class HealthState: Sendable {
    /// The service names the gRPC health service knows ("" is the whole server).
    public static let services: Set<String> = ["", "envoy.service.ext_proc.v3.ExternalProcessor"]

    private let listening = Atomic<Bool>(false)
    private let draining = Atomic<Bool>(false)
    private let configured: Atomic<Bool>

    /// - Parameter configured: whether a valid configuration is active (false: serving pass-through
    ///   only, until a valid document arrives).
    public init(configured: Bool = true) {
        self.configured = Atomic(configured)
    }

    /// Ready: a valid configuration, listening, and not draining.
    public var isServing: Bool {
        listening.load(ordering: .relaxed) && configured.load(ordering: .relaxed) && !draining.load(ordering: .relaxed)
    }

    public var isDraining: Bool { draining.load(ordering: .relaxed) }
    public var isConfigured: Bool { configured.load(ordering: .relaxed) }

    func markConfigured() { changing { configured.store(true, ordering: .relaxed) } }

    // MARK: - Watchers (grpc.health.v1 Watch streams)

    private let watchers = Locked<[ObjectIdentifier: @Sendable (Bool) -> Void]>([:])

    /// Calls `notify` with the new serving status whenever it changes, until removed.
    package func addWatcher(_ id: ObjectIdentifier, _ notify: @escaping @Sendable (Bool) -> Void) {
        watchers.withLock { $0[id] = notify }
    }

    package func removeWatcher(_ id: ObjectIdentifier) {
        _ = watchers.withLock { $0.removeValue(forKey: id) }
    }

    private func changing(_ update: () -> Void) {
        let before = isServing
        update()
        let after = isServing
        guard before != after else { return }
        for notify in watchers.withLock({ Array($0.values) }) { notify(after) }
    }

    package func markListening() { changing { listening.store(true, ordering: .relaxed) } }
    package func markDraining() { changing { draining.store(true, ordering: .relaxed) } }
}
