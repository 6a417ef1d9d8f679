#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// Remote tasks on every backend. On serial and threads a remote task is
// called directly; on processes its inputs are encoded and sent to worker
// processes. The map forms reuse the engine of Pool+Map.swift with a
// `.remote` batch runner.

extension Pool {
    /// A pool of `workers` worker processes (default: the cores this process
    /// may use), which run the remote tasks listed in `RemoteTasks.bootstrap`.
    /// Workers start in the background; `waitUntilReady()` waits for them.
    /// A worker that dies fails or retries only the item it was running,
    /// and is replaced (see `ProcessOptions`).
    public static func processes(workers: Int? = nil, options: ProcessOptions = ProcessOptions()) throws -> Pool {
        let n = workers ?? UsableCores.count
        try requirePositive(n, "workers")
        try options.validate()
        if RemoteTasks.isUnservedWorker {
            // Started as a worker, but main did not call bootstrap first:
            // starting workers here would recurse without end. The driver
            // sees this worker fail its handshake and says why.
            throw FleetError.workerStartFailed(
                "this process was started as a worker, but main did not call RemoteTasks.bootstrap before creating a pool"
            )
        }
        let registry = RemoteTasks.registry
        if registry.tasks.isEmpty {
            throw FleetError.notRemote(
                "no remote tasks are registered: call RemoteTasks.bootstrap with them at the top of main, before creating a processes pool"
            )
        }
        let id = nextID()
        return Pool(
            backend: ProcessBackend(workers: n, options: options, registry: registry, name: "fl\(id)"),
            id: id)
    }

    /// Waits until every worker process has started and passed the
    /// handshake (at once on other backends). Throws
    /// `FleetError.workerStartFailed` when workers cannot start, or were
    /// built from different code.
    public func waitUntilReady() async throws {
        guard let backend = backend as? ProcessBackend else { return }
        // The wait blocks, so it runs on a thread of its own, not on one
        // of Swift's few cooperative threads.
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
            spawnThread(name: "fleet-ready") { c.resume(with: Result { try backend.waitUntilReady() }) }
        }
    }

    /// The process ids of the pool's worker processes running now (empty on
    /// the serial and threads backends), e.g. to measure their memory.
    public var workerProcessIDs: [Int32] { (backend as? ProcessBackend)?.workerPIDs ?? [] }

    /// Runs `task` on `input` and returns its future at once. On processes
    /// a worker that dies running it is replaced, and the task retried up to
    /// `retries` times (nil: the pool's); a `timeout` kills the worker.
    public func submit<I, O>(
        _ task: RemoteTask<I, O>, _ input: I, timeout: Duration? = nil, retries: Int? = nil
    ) throws -> Future<O> {
        if let timeout { try requirePositive(timeout, "timeout") }
        if let retries, retries < 0 { throw FleetError.invalidArgument("retries must not be negative, got \(retries)") }
        let remote = backend as? any RemoteBackend
        let job = try RemoteCallJob(
            task: task, input: input, taskID: remote.map { try $0.registry.id(of: task) } ?? 0,
            timeout: timeout, retries: retries, context: remote?.context)
        try backend.enqueue(job)
        return Future(job)
    }

    /// `map` over a remote task: the results in input order.
    @inlinable
    public func map<Input: Sequence, O>(
        _ input: Input, _ task: RemoteTask<Input.Element, O>, options: MapOptions = MapOptions()
    ) async throws -> [O] where Input.Element: Sendable {
        try await collectOrdered(input, options: options, runner: remoteRunner(task, options))
    }

    /// `mapResults` over a remote task: one `Result` per item, in order.
    @inlinable
    public func mapResults<Input: Sequence, O>(
        _ input: Input, _ task: RemoteTask<Input.Element, O>, options: MapOptions = MapOptions()
    ) async throws -> [Result<O, ItemFailure>] where Input.Element: Sendable {
        var driver = try MapDriver(
            SequenceSource(input, runner: remoteRunner(task, options), timeout: options.timeout),
            pool: self, ordered: true, mode: .collect, options: options)
        var out: [Result<O, ItemFailure>] = []
        while let batch = try await driver.nextBatch() {
            out.append(contentsOf: batch.output.results)
            driver.core.release(batch.count)
        }
        return out
    }

    /// `stream` over a remote task: results in input order, as they are ready.
    @inlinable
    public func stream<Input: Sequence, O>(
        _ input: Input, _ task: RemoteTask<Input.Element, O>, options: MapOptions = MapOptions()
    ) -> MapStream<O> where Input.Element: Sendable {
        makeStream(input, ordered: true, mode: .failFast, options: options, runner: remoteRunner(task, options)) {
            $0.output.values[$1]
        }
    }

    /// `mapUnordered` over a remote task: `(index, result)` pairs in
    /// completion order.
    @inlinable
    public func mapUnordered<Input: Sequence, O>(
        _ input: Input, _ task: RemoteTask<Input.Element, O>, options: MapOptions = MapOptions()
    ) -> MapStream<(index: Int, value: O)> where Input.Element: Sendable {
        makeStream(input, ordered: false, mode: .failFast, options: options, runner: remoteRunner(task, options)) {
            (index: $0.start + $1, value: $0.output.values[$1])
        }
    }

    /// `mapUnorderedResults` over a remote task: every item's `Result`, in
    /// completion order.
    @inlinable
    public func mapUnorderedResults<Input: Sequence, O>(
        _ input: Input, _ task: RemoteTask<Input.Element, O>, options: MapOptions = MapOptions()
    ) -> MapStream<(index: Int, result: Result<O, ItemFailure>)> where Input.Element: Sendable {
        makeStream(input, ordered: false, mode: .collect, options: options, runner: remoteRunner(task, options)) {
            (index: $0.start + $1, result: $0.output.results[$1])
        }
    }

    /// `reduce` over a remote task: results are merged in the caller as
    /// they arrive, in completion order.
    @inlinable
    public func reduce<Input: Sequence, O, Accumulator>(
        _ input: Input, into initial: consuming Accumulator, _ task: RemoteTask<Input.Element, O>,
        options: MapOptions = MapOptions(), merge: (inout Accumulator, O) throws -> Void
    ) async throws -> Accumulator where Input.Element: Sendable {
        try await fold(
            input, into: consume initial, options: options, runner: remoteRunner(task, options), merge: merge)
    }

    @inlinable
    func remoteRunner<I, O>(_ task: RemoteTask<I, O>, _ options: MapOptions) -> BatchRunner<I, O> {
        .remote(RemoteMapping(task: task, retries: options.retries))
    }
}
