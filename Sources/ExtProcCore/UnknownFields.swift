import SwiftProtobuf
import ExtProcProto

extension Envoy_Service_ExtProc_V3_ProcessingRequest {
    /// True when the message, its phase payload, its protocol_config or a header carries fields our
    /// proto subset does not know: a newer Envoy than proto/ mirrors. Counted, never fatal.
    public var carriesUnknownFields: Bool {
        if !unknownFields.data.isEmpty { return true }
        switch request {
        case .requestHeaders(let h), .responseHeaders(let h):
            if !h.unknownFields.data.isEmpty || !h.headers.unknownFields.data.isEmpty { return true }
            for header in h.headers.headers where !header.unknownFields.data.isEmpty { return true }
        case .requestBody(let b), .responseBody(let b):
            if !b.unknownFields.data.isEmpty { return true }
        case .requestTrailers(let t), .responseTrailers(let t):
            if !t.unknownFields.data.isEmpty || !t.trailers.unknownFields.data.isEmpty { return true }
            for header in t.trailers.headers where !header.unknownFields.data.isEmpty { return true }
        case nil:
            break
        }
        return hasProtocolConfig && !protocolConfig.unknownFields.data.isEmpty
    }
}
