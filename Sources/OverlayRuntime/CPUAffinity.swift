import Foundation
import NIOCore

/// CPUs this process may run on. `System.coreCount` counts every core even under `taskset` or a
/// cgroup cpuset; sizing event loops by it oversubscribes a pinned sidecar.
package enum CPUAffinity {
    package static var usableCores: Int {
        #if os(Linux)
        // `Cpus_allowed: ff,ffffffff` is the scheduler's affinity mask, in hex words.
        if let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Cpus_allowed:") })
        {
            let mask = line.dropFirst("Cpus_allowed:".count).filter { $0.isHexDigit }
            let count = mask.reduce(0) { $0 + (Int(String($1), radix: 16) ?? 0).nonzeroBitCount }
            if count > 0 { return min(count, System.coreCount) }
        }
        #endif
        return System.coreCount
    }
}
