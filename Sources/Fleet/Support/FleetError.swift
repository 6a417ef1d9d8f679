/// Errors raised by Fleet itself, as opposed to errors thrown by user tasks.
public enum FleetError: Error, Equatable, CustomStringConvertible {
    /// An argument was out of range: a worker count, batch size or window
    /// that is not positive, a time-out that is not positive, and so on.
    case invalidArgument(String)
    /// The pool was shut down before the work was submitted.
    case poolShutDown
    /// The work was cancelled before it finished: by `Future.cancel()`, by a
    /// shutdown that cancels pending work, or by cancelling the awaiting task.
    case cancelled
    /// The work ran longer than its time-out. `item` is the index of the item
    /// within its operation (nil for a single submitted task).
    case timedOut(item: Int?, after: Duration)

    public var description: String {
        switch self {
        case .invalidArgument(let what): return "invalid argument: \(what)"
        case .poolShutDown: return "the pool has been shut down"
        case .cancelled: return "cancelled"
        case .timedOut(let item?, let after): return "item \(item) timed out after \(after)"
        case .timedOut(nil, let after): return "task timed out after \(after)"
        }
    }
}

/// The error a map, stream or reduce rethrows when one item fails: which item,
/// and what it threw.
public struct ItemFailure: Error, CustomStringConvertible {
    /// The item's position in the input sequence, counting from 0.
    public let index: Int
    /// The error the task threw (or `FleetError.timedOut` for a time-out).
    public let underlying: any Error

    public init(index: Int, underlying: any Error) {
        self.index = index
        self.underlying = underlying
    }

    /// The underlying error's type name, e.g. `DecodingError`.
    public var errorType: String { String(reflecting: type(of: underlying)) }

    public var description: String {
        "item \(index) failed: \(errorType): \(underlying)"
    }
}

@usableFromInline
func requirePositive(_ value: Int, _ name: String) throws {
    if value <= 0 { throw FleetError.invalidArgument("\(name) must be positive, got \(value)") }
}

@usableFromInline
func requirePositive(_ value: Duration, _ name: String) throws {
    if value <= .zero { throw FleetError.invalidArgument("\(name) must be positive, got \(value)") }
}
