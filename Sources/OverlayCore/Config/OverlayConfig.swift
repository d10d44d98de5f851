import OverlayDecisions

/// How an overlay spreads users over its models (`spec.strategy`).
public enum OverlayStrategy: String, Sendable, Hashable, CaseIterable {
    /// Weighted split among `spec.models`, sticky per user.
    case canary = "Canary"
    /// The first model (champion) serves; the second (challenger) runs in the background for comparison.
    case shadow = "Shadow"
}

/// A model reference inside an overlay (`spec.models[i]`).
public struct ModelWeight: Sendable, Hashable {
    public var name: String
    /// 0...100; the weights of one overlay sum to 100.
    public var weight: Int

    public init(name: String, weight: Int) {
        self.name = name
        self.weight = weight
    }
}

/// One validated `AIOverlay` resource.
///
/// Its fields sit in one immutable box: an overlay travels with every overlaid exchange (its route,
/// its core, its plan), and a copy of it (or its end) is one reference count, not one per string
/// and array of its settings. Setting a field makes a new box.
public struct Overlay: Sendable, Hashable {
    struct Fields: Sendable, Hashable {
        var name: String
        var host: HostPattern
        var models: [ModelWeight]
        var strategy: OverlayStrategy
        var settings: OverlaySettings
        var splitter: StickySplitter
        var shadowSampler: ShadowSampler
    }

    final class Box: Sendable {
        let fields: Fields
        init(_ fields: Fields) { self.fields = fields }
    }

    private var box: Box

    private mutating func update(_ change: (inout Fields) -> Void) {
        var fields = box.fields
        change(&fields)
        box = Box(fields)
    }

    /// `metadata.name`.
    public var name: String {
        _read { yield box.fields.name }
        set { update { $0.name = newValue } }
    }
    /// `spec.hostApp`: which hosts this overlay applies to.
    public var host: HostPattern {
        _read { yield box.fields.host }
        set { update { $0.host = newValue } }
    }
    /// `spec.models` (setting them compiles the split again).
    public var models: [ModelWeight] {
        _read { yield box.fields.models }
        set {
            update {
                $0.models = newValue
                $0.splitter = StickySplitter(salt: $0.name, arms: newValue.map { (name: $0.name, weight: $0.weight) })
            }
        }
    }
    public var strategy: OverlayStrategy {
        _read { yield box.fields.strategy }
        set { update { $0.strategy = newValue } }
    }
    /// Everything optional, with its defaults (setting them makes the shadow sampler again).
    public var settings: OverlaySettings {
        _read { yield box.fields.settings }
        set {
            update {
                $0.settings = newValue
                $0.shadowSampler = ShadowSampler(overlay: $0.name, rate: newValue.shadowSampleRate)
            }
        }
    }
    /// The weighted split of `models`, compiled once (salted with the overlay's name).
    public var splitter: StickySplitter { _read { yield box.fields.splitter } }
    public var shadowSampler: ShadowSampler { _read { yield box.fields.shadowSampler } }

    public init(
        name: String, host: HostPattern, models: [ModelWeight], strategy: OverlayStrategy,
        settings: OverlaySettings = OverlaySettings()
    ) {
        box = Box(
            Fields(
                name: name, host: host, models: models, strategy: strategy, settings: settings,
                splitter: StickySplitter(salt: name, arms: models.map { (name: $0.name, weight: $0.weight) }),
                shadowSampler: ShadowSampler(overlay: name, rate: settings.shadowSampleRate)))
    }

    public static func == (lhs: Overlay, rhs: Overlay) -> Bool {
        lhs.box === rhs.box || lhs.box.fields == rhs.box.fields
    }

    public func hash(into hasher: inout Hasher) { box.fields.hash(into: &hasher) }
}

/// The compiled, immutable runtime configuration: every overlay, validated, plus the host table.
///
/// A snapshot is taken once per exchange, so an exchange in flight never sees a mix of two configs.
/// Its parts sit in one immutable box: every exchange keeps a copy, and a copy (or its end) is one
/// reference count, not one per part.
public struct OverlayConfig: Sendable {
    @usableFromInline
    final class Storage: Sendable {
        @usableFromInline let source: String
        @usableFromInline let version: String
        @usableFromInline let overlays: [Overlay]
        @usableFromInline let models: [String: ModelSpec]
        @usableFromInline let routes: RouteTable

        init(source: String, version: String, overlays: [Overlay], models: [String: ModelSpec], routes: RouteTable) {
            self.source = source
            self.version = version
            self.overlays = overlays
            self.models = models
            self.routes = routes
        }
    }

    @usableFromInline let storage: Storage

    /// Where it came from (file path, `embedded:demo`, or a URL) and a version string (content hash).
    @inlinable public var source: String { storage.source }
    @inlinable public var version: String { storage.version }
    @inlinable public var overlays: [Overlay] { storage.overlays }
    /// The model registry (`AIModel` resources) by name.
    public var models: [String: ModelSpec] { storage.models }
    @inlinable public var routes: RouteTable { storage.routes }

    /// Compiles validated resources. Callers get them from ``ConfigLoader``, which has checked them.
    public init(source: String, version: String, overlays: [Overlay], models: [ModelSpec] = []) {
        storage = Storage(
            source: source, version: version, overlays: overlays,
            models: Dictionary(models.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first }),
            routes: RouteTable(overlays.enumerated().map { ($0.element.host, $0.offset) }))
    }

    /// A configuration with no overlays: every exchange is passed through.
    public static let empty = OverlayConfig(source: "none", version: "0", overlays: [])

    /// The overlay for an HTTP authority (`host` or `host:port`), or nil: pass through.
    @inlinable
    public func overlay(forAuthority authority: Substring) -> Overlay? {
        guard let index = routes.match(authority: authority) else { return nil }
        return overlays[index]
    }
}
