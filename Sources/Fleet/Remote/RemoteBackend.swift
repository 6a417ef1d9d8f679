#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A backend whose workers are other processes (worker processes, MPI
/// ranks): it runs remote tasks only, their inputs encoded in the caller.
protocol RemoteBackend: ExecutionBackend {
    var registry: Registry { get }
    var context: RemoteContext { get }
}

extension ProcessBackend: RemoteBackend {}

extension RemoteBackend {
    /// `job` as a request for a remote worker, or `FleetError.notRemote`
    /// for a closure, which cannot leave this process; `place` says where
    /// the work would have run ("in worker processes", "on MPI ranks").
    func remoteJob(_ job: any Job, place: String) throws -> any RemoteJob {
        if let r = job as? any RemoteJob { return r }
        if let c = job as? any RemoteConvertible, let r = try c.remoteJob(context: context) { return r }
        throw FleetError.notRemote(
            "closures cannot run \(place): declare the work as a RemoteTask and pass it to submit or map")
    }
}

/// A worker's first frame: the protocol version, its pid, and what its
/// program registered, so the driver can refuse a program built from other
/// code; MPI ranks add their host's name.
func appendHello(_ registry: Registry, host: String? = nil, to out: WireBuffer) throws {
    try appendFrame(.hello, seq: 0, to: out) { b in
        b.append(wireProtocolVersion)
        b.append(Int32(getpid()))
        b.append(registry.fingerprint)
        b.append(UInt64(registry.signatures.count))
        for s in registry.signatures { b.appendString(s) }
        if let host { b.appendString(host) }
    }
}
