/// Errors raised by Fleet itself, as opposed to errors thrown by user tasks.
public enum FleetError: Error, Equatable, CustomStringConvertible {
    /// An argument was out of range: a worker count, batch size or window
    /// that is not positive, a time-out that is not positive, and so on.
    case invalidArgument(String)
    /// The pool was shut down before the work was submitted.
    case poolShutDown
    /// The work was cancelled before it finished: by `Future.cancel()`, by a
    /// shutdown that cancels pending work, or by cancelling the awaiting task.
    case cancelled
    /// The work ran longer than its time-out. `item` is the index of the item
    /// within its operation (nil for a single submitted task).
    case timedOut(item: Int?, after: Duration)
    /// A worker process died while running the work: `pid` and how it ended,
    /// after `attempts` runs (counting from 1, as `FleetTask.attempt` does:
    /// 2 means it was retried once). `item` is the item's index (nil for a
    /// single submitted task).
    case workerDied(item: Int?, pid: Int32, exit: WorkerExit, attempts: Int)
    /// A frame between the driver and a worker broke the protocol (corrupt,
    /// truncated or oversized); the worker was replaced.
    case protocolViolation(String)
    /// Worker processes could not be started, or they and the driver were
    /// built from different code (their tasks or protocol versions differ).
    case workerStartFailed(String)
    /// A remote task that `RemoteTasks.bootstrap` did not register, or work
    /// that cannot cross a process boundary (a closure on a processes pool).
    case notRemote(String)
    /// An MPI rank stopped answering (its process, host or network failed):
    /// the work it held fails with this error, and the job cannot continue.
    /// `item` is the index of an item it held, when there was one.
    case rankLost(rank: Int, host: String, item: Int?, why: String)
    /// A program Fleet runs is not installed: its name, and how to install it.
    case toolMissing(name: String, install: String)

    public var description: String {
        switch self {
        case .invalidArgument(let what): return "invalid argument: \(what)"
        case .poolShutDown: return "the pool has been shut down"
        case .cancelled: return "cancelled"
        case .timedOut(let item?, let after): return "item \(item) timed out after \(after)"
        case .timedOut(nil, let after): return "task timed out after \(after)"
        case .workerDied(let item, let pid, let exit, let attempts):
            let what = item.map { "item \($0)" } ?? "the task"
            let tries = attempts == 1 ? "1 attempt" : "\(attempts) attempts"
            return "the worker process (pid \(pid)) running \(what) \(exit), after \(tries)"
        case .protocolViolation(let why): return "protocol violation: \(why)"
        case .workerStartFailed(let why): return "worker processes failed to start: \(why)"
        case .notRemote(let why): return why
        case .rankLost(let rank, let host, let item, let why):
            return "MPI rank \(rank) on host \(host) was lost\(item.map { " while running item \($0)" } ?? ""): \(why)"
        case .toolMissing(let name, let install): return "\(name) is not installed (\(install))"
        }
    }
}

/// The error a map, stream or reduce rethrows when one item fails: which item,
/// and what it threw.
public struct ItemFailure: Error, CustomStringConvertible {
    /// The item's position in the input sequence, counting from 0.
    public let index: Int
    /// The error the task threw (or `FleetError.timedOut` for a time-out).
    public let underlying: any Error

    /// The failure of item `index` with `underlying`.
    public init(index: Int, underlying: any Error) {
        self.index = index
        self.underlying = underlying
    }

    /// The underlying error's type name, e.g. `DecodingError`.
    /// For an error thrown in a worker process, the type it had there.
    public var errorType: String {
        if let remote = underlying as? RemoteError { return remote.typeName }
        return String(reflecting: type(of: underlying))
    }

    public var description: String {
        if let remote = underlying as? RemoteError { return "item \(index) failed: \(remote)" }
        return "item \(index) failed: \(errorType): \(underlying)"
    }
}

@usableFromInline
func requirePositive(_ value: Int, _ name: String) throws {
    if value <= 0 { throw FleetError.invalidArgument("\(name) must be positive, got \(value)") }
}

@usableFromInline
func requirePositive(_ value: Duration, _ name: String) throws {
    if value <= .zero { throw FleetError.invalidArgument("\(name) must be positive, got \(value)") }
}

/// For waits, where zero means "do not wait: look".
func requireNonNegative(_ value: Duration, _ name: String) throws {
    if value < .zero { throw FleetError.invalidArgument("\(name) must not be negative, got \(value)") }
}

/// How a worker process ended.
public enum WorkerExit: Sendable, Equatable, CustomStringConvertible {
    /// It called `exit` with this status.
    case exited(Int32)
    /// A signal killed it (SIGKILL also when the kernel killed it for memory).
    case signaled(Int32)

    public var description: String {
        switch self {
        case .exited(let status): return "exited with status \(status)"
        case .signaled(let signal): return "was killed by signal \(signal) (\(signalName(signal)))"
        }
    }
}

func signalName(_ signal: Int32) -> String {
    let names: [Int32: String] = [
        1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 5: "SIGTRAP", 6: "SIGABRT",
        7: "SIGBUS", 8: "SIGFPE", 9: "SIGKILL", 11: "SIGSEGV", 13: "SIGPIPE",
        14: "SIGALRM", 15: "SIGTERM",
    ]
    return names[signal] ?? "signal \(signal)"
}
