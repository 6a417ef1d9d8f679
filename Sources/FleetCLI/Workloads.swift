import ArgumentParser
import Dispatch
import Fleet
import Foundation

/// The standard workloads of shared/bench/WORKLOADS.md.
enum Workload: String, CaseIterable, ExpressibleByArgument {
    case tiny, futures, cpu, io, payload, bigresult, records, graph, startup, allreduce

    /// The worker count the contract names for it, if any.
    var fixedWorkers: Int? {
        switch self {
        case .io: return 100
        case .startup: return 2
        default: return nil
        }
    }
}

/// Where a workload runs: a Fleet backend; the `baseline` that calls
/// `DispatchQueue.concurrentPerform` directly with no Fleet code; or, for
/// `allreduce`, `mpi-c`, the same allreduce in C (the limit for `mpi`).
enum BenchBackend: String, CaseIterable, ExpressibleByArgument {
    case serial, threads, processes, baseline, mpi
    case mpiC = "mpi-c"

    var fleetKind: BackendKind? { BackendKind(rawValue: rawValue) }

    /// Backends run when none are named: those that need no MPI job.
    static let standard: [BenchBackend] = [.serial, .threads, .processes, .baseline]

    /// Whether it can run `workload`.
    func runs(_ workload: Workload) -> Bool {
        switch self {
        case .baseline: return workload == .tiny || workload == .cpu
        case .mpi: return [.tiny, .futures, .cpu, .payload, .records, .graph, .allreduce].contains(workload)
        case .mpiC: return workload == .allreduce
        case .serial, .threads, .processes: return workload != .allreduce
        }
    }

    /// Whether its runs start under `mpirun`.
    var isMPI: Bool { self == .mpi || self == .mpiC }
}

/// What one run measured, before it becomes a JSON record.
struct Measurement {
    var tasks: Int
    var seconds: Double
    var figure: Double
    var unit: String
    var check: String
    /// Peak resident memory of the worker processes, summed (processes).
    var workerPeakBytes = 0
}

/// Runs one workload once. The pool is made before the clock starts and
/// shut down after it stops, except for `startup`, which times exactly that.
func runWorkload(_ workload: Workload, backend: BenchBackend, workers: Int, cpuK: Int) async throws -> Measurement {
    switch backend {
    case .baseline:
        switch workload {
        case .tiny: return baselineTiny(workers: workers)
        case .cpu: return baselineCPU(k: cpuK)
        default: throw ValidationError("the baseline backend runs only tiny and cpu")
        }
    case .processes:
        return try await runOnProcesses(workload, workers: workers, cpuK: cpuK)
    case .mpi:
        return try await runOnMPI(workload, workers: workers, cpuK: cpuK)
    case .mpiC:
        throw ValidationError("mpi-c runs the C program, not fleet run-one")
    case .serial, .threads:
        let kind = backend.fleetKind!
        if workload == .startup { return try await startup(kind: kind, workers: workers) }
        return try await Pool.make(kind, workers: workers).shuttingDown { pool in
            switch workload {
            case .tiny: return try await tiny(pool)
            case .futures: return try await futures(pool)
            case .cpu: return try await cpu(pool, k: cpuK)
            case .io: return try await io(pool)
            case .bigresult: return try await bigresult(pool)
            case .records: return try await records(pool)
            case .payload: return try await payload(pool)
            case .graph: return try await graphWorkload(pool)
            case .startup: fatalError("handled above")
            case .allreduce: throw ValidationError("allreduce runs on the mpi backend only")
            }
        }
    }
}

extension Pool {
    /// Runs `body` with the pool, then shuts the pool down, whether `body`
    /// returned or threw.
    func shuttingDown<T>(after body: (Pool) async throws -> T) async throws -> T {
        let result: Result<T, any Error>
        do { result = .success(try await body(self)) } catch { result = .failure(error) }
        await shutdown(.cancelPending)
        return try result.get()
    }
}

// MARK: - tiny

let tinyCount = 1_000_000

/// The task of `tiny` as the baseline calls it: an opaque closure, one call
/// per item, the loop a Swift programmer writes around a function value.
/// (Fleet's `map` over a collection compiles its loop for a closure written
/// at the call site, as `tiny` does, and inlines it; a hand-written loop
/// with the body inlined is faster than both: the note in CHANGELOG.md.)
@inline(never)
func tinyTask() -> @Sendable (Int) -> Int { { $0 &* $0 } }

func tinyCheck(_ results: [Int]) -> String {
    guard results.count == tinyCount else { return "expected \(tinyCount) results, got \(results.count)" }
    var sum = 0
    for i in 0..<tinyCount {
        guard results[i] == i &* i else { return "result \(i) out of order or wrong" }
        sum &+= results[i]
    }
    var expected = 0
    for i in 0..<tinyCount { expected &+= i &* i }
    return sum == expected ? "ok" : "wrapping sum \(sum), expected \(expected)"
}

func tiny(_ pool: Pool) async throws -> Measurement {
    _ = try await pool.map(0..<tinyCount) { $0 &* $0 }  // untimed warm-up, as for the baseline
    let start = monotonicSeconds()
    let out = try await pool.map(0..<tinyCount) { $0 &* $0 }
    let seconds = monotonicSeconds() - start
    return Measurement(
        tasks: tinyCount, seconds: seconds, figure: Double(tinyCount) / seconds,
        unit: "tasks/s", check: tinyCheck(out))
}

/// The in-process limit: the parallel map a Swift programmer writes by hand
/// on `concurrentPerform`, contiguous chunks written straight into a new
/// array, one call of the task closure per item.
func baselineTiny(workers: Int) -> Measurement {
    let f = tinyTask()
    let chunks = workers * 8
    func run() -> [Int] {
        [Int](unsafeUninitializedCapacity: tinyCount) { buffer, count in
            nonisolated(unsafe) let base = buffer.baseAddress!
            DispatchQueue.concurrentPerform(iterations: chunks) { c in
                let lo = tinyCount * c / chunks
                let hi = tinyCount * (c + 1) / chunks
                for i in lo..<hi { (base + i).initialize(to: f(i)) }
            }
            count = tinyCount
        }
    }
    _ = run()  // untimed warm-up, as for Fleet
    let start = monotonicSeconds()
    let out = run()
    let seconds = monotonicSeconds() - start
    return Measurement(
        tasks: tinyCount, seconds: seconds, figure: Double(tinyCount) / seconds,
        unit: "tasks/s", check: tinyCheck(out))
}

// MARK: - futures

func futures(_ pool: Pool) async throws -> Measurement {
    let n = 100_000
    _ = try await wait((0..<n).map { _ in try pool.submit {} })  // untimed warm-up
    var list: [Future<Void>] = []
    list.reserveCapacity(n)
    let start = monotonicSeconds()
    for _ in 0..<n { list.append(try pool.submit {}) }
    let (done, pending) = try await wait(list)
    let seconds = monotonicSeconds() - start
    var failed = 0
    for f in list { if case .failure = await f.result { failed += 1 } }
    let check = done.count == n && pending.isEmpty && failed == 0 ? "ok" : "\(done.count) done, \(failed) failed"
    return Measurement(tasks: n, seconds: seconds, figure: seconds / Double(n) * 1e6, unit: "us/future", check: check)
}

// MARK: - cpu

let cpuTasks = 32

/// Counts primes in [lo, hi) by trial division, as the contract defines it.
func countPrimes(_ lo: Int, _ hi: Int) -> Int {
    var count = 0
    for n in lo..<hi {
        if n == 2 {
            count += 1
            continue
        }
        if n < 3 || n % 2 == 0 { continue }
        var d = 3
        var prime = true
        while d * d <= n {
            if n % d == 0 {
                prime = false
                break
            }
            d += 2
        }
        if prime { count += 1 }
    }
    return count
}

/// The prime count below `limit`, by a sieve (an independent check).
func primesBelow(_ limit: Int) -> Int {
    guard limit > 2 else { return 0 }
    var composite = [Bool](repeating: false, count: limit)
    var count = 0
    for n in 2..<limit where !composite[n] {
        count += 1
        var m = n * n
        while m < limit {
            composite[m] = true
            m += n
        }
    }
    return count
}

func cpuCheck(_ total: Int, k: Int) -> String {
    let expected = primesBelow(cpuTasks * k)
    return total == expected ? "ok" : "counted \(total) primes, expected \(expected)"
}

func cpu(_ pool: Pool, k: Int) async throws -> Measurement {
    let start = monotonicSeconds()
    let counts = try await pool.map(0..<cpuTasks) { i in countPrimes(i * k, (i + 1) * k) }
    let seconds = monotonicSeconds() - start
    let total = counts.reduce(0, +)
    return Measurement(tasks: cpuTasks, seconds: seconds, figure: 0, unit: "x serial", check: cpuCheck(total, k: k))
}

func baselineCPU(k: Int) -> Measurement {
    let counts = Counts(cpuTasks)
    let start = monotonicSeconds()
    DispatchQueue.concurrentPerform(iterations: cpuTasks) { i in counts.set(i, countPrimes(i * k, (i + 1) * k)) }
    let seconds = monotonicSeconds() - start
    return Measurement(
        tasks: cpuTasks, seconds: seconds, figure: 0, unit: "x serial",
        check: cpuCheck(counts.total, k: k))
}

/// Per-task results written from several threads.
final class Counts: @unchecked Sendable {
    // Safe: each index is written by exactly one task, and `total` is read
    // after `concurrentPerform` has returned, which orders every write.
    private var values: [Int]
    init(_ n: Int) { values = [Int](repeating: 0, count: n) }
    func set(_ i: Int, _ v: Int) { values[i] = v }
    var total: Int { values.reduce(0, +) }
}

/// Picks K so that the serial cpu run takes about `target` seconds.
func calibrateCPU(target: Double = 1.5) -> Int {
    var k = 5_000
    while true {
        let start = monotonicSeconds()
        var total = 0
        for i in 0..<cpuTasks { total &+= countPrimes(i * k, (i + 1) * k) }
        let t = monotonicSeconds() - start
        if total < 0 { print(total) }  // keeps the work from being optimised away
        if t > 0.1 || k > 10_000_000 {
            // Cost grows about as K^1.5.
            let scaled = Double(k) * pow(target / t, 2.0 / 3.0)
            return max(1_000, Int(scaled / 1_000) * 1_000)
        }
        k *= 4
    }
}

// MARK: - io

func io(_ pool: Pool) async throws -> Measurement {
    let n = 1_000
    let start = monotonicSeconds()
    let out = try await pool.map(0..<n) { i -> Int in
        usleep(10_000)
        return i
    }
    let seconds = monotonicSeconds() - start
    let ideal = 0.010 * Double(n) / Double(min(pool.workerCount, n))
    return Measurement(
        tasks: n, seconds: seconds, figure: seconds / ideal, unit: "x ideal",
        check: out == Array(0..<n) ? "ok" : "wrong results")
}

// MARK: - bigresult

let bigTasks = 128
let bigCount = 4_194_304

func bigresult(_ pool: Pool) async throws -> Measurement {
    let start = monotonicSeconds()
    let sum = try await pool.reduce(
        0..<bigTasks, into: [UInt32](repeating: 0, count: bigCount),
        options: MapOptions(window: 4), { makeBigArray($0) }, merge: addBig)
    return bigMeasurement(sum, seconds: monotonicSeconds() - start)
}

/// Σ_i Σ_j (i·j mod 7), from the period of j ↦ i·j mod 7.
func bigExpectedTotal() -> UInt64 {
    var total: UInt64 = 0
    let periods = bigCount / 7
    let rest = bigCount % 7
    for i in 0..<bigTasks {
        var period: UInt64 = 0
        for r in 0..<7 { period += UInt64((i * r) % 7) }
        total += UInt64(periods) * period
        for r in 0..<rest { total += UInt64((i * r) % 7) }
    }
    return total
}

// MARK: - records

let recordTasks = 20_000
let recordKeys = 256

/// Task i's record: key "w" + j, value (i * 256 + j) % 1009.
func makeRecord(_ i: Int) -> [String: Int] {
    var record = [String: Int](minimumCapacity: recordKeys)
    for j in 0..<recordKeys { record["w" + String(j)] = (i * recordKeys + j) % 1009 }
    return record
}

/// Adds a record into the running total, key by key.
func mergeRecord(_ total: inout [String: Int], _ record: [String: Int]) {
    for (key, value) in record { total[key, default: 0] += value }
}

func recordsMeasurement(_ total: [String: Int], seconds: Double) -> Measurement {
    let sum = total.values.reduce(0, +)
    let check =
        total.count == recordKeys && sum == 2_580_367_275
        ? "ok" : "\(total.count) keys summing to \(sum), expected 256 summing to 2580367275"
    return Measurement(
        tasks: recordTasks, seconds: seconds, figure: Double(recordTasks * recordKeys) / seconds,
        unit: "entries/s", check: check)
}

func records(_ pool: Pool) async throws -> Measurement {
    let start = monotonicSeconds()
    let total = try await pool.reduce(0..<recordTasks, into: [String: Int](), { makeRecord($0) }, merge: mergeRecord)
    return recordsMeasurement(total, seconds: monotonicSeconds() - start)
}

// MARK: - startup

func startup(kind: BackendKind, workers: Int) async throws -> Measurement {
    let cycles = 20
    var times: [Double] = []
    var ok = true
    for c in 0..<cycles {
        let start = monotonicSeconds()
        let pool = try Pool.make(kind, workers: workers)
        let value = try await pool.submit { c &* c }.value
        await pool.shutdown()
        times.append(monotonicSeconds() - start)
        ok = ok && value == c &* c
    }
    let ms = median(times) * 1000
    return Measurement(
        tasks: cycles, seconds: times.reduce(0, +), figure: ms, unit: "ms/cycle",
        check: ok ? "ok" : "wrong task result")
}

// MARK: - helpers

func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

func median(_ values: [Double]) -> Double {
    guard !values.isEmpty else { return .nan }
    let s = values.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

/// Peak resident memory of this process (VmHWM), in bytes.
func peakRSSBytes(pid: String = "self") -> Int {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return 0 }
    for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
        let kb = line.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
        return kb * 1024
    }
    return 0
}
