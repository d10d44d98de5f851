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

    /// Whether `text` is the lower-case ASCII `literal` but for the case of ASCII letters: a length
    /// check, then a byte compare over the string's own UTF-8 (no copy of the string, no lower-cased
    /// copy, no hashing). Runs for most header fields of every request and response.
    @inlinable
    public static func equals(_ text: String, lowercased literal: StaticString) -> Bool {
        let count = literal.utf8CodeUnitCount
        guard text.utf8.count == count else { return false }
        return literal.withUTF8Buffer { lower in
            if let same = text.utf8.withContiguousStorageIfAvailable({ bytes in foldedEquals(bytes, lower) }) {
                return same
            }
            var index = 0  // a string without contiguous UTF-8 (bridged)
            for byte in text.utf8 {
                if (byte &- 0x41 < 26 ? byte | 0x20 : byte) != lower[index] { return false }
                index += 1
            }
            return true
        }
    }

    /// `bytes` with A–Z folded equal `lower`, both of the same count.
    @inlinable
    static func foldedEquals(_ bytes: UnsafeBufferPointer<UInt8>, _ lower: UnsafeBufferPointer<UInt8>) -> Bool {
        guard var text = bytes.baseAddress, var literal = lower.baseAddress else { return bytes.count == lower.count }
        let end = text + bytes.count
        while text < end {
            let byte = text.pointee
            if (byte &- 0x41 < 26 ? byte | 0x20 : byte) != literal.pointee { return false }
            text += 1
            literal += 1
        }
        return true
    }

    /// `text` with its ASCII letters lower-cased; the same string, not a copy, when it has no
    /// upper-case letter (scanned over contiguous UTF-8).
    public static func lowercased(_ text: String) -> String {
        var text = text
        return text.withUTF8 { bytes -> String? in
            guard bytes.contains(where: { $0 &- 0x41 < 26 }) else { return nil }
            return String(unsafeUninitializedCapacity: bytes.count) { out in
                for index in 0..<bytes.count {
                    let byte = bytes[index]
                    out[index] = byte &- 0x41 < 26 ? byte | 0x20 : byte
                }
                return bytes.count
            }
        } ?? text
    }
}
