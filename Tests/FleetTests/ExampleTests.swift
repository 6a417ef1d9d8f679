import Foundation
import Testing

/// The examples under Examples/, run with small inputs.
@Suite struct ExampleTests {
    func run(_ name: String, _ arguments: [String]) throws -> (String, Int32) {
        try runProgram(name, arguments, errors: true)
    }

    @Test func featureExtractionGivesTheSameFeaturesOnEveryBackend() throws {
        let (text, status) = try run("FeatureExtraction", ["--files", "5", "--seconds", "1"])
        #expect(status == 0, "\(text)")
        #expect(text.contains("serial (no executor): 5 files, 490 frames"))
        #expect(text.contains("identical features on every backend"))
    }

    @Test func theGaussianMixtureFitsInOneProcess() throws {
        // Its MPI runs, and their match with this fit, are in MPITests.
        let (text, status) = try run("GaussianMixture", ["--points", "3000", "--iterations", "5"])
        #expect(status == 0, "\(text)")
        #expect(text.contains("fitted 16 components in 8 dimensions to 3000 points, 5 iterations"), "\(text)")
        #expect(text.contains("in one process"))
        let (bad, badStatus) = try run("GaussianMixture", ["--points", "4", "--components", "16"])
        #expect(badStatus == 2 && bad.contains("--points (4) must be at least --components (16)"), "\(bad)")
    }

    @Test func fetchingURLsRunsOnEveryBackend() throws {
        // Which backend is fastest is the example's output, not a test
        // (timings belong to benchmarks): here every page must arrive.
        let (text, status) = try run(
            "FetchURLs", ["--urls", "30", "--delay", "20", "--threads", "16", "--processes", "2"])
        #expect(status == 0, "\(text)")
        for name in ["serial:", "threads (16):", "processes (2):", "fastest:"] {
            #expect(text.contains(name), "\(text)")
        }
    }
}
