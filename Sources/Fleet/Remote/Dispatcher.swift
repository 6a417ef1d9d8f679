import DequeModule

// The remote dispatcher: what happens to work on a pool of remote workers
// (worker processes, MPI ranks), with no I/O.
//
//   transport (threads, pipes, MPI)              Dispatcher (a value, under the transport's lock)
//   ──────────────────────────────               ────────────────────────────────────────────────
//   enqueue / ready / reply / exit / time-up ─▶  mutating func event(…) -> Effects
//   carry out Effects after unlocking       ◀──  flush outbox, kill, cancel, fail, discard, finish
//
// The dispatcher owns the queue, the requests in flight on each worker,
// pipelining, attempts and blame, deadlines, cancellation, the shutdown
// policy and the pool's lifecycle. Requests a worker is given wait in its
// outbox, in the order assigned, until the transport takes them
// (`takeOutbox`) and writes them: whoever writes holds that worker's write
// lock first and takes the outbox under the transport's lock, so requests
// reach each worker in sequence order whichever thread writes them.
//
// Failure semantics (one row per event; PROTOCOL.md has the same table):
//
// | event                                   | blamed                         | attempt counts |
// |-----------------------------------------|--------------------------------|----------------|
// | worker dies while running an item       | that item (batch split round it) | yes          |
// | worker dies with no item running        | the first request it began and |                |
// |   (after a task returned, or while      |   did not answer (the reply    | yes            |
// |   writing a reply of any size)          |   that was lost)               |                |
// | worker dies before beginning any        | nothing: all requeued          | no             |
// | requests it began and finished before   | nothing: requeued at the front | no             |
// |   the one blamed (replies held, lost)   |                                |                |
// | requests it had not begun               | nothing: requeued at the front | no             |
// | a protocol fault (bad frame or reply)   | as for a death; the blamed     | fails at once  |
// |                                         |   request fails, not retried   |                |
// | time-out, replaceable worker            | that request: the worker is    | fails at once  |
// |                                         |   killed, the item timed out   |                |
// | time-out, rank (not replaceable)        | that request fails at once;    | fails at once  |
// |                                         |   the rank takes nothing new   |                |
// |                                         |   until its late reply comes   |                |
// | killRunning shutdown                    | every request in flight fails  | —              |
// |                                         |   with `cancelled`             |                |
// | the pool breaks (start failures, a      | queued (and, on ranks, running)| —              |
// |   lost rank)                            |   work fails with the error    |                |
//
// Every worker death blames at most one request, and exactly one when any
// request it held had begun; an item blamed more than its retries fails.
// So a map over n items ends after at most n × (retries + 1) blamed
// deaths, whatever the tasks do.

/// What the dispatcher needs to know of a job; the transport's jobs and the
/// simulation's stand-ins conform.
protocol DispatchJob {
    var itemCount: Int { get }
    var timeout: Duration? { get }
    /// Retries allowed after a worker dies running it (nil: the pool's).
    var retries: Int? { get }
    /// The index of its first item, for errors (nil: a submitted call).
    var firstIndex: Int? { get }
    /// Bytes of encoded inputs, for pipelining.
    var inputBytes: Int { get }
    /// True when its inputs cost the channel nothing (shared memory).
    var inputsShared: Bool { get }
    /// The operation it belongs to, for cancellation.
    var operation: ObjectIdentifier? { get }
    /// Called as the job is assigned: false if it is no longer wanted.
    func begin() -> Bool
    /// Cuts a batch around the item at `offset`.
    func split(at offset: Int) -> (before: Self?, culprit: Self, after: Self?)
}

/// How a worker ended, as the transport saw it.
struct WorkerDeath {
    var pid: Int32
    var exit: WorkerExit
    /// The last request the worker began (0: none), from its control page.
    var began: UInt64 = 0
    /// The last request it finished.
    var finished: UInt64 = 0
    /// The offset, within `began`, of the item it was running.
    var item: Int = 0
    /// A protocol fault found on its channel (by either side), if any.
    var fault: String?
}

/// What the transport must do after an event, outside its lock.
struct Effects<J: DispatchJob> {
    /// Workers whose outbox holds requests (or a goodbye) to write.
    var flush: [Int] = []
    /// Workers to kill (a time-out, `killRunning`, a protocol fault).
    var kill: [Int] = []
    /// Requests in flight whose operation was cancelled: tell their workers.
    var cancel: [(worker: Int, seq: UInt64)] = []
    /// Jobs that ran (or began) and failed: `fail(error)`.
    var failed: [(job: J, error: FleetError)] = []
    /// Jobs that will never run: `discard(reason)`.
    var discarded: [(job: J, reason: FleetError)] = []
    /// Jobs whose operation was cancelled before they were sent: `skip()`.
    var skipped: [J] = []
    /// Operations whose cancellation must from now on reach their workers.
    var watch: [J] = []
    /// True once: every worker has stopped and the pool is over.
    var finished = false

    mutating func merge(_ other: Effects) {
        flush += other.flush.filter { !flush.contains($0) }
        kill += other.kill
        cancel += other.cancel
        failed += other.failed
        discarded += other.discarded
        skipped += other.skipped
        watch += other.watch
        finished = finished || other.finished
    }
}

/// One request, as written to a worker.
struct Outgoing<J> {
    let seq: UInt64
    let job: J
    /// Tries made before this one (the task sees it as `FleetTask.attempt`).
    let attempt: Int
}

/// The state machine of a pool of remote workers. See the top of this file.
struct Dispatcher<J: DispatchJob> {
    struct Config {
        var workers: Int
        /// Retries of an item whose worker died (a job may override).
        var retries: Int
        /// Replace a worker after it has run this many items.
        var recycleAfter: Int?
        /// True when a worker can be killed and replaced (processes);
        /// false for MPI ranks, which can do neither.
        var replaceable: Bool
        /// True when a request with big inputs may wait behind one other
        /// (MPI: the rank has its next inputs at hand when it finishes).
        var bigMayWaitBehindOne: Bool
    }

    /// Where the pool is in its life.
    enum Lifecycle: Equatable {
        case running
        case shuttingDown(ShutdownPolicy)
        /// New work is refused with the error; workers stop when idle.
        case broken(FleetError)
        /// Every worker has stopped; the error if the pool broke first.
        case terminated(FleetError?)
    }

    /// Where one worker is in its life.
    enum Phase: Equatable {
        /// Being started (spawned, handshake, initializer).
        case starting
        /// Takes work.
        case ready
        /// Runs what it has, then is told to stop (recycling).
        case retiring
        /// Told to stop; waiting for it to go.
        case leaving
        /// Gone, and not to be replaced.
        case stopped
    }

    struct InFlight {
        let seq: UInt64
        let job: J
        let attempt: Int
        /// Monotonic nanoseconds when its time-out expires.
        let deadline: UInt64?
    }

    struct Worker {
        var phase = Phase.starting
        var inFlight: [InFlight] = []
        /// Requests failed by their time-out and still running there
        /// (ranks, which cannot be killed).
        var expired: Set<UInt64> = []
        /// Assigned, not yet taken by the transport.
        var outbox: [Outgoing<J>] = []
        var goodbye = false
        var itemsDone = 0
        /// The request whose time-out killed it.
        var timedOut: UInt64?
        /// Killed by a `killRunning` shutdown.
        var killedByShutdown = false
        /// A fault seen by the driver on its channel.
        var fault: String?
        /// Killed for a fault whose request has failed already: nothing
        /// else it held is to blame.
        var faultSettled = false

        var idle: Bool { inFlight.isEmpty }
    }

    /// Starts in a row that may fail before the pool gives up.
    static var startAttempts: Int { 3 }

    let config: Config
    private(set) var lifecycle = Lifecycle.running
    private(set) var queue = Deque<(job: J, attempt: Int)>()
    private(set) var workers: [Worker]
    private(set) var pipelining = Pipelining()
    private var nextSeq: UInt64 = 1
    private var failedStarts = 0
    private var rotation = 0

    init(_ config: Config) {
        precondition(
            config.replaceable || config.recycleAfter == nil, "a worker that cannot be replaced cannot be recycled")
        self.config = config
        workers = Array(repeating: Worker(), count: config.workers)
    }

    // MARK: Queries

    var readyCount: Int { workers.count { $0.phase == .ready || $0.phase == .retiring } }
    var isTerminated: Bool {
        if case .terminated = lifecycle { return true }
        return false
    }
    var brokenError: FleetError? {
        switch lifecycle {
        case .broken(let error), .terminated(let error?): return error
        default: return nil
        }
    }
    var isShuttingDown: Bool { lifecycle != .running }
    /// True when some worker still runs a request failed by its time-out.
    var hasLingering: Bool { workers.contains { !$0.expired.isEmpty } }
    /// True when work is queued or in flight.
    var isBusy: Bool { !queue.isEmpty || workers.contains { !$0.inFlight.isEmpty } }
    /// The jobs in flight on worker `w`, oldest first.
    func inFlight(_ w: Int) -> [InFlight] { workers[w].inFlight }
    /// Whether worker `w` should be (re)started now.
    var shouldRun: Bool {
        switch lifecycle {
        case .running: return true
        case .shuttingDown: return !queue.isEmpty
        case .broken, .terminated: return false
        }
    }

    // MARK: Events

    /// Queues `job`. With `assign`, gives work at once to workers with
    /// fewer than `Pipelining.eagerDepth` requests (the others are refilled
    /// as their replies come, in one write for many).
    mutating func enqueue(_ job: J, assign: Bool) throws(FleetError) -> Effects<J> {
        switch lifecycle {
        case .running: break
        case .broken(let error), .terminated(let error?): throw error
        case .shuttingDown, .terminated: throw FleetError.poolShutDown
        }
        queue.append((job, 0))
        return assign ? self.assign(upTo: Pipelining.eagerDepth) : Effects()
    }

    /// Gives queued work to every worker with room, one job at a time to
    /// the least loaded (ties going round the workers, so a short queue is
    /// spread out), each up to `upTo` requests in flight or the pipelining
    /// depth.
    mutating func assign(upTo limit: Int = .max) -> Effects<J> {
        var effects = Effects<J>()
        if !queue.isEmpty {
            let n = workers.count
            rotation = (rotation + 1) % max(1, n)
            while let first = queue.first {
                var best: Int?
                for k in 0..<n {
                    let w = (k + rotation) % n
                    guard workers[w].inFlight.count < limit, canTake(first.job, w) else { continue }
                    if best.map({ workers[w].inFlight.count < workers[$0].inFlight.count }) ?? true { best = w }
                }
                guard let w = best else { break }
                give(to: w, &effects)
            }
        }
        sayGoodbyes(&effects)
        return effects
    }

    /// Worker `w` has started and may take work.
    mutating func ready(_ w: Int) -> Effects<J> {
        guard workers[w].phase == .starting else { return Effects() }
        failedStarts = 0
        workers[w].phase = .ready
        var effects = Effects<J>()
        fill(w, &effects)
        sayGoodbyes(&effects)
        return effects
    }

    /// Worker `w` could not be started. A failure that says nothing of the
    /// next try (a crash before the handshake) is tried again, up to
    /// `startAttempts` in a row; any other breaks the pool.
    mutating func startFailed(_ w: Int, _ error: FleetError, retryable: Bool) -> Effects<J> {
        guard shouldRun else {
            workers[w].phase = .stopped
            var effects = Effects<J>()
            finishIfDone(&effects)
            return effects
        }
        failedStarts += 1
        if retryable && failedStarts < Self.startAttempts {
            workers[w].phase = .starting
            return Effects()
        }
        workers[w].phase = .stopped
        var effects = breakPool(
            retryable
                ? .workerStartFailed(
                    "workers failed to start \(Self.startAttempts) times in a row: \(error)") : error,
            failRunning: false)
        finishIfDone(&effects)
        return effects
    }

    /// The answer to what the transport asks when it reads a reply.
    enum Reply {
        /// The job to deliver the reply to.
        case deliver(J, Effects<J>)
        /// A reply to a request already failed by its time-out: drop it.
        case late(Effects<J>)
        /// A reply to a request that is not in flight: a protocol fault.
        case unexpected
    }

    /// A reply to request `seq` came from worker `w`, having taken the
    /// worker `nanos`. With `refill`, the worker is given more work (the
    /// transport passes false while more replies are already at hand, so
    /// it refills once for many).
    mutating func replied(_ w: Int, seq: UInt64, nanos: UInt64, refill: Bool) -> Reply {
        guard let i = workers[w].inFlight.firstIndex(where: { $0.seq == seq }) else {
            if workers[w].expired.remove(seq) != nil {
                var effects = Effects<J>()
                if refill { fill(w, &effects) }
                sayGoodbyes(&effects)
                return .late(effects)
            }
            return .unexpected
        }
        let entry = workers[w].inFlight.remove(at: i)
        pipelining.record(nanos: nanos)
        workers[w].itemsDone += entry.job.itemCount
        if let limit = config.recycleAfter, workers[w].itemsDone >= limit, workers[w].phase == .ready {
            workers[w].phase = .retiring
        }
        var effects = Effects<J>()
        if refill { fill(w, &effects) }
        sayGoodbyes(&effects)
        return .deliver(entry.job, effects)
    }

    /// The driver found a fault on worker `w`'s channel (a bad frame, a bad
    /// reply, the worker's own `fatal` frame): the worker is killed, and
    /// when it has gone, the request blamed fails with the fault. With
    /// `settled`, the request at fault has failed already (a reply that
    /// would not decode), and the rest are put back unblamed.
    mutating func fault(_ w: Int, _ message: String, settled: Bool = false) -> Effects<J> {
        if settled {
            workers[w].faultSettled = true
        } else if workers[w].fault == nil {
            workers[w].fault = message
        }
        var effects = Effects<J>()
        if config.replaceable, workers[w].phase != .stopped { effects.kill.append(w) }
        return effects
    }

    /// Worker `w` has exited (and been reaped): settle what it held, and
    /// say whether to start a replacement (`phase == .starting`).
    mutating func exited(_ w: Int, _ death: WorkerDeath) -> Effects<J> {
        var effects = Effects<J>()
        let worker = workers[w]
        workers[w] = Worker()
        workers[w].phase = .stopped
        let entries = worker.inFlight
        let fault = worker.fault ?? death.fault
        if lifecycle == .shuttingDown(.killRunning) || worker.killedByShutdown {
            for entry in entries { effects.failed.append((entry.job, .cancelled)) }
        } else if !entries.isEmpty {
            settle(entries, worker: worker, death: worker.faultSettled ? nil : death, fault: fault, &effects)
        }
        // Replaced while there is work to do (settling may have put some back).
        if shouldRun && config.replaceable { workers[w].phase = .starting }
        // Work put back may go to the others at once.
        effects.merge(assign(upTo: Pipelining.eagerDepth))
        finishIfDone(&effects)
        return effects
    }

    /// Blames one request of a dead worker's (none without `death`) and
    /// puts the rest back.
    private mutating func settle(
        _ entries: [InFlight], worker: Worker, death: WorkerDeath?, fault: String?,
        _ effects: inout Effects<J>
    ) {
        let began = death.map { death in entries.filter { $0.seq <= death.began } } ?? []
        let running = death.flatMap { death in
            death.began != death.finished ? began.last(where: { $0.seq == death.began }) : nil
        }
        // Nothing running: the first request begun and not answered lost
        // its reply with the worker (or broke the channel), so it is
        // blamed. A fault before any began is blamed on the first sent.
        let culprit = death == nil ? nil : running ?? began.first ?? (fault != nil ? entries.first : nil)
        var requeue: [(job: J, attempt: Int)] = []
        for entry in entries {
            guard entry.seq == culprit?.seq else {
                requeue.append((entry.job, entry.attempt))
                continue
            }
            var blamed = entry.job
            if entry.seq == running?.seq {
                let (before, culpritItem, after) = entry.job.split(at: death?.item ?? 0)
                if let before { requeue.append((before, entry.attempt)) }
                if let after { requeue.append((after, entry.attempt)) }
                blamed = culpritItem
            }
            let attempts = entry.attempt + 1
            if worker.timedOut == entry.seq, let timeout = entry.job.timeout {
                effects.failed.append((blamed, .timedOut(item: blamed.firstIndex, after: timeout)))
            } else if let fault {
                effects.failed.append((blamed, .protocolViolation(fault)))
            } else if attempts <= (blamed.retries ?? config.retries) {
                requeue.append((blamed, attempts))
            } else {
                effects.failed.append(
                    (
                        blamed,
                        .workerDied(
                            item: blamed.firstIndex, pid: death?.pid ?? 0,
                            exit: death?.exit ?? .exited(0), attempts: attempts)
                    ))
            }
        }
        switch lifecycle {
        case .running, .shuttingDown(.drain):
            queue.insert(contentsOf: requeue, at: 0)
        case .shuttingDown:
            for (job, _) in requeue { effects.discarded.append((job, .cancelled)) }
        case .broken(let error), .terminated(let error?):
            for (job, _) in requeue { effects.discarded.append((job, error)) }
        case .terminated(nil):
            for (job, _) in requeue { effects.discarded.append((job, .poolShutDown)) }
        }
    }

    /// Request `seq` on worker `w` has run past its time-out.
    mutating func timeUp(_ w: Int, seq: UInt64) -> Effects<J> {
        var effects = Effects<J>()
        guard let i = workers[w].inFlight.firstIndex(where: { $0.seq == seq }) else { return effects }
        if config.replaceable {
            workers[w].timedOut = seq
            effects.kill.append(w)
        } else {
            let entry = workers[w].inFlight.remove(at: i)
            workers[w].expired.insert(seq)
            effects.cancel.append((w, seq))
            effects.failed.append((entry.job, .timedOut(item: entry.job.firstIndex, after: entry.job.timeout ?? .zero)))
            sayGoodbyes(&effects)
        }
        return effects
    }

    /// The requests whose deadline has passed at `now`.
    func overdue(now: UInt64) -> [(worker: Int, seq: UInt64)] {
        var due: [(Int, UInt64)] = []
        for (w, worker) in workers.enumerated() {
            for entry in worker.inFlight where entry.deadline.map({ $0 <= now }) ?? false { due.append((w, entry.seq)) }
        }
        return due
    }

    /// The requests in flight of `operation`, to be told they are cancelled.
    func requests(of operation: ObjectIdentifier) -> [(worker: Int, seq: UInt64)] {
        var found: [(Int, UInt64)] = []
        for (w, worker) in workers.enumerated() {
            for entry in worker.inFlight where entry.job.operation == operation { found.append((w, entry.seq)) }
        }
        return found
    }

    /// Begins shutdown with `policy` (a later, stronger policy takes over).
    mutating func shutdown(_ policy: ShutdownPolicy) -> Effects<J> {
        var effects = Effects<J>()
        switch lifecycle {
        case .running:
            lifecycle = .shuttingDown(policy)
        case .shuttingDown(let current) where policy.strength > current.strength:
            lifecycle = .shuttingDown(policy)
        default:
            break
        }
        if policy.dropsQueued {
            for (job, _) in queue { effects.discarded.append((job, .cancelled)) }
            queue.removeAll()
        }
        if policy == .killRunning {
            for w in workers.indices where !workers[w].inFlight.isEmpty {
                if config.replaceable {
                    workers[w].killedByShutdown = true
                    effects.kill.append(w)
                } else {
                    // A rank cannot be killed: its work fails here and is
                    // cancelled there; it takes nothing new until it returns.
                    for entry in workers[w].inFlight {
                        effects.discarded.append((entry.job, .cancelled))
                        workers[w].expired.insert(entry.seq)
                        effects.cancel.append((w, entry.seq))
                    }
                    workers[w].inFlight = []
                }
            }
        }
        sayGoodbyes(&effects)
        finishIfDone(&effects)
        return effects
    }

    /// The pool cannot go on: fail what is queued (and, with `failRunning`,
    /// what is in flight, and stop every worker), refuse new work.
    mutating func breakPool(_ error: FleetError, failRunning: Bool) -> Effects<J> {
        var effects = Effects<J>()
        switch lifecycle {
        case .broken, .terminated: return effects
        case .running, .shuttingDown: lifecycle = .broken(error)
        }
        for (job, _) in queue { effects.discarded.append((job, error)) }
        queue.removeAll()
        if failRunning {
            for w in workers.indices {
                for entry in workers[w].inFlight { effects.failed.append((entry.job, error)) }
                workers[w].inFlight = []
                workers[w].outbox = []
                workers[w].phase = .stopped
            }
        }
        sayGoodbyes(&effects)
        finishIfDone(&effects)
        return effects
    }

    /// A worker that was told to stop (`leaving`) and cannot be watched
    /// until it exits (an MPI rank) counts as stopped once its goodbye is
    /// written.
    mutating func left(_ w: Int) -> Effects<J> {
        var effects = Effects<J>()
        if workers[w].phase == .leaving { workers[w].phase = .stopped }
        finishIfDone(&effects)
        return effects
    }

    /// Takes what worker `w` was given, in order, for the transport to write.
    mutating func takeOutbox(_ w: Int) -> (requests: [Outgoing<J>], goodbye: Bool) {
        let taken = (workers[w].outbox, workers[w].goodbye)
        workers[w].outbox = []
        workers[w].goodbye = false
        return taken
    }

    /// Takes every worker's outbox that holds something.
    mutating func takeOutboxes() -> [(worker: Int, requests: [Outgoing<J>], goodbye: Bool)] {
        var taken: [(worker: Int, requests: [Outgoing<J>], goodbye: Bool)] = []
        for w in workers.indices where !workers[w].outbox.isEmpty || workers[w].goodbye {
            let (requests, goodbye) = takeOutbox(w)
            taken.append((w, requests, goodbye))
        }
        return taken
    }

    // MARK: Assignment

    private func canTake(_ job: J, _ w: Int) -> Bool {
        let worker = workers[w]
        guard worker.phase == .ready, worker.expired.isEmpty, worker.fault == nil, !worker.faultSettled,
            worker.timedOut == nil, !worker.killedByShutdown
        else { return false }
        guard let last = worker.inFlight.last?.job else { return true }
        if let limit = config.recycleAfter {
            // Send no more than the worker will run before it is replaced.
            let promised = worker.itemsDone + worker.inFlight.reduce(0) { $0 + $1.job.itemCount }
            if promised + job.itemCount > limit { return false }
        }
        let bigAllowed = job.inputsShared || (config.bigMayWaitBehindOne && worker.inFlight.count < 2)
        return pipelining.admits(
            inputBytes: job.inputBytes, timeout: job.timeout, inFlight: worker.inFlight.count,
            lastTimeout: last.timeout, bigAllowed: bigAllowed)
    }

    /// Gives worker `w` as much queued work as it can take.
    private mutating func fill(_ w: Int, _ effects: inout Effects<J>) {
        while let first = queue.first, canTake(first.job, w) { give(to: w, &effects) }
    }

    /// Gives the first queued job to worker `w`.
    private mutating func give(to w: Int, _ effects: inout Effects<J>) {
        let (job, attempt) = queue.removeFirst()
        guard job.begin() else {
            effects.skipped.append(job)
            return
        }
        let seq = nextSeq
        nextSeq += 1
        let deadline = job.timeout.map { monotonicNanos() &+ $0.nanoseconds }
        workers[w].inFlight.append(InFlight(seq: seq, job: job, attempt: attempt, deadline: deadline))
        workers[w].outbox.append(Outgoing(seq: seq, job: job, attempt: attempt))
        if job.operation != nil { effects.watch.append(job) }
        if !effects.flush.contains(w) { effects.flush.append(w) }
    }

    /// Tells each idle worker that should stop to stop.
    private mutating func sayGoodbyes(_ effects: inout Effects<J>) {
        let stopping = lifecycle != .running && queue.isEmpty
        let killing = lifecycle == .shuttingDown(.killRunning)
        for w in workers.indices {
            let worker = workers[w]
            guard worker.phase == .ready || worker.phase == .retiring, worker.inFlight.isEmpty,
                worker.expired.isEmpty || killing
            else { continue }
            guard stopping || worker.phase == .retiring else { continue }
            workers[w].phase = .leaving
            workers[w].goodbye = true
            if !effects.flush.contains(w) { effects.flush.append(w) }
        }
    }

    /// Ends the pool once shutdown or breakage has stopped every worker.
    private mutating func finishIfDone(_ effects: inout Effects<J>) {
        guard workers.allSatisfy({ $0.phase == .stopped }) else { return }
        switch lifecycle {
        case .running, .terminated: return
        case .shuttingDown: lifecycle = .terminated(nil)
        case .broken(let error): lifecycle = .terminated(error)
        }
        effects.finished = true
    }
}

extension ShutdownPolicy {
    /// drain < cancelPending < killRunning.
    var strength: Int {
        switch self {
        case .drain: return 0
        case .cancelPending: return 1
        case .killRunning: return 2
        }
    }
}
