/// A remote task at a graph node, type-erased: builds its input from the
/// arguments' results, runs here or makes the job that runs a batch of such
/// nodes in a worker process.
protocol RemoteNodeTask: Sendable {
    var taskName: String { get }
    func runHere(_ arguments: [any Sendable]) throws -> any Sendable
    func makeJob(run: GraphRun, nodes: [Int], arguments: [[any Sendable]], context: RemoteContext) throws
        -> any RemoteJob
}

struct RemoteNode<I: Codable & Sendable, O: Codable & Sendable>: RemoteNodeTask {
    let task: RemoteTask<I, O>
    /// Makes the task's input from the arguments' results: made where the
    /// node is built and the types are known, so it casts cheaply.
    let input: @Sendable ([any Sendable]) -> I

    var taskName: String { task.name }

    func runHere(_ arguments: [any Sendable]) throws -> any Sendable { try task.body(input(arguments)) }

    func makeJob(run: GraphRun, nodes: [Int], arguments: [[any Sendable]], context: RemoteContext) throws
        -> any RemoteJob
    {
        try GraphBatchJob(
            run: run, nodes: nodes, inputs: arguments.map(input), task: task,
            taskID: context.registry.id(of: task), arena: context.arena,
            external: context.referencesBigArrays, limit: context.payloadLimit)
    }
}

/// A batch of ready graph nodes of one remote task, sent to a worker as one
/// request.
final class GraphBatchJob<I: Codable & Sendable, O: Codable & Sendable>: RemoteJob, @unchecked Sendable {
    // Safe: every property is immutable; `payload` is written only while
    // the job is made, before any other thread sees it.
    let run: GraphRun
    let nodes: [Int]
    let inputs: [I]
    let task: RemoteTask<I, O>
    let taskID: Int
    let payload: WireBuffer

    init(
        run: GraphRun, nodes: [Int], inputs: [I], task: RemoteTask<I, O>, taskID: Int, arena: SharedArena?,
        external: Bool = false, limit: PayloadLimit? = nil
    ) throws {
        self.run = run
        self.nodes = nodes
        self.inputs = inputs
        self.task = task
        self.taskID = taskID
        payload = try encodePayload(inputs, arena: arena, external: external, limit: limit)
    }

    var mode: ErrorMode { .failFast }
    var timeout: Duration? { nil }
    var retries: Int? { nil }
    var token: CancellationToken? { run.token }
    var firstIndex: Int? { nil }
    var itemCount: Int { nodes.count }

    func begin() -> Bool { !run.token.isCancelled }
    func skip() { run.finishRemote(nodes, results: [], failure: nil) }

    func deliver(_ reply: inout WireReader, nanos: UInt64) throws {
        let out = try task.readOutcome(&reply, start: 0, count: nodes.count, mode: .failFast)
        run.finishRemote(nodes, results: out.values, failure: out.failure.map { ($0.index, $0.underlying) })
    }

    func fail(_ error: any Error) { run.finishRemote(nodes, results: [], failure: (0, error)) }

    func split(at offset: Int) -> (before: (any RemoteJob)?, culprit: any RemoteJob, after: (any RemoteJob)?) {
        guard nodes.count > 1 else { return (nil, self, nil) }
        let cut = splitBatch(count: nodes.count, at: offset) { r in
            try GraphBatchJob(
                run: run, nodes: Array(nodes[r]), inputs: Array(inputs[r]), task: task, taskID: taskID,
                arena: payload.arena, external: payload.allowsExternal)
        }
        run.split(into: cut.parts)
        return (cut.before, cut.culprit, cut.after)
    }

    func run(on worker: WorkerContext) { fail(FleetError.notRemote("a remote graph batch ran in the driver")) }
    func discard(_ reason: FleetError) { fail(reason) }
}
