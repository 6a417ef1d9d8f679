import ArgumentParser
import Fleet
import Foundation

// The standard workloads on the processes backend: the same work as
// Workloads.swift, declared as remote tasks (BenchTasks).

func runOnProcesses(_ workload: Workload, workers: Int, cpuK: Int) async throws -> Measurement {
    if workload == .startup { return try await startupProcesses(workers: workers) }
    let pool = try Pool.processes(workers: workers)
    try await pool.waitUntilReady()
    var m = try await remoteWorkload(workload, on: pool, workers: workers, cpuK: cpuK)
    m.workerPeakBytes = pool.workerProcessIDs.reduce(0) { $0 + peakRSSBytes(pid: "\($1)") }
    await pool.shutdown()
    return m
}

/// One run of `workload` on a pool of workers outside this process (the
/// processes and MPI backends): the tasks are BenchTasks' remote tasks.
func remoteWorkload(_ workload: Workload, on pool: Pool, workers: Int, cpuK: Int) async throws -> Measurement {
    let m: Measurement
    switch workload {
    case .tiny:
        _ = try await pool.map(0..<tinyCount, BenchTasks.square)  // untimed warm-up
        let start = monotonicSeconds()
        let out = try await pool.map(0..<tinyCount, BenchTasks.square)
        let seconds = monotonicSeconds() - start
        m = Measurement(
            tasks: tinyCount, seconds: seconds, figure: Double(tinyCount) / seconds, unit: "tasks/s",
            check: tinyCheck(out))
    case .futures:
        let n = 100_000
        _ = try await wait((0..<1_000).map { try pool.submit(BenchTasks.noop, $0) })  // untimed warm-up
        var list: [Future<Int>] = []
        list.reserveCapacity(n)
        let start = monotonicSeconds()
        for i in 0..<n { list.append(try pool.submit(BenchTasks.noop, i)) }
        let (done, pending) = try await wait(list)
        let seconds = monotonicSeconds() - start
        var wrong = 0
        for (i, f) in list.enumerated() where (try? await f.value) != i { wrong += 1 }
        let check = done.count == n && pending.isEmpty && wrong == 0 ? "ok" : "\(done.count) done, \(wrong) wrong"
        m = Measurement(tasks: n, seconds: seconds, figure: seconds / Double(n) * 1e6, unit: "us/future", check: check)
    case .cpu:
        let ranges = (0..<cpuTasks).map { PrimeRange(lo: $0 * cpuK, hi: ($0 + 1) * cpuK) }
        let start = monotonicSeconds()
        let counts = try await pool.map(ranges, BenchTasks.primes)
        let seconds = monotonicSeconds() - start
        m = Measurement(
            tasks: cpuTasks, seconds: seconds, figure: 0, unit: "x serial",
            check: cpuCheck(counts.reduce(0, +), k: cpuK))
    case .io:
        let n = 1_000
        let start = monotonicSeconds()
        let out = try await pool.map(0..<n, BenchTasks.sleep10ms)
        let seconds = monotonicSeconds() - start
        let ideal = 0.010 * Double(n) / Double(min(workers, n))
        m = Measurement(
            tasks: n, seconds: seconds, figure: seconds / ideal, unit: "x ideal",
            check: out == Array(0..<n) ? "ok" : "wrong results")
    case .payload:
        let inputs = payloadInputs()
        let start = monotonicSeconds()
        let hashes = try await pool.map(inputs, BenchTasks.fnv)
        let seconds = monotonicSeconds() - start
        m = payloadMeasurement(hashes, inputs, seconds: seconds)
    case .bigresult:
        let start = monotonicSeconds()
        let sum = try await pool.reduce(
            0..<bigTasks, into: [UInt32](repeating: 0, count: bigCount), BenchTasks.bigArray,
            options: MapOptions(window: 4), merge: addBig)
        let seconds = monotonicSeconds() - start
        m = bigMeasurement(sum, seconds: seconds)
    case .records:
        let start = monotonicSeconds()
        let total = try await pool.reduce(0..<recordTasks, into: [String: Int](), BenchTasks.record, merge: mergeRecord)
        m = recordsMeasurement(total, seconds: monotonicSeconds() - start)
    case .graph:
        m = try await graphWorkload(pool)
    case .startup, .allreduce:
        throw ValidationError("\(workload) is not a workload for a pool of remote workers")
    }
    return m
}

func startupProcesses(workers: Int) async throws -> Measurement {
    let cycles = 20
    var times: [Double] = []
    var ok = true
    for c in 0..<cycles {
        let start = monotonicSeconds()
        let pool = try Pool.processes(workers: workers)
        let value = try await pool.submit(BenchTasks.square, c).value
        await pool.shutdown()
        times.append(monotonicSeconds() - start)
        ok = ok && value == c &* c
    }
    return Measurement(
        tasks: cycles, seconds: times.reduce(0, +), figure: median(times) * 1000, unit: "ms/cycle",
        check: ok ? "ok" : "wrong task result")
}

// MARK: - payload (every backend)

let payloadTasks = 256
let payloadBytes = 4 << 20

/// Byte j of buffer i is (i + j) % 251. Made before the clock starts.
func payloadInputs() -> [[UInt8]] {
    (0..<payloadTasks).map { i in
        [UInt8](unsafeUninitializedCapacity: payloadBytes) { b, n in
            var v = i % 251
            for j in 0..<payloadBytes {
                b[j] = UInt8(v)
                v += 1
                if v == 251 { v = 0 }
            }
            n = payloadBytes
        }
    }
}

func payloadMeasurement(_ hashes: [UInt64], _ inputs: [[UInt8]], seconds: Double) -> Measurement {
    let check =
        hashes.count == inputs.count && zip(hashes, inputs).allSatisfy { $0 == fnv1a($1) }
        ? "ok" : "wrong hashes"
    let mib = Double(payloadTasks * payloadBytes) / 1_048_576
    return Measurement(tasks: payloadTasks, seconds: seconds, figure: mib / seconds, unit: "MiB/s", check: check)
}

func payload(_ pool: Pool) async throws -> Measurement {
    let inputs = payloadInputs()
    let start = monotonicSeconds()
    let hashes = try await pool.map(inputs) { fnv1a($0) }
    let seconds = monotonicSeconds() - start
    return payloadMeasurement(hashes, inputs, seconds: seconds)
}

// MARK: - bigresult helpers

func addBig(_ acc: inout [UInt32], _ part: [UInt32]) {
    acc.withUnsafeMutableBufferPointer { a in
        part.withUnsafeBufferPointer { p in
            for j in 0..<bigCount { a[j] &+= p[j] }
        }
    }
}

func bigMeasurement(_ sum: [UInt32], seconds: Double) -> Measurement {
    var total: UInt64 = 0
    for v in sum { total &+= UInt64(v) }
    let expected = bigExpectedTotal()
    return Measurement(
        tasks: bigTasks, seconds: seconds, figure: 0, unit: "MiB peak",
        check: total == expected ? "ok" : "total \(total), expected \(expected)")
}

// MARK: - graph (every backend)

let graphLeaves = 65_536

/// 65,536 leaves (leaf k = k), then pairwise sums level by level: 131,071
/// nodes, all remote task nodes so that every backend runs the same graph.
/// Built before the clock starts; the clock times `compute`.
func graphWorkload(_ pool: Pool) async throws -> Measurement {
    var level = (0..<graphLeaves).map { Graph.call(BenchTasks.leaf, Graph.value($0)) }
    var nodes = level.count
    while level.count > 1 {
        level = stride(from: 0, to: level.count, by: 2).map { Graph.call(BenchTasks.sum, [level[$0], level[$0 + 1]]) }
        nodes += level.count
    }
    let start = monotonicSeconds()
    let root = try await pool.compute(level[0])
    let seconds = monotonicSeconds() - start
    let expected = graphLeaves * (graphLeaves - 1) / 2
    return Measurement(
        tasks: nodes, seconds: seconds, figure: seconds / Double(nodes) * 1e6, unit: "us/node",
        check: root == expected ? "ok" : "root \(root), expected \(expected)")
}
