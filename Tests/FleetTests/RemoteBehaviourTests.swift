import FleetTestTasks
import Foundation
import Testing

@testable import Fleet

/// The core operations over remote tasks, on every backend: the same
/// declarations give the same answers serially, on threads and on processes.
@Suite struct RemoteBehaviourTests {
    @Test(arguments: TestBackend.allCases)
    func mapKeepsInputOrder(_ backend: TestBackend) async throws {
        let pool = try backend.makePool()
        let out = try await pool.map(0..<20_000, TestTasks.square)
        #expect(out == (0..<20_000).map { $0 &* $0 })
        let points = (0..<500).map { Point(x: Double($0), y: 1, label: $0 % 3 == 0 ? nil : "p\($0)") }
        let norms = try await pool.map(points, TestTasks.norm)
        #expect(norms == points.map { ($0.x * $0.x + $0.y * $0.y).squareRoot() })
        // Big arrays inside structs, both ways.
        let big = try await pool.map([3, 2_000_000, 5], TestTasks.bigStruct)
        #expect(
            big.map(\.tail) == [3, 2_000_000, 5] && big[1].values.count == 2_000_000 && big[1].values[70_000] == 4_464)
        let sums = try await pool.map([[UInt8](repeating: 3, count: 100_000), [], [1, 2]], TestTasks.sumBytes)
        #expect(sums == [300_000, 0, 3])
        await pool.shutdown()
    }

    @Test(arguments: TestBackend.allCases)
    func futuresAsCompletedAndWait(_ backend: TestBackend) async throws {
        let pool = try backend.makePool()
        let futures = try (0..<200).map { try pool.submit(TestTasks.square, $0) }
        var seen = Set<Int>()
        for try await f in asCompleted(futures) { seen.insert(try await f.value) }
        #expect(seen == Set((0..<200).map { $0 * $0 }))
        let (done, pending) = try await wait(futures, until: .allCompleted)
        #expect(done.count == 200 && pending.isEmpty)
        let failing = try pool.submit(TestTasks.failOn7, 17)
        await #expect(throws: (any Error).self) { try await failing.value }
        if case .failure(let error) = await failing.result {
            #expect("\(error)".contains("task failure on 17"))
        }
        await pool.shutdown()
    }

    @Test(arguments: TestBackend.allCases)
    func streamsHandEveryItemOverOnce(_ backend: TestBackend) async throws {
        let pool = try backend.makePool()
        var ordered: [Int] = []
        for try await x in pool.stream(0..<3_000, TestTasks.square) { ordered.append(x) }
        #expect(ordered == (0..<3_000).map { $0 * $0 })
        var indices: [Int] = []
        for try await (i, v) in pool.mapUnordered(0..<3_000, TestTasks.square) {
            #expect(v == i * i)
            indices.append(i)
        }
        #expect(indices.sorted() == Array(0..<3_000))
        var failures = 0
        for try await (i, r) in pool.mapUnorderedResults(0..<100, TestTasks.failOn7) {
            if case .failure(let f) = r {
                #expect(f.index == i && i % 10 == 7)
                failures += 1
            }
        }
        #expect(failures == 10)
        await pool.shutdown()
    }

    @Test(arguments: TestBackend.allCases)
    func endlessInputStaysWithinTheWindow(_ backend: TestBackend) async throws {
        let pool = try backend.makePool()
        let pulled = Counter()
        var taken = 0
        for try await _ in pool.stream(
            CountingSequence(pulled: pulled), TestTasks.square, options: MapOptions(window: 64))
        {
            taken += 1
            if taken == 1_000 { break }
        }
        #expect(pulled.count <= 1_000 + 64)
        await pool.shutdown()
    }

    @Test(arguments: TestBackend.allCases)
    func errorsNameTheItemTypeAndMessage(_ backend: TestBackend) async throws {
        let pool = try backend.makePool()
        do {
            _ = try await pool.map(0..<1_000, TestTasks.failOn7)
            Issue.record("the map should have failed")
        } catch let failure as ItemFailure {
            // The first failure to happen (not always the lowest index when
            // batches run side by side).
            #expect(failure.index % 10 == 7)
            #expect(failure.errorType == "FleetTestTasks.TaskFailure")
            #expect("\(failure)".contains("task failure on \(failure.index)"))
        }
        let results = try await pool.mapResults(0..<1_000, TestTasks.failOn7)
        #expect(results.count == 1_000)
        for (i, r) in results.enumerated() {
            switch r {
            case .success(let v): #expect(v == i && i % 10 != 7)
            case .failure(let f): #expect(f.index == i && i % 10 == 7)
            }
        }
        // The pool keeps working after failures.
        #expect(try await pool.map(0..<10, TestTasks.square) == (0..<10).map { $0 * $0 })
        await pool.shutdown()
    }

    @Test(arguments: TestBackend.allCases)
    func reduceMergesEverything(_ backend: TestBackend) async throws {
        let pool = try backend.makePool()
        let total = try await pool.reduce(0..<10_000, into: 0, TestTasks.square) { $0 &+= $1 }
        #expect(total == (0..<10_000).reduce(0) { $0 &+ $1 &* $1 })
        await pool.shutdown()
    }

    @Test(arguments: TestBackend.allCases)
    func progressCountsEveryItem(_ backend: TestBackend) async throws {
        let pool = try backend.makePool()
        let last = Locked<ProgressSnapshot?>(nil)
        let options = MapOptions(progress: { snapshot in last.withLock { $0 = snapshot } })
        _ = try await pool.mapResults(0..<500, TestTasks.failOn7, options: options)
        let snapshot = try #require(last.withLock { $0 })
        #expect(snapshot.completed == 450 && snapshot.failed == 50 && snapshot.total == 500)
        await pool.shutdown()
    }

    @Test(arguments: TestBackend.allCases)
    func explicitBatchesGiveTheSameAnswer(_ backend: TestBackend) async throws {
        let pool = try backend.makePool()
        for size in [1, 7, 1_000] {
            let out = try await pool.map(0..<5_000, TestTasks.square, options: MapOptions(batchSize: size))
            #expect(out == (0..<5_000).map { $0 * $0 })
        }
        await pool.shutdown()
    }

    @Test(arguments: TestBackend.allCases)
    func timeoutsFailTheItemAndThePoolGoesOn(_ backend: TestBackend) async throws {
        guard backend != .serial else { return }  // serial runs in the caller: no time-outs to enforce
        let pool = try backend.makePool()
        let results = try await pool.mapResults(
            [5, 3_000, 5], TestTasks.sleep, options: MapOptions(timeout: .milliseconds(300)))
        guard case .failure(let f) = results[1] else {
            Issue.record("item 1 should have timed out")
            return
        }
        #expect(f.index == 1)
        #expect(f.underlying as? FleetError == .timedOut(item: 1, after: .milliseconds(300)))
        #expect((try? results[0].get()) == 5 && (try? results[2].get()) == 5)
        let future = try pool.submit(TestTasks.sleep, 3_000, timeout: .milliseconds(200))
        await #expect(throws: FleetError.timedOut(item: nil, after: .milliseconds(200))) { try await future.value }
        #expect(try await pool.map(0..<10, TestTasks.square).count == 10)
        await pool.shutdown()
    }

    @Test(arguments: TestBackend.allCases)
    func cancellingTheCallerStopsTheMap(_ backend: TestBackend) async throws {
        guard backend != .serial else { return }
        let pool = try backend.makePool()
        let task = Task {
            try await pool.map(Array(repeating: 20, count: 1_000), TestTasks.sleep, options: MapOptions(batchSize: 1))
        }
        try await Task.sleep(for: .milliseconds(100))
        task.cancel()
        await #expect(throws: CancellationError.self) { try await task.value }
        await pool.shutdown()
    }

    @Test(arguments: TestBackend.allCases)
    func runningTasksSeeTheirOperationCancelled(_ backend: TestBackend) async throws {
        guard backend != .serial else { return }
        let pool = try backend.makePool()
        let results = Locked<[Bool]>([])
        let task = Task {
            for try await saw in pool.stream(
                Array(repeating: 10_000, count: 4), TestTasks.spinUntilCancelled,
                options: MapOptions(batchSize: 1))
            {
                results.withLock { $0.append(saw) }
            }
        }
        try await Task.sleep(for: .milliseconds(200))
        let began = ContinuousClock.now
        task.cancel()
        _ = await task.result
        // The spinning tasks saw the cancellation and returned early: the
        // stream ended long before their 10 s were up.
        #expect(ContinuousClock.now - began < .seconds(5))
        #expect(results.withLock { $0 }.isEmpty)
        #expect(try await pool.map(0..<10, TestTasks.square).count == 10)
        await pool.shutdown()
    }

    @Test(arguments: TestBackend.allCases)
    func shutdownDrainsOrCancels(_ backend: TestBackend) async throws {
        guard backend != .serial else { return }
        let pool = try backend.makePool(workers: 1)
        let slow = try (0..<5).map { _ in try pool.submit(TestTasks.sleep, 50) }
        await pool.shutdown(.drain)
        for f in slow { #expect(try await f.value == 50) }
        #expect(throws: FleetError.poolShutDown) { try pool.submit(TestTasks.square, 1) }

        let other = try backend.makePool(workers: 1)
        let queued = try (0..<20).map { _ in try other.submit(TestTasks.sleep, 50) }
        try await Task.sleep(for: .milliseconds(20))
        await other.shutdown(.cancelPending)
        var cancelled = 0
        for f in queued {
            if case .failure(let e) = await f.result {
                #expect(e as? FleetError == .cancelled)
                cancelled += 1
            }
        }
        #expect(cancelled >= 10)
    }
}
