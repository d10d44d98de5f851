import Foundation
import OverlayInject
import Testing

private func enrich(_ body: String, key: String = "overlay", value: String = #"{"x":1}"#) -> String? {
    JSONEnricher.adding(key: key, value: bytes(value), to: bytes(body)).map { String(decoding: $0, as: UTF8.self) }
}

@Suite struct JSONEnricherTests {
    @Test func addsToObjects() {
        #expect(enrich("{}") == #"{"overlay":{"x":1}}"#)
        #expect(enrich(" { } \n") == #" { "overlay":{"x":1}} "# + "\n")
        #expect(enrich(#"{"a":1}"#) == #"{"a":1,"overlay":{"x":1}}"#)
        #expect(enrich("{\n  \"a\" : [1, {\"overlay\": 2}],\n  \"b\": {\"c\": null}\n}\n")
            == "{\n  \"a\" : [1, {\"overlay\": 2}],\n  \"b\": {\"c\": null}\n,\"overlay\":{\"x\":1}}\n")
        #expect(enrich(#"{"s":"}\"{","n":-0.5e+10,"t":true,"f":false,"z":null}"#, value: "[]")
            == #"{"s":"}\"{","n":-0.5e+10,"t":true,"f":false,"z":null,"overlay":[]}"#)
        #expect(enrich("{}", key: "we\"ird\n", value: "1") == #"{"we\"ird\n":1}"#)
    }

    @Test func resultIsValidJSONWithTheNewMember() throws {
        let body = #"{"a":[1,2,{"b":"c"}],"d":"é😀\u0041"}"#
        let out = try #require(JSONEnricher.adding(key: "k", value: bytes(#"{"v":[true]}"#), to: bytes(body)))
        let object = try #require(JSONSerialization.jsonObject(with: Data(out)) as? [String: Any])
        #expect(object.count == 3)
        #expect((object["k"] as? [String: Any])?["v"] as? [Bool] == [true])
        #expect(JSONEnricher.isValidJSON(out))
    }

    @Test func byteOrderMarkIsKept() {
        let body: [UInt8] = [0xEF, 0xBB, 0xBF] + bytes(#"{"a":1}"#)
        #expect(JSONEnricher.adding(key: "k", value: bytes("2"), to: body) == [0xEF, 0xBB, 0xBF] + bytes(#"{"a":1,"k":2}"#))
        #expect(JSONEnricher.adding(key: "k", value: [0xEF, 0xBB, 0xBF] + bytes("2"), to: bytes("{}")) == nil)
        #expect(JSONEnricher.adding(key: "k", value: bytes("2"), to: [0xEF, 0xBB, 0xBF]) == nil)
    }

    @Test(arguments: ["[]", "[{}]", "\"str\"", "1", "null", "true", " [ {\"a\":1} ] "])
    func topLevelNotAnObject(_ body: String) {
        #expect(enrich(body) == nil)
        #expect(JSONEnricher.isValidJSON(bytes(body)))
    }

    @Test(arguments: [
        "", " ", "{", "}", "{,}", "{\"a\":1,}", "{\"a\":01}", "{'a':1}", "{\"a\":1} x", "{\"a\":1}{}",
        "{\"a\":\"\u{1}\"}", "{\"a\":\"\\q\"}", "{\"a\":\"\\u12\"}", "{\"a\":tru}", "{\"a\":truex}", "{\"a\" 1}",
        "{\"a\":\"unterminated}", "{\"a\":1e}", "{\"a\":-}", "{\"a\":.5}", "{\"a\":1.}", "{\"a\":+1}",
        "{\"a\":NaN}", "{\"a\":Infinity}", "{/*c*/}", "{\"a\":[1,]}", "{\"a\":[1 2]}", "{a:1}", "{1:1}",
        "{\"a\":1\u{0B}}", "\u{A0}{}", "{\"a\":\"\u{2028}\"", "{\"a\":[}", "{\"a\":{]}",
    ])
    func invalidJSON(_ body: String) {
        #expect(enrich(body) == nil)
        #expect(!JSONEnricher.isValidJSON(bytes(body)))
    }

    @Test(arguments: [
        [0x7B, 0x22, 0x61, 0x22, 0x3A, 0x22, 0xFF, 0x22, 0x7D],  // invalid byte
        [0x7B, 0x22, 0x61, 0x22, 0x3A, 0x22, 0xC0, 0xAF, 0x22, 0x7D],  // overlong '/'
        [0x7B, 0x22, 0x61, 0x22, 0x3A, 0x22, 0xED, 0xA0, 0x80, 0x22, 0x7D],  // UTF-8 surrogate
        [0x7B, 0x22, 0x61, 0x22, 0x3A, 0x22, 0xF4, 0x90, 0x80, 0x80, 0x22, 0x7D],  // > U+10FFFF
        [0x7B, 0x22, 0x61, 0x22, 0x3A, 0x22, 0xE2, 0x82, 0x22, 0x7D],  // truncated sequence
        [0x7B, 0x7D, 0x00],  // trailing NUL
    ] as [[UInt8]])
    func invalidUTF8(_ body: [UInt8]) {
        #expect(JSONEnricher.adding(key: "k", value: bytes("1"), to: body) == nil)
    }

    @Test func validUTF8Accepted() {
        let body = bytes("{\"a\":\"é€😀\u{10FFFF}\",\"b\":\"\\ud83d\\ude00\\/\"}")
        #expect(JSONEnricher.adding(key: "k", value: bytes("1"), to: body) != nil)
    }

    @Test(arguments: [
        (#"{"overlay":1}"#, "overlay"),
        (#"{"a":1, "overlay" : null}"#, "overlay"),
        (#"{"\u006b":1}"#, "k"),
        (#"{"\ud83d\ude00":1}"#, "😀"),
        (#"{"a\"b":1}"#, "a\"b"),
        (#"{"\/":1}"#, "/"),
    ])
    func existingKeyIsNotReplaced(_ body: String, _ key: String) {
        #expect(enrich(body, key: key) == nil)
    }

    @Test func nestedOrSimilarKeysDoNotCount() {
        #expect(enrich(#"{"a":{"overlay":1},"b":["overlay"],"overlayx":1,"Overlay":2}"#) != nil)
        #expect(enrich(#"{"\ud83d":1}"#, key: "\u{FFFD}") != nil)  // lone surrogate never equals a String key
    }

    @Test func invalidValueIsRejected() {
        #expect(enrich("{}", value: "") == nil)
        #expect(enrich("{}", value: "{") == nil)
        #expect(enrich("{}", value: "1 2") == nil)
        #expect(enrich("{}", value: " \"ok\" ") == #"{"overlay": "ok" }"#)
    }

    @Test func hostileNestingDoesNotCrash() {
        let deep = [UInt8](repeating: 0x5B, count: 100_000)
        #expect(JSONEnricher.adding(key: "k", value: bytes("1"), to: deep) == nil)
        let deepInObject = bytes(#"{"a":"#) + deep + [UInt8](repeating: 0x5D, count: 100_000) + bytes("}")
        #expect(JSONEnricher.adding(key: "k", value: bytes("1"), to: deepInObject) == nil)
        let deepObjects = [UInt8](Array(repeating: bytes(#"{"a":"#), count: 100_000).joined())
        #expect(JSONEnricher.adding(key: "k", value: bytes("1"), to: deepObjects) == nil)
        #expect(JSONEnricher.adding(key: "k", value: deep, to: bytes("{}")) == nil)
    }

    @Test func depthLimitIsExact() {
        func nested(_ depth: Int) -> [UInt8] {
            // Top-level object plus (depth - 1) arrays.
            bytes(#"{"a":"#) + [UInt8](repeating: 0x5B, count: depth - 1) + [UInt8](repeating: 0x5D, count: depth - 1) + bytes("}")
        }
        #expect(JSONEnricher.adding(key: "k", value: bytes("1"), to: nested(JSONEnricher.maxDepth)) != nil)
        #expect(JSONEnricher.adding(key: "k", value: bytes("1"), to: nested(JSONEnricher.maxDepth + 1)) == nil)
    }

    @Test func agreesWithJSONSerializationOnRandomMutations() {
        // Mutate a valid document byte-wise; whenever our strict validator
        // accepts, Foundation must accept too (Foundation is more lenient).
        var rng = SplitMix64(seed: 99)
        let base = bytes(#"{"a":[1,-2.5e3,true,false,null,"s\n\u00e9"],"b":{"c":{}},"d":""}"#)
        let alphabet = bytes("{}[],:\"\\ 0123456789.eE+-tfnulrsa")
        var accepted = 0
        for _ in 0..<3000 {
            var doc = base
            for _ in 0..<Int.random(in: 1...3, using: &rng) {
                let i = Int.random(in: 0..<doc.count, using: &rng)
                switch Int.random(in: 0..<3, using: &rng) {
                case 0: doc[i] = alphabet.randomElement(using: &rng)!
                case 1: doc.remove(at: i)
                default: doc.insert(alphabet.randomElement(using: &rng)!, at: i)
                }
                if doc.isEmpty { doc = base }
            }
            if JSONEnricher.isValidJSON(doc) {
                accepted += 1
                #expect((try? JSONSerialization.jsonObject(with: Data(doc), options: [.fragmentsAllowed])) != nil,
                        "\(String(decoding: doc, as: UTF8.self))")
            }
        }
        #expect(accepted > 100)
    }
}
