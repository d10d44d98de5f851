import Logging
#if OTLPExport
import OTel
#endif
import ServiceLifecycle
import Synchronization
import Tracing
import W3CTraceContext

/// `--otlp-endpoint` and `--trace-sample-ratio` (issue 17): where spans go and how many roots are kept.
public struct TracingOptions: Sendable, Equatable {
    /// The OTLP/HTTP receiver's URL; nil: tracing is off (no tracer is bootstrapped).
    public var endpoint: String?
    /// The share of new traces (no sampled parent) that are recorded: 0...1.
    public var sampleRatio: Double

    public static let defaultSampleRatio = 0.01

    public init(endpoint: String? = nil, sampleRatio: Double = TracingOptions.defaultSampleRatio) {
        self.endpoint = endpoint
        self.sampleRatio = sampleRatio
    }

    /// Checks both flags; the error names the flag, the value and what is allowed.
    public static func validate(endpoint: String?, sampleRatio: Double) throws(TracingOptionsError) {
        if let endpoint, tracesURL(endpoint) == nil {
            throw TracingOptionsError(
                "--otlp-endpoint must be an http:// or https:// URL with a host (an OTLP/HTTP receiver, e.g. http://127.0.0.1:4318), got \(endpoint)")
        }
        guard sampleRatio.isFinite, sampleRatio >= 0, sampleRatio <= 1 else {
            throw TracingOptionsError("--trace-sample-ratio must be a number in 0...1, got \(sampleRatio)")
        }
    }

    /// The URL spans are posted to: `endpoint` itself when it names a path, else `endpoint` +
    /// `/v1/traces` (OTLP/HTTP's default path). nil when `endpoint` is not an http(s) URL with a host.
    public static func tracesURL(_ endpoint: String) -> String? {
        let lower = endpoint.lowercased()
        let rest: Substring
        if lower.hasPrefix("http://") {
            rest = endpoint.dropFirst("http://".count)
        } else if lower.hasPrefix("https://") {
            rest = endpoint.dropFirst("https://".count)
        } else {
            return nil
        }
        let authority = rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        guard !authority.isEmpty, !authority.contains(where: { $0 == " " || $0 == "@" }), authority.first != ":" else {
            return nil
        }
        let path = rest.dropFirst(authority.count)
        guard !path.contains(where: { $0 == " " || $0 == "?" || $0 == "#" }) else { return nil }
        if path.isEmpty || path == "/" {
            return String(endpoint.prefix(endpoint.count - path.count)) + "/v1/traces"
        }
        return endpoint
    }
}

public struct TracingOptionsError: Error, Sendable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// Distributed tracing (issue 17): swift-otel's OTLP/HTTP exporter behind swift-distributed-tracing's
/// API. Off unless bootstrapped with an endpoint; then ``isOn`` is true and the adapters open spans.
/// While off, the adapters do no tracing work at all (one relaxed load per exchange).
public enum OverlayTracing {
    /// overlayd's version, the `service.version` resource attribute.
    public static let version = "0.17.0"
    public static let serviceName = "overlayd"

    private static let on = Atomic<Bool>(false)
    private static let rootThreshold = Atomic<UInt64>(0)

    /// Whether a tracer was bootstrapped (the adapters skip every span when not).
    public static var isOn: Bool { on.load(ordering: .relaxed) }

    /// Which new traces are recorded (`--trace-sample-ratio`, set by ``bootstrap(_:instance:logger:)``).
    public static var rootSampler: RootSampler { RootSampler(threshold: rootThreshold.load(ordering: .relaxed)) }

    /// Bootstraps the tracer (once per process) and returns the exporter's service, which flushes
    /// what is queued on graceful shutdown; nil when `options.endpoint` is nil (tracing off).
    /// - Parameter instance: the `service.instance.id` resource attribute.
    public static func bootstrap(_ options: TracingOptions, instance: String, logger: Logger) throws -> (any Service)? {
        guard let endpoint = options.endpoint else { return nil }
        try TracingOptions.validate(endpoint: endpoint, sampleRatio: options.sampleRatio)
        #if OTLPExport
        var configuration = OTel.Configuration.default
        configuration.serviceName = serviceName
        configuration.resourceAttributes = ["service.instance.id": instance, "service.version": version]
        configuration.diagnosticLogger = .custom(logger)
        configuration.diagnosticLogLevel = .warning
        configuration.propagators = [.traceContext]
        configuration.logs.enabled = false
        configuration.metrics.enabled = false
        configuration.traces.enabled = true
        // Parent-based: an incoming traceparent's sampled flag decides. New roots are picked by
        // overlayd before any span is opened (``RootSampler``, ``ExchangeTrace/start``), so those
        // that reach the tracer are all recorded: an unpicked exchange costs the tracer nothing.
        configuration.traces.sampler = .parentBasedAlwaysOn
        configuration.traces.exporter = .otlp
        configuration.traces.otlpExporter.endpoint = TracingOptions.tracesURL(endpoint) ?? endpoint
        let backend = try OTel.makeTracingBackend(configuration: configuration)
        InstrumentationSystem.bootstrap(backend.factory)
        rootThreshold.store(RootSampler(ratio: options.sampleRatio).threshold, ordering: .relaxed)
        on.store(true, ordering: .relaxed)
        logger.info(
            "tracing on", metadata: ["otlp_endpoint": "\(configuration.traces.otlpExporter.endpoint)", "sample_ratio": "\(options.sampleRatio)"])
        return backend.service
        #else
        throw TracingOptionsError(
            "--otlp-endpoint \(endpoint): this overlayd was built without its span exporter (the package trait OTLPExport, on by default, was disabled); build with the default traits to export spans")
        #endif
    }

    /// The context of a request's trace: W3C `traceparent` / `tracestate` from `headers` (lower-case
    /// names), through the bootstrapped propagator; a top-level context when absent or malformed.
    public static func extract(_ headers: [String: String]) -> ServiceContext {
        var context = ServiceContext.topLevel
        InstrumentationSystem.instrument.extract(headers, into: &context, using: DictionaryExtractor())
        return context
    }

    /// A request's parent span, from its `traceparent` (and `tracestate`).
    enum Parent {
        case sampled(ServiceContext)
        case notSampled(ServiceContext)
    }

    /// The request's parent, or nil when `headers` carry no `traceparent` or one that W3C Trace
    /// Context (the library the propagator reads it with) refuses.
    static func parent(_ headers: [String: String]) -> Parent? {
        guard let value = headers["traceparent"],
            let parent = try? TraceContext(traceParentHeaderValue: value, traceStateHeaderValue: headers["tracestate"])
        else { return nil }
        let context = extract(headers)
        return parent.flags.contains(.sampled) ? .sampled(context) : .notSampled(context)
    }

    /// The headers (`traceparent`, `tracestate`) that carry `context` to a backend.
    public static func inject(_ context: ServiceContext) -> [(String, String)] {
        var headers: [(String, String)] = []
        InstrumentationSystem.instrument.inject(context, into: &headers, using: PairInjector())
        return headers
    }
}

/// Which new traces (requests without a valid `traceparent`) are recorded: a share `ratio` of
/// uniform random draws, one per exchange. Pure. overlayd decides this before any span is opened,
/// so an exchange it does not pick does no tracing work at all: no span, no ids, no context.
public struct RootSampler: Sendable, Equatable {
    /// Draws below it are picked; `UInt64.max`: every draw.
    public let threshold: UInt64

    public init(threshold: UInt64) { self.threshold = threshold }

    /// `ratio` in 0...1 (``TracingOptions/validate(endpoint:sampleRatio:)``): 0 picks none, 1 all.
    public init(ratio: Double) {
        let scaled = ratio * 0x1p64
        if !(scaled > 0) {
            threshold = 0
        } else if scaled >= 0x1p64 {
            threshold = .max
        } else {
            threshold = UInt64(scaled)
        }
    }

    /// Whether the exchange that drew `draw` (uniform over all of `UInt64`) starts a recorded trace.
    public func picks(_ draw: UInt64) -> Bool { threshold == .max || draw < threshold }
}

struct DictionaryExtractor: Extractor {
    func extract(key: String, from carrier: [String: String]) -> String? { carrier[key.lowercased()] }
}

struct PairInjector: Injector {
    func inject(_ value: String, forKey key: String, into carrier: inout [(String, String)]) {
        carrier.append((key, value))
    }
}

/// The names of the span attributes overlayd sets (README "Tracing").
public enum TraceAttribute {
    public static let frontend = "overlayd.frontend"
    public static let requestID = "overlayd.request_id"
    public static let decision = "overlayd.decision"
    public static let overlay = "overlayd.overlay"
    public static let model = "overlayd.model"
    public static let sticky = "overlayd.sticky"
    public static let shadowSampled = "overlayd.shadow.sampled"
    public static let challenger = "overlayd.challenger"
    public static let resultStatus = "overlayd.result.status"
    public static let injectionResult = "overlayd.injection.result"
    public static let injectionReason = "overlayd.injection.reason"
    public static let injectionBytes = "overlayd.injection.bytes"
    public static let waitMs = "overlayd.injection.wait_ms"
}
