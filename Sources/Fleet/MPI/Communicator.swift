#if MPI
internal import CMPI
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A group of MPI ranks that run the same program (SPMD) and exchange data:
/// `MPI.world` is every rank of the job.
///
/// Arrays of `MPINumeric` numbers go through MPI's own datatypes and
/// reductions, from and into the arrays' own memory. Any `Codable` value
/// goes through Fleet's wire encoding (see `Communicator+Codable.swift`).
/// Messages of any size work: those over `maxMessageBytes` are split into
/// several MPI messages and joined again, so MPI's 2^31 count limit never
/// shows. Every call that fails throws `MPIError` with MPI's message.
///
/// Collective calls (barrier, broadcast, scatter, gather, reduce, ...) must
/// be made by every rank of the communicator, in the same order.
public final class Communicator: @unchecked Sendable {
    // Safe: every property is immutable after init, and MPI runs with
    // MPI_THREAD_MULTIPLE, so the handles may be used from any thread.
    let comm: MPI_Comm
    /// A duplicate of `comm` for Fleet's own messages inside collectives, so
    /// they never match the user's receives.
    let inner: MPI_Comm
    /// This rank's number, 0 ..< size.
    public let rank: Int
    /// How many ranks the communicator has.
    public let size: Int
    /// The name of the host this rank runs on (`MPI_Get_processor_name`).
    public let processorName: String
    /// The largest single MPI message, in bytes; bigger ones are split.
    /// 1 GiB unless `FLEET_MPI_MAX_MESSAGE` (bytes) says otherwise; it must
    /// be the same on every rank.
    public let maxMessageBytes: Int

    init(world: MPI_Comm) throws {
        comm = world
        var dup: MPI_Comm?
        try check(MPI_Comm_dup(world, &dup), "MPI_Comm_dup")
        inner = dup!
        MPI_Comm_set_errhandler(inner, cmpi_errors_return())
        var r: Int32 = 0
        var s: Int32 = 0
        try check(MPI_Comm_rank(world, &r), "MPI_Comm_rank")
        try check(MPI_Comm_size(world, &s), "MPI_Comm_size")
        rank = Int(r)
        size = Int(s)
        var name = [CChar](repeating: 0, count: Int(cmpi_max_processor_name()) + 1)
        var length: Int32 = 0
        MPI_Get_processor_name(&name, &length)
        processorName = String(decoding: name.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if let raw = getenv("FLEET_MPI_MAX_MESSAGE"), let bytes = Int(String(cString: raw)), bytes >= 16 {
            maxMessageBytes = bytes
        } else {
            maxMessageBytes = 1 << 30
        }
    }

    /// Elements of `stride` bytes in one MPI message.
    func chunkElements(_ stride: Int) -> Int { min(max(1, maxMessageBytes / max(stride, 1)), Int(Int32.max)) }

    func checkRank(_ r: Int, _ role: String) throws {
        guard r >= 0 && r < size else {
            throw MPIError(call: role, code: -1, message: "rank \(r) is out of range 0..<\(size)")
        }
    }

    // MARK: Synchronisation

    /// Waits until every rank has called it.
    public func barrier() throws { try check(MPI_Barrier(comm), "MPI_Barrier") }

    // MARK: Point to point

    /// Sends `values` to rank `dest`; `receive` there takes them. Blocks
    /// until the buffer may be reused (for small messages, at once).
    public func send<T: MPINumeric>(_ values: [T], to dest: Int, tag: Int = 0) throws {
        try checkRank(dest, "send")
        try values.withUnsafeBytes { raw in
            try sendChunks(raw.baseAddress, count: values.count, T.self, to: dest, tag: tag, on: comm)
        }
    }

    /// Receives an array sent by rank `source` with `send`.
    public func receive<T: MPINumeric>(_ type: [T].Type, from source: Int, tag: Int = 0) throws -> [T] {
        try checkRank(source, "receive")
        return try receiveChunks(T.self, from: source, tag: tag, on: comm)
    }

    /// Sends `count` elements from `base` as one MPI message, or, when they
    /// are more than one message holds, as full messages followed by a
    /// shorter one (empty if need be): a full message tells the receiver
    /// that more follow.
    func sendChunks<T: MPINumeric>(
        _ base: UnsafeRawPointer?, count: Int, _: T.Type, to dest: Int, tag: Int,
        on comm: MPI_Comm
    ) throws {
        let limit = chunkElements(MemoryLayout<T>.stride)
        var offset = 0
        var n = 0
        repeat {
            n = min(limit, count - offset)
            let at = base.map { $0 + offset * MemoryLayout<T>.stride }
            try check(MPI_Send(at, Int32(n), T.mpiElement.datatype, Int32(dest), Int32(tag), comm), "MPI_Send")
            offset += n
        } while n == limit
    }

    /// Receives what `sendChunks` sent.
    func receiveChunks<T: MPINumeric>(_: T.Type, from source: Int, tag: Int, on comm: MPI_Comm) throws -> [T] {
        let limit = chunkElements(MemoryLayout<T>.stride)
        var parts: [[T]] = []
        while true {
            var message: MPI_Message?
            var status = MPI_Status()
            try check(MPI_Mprobe(Int32(source), Int32(tag), comm, &message, &status), "MPI_Mprobe")
            var count: Int32 = 0
            try check(MPI_Get_count(&status, T.mpiElement.datatype, &count), "MPI_Get_count")
            var failure: Int32 = 0
            let part = [T](filling: Int(count)) { buffer in
                failure = MPI_Mrecv(buffer.baseAddress, count, T.mpiElement.datatype, &message, &status)
            }
            try check(failure, "MPI_Mrecv")
            if Int(count) < limit {
                if parts.isEmpty { return part }
                parts.append(part)
                var whole: [T] = []
                whole.reserveCapacity(parts.reduce(0) { $0 + $1.count })
                for part in parts { whole.append(contentsOf: part) }  // a copy of memory, not element by element
                return whole
            }
            parts.append(part)
        }
    }

    // MARK: Collectives over numbers

    /// Makes every rank's `values` equal to `root`'s (other ranks' arrays
    /// are replaced, whatever their length).
    public func broadcast<T: MPINumeric>(_ values: inout [T], root: Int = 0) throws {
        try checkRank(root, "broadcast")
        var n = Int64(values.count)
        try check(MPI_Bcast(&n, 1, cmpi_int64(), Int32(root), comm), "MPI_Bcast")
        if rank != root { values = uninitializedArray(Int(n)) }
        try values.withUnsafeMutableBytes { raw in
            try forEachChunk(Int(n), T.self) { offset, k in
                try check(
                    MPI_Bcast(raw.baseAddress.map { $0 + offset }, k, T.mpiElement.datatype, Int32(root), comm),
                    "MPI_Bcast")
            }
        }
    }

    /// Splits `root`'s `values` into `size` contiguous parts, as equal as
    /// can be (the first `count % size` parts one longer), and gives rank
    /// `i` part `i`. Other ranks' `values` are ignored.
    public func scatter<T: MPINumeric>(_ values: [T], root: Int = 0) throws -> [T] {
        try checkRank(root, "scatter")
        var n = Int64(values.count)
        try check(MPI_Bcast(&n, 1, cmpi_int64(), Int32(root), comm), "MPI_Bcast")
        let counts = (0..<size).map { Int(n) / size + ($0 < Int(n) % size ? 1 : 0) }
        return try scatterv(values, counts: counts, root: root)
    }

    /// Gives rank `i` elements `counts[i]` of `root`'s `values`, in order.
    func scatterv<T: MPINumeric>(_ values: [T], counts: [Int], root: Int) throws -> [T] {
        let stride = MemoryLayout<T>.stride
        let displacements = counts.prefixSums
        if fitsOneCall(counts, stride) {
            let c32 = counts.map { Int32($0) }
            let d32 = displacements.map { Int32($0) }
            let mine = counts[rank]
            var failure: Int32 = 0
            let result = [T](filling: mine) { buffer in
                failure = values.withUnsafeBytes { send in
                    MPI_Scatterv(
                        send.baseAddress, c32, d32, T.mpiElement.datatype, buffer.baseAddress, Int32(mine),
                        T.mpiElement.datatype, Int32(root), comm)
                }
            }
            try check(failure, "MPI_Scatterv")
            return result
        }
        // Too big for one call: the root sends each part on its own.
        if rank == root {
            try values.withUnsafeBytes { raw in
                for r in 0..<size where r != root {
                    try sendChunks(
                        raw.baseAddress.map { $0 + displacements[r] * stride }, count: counts[r], T.self,
                        to: r, tag: 1, on: inner)
                }
            }
            return Array(values[displacements[root]..<displacements[root] + counts[root]])
        }
        return try receiveChunks(T.self, from: root, tag: 1, on: inner)
    }

    /// Collects every rank's `values` on `root`, in rank order; other ranks
    /// get nil. The arrays may differ in length.
    public func gather<T: MPINumeric>(_ values: [T], root: Int = 0) throws -> [[T]]? {
        try checkRank(root, "gather")
        let counts = try allCounts(values.count)
        let stride = MemoryLayout<T>.stride
        if fitsOneCall(counts, stride) {
            let c32 = counts.map { Int32($0) }
            let d32 = counts.prefixSums.map { Int32($0) }
            let total = rank == root ? counts.reduce(0, +) : 0
            var failure: Int32 = 0
            let flat = [T](filling: total) { buffer in
                failure = values.withUnsafeBytes { send in
                    MPI_Gatherv(
                        send.baseAddress, Int32(values.count), T.mpiElement.datatype, buffer.baseAddress,
                        c32, d32, T.mpiElement.datatype, Int32(root), comm)
                }
            }
            try check(failure, "MPI_Gatherv")
            return rank == root ? flat.split(counts) : nil
        }
        if rank != root {
            try values.withUnsafeBytes {
                try sendChunks($0.baseAddress, count: values.count, T.self, to: root, tag: 2, on: inner)
            }
            return nil
        }
        return try (0..<size).map { r in r == root ? values : try receiveChunks(T.self, from: r, tag: 2, on: inner) }
    }

    /// Collects every rank's `values` on every rank, in rank order.
    public func allgather<T: MPINumeric>(_ values: [T]) throws -> [[T]] {
        let counts = try allCounts(values.count)
        let stride = MemoryLayout<T>.stride
        if fitsOneCall(counts, stride) {
            let c32 = counts.map { Int32($0) }
            let d32 = counts.prefixSums.map { Int32($0) }
            let total = counts.reduce(0, +)
            var failure: Int32 = 0
            let flat = [T](filling: total) { buffer in
                failure = values.withUnsafeBytes { send in
                    MPI_Allgatherv(
                        send.baseAddress, Int32(values.count), T.mpiElement.datatype, buffer.baseAddress,
                        c32, d32, T.mpiElement.datatype, comm)
                }
            }
            try check(failure, "MPI_Allgatherv")
            return flat.split(counts)
        }
        var parts = try gather(values, root: 0) ?? []
        for r in 0..<size {
            var part = rank == 0 ? parts[r] : []
            try broadcast(&part, root: 0)
            if rank != 0 { parts.append(part) }
        }
        return parts
    }

    /// Combines every rank's `values` element by element with `op`; `root`
    /// gets the result, other ranks nil. Every rank must pass the same
    /// number of elements (else every rank throws).
    public func reduce<T: MPINumeric>(_ values: [T], _ op: ReductionOp, root: Int = 0) throws -> [T]? {
        try checkRank(root, "reduce")
        try checkSameCount(values.count, "reduce")
        var result: [T] = rank == root ? uninitializedArray(values.count) : []
        try values.withUnsafeBytes { send in
            try result.withUnsafeMutableBytes { recv in
                try forEachChunk(values.count, T.self) { offset, k in
                    try check(
                        MPI_Reduce(
                            send.baseAddress.map { $0 + offset }, recv.baseAddress.map { $0 + offset }, k,
                            T.mpiElement.datatype, op.op, Int32(root), comm), "MPI_Reduce")
                }
            }
        }
        return rank == root ? result : nil
    }

    /// Combines every rank's `values` element by element with `op`, in
    /// place, so that every rank holds the result. No copy is made. Every
    /// rank must pass the same number of elements (else every rank throws).
    public func allreduce<T: MPINumeric>(_ values: inout [T], _ op: ReductionOp) throws {
        try values.withUnsafeMutableBufferPointer { try allreduce($0, op) }
    }

    /// `allreduce` over memory the caller owns.
    public func allreduce<T: MPINumeric>(_ buffer: UnsafeMutableBufferPointer<T>, _ op: ReductionOp) throws {
        try checkSameCount(buffer.count, "allreduce")
        let raw = UnsafeMutableRawPointer(buffer.baseAddress)
        try forEachChunk(buffer.count, T.self) { offset, k in
            try check(
                MPI_Allreduce(cmpi_in_place(), raw.map { $0 + offset }, k, T.mpiElement.datatype, op.op, comm),
                "MPI_Allreduce")
        }
    }

    /// `allreduce` of one number.
    public func allreduce<T: MPINumeric>(_ value: T, _ op: ReductionOp) throws -> T {
        var one = [value]
        try allreduce(&one, op)
        return one[0]
    }

    // MARK: Helpers

    /// Calls `body(byteOffset, count)` for each piece of `count` elements
    /// that fits one MPI call.
    func forEachChunk<T>(_ count: Int, _: T.Type, _ body: (Int, Int32) throws -> Void) throws {
        let limit = chunkElements(MemoryLayout<T>.stride)
        var offset = 0
        repeat {
            let n = min(limit, count - offset)
            try body(offset * MemoryLayout<T>.stride, Int32(n))
            offset += n
        } while offset < count
    }

    /// Every rank's count, on every rank.
    func allCounts(_ count: Int) throws -> [Int] {
        var mine = Int64(count)
        var all = [Int64](repeating: 0, count: size)
        try check(MPI_Allgather(&mine, 1, cmpi_int64(), &all, 1, cmpi_int64(), comm), "MPI_Allgather")
        return all.map { Int($0) }
    }

    /// Whether a v-collective with these counts fits one call's int counts
    /// and displacements, and the message limit.
    func fitsOneCall(_ counts: [Int], _ stride: Int) -> Bool {
        let total = counts.reduce(0, +)
        return total <= Int(Int32.max) && counts.allSatisfy { $0 <= chunkElements(stride) }
    }

    /// Throws on every rank unless every rank passed the same count: MPI
    /// itself would hang or corrupt memory.
    func checkSameCount(_ count: Int, _ call: String) throws {
        var range: [Int64] = [Int64(count), -Int64(count)]
        try check(MPI_Allreduce(cmpi_in_place(), &range, 2, cmpi_int64(), cmpi_max(), inner), "MPI_Allreduce")
        guard range[0] == -range[1] else {
            throw MPIError(
                call: call, code: -1,
                message: "ranks passed different element counts (from \(-range[1]) to \(range[0]))")
        }
    }
}

func uninitializedArray<T: BitwiseCopyable>(_ n: Int) -> [T] {
    [T](filling: n) { _ in }
}

extension Array where Element == Int {
    /// The start of each part, for parts of these lengths laid end to end.
    var prefixSums: [Int] {
        var sums: [Int] = []
        sums.reserveCapacity(count)
        var total = 0
        for c in self {
            sums.append(total)
            total += c
        }
        return sums
    }
}

extension Array {
    /// Cuts the array into consecutive parts of the given lengths.
    func split(_ counts: [Int]) -> [[Element]] {
        var at = 0
        return counts.map { c in
            defer { at += c }
            return Array(self[at..<at + c])
        }
    }
}
#endif
