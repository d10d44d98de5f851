import Foundation

/// The fleet's reports, aggregated per overlay and model: a rolling hour at 10 s resolution, in
/// memory and bounded. Pure (time is passed in), so every rule is unit-tested.
///
/// - Slots: `window / resolution` (360) ring slots; a report's counters go into the slot of the
///   time it arrived. Each slot holds at most `maxKeys` distinct overlay/model/result keys; more are
///   dropped and counted (`droppedKeys`).
/// - Instances: at most `maxInstances`; an instance not heard from for three of its report
///   intervals is forgotten.
public struct FleetAggregator: Sendable {
    public struct Options: Sendable {
        public var resolution: Double = 10
        public var window: Double = 3600
        /// Rates and shares are computed over the last `rateWindow` seconds.
        public var rateWindow: Double = 60
        public var maxInstances = 10_000
        public var maxKeys = 4096
        public init() {}
    }

    struct Calls: Sendable {
        var ok = 0
        var error = 0
        /// Cumulative counts by upper bound (seconds).
        var buckets: [Double: Int] = [:]
    }

    struct DriftPoint: Sendable {
        var meanSum = 0.0
        var meanCount = 0
        var p10Sum = 0.0
        var p10Count = 0
    }

    struct Slot: Sendable {
        var index: Int64
        var decisions: [String: [String: Int]] = [:]
        var calls: [String: Calls] = [:]
        var injections: [String: Int] = [:]
        var drift: [String: DriftPoint] = [:]
        var keys = 0
    }

    public struct Instance: Sendable, Equatable {
        public var instance: String
        public var host: String
        public var version: String
        public var lastSeen: Date
        public var intervalSeconds: Double
    }

    public let options: Options
    private var slots: [Slot?]
    public private(set) var instances: [String: Instance] = [:]
    /// Per instance, its last report's breaker state per model and drift summaries.
    private var latestBreakers: [String: [String: String]] = [:]
    private var latestDrift: [String: [String: SidecarReport.Drift]] = [:]
    private var latestForecasts: [String: [SidecarReport.Forecast]] = [:]
    public private(set) var droppedKeys = 0

    public init(options: Options = Options()) {
        self.options = options
        self.slots = Array(repeating: nil, count: max(1, Int(options.window / options.resolution)))
    }

    public enum Admission: Equatable, Sendable {
        case accepted
        /// The instance table is full: a new instance is refused until others are forgotten.
        case tooManyInstances
    }

    /// Adds one report, received at `now`.
    @discardableResult
    public mutating func add(_ report: SidecarReport, now: Date) -> Admission {
        forget(now: now)
        if instances[report.instance] == nil && instances.count >= options.maxInstances { return .tooManyInstances }
        instances[report.instance] = Instance(
            instance: report.instance, host: report.host, version: report.version, lastSeen: now,
            intervalSeconds: report.intervalSeconds)
        latestBreakers[report.instance] = Dictionary(
            report.modelCalls.map { ($0.model, $0.breaker) }, uniquingKeysWith: { _, last in last })
        latestDrift[report.instance] = Dictionary(report.drift.map { ($0.overlay, $0) }, uniquingKeysWith: { _, last in last })
        latestForecasts[report.instance] = report.forecasts

        let index = slotIndex(now)
        var slot = slots[ring(index)].flatMap { $0.index == index ? $0 : nil } ?? Slot(index: index)
        let limit = options.maxKeys
        func admit(_ isNew: Bool, _ slot: inout Slot) -> Bool {
            guard isNew else { return true }
            guard slot.keys < limit else { return false }
            slot.keys += 1
            return true
        }
        for decision in report.decisions {
            let isNew = slot.decisions[decision.overlay]?[decision.model] == nil
            if admit(isNew, &slot) {
                slot.decisions[decision.overlay, default: [:]][decision.model, default: 0] += decision.count
            } else { droppedKeys += 1 }
        }
        for calls in report.modelCalls {
            if admit(slot.calls[calls.model] == nil, &slot) {
                var merged = slot.calls[calls.model] ?? Calls()
                merged.ok += calls.ok
                merged.error += calls.error
                for bucket in calls.latencyBuckets.prefix(64) { merged.buckets[bucket.le, default: 0] += bucket.count }
                slot.calls[calls.model] = merged
            } else { droppedKeys += 1 }
        }
        for injection in report.injections {
            let key = injection.reason.isEmpty ? injection.result : injection.result + "/" + injection.reason
            if admit(slot.injections[key] == nil, &slot) { slot.injections[key, default: 0] += injection.count } else {
                droppedKeys += 1
            }
        }
        for drift in report.drift {
            if admit(slot.drift[drift.overlay] == nil, &slot) {
                var point = slot.drift[drift.overlay] ?? DriftPoint()
                if let mean = drift.mean {
                    point.meanSum += mean
                    point.meanCount += 1
                }
                if let p10 = drift.p10 {
                    point.p10Sum += p10
                    point.p10Count += 1
                }
                slot.drift[drift.overlay] = point
            } else { droppedKeys += 1 }
        }
        slots[ring(index)] = slot
        return .accepted
    }

    /// Drops instances not heard from for three of their intervals.
    public mutating func forget(now: Date) {
        for (id, instance) in instances where now.timeIntervalSince(instance.lastSeen) > 3 * instance.intervalSeconds {
            instances[id] = nil
            latestBreakers[id] = nil
            latestDrift[id] = nil
            latestForecasts[id] = nil
        }
    }

    func slotIndex(_ date: Date) -> Int64 { Int64((date.timeIntervalSince1970 / options.resolution).rounded(.down)) }
    func ring(_ index: Int64) -> Int { Int(((index % Int64(slots.count)) + Int64(slots.count)) % Int64(slots.count)) }

    /// The slots within `seconds` before `now` (the current one included).
    func recent(_ seconds: Double, now: Date) -> [Slot] {
        let last = slotIndex(now)
        let count = max(1, Int((seconds / options.resolution).rounded(.up)))
        let first = last - Int64(min(count, slots.count)) + 1
        return slots.compactMap { $0 }.filter { $0.index >= first && $0.index <= last }
    }

    // MARK: - The fleet view (`GET /v1/fleet`)

    public struct OverlayStats: Sendable, Equatable {
        public var overlay: String
        public var rps: Double
        public var errorRate: Double
        public var share: [String: Double]
    }

    public struct ModelStats: Sendable, Equatable {
        public var model: String
        public var callRate: Double
        public var errorRate: Double
        public var p50Ms: Double?
        public var p99Ms: Double?
        public var breaker: String
        /// The fleet's forecast call rate 5 and 15 minutes ahead, in calls per minute: the sum of
        /// the live instances' latest forecasts (nil while none has one).
        public var forecast5m: Double? = nil
        public var forecast15m: Double? = nil
    }

    public struct DriftStats: Sendable, Equatable {
        public var overlay: String
        public var series: [(t: Date, mean: Double?, p10: Double?)]
        public var latest: SidecarReport.Drift?

        public static func == (a: DriftStats, b: DriftStats) -> Bool {
            a.overlay == b.overlay && a.latest == b.latest && a.series.count == b.series.count
                && zip(a.series, b.series).allSatisfy { $0.t == $1.t && $0.mean == $1.mean && $0.p10 == $1.p10 }
        }
    }

    public struct Fleet: Sendable, Equatable {
        public var instances: [(instance: Instance, lagging: Bool)]
        public var overlays: [OverlayStats]
        public var models: [ModelStats]
        public var drift: [DriftStats]

        public static func == (a: Fleet, b: Fleet) -> Bool {
            a.instances.map(\.instance) == b.instances.map(\.instance) && a.instances.map(\.lagging) == b.instances.map(\.lagging)
                && a.overlays == b.overlays && a.models == b.models && a.drift == b.drift
        }
    }

    /// The fleet now: live instances (lagging when they serve another version than `version`),
    /// rates over the last `rateWindow`, drift over the hour.
    public mutating func fleet(now: Date, version: String) -> Fleet {
        forget(now: now)
        let window = recent(options.rateWindow, now: now)
        let seconds = options.rateWindow
        var calls: [String: Calls] = [:]
        var decisions: [String: [String: Int]] = [:]
        for slot in window {
            for (model, c) in slot.calls {
                var merged = calls[model] ?? Calls()
                merged.ok += c.ok
                merged.error += c.error
                for (le, count) in c.buckets { merged.buckets[le, default: 0] += count }
                calls[model] = merged
            }
            for (overlay, models) in slot.decisions {
                for (model, count) in models { decisions[overlay, default: [:]][model, default: 0] += count }
            }
        }
        var breakers: [String: String] = [:]
        for (_, perModel) in latestBreakers {
            for (model, state) in perModel { breakers[model] = Self.worse(breakers[model], state) }
        }
        var forecast5m: [String: Double] = [:]
        var forecast15m: [String: Double] = [:]
        for (_, forecasts) in latestForecasts {
            for forecast in forecasts {
                if let value = forecast.in5m { forecast5m[forecast.model, default: 0] += value }
                if let value = forecast.in15m { forecast15m[forecast.model, default: 0] += value }
            }
        }
        let models = Set(calls.keys).union(breakers.keys).union(forecast5m.keys).union(forecast15m.keys).sorted()
            .map { model -> ModelStats in
                let c = calls[model] ?? Calls()
                let total = c.ok + c.error
                return ModelStats(
                    model: model, callRate: Double(total) / seconds, errorRate: total == 0 ? 0 : Double(c.error) / Double(total),
                    p50Ms: Self.quantile(0.5, c.buckets).map { $0 * 1000 }, p99Ms: Self.quantile(0.99, c.buckets).map { $0 * 1000 },
                    breaker: breakers[model] ?? "closed", forecast5m: forecast5m[model], forecast15m: forecast15m[model])
            }
        let overlays = decisions.keys.sorted().map { overlay -> OverlayStats in
            let perModel = decisions[overlay] ?? [:]
            let total = perModel.values.reduce(0, +)
            var errors = 0.0
            for (model, count) in perModel {
                let c = calls[model] ?? Calls()
                if c.ok + c.error > 0 { errors += Double(count) * Double(c.error) / Double(c.ok + c.error) }
            }
            return OverlayStats(
                overlay: overlay, rps: Double(total) / seconds, errorRate: total == 0 ? 0 : errors / Double(total),
                share: perModel.mapValues { total == 0 ? 0 : Double($0) / Double(total) })
        }
        var driftOverlays = Set<String>()
        for slot in slots.compactMap({ $0 }) { driftOverlays.formUnion(slot.drift.keys) }
        for (_, perOverlay) in latestDrift { driftOverlays.formUnion(perOverlay.keys) }
        let hour = recent(options.window, now: now).sorted { $0.index < $1.index }
        let latestDrift = self.latestDrift
        let drift = driftOverlays.sorted().map { overlay -> DriftStats in
            let series = hour.compactMap { slot -> (t: Date, mean: Double?, p10: Double?)? in
                guard let point = slot.drift[overlay] else { return nil }
                return (
                    Date(timeIntervalSince1970: Double(slot.index) * options.resolution),
                    point.meanCount == 0 ? nil : point.meanSum / Double(point.meanCount),
                    point.p10Count == 0 ? nil : point.p10Sum / Double(point.p10Count)
                )
            }
            // The latest summary: the most recently heard instance that reports this overlay.
            let latest = instances.values.sorted { $0.lastSeen > $1.lastSeen }
                .lazy.compactMap { latestDrift[$0.instance]?[overlay] }.first
            return DriftStats(overlay: overlay, series: series, latest: latest)
        }
        let live = instances.values.sorted { $0.instance < $1.instance }.map { ($0, $0.version != version) }
        return Fleet(instances: live, overlays: overlays, models: models, drift: drift)
    }

    static func worse(_ a: String?, _ b: String) -> String {
        let rank = ["closed": 0, "half_open": 1, "open": 2]
        guard let a else { return b }
        return (rank[b] ?? 0) > (rank[a] ?? 0) ? b : a
    }

    /// The q-quantile of cumulative buckets (seconds), interpolated linearly inside its bucket
    /// (Prometheus' histogram_quantile); nil without observations. In the +Inf bucket: the
    /// largest finite bound.
    static func quantile(_ q: Double, _ buckets: [Double: Int]) -> Double? {
        let sorted = buckets.sorted { $0.key < $1.key }
        guard let total = sorted.last?.value, total > 0 else { return nil }
        let rank = q * Double(total)
        var lowerBound = 0.0, lowerCount = 0
        for (le, count) in sorted {
            if Double(count) >= rank {
                if le.isInfinite { return lowerBound }
                let inBucket = count - lowerCount
                if inBucket == 0 { return le }
                return lowerBound + (le - lowerBound) * (rank - Double(lowerCount)) / Double(inBucket)
            }
            lowerBound = le.isInfinite ? lowerBound : le
            lowerCount = count
        }
        return lowerBound
    }
}

extension FleetAggregator.Fleet {
    /// `GET /v1/fleet`'s JSON (the console's API contract).
    public var json: String {
        let time = Date.ISO8601FormatStyle()
        func opt(_ value: Double?) -> String { value.map(JSONText.number) ?? "null" }
        func num(_ value: Double) -> String { String(format: "%.4g", value) }
        var out = "{\"instances\":[" + instances.map { entry in
            "{\"instance\":\(JSONText.quote(entry.instance.instance)),\"host\":\(JSONText.quote(entry.instance.host)),"
                + "\"version\":\(JSONText.quote(entry.instance.version)),\"lastSeen\":\(JSONText.quote(entry.instance.lastSeen.formatted(time))),"
                + "\"lagging\":\(entry.lagging)}"
        }.joined(separator: ",") + "],"
        out += "\"overlays\":[" + overlays.map { stats in
            let share = stats.share.sorted { $0.key < $1.key }.map { "\(JSONText.quote($0.key)):\(num($0.value))" }.joined(separator: ",")
            return "{\"overlay\":\(JSONText.quote(stats.overlay)),\"rps\":\(num(stats.rps)),\"errorRate\":\(num(stats.errorRate)),\"share\":{\(share)}}"
        }.joined(separator: ",") + "],"
        out += "\"models\":[" + models.map {
            "{\"model\":\(JSONText.quote($0.model)),\"callRate\":\(num($0.callRate)),\"errorRate\":\(num($0.errorRate)),"
                + "\"p50Ms\":\(opt($0.p50Ms)),\"p99Ms\":\(opt($0.p99Ms)),\"breaker\":\(JSONText.quote($0.breaker)),"
                + "\"forecast5m\":\(opt($0.forecast5m)),\"forecast15m\":\(opt($0.forecast15m))}"
        }.joined(separator: ",") + "],"
        out += "\"drift\":[" + drift.map { stats in
            let series = stats.series.map {
                "{\"t\":\(JSONText.quote($0.t.formatted(time))),\"mean\":\(opt($0.mean)),\"p10\":\(opt($0.p10))}"
            }.joined(separator: ",")
            let latest = stats.latest
            return "{\"overlay\":\(JSONText.quote(stats.overlay)),\"series\":[\(series)],\"pairs\":\(latest?.pairs ?? 0),"
                + "\"mean\":\(opt(latest?.mean)),\"p10\":\(opt(latest?.p10)),\"flag\":\(latest?.flag ?? false),"
                + "\"threshold\":\(opt(latest?.threshold)),\"lengthRatio\":\(opt(latest?.lengthRatio)),"
                + "\"latencyDiffMs\":\(opt(latest?.latencyDiffMs)),\"errorMismatches\":\(latest?.errorMismatches ?? 0),"
                + "\"recentScores\":[\((latest?.recentScores ?? []).map(JSONText.number).joined(separator: ","))]}"
        }.joined(separator: ",") + "]}\n"
        return out
    }
}
