/// Stable, platform-independent hashing used for every sticky decision.
///
/// Swift's `Hasher` is randomly seeded per process, so it must never be used
/// for decisions that have to agree across restarts, replicas or Swift
/// versions. Everything here is defined purely in terms of UTF-8 bytes and
/// 64-bit wrapping arithmetic:
///
///     h = FNV-1a-64(utf8(salt) ++ [0x00] ++ utf8(key))
///     result = splitmix64Finalizer(h)
///
/// with FNV offset basis `0xcbf29ce484222325`, prime `0x100000001b3`, and the
/// splitmix64 finaliser (Stafford "Mix13"):
///
///     z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
///     z = (z ^ (z >> 27)) * 0x94d049bb133111eb
///     z =  z ^ (z >> 31)
public enum StableHash {
    /// FNV-1a 64-bit offset basis.
    public static let fnvOffsetBasis: UInt64 = 0xcbf2_9ce4_8422_2325
    /// FNV-1a 64-bit prime.
    public static let fnvPrime: UInt64 = 0x0000_0100_0000_01b3

    /// FNV-1a 64 over `bytes`, continuing from `state` (defaults to the offset basis).
    public static func fnv1a64(_ bytes: some Sequence<UInt8>, state: UInt64 = fnvOffsetBasis) -> UInt64 {
        var h = state
        for byte in bytes {
            h ^= UInt64(byte)
            h = h &* fnvPrime
        }
        return h
    }

    /// The splitmix64 output finaliser (a bijection on `UInt64` with good avalanche).
    public static func mix64(_ value: UInt64) -> UInt64 {
        var z = value
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }

    /// `mix64(FNV-1a-64(utf8(salt) ++ 0x00 ++ utf8(key)))`.
    public static func hash(salt: some StringProtocol, key: some StringProtocol) -> UInt64 {
        var h = fnv1a64(salt.utf8)
        h = fnv1a64(CollectionOfOne(UInt8(0)), state: h)
        h = fnv1a64(key.utf8, state: h)
        return mix64(h)
    }

    /// Maps a uniformly distributed 64-bit value onto `0..<n` without modulo
    /// bias worth mentioning: `floor(value * n / 2^64)` (the high word of the
    /// 128-bit product). Returns 0 when `n <= 0`.
    public static func scale(_ value: UInt64, into n: Int) -> Int {
        guard n > 0 else { return 0 }
        return Int(value.multipliedFullWidth(by: UInt64(n)).high)
    }

    /// Maps a 64-bit value onto `[0, 1)` using its top 53 bits.
    public static func unitInterval(_ value: UInt64) -> Double {
        Double(value >> 11) * 0x1p-53
    }

    /// Lower-case, zero-padded, 16-digit hexadecimal rendering of `value`.
    public static func hex(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}

/// SplitMix64 pseudo-random generator (Steele, Lea & Flood 2014).
///
/// Tiny, fast, deterministic for a given seed and identical on every platform;
/// used as the injectable per-request random source in tests and, seeded from
/// a real entropy source, in production.
public struct SplitMix64: RandomNumberGenerator, Sendable, Hashable {
    /// Golden-ratio increment.
    public static let gamma: UInt64 = 0x9e37_79b9_7f4a_7c15

    /// Current internal state.
    public private(set) var state: UInt64

    public init(seed: UInt64) {
        self.state = seed
    }

    public mutating func next() -> UInt64 {
        state = state &+ Self.gamma
        return StableHash.mix64(state)
    }
}
