@testable import OverlayDecisions
import OverlayTesting
import Testing

@Suite("UserKeyExtractor")
struct UserKeyExtractorTests {
    @Test("header source: case-insensitive name, trimmed value, first non-empty match wins")
    func header() {
        let headers: HeaderList = [
            (name: ":path", value: "/x"),
            (name: "X-User-Id", value: "  alice\t"),
            (name: "x-user-id", value: "bob"),
        ]
        #expect(UserKeyExtractor.extract(.header("x-user-id"), from: headers) == "alice")
        #expect(UserKeyExtractor.extract(.header("X-USER-ID"), from: headers) == "alice")
        let emptyFirst: HeaderList = [(name: "x-user-id", value: "  "), (name: "X-User-ID", value: "carol")]
        #expect(UserKeyExtractor.extract(.header("x-user-id"), from: emptyFirst) == "carol")
    }

    @Test("header source: absent or empty → nil; prefix/suffix names do not match")
    func headerAbsent() {
        #expect(UserKeyExtractor.extract(.header("x-user-id"), from: []) == nil)
        #expect(UserKeyExtractor.extract(.header("x-user-id"), from: [(name: "x-user-id", value: "")]) == nil)
        #expect(UserKeyExtractor.extract(.header("x-user-id"), from: [(name: "x-user-idx", value: "a")]) == nil)
        #expect(UserKeyExtractor.extract(.header("x-user-id"), from: [(name: "x-user-i", value: "a")]) == nil)
    }

    @Test("cookie parsing: separators, spaces, quotes, '=' in values, pairs without '='")
    func parse() {
        let parsed = UserKeyExtractor.parseCookies(#"a=1; b=2;c = 3 ;; flag; d="quoted val"; e=x=y; =nameless; f="""#)
        #expect(parsed.map { String($0.name) } == ["a", "b", "c", "d", "e", "f"])
        #expect(parsed.map { String($0.value) } == ["1", "2", "3", "quoted val", "x=y", ""])
        #expect(UserKeyExtractor.parseCookies("").isEmpty)
        #expect(UserKeyExtractor.parseCookies(#"q=""#).map { String($0.value) } == [#"""#])
    }

    @Test("cookie source: several cookie headers, first match wins, names case-sensitive")
    func cookie() {
        let headers: HeaderList = [
            (name: "Cookie", value: "theme=dark; sid=first"),
            (name: "accept", value: "*/*"),
            (name: "cookie", value: "sid=second; other=1"),
        ]
        #expect(UserKeyExtractor.extract(.cookie("sid"), from: headers) == "first")
        #expect(UserKeyExtractor.extract(.cookie("other"), from: headers) == "1")
        #expect(UserKeyExtractor.extract(.cookie("SID"), from: headers) == nil)
        #expect(UserKeyExtractor.extract(.cookie("missing"), from: headers) == nil)
        let quoted: HeaderList = [(name: "cookie", value: #"sid="abc 123""#)]
        #expect(UserKeyExtractor.extract(.cookie("sid"), from: quoted) == "abc 123")
        let emptyThenSet: HeaderList = [(name: "cookie", value: "sid=; sid=real")]
        #expect(UserKeyExtractor.extract(.cookie("sid"), from: emptyThenSet) == "real")
        // A header named like the cookie is not a cookie.
        #expect(UserKeyExtractor.extract(.cookie("sid"), from: [(name: "sid", value: "x")]) == nil)
    }

    @Test("keys longer than 256 bytes are replaced by a stable 64-bit digest")
    func cap() {
        let exact = String(repeating: "k", count: 256)
        #expect(UserKeyExtractor.capKey(exact) == exact)
        let long = String(repeating: "x", count: 300)
        // Golden value cross-checked with an independent Python implementation.
        #expect(UserKeyExtractor.capKey(long) == "h:a35b39f73adb54f2")
        #expect(UserKeyExtractor.capKey(long + "y") != UserKeyExtractor.capKey(long))
        // 86 × 3-byte scalars = 258 bytes > 256 even though only 86 Characters.
        let wide = String(repeating: "€", count: 86)
        #expect(UserKeyExtractor.capKey(wide).utf8.count == 18)
        let headers: HeaderList = [(name: "x-user", value: long)]
        #expect(UserKeyExtractor.extract(.header("x-user"), from: headers) == "h:a35b39f73adb54f2")
    }
}

@Suite struct CookieScanTests {
    /// The byte scan finds what the pair list finds, on headers dense in the syntax's edge cases.
    @Test func theByteScanMatchesTheReference() {
        var rng = SystemRandomNumberGenerator()
        let pieces = ["uid", "uid2", "u", "=", "==", ";", "; ", " ", "\t", "\"", "\"abc\"", "abc", "x=y", "UID", ";;", "uid=", "=v"]
        for _ in 0..<2000 {
            let header = (0..<Int.random(in: 0..<14, using: &rng)).map { _ in pieces.randomElement(using: &rng)! }.joined()
            let headers: HeaderList = [("cookie", header), ("Cookie", "other=1; uid=second")]
            #expect(
                UserKeyExtractor.cookieValue(named: "uid", in: headers) == Reference.cookieValue(named: "uid", in: headers),
                "\(header.debugDescription)")
        }
    }
}
