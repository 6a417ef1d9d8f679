import Fleet
import Foundation

/// The standard workloads' tasks as remote tasks, so that the processes
/// backend can run them. `main.swift` registers them.
enum BenchTasks {
    /// tiny: x*x, wrapping.
    static let square = RemoteTask("bench.square") { (x: Int) in x &* x }
    /// futures: a no-op.
    static let noop = RemoteTask("bench.noop") { (x: Int) in x }
    /// cpu: the primes in [i*K, (i+1)*K).
    static let primes = RemoteTask("bench.primes") { (r: PrimeRange) in countPrimes(r.lo, r.hi) }
    /// io: a blocking 10 ms sleep.
    static let sleep10ms = RemoteTask("bench.sleep10ms") { (x: Int) -> Int in
        usleep(10_000)
        return x
    }
    /// payload: the 64-bit FNV-1a hash of a buffer.
    static let fnv = RemoteTask("bench.fnv") { (bytes: [UInt8]) in fnv1a(bytes) }
    /// bigresult: task i's 16 MiB array.
    static let bigArray = RemoteTask("bench.bigArray") { (i: Int) in makeBigArray(i) }

    /// records: task i's dictionary.
    static let record = RemoteTask("bench.record") { (i: Int) in makeRecord(i) }

    /// graph: a leaf is its input; an inner node sums its arguments.
    static let leaf = RemoteTask("bench.leaf") { (k: Int) in k }
    static let sum = RemoteTask("bench.sum") { (xs: [Int]) in xs.reduce(0, &+) }

    /// The peak memory of the process that runs it (after a nap of `ms`
    /// milliseconds, so a batch of them spreads over the workers), with
    /// its MPI rank (-1 outside MPI).
    static let peakRSS = RemoteTask("bench.peakRSS") { (ms: Int) -> RankPeak in
        usleep(UInt32(ms * 1_000))
        let rank = ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_RANK"].flatMap { Int($0) } ?? -1
        return RankPeak(rank: rank, bytes: peakRSSBytes())
    }

    static let all: [any RemoteTaskDeclaration] = [
        square, noop, primes, sleep10ms, fnv, bigArray, record, leaf, sum, peakRSS,
    ]
}

struct RankPeak: Codable, Sendable {
    var rank: Int
    var bytes: Int
}

struct PrimeRange: Codable, Sendable {
    var lo: Int
    var hi: Int
}

/// 64-bit FNV-1a.
func fnv1a(_ bytes: [UInt8]) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    bytes.withUnsafeBufferPointer { b in
        for byte in b { h = (h ^ UInt64(byte)) &* 0x100_0000_01b3 }
    }
    return h
}

/// Element j of task i is (i * j) % 7.
func makeBigArray(_ i: Int) -> [UInt32] {
    [UInt32](unsafeUninitializedCapacity: bigCount) { a, n in
        let step = UInt32(i % 7)
        var v: UInt32 = 0
        for j in 0..<bigCount {
            a[j] = v
            v += step
            if v >= 7 { v -= 7 }
        }
        n = bigCount
    }
}
