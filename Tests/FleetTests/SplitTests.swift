import FleetTestTasks
import Testing

@testable import Fleet

@Suite struct SplitTests {
    let job = FeatureJob(files: (0..<37).map { f in (0..<(f * 7 % 50)).map { ($0 * 31 + f) % 97 } }, scale: 3)

    @Test(arguments: TestBackend.allCases)
    func aSplitCallEqualsTheOneProcessCall(_ backend: TestBackend) async throws {
        let pool = try backend.makePool()
        var alone = accumulateStatistics(job)
        // Remote task form: every backend.
        var split = try await pool.splitting(job, over: \.files, TestTasks.accumulate)
        let parts = min(pool.workerCount, job.files.count)
        #expect(split.calls == parts)  // one call per part, each with its own part
        #expect(split.files == job.files.count)  // every file once: none processed twice
        alone.calls = 0
        split.calls = 0
        #expect(split == alone)
        // More parts than workers, and an explicit merge.
        let many = try await pool.splitting(job, over: \.files, parts: 10, TestTasks.accumulate) { $0.merge($1) }
        #expect(many.calls == 10 && many.files == 37 && many.sum == alone.sum)
        await pool.shutdown()
    }

    @Test(arguments: TestBackend.inProcess)
    func closuresSplitToo(_ backend: TestBackend) async throws {
        let pool = try backend.makePool()
        let split = try await pool.splitting(job, over: \.files) { accumulateStatistics($0) }
        #expect(split.sum == accumulateStatistics(job).sum && split.files == 37)
        // A list shorter than the parts: one part per element, none empty.
        let short = FeatureJob(files: [[1], [2]], scale: 1)
        let s = try await pool.splitting(short, over: \.files, parts: 8) { accumulateStatistics($0) }
        #expect(s.calls == 2 && s.sum == 3)
        // An empty list: one call, as the one-process code would make.
        let empty = try await pool.splitting(FeatureJob(files: [], scale: 1), over: \.files) {
            accumulateStatistics($0)
        }
        #expect(empty.calls == 1 && empty.files == 0)
        await #expect(throws: FleetError.self) {
            _ = try await pool.splitting(job, over: \.files, parts: 0) { accumulateStatistics($0) }
        }
        await pool.shutdown()
    }
}
