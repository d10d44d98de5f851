import FuzzSupport
import OverlayInject

// Input: header values separated by newlines (0x0A), as text.
//
// Oracle:
// - a nonce in an `.allowed` decision is valid (`OverlaySnippet.isValidNonce`) and appears in some
//   value as `'nonce-VALUE'` (case of the prefix aside);
// - more policies never allow more: if the values are blocked, the values plus any other value
//   are blocked too;
// - header order does not change whether the script is blocked, and a repeated header changes
//   nothing;
// - a policy without script-src-elem, script-src or default-src changes nothing;
// - `decide(headers:)` counts only Content-Security-Policy (any case), never …-Report-Only.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: data == nil ? 0 : size), as: UTF8.self)
    let values = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    let decision = ContentSecurityPolicy.decide(policies: values)

    if case .allowed(let nonce?) = decision {
        check(OverlaySnippet.isValidNonce(nonce), "invalid nonce \(nonce) chosen")
        check(values.contains { $0.lowercased().contains("'nonce-\(nonce.lowercased())'") },
              "nonce \(nonce) is in no policy")
    }
    let blocked = decision == .blocked
    check((ContentSecurityPolicy.decide(policies: values.reversed()) == .blocked) == blocked,
          "header order changes blocked/allowed")
    check(ContentSecurityPolicy.decide(policies: values + values) == decision, "a repeated header changes the decision")
    check(ContentSecurityPolicy.decide(policies: values + ["img-src 'none'; report-uri /r"]) == decision,
          "a policy without script directives changes the decision")
    if blocked, let first = values.first {
        check(ContentSecurityPolicy.decide(policies: values + [first + ", default-src *"]) == .blocked,
              "adding a policy allowed a blocked script")
    }
    if values.count > 1 {
        let head = Array(values.dropLast())
        if ContentSecurityPolicy.decide(policies: head) == .blocked {
            check(blocked, "adding a policy allowed a blocked script")
        }
    }
    let named = values.enumerated().map { index, value in
        (name: index % 2 == 0 ? "Content-Security-Policy" : "content-security-policy-report-only", value: value)
    }
    let enforced = values.enumerated().filter { $0.offset % 2 == 0 }.map(\.element)
    check(ContentSecurityPolicy.decide(headers: named) == ContentSecurityPolicy.decide(policies: enforced),
          "decide(headers:) did not keep exactly the enforced headers")
    return 0
}
