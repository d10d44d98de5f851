import BackendCore
import FuzzSupport

// Input: a mode byte, then either a date's fields or free text.
//
// Oracle:
// - free text never traps, and a delay is never negative;
// - delta-seconds: an all-digit value of at most 10 digits is exactly that many seconds (after
//   spaces and tabs around it are trimmed); longer is nil;
// - HTTP-date: a date built from the fields and written in each of the three formats of RFC 9110
//   (IMF-fixdate, RFC 850, asctime) parses to the Unix time an independent calendar computation
//   gives, and the three agree; a delay is `date - now` rounded up to the millisecond, or zero.

let monthNames = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
let dayNames = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
let longDayNames = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let mode = input.byte() % 3
    let now = Double(input.int(0...65535)) * 65536 + Double(input.int(0...65535))
    switch mode {
    case 0:
        let text = String(decoding: input.rest(), as: UTF8.self)
        if let delay = RetryAfter.parse(text, nowEpochSeconds: now) {
            check(delay >= .zero, "negative delay \(delay) for \(text.debugDescription)")
        }
        _ = RetryAfter.parseHTTPDate(text)
    case 1:
        let digits = input.rest().prefix(14).map { UInt8(ascii: "0") + $0 % 10 }
        let pad = input.bool() ? " \t" : ""
        let text = pad + String(decoding: digits, as: UTF8.self) + pad
        let parsed = RetryAfter.parse(text, nowEpochSeconds: now)
        if digits.isEmpty {
            check(parsed == nil || parsed == .zero, "empty value parsed as \(String(describing: parsed))")
        } else if digits.count <= 10 {
            check(parsed == .seconds(Int64(String(decoding: digits, as: UTF8.self))!), "\(text) parsed as \(String(describing: parsed))")
        } else {
            check(parsed == nil, "\(digits.count) digits accepted")
        }
    default:
        let year = input.int(1970...2069)
        let month = input.int(1...12)
        let day = input.int(1...daysIn(month, year))
        let h = input.int(0...23), m = input.int(0...59), s = input.int(0...59)
        let expected = reference(year, month, day, h, m, s)
        let weekday = Int(((expected / 86400) % 7 + 3) % 7)  // 1970-01-01 was a Thursday
        let wd = dayNames[weekday]
        let mon = monthNames[month - 1]
        let time = "\(two(h)):\(two(m)):\(two(s))"
        let imf = "\(wd), \(two(day)) \(mon) \(year) \(time) GMT"
        let rfc850 = "\(longDayNames[weekday]), \(two(day))-\(mon)-\(two(year % 100)) \(time) GMT"
        let asctime = "\(wd) \(mon) \(day < 10 ? " " : "")\(day) \(time) \(year)"
        check(RetryAfter.parseHTTPDate(imf) == expected, "\(imf) -> \(String(describing: RetryAfter.parseHTTPDate(imf))), want \(expected)")
        check(RetryAfter.parseHTTPDate(rfc850) == expected, "\(rfc850) -> \(String(describing: RetryAfter.parseHTTPDate(rfc850))), want \(expected)")
        check(RetryAfter.parseHTTPDate(asctime) == expected, "\(asctime) -> \(String(describing: RetryAfter.parseHTTPDate(asctime))), want \(expected)")
        let delay = RetryAfter.parse(imf, nowEpochSeconds: now)
        let delta = Double(expected) - now
        let want: Duration = delta <= 0 ? .zero : .milliseconds(Int64((delta * 1000).rounded(.up)))
        check(delay == want, "delay \(String(describing: delay)) for \(imf) at \(now), want \(want)")
    }
    return 0
}

func two(_ n: Int) -> String { n < 10 ? "0\(n)" : "\(n)" }

func isLeap(_ y: Int) -> Bool { (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 }

func daysIn(_ month: Int, _ year: Int) -> Int {
    [31, isLeap(year) ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]
}

/// Unix time by counting days, independently of the parser's civil-from-days arithmetic.
func reference(_ year: Int, _ month: Int, _ day: Int, _ h: Int, _ m: Int, _ s: Int) -> Int64 {
    var days = 0
    for y in 1970..<year { days += isLeap(y) ? 366 : 365 }
    for mo in 1..<month { days += daysIn(mo, year) }
    days += day - 1
    return Int64(days) * 86400 + Int64(h * 3600 + m * 60 + s)
}
