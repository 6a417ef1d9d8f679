import Foundation

// Serial backend: data flow
//
//   caller ── enqueue(job) ──▶ job.run(on: this thread's context) ──▶ returns
//
// Every job runs in the caller's thread, before `enqueue` returns, in the
// order it was queued. There are no threads to start or stop. Per-worker
// state lives in a context per calling thread, so two callers that share a
// serial pool never share a `WorkerState` value.

/// Runs each job in the caller, at once.
final class SerialBackend: ExecutionBackend {
    let kind = BackendKind.serial
    let workerCount = 1
    let runsInline = true
    private let key: String
    /// The shared `Pool.serial` ignores shutdown: it belongs to everyone.
    private let shared: Bool
    private let shutDown = Locked(false)

    init(id: Int, shared: Bool = false) {
        key = "fleet.serial.\(id)"
        self.shared = shared
    }

    func enqueue(_ job: any Job) throws {
        if shutDown.withLock({ $0 }) { throw FleetError.poolShutDown }
        job.run(on: context())
    }

    /// This thread's worker context for this pool.
    private func context() -> WorkerContext {
        let dict = Thread.current.threadDictionary
        if let ctx = dict[key] as? WorkerContext { return ctx }
        let ctx = WorkerContext(index: 0, handle: WorkerHandle())
        dict[key] = ctx
        return ctx
    }

    func beginShutdown(_ policy: ShutdownPolicy) {
        if !shared { shutDown.withLock { $0 = true } }
    }

    func onTermination(_ callback: @escaping @Sendable () -> Void) { callback() }
}
