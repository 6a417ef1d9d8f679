import CFleetPNG
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

    /// Masks whose runs fall everywhere the scan could slip: single pixels,
    /// runs across and at the ends of 8-pixel words, a row of one class,
    /// the last pixel alone; every class present somewhere. The heat maps
    /// and counts are checked against a count made pixel by pixel here.
    @Test func statisticsMatchAPixelByPixelCount() throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        let (w, h, k) = (37, 5, 10)
        let dir = "\(root)/odd"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var rng = UInt64(0x9E37_79B9)
        func next(_ n: Int) -> Int {
            rng = rng &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int((rng >> 33) % UInt64(n))
        }
        var heat = [Int](repeating: 0, count: k * w * h)
        var pixels = [Int](repeating: 0, count: k)
        var imagesWith = [Int](repeating: 0, count: k)
        let count = 7
        for m in 0..<count {
            var px = [UInt8](repeating: 0, count: w * h)
            for y in 0..<h {
                var x = 0
                while x < w {
                    // Mask 0's row 0 is one class; otherwise runs of 1 to 12.
                    let length = m == 0 && y == 0 ? w : 1 + next(12)
                    let c = UInt8((m + y + x) % k == 0 ? k - 1 : next(k))
                    for i in x..<min(w, x + length) { px[y * w + i] = c }
                    x += length
                }
            }
            px[w * h - 1] = UInt8(m % k)
            var seen = Set<Int>()
            for p in 0..<(w * h) {
                let c = Int(px[p])
                heat[c * w * h + p] += 1
                pixels[c] += 1
                seen.insert(c)
            }
            for c in seen { imagesWith[c] += 1 }
            var message = [CChar](repeating: 0, count: 256)
            #expect(cfleet_png_write_gray8("\(dir)/m\(m).png", px, Int32(w), Int32(h), 6, &message, 256) == 0)
        }
        for backend in ["serial", "processes"] {
            let out = "\(root)/odd-out-\(backend)"
            let (text, status) = try runFleet([
                "demo", "--data", dir, "--out", out, "--backend", backend, "--workers", "2",
            ])
            #expect(status == 0, "\(text)")
            let classes = try #require(try summary(out)["classes"] as? [[String: Any]])
            #expect(classes.map { ($0["pixels"] as? NSNumber)?.intValue } == pixels)
            #expect(classes.map { ($0["imagesWith"] as? NSNumber)?.intValue } == imagesWith)
            for c in 0..<k {
                let name = try #require(
                    try FileManager.default.contentsOfDirectory(atPath: out).first { $0.hasPrefix("heat-\(c)-") })
                var raw: UnsafeMutablePointer<UInt8>?
                var (mw, mh): (Int32, Int32) = (0, 0)
                var message = [CChar](repeating: 0, count: 256)
                #expect(cfleet_png_read_gray8("\(out)/\(name)", &raw, &mw, &mh, &message, 256) == 0)
                defer { free(raw) }
                let map = Array(UnsafeBufferPointer(start: try #require(raw), count: w * h))
                let expected = (0..<(w * h)).map {
                    UInt8((Double(heat[c * w * h + $0]) * 255 / Double(count)).rounded())
                }
                #expect(map == expected, "heat map of class \(c) on \(backend)")
            }
        }
    }

    /// A damaged file and a pixel that is not a class are errors naming
    /// the file, never wrong statistics.
    @Test func damagedMasksAreClearErrors() throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        let dir = "\(root)/damaged"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var px = [UInt8](repeating: 1, count: 64 * 4)
        var message = [CChar](repeating: 0, count: 256)
        #expect(cfleet_png_write_gray8("\(dir)/a.png", px, 64, 4, 6, &message, 256) == 0)
        px[2 * 64 + 9] = 10
        #expect(cfleet_png_write_gray8("\(dir)/b.png", px, 64, 4, 6, &message, 256) == 0)
        let (notClass, status) = try runFleetWithErrors(["demo", "--data", dir, "--backend", "serial"])
        #expect(status != 0)
        #expect(notClass.contains("b.png: pixel 9,2 is 10, not a class"), "\(notClass)")

        try FileManager.default.removeItem(atPath: "\(dir)/b.png")
        var bytes = try Data(contentsOf: URL(fileURLWithPath: "\(dir)/a.png"))
        let idat = try #require(bytes.range(of: Data("IDAT".utf8)))
        bytes[idat.upperBound + 3] ^= 0x40  // the CRC no longer matches
        try bytes.write(to: URL(fileURLWithPath: "\(dir)/c.png"))
        let (crc, crcStatus) = try runFleetWithErrors(["demo", "--data", dir, "--backend", "serial"])
        #expect(crcStatus != 0)
        #expect(crc.contains("cannot read \(dir)/c.png"), "\(crc)")

        try bytes.prefix(idat.upperBound + 6).write(to: URL(fileURLWithPath: "\(dir)/c.png"))
        let (cut, cutStatus) = try runFleetWithErrors(["demo", "--data", dir, "--backend", "serial"])
        #expect(cutStatus != 0)
        #expect(cut.contains("cannot read \(dir)/c.png"), "\(cut)")
    }
}
