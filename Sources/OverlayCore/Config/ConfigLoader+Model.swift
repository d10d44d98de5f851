import Foundation
import Yams

extension ConfigLoader {
    /// Parses one `AIModel` (see ``ModelSpec`` for the shape, defaults and limits).
    static func parseModel(_ resource: Node.Mapping, name: String?, ctx: inout Context) -> ModelSpec? {
        guard let spec = envelopeSpec(resource, name: name, specHint: "with spec.provider", ctx: &ctx) else { return nil }
        checkKeys(
            spec, allowed: ["provider", "baseURL", "model", "apiKey", "timeouts", "maxConcurrency", "fallback", "mock"],
            path: "spec.", ctx: &ctx)

        var provider: ModelProvider?
        let providers = ModelProvider.allCases.map(\.rawValue).joined(separator: ", ")
        switch spec["provider"] {
        case nil: ctx.fail("spec.provider", "is required (one of \(providers))")
        case .some(let value):
            if let text = string(value), let parsed = ModelProvider(rawValue: text) {
                provider = parsed
            } else {
                ctx.fail("spec.provider", "must be one of \(providers), got \(describe(value))")
            }
        }

        var baseURL: String?
        if let value = spec["baseURL"] {
            if provider == .mock {
                ctx.fail("spec.baseURL", "is not used by the mock provider; remove it")
            } else if let text = string(value) {
                if let problem = urlProblem(text) { ctx.fail("spec.baseURL", problem) } else { baseURL = text }
            } else {
                ctx.fail("spec.baseURL", "must be a string (an http:// or https:// URL), got \(describe(value))")
            }
        } else if provider == .openai {
            ctx.fail("spec.baseURL", "is required for provider openai (e.g. https://api.openai.com/v1)")
        }

        var model: String?
        if let value = spec["model"] {
            if let text = string(value), !text.isEmpty { model = text } else {
                ctx.fail("spec.model", "must be a non-empty string (the upstream model id), got \(describe(value))")
            }
        }

        var apiKey: APIKeySource?
        if let value = spec["apiKey"] {
            if provider == .mock {
                ctx.fail("spec.apiKey", "is not used by the mock provider; remove it")
            } else {
                apiKey = parseAPIKey(value, ctx: &ctx)
            }
        }

        var connect = ModelSpec.defaultConnectTimeoutMs
        var total = ModelSpec.defaultTotalTimeoutMs
        if let value = spec["timeouts"] {
            if case .mapping(let timeouts) = value {
                checkKeys(timeouts, allowed: ["connect", "total"], path: "spec.timeouts.", ctx: &ctx)
                if let node = timeouts["connect"] {
                    connect = duration(node, path: "spec.timeouts.connect", range: 1...60_000, ctx: &ctx) ?? connect
                }
                if let node = timeouts["total"] {
                    total = duration(node, path: "spec.timeouts.total", range: 1...600_000, ctx: &ctx) ?? total
                }
            } else {
                ctx.fail("spec.timeouts", "must be a mapping {connect, total}")
            }
        }

        var maxConcurrency = ModelSpec.defaultMaxConcurrency
        if let value = spec["maxConcurrency"] {
            if let number = integer(value) {
                if (1...10_000).contains(number) { maxConcurrency = number } else {
                    ctx.fail("spec.maxConcurrency", "must be 1...10000, got \(number)")
                }
            } else {
                ctx.fail("spec.maxConcurrency", "must be an integer 1...10000, got \(describe(value))")
            }
        }

        var fallback: String?
        if let value = spec["fallback"] {
            if let text = string(value), !text.isEmpty {
                if text == name { ctx.fail("spec.fallback", "must name another AIModel, not this one") } else { fallback = text }
            } else {
                ctx.fail("spec.fallback", "must be the name of another AIModel, got \(describe(value))")
            }
        }

        var latency = 0
        var errorRate = 0.0
        if let value = spec["mock"] {
            if provider != .mock {
                ctx.fail("spec.mock", "is only for provider mock")
            } else if case .mapping(let mock) = value {
                checkKeys(mock, allowed: ["latency", "errorRate"], path: "spec.mock.", ctx: &ctx)
                if let node = mock["latency"] {
                    latency = duration(node, path: "spec.mock.latency", range: 0...600_000, ctx: &ctx) ?? 0
                }
                if let node = mock["errorRate"] {
                    if let rate = number(node), (0...1).contains(rate) { errorRate = rate } else {
                        ctx.fail("spec.mock.errorRate", "must be a number 0...1, got \(describe(node))")
                    }
                }
            } else {
                ctx.fail("spec.mock", "must be a mapping {latency, errorRate}")
            }
        }

        guard let name, let provider, ctx.problems.isEmpty else { return nil }
        return ModelSpec(
            name: name, provider: provider, baseURL: baseURL, model: model, apiKey: apiKey,
            connectTimeoutMs: connect, totalTimeoutMs: total, maxConcurrency: maxConcurrency, fallback: fallback,
            mockLatencyMs: latency, mockErrorRate: errorRate)
    }

    static func parseAPIKey(_ node: Node, ctx: inout Context) -> APIKeySource? {
        guard case .mapping(let key) = node else {
            ctx.fail("spec.apiKey", "must be a mapping with exactly one of env, file (keys are never written inline)")
            return nil
        }
        checkKeys(key, allowed: ["env", "file"], path: "spec.apiKey.", ctx: &ctx)
        switch (key["env"], key["file"]) {
        case (.some(let env), nil):
            if let text = string(env), isEnvName(text) { return .env(text) }
            ctx.fail("spec.apiKey.env", "must be an environment variable name ([A-Za-z_][A-Za-z0-9_]*), got \(describe(env))")
        case (nil, .some(let file)):
            if let text = string(file), text.hasPrefix("/") { return .file(text) }
            ctx.fail("spec.apiKey.file", "must be an absolute file path, got \(describe(file))")
        case (.some, .some):
            ctx.fail("spec.apiKey", "must have exactly one of env, file; got both")
        case (nil, nil):
            ctx.fail("spec.apiKey", "must have exactly one of env, file")
        }
        return nil
    }

    /// Cross-resource rules: unique model names, fallbacks that exist and do not loop, and overlay
    /// models that exist in the registry. A document with no AIModel at all has no registry: its
    /// overlays' model names are not checked (the registry may come later).
    static func checkRegistry(_ models: [ModelSpec], overlays: [Overlay], problems: inout [ConfigProblem]) {
        var byName: [String: ModelSpec] = [:]
        for model in models {
            if byName[model.name] != nil {
                problems.append(ConfigProblem(
                    resource: "AIModel \(model.name)", path: "metadata.name",
                    message: "duplicate name: another AIModel is already called \"\(model.name)\""))
            } else {
                byName[model.name] = model
            }
        }
        let known = byName.keys.sorted().joined(separator: ", ")
        for model in models {
            guard let fallback = model.fallback else { continue }
            guard byName[fallback] != nil else {
                problems.append(ConfigProblem(
                    resource: "AIModel \(model.name)", path: "spec.fallback",
                    message: "unknown model \"\(fallback)\"; known models: \(known)"))
                continue
            }
            // Follow the chain; a name seen twice is a cycle (reported once, at its smallest name).
            var seen: [String] = [model.name]
            var next: String? = fallback
            while let current = next {
                if let start = seen.firstIndex(of: current) {
                    let cycle = Array(seen[start...])
                    if start == 0, model.name == cycle.min() {
                        problems.append(ConfigProblem(
                            resource: "AIModel \(model.name)", path: "spec.fallback",
                            message: "fallbacks form a cycle: \((cycle + [current]).joined(separator: " -> "))"))
                    }
                    break
                }
                seen.append(current)
                next = byName[current]?.fallback
            }
        }
        guard !models.isEmpty else { return }
        for overlay in overlays {
            for (index, ref) in overlay.models.enumerated() where byName[ref.name] == nil {
                problems.append(ConfigProblem(
                    resource: "AIOverlay \(overlay.name)", path: "spec.models[\(index)].name",
                    message: "unknown model \"\(ref.name)\"; known models: \(known)"))
            }
        }
    }

    // MARK: - Scalars

    static func string(_ node: Node) -> String? {
        guard case .scalar = node, node.tag.rawValue == Tag.Name.str.rawValue else { return nil }
        return node.string
    }

    static func integer(_ node: Node) -> Int? {
        guard case .scalar = node, node.tag.rawValue == Tag.Name.int.rawValue else { return nil }
        return node.int
    }

    static func number(_ node: Node) -> Double? {
        guard case .scalar = node else { return nil }
        if node.tag.rawValue == Tag.Name.int.rawValue, let value = node.int { return Double(value) }
        if node.tag.rawValue == Tag.Name.float.rawValue { return node.float }
        return nil
    }

    /// `500ms`, `2s`, `1m` → milliseconds, within `range`.
    static func duration(_ node: Node, path: String, range: ClosedRange<Int>, ctx: inout Context) -> Int? {
        let limit = "\(formatMs(range.lowerBound))...\(formatMs(range.upperBound))"
        guard let text = string(node) else {
            ctx.fail(path, "must be a duration such as 500ms, 2s or 1m (\(limit)), got \(describe(node))")
            return nil
        }
        var digits = Substring(text)
        let factor: Int
        if digits.hasSuffix("ms") { digits = digits.dropLast(2); factor = 1 }
        else if digits.hasSuffix("s") { digits = digits.dropLast(); factor = 1_000 }
        else if digits.hasSuffix("m") { digits = digits.dropLast(); factor = 60_000 }
        else { factor = 0 }
        // Digits only: Int("+5") would accept a sign.
        guard factor > 0, !digits.isEmpty, digits.count <= 9,
            digits.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }), let amount = Int(digits)
        else {
            ctx.fail(path, "must be a duration such as 500ms, 2s or 1m (\(limit)), got \"\(text)\"")
            return nil
        }
        let ms = amount * factor
        guard range.contains(ms) else {
            ctx.fail(path, "must be \(limit), got \(text)")
            return nil
        }
        return ms
    }

    static func formatMs(_ ms: Int) -> String {
        if ms != 0 && ms % 60_000 == 0 { return "\(ms / 60_000)m" }
        if ms != 0 && ms % 1_000 == 0 { return "\(ms / 1_000)s" }
        return "\(ms)ms"
    }

    static func urlProblem(_ text: String) -> String? {
        guard text.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            return "must be a URL without spaces or non-ASCII characters (percent-encode them), got \"\(text)\""
        }
        guard text.hasPrefix("http://") || text.hasPrefix("https://") else {
            return "must be an http:// or https:// URL, got \"\(text)\""
        }
        guard let components = URLComponents(string: text), let host = components.host, !host.isEmpty else {
            return "must be a URL with a host, got \"\(text)\""
        }
        if components.query != nil || components.fragment != nil {
            return "must not have a query or fragment (the API path is appended to it), got \"\(text)\""
        }
        return nil
    }

    static func isEnvName(_ text: String) -> Bool {
        guard let first = text.utf8.first, first == UInt8(ascii: "_") || (first | 0x20 >= 0x61 && first | 0x20 <= 0x7A)
        else { return false }
        return text.utf8.allSatisfy {
            $0 == UInt8(ascii: "_") || ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x7A)
        }
    }
}
