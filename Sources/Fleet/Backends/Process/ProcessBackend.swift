#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// Processes backend: data flow
//
//  caller's thread                                 one thread per worker slot
//  ───────────────                                 ──────────────────────────
//  submit / map batch ─▶ encode inputs ─▶ Dispatcher.enqueue   spawn worker ─▶ handshake
//                                              │ outbox        ─▶ Dispatcher.ready
//                                              ▼
//                          flush: take the outbox, write ─▶ request pipe ─▶ worker
//  futures / MapCore ◀── deliver ◀── Dispatcher.replied ◀── reply pipe ◀───┘
//                                    on its exit (pidfd) or EOF: reap, read the
//                                    control page ─▶ Dispatcher.exited: blame,
//                                    retry or fail, requeue, replace
//
// This file is the transport: it starts, watches and kills worker
// processes and moves bytes. What happens to work (the queue, pipelining,
// blame, retries, time-outs, shutdown) is decided by the `Dispatcher`
// (Remote/Dispatcher.swift), under `box.mutex`; every decision comes back as
// `Effects`, carried out here after the lock is released. Jobs are encoded
// once, on the thread that queues them.

/// Runs remote tasks on a pool of worker processes. See `Pool.processes`.
final class ProcessBackend: DispatchingBackend, @unchecked Sendable {
    // Safe: `links` and `timers` are guarded by `box.mutex`, like the
    // dispatcher; writes to a worker are serialised by its link's
    // `writeLock`, always taken before `box.mutex`, never while holding it.
    let kind = BackendKind.processes
    let workerCount: Int
    var runsInline: Bool { false }
    let options: ProcessOptions
    let registry: Registry
    let executable: String
    let name: String
    let context: RemoteContext

    let box: DispatchBox
    private var links: [WorkerLink?]
    /// Watchdog timers of requests with a time-out, by sequence number.
    private var timers: [UInt64: UInt64] = [:]
    private let relay: OutputRelay

    init(workers: Int, options: ProcessOptions, registry: Registry, name: String) {
        workerCount = workers
        self.options = options
        self.registry = registry
        self.name = name
        executable = options.workerExecutable ?? "/proc/self/exe"
        // A write to a worker that has just died must fail with EPIPE (its
        // reader then handles the death), not kill the driver.
        signal(SIGPIPE, SIG_IGN)
        box = DispatchBox(
            .init(
                workers: workers, retries: options.retries, recycleAfter: options.recycleAfter,
                replaceable: true, bigMayWaitBehindOne: false))
        links = Array(repeating: nil, count: workers)
        relay = OutputRelay(name: "\(name)-out")
        // Without shared memory, big payloads go through the pipes.
        context = RemoteContext(
            registry: registry, arena: try? SharedArena(),
            payloadLimit: PayloadLimit(
                bytes: options.maxFrameBytes - FrameHeader.size - requestHeadBytes,
                option: "ProcessOptions.maxFrameBytes (\(options.maxFrameBytes))"))
        for w in 0..<workers {
            spawnThread(name: "\(name)-\(w)") { [self] in runSlot(w) }
        }
    }

    // MARK: Events in

    func enqueue(_ job: any Job) throws {
        // Inputs over maxFrameBytes were refused while encoded (`context.payloadLimit`).
        let remote = try remoteJob(job, place: "in worker processes")
        carryOut(try box.withState { try $0.enqueue(RemoteWork(job: remote), assign: true) })
    }

    /// A request's time-out fired.
    private func timeUp(_ w: Int, seq: UInt64) {
        carryOut(
            box.withState { state in
                timers[seq] = nil
                return state.timeUp(w, seq: seq)
            })
    }

    /// Tells the workers running requests of `token`'s operation that they
    /// are no longer wanted; tasks see it through `FleetTask.isCancelled`.
    private func cancelRunning(_ token: CancellationToken) {
        box.withState { state in
            for (w, seq) in state.requests(of: ObjectIdentifier(token)) { links[w]?.control.cancel(seq) }
        }
    }

    // MARK: Effects out

    func carryOut(_ effects: Effects<RemoteWork>) {
        for work in effects.skipped { work.job.skip() }
        // An operation's cancellation reaches the workers running its
        // jobs through their control pages.
        if !effects.watch.isEmpty { watchCancellation(effects) { [weak self] in self?.cancelRunning($0) } }
        for w in effects.flush { flush(w) }
        if !effects.kill.isEmpty {
            let doomed = box.withState { _ in effects.kill.compactMap { links[$0] } }
            for link in doomed { link.kill() }
        }
        for (work, error) in effects.failed { work.job.fail(error) }
        for (work, reason) in effects.discarded { work.job.discard(reason) }
        if effects.finished {
            // The pool has ended once its workers' last output is written.
            relay.stop { [box] in box.terminated() }
        }
    }

    /// Writes what worker `w` has been given, in the order given.
    private func flush(_ w: Int) {
        guard let link = box.withState({ _ in links[w] }) else { return }
        link.writeLock.withLock {
            let (requests, goodbye) = box.withState { state in
                // The outbox belongs to this link only while it is current.
                links[w] === link ? state.takeOutbox(w) : ([], false)
            }
            guard !requests.isEmpty || goodbye else { return }
            let out = link.sendBuffer
            out.removeAll()
            for request in requests {
                let payload = request.job.job.payload
                if let offset = payload.sharedOffset {
                    // The inputs are in the shared arena: send where.
                    appendRequestHead(request, inputBytes: 16, shared: true, to: out)
                    out.append(UInt64(offset))
                    out.append(UInt64(payload.count))
                } else if payload.count > Pipelining.smallPayload {
                    // Big inputs go straight from the job's buffer, not copied.
                    appendRequestHead(request, inputBytes: payload.count, shared: false, to: out)
                    try? writeAll(link.requestFD, out.bytes)
                    out.removeAll()
                    try? writeAll(link.requestFD, payload.bytes)
                } else {
                    appendRequestHead(request, inputBytes: payload.count, shared: false, to: out)
                    out.append(payload.bytes)
                }
                if let timeout = request.job.timeout {
                    let seq = request.seq
                    let timer = Watchdog.shared.schedule(after: timeout) { [weak self] in self?.timeUp(w, seq: seq) }
                    box.withState { _ in timers[seq] = timer }
                }
            }
            if goodbye { try? appendFrame(.shutdown, seq: 0, to: out) { _ in } }
            // A failed write means the worker died; its reader finds out.
            try? writeAll(link.requestFD, out.bytes)
        }
    }

    // MARK: Worker slots

    /// Starts, serves and buries workers in slot `w` for as long as the
    /// dispatcher wants one there.
    private func runSlot(_ w: Int) {
        while box.withState({ $0.workers[w].phase == .starting }) {
            let link: WorkerLink
            do {
                link = try WorkerLink.spawn(
                    executable: executable,
                    spec: WorkerSpec(
                        version: Int(wireProtocolVersion), parent: getpid(), maxFrameBytes: options.maxFrameBytes),
                    environment: options.environment, arena: context.arena, relay: relay,
                    label: { "worker \(w) pid \($0)" })
            } catch {
                carryOut(
                    box.withState {
                        $0.startFailed(w, error as? FleetError ?? .workerStartFailed("\(error)"), retryable: false)
                    })
                break
            }
            let reader = link.replies(maxLength: options.maxFrameBytes)
            do {
                try handshake(link, reader)
                if let initializer = options.initializer {
                    do { try initialize(link, reader, initializer) } catch {
                        throw FleetError.workerStartFailed(
                            "the worker initializer \"\(initializer.name)\" failed: \(error)")
                    }
                }
            } catch {
                link.kill()
                let exit = link.reap()
                // A crash or silence before the handshake may be passing; a
                // worker that answers wrongly will answer wrongly again.
                let failure: (FleetError, Bool) =
                    switch error {
                    case FleetError.workerStartFailed(let why): (.workerStartFailed(why), false)
                    default:
                        (
                            .workerStartFailed(
                                "\(executable) \(exit) before the handshake: does its main call RemoteTasks.bootstrap first? (\(error))"
                            ),
                            true
                        )
                    }
                carryOut(box.withState { $0.startFailed(w, failure.0, retryable: failure.1) })
                continue
            }
            carryOut(
                box.withState { state in
                    links[w] = link
                    box.changed.broadcast()
                    return state.ready(w)
                })
            serve(w, link, reader)
            box.withState { _ in links[w] = nil }
            let death = link.death()
            carryOut(
                box.withState { state in
                    for entry in state.inFlight(w) {
                        if let timer = timers.removeValue(forKey: entry.seq) { _ = Watchdog.shared.cancel(timer) }
                    }
                    return state.exited(w, death)
                })
        }
    }

    /// Reads the worker's hello and checks it was built from the same code.
    private func handshake(_ link: WorkerLink, _ reader: FrameReader) throws {
        guard link.awaitFirstFrame(within: options.startTimeout) else {
            throw FleetError.protocolViolation("no handshake within \(options.startTimeout)")
        }
        guard let (header, body) = try? reader.next() else {
            throw FleetError.protocolViolation("the worker closed its channel before the handshake")
        }
        guard header.kind == .hello else {
            throw FleetError.workerStartFailed("the worker's first frame was \(header.kind), not hello")
        }
        var r = WireReader(body)
        let hello: Hello
        do { hello = try Hello(&r, withHost: false) } catch {
            throw FleetError.workerStartFailed("unreadable handshake from \(executable): \(error)")
        }
        try hello.check(against: registry, who: executable)
    }

    /// Runs the pool's initializer in a new worker and waits for it.
    private func initialize(_ link: WorkerLink, _ reader: FrameReader, _ initializer: WorkerInitializer) throws {
        guard let id = registry.ids[initializer.name], registry.typeIdentity(id) == initializer.types else {
            throw FleetError.notRemote(
                "remote task \"\(initializer.name)\" is not registered: list it in RemoteTasks.bootstrap")
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
            throw FleetError.protocolViolation("the worker (pid \(link.pid)) exited while initializing")
        }
        var r = WireReader(body)
        guard header.kind == .reply else {
            let message = header.kind == .fatal ? (try? r.readString()) ?? "" : "a \(header.kind) frame"
            throw FleetError.protocolViolation(message)
        }
        _ = try r.read(UInt64.self)
        if let error = try initializer.outcome(&r) { throw error }
    }

    /// Reads replies until the worker's channel ends (it exited, or a
    /// fault made the driver kill it).
    private func serve(_ w: Int, _ link: WorkerLink, _ reader: FrameReader) {
        while true {
            let frame: (FrameHeader, UnsafeRawBufferPointer)?
            do { frame = try reader.next() } catch FrameError.truncated {
                return  // it died mid-frame: a death like any other
            } catch {
                carryOut(box.withState { $0.fault(w, "worker pid \(link.pid): \(error)") })
                return
            }
            guard let (header, body) = frame else { return }
            switch header.kind {
            case .reply:
                var r = WireReader(body)
                r.releasable = true  // the frame reader's own memory, read once
                guard let nanos = try? r.read(UInt64.self) else {
                    carryOut(box.withState { $0.fault(w, "worker pid \(link.pid): a reply with no header") })
                    return
                }
                // While more replies are here already, take them all, then
                // refill the worker with one write.
                let reply = box.withState { state in
                    if let timer = timers.removeValue(forKey: header.seq) { _ = Watchdog.shared.cancel(timer) }
                    return state.replied(w, seq: header.seq, nanos: nanos, refill: !reader.hasBufferedFrame)
                }
                switch reply {
                case .deliver(let work, let effects):
                    carryOut(effects)
                    do { try work.job.deliver(&r, nanos: nanos) } catch {
                        work.job.fail(FleetError.protocolViolation("bad reply from worker pid \(link.pid): \(error)"))
                        carryOut(
                            box.withState { $0.fault(w, "worker pid \(link.pid): bad reply: \(error)", settled: true) })
                        return
                    }
                case .late(let effects):
                    carryOut(effects)
                case .unexpected:
                    carryOut(
                        box.withState {
                            $0.fault(
                                w, "worker pid \(link.pid): a reply to request \(header.seq), which is not in flight")
                        })
                    return
                }
            case .fatal:
                var r = WireReader(body)
                let message = (try? r.readString()) ?? "unreadable message"
                carryOut(box.withState { $0.fault(w, "worker pid \(link.pid): \(message)") })
            default:
                carryOut(
                    box.withState {
                        $0.fault(w, "worker pid \(link.pid): unexpected \(header.kind) frame from a worker")
                    })
                return
            }
        }
    }

    // MARK: Readiness

    /// The pids of the worker processes running now.
    var workerPIDs: [Int32] { box.withState { _ in links.compactMap { $0?.pid } } }

    /// Blocks until every worker has answered the handshake, or throws why
    /// they could not start.
    func waitUntilReady() throws {
        box.mutex.lock()
        defer { box.mutex.unlock() }
        while box.locked.readyCount < workerCount && box.locked.brokenError == nil && !box.locked.isShuttingDown {
            box.changed.wait(box.mutex)
        }
        if let broken = box.locked.brokenError { throw broken }
    }
}
