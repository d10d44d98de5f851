/// Decides which occurrences of a repeating log line are written, so that an event that repeats
/// at the request rate (a model that is down, an app that refuses connections, an Envoy that
/// sends a malformed message on every stream) cannot flood the log.
///
/// Per key (a log message), at most `burst` lines are written in each `interval`, counted from
/// the first line of the interval; the rest are suppressed and counted. The first line written
/// in the next interval reports how many were suppressed before it. Memory is bounded by
/// `maxKeys`: keys are our own messages (a fixed set), and past the bound a line is written
/// untracked rather than lost.
public struct LogThrottle<Instant: InstantProtocol>: Sendable where Instant.Duration == Duration {
    public enum Verdict: Equatable, Sendable {
        /// Write the line; `suppressedBefore` lines with the same key were left out since the
        /// last one written.
        case write(suppressedBefore: Int)
        case suppress
    }

    private struct Window: Sendable {
        var start: Instant
        var written: Int
        var suppressed: Int
    }

    public let burst: Int
    public let interval: Duration
    public let maxKeys: Int
    private var windows: [String: Window] = [:]

    /// `burst` and `maxKeys` are at least 1.
    public init(burst: Int = 5, interval: Duration = .seconds(10), maxKeys: Int = 256) {
        self.burst = max(1, burst)
        self.interval = interval
        self.maxKeys = max(1, maxKeys)
    }

    /// The verdict for one occurrence of `key` at `now`.
    public mutating func admit(_ key: String, at now: Instant) -> Verdict {
        guard var window = windows[key] else {
            if windows.count >= maxKeys {
                windows = windows.filter { $0.value.start.duration(to: now) < interval }
                if windows.count >= maxKeys { return .write(suppressedBefore: 0) }
            }
            windows[key] = Window(start: now, written: 1, suppressed: 0)
            return .write(suppressedBefore: 0)
        }
        if window.start.duration(to: now) >= interval {
            windows[key] = Window(start: now, written: 1, suppressed: 0)
            return .write(suppressedBefore: window.suppressed)
        }
        if window.written < burst {
            window.written += 1
            windows[key] = window
            return .write(suppressedBefore: 0)
        }
        window.suppressed += 1
        windows[key] = window
        return .suppress
    }

    /// Keys tracked now (for tests of the bound).
    public var trackedKeys: Int { windows.count }
}
