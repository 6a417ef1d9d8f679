import Foundation
import Testing

@testable import Fleet

/// Every backend the behaviour suite runs against. A new backend joins the
/// suite by adding a case here.
enum TestBackend: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case serial
    case threads
    case processes

    /// The backends that run closures (the processes backend runs only
    /// remote tasks; RemoteBehaviourTests covers it).
    static let inProcess: [TestBackend] = [.serial, .threads]

    var testDescription: String { rawValue }

    func makePool(workers: Int? = nil) throws -> Pool {
        switch self {
        case .serial: return try Pool.make(.serial, workers: workers)
        case .threads: return try Pool.make(.threads, workers: workers ?? 3)
        case .processes: return try processPool(workers: workers ?? 2)
        }
    }
}

/// A thread-safe counter for observing what tasks did.
final class Counter: Sendable {
    private let value = Locked(0)
    func increment(by n: Int = 1) { value.withLock { $0 += n } }
    var count: Int { value.withLock { $0 } }
}

/// An endless input that counts how many elements have been pulled.
struct CountingSequence: Sequence, Sendable {
    let pulled: Counter
    var limit: Int = .max

    struct Iterator: IteratorProtocol {
        let pulled: Counter
        let limit: Int
        var position = 0
        mutating func next() -> Int? {
            guard position < limit else { return nil }
            pulled.increment()
            defer { position += 1 }
            return position
        }
    }

    func makeIterator() -> Iterator { Iterator(pulled: pulled, limit: limit) }
}

struct Boom: Error, Equatable {
    let value: Int
}

/// Blocks the calling thread for `ms` milliseconds (not an async sleep).
func blockingSleep(ms: Int) { usleep(UInt32(ms * 1000)) }

/// Sleeps in small steps until cancelled or `ms` have passed; returns
/// whether it saw cancellation.
@discardableResult
func cooperativeSleep(ms: Int) -> Bool {
    let end = Date().addingTimeInterval(Double(ms) / 1000)
    while Date() < end {
        if FleetTask.isCancelled { return true }
        usleep(2000)
    }
    return false
}

/// Names of this process's threads whose name starts with `prefix`.
func threads(named prefix: String) -> [String] {
    let dir = "/proc/self/task"
    let tids = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
    return tids.compactMap { tid in
        let name = (try? String(contentsOfFile: "\(dir)/\(tid)/comm", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines)
        guard let name, name.hasPrefix(prefix) else { return nil }
        return name
    }
}

/// Polls `condition` until it holds or `seconds` pass; returns whether it held.
func eventually(within seconds: Double = 5, _ condition: () -> Bool) async -> Bool {
    let end = Date().addingTimeInterval(seconds)
    while Date() < end {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return condition()
}
