
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
        var size = 96 + overlay.utf8.count + model.utf8.count + token.utf8.count + (text?.utf8.count ?? 0)
        size += (error?.utf8.count ?? 0) + (context?.reduce(16) { $0 + $1.utf8.count + 8 } ?? 0)
        out.reserveCapacity(size + size / 8)  // room for some escapes
        func key(_ name: StaticString) { name.withUTF8Buffer { out.append(contentsOf: $0) } }
        key(#"{"overlay":"#)
        OverlaySnippet.appendJSONStringLiteral(overlay, to: &out)
        key(#","model":"#)
        OverlaySnippet.appendJSONStringLiteral(model, to: &out)
        key(#","token":"#)
        OverlaySnippet.appendJSONStringLiteral(token, to: &out)
        key(#","status":""#)
        out.append(contentsOf: status.rawValue.utf8)
        out.append(0x22)
        if let text {
            key(#","text":"#)
            OverlaySnippet.appendJSONStringLiteral(text, to: &out)
        }
        if let error {
            key(#","error":"#)
            OverlaySnippet.appendJSONStringLiteral(error, to: &out)
        }
        if let context {
            key(#","context":["#)
            for (index, item) in context.enumerated() {
                if index > 0 { out.append(0x2C) }
                OverlaySnippet.appendJSONStringLiteral(item, to: &out)
            }
            out.append(0x5D)
        }
        out.append(0x7D)
        return out
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
