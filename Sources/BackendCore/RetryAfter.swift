/// Parses an HTTP `Retry-After` header value (RFC 9110 §10.2.3).
public enum RetryAfter {
    /// Delay requested by `value`: delta-seconds ("120") or an HTTP-date (IMF-fixdate
    /// "Sun, 06 Nov 1994 08:49:37 GMT", obsolete RFC 850 "Sunday, 06-Nov-94 08:49:37 GMT" or asctime
    /// "Sun Nov  6 08:49:37 1994"), relative to `nowEpochSeconds` (Unix time). A date in the past gives zero.
    /// Returns nil for anything unparseable (the caller then uses its own backoff).
    public static func parse(_ value: String, nowEpochSeconds: Double) -> Duration? {
        let trimmed = String(value.trimmingSpaces)
        if !trimmed.isEmpty, trimmed.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) {
            guard trimmed.utf8.count <= 10, let seconds = Int64(trimmed) else { return nil }
            return .seconds(seconds)
        }
        guard let epoch = parseHTTPDate(trimmed) else { return nil }
        let delta = Double(epoch) - nowEpochSeconds
        if delta <= 0 { return .zero }
        return .milliseconds(Int64((delta * 1000).rounded(.up)))
    }

    static let months = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]

    /// Unix time of an HTTP-date, or nil.
    public static func parseHTTPDate(_ s: String) -> Int64? {
        let parts = s.split(whereSeparator: { $0 == " " }).map(String.init)
        // IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
        if parts.count == 6, parts[0].hasSuffix(","), parts[5] == "GMT" {
            guard let day = Int(parts[1]), let month = monthIndex(parts[2]), let year = Int(parts[3]),
                parts[3].count == 4, let time = parseTime(parts[4])
            else { return nil }
            return epoch(year: year, month: month, day: day, time: time)
        }
        // RFC 850: Sunday, 06-Nov-94 08:49:37 GMT
        if parts.count == 4, parts[0].hasSuffix(","), parts[3] == "GMT" {
            let dmy = parts[1].split(separator: "-").map(String.init)
            guard dmy.count == 3, let day = Int(dmy[0]), let month = monthIndex(dmy[1]), let yy = Int(dmy[2]),
                dmy[2].count == 2, let time = parseTime(parts[2])
            else { return nil }
            // RFC 9110: a two-digit year more than 50 years in the future is in the past century.
            let year = yy < 70 ? 2000 + yy : 1900 + yy
            return epoch(year: year, month: month, day: day, time: time)
        }
        // asctime: Sun Nov  6 08:49:37 1994
        if parts.count == 5 {
            guard let month = monthIndex(parts[1]), let day = Int(parts[2]), let time = parseTime(parts[3]),
                let year = Int(parts[4]), parts[4].count == 4
            else { return nil }
            return epoch(year: year, month: month, day: day, time: time)
        }
        return nil
    }

    private static func monthIndex(_ s: String) -> Int? {
        months.firstIndex(of: s.lowercased()).map { $0 + 1 }
    }

    private static func parseTime(_ s: String) -> (Int, Int, Int)? {
        let hms = s.split(separator: ":")
        guard hms.count == 3, hms.allSatisfy({ $0.count == 2 }), let h = Int(hms[0]), let m = Int(hms[1]),
            let sec = Int(hms[2]), (0...23).contains(h), (0...59).contains(m), (0...60).contains(sec)
        else { return nil }
        return (h, m, sec)
    }

    private static func epoch(year: Int, month: Int, day: Int, time: (Int, Int, Int)) -> Int64? {
        guard (1...31).contains(day), (1...12).contains(month), year >= 1970 else { return nil }
        // Howard Hinnant's days_from_civil.
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = (month + 9) % 12
        let doy = (153 * mp + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        let days = era * 146_097 + doe - 719_468
        return Int64(days) * 86_400 + Int64(time.0 * 3600 + time.1 * 60 + time.2)
    }
}
