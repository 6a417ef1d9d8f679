#if MPI
internal import CMPI
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// A serving rank (1 ..< size): data flow
//
//   main thread:  frames message from rank 0 ─▶ serveRequests (ServeLoop.swift)
//                 ─▶ (its inputs message, when big) ─▶ reply frames ─▶ rank 0
//   fleet-mpi-control thread: every heartbeat interval, a heartbeat to rank
//                 0 (non-blocking: a cut-off host never stalls this thread);
//                 takes rank 0's control messages (heartbeats, configuration,
//                 cancellations); exits the process when rank 0 has been
//                 silent longer than the time-out
//
// A shutdown frame ends the loop; the rank then finalizes MPI and exits.

/// Exit status of a rank that lost its driver.
enum RankStatus {
    static let driverLost: Int32 = 70
    static let protocolFault: Int32 = 3
}

/// The serving loop of ranks 1 ..< size.
struct MPIRankMain {
    let registry: Registry
    let world: Communicator
    let comm: MPI_Comm

    func run() -> Never {
        RemoteError.localOrigin.withLock { $0 = "rank \(world.rank) on \(world.processorName)" }
        let control: WorkerControl
        do { control = try WorkerControl() } catch {
            MPIRuntime.shared.abort(
                "rank \(world.rank) on \(world.processorName): \(error)", code: RankStatus.protocolFault)
        }
        let cancels = Locked<Set<UInt64>>([])
        let watch = DriverWatch(world: world, comm: comm)
        spawnThread(name: "fleet-mpi-control") { watch.run(cancels: cancels) }
        var channel = RankChannel(world: world, comm: comm, control: control, cancels: cancels, watch: watch)
        let host = world.processorName
        serveRequests(&channel, registry: registry) { try appendHello(registry, host: host, to: $0) }
    }
}

/// A rank's channel: request frames in messages from rank 0, several to a
/// message; big inputs in messages of their own.
struct RankChannel: WorkerChannel {
    let world: Communicator
    let comm: MPI_Comm
    let control: WorkerControl
    let cancels: Locked<Set<UInt64>>
    let watch: DriverWatch
    var sendsSegments: Bool { false }
    var maxFrameBytes: Int { Int(UInt32.max) }
    /// The message being read, and where in it.
    private let message = WireBuffer(capacity: 1 << 16)
    private var at = 0
    /// Where big inputs arrive, kept from one request to the next.
    private let bigInputs = WireBuffer(capacity: 1 << 16)
    /// Big inputs' buffer is given back above this size: a job of many
    /// big requests reuses it, one outsized request does not pin its memory.
    private static let keptInputBytes = 64 << 20

    init(world: Communicator, comm: MPI_Comm, control: WorkerControl, cancels: Locked<Set<UInt64>>, watch: DriverWatch)
    {
        self.world = world
        self.comm = comm
        self.control = control
        self.cancels = cancels
        self.watch = watch
    }

    mutating func next() throws -> (FrameHeader, UnsafeRawBufferPointer)? {
        if at >= message.count {
            message.removeAll()
            at = 0
            try world.receive(try world.await(source: 0, tag: ExecutorTag.frames, on: comm), into: message, on: comm)
        }
        let bytes = UnsafeRawBufferPointer(message.bytes)
        let header = try FrameHeader.parse(UnsafeRawBufferPointer(rebasing: bytes[at...]), maxLength: Int(UInt32.max))
        let end = at + FrameHeader.size + Int(header.length)
        guard end <= bytes.count else { throw FrameError.malformed("a frame runs past the end of its message") }
        let body = UnsafeRawBufferPointer(rebasing: bytes[(at + FrameHeader.size)..<end])
        at = end
        return (header, body)
    }

    mutating func hasFrameAtHand() -> Bool {
        at < message.count || (try? world.peek(source: 0, tag: ExecutorTag.frames, on: comm)) == true
    }

    mutating func withInputs<T>(
        _ header: FrameHeader, _ rest: inout WireReader,
        _ body: (inout WireReader) throws -> T
    ) throws -> T {
        let seq = header.seq
        defer { cancels.withLock { _ = $0.remove(seq) } }
        guard header.shared else { return try body(&rest) }
        // The inputs come in messages of their own, straight from the
        // driver's buffer and the arrays it references: as many messages
        // as the driver had pieces of memory.
        let length = Int(try rest.read(UInt64.self))
        let inputs = bigInputs
        inputs.removeAll()
        defer {
            inputs.removeAll()
            inputs.shrink(ifOver: Self.keptInputBytes)
        }
        inputs.reserve(length)
        while inputs.count < length {
            try world.receive(try world.await(source: 0, tag: ExecutorTag.payload, on: comm), into: inputs, on: comm)
        }
        guard inputs.count == length else {
            throw WireError.corrupt("inputs of \(inputs.count) bytes, announced \(length)")
        }
        var reader = WireReader(inputs.bytes)
        return try body(&reader)
    }

    func isCancelled(_ seq: UInt64) -> @Sendable () -> Bool {
        let cancels = cancels
        return { cancels.withLock { $0.contains(seq) } }
    }

    func send(_ out: WireBuffer) {
        do {
            try out.bytes.withUnsafeBytes { raw in
                try world.sendChunks(
                    raw.baseAddress, count: raw.count, UInt8.self, to: 0, tag: Int(ExecutorTag.frames), on: comm)
            }
        } catch {
            MPIRuntime.shared.abort("rank \(world.rank): cannot reach the driver: \(error)", code: 1)
        }
    }

    func finish() -> Never {
        watch.stop()
        MPIRuntime.shared.finish()
        exit(0)
    }

    func abandon(_ message: String) -> Never {
        MPIRuntime.shared.abort(
            "rank \(world.rank) on \(world.processorName): \(message)", code: RankStatus.protocolFault)
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
        let beat = ControlMessage([ControlWord.heartbeat.rawValue])
        // Heartbeats are sent without blocking, one at a time: a host cut
        // off leaves the send pending, and the silence check below still
        // runs on time.
        var sends = PendingSends()
        while !mutex.withLock({ stopped }) {
            let now = monotonicNanos()
            _ = try? sends.progress()
            if now >= nextBeat && sends.isEmpty {
                beat.words.withUnsafeBytes { raw in
                    try? sends.send(
                        raw.baseAddress, count: raw.count, owner: beat, to: 0, tag: ExecutorTag.control,
                        on: comm, limit: raw.count)
                }
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
                writeStderr(
                    "fleet: rank \(world.rank) on \(world.processorName): no word from the driver (rank 0) for \(timeout / 1_000_000) ms; exiting\n"
                )
                _exit(RankStatus.driverLost)
            }
            // Short naps (at most 10 ms, a quarter of the interval), so
            // cancellations are seen promptly.
            usleep(UInt32(min(10_000, interval / 4 / 1_000)))
        }
    }
}
#endif
