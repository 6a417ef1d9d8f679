/// Chooses how many items go into the next batch, from measured task times.
///
/// Like joblib's `batch_size="auto"`: start with one item per batch, time
/// what the workers report, and grow the batch until a batch takes about
/// `targetNanos`, so per-batch overhead (a queue hand-off, a wake-up, a
/// frame) is a small share of the work while no batch holds results back
/// for long. Growth is at most 8x per step, so a noisy first measurement
/// cannot jump straight to a huge batch. An explicit batch size overrides it.
@usableFromInline
struct BatchSizer: Sendable {
    /// A batch should take about this long: long enough to amortise the
    /// hand-off (a few µs on threads), short enough that the first results
    /// of a streaming map come back within a millisecond or two.
    static let targetNanos: Double = 1_000_000
    /// The most items a batch may hold when chosen automatically.
    static let automaticCap = 1 << 17

    let fixed: Int?
    let cap: Int
    private(set) var size: Int
    private var nanosPerItem: Double?

    init(fixed: Int?, cap: Int) {
        self.fixed = fixed
        self.cap = max(1, cap)
        size = fixed.map { min($0, max(1, cap)) } ?? 1
    }

    /// Records that `items` items took `nanos` nanoseconds on a worker.
    mutating func record(items: Int, nanos: UInt64) {
        guard fixed == nil, items > 0 else { return }
        let per = max(Double(nanos) / Double(items), 0.5)
        let smoothed = nanosPerItem.map { 0.7 * $0 + 0.3 * per } ?? per
        nanosPerItem = smoothed
        let ideal = Int((BatchSizer.targetNanos / smoothed).rounded(.down))
        size = max(1, min(ideal, size * 8, cap))
    }
}
