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
            exit(WorkerStatus.badSpec)
        }
        return WorkerSpec(version: parts[0], parent: Int32(parts[1]), maxFrameBytes: parts[2])
    }
}

// Worker process: data flow
//
//   fd 3 (requests) ─▶ FrameReader ─▶ serveRequests (ServeLoop.swift) ─▶ reply ─▶ fd 4
//   fd 5 (lifeline): a thread blocks reading it; EOF means the driver died,
//                    and the worker exits at once, even mid-task
//   fd 6 (control page): the request and item being run, for the driver
//   fd 7 (arena): big inputs, in shared memory
//   fd 1, 2: the task's own output, relayed by the driver to its stderr
//
// Descriptors 3 to 7 are made close-on-exec first thing, so a process a
// task starts never holds the driver's channels open.

/// Exit statuses of a worker process.
enum WorkerStatus {
    /// The driver's environment variable was malformed.
    static let badSpec: Int32 = 3
    /// The worker gave up on a protocol fault (it has said why in a frame).
    static let protocolFault: Int32 = 3
}

/// The serving loop of a worker process.
struct WorkerMain {
    let registry: Registry
    let spec: WorkerSpec

    func run() -> Never {
        signal(SIGPIPE, SIG_IGN)
        for fd in WorkerSpec.requestFD...WorkerSpec.arenaFD { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        // stdout is a pipe here, which C would buffer by the block: by the
        // line, `print` output keeps its place among stderr's lines.
        cfleet_line_buffer_stdout()
        watchLifeline()
        if getppid() != spec.parent { exit(0) }  // the driver is already gone
        let control: WorkerControl
        do {
            control = try WorkerControl(inherited: WorkerSpec.controlFD)
        } catch {
            writeStderr("fleet worker: \(error)\n")
            exit(WorkerStatus.protocolFault)
        }
        var channel = PipeChannel(
            control: control, reader: FrameReader(fd: WorkerSpec.requestFD, maxLength: spec.maxFrameBytes),
            arena: try? ArenaView(inherited: WorkerSpec.arenaFD), maxFrameBytes: spec.maxFrameBytes)
        if spec.version != Int(wireProtocolVersion) {
            // The driver refuses the worker on its hello; the fatal frame says why here too.
            let out = WireBuffer()
            try? appendHello(registry, to: out)
            try? appendFrame(.fatal, seq: 0, to: out) {
                $0.appendString(
                    "the driver speaks protocol version \(spec.version), this worker \(wireProtocolVersion)")
            }
            channel.send(out)
            exit(WorkerStatus.protocolFault)
        }
        serveRequests(&channel, registry: registry) { try appendHello(registry, to: $0) }
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

/// A worker process's channel: requests on fd 3, replies on fd 4, big
/// inputs in the shared arena.
struct PipeChannel: WorkerChannel {
    let control: WorkerControl
    let reader: FrameReader
    let arena: ArenaView?
    let maxFrameBytes: Int
    var sendsSegments: Bool { true }  // big results are written from their own memory

    mutating func next() throws -> (FrameHeader, UnsafeRawBufferPointer)? { try reader.next() }

    mutating func hasFrameAtHand() -> Bool { reader.hasBufferedFrame }

    mutating func withInputs<T>(
        _ header: FrameHeader, _ rest: inout WireReader,
        _ body: (inout WireReader) throws -> T
    ) throws -> T {
        guard header.shared else { return try body(&rest) }
        guard let arena else { throw WireError.corrupt("a shared payload, but no shared arena") }
        let offset = try rest.read(UInt64.self)
        let length = try rest.read(UInt64.self)
        guard rest.isAtEnd else { throw WireError.corrupt("bytes after a shared payload's range") }
        var inputs = WireReader(try arena.bytes(offset: offset, length: length))
        return try body(&inputs)
    }

    func isCancelled(_ seq: UInt64) -> @Sendable () -> Bool {
        let control = control
        return { control.isCancelled(seq) }
    }

    func send(_ out: WireBuffer) {
        do { try out.write(to: WorkerSpec.replyFD) } catch { exit(0) }  // the driver is gone
    }

    func finish() -> Never { exit(0) }

    func abandon(_ message: String) -> Never { exit(WorkerStatus.protocolFault) }
}
