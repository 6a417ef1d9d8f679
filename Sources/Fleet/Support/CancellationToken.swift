import Synchronization

/// A flag that a running task can poll to learn that its work is no longer
/// wanted: its operation failed or was cancelled, its pool is shutting down,
/// or it ran past its time-out.
///
/// Synchronous tasks cannot be interrupted; they observe cancellation by
/// polling `FleetTask.isCancelled` (or `FleetTask.checkCancellation()`),
/// which reads the token of the operation they run for.
public final class CancellationToken: Sendable {
    private let flag = Atomic<Bool>(false)
    private let handlers = Locked<[@Sendable () -> Void]?>([])

    public init() {}

    /// True once `cancel()` has been called.
    public var isCancelled: Bool { flag.load(ordering: .acquiring) }

    /// Sets the flag and runs the registered handlers, once.
    public func cancel() {
        guard !flag.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let run = handlers.withLock { h -> [@Sendable () -> Void] in
            defer { h = nil }
            return h ?? []
        }
        for handler in run { handler() }
    }

    /// Runs `handler` when the token is cancelled (at once if it already is).
    public func onCancel(_ handler: @escaping @Sendable () -> Void) {
        let runNow = handlers.withLock { h -> Bool in
            guard h != nil else { return true }
            h!.append(handler)
            return false
        }
        if runNow { handler() }
    }
}

/// What a task running on a Fleet pool can ask about its own run.
public enum FleetTask {
    /// The token of the operation the current task runs for, if any.
    @TaskLocal public static var token: CancellationToken?

    /// True when the current task's work is no longer wanted. Works in
    /// synchronous closures on every backend, where `Task.isCancelled` cannot.
    public static var isCancelled: Bool {
        if let token, token.isCancelled { return true }
        return Task.isCancelled
    }

    /// Throws `FleetError.cancelled` when `isCancelled` is true.
    public static func checkCancellation() throws {
        if isCancelled { throw FleetError.cancelled }
    }
}
