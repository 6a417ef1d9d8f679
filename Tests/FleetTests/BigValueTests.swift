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
}
