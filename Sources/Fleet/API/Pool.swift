import Synchronization

/// A pool of workers: the handle every Fleet operation is called on.
///
/// Make one for the backend you want, or take `Pool.serial` to run work in
/// the caller:
///
/// ```swift
/// let pool = try Pool.threads()                 // one thread per usable core
/// let squares = try await pool.map(0..<1_000) { $0 * $0 }
/// ```
///
/// A library function takes `executor: Pool? = nil` and runs serially in
/// the caller when it gets none (`executor.orSerial`), so its code does not
/// change with how it is parallelised.
///
/// Shut a pool down with `shutdown(_:)`; dropping the last reference to it
/// drains what is queued and lets its workers exit, so threads never leak.
public final class Pool: Sendable {
    /// The backend doing the work.
    @usableFromInline let backend: any ExecutionBackend
    /// A process-unique number, used in worker thread names (`fl<id>-<worker>`).
    public let id: Int

    private static let ids = Atomic<Int>(0)
    static func nextID() -> Int { ids.add(1, ordering: .relaxed).newValue }

    init(backend: any ExecutionBackend, id: Int) {
        self.backend = backend
        self.id = id
    }

    deinit { backend.beginShutdown(.drain) }

    /// The kind of backend.
    public var kind: BackendKind { backend.kind }
    /// How many tasks run at once.
    public var workerCount: Int { backend.workerCount }

    /// A pool that runs every task in the caller, in order. It has no
    /// threads; each call makes a new one, and `Pool.serial` is shared.
    public static func makeSerial() -> Pool {
        let id = nextID()
        return Pool(backend: SerialBackend(id: id), id: id)
    }

    /// The shared serial pool. Shutting it down is ignored.
    public static let serial: Pool = Pool(backend: SerialBackend(id: 0, shared: true), id: 0)

    /// A pool of `workers` dedicated OS threads (default: the cores this
    /// process may use, see `UsableCores`). Tasks may block.
    public static func threads(workers: Int? = nil) throws -> Pool {
        let n = workers ?? UsableCores.count
        try requirePositive(n, "workers")
        let id = nextID()
        return Pool(backend: ThreadBackend(workers: n, name: "fl\(id)"), id: id)
    }

    /// A pool of the given kind: the one-argument switch between backends.
    public static func make(_ kind: BackendKind, workers: Int? = nil) throws -> Pool {
        switch kind {
        case .serial:
            if let workers { try requirePositive(workers, "workers") }
            return makeSerial()
        case .threads: return try threads(workers: workers)
        case .processes: return try processes(workers: workers)
        case .mpi:
            #if MPI
            let pool = try mpi()
            if let workers, workers != pool.workerCount {
                throw FleetError.invalidArgument(
                    "an MPI pool has one worker per rank after the first (\(pool.workerCount) here), not \(workers): set the count with mpirun -np"
                )
            }
            return pool
            #else
            throw FleetError.invalidArgument(
                "this program was built without MPI: build it with `--traits MPI` (Docs/MPI.md)")
            #endif
        }
    }

    /// Stops the pool: no new work is accepted (`FleetError.poolShutDown`),
    /// queued work is run (`.drain`) or failed with `FleetError.cancelled`
    /// (`.cancelPending`), and this returns once every worker has exited.
    /// Calling it again is harmless. Never call it from a task on this pool.
    public func shutdown(_ policy: ShutdownPolicy = .drain) async {
        backend.beginShutdown(policy)
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            backend.onTermination { c.resume() }
        }
    }

    /// `shutdown(_:)` for synchronous code: blocks the calling thread.
    @available(*, noasync, message: "it blocks the thread; await shutdown(_:) instead")
    public func shutdownBlocking(_ policy: ShutdownPolicy = .drain) {
        backend.beginShutdown(policy)
        let done = BlockingSlot<Bool>()
        backend.onTermination { done.put(true) }
        _ = done.take()
    }
}

extension Optional where Wrapped == Pool {
    /// The pool, or `Pool.serial` when there is none: how a library function
    /// with an `executor: Pool? = nil` parameter runs serially by default.
    public var orSerial: Pool { self ?? .serial }
}
