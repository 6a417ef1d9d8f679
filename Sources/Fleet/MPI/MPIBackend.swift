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
// Jobs are encoded once, on the thread that queues them; big arrays in
// their inputs are referenced, not copied. The driver thread gives each
// rank up to a few requests at a time (32 when they are quick, 2 when they
// are slow or big; those with a time-out only to an idle rank), in one
// message per rank per round, and polls for replies with a short spin,
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
final class MPIBackend: RemoteBackend, @unchecked Sendable {
    // Safe: every `var` shared with callers is guarded by `mutex`; those
    // marked "driver thread" are used by the driver thread alone.
    let kind = BackendKind.mpi
    let workerCount: Int
    var runsInline: Bool { false }
    let registry: Registry
    let context: RemoteContext
    let options: MPIOptions
    let world: Communicator
    let comm: MPI_Comm

    private final class Rank: @unchecked Sendable {
        // Safe: guarded by the backend's `mutex`, except `lastHeard`
        // (driver thread).
        let number: Int
        var host = "?"
        var ready = false
        var inFlight: [InFlight] = []
        /// Requests failed by their time-out and still running there.
        var expired: Set<UInt64> = []
        var lastHeard: UInt64
        init(number: Int, now: UInt64) {
            self.number = number
            lastHeard = now
        }
    }

    private struct InFlight {
        let seq: UInt64
        let job: any RemoteJob
        let deadline: UInt64?
    }

    private let mutex = PthreadMutex()
    private let wake = PthreadCondition()
    private var queue = Deque<any RemoteJob>()
    private var ranks: [Rank]
    private var policy: ShutdownPolicy?
    private var broken: FleetError?
    private var finished = false
    private var callbacks: [@Sendable () -> Void] = []
    private var cancels: [(rank: Int, seq: UInt64)] = []
    private var nextSeq: UInt64 = 1
    private var rotation = 0
    private var pipelining = Pipelining()
    private let startDeadline: UInt64

    // Driver thread.
    private var sends = PendingSends()
    private let inbox = WireBuffer(capacity: 1 << 16)
    private var nextBeat: UInt64 = 0

    init(world: Communicator, comm: MPI_Comm, registry: Registry, options: MPIOptions) {
        self.world = world
        self.comm = comm
        self.registry = registry
        self.options = options
        workerCount = world.size - 1
        // Big inputs are sent from the caller's own arrays (see `send`).
        context = RemoteContext(registry: registry, arena: nil, referencesBigArrays: true)
        let now = monotonicNanos()
        startDeadline = now &+ options.startTimeout.nanoseconds
        ranks = (1..<world.size).map { Rank(number: $0, now: now) }
        spawnThread(name: "fleet-mpi-driver") { [self] in drive() }
    }

    private func rank(_ number: Int) -> Rank? { number >= 1 && number <= ranks.count ? ranks[number - 1] : nil }

    // MARK: Queueing

    func enqueue(_ job: any Job) throws {
        let remote = try remoteJob(job, place: "on MPI ranks")
        mutex.lock()
        defer { mutex.unlock() }
        if policy != nil { throw FleetError.poolShutDown }
        if let broken { throw broken }
        queue.append(remote)
        wake.signal()
    }

    private func cancelRunning(_ token: CancellationToken) {
        mutex.lock()
        defer { mutex.unlock() }
        for r in ranks {
            for entry in r.inFlight where entry.job.token === token { cancels.append((r.number, entry.seq)) }
        }
        wake.signal()
    }

    // MARK: The driver thread

    private func drive() {
        var backoff = Backoff()
        var nextTick: UInt64 = 0
        while true {
            var progressed = false
            do {
                progressed = try receiveAll()
                progressed = try dispatch() || progressed
                progressed = try sends.progress() || progressed
                let now = monotonicNanos()
                if now >= nextTick {
                    try tick(now)
                    nextTick = now &+ 5_000_000
                }
            } catch let error as FleetError {
                fail(error)
            } catch {
                fail(.protocolViolation("\(error)"))
            }
            mutex.lock()
            let busy = ranks.contains { !$0.inFlight.isEmpty } || !queue.isEmpty || !cancels.isEmpty
            // Timed-out tasks still running on their ranks are waited for,
            // so the ranks can stop cleanly, unless the shutdown kills them.
            let lingering = policy != .killRunning && ranks.contains { !$0.expired.isEmpty }
            if broken != nil || (policy != nil && !busy && !lingering) {
                mutex.unlock()
                break
            }
            if progressed {
                mutex.unlock()
                backoff.reset()
            } else if !busy && ranks.allSatisfy(\.ready) {
                // Idle: sleep until work comes or the next heartbeat is due.
                wake.wait(mutex, untilNanos: min(nextTick, nextBeat))
                mutex.unlock()
                backoff.reset()
            } else {
                mutex.unlock()
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
            guard let r = rank(arrival.source) else { throw FleetError.protocolViolation("a message from rank \(arrival.source)") }
            r.lastHeard = monotonicNanos()
            inbox.removeAll()
            try world.receive(arrival, into: inbox, on: comm)
            if arrival.tag == ExecutorTag.frames { try readFrames(from: r) }
        }
        return count > 0
    }

    private func readFrames(from r: Rank) throws {
        let bytes = inbox.bytes
        var at = 0
        while at < bytes.count {
            let header = try FrameHeader.parse(UnsafeRawBufferPointer(rebasing: bytes[at...]), maxLength: Int(UInt32.max))
            let end = at + FrameHeader.size + Int(header.length)
            guard end <= bytes.count else {
                throw FleetError.protocolViolation("rank \(r.number): a frame runs past the end of its message")
            }
            var body = WireReader(UnsafeRawBufferPointer(rebasing: bytes[(at + FrameHeader.size)..<end]))
            at = end
            switch header.kind {
            case .hello: try hello(r, &body)
            case .reply: try reply(r, header.seq, &body)
            case .fatal:
                let message = (try? body.readString()) ?? "unreadable message"
                throw FleetError.protocolViolation("rank \(r.number) on \(r.host): \(message)")
            default:
                throw FleetError.protocolViolation("rank \(r.number) sent a \(header.kind) frame")
            }
        }
    }

    private func hello(_ r: Rank, _ body: inout WireReader) throws {
        do {
            let version = try body.read(UInt16.self)
            _ = try body.read(Int32.self)
            let fingerprint = try body.read(UInt64.self)
            let n = try body.readCount(minBytes: 4)
            var signatures: [String] = []
            for _ in 0..<n { signatures.append(try body.readString()) }
            let host = try body.readString()
            mutex.withLock { r.host = host }
            guard version == wireProtocolVersion else {
                throw FleetError.workerStartFailed(
                    "rank \(r.number) on \(host) speaks protocol version \(version), the driver \(wireProtocolVersion)")
            }
            guard fingerprint == registry.fingerprint else {
                throw FleetError.workerStartFailed(
                    "rank \(r.number) on \(host) runs a program built from different code: \(registry.difference(from: signatures))")
            }
        } catch let error as FleetError {
            throw error
        } catch {
            throw FleetError.workerStartFailed("unreadable hello from rank \(r.number): \(error)")
        }
        // Tell the rank how often to expect word from here.
        try sendControl([ControlWord.configure.rawValue, options.heartbeatInterval.nanoseconds,
                         options.heartbeatTimeout.nanoseconds], to: r.number)
        mutex.withLock {
            r.ready = true
            wake.broadcast()
        }
    }

    private func reply(_ r: Rank, _ seq: UInt64, _ body: inout WireReader) throws {
        mutex.lock()
        guard let i = r.inFlight.firstIndex(where: { $0.seq == seq }) else {
            let late = r.expired.remove(seq) != nil
            mutex.unlock()
            if late { return }  // its time-out has failed it already
            throw FleetError.protocolViolation("rank \(r.number) answered request \(seq), which is not in flight")
        }
        let entry = r.inFlight.remove(at: i)
        mutex.unlock()
        let nanos = try body.read(UInt64.self)
        do {
            try entry.job.deliver(&body, nanos: nanos)
        } catch {
            entry.job.fail(FleetError.protocolViolation("bad reply from rank \(r.number): \(error)"))
            throw FleetError.protocolViolation("bad reply from rank \(r.number) on \(r.host): \(error)")
        }
        mutex.withLock { pipelining.record(nanos: nanos) }
    }

    /// Gives queued jobs to ranks with room, least loaded first, one
    /// message of frames per rank; sends pending cancellations.
    private func dispatch() throws -> Bool {
        mutex.lock()
        let cancelNow = cancels
        cancels = []
        var plan: [(Rank, [(UInt64, any RemoteJob)])] = []
        var skipped: [any RemoteJob] = []
        var watch: [CancellationToken] = []
        if !queue.isEmpty {
            // One job at a time to the least loaded rank that can take it,
            // ties going round the ranks, so a short queue is spread out.
            var batches: [Int: [(UInt64, any RemoteJob)]] = [:]
            let open = ranks.filter { $0.ready && $0.expired.isEmpty }
            rotation = (rotation + 1) % max(1, open.count)
            while let job = queue.first {
                var best: Rank?
                for k in open.indices {
                    let r = open[(k + rotation) % open.count]
                    if canTake(job, r), best.map({ r.inFlight.count < $0.inFlight.count }) ?? true { best = r }
                }
                guard let r = best else { break }
                queue.removeFirst()
                guard job.begin() else {
                    skipped.append(job)
                    continue
                }
                let seq = nextSeq
                nextSeq += 1
                let deadline = job.timeout.map { monotonicNanos() &+ $0.nanoseconds }
                r.inFlight.append(InFlight(seq: seq, job: job, deadline: deadline))
                batches[r.number, default: []].append((seq, job))
                if let token = job.token, token.startForwarding() { watch.append(token) }
            }
            plan = batches.sorted { $0.key < $1.key }.map { (rank($0.key)!, $0.value) }
        }
        mutex.unlock()
        for token in watch { token.onCancel { [weak self] in self?.cancelRunning(token) } }
        for job in skipped { job.skip() }
        for (r, seq) in cancelNow { try sendControl([ControlWord.cancel.rawValue, seq], to: r) }
        for (r, batch) in plan { try send(batch, to: r.number) }
        return !plan.isEmpty || !skipped.isEmpty || !cancelNow.isEmpty
    }

    private func canTake(_ job: any RemoteJob, _ r: Rank) -> Bool {
        // A big request may wait behind one other, so the rank has its
        // next inputs at hand when it finishes (two at most: memory).
        pipelining.admits(job, inFlight: r.inFlight.count, last: r.inFlight.last?.job, bigAllowed: r.inFlight.count < 2)
    }

    private func send(_ batch: [(UInt64, any RemoteJob)], to dest: Int) throws {
        let out = WireBuffer(capacity: 256)
        var big: [any RemoteJob] = []
        for (seq, job) in batch {
            let separate = job.payload.totalCount > Pipelining.smallPayload || job.payload.hasExternals
            let length = 9 + (separate ? 8 : job.payload.count)
            FrameHeader(length: UInt32(length), kind: .request, seq: seq, shared: separate).write(into: out)
            out.append(UInt32(job.taskID))
            out.append(UInt32(job.attempt))
            out.append(UInt8(job.mode == .failFast ? 0 : 1))
            if separate {
                out.append(UInt64(job.payload.totalCount))
                big.append(job)
            } else {
                out.append(job.payload.bytes)
            }
        }
        try sendBuffer(out, to: dest, tag: ExecutorTag.frames)
        for job in big { try sendBuffer(job.payload, to: dest, tag: ExecutorTag.payload) }
    }

    /// Sends `buffer` as one message per run of bytes: its own, and the
    /// arrays it references, each from where it is (no copy; contiguous
    /// memory, so MPI can move it in a single copy). The receiver knows
    /// the total and takes messages until it has it all.
    private func sendBuffer(_ buffer: WireBuffer, to dest: Int, tag: Int32) throws {
        do {
            try buffer.forEachSegment { piece in
                guard piece.count > 0 else { return }
                try sends.send(piece.baseAddress, count: piece.count, owner: buffer, to: dest, tag: tag, on: comm,
                               limit: world.chunkElements(1))
            }
        } catch {
            throw lost(dest, "sending to it failed: \(error)")
        }
    }

    private func sendControl(_ words: [UInt64], to dest: Int) throws {
        let message = ControlMessage(words)
        try message.words.withUnsafeBytes { raw in
            do {
                try sends.send(raw.baseAddress, count: raw.count, owner: message, to: dest, tag: ExecutorTag.control,
                               on: comm, limit: world.chunkElements(1))
            } catch {
                throw lost(dest, "sending to it failed: \(error)")
            }
        }
    }

    /// Heartbeats, time-outs, lost ranks, the start deadline.
    private func tick(_ now: UInt64) throws {
        if now >= nextBeat {
            for r in ranks { try sendControl([ControlWord.heartbeat.rawValue], to: r.number) }
            nextBeat = now &+ options.heartbeatInterval.nanoseconds
        }
        mutex.lock()
        var expired: [(InFlight, Int)] = []
        var silent: (Rank, UInt64)?
        for r in ranks {
            for entry in r.inFlight where entry.deadline.map({ $0 <= now }) ?? false {
                expired.append((entry, r.number))
                r.expired.insert(entry.seq)
                cancels.append((r.number, entry.seq))
            }
            r.inFlight.removeAll { entry in expired.contains { $0.0.seq == entry.seq } }
            let limit = r.ready ? options.heartbeatTimeout.nanoseconds : startDeadline &- min(startDeadline, r.lastHeard)
            if silent == nil, now &- r.lastHeard > limit { silent = (r, now &- r.lastHeard) }
        }
        mutex.unlock()
        for (entry, _) in expired {
            entry.job.fail(FleetError.timedOut(item: entry.job.firstIndex, after: entry.job.timeout ?? .zero))
        }
        if let (r, quiet) = silent {
            if mutex.withLock({ r.ready }) {
                throw lost(r.number, "nothing heard from it for \(quiet / 1_000_000) ms (heartbeat time-out \(options.heartbeatTimeout))")
            }
            throw FleetError.workerStartFailed("rank \(r.number) did not reach Pool.mpi within \(options.startTimeout)")
        }
    }

    private func lost(_ number: Int, _ why: String) -> FleetError {
        mutex.lock()
        defer { mutex.unlock() }
        let r = rank(number)
        let item = r?.inFlight.lazy.compactMap(\.job.firstIndex).first
        return FleetError.rankLost(rank: number, host: r?.host ?? "?", item: item, why: why)
    }

    /// The job cannot go on: fail everything, and end the job after the
    /// grace period.
    private func fail(_ error: FleetError) {
        mutex.lock()
        if broken == nil { broken = error }
        let jobs = Array(queue) + ranks.flatMap { $0.inFlight.map(\.job) }
        queue.removeAll()
        for r in ranks { r.inFlight.removeAll() }
        wake.broadcast()
        mutex.unlock()
        writeStderr("fleet: \(error)\n")
        for job in jobs { job.fail(error) }
        if case .rankLost = error {
            let grace = options.lostRankGrace
            spawnThread(name: "fleet-mpi-grace") {
                usleep(UInt32(min(grace.nanoseconds / 1_000, UInt64(UInt32.max))))
                MPIRuntime.shared.abort("ending the MPI job: \(error)", code: 1)
            }
        }
    }

    /// The driver thread's last act: tells the ranks to stop (unless the
    /// job is broken), then runs the termination callbacks.
    private func end() {
        if mutex.withLock({ broken == nil }) {
            let out = WireBuffer()
            try? appendFrame(.shutdown, seq: 0, to: out) { _ in }
            for r in ranks { try? sends.send(out.bytes.baseAddress, count: out.count, owner: out, to: r.number,
                                             tag: ExecutorTag.frames, on: comm, limit: world.chunkElements(1)) }
            let deadline = monotonicNanos() &+ 5_000_000_000
            var backoff = Backoff()
            while !sends.isEmpty && monotonicNanos() < deadline {
                if (try? sends.progress()) != true { backoff.pause() }
            }
        }
        mutex.lock()
        finished = true
        let run = callbacks
        callbacks = []
        wake.broadcast()
        mutex.unlock()
        for callback in run { callback() }
    }

    // MARK: Readiness, shutdown, the end of the job

    /// Blocks until every rank has answered, or throws why not.
    func waitUntilReady() throws {
        mutex.lock()
        defer { mutex.unlock() }
        while !ranks.allSatisfy(\.ready) && broken == nil && !finished { wake.wait(mutex) }
        if let broken { throw broken }
    }

    func beginShutdown(_ policy: ShutdownPolicy) {
        mutex.lock()
        if self.policy == nil { self.policy = policy }
        var dropped: [any RemoteJob] = []
        if policy.dropsQueued {
            dropped = Array(queue)
            queue.removeAll()
        }
        if policy == .killRunning {
            // A rank cannot be killed and replaced: its work is failed here
            // and cancelled there, and the rank takes nothing new until it
            // returns.
            for r in ranks {
                for entry in r.inFlight {
                    dropped.append(entry.job)
                    r.expired.insert(entry.seq)
                    cancels.append((r.number, entry.seq))
                }
                r.inFlight.removeAll()
            }
        }
        wake.broadcast()
        mutex.unlock()
        for job in dropped { job.discard(.cancelled) }
    }

    func onTermination(_ callback: @escaping @Sendable () -> Void) {
        mutex.lock()
        if finished {
            mutex.unlock()
            callback()
            return
        }
        callbacks.append(callback)
        mutex.unlock()
    }

    /// At the end of the program: stops the ranks and says whether MPI can
    /// be finalized (false: a rank is lost or still busy, so the job must
    /// be aborted instead).
    func finishJob() -> Bool {
        beginShutdown(.cancelPending)
        mutex.lock()
        defer { mutex.unlock() }
        let deadline = monotonicNanos() &+ 5_000_000_000
        while !finished && monotonicNanos() < deadline { wake.wait(mutex, untilNanos: deadline) }
        return finished && broken == nil && ranks.allSatisfy { $0.expired.isEmpty }
    }
}
#endif
