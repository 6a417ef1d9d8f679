/// What one batch produced.
@usableFromInline
struct BatchOutput<R: Sendable>: Sendable {
    /// Fail-fast mode: the results of the items before `failure` (all of
    /// them when there is none).
    @usableFromInline var values: [R] = []
    /// Collect mode: one result per item.
    @usableFromInline var results: [Result<R, ItemFailure>] = []
    /// Fail-fast mode: the item that failed, which ended the batch.
    @usableFromInline var failure: ItemFailure?
    /// Items that failed (for progress).
    @usableFromInline var failedCount = 0
    /// Results written straight into the output (the collection fast path).
    @usableFromInline var placed = 0

    @inlinable init() {}

    @inlinable var succeededCount: Int { values.count + results.count + placed - failedCount }
}

/// Runs the items of one batch. Built by the public map functions, which are
/// `@inlinable`, so the loop is specialised for the caller's element and
/// result types: for tiny tasks the loop is most of the cost.
@usableFromInline
enum BatchRunner<T: Sendable, R: Sendable>: Sendable {
    case sync(@Sendable (_ items: [T], _ start: Int, _ worker: WorkerContext, _ mode: ErrorMode) -> BatchOutput<R>)
    case async(@Sendable (_ items: [T], _ start: Int, _ mode: ErrorMode) async -> BatchOutput<R>)
    /// A remote task: called here on serial and threads, sent to a worker
    /// process on processes (see `BatchJob.remoteJob`).
    case remote(any RemoteBatchMaker<T, R>)

    @inlinable var isAsync: Bool {
        if case .async = self { return true }
        return false
    }
}

/// Batches check for cancellation before every 64th item (and the first):
/// often enough to stop within microseconds on tiny tasks, rarely enough to
/// cost nothing. Slow tasks run one per batch, so they are checked each time.
@usableFromInline let cancellationStride = 63

/// Applies `body` to each item in order, stopping at the first failure in
/// fail-fast mode, and at cancellation (checked before each item).
@inlinable
func runItems<T, R>(
    _ items: [T], start: Int, mode: ErrorMode, token: CancellationToken?,
    _ body: (T) throws -> R
) -> BatchOutput<R> {
    var out = BatchOutput<R>()
    switch mode {
    case .failFast:
        out.values.reserveCapacity(items.count)
        for i in items.indices {
            if i & cancellationStride == 0, let token, token.isCancelled { break }
            do {
                out.values.append(try body(items[i]))
            } catch {
                out.failure = ItemFailure(index: start + i, underlying: error)
                out.failedCount = 1
                break
            }
        }
    case .collect:
        out.results.reserveCapacity(items.count)
        for i in items.indices {
            if i & cancellationStride == 0, let token, token.isCancelled { break }
            do {
                out.results.append(.success(try body(items[i])))
            } catch {
                out.results.append(.failure(ItemFailure(index: start + i, underlying: error)))
                out.failedCount += 1
            }
        }
    }
    return out
}

/// The async twin of `runItems`.
@inlinable
func runItemsAsync<T, R>(
    _ items: [T], start: Int, mode: ErrorMode, token: CancellationToken?,
    _ body: (T) async throws -> R
) async -> BatchOutput<R> {
    var out = BatchOutput<R>()
    for i in items.indices {
        if let token, token.isCancelled { break }
        do {
            let value = try await body(items[i])
            if mode == .failFast { out.values.append(value) } else { out.results.append(.success(value)) }
        } catch {
            let failure = ItemFailure(index: start + i, underlying: error)
            out.failedCount += 1
            if mode == .failFast {
                out.failure = failure
                break
            }
            out.results.append(.failure(failure))
        }
    }
    return out
}

extension BatchRunner {
    /// A runner for a plain synchronous transform.
    @inlinable
    static func plain(_ transform: @escaping @Sendable (T) throws -> R) -> BatchRunner {
        .sync { items, start, _, mode in
            runItems(items, start: start, mode: mode, token: FleetTask.token, transform)
        }
    }

    /// A runner for an async transform.
    @inlinable
    static func plainAsync(_ transform: @escaping @Sendable (T) async throws -> R) -> BatchRunner {
        .async { items, start, mode in
            await runItemsAsync(items, start: start, mode: mode, token: FleetTask.token, transform)
        }
    }

    /// A runner whose transform gets this worker's `WorkerState` value.
    @inlinable
    static func stateful<S>(
        _ state: WorkerState<S>, _ transform: @escaping @Sendable (inout S, T) throws -> R
    ) -> BatchRunner {
        .sync { items, start, worker, mode in
            do {
                return try state.withState(on: worker) { s in
                    runItems(items, start: start, mode: mode, token: FleetTask.token) { try transform(&s, $0) }
                }
            } catch {
                // Building the state failed: every item of the batch fails with it.
                var out = BatchOutput<R>()
                if mode == .failFast {
                    out.failure = ItemFailure(index: start, underlying: error)
                    out.failedCount = 1
                } else {
                    out.results = items.indices.map { .failure(ItemFailure(index: start + $0, underlying: error)) }
                    out.failedCount = items.count
                }
                return out
            }
        }
    }
}
