import Fleet
import Foundation

/// The statistics of a group of masks: pixels of each class, images that
/// contain each class, and per class, how many masks have it at each pixel.
/// A group counts up to 65,535 masks (its heat maps are 16-bit); the data
/// set's totals are `DatasetStats`.
struct GroupStats: Codable, Sendable {
    var images = 0
    var width = 0
    var height = 0
    var pixels = [UInt64](repeating: 0, count: maskClasses.count)
    var imagesWith = [Int](repeating: 0, count: maskClasses.count)
    /// Class c's count at pixel p is `heat[c * width * height + p]`.
    var heat: [UInt16] = []

    /// Adds one mask. Every mask of a data set must have the same size, and
    /// every pixel must be a class index.
    mutating func add(_ mask: GrayImage, path: String) throws {
        if images == 0 {
            width = mask.width
            height = mask.height
            heat = [UInt16](repeating: 0, count: maskClasses.count * width * height)
        }
        guard mask.width == width, mask.height == height else {
            throw DemoError("\(path) is \(mask.width)x\(mask.height), the others \(width)x\(height)")
        }
        guard images < Int(UInt16.max) else { throw DemoError("a group of masks is limited to \(UInt16.max)") }
        let n = width * height
        var counts = [Int](repeating: 0, count: maskClasses.count)
        try mask.pixels.withUnsafeBufferPointer { px in
            try heat.withUnsafeMutableBufferPointer { heat in
                for p in 0..<n {
                    let c = Int(px[p])
                    guard c < maskClasses.count else {
                        throw DemoError(
                            "\(path): pixel \(p % width),\(p / width) is \(c), not a class (0-\(maskClasses.count - 1))"
                        )
                    }
                    counts[c] += 1
                    heat[c &* n &+ p] &+= 1
                }
            }
        }
        for c in counts.indices {
            pixels[c] += UInt64(counts[c])
            if counts[c] > 0 { imagesWith[c] += 1 }
        }
        images += 1
    }
}

/// The statistics of a whole data set: `GroupStats` merged.
struct DatasetStats: Sendable {
    var images = 0
    var width = 0
    var height = 0
    var pixels = [UInt64](repeating: 0, count: maskClasses.count)
    var imagesWith = [Int](repeating: 0, count: maskClasses.count)
    var heat: [UInt32] = []

    mutating func merge(_ group: GroupStats) throws {
        guard group.images > 0 else { return }
        if images == 0 {
            width = group.width
            height = group.height
            heat = [UInt32](repeating: 0, count: group.heat.count)
        }
        guard group.width == width, group.height == height else {
            throw DemoError("masks of two sizes: \(width)x\(height) and \(group.width)x\(group.height)")
        }
        images += group.images
        for c in pixels.indices {
            pixels[c] += group.pixels[c]
            imagesWith[c] += group.imagesWith[c]
        }
        heat.withUnsafeMutableBufferPointer { total in
            group.heat.withUnsafeBufferPointer { part in
                for i in 0..<part.count { total[i] &+= UInt32(part[i]) }
            }
        }
    }

    /// Class c's heat map: at each pixel, the share of masks holding class
    /// c there, from 0 (none) to 255 (all).
    func heatMap(_ c: Int) -> GrayImage {
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
        for path in paths { try stats.add(try GrayImage(contentsOf: path), path: path) }
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
