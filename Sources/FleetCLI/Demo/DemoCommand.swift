import ArgumentParser
import Fleet
import Foundation

/// `fleet demo`: data set statistics for semantic segmentation, the job the
/// README runs. Counts the pixels of each class over a folder of mask images
/// and maps where each class appears, in parallel, with bounded memory.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Class statistics and heat maps over a data set of segmentation masks.",
        discussion: """
            Without --data, generates (once, then cached) a data set of street-scene masks, \
            \(maskWidth)x\(maskHeight) 8-bit grayscale PNG files whose pixel values are classes: \
            \(maskClasses.enumerated().map { "\($0.offset) \($0.element)" }.joined(separator: ", ")).
            """
    )

    @Option(name: .long, help: "A folder of grayscale PNG masks to analyse instead of the generated data set.")
    var data: String?

    @Option(name: .long, help: "How many masks to generate.")
    var count = 2_000

    @Option(name: .long, help: "Where generated masks are cached. Default: ~/.cache/fleet/demo-masks.")
    var cache: String?

    @Option(name: .long, help: "Where to write the heat maps and summary.json.")
    var out = "fleet-demo"

    @Option(name: .long, help: "serial, threads or processes.")
    var backend: BackendKind = .threads

    @Option(name: .long, help: "Workers. Default: the usable cores.")
    var workers: Int?

    func validate() throws {
        if count <= 0 { throw ValidationError("--count must be positive, got \(count)") }
        if let workers, workers <= 0 { throw ValidationError("--workers must be positive, got \(workers)") }
    }

    func run() async throws {
        do {
            try await runDemo()
        } catch let error as DemoError {
            throw ValidationError(error.description)
        }
    }

    private func runDemo() async throws {
        try await Pool.make(backend, workers: workers).shuttingDown(after: analyse)
    }

    private func analyse(on pool: Pool) async throws {
        let files = try await dataset(pool)
        print(
            "Analysing \(files.count) masks on \(pool.kind) with \(pool.workerCount) worker\(pool.workerCount == 1 ? "" : "s")."
        )
        let started = ContinuousClock.now
        let bar = ProgressBar(label: "masks")
        // Groups of masks, two in flight per worker: a group's statistics
        // are its masks' runs (about 20 KB a mask), so memory stays bounded
        // whatever the data set's size.
        let groupSize = max(1, min(25, files.count / (4 * pool.workerCount)))
        let groups = stride(from: 0, to: files.count, by: groupSize).map {
            Array(files[$0..<min($0 + groupSize, files.count)])
        }
        var stats = try await pool.reduce(
            groups, into: DatasetStats(), DemoTasks.analyze,
            options: MapOptions(
                window: 2 * pool.workerCount, batchSize: 1,
                progress: { s in
                    bar.report(
                        ProgressSnapshot(
                            submitted: s.submitted * groupSize, completed: min(s.completed * groupSize, files.count),
                            failed: s.failed, total: files.count, elapsed: s.elapsed, isFinished: s.isFinished))
                })
        ) { try $0.merge($1) }
        stats.finish()
        let seconds = (ContinuousClock.now - started).seconds
        try report(stats, seconds: seconds, pool: pool)
    }

    /// The mask files: those of --data, or the generated data set (made now
    /// if the cache lacks any).
    private func dataset(_ pool: Pool) async throws -> [String] {
        let fm = FileManager.default
        if let data {
            var isDir: ObjCBool = false
            guard fm.fileExists(atPath: data, isDirectory: &isDir), isDir.boolValue else {
                throw DemoError("--data \(data) is not a folder")
            }
            let files = try fm.contentsOfDirectory(atPath: data).filter { $0.lowercased().hasSuffix(".png") }.sorted()
            guard !files.isEmpty else { throw DemoError("--data \(data) holds no .png files") }
            return files.map { data + "/" + $0 }
        }
        let home =
            ProcessInfo.processInfo.environment["XDG_CACHE_HOME"]
            ?? (NSHomeDirectory() + "/.cache")
        let dir = cache ?? home + "/fleet/demo-masks"
        try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let missing = (0..<count).filter { !fm.fileExists(atPath: maskPath(dir, $0)) }
        if !missing.isEmpty {
            print("Generating \(missing.count) masks in \(dir) (once; later runs reuse them).")
            let bar = ProgressBar(label: "generating")
            let jobs = stride(from: 0, to: missing.count, by: 10).map {
                GenerateJob(directory: dir, indices: Array(missing[$0..<min($0 + 10, missing.count)]))
            }
            let written = try await pool.reduce(
                jobs, into: 0, DemoTasks.generate, options: MapOptions(batchSize: 1, progress: bar.report)
            ) { $0 += $1 }
            guard written == missing.count else { throw DemoError("wrote \(written) of \(missing.count) masks") }
        }
        return (0..<count).map { maskPath(dir, $0) }
    }

    private func report(_ stats: DatasetStats, seconds: Double, pool: Pool) throws {
        let total = stats.pixels.reduce(0, +)
        let header = ["class", "id", "pixels", "share", "in images"]
        let rows = maskClasses.indices.map { c in
            [
                maskClasses[c], "\(c)", "\(stats.pixels[c])",
                String(format: "%.3f%%", total > 0 ? Double(stats.pixels[c]) / Double(total) * 100 : 0),
                String(
                    format: "%d (%.1f%%)", stats.imagesWith[c],
                    Double(stats.imagesWith[c]) / Double(max(stats.images, 1)) * 100),
            ]
        }
        print()
        print(renderGrid(header, rows, rightAligned: 1...4, markdown: false))
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        for c in maskClasses.indices {
            try stats.heatMap(c).write(
                to: "\(out)/heat-\(c)-\(maskClasses[c].replacingOccurrences(of: " ", with: "-")).png")
        }
        let summary = DemoSummary(
            images: stats.images, width: stats.width, height: stats.height,
            classes: maskClasses.indices.map {
                .init(
                    id: $0, name: maskClasses[$0], pixels: stats.pixels[$0],
                    share: total > 0 ? Double(stats.pixels[$0]) / Double(total) : 0, imagesWith: stats.imagesWith[$0])
            },
            backend: pool.kind.rawValue, workers: pool.workerCount, seconds: seconds)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(summary).write(to: URL(fileURLWithPath: out + "/summary.json"))
        print()
        let plural = pool.workerCount == 1 ? "" : "s"
        print(
            String(
                format: "%d masks (%d x %d) in %.2f s on %@ with %d worker%@: %.0f masks/s.", stats.images,
                stats.width, stats.height, seconds, pool.kind.rawValue, pool.workerCount, plural,
                Double(stats.images) / seconds))
        print("Heat maps and summary.json are in \(out)/.")
    }
}

/// What `summary.json` holds.
struct DemoSummary: Codable {
    struct ClassLine: Codable {
        var id: Int
        var name: String
        var pixels: UInt64
        var share: Double
        var imagesWith: Int
    }
    var images: Int
    var width: Int
    var height: Int
    var classes: [ClassLine]
    var backend: String
    var workers: Int
    var seconds: Double
}

extension BackendKind: ExpressibleByArgument {}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
