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

/// The bytes of a request's header fields after the frame header: task id,
/// attempt, mode.
let requestHeadBytes = 9

/// Appends request `seq`'s frame header and head fields; the caller appends
/// `inputBytes` of inputs (or, with `shared`, where they are).
func appendRequestHead(_ request: Outgoing<RemoteWork>, inputBytes: Int, shared: Bool, to out: WireBuffer) {
    let job = request.job.job
    FrameHeader(length: UInt32(requestHeadBytes + inputBytes), kind: .request, seq: request.seq, shared: shared)
        .write(into: out)
    out.append(UInt32(job.taskID))
    out.append(UInt32(request.attempt))
    out.append(UInt8(job.mode == .failFast ? 0 : 1))
}

/// What a worker's hello says: checked against the driver's own registry.
struct Hello {
    let version: UInt16
    let fingerprint: UInt64
    let signatures: [String]
    /// The host's name (MPI ranks only).
    var host: String?

    init(_ body: inout WireReader, withHost: Bool) throws {
        version = try body.read(UInt16.self)
        _ = try body.read(Int32.self)
        fingerprint = try body.read(UInt64.self)
        let n = try body.readCount(minBytes: 4)
        var signatures: [String] = []
        for _ in 0..<n { signatures.append(try body.readString()) }
        self.signatures = signatures
        if withHost { host = try body.readString() }
    }

    /// Throws `workerStartFailed` naming `who` if the worker speaks another
    /// protocol version or was built from other code.
    func check(against registry: Registry, who: String) throws {
        guard version == wireProtocolVersion else {
            throw FleetError.workerStartFailed("\(who) speaks protocol version \(version), the driver \(wireProtocolVersion)")
        }
        guard fingerprint == registry.fingerprint else {
            throw FleetError.workerStartFailed(
                "\(who) runs a program built from different code: \(registry.difference(from: signatures))")
        }
    }
}
