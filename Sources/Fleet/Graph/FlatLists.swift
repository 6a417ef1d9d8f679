/// Lists of positions, one per node, stored flat: list i is
/// `items[starts[i]..<starts[i + 1]]`. One allocation for a whole graph
/// instead of one per node.
struct FlatLists {
    private var starts: [Int32]
    private var items: [Int32]

    /// Builds `count` lists; `fill(i, add)` adds list i's items in order.
    init(count: Int, _ fill: (Int, (Int) -> Void) -> Void) {
        starts = [0]
        starts.reserveCapacity(count + 1)
        items = []
        for i in 0..<count {
            fill(i) { items.append(Int32($0)) }
            starts.append(Int32(items.count))
        }
    }

    private init(starts: [Int32], items: [Int32]) {
        self.starts = starts
        self.items = items
    }

    func count(of i: Int) -> Int { Int(starts[i + 1] - starts[i]) }

    subscript(i: Int) -> LazyMapSequence<ArraySlice<Int32>, Int> {
        items[Int(starts[i])..<Int(starts[i + 1])].lazy.map { Int($0) }
    }

    /// The reverse lists: j is in list i of the result for every i in list j.
    func inverted() -> FlatLists {
        let n = starts.count - 1
        var counts = [Int32](repeating: 0, count: n + 1)
        for item in items { counts[Int(item) + 1] += 1 }
        for i in 0..<n { counts[i + 1] += counts[i] }
        var fill = counts
        var out = [Int32](repeating: 0, count: items.count)
        for j in 0..<n {
            for k in Int(starts[j])..<Int(starts[j + 1]) {
                let i = Int(items[k])
                out[Int(fill[i])] = Int32(j)
                fill[i] += 1
            }
        }
        return FlatLists(starts: counts, items: out)
    }
}

/// A set of integers with open addressing and a multiplicative hash:
/// cheaper than `Set<Int>` (which hashes with SipHash) for the hundreds of
/// thousands of node ids a graph run looks up.
struct IntSet {
    private var map: IntMap

    init(capacity: Int) { map = IntMap(capacity: capacity) }

    func contains(_ key: Int) -> Bool { map[key] != nil }

    /// Inserts `key`; false if it was there already.
    mutating func insert(_ key: Int) -> Bool {
        if map[key] != nil { return false }
        map[key] = 0
        return true
    }
}

/// A map from non-negative integers to integers, open addressing.
struct IntMap {
    private var keys: [Int]
    private var values: [Int32]
    private var count = 0
    private var mask: Int

    init(capacity: Int) {
        var size = 16
        while size < capacity * 2 { size *= 2 }
        keys = [Int](repeating: -1, count: size)
        values = [Int32](repeating: 0, count: size)
        mask = size - 1
    }

    private func slot(_ key: Int) -> Int {
        var i = Int(truncatingIfNeeded: (UInt64(bitPattern: Int64(key)) &* 0x9E37_79B9_7F4A_7C15) >> 20) & mask
        while keys[i] != -1 && keys[i] != key { i = (i + 1) & mask }
        return i
    }

    subscript(key: Int) -> Int? {
        get {
            let i = slot(key)
            return keys[i] == key ? Int(values[i]) : nil
        }
        set {
            precondition(key >= 0)
            if count * 2 >= keys.count { grow() }
            let i = slot(key)
            if keys[i] != key {
                keys[i] = key
                count += 1
            }
            values[i] = Int32(newValue ?? 0)
        }
    }

    private mutating func grow() {
        let old = zip(keys, values).filter { $0.0 != -1 }
        keys = [Int](repeating: -1, count: keys.count * 2)
        values = [Int32](repeating: 0, count: keys.count)
        mask = keys.count - 1
        count = 0
        for (k, v) in old { self[k] = Int(v) }
    }
}
