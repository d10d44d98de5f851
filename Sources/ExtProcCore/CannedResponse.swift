import ExtProcProto
/// Answers that never vary, so adapters can encode them once and reuse the bytes.
public enum CannedResponse: Int, CaseIterable, Sendable {
    /// The one-message pass-through: CONTINUE the request headers and ask Envoy for nothing more.
    case passThrough
    case continueRequestHeaders
    case continueResponseHeaders
    case continueRequestBody
    case continueResponseBody
    case continueRequestTrailers
    case continueResponseTrailers

    /// The `mode_override` of a pass-through (envoy-ext-proc.md §3): header and trailer slots that are
    /// not DEFAULT replace the filter's, and body modes are taken literally, so this turns off every
    /// later phase of the exchange. Envoy honours it only with `allow_mode_override: true`; without
    /// it, later messages still come and are answered CONTINUE.
    public static let passThroughModeOverride: ProcessingMode = {
        var mode = ProcessingMode()
        mode.requestHeaderMode = .default
        mode.responseHeaderMode = .skip
        mode.requestBodyMode = .none
        mode.responseBodyMode = .none
        mode.requestTrailerMode = .skip
        mode.responseTrailerMode = .skip
        return mode
    }()

    /// The message itself.
    public var message: ProcessingResponse {
        var response = ProcessingResponse()
        switch self {
        case .passThrough:
            response.requestHeaders = .init()
            response.modeOverride = Self.passThroughModeOverride
        case .continueRequestHeaders: response.requestHeaders = .init()
        case .continueResponseHeaders: response.responseHeaders = .init()
        case .continueRequestBody: response.requestBody = .init()
        case .continueResponseBody: response.responseBody = .init()
        case .continueRequestTrailers: response.requestTrailers = .init()
        case .continueResponseTrailers: response.responseTrailers = .init()
        }
        return response
    }
}
