/// A remote task and its input, run once in every worker process when it
/// starts (see `ProcessOptions.initializer`).
///
/// ```swift
/// static let loadModel = RemoteTask("loadModel") { (path: String) -> Bool in
///     Model.shared = try Model(contentsOf: path)
///     return true
/// }
/// let pool = try Pool.processes(options: ProcessOptions(
///     initializer: try WorkerInitializer(Jobs.loadModel, "/models/small.bin")))
/// ```
public struct WorkerInitializer: Sendable {
    /// The task's name.
    public let name: String
    let types: [ObjectIdentifier]
    let payload: [UInt8]
    /// Reads the worker's reply: nil on success, else what the task threw.
    let outcome: @Sendable (inout WireReader) throws -> (any Error)?

    /// Runs `task` on `input` in each worker as it starts. Throws if
    /// `input` cannot be encoded.
    public init<I, O>(_ task: RemoteTask<I, O>, _ input: I) throws {
        name = task.name
        types = [ObjectIdentifier(I.self), ObjectIdentifier(O.self)]
        payload = try WireCoding.encode([input])
        outcome = { reader in
            let out = try task.readOutcome(&reader, start: 0, count: 1, mode: .failFast)
            return out.failure?.underlying
        }
    }
}
