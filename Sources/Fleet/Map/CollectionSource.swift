// The fast path of `map` over a random-access collection whose results are
// plain values (no references to count): batches are ranges of positions,
// so nothing is copied in, and workers write results straight into the
// array `map` returns, so nothing is copied out. Everything else (window,
// batch sizes, errors, cancellation, progress) is the general engine's.

/// Batches that are ranges of positions in a collection.
@usableFromInline
struct CollectionSource<R: Sendable>: BatchSource {
    @usableFromInline let total: Int?
    @usableFromInline let runner: @Sendable (Range<Int>, ErrorMode) -> BatchOutput<R>

    @inlinable
    init(count: Int, runner: @escaping @Sendable (Range<Int>, ErrorMode) -> BatchOutput<R>) {
        total = count
        self.runner = runner
    }

    @inlinable
    mutating func makeBatch(start: Int, count n: Int, core: MapCore<R>) -> (job: (any Job)?, count: Int) {
        let count = min(n, total! - start)
        if count <= 0 { return (nil, 0) }
        return (RangeJob(core: core, range: start..<(start + count), runner: runner), count)
    }
}

/// The output array's storage, written by workers at disjoint positions.
@usableFromInline
struct OutputSlots<R>: @unchecked Sendable {
    // Safe: each position is written by exactly one batch, on one worker;
    // the caller reads the array only after every batch has finished, which
    // MapCore's mutex orders after the writes. The array is kept alive and
    // untouched by `map` until then, so its storage cannot move.
    @usableFromInline let base: UnsafeMutablePointer<R>

    @inlinable init(_ base: UnsafeMutablePointer<R>) { self.base = base }
}

/// The item loop of a batch: runs `transform` over the positions `range`
/// of `input`, writing each result into `slots`. Made by `map` at the call
/// site (it is inlined there) and capturing nothing but `transform`, so
/// the compiler can make a copy of the loop for the caller's closure and
/// inline it, instead of calling it through a generic thunk per item.
@inlinable @inline(__always)
func placingLoop<C: RandomAccessCollection & Sendable, R: Sendable>(
    _ transform: @escaping @Sendable (C.Element) throws -> R
) -> @Sendable (C, Range<Int>, OutputSlots<R>) -> BatchOutput<R> where C.Element: Sendable {
    { input, range, slots in
        var out = BatchOutput<R>()
        let token = FleetTask.token
        let base = slots.base
        var index = input.index(input.startIndex, offsetBy: range.lowerBound)
        var k = range.lowerBound
        // Runs of `cancellationStride + 1` items with nothing in the loop
        // but the call and the write; cancellation between runs.
        while k < range.upperBound {
            if let token, token.isCancelled { break }
            let end = min(k + cancellationStride + 1, range.upperBound)
            do {
                while k < end {
                    (base + k).initialize(to: try transform(input[index]))
                    input.formIndex(after: &index)
                    k += 1
                }
            } catch {
                out.failure = ItemFailure(index: k, underlying: error)
                out.failedCount = 1
                break
            }
        }
        out.placed = k - range.lowerBound
        return out
    }
}

extension Pool {
    /// `map` over a random-access collection with plain-value results:
    /// the same contract, without copying items in or results out.
    @inlinable
    func mapInPlace<C: RandomAccessCollection & Sendable, R: Sendable>(
        _ input: C, options: MapOptions, placing: @escaping @Sendable (C, Range<Int>, OutputSlots<R>) -> BatchOutput<R>
    ) async throws -> [R] where C.Element: Sendable {
        try options.validate()  // before allocating the output
        let n = input.count
        if n == 0 { return [] }
        var output = [R](filling: n) { _ in }
        let slots = OutputSlots(output.withUnsafeMutableBufferPointer { $0.baseAddress! })
        var driver = try MapDriver(
            CollectionSource<R>(count: n) { range, _ in placing(input, range, slots) }, pool: self, ordered: false,
            mode: .failFast, options: options)
        while let batch = try await driver.nextBatch() { driver.core.release(batch.count) }
        _ = output.count  // keeps the storage alive until every batch is done
        return output
    }
}
