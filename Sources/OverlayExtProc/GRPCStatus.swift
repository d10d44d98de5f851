import GRPCTransport
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

    /// The stream end carrying this status.
    func end(_ message: String?, extra: [(String, String)] = []) -> GRPCStreamEnd {
        .status(code: rawValue, message: message, extra: extra.map { GRPCStreamEnd.Field($0.0, $0.1) })
    }
}

enum GRPCHeaders {
    static let responseHeaders: HPACKHeaders = [":status": "200", "content-type": "application/grpc"]
    static let okTrailers: HPACKHeaders = ["grpc-status": "0"]

    /// A "trailers-only" response: status and trailers in the one HEADERS frame.
    static func trailersOnly(_ code: GRPCStatusCode, message: String?, extra: [(String, String)] = []) -> HPACKHeaders {
        block(code.end(message, extra: extra), trailersOnly: true)
    }

    /// The header block that ends a stream: trailers after response headers, or a trailers-only
    /// (or plain HTTP) response when nothing was sent.
    static func block(_ end: GRPCStreamEnd, trailersOnly: Bool) -> HPACKHeaders {
        switch end {
        case .http(let status):
            return [":status": String(status)]
        case .status:
            var headers = trailersOnly ? responseHeaders : HPACKHeaders()
            for field in end.statusFields { headers.add(name: field.name, value: field.value) }
            return headers
        }
    }

    /// grpc-message is percent-encoded: bytes outside 0x20...0x7E, and '%', are escaped.
    static func percentEncode(_ text: String) -> String { GRPCStatusMessage.percentEncode(text) }

    /// Parses `grpc-timeout` (e.g. `100m`, `5S`): 1 to 8 ASCII digits and a unit (PROTOCOL-HTTP2.md).
    static func parseTimeout(_ value: String) -> Int64? { GRPCTimeout.parse(value) }
}
