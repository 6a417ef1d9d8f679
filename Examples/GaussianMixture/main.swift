// Fits a Gaussian mixture (16 components in 8 dimensions by default) to a
// generated data set by EM. Run alone, it fits the whole data set in this
// process. Under mpirun (built with the MPI trait), every rank makes and
// keeps only its own shard of the data, and each EM step sums the shards'
// statistics with one allreduce: the cluster example of the README.
//
//   GaussianMixture [--points N] [--components K] [--dims D] [--iterations I]
//                   [--seed S] [--output FILE.json] [--serial]
//
//   swift build -c release --traits MPI
//   mpirun -np 4 .build/release/GaussianMixture --points 1000000
//
// The fitted parameters (weights, means, variances) are written to --output
// as JSON by rank 0; a run on any number of ranks gives the serial fit to
// rounding (the order in which the shards' sums are added).
import Fleet
import Foundation

struct Arguments {
    var points = 200_000
    var components = 16
    var dims = 8
    var iterations = 30
    var seed: UInt64 = 2_026
    var output: String?
    var serial = false

    init(_ args: [String]) throws {
        var rest = args[...]
        func value(_ flag: String) throws -> String {
            guard let v = rest.popFirst() else { throw UsageError("\(flag) needs a value") }
            return v
        }
        func count(_ flag: String) throws -> Int {
            let text = try value(flag)
            guard let n = Int(text), n > 0 else {
                throw UsageError("\(flag) wants a positive whole number, not \"\(text)\"")
            }
            return n
        }
        while let flag = rest.popFirst() {
            switch flag {
            case "--points": points = try count(flag)
            case "--components": components = try count(flag)
            case "--dims": dims = try count(flag)
            case "--iterations": iterations = try count(flag)
            case "--seed": seed = UInt64(try count(flag))
            case "--output": output = try value(flag)
            case "--serial": serial = true
            default: throw UsageError("unknown option \(flag)")
            }
        }
        guard points >= components else {
            throw UsageError("--points (\(points)) must be at least --components (\(components))")
        }
    }
}

struct UsageError: Error, CustomStringConvertible {
    let description: String
    init(_ text: String) { description = text }
}

func report(_ model: Mixture, _ args: Arguments, seconds: Double, where place: String) throws {
    print(
        String(
            format: "fitted %d components in %d dimensions to %d points, %d iterations, in %.2f s %@",
            args.components, args.dims, args.points, args.iterations, seconds, place))
    let heaviest = model.weights.indices.max { model.weights[$0] < model.weights[$1] }!
    print(String(format: "heaviest component: %d, weight %.4f", heaviest, model.weights[heaviest]))
    if let path = args.output {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        try encoder.encode(model).write(to: URL(fileURLWithPath: path))
        print("parameters written to \(path)")
    }
}

func progress(_ iteration: Int, _ loglik: Double, _ args: Arguments) {
    if iteration == 0 || iteration == args.iterations - 1 || (iteration + 1) % 10 == 0 {
        print(String(format: "iteration %3d: mean log-likelihood %.6f", iteration + 1, loglik))
    }
}

/// The whole data set in this process.
func fitSerially(_ args: Arguments) throws {
    let truth = SyntheticData.truth(components: args.components, dims: args.dims, seed: args.seed)
    let start = SyntheticData.start(components: args.components, total: args.points, truth: truth, seed: args.seed)
    let data = SyntheticData.points(0..<args.points, from: truth, seed: args.seed)
    let began = Date()
    let model = GaussianMixtureEM.fit(
        data, start: start, iterations: args.iterations, sum: { _ in },
        step: { progress($0, $1, args) })
    try report(model, args, seconds: Date().timeIntervalSince(began), where: "in one process")
}

#if MPI
/// One shard per rank; the statistics summed by allreduce.
func fitAcrossRanks(_ args: Arguments, _ world: Communicator) throws {
    let truth = SyntheticData.truth(components: args.components, dims: args.dims, seed: args.seed)
    let start = SyntheticData.start(components: args.components, total: args.points, truth: truth, seed: args.seed)
    // Shards as numpy.array_split cuts them: the first n % size get one more.
    let base = args.points / world.size
    let extra = args.points % world.size
    let first = world.rank * base + min(world.rank, extra)
    let shard = SyntheticData.points(
        first..<(first + base + (world.rank < extra ? 1 : 0)), from: truth, seed: args.seed)
    try world.barrier()
    let began = Date()
    let model = try GaussianMixtureEM.fit(
        shard, start: start, iterations: args.iterations,
        sum: { try world.allreduce(&$0, .sum) },
        step: { if world.rank == 0 { progress($0, $1, args) } })
    let seconds = Date().timeIntervalSince(began)
    let hosts = try world.gather(world.processorName)
    if let hosts {
        let distinct = Set(hosts).sorted()
        try report(
            model, args, seconds: seconds,
            where:
                "on \(world.size) ranks (\(distinct.count) host\(distinct.count == 1 ? "" : "s"): \(distinct.joined(separator: ", ")))"
        )
    }
}
#endif

do {
    let args = try Arguments(Array(CommandLine.arguments.dropFirst()))
    #if MPI
    if MPI.isLaunched && !args.serial {
        MPI.run { world in try fitAcrossRanks(args, world) }
    }
    #endif
    try fitSerially(args)
} catch {
    FileHandle.standardError.write(Data("GaussianMixture: \(error)\n".utf8))
    exit(2)
}
