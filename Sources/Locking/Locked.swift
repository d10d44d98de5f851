#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A value behind a lock: `Synchronization.Mutex`'s shape (`withLock { state in … }`) on a
/// `pthread_mutex_t`.
///
/// Why not `Mutex` itself: on Linux its lock and unlock run inside the standard library, which is not
/// built for ThreadSanitizer, so TSan sees no synchronization and reports every value it guards as a
/// data race (`scripts/sanitize tsan`, issue 19). The C library's mutex is one TSan intercepts, so a
/// report under TSan is a real race again. Uncontended, both cost about the same (one atomic
/// exchange each way, a futex only under contention).
public final class Locked<Value>: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var value: Value

    public init(_ initialValue: sending Value) {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        let status = pthread_mutex_init(mutex, nil)
        precondition(status == 0, "pthread_mutex_init failed: \(status)")
        value = initialValue
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deinitialize(count: 1)
        mutex.deallocate()
    }

    /// Runs `body` with the value, the lock held.
    public func withLock<Result, E: Error>(_ body: (inout sending Value) throws(E) -> sending Result) throws(E) -> sending Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
