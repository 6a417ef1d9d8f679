import CFleetShims
import HeapModule

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// One thread per process that fires deadline actions: per-task time-outs
/// and `Future.value(timeout:)`. Started on first use; costs nothing until
/// then. Actions run on the watchdog thread and must be short.
final class Watchdog: Sendable {
    static let shared = Watchdog()

    private struct Entry: Comparable {
        let deadline: UInt64
        let id: UInt64
        static func < (a: Entry, b: Entry) -> Bool { (a.deadline, a.id) < (b.deadline, b.id) }
    }

    private struct State {
        var heap = Heap<Entry>()
        var actions: [UInt64: @Sendable () -> Void] = [:]
        var nextID: UInt64 = 1
        var started = false
    }

    private let mutex = PthreadMutex()
    private let wake = PthreadCondition()
    // Guarded by `mutex`.
    private nonisolated(unsafe) var state = State()

    /// Schedules `action` after `delay`; returns an id for `cancel`.
    func schedule(after delay: Duration, _ action: @escaping @Sendable () -> Void) -> UInt64 {
        let deadline = monotonicNanos() &+ min(delay.nanoseconds, UInt64.max / 2)
        mutex.lock()
        let id = state.nextID
        state.nextID += 1
        let wasFirst = state.heap.min.map { deadline < $0.deadline } ?? true
        state.heap.insert(Entry(deadline: deadline, id: id))
        state.actions[id] = action
        let start = !state.started
        state.started = true
        if wasFirst { wake.signal() }
        mutex.unlock()
        if start { startThread() }
        return id
    }

    /// Cancels a scheduled action. Returns true if it had not fired yet.
    @discardableResult
    func cancel(_ id: UInt64) -> Bool {
        mutex.withLock { state.actions.removeValue(forKey: id) != nil }
    }

    private func startThread() {
        spawnThread(name: "fleet-watchdog") { [self] in run() }
    }

    private func run() {
        mutex.lock()
        while true {
            guard let first = state.heap.min else {
                wake.wait(mutex)
                continue
            }
            let now = monotonicNanos()
            if first.deadline > now {
                wake.wait(mutex, untilNanos: first.deadline)
                continue
            }
            state.heap.removeMin()
            guard let action = state.actions.removeValue(forKey: first.id) else { continue }
            mutex.unlock()
            action()
            mutex.lock()
        }
    }
}

/// Starts a detached OS thread with a name (at most 15 bytes show in `ps`).
func spawnThread(name: String, _ body: @escaping @Sendable () -> Void) {
    final class Box: Sendable {
        let name: String
        let body: @Sendable () -> Void
        init(_ name: String, _ body: @escaping @Sendable () -> Void) {
            self.name = name
            self.body = body
        }
    }
    let box = Unmanaged.passRetained(Box(name, body)).toOpaque()
    var attr = pthread_attr_t()
    pthread_attr_init(&attr)
    pthread_attr_setdetachstate(&attr, Int32(PTHREAD_CREATE_DETACHED))
    var tid = pthread_t()
    let rc = pthread_create(
        &tid, &attr,
        { raw in
            let box = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
            _ = cfleet_set_thread_name(box.name)
            box.body()
            return nil
        }, box)
    pthread_attr_destroy(&attr)
    precondition(rc == 0, "pthread_create failed with \(rc)")
}
