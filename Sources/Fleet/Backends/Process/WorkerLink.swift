import CFleetShims

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The driver's end of one worker process: its pid, the pipes to it, and
/// its control page. Starting one runs the worker executable with
/// `posix_spawn` (never `fork` alone, which is unsafe in a threaded
/// program), as the leader of a process group of its own: `kill` ends the
/// whole group, so nothing a task started outlives a killed worker.
///
/// Replies are read without blocking, waiting on both the reply pipe and
/// the worker's pidfd: when the worker has exited and the pipe is empty,
/// the channel has ended, even if a process the task started still holds
/// the pipe's write end.
final class WorkerLink: @unchecked Sendable {
    // Safe: the descriptors and pid never change after `init`; writes are
    // serialised by `writeLock`; `reaped` is used by the slot's thread
    // alone; the control page's words are each written by one side.
    let pid: Int32
    let requestFD: Int32
    let replyFD: Int32
    let lifelineFD: Int32
    /// Readable once the worker has exited (-1 where the kernel has no pidfd).
    let pidFD: Int32
    let control: WorkerControl
    let writeLock = PthreadMutex()
    /// The request and reply pipes' capacity: a burst of pipelined requests,
    /// or a batch of held replies, fits without the writer blocking (Linux's
    /// default is 64 KiB; more needs nothing but memory).
    static let pipeBytes: Int32 = 1 << 20

    /// Frames being written, reused; guarded by `writeLock`.
    let sendBuffer = WireBuffer(capacity: 1 << 12)
    private var reaped: WorkerExit?

    private init(pid: Int32, requestFD: Int32, replyFD: Int32, lifelineFD: Int32, control: WorkerControl) {
        self.pid = pid
        self.requestFD = requestFD
        self.replyFD = replyFD
        self.lifelineFD = lifelineFD
        self.control = control
        pidFD = cfleet_pidfd_open(pid)
        if pidFD >= 0 { _ = fcntl(replyFD, F_SETFL, fcntl(replyFD, F_GETFL) | O_NONBLOCK) }
    }

    /// A reader of the worker's replies.
    func replies(maxLength: Int) -> FrameReader {
        guard pidFD >= 0 else { return FrameReader(fd: replyFD, maxLength: maxLength) }
        let (reply, pidFD) = (replyFD, pidFD)
        return FrameReader(fd: replyFD, maxLength: maxLength) {
            var fds = [
                pollfd(fd: reply, events: Int16(POLLIN), revents: 0),
                pollfd(fd: pidFD, events: Int16(POLLIN), revents: 0),
            ]
            while poll(&fds, 2, -1) < 0 && errno == EINTR {}
            // Bytes the worker wrote before it exited are in the pipe by
            // now, so an exited worker with nothing to read is done.
            return fds[0].revents & Int16(POLLIN) != 0 || fds[1].revents == 0
        }
    }

    /// Waits up to `timeout` for the worker's first frame; false if none came.
    func awaitFirstFrame(within timeout: Duration) -> Bool {
        var p = pollfd(fd: replyFD, events: Int16(POLLIN), revents: 0)
        let ms = Int32(clamping: timeout.nanoseconds / 1_000_000)
        return poll(&p, 1, ms) == 1
    }

    /// Starts a worker running `executable`. Its output pipe's read end is
    /// handed to `relay`, labelled with `label(pid)`.
    static func spawn(
        executable: String, spec: WorkerSpec, environment: [String: String], arena: SharedArena?,
        relay: OutputRelay, label: (Int32) -> String
    ) throws -> WorkerLink {
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
        _ = cfleet_set_pipe_size(request[1], Self.pipeBytes)
        _ = cfleet_set_pipe_size(reply[1], Self.pipeBytes)
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
        let link = WorkerLink(
            pid: pid, requestFD: request[1], replyFD: reply[0], lifelineFD: lifeline[1], control: control)
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
        if pidFD >= 0 { close(pidFD) }
        return exit
    }

    /// Kills the worker and every process of its group (what its tasks started).
    func kill() {
        _ = Glibc.kill(-pid, SIGKILL)
        _ = Glibc.kill(pid, SIGKILL)
    }

    /// Reaps the worker and reads its control page: how it ended, and where it was.
    func death() -> WorkerDeath {
        // Whatever its tasks left behind goes with it: killed before the
        // worker is reaped, while its pid (the group's id) cannot be reused.
        if reaped == nil { _ = Glibc.kill(-pid, SIGKILL) }
        let exit = reap()
        return WorkerDeath(
            pid: pid, exit: exit, began: control.began, finished: control.finished, item: control.current)
    }
}

/// Moves `fd` to a number above those the child's descriptors are given
/// (0 to 6), so that placing one in the child never overwrites another.
private func aboveChildDescriptors(_ fd: Int32) -> Int32 {
    let floor: Int32 = 16  // above every descriptor the child is given, with room to add some
    guard fd >= 0, fd < floor else { return fd }
    let moved = fcntl(fd, F_DUPFD_CLOEXEC, floor)
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
