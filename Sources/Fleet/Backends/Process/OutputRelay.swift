import CFleetShims

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Forwards what worker processes print (their stdout and stderr share one
/// pipe) to the driver's stderr, each line labelled with the worker, e.g.
/// `[worker 1 pid 4242] loading model`. One thread per pool, polling every
/// worker's pipe; it exits when the pool has terminated and every pipe has
/// reached its end.
final class OutputRelay: @unchecked Sendable {
    // Safe: `pending` and `stopping` are guarded by `mutex`; `sources`
    // belongs to the relay thread alone.
    private let mutex = PthreadMutex()
    private var pending: [(fd: Int32, label: String)] = []
    private var stopping = false
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

    /// Lets the thread exit once every pipe has ended.
    func stop() {
        mutex.withLock { stopping = true }
        wake()
    }

    private func wake() {
        var byte: UInt8 = 1
        _ = write(wakeWrite, &byte, 1)
    }

    private func run() {
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let (added, stop) = mutex.withLock { () -> ([(fd: Int32, label: String)], Bool) in
                defer { pending = [] }
                return (pending, stopping)
            }
            for (fd, label) in added { sources[fd] = (label, []) }
            if stop && sources.isEmpty { break }
            var polls = [pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)]
            for fd in sources.keys { polls.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0)) }
            if poll(&polls, nfds_t(polls.count), -1) < 0 { continue }
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
    }

    private func forward(_ fd: Int32, _ chunk: ArraySlice<UInt8>) {
        guard var source = sources[fd] else { return }
        source.partial.append(contentsOf: chunk)
        if let last = source.partial.lastIndex(of: 10) {
            emit(source.label, source.partial[...last].dropLast())
            source.partial.removeSubrange(...last)
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
