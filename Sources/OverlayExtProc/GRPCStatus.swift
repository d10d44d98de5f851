import NIOHPACK

/// The gRPC status codes we send (grpc/doc/statuscodes.md).
enum GRPCStatusCode: Int {
    case ok = 0
    case invalidArgument = 3
    case deadlineExceeded = 4
    case notFound = 5
    case resourceExhausted = 8
    case unimplemented = 12
    case `internal` = 13
    case unavailable = 14
}

enum GRPCHeaders {
    static let responseHeaders: HPACKHeaders = [":status": "200", "content-type": "application/grpc"]
    static let okTrailers: HPACKHeaders = ["grpc-status": "0"]

    static func trailers(_ code: GRPCStatusCode, message: String?) -> HPACKHeaders {
        var headers: HPACKHeaders = ["grpc-status": String(code.rawValue)]
        if let message, !message.isEmpty { headers.add(name: "grpc-message", value: percentEncode(message)) }
        return headers
    }

    /// A "trailers-only" response: status and trailers in the one HEADERS frame.
    static func trailersOnly(_ code: GRPCStatusCode, message: String?, extra: [(String, String)] = []) -> HPACKHeaders {
        var headers = responseHeaders
        headers.add(name: "grpc-status", value: String(code.rawValue))
        if let message, !message.isEmpty { headers.add(name: "grpc-message", value: percentEncode(message)) }
        for (name, value) in extra { headers.add(name: name, value: value) }
        return headers
    }

    /// grpc-message is percent-encoded: bytes outside 0x20...0x7E, and '%', are escaped.
    static func percentEncode(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for byte in text.utf8 {
            if byte >= 0x20 && byte <= 0x7E && byte != UInt8(ascii: "%") {
                out.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                let hex = String(byte, radix: 16, uppercase: true)
                out += "%" + (hex.count == 1 ? "0" + hex : hex)
            }
        }
        return out
    }

    /// Parses `grpc-timeout` (e.g. `100m`, `5S`): 1 to 8 ASCII digits and a unit (PROTOCOL-HTTP2.md).
    static func parseTimeout(_ value: String) -> Int64? {
        let digits = value.utf8.dropLast()
        guard let unit = value.last, (1...8).contains(digits.count),
            digits.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
            let amount = Int64(value.dropLast())
        else { return nil }
        switch unit {
        case "H": return amount * 3_600_000_000_000
        case "M": return amount * 60_000_000_000
        case "S": return amount * 1_000_000_000
        case "m": return amount * 1_000_000
        case "u": return amount * 1_000
        case "n": return amount
        default: return nil
        }
    }
}
