import FuzzSupport
import NIOHTTP1

// HopByHop.swift is compiled into this target (a symbolic link, see Package.swift).
//
// Input: header lines `name:value` separated by newlines.
//
// Oracle (RFC 9110 §7.6.1): the end-to-end fields are exactly the fields, in order and with their
// values, whose lower-cased name is neither one of the fixed hop-by-hop names nor listed in any
// `Connection` value (comma-separated, spaces and tabs around names ignored, case-insensitive);
// computed here independently, for both the NIOHTTP1 and the HTTPTypes representation.

let fixedNames: Set<String> = [
    "connection", "keep-alive", "proxy-connection", "te", "transfer-encoding", "upgrade", "trailer",
    "proxy-authenticate", "proxy-authorization",
]

func asciiLower(_ s: String) -> String {
    String(decoding: s.utf8.map { $0 >= 0x41 && $0 <= 0x5A ? $0 | 0x20 : $0 }, as: UTF8.self)
}

func listed(_ values: [String]) -> Set<String> {
    var names: Set<String> = []
    for value in values {
        for item in value.utf8.split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false) {
            var s = item[...]
            while let f = s.first, f == 0x20 || f == 0x09 { s = s.dropFirst() }
            while let l = s.last, l == 0x20 || l == 0x09 { s = s.dropLast() }
            if !s.isEmpty { names.insert(asciiLower(String(decoding: s, as: UTF8.self))) }
        }
    }
    return names
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: data == nil ? 0 : size))
    var pairs: [(String, String)] = []
    for line in bytes.split(separator: 0x0A, omittingEmptySubsequences: false) {
        let colon = line.firstIndex(of: 0x3A) ?? line.endIndex
        pairs.append((String(decoding: line[..<colon], as: UTF8.self),
                      String(decoding: line[min(colon + 1, line.endIndex)...], as: UTF8.self)))
    }

    // NIOHTTP1 (responses from the upstream).
    let headers = HTTPHeaders(pairs)
    let named = listed(pairs.filter { asciiLower($0.0) == "connection" }.map(\.1))
    let want = pairs.map { (asciiLower($0.0), $0.1) }.filter { !fixedNames.contains($0.0) && !named.contains($0.0) }
    let got = HopByHop.endToEnd(headers)
    check(got.map(\.name) == want.map(\.0) && got.map(\.value) == want.map(\.1),
          "NIOHTTP1: \(got) != \(want)")
    // The pass-through head: the same fields, names as they came.
    let kept = HopByHop.removed(from: headers)
    let wantKept = pairs.filter { !fixedNames.contains(asciiLower($0.0)) && !named.contains(asciiLower($0.0)) }
    check(kept.map(\.name) == wantKept.map(\.0) && kept.map(\.value) == wantKept.map(\.1),
          "removed(from:): \(Array(kept)) != \(wantKept)")
    check(HopByHop.named(byConnection: pairs.filter { asciiLower($0.0) == "connection" }.map(\.1)) == named.subtracting(fixedNames),
          "named(byConnection:) differs")

    return 0
}
