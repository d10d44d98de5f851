import OverlayCore
import Testing

@testable import OverlayRuntime

/// The results overlay.js fetches by token: bounded, and expired results leave memory.
@Suite struct ResultStoreTests {
    static func view(_ token: String) -> OverlayResultView {
        OverlayResultView(overlay: "crm", model: "m", token: token, status: .ready)
    }

    /// Found by the fault soak (RSS growing for minutes): the TTL was applied only on lookup, so
    /// results nobody fetched stayed until `capacity` were held. Now each insert drops the
    /// expired ones at the front.
    @Test func expiredResultsLeaveOnTheNextInsert() {
        let store = ResultStore(capacity: 100, ttl: .zero)
        store.put(Self.view("a"))
        store.put(Self.view("b"))
        #expect(store.count == 1)
        #expect(store.view(token: "a") == nil)
    }

    @Test func theOldestLeaveBeyondTheCapacity() {
        let store = ResultStore(capacity: 2, ttl: .seconds(3600))
        for token in ["a", "b", "c"] { store.put(Self.view(token)) }
        #expect(store.count == 2)
        #expect(store.view(token: "a") == nil)
        #expect(store.view(token: "b")?.token == "b" && store.view(token: "c")?.token == "c")
    }

    /// The engine's store (10,000) is split in 16 shards by the token's last hex digit: still bounded,
    /// and within each shard the oldest leave first, so the newest results are all there.
    @Test func aLargeStoreIsBoundedAndKeepsTheNewest() {
        let store = ResultStore(capacity: 4096, ttl: .seconds(3600))
        let tokens = (0..<6000).map { _ in RandomTokens.next() }
        for token in tokens { store.put(Self.view(token)) }
        #expect(store.count <= 4096)
        #expect(store.count > 4096 - 16 * 64)  // every shard in use
        for token in tokens.suffix(1000) { #expect(store.view(token: token)?.token == token) }
        for token in tokens.prefix(100) { #expect(store.view(token: token) == nil) }
    }

    /// A pending result completed later keeps its creation time (the call's latency for drift).
    @Test func aCompletedResultReplacesItsPendingOne() throws {
        let store = ResultStore(capacity: 4096, ttl: .seconds(3600))
        let token = RandomTokens.next()
        store.put(OverlayResultView(overlay: "crm", model: "m", token: token, status: .pending))
        #expect(store.latencyMs(token: token) == nil)
        store.put(OverlayResultView(overlay: "crm", model: "m", token: token, status: .ready, text: "done"))
        #expect(store.view(token: token)?.status == .ready)
        #expect(try #require(store.latencyMs(token: token)) >= 0)
        #expect(store.count == 1)
    }
}
