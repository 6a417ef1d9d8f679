#if MPI
import Foundation
import Testing

// MPI jobs across two test hosts on this machine (scripts/test-hosts: each
// host a network namespace with its own address and name, two ranks on
// each, talking TCP over a bridge as cluster nodes do). Needs root.

let runsAsRoot = getuid() == 0

/// The repository's scripts/ directory.
let scriptsDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("scripts").path

@discardableResult
func shell(_ command: String) throws -> (String, Int32) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/sh")
    process.arguments = ["-c", command]
    let out = Pipe()
    process.standardOutput = out
    process.standardError = out
    try process.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (String(decoding: data, as: UTF8.self), process.terminationStatus)
}

/// Makes two test hosts, runs `body` with the `mpirun` command line that
/// starts 4 ranks across them (from host 1, as from a cluster's first
/// node), and removes the hosts.
func withTwoTestHosts(_ body: ([String]) throws -> Void) throws {
    let script = "\(scriptsDirectory)/test-hosts"
    let (up, status) = try shell("\(script) up 2")  // removes what an interrupted run left first
    defer { _ = try? shell("\(script) down 2") }
    try #require(status == 0, "cannot make the test hosts: \(up)")
    let agent = up.split(separator: "\n").last.map(String.init) ?? ""
    let hostfile = temporaryPath("hostfile")
    try "10.77.0.11 slots=2\n10.77.0.12 slots=2\n".write(toFile: hostfile, atomically: true, encoding: .utf8)
    defer { try? FileManager.default.removeItem(atPath: hostfile) }
    try body([
        "ip", "netns", "exec", "fnode1", "unshare", "--uts", "sh", "-c", "hostname fnode1; exec \"$0\" \"$@\"",
        "mpirun", "--allow-run-as-root", "--mca", "routed", "direct", "--mca", "plm_rsh_agent", agent,
        "--mca", "btl", "tcp,self", "--mca", "btl_tcp_if_include", "10.77.0.0/24",
        "--mca", "oob_tcp_if_include", "10.77.0.0/24", "--hostfile", hostfile, "-np", "4",
    ])
}

@Suite(.serialized, .enabled(if: runsAsRoot, "network namespaces need root"))
struct MPIClusterTests {
    @Test func ranksRunOnBothHosts() throws {
        try withTwoTestHosts { launch in
            let run = try mpirun(4, "FleetMPIChecks", ["hosts"], limit: 60, launch: launch)
            #expect(run.status == 0 && run.output.contains("hosts fnode1 fnode1 fnode2 fnode2"), "\(run.output)")
        }
    }

    @Test func theEMFitAcrossHostsMatchesTheSerialFit() throws {
        let serial = temporaryPath("em-serial-hosts.json")
        let spread = temporaryPath("em-hosts.json")
        defer { for p in [serial, spread] { try? FileManager.default.removeItem(atPath: p) } }
        let size = ["--points", "12000", "--iterations", "12"]
        let alone = try runProgram("GaussianMixture", size + ["--output", serial], errors: true)
        #expect(alone.1 == 0, "\(alone.0)")
        try withTwoTestHosts { launch in
            let run = try mpirun(4, "GaussianMixture", size + ["--output", spread], limit: 240, launch: launch)
            #expect(run.status == 0 && run.output.contains("on 4 ranks (2 hosts: fnode1, fnode2)"), "\(run.output)")
        }
        let difference = try fitDifference(serial, spread)
        #expect(difference <= 1e-6, "the fits differ by \(difference) (relative)")
    }

    @Test func theExecutorMapsAcrossHosts() throws {
        try withTwoTestHosts { launch in
            let run = try mpirun(4, "FleetMPIChecks", ["executor"], limit: 300, launch: launch)
            #expect(run.status == 0 && run.output.contains("ok executor on 4 ranks"), "\(run.output)")
        }
    }

    /// With `big`, the ranks are in the middle of sending 1 MiB replies when
    /// the host is cut, so a blocking send could not complete. With
    /// `collectives`, the job is collective code in `MPI.run` with the
    /// default heartbeat time-out (5 s), not an executor.
    @Test(arguments: ["slow", "big", "collectives"])
    func cuttingAHostOffEndsTheJobNamingTheLostRank(mode: String) throws {
        try withTwoTestHosts { launch in
            let marker = temporaryPath("slow-started")
            let arguments =
                mode == "collectives" ? ["loop", marker] : ["slow", marker] + (mode == "big" ? ["big"] : [])
            try? FileManager.default.removeItem(atPath: marker)
            defer { try? FileManager.default.removeItem(atPath: marker) }
            let cut = SharedBox<Date?>(nil)
            let gone = SharedBox<Date?>(nil)
            let cutter = Thread {
                let deadline = Date().addingTimeInterval(120)
                while !FileManager.default.fileExists(atPath: marker) && Date() < deadline { usleep(50_000) }
                usleep(500_000)  // well into the map
                cut.set(Date())
                _ = try? shell("ip link set fv2 down")
                // The ranks on the cut host end by themselves once the
                // driver has been silent for their heartbeat time-out (2 s
                // here): a heartbeat that cannot be delivered never blocks
                // that check.
                while Date() < (cut.get() ?? Date()).addingTimeInterval(30) {
                    if ranksIn("fnode2").isEmpty {
                        gone.set(Date())
                        break
                    }
                    usleep(100_000)
                }
            }
            cutter.start()
            let run = try mpirun(4, "FleetMPIChecks", arguments, limit: 180, launch: launch)
            let after = cut.get().map { Date().timeIntervalSince($0) }
            #expect(after != nil, "the job never started: \(run.output)")
            #expect(!run.timedOut, "the job hung after its host was cut off: \(run.output)")
            #expect(run.status != 0 && !run.output.contains("finished"), "\(run.output)")
            #expect(
                run.output.range(of: #"rank [23] on host fnode2 was lost"#, options: .regularExpression) != nil,
                "\(run.output)")
            if mode == "collectives" { #expect((after ?? 99) < 20, "the job ended \(after ?? -1) s after the cut") }
            print("\(mode): the job ended \(String(format: "%.1f", after ?? -1)) s after host 2 was cut off")
            cutter.join(within: 90)
            let since = zip(gone.get(), cut.get()).map { $0.timeIntervalSince($1) }
            print("its ranks on the cut host ended \(String(format: "%.1f", since ?? -1)) s after the cut")
            #expect(
                since.map { $0 < (mode == "collectives" ? 20 : 8) } == true,
                "ranks on the cut host ran on \(since.map { "\($0) s" } ?? "") after the cut")
        }
    }
}

/// The pids of the MPI check program's ranks running in network namespace `host`.
func ranksIn(_ host: String) -> [Int32] {
    let pids = ((try? shell("ip netns pids \(host)"))?.0 ?? "").split(separator: "\n").compactMap { Int32($0) }
    return pids.filter {
        ((try? String(contentsOfFile: "/proc/\($0)/comm", encoding: .utf8)) ?? "").hasPrefix("FleetMPIChecks")
    }
}

private func zip<A, B>(_ a: A?, _ b: B?) -> (A, B)? {
    guard let a, let b else { return nil }
    return (a, b)
}

extension Thread {
    /// Waits up to `seconds` for the thread to finish.
    func join(within seconds: Double) {
        let deadline = Date().addingTimeInterval(seconds)
        while !isFinished && Date() < deadline { usleep(50_000) }
    }
}

/// A value shared between the test and its helper thread.
final class SharedBox<Value: Sendable>: @unchecked Sendable {
    // Safe: `value` is touched only with `lock` held.
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func set(_ v: Value) { lock.withLock { value = v } }
    func get() -> Value { lock.withLock { value } }
}
#endif
