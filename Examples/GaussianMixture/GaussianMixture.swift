// A diagonal-covariance Gaussian mixture fitted by expectation-maximisation,
// the way SIDEKIT trains its universal background models: every shard of
// the data adds up its sufficient statistics (per component: the summed
// responsibilities, the responsibility-weighted sums of x and of x²), the
// shards' statistics are summed, and the parameters are updated from the
// sum. `fit` takes the sum as a function, so the same code fits one shard
// in one process or many shards across MPI ranks (an allreduce).
import Foundation

/// A mixture of `components` diagonal Gaussians in `dims` dimensions.
struct Mixture: Codable, Equatable {
    var weights: [Double]
    /// Row-major, components × dims.
    var means: [Double]
    var variances: [Double]
    var components: Int { weights.count }
    var dims: Int { means.count / max(1, weights.count) }
}

/// Points stored row-major, `count` × `dims`.
struct Points {
    let dims: Int
    var values: [Double]
    var count: Int { values.count / dims }
}

/// The statistics one shard contributes to an EM step, flattened so they
/// can be summed in one reduction: [n_k (K), Σ r·x (K·D), Σ r·x² (K·D),
/// log-likelihood, point count].
struct Statistics {
    static func count(components k: Int, dims d: Int) -> Int { k + 2 * k * d + 2 }
}

enum GaussianMixtureEM {
    /// The smallest variance allowed, so a component that collapses onto a
    /// few points does not produce infinities.
    static let varianceFloor = 1e-6

    /// Accumulates `points`' sufficient statistics under `model`.
    static func statistics(of points: Points, under model: Mixture) -> [Double] {
        let k = model.components
        let d = points.dims
        var stats = [Double](repeating: 0, count: Statistics.count(components: k, dims: d))
        // Per component: log weight − ½ Σ log(2π σ²), and 1/σ².
        var constant = [Double](repeating: 0, count: k)
        var precision = [Double](repeating: 0, count: k * d)
        for c in 0..<k {
            var logDet = 0.0
            for j in 0..<d {
                let v = model.variances[c * d + j]
                precision[c * d + j] = 1 / v
                logDet += log(2 * Double.pi * v)
            }
            constant[c] = log(model.weights[c]) - 0.5 * logDet
        }
        var weight = [Double](repeating: 0, count: k)
        var loglik = 0.0
        // Unchecked buffers in the loop: it runs points × components × dims times.
        points.values.withUnsafeBufferPointer { x in
            model.means.withUnsafeBufferPointer { mean in
                precision.withUnsafeBufferPointer { prec in
                    weight.withUnsafeMutableBufferPointer { w in
                        stats.withUnsafeMutableBufferPointer { s in
                            for i in 0..<points.count {
                                let row = i * d
                                // log p(x, c) for each component, then the
                                // responsibilities by log-sum-exp.
                                var best = -Double.infinity
                                for c in 0..<k {
                                    var q = 0.0
                                    for j in 0..<d {
                                        let delta = x[row + j] - mean[c * d + j]
                                        q += delta * delta * prec[c * d + j]
                                    }
                                    w[c] = constant[c] - 0.5 * q
                                    best = max(best, w[c])
                                }
                                var total = 0.0
                                for c in 0..<k {
                                    w[c] = exp(w[c] - best)
                                    total += w[c]
                                }
                                loglik += best + log(total)
                                let scale = 1 / total
                                for c in 0..<k {
                                    let r = w[c] * scale
                                    s[c] += r
                                    for j in 0..<d {
                                        let v = x[row + j]
                                        s[k + c * d + j] += r * v
                                        s[k + k * d + c * d + j] += r * v * v
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        stats[stats.count - 2] = loglik
        stats[stats.count - 1] = Double(points.count)
        return stats
    }

    /// The parameters that maximise the expected log-likelihood given the
    /// summed statistics.
    static func update(from stats: [Double], components k: Int, dims d: Int) -> Mixture {
        let total = stats[stats.count - 1]
        var model = Mixture(
            weights: [Double](repeating: 0, count: k),
            means: [Double](repeating: 0, count: k * d),
            variances: [Double](repeating: 0, count: k * d))
        for c in 0..<k {
            let n = max(stats[c], 1e-10)
            model.weights[c] = n / total
            for j in 0..<d {
                let mean = stats[k + c * d + j] / n
                model.means[c * d + j] = mean
                model.variances[c * d + j] = max(stats[k + k * d + c * d + j] / n - mean * mean, varianceFloor)
            }
        }
        return model
    }

    /// Fits a mixture to `shard` by `iterations` EM steps from `start`.
    /// `sum` adds up the statistics of every shard (the identity for one
    /// shard, an allreduce across MPI ranks); `step` hears each iteration's
    /// mean log-likelihood per point.
    static func fit(
        _ shard: Points, start: Mixture, iterations: Int,
        sum: (inout [Double]) throws -> Void, step: (Int, Double) -> Void = { _, _ in }
    ) rethrows -> Mixture {
        var model = start
        for iteration in 0..<iterations {
            var stats = statistics(of: shard, under: model)
            try sum(&stats)
            step(iteration, stats[stats.count - 2] / stats[stats.count - 1])
            model = update(from: stats, components: start.components, dims: shard.dims)
        }
        return model
    }
}

/// The example's data: points drawn from a known mixture, each from its own
/// counter-seeded generator, so any rank can make any slice of the data set
/// without the rest, and every slicing gives the same points.
enum SyntheticData {
    /// The mixture the points are drawn from.
    static func truth(components k: Int, dims d: Int, seed: UInt64) -> Mixture {
        var rng = SplitMix64(seed: seed)
        var model = Mixture(weights: [], means: [], variances: [])
        var weights = (0..<k).map { _ in 0.5 + rng.nextDouble() }
        let total = weights.reduce(0, +)
        weights = weights.map { $0 / total }
        model.weights = weights
        model.means = (0..<(k * d)).map { _ in rng.nextDouble() * 20 - 10 }
        model.variances = (0..<(k * d)).map { _ in 0.2 + rng.nextDouble() * 1.8 }
        return model
    }

    /// Points `range` of the data set.
    static func points(_ range: Range<Int>, from truth: Mixture, seed: UInt64) -> Points {
        let d = truth.dims
        var values = [Double]()
        values.reserveCapacity(range.count * d)
        var cumulative = [Double]()
        var running = 0.0
        for w in truth.weights {
            running += w
            cumulative.append(running)
        }
        for i in range {
            var rng = SplitMix64(seed: seed &+ 0x9E37_79B9 &* UInt64(i + 1))
            let u = rng.nextDouble() * running
            let c = cumulative.firstIndex { u < $0 } ?? truth.components - 1
            for j in 0..<d {
                values.append(truth.means[c * d + j] + truth.variances[c * d + j].squareRoot() * rng.nextGaussian())
            }
        }
        return Points(dims: d, values: values)
    }

    /// The starting point every run uses: means at evenly spaced points of
    /// the data set, unit variances, equal weights.
    static func start(components k: Int, total n: Int, truth: Mixture, seed: UInt64) -> Mixture {
        let d = truth.dims
        var means: [Double] = []
        for c in 0..<k {
            let i = (c * n) / k + n / (2 * k)
            means += points(i..<(i + 1), from: truth, seed: seed).values
        }
        return Mixture(
            weights: [Double](repeating: 1 / Double(k), count: k), means: means,
            variances: [Double](repeating: 1, count: k * d))
    }
}

/// A small, fast, seedable generator (Steele, Lea and Flood's SplitMix64).
struct SplitMix64 {
    private var state: UInt64
    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    mutating func nextDouble() -> Double { Double(next() >> 11) * 0x1p-53 }

    /// Standard normal (Box–Muller).
    mutating func nextGaussian() -> Double {
        let u = max(nextDouble(), 0x1p-60)
        return (-2 * log(u)).squareRoot() * cos(2 * Double.pi * nextDouble())
    }
}
