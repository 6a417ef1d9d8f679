#if MPI
import Fleet

struct Note: Codable, Equatable {
    var from: Int
    var text: String
    var values: [Float]
}

/// Every communicator call, checked on every rank against what it must give.
func checkCollectives() throws {
    let w = try MPI.world
    let (r, n) = (w.rank, w.size)
    expect(n >= 2, "needs 2 ranks or more")
    try w.barrier()

    // Point to point: a ring, numbers then Codable values. Arrays of 16
    // Doubles are an exact number of chunks when messages are split at 64
    // bytes, and 1,000 are not.
    let next = (r + 1) % n
    let prev = (r + n - 1) % n
    for length in [0, 16, 1_000] {
        let mine = (0..<length).map { Double(r * 10_000 + $0) }
        var got: [Double]
        if r % 2 == 0 {
            try w.send(mine, to: next, tag: 7)
            got = try w.receive([Double].self, from: prev, tag: 7)
        } else {
            got = try w.receive([Double].self, from: prev, tag: 7)
            try w.send(mine, to: next, tag: 7)
        }
        expect(got == (0..<length).map { Double(prev * 10_000 + $0) }, "ring of \(length) doubles on rank \(r)")
    }
    let note = Note(from: r, text: "from \(r) to \(next)", values: (0..<300).map { Float($0 * r) })
    let received: Note
    if r % 2 == 0 {
        try w.send(note, to: next, tag: 8)
        received = try w.receive(Note.self, from: prev, tag: 8)
    } else {
        received = try w.receive(Note.self, from: prev, tag: 8)
        try w.send(note, to: next, tag: 8)
    }
    expect(
        received == Note(from: prev, text: "from \(prev) to \(r)", values: (0..<300).map { Float($0 * prev) }),
        "Codable ring on rank \(r)")

    // Broadcast: other ranks' arrays are replaced whatever their length.
    var b: [Int32] = r == 1 ? Array(0..<1_000) : [99]
    try w.broadcast(&b, root: 1)
    expect(b == Array(0..<1_000), "broadcast of numbers on rank \(r)")
    let shared = try w.broadcast(r == 0 ? Note(from: 0, text: "all", values: [1, 2, 3]) : nil, root: 0)
    expect(shared == Note(from: 0, text: "all", values: [1, 2, 3]), "broadcast of a Codable value on rank \(r)")

    // Scatter: contiguous parts, the first count % size one longer.
    let total = 10 * n + 1
    let part = try w.scatter(r == 0 ? Array(0..<total) : [], root: 0)
    let sizes = (0..<n).map { total / n + ($0 < total % n ? 1 : 0) }
    let start = sizes.prefix(r).reduce(0, +)
    expect(part == Array(start..<start + sizes[r]), "scatter part of rank \(r): \(part)")
    let word = try w.scatter(r == 0 ? (0..<n).map { "word \($0)" } : nil, root: 0)
    expect(word == "word \(r)", "scatter of Codable values on rank \(r)")

    // Gather and allgather, arrays of different lengths.
    let contribution = [UInt16](repeating: UInt16(r), count: r + 1)
    let gathered = try w.gather(contribution, root: n - 1)
    if r == n - 1 {
        expect(gathered == (0..<n).map { [UInt16](repeating: UInt16($0), count: $0 + 1) }, "gather on the root")
    } else {
        expect(gathered == nil, "gather off the root gives nil")
    }
    let everyone = try w.allgather(contribution)
    expect(everyone == (0..<n).map { [UInt16](repeating: UInt16($0), count: $0 + 1) }, "allgather on rank \(r)")
    let names = try w.allgather(Note(from: r, text: w.processorName, values: []))
    expect(names.map(\.from) == Array(0..<n), "allgather of Codable values on rank \(r)")
    let notes = try w.gather(note, root: 0)
    expect(r != 0 || notes?.map(\.from) == Array(0..<n), "gather of Codable values")

    // Reductions, numbers: every op, in place and not, scalars.
    let values = (0..<1_000).map { Double($0 + r) }
    let sum = try w.reduce(values, .sum, root: 0)
    let rankSum = Double(n * (n - 1) / 2)
    if r == 0 {
        expect(sum == (0..<1_000).map { Double(n * $0) + rankSum }, "reduce sum")
    } else {
        expect(sum == nil, "reduce off the root gives nil")
    }
    var inPlace = values
    try w.allreduce(&inPlace, .sum)
    expect(inPlace == (0..<1_000).map { Double(n * $0) + rankSum }, "allreduce sum in place on rank \(r)")
    expect(try w.allreduce(r + 1, .product) == (1...n).reduce(1, *), "allreduce product")
    expect(try w.allreduce(Int64(r), .max) == Int64(n - 1), "allreduce max")
    expect(try w.allreduce(Float(r) - 0.5, .min) == -0.5, "allreduce min")
    var big = [Float](repeating: Float(r), count: 100_003)
    try w.allreduce(&big, .sum)
    expect(big.allSatisfy { $0 == Float(rankSum) }, "allreduce of 100,003 floats")

    // Reductions, Codable: the merge need not commute; it sees lower ranks
    // on the left.
    let joined = try w.reduce("\(r)", root: n - 1) { $0 + "," + $1 }
    expect(
        r != n - 1 || joined == (0..<n).map(String.init).joined(separator: ","),
        "Codable reduce order: \(joined ?? "nil")")
    let merged = try w.allreduce(Note(from: r, text: "\(r)", values: [Float(r)])) { a, b in
        Note(from: min(a.from, b.from), text: a.text + b.text, values: a.values + b.values)
    }
    expect(
        merged == Note(from: 0, text: (0..<n).map(String.init).joined(), values: (0..<n).map(Float.init)),
        "Codable allreduce on rank \(r)")

    // Bad input: a clear error on every rank, never a hang.
    do {
        var mismatched = [Double](repeating: 1, count: 10 + r)
        try w.allreduce(&mismatched, .sum)
        fail("allreduce with different lengths did not throw")
    } catch let error as MPIError {
        expect(error.message.contains("different element counts"), "mismatch message: \(error)")
    }
    do {
        _ = try w.gather([1], root: n)
        fail("a root out of range did not throw")
    } catch let error as MPIError {
        expect(error.message.contains("out of range"), "bad root message: \(error)")
    }
    // An error MPI itself finds comes with MPI's own message.
    do {
        try w.send([1.0], to: r, tag: -7)
        fail("a negative tag did not throw")
    } catch let error as MPIError {
        expect(error.call == "MPI_Send" && error.message.contains("MPI_ERR_TAG"), "MPI's message: \(error)")
        if r == 0 { print("MPI's error as Fleet throws it: \(error)") }
    }
    try w.barrier()
    if r == 0 { print("ok collectives on \(n) ranks, messages split at \(w.maxMessageBytes) bytes") }
}

/// A message over 2 GiB, point to point and broadcast, through MPI's
/// int-sized counts.
func checkHuge() throws {
    let w = try MPI.world
    let count = (1 << 31) + 4_099
    if w.rank == 0 {
        var bytes = [UInt8](repeating: 7, count: count)
        bytes[count - 1] = 9
        try w.send(bytes, to: 1, tag: 1)
    } else if w.rank == 1 {
        let got = try w.receive([UInt8].self, from: 0, tag: 1)
        expect(
            got.count == count && got[0] == 7 && got[count / 2] == 7 && got[count - 1] == 9,
            "a 2 GiB message arrived whole")
    }
    try w.barrier()
    if w.rank == 0 { print("ok huge: \(count) bytes") }
}
#endif
