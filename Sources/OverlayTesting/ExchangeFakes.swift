import OverlayCore
import OverlayDecisions

/// A request head given as plain pairs (pseudo-headers `:authority`, `:path`, `:method` among
/// them), for driving ``OverlayExchange`` without a transport.
public struct PlainRequestHead: ExchangeRequestHead {
    public var pairs: [(name: String, value: String)]

    public init(authority: String, path: String = "/", method: String = "GET", _ fields: [(String, String)] = []) {
        pairs = [(":authority", authority), (":path", path), (":method", method)] + fields.map { (name: $0.0, value: $0.1) }
    }

    public var authority: Substring? { firstValue(":authority") }
    public var path: Substring { firstValue(":path") ?? "/" }
    public var method: Substring { firstValue(":method") ?? "GET" }

    public func firstValue(_ name: String) -> Substring? {
        pairs.first { $0.name == name }.map { $0.value[...] }
    }

    public var fields: HeaderList { pairs.filter { !$0.name.hasPrefix(":") } }
}

/// A content-coding for tests, `x-reverse`: the body's bytes in reverse order. A body starting
/// with 0xFF does not decode (a broken encoding); one of more than `limit` bytes neither.
public struct ReversingCodec: BodyCodec {
    public init() {}

    public var encodings: Set<String> { ["x-reverse"] }

    public func decode(_ bytes: [UInt8], encoding: String, limit: Int) -> [UInt8]? {
        guard encoding == "x-reverse", bytes.first != 0xFF, bytes.count <= limit else { return nil }
        return bytes.reversed()
    }

    public func encode(_ bytes: [UInt8], encoding: String) -> [UInt8]? {
        encoding == "x-reverse" ? bytes.reversed() : nil
    }
}

/// Results by token, for `/__overlay/results/{token}`.
public struct FixedResultLookup: OverlayResultLookup {
    public var views: [String: OverlayResultView]

    public init(_ views: [OverlayResultView]) {
        self.views = Dictionary(views.map { ($0.token, $0) }, uniquingKeysWith: { first, _ in first })
    }

    public func view(token: String) -> OverlayResultView? { views[token] }
}
