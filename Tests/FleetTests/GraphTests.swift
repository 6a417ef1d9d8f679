import FleetTestTasks
import Foundation
import Testing

@testable import Fleet

/// A pairwise-sum tree over `leaves` leaves, built from remote tasks so it
/// runs on every backend.
func sumTree(leaves: Int) -> Delayed<Int> {
    var level = (0..<leaves).map { Graph.call(TestTasks.leaf, Graph.value($0)) }
    while level.count > 1 {
        level = stride(from: 0, to: level.count, by: 2).map { i in
            i + 1 < level.count ? Graph.call(TestTasks.sumAll, [level[i], level[i + 1]]) : level[i]
        }
    }
    return level[0]
}

/// Counts live payloads, to see how many results a run holds at once.
final class Payload: Sendable {
    static let live = Locked((now: 0, peak: 0))
    let bytes: [UInt8]
    init(size: Int) {
        bytes = [UInt8](unsafeUninitializedCapacity: size) { _, n in n = size }
        Payload.live.withLock {
            $0.now += 1
            $0.peak = max($0.peak, $0.now)
        }
    }
    deinit { Payload.live.withLock { $0.now -= 1 } }
}

@Suite struct GraphTests {
    /// A chain of a million nodes is computed, and dropped (computed or
    /// not), without recursion as deep as the chain: 50,000 crashed.
    @Test func aMillionNodeChainComputesAndGoesAway() async throws {
        func chain(_ n: Int) -> Delayed<Int> {
            var node = Graph.value(0)
            for _ in 0..<n { node = Graph.call("inc", { (x: Int) in x &+ 1 }, node) }
            return node
        }
        do { _ = chain(1_000_000) }  // dropped unused
        let pool = try Pool.threads(workers: 2)
        #expect(try await pool.compute(chain(1_000_000)) == 1_000_000)
        await pool.shutdown()
        // A node shared by two chains survives the first one's release.
        let shared = Graph.call("double", { (x: Int) in x * 2 }, Graph.value(21))
        var a: Delayed<Int>? = Graph.call("a", { (x: Int) in x + 1 }, shared)
        let b = Graph.call("b", { (x: Int) in x + 2 }, shared)
        a = nil
        #expect(a == nil)
        #expect(try await Pool.serial.compute(b) == 44)
    }

    @Test(arguments: TestBackend.allCases)
    func aSumTreeGivesItsRoot(_ backend: TestBackend) async throws {
        let pool = try backend.makePool()
        let root = sumTree(leaves: 4_096)
        #expect(try await pool.compute(root) == 4_095 * 4_096 / 2)
        // Several results at once, sharing their nodes.
        let a = Graph.call(TestTasks.sumAll, [Graph.value(1), Graph.value(2)])
        let b = Graph.call(TestTasks.sumAll, [a, a])
        let (x, y) = try await pool.compute(a, b)
        #expect(x == 3 && y == 6)
        #expect(try await pool.compute([a, b, a]) == [3, 6, 3])
        await pool.shutdown()
    }

    @Test(arguments: TestBackend.allCases)
    func aFailureNamesTheNode(_ backend: TestBackend) async throws {
        let pool = try backend.makePool()
        let bad = Graph.call(TestTasks.sumAll, [Graph.value(-5), Graph.value(1)], label: "the bad one")
        let root = Graph.call(TestTasks.sumAll, [bad, sumTree(leaves: 64)])
        do {
            _ = try await pool.compute(root)
            Issue.record("the run should fail")
        } catch let failure as NodeFailure {
            #expect(failure.label == "the bad one" && failure.id == bad.id)
            #expect("\(failure)".contains("task failure on -4"))
        }
        let unnamed = Graph.call(TestTasks.sumAll, [Graph.value(-1)])
        await #expect(throws: NodeFailure.self) { try await pool.compute(unnamed) }
        #expect(unnamed.label == "sumAll#\(unnamed.id)")
        await pool.shutdown()
    }

    @Test(arguments: TestBackend.inProcess)
    func sharedNodesRunOnceAndFailuresStopTheRest(_ backend: TestBackend) async throws {
        let pool = try backend.makePool()
        let runs = Counter()
        let shared = Graph.call(
            "shared",
            { (x: Int) -> Int in
                runs.increment()
                return x * 2
            }, Graph.value(21))
        let left = Graph.call("left", { (x: Int) in x + 1 }, shared)
        let right = Graph.call("right", { (x: Int) in x - 1 }, shared)
        let (l, r, s) = try await pool.compute(left, right, shared)
        #expect(l == 43 && r == 41 && s == 42 && runs.count == 1)

        // After a failure nothing new starts: of 1,000 slow independent
        // nodes behind the failing one, far fewer than all run.
        let started = Counter()
        let fail = Graph.call("fail", { (_: Int) throws -> Int in throw Boom(value: 1) }, Graph.value(0))
        let slow = (0..<1_000).map { i in
            Graph.call(
                "slow \(i)",
                { (x: Int) -> Int in
                    started.increment()
                    blockingSleep(ms: 1)
                    return x
                }, Graph.value(i))
        }
        let all = Graph.call("all", { (xs: [Int]) in xs.reduce(0, +) }, [fail] + slow)
        await #expect(throws: NodeFailure.self) { try await pool.compute(all) }
        #expect(started.count < 1_000)
        await pool.shutdown()
    }

    @Test(arguments: TestBackend.inProcess)
    func resultsAreDroppedOnceNothingNeedsThem(_ backend: TestBackend) async throws {
        let pool = try backend.makePool()
        Payload.live.withLock { $0 = (0, 0) }
        var node = Graph.call("first", { (_: Int) in Payload(size: 8 << 20) }, Graph.value(0))
        for i in 1..<1_000 {
            node = Graph.call("step \(i)", { (p: Payload) in Payload(size: p.bytes.count) }, node)
        }
        let last = try await pool.compute(node)
        #expect(last.bytes.count == 8 << 20)
        let peak = Payload.live.withLock { $0.peak }
        #expect(peak <= 3, "a chain of 1,000 held \(peak) results of 8 MiB at once")
        await pool.shutdown()
    }

    @Test func independentBranchesRunInParallel() async throws {
        let pool = try Pool.threads(workers: 2)
        // Each branch waits for the other to have started: only possible
        // when both run at once.
        let arrived = Counter()
        let meet = { @Sendable (x: Int) -> Bool in
            arrived.increment()
            let deadline = Date().addingTimeInterval(5)
            while arrived.count < 2 && Date() < deadline { usleep(1_000) }
            return arrived.count >= 2
        }
        let (a, b) = try await pool.compute(
            Graph.call("a", meet, Graph.value(1)), Graph.call("b", meet, Graph.value(2)))
        #expect(a && b)
        await pool.shutdown()
    }

    @Test func aWorkerDyingInAGraphBatchCostsOnlyItsNode() async throws {
        // About 1% of the chaos nodes kill their worker on the first try.
        let victims = (0..<3_000).filter(chaosVictim)
        #expect(!victims.isEmpty)
        let leaves = (0..<3_000).map { Graph.call(TestTasks.chaos, Graph.value($0)) }
        let root = Graph.call(TestTasks.sumAll, leaves)
        let expected = (0..<3_000).reduce(0) { $0 + $1 * 3 + 1 }
        let retrying = try processPool { $0.retries = 1 }
        #expect(try await retrying.compute(root) == expected)
        await retrying.shutdown()
        let strict = try processPool()
        do {
            _ = try await strict.compute(root)
            Issue.record("a victim should fail the run")
        } catch let failure as NodeFailure {
            let death = (failure.underlying as? FleetError)?.death
            #expect(death != nil && failure.label.hasPrefix("chaos#"), "\(failure)")
        }
        await strict.shutdown()
    }

    @Test func closuresCannotRunOnProcesses() async throws {
        let pool = try processPool()
        let node = Graph.call("local", { (x: Int) in x + 1 }, Graph.value(1))
        do {
            _ = try await pool.compute(node)
            Issue.record("a closure node should be refused")
        } catch let failure as NodeFailure {
            #expect(failure.label == "local" && "\(failure)".contains("RemoteTask"))
        }
        await pool.shutdown()
    }

    @Test(arguments: TestBackend.inProcess)
    func cancellingTheCallerStopsTheRun(_ backend: TestBackend) async throws {
        guard backend != .serial else { return }
        let pool = try backend.makePool()
        let started = Counter()
        let nodes = (0..<10_000).map { i in
            Graph.call(
                "n\(i)",
                { (x: Int) -> Int in
                    started.increment()
                    blockingSleep(ms: 1)
                    return x
                }, Graph.value(i))
        }
        let task = Task { try await pool.compute(nodes) }
        try await Task.sleep(for: .milliseconds(50))
        task.cancel()
        await #expect(throws: CancellationError.self) { try await task.value }
        #expect(started.count < 10_000)
        await pool.shutdown()
    }

    @Test func theGraphExportsAsDot() throws {
        let a = Graph.value(1, label: "one")
        let b = Graph.call("double \"it\"", { (x: Int) in x * 2 }, a)
        let dot = Graph.dot(b)
        #expect(dot.hasPrefix("digraph fleet {"))
        #expect(dot.contains("n\(a.id) [label=\"one\", shape=ellipse];"))
        #expect(dot.contains("label=\"double \\\"it\\\"\""))
        #expect(dot.contains("n\(a.id) -> n\(b.id);"))
        if FileManager.default.isExecutableFile(atPath: "/usr/bin/dot") {
            let path = NSTemporaryDirectory() + "fleet-graph-\(getpid()).svg"
            try Graph.render(dot: dot, to: path)
            #expect(try String(contentsOfFile: path, encoding: .utf8).contains("<svg"))
            try? FileManager.default.removeItem(atPath: path)
        }
        // Without Graphviz on the PATH: an error that says what to install.
        let path = ProcessInfo.processInfo.environment["PATH"]
        setenv("PATH", "/nonexistent", 1)
        defer { if let path { setenv("PATH", path, 1) } }
        #expect(throws: FleetError.toolMissing(name: "Graphviz's dot", install: "apt-get install graphviz")) {
            try Graph.render(dot: dot, to: "/tmp/x.svg")
        }
    }
}
