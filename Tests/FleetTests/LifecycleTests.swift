import Foundation
import Testing

@testable import Fleet

@Suite("cancellation, time-outs, shutdown and bad input", .timeLimit(.minutes(2)))
struct LifecycleTests {
    @Test(arguments: TestBackend.inProcess)
    func cancellingTheCallerStopsTheMap(_ backend: TestBackend) async throws {
        let pool = try backend.makePool()
        let pulled = Counter()
        let sawCancel = Counter()
        let task = Task {
            try await pool.map(CountingSequence(pulled: pulled)) { i -> Int in
                if cooperativeSleep(ms: 50) { sawCancel.increment() }
                return i
            }
        }
        try await Task.sleep(for: .milliseconds(125))  // mid-item: items take 50 ms
        task.cancel()
        let result = await task.result
        #expect(throws: CancellationError.self) { try result.get() }
        let after = pulled.count
        try await Task.sleep(for: .milliseconds(50))
        #expect(pulled.count == after, "input is no longer pulled")
        if backend == .threads { #expect(sawCancel.count >= 1, "a running item observed cancellation") }
    }

    @Test(arguments: TestBackend.inProcess)
    func leavingAStreamEarlyCancelsPendingWork(_ backend: TestBackend) async throws {
        let pool = try backend.makePool()
        let ran = Counter()
        var taken = 0
        for try await _ in pool.stream(
            0..<10_000, options: .init(window: 8, batchSize: 1),
            { i -> Int in
                ran.increment()
                blockingSleep(ms: 1)
                return i
            })
        {
            taken += 1
            if taken == 10 { break }
        }
        try await Task.sleep(for: .milliseconds(100))
        #expect(ran.count <= 10 + 8)
    }

    @Test(arguments: TestBackend.inProcess)
    func anItemPastItsTimeoutFailsAndThePoolGoesOn(_ backend: TestBackend) async throws {
        let pool = try backend.makePool(workers: 2)
        let options = MapOptions(timeout: .milliseconds(100))
        let sawCancel = Counter()
        let results = try await pool.mapResults(0..<6, options: options) { i -> Int in
            if i == 3, cooperativeSleep(ms: 3_000) { sawCancel.increment() }
            return i
        }
        // The timed-out item's own token was cancelled, and only its.
        #expect(await eventually { sawCancel.count == 1 })
        for (i, r) in results.enumerated() {
            if i == 3 {
                guard case .failure(let f) = r else {
                    Issue.record("item 3 should time out")
                    continue
                }
                #expect(f.index == 3)
                #expect(f.underlying as? FleetError == .timedOut(item: 3, after: .milliseconds(100)))
            } else {
                #expect((try? r.get()) == i)
            }
        }
        do {
            _ = try await pool.map(0..<4, options: options) { i -> Int in
                if i == 1 { cooperativeSleep(ms: 3_000) }
                return i
            }
            Issue.record("expected a time-out")
        } catch let failure as ItemFailure {
            #expect(failure.index == 1)
        }
        // Still fully working afterwards.
        #expect(try await pool.map(0..<100) { $0 } == Array(0..<100))
    }

    @Test func drainRunsEverythingQueued() async throws {
        let pool = try Pool.threads(workers: 2)
        let futures = try (0..<20).map { i in
            try pool.submit { () -> Int in
                blockingSleep(ms: 5)
                return i
            }
        }
        await pool.shutdown(.drain)
        for (i, f) in futures.enumerated() {
            #expect(f.isDone)
            #expect(try await f.value == i)
        }
    }

    @Test func cancelPendingFailsQueuedWorkAndLetsRunningWorkFinish() async throws {
        let pool = try Pool.threads(workers: 2)
        let futures = try (0..<20).map { i in
            try pool.submit { () -> Int in
                blockingSleep(ms: 50)
                return i
            }
        }
        #expect(await eventually { futures.contains { $0.isRunning } })
        await pool.shutdown(.cancelPending)
        var finished = 0
        var cancelled = 0
        for f in futures {
            switch await f.result {
            case .success: finished += 1
            case .failure(let e): if e as? FleetError == .cancelled { cancelled += 1 }
            }
        }
        #expect(finished >= 1 && finished <= 4)
        #expect(finished + cancelled == 20)
    }

    @Test(arguments: TestBackend.inProcess)
    func aShutDownPoolRefusesWorkClearly(_ backend: TestBackend) async throws {
        let pool = try backend.makePool()
        await pool.shutdown()
        await pool.shutdown()  // twice is harmless
        #expect(throws: FleetError.poolShutDown) { try pool.submit { 1 } }
        await #expect(throws: FleetError.poolShutDown) { try await pool.map(0..<10) { $0 } }
    }

    @Test func aMapRunningDuringCancelPendingShutdownFails() async throws {
        let pool = try Pool.threads(workers: 1)
        let task = Task {
            try await pool.map(0..<1_000, options: .init(batchSize: 1)) { i -> Int in
                blockingSleep(ms: 2)
                return i
            }
        }
        try await Task.sleep(for: .milliseconds(30))
        await pool.shutdown(.cancelPending)
        let result = await task.result
        #expect(throws: FleetError.self) { try result.get() }
    }

    @Test func droppedAndShutDownPoolsLeaveNoThreads() async throws {
        var prefix = ""
        do {
            let pool = try Pool.threads(workers: 4)
            prefix = "fl\(pool.id)-"
            _ = try await pool.map(0..<1_000) { $0 }
            // A thread names itself as it starts, which may come after a short map.
            #expect(await eventually { threads(named: prefix).count == 4 })
        }
        #expect(await eventually { threads(named: prefix).isEmpty }, "threads left: \(threads(named: prefix))")
        let pool = try Pool.threads(workers: 3)
        let prefix2 = "fl\(pool.id)-"
        _ = try await pool.map(0..<100) { $0 }
        await pool.shutdown()
        #expect(await eventually { threads(named: prefix2).isEmpty })
        // Many short-lived pools do not accumulate threads either.
        var ids: [Int] = []
        for _ in 0..<20 {
            let p = try Pool.threads(workers: 2)
            ids.append(p.id)
            _ = try await p.map(0..<10) { $0 }
        }
        #expect(await eventually { ids.allSatisfy { threads(named: "fl\($0)-").isEmpty } })
    }

    @Test func badArgumentsAreClearErrors() async throws {
        #expect(throws: FleetError.invalidArgument("workers must be positive, got 0")) { try Pool.threads(workers: 0) }
        #expect(throws: FleetError.self) { try Pool.threads(workers: -3) }
        #expect(throws: FleetError.self) { try Pool.make(.serial, workers: 0) }
        #if !MPI
        #expect(
            throws: FleetError.invalidArgument(
                "this program was built without MPI: build it with `--traits MPI` (Docs/MPI.md)")
        ) {
            try Pool.make(.mpi)
        }
        #endif
        let pool = try Pool.threads(workers: 2)
        await #expect(throws: FleetError.invalidArgument("window must be positive, got 0")) {
            try await pool.map(0..<10, options: .init(window: 0)) { $0 }
        }
        await #expect(throws: FleetError.self) { try await pool.map(0..<10, options: .init(batchSize: -1)) { $0 } }
        await #expect(throws: FleetError.self) { try await pool.map(0..<10, options: .init(timeout: .zero)) { $0 } }
        await #expect(throws: FleetError.self) {
            try await pool.map(0..<10, options: .init(timeout: .seconds(-1))) { $0 }
        }
        #expect(throws: FleetError.self) { try pool.submit(timeout: .zero) { 1 } }
        let f = try pool.submit { 1 }
        await #expect(throws: FleetError.self) { try await f.value(timeout: .milliseconds(-5)) }
        var stream = pool.stream(0..<10, options: .init(window: -1)) { $0 }.makeAsyncIterator()
        await #expect(throws: FleetError.self) { try await stream.next() }
    }
}

/// A library function in the style the executor API is for: it takes an
/// optional pool and runs serially in the caller when it gets none.
func sumOfSquares(_ values: [Int], executor: Pool? = nil) async throws -> Int {
    try await executor.orSerial.reduce(values, into: 0, { $0 * $0 }, merge: { $0 += $1 })
}

@Suite("patterns and stress", .timeLimit(.minutes(3)))
struct PatternTests {
    @Test func libraryCodeRunsSeriallyWithoutAnExecutor() async throws {
        let values = Array(1...1_000)
        let serialThread = Locked<[String]>([])
        let expected = values.reduce(0) { $0 + $1 * $1 }
        #expect(try await sumOfSquares(values) == expected)
        #expect(try await sumOfSquares(values, executor: try Pool.threads(workers: 2)) == expected)
        // With no executor the work runs in the caller's thread.
        _ = try await Optional<Pool>.none.orSerial.map(0..<3) { i -> Int in
            serialThread.withLock { $0.append(threadName()) }
            return i
        }
        #expect(serialThread.withLock { $0 }.allSatisfy { !$0.hasPrefix("fl") })
    }

    @Test func manyTinyTasksAndConcurrentSubmitters() async throws {
        let pool = try Pool.threads(workers: 4)
        try await withThrowingTaskGroup(of: Int.self) { group in
            for s in 0..<4 {
                group.addTask {
                    let futures = try (0..<5_000).map { i in try pool.submit { i + s } }
                    var sum = 0
                    for f in futures { sum += try await f.value }
                    return sum
                }
                group.addTask {
                    try await pool.map(0..<200_000) { $0 &* 2 }.reduce(0, &+)
                }
            }
            var total = 0
            for try await part in group { total &+= part }
            let futuresSum = (0..<4).reduce(0) { acc, s in acc + (0..<5_000).reduce(0) { $0 + $1 + s } }
            let mapSum = 4 * (0..<200_000).reduce(0) { $0 &+ $1 &* 2 }
            #expect(total == futuresSum &+ mapSum)
        }
        let million = try await pool.map(0..<1_000_000) { $0 &* $0 }
        #expect(million.count == 1_000_000 && million[999_999] == 999_999 &* 999_999)
    }
}

@Suite("usable cores and the progress bar")
struct SupportTests {
    @Test func usableCoresIsPositiveAndWithinTheMachine() {
        #expect(UsableCores.count >= 1)
        #expect(UsableCores.count <= ProcessInfo.processInfo.processorCount)
    }

    @Test func cgroupQuotasParse() {
        #expect(UsableCores.parseCPUMax("max 100000\n") == nil)
        #expect(UsableCores.parseCPUMax("150000 100000\n") == 2)
        #expect(UsableCores.parseCPUMax("50000 100000") == 1)
        #expect(UsableCores.parseCFS(quota: "-1\n", period: "100000\n") == nil)
        #expect(UsableCores.parseCFS(quota: "300000\n", period: "100000\n") == 3)
        #expect(
            UsableCores.cgroupDirectories("0::/user.slice/app.scope\n") == ["/user.slice/app.scope", "/user.slice", ""])
        #expect(
            UsableCores.cgroupDirectories("4:memory:/x\n3:cpu,cpuacct:/docker/abc\n") == ["/docker/abc", "/docker", ""])
    }

    @Test func progressBarRendersCounts() {
        let bar = ProgressBar(label: "masks", isTTY: false, width: 10)
        let snap = ProgressSnapshot(
            submitted: 60, completed: 48, failed: 2, total: 100,
            elapsed: .seconds(2), isFinished: false)
        #expect(bar.render(snap) == "masks [#####-----] 50/100 50%, 2 failed, 25.0/s")
        let open = ProgressSnapshot(
            submitted: 10, completed: 4, failed: 0, total: nil, elapsed: .seconds(1), isFinished: false)
        #expect(bar.render(open) == "masks 4 done, 6 in flight, 4.0/s")
    }
}
