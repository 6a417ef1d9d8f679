import Fleet
import Foundation

/// The statistics of a group of masks: pixels of each class, images that
/// contain each class, and the masks themselves as runs of one class along
/// each row, from which `DatasetStats` builds the heat maps.
///
/// Masks are regions: a 1280-pixel row of a street scene holds a handful of
/// runs, so a group of 25 masks is about 0.5 MB of runs where its heat maps
/// would be 25 MB, and the work per mask after decoding is a scan of each row
/// for the places where the class changes (eight pixels at a time), not an
/// update per pixel and class.
struct GroupStats: Codable, Sendable {
    var images = 0
    var width = 0
    var height = 0
    var pixels = [UInt64](repeating: 0, count: maskClasses.count)
    var imagesWith = [Int](repeating: 0, count: maskClasses.count)
    /// Each run as `x << 8 | class`, where it starts, row after row, mask
    /// after mask; a run at x = 0 starts a row, and every mask has `height`
    /// rows.
    var runs: [UInt32] = []

    /// Adds the mask at `path`, decoded row by row. Every mask of a data set
    /// must have the same size, and every pixel must be a class index.
    mutating func add(contentsOf path: String) throws {
        let mask = try PNGRows(path)
        if images == 0 {
            width = mask.width
            height = mask.height
            guard width < 1 << 24 else { throw DemoError("\(path) is \(width) pixels wide, more than masks may be") }
        }
        guard mask.width == width, mask.height == height else {
            throw DemoError("\(path) is \(mask.width)x\(mask.height), the others \(width)x\(height)")
        }
        var counts = [Int](repeating: 0, count: maskClasses.count)
        let row = UnsafeMutablePointer<UInt8>.allocate(capacity: width)
        defer { row.deallocate() }
        for y in 0..<height {
            try mask.next(into: row)
            try counts.withUnsafeMutableBufferPointer { counts in
                try addRuns(of: row, counts: counts, at: y, path: path)
            }
        }
        for c in counts.indices {
            pixels[c] += UInt64(counts[c])
            if counts[c] > 0 { imagesWith[c] += 1 }
        }
        images += 1
    }

    /// Appends the runs of one row and counts their pixels.
    private mutating func addRuns(
        of row: UnsafeMutablePointer<UInt8>, counts: UnsafeMutableBufferPointer<Int>, at y: Int, path: String
    ) throws {
        let w = width
        var start = 0
        while start < w {
            let c = row[start]
            guard Int(c) < counts.count else {
                throw DemoError(
                    "\(path): pixel \(start),\(y) is \(c), not a class (0-\(counts.count - 1))")
            }
            // Where the run ends: eight pixels at a time, then one by one.
            let same = UInt64(c) &* 0x0101_0101_0101_0101
            var x = start + 1
            var ended = false
            while x &+ 8 <= w {
                let differs = UnsafeRawPointer(row + x).loadUnaligned(as: UInt64.self) ^ same
                if differs != 0 {
                    x &+= differs.littleEndian.trailingZeroBitCount >> 3
                    ended = true
                    break
                }
                x &+= 8
            }
            if !ended { while x < w && row[x] == c { x &+= 1 } }
            counts[Int(c)] &+= x &- start
            runs.append(UInt32(truncatingIfNeeded: start) << 8 | UInt32(c))
            start = x
        }
    }
}

/// The statistics of a whole data set: `GroupStats` merged.
struct DatasetStats: Sendable {
    var images = 0
    var width = 0
    var height = 0
    var pixels = [UInt64](repeating: 0, count: maskClasses.count)
    var imagesWith = [Int](repeating: 0, count: maskClasses.count)
    /// Per class, `height` rows of `width` counters: until `finish`, the
    /// difference of each counter from the one on its left (a run adds one
    /// where it starts and takes one away where the next begins), after it,
    /// how many masks hold the class at that pixel. The arithmetic wraps, so
    /// the sums come out exact.
    private var heat: [UInt32] = []
    private var finished = false

    /// Adds a group's counts and runs. Its runs are checked, since they may
    /// come from another process.
    mutating func merge(_ group: GroupStats) throws {
        precondition(!finished, "merge after finish")
        guard group.images > 0 else { return }
        if images == 0 {
            width = group.width
            height = group.height
            heat = [UInt32](repeating: 0, count: maskClasses.count * width * height)
        }
        guard group.width == width, group.height == height else {
            throw DemoError("masks of two sizes: \(width)x\(height) and \(group.width)x\(group.height)")
        }
        try addRuns(group)
        images += group.images
        for c in pixels.indices {
            pixels[c] += group.pixels[c]
            imagesWith[c] += group.imagesWith[c]
        }
    }

    private mutating func addRuns(_ group: GroupStats) throws {
        let (w, h, plane, classes) = (width, height, width * height, UInt32(maskClasses.count))
        var rows = 0
        var rowStart = 0
        var previous = 0
        var lastX = 0
        try heat.withUnsafeMutableBufferPointer { heat in
            for run in group.runs {
                let x = Int(run >> 8)
                let c = run & 0xFF
                if x == 0 {
                    rowStart = (rows % h) * w
                    rows += 1
                } else {
                    guard rows > 0, x > lastX, x < w else { throw DemoError("a group's runs are out of order") }
                    heat[previous + rowStart + x] &-= 1
                }
                guard c < classes else { throw DemoError("a group's run has class \(c)") }
                previous = Int(c) * plane
                heat[previous + rowStart + x] &+= 1
                lastX = x
            }
        }
        guard rows == group.images * h else {
            throw DemoError("a group of \(group.images) masks has \(rows) rows, not \(group.images * h)")
        }
    }

    /// Turns the differences into counts: call once, after the last merge.
    mutating func finish() {
        guard !finished else { return }
        finished = true
        let w = width
        heat.withUnsafeMutableBufferPointer { heat in
            for rowStart in stride(from: 0, to: heat.count, by: max(w, 1)) {
                var sum: UInt32 = 0
                for i in rowStart..<rowStart + w {
                    sum &+= heat[i]
                    heat[i] = sum
                }
            }
        }
    }

    /// Class c's heat map: at each pixel, the share of masks holding class
    /// c there, from 0 (none) to 255 (all).
    func heatMap(_ c: Int) -> GrayImage {
        precondition(finished, "heat maps before finish")
        let n = width * height
        var px = [UInt8](repeating: 0, count: n)
        let scale = images > 0 ? 255.0 / Double(images) : 0
        for p in 0..<n { px[p] = UInt8((Double(heat[c * n + p]) * scale).rounded()) }
        return GrayImage(width: width, height: height, pixels: px)
    }
}

/// The demo's remote tasks, so that every backend runs the same work.
enum DemoTasks {
    /// Draws masks `indices` into `directory`; returns how many it wrote.
    static let generate = RemoteTask("demo.generate") { (job: GenerateJob) throws -> Int in
        for i in job.indices {
            let path = maskPath(job.directory, i)
            let partial = path + ".part"
            try makeMask(i).write(to: partial, level: 1)
            guard rename(partial, path) == 0 else { throw DemoError("cannot rename \(partial)") }
        }
        return job.indices.count
    }

    /// Reads the masks at `paths` and returns their statistics.
    static let analyze = RemoteTask("demo.analyze") { (paths: [String]) throws -> GroupStats in
        var stats = GroupStats()
        for path in paths { try stats.add(contentsOf: path) }
        return stats
    }

    static let all: [any RemoteTaskDeclaration] = [generate, analyze]
}

struct GenerateJob: Codable, Sendable {
    var directory: String
    var indices: [Int]
}

func maskPath(_ directory: String, _ index: Int) -> String {
    let digits = String(index)
    return directory + "/mask-" + String(repeating: "0", count: max(0, 5 - digits.count)) + digits + ".png"
}
