import Foundation
import Testing

@testable import Fleet
@testable import FleetTestTasks

@Suite("map behaviour on every backend", .timeLimit(.minutes(2)))
struct MapBehaviourTests {
    @Test(arguments: TestBackend.inProcess)
    func mapKeepsInputOrder(_ backend: TestBackend) async throws {
        let pool = try backend.makePool()
        let out = try await pool.map(0..<20_000) { $0 &* 3 }
        #expect(out == (0..<20_000).map { $0 &* 3 })
        // Uneven task times still come back in order.
        let slow = try await pool.map(0..<40) { i -> Int in
            if i % 7 == 0 { blockingSleep(ms: 5) }
            return i
        }
        #expect(slow == Array(0..<40))
    }

    @Test(arguments: TestBackend.inProcess)
    func asyncTransformsRun(_ backend: TestBackend) async throws {
        let pool = try backend.makePool()
        let out = try await pool.map(0..<200) { (i: Int) async throws -> Int in
            try await Task.sleep(for: .microseconds(50))
            return i + 1
        }
        #expect(out == Array(1...200))
    }

    @Test func asyncTransformsRunOnWorkerThreads() async throws {
        let pool = try Pool.threads(workers: 2)
        let names = try await pool.map(0..<20) { (_: Int) async -> String in
            await Task.yield()
            return threadName()
        }
        #expect(names.allSatisfy { $0.hasPrefix("fl\(pool.id)-") }, "\(names)")
    }

    @Test(arguments: TestBackend.inProcess)
    func emptyInputGivesEmptyResult(_ backend: TestBackend) async throws {
        let pool = try backend.makePool()
        let out = try await pool.map([Int]()) { $0 }
        #expect(out.isEmpty)
        var count = 0
        for try await _ in pool.mapUnordered([Int](), { $0 }) { count += 1 }
        #expect(count == 0)
    }

    @Test(arguments: TestBackend.inProcess)
    func streamYieldsInOrderAsResultsArrive(_ backend: TestBackend) async throws {
        let pool = try backend.makePool()
        var seen: [Int] = []
        for try await value in pool.stream(0..<5_000, { $0 * 2 }) { seen.append(value) }
        #expect(seen == (0..<5_000).map { $0 * 2 })
    }

    @Test(arguments: TestBackend.inProcess)
    func unorderedYieldsEveryIndexOnce(_ backend: TestBackend) async throws {
        let pool = try backend.makePool()
        var seen = [Int: Int]()
        for try await (index, value) in pool.mapUnordered(
            0..<3_000,
            { i -> Int in
                if i % 100 == 0 { blockingSleep(ms: 2) }
                return i * i
            })
        {
            #expect(seen[index] == nil)
            seen[index] = value
        }
        #expect(seen.count == 3_000)
        #expect(seen.allSatisfy { $0.value == $0.key * $0.key })
    }

    @Test(arguments: TestBackend.inProcess)
    func endlessInputStopsWithTheConsumerWithinTheWindow(_ backend: TestBackend) async throws {
        let pool = try backend.makePool()
        let pulled = Counter()
        let window = 16
        var taken = 0
        for try await value in pool.stream(CountingSequence(pulled: pulled), options: .init(window: window), { $0 }) {
            #expect(value == taken)
            taken += 1
            // Never more than the window pulled beyond what was consumed.
            #expect(pulled.count - taken <= window)
            if taken == 500 { break }
        }
        try await Task.sleep(for: .milliseconds(50))
        #expect(pulled.count <= 500 + window)
        let unorderedPulled = Counter()
        var got = 0
        for try await _ in pool.mapUnordered(
            CountingSequence(pulled: unorderedPulled), options: .init(window: 8), { $0 })
        {
            got += 1
            if got == 100 { break }
        }
        try await Task.sleep(for: .milliseconds(50))
        #expect(unorderedPulled.count <= 100 + 8)
    }

    @Test(arguments: TestBackend.inProcess)
    func defaultWindowBoundsAnEndlessInput(_ backend: TestBackend) async throws {
        let pool = try backend.makePool()
        let pulled = Counter()
        var taken = 0
        for try await _ in pool.stream(CountingSequence(pulled: pulled), { $0 }) {
            taken += 1
            if taken == 2_000 { break }
        }
        try await Task.sleep(for: .milliseconds(50))
        // Four batches per worker of at most the automatic cap.
        #expect(pulled.count <= 2_000 + 4 * pool.workerCount * BatchSizer.automaticCap)
        #expect(pulled.count >= 2_000)
    }

    @Test(arguments: TestBackend.inProcess)
    func firstFailureIsRethrownWithItsIndex(_ backend: TestBackend) async throws {
        let pool = try backend.makePool()
        let pulled = Counter()
        do {
            _ = try await pool.map(CountingSequence(pulled: pulled), options: .init(window: 32)) { i -> Int in
                if i == 137 { throw Boom(value: i) }
                return i
            }
            Issue.record("map did not throw")
        } catch let failure as ItemFailure {
            #expect(failure.index == 137)
            #expect(failure.underlying as? Boom == Boom(value: 137))
            #expect(failure.description.contains("item 137"))
        }
        // Input stopped being pulled: at most a window past the failure.
        #expect(pulled.count <= 137 + 1 + 32)
    }

    @Test(arguments: TestBackend.inProcess)
    func collectModeYieldsEveryOutcome(_ backend: TestBackend) async throws {
        let pool = try backend.makePool()
        let out = try await pool.mapResults(0..<1_000) { i -> Int in
            if i % 10 == 3 { throw Boom(value: i) }
            return i
        }
        #expect(out.count == 1_000)
        for (i, r) in out.enumerated() {
            switch r {
            case .success(let v): #expect(i % 10 != 3 && v == i)
            case .failure(let f):
                #expect(i % 10 == 3 && f.index == i)
                #expect(f.underlying as? Boom == Boom(value: i))
            }
        }
        var failures = 0
        for try await (index, result) in pool.mapUnorderedResults(
            0..<100,
            { i -> Int in
                if i == 50 { throw Boom(value: i) }
                return i
            })
        {
            if case .failure(let f) = result {
                failures += 1
                #expect(f.index == 50 && index == 50)
            }
        }
        #expect(failures == 1)
        var ordered: [Int] = []
        for try await r in pool.streamResults(
            0..<20,
            { i -> Int in
                if i == 4 { throw Boom(value: i) }
                return i
            })
        {
            ordered.append((try? r.get()) ?? -1)
        }
        #expect(ordered == (0..<20).map { $0 == 4 ? -1 : $0 })
    }

    @Test(arguments: TestBackend.inProcess)
    func explicitAndAutomaticBatchesGiveTheSameResults(_ backend: TestBackend) async throws {
        let pool = try backend.makePool()
        let expected = (0..<100_003).map { $0 &* $0 }
        for size in [1, 7, 1_000] {
            let out = try await pool.map(0..<100_003, options: .init(batchSize: size)) { $0 &* $0 }
            #expect(out == expected)
        }
        let auto = try await pool.map(0..<100_003) { $0 &* $0 }
        #expect(auto == expected)
        let lazyInput = (0..<50_000).lazy.filter { $0 % 3 == 0 }
        let lazyOut = try await pool.map(lazyInput) { $0 + 1 }
        #expect(lazyOut == lazyInput.map { $0 + 1 })
    }

    @Test func automaticBatchesGrowForTinyTasksAndStaySmallForSlowOnes() {
        var sizer = BatchSizer(fixed: nil, cap: BatchSizer.automaticCap)
        for _ in 0..<10 { sizer.record(items: sizer.size, nanos: UInt64(sizer.size) * 2) }
        #expect(sizer.size > 10_000)
        var slow = BatchSizer(fixed: nil, cap: BatchSizer.automaticCap)
        for _ in 0..<10 { slow.record(items: 1, nanos: 5_000_000) }
        #expect(slow.size == 1)
        let fixed = BatchSizer(fixed: 64, cap: 1_000)
        #expect(fixed.size == 64)
    }

    @Test(arguments: TestBackend.inProcess)
    func reduceFoldsAsResultsArrive(_ backend: TestBackend) async throws {
        let pool = try backend.makePool()
        let sum = try await pool.reduce(0..<10_000, into: 0, { $0 * 2 }, merge: { $0 += $1 })
        #expect(sum == (0..<10_000).reduce(0) { $0 + $1 * 2 })
        // Never more than the window of results alive at once.
        let alive = Counter()
        let peak = Locked(0)
        let total = try await pool.reduce(
            0..<64, into: 0, options: .init(window: 4),
            { i -> Int in
                alive.increment()
                peak.withLock { $0 = max($0, alive.count) }
                return i
            },
            merge: { acc, v in
                acc += v
                alive.increment(by: -1)
            })
        #expect(total == (0..<64).reduce(0, +))
        #expect(peak.withLock { $0 } <= 4)
        await #expect(throws: ItemFailure.self) {
            _ = try await pool.reduce(
                0..<100, into: 0,
                { i -> Int in
                    if i == 10 { throw Boom(value: i) }
                    return i
                }, merge: { $0 += $1 })
        }
    }

    /// A stream left early still ends its progress: exactly one final
    /// snapshot, once what was running has finished.
    @Test(arguments: TestBackend.allCases)
    func aStreamLeftEarlyEndsItsProgress(_ backend: TestBackend) async throws {
        let pool = try backend.makePool()
        let finals = Locked<[ProgressSnapshot]>([])
        let options = MapOptions(
            progress: { snap in if snap.isFinished { finals.withLock { $0.append(snap) } } },
            progressInterval: .milliseconds(1))
        var read = 0
        for try await _ in pool.stream(0..<100_000, TestTasks.square, options: options) {
            read += 1
            if read == 3 { break }
        }
        let deadline = ContinuousClock.now + .seconds(10)
        while finals.withLock({ $0.isEmpty }) && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(5))
        }
        try await Task.sleep(for: .milliseconds(50))  // a second one would come now
        let seen = finals.withLock { $0 }
        #expect(seen.count == 1, "\(seen)")
        #expect((seen.first?.completed ?? 0) >= 3)
        await pool.shutdown()
    }

    @Test(arguments: TestBackend.inProcess)
    func progressCountsEveryItem(_ backend: TestBackend) async throws {
        let pool = try backend.makePool()
        let last = Locked<ProgressSnapshot?>(nil)
        let calls = Counter()
        let options = MapOptions(
            progress: { snap in
                calls.increment()
                last.withLock { $0 = snap }
            }, progressInterval: .milliseconds(1))
        let out = try await pool.mapResults(0..<5_000, options: options) { i -> Int in
            if i % 1000 == 0 { throw Boom(value: i) }
            return i
        }
        #expect(out.count == 5_000)
        let snap = try #require(last.withLock { $0 })
        #expect(snap.isFinished)
        #expect(snap.total == 5_000)
        #expect(snap.submitted == 5_000)
        #expect(snap.completed == 4_995)
        #expect(snap.failed == 5)
        #expect(calls.count >= 1)
    }

    @Test(arguments: TestBackend.inProcess)
    func workerStateIsBuiltOncePerWorker(_ backend: TestBackend) async throws {
        let pool = try backend.makePool(workers: 2)
        let builds = Counter()
        let state = WorkerState<[Int]> {
            builds.increment()
            return []
        }
        let out = try await pool.map(0..<2_000, with: state) { seen, i -> Int in
            seen.append(i)
            return seen.count
        }
        #expect(out.count == 2_000)
        #expect(builds.count >= 1 && builds.count <= pool.workerCount)
        // Each worker's buffer grew over the items it ran: the counts add up.
        #expect(out.max()! <= 2_000)
        let future = try pool.submit(with: state) { seen in seen.count }
        #expect(try await future.value >= 1)
    }

    @Test(arguments: TestBackend.inProcess)
    func failingStateBuildFailsTheItem(_ backend: TestBackend) async throws {
        let pool = try backend.makePool()
        let state = WorkerState<Int> { throw Boom(value: -1) }
        do {
            _ = try await pool.map(0..<10, with: state) { s, i in s + i }
            Issue.record("expected a failure")
        } catch let failure as ItemFailure {
            #expect(failure.underlying as? Boom == Boom(value: -1))
        }
    }
}

func threadName() -> String {
    (try? String(contentsOfFile: "/proc/thread-self/comm", encoding: .utf8))?
        .trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
}
