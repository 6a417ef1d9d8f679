/// The user's side of a task's eventual result.
///
/// A `Future` is returned by `Pool.submit`. Await its `value`, wait for it
/// with a time-out, cancel it while it has not started, ask whether it is
/// done, or register callbacks. Futures compare equal when they are the same
/// future, so they can be kept in sets (`wait` returns sets of them).
public struct Future<Value: Sendable>: Sendable, Hashable {
    @usableFromInline let state: FutureState<Value>

    @inlinable init(_ state: FutureState<Value>) { self.state = state }

    /// Makes a future and the promise that completes it, for code that
    /// produces results itself.
    public static func make() -> (future: Future, promise: Promise<Value>) {
        let state = FutureState<Value>()
        return (Future(state), Promise(state))
    }

    /// The task's value, waiting for it if need be; rethrows the task's error.
    /// Cancelling the waiting task throws `CancellationError` and leaves the
    /// future itself alone (call `cancel()` for that).
    public var value: Value {
        get async throws { try await result(timeout: nil).get() }
    }

    /// The task's outcome, waiting for it if need be.
    public var result: Result<Value, any Error> {
        get async {
            do { return .success(try await value) } catch { return .failure(error) }
        }
    }

    /// The task's value, waiting at most `timeout`. Throws
    /// `FleetError.timedOut` if the task is not done by then; the task goes on.
    /// A time-out of zero only looks (Python's `result(timeout=0)`).
    public func value(timeout: Duration) async throws -> Value {
        try requireNonNegative(timeout, "timeout")
        if timeout == .zero {
            guard let done = state.result else { throw FleetError.timedOut(item: nil, after: .zero) }
            return try done.get()
        }
        return try await result(timeout: timeout).get()
    }

    private func result(timeout: Duration?) async throws -> Result<Value, any Error> {
        if let done = state.result { return done }
        let box = Locked<OnceContinuation<Result<Value, any Error>>?>(nil)
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let once = OnceContinuation(continuation)
                box.withLock { $0 = once }
                if let timeout {
                    let timer = Watchdog.shared.schedule(after: timeout) {
                        once.resume(with: .failure(FleetError.timedOut(item: nil, after: timeout)))
                    }
                    state.whenComplete { r in
                        Watchdog.shared.cancel(timer)
                        once.resume(with: .success(r))
                    }
                } else {
                    state.whenComplete { once.resume(with: .success($0)) }
                }
                if Task.isCancelled { once.resume(with: .failure(CancellationError())) }
            }
        } onCancel: {
            box.withLock { $0 }?.resume(with: .failure(CancellationError()))
        }
    }

    /// Blocks the calling thread until the task is done (at most `timeout`),
    /// then returns its value or rethrows its error. For synchronous code;
    /// never call it from a task running on a pool the future belongs to
    /// with every worker busy, as it would wait for itself.
    @available(*, noasync, message: "it blocks the thread; await value instead")
    public func waitBlocking(timeout: Duration? = nil) throws -> Value {
        if let timeout { try requireNonNegative(timeout, "timeout") }
        let slot = BlockingSlot<Result<Value, any Error>>()
        state.whenComplete { slot.put($0) }
        guard let result = slot.take(untilNanos: timeout.map { monotonicNanos() &+ $0.nanoseconds }) else {
            throw FleetError.timedOut(item: nil, after: timeout!)
        }
        return try result.get()
    }

    /// Cancels the task if it has not started. Returns true if it was
    /// cancelled; a cancelled future fails with `FleetError.cancelled`.
    @discardableResult
    public func cancel() -> Bool { state.cancel() }

    /// True once the task has finished, failed or been cancelled.
    public var isDone: Bool { state.isDone }

    /// True while the task runs on a worker.
    public var isRunning: Bool { state.isRunning }

    /// True if the future was cancelled before its task started.
    public var isCancelled: Bool {
        guard state.isDone, case .failure(let e)? = state.result else { return false }
        return e as? FleetError == .cancelled
    }

    /// Runs `callback` with the outcome once the task is done (at once, in
    /// the caller, if it already is). Callbacks run on the thread that
    /// completes the future and should be short.
    public func whenComplete(_ callback: @escaping @Sendable (Result<Value, any Error>) -> Void) {
        state.whenComplete(callback)
    }

    public static func == (a: Future, b: Future) -> Bool { a.state === b.state }
    public func hash(into hasher: inout Hasher) { hasher.combine(ObjectIdentifier(state)) }
}

/// The producer's side of a `Future`: a backend (or any code that makes
/// futures with `Future.make()`) completes it exactly once.
public struct Promise<Value: Sendable>: Sendable {
    let state: FutureState<Value>

    init(_ state: FutureState<Value>) { self.state = state }

    /// Marks the work as started. Returns false if the future was cancelled
    /// first, in which case the work must not run.
    public func markRunning() -> Bool { state.start() }

    /// Completes the future. Returns false if it was already complete.
    @discardableResult
    public func complete(_ result: Result<Value, any Error>) -> Bool { state.complete(result) }

    /// Completes the future with a value.
    @discardableResult
    public func succeed(_ value: Value) -> Bool { state.complete(.success(value)) }

    /// Completes the future with an error.
    @discardableResult
    public func fail(_ error: any Error) -> Bool { state.complete(.failure(error)) }
}
