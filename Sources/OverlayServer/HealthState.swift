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

    func markConfigured() { configured.store(true, ordering: .relaxed) }

    func markListening() { listening.store(true, ordering: .relaxed) }
    func markDraining() { draining.store(true, ordering: .relaxed) }
}
