import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The program's remote tasks, registered once at the top of `main`.
///
/// ```swift
/// try RemoteTasks.bootstrap(Jobs.square, Jobs.parse)
/// ```
///
/// In a process the processes backend started as a worker, `bootstrap`
/// serves tasks and never returns. In the driver (any other process) it
/// records the tasks and returns at once. Call it before anything else, so
/// that a worker does none of the driver's work.
public enum RemoteTasks {
    private static let registered = Locked<Registry?>(nil)

    /// Registers `tasks`, and serves them if this process is a worker.
    /// Throws `FleetError.invalidArgument` for two tasks with one name.
    public static func bootstrap(_ tasks: any RemoteTaskDeclaration...) throws {
        try bootstrap(tasks)
    }

    /// Registers `tasks`, and serves them if this process is a worker.
    public static func bootstrap(_ tasks: [any RemoteTaskDeclaration]) throws {
        let registry = try Registry(tasks)
        registered.withLock { $0 = registry }
        if let spec = WorkerSpec.fromEnvironment() {
            WorkerMain(registry: registry, spec: spec).run()  // never returns
        }
    }

    /// The names of the registered tasks.
    public static var names: [String] { registry.tasks.map(\.name) }

    /// Maps the registered task called `name` over `inputs` (a JSON array of
    /// its input type) on `pool`, and returns how many items ran: a task
    /// chosen by name at run time, as a command line does (`fleet bench
    /// --task`). Throws `FleetError.invalidArgument` for an unknown name or
    /// inputs of the wrong shape.
    public static func map(taskNamed name: String, jsonInputs inputs: Data, on pool: Pool) async throws -> Int {
        let registry = self.registry
        guard let id = registry.ids[name], let task = registry.tasks[id] as? any RemoteServable else {
            throw FleetError.invalidArgument(
                "no remote task is named \"\(name)\"; registered: \(registry.tasks.map(\.name).joined(separator: ", "))"
            )
        }
        return try await task.map(jsonInputs: inputs, on: pool)
    }

    /// The registered tasks (empty before `bootstrap`).
    static var registry: Registry { registered.withLock { $0 } ?? Registry.empty }

    /// True in a process started as a worker that has not reached `bootstrap`.
    static var isUnservedWorker: Bool { getenv(WorkerSpec.variable) != nil }
}

/// The registered tasks, in name order: a task's position is its id on the
/// wire, valid because driver and worker compare signatures first.
@usableFromInline
struct Registry: Sendable {
    let tasks: [any RemoteTaskDeclaration]
    let ids: [String: Int]
    let signatures: [String]
    let identities: [(ObjectIdentifier, ObjectIdentifier)]
    /// FNV-1a over the protocol version and every signature.
    let fingerprint: UInt64

    static let empty = try! Registry([])

    init(_ tasks: [any RemoteTaskDeclaration]) throws {
        let sorted = tasks.sorted { $0.name < $1.name }
        var ids: [String: Int] = [:]
        for (i, task) in sorted.enumerated() {
            guard ids.updateValue(i, forKey: task.name) == nil else {
                throw FleetError.invalidArgument("two remote tasks are named \"\(task.name)\"")
            }
        }
        self.tasks = sorted
        self.ids = ids
        signatures = sorted.map(\.signature)
        identities = sorted.map { task in
            let t = task.typeIdentity
            return t.count == 2 ? (t[0], t[1]) : (ObjectIdentifier(Never.self), ObjectIdentifier(Never.self))
        }
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in "v\(wireProtocolVersion)\n\(signatures.joined(separator: "\n"))".utf8 {
            hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3
        }
        fingerprint = hash
    }

    /// The wire id of `task`, checking that it is the registered one.
    func id<I, O>(of task: RemoteTask<I, O>) throws -> Int {
        guard let id = ids[task.name], identities[id] == (ObjectIdentifier(I.self), ObjectIdentifier(O.self)) else {
            throw FleetError.notRemote(
                "remote task \"\(task.name)\" is not registered: list it in RemoteTasks.bootstrap at the top of main")
        }
        return id
    }

    /// The input and output type identities of task `id`.
    func typeIdentity(_ id: Int) -> [ObjectIdentifier] { [identities[id].0, identities[id].1] }

    /// Explains how a worker's task list differs from this one.
    func difference(from workerSignatures: [String]) -> String {
        let mine = Set(signatures)
        let theirs = Set(workerSignatures)
        var parts: [String] = []
        let missing = mine.subtracting(theirs).sorted()
        let extra = theirs.subtracting(mine).sorted()
        if !missing.isEmpty { parts.append("the worker lacks \(missing.joined(separator: ", "))") }
        if !extra.isEmpty { parts.append("only the worker has \(extra.joined(separator: ", "))") }
        return parts.isEmpty ? "their task lists differ" : parts.joined(separator: "; ")
    }
}
