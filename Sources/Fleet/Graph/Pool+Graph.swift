import Foundation

#if canImport(Glibc)
import Glibc
#endif

extension Pool {
    /// Runs the task graph behind `nodes` on this pool and returns their
    /// results. Nodes they share run once; independent branches run in
    /// parallel; a result is dropped as soon as nothing more needs it. A
    /// failing node stops the run: `NodeFailure` names it, and nodes not
    /// yet started never start.
    ///
    /// On processes every node to run must be a remote task node; their
    /// inputs are the results of other nodes, which come back to the caller
    /// and are sent on to the worker running the node that needs them.
    public func compute<each V: Sendable>(_ nodes: repeat Delayed<each V>) async throws -> (repeat each V) {
        var roots: [GraphNode] = []
        for node in repeat each nodes { roots.append(node.node) }
        let values = try await computeNodes(roots)
        var next = 0
        func take<T>(_: Delayed<T>) -> T {
            defer { next += 1 }
            return values[next] as! T
        }
        return (repeat take(each nodes))
    }

    /// `compute` for a list of nodes of one type.
    public func compute<V: Sendable>(_ nodes: [Delayed<V>]) async throws -> [V] {
        try await computeNodes(nodes.map(\.node)).map { $0 as! V }
    }

    func computeNodes(_ roots: [GraphNode]) async throws -> [any Sendable] {
        let remote = backend as? any RemoteBackend
        let run = GraphRun(roots: roots, remote: remote)
        if let remote {
            run.dispatchRemote(on: remote)
        } else {
            // One loop per worker; on the serial backend the one loop runs
            // here, to the end.
            for _ in 0..<max(1, min(workerCount, run.nodes.count)) {
                do { try backend.enqueue(GraphLoopJob(run)) } catch {
                    run.cancel()
                    throw error
                }
            }
        }
        await withTaskCancellationHandler {
            await run.waitForEnd()
        } onCancel: {
            run.cancel()
        }
        return try run.outcome()
    }
}

/// A worker's share of an in-process graph run: it takes ready nodes until
/// the run is over.
final class GraphLoopJob: Job {
    let run: GraphRun
    init(_ run: GraphRun) { self.run = run }
    func run(on worker: WorkerContext) { run.workLoop() }
    func discard(_ reason: FleetError) { run.cancel() }
}

extension Graph {
    /// The graph behind `nodes` in Graphviz DOT, for viewing (`dot -Tsvg`).
    public static func dot<each V: Sendable>(_ nodes: repeat Delayed<each V>) -> String {
        var roots: [GraphNode] = []
        for node in repeat each nodes { roots.append(node.node) }
        let order = GraphRun(roots: roots, remote: nil).nodes
        var lines = ["digraph fleet {", "  rankdir=BT;", "  node [shape=box, fontname=\"Helvetica\"];"]
        for node in order {
            let shape = if case .value = node.work { "ellipse" } else { "box" }
            let label = node.label.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(
                of: "\"", with: "\\\"")
            lines.append("  n\(node.id) [label=\"\(label)\", shape=\(shape)];")
        }
        for node in order { for arg in node.arguments { lines.append("  n\(arg.id) -> n\(node.id);") } }
        lines.append("}")
        return lines.joined(separator: "\n") + "\n"
    }

    /// Renders DOT text to an image file with Graphviz's `dot` (format from
    /// the extension: svg, png, pdf). Throws `FleetError.toolMissing` if
    /// Graphviz is not installed (`Graph.dot` gives the text without it).
    public static func render(dot: String, to path: String) throws {
        let format = URL(fileURLWithPath: path).pathExtension.isEmpty ? "svg" : URL(fileURLWithPath: path).pathExtension
        let path = ProcessInfo.processInfo.environment["PATH"].flatMap { $0.isEmpty ? nil : $0 } ?? "/usr/bin:/bin"
        guard
            let dotPath = path.split(separator: ":").map({ "\($0)/dot" }).first(where: {
                FileManager.default.isExecutableFile(atPath: $0)
            })
        else {
            throw FleetError.toolMissing(name: "Graphviz's dot", install: "apt-get install graphviz")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: dotPath)
        process.arguments = ["-T\(format)", "-o", path]
        let input = Pipe()
        process.standardInput = input
        try process.run()
        input.fileHandleForWriting.write(Data(dot.utf8))
        try input.fileHandleForWriting.close()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw FleetError.invalidArgument("dot -T\(format) failed with status \(process.terminationStatus)")
        }
    }
}
