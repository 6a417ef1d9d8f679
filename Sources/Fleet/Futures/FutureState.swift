/// The shared state behind a `Future` and its `Promise`.
///
/// A small state machine (`Stage`): pending → running → done, or
/// pending → done (cancelled before it started, or completed by a
/// time-out). The first completion wins; later ones are ignored. Callbacks registered before
/// completion run on the completing thread, after the lock is released.
///
/// Its methods are `@inlinable` so that `submit` and the worker's side of a
/// submitted task are specialised for the result type in the caller's
/// module: a future costs well under a microsecond, and unspecialised
/// generic code would spend most of that looking up type metadata.
@usableFromInline
class FutureState<Value: Sendable>: @unchecked Sendable {
    // Safe: `stage` is touched only with the lock from `FutureLocks` held.
    @usableFromInline typealias Callback = @Sendable (Result<Value, any Error>) -> Void

    /// Where the future is, with what each stage holds: the callbacks
    /// waiting for the result until there is one, then the result alone.
    @usableFromInline enum Stage {
        case pending([Callback])
        case running([Callback])
        case done(Result<Value, any Error>)
    }

    @usableFromInline var stage = Stage.pending([])

    @inlinable init() {}

    /// One of a fixed set of shared locks, chosen by address: futures are
    /// many and short-lived, and their critical sections a few instructions,
    /// so a lock per future would cost an allocation for nothing.
    @inlinable final var mutex: PthreadMutex { FutureLocks.lock(for: self) }

    /// Moves pending → running. False if the future was already completed
    /// (cancelled), in which case the work must not run.
    @inlinable final func start() -> Bool {
        let m = mutex
        m.lock()
        defer { m.unlock() }
        guard case .pending(let waiting) = stage else { return false }
        stage = .running(waiting)
        return true
    }

    /// Completes the future if nothing has yet. Returns true if this call did.
    @inlinable @discardableResult
    final func complete(_ result: Result<Value, any Error>) -> Bool {
        let m = mutex
        m.lock()
        let waiting: [Callback]
        switch stage {
        case .done:
            m.unlock()
            return false
        case .pending(let w), .running(let w):
            waiting = w
        }
        stage = .done(result)
        m.unlock()
        for callback in waiting { callback(result) }
        return true
    }

    /// Cancels a future whose work has not started.
    @inlinable final func cancel() -> Bool {
        let m = mutex
        m.lock()
        guard case .pending(let waiting) = stage else {
            m.unlock()
            return false
        }
        let failure: Result<Value, any Error> = .failure(FleetError.cancelled)
        stage = .done(failure)
        m.unlock()
        for callback in waiting { callback(failure) }
        return true
    }

    @inlinable final var result: Result<Value, any Error>? {
        let m = mutex
        m.lock()
        defer { m.unlock() }
        if case .done(let r) = stage { return r }
        return nil
    }

    @inlinable final var isDone: Bool { result != nil }

    @inlinable final var isRunning: Bool {
        let m = mutex
        m.lock()
        defer { m.unlock() }
        if case .running = stage { return true }
        return false
    }

    /// Runs `callback` with the result, at once if it is already there.
    @inlinable final func whenComplete(_ callback: @escaping Callback) {
        let m = mutex
        m.lock()
        switch stage {
        case .done(let r):
            m.unlock()
            callback(r)
        case .pending(var waiting):
            stage = .pending([])  // keep the array unique while it grows
            waiting.append(callback)
            stage = .pending(waiting)
            m.unlock()
        case .running(var waiting):
            stage = .running([])
            waiting.append(callback)
            stage = .running(waiting)
            m.unlock()
        }
    }
}

/// The striped locks of `FutureState`.
@usableFromInline
enum FutureLocks {
    @usableFromInline static let stripes: [PthreadMutex] = (0..<64).map { _ in PthreadMutex() }

    @inlinable static func lock(for object: AnyObject) -> PthreadMutex {
        // The address itself, not `hashValue` (which runs SipHash each time).
        let address = UInt(bitPattern: ObjectIdentifier(object))
        return stripes[Int((address >> 4) & 63)]
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
