import Foundation

/// What overlayd decides for one HTTP exchange at request-header time, transport-agnostic.
///
/// Both adapters (ext_proc and, later, the reverse proxy) ask this one place.
public enum RequestDecision: Sendable, Equatable {
    /// No overlay applies to this host: touch nothing, ask for nothing more.
    case passThrough
    /// An overlay applies: go on, and look at the response.
    case overlay(Overlay)
    /// A request for one of overlayd's own endpoints (`/__overlay/...`) on an overlaid host.
    case ownEndpoint(LocalResponse)
    /// `GET /__overlay/results/{token}`: the adapter looks the result up in its store.
    case result(token: String)
    /// `POST /__overlay/api/ask`: a follow-up question (the JSON body comes next), routed through
    /// the overlay's split.
    case ask(Overlay)
}

/// A response overlayd produces itself (ext_proc `immediate_response`, or written by the proxy).
public struct LocalResponse: Sendable, Equatable {
    public var status: Int
    public var contentType: String
    public var body: [UInt8]
    public var extraHeaders: [(String, String)]

    public init(status: Int, contentType: String, body: [UInt8], extraHeaders: [(String, String)] = []) {
        self.status = status
        self.contentType = contentType
        self.body = body
        self.extraHeaders = extraHeaders
    }

    public static func == (lhs: LocalResponse, rhs: LocalResponse) -> Bool {
        lhs.status == rhs.status && lhs.contentType == rhs.contentType && lhs.body == rhs.body
            && lhs.extraHeaders.elementsEqual(rhs.extraHeaders, by: { $0 == $1 })
    }
}

/// Routes a request: the decision for a host, path and method.
public enum RequestRouter {
    /// The path prefix reserved for overlayd's own endpoints on overlaid hosts.
    public static let ownPrefix = "/__overlay/"

    /// - Parameters:
    ///   - authority: `:authority` / `Host`.
    ///   - path: `:path` including any query.
    ///   - method: `:method`.
    ///   - ifNoneMatch: the request's `If-None-Match` (for overlay.js).
    public static func decide(
        config: OverlayConfig, authority: Substring, path: Substring, method: Substring, ifNoneMatch: Substring? = nil
    ) -> RequestDecision {
        guard let overlay = config.overlay(forAuthority: authority) else { return .passThrough }
        return decide(overlay: overlay, path: path, method: method, ifNoneMatch: ifNoneMatch)
    }

    /// The same, for a request whose authority already matched `overlay` (the host is not looked
    /// up again).
    static func decide(overlay: Overlay, path: Substring, method: Substring, ifNoneMatch: Substring?) -> RequestDecision {
        guard path.utf8.starts(with: ownPrefix.utf8) else {
            // Own endpoints answer on every path of an overlaid host; the overlay itself only
            // under its spec.paths prefixes.
            return OverlaySettings.matches(overlay.settings.paths, path: path) ? .overlay(overlay) : .passThrough
        }
        var endpoint = path.dropFirst(ownPrefix.count)
        if let query = endpoint.firstIndex(where: { $0 == "?" || $0 == "#" }) { endpoint = endpoint[..<query] }
        if endpoint == "api/ask" {
            guard method == "POST" else { return .ownEndpoint(methodNotAllowed("POST")) }
            return .ask(overlay)
        }
        if endpoint.hasPrefix("results/") {
            let token = endpoint.dropFirst("results/".count)
            guard method == "GET" || method == "HEAD" else { return .ownEndpoint(methodNotAllowed("GET, HEAD")) }
            guard token.utf8.count == 32, token.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) })
            else {
                return .ownEndpoint(LocalResponse(
                    status: 404, contentType: "application/json", body: Array("{\"status\":\"expired\"}".utf8),
                    extraHeaders: [("cache-control", "no-store")]))
            }
            return .result(token: String(token))
        }
        return .ownEndpoint(ownEndpoint(String(endpoint), method: method, overlay: overlay, ifNoneMatch: ifNoneMatch))
    }

    static func ownEndpoint(_ name: String, method: Substring, overlay: Overlay, ifNoneMatch: Substring? = nil) -> LocalResponse {
        switch name {
        case "overlay.js":
            guard method == "GET" || method == "HEAD" else { return methodNotAllowed("GET, HEAD") }
            let headers = [
                ("etag", OverlayScript.etag), ("cache-control", "public, max-age=300"),
                ("x-content-type-options", "nosniff"),
            ]
            if let ifNoneMatch, ifNoneMatch.split(separator: ",").contains(where: {
                let tag = $0.trimmingCharacters(in: .whitespaces)
                return tag == OverlayScript.etag || tag == "W/" + OverlayScript.etag || tag == "*"
            }) {
                return LocalResponse(status: 304, contentType: "text/javascript; charset=utf-8", body: [], extraHeaders: headers)
            }
            return LocalResponse(
                status: 200, contentType: "text/javascript; charset=utf-8", body: OverlayScript.bytes, extraHeaders: headers)
        case "healthz":
            guard method == "GET" || method == "HEAD" else { return methodNotAllowed("GET, HEAD") }
            return LocalResponse(
                status: 200, contentType: "text/plain; charset=utf-8", body: Array("ok\n".utf8),
                extraHeaders: [("cache-control", "no-store")])
        default:
            return LocalResponse(
                status: 404, contentType: "text/plain; charset=utf-8",
                body: Array("overlayd: no such endpoint /__overlay/\(name)\n".utf8),
                extraHeaders: [("cache-control", "no-store")])
        }
    }

    static func methodNotAllowed(_ allowed: String) -> LocalResponse {
        LocalResponse(
            status: 405, contentType: "text/plain; charset=utf-8", body: Array("method not allowed\n".utf8),
            extraHeaders: [("allow", allowed)])
    }
}
