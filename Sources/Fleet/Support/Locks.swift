#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#else
import Darwin
#endif

/// A pthread mutex.
///
/// Fleet uses pthread primitives rather than `Synchronization.Mutex` because
/// Thread Sanitizer understands them: on Linux it reports false races on
/// `Mutex`, and the test suite runs under TSan.
@usableFromInline
final class PthreadMutex: @unchecked Sendable {
    // Safe: the pointer is allocated once, never reassigned, and only handed
    // to pthread functions, which synchronise access themselves.
    @usableFromInline let raw: UnsafeMutablePointer<pthread_mutex_t>

    @usableFromInline init() {
        raw = .allocate(capacity: 1)
        #if canImport(Glibc)
        // Adaptive: a contended lock spins briefly before sleeping. Fleet's
        // critical sections are a few instructions, so this saves a futex
        // sleep and wake-up most of the time.
        var attr = pthread_mutexattr_t()
        pthread_mutexattr_init(&attr)
        pthread_mutexattr_settype(&attr, Int32(PTHREAD_MUTEX_ADAPTIVE_NP))
        pthread_mutex_init(raw, &attr)
        pthread_mutexattr_destroy(&attr)
        #else
        pthread_mutex_init(raw, nil)
        #endif
    }

    deinit {
        pthread_mutex_destroy(raw)
        raw.deallocate()
    }

    @inlinable func lock() { pthread_mutex_lock(raw) }
    @inlinable func unlock() { pthread_mutex_unlock(raw) }

    @inlinable func withLock<T>(_ body: () throws -> T) rethrows -> T {
        lock()
        defer { unlock() }
        return try body()
    }
}

/// A condition variable paired with a `PthreadMutex`, waiting on the
/// monotonic clock.
@usableFromInline
final class PthreadCondition: @unchecked Sendable {
    // Safe: as for PthreadMutex, the pointer never changes and pthread
    // synchronises every use of it.
    let raw: UnsafeMutablePointer<pthread_cond_t>

    init() {
        raw = .allocate(capacity: 1)
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        pthread_cond_init(raw, &attr)
        pthread_condattr_destroy(&attr)
    }

    deinit {
        pthread_cond_destroy(raw)
        raw.deallocate()
    }

    /// Waits; the caller holds `mutex` and must re-check its predicate.
    func wait(_ mutex: PthreadMutex) { pthread_cond_wait(raw, mutex.raw) }

    /// Waits until `deadline` (monotonic nanoseconds). Returns false on time-out.
    @discardableResult
    func wait(_ mutex: PthreadMutex, untilNanos deadline: UInt64) -> Bool {
        var ts = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
        return pthread_cond_timedwait(raw, mutex.raw, &ts) != ETIMEDOUT
    }

    func signal() { pthread_cond_signal(raw) }
    func broadcast() { pthread_cond_broadcast(raw) }
}

/// A value guarded by a `PthreadMutex`.
@usableFromInline
final class Locked<State>: @unchecked Sendable {
    // Safe: `state` is read and written only inside `withLock`, under `mutex`.
    @usableFromInline let mutex = PthreadMutex()
    @usableFromInline var state: State

    @usableFromInline init(_ state: State) { self.state = state }

    @inlinable func withLock<T>(_ body: (inout State) throws -> T) rethrows -> T {
        mutex.lock()
        defer { mutex.unlock() }
        return try body(&state)
    }
}

/// Monotonic time in nanoseconds.
@usableFromInline
func monotonicNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

extension Duration {
    /// The duration in whole nanoseconds, saturating at `UInt64.max`.
    var nanoseconds: UInt64 {
        let (s, atto) = components
        if s < 0 { return 0 }
        let (whole, overflow) = UInt64(s).multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return .max }
        return whole &+ UInt64(atto / 1_000_000_000)
    }
}

/// A value that arrives once, and a blocking wait for it: how the
/// synchronous `…Blocking` calls wait for a callback.
final class BlockingSlot<T: Sendable>: @unchecked Sendable {
    // Safe: `value` is touched only with `mutex` held.
    private let mutex = PthreadMutex()
    private let arrived = PthreadCondition()
    private var value: T?

    init() {}

    /// Stores the value (the first one wins) and wakes the waiters.
    func put(_ v: T) {
        mutex.lock()
        if value == nil { value = v }
        arrived.broadcast()
        mutex.unlock()
    }

    /// Blocks until the value arrives, or until `deadline` (monotonic
    /// nanoseconds) passes, when it returns nil.
    func take(untilNanos deadline: UInt64? = nil) -> T? {
        mutex.lock()
        defer { mutex.unlock() }
        while value == nil {
            if let deadline {
                if monotonicNanos() >= deadline { return nil }
                arrived.wait(mutex, untilNanos: deadline)
            } else {
                arrived.wait(mutex)
            }
        }
        return value
    }
}
