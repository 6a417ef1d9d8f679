import Foundation

/// A function that can run in another process: declared once with a stable
/// name and `Codable` input and output, and run unchanged on every backend.
///
/// Swift cannot send closures between processes, so work for the processes
/// backend is declared as a remote task and listed in `RemoteTasks.bootstrap`
/// at the top of `main`. The compiler checks every call site against the
/// declared types:
///
/// ```swift
/// enum Jobs {
///     static let square = RemoteTask("square") { (x: Int) in x &* x }
/// }
///
/// @main struct App {
///     static func main() async throws {
///         try RemoteTasks.bootstrap(Jobs.square)   // a worker serves here
///         let pool = try Pool.processes()
///         let squares = try await pool.map(0..<1_000, Jobs.square)
///     }
/// }
/// ```
///
/// On the serial and threads backends the body is called directly, with no
/// encoding. On processes the inputs and outputs cross the process boundary
/// in Fleet's binary wire form (see `WireCoding`).
public struct RemoteTask<Input: Codable & Sendable, Output: Codable & Sendable>: Sendable {
    /// The name workers know the task by: unique within the program.
    public let name: String
    @usableFromInline let body: @Sendable (Input) throws -> Output

    /// Declares a remote task called `name` that runs `body`.
    public init(_ name: String, _ body: @escaping @Sendable (Input) throws -> Output) {
        self.name = name
        self.body = body
    }

    /// Runs the task here, in this process.
    @inlinable
    public func callAsFunction(_ input: Input) throws -> Output { try body(input) }
}

/// What `RemoteTasks.bootstrap` accepts: any `RemoteTask`, whatever its
/// types. Users do not conform their own types to it.
public protocol RemoteTaskDeclaration: Sendable {
    /// The task's name.
    var name: String { get }
    /// The task's name with its input and output types, compared between
    /// the driver and its workers at the handshake.
    var signature: String { get }
}

extension RemoteTaskDeclaration {
    /// The identity of the task's input and output types, compared at
    /// every call (cheaper than the signature string).
    var typeIdentity: [ObjectIdentifier] { (self as? any RemoteServable)?.types ?? [] }
}

/// The worker side of a remote task.
protocol RemoteServable {
    var types: [ObjectIdentifier] { get }
    /// Maps the task over inputs given as a JSON array; returns how many.
    func map(jsonInputs: Data, on pool: Pool) async throws -> Int
    /// Decodes a batch of inputs, runs them, encodes the outcomes.
    func serve(_ request: inout WireReader, mode: ErrorMode, control: WorkerControl, into reply: WireBuffer) throws
}

extension RemoteTask: RemoteTaskDeclaration, RemoteServable {
    var types: [ObjectIdentifier] { [ObjectIdentifier(Input.self), ObjectIdentifier(Output.self)] }

    func map(jsonInputs: Data, on pool: Pool) async throws -> Int {
        let inputs: [Input]
        do {
            inputs = try JSONDecoder().decode([Input].self, from: jsonInputs)
        } catch {
            throw FleetError.invalidArgument(
                "the inputs are not a JSON array of \(String(reflecting: Input.self)): \(error)")
        }
        return try await pool.map(inputs, self).count
    }

    /// `name(Input) -> Output`, with the types fully qualified.
    public var signature: String {
        "\(name)(\(String(reflecting: Input.self))) -> \(String(reflecting: Output.self))"
    }

    func serve(_ request: inout WireReader, mode: ErrorMode, control: WorkerControl, into reply: WireBuffer) throws {
        let items = try WireCoding.decode([Input].self, from: &request)
        guard request.isAtEnd else { throw WireError.corrupt("\(request.remaining) bytes after the inputs") }
        switch mode {
        case .failFast:
            var values: [Output] = []
            values.reserveCapacity(items.count)
            var failure: (Int, any Error)?
            for i in items.indices {
                control.current = i
                if i & cancellationStride == 0, FleetTask.isCancelled { break }
                do { values.append(try body(items[i])) } catch {
                    failure = (i, error)
                    break
                }
            }
            try WireCoding.encode(values, into: reply)
            if let (i, error) = failure {
                reply.append(UInt8(1))
                RemoteError.write(offset: i, error, into: reply)
            } else {
                reply.append(UInt8(0))
            }
        case .collect:
            reply.append(UInt64(items.count))
            for i in items.indices {
                control.current = i
                do {
                    let value = try body(items[i])
                    reply.append(UInt8(0))
                    try WireCoding.encode(value, into: reply)
                } catch {
                    reply.append(UInt8(1))
                    RemoteError.write(offset: i, error, into: reply)
                }
            }
        }
    }

    /// Driver side: reads the outcomes `serve` wrote for a batch starting
    /// at item `start`.
    func readOutcome(_ reply: inout WireReader, start: Int, count: Int, mode: ErrorMode) throws -> BatchOutput<Output> {
        var out = BatchOutput<Output>()
        switch mode {
        case .failFast:
            out.values = try WireCoding.decode([Output].self, from: &reply)
            if try reply.read(UInt8.self) == 1 {
                let (offset, error) = try RemoteError.read(&reply)
                out.failure = ItemFailure(index: start + offset, underlying: error)
                out.failedCount = 1
            }
            guard out.values.count <= count else { throw WireError.corrupt("more results than inputs") }
        case .collect:
            let n = try reply.readCount()
            guard n == count else { throw WireError.corrupt("\(n) results for \(count) inputs") }
            out.results.reserveCapacity(n)
            for i in 0..<n {
                if try reply.read(UInt8.self) == 0 {
                    out.results.append(.success(try WireCoding.decode(Output.self, from: &reply)))
                } else {
                    let (_, error) = try RemoteError.read(&reply)
                    out.results.append(.failure(ItemFailure(index: start + i, underlying: error)))
                    out.failedCount += 1
                }
            }
        }
        guard reply.isAtEnd else { throw WireError.corrupt("\(reply.remaining) bytes after the results") }
        return out
    }
}

/// An error thrown by a task in a worker process, as it reaches the driver:
/// the thrown error's type name and description, and where it was thrown
/// when that is not obvious (the MPI rank and host).
public struct RemoteError: Error, CustomStringConvertible, Equatable {
    /// The thrown error's type, e.g. `MyApp.ParseError`.
    public let typeName: String
    /// The thrown error's description.
    public let message: String
    /// Where the task ran, e.g. `rank 2 on node7` (nil for worker processes).
    public let origin: String?

    /// An error as it was thrown in a worker.
    public init(typeName: String, message: String, origin: String? = nil) {
        self.typeName = typeName
        self.message = message
        self.origin = origin
    }

    public var description: String { origin.map { "\(typeName) on \($0): \(message)" } ?? "\(typeName): \(message)" }

    /// Set once by a serving MPI rank, before it serves: sent with every error.
    static let localOrigin = Locked<String>("")

    static func write(offset: Int, _ error: any Error, into buffer: WireBuffer) {
        buffer.append(UInt64(offset))
        if let remote = error as? RemoteError {
            buffer.appendString(remote.typeName)
            buffer.appendString(remote.message)
        } else {
            buffer.appendString(String(reflecting: type(of: error)))
            buffer.appendString(String(describing: error))
        }
        buffer.appendString(localOrigin.withLock { $0 })
    }

    static func read(_ reader: inout WireReader) throws -> (Int, RemoteError) {
        let offset = try reader.read(UInt64.self)
        guard offset < UInt64(Int.max) else { throw WireError.corrupt("bad item offset") }
        let typeName = try reader.readString()
        let message = try reader.readString()
        let origin = try reader.readString()
        return (Int(offset), RemoteError(typeName: typeName, message: message, origin: origin.isEmpty ? nil : origin))
    }
}
