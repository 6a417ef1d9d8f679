import FleetTestTasks
import Foundation
import Testing

@testable import Fleet

/// The faults the dispatcher's simulation plays, on real worker processes:
/// workers killed from outside while they write big replies, a task that
/// breaks its own channel, a task that leaves a child process behind. Each
/// ends with every item settled exactly once, in bounded time.
@Suite struct ProcessFaultTests {
    /// Items of the kill storm (`FLEET_STORM_ITEMS` overrides).
    static var stormItems: Int { ProcessInfo.processInfo.environment["FLEET_STORM_ITEMS"].flatMap(Int.init) ?? 5_000 }

    @Test func aKillStormWhileWorkersWriteBigRepliesLosesAndRepeatsNothing() async throws {
        let n = Self.stormItems
        try await withProcessPool({ $0.retries = 3 }) { pool in
            let backend = pool.backend as! ProcessBackend
            let kills = Counter()
            // Another thread kills a random worker every 50 to 200 ms.
            let storm = Task.detached {
                while !Task.isCancelled {
                    usleep(UInt32.random(in: 50_000...200_000))
                    if let pid = backend.workerPIDs.randomElement() {
                        kill(pid, SIGKILL)
                        kills.increment()
                    }
                }
            }
            defer { storm.cancel() }
            let began = ContinuousClock.now
            var seen = [Int](repeating: 0, count: n)
            for try await (i, bytes) in pool.mapUnordered(0..<n, TestTasks.megabyte) {
                let head = bytes.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
                #expect(bytes.count == 1 << 20 && head == i && bytes[1 << 19] == UInt8(i % 251))
                seen[i] += 1
            }
            storm.cancel()
            print(
                "kill storm: \(n) results of 1 MiB, each once, in \(ContinuousClock.now - began) through \(kills.count) kills"
            )
            #expect(seen.allSatisfy { $0 == 1 }, "every result exactly once")
            #expect(kills.count >= 3, "the storm should have killed workers (\(kills.count))")
        }
    }

    /// One count of runs: the task sees 1, 2, … as it is retried, and an
    /// item that never survives fails with `attempts` = the runs it had.
    @Test func attemptsCountRunsFromOneEverywhere() async throws {
        try await withProcessPool { pool in
            #expect(try await pool.submit(TestTasks.attemptOrDie, 1, retries: 0).value == 1)
            #expect(try await pool.submit(TestTasks.attemptOrDie, 3, retries: 2).value == 3)
            let failed = await (try pool.submit(TestTasks.attemptOrDie, 9, retries: 1)).result
            #expect((failed.error as? FleetError)?.death?.attempts == 2, "\(failed)")
        }
        let threads = try Pool.threads(workers: 1)
        #expect(try await threads.submit(TestTasks.attemptOrDie, 1).value == 1)
        await threads.shutdown()
    }

    @Test func aTaskThatBreaksItsChannelRunsRetriesPlusOneTimesThenFails() async throws {
        let path = NSTemporaryDirectory() + "fleet-close-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { unlink(path) }
        try await withProcessPool { pool in
            let began = ContinuousClock.now
            let result = await (try pool.submit(TestTasks.closeChannel, path, retries: 2)).result
            print(
                "a task that breaks its channel, retries 2: ran \(runs(path)) times, failed after \(ContinuousClock.now - began)"
            )
            guard case .failure(let error) = result, let death = (error as? FleetError)?.death else {
                Issue.record("closeChannel should fail with workerDied, got \(result)")
                return
            }
            // It exits (status 0) as its channel breaks, or is killed as the driver sees the break.
            #expect(death.attempts == 3 && (death.exit == .exited(0) || death.exit == .signaled(SIGKILL)))
            #expect(runs(path) == 3)
            // In a map too, and the pool goes on.
            unlink(path)
            let results = try await pool.mapResults([path], TestTasks.closeChannel, options: MapOptions(retries: 1))
            #expect((results[0].error?.underlying as? FleetError)?.death?.attempts == 2)
            #expect(runs(path) == 2)
            #expect(try await pool.map(0..<50, TestTasks.square) == (0..<50).map { $0 * $0 })
        }
    }

    @Test func aChildLeftBehindHoldsNeitherTheMapNorTheShutdown() async throws {
        let dir = NSTemporaryDirectory() + "fleet-orphan-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // The task starts `sleep 600 &` and aborts: its item fails at once,
        // and the child goes with its worker.
        try await withProcessPool { pool in
            let clock = ContinuousClock()
            let began = clock.now
            let results = try await pool.mapResults([OrphanJob(path: dir + "/a", hang: false)], TestTasks.orphan)
            let took = clock.now - began
            #expect((results[0].error?.underlying as? FleetError)?.death?.exit == .signaled(SIGABRT))
            #expect(took < .seconds(60), "the map took \(took): it waited for the task's child")
            print("a task that leaves a child and aborts: its item failed after \(took)")
            #expect(await eventually(within: 10) { childGone(dir + "/a") }, "the task's child outlived its worker")
        }
        // The task starts `sleep 600 &` and hangs: `killRunning` ends both.
        let pool = try processPool()
        let future = try pool.submit(TestTasks.orphan, OrphanJob(path: dir + "/b", hang: true))
        #expect(await eventually(within: 30) { FileManager.default.fileExists(atPath: dir + "/b") })
        let clock = ContinuousClock()
        let began = clock.now
        await pool.shutdown(.killRunning)
        let took = clock.now - began
        #expect(took < .seconds(60), "shutdown(.killRunning) took \(took)")
        print("shutdown(.killRunning) of a task with a child: \(took)")
        #expect((await future.result).error as? FleetError == .cancelled)
        #expect(await eventually(within: 10) { childGone(dir + "/b") }, "the task's child outlived shutdown")
    }
}

/// Lines in the file at `path` (0 if there is none).
private func runs(_ path: String) -> Int {
    ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").count
}

/// True once the process whose pid the file at `path` holds has gone.
private func childGone(_ path: String) -> Bool {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8),
        let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines))
    else { return false }
    return kill(pid, 0) != 0
}

extension Result {
    /// The error, if this is a failure.
    var error: Failure? {
        if case .failure(let e) = self { return e }
        return nil
    }
}
