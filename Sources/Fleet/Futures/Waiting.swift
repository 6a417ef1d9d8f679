/// Yields the futures as they complete, in completion order, whatever the
/// order they were given in (like Python's `as_completed`). Futures already
/// done come first. The sequence ends when every future is done.
public func asCompleted<Value: Sendable, S: Sequence<Future<Value>>>(
    _ futures: S
) -> AsyncStream<Future<Value>> {
    let list = Array(futures)
    let (stream, continuation) = AsyncStream<Future<Value>>.makeStream(bufferingPolicy: .unbounded)
    if list.isEmpty {
        continuation.finish()
        return stream
    }
    let remaining = Locked(list.count)
    for future in list {
        future.whenComplete { _ in
            continuation.yield(future)
            let last = remaining.withLock { n -> Bool in
                n -= 1
                return n == 0
            }
            if last { continuation.finish() }
        }
    }
    return stream
}

/// `asCompleted` with a time-out for the whole sequence, from the call (like
/// Python's `as_completed(fs, timeout)`): the futures done by then come in
/// completion order, then the sequence throws `FleetError.timedOut` if any
/// is still pending. The futures themselves go on.
public func asCompleted<Value: Sendable, S: Sequence<Future<Value>>>(
    _ futures: S, timeout: Duration
) throws -> AsyncThrowingStream<Future<Value>, any Error> {
    try requireNonNegative(timeout, "timeout")
    let list = Array(futures)
    let (stream, continuation) = AsyncThrowingStream<Future<Value>, any Error>.makeStream(
        bufferingPolicy: .unbounded)
    // Counts what is left to yield; nil once the sequence has ended.
    let remaining = Locked<Int?>(list.count)
    if list.isEmpty {
        continuation.finish()
        return stream
    }
    // The stream is fed and ended under the lock, so a future yielded is
    // never one the time-out already cut off, and the end comes once.
    let timer = Watchdog.shared.schedule(after: timeout) {
        remaining.withLock { n in
            guard n != nil else { return }
            n = nil
            continuation.finish(throwing: FleetError.timedOut(item: nil, after: timeout))
        }
    }
    for future in list {
        future.whenComplete { _ in
            let last = remaining.withLock { n -> Bool in
                guard let left = n else { return false }
                continuation.yield(future)
                n = left == 1 ? nil : left - 1
                if left == 1 { continuation.finish() }
                return left == 1
            }
            if last { Watchdog.shared.cancel(timer) }
        }
    }
    return stream
}

/// When `wait(_:until:timeout:)` returns.
public enum WaitCondition: Sendable {
    /// As soon as any future is done.
    case firstCompleted
    /// As soon as any future fails (or is cancelled), or when all are done.
    case firstFailure
    /// When every future is done.
    case allCompleted
}

/// Waits for futures (like Python's `concurrent.futures.wait`) and returns
/// which are done and which are still pending. With a `timeout`, it returns
/// when the time is up even if the condition is not met; it never throws
/// for that (zero only looks). Cancelling the waiting task returns early in
/// the same way.
public func wait<Value: Sendable, S: Sequence<Future<Value>>>(
    _ futures: S,
    until condition: WaitCondition = .allCompleted,
    timeout: Duration? = nil
) async throws -> (done: Set<Future<Value>>, pending: Set<Future<Value>>) {
    if let timeout { try requireNonNegative(timeout, "timeout") }
    let all = Set(futures)

    func split() -> (done: Set<Future<Value>>, pending: Set<Future<Value>>) {
        var done = Set<Future<Value>>()
        var pending = Set<Future<Value>>()
        for f in all {
            if f.isDone { done.insert(f) } else { pending.insert(f) }
        }
        return (done, pending)
    }

    @Sendable func met(_ result: Result<Value, any Error>?, remaining: Int) -> Bool {
        switch condition {
        case .allCompleted: return remaining == 0
        case .firstCompleted: return true
        case .firstFailure:
            if case .failure? = result { return true }
            return remaining == 0
        }
    }

    // Fast path: already satisfied.
    var notDone: [Future<Value>] = []
    for f in all where !f.isDone { notDone.append(f) }
    if notDone.isEmpty { return (all, []) }
    if condition == .firstCompleted && notDone.count < all.count { return split() }
    if condition == .firstFailure,
        all.contains(where: { if case .failure? = $0.state.result { return true } else { return false } })
    {
        return split()
    }
    if timeout == .zero { return split() }

    let gate = Locked<(remaining: Int, once: OnceContinuation<Void>?, fired: Bool)>(
        (notDone.count, nil, false))
    await withTaskCancellationHandler {
        _ = try? await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let once = OnceContinuation(continuation)
            gate.withLock { $0.once = once }
            let timer = timeout.map { Watchdog.shared.schedule(after: $0) { once.resume(with: .success(())) } }
            for future in notDone {
                future.whenComplete { result in
                    let fire = gate.withLock { g -> Bool in
                        g.remaining -= 1
                        guard !g.fired, met(result, remaining: g.remaining) else { return false }
                        g.fired = true
                        return true
                    }
                    if fire {
                        if let timer { Watchdog.shared.cancel(timer) }
                        once.resume(with: .success(()))
                    }
                }
            }
            if Task.isCancelled { once.resume(with: .success(())) }
        }
    } onCancel: {
        gate.withLock { $0.once }?.resume(with: .success(()))
    }
    if condition == .allCompleted && gate.withLock({ $0.remaining == 0 }) { return (all, []) }
    return split()
}
