import Fleet
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A structured input, to exercise the keyed wire form.
public struct Point: Codable, Sendable, Equatable {
    public var x: Double
    public var y: Double
    public var label: String?
    public init(x: Double, y: Double, label: String? = nil) {
        self.x = x
        self.y = y
        self.label = label
    }
}

/// Statistics accumulated over feature files, SIDEKIT style.
public struct FeatureStats: Codable, Sendable, Equatable, Mergeable {
    public var files = 0
    public var frames = 0
    public var sum = 0
    public var sumOfSquares = 0
    public var calls = 0
    public init() {}
    public mutating func merge(_ other: FeatureStats) {
        files += other.files
        frames += other.frames
        sum += other.sum
        sumOfSquares += other.sumOfSquares
        calls += other.calls
    }
}

/// The arguments of the one-process function: a list of feature "files"
/// (here their contents) and a setting every part shares.
public struct FeatureJob: Codable, Sendable {
    public var files: [[Int]]
    public var scale: Int
    public init(files: [[Int]], scale: Int) {
        self.files = files
        self.scale = scale
    }
}

/// The one-process function: statistics over every file of the job.
public func accumulateStatistics(_ job: FeatureJob) -> FeatureStats {
    var stats = FeatureStats()
    stats.calls = 1
    for file in job.files {
        stats.files += 1
        for x in file {
            stats.frames += 1
            stats.sum += x * job.scale
            stats.sumOfSquares += x * x * job.scale * job.scale
        }
    }
    return stats
}

/// A struct with a big array between two other fields.
public struct Point3: Codable, Sendable, Equatable {
    public var name: String
    public var values: [UInt16]
    public var tail: Int
}

/// A task error with a recognisable type and message.
public struct TaskFailure: Error, CustomStringConvertible {
    public let item: Int
    public init(item: Int) { self.item = item }
    public var description: String { "task failure on \(item)" }
}

/// The remote tasks the test suite runs on every backend.
public enum TestTasks {
    public static let square = RemoteTask("square") { (x: Int) in x &* x }
    public static let norm = RemoteTask("norm") { (p: Point) in (p.x * p.x + p.y * p.y).squareRoot() }
    public static let failOn7 = RemoteTask("failOn7") { (x: Int) throws -> Int in
        if x % 10 == 7 { throw TaskFailure(item: x) }
        return x
    }
    /// Sleeps `ms` milliseconds (blocking), returns it.
    public static let sleep = RemoteTask("sleep") { (ms: Int) -> Int in
        usleep(UInt32(ms * 1000))
        return ms
    }
    /// Dies the way its input says: 0 SIGKILL, 1 abort, 2 exit(7), 3 SIGSEGV.
    public static let die = RemoteTask("die") { (how: Int) -> Int in
        switch how {
        case 0: kill(getpid(), SIGKILL)
        case 1: abort()
        case 2: exit(7)
        default:
            // A real invalid access, so that the runtime's crash handler sees a fault.
            UnsafeMutablePointer<Int>(bitPattern: 8)!.pointee = 1
        }
        return -1
    }
    /// Kills its worker on a negative input; returns others unchanged.
    public static let dieOnNegative = RemoteTask("dieOnNegative") { (x: Int) -> Int in
        if x < 0 { kill(getpid(), SIGKILL) }
        return x
    }
    /// The chaos task: about 1% of items kill their worker on their first
    /// attempt (SIGKILL or abort, fixed per item).
    public static let chaos = RemoteTask("chaos") { (x: Int) -> Int in
        if FleetTask.attempt == 1, chaosVictim(x) {
            if x % 2 == 0 { kill(getpid(), SIGKILL) } else { abort() }
        }
        return x &* 3 &+ 1
    }
    /// Prints to stdout and stderr, returns its input.
    public static let chatty = RemoteTask("chatty") { (x: Int) -> Int in
        let line = "hello from item \(x)\n"
        _ = line.withCString { write(1, $0, strlen($0)) }
        _ = "stderr from item \(x)\n".withCString { write(2, $0, strlen($0)) }
        return x
    }
    /// Sleeps `ms` milliseconds, then returns this worker process's pid.
    public static let sleepPid = RemoteTask("sleepPid") { (ms: Int) -> Int32 in
        usleep(UInt32(ms * 1000))
        return getpid()
    }
    /// This worker process's pid.
    public static let pid = RemoteTask("pid") { (_: Int) -> Int32 in getpid() }
    /// Bytes in, their sum out.
    public static let sumBytes = RemoteTask("sumBytes") { (b: [UInt8]) -> Int in b.reduce(0) { $0 + Int($1) } }

    /// Writes garbage where its reply should go (the worker's channel to the
    /// driver is descriptor 4), then returns normally.
    public static let corruptReply = RemoteTask("corruptReply") { (x: Int) -> Int in
        var garbage: [UInt8] = [0xFF, 0xFF, 0xFF, 0x7F, 0x03, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0xAB]
        _ = write(4, &garbage, garbage.count)
        return x
    }
    /// Spins until its item is cancelled; returns whether it saw it.
    public static let spinUntilCancelled = RemoteTask("spinUntilCancelled") { (ms: Int) -> Bool in
        for _ in 0..<ms {
            if FleetTask.isCancelled { return true }
            usleep(1000)
        }
        return false
    }

    /// A 1 MiB result: every byte is `x % 251`, the first eight hold `x`.
    /// Its run (`FleetTask.attempt`), once that reaches `x`; until then the
    /// worker exits.
    public static let attemptOrDie = RemoteTask("attemptOrDie") { (x: Int) -> Int in
        if FleetTask.attempt < x { exit(3) }
        return FleetTask.attempt
    }
    /// How deep a value nests through arrays.
    public static let unkeyedDepth = RemoteTask("unkeyedDepth") { (n: UnkeyedNest) -> Int in n.depth }
    /// How deep a value nests through keyed entries.
    public static let keyedDepth = RemoteTask("keyedDepth") { (n: KeyedNest) -> Int in n.depth }
    /// Writes `bytes` bytes of "x" to stderr in 64 KiB writes, with a
    /// newline every `line` bytes (none when nil).
    public static let noisy = RemoteTask("noisy") { (job: NoisyJob) -> Int in
        var chunk = [UInt8](repeating: UInt8(ascii: "x"), count: 1 << 16)
        if let line = job.line { for i in stride(from: line - 1, to: chunk.count, by: line) { chunk[i] = 10 } }
        var left = job.bytes
        while left > 0 {
            let n = min(left, chunk.count)
            _ = chunk.withUnsafeBytes { write(2, $0.baseAddress, n) }
            left -= n
        }
        return job.bytes
    }
    /// Prints `out i` (stdout, with `print`) and writes `err i` (stderr) in
    /// turn, `n` times.
    public static let interleaved = RemoteTask("interleaved") { (n: Int) -> Int in
        for i in 0..<n {
            print("out \(i)")
            _ = "err \(i)\n".withCString { write(2, $0, strlen($0)) }
        }
        return n
    }
    /// `n` bytes of 7.
    public static let filled = RemoteTask("filled") { (n: Int) -> [UInt8] in [UInt8](repeating: 7, count: n) }
    public static let megabyte = RemoteTask("megabyte") { (x: Int) -> [UInt8] in
        var bytes = [UInt8](repeating: UInt8(x % 251), count: 1 << 20)
        withUnsafeBytes(of: UInt64(x).littleEndian) { for (k, b) in $0.enumerated() { bytes[k] = b } }
        return bytes
    }
    /// Appends a line to the file at `path` (so the runs can be counted),
    /// closes the worker's channel descriptors (3 to 7), and returns: its
    /// reply can never be written.
    public static let closeChannel = RemoteTask("closeChannel") { (path: String) -> Int in
        appendLine(path, "ran")
        for fd in Int32(3)...7 { close(fd) }
        return 1
    }
    /// Starts `sleep 600` in the background (its pid written to `path`),
    /// then aborts (`hang` false) or sleeps for ever (`hang` true).
    public static let orphan = RemoteTask("orphan") { (job: OrphanJob) -> Int in
        _ = system("sleep 600 & echo $! > \(job.path)")
        if job.hang { while true { Glibc.sleep(60) } }
        abort()
    }

    /// The worker initializer of the tests: sets `initialized` in the
    /// worker, or throws for a negative input.
    public static let setUp = RemoteTask("setUp") { (value: Int) -> Bool in
        if value < 0 { throw TaskFailure(item: value) }
        initialized.withLock { $0 = value }
        return true
    }
    /// What `setUp` stored in this worker (0 if it never ran).
    public static let readInitialized = RemoteTask("readInitialized") { (_: Int) -> Int in initialized.withLock { $0 } }

    /// Graph leaves: the identity.
    public static let leaf = RemoteTask("leaf") { (x: Int) in x }
    /// Graph inner nodes: the wrapping sum of the arguments; throws on a negative sum.
    public static let sumAll = RemoteTask("sumAll") { (xs: [Int]) throws -> Int in
        let s = xs.reduce(0, &+)
        if s < 0 { throw TaskFailure(item: s) }
        return s
    }

    /// A result with a big numeric array inside a struct (written by the
    /// worker from the array's own memory).
    public static let bigStruct = RemoteTask("bigStruct") { (n: Int) -> Point3 in
        Point3(name: "big", values: (0..<n).map { UInt16(truncatingIfNeeded: $0) }, tail: n)
    }

    /// `accumulateStatistics` as a remote task.
    public static let accumulate = RemoteTask("accumulate", accumulateStatistics)

    public static let all: [any RemoteTaskDeclaration] = [
        setUp, readInitialized, leaf, sumAll, accumulate, bigStruct,
        square, norm, failOn7, sleep, sleepPid, die, dieOnNegative, chaos, chatty, pid, sumBytes, corruptReply,
        megabyte, filled, attemptOrDie, unkeyedDepth, keyedDepth, noisy, interleaved,
        closeChannel, orphan, spinUntilCancelled,
    ]
}

/// Per-process state set by the `setUp` initializer.
let initialized = Mutex(0)

/// Whether item `x` kills its worker in the chaos test: a fixed ~1% of items.
public func chaosVictim(_ x: Int) -> Bool {
    var h = UInt64(x) &* 0x9E37_79B9_7F4A_7C15
    h ^= h >> 29
    return h % 100 == 0
}

/// What `TestTasks.orphan` does: where to write its child's pid, and
/// whether to hang rather than abort.
public struct OrphanJob: Codable, Sendable {
    public var path: String
    public var hang: Bool
    public init(path: String, hang: Bool) {
        self.path = path
        self.hang = hang
    }
}

/// Appends `line` and a newline to the file at `path`.
func appendLine(_ path: String, _ line: String) {
    let fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
    guard fd >= 0 else { return }
    _ = (line + "\n").withCString { write(fd, $0, strlen($0)) }
    close(fd)
}

/// A value nested through arrays: on the wire, a count of one per level.
public struct UnkeyedNest: Codable, Sendable {
    public var inner: [UnkeyedNest]
    public init(from decoder: any Decoder) throws {
        inner = try decoder.singleValueContainer().decode([UnkeyedNest].self)
    }
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(inner)
    }
    public var depth: Int { 1 + (inner.first?.depth ?? 0) }
}

/// A value nested through keyed entries.
public final class KeyedNest: Codable, Sendable {
    public let inner: KeyedNest?
    public var depth: Int { 1 + (inner?.depth ?? 0) }
}

/// What `noisy` writes.
public struct NoisyJob: Codable, Sendable {
    public var bytes: Int
    public var line: Int?
    public init(bytes: Int, line: Int?) {
        self.bytes = bytes
        self.line = line
    }
}
