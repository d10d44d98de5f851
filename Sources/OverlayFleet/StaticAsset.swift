/// A file the console page is made of, served from the binary (the control plane's `/` and the
/// sidecar admin port's read-only `/`).
public struct StaticAsset: Sendable {
    /// The asset for a request path (`/` asks for `/index.html`), or nil.
    public typealias Lookup = @Sendable (String) -> StaticAsset?

    public var contentType: String
    public var bytes: [UInt8]
    public init(contentType: String, bytes: [UInt8]) {
        self.contentType = contentType
        self.bytes = bytes
    }
}
