import DequeModule
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// Processes backend: data flow
//
//  caller's thread                               one thread per worker slot
//  ───────────────                               ──────────────────────────
//  submit / map batch ─▶ encode inputs ─▶ queue ─┐   spawn worker ─▶ handshake
//                                                 ├─▶ send ─▶ request pipe ─▶ worker
//  futures / MapCore ◀── deliver ◀── read reply ◀─┴── reply pipe ◀───────────┘
//                                                    on EOF: reap, blame the item
//                                                    on the control page, retry or
//                                                    fail it, requeue the rest,
//                                                    start a replacement
//
// Jobs are encoded once, on the thread that queues them. A job goes to the
// least loaded ready worker; small jobs are pipelined (a few in flight per
// worker, so the pipe never runs dry), big ones and those with a time-out
// go only to an idle worker. Each slot's thread reads its worker's replies
// and, after each, sends the worker more from the queue.
//
// A worker that dies fails or retries only the item it was running (read
// from the shared control page); the rest of its batch and the requests
// queued behind it go back to the front of the queue untouched. A time-out
// kills the worker running the item. All state below is guarded by `mutex`;
// writes to a worker are serialised by its link's `writeLock`, taken before
// `mutex` is released so requests reach each worker in the order assigned.

/// Runs remote tasks on a pool of worker processes. See `Pool.processes`.
final class ProcessBackend: ExecutionBackend, @unchecked Sendable {
    // Safe: every `var` here and in `Slot` is guarded by `mutex`.
    let kind = BackendKind.processes
    let workerCount: Int
    var runsInline: Bool { false }
    let options: ProcessOptions
    let registry: Registry
    let executable: String
    let name: String

    private final class Slot: @unchecked Sendable {
        // Safe: every `var` is guarded by the backend's `mutex`.
        let index: Int
        var link: WorkerLink?
        var inFlight: [InFlight] = []
        var itemsDone = 0
        var retiring = false
        var sentShutdown = false
        var timedOut: UInt64?
        var fatal: String?
        init(index: Int) { self.index = index }
    }

    private struct InFlight {
        let seq: UInt64
        let job: any RemoteJob
        var timer: UInt64?
    }

    private let mutex = PthreadMutex()
    private let readyCondition = PthreadCondition()
    private var queue = Deque<any RemoteJob>()
    private var slots: [Slot]
    private var policy: ShutdownPolicy?
    private var broken: FleetError?
    private var liveThreads: Int
    private var readyCount = 0
    private var failedStarts = 0
    private var nextSeq: UInt64 = 1
    private var callbacks: [@Sendable () -> Void] = []
    private let relay: OutputRelay
    let context: RemoteContext

    private var pipelining = Pipelining()

    init(workers: Int, options: ProcessOptions, registry: Registry, name: String) {
        workerCount = workers
        self.options = options
        self.registry = registry
        self.name = name
        executable = options.workerExecutable ?? "/proc/self/exe"
        // A write to a worker that has just died must fail with EPIPE (its
        // reader then handles the death), not kill the driver.
        signal(SIGPIPE, SIG_IGN)
        slots = (0..<workers).map(Slot.init)
        liveThreads = workers
        relay = OutputRelay(name: "\(name)-out")
        // Without shared memory, big payloads go through the pipes.
        context = RemoteContext(registry: registry, arena: try? SharedArena())
        for slot in slots {
            spawnThread(name: "\(name)-\(slot.index)") { [self] in runSlot(slot) }
        }
    }

    // MARK: Queueing

    func enqueue(_ job: any Job) throws {
        let remote = try remoteJob(job, place: "in worker processes")
        if remote.payload.count + 64 > options.maxFrameBytes {
            throw FleetError.invalidArgument(
                "the inputs of one request take \(remote.payload.count) bytes, over maxFrameBytes (\(options.maxFrameBytes))")
        }
        mutex.lock()
        if policy != nil {
            mutex.unlock()
            throw FleetError.poolShutDown
        }
        if let broken {
            mutex.unlock()
            throw broken
        }
        queue.append(remote)
        mutex.unlock()
        pump()
    }

    /// Gives queued jobs to workers with room, one job at a time to the
    /// least loaded.
    private func pump() {
        while true {
            mutex.lock()
            guard let first = queue.first else {
                mutex.unlock()
                return
            }
            var best: Slot?
            // A worker with requests in flight is refilled by its reader
            // when their replies come, in one write for many; here only
            // idle or nearly idle workers are given work.
            for slot in slots where slot.inFlight.count < 2 && canTake(first, slot) {
                if best == nil || slot.inFlight.count < best!.inFlight.count { best = slot }
            }
            guard let slot = best else {
                mutex.unlock()
                return
            }
            sendLocked(slot, limit: 1)
        }
    }

    private func canTake(_ job: any RemoteJob, _ slot: Slot) -> Bool {
        guard slot.link != nil, !slot.retiring else { return false }
        if slot.inFlight.isEmpty { return true }
        if let limit = options.recycleAfter {
            // Send no more than the worker will run before it is replaced.
            let promised = slot.itemsDone + slot.inFlight.reduce(0) { $0 + $1.job.itemCount }
            if promised + job.itemCount > limit { return false }
        }
        // Big inputs in the shared arena cost the pipe nothing.
        return pipelining.admits(job, inFlight: slot.inFlight.count, last: slot.inFlight.last?.job,
                                 bigAllowed: job.payload.sharedOffset != nil)
    }

    /// Assigns up to `limit` queued jobs to `slot` and sends them, along
    /// with a shutdown frame if the slot should stop. Called with `mutex`
    /// held; returns with it released.
    private func sendLocked(_ slot: Slot, limit: Int) {
        guard let link = slot.link else {
            mutex.unlock()
            return
        }
        var batch: [(UInt64, any RemoteJob)] = []
        var skipped: [any RemoteJob] = []
        var watch: [CancellationToken] = []
        while batch.count < limit, let job = queue.first, canTake(job, slot) {
            queue.removeFirst()
            guard job.begin() else {
                skipped.append(job)
                continue
            }
            let seq = nextSeq
            nextSeq += 1
            var entry = InFlight(seq: seq, job: job)
            if let timeout = job.timeout {
                entry.timer = Watchdog.shared.schedule(after: timeout) { [self] in expire(slot, seq: seq) }
            }
            slot.inFlight.append(entry)
            batch.append((seq, job))
            if let token = job.token, token.startForwarding() {
                // Once per operation: its cancellation reaches the workers
                // running its jobs, through their control pages.
                watch.append(token)
            }
        }
        let shutdown = slot.inFlight.isEmpty && !slot.sentShutdown
            && (slot.retiring || (policy != nil && queue.isEmpty))
        if shutdown { slot.sentShutdown = true }
        link.writeLock.lock()
        mutex.unlock()
        for token in watch {
            token.onCancel { [weak self] in self?.cancelRunning(token) }
        }
        for job in skipped { job.skip() }
        if !batch.isEmpty || shutdown {
            let out = link.sendBuffer
            out.removeAll()
            for (seq, job) in batch {
                if let offset = job.payload.sharedOffset {
                    // The inputs are in the shared arena: send where.
                    FrameHeader(length: 25, kind: .request, seq: seq, shared: true).write(into: out)
                    out.append(UInt32(job.taskID))
                    out.append(UInt32(job.attempt))
                    out.append(UInt8(job.mode == .failFast ? 0 : 1))
                    out.append(UInt64(offset))
                    out.append(UInt64(job.payload.count))
                    continue
                }
                let big = job.payload.count > Pipelining.smallPayload
                FrameHeader(length: UInt32(9 + job.payload.count), kind: .request, seq: seq).write(into: out)
                out.append(UInt32(job.taskID))
                out.append(UInt32(job.attempt))
                out.append(UInt8(job.mode == .failFast ? 0 : 1))
                if big {
                    // Big inputs go straight from the job's buffer, not copied.
                    try? writeAll(link.requestFD, out.bytes)
                    out.removeAll()
                    try? writeAll(link.requestFD, job.payload.bytes)
                } else {
                    out.append(job.payload.bytes)
                }
            }
            if shutdown { try? appendFrame(.shutdown, seq: 0, to: out) { _ in } }
            // A failed write means the worker died; its reader finds out.
            try? writeAll(link.requestFD, out.bytes)
        }
        link.writeLock.unlock()
    }

    /// Marks every request of `token`'s operation in flight as no longer
    /// wanted; workers see it through `FleetTask.isCancelled`.
    private func cancelRunning(_ token: CancellationToken) {
        mutex.lock()
        defer { mutex.unlock() }
        for slot in slots {
            guard let link = slot.link else { continue }
            for entry in slot.inFlight where entry.job.token === token { link.control.cancel(entry.seq) }
        }
    }

    /// A job's time-out fired: kill the worker running it.
    private func expire(_ slot: Slot, seq: UInt64) {
        mutex.lock()
        defer { mutex.unlock() }
        guard let link = slot.link, slot.inFlight.first?.seq == seq else { return }
        slot.timedOut = seq
        link.kill()
    }

    // MARK: Worker slots

    private func runSlot(_ slot: Slot) {
        while true {
            mutex.lock()
            let stop = broken != nil || (policy != nil && queue.isEmpty)
            mutex.unlock()
            if stop { break }
            let link: WorkerLink
            do {
                link = try WorkerLink.spawn(
                    executable: executable,
                    spec: WorkerSpec(version: Int(wireProtocolVersion), parent: getpid(), maxFrameBytes: options.maxFrameBytes),
                    environment: options.environment, arena: context.arena, relay: relay,
                    label: { "worker \(slot.index) pid \($0)" })
            } catch {
                markBroken(error as? FleetError ?? .workerStartFailed("\(error)"))
                break
            }
            let reader = FrameReader(fd: link.replyFD, maxLength: options.maxFrameBytes)
            do {
                try handshake(link, reader)
            } catch let error as FleetError {
                link.kill()
                let exit = link.reap()
                if case .workerStartFailed = error {
                    markBroken(error)
                    break
                }
                mutex.lock()
                failedStarts += 1
                let tooMany = failedStarts >= 3
                mutex.unlock()
                if tooMany {
                    markBroken(.workerStartFailed(
                        "\(executable) \(exit) before the handshake, 3 times in a row: does its main call RemoteTasks.bootstrap first? (\(error))"))
                    break
                }
                continue
            } catch {
                continue
            }
            if let initializer = options.initializer {
                do {
                    try initialize(link, reader, initializer)
                } catch {
                    link.kill()
                    _ = link.reap()
                    markBroken(.workerStartFailed("the worker initializer \"\(initializer.name)\" failed: \(error)"))
                    break
                }
            }
            mutex.lock()
            failedStarts = 0
            slot.link = link
            readyCount += 1
            readyCondition.broadcast()
            sendLocked(slot, limit: pipelining.depth)
            serve(slot, link, reader)
            let exit = link.reap()
            buryLink(slot, link, exit)
        }
        mutex.lock()
        liveThreads -= 1
        let done = liveThreads == 0
        let run = done ? callbacks : []
        if done { callbacks = [] }
        mutex.unlock()
        if done {
            relay.stop()
            for callback in run { callback() }
        }
    }

    /// Reads the worker's hello and checks it was built from the same code.
    private func handshake(_ link: WorkerLink, _ reader: FrameReader) throws {
        var p = pollfd(fd: link.replyFD, events: Int16(POLLIN), revents: 0)
        let ms = Int32(clamping: options.startTimeout.nanoseconds / 1_000_000)
        guard poll(&p, 1, ms) == 1 else {
            throw FleetError.protocolViolation("no handshake within \(options.startTimeout)")
        }
        guard let (header, body) = try? reader.next() else {
            throw FleetError.protocolViolation("the worker closed its channel before the handshake")
        }
        guard header.kind == .hello else {
            throw FleetError.workerStartFailed("the worker's first frame was \(header.kind), not hello")
        }
        var r = WireReader(body)
        do {
            let version = try r.read(UInt16.self)
            _ = try r.read(Int32.self)
            let fingerprint = try r.read(UInt64.self)
            let n = try r.readCount(minBytes: 4)
            var signatures: [String] = []
            for _ in 0..<n { signatures.append(try r.readString()) }
            guard version == wireProtocolVersion else {
                throw FleetError.workerStartFailed(
                    "\(executable) speaks protocol version \(version), this driver \(wireProtocolVersion)")
            }
            guard fingerprint == registry.fingerprint else {
                throw FleetError.workerStartFailed(
                    "\(executable) was built from different code: \(registry.difference(from: signatures))")
            }
        } catch let error as FleetError {
            throw error
        } catch {
            throw FleetError.workerStartFailed("unreadable handshake from \(executable): \(error)")
        }
    }

    /// Runs the pool's initializer in a new worker and waits for it.
    private func initialize(_ link: WorkerLink, _ reader: FrameReader, _ initializer: WorkerInitializer) throws {
        guard let id = registry.ids[initializer.name], registry.typeIdentity(id) == initializer.types else {
            throw FleetError.notRemote("remote task \"\(initializer.name)\" is not registered: list it in RemoteTasks.bootstrap")
        }
        let out = WireBuffer()
        try appendFrame(.initialize, seq: 0, to: out) { b in
            b.append(UInt32(id))
            b.append(UInt32(0))
            b.append(UInt8(0))
            initializer.payload.withUnsafeBytes { b.append($0) }
        }
        try writeAll(link.requestFD, out.bytes)
        guard let (header, body) = try reader.next() else {
            throw FleetError.workerStartFailed("the worker (pid \(link.pid)) \(link.reap()) while initializing")
        }
        var r = WireReader(body)
        guard header.kind == .reply else {
            let message = header.kind == .fatal ? (try? r.readString()) ?? "" : "a \(header.kind) frame"
            throw FleetError.protocolViolation(message)
        }
        _ = try r.read(UInt64.self)
        if let error = try initializer.outcome(&r) { throw error }
    }

    /// Reads replies until the worker's channel ends.
    private func serve(_ slot: Slot, _ link: WorkerLink, _ reader: FrameReader) {
        while true {
            let frame: (FrameHeader, UnsafeRawBufferPointer)?
            do { frame = try reader.next() } catch {
                protocolFault(slot, link, "\(error)")
                return
            }
            guard let (header, body) = frame else { return }
            switch header.kind {
            case .reply:
                mutex.lock()
                guard let i = slot.inFlight.firstIndex(where: { $0.seq == header.seq }) else {
                    mutex.unlock()
                    protocolFault(slot, link, "a reply to request \(header.seq), which is not in flight")
                    return
                }
                let entry = slot.inFlight.remove(at: i)
                mutex.unlock()
                if let timer = entry.timer { Watchdog.shared.cancel(timer) }
                var r = WireReader(body)
                var nanos: UInt64 = 0
                do {
                    nanos = try r.read(UInt64.self)
                    try entry.job.deliver(&r, nanos: nanos)
                } catch {
                    entry.job.fail(FleetError.protocolViolation("bad reply from worker pid \(link.pid): \(error)"))
                    protocolFault(slot, link, "bad reply: \(error)")
                    return
                }
                mutex.lock()
                pipelining.record(nanos: nanos)
                slot.itemsDone += entry.job.itemCount
                if let limit = options.recycleAfter, slot.itemsDone >= limit { slot.retiring = true }
                if reader.hasBufferedFrame {
                    // More replies are here already: take them all, then
                    // refill the worker with one write.
                    mutex.unlock()
                    continue
                }
                sendLocked(slot, limit: pipelining.depth)
            case .fatal:
                var r = WireReader(body)
                let message = (try? r.readString()) ?? "unreadable message"
                mutex.withLock { slot.fatal = message }
            default:
                protocolFault(slot, link, "unexpected \(header.kind) frame from a worker")
                return
            }
        }
    }

    private func protocolFault(_ slot: Slot, _ link: WorkerLink, _ message: String) {
        mutex.withLock { if slot.fatal == nil { slot.fatal = message } }
        link.kill()
    }

    /// The worker has exited: blame the item it was running, put the rest
    /// back in the queue, and let the slot start a replacement.
    private func buryLink(_ slot: Slot, _ link: WorkerLink, _ exit: WorkerExit) {
        mutex.lock()
        if slot.link === link { readyCount -= 1 }
        slot.link = nil
        let inFlight = slot.inFlight
        slot.inFlight = []
        slot.itemsDone = 0
        slot.retiring = false
        slot.sentShutdown = false
        let timedOut = slot.timedOut
        let fatal = slot.fatal
        slot.timedOut = nil
        slot.fatal = nil
        mutex.unlock()
        for entry in inFlight { if let timer = entry.timer { Watchdog.shared.cancel(timer) } }
        guard !inFlight.isEmpty else { return }

        if mutex.withLock({ policy == .killRunning }) {
            for entry in inFlight { entry.job.fail(FleetError.cancelled) }
            return
        }
        var requeue: [any RemoteJob] = []
        var failed: [(any RemoteJob, any Error)] = []
        var runningSeq = link.control.seq
        if fatal != nil, !inFlight.contains(where: { $0.seq == runningSeq }) {
            // A broken channel, found between tasks: it broke at the first
            // request not answered, so that one is blamed (else a task
            // that breaks it every time would be sent again for ever).
            runningSeq = inFlight[0].seq
        }
        for entry in inFlight {
            guard entry.seq == runningSeq else {
                requeue.append(entry.job)
                continue
            }
            let (before, culprit, after) = entry.job.split(at: link.control.current)
            if let before { requeue.append(before) }
            mutex.lock()
            culprit.attempt += 1
            let attempts = culprit.attempt
            mutex.unlock()
            if timedOut == entry.seq, let timeout = culprit.timeout {
                failed.append((culprit, FleetError.timedOut(item: culprit.firstIndex, after: timeout)))
            } else if let fatal {
                failed.append((culprit, FleetError.protocolViolation("worker pid \(link.pid): \(fatal)")))
            } else if attempts <= (culprit.retries ?? options.retries) {
                requeue.append(culprit)
            } else {
                failed.append((culprit, FleetError.workerDied(item: culprit.firstIndex, pid: link.pid, exit: exit,
                                                             attempts: attempts)))
            }
            if let after { requeue.append(after) }
        }
        mutex.lock()
        let brokenNow = broken
        if brokenNow == nil { queue.insert(contentsOf: requeue, at: 0) }
        mutex.unlock()
        if let brokenNow { for job in requeue { job.discard(brokenNow) } }
        for (job, error) in failed { job.fail(error) }
        pump()
    }

    /// Workers cannot start: fail everything queued, refuse new work.
    private func markBroken(_ error: FleetError) {
        mutex.lock()
        if broken == nil { broken = error }
        let jobs = Array(queue)
        queue.removeAll()
        readyCondition.broadcast()
        mutex.unlock()
        for job in jobs { job.discard(error) }
    }

    // MARK: Readiness and shutdown

    /// The pids of the worker processes running now.
    var workerPIDs: [Int32] { mutex.withLock { slots.compactMap { $0.link?.pid } } }

    /// Blocks until every worker has answered the handshake, or throws why
    /// they could not start.
    func waitUntilReady() throws {
        mutex.lock()
        defer { mutex.unlock() }
        while readyCount < workerCount && broken == nil && policy == nil { readyCondition.wait(mutex) }
        if let broken { throw broken }
    }

    func beginShutdown(_ policy: ShutdownPolicy) {
        mutex.lock()
        if self.policy == nil { self.policy = policy }
        var discarded: [any RemoteJob] = []
        if policy.dropsQueued {
            discarded = Array(queue)
            queue.removeAll()
        }
        if policy == .killRunning {
            for slot in slots where !slot.inFlight.isEmpty { slot.link?.kill() }
        }
        readyCondition.broadcast()
        let idle = slots.filter { $0.link != nil && $0.inFlight.isEmpty && !$0.sentShutdown }
        mutex.unlock()
        for job in discarded { job.discard(.cancelled) }
        for slot in idle {
            mutex.lock()
            sendLocked(slot, limit: 0)
        }
    }

    func onTermination(_ callback: @escaping @Sendable () -> Void) {
        mutex.lock()
        if liveThreads == 0 {
            mutex.unlock()
            callback()
            return
        }
        callbacks.append(callback)
        mutex.unlock()
    }
}
