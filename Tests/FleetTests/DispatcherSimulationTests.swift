import Foundation
import Testing

@testable import Fleet

/// The remote dispatcher alone, driven by seeded random schedules of events
/// (work queued, workers started, requests begun and finished, replies read,
/// held and lost, workers killed at every point of a request's life, protocol
/// faults, time-outs, cancellations, each shutdown policy at any moment),
/// with the written invariants checked after every step. A failing schedule
/// prints its seed; `FLEET_SIM_SEED=<seed> swift test --filter
/// DispatcherSimulationTests` replays it alone.
@Suite struct DispatcherSimulationTests {
    /// Schedules per run (`FLEET_SIM_SCHEDULES` overrides).
    static var scheduleCount: Int {
        ProcessInfo.processInfo.environment["FLEET_SIM_SCHEDULES"].flatMap(Int.init) ?? 100_000
    }

    @Test func everyScheduleKeepsTheInvariants() {
        if let seed = ProcessInfo.processInfo.environment["FLEET_SIM_SEED"].flatMap(UInt64.init) {
            var sim = Simulation(seed: seed, replaceable: seed % 4 != 3)
            sim.trace = []
            let failure = sim.run()
            #expect(
                failure == nil,
                "seed \(seed): \(failure ?? "")\n\((sim.trace ?? []).suffix(40).joined(separator: "\n"))")
            return
        }
        var failures: [(UInt64, String)] = []
        var steps = 0
        for seed in 1...UInt64(Self.scheduleCount) {
            var sim = Simulation(seed: seed, replaceable: seed % 4 != 3)
            if let failure = sim.run() {
                failures.append((seed, failure))
                if failures.count >= 3 { break }
            }
            steps += sim.steps
        }
        for (seed, failure) in failures {
            Issue.record(
                "schedule \(seed) broke an invariant: \(failure)\n  replay: FLEET_SIM_SEED=\(seed) swift test --filter DispatcherSimulationTests"
            )
        }
        #expect(steps > Self.scheduleCount * 20, "the schedules should be long enough to say something")
    }

    @Test func aChecksFailureIsReported() {
        // The checker itself must be able to fail: a dispatcher stand-in
        // that delivers a result twice is caught.
        let caught = (1...50 as ClosedRange<UInt64>).compactMap { seed -> String? in
            var sim = Simulation(seed: seed, replaceable: seed % 2 == 0)
            sim.deliverTwice = true
            return sim.run()
        }
        #expect(
            caught.count > 15 && caught.allSatisfy { $0.contains("ended 2 times") },
            "\(caught.count): \(caught.prefix(3))")
    }
}

// MARK: The simulated world

/// One operation (a map, say): cancelling it skips its jobs not yet sent.
private final class SimOperation {
    var cancelled = false
}

/// A stand-in job: a run of item ids.
private struct SimJob: DispatchJob {
    let items: Range<Int>
    let timeout: Duration?
    let retries: Int?
    let big: Bool
    let op: SimOperation

    var itemCount: Int { items.count }
    var firstIndex: Int? { items.lowerBound }
    var inputBytes: Int { big ? Pipelining.smallPayload + 1 : 64 }
    var inputsShared: Bool { false }
    var operation: ObjectIdentifier? { ObjectIdentifier(op) }
    func begin() -> Bool { !op.cancelled }

    func split(at offset: Int) -> (before: SimJob?, culprit: SimJob, after: SimJob?) {
        let k = min(max(offset, 0), items.count - 1)
        func part(_ r: Range<Int>) -> SimJob? {
            r.isEmpty ? nil : SimJob(items: r, timeout: timeout, retries: retries, big: big, op: op)
        }
        let lo = items.lowerBound
        return (part(lo..<lo + k), part(lo + k..<lo + k + 1)!, part(lo + k + 1..<items.upperBound))
    }
}

/// A worker process as the simulation plays it.
private struct SimWorker {
    var alive = false
    /// Killed (or exiting), its death not yet seen by the driver.
    var dying = false
    var exit = WorkerExit.exited(0)
    /// Requests written to it, not yet begun.
    var received: [Outgoing<SimJob>] = []
    var goodbye = false
    /// The request it runs and the item within it.
    var running: (request: Outgoing<SimJob>, item: Int)?
    /// Replies finished and held in the worker, then those in the pipe.
    var held: [Outgoing<SimJob>] = []
    var pipe: [Outgoing<SimJob>] = []
    // The control page.
    var began: UInt64 = 0
    var finished: UInt64 = 0
    var item = 0
    /// Faults the driver saw on its channel.
    var faulted = false
    /// Killed for a bad reply whose request has failed already.
    var settledFault = false
}

extension SplitMix {
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(max(n, 1))) }
    mutating func chance(_ percent: Int) -> Bool { below(100) < percent }
}

private struct Simulation {
    let seed: UInt64
    let replaceable: Bool
    var rng: SplitMix
    var dispatcher: Dispatcher<SimJob>
    var workers: [SimWorker]
    let poolRetries: Int
    var operations: [SimOperation] = [SimOperation(), SimOperation(), SimOperation()]
    /// Per item: its retries, how it ended (how many times), how many times
    /// it began, how many deaths were charged to it by the written rule,
    /// and how many times a result of it was lost with an innocent worker.
    var retries: [Int] = []
    var ends: [Int] = []
    var endedBy: [FleetError?] = []
    var starts: [Int] = []
    var charges: [Int] = []
    var losses: [Int] = []
    var finishedCount = 0
    var steps = 0
    var failure: String?
    /// Test of the checker: deliver each reply twice.
    var deliverTwice = false
    /// What happened, step by step, kept when replaying one seed.
    var trace: [String]?

    mutating func note(_ what: @autoclosure () -> String) {
        guard trace != nil else { return }
        let line = "\(steps): \(what()) -> \(describe())"
        trace!.append(line)
    }

    init(seed: UInt64, replaceable: Bool) {
        self.seed = seed
        self.replaceable = replaceable
        rng = SplitMix(seed: seed)
        let n = 1 + rng.below(3)
        poolRetries = rng.below(3)
        let recycle = rng.chance(20) ? 1 + rng.below(6) : nil
        dispatcher = Dispatcher(
            .init(
                workers: n, retries: poolRetries, recycleAfter: replaceable ? recycle : nil,
                replaceable: replaceable, bigMayWaitBehindOne: !replaceable))
        workers = Array(repeating: SimWorker(), count: n)
    }

    // MARK: Running a schedule

    /// Plays a random schedule, then a calm phase (no more faults) to the
    /// end of the pool; returns the first invariant broken, if any.
    mutating func run() -> String? {
        let length = 20 + rng.below(60)
        for _ in 0..<length where failure == nil { randomStep() }
        // Calm: no faults; everything runs to the end, in bounded steps.
        if failure == nil, !dispatcher.isShuttingDown { apply(dispatcher.shutdown(.drain)) }
        var calm = 0
        while failure == nil && !(dispatcher.isTerminated && workers.allSatisfy { !$0.alive && !$0.dying }) {
            calm += 1
            if calm > 20_000 { return "no end after 20,000 calm steps: \(describe())" }
            calmStep()
        }
        if failure == nil { checkEnd() }
        return failure
    }

    mutating func randomStep() {
        steps += 1
        let pick = rng.below(100)
        note("step \(pick)")
        switch pick {
        case 0..<14: if !dispatcher.isShuttingDown || rng.chance(10) { enqueue() }
        case 14..<22: start(anyWorker(where: { _ in true }))
        case 22..<34: flush(anyWorker(where: { _ in true }))
        case 34..<60: progress(anyWorker(where: { $0.alive && !$0.dying }))
        case 60..<76: read(anyWorker(where: { !$0.pipe.isEmpty }))
        case 76..<80:
            if replaceable || rng.chance(20) { kill(anyWorker(where: { $0.alive && !$0.dying })) }
        case 80..<86: reap(anyWorker(where: { $0.dying }))
        case 86..<87: protocolFault(anyWorker(where: { $0.alive && !$0.dying }))
        case 87..<91: timeUp()
        case 91..<93: cancel()
        case 93..<95: apply(dispatcher.shutdown([.drain, .drain, .cancelPending, .killRunning][rng.below(4)]))
        case 95..<97:
            if replaceable || rng.chance(20) {
                loseReply(anyWorker(where: { $0.alive && !$0.dying && !$0.held.isEmpty }))
            }
        default: if !replaceable { apply(dispatcher.assign()) }
        }
        checkAfterStep()
    }

    mutating func calmStep() {
        steps += 1
        if !replaceable { apply(dispatcher.assign()) }  // the MPI driver's round
        if let w = anyWorker(where: { $0.dying }) {
            reap(w)
        } else if let w = anyWorker(where: { !$0.pipe.isEmpty }) {
            read(w)
        } else if let w = (0..<workers.count).first(where: { hasOutbox($0) }) {
            flush(w)
        } else if let w = anyWorker(where: {
            $0.alive && !$0.dying && ($0.running != nil || !$0.received.isEmpty || !$0.held.isEmpty || $0.goodbye)
        }) {
            progress(w)
        } else if let w = (0..<workers.count).first(where: {
            dispatcher.workers[$0].phase == .starting && !workers[$0].alive
        }) {
            start(w)
        } else {
            if !replaceable {
                let round = dispatcher.assign()
                apply(round)
                if !round.flush.isEmpty { return }
            }
            // Nothing to do but time passing: overdue requests time out.
            for (w, worker) in dispatcher.workers.enumerated() {
                for entry in worker.inFlight where entry.job.timeout != nil {
                    apply(dispatcher.timeUp(w, seq: entry.seq))
                    return
                }
            }
            failure = failure ?? "stuck: nothing can happen, yet the pool has not ended: \(describe())"
        }
        checkAfterStep()
    }

    mutating func anyWorker(where match: (SimWorker) -> Bool) -> Int? {
        let candidates = workers.indices.filter { match(workers[$0]) }
        guard !candidates.isEmpty else { return nil }
        return candidates[rng.below(candidates.count)]
    }

    func hasOutbox(_ w: Int) -> Bool { !dispatcher.workers[w].outbox.isEmpty || dispatcher.workers[w].goodbye }

    // MARK: Events

    mutating func enqueue() {
        guard retries.count < 60 else { return }
        let n = 1 + rng.below(4)
        let first = retries.count
        let jobRetries: Int? = rng.chance(30) ? rng.below(3) : nil
        for _ in 0..<n {
            retries.append(jobRetries ?? poolRetries)
            ends.append(0)
            endedBy.append(nil)
            starts.append(0)
            charges.append(0)
            losses.append(0)
        }
        let job = SimJob(
            items: first..<first + n, timeout: rng.chance(10) ? .seconds(1) : nil, retries: jobRetries,
            big: rng.chance(10), op: operations[rng.below(operations.count)])
        do throws(FleetError) {
            // Processes assign as work is queued; MPI's driver thread each round.
            apply(try dispatcher.enqueue(job, assign: replaceable))
        } catch {
            // Refused (shut down or broken): it never entered; end it here.
            for i in job.items { end(i, by: error) }
        }
        if !replaceable && rng.chance(50) { apply(dispatcher.assign()) }
    }

    /// The slot starts a worker: it answers the handshake, or fails to.
    mutating func start(_ w: Int?) {
        guard let w, dispatcher.workers[w].phase == .starting, !workers[w].alive, !workers[w].dying else { return }
        if replaceable && rng.chance(5) {
            apply(dispatcher.startFailed(w, .workerStartFailed("simulated"), retryable: rng.chance(80)))
            return
        }
        workers[w] = SimWorker()
        workers[w].alive = true
        apply(dispatcher.ready(w))
    }

    /// The transport writes what worker `w` was given.
    mutating func flush(_ w: Int?) {
        guard let w else { return }
        let (requests, goodbye) = dispatcher.takeOutbox(w)
        for r in requests {
            if dispatcher.workers[w].phase != .ready && dispatcher.workers[w].phase != .retiring
                && dispatcher.workers[w].phase != .leaving
            {
                fail("request \(r.seq) written to worker \(w) in phase \(dispatcher.workers[w].phase)")
            }
        }
        defer { if !replaceable && goodbye { apply(dispatcher.left(w)) } }
        guard workers[w].alive, !workers[w].dying else { return }  // written into a dead pipe: lost
        workers[w].received += requests
        if goodbye { workers[w].goodbye = true }
    }

    /// Worker `w` does one thing: begins a request, runs an item, finishes
    /// a request (holding or writing its reply), writes held replies, or
    /// exits after a goodbye.
    mutating func progress(_ w: Int?) {
        guard let w else { return }
        var worker = workers[w]
        if case (let request, var item)? = worker.running {
            item += 1
            if item < request.job.itemCount {
                worker.running = (request, item)
                worker.item = item
                starts[request.job.items.lowerBound + item] += 1
            } else {
                worker.running = nil
                worker.finished = request.seq
                worker.held.append(request)
                if worker.received.isEmpty || rng.chance(50) {
                    worker.pipe += worker.held
                    worker.held = []
                }
            }
        } else if !worker.received.isEmpty {
            let request = worker.received.removeFirst()
            worker.item = 0
            worker.began = request.seq
            worker.running = (request, 0)
            starts[request.job.items.lowerBound] += 1
        } else if !worker.held.isEmpty {
            worker.pipe += worker.held
            worker.held = []
        } else if worker.goodbye {
            worker.alive = false
            worker.dying = true
            worker.exit = .exited(0)
        }
        workers[w] = worker
    }

    /// The driver reads worker `w`'s oldest reply in the pipe. While more
    /// replies are at hand it does not refill the worker, and reads on.
    mutating func read(_ w: Int?) {
        guard let w, !workers[w].pipe.isEmpty else { return }
        let request = workers[w].pipe.removeFirst()
        let bad = rng.chance(1)
        let refill = workers[w].pipe.isEmpty || rng.chance(50)
        defer { if !refill { read(w) } }
        switch dispatcher.replied(w, seq: request.seq, nanos: UInt64(rng.below(200_000)), refill: refill) {
        case .deliver(let job, let effects):
            apply(effects)
            if bad {
                for i in job.items { end(i, by: .protocolViolation("bad reply")) }
                if replaceable {
                    workers[w].settledFault = true
                    apply(dispatcher.fault(w, "bad reply", settled: true))
                } else {
                    breakJob(.protocolViolation("bad reply"))
                }
            } else {
                for i in job.items { end(i, by: nil) }
                if deliverTwice { for i in job.items { end(i, by: nil) } }
            }
        case .late(let effects):
            apply(effects)
        case .unexpected:
            fail("a reply to request \(request.seq) from worker \(w) was not expected")
        }
    }

    /// Worker `w` dies (SIGKILL from outside, a crash in its task).
    mutating func kill(_ w: Int?) {
        guard let w, workers[w].alive else { return }
        workers[w].alive = false
        workers[w].dying = true
        workers[w].exit = .signaled(9)
        // A reply being written may be cut: the driver never reads it.
        if rng.chance(30), !workers[w].pipe.isEmpty { workers[w].held.insert(workers[w].pipe.removeLast(), at: 0) }
    }

    /// A task returns, then the worker cannot write its reply and exits.
    mutating func loseReply(_ w: Int?) {
        guard let w else { return }
        workers[w].alive = false
        workers[w].dying = true
        workers[w].exit = .exited(0)
    }

    /// The worker reports a bad request (or the driver finds a bad frame).
    mutating func protocolFault(_ w: Int?) {
        guard let w else { return }
        workers[w].faulted = true
        apply(dispatcher.fault(w, "bad frame"))
        if !replaceable {
            breakJob(.protocolViolation("bad frame"))
            return
        }
        kill(w)
    }

    /// The driver sees worker `w`'s death: it reads the complete replies
    /// left in the pipe, then settles.
    mutating func reap(_ w: Int?) {
        guard let w, workers[w].dying else { return }
        while !workers[w].pipe.isEmpty { read(w) }
        let worker = workers[w]
        chargeDeath(worker)
        let death = WorkerDeath(
            pid: Int32(100 + w), exit: worker.exit, began: worker.began, finished: worker.finished,
            item: worker.item)
        workers[w] = SimWorker()
        if replaceable {
            apply(dispatcher.exited(w, death))
        } else if dispatcher.workers[w].phase != .stopped || death.exit != .exited(0) {
            breakJob(.rankLost(rank: w + 1, host: "sim", item: nil, why: "killed"))
        }
    }

    /// The written rule, applied to what the simulation knows: the item
    /// running is charged; else the oldest request begun whose reply was
    /// lost; results finished and lost otherwise are innocent losses.
    mutating func chargeDeath(_ worker: SimWorker) {
        guard replaceable else { return }
        let inFlight = Set(dispatcher.workers.flatMap { $0.inFlight.map(\.seq) })
        let lost = worker.held.filter { inFlight.contains($0.seq) }
        if worker.settledFault && !worker.faulted {
            // Killed by the driver for a reply already failed: nothing is charged.
            if let (request, item) = worker.running, inFlight.contains(request.seq) {
                for k in 0...item { losses[request.job.items.lowerBound + k] += 1 }
            }
            for r in lost { for i in r.job.items { losses[i] += 1 } }
        } else if let (request, item) = worker.running, inFlight.contains(request.seq) {
            charges[request.job.items.lowerBound + item] += 1
            for k in 0..<item { losses[request.job.items.lowerBound + k] += 1 }
            for r in lost { for i in r.job.items { losses[i] += 1 } }
        } else if let first = lost.first {
            for i in first.job.items { charges[i] += 1 }
            for r in lost.dropFirst() { for i in r.job.items { losses[i] += 1 } }
        }
    }

    /// Ranks: a fault or a lost rank ends the job, and every rank with it.
    mutating func breakJob(_ error: FleetError) {
        apply(dispatcher.breakPool(error, failRunning: true))
        for i in workers.indices where workers[i].alive || workers[i].dying { workers[i] = SimWorker() }
    }

    mutating func timeUp() {
        for (w, worker) in dispatcher.workers.enumerated() {
            if let entry = worker.inFlight.first(where: { $0.job.timeout != nil }), rng.chance(50) {
                apply(dispatcher.timeUp(w, seq: entry.seq))
                return
            }
        }
    }

    mutating func cancel() {
        let op = operations[rng.below(operations.count)]
        op.cancelled = true
        _ = dispatcher.requests(of: ObjectIdentifier(op))  // the transport tells the workers
    }

    // MARK: Effects and checks

    mutating func apply(_ effects: Effects<SimJob>) {
        note(
            "effects: flush \(effects.flush) kill \(effects.kill) failed \(effects.failed.map { ($0.job.items, $0.error) }) discarded \(effects.discarded.count) finished \(effects.finished)"
        )
        for (job, error) in effects.failed { for i in job.items { end(i, by: error) } }
        for (job, reason) in effects.discarded { for i in job.items { end(i, by: reason) } }
        for job in effects.skipped { for i in job.items { end(i, by: .cancelled) } }
        for w in effects.kill where workers[w].alive { kill(w) }
        if effects.finished { finishedCount += 1 }
        if !replaceable {
            // Ranks that were told to stop exit when their goodbye arrives.
            for w in effects.flush where hasOutbox(w) && dispatcher.workers[w].goodbye { flush(w) }
        }
    }

    mutating func end(_ i: Int, by error: FleetError?) {
        ends[i] += 1
        endedBy[i] = error
        if ends[i] > 1 { fail("item \(i) ended \(ends[i]) times") }
        if case .workerDied(_, _, _, let attempts)? = error {
            if charges[i] <= retries[i] {
                fail(
                    "item \(i) failed after \(attempts) attempts with \(charges[i]) deaths charged and \(retries[i]) retries"
                )
            }
        }
    }

    mutating func checkAfterStep() {
        guard failure == nil else { return }
        for i in retries.indices {
            if charges[i] > retries[i] + 1 {
                fail("item \(i) was charged \(charges[i]) deaths, over retries + 1 = \(retries[i] + 1)")
            }
            if starts[i] > charges[i] + losses[i] + 1 {
                fail("item \(i) began \(starts[i]) times: \(charges[i]) charged deaths, \(losses[i]) innocent losses")
            }
        }
        for (w, worker) in dispatcher.workers.enumerated() {
            if worker.inFlight.count > Pipelining.quickDepth {
                fail("worker \(w) holds \(worker.inFlight.count) requests")
            }
            if worker.inFlight.contains(where: { $0.job.timeout != nil }) && worker.inFlight.count > 1 {
                fail("a request with a time-out shares worker \(w) with \(worker.inFlight.count - 1) others")
            }
            if worker.phase == .stopped && !worker.inFlight.isEmpty { fail("stopped worker \(w) holds requests") }
            // Processes have no round that would assign later: work queued
            // while a worker is idle and able is work forgotten.
            if replaceable, !dispatcher.queue.isEmpty, worker.phase == .ready, worker.inFlight.isEmpty,
                worker.expired.isEmpty, worker.fault == nil, !worker.faultSettled, worker.timedOut == nil
            {
                fail("worker \(w) is idle while \(dispatcher.queue.count) jobs wait")
            }
        }
        if finishedCount > 1 { fail("the pool finished \(finishedCount) times") }
    }

    mutating func checkEnd() {
        for i in ends.indices where ends[i] != 1 { fail("item \(i) ended \(ends[i]) times by the end") }
        if finishedCount != 1 { fail("the pool reported its end \(finishedCount) times") }
        if !dispatcher.queue.isEmpty { fail("\(dispatcher.queue.count) jobs left queued") }
    }

    mutating func fail(_ why: String) {
        if failure == nil { failure = "\(why) (replaceable: \(replaceable), after \(steps) steps)" }
    }

    func describe() -> String {
        "lifecycle \(dispatcher.lifecycle), queue \(dispatcher.queue.count), workers "
            + dispatcher.workers.enumerated().map {
                "\($0.offset): \($0.element.phase) \($0.element.inFlight.count) in flight \($0.element.expired.count) expired"
                    + " [sim alive \(workers[$0.offset].alive) received \(workers[$0.offset].received.count) running \(workers[$0.offset].running?.request.seq ?? 0) held \(workers[$0.offset].held.count) pipe \(workers[$0.offset].pipe.count)]"
            }
            .joined(separator: "; ")
    }
}
