/// Decodes and re-encodes content-coded bodies (gzip, deflate) so an encoded page can be injected.
/// The core only asks; the adapter implements it (compress-nio), keeping the core free of I/O.
public protocol BodyCodec: Sendable {
    /// The `content-encoding` values it handles (lower case), e.g. `["gzip", "x-gzip", "deflate"]`.
    var encodings: Set<String> { get }
    /// The decoded body, or nil when `bytes` are not valid data of that encoding or decode to more
    /// than `limit` bytes (a zip bomb): the caller then passes the body through untouched.
    func decode(_ bytes: [UInt8], encoding: String, limit: Int) -> [UInt8]?
    /// `bytes` encoded again with `encoding`, or nil on failure.
    func encode(_ bytes: [UInt8], encoding: String) -> [UInt8]?
}
