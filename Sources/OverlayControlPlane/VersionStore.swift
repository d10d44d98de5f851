import Foundation
import GRDB
import OverlayCore
import OverlayFleet
import Locking

/// The control plane's store: one SQLite file (`<data>/overlayd.sqlite`, through GRDB) holding
/// every version of the desired state.
///
/// Every change is one transaction that reads the newest version, checks `If-Match` against it,
/// applies the change (``ChangePlanner``: validated whole with `overlayd validate`'s loader) and
/// inserts a new, immutable row: the whole document as YAML, the author (the token's name), the
/// time, a summary of what changed and, for a rollback, the version it restores. Triggers refuse
/// any UPDATE or DELETE of a version: history is never rewritten. SQLite's journal makes each
/// transaction all-or-nothing, so a crash (even `kill -9`) leaves the last complete version.
public final class VersionStore: Sendable {
    /// One stored version.
    public struct Version: Sendable, Equatable {
        public var number: Int
        public var author: String
        public var time: Date
        public var summary: String
        public var rollbackOf: Int?
        public var document: String
    }

    /// The newest version, parsed (the state the API and the sidecars see).
    public struct Head: Sendable {
        public var version: Int
        public var state: DesiredState
        public var document: String
    }

    public let path: String
    private let database: DatabaseQueue
    private let cached: Locked<Head>
    /// Told the new version number after every committed change.
    private let onChange: @Sendable (Int) -> Void

    /// Opens (or creates) `<directory>/overlayd.sqlite`.
    public init(directory: String, onChange: @escaping @Sendable (Int) -> Void = { _ in }) throws(StoreError) {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else { throw StoreError("--data \(directory) is a file, not a directory") }
        } else {
            do {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            } catch {
                throw StoreError("--data \(directory): cannot create the directory: \(error.localizedDescription)")
            }
        }
        path = (directory as NSString).appendingPathComponent("overlayd.sqlite")
        self.onChange = onChange
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        configuration.label = "overlayd.control-plane"
        configuration.prepareDatabase { db in
            // Rollback journal with full syncs: a committed version survives a crash or power loss.
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        let database: DatabaseQueue
        do {
            database = try DatabaseQueue(path: path, configuration: configuration)
            try Self.migrator.migrate(database)
        } catch {
            throw StoreError("cannot open the store \(path): \(error)")
        }
        self.database = database
        do {
            let head = try database.read { db in try Self.newest(db) }
            if let head {
                let state: DesiredState
                do {
                    state = try DesiredState.parse(yaml: head.document, source: "version \(head.number)")
                } catch {
                    throw StoreError("the newest version (\(head.number)) in \(path) does not validate: \(error)")
                }
                cached = Locked(Head(version: head.number, state: state, document: head.document))
            } else {
                cached = Locked(Head(version: 0, state: DesiredState(), document: ""))
            }
        } catch let error as StoreError {
            throw error
        } catch {
            throw StoreError("cannot read the store \(path): \(error)")
        }
    }

    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE version (
                        number INTEGER PRIMARY KEY,
                        author TEXT NOT NULL,
                        time TEXT NOT NULL,
                        summary TEXT NOT NULL,
                        rollbackOf INTEGER REFERENCES version(number),
                        document TEXT NOT NULL
                    );
                    CREATE TRIGGER version_no_update BEFORE UPDATE ON version
                        BEGIN SELECT RAISE(ABORT, 'versions are immutable'); END;
                    CREATE TRIGGER version_no_delete BEFORE DELETE ON version
                        BEGIN SELECT RAISE(ABORT, 'versions are immutable'); END;
                    """)
        }
        return migrator
    }

    /// The newest version, as the API serves it.
    public var head: Head { cached.withLock { $0 } }

    /// Loads `yaml` as version 1 when the store is empty (`--seed`); returns false (and changes
    /// nothing) when it already holds versions.
    public func seed(yaml: String, source: String, author: String = "seed") throws(APIError) -> Bool {
        let state: DesiredState
        do {
            state = try DesiredState.parse(yaml: yaml, source: source)
        } catch {
            throw .invalid(error)
        }
        var wrote = false
        _ = try commit { _, version, _ throws(APIError) in
            guard version == 0 else { return nil }
            wrote = true
            return (state, author, "seeded from \(source)", nil)
        }
        return wrote
    }

    /// Applies a change as `author`; returns the new version. `ifMatch`: the version the client
    /// saw; when it is not the newest → 409 with the current version.
    public func apply(_ change: StateChange, ifMatch: Int?, author: String) throws(APIError) -> Int {
        try commit { current, version, _ throws(APIError) in
            try Self.check(ifMatch: ifMatch, version: version)
            let before = current?.state ?? DesiredState()
            let after = try ChangePlanner.apply(change, to: before, version: version)
            return (after, author, StateDiff.summary(from: before, to: after), nil)
        }
    }

    /// A new version whose document equals version `target`'s (404 when there is none).
    public func rollback(to target: Int, ifMatch: Int?, author: String) throws(APIError) -> Int {
        try commit { current, version, lookup throws(APIError) in
            try Self.check(ifMatch: ifMatch, version: version)
            guard let old = try lookup(target) else {
                throw .notFound("no version \(target) (the newest is \(version))")
            }
            let restored: DesiredState
            do throws(ConfigError) {
                restored = try DesiredState.parse(yaml: old.document, source: "version \(target)")
            } catch {
                throw .invalid(error)
            }
            let before = current?.state ?? DesiredState()
            return (restored, author, "rollback to version \(target): " + StateDiff.summary(from: before, to: restored), target)
        }
    }

    static func check(ifMatch: Int?, version: Int) throws(APIError) {
        if let ifMatch, ifMatch != version {
            throw APIError(
                status: 409, "stale version: you changed version \(ifMatch), the newest is \(version); reload and retry",
                currentVersion: version)
        }
    }

    /// Newest first.
    public func history(limit: Int) throws(APIError) -> [Version] {
        try read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM version ORDER BY number DESC LIMIT ?", arguments: [limit]).map(Self.version)
        }
    }

    public func version(_ number: Int) throws(APIError) -> Version? {
        try read { db in try Self.version(db, number) }
    }

    // MARK: - SQLite

    private typealias Planned = (state: DesiredState, author: String, summary: String, rollbackOf: Int?)

    private typealias Lookup = (Int) throws(APIError) -> Version?

    /// One write transaction: `plan` sees the newest version (nil when empty), its number and a
    /// lookup of older versions in the same transaction; it returns what to write (nil: nothing)
    /// or throws (nothing written).
    private func commit(_ plan: (Head?, Int, Lookup) throws(APIError) -> Planned?) throws(APIError) -> Int {
        var written: Head?
        do {
            try database.write { db in
                let newest = try Self.newest(db)
                let version = newest?.number ?? 0
                let current = cached.withLock { head in head.version == version ? head : nil }
                let headNow: Head?
                if let current {
                    headNow = current
                } else if let newest {
                    headNow = Head(
                        version: newest.number,
                        state: (try? DesiredState.parse(yaml: newest.document, source: "version \(newest.number)")) ?? DesiredState(),
                        document: newest.document)
                } else {
                    headNow = nil
                }
                let lookup: Lookup = { number throws(APIError) in
                    do {
                        return try Self.version(db, number)
                    } catch {
                        throw APIError(status: 500, "the store failed: \(error)")
                    }
                }
                guard let planned = try plan(headNow, version, lookup) else { return }
                let document = planned.state.yaml
                let number = version + 1
                let time = Date()
                try db.execute(
                    sql: "INSERT INTO version (number, author, time, summary, rollbackOf, document) VALUES (?, ?, ?, ?, ?, ?)",
                    arguments: [number, planned.author, Self.format(time), planned.summary, planned.rollbackOf, document])
                written = Head(version: number, state: planned.state, document: document)
            }
        } catch let error as APIError {
            throw error
        } catch {
            throw APIError(status: 500, "the store failed: \(error)")
        }
        guard let written else { return head.version }
        cached.withLock { head in
            if written.version > head.version { head = written }
        }
        onChange(written.version)
        return written.version
    }

    private func read<T>(_ body: (Database) throws -> T) throws(APIError) -> T {
        do {
            return try database.read(body)
        } catch let error as APIError {
            throw error
        } catch {
            throw APIError(status: 500, "the store failed: \(error)")
        }
    }

    static func newest(_ db: Database) throws -> Version? {
        try Row.fetchOne(db, sql: "SELECT * FROM version ORDER BY number DESC LIMIT 1").map(version)
    }

    static func version(_ db: Database, _ number: Int) throws -> Version? {
        try Row.fetchOne(db, sql: "SELECT * FROM version WHERE number = ?", arguments: [number]).map(version)
    }

    static func version(_ row: Row) -> Version {
        Version(
            number: row["number"], author: row["author"], time: parse(row["time"]) ?? Date(timeIntervalSince1970: 0),
            summary: row["summary"], rollbackOf: row["rollbackOf"], document: row["document"])
    }

    static func format(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }

    static func parse(_ text: String) -> Date? {
        try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(text)
    }
}

/// The store cannot be opened or read; the message names the file and the reason.
public struct StoreError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
