#if MPI
internal import CMPI

extension Pool {
    /// The executor over the ranks of an MPI job started with
    /// `mpirun -np N program`: rank 0 runs the program's own code and gets
    /// the pool; ranks 1 ..< N serve its remote tasks, and on them this call
    /// never returns (they exit when the driver's pool shuts down or its
    /// program ends). Every rank must call it, after `RemoteTasks.bootstrap`.
    ///
    /// There is one such pool per job: later calls return the same pool.
    /// Shutting it down stops the serving ranks for good. Throws
    /// `MPIError` if MPI cannot start, `FleetError.invalidArgument` with
    /// fewer than 2 ranks, and `FleetError.workerStartFailed` when a rank
    /// runs a program built from different code or does not answer within
    /// `options.startTimeout`.
    public static func mpi(options: MPIOptions = MPIOptions()) throws -> Pool {
        try MPIPoolHolder.shared.pool(options: options)
    }
}

/// The job's one MPI pool.
final class MPIPoolHolder: @unchecked Sendable {
    // Safe: `pool` is guarded by `mutex`.
    static let shared = MPIPoolHolder()
    private let mutex = PthreadMutex()
    private var pool: Pool?

    func pool(options: MPIOptions) throws -> Pool {
        mutex.lock()
        defer { mutex.unlock() }
        if let pool { return pool }
        let world = try MPI.world
        guard world.size >= 2 else {
            throw FleetError.invalidArgument(
                "the MPI executor needs at least 2 ranks (rank 0 drives, the others serve), but this job has 1: start it with mpirun -np 2 or more"
            )
        }
        let registry = RemoteTasks.registry
        var dup: MPI_Comm?
        try check(MPI_Comm_dup(world.comm, &dup), "MPI_Comm_dup")
        let comm = dup!
        MPI_Comm_set_errhandler(comm, cmpi_errors_return())
        if world.rank != 0 {
            if registry.tasks.isEmpty {
                MPI.abort(
                    "rank \(world.rank): no remote tasks are registered: call RemoteTasks.bootstrap with them at the top of main, before Pool.mpi"
                )
            }
            MPIRankMain(registry: registry, world: world, comm: comm).run()
        }
        if registry.tasks.isEmpty {
            throw FleetError.notRemote(
                "no remote tasks are registered: call RemoteTasks.bootstrap with them at the top of main, before Pool.mpi"
            )
        }
        let backend = MPIBackend(world: world, comm: comm, registry: registry, options: options)
        MPIRuntime.shared.onFinish { backend.finishJob() }
        try backend.waitUntilReady()
        let made = Pool(backend: backend, id: Pool.nextID())
        pool = made
        return made
    }
}
#endif
