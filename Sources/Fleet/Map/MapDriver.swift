/// The caller's side of a map: owns the input iterator, pulls batches into
/// the window, dispatches them, and takes finished batches in order.
@usableFromInline
struct MapDriver<Input: Sequence, R: Sendable> where Input.Element: Sendable {
    @usableFromInline var iterator: Input.Iterator
    @usableFromInline var nextIndex = 0
    @usableFromInline var exhausted = false
    @usableFromInline let core: MapCore<R>
    @usableFromInline let pool: Pool
    @usableFromInline let runner: BatchRunner<Input.Element, R>
    @usableFromInline let timeout: Duration?

    @inlinable
    init(
        _ input: Input, pool: Pool, ordered: Bool, mode: ErrorMode, options: MapOptions,
        runner: BatchRunner<Input.Element, R>
    ) throws {
        try options.validate()
        var total: Int?
        if let c = input as? any Collection { total = c.count }
        iterator = input.makeIterator()
        self.pool = pool
        self.runner = runner
        timeout = options.timeout
        core = MapCore(ordered: ordered, mode: mode, options: options, workers: pool.workerCount,
                       inline: pool.backend.runsInline, total: total)
    }

    /// Fills the window. On an inline (serial) backend, runs one batch.
    @inlinable
    mutating func pump() async {
        while !exhausted {
            let n = core.reserve()
            if n == 0 { return }
            var items: [Input.Element] = []
            items.reserveCapacity(n)
            while items.count < n {
                guard let x = iterator.next() else {
                    exhausted = true
                    break
                }
                items.append(x)
            }
            let start = nextIndex
            nextIndex += items.count
            core.dispatching(count: items.count, unused: n - items.count, inputEndsAt: exhausted ? nextIndex : nil)
            if items.isEmpty { return }
            let job = BatchJob(core: core, start: start, items: items, runner: runner, timeout: timeout)
            if pool.backend.runsInline && runner.isAsync {
                await job.runInline()
            } else {
                do {
                    try pool.backend.enqueue(job)
                } catch {
                    core.fail(error)
                    core.finish(start: start, count: items.count, output: nil, nanos: 0)
                    return
                }
            }
            if pool.backend.runsInline { return }
        }
    }

    /// The next finished batch in the operation's order, nil at the end.
    /// Throws the operation's failure once nothing of it is running.
    @inlinable
    mutating func nextBatch() async throws -> ReadyBatch<R>? {
        while true {
            // A serial map never waits, so it checks here for cancellation.
            if Task.isCancelled { core.fail(CancellationError()) }
            await pump()
            switch core.take() {
            case .batch(let batch): return batch
            case .finished:
                core.endProgress()
                return nil
            case .failed(let error):
                core.endProgress()
                throw error
            case .wait(let seen):
                await core.waitForChange(after: seen)
            }
        }
    }
}
