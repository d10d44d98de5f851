#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads a libFuzzer input as a stream of decisions followed by data. Reads past the end give
/// zeros, so every input, however short, is a complete program.
public struct FuzzInput {
    public let bytes: [UInt8]
    public private(set) var position = 0

    public init(_ data: UnsafePointer<UInt8>?, _ size: Int) {
        bytes = size == 0 || data == nil ? [] : Array(UnsafeBufferPointer(start: data, count: size))
    }

    public init(bytes: [UInt8]) { self.bytes = bytes }

    public var isAtEnd: Bool { position >= bytes.count }
    public var remaining: Int { max(0, bytes.count - position) }

    public mutating func byte() -> UInt8 {
        guard position < bytes.count else { return 0 }
        defer { position += 1 }
        return bytes[position]
    }

    public mutating func bool() -> Bool { byte() & 1 == 1 }

    /// A value in `range`, from one or two bytes.
    public mutating func int(_ range: ClosedRange<Int>) -> Int {
        let span = range.upperBound - range.lowerBound + 1
        let raw = span <= 256 ? Int(byte()) : Int(byte()) << 8 | Int(byte())
        return range.lowerBound + raw % span
    }

    /// Up to `count` bytes (fewer at the end).
    public mutating func take(_ count: Int) -> [UInt8] {
        let end = min(bytes.count, position + max(0, count))
        guard position < end else { return [] }
        defer { position = end }
        return Array(bytes[position..<end])
    }

    /// Everything not read yet.
    public mutating func rest() -> [UInt8] { take(remaining) }
}

/// Splits `bytes` into chunks whose sizes cycle through `sizes` (each at least 1).
public func chunks(_ bytes: [UInt8], sizes: [Int]) -> [ArraySlice<UInt8>] {
    guard !sizes.isEmpty else { return [bytes[...]] }
    var out: [ArraySlice<UInt8>] = []
    var start = 0
    var k = 0
    while start < bytes.count {
        let end = min(bytes.count, start + max(1, sizes[k % sizes.count]))
        out.append(bytes[start..<end])
        start = end
        k += 1
    }
    return out
}

/// Reads a chunking from the input: a count (0…7) and that many sizes (1…64, or 1…4096 when the
/// first byte says "large").
public func readChunkSizes(_ input: inout FuzzInput) -> [Int] {
    let count = input.int(0...7)
    let large = input.bool()
    return (0..<count).map { _ in large ? input.int(1...4096) : input.int(1...64) }
}

/// The oracle failed: print what and trap, so libFuzzer saves the input as a crash.
public func oracleFailure(_ message: String, file: StaticString = #fileID, line: UInt = #line) -> Never {
    fatalError("ORACLE: \(message)", file: file, line: line)
}

public func check(
    _ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
    file: StaticString = #fileID, line: UInt = #line
) {
    if !condition() { oracleFailure(message(), file: file, line: line) }
}

/// Printable form of bytes for oracle messages.
public func show(_ bytes: some Collection<UInt8>, limit: Int = 200) -> String {
    var s = ""
    for b in bytes.prefix(limit) {
        if b >= 0x20 && b < 0x7F && b != 0x5C { s.unicodeScalars.append(Unicode.Scalar(b)) } else {
            s += "\\x" + (b < 16 ? "0" : "") + String(b, radix: 16)
        }
    }
    return bytes.count > limit ? s + "…(\(bytes.count) bytes)" : s
}

/// Appends one line to the file named by the environment variable `name`, if it is set (the replay
/// mode the html5lib check uses: run the target on files, collect what it did).
public func appendLine(toFileIn name: String, _ line: String) {
    guard let path = getenv(name) else { return }
    guard let file = fopen(path, "a") else { return }
    fputs(line + "\n", file)
    fclose(file)
}

public func hex(_ bytes: some Collection<UInt8>) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var out: [UInt8] = []
    out.reserveCapacity(bytes.count * 2)
    for b in bytes {
        out.append(digits[Int(b >> 4)])
        out.append(digits[Int(b & 15)])
    }
    return String(decoding: out, as: UTF8.self)
}
