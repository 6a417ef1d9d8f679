import Fleet
import FleetTestTasks

#if canImport(Glibc)
import Glibc
#endif

// The worker program of the test suite: serves the test tasks.
//
// FLEET_TEST_VARIANT=missing registers one task fewer, to play a worker
// built from different code. With the argument `--driver`, it is instead a
// driver: it starts a processes pool of itself, prints the workers' pids
// and waits to be killed (the orphan test).
let variant = getenv("FLEET_TEST_VARIANT").map { String(cString: $0) }
try RemoteTasks.bootstrap(variant == "missing" ? Array(TestTasks.all.dropLast()) : TestTasks.all)

if CommandLine.arguments.dropFirst().first == "--driver" {
    let pool = try Pool.processes(workers: 2)
    try await pool.waitUntilReady()
    var pids = Set<Int32>()
    while pids.count < 2 {
        let a = try pool.submit(TestTasks.sleepPid, 200)
        let b = try pool.submit(TestTasks.sleepPid, 200)
        pids.insert(try await a.value)
        pids.insert(try await b.value)
    }
    let line = pids.map(String.init).joined(separator: " ") + "\n"
    _ = line.withCString { write(1, $0, strlen($0)) }
    while true { sleep(60) }
}
print("FleetTestWorker serves the test suite's remote tasks; the processes backend starts it.")
