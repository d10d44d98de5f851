import GRPCTransport

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
