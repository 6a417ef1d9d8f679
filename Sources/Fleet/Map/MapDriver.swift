/// Where a map's batches come from: the input, cut into jobs.
@usableFromInline
protocol BatchSource<R> {
    associatedtype R: Sendable
    /// How many items there are, when known.
    var total: Int? { get }
    /// Pulls up to `n` items, numbered from `start`, into a job. Returns how
    /// many it pulled (fewer than `n` only at the end of the input).
    mutating func makeBatch(start: Int, count n: Int, core: MapCore<R>) -> (job: (any Job)?, count: Int)
}

/// Batches pulled from any sequence's iterator: the items are copied into
/// the job.
@usableFromInline
struct SequenceSource<Input: Sequence, R: Sendable>: BatchSource where Input.Element: Sendable {
    @usableFromInline var iterator: Input.Iterator
    @usableFromInline let runner: BatchRunner<Input.Element, R>
    @usableFromInline let timeout: Duration?
    @usableFromInline let total: Int?

    @inlinable
    init(_ input: Input, runner: BatchRunner<Input.Element, R>, timeout: Duration?) {
        total = (input as? any Collection)?.count
        iterator = input.makeIterator()
        self.runner = runner
        self.timeout = timeout
    }

    @inlinable
    mutating func makeBatch(start: Int, count n: Int, core: MapCore<R>) -> (job: (any Job)?, count: Int) {
        var items: [Input.Element] = []
        items.reserveCapacity(n)
        while items.count < n, let x = iterator.next() { items.append(x) }
        if items.isEmpty { return (nil, 0) }
        return (BatchJob(core: core, start: start, items: items, runner: runner, timeout: timeout), items.count)
    }
}

/// The caller's side of a map: pulls batches from its source into the
/// window, dispatches them, and takes finished batches in order.
@usableFromInline
struct MapDriver<Source: BatchSource> {
    @usableFromInline typealias R = Source.R
    @usableFromInline var source: Source
    @usableFromInline var nextIndex = 0
    @usableFromInline var exhausted = false
    @usableFromInline let core: MapCore<R>
    @usableFromInline let pool: Pool

    @inlinable
    init(
        _ source: Source, pool: Pool, ordered: Bool, mode: ErrorMode, streaming: Bool = false,
        options: MapOptions
    ) throws {
        try options.validate()
        self.source = source
        self.pool = pool
        core = MapCore(
            ordered: ordered, mode: mode, eager: streaming, options: options, workers: pool.workerCount,
            inline: pool.backend.runsInline, total: source.total)
    }

    /// Fills the window. On an inline (serial) backend, runs one batch.
    @inlinable
    mutating func pump() async {
        while !exhausted {
            let n = core.reserve()
            if n == 0 { return }
            let start = nextIndex
            let (job, count) = source.makeBatch(start: start, count: n, core: core)
            exhausted = count < n
            nextIndex += count
            core.dispatching(count: count, unused: n - count, inputEndsAt: exhausted ? nextIndex : nil)
            guard let job else { return }
            if pool.backend.runsInline, let inline = job as? any InlineAsyncJob, inline.isAsync {
                await inline.runInline()
            } else {
                do {
                    try pool.backend.enqueue(job)
                } catch {
                    core.fail(error)
                    core.finish(start: start, count: count, output: nil, nanos: 0)
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
