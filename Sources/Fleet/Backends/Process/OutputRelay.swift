import CFleetShims

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Forwards what worker processes print (their stdout and stderr share one
/// pipe) to the driver's stderr, each line labelled with the worker, e.g.
/// `[worker 1 pid 4242] loading model`. A line longer than `pieceBytes` goes
/// in labelled pieces of that size, so the work is linear in the bytes
/// whatever the lines. One thread per pool, polling every worker's pipe;
/// once stopped, it writes what is left of each pipe (until its end, or
/// for at most `grace`) and then calls back, so a pool's `shutdown` returns
/// after its workers' last words.
final class OutputRelay: @unchecked Sendable {
    // Safe: `pending`, `stopping` and `done` are guarded by `mutex`;
    // `sources` belongs to the relay thread alone.
    private let mutex = PthreadMutex()
    private var pending: [(fd: Int32, label: String)] = []
    private var stopping = false
    private var done: (@Sendable () -> Void)?
    static let pieceBytes = 64 << 10
    /// How long a stopped relay waits for pipes still open (held by a
    /// process a task left behind).
    static let grace: UInt64 = 1_000_000_000
    private let wakeRead: Int32
    private let wakeWrite: Int32
    private var sources: [Int32: (label: String, partial: [UInt8])] = [:]

    init(name: String) {
        var fds: [Int32] = [0, 0]
        _ = fds.withUnsafeMutableBufferPointer { cfleet_pipe_cloexec($0.baseAddress!) }
        wakeRead = fds[0]
        wakeWrite = fds[1]
        _ = fcntl(wakeRead, F_SETFL, O_NONBLOCK)
        _ = fcntl(wakeWrite, F_SETFL, O_NONBLOCK)
        spawnThread(name: name) { [self] in run() }
    }

    /// Starts relaying `fd` (the relay closes it at its end).
    func add(_ fd: Int32, label: String) {
        mutex.withLock { pending.append((fd, label)) }
        wake()
    }

    /// Lets the thread exit once every pipe has ended (or `grace` has
    /// passed), then calls `then` from it.
    func stop(then: (@Sendable () -> Void)? = nil) {
        mutex.withLock {
            stopping = true
            done = then
        }
        wake()
    }

    private func wake() {
        var byte: UInt8 = 1
        _ = write(wakeWrite, &byte, 1)
    }

    private func run() {
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        var deadline: UInt64?
        while true {
            let (added, stop) = mutex.withLock { () -> ([(fd: Int32, label: String)], Bool) in
                defer { pending = [] }
                return (pending, stopping)
            }
            for (fd, label) in added { sources[fd] = (label, []) }
            if stop && deadline == nil { deadline = monotonicNanos() + Self.grace }
            if stop && (sources.isEmpty || monotonicNanos() >= deadline!) {
                for (fd, source) in sources {
                    if !source.partial.isEmpty { emit(source.label, source.partial) }
                    close(fd)
                }
                sources = [:]
                break
            }
            var polls = [pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)]
            for fd in sources.keys { polls.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0)) }
            let wait = deadline.map { Int32(clamping: ($0 &- min($0, monotonicNanos())) / 1_000_000 + 1) } ?? -1
            if poll(&polls, nfds_t(polls.count), wait) < 0 { continue }
            if polls[0].revents != 0 {
                while read(wakeRead, &buffer, buffer.count) > 0 {}
            }
            for p in polls.dropFirst() where p.revents != 0 {
                let n = read(p.fd, &buffer, buffer.count)
                if n > 0 {
                    forward(p.fd, buffer[0..<n])
                } else if n == 0 || (errno != EINTR && errno != EAGAIN) {
                    if let source = sources[p.fd], !source.partial.isEmpty { emit(source.label, source.partial) }
                    sources[p.fd] = nil
                    close(p.fd)
                }
            }
        }
        close(wakeRead)
        close(wakeWrite)
        mutex.withLock { done }?()
    }

    /// Writes the lines `chunk` completes; keeps the rest for the next
    /// read, in pieces of at most `pieceBytes`. Looks only at the new bytes.
    private func forward(_ fd: Int32, _ chunk: ArraySlice<UInt8>) {
        guard var source = sources[fd] else { return }
        sources[fd] = nil  // `source.partial` is then the only reference: appends do not copy
        if let last = chunk.lastIndex(of: 10) {
            source.partial.append(contentsOf: chunk[..<last])
            emit(source.label, source.partial)
            source.partial.removeAll(keepingCapacity: true)
            source.partial.append(contentsOf: chunk[(last + 1)...])
        } else {
            source.partial.append(contentsOf: chunk)
        }
        while source.partial.count >= Self.pieceBytes {
            emit(source.label, source.partial.prefix(Self.pieceBytes))
            source.partial.removeFirst(Self.pieceBytes)
        }
        sources[fd] = source
    }

    private func emit(_ label: String, _ bytes: some Collection<UInt8>) {
        var out: [UInt8] = []
        for line in bytes.split(separator: 10, omittingEmptySubsequences: false) {
            out.append(contentsOf: "[\(label)] ".utf8)
            out.append(contentsOf: line)
            out.append(10)
        }
        out.withUnsafeBytes { try? writeAll(2, $0) }
    }
}
