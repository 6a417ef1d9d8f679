// The worker side, for worker processes and MPI ranks alike: one loop that
// reads requests from a channel, runs them, and writes the replies.
//
//   channel.next() ─▶ request ─▶ channel.inputs ─▶ serveBatch ─▶ reply ─▶ out ─▶ channel.send
//
// Replies to quick requests are held while another request is already at
// hand, so a burst of small tasks costs one write back; a reply is written
// before the worker waits for more, once it is big, or once the request
// took long. The control page records the request begun and finished and
// the item being run, which the driver reads if the worker dies.

/// The worker's end of its link to the driver.
protocol WorkerChannel {
    /// The control page (shared with the driver by worker processes).
    var control: WorkerControl { get }
    /// True when the replies may reference big arrays where they are
    /// (`send` writes them segment by segment).
    var sendsSegments: Bool { get }
    /// The largest reply frame the driver takes.
    var maxFrameBytes: Int { get }
    /// The next frame from the driver; nil when the channel has ended.
    mutating func next() throws -> (FrameHeader, UnsafeRawBufferPointer)?
    /// True when another frame is already here (no wait to read it).
    mutating func hasFrameAtHand() -> Bool
    /// Runs `body` over request `header`'s inputs: `rest` of its body, or
    /// where the flag says they are (shared memory, messages of their own).
    mutating func withInputs<T>(
        _ header: FrameHeader, _ rest: inout WireReader,
        _ body: (inout WireReader) throws -> T
    ) throws -> T
    /// Whether the driver has cancelled request `seq`.
    func isCancelled(_ seq: UInt64) -> @Sendable () -> Bool
    /// Writes `out` to the driver (and ends the worker if it cannot).
    func send(_ out: WireBuffer)
    /// Ends the worker cleanly (the driver said goodbye, or hung up).
    func finish() -> Never
    /// Ends the worker after a protocol fault, already reported in `out`.
    func abandon(_ message: String) -> Never
}

/// Tunables of the held replies.
enum ReplyHolding {
    /// A reply this big is written at once: holding it saves nothing.
    static let maxHeldBytes = 1 << 18
    /// A request that took this long is answered at once: the driver may be
    /// waiting on it while others are quick.
    static let maxHeldNanos: UInt64 = 50_000
    /// The held buffer is given back after a reply over this size.
    static let keptCapacity = 1 << 20
}

/// Serves requests from `channel` until it ends or says goodbye.
func serveRequests<C: WorkerChannel>(_ channel: inout C, registry: Registry, hello: (WireBuffer) throws -> Void)
    -> Never
{
    let out = WireBuffer(capacity: 1 << 16)
    out.allowsExternal = channel.sendsSegments
    try? hello(out)
    flush(out, to: channel)
    while true {
        let frame: (FrameHeader, UnsafeRawBufferPointer)?
        do { frame = try channel.next() } catch { fail("\(error)", out, channel) }
        guard let (header, body) = frame else {
            flush(out, to: channel)
            channel.finish()
        }
        switch header.kind {
        case .request, .initialize:
            let began = monotonicNanos()
            let mark = out.count
            let externalMark = out.externalBytes
            do {
                var r = WireReader(body)
                let taskID = Int(try r.read(UInt32.self))
                let attempt = Int(try r.read(UInt32.self))
                let mode: ErrorMode = try r.read(UInt8.self) == 0 ? .failFast : .collect
                let (control, cancelled) = (channel.control, channel.isCancelled(header.seq))
                control.begin(header.seq)
                try channel.withInputs(header, &r) { inputs in
                    try serveBatch(
                        registry: registry, seq: header.seq, taskID: taskID, attempt: attempt, mode: mode,
                        inputs: &inputs, control: control, cancelled: cancelled, into: out)
                }
                let length = out.count - mark + out.externalBytes - externalMark
                if length > channel.maxFrameBytes { throw FrameError.oversized(length, limit: channel.maxFrameBytes) }
            } catch {
                out.truncate(to: mark)  // drop the half-written reply
                // Reported while the control page still names the request
                // as running, so the driver blames it.
                fail("bad request \(header.seq): \(error)", out, channel)
            }
            channel.control.finished = header.seq
            if out.count > ReplyHolding.maxHeldBytes || monotonicNanos() &- began > ReplyHolding.maxHeldNanos
                || !channel.hasFrameAtHand()
            {
                flush(out, to: channel)
            }
        case .shutdown:
            flush(out, to: channel)
            channel.finish()
        default:
            fail("unexpected \(header.kind) frame", out, channel)
        }
    }
}

private func flush<C: WorkerChannel>(_ out: WireBuffer, to channel: C) {
    guard out.count > 0 || out.externalBytes > 0 else { return }
    channel.send(out)
    out.removeAll()
    out.shrink(ifOver: ReplyHolding.keptCapacity)
}

/// Reports a protocol fault to the driver and ends the worker.
private func fail<C: WorkerChannel>(_ message: String, _ out: WireBuffer, _ channel: C) -> Never {
    try? appendFrame(.fatal, seq: 0, to: out) { $0.appendString(String(message.prefix(4_000))) }
    flush(out, to: channel)
    channel.abandon(message)
}

/// Runs request `seq`'s batch of task `taskID` over the encoded `inputs`
/// and appends the reply frame to `out`.
func serveBatch(
    registry: Registry, seq: UInt64, taskID: Int, attempt: Int, mode: ErrorMode, inputs r: inout WireReader,
    control: WorkerControl, cancelled: @escaping @Sendable () -> Bool, into out: WireBuffer
) throws {
    guard taskID < registry.tasks.count, let task = registry.tasks[taskID] as? any RemoteServable else {
        throw WireError.corrupt("no task with id \(taskID)")
    }
    try appendFrame(.reply, seq: seq, to: out) { b in
        let began = monotonicNanos()
        let nanosAt = b.count
        b.append(UInt64(0))
        let token = CancellationToken(probe: cancelled)
        try FleetTask.$attempt.withValue(attempt + 1) {  // the wire counts retries, tasks count runs
            try FleetTask.$token.withValue(token) {
                try task.serve(&r, mode: mode, control: control, into: b)
            }
        }
        b.patch(monotonicNanos() &- began, at: nanosAt)
    }
}
