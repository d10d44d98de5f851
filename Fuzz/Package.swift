// swift-tools-version:6.1
// Fuzz/: coverage-guided fuzz targets (libFuzzer through the Swift toolchain) for overlayd's parsers
// and state machines, each with an oracle. A package of its own that depends on the main package by
// path, so that the product build and CI's debug build never see fuzz-only targets or flags; the
// sanitizer flags (`--sanitize=fuzzer --sanitize=address`) are given on the command line by
// scripts/fuzz, so that every module a target links (ours and the dependencies') is instrumented,
// not only the target itself. Build and run one with `scripts/fuzz TARGET SECONDS`.
//
// Two targets test files of the OverlayProxy front-end module (RequestTarget, HopByHop): linking
// it would build the whole server graph (Hummingbird, async-http-client, BoringSSL) instrumented;
// their folders hold a symbolic link to the one source file instead, compiled into the target
// with the file's own imports. (grpc-message-reader links GRPCTransport, where the gRPC framing
// lives now.)
import PackageDescription

// SwiftPM identifies a path dependency by the last component of its directory (lower-cased), not by
// the `name:` in its manifest: for a checkout at /work/main that is "main" (see bench/inject).
let mainIdentity = Context.packageDirectory.split(separator: "/").dropLast(1).last.map {
    String($0).lowercased()
} ?? "main"

func main(_ product: String) -> Target.Dependency { .product(name: product, package: mainIdentity) }

/// A fuzz target: an executable whose entry point is libFuzzer's `LLVMFuzzerTestOneInput`
/// (`@_cdecl`), compiled as a library (no top-level code, no `main`: libFuzzer provides it).
func fuzzTarget(_ name: String, _ dependencies: [Target.Dependency]) -> Target {
    .executableTarget(
        name: name,
        dependencies: ["FuzzSupport"] + dependencies,
        path: name,
        swiftSettings: [.swiftLanguageMode(.v6), .unsafeFlags(["-parse-as-library"])]
    )
}

let package = Package(
    name: "overlayd-fuzz",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(path: ".."),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0", traits: []),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
    ],
    targets: [
        .target(name: "FuzzSupport", path: "Support", swiftSettings: [.swiftLanguageMode(.v6)]),
        fuzzTarget("html-injector", [main("OverlayInject")]),
        fuzzTarget("json-enricher", [main("OverlayInject")]),
        fuzzTarget("csp", [main("OverlayInject")]),
        fuzzTarget("sse", [main("BackendCore")]),
        fuzzTarget("retry-after", [main("BackendCore")]),
        fuzzTarget("prompt-template", [main("OverlayDecisions")]),
        fuzzTarget("config-loader", [main("OverlayCore"), main("OverlayFleet"), .product(name: "Yams", package: "Yams")]),
        fuzzTarget("exchange", [
            main("ExtProcCore"), main("ExtProcProto"), main("OverlayCore"),
            .product(name: "SwiftProtobuf", package: "swift-protobuf"),
        ]),
        fuzzTarget("extproc-decode", [
            main("ExtProcCore"), main("ExtProcProto"), main("OverlayTesting"),
            .product(name: "SwiftProtobuf", package: "swift-protobuf"),
        ]),
        fuzzTarget("grpc-message-reader", [
            main("GRPCTransport"),
            .product(name: "NIOCore", package: "swift-nio"),
        ]),
        fuzzTarget("h2-input", [
            main("GRPCTransport"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOEmbedded", package: "swift-nio"),
        ]),
        fuzzTarget("request-target", []),
        fuzzTarget("hop-by-hop", [
            main("OverlayDecisions"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ]),
    ]
)
