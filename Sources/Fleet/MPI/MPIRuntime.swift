#if MPI
internal import CMPI
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Open MPI in this process: started once, with every thread allowed to
/// make MPI calls (the executor's driver talks to the ranks from its own
/// thread), errors returned rather than fatal, and ended at exit.
public enum MPI {
    /// The communicator of every rank of the job (`MPI_COMM_WORLD`),
    /// starting MPI on first use. Throws `MPIError` if MPI cannot start.
    public static var world: Communicator {
        get throws { try MPIRuntime.shared.world() }
    }

    /// True when this process was started by `mpirun` (or `mpiexec`, `srun`
    /// with Open MPI's PMIx), so MPI will find its peers.
    public static var isLaunched: Bool {
        getenv("OMPI_COMM_WORLD_SIZE") != nil || getenv("PMIX_RANK") != nil
    }

    /// Runs `body` on every rank, then ends MPI and exits. An error thrown
    /// on any rank is printed with the rank and host, and ends the whole job
    /// (`MPI_Abort`) instead of leaving the other ranks waiting forever in
    /// a collective. The ranks send each other heartbeats meanwhile (a
    /// ring, on a communicator of its own, from a thread of its own): a rank
    /// silent for `heartbeatTimeout` (its process, host or network gone, or
    /// the process stopped) ends the job with "rank R on host H was lost";
    /// a rank that finishes early keeps answering until every rank has.
    public static func run(
        heartbeatTimeout: Duration = .seconds(5), _ body: (Communicator) throws -> Void
    ) -> Never {
        do {
            let comm = try world
            let watchdog =
                comm.size > 1
                ? try RankWatchdog(world: comm, interval: .milliseconds(250), timeout: heartbeatTimeout) : nil
            do {
                try body(comm)
            } catch {
                abort("rank \(comm.rank) on \(comm.processorName): \(error)")
            }
            watchdog?.finishTogether()
            MPIRuntime.shared.finish()
            exit(0)
        } catch {
            writeStderr("fleet: MPI did not start: \(error)\n")
            exit(1)
        }
    }

    /// Prints `message` and ends every rank of the job with `code`.
    public static func abort(_ message: String, code: Int32 = 1) -> Never {
        MPIRuntime.shared.abort(message, code: code)
    }
}

/// The process's MPI state: whether it started, and the executor pool's
/// end-of-job hook, run before `MPI_Finalize`.
final class MPIRuntime: @unchecked Sendable {
    // Safe: every `var` is guarded by `mutex`.
    static let shared = MPIRuntime()

    private let mutex = PthreadMutex()
    private var started: Communicator?
    private var finished = false
    /// Run once at the end, before `MPI_Finalize`: the driver stops the
    /// ranks serving it. Returns false when the job cannot finalize (a
    /// rank is lost) and must abort instead.
    private var beforeFinish: [@Sendable () -> Bool] = []

    /// Starts MPI once; later calls return the same communicator.
    func world() throws -> Communicator {
        mutex.lock()
        defer { mutex.unlock() }
        if let started { return started }
        if finished {
            throw MPIError(call: "MPI_Init_thread", code: -1, message: "MPI has already been finalized in this process")
        }
        var provided: Int32 = 0
        var flag: Int32 = 0
        MPI_Initialized(&flag)
        if flag == 0 {
            try check(MPI_Init_thread(nil, nil, cmpi_thread_multiple(), &provided), "MPI_Init_thread")
        } else {
            MPI_Query_thread(&provided)
        }
        guard provided >= cmpi_thread_multiple() else {
            throw MPIError(
                call: "MPI_Init_thread", code: -1,
                message: "this MPI library does not support MPI_THREAD_MULTIPLE (level \(provided)), which Fleet needs")
        }
        MPI_Comm_set_errhandler(cmpi_comm_world(), cmpi_errors_return())
        let comm = try Communicator(world: cmpi_comm_world())
        started = comm
        atexit { MPIRuntime.shared.finish() }
        return comm
    }

    /// Registers work to run before `MPI_Finalize` (at the latest at exit).
    func onFinish(_ hook: @escaping @Sendable () -> Bool) {
        mutex.withLock { beforeFinish.append(hook) }
    }

    /// Ends MPI: runs the hooks, then `MPI_Finalize` (or `MPI_Abort` when a
    /// hook says the job is broken). Idempotent.
    func finish() {
        mutex.lock()
        guard started != nil, !finished else {
            mutex.unlock()
            return
        }
        finished = true
        let hooks = beforeFinish
        beforeFinish = []
        mutex.unlock()
        var clean = true
        for hook in hooks { clean = hook() && clean }
        if !clean {
            // A lost rank would never join MPI_Finalize.
            MPI_Abort(cmpi_comm_world(), 1)
            _exit(1)
        }
        MPI_Finalize()
    }

    func abort(_ message: String, code: Int32) -> Never {
        writeStderr("fleet: \(message)\n")
        var flag: Int32 = 0
        MPI_Initialized(&flag)
        if flag != 0 { MPI_Abort(cmpi_comm_world(), code) }
        _exit(code)
    }
}

/// An MPI call that failed, with MPI's own message.
public struct MPIError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The MPI function that failed.
    public let call: String
    /// MPI's error code.
    public let code: Int32
    /// MPI's text for the code, or Fleet's for errors found before a call.
    public let message: String

    public var description: String { "\(call) failed: \(message)" }
}

/// Throws `MPIError` for a return code other than `MPI_SUCCESS`.
@inline(__always)
func check(_ code: Int32, _ call: @autoclosure () -> String) throws {
    guard code != cmpi_success() else { return }
    throw MPIError(call: call(), code: code, message: errorString(code))
}

func errorString(_ code: Int32) -> String {
    var buffer = [CChar](repeating: 0, count: Int(cmpi_max_error_string()) + 1)
    var length: Int32 = 0
    guard MPI_Error_string(code, &buffer, &length) == cmpi_success() else { return "MPI error \(code)" }
    return String(decoding: buffer.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
#endif
