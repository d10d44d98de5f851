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
}
