/// Counts of an operation as it runs, handed to `MapOptions.progress`.
public struct ProgressSnapshot: Sendable, Equatable {
    /// Items pulled from the input and handed to workers so far.
    public var submitted: Int
    /// Items that finished successfully.
    public var completed: Int
    /// Items that failed (threw, timed out).
    public var failed: Int
    /// How many items there are, when the input is a collection.
    public var total: Int?
    /// Time since the operation started.
    public var elapsed: Duration
    /// True for the last snapshot of the operation.
    public var isFinished: Bool

    /// Finished items (completed + failed) per second since the start.
    public var rate: Double {
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
        return seconds > 0 ? Double(completed + failed) / seconds : 0
    }

    /// A snapshot with these counts.
    public init(submitted: Int, completed: Int, failed: Int, total: Int?, elapsed: Duration, isFinished: Bool) {
        self.submitted = submitted
        self.completed = completed
        self.failed = failed
        self.total = total
        self.elapsed = elapsed
        self.isFinished = isFinished
    }
}

/// Keeps an operation's counts and calls the handler, throttled.
final class ProgressTracker: Sendable {
    private struct Counts {
        var submitted = 0, completed = 0, failed = 0
        var lastEmit: UInt64 = 0
        var finished = false
        /// Numbers the snapshots in the order they were taken.
        var taken = 0
    }

    private let handler: @Sendable (ProgressSnapshot) -> Void
    private let interval: UInt64
    private let total: Int?
    private let start = monotonicNanos()
    private let counts = Locked(Counts())
    /// The number of the last snapshot handed to the handler; held while
    /// the handler runs, so calls never overlap, and a snapshot taken
    /// before one already sent (a thread that lost the race to the lock)
    /// is dropped, so the handler never sees the counts go back, and the
    /// final snapshot is the last it sees.
    private let sent = Locked(0)

    init(total: Int?, interval: Duration, handler: @escaping @Sendable (ProgressSnapshot) -> Void) {
        self.total = total
        self.interval = interval.nanoseconds
        self.handler = handler
    }

    func submitted(_ n: Int) {
        counts.withLock { $0.submitted += n }
    }

    func finished(completed: Int, failed: Int) {
        let now = monotonicNanos()
        let snap = counts.withLock { c -> (Int, ProgressSnapshot)? in
            c.completed += completed
            c.failed += failed
            guard !c.finished, now &- c.lastEmit >= interval else { return nil }
            c.lastEmit = now
            return snapshot(&c, now: now, final: false)
        }
        if let snap { emit(snap) }
    }

    /// Sends the final snapshot (once).
    func end() {
        let now = monotonicNanos()
        let snap = counts.withLock { c -> (Int, ProgressSnapshot)? in
            guard !c.finished else { return nil }
            c.finished = true
            return snapshot(&c, now: now, final: true)
        }
        if let snap { emit(snap) }
    }

    private func snapshot(_ c: inout Counts, now: UInt64, final: Bool) -> (Int, ProgressSnapshot) {
        c.taken += 1
        return (
            c.taken,
            ProgressSnapshot(
                submitted: c.submitted, completed: c.completed, failed: c.failed, total: total,
                elapsed: .nanoseconds(Int64(now &- start)), isFinished: final)
        )
    }

    private func emit(_ numbered: (Int, ProgressSnapshot)) {
        sent.withLock { last in
            guard numbered.0 > last else { return }
            last = numbered.0
            handler(numbered.1)
        }
    }
}
