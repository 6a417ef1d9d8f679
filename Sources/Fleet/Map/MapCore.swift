import DequeModule

// Map engine: data flow
//
//   caller's task (MapDriver)                       workers (any backend)
//   ─────────────────────────                       ─────────────────────
//   pump: reserve room in window ─▶ pull a batch ─▶ BatchJob ─▶ enqueue ─▶ run items
//                                                                           │
//   take ◀── ready batches (reorder buffer or FIFO) ◀── finish(batch) ◀─────┘
//     │
//     └─▶ hand results to the caller, release the window, pump again
//
// MapCore is the part both sides touch, under one mutex: the window (items
// pulled and not yet handed over), the ready batches, the first failure,
// and the batch sizer. The input iterator never leaves the caller's task:
// only the driver pulls from it, so the input need not be Sendable, and it
// is pulled only when the window has room.
//
// Failure (fail-fast mode): the first failed item sets `terminal`, cancels
// the token (queued batches are skipped, running ones see
// `FleetTask.isCancelled`), and the driver rethrows it once no batch of the
// operation is still running, so when the error reaches the caller nothing
// runs on its behalf. Cancelling the caller's task does the same with
// `CancellationError`. A batch abandoned to a time-out does not count as
// running.

/// The state a map operation shares between its caller and its workers.
@usableFromInline
final class MapCore<R: Sendable>: @unchecked Sendable {
    // Safe: every `var` is read and written only with `mutex` held.
    @usableFromInline let ordered: Bool
    @usableFromInline let mode: ErrorMode
    /// Wake the caller for every finished batch (streams, which hand each
    /// result over as soon as it can), or only once a quarter of the window
    /// is ready (`map`, `reduce`), so short tasks do not wake it per batch.
    let eager: Bool
    @usableFromInline let token = CancellationToken()
    let progress: ProgressTracker?
    let explicitWindow: Int?
    let windowBytes: Int
    let workers: Int

    private let mutex = PthreadMutex()
    private var sizer: BatchSizer
    private var inFlight = 0
    private var running = 0
    private var ready = Deque<ReadyBatch<R>>()
    private var reorder: [Int: ReadyBatch<R>] = [:]
    private var nextStart = 0
    private var takenItems = 0
    private var readyItems = 0
    private var inputEnd: Int?
    private var terminal: (any Error)?
    private var generation: UInt64 = 0
    private var waiter: CheckedContinuation<Void, Never>?
    /// Bytes per item on the wire (requests and replies), a moving average
    /// over the batches delivered; 0 until one is, or on backends that move
    /// no bytes.
    private var bytesPerItem = 0.0
    /// The caller has gone (a stream left early): the last batch to finish
    /// sends the final progress snapshot.
    private var abandoned = false

    @usableFromInline
    init(ordered: Bool, mode: ErrorMode, eager: Bool, options: MapOptions, workers: Int, inline: Bool, total: Int?) {
        self.ordered = ordered
        self.eager = eager
        self.mode = mode
        self.workers = workers
        explicitWindow = options.window
        windowBytes = options.windowBytes
        var cap = BatchSizer.automaticCap
        if let window = options.window { cap = max(1, window / (inline ? 1 : 2 * workers)) }
        if let total { cap = min(cap, max(1, total / (8 * workers))) }
        if options.timeout != nil { cap = 1 }
        sizer = BatchSizer(fixed: options.timeout != nil ? 1 : options.batchSize, cap: cap)
        progress = options.progress.map {
            ProgressTracker(total: total, interval: options.progressInterval, handler: $0)
        }
        defaultBatches = inline ? 1 : 4 * workers
    }

    /// Batches in flight per operation when no window is given.
    private let defaultBatches: Int

    /// Reserves room for the next batch. Returns how many items to pull (0:
    /// no room, or the operation is over).
    @usableFromInline
    func reserve() -> Int {
        mutex.lock()
        defer { mutex.unlock() }
        guard terminal == nil, inputEnd == nil else { return 0 }
        let (window, size) = windowLocked()
        guard window - inFlight >= min(size, window) else { return 0 }
        let n = min(size, window - inFlight)
        inFlight += n
        return n
    }

    /// The window in items and the batch size: from the options and the
    /// batch sizer, then shrunk so that the items in flight fit in
    /// `windowBytes` (at least one per worker), with batches of at most a
    /// share of it per worker so that every worker gets some.
    private func windowLocked() -> (window: Int, batch: Int) {
        let size = sizer.size
        let window = explicitWindow ?? size * defaultBatches
        guard bytesPerItem > 0 else { return (window, size) }
        let fits = Int(min(Double(windowBytes) / bytesPerItem, Double(Int.max / 2)))
        guard fits < window else { return (window, size) }
        let bounded = max(workers, fits)
        return (bounded, max(1, min(size, bounded / (2 * workers))))
    }

    /// Records a batch of `count` items about to be dispatched, and gives
    /// back room reserved but not used (`unused`); a non-nil `end` marks
    /// the end of the input there.
    @usableFromInline
    func dispatching(count: Int, unused: Int, inputEndsAt end: Int?) {
        mutex.lock()
        inFlight -= unused
        if count > 0 { running += 1 }
        if let end { inputEnd = end }
        mutex.unlock()
        progress?.submitted(count)
        // No wake-up: the driver, the only one who waits, is the caller.
    }

    /// A running batch became `parts` batches (a worker died in the middle
    /// of it, and it was cut around the item that killed it).
    func split(into parts: Int) {
        mutex.lock()
        running += parts - 1
        mutex.unlock()
    }

    /// A worker finished a batch (or the batch was skipped, `output` nil);
    /// `bytes`: its request and reply on the wire, if it crossed one.
    @usableFromInline
    func finish(start: Int, count: Int, output: BatchOutput<R>?, nanos: UInt64, bytes: Int = 0) {
        var failure: ItemFailure?
        mutex.lock()
        running -= 1
        if bytes > 0 && count > 0 {
            let perItem = Double(bytes) / Double(count)
            bytesPerItem = bytesPerItem == 0 ? perItem : 0.75 * bytesPerItem + 0.25 * perItem
        }
        if let output {
            sizer.record(items: count, nanos: nanos)
            if let f = output.failure, mode == .failFast {
                if terminal == nil {
                    terminal = f
                    failure = f
                }
            } else if terminal == nil {
                let batch = ReadyBatch(start: start, count: count, output: output)
                if ordered { reorder[start] = batch } else { ready.append(batch) }
                readyItems += count
            }
        }
        generation &+= 1
        let window = windowLocked().window
        let wake = eager || terminal != nil || running == 0 || readyItems * 4 >= window
        let w = wake ? takeWaiterLocked() : nil
        let last = abandoned && running == 0
        mutex.unlock()
        if let output { progress?.finished(completed: output.succeededCount, failed: output.failedCount) }
        if last { progress?.end() }
        if failure != nil { token.cancel() }
        w?.resume()
    }

    /// Ends the operation with `error` (cancellation, a shut-down pool),
    /// unless it has already ended.
    @usableFromInline
    func fail(_ error: any Error) {
        mutex.lock()
        guard terminal == nil else {
            // Already ending: nothing changes, so waking the caller would
            // only make a cancelled caller spin while batches finish.
            mutex.unlock()
            return
        }
        terminal = error
        generation &+= 1
        let w = takeWaiterLocked()
        mutex.unlock()
        token.cancel()
        w?.resume()
    }

    /// What the driver may do next.
    @usableFromInline
    enum Next {
        case batch(ReadyBatch<R>)
        case failed(any Error)
        case finished
        case wait(UInt64)
    }

    /// Takes the next batch in the operation's order, if one is ready.
    @usableFromInline
    func take() -> Next {
        mutex.lock()
        defer { mutex.unlock() }
        if let terminal { return running == 0 ? .failed(terminal) : .wait(generation) }
        let batch: ReadyBatch<R>?
        if ordered {
            batch = reorder.removeValue(forKey: nextStart)
            if let batch { nextStart += batch.count }
        } else {
            batch = ready.popFirst()
        }
        if let batch {
            takenItems += batch.count
            readyItems -= batch.count
            return .batch(batch)
        }
        if let inputEnd, takenItems >= inputEnd { return .finished }
        return .wait(generation)
    }

    /// Gives back window room for `n` items the caller is done with.
    @usableFromInline
    func release(_ n: Int) {
        mutex.lock()
        inFlight -= n
        mutex.unlock()
    }

    /// Suspends until something changes after `generation`.
    @usableFromInline
    func waitForChange(after seen: UInt64) async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                mutex.lock()
                if generation != seen {
                    mutex.unlock()
                    c.resume()
                    return
                }
                waiter = c
                mutex.unlock()
            }
        } onCancel: {
            fail(CancellationError())
        }
    }

    /// Sends the final progress snapshot.
    @usableFromInline
    func endProgress() { progress?.end() }

    /// The caller left before the end (a stream's loop broke): stops the
    /// operation, and sends the final progress snapshot once nothing of it
    /// runs any more (now, or when its last running batch finishes).
    @usableFromInline
    func abandon() {
        fail(CancellationError())
        mutex.lock()
        abandoned = true
        let idle = running == 0
        mutex.unlock()
        if idle { progress?.end() }
    }

    private func takeWaiterLocked() -> CheckedContinuation<Void, Never>? {
        defer { waiter = nil }
        return waiter
    }
}

/// A finished batch waiting to be handed to the caller.
@usableFromInline
struct ReadyBatch<R: Sendable>: Sendable {
    @usableFromInline let start: Int
    @usableFromInline let count: Int
    @usableFromInline let output: BatchOutput<R>

    @usableFromInline init(start: Int, count: Int, output: BatchOutput<R>) {
        self.start = start
        self.count = count
        self.output = output
    }
}
