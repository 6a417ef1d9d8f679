import ArgumentParser
import Fleet
import Foundation

// The standard workloads on the MPI backend (`fleet run-one --backend mpi`
// under mpirun, N workers = N + 1 ranks): rank 0 drives the executor over
// the other ranks with BenchTasks' remote tasks, and prints the record;
// `allreduce` runs on every rank, as Benchmarks/allreduce.c does in C.

/// Environment for the MPI runs: Open MPI's shared-memory transport, which
/// starts in about a third of the time of its default probing, unless the
/// caller chose transports.
func mpiEnvironment() -> [String: String] {
    var env = ProcessInfo.processInfo.environment
    if env["OMPI_MCA_pml"] == nil && env["OMPI_MCA_btl"] == nil {
        env["OMPI_MCA_pml"] = "ob1"
        env["OMPI_MCA_btl"] = "self,vader"
    }
    return env
}

/// The C allreduce program, which scripts/bench builds beside `fleet`.
func allreduceProgram(beside fleet: URL) throws -> String {
    let path = fleet.deletingLastPathComponent().appendingPathComponent("fleet-allreduce-c").path
    guard FileManager.default.isExecutableFile(atPath: path) else {
        throw ValidationError(
            """
            the mpi-c backend runs \(path), which is not there: scripts/bench builds it, or \
            mpicc -O2 -o \(path) Benchmarks/allreduce.c
            """)
    }
    return path
}

/// allreduce: 8 MiB of Doubles, as in Benchmarks/allreduce.c.
let allreduceCount = 1 << 20
let allreduceWarmup = 3
let allreduceCalls = 40

#if MPI
func runOnMPI(_ workload: Workload, workers: Int, cpuK: Int) async throws -> Measurement {
    let world = try MPI.world
    guard world.size == workers + 1 else {
        throw ValidationError(
            "an mpi run with \(workers) workers needs \(workers + 1) ranks (mpirun -np \(workers + 1)), not \(world.size)"
        )
    }
    if workload == .allreduce {
        // Rank 0 returns its measurement, so no rank uses MPI.run (whose
        // heartbeat ring every rank must join); MPI ends at exit.
        if world.rank != 0 {
            do { _ = try allreduceWorkload(world) } catch { MPI.abort("rank \(world.rank): \(error)") }
            exit(0)
        }
        return try allreduceWorkload(world)
    }
    let pool = try Pool.mpi()  // the other ranks serve here until the pool shuts down
    var m = try await remoteWorkload(workload, on: pool, workers: workers, cpuK: cpuK)
    m.workerPeakBytes = try await rankPeaks(pool, ranks: workers)
    await pool.shutdown()
    return m
}

/// Every rank sums its 8 MiB in place; rank 0's time per call.
func allreduceWorkload(_ world: Communicator) throws -> Measurement {
    let pristine = (0..<allreduceCount).map { Double((world.rank + 1) * ($0 % 1000)) }
    var buffer = pristine
    var total = 0.0
    for call in 0..<(allreduceWarmup + allreduceCalls) {
        // Refill in place (no copy-on-write inside the timed call).
        buffer.withUnsafeMutableBufferPointer { _ = $0.update(fromContentsOf: pristine) }
        try world.barrier()
        let began = monotonicSeconds()
        try world.allreduce(&buffer, .sum)
        if call >= allreduceWarmup { total += monotonicSeconds() - began }
    }
    let ranksSum = world.size * (world.size + 1) / 2
    var wrong = 0
    for j in 0..<allreduceCount where buffer[j] != Double(ranksSum * (j % 1000)) { wrong += 1 }
    let wrongAnywhere = try world.allreduce(wrong, .sum)
    let peaks = try world.allreduce(peakRSSBytes(), .sum)
    return Measurement(
        tasks: allreduceCalls, seconds: total, figure: total / Double(allreduceCalls) * 1e6,
        unit: "us/call", check: wrongAnywhere == 0 ? "ok" : "\(wrongAnywhere) wrong sums",
        workerPeakBytes: peaks - peakRSSBytes())
}

/// The peak memory of the serving ranks, summed: each rank reports its own
/// through a small task; enough of them that every rank runs some.
func rankPeaks(_ pool: Pool, ranks: Int) async throws -> Int {
    var peaks: [Int: Int] = [:]
    for _ in 0..<20 where peaks.count < ranks {
        let reports = try await pool.map(
            Array(repeating: 2, count: 4 * ranks), BenchTasks.peakRSS,
            options: MapOptions(batchSize: 1))
        for r in reports { peaks[r.rank] = max(peaks[r.rank] ?? 0, r.bytes) }
    }
    return peaks.values.reduce(0, +)
}
#else
func runOnMPI(_ workload: Workload, workers: Int, cpuK: Int) async throws -> Measurement {
    throw ValidationError(
        "this fleet was built without the MPI trait: swift build -c release --traits MPI (scripts/bench does)")
}
#endif
