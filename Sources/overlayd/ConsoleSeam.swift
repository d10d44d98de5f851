import ConsoleAssets
import OverlayFleet

/// Where the console page's embedded files (console/, generated into Sources/ConsoleAssets by
/// scripts/gen-console) reach the control plane's `/` and the admin port's read-only `/`.
enum ConsoleSeam {
    static let assets: StaticAsset.Lookup = { path in
        ConsoleAssets.asset(for: path).map { StaticAsset(contentType: $0.contentType, bytes: $0.bytes, etag: $0.etag) }
    }
}
