/// How a processes pool starts and manages its worker processes.
public struct ProcessOptions: Sendable {
    /// The program workers run: nil for this program (`/proc/self/exe`).
    /// It must call `RemoteTasks.bootstrap` with the same tasks first thing.
    public var workerExecutable: String?
    /// How many more times an item is run after a worker process dies
    /// running it (a crash, a signal, `exit`). 0: it fails at once with
    /// `FleetError.workerDied`. A map's `MapOptions.retries` overrides it.
    public var retries: Int
    /// Replace each worker after it has run this many items (nil: never),
    /// to return memory a task leaks or fragments.
    public var recycleAfter: Int?
    /// Extra environment variables for the workers (e.g. thread caps for
    /// BLAS or OpenMP, `OMP_NUM_THREADS=1`).
    public var environment: [String: String]
    /// Longest frame accepted on the channel, in bytes; a longer one is a
    /// protocol violation.
    public var maxFrameBytes: Int
    /// How long a new worker has to answer the handshake.
    public var startTimeout: Duration
    /// A remote task each worker runs once when it starts (and each
    /// replacement too), before any other: to load a model, open a
    /// database, set up per-process state. If it throws, the pool cannot
    /// start and says why.
    public var initializer: WorkerInitializer?

    /// Options for a processes pool; every argument has a sensible default.
    public init(
        workerExecutable: String? = nil, retries: Int = 0, recycleAfter: Int? = nil,
        environment: [String: String] = [:], maxFrameBytes: Int = 1 << 30,
        startTimeout: Duration = .seconds(30), initializer: WorkerInitializer? = nil
    ) {
        self.initializer = initializer
        self.workerExecutable = workerExecutable
        self.retries = retries
        self.recycleAfter = recycleAfter
        self.environment = environment
        self.maxFrameBytes = maxFrameBytes
        self.startTimeout = startTimeout
    }

    func validate() throws {
        if retries < 0 { throw FleetError.invalidArgument("retries must not be negative, got \(retries)") }
        if let recycleAfter { try requirePositive(recycleAfter, "recycleAfter") }
        try requirePositive(maxFrameBytes, "maxFrameBytes")
        if maxFrameBytes > Int(UInt32.max) {
            throw FleetError.invalidArgument("maxFrameBytes must be at most \(UInt32.max), got \(maxFrameBytes)")
        }
        try requirePositive(startTimeout, "startTimeout")
    }
}
