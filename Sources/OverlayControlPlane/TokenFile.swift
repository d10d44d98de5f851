import Foundation

/// A token file: one token per line, either `NAME:TOKEN` or a bare `TOKEN` (named after the
/// file's role, e.g. `operator`). Blank lines and `#` comments are ignored. The name is the
/// author recorded with every version.
public struct TokenFile: Sendable {
    public var path: String
    /// Token → name.
    public var tokens: [String: String]

    /// Reads `path`, or creates it with one random token (mode 0600) when it does not exist;
    /// `created` says which.
    public static func loadOrCreate(path: String, defaultName: String) throws(StoreError) -> (TokenFile, created: Bool) {
        if !FileManager.default.fileExists(atPath: path) {
            var bytes = [UInt8](repeating: 0, count: 32)
            var generator = SystemRandomNumberGenerator()
            for index in bytes.indices { bytes[index] = UInt8.random(in: 0...255, using: &generator) }
            let token = bytes.map { String(format: "%02x", $0) }.joined()
            let directory = (path as NSString).deletingLastPathComponent
            do {
                if !directory.isEmpty {
                    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
                }
                guard FileManager.default.createFile(
                    atPath: path, contents: Data((token + "\n").utf8), attributes: [.posixPermissions: 0o600])
                else { throw StoreError("cannot create \(path)") }
            } catch let error as StoreError {
                throw error
            } catch {
                throw StoreError("cannot create the token file \(path): \(error.localizedDescription)")
            }
            return (TokenFile(path: path, tokens: [token: defaultName]), true)
        }
        return (try load(path: path, defaultName: defaultName), false)
    }

    public static func load(path: String, defaultName: String) throws(StoreError) -> TokenFile {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue else {
            throw StoreError("token file \(path): no such file")
        }
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw StoreError("token file \(path): cannot read it as UTF-8 text")
        }
        var tokens: [String: String] = [:]
        for (number, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let name: String, token: String
            if let colon = line.firstIndex(of: ":") {
                name = String(line[..<colon]).trimmingCharacters(in: .whitespaces)
                token = String(line[line.index(after: colon)...]).trimmingCharacters(in: .whitespaces)
            } else {
                name = defaultName
                token = line
            }
            guard token.utf8.count >= 16 else {
                throw StoreError("token file \(path), line \(number + 1): a token must be at least 16 characters")
            }
            guard !name.isEmpty, name.utf8.count <= 64 else {
                throw StoreError("token file \(path), line \(number + 1): a name must be 1...64 characters")
            }
            tokens[token] = name
        }
        guard !tokens.isEmpty else { throw StoreError("token file \(path) holds no token") }
        return TokenFile(path: path, tokens: tokens)
    }

    /// The token's name when `authorization` is `Bearer <a token of this file>`.
    public func name(authorization: String?) -> String? {
        guard let authorization, authorization.count > 7, authorization.prefix(7).lowercased() == "bearer " else { return nil }
        let given = Array(authorization.dropFirst(7).trimmingCharacters(in: .whitespaces).utf8)
        // Every token is compared in full (no early exit on the first differing byte).
        var found: String?
        for (token, name) in tokens where Self.constantTimeEqual(Array(token.utf8), given) { found = name }
        return found
    }

    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for index in a.indices { difference |= a[index] ^ b[index] }
        return difference == 0
    }
}
