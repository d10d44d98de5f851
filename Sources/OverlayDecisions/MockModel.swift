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

    public static func reply(model: String, prompt: String) -> String {
        var rng = SplitMix64(seed: StableHash.hash(salt: model, key: prompt))
        var chosen: [String] = []
        chosen.reserveCapacity(sentenceWords)
        for _ in 0..<sentenceWords {
            chosen.append(words[StableHash.scale(rng.next(), into: words.count)])
        }
        chosen[0] = chosen[0].prefix(1).uppercased() + chosen[0].dropFirst()
        let echo = prompt
            .split(maxSplits: echoWords, whereSeparator: { $0.isWhitespace })
            .prefix(echoWords)
            .map { String($0.prefix(maxEchoWordCharacters)) }
            .joined(separator: " ")
        return chosen.joined(separator: " ") + ". Regarding: " + echo
    }
}
