
import OverlayInject

/// The AI result as the page sees it: the JSON of the data island, of `/__overlay/results/{token}`
/// and of the member added to JSON bodies.
///
/// ```json
/// {"overlay":"crm","model":"gpt-4","token":"6f1c…","status":"ready","text":"…"}
/// {"overlay":"crm","model":"gpt-4","token":"6f1c…","status":"pending"}
/// {"overlay":"crm","model":"gpt-4","token":"6f1c…","status":"failed","error":"timeout"}
/// ```
/// `pending`: not ready within the overlay's latency budget; overlay.js fetches it later with the
/// token. `model` is the model that answered (a fallback, when the planned one failed).
public struct OverlayResultView: Sendable, Equatable {
    public enum Status: String, Sendable {
        case ready, pending, failed
    }

    public var overlay: String
    public var model: String
    public var token: String
    public var status: Status
    public var text: String?
    public var error: String?
    /// In the page's data island only: the page context overlay.js may send with questions.
    public var context: [String]?

    public init(overlay: String, model: String, token: String, status: Status, text: String? = nil, error: String? = nil) {
        self.overlay = overlay
        self.model = model
        self.token = token
        self.status = status
        self.text = text
        self.error = error
    }

    /// The JSON object (UTF-8), keys in a fixed order.
    public var json: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(estimatedJSONCount)
        appendJSON(to: &out)
        return out
    }

    /// About how many bytes ``json`` takes, with room for some escapes.
    public var estimatedJSONCount: Int {
        var size = 96 + overlay.utf8.count + model.utf8.count + token.utf8.count + (text?.utf8.count ?? 0)
        size += (error?.utf8.count ?? 0) + (context?.reduce(16) { $0 + $1.utf8.count + 8 } ?? 0)
        return size + size / 8
    }

    /// ``json`` appended to `out`. `islandSafe`: every string is written as
    /// ``OverlaySnippet/appendJSONStringLiteral(_:to:islandSafe:)`` does for the page's data island,
    /// so the bytes are those of ``OverlaySnippet/escapeForDataIsland(_:)`` over ``json`` (keys and
    /// punctuation are plain ASCII without `<`, `>` or `&`): the island in one pass.
    public func appendJSON(to out: inout [UInt8], islandSafe: Bool = false) {
        func key(_ name: StaticString) { name.withUTF8Buffer { out.append(contentsOf: $0) } }
        func literal(_ text: String) { OverlaySnippet.appendJSONStringLiteral(text, to: &out, islandSafe: islandSafe) }
        key(#"{"overlay":"#)
        literal(overlay)
        key(#","model":"#)
        literal(model)
        key(#","token":"#)
        literal(token)
        key(#","status":""#)
        out.append(contentsOf: status.rawValue.utf8)
        out.append(0x22)
        if let text {
            key(#","text":"#)
            literal(text)
        }
        if let error {
            key(#","error":"#)
            literal(error)
        }
        if let context {
            key(#","context":["#)
            for (index, item) in context.enumerated() {
                if index > 0 { out.append(0x2C) }
                literal(item)
            }
            out.append(0x5D)
        }
        out.append(0x7D)
    }
}

/// Where the adapter keeps results by token (for `/__overlay/results/{token}`).
public protocol OverlayResultLookup: Sendable {
    func view(token: String) -> OverlayResultView?
}

extension LocalResponse {
    /// The answer to `GET /__overlay/results/{token}` (``RequestDecision/result(token:)``): the
    /// result's JSON, or 404 `{"status":"expired"}`. Shared by both adapters.
    public static func result(token: String, results: (any OverlayResultLookup)?) -> LocalResponse {
        let headers = [("cache-control", "no-store"), ("x-content-type-options", "nosniff")]
        guard let view = results?.view(token: token) else {
            return LocalResponse(
                status: 404, contentType: "application/json", body: Array("{\"status\":\"expired\"}".utf8), extraHeaders: headers)
        }
        return LocalResponse(status: 200, contentType: "application/json", body: view.json, extraHeaders: headers)
    }

    /// The answer to `POST /__overlay/api/ask` (``RequestDecision/ask(_:)``): the (pending) result
    /// with its token, which overlay.js polls. Shared by both adapters.
    public static func askAnswer(_ view: OverlayResultView) -> LocalResponse {
        LocalResponse(
            status: 200, contentType: "application/json", body: view.json,
            extraHeaders: [("cache-control", "no-store"), ("x-content-type-options", "nosniff")])
    }

    /// A follow-up question that cannot be asked (no body, malformed JSON): 400 with the reason.
    public static func askError(_ message: String) -> LocalResponse {
        LocalResponse(
            status: 400, contentType: "application/json",
            body: Array(("{\"status\":\"failed\",\"error\":" + OverlaySnippet.jsonStringLiteral(message) + "}").utf8),
            extraHeaders: [("cache-control", "no-store")])
    }
}
