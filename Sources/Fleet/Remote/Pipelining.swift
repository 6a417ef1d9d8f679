/// How many requests a remote worker (a worker process, an MPI rank) may
/// have in flight: many when they are small and quick (the worker then finds
/// the next ones waiting, and answers a burst of them at once), few when
/// they are not (so a long one holds up little behind it while another
/// worker may be idle). A request with a time-out, or behind one, goes only
/// to an idle worker, so its clock measures its own run.
struct Pipelining {
    static let quickDepth = 32
    static let slowDepth = 2
    /// Requests a worker is given as work is queued; more come as its
    /// replies do, many in one write (a write per queued job would cost
    /// more than the pipelining saves).
    static let eagerDepth = 2
    /// Below this worker time per request (moving average), requests count as quick.
    static let quickNanos: UInt64 = 100_000
    /// Inputs up to this size may be pipelined behind other requests.
    static let smallPayload = 1 << 16

    /// Moving average of worker time per request, in nanoseconds.
    private(set) var averageNanos: UInt64 = quickNanos * 2

    var depth: Int { averageNanos < Self.quickNanos ? Self.quickDepth : Self.slowDepth }

    /// Adds one request's worker time to the average.
    mutating func record(nanos: UInt64) { averageNanos = (averageNanos * 7 + nanos) / 8 }

    /// Whether a worker with `inFlight` requests (the last with time-out
    /// `lastTimeout`) may take a request with `inputBytes` of inputs and
    /// time-out `timeout` now. `bigAllowed` says whether the backend can
    /// queue a request with big inputs behind others.
    func admits(inputBytes: Int, timeout: Duration?, inFlight: Int, lastTimeout: Duration?, bigAllowed: Bool) -> Bool {
        guard inFlight > 0 else { return true }
        return inFlight < depth && lastTimeout == nil && timeout == nil
            && (inputBytes <= Self.smallPayload || bigAllowed)
    }
}
