import CFleetShims
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// How the driver tells a process it is a worker: an environment variable
/// naming the protocol version and the driver's pid, and four inherited
/// descriptors.
struct WorkerSpec {
    static let variable = "FLEET_WORKER"
    static let requestFD: Int32 = 3
    static let replyFD: Int32 = 4
    static let lifelineFD: Int32 = 5
    static let controlFD: Int32 = 6
    /// The pool's shared arena, when it has one.
    static let arenaFD: Int32 = 7
    static let firstFree: Int32 = 8

    let version: Int
    let parent: Int32
    let maxFrameBytes: Int

    var environmentValue: String { "\(version);\(parent);\(maxFrameBytes)" }

    static func fromEnvironment() -> WorkerSpec? {
        guard let raw = getenv(variable) else { return nil }
        let parts = String(cString: raw).split(separator: ";").compactMap { Int($0) }
        // Workers must not pass the role on to processes their tasks start.
        unsetenv(variable)
        guard parts.count == 3 else {
            writeStderr("fleet worker: malformed \(variable)\n")
            exit(3)
        }
        return WorkerSpec(version: parts[0], parent: Int32(parts[1]), maxFrameBytes: parts[2])
    }
}

// Worker process: data flow
//
//   fd 3 (requests) ─▶ FrameReader ─▶ request ─▶ task.serve(items) ─▶ reply ─▶ fd 4
//   fd 5 (lifeline): a thread blocks reading it; EOF means the driver died,
//                    and the worker exits at once, even mid-task
//   fd 6 (control page): the request and item being run, for the driver
//   fd 1, 2: the task's own output, relayed by the driver to its stderr
//
// The worker serves requests in the order they arrive, one at a time.
// Replies to short requests are held while more requests are already
// buffered, so a burst of small tasks costs one write.

/// The serving loop of a worker process.
struct WorkerMain {
    let registry: Registry
    let spec: WorkerSpec

    func run() -> Never {
        signal(SIGPIPE, SIG_IGN)
        watchLifeline()
        if getppid() != spec.parent { exit(0) }  // the driver is already gone
        let out = WireBuffer(capacity: 1 << 16)
        out.allowsExternal = true  // big results are written from their own memory
        let control: WorkerControl
        do {
            control = try WorkerControl(inherited: WorkerSpec.controlFD)
        } catch {
            fatal("\(error)", out)
        }
        try? appendHello(registry, to: out)
        flush(out)
        if spec.version != Int(wireProtocolVersion) {
            fatal("the driver speaks protocol version \(spec.version), this worker \(wireProtocolVersion)", out)
        }
        let arena = try? ArenaView(inherited: WorkerSpec.arenaFD)
        let reader = FrameReader(fd: WorkerSpec.requestFD, maxLength: spec.maxFrameBytes)
        while true {
            let frame: (FrameHeader, UnsafeRawBufferPointer)?
            do { frame = try reader.next() } catch { fatal("\(error)", out) }
            guard let (header, body) = frame else {
                flush(out)
                exit(0)
            }
            switch header.kind {
            case .request, .initialize:
                let began = monotonicNanos()
                let mark = out.count
                do {
                    try serve(header, body, arena: arena, control: control, into: out)
                } catch {
                    out.truncate(to: mark)  // drop the half-written reply
                    fatal("bad request \(header.seq): \(error)", out)
                }
                // Hold short replies while more requests wait; flush before blocking.
                if !reader.hasBufferedFrame || out.count > 1 << 18 || monotonicNanos() &- began > 50_000 {
                    flush(out)
                }
            case .shutdown:
                flush(out)
                exit(0)
            default:
                fatal("unexpected \(header.kind) frame", out)
            }
        }
    }

    private func serve(_ header: FrameHeader, _ body: UnsafeRawBufferPointer, arena: ArenaView?,
                       control: WorkerControl, into out: WireBuffer) throws {
        var r = WireReader(body)
        let taskID = Int(try r.read(UInt32.self))
        let attempt = Int(try r.read(UInt32.self))
        let mode: ErrorMode = try r.read(UInt8.self) == 0 ? .failFast : .collect
        if header.shared {
            guard let arena else { throw WireError.corrupt("a shared payload, but no shared arena") }
            let offset = try r.read(UInt64.self), length = try r.read(UInt64.self)
            guard r.isAtEnd else { throw WireError.corrupt("bytes after a shared payload's range") }
            r = WireReader(try arena.bytes(offset: offset, length: length))
        }
        control.seq = header.seq
        control.current = 0
        try serveBatch(registry: registry, seq: header.seq, taskID: taskID, attempt: attempt, mode: mode, inputs: &r,
                       control: control, cancelled: { control.isCancelled(header.seq) }, into: out)
        let length = out.count + out.externalBytes  // an upper bound on this frame's size
        if length > spec.maxFrameBytes {
            // Reported while `control.seq` still names the request, so the
            // driver blames it.
            throw FrameError.oversized(length, limit: spec.maxFrameBytes)
        }
        control.seq = 0
    }

    private func flush(_ out: WireBuffer) {
        guard out.count > 0 else { return }
        do { try out.write(to: WorkerSpec.replyFD) } catch { exit(0) }  // the driver is gone
        out.removeAll()
        out.shrink(ifOver: 1 << 20)
    }

    /// Reports a protocol error to the driver and exits.
    private func fatal(_ message: String, _ out: WireBuffer) -> Never {
        try? appendFrame(.fatal, seq: 0, to: out) { $0.appendString(String(message.prefix(4_000))) }
        flush(out)
        exit(3)
    }

    /// Exits as soon as the driver dies: the lifeline's write end is held
    /// by the driver alone, so the read returns when it is gone.
    private func watchLifeline() {
        spawnThread(name: "fleet-lifeline") {
            var byte: UInt8 = 0
            while read(WorkerSpec.lifelineFD, &byte, 1) < 0 && errno == EINTR {}
            _exit(0)
        }
    }
}


/// Runs request `seq`'s batch of task `taskID` over the encoded `inputs`
/// and appends the reply frame to `out`: what a worker process and an MPI
/// rank do with each request.
func serveBatch(registry: Registry, seq: UInt64, taskID: Int, attempt: Int, mode: ErrorMode, inputs r: inout WireReader,
                control: WorkerControl, cancelled: @escaping @Sendable () -> Bool, into out: WireBuffer) throws {
    guard taskID < registry.tasks.count, let task = registry.tasks[taskID] as? any RemoteServable else {
        throw WireError.corrupt("no task with id \(taskID)")
    }
    try appendFrame(.reply, seq: seq, to: out) { b in
        let began = monotonicNanos()
        let nanosAt = b.count
        b.append(UInt64(0))
        let token = CancellationToken(probe: cancelled)
        try FleetTask.$attempt.withValue(attempt) {
            try FleetTask.$token.withValue(token) {
                try task.serve(&r, mode: mode, control: control, into: b)
            }
        }
        b.patch(monotonicNanos() &- began, at: nanosAt)
    }
}
