// The map family, written once for every backend. Each function builds a
// `MapDriver` (input side) over a `MapCore` (shared state) and a
// `BatchRunner` (the specialised item loop), then hands results over in the
// form it promises. See MapCore.swift for the data flow.

extension Pool {
    /// Applies `transform` to every element of `input` in parallel and
    /// returns the results in input order.
    ///
    /// `input` may be any sequence, lazy or endless; it is pulled only as the
    /// in-flight window has room (`MapOptions.window`). Tiny tasks are batched
    /// automatically. The first failure stops pulling input, cancels what has
    /// not started, and is rethrown as `ItemFailure` with the item's index.
    /// Cancelling the calling task does the same with `CancellationError`.
    @inlinable
    public func map<Input: Sequence, R: Sendable>(
        _ input: Input, options: MapOptions = MapOptions(),
        _ transform: @escaping @Sendable (Input.Element) throws -> R
    ) async throws -> [R] where Input.Element: Sendable {
        try await collectOrdered(input, options: options, runner: .plain(transform))
    }

    /// `map` over a random-access collection (an array, a range): the same
    /// contract; when results are plain values, items are not copied into
    /// batches and results are written straight into the returned array.
    @inlinable @inline(__always)
    public func map<Input: RandomAccessCollection & Sendable, R: Sendable>(
        _ input: Input, options: MapOptions = MapOptions(),
        _ transform: @escaping @Sendable (Input.Element) throws -> R
    ) async throws -> [R] where Input.Element: Sendable {
        if _isPOD(R.self) && options.timeout == nil {
            // The item loop is made here, where the caller's closure is in
            // sight, so the compiler can specialise the loop for it (and
            // inline it) instead of calling it through a generic thunk.
            return try await mapInPlace(input, options: options, placing: placingLoop(transform))
        }
        return try await collectOrdered(input, options: options, runner: .plain(transform))
    }

    /// `map` with an `async` transform. On threads each task runs on its
    /// worker thread (blocking is fine there too).
    @inlinable
    public func map<Input: Sequence, R: Sendable>(
        _ input: Input, options: MapOptions = MapOptions(),
        _ transform: @escaping @Sendable (Input.Element) async throws -> R
    ) async throws -> [R] where Input.Element: Sendable {
        try await collectOrdered(input, options: options, runner: .plainAsync(transform))
    }

    /// `map` whose transform also gets this worker's value of `state`, built
    /// once per worker (see `WorkerState`).
    @inlinable
    public func map<Input: Sequence, S, R: Sendable>(
        _ input: Input, with state: WorkerState<S>, options: MapOptions = MapOptions(),
        _ transform: @escaping @Sendable (inout S, Input.Element) throws -> R
    ) async throws -> [R] where Input.Element: Sendable {
        try await collectOrdered(input, options: options, runner: .stateful(state, transform))
    }

    /// Like `map`, but a failing item does not stop the others: every item
    /// yields a `Result`, in input order.
    @inlinable
    public func mapResults<Input: Sequence, R: Sendable>(
        _ input: Input, options: MapOptions = MapOptions(),
        _ transform: @escaping @Sendable (Input.Element) throws -> R
    ) async throws -> [Result<R, ItemFailure>] where Input.Element: Sendable {
        var driver = try MapDriver(
            SequenceSource(input, runner: .plain(transform), timeout: options.timeout),
            pool: self, ordered: true, mode: .collect, options: options)
        var out: [Result<R, ItemFailure>] = []
        while let batch = try await driver.nextBatch() {
            out.append(contentsOf: batch.output.results)
            driver.core.release(batch.count)
        }
        return out
    }

    @inlinable
    func collectOrdered<Input: Sequence, R: Sendable>(
        _ input: Input, options: MapOptions, runner: BatchRunner<Input.Element, R>
    ) async throws -> [R] where Input.Element: Sendable {
        var driver = try MapDriver(
            SequenceSource(input, runner: runner, timeout: options.timeout),
            pool: self, ordered: true, mode: .failFast, options: options)
        var out: [R] = []
        out.reserveCapacity(input.underestimatedCount)
        while let batch = try await driver.nextBatch() {
            out.append(contentsOf: batch.output.values)
            driver.core.release(batch.count)
        }
        return out
    }

    /// Folds the results into `initial` as they arrive, in completion order,
    /// never holding more than the window of results (like a `map` followed
    /// by a reduction, without keeping the mapped list). `merge` runs in the
    /// calling task, one result at a time. Errors as for `map`.
    @inlinable
    public func reduce<Input: Sequence, R: Sendable, Accumulator>(
        _ input: Input, into initial: consuming Accumulator, options: MapOptions = MapOptions(),
        _ transform: @escaping @Sendable (Input.Element) throws -> R,
        merge: (inout Accumulator, R) throws -> Void
    ) async throws -> Accumulator where Input.Element: Sendable {
        try await fold(input, into: consume initial, options: options, runner: .plain(transform), merge: merge)
    }

    /// `reduce` with an `async` transform.
    @inlinable
    public func reduce<Input: Sequence, R: Sendable, Accumulator>(
        _ input: Input, into initial: consuming Accumulator, options: MapOptions = MapOptions(),
        _ transform: @escaping @Sendable (Input.Element) async throws -> R,
        merge: (inout Accumulator, R) throws -> Void
    ) async throws -> Accumulator where Input.Element: Sendable {
        try await fold(input, into: consume initial, options: options, runner: .plainAsync(transform), merge: merge)
    }

    @inlinable
    func fold<Input: Sequence, R: Sendable, Accumulator>(
        _ input: Input, into initial: consuming Accumulator, options: MapOptions,
        runner: BatchRunner<Input.Element, R>, merge: (inout Accumulator, R) throws -> Void
    ) async throws -> Accumulator where Input.Element: Sendable {
        var driver = try MapDriver(
            SequenceSource(input, runner: runner, timeout: options.timeout),
            pool: self, ordered: false, mode: .failFast, options: options)
        var acc = consume initial  // unique, so merging never copies it
        while let batch = try await driver.nextBatch() {
            do {
                for value in batch.output.values { try merge(&acc, value) }
            } catch {
                driver.core.fail(error)
                _ = try? await driver.nextBatch()  // let running batches finish
                throw error
            }
            driver.core.release(batch.count)
        }
        return acc
    }
}
