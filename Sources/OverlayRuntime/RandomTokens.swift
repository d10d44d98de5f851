#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Locking

/// Result tokens: 128 bits from the kernel's CSPRNG each, as 32 lower-case hex digits.
///
/// `SystemRandomNumberGenerator` makes one `getrandom` system call per 64-bit word, two per token,
/// on every overlaid exchange. Here 1 KiB (64 tokens) is fetched at a time from the C library's
/// CSPRNG (`arc4random_buf`, fed by the kernel) and handed out once each, under a lock. Where the C
/// library has none (musl, in the static build), the batch comes from `SystemRandomNumberGenerator`.
package enum RandomTokens {
    private static let wordsPerRefill = 128
    private static let pool = Locked<(words: [UInt64], next: Int)>(([], 0))

    /// A fresh token.
    package static func next() -> String {
        let words = pool.withLock { state -> (UInt64, UInt64) in
            if state.next + 2 > state.words.count {
                state.words = fresh(count: wordsPerRefill)
                state.next = 0
            }
            defer { state.next += 2 }
            return (state.words[state.next], state.words[state.next + 1])
        }
        return hex(words.0, words.1)
    }

    /// 32 lower-case hex digits, most significant nibble first, written in place.
    static func hex(_ high: UInt64, _ low: UInt64) -> String {
        String(unsafeUninitializedCapacity: 32) { buffer in
            let digits: StaticString = "0123456789abcdef"
            for nibble in 0..<16 {
                buffer[nibble] = digits.utf8Start[Int((high >> UInt64(60 - nibble * 4)) & 0xF)]
                buffer[16 + nibble] = digits.utf8Start[Int((low >> UInt64(60 - nibble * 4)) & 0xF)]
            }
            return 32
        }
    }

    private static func fresh(count: Int) -> [UInt64] {
        var words = [UInt64](repeating: 0, count: count)
        #if canImport(Glibc) || canImport(Darwin)
        // glibc (2.36 and later) and Darwin: the kernel's CSPRNG, one call for the whole batch.
        words.withUnsafeMutableBytes { arc4random_buf($0.baseAddress!, $0.count) }
        return words
        #else
        var system = SystemRandomNumberGenerator()
        for index in words.indices { words[index] = system.next() }
        return words
        #endif
    }
}
