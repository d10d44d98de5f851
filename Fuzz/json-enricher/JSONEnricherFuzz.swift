import FuzzSupport
import OverlayInject

// Input: a key choice, the value's length (0…255), the value, then the body.
//
// Oracle, when `adding` returns a result:
// - the body (minus a UTF-8 BOM) and the value are valid JSON (`isValidJSON`), and so is the
//   result (minus the same BOM);
// - byte exactness: the result is the body with exactly `[,]"key":value` inserted before the
//   top-level object's closing `}` (its last non-whitespace byte): nothing else changed;
// - adding the same key to the result again is refused (the member is now there);
// and when it returns nil for a valid object body and a valid value, the body already has the key
// (checked where that is decidable without decoding: the literal "key" member text is present).

let keys = ["overlay", "overlayd", "a", "", "k\u{e9}y", "quote\"d", "\u{1F600}"]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let key = keys[input.int(0...(keys.count - 1))]
    let value = input.take(input.int(0...255))
    let body = input.rest()
    let bom: [UInt8] = [0xEF, 0xBB, 0xBF]
    let hasBOM = body.starts(with: bom)
    let plainBody = hasBOM ? Array(body.dropFirst(3)) : body

    guard let result = JSONEnricher.adding(key: key, value: value, to: body) else {
        if JSONEnricher.isValidJSON(value), JSONEnricher.isValidJSON(plainBody),
           plainBody.first(where: { !isWS($0) }) == 0x7B {
            let member = Array(OverlaySnippet.jsonStringLiteral(key).utf8)
            check(contains(plainBody, member) || containsEscape(plainBody),
                  "refused a valid object without the key \(key): \(show(plainBody))")
        }
        return 0
    }
    check(JSONEnricher.isValidJSON(value), "accepted an invalid value \(show(value))")
    check(JSONEnricher.isValidJSON(plainBody), "accepted an invalid body \(show(body))")
    check(result.starts(with: hasBOM ? bom : []), "BOM lost")
    let plainResult = hasBOM ? Array(result.dropFirst(3)) : result
    check(JSONEnricher.isValidJSON(plainResult), "result is not valid JSON: \(show(result))")

    guard let close = body.lastIndex(where: { !isWS($0) }), body[close] == 0x7D else {
        oracleFailure("enriched a body whose last byte is not }: \(show(body))")
    }
    let member = Array(OverlaySnippet.jsonStringLiteral(key).utf8) + [0x3A] + value
    let withComma = Array(body[..<close]) + [0x2C] + member + Array(body[close...])
    let without = Array(body[..<close]) + member + Array(body[close...])
    check(result == withComma || result == without, "not the body plus one member: \(show(result))")
    if result == without {
        // No comma: only for an empty object, whose { is the last non-space byte before }.
        let before = body[..<close].lastIndex(where: { !isWS($0) })
        check(before.map { body[$0] == 0x7B } ?? false, "member added without a comma to a non-empty object")
    }
    check(JSONEnricher.adding(key: key, value: value, to: result) == nil, "the key was added twice")
    return 0
}

func isWS(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D }

func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
    guard !needle.isEmpty, haystack.count >= needle.count else { return needle.isEmpty }
    for start in 0...(haystack.count - needle.count) where haystack[start] == needle[0] {
        if haystack[start..<(start + needle.count)].elementsEqual(needle) { return true }
    }
    return false
}

/// A backslash escape anywhere: the key may be spelled with escapes (`"k\u0065y"`); not decided here.
func containsEscape(_ bytes: [UInt8]) -> Bool { bytes.contains(0x5C) }
