import Foundation
import Testing

@testable import Fleet

@Suite("futures on every backend", .timeLimit(.minutes(2)))
struct FutureTests {
    @Test(arguments: TestBackend.inProcess)
    func submitGivesTheValueOrTheError(_ backend: TestBackend) async throws {
        let pool = try backend.makePool()
        let ok = try pool.submit { 6 * 7 }
        #expect(try await ok.value == 42)
        #expect(ok.isDone)
        let bad = try pool.submit { () throws -> Int in throw Boom(value: 1) }
        await #expect(throws: Boom(value: 1)) { try await bad.value }
        let asyncOne = try pool.submit { () async throws -> String in
            try await Task.sleep(for: .milliseconds(1))
            return "done"
        }
        #expect(try await asyncOne.value == "done")
        #expect(try waitBlocking(ok) == 42)
    }

    @Test func waitingWithATimeoutLeavesTheTaskRunning() async throws {
        let pool = try Pool.threads(workers: 1)
        let slow = try pool.submit { () -> Int in
            blockingSleep(ms: 300)
            return 1
        }
        await #expect(throws: FleetError.timedOut(item: nil, after: .milliseconds(20))) {
            try await slow.value(timeout: .milliseconds(20))
        }
        #expect(throws: FleetError.self) { try waitBlocking(slow, timeout: .milliseconds(10)) }
        #expect(!slow.isDone)
        #expect(try await slow.value == 1)
    }

    /// A time-out of zero looks without waiting, as Python's `timeout=0`;
    /// `asCompleted(timeout:)` yields what is done in time, then throws.
    @Test func aZeroTimeoutLooksAndAsCompletedCanTimeOut() async throws {
        let pool = try Pool.threads(workers: 1)
        let quick = try pool.submit { 7 }
        _ = try await quick.value
        let slow = try pool.submit { () -> Int in
            blockingSleep(ms: 300)
            return 1
        }
        #expect(try await quick.value(timeout: .zero) == 7)
        #expect(try waitBlocking(quick, timeout: .zero) == 7)
        await #expect(throws: FleetError.timedOut(item: nil, after: .zero)) { try await slow.value(timeout: .zero) }
        #expect(throws: FleetError.self) { try waitBlocking(slow, timeout: .zero) }
        let (done, pending) = try await wait([quick, slow], timeout: .zero)
        #expect(done == [quick] && pending == [slow])

        var seen: [Future<Int>] = []
        do {
            for try await f in try asCompleted([slow, quick], timeout: .milliseconds(50)) { seen.append(f) }
            Issue.record("asCompleted did not time out")
        } catch let error as FleetError {
            #expect(error == .timedOut(item: nil, after: .milliseconds(50)))
        }
        #expect(seen == [quick])
        var all: [Future<Int>] = []
        for try await f in try asCompleted([slow, quick], timeout: .seconds(30)) { all.append(f) }
        #expect(Set(all) == [quick, slow] && all.count == 2)
        await pool.shutdown()
    }

    @Test func cancelStopsAQueuedTaskButNotARunningOne() async throws {
        let pool = try Pool.threads(workers: 1)
        let gate = Locked(false)
        let running = try pool.submit { () -> Int in
            while !gate.withLock({ $0 }) { usleep(1000) }
            return 1
        }
        let queued = try pool.submit { 2 }
        #expect(await eventually { running.isRunning })
        #expect(!running.cancel())
        #expect(queued.cancel())
        #expect(queued.isCancelled && queued.isDone)
        gate.withLock { $0 = true }
        #expect(try await running.value == 1)
        await #expect(throws: FleetError.cancelled) { try await queued.value }
    }

    @Test(arguments: TestBackend.inProcess)
    func callbacksRunOnceWithTheOutcome(_ backend: TestBackend) async throws {
        let pool = try backend.makePool()
        let seen = Locked<[Int]>([])
        let f = try pool.submit { 5 }
        f.whenComplete { r in seen.withLock { $0.append((try? r.get()) ?? -1) } }
        _ = try await f.value
        f.whenComplete { r in seen.withLock { $0.append((try? r.get()) ?? -1) } }  // already done: runs at once
        #expect(await eventually { seen.withLock { $0 } == [5, 5] })
    }

    @Test(arguments: TestBackend.inProcess)
    func asCompletedYieldsInCompletionOrder(_ backend: TestBackend) async throws {
        let pool = try backend.makePool(workers: 4)
        let delays = [80, 10, 40, 0]
        let futures = try delays.map { ms in
            try pool.submit { () -> Int in
                blockingSleep(ms: ms)
                return ms
            }
        }
        var order: [Int] = []
        for await f in asCompleted(futures) { order.append(try await f.value) }
        #expect(order.sorted() == delays.sorted())
        if backend == .threads { #expect(order == delays.sorted()) }
        var none = 0
        for await _ in asCompleted([Future<Int>]()) { none += 1 }
        #expect(none == 0)
    }

    @Test func waitReturnsDoneAndPendingSets() async throws {
        let pool = try Pool.threads(workers: 3)
        let gate = Locked(false)
        let fast = try pool.submit { 1 }
        let failing = try pool.submit { () throws -> Int in
            blockingSleep(ms: 20)
            throw Boom(value: 2)
        }
        let blocked = try pool.submit { () -> Int in
            while !gate.withLock({ $0 }) { usleep(1000) }
            return 3
        }
        let first = try await wait([fast, failing, blocked], until: .firstCompleted)
        #expect(first.done.contains(fast))
        let failure = try await wait([fast, failing, blocked], until: .firstFailure)
        #expect(failure.done.contains(failing) && failure.pending == [blocked])
        let timedOut = try await wait([fast, failing, blocked], until: .allCompleted, timeout: .milliseconds(30))
        #expect(timedOut.pending == [blocked])
        gate.withLock { $0 = true }
        let all = try await wait([fast, failing, blocked])
        #expect(all.done.count == 3 && all.pending.isEmpty)
    }

    @Test func promiseCompletesItsFutureOnce() async throws {
        let (future, promise) = Future<Int>.make()
        #expect(promise.markRunning())
        #expect(promise.succeed(1))
        #expect(!promise.fail(Boom(value: 0)))
        #expect(try await future.value == 1)
    }

    @Test func submitTimeoutFailsTheTaskAndReplacesTheThread() async throws {
        let pool = try Pool.threads(workers: 1)
        let sawCancel = Locked(false)
        let stuck = try pool.submit(timeout: .milliseconds(50)) { () -> Int in
            let cancelled = cooperativeSleep(ms: 2_000)
            sawCancel.withLock { $0 = cancelled }
            return 0
        }
        await #expect(throws: FleetError.timedOut(item: nil, after: .milliseconds(50))) { try await stuck.value }
        // The single worker was replaced: new work runs while the old thread
        // finishes its task.
        let next = try pool.submit { 7 }
        #expect(try await next.value(timeout: .seconds(5)) == 7)
        #expect(await eventually { sawCancel.withLock { $0 } })
    }
}

/// `Future.waitBlocking`, from synchronous code as it must be called.
private func waitBlocking<T>(_ future: Future<T>, timeout: Duration? = nil) throws -> T {
    try future.waitBlocking(timeout: timeout)
}
