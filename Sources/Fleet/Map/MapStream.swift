/// Results of a streaming map, as an `AsyncSequence`: `Pool.stream` (input
/// order), `Pool.mapUnordered` (completion order, with indices), and their
/// `…Results` forms that yield a `Result` per item instead of throwing.
///
/// The map starts when iteration starts, and pulls input only as results
/// are consumed: a slow consumer slows the input, and memory stays within
/// the window. Leaving the loop early (or cancelling the task) stops the
/// input and cancels what has not started. Iterate a stream once.
public struct MapStream<Element>: AsyncSequence {
    @usableFromInline let start: () throws -> any StreamSource<Element>

    @inlinable init(_ start: @escaping () throws -> any StreamSource<Element>) { self.start = start }

    public func makeAsyncIterator() -> Iterator { Iterator(start: start) }

    /// Iterates a `MapStream`.
    public struct Iterator: AsyncIteratorProtocol {
        let start: () throws -> any StreamSource<Element>
        var source: (any StreamSource<Element>)?
        var failed = false

        public mutating func next() async throws -> Element? {
            if failed { return nil }
            do {
                if source == nil { source = try start() }
                return try await source!.next()
            } catch {
                failed = true
                throw error
            }
        }
    }
}

/// Produces the elements of a `MapStream`.
@usableFromInline
protocol StreamSource<Element>: AnyObject {
    associatedtype Element
    func next() async throws -> Element?
}

/// A `StreamSource` over a `MapDriver`: hands out one batch's items, then
/// releases their room in the window and takes the next batch.
@usableFromInline
final class DriverStream<Source: BatchSource, Element>: StreamSource {
    @usableFromInline typealias R = Source.R
    @usableFromInline var driver: MapDriver<Source>
    @usableFromInline let element: (ReadyBatch<R>, Int) -> Element
    @usableFromInline var batch: ReadyBatch<R>?
    @usableFromInline var position = 0
    @usableFromInline var done = false

    @inlinable
    init(_ driver: MapDriver<Source>, element: @escaping (ReadyBatch<R>, Int) -> Element) {
        self.driver = driver
        self.element = element
    }

    @inlinable
    func next() async throws -> Element? {
        while true {
            if let b = batch {
                let available = driver.core.mode == .failFast ? b.output.values.count : b.output.results.count
                if position < available {
                    position += 1
                    return element(b, position - 1)
                }
                driver.core.release(b.count)
                batch = nil
            }
            if done { return nil }
            do {
                guard let b = try await driver.nextBatch() else {
                    done = true
                    return nil
                }
                batch = b
                position = 0
            } catch {
                done = true
                throw error
            }
        }
    }

    deinit {
        // Left early: stop the input, skip what has not started, and end
        // the progress once what runs has finished.
        if !done { driver.core.abandon() }
    }
}

extension Pool {
    /// Streams the results in input order as they become available (like
    /// Python's `imap`). Errors as for `map`.
    @inlinable
    public func stream<Input: Sequence, R: Sendable>(
        _ input: Input, options: MapOptions = MapOptions(),
        _ transform: @escaping @Sendable (Input.Element) throws -> R
    ) -> MapStream<R> where Input.Element: Sendable {
        makeStream(input, ordered: true, mode: .failFast, options: options, runner: .plain(transform)) {
            $0.output.values[$1]
        }
    }

    /// `stream` with an `async` transform.
    @inlinable
    public func stream<Input: Sequence, R: Sendable>(
        _ input: Input, options: MapOptions = MapOptions(),
        _ transform: @escaping @Sendable (Input.Element) async throws -> R
    ) -> MapStream<R> where Input.Element: Sendable {
        makeStream(input, ordered: true, mode: .failFast, options: options, runner: .plainAsync(transform)) {
            $0.output.values[$1]
        }
    }

    /// Streams a `Result` per item in input order; failures do not stop it.
    @inlinable
    public func streamResults<Input: Sequence, R: Sendable>(
        _ input: Input, options: MapOptions = MapOptions(),
        _ transform: @escaping @Sendable (Input.Element) throws -> R
    ) -> MapStream<Result<R, ItemFailure>> where Input.Element: Sendable {
        makeStream(input, ordered: true, mode: .collect, options: options, runner: .plain(transform)) {
            $0.output.results[$1]
        }
    }

    /// Streams `(index, value)` pairs as items complete, in completion order
    /// (like Python's `imap_unordered`). Errors as for `map`.
    @inlinable
    public func mapUnordered<Input: Sequence, R: Sendable>(
        _ input: Input, options: MapOptions = MapOptions(),
        _ transform: @escaping @Sendable (Input.Element) throws -> R
    ) -> MapStream<(index: Int, value: R)> where Input.Element: Sendable {
        makeStream(input, ordered: false, mode: .failFast, options: options, runner: .plain(transform)) {
            (index: $0.start + $1, value: $0.output.values[$1])
        }
    }

    /// `mapUnordered` with an `async` transform.
    @inlinable
    public func mapUnordered<Input: Sequence, R: Sendable>(
        _ input: Input, options: MapOptions = MapOptions(),
        _ transform: @escaping @Sendable (Input.Element) async throws -> R
    ) -> MapStream<(index: Int, value: R)> where Input.Element: Sendable {
        makeStream(input, ordered: false, mode: .failFast, options: options, runner: .plainAsync(transform)) {
            (index: $0.start + $1, value: $0.output.values[$1])
        }
    }

    /// Streams `(index, result)` pairs as items complete; failures do not
    /// stop it.
    @inlinable
    public func mapUnorderedResults<Input: Sequence, R: Sendable>(
        _ input: Input, options: MapOptions = MapOptions(),
        _ transform: @escaping @Sendable (Input.Element) throws -> R
    ) -> MapStream<(index: Int, result: Result<R, ItemFailure>)> where Input.Element: Sendable {
        makeStream(input, ordered: false, mode: .collect, options: options, runner: .plain(transform)) {
            (index: $0.start + $1, result: $0.output.results[$1])
        }
    }

    @inlinable
    func makeStream<Input: Sequence, R: Sendable, Element>(
        _ input: Input, ordered: Bool, mode: ErrorMode, options: MapOptions,
        runner: BatchRunner<Input.Element, R>,
        element: @escaping (ReadyBatch<R>, Int) -> Element
    ) -> MapStream<Element> where Input.Element: Sendable {
        MapStream { [self] in
            let driver = try MapDriver(
                SequenceSource(input, runner: runner, timeout: options.timeout),
                pool: self, ordered: ordered, mode: mode, streaming: true, options: options)
            return DriverStream(driver, element: element)
        }
    }
}
