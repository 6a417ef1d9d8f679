import Foundation
import Testing

@testable import Fleet
@testable import FleetTestTasks

/// Values too big for a request are refused before they are copied, with
/// an error naming the limit and the option.
@Suite struct BigValueTests {
    @Test func anInputOverMaxFrameBytesIsRefusedBeforeItIsEncoded() async throws {
        try await withProcessPool({ $0.maxFrameBytes = 1 << 20 }) { pool in
            let big = [UInt8](repeating: 1, count: 2 << 20)
            let buffer = WireBuffer()
            buffer.limit = 1 << 20
            #expect(throws: WireLimitExceeded.self) { try WireCoding.encode(big, into: buffer) }
            #expect(buffer.count == 0, "the array was copied before it was refused")
            for attempt in 0..<2 {
                do {
                    _ =
                        attempt == 0
                        ? try await pool.submit(TestTasks.sumBytes, big).value
                        : try await pool.map([[1, 2], big], TestTasks.sumBytes).count
                    Issue.record("an input of 2 MiB went through a 1 MiB limit")
                } catch let FleetError.invalidArgument(message) {
                    #expect(message.contains("ProcessOptions.maxFrameBytes (1048576)"), "\(message)")
                }
            }
            // Inside a struct too, and the pool goes on working.
            let buffer2 = WireBuffer()
            buffer2.limit = 1 << 20
            #expect(throws: WireLimitExceeded.self) { try WireCoding.encode(["x": big], into: buffer2) }
            #expect(try await pool.submit(TestTasks.sumBytes, [1, 2, 3]).value == 6)
        }
    }

    /// A big result is copied out of the frame it came in page by page,
    /// giving the frame's pages back as it goes: the driver grows by the
    /// result, not twice it. FLEET_BIG_RESULT_MIB sets the size (256).
    @Test(.disabled(if: underSanitizer, "the sanitizer's shadow memory counts in the peak"))
    func aBigResultCostsTheDriverItsSizeOnce() async throws {
        let mib = Int(ProcessInfo.processInfo.environment["FLEET_BIG_RESULT_MIB"] ?? "") ?? 256
        try await withProcessPool(workers: 1, { $0.maxFrameBytes = Int(UInt32.max) }) { pool in
            _ = try await pool.submit(TestTasks.filled, 1 << 20).value  // warm
            let before = residentBytes()
            try "5".write(toFile: "/proc/self/clear_refs", atomically: false, encoding: .utf8)  // resets the peak
            let result = try await pool.submit(TestTasks.filled, mib << 20).value
            let grew = Double(residentBytes(peak: true) - before) / 1_048_576
            #expect(
                result.count == mib << 20 && stride(from: 0, to: result.count, by: 4093).allSatisfy { result[$0] == 7 })
            print(
                String(
                    format: "a %d MiB result: the driver's peak grew by %.0f MiB (%.2fx)", mib, grew,
                    grew / Double(mib)))
            #expect(grew < 1.1 * Double(mib), "the driver grew by \(grew) MiB for a \(mib) MiB result")
        }
    }
}
