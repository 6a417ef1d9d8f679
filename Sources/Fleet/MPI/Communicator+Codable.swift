#if MPI
// Any Codable value between ranks: encoded with Fleet's wire encoding (the
// one remote tasks use), moved as bytes by the numeric paths (so no size
// limit applies), decoded on arrival.

extension Communicator {
    /// Sends `value` to rank `dest`, for `receive(_:from:tag:)` there.
    public func send<V: Codable>(_ value: V, to dest: Int, tag: Int = 0) throws {
        try send(try WireCoding.encode(value), to: dest, tag: tag)
    }

    /// Receives a value of type `V` sent by rank `source`.
    public func receive<V: Codable>(_ type: V.Type, from source: Int, tag: Int = 0) throws -> V {
        try WireCoding.decode(V.self, from: try receive([UInt8].self, from: source, tag: tag))
    }

    /// Returns `root`'s `value` on every rank (other ranks pass nil, or
    /// anything: it is ignored).
    public func broadcast<V: Codable>(_ value: V?, root: Int = 0) throws -> V {
        try checkRank(root, "broadcast")
        if rank == root {
            guard let value else {
                throw MPIError(call: "broadcast", code: -1, message: "the root rank \(root) passed no value")
            }
            var bytes = try WireCoding.encode(value)
            try broadcast(&bytes, root: root)
            return value
        }
        var bytes: [UInt8] = []
        try broadcast(&bytes, root: root)
        return try WireCoding.decode(V.self, from: bytes)
    }

    /// Gives rank `i` the value `values[i]` of `root` (which passes one per
    /// rank; other ranks pass nil).
    public func scatter<V: Codable>(_ values: [V]?, root: Int = 0) throws -> V {
        try checkRank(root, "scatter")
        var counts = [Int](repeating: 0, count: size)
        var flat: [UInt8] = []
        var bad: Int64 = 0
        if rank == root {
            if let values, values.count == size {
                for (r, v) in values.enumerated() {
                    let bytes = try WireCoding.encode(v)
                    counts[r] = bytes.count
                    flat.append(contentsOf: bytes)
                }
            } else {
                bad = 1
            }
        }
        var wire = counts.map(Int64.init) + [bad]
        try broadcast(&wire, root: root)
        guard wire[size] == 0 else {
            throw MPIError(
                call: "scatter", code: -1, message: "the root rank \(root) must pass one value per rank (\(size))")
        }
        counts = wire.prefix(size).map { Int($0) }
        return try WireCoding.decode(V.self, from: try scatterv(flat, counts: counts, root: root))
    }

    /// Collects every rank's `value` on `root`, in rank order; other ranks
    /// get nil.
    public func gather<V: Codable>(_ value: V, root: Int = 0) throws -> [V]? {
        try gather(try WireCoding.encode(value), root: root)?.map { try WireCoding.decode(V.self, from: $0) }
    }

    /// Collects every rank's `value` on every rank, in rank order.
    public func allgather<V: Codable>(_ value: V) throws -> [V] {
        try allgather(try WireCoding.encode(value)).map { try WireCoding.decode(V.self, from: $0) }
    }

    /// Combines every rank's `value` with `merge` and gives the result to
    /// `root` (others get nil). The merge runs on a tree of ranks
    /// (log2(size) steps), always as merge(lower ranks, higher ranks), so it
    /// need only be associative, not commutative.
    public func reduce<V: Codable>(_ value: V, root: Int = 0, merge: (V, V) throws -> V) throws -> V? {
        try checkRank(root, "reduce")
        var acc = value
        var step = 1
        // Rank r holds the merge of ranks r ..< r + step; at each step the
        // ranks with bit `step` set hand theirs to the rank `step` below.
        while step < size {
            if rank & step != 0 {
                try sendChunks(try WireCoding.encode(acc), count: nil, to: rank - step)
                break
            }
            if rank + step < size {
                let theirs = try WireCoding.decode(
                    V.self, from: try receiveChunks(UInt8.self, from: rank + step, tag: 3, on: inner))
                acc = try merge(acc, theirs)
            }
            step <<= 1
        }
        if root == 0 { return rank == 0 ? acc : nil }
        if rank == 0 { try sendChunks(try WireCoding.encode(acc), count: nil, to: root) }
        if rank == root {
            return try WireCoding.decode(V.self, from: try receiveChunks(UInt8.self, from: 0, tag: 3, on: inner))
        }
        return nil
    }

    /// Combines every rank's `value` with `merge`, and gives every rank the
    /// result (see `reduce` for the order of merging).
    public func allreduce<V: Codable>(_ value: V, merge: (V, V) throws -> V) throws -> V {
        let total = try reduce(value, root: 0, merge: merge)
        return try broadcast(total, root: 0)
    }

    private func sendChunks(_ bytes: [UInt8], count: Int?, to dest: Int) throws {
        try bytes.withUnsafeBytes { raw in
            try sendChunks(raw.baseAddress, count: bytes.count, UInt8.self, to: dest, tag: 3, on: inner)
        }
    }
}
#endif
