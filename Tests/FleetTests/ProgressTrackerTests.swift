import Foundation
import Testing

@testable import Fleet

@Suite struct ProgressTrackerTests {
    /// Workers report from many threads at once; the handler must see the
    /// counts only grow, one call at a time, and the final snapshot last.
    @Test func snapshotsArriveInOrderAndTheFinalOneLast() async throws {
        for _ in 0..<20 {
            let seen = Locked<[ProgressSnapshot]>([])
            let inside = Locked(0)
            let tracker = ProgressTracker(total: 8_000, interval: .zero) { snapshot in
                let overlapping = inside.withLock { n -> Bool in
                    n += 1
                    return n > 1
                }
                #expect(!overlapping, "two handler calls at once")
                seen.withLock { $0.append(snapshot) }
                inside.withLock { $0 -= 1 }
            }
            tracker.submitted(8_000)
            DispatchQueue.concurrentPerform(iterations: 8) { _ in
                for i in 0..<1_000 { tracker.finished(completed: i % 10 == 0 ? 0 : 1, failed: i % 10 == 0 ? 1 : 0) }
            }
            tracker.end()
            let snapshots = seen.withLock { $0 }
            let done = snapshots.map { $0.completed + $0.failed }
            #expect(zip(done, done.dropFirst()).allSatisfy { $0 <= $1 }, "counts went back")
            let last = try #require(snapshots.last)
            #expect(last.isFinished && last.completed == 7_200 && last.failed == 800, "\(last)")
            #expect(snapshots.filter(\.isFinished).count == 1)
        }
    }
}
