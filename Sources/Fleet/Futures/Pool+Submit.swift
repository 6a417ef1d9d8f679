/// One submitted task: its future's state and the job that runs it, in one
/// allocation. `runner` is a specialised function chosen by the
/// `@inlinable` `submit`, so running the task involves no generic lookups.
@usableFromInline
final class SubmittedTask<R: Sendable>: FutureState<R>, Job, @unchecked Sendable {
    // Safe: its own stored properties are immutable; FutureState guards its state with a lock.
    @usableFromInline let work: SubmittedWork<R>
    @usableFromInline let timeout: Duration?
    @usableFromInline let runner: @Sendable (SubmittedTask<R>, WorkerContext) -> Void

    @inlinable
    init(
        work: SubmittedWork<R>, timeout: Duration?,
        runner: @escaping @Sendable (SubmittedTask<R>, WorkerContext) -> Void
    ) {
        self.work = work
        self.timeout = timeout
        self.runner = runner
    }

    @usableFromInline func run(on worker: WorkerContext) { runner(self, worker) }
    @usableFromInline func discard(_ reason: FleetError) { complete(.failure(reason)) }
}

/// What a submitted task runs.
@usableFromInline
enum SubmittedWork<R: Sendable>: Sendable {
    case plain(@Sendable () throws -> R)
    case withWorker(@Sendable (WorkerContext) throws -> R)
    case async(@Sendable () async throws -> R)
}

/// Runs a submitted task's work on `worker` and completes its future,
/// enforcing `timeout` if there is one.
@inlinable
func runSubmitted<R: Sendable>(_ task: SubmittedTask<R>, on worker: WorkerContext) {
    guard task.start() else { return }  // cancelled while queued
    guard let timeout = task.timeout else {
        switch task.work {
        case .plain(let body): task.complete(Result { try body() })
        case .withWorker(let body): task.complete(Result { try body(worker) })
        case .async(let body): task.complete(runAsyncHere(token: nil, body))
        }
        return
    }
    runSubmittedWithTimeout(task, task.work, timeout: timeout, on: worker)
}

/// The slow path of `runSubmitted`: the time-out fails the future and has
/// the worker replaced (see `withTimeLimit`).
@usableFromInline
func runSubmittedWithTimeout<R: Sendable>(
    _ state: FutureState<R>, _ work: SubmittedWork<R>, timeout: Duration, on worker: WorkerContext
) {
    let result = withTimeLimit(
        timeout, parent: nil, worker: worker,
        expire: {
            state.complete(.failure(FleetError.timedOut(item: nil, after: timeout)))
        }
    ) { token -> Result<R, any Error> in
        switch work {
        case .plain(let body): return FleetTask.$token.withValue(token) { Result { try body() } }
        case .withWorker(let body): return FleetTask.$token.withValue(token) { Result { try body(worker) } }
        case .async(let body): return runAsyncHere(token: token, body)
        }
    }
    state.complete(result)  // ignored if the time-out came first
}

extension Pool {
    /// Queues `work` and returns its future at once. With a `timeout`, the
    /// task fails with `FleetError.timedOut` when it runs longer (on threads
    /// its thread is replaced; see `ThreadBackend`). On the serial backend
    /// the task runs before `submit` returns. Throws
    /// `FleetError.poolShutDown` once the pool is shut down.
    @inlinable
    public func submit<R: Sendable>(
        timeout: Duration? = nil, _ work: @escaping @Sendable () throws -> R
    ) throws -> Future<R> {
        try enqueue(.plain(work), timeout: timeout)
    }

    /// `submit` with an `async` task, run on a worker thread.
    @inlinable
    public func submit<R: Sendable>(
        timeout: Duration? = nil, _ work: @escaping @Sendable () async throws -> R
    ) throws -> Future<R> {
        try enqueue(.async(work), timeout: timeout)
    }

    /// `submit` whose task gets this worker's value of `state`.
    @inlinable
    public func submit<S, R: Sendable>(
        with state: WorkerState<S>, timeout: Duration? = nil,
        _ work: @escaping @Sendable (inout S) throws -> R
    ) throws -> Future<R> {
        try enqueue(.withWorker { worker in try state.withState(on: worker, work) }, timeout: timeout)
    }

    @inlinable
    func enqueue<R: Sendable>(_ work: SubmittedWork<R>, timeout: Duration?) throws -> Future<R> {
        if let timeout { try requirePositive(timeout, "timeout") }
        let task = SubmittedTask(work: work, timeout: timeout, runner: { runSubmitted($0, on: $1) })
        try backend.enqueue(task)
        return Future(task)
    }
}
