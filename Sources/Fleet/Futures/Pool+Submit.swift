/// One submitted task, queued on a backend: runs its work and completes its
/// future.
final class SubmittedJob<R: Sendable>: Job {
    enum Work: Sendable {
        case sync(@Sendable (WorkerContext) throws -> R)
        case async(@Sendable () async throws -> R)
    }

    let state: FutureState<R>
    let work: Work
    let timeout: Duration?

    init(state: FutureState<R>, work: Work, timeout: Duration?) {
        self.state = state
        self.work = work
        self.timeout = timeout
    }

    func run(on worker: WorkerContext) {
        guard state.start() else { return }  // cancelled while queued
        guard let timeout else {
            state.complete(execute(on: worker, token: nil))
            return
        }
        let token = CancellationToken()
        let handle = worker.handle
        let timer = Watchdog.shared.schedule(after: timeout) { [state] in
            if state.complete(.failure(FleetError.timedOut(item: nil, after: timeout))) {
                token.cancel()
                handle.abandon()
            }
        }
        let result = execute(on: worker, token: token)
        Watchdog.shared.cancel(timer)
        state.complete(result)
    }

    private func execute(on worker: WorkerContext, token: CancellationToken?) -> Result<R, any Error> {
        switch work {
        case .sync(let body):
            guard let token else { return Result { try body(worker) } }
            return FleetTask.$token.withValue(token) { Result { try body(worker) } }
        case .async(let body):
            return runAsyncHere(token: token, body)
        }
    }

    func discard(_ reason: FleetError) { state.complete(.failure(reason)) }
}

extension Pool {
    /// Queues `work` and returns its future at once. With a `timeout`, the
    /// task fails with `FleetError.timedOut` when it runs longer (on threads
    /// its thread is replaced; see `ThreadBackend`). On the serial backend
    /// the task runs before `submit` returns. Throws
    /// `FleetError.poolShutDown` once the pool is shut down.
    public func submit<R: Sendable>(
        timeout: Duration? = nil, _ work: @escaping @Sendable () throws -> R
    ) throws -> Future<R> {
        try enqueue(.sync { _ in try work() }, timeout: timeout)
    }

    /// `submit` with an `async` task, run on a worker thread.
    public func submit<R: Sendable>(
        timeout: Duration? = nil, _ work: @escaping @Sendable () async throws -> R
    ) throws -> Future<R> {
        try enqueue(.async(work), timeout: timeout)
    }

    /// `submit` whose task gets this worker's value of `state`.
    public func submit<S, R: Sendable>(
        with state: WorkerState<S>, timeout: Duration? = nil,
        _ work: @escaping @Sendable (inout S) throws -> R
    ) throws -> Future<R> {
        try enqueue(.sync { worker in try state.withState(on: worker, work) }, timeout: timeout)
    }

    private func enqueue<R: Sendable>(_ work: SubmittedJob<R>.Work, timeout: Duration?) throws -> Future<R> {
        if let timeout { try requirePositive(timeout, "timeout") }
        let state = FutureState<R>()
        try backend.enqueue(SubmittedJob(state: state, work: work, timeout: timeout))
        return Future(state)
    }
}
