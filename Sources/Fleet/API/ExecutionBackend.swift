import Synchronization

/// The contract every backend implements: run jobs on workers, and shut down.
///
/// Everything users call (`submit`, the map forms, `reduce`, `asCompleted`,
/// `wait`, batching, the in-flight window, error policy, time-outs, progress)
/// is written once on `Pool`, above this protocol, so a backend only moves
/// jobs to workers. A backend may run a job in the caller (`runsInline`), as
/// the serial backend does, or on workers of its own.
@usableFromInline
protocol ExecutionBackend: AnyObject, Sendable {
    /// The backend's kind, for reports and errors.
    var kind: BackendKind { get }
    /// How many jobs it runs at once.
    var workerCount: Int { get }
    /// True when `enqueue` runs the job in the caller before returning.
    var runsInline: Bool { get }
    /// Queues a job. Throws `FleetError.poolShutDown` once shutdown has begun.
    func enqueue(_ job: any Job) throws
    /// Begins shutdown with `policy`; returns at once. Idempotent.
    func beginShutdown(_ policy: ShutdownPolicy)
    /// Runs `callback` once every worker has exited after shutdown (at once
    /// if that has happened already).
    func onTermination(_ callback: @escaping @Sendable () -> Void)
}

/// A unit of work queued on a backend: one submitted task, or one batch of
/// a map.
@usableFromInline
protocol Job: AnyObject, Sendable {
    /// Runs the job on the calling worker.
    func run(on worker: WorkerContext)
    /// Called instead of `run` when the job will never run (shutdown that
    /// cancels pending work); it must complete its promises with `reason`.
    func discard(_ reason: FleetError)
}

/// The backends Fleet provides.
public enum BackendKind: String, Sendable, CaseIterable, CustomStringConvertible {
    /// In the caller, in order.
    case serial
    /// A pool of dedicated OS threads.
    case threads
    /// A pool of worker processes running remote tasks.
    case processes
    /// The ranks of an MPI job (`Pool.mpi`); needs the package's `MPI` trait.
    case mpi

    public var description: String { rawValue }
}

/// What happens to queued work when a pool shuts down.
public enum ShutdownPolicy: Sendable, Equatable {
    /// Run everything already queued, then stop.
    case drain
    /// Fail queued work with `FleetError.cancelled`, let running work finish.
    case cancelPending
    /// `cancelPending`, and on processes also kill the workers running
    /// work, whose items fail with `FleetError.cancelled`: a shutdown that
    /// cannot hang on a stuck task. (Threads cannot be killed: there it is
    /// `cancelPending`, and running tasks see `FleetTask.isCancelled` only
    /// through their operation.)
    case killRunning

    /// Whether queued work is failed rather than run.
    var dropsQueued: Bool { self != .drain }
}

/// The worker a job runs on: its index, and the per-worker state built by
/// `WorkerState`. Confined to its worker's thread.
@usableFromInline
final class WorkerContext {
    /// The worker's index within its pool, from 0.
    let index: Int
    /// Lets a job tell the backend that this worker is stuck (a task ran past
    /// its time-out) so it can start a replacement.
    let handle: WorkerHandle
    var states: [ObjectIdentifier: Any] = [:]

    init(index: Int, handle: WorkerHandle) {
        self.index = index
        self.handle = handle
    }
}

/// The part of a worker other threads may touch: whether it has been
/// abandoned to a task that overran its time-out.
final class WorkerHandle: Sendable {
    private let onAbandon: @Sendable () -> Void
    /// Read by the worker after every job, so an atomic rather than a lock.
    private let abandoned = Atomic<Bool>(false)

    init(onAbandon: @escaping @Sendable () -> Void = {}) { self.onAbandon = onAbandon }

    var isAbandoned: Bool { abandoned.load(ordering: .acquiring) }

    /// Marks the worker as lost to its current task: the backend starts a
    /// replacement, and this worker exits once the task returns.
    func abandon() {
        if !abandoned.exchange(true, ordering: .acquiringAndReleasing) { onAbandon() }
    }
}
