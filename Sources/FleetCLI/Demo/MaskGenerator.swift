/// The classes of the demo's segmentation masks; a pixel's value is its
/// class's index.
let maskClasses = [
    "void", "road", "lane marks", "curb", "person", "rider", "vehicles", "bicycle", "motorcycle",
    "traffic sign",
]
let maskWidth = 1280
let maskHeight = 966

/// Draws mask `index` of the demo data set: a street scene seen from a car,
/// the same every time for the same index. The road fills the lower half
/// and narrows to the horizon, with curbs at its edges and dashed lane
/// marks; vehicles are common, people fewer, riders, bicycles and
/// motorcycles rare, traffic signs small: the class imbalance the demo's
/// statistics show.
func makeMask(_ index: Int) -> GrayImage {
    var rng = DemoRandom(seed: UInt64(index) &* 0x9E37_79B9_7F4A_7C15 &+ 0xF1EE7)
    let (w, h) = (maskWidth, maskHeight)
    var px = [UInt8](repeating: 0, count: w * h)
    let horizon = Int(Double(h) * 0.45) + rng.int(-30...30)
    let vanish = w / 2 + rng.int(-120...120)
    let spread = 0.45 + rng.unit() * 0.15
    func fill(_ cls: UInt8, rows: ClosedRange<Int>, _ span: (Int) -> ClosedRange<Int>?) {
        for y in max(rows.lowerBound, 0)...min(rows.upperBound, h - 1) {
            guard let xs = span(y) else { continue }
            let lo = max(xs.lowerBound, 0)
            let hi = min(xs.upperBound, w - 1)
            if lo <= hi { for x in lo...hi { px[y * w + x] = cls } }
        }
    }
    func roadHalfWidth(_ y: Int) -> Double { Double(y - horizon) / Double(h - horizon) * Double(w) * spread }
    // Road, then curbs at its edges, then dashed lane marks.
    fill(1, rows: horizon...h - 1) { y in
        let hw = roadHalfWidth(y)
        return Int(Double(vanish) - hw)...Int(Double(vanish) + hw)
    }
    for side in [-1.0, 1.0] {
        fill(3, rows: horizon...h - 1) { y in
            let hw = roadHalfWidth(y)
            let band = max(2.0, hw * 0.04)
            let edge = Double(vanish) + side * hw
            return side < 0 ? Int(edge - band)...Int(edge) : Int(edge)...Int(edge + band)
        }
    }
    let dash = 30 + rng.int(0...20)
    for lane in [-0.33, 0.0, 0.33] where lane == 0 || rng.unit() < 0.6 {
        fill(2, rows: horizon + 5...h - 1) { y in
            guard (y / dash) % 2 == 0 else { return nil }
            let hw = roadHalfWidth(y)
            let half = max(1.0, hw * 0.012)
            let x = Double(vanish) + lane * hw
            return Int(x - half)...Int(x + half)
        }
    }
    // Objects as blobs, bigger nearer the bottom.
    func blob(_ cls: UInt8, y: Int, x: Int, rx: Int, ry: Int) {
        fill(cls, rows: y - ry...y + ry) { yy in
            let t = Double(yy - y) / Double(max(ry, 1))
            let half = Double(rx) * (1 - t * t).squareRoot()
            return half.isNaN ? nil : Int(Double(x) - half)...Int(Double(x) + half)
        }
    }
    func onRoad() -> (x: Int, y: Int, scale: Double) {
        let y = horizon + 20 + rng.int(0...(h - horizon - 40))
        let hw = roadHalfWidth(y)
        let x = vanish + Int((rng.unit() * 1.6 - 0.8) * hw)
        return (x, y, Double(y - horizon) / Double(h - horizon))
    }
    for _ in 0..<rng.int(1...6) {
        let (x, y, s) = onRoad()
        blob(6, y: y, x: x, rx: Int(20 + 160 * s), ry: Int(12 + 90 * s))
    }
    func nearCurb() -> (x: Int, y: Int, scale: Double) {
        let y = horizon + 20 + rng.int(0...(h - horizon - 40))
        let hw = roadHalfWidth(y)
        let side = rng.unit() < 0.5 ? -1.0 : 1.0
        return (vanish + Int(side * hw * (1.02 + rng.unit() * 0.15)), y, Double(y - horizon) / Double(h - horizon))
    }
    for _ in 0..<rng.int(0...4) {
        let (x, y, s) = nearCurb()
        blob(4, y: y, x: x, rx: Int(4 + 18 * s), ry: Int(12 + 60 * s))
    }
    for (cls, chance) in [(UInt8(7), 0.15), (UInt8(8), 0.10)] where rng.unit() < chance {
        let (x, y, s) = onRoad()
        blob(cls, y: y, x: x, rx: Int(10 + 40 * s), ry: Int(8 + 30 * s))
        if rng.unit() < 0.7 { blob(5, y: y - Int(8 + 40 * s), x: x, rx: Int(4 + 14 * s), ry: Int(8 + 30 * s)) }
    }
    for _ in 0..<rng.int(0...2) {
        let x = rng.unit() < 0.5 ? rng.int(20...w / 4) : rng.int(3 * w / 4...w - 40)
        let y = rng.int(max(horizon - 200, 20)...max(horizon - 20, 21))
        let size = rng.int(8...24)
        fill(9, rows: y...y + size) { _ in x...x + size }
    }
    return GrayImage(width: w, height: h, pixels: px)
}

/// SplitMix64: small, fast, and the same on every machine.
struct DemoRandom {
    var state: UInt64
    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }
    mutating func int(_ range: ClosedRange<Int>) -> Int {
        range.lowerBound + Int(next() % UInt64(range.upperBound - range.lowerBound + 1))
    }
}
