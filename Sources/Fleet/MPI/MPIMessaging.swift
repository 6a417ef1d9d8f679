#if MPI
internal import CMPI
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The tags of the executor's messages (on its own communicator).
enum ExecutorTag {
    /// Driver → rank: request frames; rank → driver: hello, reply, fatal frames.
    static let frames: Int32 = 1
    /// Driver → rank: the inputs of a request too big to copy into a frame.
    static let payload: Int32 = 2
    /// Both ways: heartbeats, configuration, cancellation (`ControlWord`).
    static let control: Int32 = 3
}

/// The first word of a control message.
enum ControlWord: UInt64 {
    case heartbeat = 1
    /// Driver → rank: [configure, heartbeat interval ns, timeout ns].
    case configure = 2
    /// Driver → rank: [cancel, seq]: the request is no longer wanted.
    case cancel = 3
}

/// How a polling loop waits when nothing happened: spin briefly (a reply is
/// often microseconds away), then yield the core, then sleep a little
/// longer each time, up to a millisecond, so an idle rank costs no CPU
/// on an oversubscribed machine.
struct Backoff {
    private var idle = 0

    mutating func reset() { idle = 0 }

    mutating func pause() {
        idle += 1
        if idle < 32 { return }
        if idle < 96 {
            sched_yield()
            return
        }
        usleep(UInt32(min(1_000, (idle - 96) * 20 + 20)))
    }
}

/// A message that has arrived and been matched, not yet received.
struct Arrival {
    var message: MPI_Message?
    var status: MPI_Status
    let bytes: Int
    var source: Int { Int(status.MPI_SOURCE) }
    var tag: Int32 { status.MPI_TAG }
}

extension Communicator {
    /// The matched message from `source` with `tag`, if one has arrived.
    func poll(source: Int32, tag: Int32, on comm: MPI_Comm) throws -> Arrival? {
        var flag: Int32 = 0
        var message: MPI_Message?
        var status = MPI_Status()
        try check(MPI_Improbe(source, tag, comm, &flag, &message, &status), "MPI_Improbe")
        guard flag != 0 else { return nil }
        var count: Int32 = 0
        try check(MPI_Get_count(&status, cmpi_byte(), &count), "MPI_Get_count")
        return Arrival(message: message, status: status, bytes: Int(count))
    }

    /// Whether a message from `source` with `tag` has arrived, leaving it to
    /// be received later (`poll` matches the message it finds: a matched
    /// message must be received, or it is lost).
    func peek(source: Int32, tag: Int32, on comm: MPI_Comm) throws -> Bool {
        var flag: Int32 = 0
        try check(MPI_Iprobe(source, tag, comm, &flag, cmpi_status_ignore()), "MPI_Iprobe")
        return flag != 0
    }

    /// Waits for a message from `source` with `tag`, pausing with a
    /// `Backoff` between looks.
    func await(source: Int32, tag: Int32, on comm: MPI_Comm) throws -> Arrival {
        var backoff = Backoff()
        while true {
            if let arrival = try poll(source: source, tag: tag, on: comm) { return arrival }
            backoff.pause()
        }
    }

    /// Receives a matched message of bytes into `buffer` (appended), and,
    /// when it is a full chunk of a longer message (see `sendChunks`), the
    /// chunks that follow it. With `whileWaiting`, the receive does not
    /// block: it is polled, and `whileWaiting` runs between looks (the
    /// driver's heartbeats and lost-rank checks, which a message cut off in
    /// the middle, its sender's host gone, must not stop); an error it
    /// throws ends the wait.
    func receive(
        _ arrival: Arrival, into buffer: WireBuffer, on comm: MPI_Comm,
        whileWaiting: (() throws -> Void)? = nil
    ) throws {
        var arrival = arrival
        let limit = chunkElements(1)
        while true {
            var failure: Int32 = 0
            if let whileWaiting {
                var request: MPI_Request?
                buffer.append(count: arrival.bytes) { raw in
                    failure = MPI_Imrecv(raw.baseAddress, Int32(arrival.bytes), cmpi_byte(), &arrival.message, &request)
                }
                try check(failure, "MPI_Imrecv")
                var backoff = Backoff()
                while true {
                    var flag: Int32 = 0
                    try check(MPI_Test(&request, &flag, cmpi_status_ignore()), "MPI_Test")
                    if flag != 0 { break }
                    try whileWaiting()
                    backoff.pause()
                }
            } else {
                buffer.append(count: arrival.bytes) { raw in
                    failure = MPI_Mrecv(
                        raw.baseAddress, Int32(arrival.bytes), cmpi_byte(), &arrival.message, &arrival.status)
                }
                try check(failure, "MPI_Mrecv")
            }
            if arrival.bytes < limit { return }
            if let whileWaiting {
                var backoff = Backoff()
                while true {
                    if let next = try poll(source: Int32(arrival.source), tag: arrival.tag, on: comm) {
                        arrival = next
                        break
                    }
                    try whileWaiting()
                    backoff.pause()
                }
                continue
            }
            var message: MPI_Message?
            var status = MPI_Status()
            try check(MPI_Mprobe(Int32(arrival.source), arrival.tag, comm, &message, &status), "MPI_Mprobe")
            var count: Int32 = 0
            try check(MPI_Get_count(&status, cmpi_byte(), &count), "MPI_Get_count")
            arrival = Arrival(message: message, status: status, bytes: Int(count))
        }
    }
}

/// Sends started but not yet complete: each keeps its buffer alive until
/// MPI is done with it. Used by the driver's thread alone.
struct PendingSends {
    private var requests: [MPI_Request?] = []
    private var keep: [AnyObject?] = []

    var isEmpty: Bool { requests.isEmpty }

    /// Starts sending `count` bytes at `base` (owned by `owner`) to `dest`,
    /// in chunks when they are more than one message holds.
    mutating func send(
        _ base: UnsafeRawPointer?, count: Int, owner: AnyObject?, to dest: Int, tag: Int32,
        on comm: MPI_Comm, limit: Int
    ) throws {
        var offset = 0
        var n = 0
        repeat {
            n = min(limit, count - offset)
            var request: MPI_Request?
            try check(
                MPI_Isend(base.map { $0 + offset }, Int32(n), cmpi_byte(), Int32(dest), tag, comm, &request),
                "MPI_Isend")
            requests.append(request)
            keep.append(owner)
            offset += n
        } while n == limit
    }

    /// Completes what MPI has finished with; true if anything completed.
    mutating func progress() throws -> Bool {
        guard !requests.isEmpty else { return false }
        var any = false
        var i = 0
        while i < requests.count {
            var flag: Int32 = 0
            try check(MPI_Test(&requests[i], &flag, cmpi_status_ignore()), "MPI_Isend")
            if flag != 0 {
                requests.swapAt(i, requests.count - 1)
                keep.swapAt(i, keep.count - 1)
                requests.removeLast()
                keep.removeLast()
                any = true
            } else {
                i += 1
            }
        }
        return any
    }
}

/// A control message's words, kept alive while it is sent.
final class ControlMessage {
    let words: [UInt64]
    init(_ words: [UInt64]) { self.words = words }
}
#endif
