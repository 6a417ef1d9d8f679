import Testing
import Foundation
@testable import Fleet
import FleetTestTasks

/// The test worker program, built beside the test runner.
let testWorkerPath: String = {
    let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
    var dir = exe.deletingLastPathComponent()
    // The test runner may sit inside a bundle directory.
    while !FileManager.default.fileExists(atPath: dir.appendingPathComponent("FleetTestWorker").path), dir.path != "/" {
        dir = dir.deletingLastPathComponent()
    }
    return dir.appendingPathComponent("FleetTestWorker").path
}()

func processPool(workers: Int = 2, _ configure: (inout ProcessOptions) -> Void = { _ in }) throws -> Pool {
    try? RemoteTasks.bootstrap(TestTasks.all)
    var options = ProcessOptions(workerExecutable: testWorkerPath)
    configure(&options)
    return try Pool.processes(workers: workers, options: options)
}

@Suite struct ProcessSmokeTests {
    @Test func squares() async throws {
        let pool = try processPool()
        try await pool.waitUntilReady()
        let out = try await pool.map(0..<10_000, TestTasks.square)
        #expect(out == (0..<10_000).map { $0 * $0 })
        let f = try pool.submit(TestTasks.square, 12)
        #expect(try await f.value == 144)
        await pool.shutdown()
    }
}
