import OverlayInject

/// Deterministic SplitMix64 (tests must not depend on system randomness).
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// The snippet used by the injector tests (the real one).
let testSnippet = OverlaySnippet.make(json: #"{"ok":true}"#)

struct Run: Equatable {
    var output: [UInt8]
    var outcome: HTMLInjector.Outcome
    var offset: Int?
    var maxHeld: Int
}

/// Feeds `input` in the given chunk sizes (cycled), then finishes. `splitting`: through
/// ``HTMLInjector/feedSplitting(_:)``, the output of each chunk being what it emitted followed by
/// the chunk's unchanged rest.
func run(
    _ input: [UInt8], chunkSizes: [Int], maxHoldBack: Int = 64, snippet: [UInt8] = testSnippet, splitting: Bool = false
) -> Run {
    var injector = HTMLInjector(snippet: snippet, maxHoldBack: maxHoldBack)
    var out: [UInt8] = []
    var maxHeld = 0
    var i = 0
    var k = 0
    while i < input.count {
        let size = max(1, chunkSizes[k % chunkSizes.count])
        k += 1
        let end = min(input.count, i + size)
        if splitting {
            let chunk = Array(input[i..<end])
            let (emitted, restFrom) = chunk.withUnsafeBytes { injector.feedSplitting($0) }
            precondition((0...chunk.count).contains(restFrom))
            out += emitted
            out += chunk[restFrom...]
        } else {
            out += injector.feed(input[i..<end])
        }
        maxHeld = max(maxHeld, injector.heldBackCount)
        i = end
    }
    out += injector.finish()
    return Run(output: out, outcome: injector.outcome, offset: injector.insertionOffset, maxHeld: maxHeld)
}

func runWhole(_ input: [UInt8], snippet: [UInt8] = testSnippet) -> Run {
    run(input, chunkSizes: [max(1, input.count)], snippet: snippet)
}

/// Removes the snippet at `offset` from `output` (nil if it is not there).
func removingSnippet(_ output: [UInt8], at offset: Int, snippet: [UInt8] = testSnippet) -> [UInt8]? {
    guard offset >= 0, offset + snippet.count <= output.count,
          output[offset..<(offset + snippet.count)].elementsEqual(snippet) else { return nil }
    return Array(output[..<offset]) + Array(output[(offset + snippet.count)...])
}

func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

func asciiLowered(_ b: some Collection<UInt8>) -> [UInt8] {
    b.map { $0 >= 0x41 && $0 <= 0x5A ? $0 | 0x20 : $0 }
}
