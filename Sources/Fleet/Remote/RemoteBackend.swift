/// A backend whose workers are other processes (worker processes, MPI
/// ranks): it runs remote tasks only, their inputs encoded in the caller.
protocol RemoteBackend: ExecutionBackend {
    var registry: Registry { get }
    var context: RemoteContext { get }
}

extension ProcessBackend: RemoteBackend {}
