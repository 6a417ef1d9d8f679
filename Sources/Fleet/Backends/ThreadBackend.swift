import DequeModule
import Foundation

// Thread backend: data flow
//
//   submitters ── enqueue(job) ──▶ [ FIFO queue ] ──▶ worker thread 0..N-1 ──▶ job.run
//                                   (mutex + condition)        │
//                                                              └─ abandoned? exit
//
// N dedicated OS threads (not Swift's cooperative pool), so a task may block
// on I/O or sleep without starving anything else. One mutex guards the
// queue and the pool's counters; idle workers sleep on a condition and are
// woken one per queued job (at most once each while a wake is in flight).
//
// Time-outs: a thread cannot be killed safely. When a task overruns its
// time-out the operation fails that item at once and calls `abandon()` on
// the worker: the pool starts a replacement thread so it keeps its full
// width, and the stuck thread exits as soon as its task returns, its result
// discarded. A task that never returns keeps its thread until the process
// ends; the task's cancellation token is set, so a task that polls
// `FleetTask.isCancelled` can stop early.
//
// Shutdown: `drain` lets workers empty the queue, `cancelPending` discards
// what is queued; either way each thread exits when the queue is empty.
// Threads are detached; `onTermination` fires when the last one has exited.

/// A pool of dedicated OS threads.
final class ThreadBackend: ExecutionBackend, HelpingPool, @unchecked Sendable {
    // Safe: every `var` below is read and written only with `mutex` held.
    let kind = BackendKind.threads
    let workerCount: Int
    let runsInline = false
    private let name: String

    private let mutex = PthreadMutex()
    private let workAvailable = PthreadCondition()
    private var queue = Deque<any Job>()
    private var idle = 0
    /// Signals sent to idle workers that have not woken yet: a burst of
    /// submissions wakes each sleeping worker once, not once per job.
    private var wakesInFlight = 0
    /// Threads that count toward the pool's end (not those abandoned).
    private var live = 0
    private var nextIndex = 0
    private var lifecycle = Lifecycle.running(waiting: [])
    /// Workers waiting inside a task for something (see `HelpingPool`), to
    /// be poked when work is queued and no worker is idle.
    private var helpers: [CurrentThreadTaskExecutor] = []

    private typealias Callback = @Sendable () -> Void

    /// Where the pool is, with the callbacks waiting for its end.
    private enum Lifecycle {
        /// Takes work.
        case running(waiting: [Callback])
        /// Takes no new work; threads exit as the queue empties.
        case shuttingDown(waiting: [Callback])
        /// Every thread has exited.
        case terminated

        var accepting: Bool {
            if case .running = self { return true }
            return false
        }
    }

    init(workers: Int, name: String) {
        workerCount = workers
        self.name = name
        mutex.lock()
        for _ in 0..<workers { startWorkerLocked() }
        mutex.unlock()
    }

    func enqueue(_ job: any Job) throws {
        mutex.lock()
        guard lifecycle.accepting else {
            mutex.unlock()
            throw FleetError.poolShutDown
        }
        queue.append(job)
        var helper: CurrentThreadTaskExecutor?
        if idle > wakesInFlight {
            wakesInFlight += 1
            workAvailable.signal()
        } else if !helpers.isEmpty {
            helper = helpers.removeFirst()
        }
        mutex.unlock()
        helper?.poke()
    }

    func takeJob(orWake helper: CurrentThreadTaskExecutor) -> (any Job)? {
        mutex.lock()
        defer { mutex.unlock() }
        if let job = queue.popFirst() { return job }
        if !helpers.contains(where: { $0 === helper }) { helpers.append(helper) }
        return nil
    }

    func stopWaking(_ helper: CurrentThreadTaskExecutor) {
        mutex.lock()
        helpers.removeAll { $0 === helper }
        mutex.unlock()
    }

    func beginShutdown(_ policy: ShutdownPolicy) {
        mutex.lock()
        if case .running(let waiting) = lifecycle { lifecycle = .shuttingDown(waiting: waiting) }
        var dropped = Deque<any Job>()
        if policy.dropsQueued { swap(&dropped, &queue) }
        workAvailable.broadcast()
        let done = endIfLastLocked()
        mutex.unlock()
        for job in dropped { job.discard(.cancelled) }
        for callback in done { callback() }
    }

    func onTermination(_ callback: @escaping @Sendable () -> Void) {
        mutex.lock()
        switch lifecycle {
        case .running(var waiting):
            waiting.append(callback)
            lifecycle = .running(waiting: waiting)
        case .shuttingDown(var waiting):
            waiting.append(callback)
            lifecycle = .shuttingDown(waiting: waiting)
        case .terminated:
            mutex.unlock()
            callback()
            return
        }
        mutex.unlock()
    }

    /// Ends the pool once it is shutting down and no thread is left;
    /// returns the callbacks to run.
    private func endIfLastLocked() -> [Callback] {
        guard case .shuttingDown(let waiting) = lifecycle, live == 0 else { return [] }
        lifecycle = .terminated
        return waiting
    }

    private func startWorkerLocked() {
        let index = nextIndex
        nextIndex += 1
        live += 1
        let handle = WorkerHandle { [weak self] in self?.replace() }
        spawnThread(name: "\(name)-\(index)") { [self] in
            let context = WorkerContext(index: index, handle: handle)
            PoolWorkerThread.run(as: PoolWorkerThread(pool: self, context: context)) { workerLoop(context) }
        }
    }

    /// A worker was abandoned to a stuck task: it no longer counts as live
    /// (shutdown does not wait for it), and a replacement keeps the width.
    private func replace() {
        mutex.lock()
        live -= 1
        if lifecycle.accepting { startWorkerLocked() }
        let done = endIfLastLocked()
        mutex.unlock()
        for callback in done { callback() }
    }

    private func workerLoop(_ ctx: WorkerContext) {
        mutex.lock()
        while true {
            if let job = queue.popFirst() {
                mutex.unlock()
                job.run(on: ctx)
                if ctx.handle.isAbandoned { return }  // `replace()` took it off the books
                mutex.lock()
                continue
            }
            if !lifecycle.accepting { break }
            idle += 1
            workAvailable.wait(mutex)
            idle -= 1
            if wakesInFlight > 0 { wakesInFlight -= 1 }
        }
        live -= 1
        let done = endIfLastLocked()
        mutex.unlock()
        for callback in done { callback() }
    }
}
