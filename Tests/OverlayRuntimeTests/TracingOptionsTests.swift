import Logging
import OverlayDecisions
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

    @Test func ratioZeroPicksNoNewTraceAndOnePicksEvery() {
        let none = RootSampler(ratio: 0)
        let every = RootSampler(ratio: 1)
        for draw: UInt64 in [0, 1, 1 << 63, .max - 1, .max] {
            #expect(!none.picks(draw))
            #expect(every.picks(draw))
        }
    }

    @Test func aRatioPicksTheDrawsBelowItsShareOfTheRange() {
        let half = RootSampler(ratio: 0.5)
        #expect(half.threshold == 1 << 63)
        #expect(half.picks(0) && half.picks((1 << 63) - 1))
        #expect(!half.picks(1 << 63) && !half.picks(.max))
        // Just below 1: 2^64 - 2^11, held exactly (no overflow into 2^64, which no UInt64 holds).
        let almost = RootSampler(ratio: 1.0.nextDown)
        #expect(almost.threshold == UInt64.max - 2047)
        #expect(almost.picks(.max - 2048) && !almost.picks(.max - 1))
        #expect(RootSampler(ratio: 1e-300).threshold == 0)
    }

    @Test(arguments: [0.01, 0.25, 0.9])
    func overManyDrawsTheShareOfPickedNewTracesIsTheRatio(ratio: Double) {
        let sampler = RootSampler(ratio: ratio)
        var random = SplitMix64(seed: 0x5eed)
        let draws = 200_000
        var picked = 0
        for _ in 0..<draws where sampler.picks(random.next()) { picked += 1 }
        // Binomial: five standard deviations at most 0.0056 of the draws.
        #expect(abs(Double(picked) / Double(draws) - ratio) < 0.006, "picked \(picked) of \(draws) at \(ratio)")
    }

    @Test func withoutAnEndpointNothingIsBootstrapped() throws {
        #expect(try OverlayTracing.bootstrap(TracingOptions(), instance: "i", logger: .init(label: "t")) == nil)
        #expect(!OverlayTracing.isOn)
    }
}
