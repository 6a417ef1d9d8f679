// Running an `async` task on a worker thread.
//
// A worker thread is a plain OS thread; Swift would run an async closure on
// its cooperative pool. To keep async tasks on the worker (so that blocking
// calls inside them block only that worker, and the worker count bounds
// their concurrency), the worker starts the closure in a `Task` whose task
// executor is this thread: every job of that task is queued here and run by
// the worker itself, which waits for the next one until the task is done.

/// A task executor driven by the thread that created it.
final class CurrentThreadTaskExecutor: TaskExecutor, @unchecked Sendable {
    // Safe: `jobs` and `finished` are touched only with `mutex` held.
    private let mutex = PthreadMutex()
    private let ready = PthreadCondition()
    private var jobs: [UnownedJob] = []
    private var finished = false

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

    /// Runs queued jobs on this thread until `finish()` has been called and
    /// nothing is left.
    func drive() {
        let me = asUnownedTaskExecutor()
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
            ready.wait(mutex)
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
