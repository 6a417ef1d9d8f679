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
            throw FleetError.workerStartFailed(
                "\(who) speaks protocol version \(version), the driver \(wireProtocolVersion)")
        }
        guard fingerprint == registry.fingerprint else {
            throw FleetError.workerStartFailed(
                "\(who) runs a program built from different code: \(registry.difference(from: signatures))")
        }
    }
}

/// The dispatcher behind its lock, and the callbacks waiting for the pool's
/// end: what both transports hold. A transport keeps its own bookkeeping
/// (links, hosts) under the same `mutex`.
final class DispatchBox: @unchecked Sendable {
    // Safe: `state` and `callbacks` are used only with `mutex` held.
    let mutex = PthreadMutex()
    /// Broadcast when a worker becomes ready, or the pool ends or breaks.
    let changed = PthreadCondition()
    private var state: Dispatcher<RemoteWork>
    private var callbacks: [@Sendable () -> Void] = []

    init(_ config: Dispatcher<RemoteWork>.Config) { state = Dispatcher(config) }

    /// Runs `body` on the dispatcher under the lock.
    func withState<T, E: Error>(_ body: (inout Dispatcher<RemoteWork>) throws(E) -> T) throws(E) -> T {
        mutex.lock()
        defer { mutex.unlock() }
        return try body(&state)
    }

    /// The dispatcher's state, for a caller that holds `mutex` already.
    var locked: Dispatcher<RemoteWork> {
        _read { yield state }
        _modify { yield &state }
    }

    /// Runs `callback` when the pool has ended (at once if it has).
    func onTermination(_ callback: @escaping @Sendable () -> Void) {
        let now = withState { state in
            if state.isTerminated { return true }
            callbacks.append(callback)
            return false
        }
        if now { callback() }
    }

    /// Runs the termination callbacks (once each).
    func terminated() {
        let run = withState { _ in
            changed.broadcast()
            defer { callbacks = [] }
            return callbacks
        }
        for callback in run { callback() }
    }
}

/// A backend whose work goes through a `Dispatcher`: it carries out the
/// dispatcher's effects.
protocol DispatchingBackend: RemoteBackend {
    var box: DispatchBox { get }
    func carryOut(_ effects: Effects<RemoteWork>)
}

extension DispatchingBackend {
    func beginShutdown(_ policy: ShutdownPolicy) {
        carryOut(
            box.withState { state in
                box.changed.broadcast()
                return state.shutdown(policy)
            })
    }

    func onTermination(_ callback: @escaping @Sendable () -> Void) { box.onTermination(callback) }

    /// Starts forwarding the cancellation of each newly sent operation to
    /// its workers, once per operation.
    func watchCancellation(_ effects: Effects<RemoteWork>, _ forward: @escaping @Sendable (CancellationToken) -> Void) {
        for work in effects.watch {
            if let token = work.job.token, token.startForwarding() { _ = token.onCancel { forward(token) } }
        }
    }
}
