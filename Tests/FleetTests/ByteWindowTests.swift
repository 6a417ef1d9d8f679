import Foundation
import Testing

@testable import Fleet
@testable import FleetTestTasks

/// The window in bytes: on processes, a slow reader of 1 MiB results holds
/// about `windowBytes` of them in flight, whatever the batch sizer would
/// like, and without the bound many more.
@Suite struct ByteWindowTests {
    /// The most items dispatched and not yet read, over a stream of 1 MiB
    /// results read 2 ms apart.
    func mostInFlight(windowBytes: Int) async throws -> Int {
        let dispatched = LockedCounter()
        var most = 0
        try await withProcessPool { pool in
            let options = MapOptions(
                windowBytes: windowBytes, progress: { dispatched.raise(to: $0.submitted) },
                progressInterval: .milliseconds(1))
            var read = 0
            for try await bytes in pool.stream(0..<300, TestTasks.megabyte, options: options) {
                #expect(bytes.count == 1 << 20 && Int(bytes[0]) == read % 256)
                read += 1
                most = max(most, dispatched.value - read)
                usleep(2_000)
            }
            #expect(read == 300)
        }
        return most
    }

    @Test func aSlowReaderHoldsAboutTheWindowInBytes() async throws {
        let bounded = try await mostInFlight(windowBytes: 8 << 20)
        // 8 items fit, and batches are at most 8 / (2 workers x 2) = 2 items.
        #expect(bounded <= 12, "\(bounded) MiB of results in flight with an 8 MiB window")
        // How many more it holds without the bound depends on how fast the
        // workers are here: printed, not checked (the engine's own test is
        // below).
        let unbounded = try await mostInFlight(windowBytes: .max)
        print("1 MiB results in flight: \(bounded) with an 8 MiB window, \(unbounded) without")
    }

    /// The engine, with no workers: once a batch has reported 1 MiB per
    /// item, no more than 8 items are let in flight under an 8 MiB window,
    /// where the item window alone (fast tasks, grown batches) allows 64.
    @Test func theWindowShrinksToTheBytesPerItemSeen() {
        func reservable(windowBytes: Int) -> Int {
            let core = MapCore<Int>(
                ordered: true, mode: .failFast, eager: false, options: MapOptions(windowBytes: windowBytes),
                workers: 2, inline: false, total: nil)
            let first = core.reserve()
            core.dispatching(count: first, unused: 0, inputEndsAt: nil)
            var output = BatchOutput<Int>()
            output.values = Array(repeating: 0, count: first)
            core.finish(start: 0, count: first, output: output, nanos: 10, bytes: first << 20)
            var inFlight = first
            while true {
                let n = core.reserve()
                if n == 0 { break }
                inFlight += n
            }
            return inFlight
        }
        // Whole batches only: 1 + 3 x 2 of 8, and 1 + 7 x 8 of 64.
        #expect(reservable(windowBytes: 8 << 20) == 7)
        #expect(reservable(windowBytes: .max) == 57)
    }

    /// The default options, an endless stream of 1 MiB results and a
    /// reader taking 10 ms each, for FLEET_SLOW_READER_SECONDS (default 4):
    /// the driver's growth plus the workers' peaks stay under 160 MiB.
    @Test func aSlowReaderWithTheDefaultsStaysUnder160MiB() async throws {
        let seconds = Double(ProcessInfo.processInfo.environment["FLEET_SLOW_READER_SECONDS"] ?? "") ?? 4
        let before = residentBytes()
        var driverMost = 0
        var workersMost = 0
        var read = 0
        try await withProcessPool { pool in
            let started = Date()
            for try await bytes in pool.stream((0...).lazy.map { $0 }, TestTasks.megabyte) {
                #expect(bytes.count == 1 << 20 && Int(bytes[0]) == read % 256)
                read += 1
                usleep(10_000)
                driverMost = max(driverMost, residentBytes() - before)
                if read % 50 == 0 || Date().timeIntervalSince(started) > seconds {
                    workersMost = pool.workerProcessIDs.reduce(0) { $0 + residentBytes("\($1)", peak: true) }
                }
                if Date().timeIntervalSince(started) > seconds { break }
            }
        }
        let mib = Double(driverMost + workersMost) / 1_048_576
        print(
            String(
                format: "slow reader, %d results in %.0f s: driver grew %.0f MiB, workers peaked at %.0f MiB", read,
                seconds, Double(driverMost) / 1_048_576, Double(workersMost) / 1_048_576))
        #expect(mib < 160, "the pool held \(mib) MiB")
    }

    @Test func theWindowInBytesMustBePositive() async throws {
        let pool = try Pool.threads(workers: 1)
        await #expect(throws: FleetError.self) {
            _ = try await pool.map(0..<3, options: MapOptions(windowBytes: 0)) { $0 }
        }
        await pool.shutdown()
    }
}

/// Resident memory of a process (VmRSS), or its peak (VmHWM), in bytes.
func residentBytes(_ pid: String = "self", peak: Bool = false) -> Int {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return 0 }
    let key = peak ? "VmHWM:" : "VmRSS:"
    for line in status.split(separator: "\n") where line.hasPrefix(key) {
        return (line.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0) * 1024
    }
    return 0
}

/// A number several threads raise.
final class LockedCounter: @unchecked Sendable {
    // Safe: `current` is read and written only with `lock` held.
    private let lock = NSLock()
    private var current = 0
    func raise(to n: Int) {
        lock.lock()
        current = max(current, n)
        lock.unlock()
    }
    var value: Int {
        lock.lock()
        defer { lock.unlock() }
        return current
    }
}
