import FuzzSupport
import OverlayDecisions

// Input: flags, a byte limit, values for the context, then the template source (text).
//
// Oracle, when the source compiles:
// - rendering equals an independent substitution: every `{{ name }}` replaced by its value,
//   the rest verbatim (values never re-expanded), then cut to the byte limit on a Unicode-scalar
//   boundary (the longest such prefix);
// - no `{{header.cookie}}` (or authorization, proxy-authorization) placeholder compiles unless
//   allowed;
// and when it does not compile, the error's position is inside the source (line ≥ 1, column ≥ 1,
// line ≤ the number of lines).

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let allowSensitive = input.bool()
    let limit = input.bool() ? input.int(0...300) : PromptTemplate.defaultMaxBytes
    func value() -> String { String(decoding: input.take(input.int(0...24)), as: UTF8.self) }
    let context = PromptContext(
        method: value(), host: value(), path: value(), query: value(), userKey: input.bool() ? value() : nil,
        headers: [(name: "X-Test", value: value()), (name: "cookie", value: value()), (name: "x-test", value: "second")])
    let source = String(decoding: input.rest(), as: UTF8.self)

    let template: PromptTemplate
    do {
        template = try PromptTemplate(compiling: source, allowSensitiveHeaders: allowSensitive, maxBytes: limit)
    } catch {
        let at: TemplatePosition
        switch error {
        case .unknownVariable(_, let p, _), .unterminatedPlaceholder(let p), .invalidHeaderName(_, let p),
             .sensitiveHeader(_, let p):
            at = p
        }
        let lines = source.utf8.filter { $0 == 0x0A }.count + 1
        check(at.line >= 1 && at.column >= 1 && at.line <= lines, "error position \(at) outside the source (\(lines) lines)")
        return 0
    }
    guard let full = reference(source, context, allowSensitive: allowSensitive) else {
        oracleFailure("compiled a template the reference rejects: \(source.debugDescription)")
    }
    var cut = ""
    var used = 0
    for scalar in full.unicodeScalars {
        let w = UTF8.width(scalar)
        if used + w > limit { break }
        cut.unicodeScalars.append(scalar)
        used += w
    }
    let rendered = template.render(context)
    check(rendered == cut, "render \(rendered.debugDescription) != reference \(cut.debugDescription)")
    return 0
}

/// Substitutes placeholders without the template's parser: nil when a placeholder is not one of
/// the known forms (the compiler must have refused it).
func reference(_ source: String, _ c: PromptContext, allowSensitive: Bool) -> String? {
    let b = Array(source.utf8)
    func find(_ x: UInt8, from: Int) -> Int? {
        var k = from
        while k + 1 < b.count {
            if b[k] == x && b[k + 1] == x { return k }
            k += 1
        }
        return nil
    }
    var out: [UInt8] = []
    var i = 0
    while let open = find(0x7B, from: i) {
        out += b[i..<open]
        guard let close = find(0x7D, from: open + 2) else { return nil }
        if let inner = find(0x7B, from: open + 2), inner < close { return nil }
        var name = b[(open + 2)..<close]
        while let f = name.first, f == 0x20 || f == 0x09 { name = name.dropFirst() }
        while let l = name.last, l == 0x20 || l == 0x09 { name = name.dropLast() }
        let text = String(decoding: name, as: UTF8.self)
        var value: String
        switch text {
        case "path": value = c.path
        case "query": value = c.query
        case "method": value = c.method
        case "host": value = c.host
        case "user": value = c.userKey ?? ""
        default:
            guard text.hasPrefix("header."), text.utf8.count > 7 else { return nil }
            let header = String(text.dropFirst(7)).lowercased()
            if !allowSensitive && ["cookie", "authorization", "proxy-authorization"].contains(header) { return nil }
            // The first header of that name whose value, trimmed of spaces and tabs, is not empty.
            value = ""
            for h in c.headers where h.name.lowercased() == header {
                var v = Substring(h.value)
                while let f = v.first, f == " " || f == "\t" { v = v.dropFirst() }
                while let l = v.last, l == " " || l == "\t" { v = v.dropLast() }
                if !v.isEmpty {
                    value = String(v)
                    break
                }
            }
        }
        out += Array(value.utf8)
        i = close + 2
    }
    out += b[min(i, b.count)...]
    return String(decoding: out, as: UTF8.self)
}
