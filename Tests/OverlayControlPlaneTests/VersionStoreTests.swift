import Foundation
import OverlayCore
import Testing

@testable import OverlayControlPlane
@testable import OverlayFleet

func temporaryDirectory() -> String {
    let path = NSTemporaryDirectory() + "overlayd-store-" + UUID().uuidString
    return path
}

@Suite struct VersionStoreTests {
    @Test func seedThenChangesMakeNewVersionsWithAuthorAndSummary() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try VersionStore(directory: directory)
        #expect(store.head.version == 0)
        #expect(try store.seed(yaml: EmbeddedDemo.text, source: "demo.yaml"))
        #expect(try store.seed(yaml: EmbeddedDemo.text, source: "demo.yaml") == false)
        let v2 = try store.apply(
            .setWeights(overlay: "demo-canary", weights: [("mock-fast", 50), ("mock-smart", 50)]), ifMatch: 1, author: "alice")
        #expect(v2 == 2)
        let history = try store.history(limit: 10)
        #expect(history.map(\.number) == [2, 1])
        #expect(history[0].author == "alice")
        #expect(history[0].summary == "weights of demo-canary: mock-fast 80→50, mock-smart 20→50")
        #expect(history[1].summary == "seeded from demo.yaml")
        #expect(try ConfigLoader.load(text: store.head.document, source: "t").overlays[0].models.map(\.weight) == [50, 50])
    }

    @Test func staleIfMatchIs409AndWritesNothing() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try VersionStore(directory: directory)
        _ = try store.seed(yaml: EmbeddedDemo.text, source: "demo")
        _ = try store.apply(.delete(.overlay, name: "demo-shadow"), ifMatch: nil, author: "a")
        do {
            _ = try store.apply(.delete(.model, name: "mock-smart"), ifMatch: 1, author: "b")
            Issue.record("expected 409")
        } catch {
            #expect(error.status == 409)
            #expect(error.currentVersion == 2)
        }
        #expect(try store.history(limit: 10).count == 2)
    }

    @Test func invalidChangeWritesNothing() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try VersionStore(directory: directory)
        _ = try store.seed(yaml: EmbeddedDemo.text, source: "demo")
        #expect(throws: APIError.self) {
            try store.apply(.setWeights(overlay: "demo-canary", weights: [("mock-fast", 70), ("mock-smart", 70)]), ifMatch: nil, author: "a")
        }
        #expect(try store.history(limit: 10).count == 1)
        #expect(store.head.version == 1)
    }

    @Test func rollbackIsANewVersionEqualToTheOldOne() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var published: [Int] = []
        let box = PublishedVersions()
        let store = try VersionStore(directory: directory, onChange: { box.append($0) })
        _ = try store.seed(yaml: EmbeddedDemo.text, source: "demo")
        let v1 = try #require(try store.version(1))
        _ = try store.apply(.setWeights(overlay: "demo-canary", weights: [("mock-fast", 50), ("mock-smart", 50)]), ifMatch: nil, author: "a")
        let v3 = try store.rollback(to: 1, ifMatch: 2, author: "b")
        #expect(v3 == 3)
        let restored = try #require(try store.version(3))
        #expect(restored.document == v1.document)
        #expect(restored.rollbackOf == 1)
        #expect(restored.summary == "rollback to version 1: weights of demo-canary: mock-fast 50→80, mock-smart 50→20")
        // History is never rewritten: 1 and 2 are still there, unchanged.
        #expect(try store.history(limit: 10).map(\.number) == [3, 2, 1])
        #expect(try store.version(1) == v1)
        do {
            _ = try store.rollback(to: 99, ifMatch: nil, author: "b")
            Issue.record("expected 404")
        } catch { #expect(error.status == 404) }
        published = box.values
        #expect(published == [1, 2, 3])
    }

    @Test func reopenedStoreServesTheNewestVersion() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        do {
            let store = try VersionStore(directory: directory)
            _ = try store.seed(yaml: EmbeddedDemo.text, source: "demo")
            _ = try store.apply(.delete(.overlay, name: "demo-shadow"), ifMatch: nil, author: "a")
        }
        let reopened = try VersionStore(directory: directory)
        #expect(reopened.head.version == 2)
        #expect(reopened.head.state.overlays.map(\.name) == ["demo-canary"])
    }

    @Test func aFileAsDataDirectoryIsNamed() throws {
        let path = temporaryDirectory()
        _ = FileManager.default.createFile(atPath: path, contents: Data())
        defer { try? FileManager.default.removeItem(atPath: path) }
        do {
            _ = try VersionStore(directory: path)
            Issue.record("expected an error")
        } catch {
            #expect(error.description == "--data \(path) is a file, not a directory")
        }
    }
}

final class PublishedVersions: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [Int] = []
    func append(_ value: Int) { lock.withLock { stored.append(value) } }
    var values: [Int] { lock.withLock { stored } }
}

@Suite struct VersionWatchTests {
    @Test func aWaiterIsAnsweredWhenTheVersionChanges() async {
        let watch = VersionWatch(version: 1)
        async let outcome = watch.wait(whileVersionIs: 1, timeout: .seconds(30))
        while watch.waiting == 0 { await Task.yield() }
        watch.publish(2)
        #expect(await outcome == .changed(2))
    }

    @Test func aStaleWaiterIsAnsweredAtOnceAndAWaitEnds() async {
        let watch = VersionWatch(version: 3)
        #expect(await watch.wait(whileVersionIs: 2, timeout: .seconds(30)) == .changed(3))
        #expect(await watch.wait(whileVersionIs: 3, timeout: .milliseconds(10)) == .timedOut)
        #expect(watch.waiting == 0)
    }

    @Test func closingAnswersEveryWaiterAndLaterOnesAtOnce() async {
        let watch = VersionWatch(version: 1)
        async let held = watch.wait(whileVersionIs: 1, timeout: .seconds(30))
        while watch.waiting == 0 { await Task.yield() }
        watch.close()
        #expect(await held == .timedOut)
        #expect(await watch.wait(whileVersionIs: 1, timeout: .seconds(30)) == .timedOut)
    }

    @Test func pastCapacityAWaiterIsRefused() async {
        let watch = VersionWatch(version: 1, capacity: 1)
        async let first = watch.wait(whileVersionIs: 1, timeout: .seconds(30))
        while watch.waiting == 0 { await Task.yield() }
        #expect(await watch.wait(whileVersionIs: 1, timeout: .seconds(30)) == .full)
        watch.publish(2)
        #expect(await first == .changed(2))
    }
}

@Suite struct TokenFileTests {
    @Test func namedAndBareTokens() throws {
        let path = temporaryDirectory()
        try "# operators\nalice:0123456789abcdef0123\n  fedcba9876543210fedc  \n".write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let tokens = try TokenFile.load(path: path, defaultName: "operator")
        #expect(tokens.name(authorization: "Bearer 0123456789abcdef0123") == "alice")
        #expect(tokens.name(authorization: "bearer fedcba9876543210fedc") == "operator")
        #expect(tokens.name(authorization: "Bearer 0123456789abcdef012") == nil)
        #expect(tokens.name(authorization: nil) == nil)
        #expect(tokens.name(authorization: "Basic 0123456789abcdef0123") == nil)
    }

    @Test func aMissingFileIsCreatedWithARandomToken() throws {
        let path = temporaryDirectory() + "/sub/operator.token"
        defer { try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent) }
        let (tokens, created) = try TokenFile.loadOrCreate(path: path, defaultName: "operator")
        #expect(created)
        let token = try #require(tokens.tokens.keys.first)
        #expect(token.count == 64)
        let again = try TokenFile.loadOrCreate(path: path, defaultName: "operator")
        #expect(again.created == false)
        #expect(again.0.tokens == tokens.tokens)
        let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
        #expect(mode == 0o600)
    }
}
