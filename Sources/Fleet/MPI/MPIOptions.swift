#if MPI
/// Settings of the MPI executor (`Pool.mpi(options:)`).
public struct MPIOptions: Sendable {
    /// How often the driver and every serving rank tell each other they are
    /// alive. Default 250 ms.
    public var heartbeatInterval: Duration = .milliseconds(250)
    /// A rank not heard from for this long is lost: its work fails with
    /// `FleetError.rankLost`, and the job ends (a serving rank that loses
    /// the driver exits). Default 10 s.
    public var heartbeatTimeout: Duration = .seconds(10)
    /// After a rank is lost, how long the driver's code has to see the
    /// errors before the whole job is ended with `MPI_Abort`. Default 5 s.
    public var lostRankGrace: Duration = .seconds(5)
    /// How long `Pool.mpi` waits for every rank to answer. Default 60 s.
    public var startTimeout: Duration = .seconds(60)

    /// The defaults.
    public init() {}
}
#endif
