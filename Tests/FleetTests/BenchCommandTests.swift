import Foundation
import Testing

@testable import FleetCLI

/// The `fleet` program built beside the test runner.
let fleetPath = URL(fileURLWithPath: testWorkerPath).deletingLastPathComponent().appendingPathComponent("fleet").path

/// Runs a program built beside the test runner (`fleet`, an example) with
/// `arguments`; returns its standard output (and error output, with
/// `errors`) and its exit status.
func runProgram(_ name: String, _ arguments: [String], errors: Bool = false) throws -> (String, Int32) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: fleetPath).deletingLastPathComponent().appendingPathComponent(name)
    process.arguments = arguments
    let out = Pipe()
    process.standardOutput = out
    process.standardError = errors ? out : FileHandle.nullDevice
    try process.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (String(decoding: data, as: UTF8.self), process.terminationStatus)
}

/// Runs `fleet`; returns its standard output and status.
func runFleet(_ arguments: [String]) throws -> (String, Int32) { try runProgram("fleet", arguments) }

/// Runs `fleet`, returning its output and error output together.
func runFleetWithErrors(_ arguments: [String]) throws -> (String, Int32) {
    try runProgram("fleet", arguments, errors: true)
}

/// The first JSON record `fleet bench --json` printed: its line and keys.
func firstRecord(_ out: String) throws -> (line: Substring, record: [String: Any]?) {
    let line = try #require(out.split(separator: "\n").first { $0.hasPrefix("{") })
    return (line, try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
}

@Suite struct BenchCommandTests {
    @Test func benchSaysWhatToUse() throws {
        // Serial's start-up (no threads) beats the others by far, every time.
        let (out, status) = try runFleet([
            "bench", "--workload", "startup", "--backend", "serial", "threads",
            "--runs", "1", "--markdown",
        ])
        #expect(status == 0)
        #expect(out.contains("| workload | backend | workers |"))
        #expect(out.contains("What to use:"))
        #expect(out.contains("| startup | serial | 1 |"), "\(out)")
        #expect(out.contains("startup: serial wins"))
        #expect(out.contains("better than threads with 2 workers"))
    }

    @Test func benchSaysWhichWorkloadsABackendCannotRun() throws {
        let (out, status) = try runFleetWithErrors([
            "bench", "--workload", "allreduce", "--backend", "threads", "--runs", "1",
        ])
        #expect(status != 0)
        #expect(out.contains("no backend named runs allreduce: it runs on mpi, mpi-c"), "\(out)")
    }

    #if !MPI
    @Test func benchSaysHowToGetTheMPIBackend() throws {
        let (out, status) = try runFleetWithErrors(["bench", "--workload", "tiny", "--backend", "mpi", "--runs", "1"])
        #expect(status != 0)
        #expect(
            out.contains("built without the MPI trait, so it has no mpi backend: swift build -c release --traits MPI"),
            "\(out)")
    }
    #endif

    @Test func benchJSONHasTheContractsKeys() throws {
        let (out, status) = try runFleet([
            "bench", "--workload", "graph", "--backend", "processes", "--runs", "1", "--json",
        ])
        #expect(status == 0)
        let (_, record) = try firstRecord(out)
        let keys = Set(record?.keys.map { $0 } ?? [])
        #expect(
            keys == ["workload", "backend", "workers", "tasks", "seconds", "figure", "unit", "check", "peak_rss_bytes"])
        #expect(record?["check"] as? String == "ok" && record?["tasks"] as? Int == 131_071)
    }

    /// records across processes: dictionaries of strings cross and merge
    /// to the contract's answer; its rate is better bigger.
    @Test func recordsCrossProcessesAndAreARate() throws {
        let (out, status) = try runFleet([
            "bench", "--workload", "records", "--backend", "processes", "--runs", "1", "--json",
        ])
        #expect(status == 0)
        let (line, record) = try firstRecord(out)
        #expect(record?["check"] as? String == "ok" && record?["tasks"] as? Int == 20_000, "\(line)")
        #expect(record?["unit"] as? String == "entries/s")
        #expect(biggerIsBetter("entries/s") && biggerIsBetter("tasks/s") && !biggerIsBetter("us/future"))
    }

    @Test func benchMeasuresTheProgramsOwnTask() throws {
        let input = NSTemporaryDirectory() + "fleet-task-input-\(getpid()).json"
        defer { try? FileManager.default.removeItem(atPath: input) }
        try Data("[{\"lo\":0,\"hi\":20000},{\"lo\":20000,\"hi\":40000}]".utf8).write(to: URL(fileURLWithPath: input))
        let (out, status) = try runFleet(["bench", "--task", "bench.primes", "--input", input, "--runs", "1"])
        #expect(status == 0, "\(out)")
        for backend in ["serial", "threads", "processes"] {
            #expect(out.contains("bench.primes  \(backend)"), "\(out)")
        }
        #expect(out.contains("wins") && out.contains("Use Pool.make(."))
        // Unknown tasks and inputs of the wrong shape are clear errors.
        let (unknown, bad) = try runFleetWithErrors(["bench", "--task", "nope", "--input", input])
        #expect(bad != 0 && unknown.contains("no remote task is named \"nope\"") && unknown.contains("bench.primes"))
        try Data("[1, 2]".utf8).write(to: URL(fileURLWithPath: input))
        let (shape, status2) = try runFleetWithErrors([
            "bench", "--task", "bench.primes", "--input", input, "--backend", "serial",
        ])
        #expect(status2 != 0 && shape.contains("not a JSON array of FleetCLI.PrimeRange"))
    }

    @Test func badArgumentsAreClearErrors() throws {
        let (_, status) = try runFleet(["bench", "--runs", "0"])
        #expect(status != 0)
    }
}
