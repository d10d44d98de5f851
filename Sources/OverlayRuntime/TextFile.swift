import Foundation

/// Reads a small text file (a configuration, a token) with an error that says what is wrong in
/// plain words; Foundation's own says "NSCocoaErrorDomain error 256" for a directory.
package enum TextFile {
    package struct ReadError: Error, CustomStringConvertible {
        package let reason: String
        package var description: String { reason }
    }

    package static func read(_ path: String) throws(ReadError) -> String {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw ReadError(reason: "no such file")
        }
        if isDirectory.boolValue { throw ReadError(reason: "it is a directory, not a file") }
        guard FileManager.default.isReadableFile(atPath: path) else {
            throw ReadError(reason: "permission denied")
        }
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw ReadError(reason: error.localizedDescription)
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ReadError(reason: "it is not UTF-8 text")
        }
        return text
    }
}
