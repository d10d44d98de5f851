import OverlayCore

/// One problem of a request, as the console shows it: `path` is `"<resource>: <key path>"`
/// (e.g. `"AIOverlay demo-canary: spec.models[1].weight"`), the same words `overlayd validate`
/// prints.
public struct APIProblem: Sendable, Hashable, Codable {
    public var path: String
    public var message: String

    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }

    /// A validator's problem, with its resource and key path joined.
    public init(_ problem: ConfigProblem) {
        let parts = [problem.resource, problem.path.isEmpty ? nil : problem.path].compactMap { $0 }
        self.init(path: parts.joined(separator: ": "), message: problem.message)
    }
}

/// Why a request changed nothing: the HTTP status, a one-line summary and every problem
/// (README "Control plane and console", the console's API contract).
public struct APIError: Error, Sendable, Equatable {
    /// 400 malformed JSON or an unknown field of the request itself; 401 no or wrong token; 403 a
    /// foreign Origin; 404 an unknown name or version; 409 a stale If-Match or an existing name;
    /// 413 a body over the limit; 422 the document does not validate; 503 too many long polls.
    public var status: Int
    public var error: String
    public var problems: [APIProblem]
    /// With 409: the store's version now.
    public var currentVersion: Int?

    public init(status: Int, _ error: String, problems: [APIProblem] = [], currentVersion: Int? = nil) {
        self.status = status
        self.error = error
        self.problems = problems
        self.currentVersion = currentVersion
    }

    public static func badRequest(_ error: String, problems: [APIProblem] = []) -> APIError {
        APIError(status: 400, error, problems: problems)
    }

    public static func notFound(_ error: String) -> APIError { APIError(status: 404, error) }

    /// 422 with every problem the validator found.
    public static func invalid(_ configError: ConfigError) -> APIError {
        let count = configError.problems.count
        return APIError(
            status: 422, "the desired state does not validate: \(count) problem\(count == 1 ? "" : "s")",
            problems: configError.problems.map(APIProblem.init))
    }

    public static func invalid(_ problems: [APIProblem]) -> APIError {
        APIError(
            status: 422, "the request does not validate: \(problems.count) problem\(problems.count == 1 ? "" : "s")",
            problems: problems)
    }

    /// The JSON body: `{"error": ..., "problems": [...], "currentVersion": N?}`.
    public var json: String {
        var fields = ["\"error\":" + JSONText.quote(error)]
        fields.append(
            "\"problems\":["
                + problems.map { "{\"path\":\(JSONText.quote($0.path)),\"message\":\(JSONText.quote($0.message))}" }
                .joined(separator: ",") + "]")
        if let currentVersion { fields.append("\"currentVersion\":\(currentVersion)") }
        return "{" + fields.joined(separator: ",") + "}\n"
    }
}
