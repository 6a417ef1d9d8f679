import Foundation
import Testing

/// `fleet demo` on a small generated data set.
@Suite struct DemoTests {
    let root = NSTemporaryDirectory() + "fleet-demo-test-\(getpid())"

    func summary(_ dir: String) throws -> [String: Any] {
        let data = try Data(contentsOf: URL(fileURLWithPath: dir + "/summary.json"))
        var json = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        json["backend"] = nil
        json["workers"] = nil
        json["seconds"] = nil
        return json
    }

    @Test func everyBackendGivesTheSameStatistics() throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        var outputs: [String] = []
        for backend in ["serial", "threads", "processes"] {
            let out = "\(root)/out-\(backend)"
            let (text, status) = try runFleet([
                "demo", "--count", "6", "--cache", "\(root)/masks", "--out", out,
                "--backend", backend, "--workers", "2",
            ])
            #expect(status == 0, "\(text)")
            #expect(text.contains("6 masks (1280 x 966)"))
            outputs.append(out)
        }
        let first = try summary(outputs[0])
        #expect(first["images"] as? Int == 6)
        let classes = try #require(first["classes"] as? [[String: Any]])
        #expect(classes.count == 10)
        let pixels = classes.compactMap { ($0["pixels"] as? NSNumber)?.intValue }
        #expect(pixels.reduce(0, +) == 6 * 1280 * 966)
        #expect(pixels[1] > pixels[6] && pixels[6] > pixels[5])  // road over vehicles over riders
        for other in outputs.dropFirst() {
            #expect(NSDictionary(dictionary: try summary(other)).isEqual(to: first))
            for c in 0..<10 {
                let name = try FileManager.default.contentsOfDirectory(atPath: other).first {
                    $0.hasPrefix("heat-\(c)-")
                }!
                let a = try Data(contentsOf: URL(fileURLWithPath: "\(outputs[0])/\(name)"))
                let b = try Data(contentsOf: URL(fileURLWithPath: "\(other)/\(name)"))
                #expect(a == b, "heat map \(name) differs")
            }
        }
        // The cached masks are reused, and --data reads any folder of them.
        let (text, status) = try runFleet([
            "demo", "--data", "\(root)/masks", "--out", "\(root)/out-data", "--backend", "serial",
        ])
        #expect(status == 0 && !text.contains("Generating"))
        #expect(NSDictionary(dictionary: try summary("\(root)/out-data")).isEqual(to: first))
    }

    @Test func badDataIsAClearError() throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        let (_, missing) = try runFleet(["demo", "--data", "\(root)/nowhere"])
        #expect(missing != 0)
        try FileManager.default.createDirectory(atPath: "\(root)/bad", withIntermediateDirectories: true)
        try Data("not an image".utf8).write(to: URL(fileURLWithPath: "\(root)/bad/a.png"))
        let (text, status) = try runFleetWithErrors(["demo", "--data", "\(root)/bad", "--backend", "serial"])
        #expect(status != 0)
        #expect(text.contains("is not a PNG file"), "\(text)")
    }
}
