import FleetTestTasks
import Foundation
import Testing

@testable import Fleet

/// The test worker program, built beside the test runner.
let testWorkerPath: String = {
    var dir = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
    // The test runner may sit inside a bundle directory.
    while !FileManager.default.fileExists(atPath: dir.appendingPathComponent("FleetTestWorker").path), dir.path != "/" {
        dir = dir.deletingLastPathComponent()
    }
    return dir.appendingPathComponent("FleetTestWorker").path
}()

/// A processes pool running the test worker program.
func processPool(workers: Int = 2, _ configure: (inout ProcessOptions) -> Void = { _ in }) throws -> Pool {
    try? RemoteTasks.bootstrap(TestTasks.all)
    var options = ProcessOptions(workerExecutable: testWorkerPath)
    configure(&options)
    return try Pool.processes(workers: workers, options: options)
}

/// The pids of this process's children (zombies included).
func childPids() -> Set<Int32> {
    let dir = "/proc/self/task"
    let tids = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
    var pids = Set<Int32>()
    for tid in tids {
        let text = (try? String(contentsOfFile: "\(dir)/\(tid)/children", encoding: .utf8)) ?? ""
        for word in text.split(separator: " ") {
            if let pid = Int32(word.trimmingCharacters(in: .whitespacesAndNewlines)) { pids.insert(pid) }
        }
    }
    return pids
}

/// True while a process with this pid exists (a zombie counts).
func processExists(_ pid: Int32) -> Bool { kill(pid, 0) == 0 }

/// Runs `body` on a fresh processes pool, shuts it down, and checks that no
/// worker process is left behind.
func withProcessPool(
    workers: Int = 2, _ configure: (inout ProcessOptions) -> Void = { _ in },
    _ body: (Pool) async throws -> Void
) async throws {
    let before = childPids()
    let pool = try processPool(workers: workers, configure)
    do {
        try await body(pool)
    } catch {
        await pool.shutdown(.cancelPending)
        throw error
    }
    await pool.shutdown()
    #expect(await eventually { childPids().subtracting(before).isEmpty }, "worker processes left after shutdown")
}

extension FleetError {
    /// The worker-death details, when this is `.workerDied`.
    var death: (item: Int?, pid: Int32, exit: WorkerExit, attempts: Int)? {
        if case .workerDied(let item, let pid, let exit, let attempts) = self { return (item, pid, exit, attempts) }
        return nil
    }
}

/// True when the tests (and so the test worker) run under a sanitizer.
let underSanitizer: Bool =
    dlsym(nil, "__tsan_init") != nil
    || dlsym(nil, "__asan_init") != nil
