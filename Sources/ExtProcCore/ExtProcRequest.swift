import ExtProcProto
import Foundation
import OverlayCore
import OverlayDecisions

/// One `ProcessingRequest` from Envoy as ``ExchangeStateMachine`` reads it. Two carriers:
/// swift-protobuf's generated ``ProcessingRequest`` (tests, tools) and ``DecodedRequest``, a view
/// over the C structs libprotobuf-c decodes into (the server's hot path: no Swift value is built
/// for a header nobody reads).
public protocol ExtProcRequest {
    associatedtype Headers: EnvoyHeaderList
    associatedtype Body: Collection<UInt8>
    /// The `request` oneof with its payload; nil when it is not set.
    var phase: ExtProcPhase<Headers, Body>? { get }
    /// `protocol_config`, if the message carries one (Envoy sends it on the first only).
    var protocolSettings: ExtProcProtocolSettings? { get }
    /// `observability_mode`: Envoy expects no answers (§1.5).
    var observabilityMode: Bool { get }
    /// Fields our proto subset does not know (a newer Envoy): counted, never fatal.
    var carriesUnknownFields: Bool { get }
}

/// The `request` oneof of a `ProcessingRequest`, with what the machine reads of each payload.
public enum ExtProcPhase<Headers: EnvoyHeaderList, Body: Collection<UInt8>> {
    case requestHeaders(Headers, endOfStream: Bool)
    case responseHeaders(Headers, endOfStream: Bool)
    case requestBody(Body, endOfStream: Bool)
    case responseBody(Body, endOfStream: Bool)
    case requestTrailers
    case responseTrailers

    /// Which of the six it is (the metric label).
    public var kind: ExchangePhase {
        switch self {
        case .requestHeaders: return .requestHeaders
        case .responseHeaders: return .responseHeaders
        case .requestBody: return .requestBody
        case .responseBody: return .responseBody
        case .requestTrailers: return .requestTrailers
        case .responseTrailers: return .responseTrailers
        }
    }
}

/// `protocol_config` (`ProtocolConfiguration`): the body modes Envoy was configured with.
public struct ExtProcProtocolSettings: Sendable, Equatable {
    public var requestBodyMode: BodySendMode
    public var responseBodyMode: BodySendMode
    public var sendBodyWithoutWaitingForHeaderResponse: Bool

    public init(requestBodyMode: BodySendMode, responseBodyMode: BodySendMode, sendBodyWithoutWaitingForHeaderResponse: Bool) {
        self.requestBodyMode = requestBodyMode
        self.responseBodyMode = responseBodyMode
        self.sendBodyWithoutWaitingForHeaderResponse = sendBodyWithoutWaitingForHeaderResponse
    }
}

/// Envoy's header list (`HeaderMap`): pseudo-headers (`:authority`, `:path`, `:method`,
/// `:status`) and regular fields in one list, names lower case (§1.2). A value is text:
/// `raw_value` when set (current Envoy), else `value`; it is made only when read.
public protocol EnvoyHeaderList: ExchangeRequestHead {
    /// Every header whose name is one of `names` (pseudo-headers included), as text, in order.
    func values(named names: Set<String>) -> HeaderList
}

extension EnvoyHeaderList {
    public var authority: Substring? { firstValue(":authority") }
    public var path: Substring { firstValue(":path") ?? "/" }
    public var method: Substring { firstValue(":method") ?? "GET" }
}

// MARK: - swift-protobuf's carrier

extension Envoy_Config_Core_V3_HeaderValue {
    /// The value as text: `raw_value` when set (current Envoy, §1.2), else `value`.
    public var textValue: String {
        rawValue.isEmpty ? value : String(decoding: rawValue, as: UTF8.self)
    }
}

/// A swift-protobuf `HeaderMap`'s list as ``EnvoyHeaderList``.
public struct EnvoyHeaderValues: EnvoyHeaderList {
    public let list: [Envoy_Config_Core_V3_HeaderValue]

    public init(_ list: [Envoy_Config_Core_V3_HeaderValue]) { self.list = list }

    public func firstValue(_ name: String) -> Substring? {
        for header in list where header.key == name { return header.textValue[...] }
        return nil
    }

    public var fields: HeaderList {
        list.lazy.filter { $0.key.utf8.first != UInt8(ascii: ":") }.map { (name: $0.key, value: $0.textValue) }
    }

    public func values(named names: Set<String>) -> HeaderList {
        list.lazy.filter { names.contains($0.key) }.map { (name: $0.key, value: $0.textValue) }
    }
}

extension Envoy_Service_ExtProc_V3_ProcessingRequest: ExtProcRequest {
    public var phase: ExtProcPhase<EnvoyHeaderValues, Data>? {
        switch request {
        case .requestHeaders(let h): return .requestHeaders(EnvoyHeaderValues(h.headers.headers), endOfStream: h.endOfStream)
        case .responseHeaders(let h): return .responseHeaders(EnvoyHeaderValues(h.headers.headers), endOfStream: h.endOfStream)
        case .requestBody(let b): return .requestBody(b.body, endOfStream: b.endOfStream)
        case .responseBody(let b): return .responseBody(b.body, endOfStream: b.endOfStream)
        case .requestTrailers: return .requestTrailers
        case .responseTrailers: return .responseTrailers
        case nil: return nil
        }
    }

    public var protocolSettings: ExtProcProtocolSettings? {
        guard hasProtocolConfig else { return nil }
        return ExtProcProtocolSettings(
            requestBodyMode: protocolConfig.requestBodyMode, responseBodyMode: protocolConfig.responseBodyMode,
            sendBodyWithoutWaitingForHeaderResponse: protocolConfig.sendBodyWithoutWaitingForHeaderResponse)
    }
}
