/// One problem found in a desired-state document.
///
/// Rendered as `AIOverlay salesforce-copilot: spec.models[1].weight: must be 0...100, got 120`
/// (resource, then the key path inside it, then what is wrong and what is allowed).
public struct ConfigProblem: Sendable, Hashable, CustomStringConvertible {
    /// `"AIOverlay salesforce-copilot"`, `"AIOverlay #2"` (the resource's position) when its name is not
    /// known, `"document 2"` for a container problem, or nil for the whole file.
    public var resource: String?
    /// Key path inside the resource, e.g. `spec.models[1].weight`; empty for the resource itself.
    public var path: String
    /// What is wrong and what is allowed.
    public var message: String

    public init(resource: String?, path: String, message: String) {
        self.resource = resource
        self.path = path
        self.message = message
    }

    public var description: String {
        var parts: [String] = []
        if let resource { parts.append(resource) }
        if !path.isEmpty { parts.append(path) }
        parts.append(message)
        return parts.joined(separator: ": ")
    }
}

/// Every problem found in a document, reported at once. A document with any problem is rejected whole.
public struct ConfigError: Error, Sendable, CustomStringConvertible {
    public var source: String
    public var problems: [ConfigProblem]

    public init(source: String, problems: [ConfigProblem]) {
        self.source = source
        self.problems = problems
    }

    public var description: String {
        let lines = problems.map { "  - \($0)" }.joined(separator: "\n")
        return "\(source): \(problems.count) problem\(problems.count == 1 ? "" : "s"):\n\(lines)"
    }
}
