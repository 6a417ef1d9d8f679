/// Tuning for `map`, the streaming maps and `reduce`. Every field has a
/// sensible default; a value that is not positive is rejected with
/// `FleetError.invalidArgument` when the operation starts.
public struct MapOptions: Sendable {
    /// The most items in flight at once: pulled from the input and not yet
    /// handed to the caller (running, queued, or finished and waiting for an
    /// earlier item). Input is pulled only when there is room, so memory
    /// stays bounded even over an endless input. Default (nil): four batches
    /// per worker, which grows with the automatic batch size.
    public var window: Int?
    /// The most bytes in flight at once, where the pool knows them: on
    /// processes and MPI, the encoded requests sent and replies received
    /// for the items in flight (estimated from the bytes per item seen so
    /// far). The window shrinks so that the items in flight fit, down to one
    /// per worker, and batches shrink with it. Default: 64 MiB. The serial
    /// and threads backends move no bytes and count items only.
    public var windowBytes: Int
    /// The default `windowBytes`: 64 MiB, which keeps a pool of two worker
    /// processes feeding a slow reader of 1 MiB results near 130 MiB in all.
    public static let defaultWindowBytes = 64 << 20
    /// Items per batch. Default (nil): chosen from measured task times (see
    /// `BatchSizer`); with an explicit `window` it is at most a share of it.
    public var batchSize: Int?
    /// Each item's time limit. An item that runs longer fails with
    /// `FleetError.timedOut` naming it, and the pool keeps working (on
    /// threads the stuck thread is replaced; see `ThreadBackend`). Items run
    /// one per batch when this is set.
    public var timeout: Duration?
    /// Called with counts as the operation runs, at most every
    /// `progressInterval`, and once more at the end. `ProgressBar.report`
    /// draws them.
    public var progress: (@Sendable (ProgressSnapshot) -> Void)?
    /// How often `progress` is called at most.
    public var progressInterval: Duration
    /// Processes backend: how many more times to run an item whose worker
    /// process died running it (nil: the pool's `ProcessOptions.retries`).
    /// A retried item reads `FleetTask.attempt` to know.
    public var retries: Int?

    /// Options for one map; every argument has a sensible default.
    public init(
        window: Int? = nil,
        windowBytes: Int = MapOptions.defaultWindowBytes,
        batchSize: Int? = nil,
        timeout: Duration? = nil,
        progress: (@Sendable (ProgressSnapshot) -> Void)? = nil,
        progressInterval: Duration = .milliseconds(100),
        retries: Int? = nil
    ) {
        self.retries = retries
        self.window = window
        self.windowBytes = windowBytes
        self.batchSize = batchSize
        self.timeout = timeout
        self.progress = progress
        self.progressInterval = progressInterval
    }

    @usableFromInline
    func validate() throws {
        if let retries, retries < 0 { throw FleetError.invalidArgument("retries must not be negative, got \(retries)") }
        if let window { try requirePositive(window, "window") }
        try requirePositive(windowBytes, "windowBytes")
        if let batchSize { try requirePositive(batchSize, "batchSize") }
        if let timeout { try requirePositive(timeout, "timeout") }
        try requirePositive(progressInterval, "progressInterval")
    }
}

/// What a map does when an item fails.
@usableFromInline
enum ErrorMode: Sendable {
    /// Stop pulling input, cancel what has not started, rethrow the failure.
    case failFast
    /// Keep going; every item yields a `Result`.
    case collect
}
