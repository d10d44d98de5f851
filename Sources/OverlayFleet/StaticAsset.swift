/// A file the console page is made of, served from the binary (the control plane's `/` and the
/// sidecar admin port's read-only `/`).
public struct StaticAsset: Sendable {
    /// The asset for a request path (`/` asks for `/index.html`), or nil.
    public typealias Lookup = @Sendable (String) -> StaticAsset?

    public var contentType: String
    public var bytes: [UInt8]
    /// A strong ETag, quoted (the generator's hash of the bytes), or nil.
    public var etag: String?

    public init(contentType: String, bytes: [UInt8], etag: String? = nil) {
        self.contentType = contentType
        self.bytes = bytes
        self.etag = etag
    }

    /// Whether an `If-None-Match` value names this asset's ETag (or is `*`): then 304 fits.
    public func isMatched(byIfNoneMatch header: String?) -> Bool {
        guard let etag, let header else { return false }
        return header.split(separator: ",").contains { item in
            var tag = item.trimmingPrefix(while: { $0 == " " || $0 == "\t" })
            while let last = tag.last, last == " " || last == "\t" { tag = tag.dropLast() }
            if tag.hasPrefix("W/") { tag = tag.dropFirst(2) }  // weak comparison, as for GET
            return tag == "*" || tag == etag
        }
    }

    /// The answer to a GET of this asset, the same on the control plane and the admin port:
    /// `no-cache` (the browser revalidates every load), the ETag, a Content-Security-Policy that
    /// allows only the page's own files, `nosniff`; 304 without a body when `If-None-Match` names
    /// the ETag.
    public func answer(ifNoneMatch: String?) -> (status: Int, headers: [(name: String, value: String)], body: [UInt8]) {
        var headers: [(name: String, value: String)] = [
            ("content-type", contentType), ("cache-control", "no-cache"),
            ("content-security-policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"),
            ("x-content-type-options", "nosniff"),
        ]
        if let etag { headers.append(("etag", etag)) }
        return isMatched(byIfNoneMatch: ifNoneMatch) ? (304, headers, []) : (200, headers, bytes)
    }
}
