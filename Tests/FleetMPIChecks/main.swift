import Fleet
import FleetTestTasks
import Foundation

#if canImport(Glibc)
import Glibc
#endif

// The MPI checks of the test suite, run under `mpirun` by MPITests: each
// scenario checks its results on every rank and prints `ok <scenario>`
// from rank 0, or `FAILED: ...` and exits 1. Scenarios:
//   collectives  every communicator call, numbers and Codable values
//   huge         a message over 2 GiB
//   executor     the executor API over the ranks
//   die          a rank kills itself mid-map: the job must end, naming it
//   end          the program ends without shutting its pool down
//   slow FILE [big]  a long map, for cutting a host off mid-run (FILE: made when it starts;
//                big: of 1 MiB results, so ranks are mid-send)
//   hosts        prints each rank's host name
//   stopped R    collectives in MPI.run; rank R stops itself (SIGSTOP) midway:
//                the others must end the job, naming it
//   loop FILE    collectives in MPI.run for minutes, default heartbeats (FILE:
//                made when they start), for cutting a host off
//   uneven       MPI.run where rank 1 returns 3 heartbeat time-outs after the
//                others: no rank may be called lost
// Built without the MPI trait, it says so and exits 2.

/// The rank this process has under mpirun (also inside tasks).
func launchRank() -> Int { getenv("OMPI_COMM_WORLD_RANK").flatMap { Int(String(cString: $0)) } ?? -1 }

enum MPITasks {
    static let whereAmI = RemoteTask("whereAmI") { (_: Int) -> Int in launchRank() }
    /// Kills the rank it runs on when x is negative; else returns x.
    static let killRank = RemoteTask("killRank") { (x: Int) -> Int in
        if x < 0 { kill(getpid(), SIGKILL) }
        usleep(2_000)
        return x
    }
    static let all: [any RemoteTaskDeclaration] = TestTasks.all + [whereAmI, killRank]
}

func fail(_ message: String) -> Never {
    print("FAILED: \(message)")
    fflush(nil)
    exit(1)
}

func expect(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fail(message()) }
}

try RemoteTasks.bootstrap(MPITasks.all)
let scenario = CommandLine.arguments.dropFirst().first ?? ""

#if MPI
switch scenario {
case "collectives": MPI.run { _ in try checkCollectives() }
case "huge": MPI.run { _ in try checkHuge() }
case "executor": try await checkExecutor()
case "die": try await dieMidMap()
case "slow": try await slowMap()
case "end":
    // The program ends with its pool still up: the ranks must still stop
    // and the job end cleanly.
    let pool = try Pool.mpi()
    let out = try await pool.map(0..<1_000, TestTasks.square)
    expect(out.last == 999 * 999, "map before the end")
    print("ok end")
case "stopped":
    let victim = Int(CommandLine.arguments.dropFirst(2).first ?? "") ?? 1
    MPI.run(heartbeatTimeout: .seconds(2)) { comm in
        var total = 0.0
        for i in 0..<10_000 {
            if i == 20 && comm.rank == victim { raise(SIGSTOP) }
            total += try comm.allreduce(1.0, .sum)
            usleep(5_000)
        }
        print("FAILED: the job went on without rank \(victim) (\(total))")
    }
case "loop":
    // Collective code for a long time, with the default heartbeats.
    MPI.run { comm in
        if comm.rank == 0, let marker = CommandLine.arguments.dropFirst(2).first {
            _ = FileManager.default.createFile(atPath: marker, contents: nil)
        }
        for _ in 0..<60_000 {
            _ = try comm.allreduce(1.0, .sum)
            usleep(2_000)
        }
        if comm.rank == 0 { print("finished the loop") }
    }
case "uneven":
    MPI.run(heartbeatTimeout: .seconds(1)) { comm in
        expect(try comm.allreduce(comm.rank, .sum) == comm.size * (comm.size - 1) / 2, "allreduce")
        if comm.rank == 1 { usleep(3_000_000) }
        if comm.rank == 0 { print("ok uneven") }
    }
case "hosts":
    let world = try MPI.world
    let names = try world.gather(world.processorName)
    if let names { print("hosts " + names.joined(separator: " ")) }
default: fail("unknown scenario \"\(scenario)\"")
}
#else
print("built without the MPI trait")
exit(2)
#endif
