import CFleetShims

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A page of memory shared by the driver and one worker process. The worker
/// records which request and which item of it it is running; when it dies,
/// the driver reads the page to learn which item killed it, so that only
/// that item is failed or retried.
final class WorkerControl: @unchecked Sendable {
    // Safe: the page holds aligned 64-bit words, each written by one side
    // only (the worker: `seq`, `current`; the driver: the cancel ring), and
    // aligned 64-bit loads and stores are atomic on the platforms Fleet
    // supports. Readers poll; nothing else is inferred from the order.
    private let words: UnsafeMutablePointer<UInt64>
    let fd: Int32

    /// Maps a fresh page (driver side).
    init() throws {
        fd = cfleet_memfd("fleet-control")
        guard fd >= 0 else { throw FleetError.workerStartFailed("memfd_create: \(String(cString: strerror(errno)))") }
        guard ftruncate(fd, 4096) == 0 else {
            close(fd)
            throw FleetError.workerStartFailed("ftruncate: \(String(cString: strerror(errno)))")
        }
        guard let p = mmap(nil, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), p != MAP_FAILED else {
            close(fd)
            throw FleetError.workerStartFailed("mmap: \(String(cString: strerror(errno)))")
        }
        words = p.bindMemory(to: UInt64.self, capacity: Self.wordCount)
        words.update(repeating: 0, count: Self.wordCount)
    }

    /// Maps the page inherited as descriptor `fd` (worker side).
    init(inherited fd: Int32) throws {
        self.fd = fd
        guard let p = mmap(nil, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), p != MAP_FAILED else {
            throw FleetError.protocolViolation("cannot map the control page")
        }
        words = p.bindMemory(to: UInt64.self, capacity: Self.wordCount)
    }

    // Layout: [0] the last request begun, [1] the item being run within it,
    // [2] cancel ring write position, [3] the last request finished,
    // [8..<8+ringSize] requests whose work is no longer wanted.
    static let ringSize = 64
    static let wordCount = 8 + ringSize

    /// Driver: marks request `seq` as no longer wanted.
    func cancel(_ seq: UInt64) {
        let at = Int(words[2] % UInt64(Self.ringSize))
        words[8 + at] = seq
        words[2] &+= 1
    }

    /// Worker: whether the driver has marked request `seq`.
    func isCancelled(_ seq: UInt64) -> Bool {
        guard seq != 0 else { return false }  // 0: not a request (the initializer)
        for i in 0..<Self.ringSize where words[8 + i] == seq { return true }
        return false
    }

    deinit {
        munmap(words, 4096)
        close(fd)
    }

    /// The last request the worker began (0: none yet). The worker writes
    /// the item first, then this, so a death between the two blames item 0
    /// of the new request rather than a stale item of the old one.
    var began: UInt64 {
        get { words[0] }
        set { words[0] = newValue }
    }

    /// The position, within the request begun, of the item being run.
    var current: Int {
        get { Int(truncatingIfNeeded: words[1]) }
        set { words[1] = UInt64(truncatingIfNeeded: newValue) }
    }

    /// The last request the worker finished: equal to `began` when it is
    /// between requests (writing a reply, or waiting for the next).
    var finished: UInt64 {
        get { words[3] }
        set { words[3] = newValue }
    }

    /// Worker: request `seq` begins.
    func begin(_ seq: UInt64) {
        current = 0
        began = seq
    }
}
