// swift-tools-version:6.1
// bench/inject: throughput of OverlayInject's HTMLInjector next to a plain byte scan of the same
// input (the limit), in the same process. A package of its own so that the main package stays
// free of benchmark targets; it depends on the main package by path. Only OverlayInject
// (stdlib only) is built; the rest of the main package's graph is resolved but not compiled.
import PackageDescription

// SwiftPM identifies a path dependency by the last component of its directory (lower-cased),
// not by the `name:` in its manifest ("overlayd"): for a checkout at /work/main that is "main".
// Derive it so the bench also builds from a checkout under another directory name.
let mainIdentity = Context.packageDirectory.split(separator: "/").dropLast(2).last.map {
    String($0).lowercased()
} ?? "main"

let package = Package(
    name: "inject-bench",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(path: "../.."),
    ],
    targets: [
        .executableTarget(
            name: "inject-bench",
            dependencies: [.product(name: "OverlayInject", package: mainIdentity)],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
    ]
)
