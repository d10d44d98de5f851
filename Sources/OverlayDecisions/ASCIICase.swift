/// ASCII case folding for the protocol tokens of HTTP (field names, hosts): only A–Z change, every
/// other byte (UTF-8 included) is kept.
public enum ASCIICase {
    /// The bytes lower-cased as a String, or nil when none is an upper-case letter (the caller
    /// keeps what it has, with no copy).
    @inlinable
    public static func lowercasedIfNeeded(_ bytes: some Collection<UInt8>) -> String? {
        guard bytes.contains(where: { $0 >= 0x41 && $0 <= 0x5A }) else { return nil }
        return String(unsafeUninitializedCapacity: bytes.count) { out in
            var index = 0
            for byte in bytes {
                out[index] = byte >= 0x41 && byte <= 0x5A ? byte | 0x20 : byte
                index += 1
            }
            return index
        }
    }
}
