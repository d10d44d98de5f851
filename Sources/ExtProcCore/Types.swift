import ExtProcProto

/// Short names for Envoy's ext_proc messages (generated in `ExtProcProto`).
public typealias ProcessingRequest = Envoy_Service_ExtProc_V3_ProcessingRequest
public typealias ProcessingResponse = Envoy_Service_ExtProc_V3_ProcessingResponse
public typealias ProcessingMode = Envoy_Extensions_Filters_Http_ExtProc_V3_ProcessingMode
public typealias BodySendMode = Envoy_Extensions_Filters_Http_ExtProc_V3_ProcessingMode.BodySendMode
public typealias HeaderSendMode = Envoy_Extensions_Filters_Http_ExtProc_V3_ProcessingMode.HeaderSendMode

/// The six phases of an HTTP exchange as Envoy reports them (`ProcessingRequest.request` oneof).
public enum ExchangePhase: Int, CaseIterable, Sendable {
    case requestHeaders, requestBody, requestTrailers, responseHeaders, responseBody, responseTrailers

    /// The metric label and the proto field name.
    public var label: String {
        switch self {
        case .requestHeaders: return "request_headers"
        case .requestBody: return "request_body"
        case .requestTrailers: return "request_trailers"
        case .responseHeaders: return "response_headers"
        case .responseBody: return "response_body"
        case .responseTrailers: return "response_trailers"
        }
    }

    /// The phase of a request message, or nil when its oneof is not set.
    public init?(of message: some ExtProcRequest) {
        guard let phase = message.phase else { return nil }
        self = phase.kind
    }
}

/// A protocol violation by the peer in one exchange. It ends that exchange only (fail open: the
/// adapter closes the stream with status OK, so Envoy continues unprocessed; envoy-ext-proc.md §13).
public struct ExchangeError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What kind of violation; also the `kind` label of `overlayd_extproc_errors_total`.
    public struct Kind: Sendable, Hashable, CustomStringConvertible {
        public let name: String
        private init(_ name: String) { self.name = name }
        public var description: String { name }

        /// A `ProcessingRequest` with no phase set.
        public static let emptyRequest = Kind("empty_request")
        /// The same phase twice (e.g. `request_headers` twice).
        public static let duplicate = Kind("duplicate")
        /// A phase after a later one of the same exchange (e.g. headers after body).
        public static let outOfOrder = Kind("out_of_order")
        /// A message for a direction that already ended (`end_of_stream`, or trailers seen).
        public static let afterEndOfStream = Kind("after_end_of_stream")
        /// `protocol_config` on a message other than the first (§1: only the first carries it).
        public static let protocolConfigNotFirst = Kind("protocol_config_not_first")
        /// A message after overlayd answered with `immediate_response` (the exchange is over).
        public static let afterImmediateResponse = Kind("after_immediate_response")
        /// The bytes are not a valid `ProcessingRequest`.
        public static let undecodable = Kind("undecodable")
        /// A gRPC framing problem (compressed flag without an encoding, oversized message, ...).
        public static let framing = Kind("framing")

        /// Every kind, for pre-registering metrics.
        public static let all: [Kind] = [
            .emptyRequest, .duplicate, .outOfOrder, .afterEndOfStream, .protocolConfigNotFirst,
            .afterImmediateResponse, .undecodable, .framing,
        ]
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { "\(kind): \(message)" }
}
