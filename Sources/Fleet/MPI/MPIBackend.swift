#if MPI
internal import CMPI
import DequeModule
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// MPI executor, rank 0 (the driver): data flow
//
//  caller's threads                       the fleet-mpi-driver thread (all MPI calls)
//  ────────────────                       ───────────────────────────────────────────
//  submit / map batch ─▶ encode inputs ─▶ queue ─▶ frames message ─▶ Isend ─▶ rank r
//                                                  (big inputs: messages of their own,
//                                                   sent from the caller's arrays)
//  futures / MapCore ◀── deliver ◀── reply frames ◀── Improbe/Mrecv ◀──────── rank r
//                                     heartbeats both ways; deadlines; lost ranks
//
// This file is the transport: MPI messages, heartbeats, lost ranks. What
// happens to work (the queue, pipelining, time-outs, shutdown) is decided
// by the `Dispatcher` (Remote/Dispatcher.swift), the same one the
// processes backend uses, under `box.mutex`. Jobs are encoded once, on the
// thread that queues them; big arrays in their inputs are referenced, not
// copied. The driver thread assigns work each round, sends each rank what
// it was given in one message, and polls for replies with a short spin,
// then yields, then naps. Every send is non-blocking, so a rank sending a
// big reply while the driver sends it big inputs cannot deadlock.
//
// MPI cannot replace a rank, so failures end the job rather than retry: a
// rank silent for `heartbeatTimeout` is lost; its work and everything
// queued fail with `FleetError.rankLost`, and after `lostRankGrace` the job
// is aborted. A rank that dies outright is noticed sooner by `mpirun`,
// which ends the job. A time-out fails the item at once and cancels it on
// its rank; the rank takes no new work until the item returns.

/// Runs remote tasks on the ranks 1 ..< size of an MPI job. See `Pool.mpi`.
final class MPIBackend: DispatchingBackend, @unchecked Sendable {
    // Safe: `hosts`, `cancels` and `driverDone` are guarded by `box.mutex`,
    // like the dispatcher; those marked "driver thread" are used by the
    // driver thread alone.
    let kind = BackendKind.mpi
    let workerCount: Int
    var runsInline: Bool { false }
    let registry: Registry
    let context: RemoteContext
    let options: MPIOptions
    let world: Communicator
    let comm: MPI_Comm

    let box: DispatchBox
    /// Each rank's host, from its hello.
    private var hosts: [String]
    /// Requests whose operation was cancelled, to tell their ranks.
    private var cancels: [(worker: Int, seq: UInt64)] = []
    /// True once the driver thread has ended.
    private var driverDone = false
    private let startDeadline: UInt64

    // Driver thread.
    private var sends = PendingSends()
    private let inbox = WireBuffer(capacity: 1 << 16)
    /// Heartbeats taken while a big message arrives.
    private let controlInbox = WireBuffer(capacity: 64)
    private var nextBeat: UInt64 = 0
    private var nextTick: UInt64 = 0
    private var lastHeard: [UInt64]

    /// How often the driver thread checks heartbeats and deadlines.
    private static let tickNanos: UInt64 = 5_000_000
    /// Messages up to this size are received with a plain blocking call:
    /// they travel eagerly, so they are there in full once matched.
    private static let blockingReceiveBytes = 4 << 10
    /// How long the driver waits for its goodbyes to leave at the end.
    private static let goodbyeNanos: UInt64 = 5_000_000_000

    init(world: Communicator, comm: MPI_Comm, registry: Registry, options: MPIOptions) {
        self.world = world
        self.comm = comm
        self.registry = registry
        self.options = options
        workerCount = world.size - 1
        // Big inputs are sent from the caller's own arrays (see `send`).
        context = RemoteContext(registry: registry, arena: nil, referencesBigArrays: true)
        box = DispatchBox(
            .init(
                workers: workerCount, retries: 0, recycleAfter: nil, replaceable: false,
                bigMayWaitBehindOne: true))
        hosts = Array(repeating: "?", count: workerCount)
        let now = monotonicNanos()
        startDeadline = now &+ options.startTimeout.nanoseconds
        lastHeard = Array(repeating: now, count: workerCount)
        spawnThread(name: "fleet-mpi-driver") { [self] in drive() }
    }

    /// Rank numbers are worker indices + 1.
    private func worker(ofRank rank: Int) -> Int? { rank >= 1 && rank <= workerCount ? rank - 1 : nil }

    // MARK: Events in

    func enqueue(_ job: any Job) throws {
        let remote = try remoteJob(job, place: "on MPI ranks")
        try box.withState { state in
            _ = try state.enqueue(RemoteWork(job: remote), assign: false)
            box.changed.signal()
        }
    }

    private func cancelRunning(_ token: CancellationToken) {
        box.withState { state in
            cancels += state.requests(of: ObjectIdentifier(token))
            box.changed.signal()
        }
    }

    // MARK: The driver thread

    private func drive() {
        var backoff = Backoff()
        while true {
            var progressed = false
            do {
                progressed = try receiveAll()
                progressed = try dispatch() || progressed
                progressed = try sends.progress() || progressed
                try tickIfDue()
            } catch let error as FleetError {
                fail(error)
            } catch {
                fail(.protocolViolation("\(error)"))
            }
            box.mutex.lock()
            // Every rank has been told to stop (or the job is broken).
            if box.locked.isTerminated {
                box.mutex.unlock()
                break
            }
            let busy = box.locked.isBusy || !cancels.isEmpty
            if progressed {
                box.mutex.unlock()
                backoff.reset()
            } else if !busy && box.locked.readyCount == workerCount {
                // Idle: sleep until work comes or the next heartbeat is due.
                box.changed.wait(box.mutex, untilNanos: min(nextTick, nextBeat))
                box.mutex.unlock()
                backoff.reset()
            } else {
                box.mutex.unlock()
                backoff.pause()
            }
        }
        end()
    }

    /// Takes every message that has arrived (up to a bound per round).
    private func receiveAll() throws -> Bool {
        var count = 0
        while count < 64, let arrival = try world.poll(source: cmpi_any_source(), tag: cmpi_any_tag(), on: comm) {
            count += 1
            guard let w = worker(ofRank: arrival.source) else {
                throw FleetError.protocolViolation("a message from rank \(arrival.source)")
            }
            lastHeard[w] = monotonicNanos()
            inbox.removeAll()
            // A small message is whole once matched; a big one may be cut
            // off on its way, so it is received without blocking.
            if arrival.bytes > Self.blockingReceiveBytes {
                try world.receive(arrival, into: inbox, on: comm) { try self.keepWatching() }
            } else {
                try world.receive(arrival, into: inbox, on: comm)
            }
            if arrival.tag == ExecutorTag.frames { try readFrames(from: w) }
        }
        return count > 0
    }

    /// While a big message arrives: heartbeats, time-outs and lost-rank
    /// checks go on, and the ranks' heartbeats are taken as they come, so
    /// a message cut off with its sender's host neither stops the job's
    /// heartbeats nor hides which rank was lost.
    private func keepWatching() throws {
        _ = try sends.progress()
        while let beat = try world.poll(source: cmpi_any_source(), tag: ExecutorTag.control, on: comm) {
            if let w = worker(ofRank: beat.source) { lastHeard[w] = monotonicNanos() }
            controlInbox.removeAll()
            try world.receive(beat, into: controlInbox, on: comm)
        }
        try tickIfDue()
    }

    /// Heartbeats, time-outs, lost ranks and the start deadline, every
    /// `tickNanos`.
    private func tickIfDue() throws {
        let now = monotonicNanos()
        guard now >= nextTick else { return }
        nextTick = now &+ Self.tickNanos
        try tick(now)
    }

    private func readFrames(from w: Int) throws {
        let bytes = inbox.bytes
        var at = 0
        while at < bytes.count {
            let header = try FrameHeader.parse(
                UnsafeRawBufferPointer(rebasing: bytes[at...]), maxLength: Int(UInt32.max))
            let end = at + FrameHeader.size + Int(header.length)
            guard end <= bytes.count else {
                throw FleetError.protocolViolation("\(name(w)): a frame runs past the end of its message")
            }
            var body = WireReader(UnsafeRawBufferPointer(rebasing: bytes[(at + FrameHeader.size)..<end]))
            at = end
            switch header.kind {
            case .hello: try hello(w, &body)
            case .reply: try reply(w, header.seq, &body)
            case .fatal:
                let message = (try? body.readString()) ?? "unreadable message"
                throw FleetError.protocolViolation("\(name(w)): \(message)")
            default:
                throw FleetError.protocolViolation("\(name(w)) sent a \(header.kind) frame")
            }
        }
    }

    private func name(_ w: Int) -> String { "rank \(w + 1) on \(box.withState { _ in hosts[w] })" }

    private func hello(_ w: Int, _ body: inout WireReader) throws {
        let hello: Hello
        do { hello = try Hello(&body, withHost: true) } catch {
            throw FleetError.workerStartFailed("unreadable hello from rank \(w + 1): \(error)")
        }
        box.withState { _ in hosts[w] = hello.host ?? "?" }
        try hello.check(against: registry, who: name(w))
        // Tell the rank how often to expect word from here.
        try sendControl(
            [
                ControlWord.configure.rawValue, options.heartbeatInterval.nanoseconds,
                options.heartbeatTimeout.nanoseconds,
            ], to: w)
        carryOut(
            box.withState { state in
                box.changed.broadcast()
                return state.ready(w)
            })
    }

    private func reply(_ w: Int, _ seq: UInt64, _ body: inout WireReader) throws {
        let nanos = try body.read(UInt64.self)
        switch box.withState({ $0.replied(w, seq: seq, nanos: nanos, refill: false) }) {
        case .deliver(let work, let effects):
            carryOut(effects)
            do {
                try work.job.deliver(&body, nanos: nanos)
            } catch {
                work.job.fail(FleetError.protocolViolation("bad reply from \(name(w)): \(error)"))
                throw FleetError.protocolViolation("bad reply from \(name(w)): \(error)")
            }
        case .late(let effects):
            carryOut(effects)  // its time-out has failed it already
        case .unexpected:
            throw FleetError.protocolViolation("\(name(w)) answered request \(seq), which is not in flight")
        }
    }

    /// Gives queued jobs to ranks with room and sends each rank what it
    /// was given in one message; sends pending cancellations.
    private func dispatch() throws -> Bool {
        let (effects, cancelNow, outboxes) = box.withState { state in
            defer { cancels = [] }
            let effects = state.assign()
            // Whatever any event gave a rank since the last round.
            return (effects, cancels, state.takeOutboxes())
        }
        complete(effects)  // its sends are made here
        for (w, seq) in cancelNow + effects.cancel { try sendControl([ControlWord.cancel.rawValue, seq], to: w) }
        var sent = false
        for (w, requests, goodbye) in outboxes {
            try send(requests, goodbye: goodbye, to: w)
            sent = true
        }
        return sent || !effects.skipped.isEmpty || !cancelNow.isEmpty
    }

    /// Runs what the dispatcher decided that needs no MPI call (driver or
    /// caller thread alike): completions, cancellation forwarding; MPI
    /// sends are queued for the driver thread.
    func carryOut(_ effects: Effects<RemoteWork>) {
        if !effects.cancel.isEmpty || !effects.flush.isEmpty {
            // The driver thread sends them on its next round.
            box.withState { _ in
                cancels += effects.cancel
                box.changed.signal()
            }
        }
        complete(effects)
    }

    /// Carries out what needs no MPI call: completions and cancellation
    /// forwarding (any thread).
    private func complete(_ effects: Effects<RemoteWork>) {
        for work in effects.skipped { work.job.skip() }
        if !effects.watch.isEmpty { watchCancellation(effects) { [weak self] in self?.cancelRunning($0) } }
        for (work, error) in effects.failed { work.job.fail(error) }
        for (work, reason) in effects.discarded { work.job.discard(reason) }
        if effects.finished { box.terminated() }
    }

    /// Sends rank `w` the requests (and goodbye) it was given, in one
    /// message; big inputs follow in messages of their own.
    private func send(_ requests: [Outgoing<RemoteWork>], goodbye: Bool, to w: Int) throws {
        let out = WireBuffer(capacity: 256)
        var big: [any RemoteJob] = []
        for request in requests {
            let payload = request.job.job.payload
            let separate = payload.totalCount > Pipelining.smallPayload || payload.hasExternals
            appendRequestHead(request, inputBytes: separate ? 8 : payload.count, shared: separate, to: out)
            if separate {
                out.append(UInt64(payload.totalCount))
                big.append(request.job.job)
            } else {
                out.append(payload.bytes)
            }
        }
        if goodbye { try? appendFrame(.shutdown, seq: 0, to: out) { _ in } }
        guard out.count > 0 else { return }
        try sendBuffer(out, to: w, tag: ExecutorTag.frames)
        for job in big { try sendBuffer(job.payload, to: w, tag: ExecutorTag.payload) }
        if goodbye { carryOut(box.withState { $0.left(w) }) }
    }

    /// Sends `buffer` as one message per run of bytes: its own, and the
    /// arrays it references, each from where it is (no copy; contiguous
    /// memory, so MPI can move it in a single copy). The receiver knows
    /// the total and takes messages until it has it all.
    private func sendBuffer(_ buffer: WireBuffer, to w: Int, tag: Int32) throws {
        do {
            try buffer.forEachSegment { piece in
                guard piece.count > 0 else { return }
                try sends.send(
                    piece.baseAddress, count: piece.count, owner: buffer, to: w + 1, tag: tag, on: comm,
                    limit: world.chunkElements(1))
            }
        } catch {
            throw lost(w, "sending to it failed: \(error)")
        }
    }

    private func sendControl(_ words: [UInt64], to w: Int) throws {
        let message = ControlMessage(words)
        try message.words.withUnsafeBytes { raw in
            do {
                try sends.send(
                    raw.baseAddress, count: raw.count, owner: message, to: w + 1, tag: ExecutorTag.control,
                    on: comm, limit: world.chunkElements(1))
            } catch {
                throw lost(w, "sending to it failed: \(error)")
            }
        }
    }

    /// Heartbeats, time-outs, lost ranks, the start deadline.
    private func tick(_ now: UInt64) throws {
        if now >= nextBeat {
            let serving = box.withState { $0.workers.map { $0.phase == .ready || $0.phase == .retiring } }
            for w in 0..<workerCount where serving[w] { try sendControl([ControlWord.heartbeat.rawValue], to: w) }
            nextBeat = now &+ options.heartbeatInterval.nanoseconds
        }
        let (effects, phases) = box.withState { state in
            var effects = Effects<RemoteWork>()
            for (w, seq) in state.overdue(now: now) { effects.merge(state.timeUp(w, seq: seq)) }
            return (effects, state.workers.map(\.phase))
        }
        carryOut(effects)
        for w in 0..<workerCount {
            let quiet = now &- lastHeard[w]
            if phases[w] == .ready || phases[w] == .retiring {
                if quiet > options.heartbeatTimeout.nanoseconds {
                    throw lost(
                        w,
                        "nothing heard from it for \(quiet / 1_000_000) ms (heartbeat time-out \(options.heartbeatTimeout))"
                    )
                }
            } else if phases[w] == .starting && now > startDeadline {
                throw FleetError.workerStartFailed(
                    "rank \(w + 1) did not reach Pool.mpi within \(options.startTimeout)")
            }
        }
    }

    private func lost(_ w: Int, _ why: String) -> FleetError {
        box.withState { state in
            let item = state.inFlight(w).lazy.compactMap(\.job.firstIndex).first
            return FleetError.rankLost(rank: w + 1, host: hosts[w], item: item, why: why)
        }
    }

    /// The job cannot go on: fail everything, and end the job after the
    /// grace period.
    private func fail(_ error: FleetError) {
        let effects = box.withState { state in
            box.changed.broadcast()
            return state.breakPool(error, failRunning: true)
        }
        writeStderr("fleet: \(error)\n")
        carryOut(effects)
        if case .rankLost = error {
            let grace = options.lostRankGrace
            spawnThread(name: "fleet-mpi-grace") {
                usleep(UInt32(min(grace.nanoseconds / 1_000, UInt64(UInt32.max))))
                MPIRuntime.shared.abort("ending the MPI job: \(error)", code: 1)
            }
        }
    }

    /// The driver thread's last act: lets the goodbyes leave, then makes
    /// sure the termination callbacks have run.
    private func end() {
        let deadline = monotonicNanos() &+ Self.goodbyeNanos
        var backoff = Backoff()
        while !sends.isEmpty && monotonicNanos() < deadline {
            if (try? sends.progress()) != true { backoff.pause() }
        }
        box.withState { _ in driverDone = true }
        box.terminated()
    }

    // MARK: Readiness, the end of the job

    /// Blocks until every rank has answered, or throws why not.
    func waitUntilReady() throws {
        box.mutex.lock()
        defer { box.mutex.unlock() }
        while box.locked.readyCount < workerCount && box.locked.brokenError == nil && !driverDone {
            box.changed.wait(box.mutex)
        }
        if let broken = box.locked.brokenError { throw broken }
    }

    /// At the end of the program: stops the ranks and says whether MPI can
    /// be finalized (false: a rank is lost or still busy, so the job must
    /// be aborted instead).
    func finishJob() -> Bool {
        beginShutdown(.cancelPending)
        box.mutex.lock()
        defer { box.mutex.unlock() }
        let deadline = monotonicNanos() &+ Self.goodbyeNanos
        while !driverDone && monotonicNanos() < deadline { box.changed.wait(box.mutex, untilNanos: deadline) }
        return driverDone && box.locked.brokenError == nil && !box.locked.hasLingering
    }
}
#endif
