#if MPI
internal import CMPI
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// A serving rank (1 ..< size): data flow
//
//   main thread:  frames message from rank 0 ─▶ request ─▶ (its inputs
//                 message, when big) ─▶ serveBatch ─▶ reply frames ─▶ rank 0
//   fleet-mpi-control thread: every heartbeat interval, a heartbeat to rank
//                 0; takes rank 0's control messages (heartbeats,
//                 configuration, cancellations); exits the process when
//                 rank 0 has been silent longer than the time-out
//
// Replies to quick requests are held while more requests have arrived, so
// a burst of small tasks costs one message back. A shutdown frame ends the
// loop; the rank then finalizes MPI and exits.

/// The serving loop of ranks 1 ..< size.
struct MPIRankMain {
    let registry: Registry
    let world: Communicator
    let comm: MPI_Comm
    /// Where big inputs arrive, kept from one request to the next.
    private let bigInputs = WireBuffer(capacity: 1 << 16)

    init(registry: Registry, world: Communicator, comm: MPI_Comm) {
        self.registry = registry
        self.world = world
        self.comm = comm
    }

    func run() -> Never {
        RemoteError.localOrigin.withLock { $0 = "rank \(world.rank) on \(world.processorName)" }
        let out = WireBuffer(capacity: 1 << 16)
        let control: WorkerControl
        do { control = try WorkerControl() } catch { fatal("\(error)", out) }
        let cancels = Locked<Set<UInt64>>([])
        let watch = DriverWatch(world: world, comm: comm)
        spawnThread(name: "fleet-mpi-control") { watch.run(cancels: cancels) }

        try? appendHello(registry, host: world.processorName, to: out)
        flush(out)
        let message = WireBuffer(capacity: 1 << 16)
        while true {
            message.removeAll()
            do {
                try world.receive(try world.await(source: 0, tag: ExecutorTag.frames, on: comm), into: message, on: comm)
            } catch {
                fatal("\(error)", out)
            }
            var at = 0
            let bytes = message.bytes
            while at < bytes.count {
                let header: FrameHeader
                do {
                    header = try FrameHeader.parse(UnsafeRawBufferPointer(rebasing: bytes[at...]), maxLength: Int(UInt32.max))
                    guard at + FrameHeader.size + Int(header.length) <= bytes.count else {
                        throw FrameError.malformed("a frame runs past the end of its message")
                    }
                } catch {
                    fatal("\(error)", out)
                }
                let body = UnsafeRawBufferPointer(rebasing: bytes[(at + FrameHeader.size)..<(at + FrameHeader.size + Int(header.length))])
                at += FrameHeader.size + Int(header.length)
                switch header.kind {
                case .request:
                    let began = monotonicNanos()
                    let mark = out.count
                    do {
                        try serve(header, body, control: control, cancels: cancels, into: out)
                    } catch {
                        out.truncate(to: mark)
                        fatal("bad request \(header.seq): \(error)", out)
                    }
                    cancels.withLock { _ = $0.remove(header.seq) }
                    let more = at < bytes.count
                        || (try? world.peek(source: 0, tag: ExecutorTag.frames, on: comm)) == true
                    if !more || out.count > 1 << 18 || monotonicNanos() &- began > 50_000 { flush(out) }
                case .shutdown:
                    flush(out)
                    watch.stop()
                    MPIRuntime.shared.finish()
                    exit(0)
                default:
                    fatal("unexpected \(header.kind) frame", out)
                }
            }
        }
    }

    private func serve(_ header: FrameHeader, _ body: UnsafeRawBufferPointer, control: WorkerControl,
                       cancels: Locked<Set<UInt64>>, into out: WireBuffer) throws {
        var r = WireReader(body)
        let taskID = Int(try r.read(UInt32.self))
        let attempt = Int(try r.read(UInt32.self))
        let mode: ErrorMode = try r.read(UInt8.self) == 0 ? .failFast : .collect
        let seq = header.seq
        let isCancelled: @Sendable () -> Bool = { cancels.withLock { $0.contains(seq) } }
        if header.shared {
            // The inputs come in messages of their own, straight from the
            // driver's buffer and the arrays it references.
            let length = Int(try r.read(UInt64.self))
            let inputs = bigInputs
            inputs.removeAll()
            defer {
                inputs.removeAll()
                inputs.shrink(ifOver: 64 << 20)
            }
            // In as many messages as the driver had pieces of memory.
            inputs.reserve(length)
            while inputs.count < length {
                try world.receive(try world.await(source: 0, tag: ExecutorTag.payload, on: comm), into: inputs, on: comm)
            }
            guard inputs.count == length else {
                throw WireError.corrupt("inputs of \(inputs.count) bytes, announced \(length)")
            }
            var ir = WireReader(inputs.bytes)
            try serveBatch(registry: registry, seq: seq, taskID: taskID, attempt: attempt, mode: mode, inputs: &ir,
                           control: control, cancelled: isCancelled, into: out)
        } else {
            try serveBatch(registry: registry, seq: seq, taskID: taskID, attempt: attempt, mode: mode, inputs: &r,
                           control: control, cancelled: isCancelled, into: out)
        }
    }

    private func flush(_ out: WireBuffer) {
        guard out.count > 0 else { return }
        do {
            try out.bytes.withUnsafeBytes { raw in
                try world.sendChunks(raw.baseAddress, count: raw.count, UInt8.self, to: 0, tag: Int(ExecutorTag.frames), on: comm)
            }
        } catch {
            MPIRuntime.shared.abort("rank \(world.rank): cannot reach the driver: \(error)", code: 1)
        }
        out.removeAll()
        out.shrink(ifOver: 1 << 20)
    }

    /// Reports a protocol error to the driver and ends the job.
    private func fatal(_ message: String, _ out: WireBuffer) -> Never {
        try? appendFrame(.fatal, seq: 0, to: out) { $0.appendString(String(message.prefix(4_000))) }
        flush(out)
        MPIRuntime.shared.abort("rank \(world.rank) on \(world.processorName): \(message)", code: 3)
    }
}

/// A serving rank's side of the heartbeat: says it is alive, takes the
/// driver's control messages, and ends the process when the driver has
/// gone silent (its host or network failed), so no rank is left behind.
final class DriverWatch: @unchecked Sendable {
    // Safe: `stopped` is guarded by `mutex`; the rest is immutable, and MPI
    // handles may be used from any thread (MPI_THREAD_MULTIPLE).
    private let mutex = PthreadMutex()
    private var stopped = false
    let world: Communicator
    let comm: MPI_Comm

    init(world: Communicator, comm: MPI_Comm) {
        self.world = world
        self.comm = comm
    }

    func stop() { mutex.withLock { stopped = true } }

    func run(cancels: Locked<Set<UInt64>>) {
        var interval: UInt64 = 250_000_000
        var timeout: UInt64?  // none until the driver says: it may not have made its pool yet
        var lastHeard = monotonicNanos()
        var nextBeat: UInt64 = 0
        var beat: [UInt64] = [ControlWord.heartbeat.rawValue]
        while !mutex.withLock({ stopped }) {
            let now = monotonicNanos()
            if now >= nextBeat {
                MPI_Send(&beat, 1, cmpi_uint64(), 0, ExecutorTag.control, comm)
                nextBeat = now &+ interval
            }
            while let arrival = try? world.poll(source: 0, tag: ExecutorTag.control, on: comm) {
                var words = [UInt64](repeating: 0, count: max(1, arrival.bytes / 8))
                var a = arrival
                MPI_Mrecv(&words, Int32(words.count), cmpi_uint64(), &a.message, &a.status)
                lastHeard = monotonicNanos()
                switch ControlWord(rawValue: words[0]) {
                case .configure? where words.count >= 3:
                    interval = max(words[1], 1_000_000)
                    timeout = words[2]
                case .cancel? where words.count >= 2:
                    cancels.withLock { _ = $0.insert(words[1]) }
                default:
                    break
                }
            }
            if let timeout, monotonicNanos() &- lastHeard > timeout {
                writeStderr("fleet: rank \(world.rank) on \(world.processorName): no word from the driver (rank 0) for \(timeout / 1_000_000) ms; exiting\n")
                _exit(70)
            }
            // Short naps, so cancellations are seen promptly.
            usleep(UInt32(min(10_000, interval / 4_000)))
        }
    }
}
#endif
