/// Per-worker state: built once on each worker that needs it (an expensive
/// model, a scratch buffer, a connection) and handed to every task that runs
/// on that worker, by `map(_:with:_:)` and `submit(with:_:)`.
///
/// ```swift
/// let scratch = WorkerState { [UInt8](repeating: 0, count: 1 << 20) }
/// let sums = try await pool.map(files, with: scratch) { buffer, file in
///     try checksum(file, using: &buffer)
/// }
/// ```
///
/// The state is built lazily, on the worker, the first time a task there
/// needs it, and never leaves that worker, so it need not be `Sendable`. If
/// building it throws, the task that needed it fails with that error and the
/// next task on that worker tries again. On the serial backend each calling
/// thread is a worker of its own.
public final class WorkerState<State>: Sendable {
    private let build: @Sendable () throws -> State

    /// Declares per-worker state made by `build`.
    public init(_ build: @escaping @Sendable () throws -> State) { self.build = build }

    /// Runs `body` with this worker's state, building it first if need be.
    @usableFromInline
    func withState<R>(on worker: WorkerContext, _ body: (inout State) throws -> R) throws -> R {
        let key = ObjectIdentifier(self)
        let box: Box
        if let existing = worker.states[key] as? Box {
            box = existing
        } else {
            box = Box(try build())
            worker.states[key] = box
        }
        return try body(&box.value)
    }

    private final class Box {
        var value: State
        init(_ value: State) { self.value = value }
    }
}
