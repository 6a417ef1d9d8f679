import DequeModule

// Task graph execution: data flow
//
//   compute(nodes) ─▶ GraphRun: the subgraph they need, each node's count of
//                     unfinished arguments and of dependents still to run
//        │
//        ├─ serial / threads: one loop job per worker pops a ready node,
//        │  runs it, stores its result, and readies the dependents whose
//        │  arguments are now all done
//        └─ processes: the driver packs ready nodes of one remote task into
//           a batch (one frame), sends it, and readies dependents as the
//           replies arrive; results come back to the driver and go out
//           again as the inputs of the nodes that need them
//
// Ready nodes wait on a stack: a node made ready by one that just finished
// runs next, so a branch is finished before another is started and few
// results are held at once. A result is dropped as soon as every node that
// needs it has run (unless it was asked for). The first failure stops new
// work; the run ends once nothing of it is running, and rethrows the
// failure naming the node.

/// One execution of part of a task graph.
final class GraphRun: @unchecked Sendable {
    // Safe: every `var` is guarded by `mutex`.
    private let mutex = PthreadMutex()
    private let wake = PthreadCondition()
    let token = CancellationToken()
    let nodes: [GraphNode]
    /// Each node's arguments and dependents, as positions in `nodes`, in
    /// two flat tables (node i's are `list[start[i]..<start[i + 1]]`).
    private let arguments: FlatLists
    private let dependents: FlatLists
    private var pending: [Int32]
    private var holds: [Int32]
    private var results: [(any Sendable)?]
    private var ready: [Int] = []
    private var remaining: Int
    private var running = 0
    private var sleeping = 0
    private var failure: (any Error)?
    /// A failure asked for the token to be cancelled (done outside the lock).
    private var cancelDue = false
    private var finished: CheckedContinuation<Void, Never>?
    private var isOver = false
    let requested: [Int]
    /// On processes: the backend to send more work to as replies arrive.
    let remoteBackend: (any RemoteBackend)?

    /// Takes the nodes `roots` need, in an order where arguments come first.
    init(roots: [GraphNode], remote: (any RemoteBackend)?) {
        remoteBackend = remote
        // Depth-first, each node placed after its arguments (post-order).
        // `placed` maps a node's id to its position, or -1 while its
        // arguments are being placed.
        var placed = IntMap(capacity: 1024)
        var order: [GraphNode] = []
        var stack: [(node: GraphNode, expanded: Bool)] = roots.reversed().map { ($0, false) }
        while let (node, expanded) = stack.popLast() {
            if expanded {
                placed[node.id] = order.count
                order.append(node)
                continue
            }
            if placed[node.id] != nil { continue }
            placed[node.id] = -1
            stack.append((node, true))
            for arg in node.arguments.reversed() where placed[arg.id] == nil { stack.append((arg, false)) }
        }
        let position = placed
        nodes = order
        let args = FlatLists(count: order.count) { i, add in
            for arg in order[i].arguments { add(position[arg.id]!) }
        }
        let deps = args.inverted()
        arguments = args
        dependents = deps
        holds = (0..<order.count).map { Int32(deps.count(of: $0)) }
        requested = roots.map { position[$0.id]! }
        for r in requested { holds[r] += 1 }
        pending = (0..<order.count).map { Int32(args.count(of: $0)) }
        results = Array(repeating: nil, count: order.count)
        remaining = order.count
        // Values are done from the start; nodes with no arguments are ready.
        var initial: [Int] = []
        for i in order.indices where arguments.count(of: i) == 0 {
            if case .value(let v) = order[i].work {
                results[i] = v
                remaining -= 1
                for d in dependents[i] {
                    pending[d] -= 1
                    if pending[d] == 0 { initial.append(d) }
                }
            } else {
                initial.append(i)
            }
        }
        // The first roots' branches first.
        ready = initial.reversed()
        if remaining == 0 { isOver = true }
    }

    // MARK: In-process execution

    /// The loop each worker runs (serial: the one loop in the caller).
    func workLoop() {
        var taken: [(Int, [any Sendable])] = []
        var outcomes: [Result<any Sendable, any Error>] = []
        mutex.lock()
        while true {
            if failure == nil, !ready.isEmpty {
                // A few nodes per turn of the lock when many are ready.
                let n = min(ready.count, 1 + ready.count / 64, 16)
                taken.removeAll(keepingCapacity: true)
                for _ in 0..<n {
                    let i = ready.removeLast()
                    taken.append((i, gather(i)))
                }
                running += n
                mutex.unlock()
                outcomes.removeAll(keepingCapacity: true)
                for (i, args) in taken { outcomes.append(Result { try execute(i, args) }) }
                mutex.lock()
                running -= n
                for k in taken.indices { complete(taken[k].0, outcomes[k]) }
                cancelIfDue()
                continue
            }
            if isOver || (failure != nil && running == 0) || remaining == 0 {
                endLocked()
                break
            }
            sleeping += 1
            wake.wait(mutex)
            sleeping -= 1
        }
        mutex.unlock()
    }

    private func execute(_ i: Int, _ args: [any Sendable]) throws -> any Sendable {
        switch nodes[i].work {
        case .value(let v): return v
        case .local(let f): return try f(args)
        case .remote(let task): return try task.runHere(args)
        }
    }

    /// Records node `i`'s outcome. Called with `mutex` held.
    private func complete(_ i: Int, _ outcome: Result<any Sendable, any Error>) {
        switch outcome {
        case .success(let value):
            remaining -= 1
            results[i] = value
            let before = ready.count
            for d in dependents[i] {
                pending[d] -= 1
                if pending[d] == 0 { ready.append(d) }
            }
            for a in arguments[i] { release(a) }
            if ready.count > before + 1 || remaining == 0, sleeping > 0 {
                wake.broadcast()
            } else if ready.count > before, sleeping > 0 {
                wake.signal()
            }
        case .failure(let error):
            if failure == nil {
                failure = NodeFailure(label: nodes[i].label, id: nodes[i].id, underlying: error)
                ready.removeAll()
                // Cancelled once the lock is released: the token's handlers
                // take the backend's lock, whose holder may be waiting for
                // this one (a batch cut in two by a worker's death).
                cancelDue = true
            }
            if sleeping > 0 { wake.broadcast() }
        }
        if failure != nil, running == 0, sleeping > 0 { wake.broadcast() }
    }

    /// Cancels the token if a failure asked for it, with `mutex` released
    /// for the call. Called with `mutex` held.
    private func cancelIfDue() {
        guard cancelDue else { return }
        cancelDue = false
        mutex.unlock()
        token.cancel()
        mutex.lock()
    }

    /// Node `i`'s arguments' results. Called with `mutex` held.
    private func gather(_ i: Int) -> [any Sendable] {
        var args: [any Sendable] = []
        args.reserveCapacity(arguments.count(of: i))
        for a in arguments[i] { args.append(results[a]!) }
        return args
    }

    /// One holder of node `a`'s result is done with it.
    private func release(_ a: Int) {
        holds[a] -= 1
        if holds[a] == 0 { results[a] = nil }
    }

    // MARK: Processes

    /// Sends ready nodes to worker processes, in batches of one task.
    func dispatchRemote(on backend: any RemoteBackend) {
        mutex.lock()
        var jobs: [(task: any RemoteNodeTask, nodes: [Int], args: [[any Sendable]])] = []
        let limit = 2 * backend.workerCount
        while failure == nil, running < limit, let top = ready.last {
            guard case .remote(let task) = nodes[top].work else {
                failure = NodeFailure(
                    label: nodes[top].label, id: nodes[top].id,
                    underlying: FleetError.notRemote(
                        "a closure node cannot run in a worker process: make it a RemoteTask node"))
                ready.removeAll()
                break
            }
            // Many ready nodes: share them out; few: send them one by one.
            let size = max(1, min(ready.count / limit, 4_096))
            var batch: [Int] = []
            while batch.count < size, let i = ready.last, case .remote(let t) = nodes[i].work,
                t.taskName == task.taskName
            {
                ready.removeLast()
                batch.append(i)
            }
            running += 1
            jobs.append((task, batch, batch.map(gather)))
        }
        let over = failure != nil && running == 0
        if over { endLocked() }
        mutex.unlock()
        for job in jobs {
            do {
                try backend.enqueue(
                    try job.task.makeJob(
                        run: self, nodes: job.nodes, arguments: job.args,
                        context: backend.context))
            } catch {
                finishRemote(job.nodes, results: [], failure: (0, error))
            }
        }
    }

    /// A batch came back: `results` for its first nodes, then maybe the
    /// failure of the node at `failure.0`; nodes after it did not run.
    func finishRemote(_ batch: [Int], results values: [any Sendable], failure: (Int, any Error)?) {
        mutex.lock()
        running -= 1
        for (k, i) in batch.enumerated() {
            if k < values.count {
                complete(i, .success(values[k]))
            } else if let failure, failure.0 == k {
                complete(i, .failure(failure.1))
            } else if self.failure == nil {
                complete(i, .failure(FleetError.cancelled))
            }
        }
        if remaining == 0 || (self.failure != nil && running == 0) { endLocked() }
        cancelIfDue()
        mutex.unlock()
        if let backend = remoteBackend { dispatchRemote(on: backend) }
    }

    /// A batch was cut in `parts` around a node that killed its worker.
    func split(into parts: Int) {
        mutex.withLock { running += parts - 1 }
    }

    // MARK: Ending

    private func endLocked() {
        guard !isOver || finished != nil else { return }
        isOver = true
        if sleeping > 0 { wake.broadcast() }
        let c = finished
        finished = nil
        c?.resume()
    }

    /// Waits until the run has ended.
    func waitForEnd() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            mutex.lock()
            if isOver || remaining == 0 {
                mutex.unlock()
                c.resume()
                return
            }
            finished = c
            mutex.unlock()
        }
    }

    /// The outcome: the requested results, or the failure.
    func outcome() throws -> [any Sendable] {
        try mutex.withLock {
            if let failure { throw failure }
            return requested.map { results[$0]! }
        }
    }

    /// Stops starting nodes (the caller was cancelled).
    func cancel() {
        mutex.lock()
        if failure == nil {
            failure = CancellationError()
            ready.removeAll()
        }
        if running == 0 { endLocked() }
        if sleeping > 0 { wake.broadcast() }
        mutex.unlock()
        token.cancel()
    }
}

/// The error a task graph throws when a node fails: which node, and what it
/// threw.
public struct NodeFailure: Error, CustomStringConvertible {
    /// The node's label (given, or its function or task name and id).
    public let label: String
    /// The node's id.
    public let id: Int
    /// What the node threw.
    public let underlying: any Error

    public var description: String { "node \(label) failed: \(underlying)" }
}
