import Synchronization

/// One batch of a map, queued on a backend.
/// A job that can also run in the caller's task without blocking it (an
/// async transform on the serial backend).
@usableFromInline
protocol InlineAsyncJob: Job {
    var isAsync: Bool { get }
    func runInline() async
}

@usableFromInline
final class BatchJob<T: Sendable, R: Sendable>: InlineAsyncJob, RemoteConvertible {
    @usableFromInline let core: MapCore<R>
    @usableFromInline let start: Int
    @usableFromInline let items: [T]
    @usableFromInline let runner: BatchRunner<T, R>
    @usableFromInline let timeout: Duration?
    /// Set by whichever reports the batch first: the batch itself or its
    /// time-out. Only used when there is a time-out.
    private let claimed = Atomic<Bool>(false)

    @usableFromInline
    init(core: MapCore<R>, start: Int, items: [T], runner: BatchRunner<T, R>, timeout: Duration?) {
        self.core = core
        self.start = start
        self.items = items
        self.runner = runner
        self.timeout = timeout
    }

    @usableFromInline var isAsync: Bool { runner.isAsync }

    /// The job a processes backend sends to a worker, for a remote task.
    func remoteJob(context: RemoteContext) throws -> (any RemoteJob)? {
        guard case .remote(let task) = runner else { return nil }
        return try task.makeJob(core: core, start: start, items: items, timeout: timeout, context: context)
    }

    private func claim() -> Bool { !claimed.exchange(true, ordering: .acquiringAndReleasing) }

    @usableFromInline
    func run(on worker: WorkerContext) {
        if core.token.isCancelled {
            core.finish(start: start, count: items.count, output: nil, nanos: 0)
            return
        }
        let began = monotonicNanos()
        let output: BatchOutput<R>
        if let timeout {
            output = withTimeLimit(
                timeout, parent: core.token, worker: worker,
                expire: { [self] in
                    guard claim() else { return false }
                    core.finish(
                        start: start, count: items.count, output: timedOutOutput(timeout),
                        nanos: timeout.nanoseconds)
                    return true
                }
            ) { token in execute(on: worker, token: token) }
            guard claim() else { return }  // the time-out already reported it
        } else {
            output = execute(on: worker, token: core.token)
        }
        core.finish(start: start, count: items.count, output: output, nanos: monotonicNanos() &- began)
    }

    private func execute(on worker: WorkerContext, token: CancellationToken) -> BatchOutput<R> {
        switch runner {
        case .sync(let body):
            return FleetTask.$token.withValue(token) { body(items, start, worker, core.mode) }
        case .async(let body):
            let (items, start, mode) = (self.items, self.start, core.mode)
            return (try? runAsyncHere(token: token) { await body(items, start, mode) }.get()) ?? BatchOutput()
        case .remote(let task):
            return FleetTask.$token.withValue(token) {
                task.runHere(items, start: start, mode: core.mode, token: token)
            }
        }
    }

    /// Runs the batch in the caller's task (the serial backend with an async
    /// transform): no thread is blocked.
    @usableFromInline
    func runInline() async {
        guard case .async(let body) = runner, !core.token.isCancelled else {
            core.finish(start: start, count: items.count, output: nil, nanos: 0)
            return
        }
        let began = monotonicNanos()
        let output = await FleetTask.$token.withValue(core.token) { await body(items, start, core.mode) }
        core.finish(start: start, count: items.count, output: output, nanos: monotonicNanos() &- began)
    }

    @usableFromInline
    func discard(_ reason: FleetError) {
        core.fail(reason)
        core.finish(start: start, count: items.count, output: nil, nanos: 0)
    }

    private func timedOutOutput(_ after: Duration) -> BatchOutput<R> {
        var out = BatchOutput<R>()
        let failure = ItemFailure(index: start, underlying: FleetError.timedOut(item: start, after: after))
        out.failedCount = 1
        if core.mode == .failFast { out.failure = failure } else { out.results = [.failure(failure)] }
        return out
    }
}

/// One batch of a map over a random-access collection: a range of
/// positions, whose results the runner writes straight into the output.
@usableFromInline
final class RangeJob<R: Sendable>: Job {
    @usableFromInline let core: MapCore<R>
    @usableFromInline let range: Range<Int>
    @usableFromInline let runner: @Sendable (Range<Int>, ErrorMode) -> BatchOutput<R>

    @usableFromInline
    init(core: MapCore<R>, range: Range<Int>, runner: @escaping @Sendable (Range<Int>, ErrorMode) -> BatchOutput<R>) {
        self.core = core
        self.range = range
        self.runner = runner
    }

    @usableFromInline
    func run(on worker: WorkerContext) {
        if core.token.isCancelled {
            core.finish(start: range.lowerBound, count: range.count, output: nil, nanos: 0)
            return
        }
        let began = monotonicNanos()
        let output = FleetTask.$token.withValue(core.token) { runner(range, core.mode) }
        core.finish(start: range.lowerBound, count: range.count, output: output, nanos: monotonicNanos() &- began)
    }

    @usableFromInline
    func discard(_ reason: FleetError) {
        core.fail(reason)
        core.finish(start: range.lowerBound, count: range.count, output: nil, nanos: 0)
    }
}
