import Foundation
import OverlayCore

/// Reads an API key from its `APIKeySource` on every call (so rotated Kubernetes secrets and env changes
/// apply without restart). The value is only ever placed into the `Authorization` header.
public struct APIKeyResolver: Sendable {
    public var environment: @Sendable (String) -> String?
    public var readFile: @Sendable (String) -> String?

    public init(
        environment: @escaping @Sendable (String) -> String? = { name in
            getenv(name).map { String(cString: $0) }
        },
        readFile: @escaping @Sendable (String) -> String? = { path in
            guard let data = FileManager.default.contents(atPath: path) else { return nil }
            return String(decoding: data, as: UTF8.self)
        }
    ) {
        self.environment = environment
        self.readFile = readFile
    }

    /// Human-readable name of a source (env var name / file path), safe to log.
    public static func describe(_ source: APIKeySource) -> String {
        switch source {
        case .env(let name): "env \(name)"
        case .file(let path): "file \(path)"
        }
    }

    /// The key (surrounding whitespace/newlines trimmed), or nil when unset/empty/unreadable.
    public func resolve(_ source: APIKeySource) -> String? {
        let raw: String?
        switch source {
        case .env(let name): raw = environment(name)
        case .file(let path): raw = readFile(path)
        }
        guard let key = raw?.trimmingCharacters(in: .whitespacesAndNewlines), !key.isEmpty else { return nil }
        return key
    }
}
