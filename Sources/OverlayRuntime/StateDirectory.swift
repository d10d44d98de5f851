#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// `--state-dir`: where the last document applied from the control plane is kept, so a restart
/// while the control plane is unreachable serves it instead of nothing.
///
/// One file, `last-known-good.json` (`{"format":1,"source":URL,"etag":…,"savedAt":…,"document":…}`),
/// replaced atomically: written to a temporary file in the same directory, fsynced, renamed over the
/// old one, and the directory fsynced. A reader sees the old file or the new one, never a torn one.
public struct StateDirectory: Sendable {
    public struct Saved: Sendable, Equatable, Codable {
        public var format = 1
        public var source: String
        public var etag: String?
        public var savedAt: Date
        public var document: String
    }

    public let path: String
    public var file: String { path + "/last-known-good.json" }

    public init(path: String) {
        self.path = path
    }

    /// Creates the directory if needed and checks that it is writable; the error says why not.
    public func prepare() throws(StateDirectoryError) {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue {
            throw StateDirectoryError("--state-dir \(path) is a file, not a directory")
        }
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw StateDirectoryError("cannot create --state-dir \(path): \(error.localizedDescription)")
        }
        guard access(path, W_OK | X_OK) == 0 else {
            throw StateDirectoryError("--state-dir \(path) is not writable: \(String(cString: strerror(errno)))")
        }
    }

    /// The saved document, or nil when there is none or it cannot be read (the reason is returned
    /// so the caller can log it).
    public func load() -> Result<Saved?, StateDirectoryError> {
        guard FileManager.default.fileExists(atPath: file) else { return .success(nil) }
        do {
            let data = try Data(contentsOf: URL(fileURLWithPath: file))
            let decoder = JSONDecoder()
            decoder.dateDecodingStrategy = .iso8601
            return .success(try decoder.decode(Saved.self, from: data))
        } catch {
            return .failure(StateDirectoryError("cannot read \(file): \(error)"))
        }
    }

    /// Replaces the saved document atomically.
    public func save(_ saved: Saved) throws(StateDirectoryError) {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.sortedKeys]
        let bytes: [UInt8]
        do {
            bytes = Array(try encoder.encode(saved))
        } catch {
            throw StateDirectoryError("cannot encode the state file: \(error)")
        }
        let temporary = path + "/.last-known-good.json.tmp-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw StateDirectoryError("cannot create \(temporary): \(String(cString: strerror(errno)))") }
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + written, $0.count - written) }
            if n < 0 {
                if errno == EINTR { continue }
                let reason = String(cString: strerror(errno))
                close(fd)
                unlink(temporary)
                throw StateDirectoryError("cannot write \(temporary): \(reason)")
            }
            written += n
        }
        if fsync(fd) != 0 {
            let reason = String(cString: strerror(errno))
            close(fd)
            unlink(temporary)
            throw StateDirectoryError("cannot fsync \(temporary): \(reason)")
        }
        close(fd)
        guard rename(temporary, file) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw StateDirectoryError("cannot rename \(temporary) to \(file): \(reason)")
        }
        let dir = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dir >= 0 {
            _ = fsync(dir)
            close(dir)
        }
    }
}

public struct StateDirectoryError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
