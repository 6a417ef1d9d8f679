// The jobs a processes backend sends to workers: a batch of a map over a
// remote task, or one submitted call. Each carries its inputs already
// encoded (once, on the caller's thread), and knows how to read its reply,
// fail, or split around the item that killed a worker.

/// A job that can run in a worker process.
@usableFromInline
protocol RemoteJob: Job {
    /// The task's id on the wire.
    var taskID: Int { get }
    var mode: ErrorMode { get }
    var timeout: Duration? { get }
    /// Retries allowed after a worker dies running this job (nil: the pool's).
    var retries: Int? { get }
    /// The index of the first item, for errors (nil: a submitted call).
    var firstIndex: Int? { get }
    var itemCount: Int { get }
    /// The encoded inputs.
    var payload: WireBuffer { get }
    /// The token whose cancellation should stop the job where it runs.
    var token: CancellationToken? { get }
    /// Called before the first send: false if the job is no longer wanted
    /// (then the backend calls `skip`).
    func begin() -> Bool
    func skip()
    /// Reads the worker's reply and completes the job.
    func deliver(_ reply: inout WireReader, nanos: UInt64) throws
    /// Completes the job with `error` for its first item.
    func fail(_ error: any Error)
    /// Splits a batch around the item at `offset`, which killed its worker.
    func split(at offset: Int) -> (before: (any RemoteJob)?, culprit: any RemoteJob, after: (any RemoteJob)?)
}

/// The encoded inputs of a batch: in shared memory when they are big; with
/// `external`, big arrays of numbers referenced where they are, not copied
/// (for a backend that sends the buffer's segments itself).
func encodePayload<I: Encodable>(_ inputs: [I], arena: SharedArena?, external: Bool = false, limit: PayloadLimit? = nil)
    throws -> WireBuffer
{
    let payload = WireBuffer(capacity: 64 + inputs.count * MemoryLayout<I>.stride, arena: arena)
    payload.allowsExternal = external
    try encodeLimited(inputs, into: payload, limit: limit)
    return payload
}

/// The most bytes a request's inputs may take, and the option that sets it.
struct PayloadLimit {
    var bytes: Int
    var option: String
}

/// Encodes `value`, giving up as soon as it is known to take more than
/// `limit` (before a big array is copied), with an error naming the limit
/// and the option that sets it.
func encodeLimited<T: Encodable>(_ value: T, into buffer: WireBuffer, limit: PayloadLimit?) throws {
    buffer.limit = limit?.bytes ?? .max
    defer { buffer.limit = .max }
    do {
        try WireCoding.encode(value, into: buffer)
    } catch is WireLimitExceeded {
        throw FleetError.invalidArgument(
            "the inputs of one request take more than \(limit!.bytes) bytes, over \(limit!.option): raise it, or send smaller inputs (or a path to the data)"
        )
    }
}

/// Cuts a batch of `count` items around the one at `offset`, which killed
/// its worker: `make` builds the job for a range of the items (the part
/// before, the culprit alone, the part after). The inputs were encoded once
/// already, so encoding a part cannot fail.
func splitBatch<J>(count: Int, at offset: Int, _ make: (Range<Int>) throws -> J) -> (
    before: J?, culprit: J, after: J?, parts: Int
) {
    let k = min(max(offset, 0), count - 1)
    func part(_ range: Range<Int>) -> J? { range.isEmpty ? nil : try? make(range) }
    let before = part(0..<k)
    let culprit = part(k..<k + 1)!
    let after = part(k + 1..<count)
    return (before, culprit, after, 1 + (before == nil ? 0 : 1) + (after == nil ? 0 : 1))
}

/// A queued job that may turn into a `RemoteJob` (a map batch).
protocol RemoteConvertible {
    func remoteJob(context: RemoteContext) throws -> (any RemoteJob)?
}

/// What a processes backend lends the jobs it turns into requests.
@usableFromInline
struct RemoteContext {
    let registry: Registry
    /// Big payloads are encoded straight into this shared memory.
    let arena: SharedArena?
    /// Big arrays of numbers in payloads are referenced, not copied: the
    /// backend sends payloads segment by segment (`WireBuffer.forEachSegment`).
    var referencesBigArrays = false
    /// Inputs that encode to more are refused before they are copied.
    var payloadLimit: PayloadLimit? = nil
}

/// A remote task in a map call: runs batches here, or makes remote jobs.
@usableFromInline
protocol RemoteBatchMaker<T, R>: Sendable {
    associatedtype T: Sendable
    associatedtype R: Sendable
    func runHere(_ items: [T], start: Int, mode: ErrorMode, token: CancellationToken?) -> BatchOutput<R>
    func makeJob(core: MapCore<R>, start: Int, items: [T], timeout: Duration?, context: RemoteContext) throws
        -> any RemoteJob
}

@usableFromInline
struct RemoteMapping<I: Codable & Sendable, O: Codable & Sendable>: RemoteBatchMaker {
    let task: RemoteTask<I, O>
    let retries: Int?

    @usableFromInline init(task: RemoteTask<I, O>, retries: Int?) {
        self.task = task
        self.retries = retries
    }

    @usableFromInline
    func runHere(_ items: [I], start: Int, mode: ErrorMode, token: CancellationToken?) -> BatchOutput<O> {
        runItems(items, start: start, mode: mode, token: token, task.body)
    }

    @usableFromInline
    func makeJob(core: MapCore<O>, start: Int, items: [I], timeout: Duration?, context: RemoteContext) throws
        -> any RemoteJob
    {
        try RemoteBatchJob(
            core: core, start: start, items: items, mapping: self,
            taskID: context.registry.id(of: task), timeout: timeout, arena: context.arena,
            external: context.referencesBigArrays, limit: context.payloadLimit)
    }
}

/// A batch of a map, sent to a worker as one frame.
final class RemoteBatchJob<I: Codable & Sendable, O: Codable & Sendable>: RemoteJob, @unchecked Sendable {
    // Safe: every property is immutable; `payload` is written only while
    // the job is made, before any other thread sees it.
    let core: MapCore<O>
    let start: Int
    let items: [I]
    let mapping: RemoteMapping<I, O>
    let taskID: Int
    let timeout: Duration?
    let payload: WireBuffer

    init(
        core: MapCore<O>, start: Int, items: [I], mapping: RemoteMapping<I, O>, taskID: Int,
        timeout: Duration?, arena: SharedArena?, external: Bool = false, limit: PayloadLimit? = nil
    ) throws {
        self.core = core
        self.start = start
        self.items = items
        self.mapping = mapping
        self.taskID = taskID
        self.timeout = timeout
        payload = try encodePayload(items, arena: arena, external: external, limit: limit)
    }

    var mode: ErrorMode { core.mode }
    var token: CancellationToken? { core.token }
    var retries: Int? { mapping.retries }
    var firstIndex: Int? { start }
    var itemCount: Int { items.count }

    func begin() -> Bool { !core.token.isCancelled }

    func skip() { core.finish(start: start, count: items.count, output: nil, nanos: 0) }

    func deliver(_ reply: inout WireReader, nanos: UInt64) throws {
        let bytes = reply.remaining + payload.totalCount
        let output = try mapping.task.readOutcome(&reply, start: start, count: items.count, mode: core.mode)
        core.finish(start: start, count: items.count, output: output, nanos: nanos, bytes: bytes)
    }

    func fail(_ error: any Error) {
        var out = BatchOutput<O>()
        if core.mode == .failFast {
            out.failure = ItemFailure(index: start, underlying: error)
            out.failedCount = 1
        } else {
            out.results = items.indices.map { .failure(ItemFailure(index: start + $0, underlying: error)) }
            out.failedCount = items.count
        }
        core.finish(start: start, count: items.count, output: out, nanos: 0)
    }

    func split(at offset: Int) -> (before: (any RemoteJob)?, culprit: any RemoteJob, after: (any RemoteJob)?) {
        guard items.count > 1 else { return (nil, self, nil) }
        let cut = splitBatch(count: items.count, at: offset) { range in
            try RemoteBatchJob(
                core: core, start: start + range.lowerBound, items: Array(items[range]), mapping: mapping,
                taskID: taskID, timeout: timeout, arena: payload.arena,
                external: payload.allowsExternal)
        }
        core.split(into: cut.parts)
        return (cut.before, cut.culprit, cut.after)
    }

    // On the serial and threads backends a batch runs as a `BatchJob`; this
    // job only exists on processes.
    func run(on worker: WorkerContext) { fail(FleetError.notRemote("a remote batch ran in the driver")) }
    func discard(_ reason: FleetError) {
        core.fail(reason)
        skip()
    }
}

/// One submitted call of a remote task: its future's state and its job.
final class RemoteCallJob<I: Codable & Sendable, O: Codable & Sendable>: FutureState<O>, RemoteJob, @unchecked Sendable
{
    // Safe: `begun` is read and written only under the backend's lock (or,
    // on serial and threads, by the one worker running the job); everything
    // else is immutable.
    let task: RemoteTask<I, O>
    let input: I
    let taskID: Int
    let timeout: Duration?
    let retries: Int?
    let payload: WireBuffer
    private var begun = false

    init(task: RemoteTask<I, O>, input: I, taskID: Int, timeout: Duration?, retries: Int?, context: RemoteContext?)
        throws
    {
        self.task = task
        self.input = input
        self.taskID = taskID
        self.timeout = timeout
        self.retries = retries
        payload = WireBuffer(capacity: 64, arena: context?.arena)
        payload.allowsExternal = context?.referencesBigArrays ?? false
        super.init()
        if let context { try encodeLimited([input], into: payload, limit: context.payloadLimit) }
    }

    var mode: ErrorMode { .failFast }
    var token: CancellationToken? { nil }
    var firstIndex: Int? { nil }
    var itemCount: Int { 1 }

    func begin() -> Bool {
        if begun { return true }
        begun = true
        return start()
    }

    func skip() {}  // cancelled: the future is complete already

    func deliver(_ reply: inout WireReader, nanos: UInt64) throws {
        let out = try task.readOutcome(&reply, start: 0, count: 1, mode: .failFast)
        if let failure = out.failure {
            complete(.failure(failure.underlying))
        } else if let value = out.values.first {
            complete(.success(value))
        } else {
            throw WireError.corrupt("a reply with no result")
        }
    }

    func fail(_ error: any Error) { complete(.failure(error)) }

    func split(at offset: Int) -> (before: (any RemoteJob)?, culprit: any RemoteJob, after: (any RemoteJob)?) {
        (nil, self, nil)
    }

    /// Serial and threads: run the task here.
    func run(on worker: WorkerContext) {
        guard start() else { return }  // cancelled while queued
        let (task, input) = (self.task, self.input)
        if let timeout {
            runSubmittedWithTimeout(self, .plain { try task.body(input) }, timeout: timeout, on: worker)
        } else {
            complete(Result { try task.body(input) })
        }
    }

    func discard(_ reason: FleetError) { complete(.failure(reason)) }
}

/// A remote job as the dispatcher sees it.
struct RemoteWork: DispatchJob {
    let job: any RemoteJob

    var itemCount: Int { job.itemCount }
    var timeout: Duration? { job.timeout }
    var retries: Int? { job.retries }
    var firstIndex: Int? { job.firstIndex }
    var inputBytes: Int { job.payload.totalCount }
    var inputsShared: Bool { job.payload.sharedOffset != nil }
    var operation: ObjectIdentifier? { job.token.map(ObjectIdentifier.init) }
    func begin() -> Bool { job.begin() }

    func split(at offset: Int) -> (before: RemoteWork?, culprit: RemoteWork, after: RemoteWork?) {
        let (before, culprit, after) = job.split(at: offset)
        return (before.map(RemoteWork.init), RemoteWork(job: culprit), after.map(RemoteWork.init))
    }
}
