// swift-tools-version:6.1
// bench/protobuf: decoding one ProcessingRequest, the ext_proc server's largest item after HTTP/2
// (issue 16 part 4): swift-protobuf's generated message (as the server decoded until then, and
// its cheapest options) next to libprotobuf-c's C structs read in place (ExtProcCore's
// DecodedRequest, what the server decodes with now), in the same process. A package of its own
// so that the main package stays free of benchmark targets; it depends on the main package by
// path.
import PackageDescription

// SwiftPM identifies a path dependency by the last component of its directory (lower-cased).
let mainIdentity = Context.packageDirectory.split(separator: "/").dropLast(2).last.map {
    String($0).lowercased()
} ?? "main"

let package = Package(
    name: "protobuf-bench",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(path: "../.."),
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0", traits: []),
    ],
    targets: [
        .executableTarget(
            name: "protobuf-bench",
            dependencies: [
                .product(name: "ExtProcCore", package: mainIdentity),
                .product(name: "ExtProcProto", package: mainIdentity),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
    ]
)
