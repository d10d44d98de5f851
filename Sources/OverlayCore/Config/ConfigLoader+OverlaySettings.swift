import Foundation
import OverlayDecisions
import Yams

/// The optional `AIOverlay` spec fields (``OverlaySettings``): every value checked, every problem
/// reported with its path and what is allowed.
extension ConfigLoader {
    static let overlaySpecKeys = [
        "hostApp", "models", "strategy", "paths", "userKey", "modelHeader", "shadow", "prompt", "injection",
    ]

    static func parseSettings(_ spec: Node.Mapping, strategy: OverlayStrategy, ctx: inout Context) -> OverlaySettings {
        var settings = OverlaySettings()
        if let node = spec["paths"] {
            settings.paths = pathPrefixes(node, path: "spec.paths", allowEmpty: false, ctx: &ctx) ?? settings.paths
        }
        if let node = spec["userKey"] {
            settings.userKey = userKey(node, ctx: &ctx)
        }
        if let node = spec["modelHeader"] {
            if let text = string(node), isToken(text), text.utf8.count <= 128 {
                settings.modelHeader = text.lowercased()
            } else {
                ctx.fail("spec.modelHeader", "must be an HTTP header name (letters, digits, !#$%&'*+-.^_`|~; at most 128), got \(describe(node))")
            }
        }
        if let node = spec["shadow"] {
            if strategy != .shadow {
                ctx.fail("spec.shadow", "is only allowed when spec.strategy is Shadow")
            } else if case .mapping(let shadow) = node {
                checkKeys(shadow, allowed: ["sampleRate", "driftThreshold", "window"], path: "spec.shadow.", ctx: &ctx)
                if let value = shadow["sampleRate"] {
                    settings.shadowSampleRate = fraction(value, path: "spec.shadow.sampleRate", ctx: &ctx) ?? settings.shadowSampleRate
                }
                if let value = shadow["driftThreshold"] {
                    settings.driftThreshold = fraction(value, path: "spec.shadow.driftThreshold", ctx: &ctx) ?? settings.driftThreshold
                }
                if let value = shadow["window"] {
                    if let number = integer(value), (10...10_000).contains(number) {
                        settings.driftWindow = number
                    } else {
                        ctx.fail("spec.shadow.window", "must be an integer 10...10000, got \(describe(value))")
                    }
                }
            } else {
                ctx.fail("spec.shadow", "must be a mapping {sampleRate, driftThreshold, window}")
            }
        }
        if let node = spec["prompt"] {
            if case .mapping(let prompt) = node {
                checkKeys(prompt, allowed: ["template", "allowSensitiveHeaders"], path: "spec.prompt.", ctx: &ctx)
                if let value = prompt["allowSensitiveHeaders"] {
                    if let flag = boolean(value) { settings.allowSensitiveHeaders = flag } else {
                        ctx.fail("spec.prompt.allowSensitiveHeaders", "must be true or false, got \(describe(value))")
                    }
                }
                if let value = prompt["template"] {
                    if let text = string(value), !text.isEmpty, text.utf8.count <= OverlaySettings.maxPromptTemplateBytes {
                        do throws(PromptTemplateError) {
                            settings.prompt = try PromptTemplate(
                                compiling: text, allowSensitiveHeaders: settings.allowSensitiveHeaders)
                        } catch {
                            ctx.fail("spec.prompt.template", error.description)
                        }
                    } else {
                        ctx.fail("spec.prompt.template", "must be a non-empty string of at most 8192 bytes, got \(describeShort(value))")
                    }
                }
            } else {
                ctx.fail("spec.prompt", "must be a mapping {template, allowSensitiveHeaders}")
            }
        }
        if let node = spec["injection"] {
            if case .mapping(let injection) = node {
                parseInjection(injection, into: &settings, ctx: &ctx)
            } else {
                ctx.fail("spec.injection", "must be a mapping {html, json, latencyBudget, maxBodyBytes, context}")
            }
        }
        return settings
    }

    static func parseInjection(_ injection: Node.Mapping, into settings: inout OverlaySettings, ctx: inout Context) {
        checkKeys(injection, allowed: ["html", "json", "latencyBudget", "maxBodyBytes", "context"], path: "spec.injection.", ctx: &ctx)
        if let value = injection["context"] {
            let allowed = OverlaySettings.pageContextKinds
            if case .sequence(let list) = value, let kinds = Optional(list.compactMap(string)), kinds.count == list.count,
                kinds.allSatisfy(allowed.contains), Set(kinds).count == kinds.count
            {
                settings.pageContext = kinds
            } else {
                ctx.fail("spec.injection.context", "must be a list of distinct values among \(allowed.joined(separator: ", ")), got \(describeShort(value))")
            }
        }
        if let value = injection["html"] {
            if let flag = boolean(value) { settings.injectHTML = flag } else {
                ctx.fail("spec.injection.html", "must be true or false, got \(describe(value))")
            }
        }
        if let value = injection["json"] {
            if case .mapping(let json) = value {
                checkKeys(json, allowed: ["paths", "key"], path: "spec.injection.json.", ctx: &ctx)
                if let paths = json["paths"] {
                    settings.jsonPaths = pathPrefixes(paths, path: "spec.injection.json.paths", allowEmpty: true, ctx: &ctx) ?? []
                }
                if let key = json["key"] {
                    if let text = string(key), !text.isEmpty, text.utf8.count <= 64,
                        text.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0 != "\"" && $0 != "\\" })
                    {
                        settings.jsonKey = text
                    } else {
                        ctx.fail("spec.injection.json.key", "must be a string of 1-64 characters without quotes, backslashes or control characters, got \(describe(key))")
                    }
                }
            } else {
                ctx.fail("spec.injection.json", "must be a mapping {paths, key}")
            }
        }
        if let value = injection["latencyBudget"] {
            settings.latencyBudgetMs = duration(value, path: "spec.injection.latencyBudget", range: 0...10_000, ctx: &ctx)
                ?? settings.latencyBudgetMs
        }
        if let value = injection["maxBodyBytes"] {
            if let number = integer(value), (1024...64 * 1024 * 1024).contains(number) {
                settings.maxBodyBytes = number
            } else {
                ctx.fail("spec.injection.maxBodyBytes", "must be an integer 1024...67108864, got \(describe(value))")
            }
        }
    }

    static func pathPrefixes(_ node: Node, path: String, allowEmpty: Bool, ctx: inout Context) -> [String]? {
        guard case .sequence(let list) = node, allowEmpty || !list.isEmpty, list.count <= OverlaySettings.maxPaths else {
            ctx.fail(path, "must be a \(allowEmpty ? "" : "non-empty ")list of at most \(OverlaySettings.maxPaths) path prefixes such as /app/")
            return nil
        }
        var prefixes: [String] = []
        var ok = true
        for (index, item) in list.enumerated() {
            guard let text = string(item), text.hasPrefix("/"), text.utf8.count <= 1024,
                text.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "?") && $0 != UInt8(ascii: "#") })
            else {
                ctx.fail("\(path)[\(index)]", "must be a path prefix starting with / (ASCII, no spaces, ? or #; at most 1024), got \(describeShort(item))")
                ok = false
                continue
            }
            if prefixes.contains(text) {
                ctx.fail("\(path)[\(index)]", "duplicate path prefix \"\(text)\"")
                ok = false
            }
            prefixes.append(text)
        }
        return ok ? prefixes : nil
    }

    static func userKey(_ node: Node, ctx: inout Context) -> OverlaySettings.UserKeySource? {
        guard case .mapping(let mapping) = node else {
            ctx.fail("spec.userKey", "must be a mapping with exactly one of header, cookie")
            return nil
        }
        let before = ctx.problems.count
        checkKeys(mapping, allowed: ["header", "cookie"], path: "spec.userKey.", ctx: &ctx)
        guard ctx.problems.count == before else { return nil }
        let header = mapping["header"]
        let cookie = mapping["cookie"]
        guard (header == nil) != (cookie == nil) else {
            ctx.fail("spec.userKey", "must have exactly one of header, cookie")
            return nil
        }
        let kind = header != nil ? "header" : "cookie"
        let value = (header ?? cookie)!
        guard let text = string(value), isToken(text), text.utf8.count <= 128 else {
            ctx.fail("spec.userKey.\(kind)", "must be a \(kind) name (letters, digits, !#$%&'*+-.^_`|~; at most 128), got \(describe(value))")
            return nil
        }
        if kind == "header" {
            if ["cookie", "authorization", "proxy-authorization"].contains(text.lowercased()) {
                ctx.fail("spec.userKey.header", "must not be \(text.lowercased()): name the cookie with userKey.cookie, or a header holding a user id")
                return nil
            }
            return .header(text.lowercased())
        }
        return .cookie(text)
    }

    static func fraction(_ node: Node, path: String, ctx: inout Context) -> Double? {
        if let value = number(node), value >= 0, value <= 1 { return value }
        ctx.fail(path, "must be a number 0...1, got \(describe(node))")
        return nil
    }

    static func boolean(_ node: Node) -> Bool? {
        guard case .scalar = node, node.tag.rawValue == Tag.Name.bool.rawValue else { return nil }
        return node.bool
    }

    /// RFC 9110 token characters.
    static func isToken(_ text: String) -> Bool {
        !text.isEmpty
            && text.utf8.allSatisfy { byte in
                (byte >= 0x30 && byte <= 0x39) || (byte | 0x20 >= 0x61 && byte | 0x20 <= 0x7A)
                    || "!#$%&'*+-.^_`|~".utf8.contains(byte)
            }
    }

    /// `describe`, shortened for long strings.
    static func describeShort(_ node: Node) -> String {
        let text = describe(node)
        return text.count > 80 ? String(text.prefix(77)) + "...\"" : text
    }
}
