#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// Running an `async` task on a worker thread.
//
// A worker thread is a plain OS thread; Swift would run an async closure on
// its cooperative pool. To keep async tasks on the worker (so that blocking
// calls inside them block only that worker, and the worker count bounds
// their concurrency), the worker starts the closure in a `Task` whose task
// executor is this thread: every job of that task is queued here and run by
// the worker itself, which waits for the next one until the task is done.
//
// Helping: while the task waits (on a map or a future of the same pool,
// say), the worker runs the pool's queued work instead of sleeping, as
// rayon's `join` does, so a call that waits on its own pool from one of
// its workers cannot deadlock, at any depth. The pool wakes a waiting
// worker for new work as it wakes an idle one (`HelpingPool`).

/// A pool whose waiting workers may run its queued work.
protocol HelpingPool: AnyObject, Sendable {
    /// A job to run, or nil after registering `helper` to be poked when
    /// one is queued.
    func takeJob(orWake helper: CurrentThreadTaskExecutor) -> (any Job)?
    /// `helper` no longer waits.
    func stopWaking(_ helper: CurrentThreadTaskExecutor)
}

/// The pool worker the current thread is, if it is one.
final class PoolWorkerThread {
    let pool: any HelpingPool
    let context: WorkerContext

    init(pool: any HelpingPool, context: WorkerContext) {
        self.pool = pool
        self.context = context
    }

    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()

    /// The worker running on this thread (set by the worker for its life).
    static var current: PoolWorkerThread? {
        pthread_getspecific(key).map { Unmanaged<PoolWorkerThread>.fromOpaque($0).takeUnretainedValue() }
    }

    /// Marks this thread as `worker` while `body` runs.
    static func run(as worker: PoolWorkerThread, _ body: () -> Void) {
        pthread_setspecific(key, Unmanaged.passUnretained(worker).toOpaque())
        body()
        pthread_setspecific(key, nil)
    }
}

/// A task executor driven by the thread that created it.
final class CurrentThreadTaskExecutor: TaskExecutor, @unchecked Sendable {
    // Safe: `jobs`, `finished` and `poked` are touched only with `mutex` held.
    private let mutex = PthreadMutex()
    private let ready = PthreadCondition()
    private var jobs: [UnownedJob] = []
    private var finished = false
    private var poked = false

    func enqueue(_ job: consuming ExecutorJob) {
        let unowned = UnownedJob(job)
        mutex.lock()
        jobs.append(unowned)
        ready.signal()
        mutex.unlock()
    }

    func finish() {
        mutex.lock()
        finished = true
        ready.signal()
        mutex.unlock()
    }

    /// Wakes `drive` to look at its pool's queue.
    func poke() {
        mutex.lock()
        poked = true
        ready.signal()
        mutex.unlock()
    }

    /// Runs queued jobs on this thread until `finish()` has been called and
    /// nothing is left; meanwhile, on a pool worker, runs the pool's queued
    /// work rather than sleep.
    func drive() {
        let me = asUnownedTaskExecutor()
        let worker = PoolWorkerThread.current
        mutex.lock()
        while true {
            if !jobs.isEmpty {
                let batch = jobs
                jobs.removeAll(keepingCapacity: true)
                mutex.unlock()
                for job in batch { job.runSynchronously(on: me) }
                mutex.lock()
                continue
            }
            if finished { break }
            guard let worker else {
                ready.wait(mutex)
                continue
            }
            poked = false
            mutex.unlock()
            if let job = worker.pool.takeJob(orWake: self) {
                job.run(on: worker.context)
                mutex.lock()
                continue
            }
            mutex.lock()
            while jobs.isEmpty && !finished && !poked { ready.wait(mutex) }
            mutex.unlock()
            worker.pool.stopWaking(self)
            mutex.lock()
        }
        mutex.unlock()
    }
}

/// Runs `body` to completion on the calling thread and returns its outcome.
/// The task sees `token` as `FleetTask.token`, and is cancelled (in Swift's
/// sense too) when the token is.
@usableFromInline
func runAsyncHere<R: Sendable>(
    token: CancellationToken?,
    _ body: @escaping @Sendable () async throws -> R
) -> Result<R, any Error> {
    let executor = CurrentThreadTaskExecutor()
    let outcome = Locked<Result<R, any Error>?>(nil)
    let task = Task(executorPreference: executor) {
        let r: Result<R, any Error>
        do {
            r = .success(try await FleetTask.$token.withValue(token) { try await body() })
        } catch {
            r = .failure(error)
        }
        outcome.withLock { $0 = r }
        executor.finish()
    }
    // Cancel the Swift task too when the token (or an ancestor) is.
    var keys: [(CancellationToken, Int)] = []
    var t = token
    while let current = t {
        keys.append((current, current.onCancel { task.cancel() }))
        t = current.parentToken
    }
    executor.drive()
    for (t, key) in keys { t.removeHandler(key) }
    return outcome.withLock { $0 }!
}
