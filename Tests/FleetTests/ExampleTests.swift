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

    @Test func fetchingURLsRunsOnEveryBackend() throws {
        // Which backend is fastest is the example's output, not a test
        // (timings belong to benchmarks): here every page must arrive.
        let (text, status) = try run("FetchURLs", ["--urls", "30", "--delay", "20", "--threads", "16", "--processes", "2"])
        #expect(status == 0, "\(text)")
        for name in ["serial:", "threads (16):", "processes (2):", "fastest:"] { #expect(text.contains(name), "\(text)") }
    }
}
