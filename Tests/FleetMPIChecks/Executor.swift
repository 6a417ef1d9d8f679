#if MPI
import Fleet
import FleetTestTasks
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The executor API over the ranks: every form of map, futures, reduce,
/// progress, errors with index and rank, time-outs, cancellation, graphs.
func checkExecutor() async throws {
    let pool = try Pool.mpi()  // ranks other than 0 serve here until the end
    let n = try MPI.world.size
    expect(pool.kind == .mpi && pool.workerCount == n - 1, "kind \(pool.kind), \(pool.workerCount) workers")
    expect(try Pool.mpi() === pool, "one pool per job")
    expect(try Pool.make(.mpi) === pool, "Pool.make(.mpi) gives the job's pool")
    do {
        _ = try Pool.make(.mpi, workers: n + 5)
        fail("Pool.make(.mpi) took a worker count mpirun did not give")
    } catch FleetError.invalidArgument(let message) {
        expect(message.contains("set the count with mpirun -np"), message)
    }

    // Ordered map, automatic and fixed batches; every serving rank works.
    let squares = try await pool.map(0..<20_000, TestTasks.square)
    expect(squares == (0..<20_000).map { $0 * $0 }, "map of squares")
    for size in [1, 7, 1_000] {
        let out = try await pool.map(0..<2_000, TestTasks.square, options: MapOptions(batchSize: size))
        expect(out == (0..<2_000).map { $0 * $0 }, "map with batches of \(size)")
    }
    let ranks = Set(
        try await pool.map(Array(repeating: 0, count: 400), MPITasks.whereAmI, options: MapOptions(batchSize: 1)))
    expect(ranks == Set(1..<n), "ranks that ran tasks: \(ranks.sorted())")

    // Unordered: every index once.
    var seen = [Int](repeating: 0, count: 5_000)
    for try await (index, value) in pool.mapUnordered(0..<5_000, TestTasks.square) {
        expect(value == index * index, "unordered value at \(index)")
        seen[index] += 1
    }
    expect(seen.allSatisfy { $0 == 1 }, "unordered: every index exactly once")

    // Streaming over endless input stops when the caller does, having
    // pulled no more than the window.
    var streamed = 0
    for try await value in pool.stream((0...).lazy.map { $0 }, TestTasks.square, options: MapOptions(window: 64)) {
        expect(value == streamed * streamed, "stream value \(streamed)")
        streamed += 1
        if streamed == 1_000 { break }
    }

    // Futures, asCompleted, wait.
    let futures = try (0..<500).map { try pool.submit(TestTasks.square, $0) }
    var total = 0
    for future in futures { total += try await future.value }
    expect(total == (0..<500).reduce(0) { $0 + $1 * $1 }, "futures sum")
    let more = try (0..<50).map { try pool.submit(TestTasks.square, $0) }
    var completed = 0
    for await _ in asCompleted(more) { completed += 1 }
    expect(completed == 50, "asCompleted gave \(completed)")

    // Reduce, as results arrive.
    let sum = try await pool.reduce(0..<10_000, into: 0, TestTasks.square) { $0 += $1 }
    expect(sum == (0..<10_000).reduce(0) { $0 + $1 * $1 }, "reduce")

    // Progress counts every item.
    let last = LastSnapshot()
    _ = try await pool.map(0..<3_000, TestTasks.square, options: MapOptions(progress: { last.set($0) }))
    expect(last.get()?.completed == 3_000, "progress ended at \(String(describing: last.get()))")

    // Big inputs (sent from their own buffers) and big results.
    let buffers = (0..<12).map { i in [UInt8](repeating: UInt8(i), count: 1 << 20) }
    let sums = try await pool.map(buffers, TestTasks.sumBytes)
    expect(sums == (0..<12).map { $0 * (1 << 20) }, "sums of 1 MiB inputs")
    let structs = try await pool.map([3, 300_000], TestTasks.bigStruct)
    expect(
        structs.map(\.values.count) == [3, 300_000]
            && structs[1].values[299_999] == UInt16(truncatingIfNeeded: 299_999),
        "big results")

    // A task's error reaches the driver with its index and its rank.
    do {
        _ = try await pool.map(0..<40, TestTasks.failOn7)
        fail("failOn7 did not fail")
    } catch let failure as ItemFailure {
        let remote = failure.underlying as? RemoteError
        expect(failure.index == 7, "failed index \(failure.index)")
        expect(remote?.origin?.hasPrefix("rank ") == true, "the error names its rank: \(failure)")
        print("error as the driver sees it: \(failure)")
    }
    let results = try await pool.mapResults(0..<20, TestTasks.failOn7)
    expect(results.enumerated().allSatisfy { i, r in (try? r.get()) == (i % 10 == 7 ? nil : i) }, "mapResults")

    // A time-out fails its item at once; the rank serves again when the
    // task returns.
    let slow = try pool.submit(TestTasks.sleep, 1_500, timeout: .milliseconds(200))
    do {
        _ = try await slow.value
        fail("no time-out")
    } catch FleetError.timedOut {}
    expect(
        try await pool.map(0..<100, TestTasks.square) == (0..<100).map { $0 * $0 }, "the pool works after a time-out")

    // Cancelling the caller stops the map, and running tasks see it.
    let spinning = Task {
        try await pool.map(
            Array(repeating: 5_000, count: 2 * (n - 1)), TestTasks.spinUntilCancelled,
            options: MapOptions(batchSize: 1))
    }
    try await Task.sleep(for: .milliseconds(300))
    let began = ContinuousClock.now
    spinning.cancel()
    _ = try? await spinning.value
    expect(ContinuousClock.now - began < .seconds(4), "cancellation took \(ContinuousClock.now - began)")
    let saw = try await pool.map(Array(repeating: 1, count: 4), TestTasks.spinUntilCancelled)
    expect(saw == [false, false, false, false], "a fresh map is not cancelled")

    // Task graphs run on the ranks.
    let leaves = (0..<64).map { Graph.call(TestTasks.leaf, Graph.value($0)) }
    var level = leaves
    while level.count > 1 {
        level = stride(from: 0, to: level.count, by: 2).map {
            Graph.call(TestTasks.sumAll, [level[$0], level[$0 + 1]])
        }
    }
    let root = try await pool.compute(level[0])
    expect(root == (0..<64).reduce(0, +), "graph root \(root)")

    // Closures cannot go to ranks.
    do {
        _ = try await pool.map(0..<3) { $0 + 1 }
        fail("a closure ran on MPI")
    } catch FleetError.notRemote {}

    await pool.shutdown()
    do {
        _ = try pool.submit(TestTasks.square, 2)
        fail("a shut-down pool took work")
    } catch FleetError.poolShutDown {}
    print("ok executor on \(n) ranks")
}

/// The last progress snapshot a map reported.
final class LastSnapshot: @unchecked Sendable {
    // Safe: `value` is touched only with `lock` held.
    private let lock = NSLock()
    private var value: ProgressSnapshot?
    func set(_ s: ProgressSnapshot) { lock.withLock { value = s } }
    func get() -> ProgressSnapshot? { lock.withLock { value } }
}

/// A rank kills itself in the middle of a map: the job must end, with
/// `mpirun` naming the rank, not hang.
func dieMidMap() async throws {
    let pool = try Pool.mpi()
    let inputs = (0..<4_000).map { $0 == 1_000 ? -1 : $0 }
    _ = try await pool.map(inputs, MPITasks.killRank, options: MapOptions(batchSize: 1))
    print("the map finished although a rank died")
}

/// A long map for cutting a host off: creates the file named by its
/// argument once the pool is up, then prints what the map gave.
func slowMap() async throws {
    var options = MPIOptions()
    options.heartbeatInterval = .milliseconds(100)
    options.heartbeatTimeout = .seconds(2)
    options.lostRankGrace = .seconds(1)
    let pool = try Pool.mpi(options: options)
    print("started")
    fflush(nil)
    // Tell the test the job is under way.
    if let marker = CommandLine.arguments.dropFirst(2).first {
        _ = FileManager.default.createFile(atPath: marker, contents: nil)
    }
    do {
        if CommandLine.arguments.dropFirst(3).first == "big" {
            // Ranks busy sending big replies, so a cut finds them mid-send.
            var count = 0
            for try await _ in pool.mapUnordered(0..<100_000, TestTasks.megabyte) { count += 1 }
            print("finished \(count)")
        } else {
            let out = try await pool.map(
                Array(repeating: 20, count: 3_000), TestTasks.sleep, options: MapOptions(batchSize: 1))
            print("finished \(out.count)")
        }
    } catch {
        print("driver caught: \(error)")
    }
    fflush(nil)
}
#endif
