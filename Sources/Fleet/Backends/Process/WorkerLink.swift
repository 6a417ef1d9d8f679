import CFleetShims
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The driver's end of one worker process: its pid, the pipes to it, and
/// its control page. Starting one runs the worker executable with
/// `posix_spawn` (never `fork` alone, which is unsafe in a threaded
/// program).
final class WorkerLink: @unchecked Sendable {
    // Safe: the descriptors and pid never change after `init`; writes are
    // serialised by `writeLock`; `control` is read only after the worker
    // has exited.
    let pid: Int32
    let requestFD: Int32
    let replyFD: Int32
    let lifelineFD: Int32
    let control: WorkerControl
    let writeLock = PthreadMutex()
    /// Frames being written, reused; guarded by `writeLock`.
    let sendBuffer = WireBuffer(capacity: 1 << 12)
    private var reaped: WorkerExit?

    private init(pid: Int32, requestFD: Int32, replyFD: Int32, lifelineFD: Int32, control: WorkerControl) {
        self.pid = pid
        self.requestFD = requestFD
        self.replyFD = replyFD
        self.lifelineFD = lifelineFD
        self.control = control
    }

    /// Starts a worker running `executable`. Its output pipe's read end is
    /// handed to `relay`, labelled with `label(pid)`.
    static func spawn(executable: String, spec: WorkerSpec, environment: [String: String], arena: SharedArena?,
                      relay: OutputRelay, label: (Int32) -> String) throws -> WorkerLink {
        let control = try WorkerControl()
        var fds: [[Int32]] = []
        defer { for pair in fds { for fd in pair where fd >= 0 { close(fd) } } }
        for _ in 0..<4 {
            var pair: [Int32] = [-1, -1]
            guard pair.withUnsafeMutableBufferPointer({ cfleet_pipe_cloexec($0.baseAddress!) }) == 0 else {
                throw FleetError.workerStartFailed("pipe: \(String(cString: strerror(errno)))")
            }
            fds.append(pair.map(aboveChildDescriptors))
        }
        let (request, reply, lifeline, output) = (fds[0], fds[1], fds[2], fds[3])
        _ = cfleet_set_pipe_size(request[1], 1 << 20)
        _ = cfleet_set_pipe_size(reply[1], 1 << 20)
        let controlFD = aboveChildDescriptors(dup(control.fd))
        defer { close(controlFD) }
        let arenaFD = arena.map { aboveChildDescriptors(dup($0.fd)) } ?? -1
        defer { if arenaFD >= 0 { close(arenaFD) } }
        var mapping: [Int32] = [
            request[0], WorkerSpec.requestFD, reply[1], WorkerSpec.replyFD,
            lifeline[0], WorkerSpec.lifelineFD, controlFD, WorkerSpec.controlFD,
            output[1], 1, output[1], 2,
        ]
        if arenaFD >= 0 { mapping += [arenaFD, WorkerSpec.arenaFD] }
        var env = currentEnvironment()
        // A crashing worker is reported by the driver (item, pid, signal);
        // the Swift runtime's backtrace of it is opt-in, with
        // SWIFT_BACKTRACE=enable=yes in the environment.
        if env["SWIFT_BACKTRACE"] == nil { env["SWIFT_BACKTRACE"] = "enable=no" }
        for (k, v) in environment { env[k] = v }
        env[WorkerSpec.variable] = spec.environmentValue
        let envStrings = env.map { "\($0.key)=\($0.value)" }
        var pid: pid_t = 0
        let rc = withCStrings([executable]) { argv in
            withCStrings(envStrings) { envp in
                cfleet_spawn(executable, argv, envp, mapping, Int32(mapping.count / 2), WorkerSpec.firstFree, &pid)
            }
        }
        guard rc == 0 else {
            throw FleetError.workerStartFailed("cannot run \(executable): \(String(cString: strerror(rc)))")
        }
        let link = WorkerLink(pid: pid, requestFD: request[1], replyFD: reply[0], lifelineFD: lifeline[1], control: control)
        relay.add(output[0], label: label(pid))
        // The link and the relay own these now; close the child's ends.
        fds = [[request[0], reply[1], lifeline[0], output[1]]]
        return link
    }

    /// Waits for the worker to exit and returns how it ended (once).
    func reap() -> WorkerExit {
        if let reaped { return reaped }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let exit: WorkerExit = (status & 0x7f) == 0 ? .exited((status >> 8) & 0xff) : .signaled(status & 0x7f)
        reaped = exit
        close(requestFD)
        close(replyFD)
        close(lifelineFD)
        return exit
    }

    func kill() { _ = Glibc.kill(pid, SIGKILL) }
}

/// Moves `fd` to a number above those the child's descriptors are given
/// (0 to 6), so that placing one in the child never overwrites another.
private func aboveChildDescriptors(_ fd: Int32) -> Int32 {
    guard fd >= 0, fd < 16 else { return fd }
    let moved = fcntl(fd, F_DUPFD_CLOEXEC, 16)
    guard moved >= 0 else { return fd }
    close(fd)
    return moved
}

private func currentEnvironment() -> [String: String] {
    var env: [String: String] = [:]
    guard var p = cfleet_environ() else { return env }
    while let entry = p.pointee {
        let s = String(cString: entry)
        if let eq = s.firstIndex(of: "=") { env[String(s[..<eq])] = String(s[s.index(after: eq)...]) }
        p += 1
    }
    return env
}

private func withCStrings<T>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> T) -> T {
    var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    pointers.append(nil)
    defer { for p in pointers { free(p) } }
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}
