import FleetTestTasks
import Foundation
import Testing

@testable import Fleet

/// What only the processes backend does: isolate crashes, kill hung tasks,
/// recycle workers, check the code on both ends, and leave no process behind.
@Suite struct ProcessFailureTests {
    @Test func aDyingWorkerFailsOnlyItsItemAndIsReplaced() async throws {
        try await withProcessPool { pool in
            let expected: [WorkerExit] = [.signaled(SIGKILL), .signaled(SIGABRT), .exited(7), .signaled(SIGSEGV)]
            for (how, exit) in expected.enumerated() {
                let future = try pool.submit(TestTasks.die, how)
                guard case .failure(let error) = await future.result, let death = (error as? FleetError)?.death else {
                    Issue.record("die(\(how)) should fail with workerDied, got \(await future.result)")
                    continue
                }
                // Under a sanitizer, its own handler catches the fault and exits with 66.
                #expect(death.exit == exit || (underSanitizer && death.exit == .exited(66)))
                #expect(death.pid > 0 && death.attempts == 1 && death.item == nil)
                #expect("\(error)".contains("pid \(death.pid)"))
            }
            // Inside a map, the error names the item; the others succeed.
            let results = try await pool.mapResults([1, 2, -3, 4], TestTasks.dieOnNegative)
            #expect(try results[0].get() == 1 && results[1].get() == 2 && results[3].get() == 4)
            guard case .failure(let f) = results[2], let death = (f.underlying as? FleetError)?.death else {
                Issue.record("item 2 should have died")
                return
            }
            #expect(f.index == 2 && death.item == 2 && death.exit == .signaled(SIGKILL))
            #expect(try await pool.map(0..<100, TestTasks.square) == (0..<100).map { $0 * $0 })
        }
    }

    @Test func chaosWithOneRetryDeliversEveryResultOnce() async throws {
        let victims = (0..<10_000).filter(chaosVictim)
        #expect(victims.count > 50 && victims.count < 150)  // about 1%
        try await withProcessPool({ $0.retries = 1 }) { pool in
            var seen = [Int](repeating: 0, count: 10_000)
            for try await (i, v) in pool.mapUnordered(0..<10_000, TestTasks.chaos) {
                #expect(v == i &* 3 &+ 1)
                seen[i] += 1
            }
            #expect(seen.allSatisfy { $0 == 1 })
            let ordered = try await pool.map(0..<10_000, TestTasks.chaos)
            #expect(ordered == (0..<10_000).map { $0 &* 3 &+ 1 })
        }
    }

    @Test func chaosWithoutRetriesFailsExactlyTheVictims() async throws {
        let victims = Set((0..<10_000).filter(chaosVictim))
        try await withProcessPool { pool in
            let results = try await pool.mapResults(0..<10_000, TestTasks.chaos)
            var failed = Set<Int>()
            for (i, r) in results.enumerated() {
                switch r {
                case .success(let v): #expect(v == i &* 3 &+ 1)
                case .failure(let f):
                    #expect(f.index == i)
                    let death = (f.underlying as? FleetError)?.death
                    #expect(death?.item == i && death?.attempts == 1)
                    #expect(death?.exit == (i % 2 == 0 ? .signaled(SIGKILL) : .signaled(SIGABRT)))
                    failed.insert(i)
                }
            }
            #expect(failed == victims)
        }
    }

    @Test func perCallRetriesOverrideThePool() async throws {
        try await withProcessPool { pool in
            let out = try await pool.map(0..<2_000, TestTasks.chaos, options: MapOptions(retries: 2))
            #expect(out == (0..<2_000).map { $0 &* 3 &+ 1 })
            let f = try pool.submit(TestTasks.chaos, (0..<10_000).first(where: chaosVictim)!, retries: 1)
            #expect(try await f.value > 0)
        }
    }

    @Test func aTimeoutKillsTheWorker() async throws {
        try await withProcessPool(workers: 1) { pool in
            let before = try await pool.submit(TestTasks.pid, 0).value
            let hung = try pool.submit(TestTasks.sleep, 60_000, timeout: .milliseconds(200))
            await #expect(throws: FleetError.timedOut(item: nil, after: .milliseconds(200))) { try await hung.value }
            let after = try await pool.submit(TestTasks.pid, 0).value
            #expect(before != after)
            let gone = await eventually { !processExists(before) }
            #expect(gone)
        }
    }

    @Test func killRunningEndsAShutdownStuckOnAHungTask() async throws {
        let before = childPids()
        let pool = try processPool(workers: 1)
        let hung = try pool.submit(TestTasks.sleep, 600_000)
        let queued = try pool.submit(TestTasks.square, 3)
        try await pool.waitUntilReady()
        try await Task.sleep(for: .milliseconds(100))
        await pool.shutdown(.killRunning)
        await #expect(throws: FleetError.cancelled) { try await hung.value }
        await #expect(throws: FleetError.cancelled) { try await queued.value }
        #expect(await eventually { childPids().subtracting(before).isEmpty })
    }

    @Test func theInitializerRunsInEveryWorkerIncludingReplacements() async throws {
        try await withProcessPool({ $0.initializer = try? WorkerInitializer(TestTasks.setUp, 42) }) { pool in
            let seen = try await pool.map(
                Array(repeating: 0, count: 50), TestTasks.readInitialized, options: MapOptions(batchSize: 1))
            #expect(seen.allSatisfy { $0 == 42 }, "\(seen)")
            _ = try await pool.submit(TestTasks.die, 0).result  // a replacement starts
            let after = try await pool.map(
                Array(repeating: 0, count: 50), TestTasks.readInitialized, options: MapOptions(batchSize: 1))
            #expect(after.allSatisfy { $0 == 42 })
        }
        let failing = try processPool { $0.initializer = try? WorkerInitializer(TestTasks.setUp, -1) }
        do {
            try await failing.waitUntilReady()
            Issue.record("a failing initializer should stop the pool")
        } catch let error as FleetError {
            #expect("\(error)".contains("initializer \"setUp\" failed") && "\(error)".contains("task failure on -1"))
        }
        await failing.shutdown()
    }

    @Test func workersHoldNoSocketAndOnlyTheirChannels() async throws {
        try await withProcessPool { pool in
            try await pool.waitUntilReady()
            let pids = pool.workerProcessIDs
            #expect(pids.count == 2)
            for pid in pids {
                let fds = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")
                let targets = fds.compactMap {
                    try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\($0)")
                }
                #expect(!targets.contains { $0.hasPrefix("socket:") }, "\(targets)")
                #expect(Set(fds.compactMap(Int.init)).isSubset(of: Set(0...9)), "\(fds)")
            }
        }
    }

    @Test func workersAreRecycledAfterNItems() async throws {
        try await withProcessPool(workers: 1, { $0.recycleAfter = 5 }) { pool in
            let pids = try await pool.map(
                Array(repeating: 0, count: 20), TestTasks.pid, options: MapOptions(batchSize: 1))
            #expect(Set(pids).count == 4)
        }
    }

    @Test func closuresAndUnregisteredTasksAreClearErrors() async throws {
        try await withProcessPool { pool in
            await #expect(throws: FleetError.self) { _ = try await pool.map(0..<10) { $0 + 1 } }
            #expect(throws: FleetError.self) { try pool.submit { 1 } }
            let stranger = RemoteTask("stranger") { (x: Int) in x }
            do {
                _ = try pool.submit(stranger, 1)
                Issue.record("an unregistered task should be refused")
            } catch let error as FleetError {
                #expect("\(error)".contains("\"stranger\" is not registered"))
            }
        }
    }

    @Test func aWorkerBuiltFromDifferentCodeIsRefused() async throws {
        let pool = try processPool { $0.environment = ["FLEET_TEST_VARIANT": "missing"] }
        do {
            try await pool.waitUntilReady()
            Issue.record("the handshake should fail")
        } catch let error as FleetError {
            #expect("\(error)".contains("built from different code"))
            #expect("\(error)".contains("spinUntilCancelled"))
        }
        #expect(throws: FleetError.self) { try pool.submit(TestTasks.square, 2) }
        await pool.shutdown()
    }

    @Test func aProgramThatIsNotAWorkerIsAClearError() async throws {
        try? RemoteTasks.bootstrap(TestTasks.all)
        let pool = try Pool.processes(workers: 1, options: ProcessOptions(workerExecutable: "/bin/true"))
        await #expect(throws: FleetError.self) { try await pool.waitUntilReady() }
        let missing = try Pool.processes(workers: 1, options: ProcessOptions(workerExecutable: "/nonexistent/worker"))
        do {
            try await missing.waitUntilReady()
            Issue.record("a missing executable should fail")
        } catch let error as FleetError {
            #expect("\(error)".contains("/nonexistent/worker"))
        }
        await pool.shutdown()
        await missing.shutdown()
    }

    @Test func aCorruptReplyIsAProtocolErrorAndTheWorkerIsReplaced() async throws {
        try await withProcessPool(workers: 1) { pool in
            let f = try pool.submit(TestTasks.corruptReply, 1)
            guard case .failure(let error) = await f.result, case .protocolViolation = error as? FleetError else {
                Issue.record("expected a protocol violation")
                return
            }
            #expect(try await pool.map(0..<50, TestTasks.square) == (0..<50).map { $0 * $0 })
        }
    }

    @Test func aWorkerGivenAMalformedFrameSaysSoAndExits() throws {
        try? RemoteTasks.bootstrap(TestTasks.all)
        let relay = OutputRelay(name: "test-relay")
        defer { relay.stop() }
        let arena = try SharedArena()
        func header(length: UInt32, kind: UInt8, flags: UInt8 = 0, seq: UInt64 = 1) -> [UInt8] {
            withUnsafeBytes(of: length.littleEndian, Array.init) + [kind, flags, 0, 0]
                + withUnsafeBytes(of: seq.littleEndian, Array.init)
        }
        func word(_ v: UInt64) -> [UInt8] { withUnsafeBytes(of: v.littleEndian, Array.init) }
        let squareID = try #require(RemoteTasks.registry.ids["square"])  // takes one Int
        // Values nested 100,000 deep through arrays, and 30,000 deep through
        // keyed entries (`inner`, an optional), inside the request's list.
        func request(_ task: String, _ inputs: [UInt8]) throws -> [UInt8] {
            let id = try #require(RemoteTasks.registry.ids[task])
            let body = withUnsafeBytes(of: UInt32(id).littleEndian, Array.init) + [0, 0, 0, 0, 0] + word(1) + inputs
            return header(length: UInt32(body.count), kind: FrameKind.request.rawValue) + body
        }
        let unkeyed = [UInt8]((0..<100_000).flatMap { _ in word(1) }) + word(0)
        // Level k (from the outside): one entry, `inner`, whose value is the
        // 25-byte entries of the levels inside it and the innermost, empty one.
        var keyed: [UInt8] = []
        for k in 0..<30_000 {
            keyed += word(1) + [5, 0, 0, 0] + Array("inner".utf8) + word(UInt64(25 * (30_000 - 1 - k) + 8))
        }
        keyed += word(0)  // no `inner`: nil
        let cases: [(String, [UInt8])] = [
            ("unknown frame kind", header(length: 0, kind: 77)),
            ("oversized", header(length: 1 << 30, kind: FrameKind.request.rawValue)),
            (
                "no task with id",
                header(length: 17, kind: FrameKind.request.rawValue) + [200, 0, 0, 0] + [UInt8](repeating: 0, count: 13)
            ),
            (
                "bytes after the inputs",
                header(length: 30, kind: FrameKind.request.rawValue)
                    + withUnsafeBytes(of: UInt32(squareID).littleEndian, Array.init) + [UInt8](repeating: 0, count: 5)
                    + word(1) + [UInt8](repeating: 1, count: 13)
            ),
            ("unexpected", header(length: 0, kind: FrameKind.reply.rawValue)),
            (
                "outside the arena",
                header(length: 25, kind: FrameKind.request.rawValue, flags: 1)
                    + [UInt8](repeating: 0, count: 9) + word(1 << 40) + word(64)
            ),
            ("reserved header bits", header(length: 0, kind: FrameKind.reply.rawValue, flags: 1)),
            ("nested deeper than 512", try request("unkeyedDepth", unkeyed)),
            ("nested deeper than 512", try request("keyedDepth", keyed)),
        ]
        for (expected, garbage) in cases {
            let link = try WorkerLink.spawn(
                executable: testWorkerPath,
                spec: WorkerSpec(version: Int(wireProtocolVersion), parent: getpid(), maxFrameBytes: 1 << 20),
                environment: [:], arena: arena, relay: relay, label: { "malformed-test \($0)" })
            let reader = FrameReader(fd: link.replyFD, maxLength: 1 << 20)
            #expect(try reader.next()?.0.kind == .hello)
            garbage.withUnsafeBytes { try? writeAll(link.requestFD, $0) }
            let frame = try reader.next()
            #expect(frame?.0.kind == .fatal)
            if let (_, body) = frame {
                var r = WireReader(body)
                let message = try r.readString()
                #expect(message.contains(expected), "\(message)")
            }
            #expect(link.reap() == .exited(3))
        }
    }

    @Test func workerOutputReachesStderrLabelled() async throws {
        let captured = try await captureStderr {
            try await withProcessPool(workers: 1) { pool in
                let out = try await pool.map(0..<3, TestTasks.chatty)
                #expect(out == [0, 1, 2])
            }
        }
        #expect(captured.contains("hello from item 1"))
        #expect(captured.contains("stderr from item 2"))
        let labelled = captured.split(separator: "\n").filter { $0.contains("from item") }
        #expect(labelled.count == 6 && labelled.allSatisfy { $0.hasPrefix("[worker 0 pid ") })
    }

    /// 50 MiB with no newline arrives whole, in labelled pieces, by the time
    /// `shutdown` returns, as 50 MiB of short lines does; `print`'s lines
    /// keep their place among stderr's.
    @Test func workerOutputOfAnyShapeArrivesBeforeShutdownReturns() async throws {
        let size = (underSanitizer ? 16 : 50) << 20  // the sanitizer slows the counting here, not the relay
        for line: Int? in [nil, 80] {
            let began = ContinuousClock.now
            let captured = try await captureStderr(settle: .zero) {
                try await withProcessPool(workers: 1) { pool in
                    let wrote = try await pool.submit(TestTasks.noisy, NoisyJob(bytes: size, line: line)).value
                    #expect(wrote == size)
                }
            }
            let took = ContinuousClock.now - began
            let lines = captured.utf8.split(separator: 10)
            let xs = lines.filter { $0.starts(with: Array("[worker 0 pid ".utf8)) }.reduce(0) {
                $0 + $1.count(where: { $0 == UInt8(ascii: "x") })
            }
            // `noisy` puts its newlines in each 64 KiB write on its own.
            let newlines = line.map { (size >> 16) * ((1 << 16) / $0) } ?? 0
            #expect(xs == size - newlines, "\(xs) of the bytes arrived")
            #expect(lines.allSatisfy { $0.count <= OutputRelay.pieceBytes + 64 })
            print(
                "\(size >> 20) MiB to stderr, \(line.map { "lines of \($0) bytes" } ?? "no newline"): relayed in \(took)"
            )
        }
        let captured = try await captureStderr(settle: .zero) {
            try await withProcessPool(workers: 1) { pool in
                let n = try await pool.submit(TestTasks.interleaved, 3).value
                #expect(n == 3)
            }
        }
        let said = captured.split(separator: "\n").filter { $0.hasPrefix("[worker 0 pid ") }.map {
            $0.split(separator: "] ", maxSplits: 1).last.map(String.init) ?? ""
        }
        #expect(said == ["out 0", "err 0", "out 1", "err 1", "out 2", "err 2"], "\(said)")
    }

    @Test func workersExitWhenTheDriverDies() async throws {
        let driver = Process()
        driver.executableURL = URL(fileURLWithPath: testWorkerPath)
        driver.arguments = ["--driver"]
        let out = Pipe()
        driver.standardOutput = out
        try driver.run()
        let line = String(decoding: out.fileHandleForReading.availableData, as: UTF8.self)
        let pids = line.split(separator: " ").compactMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        #expect(pids.count == 2)
        #expect(pids.allSatisfy(processExists))
        kill(driver.processIdentifier, SIGKILL)
        driver.waitUntilExit()
        #expect(await eventually { !pids.contains(where: processExists) }, "workers outlived their driver")
    }
}

/// Runs `body` with this process's stderr sent to a file; returns what was
/// written, `settle` after `body` returned.
func captureStderr(settle: Duration = .milliseconds(100), _ body: () async throws -> Void) async throws -> String {
    let path = NSTemporaryDirectory() + "fleet-stderr-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    let fd = open(path, O_CREAT | O_RDWR | O_TRUNC, 0o600)
    let saved = dup(2)
    dup2(fd, 2)
    do {
        try await body()
    } catch {
        dup2(saved, 2)
        throw error
    }
    if settle > .zero { try await Task.sleep(for: settle) }  // let a relay still running finish
    dup2(saved, 2)
    close(saved)
    close(fd)
    defer { unlink(path) }
    return (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
}
