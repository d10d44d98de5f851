import ExtProcCore
import OverlayCore

/// What the ext_proc state machine reads of one `ProcessingRequest`, from either carrier
/// (swift-protobuf's message or libprotobuf-c's `DecodedRequest`), as plain values: equal for
/// the same bytes. The oracle of `DecodedRequestTests` and the `extproc-decode` fuzz target.
public struct ExtProcReading: Equatable, CustomStringConvertible, Sendable {
    public var phase: ExchangePhase?
    public var endOfStream: Bool?
    /// `values(named:)` of the header list, as `name=value`.
    public var headers: [String] = []
    /// The regular fields, as `name=value`.
    public var fields: [String] = []
    /// `:authority`, `:path`, `:method`, then `firstValue` of each name.
    public var head: [String] = []
    public var body: [UInt8]?
    public var settings: ExtProcProtocolSettings?
    public var observability: Bool
    public var unknown: Bool

    /// Reads `request` entirely (every header, value and body byte), asking for `names`.
    public init(_ request: some ExtProcRequest, names: Set<String>) {
        settings = request.protocolSettings
        observability = request.observabilityMode
        unknown = request.carriesUnknownFields
        phase = request.phase?.kind
        switch request.phase {
        case .requestHeaders(let list, let eos)?, .responseHeaders(let list, let eos)?:
            endOfStream = eos
            headers = list.values(named: names).map { "\($0.name)=\($0.value)" }
            fields = list.fields.map { "\($0.name)=\($0.value)" }
            head = [list.authority.map(String.init) ?? "<none>", String(list.path), String(list.method)]
                + names.sorted().map { "\($0):\(list.firstValue($0).map(String.init) ?? "<none>")" }
        case .requestBody(let bytes, let eos)?, .responseBody(let bytes, let eos)?:
            endOfStream = eos
            body = Array(bytes)
        case .requestTrailers?, .responseTrailers?, nil:
            break
        }
    }

    public var description: String {
        "\(phase.map { $0.label } ?? "none") eos=\(String(describing: endOfStream)) headers=\(headers) fields=\(fields) "
            + "head=\(head) body=\(body?.count ?? -1) settings=\(String(describing: settings)) observe=\(observability) unknown=\(unknown)"
    }
}
