import Foundation
import Testing

@testable import Fleet

/// A call that waits on a pool from one of that pool's own workers: the
/// waiting worker helps run the pool's queued work, so no depth of nesting
/// deadlocks, whatever the pool's size.
@Suite("nested calls", .timeLimit(.minutes(2)))
struct NestedCallTests {
    /// Sum over i of a map over a map over a map, each on `pool` itself.
    static func nested(_ pool: Pool, depth: Int, width: Int, ordered: Bool) async throws -> Int {
        if depth == 0 { return 1 }
        if ordered {
            return try await pool.map(0..<width) { (_: Int) async throws -> Int in
                try await nested(pool, depth: depth - 1, width: width, ordered: ordered)
            }.reduce(0, +)
        }
        var total = 0
        for try await (_, v) in pool.mapUnordered(
            0..<width,
            { (_: Int) async throws -> Int in
                try await nested(pool, depth: depth - 1, width: width, ordered: ordered)
            })
        { total += v }
        return total
    }

    @Test(arguments: [0, 1, 2, 8])
    func mapsInsideMapsOnTheSamePoolFinish(_ workers: Int) async throws {
        let pool = workers == 0 ? Pool.serial : try Pool.threads(workers: workers)
        for ordered in [true, false] {
            let total = try await Self.nested(pool, depth: 3, width: 4, ordered: ordered)
            #expect(total == 64)
        }
        await pool.shutdown()
    }

    @Test(arguments: [1, 2, 8])
    func futuresAndGraphsInsideTasksOfTheSamePoolFinish(_ workers: Int) async throws {
        let pool = try Pool.threads(workers: workers)
        let outer = try (0..<4).map { i in
            try pool.submit { () async throws -> Int in
                let inner = try (0..<3).map { j in try pool.submit { i * 10 + j } }
                var sum = 0
                for f in inner { sum += try await f.value }
                let graph = Graph.call("add", { (a: Int, b: Int) in a + b }, Graph.value(sum), Graph.value(1))
                return try await pool.compute(graph)
            }
        }
        var results: [Int] = []
        for f in outer { results.append(try await f.value) }
        #expect(results == (0..<4).map { i in (0..<3).reduce(0) { $0 + i * 10 + $1 } + 1 })
        await pool.shutdown()
    }

    /// Cancelling the outer call ends the inner ones it started.
    @Test func cancellingTheOuterCallEndsTheInnerOnes() async throws {
        let pool = try Pool.threads(workers: 2)
        let started = Locked(0)
        let outer = Task {
            try await pool.map(0..<2) { (_: Int) async throws -> Int in
                try await pool.map(0..<1_000) { (_: Int) async throws -> Int in
                    started.withLock { $0 += 1 }
                    try await Task.sleep(for: .milliseconds(20))
                    return 1
                }.count
            }
        }
        while started.withLock({ $0 }) < 2 { try await Task.sleep(for: .milliseconds(5)) }
        outer.cancel()
        await #expect(throws: (any Error).self) { _ = try await outer.value }
        let ran = started.withLock { $0 }
        #expect(ran < 200, "\(ran) inner items started after the cancel")
        #expect(try await pool.map(0..<10) { $0 } == Array(0..<10))  // the pool is still fine
        await pool.shutdown()
    }
}
