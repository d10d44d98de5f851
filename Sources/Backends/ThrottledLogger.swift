import Logging
import OverlayDecisions
import Locking

/// A logger for lines that can repeat at the request rate (a model that is down, saturated or
/// misconfigured; an upstream app that refuses connections; a malformed message on every ext_proc
/// stream). Each message is written at most `burst` times per `interval` (``LogThrottle``); the
/// first line written after a suppression carries `suppressed=N` (how many lines with this
/// message were left out since the previous one written). The metrics still count every
/// event.
public final class ThrottledLogger: Sendable {
    public let logger: Logger
    private let throttle: Locked<LogThrottle<ContinuousClock.Instant>>
    private let now: @Sendable () -> ContinuousClock.Instant

    /// - Parameter now: the time source (tests move it by hand).
    public init(
        _ logger: Logger, burst: Int = 5, interval: Duration = .seconds(10),
        now: @escaping @Sendable () -> ContinuousClock.Instant = { ContinuousClock.now }
    ) {
        self.logger = logger
        self.now = now
        throttle = Locked(LogThrottle(burst: burst, interval: interval))
    }

    /// Logs `message` at `level` unless this message (with `key`, when given: a model's name, an
    /// error's kind) has used up its burst in the interval. Pass a fixed text as the message and
    /// put what varies in `metadata`.
    public func log(
        level: Logger.Level, _ message: String, key: String? = nil,
        metadata: @autoclosure () -> Logger.Metadata = [:]
    ) {
        guard logger.logLevel <= level else { return }
        let throttleKey = key.map { message + "|" + $0 } ?? message
        let instant = now()
        let verdict = throttle.withLock { $0.admit(throttleKey, at: instant) }
        guard case .write(let suppressed) = verdict else { return }
        var fields = metadata()
        if suppressed > 0 { fields["suppressed"] = "\(suppressed)" }
        logger.log(level: level, "\(message)", metadata: fields)
    }
}
