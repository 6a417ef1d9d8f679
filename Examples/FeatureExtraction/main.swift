// A library function with an `executor:` parameter that defaults to none,
// the pattern of Lhotse's `compute_and_store_features(executor=None)`: the
// caller decides whether the work runs serially or in parallel, and on
// which backend, without the function changing.
//
//   FeatureExtraction [--files N] [--seconds S] [--workers N] [--dir DIR]
//
// Generates N WAV files, computes the log-energy of every 25 ms frame
// (10 ms hop) of each, stores the features beside them, and does it
// serially, on threads and on processes; the features must be identical.
import Fleet
import Foundation

/// One file's features: log-energy per frame.
struct Features: Codable, Sendable, Equatable {
    var path: String
    var frames: [Float]
}

enum FeatureTasks {
    /// Computes and stores the features of one WAV file.
    static let logEnergy = RemoteTask("example.logEnergy") { (path: String) throws -> Features in
        let samples = try readWAV(path)
        let frame = 400
        let hop = 160  // 25 ms and 10 ms at 16 kHz
        var energies: [Float] = []
        var start = 0
        while start + frame <= samples.count {
            var e: Double = 0
            for i in start..<start + frame { e += Double(samples[i]) * Double(samples[i]) }
            energies.append(Float(log(max(e, 1e-10))))
            start += hop
        }
        let features = Features(path: path, frames: energies)
        try energies.withUnsafeBytes { try Data($0).write(to: URL(fileURLWithPath: path + ".logenergy.f32")) }
        return features
    }
}

/// Computes and stores the features of every WAV file in `folder`. With no
/// executor it runs serially, in the caller.
func computeAndStoreFeatures(folder: String, executor: Pool? = nil) async throws -> [Features] {
    let files = try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.hasSuffix(".wav") }.sorted()
    return try await executor.orSerial.map(files.map { folder + "/" + $0 }, FeatureTasks.logEnergy)
}

// MARK: - WAV files

/// Reads a 16-bit PCM mono WAV file's samples.
func readWAV(_ path: String) throws -> [Int16] {
    let data = try Data(contentsOf: URL(fileURLWithPath: path))
    guard data.count >= 44, data.prefix(4) == Data("RIFF".utf8), data[8..<12] == Data("WAVE".utf8) else {
        throw ExampleError("\(path) is not a WAV file")
    }
    return data.withUnsafeBytes { raw in
        let n = (data.count - 44) / 2
        return (0..<n).map { Int16(littleEndian: raw.loadUnaligned(fromByteOffset: 44 + 2 * $0, as: Int16.self)) }
    }
}

/// Writes `samples` as a 16 kHz 16-bit PCM mono WAV file.
func writeWAV(_ path: String, _ samples: [Int16]) throws {
    var d = Data()
    func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { d.append(contentsOf: $0) } }
    func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { d.append(contentsOf: $0) } }
    d.append(contentsOf: "RIFF".utf8)
    u32(UInt32(36 + samples.count * 2))
    d.append(contentsOf: "WAVEfmt ".utf8)
    u32(16)
    u16(1)
    u16(1)
    u32(16_000)
    u32(32_000)
    u16(2)
    u16(16)
    d.append(contentsOf: "data".utf8)
    u32(UInt32(samples.count * 2))
    for s in samples { u16(UInt16(bitPattern: s.littleEndian)) }
    try d.write(to: URL(fileURLWithPath: path))
}

struct ExampleError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

// MARK: - main

try RemoteTasks.bootstrap(FeatureTasks.logEnergy)  // first: worker processes serve here

var options: [String: String] = [:]
var args = CommandLine.arguments.dropFirst()
while let key = args.popFirst() { options[key] = args.popFirst() }
let fileCount = Int(options["--files"] ?? "") ?? 40
let seconds = Double(options["--seconds"] ?? "") ?? 10
let workers = Int(options["--workers"] ?? "") ?? 2
let folder = options["--dir"] ?? NSTemporaryDirectory() + "fleet-features-\(getpid())"
try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)

var rng = SystemRandomNumberGenerator()
for f in 0..<fileCount {
    let n = Int(16_000 * seconds)
    let tone = Double(200 + 40 * f)
    let samples = (0..<n).map { i -> Int16 in
        let envelope = 0.5 + 0.5 * sin(Double(i) / 8_000)
        return Int16(
            8_000 * envelope * sin(2 * .pi * tone * Double(i) / 16_000) + Double.random(in: -300...300, using: &rng))
    }
    try writeWAV("\(folder)/utt-\(f).wav", samples)
}

var reference: [Features]?
for (name, pool) in [
    ("serial (no executor)", nil as Pool?), ("threads", try Pool.threads(workers: workers)),
    ("processes", try Pool.processes(workers: workers)),
] {
    let start = ContinuousClock.now
    let features = try await computeAndStoreFeatures(folder: folder, executor: pool)
    let elapsed = ContinuousClock.now - start
    print("\(name): \(features.count) files, \(features.reduce(0) { $0 + $1.frames.count }) frames in \(elapsed)")
    if let reference, reference != features { throw ExampleError("\(name) computed different features") }
    reference = features
    await pool?.shutdown()
}
print("identical features on every backend; stored as \(folder)/*.logenergy.f32")
if options["--dir"] == nil { try? FileManager.default.removeItem(atPath: folder) }
