import Logging
import Testing

@testable import OverlayRuntime

@Suite struct TracingOptionsTests {
    @Test func anEndpointWithoutAPathGetsOTLPsTracesPath() {
        #expect(TracingOptions.tracesURL("http://127.0.0.1:4318") == "http://127.0.0.1:4318/v1/traces")
        #expect(TracingOptions.tracesURL("http://127.0.0.1:4318/") == "http://127.0.0.1:4318/v1/traces")
        #expect(TracingOptions.tracesURL("HTTPS://collector.example:443") == "HTTPS://collector.example:443/v1/traces")
        #expect(TracingOptions.tracesURL("http://[::1]:4318") == "http://[::1]:4318/v1/traces")
    }

    @Test func anEndpointWithAPathIsUsedAsGiven() {
        #expect(TracingOptions.tracesURL("http://127.0.0.1:4318/v1/traces") == "http://127.0.0.1:4318/v1/traces")
        #expect(TracingOptions.tracesURL("https://otel.example/custom/path") == "https://otel.example/custom/path")
    }

    @Test(arguments: [
        "127.0.0.1:4318", "ftp://127.0.0.1:4318", "http://", "https:///v1/traces", "http://:4318",
        "http://user@host:4318", "http://host:4318/v1/traces?x=1", "http://host:4318/#frag", "http://ho st:4318", "",
    ])
    func anEndpointThatIsNotAnHTTPURLWithAHostIsRefused(endpoint: String) {
        #expect(TracingOptions.tracesURL(endpoint) == nil)
        #expect(throws: TracingOptionsError.self) { try TracingOptions.validate(endpoint: endpoint, sampleRatio: 0.5) }
    }

    @Test func theErrorNamesTheFlagAndTheValue() {
        do {
            try TracingOptions.validate(endpoint: "ftp://x", sampleRatio: 0.5)
            Issue.record("accepted ftp://x")
        } catch {
            #expect(error.description.hasPrefix("--otlp-endpoint must be an http:// or https:// URL"))
            #expect(error.description.hasSuffix("got ftp://x"))
        }
        do {
            try TracingOptions.validate(endpoint: nil, sampleRatio: 1.5)
            Issue.record("accepted 1.5")
        } catch {
            #expect(error.description == "--trace-sample-ratio must be a number in 0...1, got 1.5")
        }
    }

    @Test func ratiosFromZeroToOneAreAccepted() throws {
        for ratio in [0, 0.01, 0.5, 1] {
            try TracingOptions.validate(endpoint: nil, sampleRatio: ratio)
            try TracingOptions.validate(endpoint: "http://127.0.0.1:4318", sampleRatio: ratio)
        }
        for ratio in [-0.01, 1.0001, .nan, .infinity] {
            #expect(throws: TracingOptionsError.self) { try TracingOptions.validate(endpoint: nil, sampleRatio: ratio) }
        }
    }

    @Test func withoutAnEndpointNothingIsBootstrapped() throws {
        #expect(try OverlayTracing.bootstrap(TracingOptions(), instance: "i", logger: .init(label: "t")) == nil)
        #expect(!OverlayTracing.isOn)
    }
}
