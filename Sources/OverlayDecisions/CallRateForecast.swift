/// A forecast of a model's call rate from per-bucket call counts (one bucket = one minute in
/// overlayd), for predictive scaling of model backends. Pure: counts in, numbers out.
///
/// - Before one season (a day) of buckets exists: Holt's linear trend (level + trend).
/// - From then on: additive Holt–Winters (level + trend + one seasonal term per bucket of the
///   day), initialised from the first stored day: its mean as the level, no trend, and each
///   bucket's (locally averaged) difference from the mean as its seasonal term.
/// - The smoothing constants are fitted by a grid search minimising the one-step-ahead squared
///   error over the stored history (up to two seasons), when the model switches and then every
///   `refitEvery` buckets; between fits each count updates the state in O(1).
/// - The fit's error per horizon: the root mean square of the last `errorWindow` forecasts of that
///   horizon whose bucket has since been observed (same unit as the counts).
public struct CallRateForecaster: Sendable {
    public struct Configuration: Sendable, Hashable {
        /// Buckets per season (1440 one-minute buckets: a day).
        public var seasonLength: Int
        /// Horizons, in buckets, whose forecasts are tracked and scored.
        public var horizons: [Int]
        /// Realised forecasts per horizon in the error.
        public var errorWindow: Int
        /// Buckets between two fits of the smoothing constants.
        public var refitEvery: Int

        public init(seasonLength: Int = 1440, horizons: [Int] = [5, 15], errorWindow: Int = 60, refitEvery: Int = 60) {
            precondition(seasonLength >= 2 && !horizons.isEmpty && horizons.allSatisfy { $0 >= 1 })
            precondition(errorWindow >= 1 && refitEvery >= 1)
            self.seasonLength = seasonLength
            self.horizons = horizons
            self.errorWindow = errorWindow
            self.refitEvery = refitEvery
        }
    }

    /// Smoothing constants: level (alpha), trend (beta), season (gamma; unused by Holt).
    public struct Parameters: Sendable, Hashable {
        public var alpha: Double
        public var beta: Double
        public var gamma: Double
    }

    public enum Method: Sendable, Hashable {
        case none
        case holt
        case holtWinters
    }

    /// Level, trend and (Holt–Winters) the seasonal terms; `position` is the next bucket's index
    /// into `season`.
    struct State: Sendable {
        var level: Double
        var trend: Double
        var season: [Double]
        var position: Int
        var observed: Int

        func predict(_ h: Int) -> Double {
            var value = level + Double(h) * trend
            if !season.isEmpty { value += season[(position + h - 1) % season.count] }
            return value
        }

        mutating func update(_ y: Double, _ p: Parameters) {
            if observed == 0 {
                level = y
                trend = 0
            } else if season.isEmpty {
                let previous = level
                level = p.alpha * y + (1 - p.alpha) * (level + trend)
                trend = p.beta * (level - previous) + (1 - p.beta) * trend
            } else {
                let previous = level
                let seasonal = season[position]
                level = p.alpha * (y - seasonal) + (1 - p.alpha) * (level + trend)
                trend = p.beta * (level - previous) + (1 - p.beta) * trend
                season[position] = p.gamma * (y - level) + (1 - p.gamma) * seasonal
                position = (position + 1) % season.count
            }
            observed += 1
        }
    }

    public let configuration: Configuration
    public private(set) var parameters = Parameters(alpha: 0.5, beta: 0.1, gamma: 0.2)
    public private(set) var method = Method.none
    /// Counts observed in all.
    public private(set) var observed = 0
    private var state = State(level: 0, trend: 0, season: [], position: 0, observed: 0)
    /// The last counts, at most two seasons.
    private var history: [Double] = []
    /// Per horizon: forecasts made for the coming buckets, indexed by bucket number modulo the horizon.
    private var pending: [[Double?]]
    /// Per horizon: the last squared errors, and their sum.
    private var squaredErrors: [[Double]]
    private var nextError: [Int]

    public init(configuration: Configuration = Configuration()) {
        self.configuration = configuration
        pending = configuration.horizons.map { [Double?](repeating: nil, count: $0) }
        squaredErrors = configuration.horizons.map { _ in [] }
        nextError = configuration.horizons.map { _ in 0 }
    }

    /// Adds the count of the bucket that just ended.
    public mutating func observe(_ count: Double) {
        let t = observed
        for (i, h) in configuration.horizons.enumerated() {
            if let predicted = pending[i][t % h] {
                let error = count - predicted
                if squaredErrors[i].count < configuration.errorWindow {
                    squaredErrors[i].append(error * error)
                } else {
                    squaredErrors[i][nextError[i]] = error * error
                    nextError[i] = (nextError[i] + 1) % configuration.errorWindow
                }
            }
        }
        history.append(count)
        if history.count > 2 * configuration.seasonLength { history.removeFirst(history.count - 2 * configuration.seasonLength) }
        observed += 1
        let switching = method != .holtWinters && history.count >= configuration.seasonLength
        if switching || (observed % configuration.refitEvery == 0 && history.count >= 3) {
            refit()
        } else {
            state.update(count, parameters)
            if method == .none { method = .holt }
        }
        for (i, h) in configuration.horizons.enumerated() {
            pending[i][t % h] = forecast(h)
        }
    }

    /// The count expected `h` buckets after the last observed one (never negative); nil before
    /// the first count.
    public func forecast(_ h: Int) -> Double? {
        guard observed > 0 else { return nil }
        return max(0, state.predict(h))
    }

    /// Root mean square error of the last realised forecasts of horizon `h` (one of the
    /// configured horizons); nil until one was realised.
    public func error(_ h: Int) -> Double? {
        guard let i = configuration.horizons.firstIndex(of: h), !squaredErrors[i].isEmpty else { return nil }
        return (squaredErrors[i].reduce(0, +) / Double(squaredErrors[i].count)).squareRoot()
    }

    // MARK: - Fitting

    static let alphas = [0.1, 0.3, 0.5, 0.8]
    static let betas = [0.01, 0.05, 0.2]
    static let gammas = [0.05, 0.2, 0.5]

    /// Grid search over the smoothing constants by replaying the stored history; the state becomes
    /// the best replay's.
    private mutating func refit() {
        let seasonal = history.count >= configuration.seasonLength
        var best: (sse: Double, parameters: Parameters, state: State)?
        for alpha in Self.alphas {
            for beta in Self.betas {
                for gamma in seasonal ? Self.gammas : [parameters.gamma] {
                    let candidate = Parameters(alpha: alpha, beta: beta, gamma: gamma)
                    let (sse, state) = Self.replay(history, candidate, seasonLength: seasonal ? configuration.seasonLength : nil)
                    if let current = best, current.sse <= sse { continue }
                    best = (sse, candidate, state)
                }
            }
        }
        guard let best else { return }
        parameters = best.parameters
        state = best.state
        method = seasonal ? .holtWinters : .holt
    }

    /// The state after `series` and the one-step-ahead squared error summed over it.
    static func replay(_ series: [Double], _ p: Parameters, seasonLength: Int?) -> (sse: Double, state: State) {
        var state = State(level: 0, trend: 0, season: [], position: 0, observed: 0)
        var start = 0
        if let m = seasonLength {
            state = initialSeasonalState(Array(series.prefix(m)))
            start = m
        }
        var sse = 0.0
        for t in start..<series.count {
            if state.observed > 0 {
                let error = series[t] - state.predict(1)
                sse += error * error
            }
            state.update(series[t], p)
        }
        return (sse, state)
    }

    /// Holt–Winters' starting point from one season: its mean as the level, no trend (a line
    /// fitted through one day of a daily wave has a slope that is the wave's, not a trend), and
    /// as each bucket's seasonal term its difference from the mean, averaged over the buckets
    /// within `m / 192` of it (±7 minutes of a day: one day's noise would otherwise be
    /// repeated in every forecast of the next).
    static func initialSeasonalState(_ first: [Double]) -> State {
        let m = first.count
        let mean = first.reduce(0, +) / Double(m)
        let k = m / 192
        var season = [Double](repeating: 0, count: m)
        for j in 0..<m {
            var sum = 0.0
            for d in -k...k { sum += first[(j + d + m) % m] }
            season[j] = sum / Double(2 * k + 1) - mean
        }
        return State(level: mean, trend: 0, season: season, position: 0, observed: m)
    }
}
