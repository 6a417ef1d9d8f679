#if MPI
import Foundation
import Testing

// The MPI backend's tests: each starts a program under `mpirun` (the
// FleetMPIChecks scenarios, the GaussianMixture example) and checks what
// it printed and how it ended. Every run has a hard time limit, so a hang
// fails the test instead of stalling the suite.

/// The result of one `mpirun`.
struct MPIRun {
    let output: String
    let status: Int32
    let seconds: Double
    let timedOut: Bool
}

/// Runs `program` (built beside the test runner) on `ranks` ranks of this
/// machine, or with `launch` as the whole command line before the program
/// (for runs across the test hosts). Kills it after `limit` seconds.
func mpirun(
    _ ranks: Int, _ program: String, _ arguments: [String], limit: Double = 120,
    environment: [String: String] = [:], launch: [String]? = nil
) throws -> MPIRun {
    let path = URL(fileURLWithPath: fleetPath).deletingLastPathComponent().appendingPathComponent(program).path
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    let exports = environment.keys.sorted().flatMap { ["-x", $0] }
    process.arguments =
        (launch ?? ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "\(ranks)"])
        + exports + [path] + arguments
    var env = ProcessInfo.processInfo.environment
    env["OMPI_MCA_pml"] = "ob1"
    // Shared memory on one machine; across hosts, the launch line says.
    env["OMPI_MCA_btl"] = launch == nil ? "self,vader" : nil
    for (key, value) in environment { env[key] = value }
    process.environment = env
    let out = Pipe()
    process.standardOutput = out
    process.standardError = out
    let began = Date()
    try process.run()
    // mpirun passes SIGTERM on to the ranks; SIGKILL if even that hangs.
    let pid = process.processIdentifier
    let killer = DispatchWorkItem {
        guard process.isRunning else { return }
        kill(pid, SIGTERM)
        DispatchQueue.global().asyncAfter(deadline: .now() + 10) { if process.isRunning { kill(pid, SIGKILL) } }
    }
    DispatchQueue.global().asyncAfter(deadline: .now() + limit, execute: killer)
    let data = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    killer.cancel()
    let seconds = Date().timeIntervalSince(began)
    let output = String(decoding: data, as: UTF8.self)
    // Under Thread Sanitizer the ranks are instrumented too: a race there fails the test.
    #expect(!output.contains("WARNING: ThreadSanitizer"), "\(output)")
    return MPIRun(
        output: output, status: process.terminationStatus,
        seconds: seconds, timedOut: seconds >= limit)
}

/// The largest relative difference between two fits' parameters (JSON
/// files written by GaussianMixture --output).
func fitDifference(_ a: String, _ b: String) throws -> Double {
    func load(_ path: String) throws -> [String: [Double]] {
        let object = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path)))
        return try #require(object as? [String: [Double]])
    }
    let x = try load(a)
    let y = try load(b)
    #expect(x.keys.sorted() == ["means", "variances", "weights"] && x.keys.sorted() == y.keys.sorted())
    var worst = 0.0
    for (key, values) in x {
        let other = try #require(y[key])
        #expect(values.count == other.count && !values.isEmpty)
        for (p, q) in zip(values, other) { worst = max(worst, abs(p - q) / max(abs(p), abs(q), 1e-300)) }
    }
    return worst
}

func temporaryPath(_ name: String) -> String {
    FileManager.default.temporaryDirectory.appendingPathComponent("fleet-\(getpid())-\(name)").path
}

@Suite(.serialized) struct MPITests {
    @Test func communicatorCallsOnTwoThreeAndFourRanks() throws {
        for ranks in [2, 3, 4] {
            let run = try mpirun(ranks, "FleetMPIChecks", ["collectives"])
            #expect(run.status == 0 && run.output.contains("ok collectives on \(ranks) ranks"), "\(run.output)")
        }
    }

    @Test func messagesSplitIntoChunksArriveWhole() throws {
        // A 64-byte message limit makes every collective and send split.
        let run = try mpirun(3, "FleetMPIChecks", ["collectives"], environment: ["FLEET_MPI_MAX_MESSAGE": "64"])
        #expect(run.status == 0 && run.output.contains("split at 64 bytes"), "\(run.output)")
    }

    @Test(.disabled(if: underSanitizer, "2 GiB buffers on two ranks under Thread Sanitizer's shadow memory"))
    func aMessageOverTwoGiBArrivesWhole() throws {
        let run = try mpirun(2, "FleetMPIChecks", ["huge"], limit: 300)
        #expect(run.status == 0 && run.output.contains("ok huge"), "\(run.output)")
    }

    @Test func theExecutorAPIWorksOverRanks() throws {
        for ranks in [2, 3] {
            let run = try mpirun(ranks, "FleetMPIChecks", ["executor"], limit: 240)
            #expect(run.status == 0 && run.output.contains("ok executor on \(ranks) ranks"), "\(run.output)")
            #expect(run.output.contains("failed: FleetTestTasks.TaskFailure on rank "), "\(run.output)")
        }
    }

    @Test func theExecutorWorksWhenItsMessagesAreSplit() throws {
        // 1 MiB: exactly the size of the big inputs the check sends from
        // the caller's arrays, the edge of the split protocol.
        let run = try mpirun(
            3, "FleetMPIChecks", ["executor"], limit: 240, environment: ["FLEET_MPI_MAX_MESSAGE": "1048576"])
        #expect(run.status == 0 && run.output.contains("ok executor on 3 ranks"), "\(run.output)")
    }

    @Test func aProgramThatEndsWithItsPoolUpStopsEveryRank() throws {
        let run = try mpirun(3, "FleetMPIChecks", ["end"], limit: 60)
        #expect(run.status == 0 && run.output.contains("ok end"), "\(run.output)")
        #expect(!run.output.contains("MPI_ABORT"), "\(run.output)")
    }

    @Test func aRankThatDiesEndsTheJobNamingIt() throws {
        let run = try mpirun(3, "FleetMPIChecks", ["die"], limit: 120)
        #expect(!run.timedOut, "the job hung after a rank died")
        #expect(run.status != 0, "\(run.output)")
        #expect(!run.output.contains("the map finished"), "\(run.output)")
        #expect(run.output.range(of: #"rank [12]"#, options: .regularExpression) != nil, "\(run.output)")
    }

    /// A rank stopped (SIGSTOP) in the middle of collectives in `MPI.run`
    /// ends the job in bounded time, named by the ranks that noticed.
    @Test func aStoppedRankInCollectiveCodeEndsTheJobNamingIt() throws {
        let run = try mpirun(3, "FleetMPIChecks", ["stopped", "1"], limit: 90)
        #expect(!run.timedOut, "the job hung after rank 1 stopped: \(run.output)")
        #expect(run.status != 0, "\(run.output)")
        #expect(run.output.contains("rank 1 on host ") && run.output.contains("was lost"), "\(run.output)")
        print("a stopped rank in MPI.run (heartbeat time-out 2 s): the job ended after \(run.seconds) s")
    }

    /// Ranks that finish at different times are not lost: they answer
    /// until every rank has returned.
    @Test func ranksThatFinishApartAreNotCalledLost() throws {
        let run = try mpirun(3, "FleetMPIChecks", ["uneven"], limit: 60)
        #expect(run.status == 0 && run.output.contains("ok uneven"), "\(run.output)")
        #expect(!run.output.contains("was lost"), "\(run.output)")
    }

    @Test func oneRankIsNotEnoughForAnExecutor() throws {
        let run = try mpirun(1, "FleetMPIChecks", ["executor"], limit: 60)
        #expect(run.status != 0)
        #expect(run.output.contains("needs at least 2 ranks"), "\(run.output)")
    }

    @Test func theEMFitAcrossRanksMatchesTheSerialFit() throws {
        let serial = temporaryPath("em-serial.json")
        let spread = temporaryPath("em-mpi.json")
        defer { for p in [serial, spread] { try? FileManager.default.removeItem(atPath: p) } }
        let size = ["--points", "12000", "--iterations", "12"]
        let alone = try runProgram("GaussianMixture", size + ["--output", serial], errors: true)
        #expect(alone.1 == 0 && alone.0.contains("in one process"), "\(alone.0)")
        let run = try mpirun(3, "GaussianMixture", size + ["--output", spread], limit: 240)
        #expect(run.status == 0 && run.output.contains("on 3 ranks"), "\(run.output)")
        let difference = try fitDifference(serial, spread)
        #expect(difference <= 1e-6, "the fits differ by \(difference) (relative)")
        // And the comparison can fail: another seed gives another fit.
        let other = temporaryPath("em-other.json")
        defer { try? FileManager.default.removeItem(atPath: other) }
        _ = try runProgram("GaussianMixture", size + ["--seed", "7", "--output", other])
        #expect(try fitDifference(serial, other) > 1e-3)
    }
}
#endif

#if MPI
@Suite(.serialized) struct MPIBenchTests {
    @Test func benchRunsTheMPIWorkloadsAndTheCAllreduce() throws {
        // The C program goes beside fleet, where `fleet bench` looks for it
        // (scripts/bench builds it the same way).
        let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Benchmarks/allreduce.c").path
        let program = URL(fileURLWithPath: fleetPath).deletingLastPathComponent().appendingPathComponent(
            "fleet-allreduce-c"
        ).path
        let (built, status) = try shell("mpicc -O2 -o '\(program)' '\(source)'")
        try #require(status == 0, "\(built)")
        let (out, code) = try runFleetWithErrors([
            "bench", "--backend", "mpi", "--workload", "futures", "tiny", "allreduce",
            "--runs", "1", "--json",
        ])
        #expect(code == 0, "\(out)")
        var rows: [String: String] = [:]
        for line in out.split(separator: "\n") where line.hasPrefix("{") {
            let record = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            let key = "\(record?["workload"] as? String ?? "?")/\(record?["backend"] as? String ?? "?")"
            rows[key] = record?["check"] as? String
        }
        #expect(
            rows == ["futures/mpi": "ok", "tiny/mpi": "ok", "allreduce/mpi": "ok", "allreduce/mpi-c": "ok"], "\(out)")
    }

    @Test func benchUnderMpirunSaysToRunItAlone() throws {
        let run = try mpirun(1, "fleet", ["bench", "--backend", "mpi", "--workload", "tiny", "--runs", "1"], limit: 60)
        #expect(run.status != 0)
        #expect(run.output.contains("run fleet bench itself, not under mpirun"), "\(run.output)")
    }
}
#endif
