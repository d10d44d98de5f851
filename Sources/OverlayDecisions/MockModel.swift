/// Deterministic stand-in for an AI model, for demos and tests.
///
/// `reply(model:prompt:)` =
///     "<8 words>. Regarding: <first ≤8 whitespace-separated words of the prompt>"
/// where the 8 words come from the fixed 64-entry ``words`` list, indexed by a
/// ``SplitMix64`` stream seeded with `StableHash.hash(salt: model, key: prompt)`
/// (the first word capitalised; echoed prompt words are cut to 32 Characters).
/// The text is stable across runs and platforms, identical for identical
/// (model, prompt), and differs between model names, so a shadow pair of
/// two different mock models shows partial similarity (the shared echo) —
/// i.e. some drift — while identical names give similarity exactly 1.
public enum MockModel {
    public static let words: [String] = [
        "amber", "bright", "canvas", "delta", "ember", "fable", "garden", "harbor",
        "island", "jasper", "kettle", "lantern", "meadow", "nectar", "orbit", "pepper",
        "quartz", "river", "saddle", "timber", "umbra", "velvet", "willow", "xenon",
        "yonder", "zephyr", "anchor", "beacon", "cobalt", "dune", "echo", "falcon",
        "glacier", "hollow", "ivory", "jungle", "kernel", "lagoon", "marble", "north",
        "oasis", "prism", "quiver", "ripple", "summit", "tundra", "unity", "vertex",
        "wander", "yield", "zenith", "arrow", "breeze", "cedar", "dawn", "ferry",
        "grove", "horizon", "inlet", "journey", "keystone", "ledger", "mosaic", "nimbus",
    ]
    public static let sentenceWords = 8
    public static let echoWords = 8
    public static let maxEchoWordCharacters = 32

    /// ``words`` with the first letter capitalised (the sentence's first word).
    static let capitalisedWords: [String] = words.map { $0.prefix(1).uppercased() + $0.dropFirst() }

    public static func reply(model: String, prompt: String) -> String {
        var rng = SplitMix64(seed: StableHash.hash(salt: model, key: prompt))
        var out = ""
        out.reserveCapacity(160)
        for index in 0..<sentenceWords {
            let word = StableHash.scale(rng.next(), into: words.count)
            if index > 0 { out += " " }
            out += index == 0 ? capitalisedWords[word] : words[word]
        }
        out += ". Regarding: "
        if let echo = asciiEcho(prompt) {
            out += echo
        } else {
            out += unicodeEcho(prompt)
        }
        return out
    }

    /// The echo of an all-ASCII prompt, split at ASCII whitespace byte by byte (the same words as
    /// ``unicodeEcho(_:)`` gives for such a prompt; nil for any other prompt).
    static func asciiEcho(_ prompt: String) -> String? {
        var prompt = prompt
        return prompt.withUTF8 { bytes -> String? in
            var echo: [UInt8] = []
            echo.reserveCapacity(min(bytes.count, echoWords * (maxEchoWordCharacters + 1)))
            var wordsTaken = 0
            var index = 0
            let count = bytes.count
            while index < count {
                let b = bytes[index]
                if b >= 0x80 { return nil }
                // Character.isWhitespace for ASCII: tab, LF, VT, FF, CR, space (and CR LF).
                if b == 0x20 || (b >= 0x09 && b <= 0x0D) {
                    index += 1
                    continue
                }
                var end = index
                while end < count, bytes[end] != 0x20, !(bytes[end] >= 0x09 && bytes[end] <= 0x0D) {
                    if bytes[end] >= 0x80 { return nil }
                    end += 1
                }
                if wordsTaken < echoWords {
                    if wordsTaken > 0 { echo.append(0x20) }
                    echo.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[index..<min(end, index + maxEchoWordCharacters)]))
                    wordsTaken += 1
                }
                index = end
            }
            return String(decoding: echo, as: UTF8.self)
        }
    }

    /// The echo: the first ``echoWords`` whitespace-separated words, each cut to
    /// ``maxEchoWordCharacters`` Characters.
    static func unicodeEcho(_ prompt: String) -> String {
        prompt
            .split(maxSplits: echoWords, whereSeparator: { $0.isWhitespace })
            .prefix(echoWords)
            .map { String($0.prefix(maxEchoWordCharacters)) }
            .joined(separator: " ")
    }
}
