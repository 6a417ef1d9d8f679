#if MPI
internal import CMPI
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// Heartbeats between the ranks of `MPI.run`: collective code cannot hang on
// a lost rank.
//
//   fleet-mpi-watch thread, every rank, on a communicator of its own:
//     every `interval`: 1 byte to the next rank (ring), with MPI_Isend
//     always: an MPI_Irecv from the previous rank, tested, re-posted
//     silent previous rank for `timeout`: "rank R on host H was lost", abort
//   body returned: MPI_Ibarrier, tested while the heartbeats go on; when
//     every rank has returned, the thread stops and MPI can finalize
//   fleet-mpi-deadline thread: if the watch thread itself stops turning (an
//     MPI call that never returns), ends the process without MPI
//
// Only non-blocking calls on the watchdog's own communicator, made from its
// own thread, so a send or collective stuck in the user's code never stops
// it, and its messages never match the user's receives.

/// The heartbeat ring of `MPI.run`.
final class RankWatchdog: @unchecked Sendable {
    // Safe: `finishing`, `done` and `lastTurn` are guarded by `mutex`; the
    // MPI state (`comm`, requests, buffers) belongs to the watch thread.
    private let comm: MPI_Comm
    private let rank: Int
    private let size: Int
    private let hosts: [String]
    private let interval: UInt64
    private let timeout: UInt64
    private let mutex = PthreadMutex()
    private let changed = PthreadCondition()
    private var finishing = false
    private var done = false
    private var lastTurn = monotonicNanos()

    /// Starts the ring over `world` (every rank calls this, as it is
    /// collective: it duplicates the communicator and learns the hosts).
    init(world: Communicator, interval: Duration, timeout: Duration) throws {
        var dup: MPI_Comm?
        try check(MPI_Comm_dup(world.comm, &dup), "MPI_Comm_dup")
        comm = dup!
        MPI_Comm_set_errhandler(comm, cmpi_errors_return())
        rank = world.rank
        size = world.size
        hosts = try world.allgather(world.processorName)
        self.interval = UInt64(interval.nanoseconds)
        self.timeout = UInt64(timeout.nanoseconds)
        spawnThread(name: "fleet-mpi-watch") { [self] in watch() }
        spawnThread(name: "fleet-mpi-deadline") { [self] in deadline() }
    }

    /// Waits until every rank has called this (their bodies have returned),
    /// heartbeats going on meanwhile, then stops the ring.
    func finishTogether() {
        mutex.lock()
        finishing = true
        while !done { changed.wait(mutex) }
        mutex.unlock()
    }

    private var previous: Int { (rank + size - 1) % size }
    private var next: Int { (rank + 1) % size }

    private func watch() {
        var inbox: UInt8 = 0
        var beat: UInt8 = 1
        var receive: MPI_Request?
        var send: MPI_Request?
        var barrier: MPI_Request?
        var heard = monotonicNanos()
        var sent: UInt64 = 0
        func fail(_ call: String, _ code: Int32) -> Never {
            MPI.abort("rank \(rank): the heartbeat ring failed: \(call): \(errorString(code))")
        }
        while true {
            let now = monotonicNanos()
            let finishing = mutex.withLock { () -> Bool in
                lastTurn = now
                return self.finishing
            }
            // What the previous rank said.
            if receive == nil {
                let rc = MPI_Irecv(&inbox, 1, cmpi_byte(), Int32(previous), 1, comm, &receive)
                if rc != cmpi_success() { fail("MPI_Irecv", rc) }
            }
            var flag: Int32 = 0
            var rc = MPI_Test(&receive, &flag, cmpi_status_ignore())
            if rc != cmpi_success() { fail("MPI_Test", rc) }
            if flag != 0 {
                heard = now
                receive = nil
                continue  // take every beat that has come
            }
            if now &- heard > timeout {
                MPI.abort(
                    "rank \(previous) on host \(hosts[previous]) was lost: no heartbeat for "
                        + "\(Double(now &- heard) / 1e9) s (rank \(rank) on \(hosts[rank]) noticed)")
            }
            // Say this rank is alive.
            if send != nil {
                rc = MPI_Test(&send, &flag, cmpi_status_ignore())
                if rc != cmpi_success() { fail("MPI_Test", rc) }
                if flag != 0 { send = nil }
            }
            if send == nil && now &- sent >= interval {
                rc = MPI_Isend(&beat, 1, cmpi_byte(), Int32(next), 1, comm, &send)
                if rc != cmpi_success() { fail("MPI_Isend", rc) }
                sent = now
            }
            // Everyone done?
            if finishing {
                if barrier == nil {
                    rc = MPI_Ibarrier(comm, &barrier)
                    if rc != cmpi_success() { fail("MPI_Ibarrier", rc) }
                }
                rc = MPI_Test(&barrier, &flag, cmpi_status_ignore())
                if rc != cmpi_success() { fail("MPI_Test", rc) }
                if flag != 0 { break }
            }
            usleep(10_000)  // a turn is a few MPI_Tests: 100 a second is plenty for beats 250 ms apart
        }
        // Every rank has passed the barrier: the last beats may stay unread.
        if receive != nil {
            MPI_Cancel(&receive)
            MPI_Wait(&receive, cmpi_status_ignore())
        }
        if send != nil { MPI_Wait(&send, cmpi_status_ignore()) }
        mutex.withLock {
            done = true
            changed.broadcast()
        }
    }

    /// Ends the process if the watch thread stops turning for `timeout`
    /// (stuck in an MPI call): without MPI, which may be what is stuck.
    private func deadline() {
        while true {
            usleep(UInt32(min(interval / 1_000, 1_000_000)))
            let (stuck, over) = mutex.withLock { (monotonicNanos() &- lastTurn, done) }
            if over { return }
            if stuck > timeout {
                writeStderr(
                    "fleet: rank \(rank) on \(hosts[rank]): the MPI library has not returned for "
                        + "\(Double(stuck) / 1e9) s; ending this rank\n")
                _exit(1)
            }
        }
    }
}
#endif
