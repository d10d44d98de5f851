/// The fields of a gRPC request head that a server routes and checks on (the rest of the header
/// block is parsed and checked by the HTTP/2 layer, then dropped).
public struct GRPCRequestHead: Sendable, Equatable {
    public var method = ""
    public var path = ""
    public var contentType = ""
    /// `grpc-encoding`, when sent.
    public var encoding: String?
    /// `grpc-timeout`, when sent (unparsed: see ``GRPCTimeout/parse(_:)``).
    public var timeout: String?

    public init(method: String = "", path: String = "", contentType: String = "", encoding: String? = nil, timeout: String? = nil) {
        self.method = method
        self.path = path
        self.contentType = contentType
        self.encoding = encoding
        self.timeout = timeout
    }
}

/// How the server ends its side of a stream.
public enum GRPCStreamEnd: Sendable, Equatable {
    /// `grpc-status` (and `grpc-message`, percent-encoded here, and extra fields): as trailers after
    /// the response headers, or as a trailers-only response when nothing was sent yet.
    case status(code: Int, message: String?, extra: [Field] = [])
    /// A plain HTTP answer without gRPC (a request that is not gRPC at all): only `:status`.
    case http(status: Int)

    public struct Field: Sendable, Equatable {
        public var name: String
        public var value: String
        public init(_ name: String, _ value: String) {
            self.name = name
            self.value = value
        }
    }

    public static let ok = GRPCStreamEnd.status(code: 0, message: nil)

    /// The fields after `:status` and `content-type` (trailers, or the tail of a trailers-only block).
    public var statusFields: [Field] {
        guard case .status(let code, let message, let extra) = self else { return [] }
        var fields = [Field("grpc-status", String(code))]
        if let message, !message.isEmpty { fields.append(Field("grpc-message", GRPCStatusMessage.percentEncode(message))) }
        fields.append(contentsOf: extra)
        return fields
    }
}

public enum GRPCStatusMessage {
    /// grpc-message is percent-encoded: bytes outside 0x20...0x7E, and '%', are escaped.
    public static func percentEncode(_ text: String) -> String {
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
}

public enum GRPCTimeout {
    /// Parses `grpc-timeout` (e.g. `100m`, `5S`): 1 to 8 ASCII digits and a unit (PROTOCOL-HTTP2.md);
    /// nanoseconds, or nil when malformed.
    public static func parse(_ value: String) -> Int64? {
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
