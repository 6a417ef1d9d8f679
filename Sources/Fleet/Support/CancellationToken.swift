import Synchronization

/// A flag that a running task can poll to learn that its work is no longer
/// wanted: its operation failed or was cancelled, its pool is shutting down,
/// or it ran past its time-out.
///
/// Synchronous tasks cannot be interrupted; they observe cancellation by
/// polling `FleetTask.isCancelled` (or `FleetTask.checkCancellation()`),
/// which reads the token of the operation they run for. A token made with a
/// `parent` is also cancelled when the parent is (an item's token under its
/// operation's).
public final class CancellationToken: Sendable {
    private let flag = Atomic<Bool>(false)
    private let parent: CancellationToken?
    /// Another source of cancellation, polled (in a worker process: the
    /// driver's mark on the shared control page).
    private let probe: (@Sendable () -> Bool)?
    private let forwarded = Atomic<Bool>(false)

    /// True the first time it is called: whether the caller should start
    /// forwarding this token's cancellation (to worker processes).
    func startForwarding() -> Bool { !forwarded.exchange(true, ordering: .relaxed) }
    private let handlers = Locked<(next: Int, list: [Int: @Sendable () -> Void])?>((0, [:]))

    var parentToken: CancellationToken? { parent }

    /// A new token, cancelled by `cancel()` or by its parent's.
    public init(parent: CancellationToken? = nil) {
        self.parent = parent
        probe = nil
    }

    init(probe: @escaping @Sendable () -> Bool) {
        parent = nil
        self.probe = probe
    }

    /// True once `cancel()` has been called on it or on its parent.
    public var isCancelled: Bool {
        flag.load(ordering: .acquiring) || (parent?.isCancelled ?? false) || (probe?() ?? false)
    }

    /// Sets the flag and runs the registered handlers, once.
    public func cancel() {
        guard !flag.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let run = handlers.withLock { h -> [@Sendable () -> Void] in
            defer { h = nil }
            return h.map { Array($0.list.values) } ?? []
        }
        for handler in run { handler() }
    }

    /// Runs `handler` when this token itself is cancelled (at once if it
    /// already is). Returns a key for `removeHandler`.
    @discardableResult
    public func onCancel(_ handler: @escaping @Sendable () -> Void) -> Int {
        let key = handlers.withLock { h -> Int? in
            guard h != nil else { return nil }
            let key = h!.next
            h!.next += 1
            h!.list[key] = handler
            return key
        }
        guard let key else {
            handler()
            return -1
        }
        return key
    }

    /// Forgets a handler registered with `onCancel`.
    public func removeHandler(_ key: Int) {
        handlers.withLock { h in _ = h?.list.removeValue(forKey: key) }
    }
}

/// What a task running on a Fleet pool can ask about its own run.
public enum FleetTask {
    /// The token of the operation the current task runs for, if any.
    @TaskLocal public static var token: CancellationToken?

    /// Which run this is of the current task, counting from 1: above 1 when
    /// a worker process died running it before and the pool retried it. The
    /// same count as `FleetError.workerDied(attempts:)`, which gives the
    /// runs an item had.
    @TaskLocal public static var attempt: Int = 1

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
