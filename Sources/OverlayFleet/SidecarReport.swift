import Yams

/// What a sidecar following a control plane POSTs to `/v1/reports` after every fetch: counters
/// since its previous report, no user data (README "Control plane and console").
public struct SidecarReport: Sendable, Equatable {
    public struct Decision: Sendable, Equatable {
        public var overlay: String
        public var model: String
        public var count: Int
        public init(overlay: String, model: String, count: Int) {
            self.overlay = overlay
            self.model = model
            self.count = count
        }
    }
    public struct Bucket: Sendable, Equatable {
        /// Upper bound in seconds; `.infinity` for `+Inf`.
        public var le: Double
        /// Cumulative: calls that took at most `le`.
        public var count: Int
        public init(le: Double, count: Int) {
            self.le = le
            self.count = count
        }
    }
    public struct ModelCalls: Sendable, Equatable {
        public var model: String
        public var ok: Int
        public var error: Int
        /// `closed`, `open` or `half_open`.
        public var breaker: String
        public var latencyBuckets: [Bucket]
        public init(model: String, ok: Int, error: Int, breaker: String = "closed", latencyBuckets: [Bucket] = []) {
            self.model = model
            self.ok = ok
            self.error = error
            self.breaker = breaker
            self.latencyBuckets = latencyBuckets
        }
    }
    public struct Injection: Sendable, Equatable {
        public var result: String
        public var reason: String
        public var count: Int
        public init(result: String, reason: String, count: Int) {
            self.result = result
            self.reason = reason
            self.count = count
        }
    }
    public struct Drift: Sendable, Equatable {
        public var overlay: String
        public var pairs: Int
        public var mean: Double?
        public var p10: Double?
        public var flag: Bool
        public var threshold: Double
        public var lengthRatio: Double?
        public var latencyDiffMs: Double?
        public var errorMismatches: Int
        public var recentScores: [Double]
        public init(
            overlay: String, pairs: Int, mean: Double?, p10: Double?, flag: Bool, threshold: Double, lengthRatio: Double?,
            latencyDiffMs: Double?, errorMismatches: Int, recentScores: [Double]
        ) {
            self.overlay = overlay
            self.pairs = pairs
            self.mean = mean
            self.p10 = p10
            self.flag = flag
            self.threshold = threshold
            self.lengthRatio = lengthRatio
            self.latencyDiffMs = latencyDiffMs
            self.errorMismatches = errorMismatches
            self.recentScores = recentScores
        }
    }

    /// A model's call-rate forecast on this sidecar (`overlayd_model_call_rate_forecast`), in
    /// calls per minute; nil until the forecaster has enough buckets.
    public struct Forecast: Sendable, Equatable {
        public var model: String
        public var in5m: Double?
        public var in15m: Double?
        public init(model: String, in5m: Double?, in15m: Double?) {
            self.model = model
            self.in5m = in5m
            self.in15m = in15m
        }
    }

    public var instance: String
    public var host: String
    /// The control plane's version the sidecar serves (its ETag without quotes).
    public var version: String
    public var intervalSeconds: Double
    public var decisions: [Decision]
    public var modelCalls: [ModelCalls]
    public var injections: [Injection]
    public var drift: [Drift]
    public var forecasts: [Forecast]

    public init(
        instance: String, host: String, version: String, intervalSeconds: Double, decisions: [Decision] = [],
        modelCalls: [ModelCalls] = [], injections: [Injection] = [], drift: [Drift] = [], forecasts: [Forecast] = []
    ) {
        self.forecasts = forecasts
        self.instance = instance
        self.host = host
        self.version = version
        self.intervalSeconds = intervalSeconds
        self.decisions = decisions
        self.modelCalls = modelCalls
        self.injections = injections
        self.drift = drift
    }

    /// Largest report body accepted, in bytes.
    public static let maxBytes = 64 * 1024
    /// Largest number of entries in one list of a report.
    public static let maxEntries = 512
    public static let breakerStates = ["closed", "open", "half_open"]

    // MARK: - JSON

    public var json: String {
        func opt(_ value: Double?) -> String { value.map(JSONText.number) ?? "null" }
        var out = "{\"instance\":\(JSONText.quote(instance)),\"host\":\(JSONText.quote(host)),"
        out += "\"version\":\(JSONText.quote(version)),\"intervalSeconds\":\(JSONText.number(intervalSeconds)),"
        out += "\"decisions\":[" + decisions.map {
            "{\"overlay\":\(JSONText.quote($0.overlay)),\"model\":\(JSONText.quote($0.model)),\"count\":\($0.count)}"
        }.joined(separator: ",") + "],"
        out += "\"modelCalls\":[" + modelCalls.map { calls in
            let buckets = calls.latencyBuckets.map {
                "{\"le\":\($0.le.isInfinite ? "\"+Inf\"" : JSONText.number($0.le)),\"count\":\($0.count)}"
            }.joined(separator: ",")
            return "{\"model\":\(JSONText.quote(calls.model)),\"ok\":\(calls.ok),\"error\":\(calls.error),"
                + "\"breaker\":\(JSONText.quote(calls.breaker)),\"latencyBuckets\":[\(buckets)]}"
        }.joined(separator: ",") + "],"
        out += "\"injections\":[" + injections.map {
            "{\"result\":\(JSONText.quote($0.result)),\"reason\":\(JSONText.quote($0.reason)),\"count\":\($0.count)}"
        }.joined(separator: ",") + "],"
        out += "\"drift\":[" + drift.map {
            "{\"overlay\":\(JSONText.quote($0.overlay)),\"pairs\":\($0.pairs),\"mean\":\(opt($0.mean)),\"p10\":\(opt($0.p10)),"
                + "\"flag\":\($0.flag),\"threshold\":\(JSONText.number($0.threshold)),\"lengthRatio\":\(opt($0.lengthRatio)),"
                + "\"latencyDiffMs\":\(opt($0.latencyDiffMs)),\"errorMismatches\":\($0.errorMismatches),"
                + "\"recentScores\":[\($0.recentScores.map(JSONText.number).joined(separator: ","))]}"
        }.joined(separator: ",") + "],"
        out += "\"forecasts\":[" + forecasts.map {
            "{\"model\":\(JSONText.quote($0.model)),\"in5m\":\(opt($0.in5m)),\"in15m\":\(opt($0.in15m))}"
        }.joined(separator: ",") + "]}"
        return out
    }

    /// Parses and checks a report body: 400 for malformed JSON or an unknown field, 422 with
    /// every invalid value and its path.
    public static func parse(_ bytes: [UInt8]) throws(APIError) -> SidecarReport {
        let node = try ResourceJSON.parse(bytes)
        var reader = NodeReader()
        let report = reader.report(node)
        if !reader.unknown.isEmpty {
            throw .badRequest(
                "unknown field\(reader.unknown.count == 1 ? "" : "s") in the report", problems: reader.unknown)
        }
        guard let report, reader.problems.isEmpty else { throw .invalid(reader.problems) }
        return report
    }
}

/// Reads typed values out of a JSON node, collecting every problem with its path.
struct NodeReader {
    var problems: [APIProblem] = []
    var unknown: [APIProblem] = []

    mutating func fail(_ path: String, _ message: String) { problems.append(APIProblem(path: "report: " + path, message: message)) }

    mutating func object(_ node: Node?, _ path: String, allowed: [String]) -> Node.Mapping? {
        guard case .mapping(let mapping)? = node else {
            fail(path.isEmpty ? "(body)" : path, "must be an object")
            return nil
        }
        for key in mapping.keys {
            let name = key.string ?? "?"
            if !allowed.contains(name) {
                unknown.append(APIProblem(
                    path: "report: " + (path.isEmpty ? name : path + "." + name),
                    message: "unknown field; allowed here: \(allowed.joined(separator: ", "))"))
            }
        }
        return mapping
    }

    mutating func string(_ node: Node?, _ path: String, max: Int, allowEmpty: Bool = false) -> String? {
        guard let node, case .scalar(let scalar) = node, node.tagName == .str else {
            fail(path, node == nil ? "is required (a string)" : "must be a string")
            return nil
        }
        if scalar.string.isEmpty && !allowEmpty { fail(path, "must not be empty"); return nil }
        if scalar.string.utf8.count > max { fail(path, "must be at most \(max) bytes"); return nil }
        return scalar.string
    }

    mutating func count(_ node: Node?, _ path: String) -> Int? {
        guard let node, node.tagName == .int, let value = node.int else {
            fail(path, node == nil ? "is required (an integer ≥ 0)" : "must be an integer ≥ 0")
            return nil
        }
        guard value >= 0, value <= 1 << 40 else { fail(path, "must be an integer ≥ 0 (at most 2^40), got \(value)"); return nil }
        return value
    }

    mutating func number(_ node: Node?, _ path: String, range: ClosedRange<Double>, optional: Bool = false) -> Double?? {
        guard let node else {
            if optional { return .some(nil) }
            fail(path, "is required (a number)")
            return nil
        }
        if node.tagName == .null {
            if optional { return .some(nil) }
            fail(path, "must be a number, got null")
            return nil
        }
        guard node.tagName == .int || node.tagName == .float, let value = node.float, value.isFinite else {
            fail(path, "must be a number")
            return nil
        }
        guard range.contains(value) else {
            fail(path, "must be \(JSONText.number(range.lowerBound))...\(JSONText.number(range.upperBound)), got \(JSONText.number(value))")
            return nil
        }
        return .some(value)
    }

    mutating func list(_ node: Node?, _ path: String) -> [Node] {
        guard let node else { return [] }
        guard case .sequence(let items) = node else { fail(path, "must be a list"); return [] }
        if items.count > SidecarReport.maxEntries {
            fail(path, "must have at most \(SidecarReport.maxEntries) entries, got \(items.count)")
            return []
        }
        return Array(items)
    }

    mutating func report(_ node: Node) -> SidecarReport? {
        guard
            let root = object(
                node, "",
                allowed: ["instance", "host", "version", "intervalSeconds", "decisions", "modelCalls", "injections", "drift", "forecasts"])
        else { return nil }
        let instance = string(root["instance"], "instance", max: 128)
        let host = string(root["host"], "host", max: 253, allowEmpty: true)
        let version = string(root["version"], "version", max: 64, allowEmpty: true)
        let interval = number(root["intervalSeconds"], "intervalSeconds", range: 0.05...86_400)
        var report = SidecarReport(
            instance: instance ?? "", host: host ?? "", version: version ?? "", intervalSeconds: (interval ?? nil) ?? 10)
        for (index, item) in list(root["decisions"], "decisions").enumerated() {
            let path = "decisions[\(index)]"
            guard let entry = object(item, path, allowed: ["overlay", "model", "count"]) else { continue }
            if let overlay = string(entry["overlay"], path + ".overlay", max: 253),
                let model = string(entry["model"], path + ".model", max: 253), let count = count(entry["count"], path + ".count")
            {
                report.decisions.append(.init(overlay: overlay, model: model, count: count))
            }
        }
        for (index, item) in list(root["modelCalls"], "modelCalls").enumerated() {
            let path = "modelCalls[\(index)]"
            guard let entry = object(item, path, allowed: ["model", "ok", "error", "breaker", "latencyBuckets"]) else { continue }
            let model = string(entry["model"], path + ".model", max: 253)
            let ok = count(entry["ok"], path + ".ok")
            let error = count(entry["error"], path + ".error")
            var breaker = "closed"
            if let given = entry["breaker"] {
                if let text = string(given, path + ".breaker", max: 16) {
                    if SidecarReport.breakerStates.contains(text) { breaker = text } else {
                        fail(path + ".breaker", "must be one of \(SidecarReport.breakerStates.joined(separator: ", ")), got \"\(text)\"")
                    }
                }
            }
            var buckets: [SidecarReport.Bucket] = []
            for (bucketIndex, bucketNode) in list(entry["latencyBuckets"], path + ".latencyBuckets").enumerated() {
                let bucketPath = "\(path).latencyBuckets[\(bucketIndex)]"
                guard let bucket = object(bucketNode, bucketPath, allowed: ["le", "count"]) else { continue }
                var le: Double?
                if let text = bucket["le"]?.string, bucket["le"]?.tagName == .str {
                    if text == "+Inf" { le = .infinity } else { fail(bucketPath + ".le", "must be a number of seconds or \"+Inf\", got \"\(text)\"") }
                } else if let value = number(bucket["le"], bucketPath + ".le", range: 0...86_400) ?? nil {
                    le = value
                }
                if let le, let count = count(bucket["count"], bucketPath + ".count") {
                    if let last = buckets.last, last.le >= le || last.count > count {
                        fail(bucketPath, "buckets must have increasing bounds and cumulative (non-decreasing) counts")
                    }
                    buckets.append(.init(le: le, count: count))
                }
            }
            if let model, let ok, let error {
                report.modelCalls.append(.init(model: model, ok: ok, error: error, breaker: breaker, latencyBuckets: buckets))
            }
        }
        for (index, item) in list(root["injections"], "injections").enumerated() {
            let path = "injections[\(index)]"
            guard let entry = object(item, path, allowed: ["result", "reason", "count"]) else { continue }
            let result = string(entry["result"], path + ".result", max: 64)
            var reason = ""
            if entry["reason"] != nil { reason = string(entry["reason"], path + ".reason", max: 64, allowEmpty: true) ?? "" }
            if let result, let count = count(entry["count"], path + ".count") {
                report.injections.append(.init(result: result, reason: reason, count: count))
            }
        }
        for (index, item) in list(root["drift"], "drift").enumerated() {
            let path = "drift[\(index)]"
            guard
                let entry = object(
                    item, path,
                    allowed: [
                        "overlay", "pairs", "mean", "p10", "flag", "threshold", "lengthRatio", "latencyDiffMs", "errorMismatches",
                        "recentScores",
                    ])
            else { continue }
            let overlay = string(entry["overlay"], path + ".overlay", max: 253)
            let pairs = count(entry["pairs"], path + ".pairs")
            let mean = number(entry["mean"], path + ".mean", range: 0...1, optional: true)
            let p10 = number(entry["p10"], path + ".p10", range: 0...1, optional: true)
            var flag = false
            if let given = entry["flag"] {
                if given.tagName == .bool, let value = given.bool { flag = value } else { fail(path + ".flag", "must be true or false") }
            }
            let threshold = number(entry["threshold"], path + ".threshold", range: 0...1)
            let lengthRatio = number(entry["lengthRatio"], path + ".lengthRatio", range: 0...1_000_000, optional: true)
            let latency = number(entry["latencyDiffMs"], path + ".latencyDiffMs", range: -86_400_000...86_400_000, optional: true)
            let mismatches = entry["errorMismatches"] == nil ? 0 : count(entry["errorMismatches"], path + ".errorMismatches")
            var scores: [Double] = []
            let scoreNodes = list(entry["recentScores"], path + ".recentScores")
            if scoreNodes.count > 100 { fail(path + ".recentScores", "must have at most 100 scores") }
            for (scoreIndex, score) in scoreNodes.prefix(100).enumerated() {
                if let value = number(score, "\(path).recentScores[\(scoreIndex)]", range: 0...1) ?? nil { scores.append(value) }
            }
            if let overlay, let pairs, let mean, let p10, let threshold = threshold ?? nil, let lengthRatio, let latency,
                let mismatches
            {
                report.drift.append(.init(
                    overlay: overlay, pairs: pairs, mean: mean, p10: p10, flag: flag, threshold: threshold,
                    lengthRatio: lengthRatio, latencyDiffMs: latency, errorMismatches: mismatches, recentScores: scores))
            }
        }
        for (index, item) in list(root["forecasts"], "forecasts").enumerated() {
            let path = "forecasts[\(index)]"
            guard let entry = object(item, path, allowed: ["model", "in5m", "in15m"]) else { continue }
            let model = string(entry["model"], path + ".model", max: 253)
            let in5m = number(entry["in5m"], path + ".in5m", range: 0...1e12, optional: true)
            let in15m = number(entry["in15m"], path + ".in15m", range: 0...1e12, optional: true)
            if let model, let in5m, let in15m { report.forecasts.append(.init(model: model, in5m: in5m, in15m: in15m)) }
        }
        return problems.isEmpty && instance != nil && interval != nil ? report : nil
    }
}
