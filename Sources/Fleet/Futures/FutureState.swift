/// The shared state behind a `Future` and its `Promise`.
///
/// A small state machine: pending → running → done, or pending → done
/// (cancelled before it started, or completed by a time-out). The first
/// completion wins; later ones are ignored. Callbacks registered before
/// completion run on the completing thread, after the lock is released.
final class FutureState<Value: Sendable>: @unchecked Sendable {
    // Safe: `phase` and `callbacks` are touched only with `mutex` held.
    enum Phase {
        case pending
        case running
        case done(Result<Value, any Error>)
    }

    typealias Callback = @Sendable (Result<Value, any Error>) -> Void

    private let mutex = PthreadMutex()
    private var phase = Phase.pending
    private var callbacks: [Callback] = []

    init() {}

    /// Moves pending → running. False if the future was already completed
    /// (cancelled), in which case the work must not run.
    func start() -> Bool {
        mutex.lock()
        defer { mutex.unlock() }
        if case .pending = phase {
            phase = .running
            return true
        }
        return false
    }

    /// Completes the future if nothing has yet. Returns true if this call did.
    @discardableResult
    func complete(_ result: Result<Value, any Error>) -> Bool {
        mutex.lock()
        if case .done = phase {
            mutex.unlock()
            return false
        }
        phase = .done(result)
        let run = callbacks
        callbacks = []
        mutex.unlock()
        for callback in run { callback(result) }
        return true
    }

    /// Cancels a future whose work has not started.
    func cancel() -> Bool {
        mutex.lock()
        guard case .pending = phase else {
            mutex.unlock()
            return false
        }
        phase = .done(.failure(FleetError.cancelled))
        let run = callbacks
        callbacks = []
        mutex.unlock()
        for callback in run { callback(.failure(FleetError.cancelled)) }
        return true
    }

    var result: Result<Value, any Error>? {
        mutex.lock()
        defer { mutex.unlock() }
        if case .done(let r) = phase { return r }
        return nil
    }

    var isRunning: Bool {
        mutex.lock()
        defer { mutex.unlock() }
        if case .running = phase { return true }
        return false
    }

    /// Runs `callback` with the result, at once if it is already there.
    func whenComplete(_ callback: @escaping Callback) {
        mutex.lock()
        if case .done(let r) = phase {
            mutex.unlock()
            callback(r)
            return
        }
        callbacks.append(callback)
        mutex.unlock()
    }
}

/// Resumes a continuation at most once, whichever of several events comes
/// first (completion, time-out, cancellation).
final class OnceContinuation<T: Sendable>: Sendable {
    private let slot: Locked<CheckedContinuation<T, any Error>?>

    init(_ continuation: CheckedContinuation<T, any Error>) { slot = Locked(continuation) }

    func resume(with result: Result<T, any Error>) {
        let c = slot.withLock { c -> CheckedContinuation<T, any Error>? in
            defer { c = nil }
            return c
        }
        c?.resume(with: result)
    }
}
