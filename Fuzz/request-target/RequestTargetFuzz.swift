import FuzzSupport

// RequestTarget.swift is compiled into this target (a symbolic link, see Package.swift).
//
// Input: whether a Host field is present, its value (up to a newline), then the request-target.
//
// Oracle (RFC 9112 §3.2): origin-form keeps the target as the path and the Host as authority;
// `*` is the path `*`; absolute-form http(s) (scheme case-insensitive) gives its authority (without
// userinfo) and a path that starts with `/`, without the fragment, that is the target's own text
// after the authority; everything else is invalid with a reason. Never traps.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let hasHost = input.bool()
    let bytes = input.rest()
    let split = bytes.firstIndex(of: 0x0A) ?? bytes.count
    let host = hasHost ? String(decoding: bytes[..<split], as: UTF8.self) : nil
    let target = String(decoding: bytes[min(split + 1, bytes.count)...], as: UTF8.self)

    let parsed = RequestTarget(target, host: host)
    if target.hasPrefix("/") {
        check(parsed == .resource(authority: host ?? "", path: target), "origin-form \(target.debugDescription) -> \(parsed)")
        return 0
    }
    if target == "*" {
        check(parsed == .resource(authority: host ?? "", path: "*"), "asterisk-form -> \(parsed)")
        return 0
    }
    let lower = target.lowercased()
    let scheme = lower.hasPrefix("http://") ? 7 : lower.hasPrefix("https://") && target.unicodeScalars.count >= 8 ? 8 : 0
    switch parsed {
    case .invalid(let reason):
        check(!reason.isEmpty, "invalid without a reason")
        if scheme > 0 {
            // Only an empty authority makes an http(s) URL invalid.
            let rest = Substring(target.unicodeScalars.dropFirst(scheme).map(Character.init))
            let end = rest.firstIndex { $0 == "/" || $0 == "?" || $0 == "#" } ?? rest.endIndex
            let authority = rest[..<end]
            let host = authority.lastIndex(of: "@").map { authority[authority.index(after: $0)...] } ?? authority
            check(host.isEmpty, "\(target.debugDescription) rejected with authority \(host.debugDescription)")
        }
    case .resource(let authority, let path):
        check(scheme > 0, "\(target.debugDescription) accepted as \(parsed)")
        check(!authority.isEmpty, "empty authority accepted")
        check(!authority.contains { "/?#@".contains($0) }, "authority \(authority.debugDescription)")
        check(path.hasPrefix("/"), "path \(path.debugDescription) does not start with /")
        check(!path.contains("#"), "path keeps the fragment")
        check(target.contains(authority + path.dropFirst()) || target.contains(authority + path),
              "authority and path are not the target's own text: \(authority) \(path) from \(target.debugDescription)")
    }
    return 0
}
