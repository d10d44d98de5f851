import Testing

@testable import OverlayRuntime

@Suite struct RandomTokensTests {
    @Test func hexWritesBothWordsMostSignificantNibbleFirst() {
        #expect(RandomTokens.hex(0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210) == "0123456789abcdeffedcba9876543210")
        #expect(RandomTokens.hex(0, 0) == String(repeating: "0", count: 32))
        #expect(RandomTokens.hex(.max, 1) == String(repeating: "f", count: 16) + String(repeating: "0", count: 15) + "1")
    }

    @Test func tokensAreDistinctHexAcrossManyRefills() {
        // 64 tokens per refill: 2,000 tokens cross about 30 refills.
        var seen = Set<String>()
        for _ in 0..<2_000 {
            let token = RandomTokens.next()
            #expect(token.utf8.count == 32)
            #expect(token.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) })
            seen.insert(token)
        }
        #expect(seen.count == 2_000)
    }

    @Test func concurrentCallersNeverShareAToken() async {
        let batches = await withTaskGroup(of: [String].self) { group in
            for _ in 0..<8 {
                group.addTask { (0..<500).map { _ in RandomTokens.next() } }
            }
            var all: [[String]] = []
            for await batch in group { all.append(batch) }
            return all
        }
        let tokens = batches.flatMap { $0 }
        #expect(tokens.count == 4_000)
        #expect(Set(tokens).count == 4_000)
    }

    @Test func engineTokensComeFromThePool() {
        let token = OverlayEngine.newToken()
        #expect(token.utf8.count == 32)
        #expect(token != OverlayEngine.newToken())
    }
}
