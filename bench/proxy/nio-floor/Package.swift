// swift-tools-version:6.1
// bench/proxy/nio-floor: the least an HTTP/1 reverse proxy on SwiftNIO's own HTTP/1 codecs costs
// on this machine (issue 18's measuring stick). A package of its own so that the main package
// stays free of benchmark targets; see bench/proxy/floor.sh (NIO_FLOOR=1) for how it is measured.
import PackageDescription

let package = Package(
    name: "nio-floor",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
    ],
    targets: [
        .executableTarget(
            name: "nio-floor",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
    ]
)
