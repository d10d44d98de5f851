import Testing

@testable import OverlayDecisions

/// ASCII case folding of protocol tokens: only A–Z change; every other byte (UTF-8 included) is
/// kept, and a string without upper-case letters comes back as it is.
@Suite struct ASCIICaseTests {
    @Test func lowerCasingTouchesOnlyASCIIUpperCase() {
        #expect(ASCIICase.lowercased("Content-Type") == "content-type")
        #expect(ASCIICase.lowercased("already-lower") == "already-lower")
        #expect(ASCIICase.lowercased("X-A_Long-Header-Name-Beyond-Small-String") == "x-a_long-header-name-beyond-small-string")
        #expect(ASCIICase.lowercased("") == "")
        #expect(ASCIICase.lowercased("[@Z`z]") == "[@z`z]")
        #expect(ASCIICase.lowercased("ÉCOLE-Ünï") == "École-Ünï")
        // The same as the generic version, byte for byte, over every byte value.
        let all = String(decoding: (0...127).map { UInt8($0) }, as: UTF8.self)
        #expect(ASCIICase.lowercased(all) == (ASCIICase.lowercasedIfNeeded(all.utf8) ?? all))
    }

    @Test func equalityIgnoresOnlyTheCaseOfASCIILetters() {
        #expect(ASCIICase.equals("Connection", lowercased: "connection"))
        #expect(ASCIICase.equals("CONNECTION", lowercased: "connection"))
        #expect(ASCIICase.equals("keep-alive", lowercased: "keep-alive"))
        #expect(!ASCIICase.equals("Connectio", lowercased: "connection"))
        #expect(!ASCIICase.equals("Connections", lowercased: "connection"))
        #expect(!ASCIICase.equals("Connectiom", lowercased: "connection"))
        #expect(!ASCIICase.equals("keep_alive", lowercased: "keep-alive"))
        #expect(!ASCIICase.equals("Keep-Alivé", lowercased: "keep-alive"))  // same length in characters, not bytes
        #expect(ASCIICase.equals("", lowercased: ""))
        // `@` (0x40) and `[` (0x5B) sit next to A and Z: they are not letters.
        #expect(!ASCIICase.equals("@", lowercased: "`"))
        #expect(!ASCIICase.equals("[", lowercased: "{"))
    }
}
