// One-process code over a split list argument: what SIDEKIT's
// `@process_parallel_lists` decorator does, with the list and the merge
// named in a way the compiler checks. SIDEKIT finds the list by an argument
// name suffix (`*_list`) and sums accumulators found the same way; a wrong
// name makes every worker process the whole list, silently. Here the list
// is a key path into the arguments, which must lead to an array, and the
// merge is a function of the result type.

/// A result that can absorb another of its kind: how the results of the
/// parts of a split call are combined.
public protocol Mergeable {
    /// Adds `other`'s contents to this one.
    mutating func merge(_ other: Self)
}

extension Pool {
    /// Calls `body`, a function written for one process, on `parts` copies
    /// of `arguments` (default: one per worker) whose array at `list` holds
    /// one contiguous part each, runs the calls in parallel, and merges
    /// their results in order with `merge`.
    ///
    /// ```swift
    /// struct Job { var files: [String]; var frameLength = 400 }
    /// let stats = try await pool.splitting(Job(files: files), over: \.files,
    ///                                      merge: { $0.merge($1) }) { job in
    ///     try accumulateStatistics(job)    // the one-process code, unchanged
    /// }
    /// ```
    ///
    /// The result equals `body(arguments)` when `body`'s result over a list
    /// is the merge of its results over the list's parts (sums, counts,
    /// histograms; floating-point sums can differ in the last bits, as any
    /// change of summation order does). With one part (the serial backend),
    /// it is exactly `body(arguments)`.
    public func splitting<Arguments: Sendable, Element: Sendable, Result: Sendable>(
        _ arguments: Arguments, over list: WritableKeyPath<Arguments, [Element]>, parts: Int? = nil,
        merge: (inout Result, Result) throws -> Void,
        _ body: @escaping @Sendable (Arguments) throws -> Result
    ) async throws -> Result {
        let calls = try split(arguments, over: list, parts: parts)
        return try mergeInOrder(try await map(calls, body), merge)
    }

    /// `splitting` with a `Mergeable` result.
    public func splitting<Arguments: Sendable, Element: Sendable, Result: Mergeable & Sendable>(
        _ arguments: Arguments, over list: WritableKeyPath<Arguments, [Element]>, parts: Int? = nil,
        _ body: @escaping @Sendable (Arguments) throws -> Result
    ) async throws -> Result {
        try await splitting(arguments, over: list, parts: parts, merge: { $0.merge($1) }, body)
    }

    /// `splitting` with a remote task: runs on every backend, processes
    /// included.
    public func splitting<Arguments, Element, Result>(
        _ arguments: Arguments, over list: WritableKeyPath<Arguments, [Element]>, parts: Int? = nil,
        _ task: RemoteTask<Arguments, Result>, merge: (inout Result, Result) throws -> Void
    ) async throws -> Result {
        let calls = try split(arguments, over: list, parts: parts)
        return try mergeInOrder(try await map(calls, task, options: MapOptions(batchSize: 1)), merge)
    }

    /// `splitting` with a remote task and a `Mergeable` result.
    public func splitting<Arguments, Element, Result: Mergeable>(
        _ arguments: Arguments, over list: WritableKeyPath<Arguments, [Element]>, parts: Int? = nil,
        _ task: RemoteTask<Arguments, Result>
    ) async throws -> Result {
        try await splitting(arguments, over: list, parts: parts, task, merge: { $0.merge($1) })
    }

    /// The copies of `arguments` with the list cut into contiguous parts.
    func split<Arguments, Element>(
        _ arguments: Arguments, over list: WritableKeyPath<Arguments, [Element]>, parts: Int?
    ) throws -> [Arguments] {
        if let parts { try requirePositive(parts, "parts") }
        let whole = arguments[keyPath: list]
        let n = max(1, min(parts ?? workerCount, whole.count))
        return (0..<n).map { k in
            var copy = arguments
            copy[keyPath: list] = Array(whole[whole.count * k / n..<whole.count * (k + 1) / n])
            return copy
        }
    }
}

private func mergeInOrder<Result>(_ results: [Result], _ merge: (inout Result, Result) throws -> Void) throws -> Result
{
    var total = results[0]
    for r in results.dropFirst() { try merge(&total, r) }
    return total
}
