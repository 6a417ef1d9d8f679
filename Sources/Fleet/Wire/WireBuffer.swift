#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A growable byte buffer that the wire encoder writes into, and a bounds-
/// checked reader over bytes received. Values are stored little-endian, the
/// byte order of every platform Fleet runs on (x86-64 and ARM64 Linux).
@usableFromInline
final class WireBuffer {
    // Not checked for exclusive access at run time (a check on every
    // append costs more than the append): a buffer is written by one
    // thread at a time, and these are only read and assigned here, never
    // passed `inout`, so no two accesses can overlap.
    @exclusivity(unchecked) @usableFromInline private(set) var base: UnsafeMutableRawPointer
    @exclusivity(unchecked) @usableFromInline private(set) var count = 0
    @exclusivity(unchecked) @usableFromInline private(set) var capacity: Int

    /// Where the bytes live once they outgrow `arenaThreshold`: shared
    /// memory, so a worker process can read them in place.
    let arena: SharedArena?
    /// The arena range holding the bytes, if they are there.
    private(set) var shared: (offset: Int, length: Int)?
    static let arenaThreshold = 1 << 16

    @usableFromInline
    init(capacity: Int = 256, arena: SharedArena? = nil) {
        self.capacity = max(capacity, 64)
        self.arena = arena
        base = .allocate(byteCount: self.capacity, alignment: 16)
    }

    deinit { releaseStorage() }

    private func releaseStorage() {
        if let shared, let arena { arena.release(shared) } else { base.deallocate() }
    }

    /// Makes room for `n` more bytes.
    @inlinable
    func reserve(_ n: Int) {
        if capacity - count < n { grow(to: count + n) }
    }

    @usableFromInline
    func grow(to needed: Int) {
        var newCapacity = capacity * 2
        while newCapacity < needed { newCapacity *= 2 }
        if let arena, newCapacity >= Self.arenaThreshold, let range = arena.allocate(newCapacity) {
            let newBase = arena.base + range.offset
            newBase.copyMemory(from: base, byteCount: count)
            releaseStorage()
            base = newBase
            shared = range
            capacity = range.length
            return
        }
        let newBase = UnsafeMutableRawPointer.allocate(byteCount: newCapacity, alignment: 16)
        newBase.copyMemory(from: base, byteCount: count)
        releaseStorage()
        shared = nil
        base = newBase
        capacity = newCapacity
    }

    /// Where the bytes sit in the shared arena, if they do.
    var sharedOffset: Int? { shared?.offset }

    /// The most bytes the encoder may write: a raw array that would go over
    /// sets `overLimit` instead of being copied, and the encoder throws
    /// `WireLimitExceeded` (see `encodeLimited`).
    @exclusivity(unchecked) @usableFromInline var limit = Int.max
    @exclusivity(unchecked) @usableFromInline var overLimit = false

    /// Whether `n` more bytes fit under `limit`; if not, notes it.
    @usableFromInline
    func fits(_ n: Int) -> Bool {
        if n <= limit &- totalCount { return true }
        overLimit = true
        return false
    }

    /// Throws `WireLimitExceeded` if what was written went over `limit`.
    @usableFromInline
    func checkLimit() throws {
        guard overLimit || totalCount > limit else { return }
        overLimit = false
        throw WireLimitExceeded()
    }

    /// Frees memory beyond `limit` bytes of capacity once the buffer is
    /// empty, so one big message does not pin its size for good.
    func shrink(ifOver limit: Int) {
        guard count == 0, capacity > limit, shared == nil else { return }
        base.deallocate()
        capacity = 1 << 12
        base = .allocate(byteCount: capacity, alignment: 16)
    }

    @inlinable
    func append<T: FixedWidthInteger>(_ value: T) {
        reserve(MemoryLayout<T>.size)
        base.storeBytes(of: value.littleEndian, toByteOffset: count, as: T.self)
        count += MemoryLayout<T>.size
    }

    @inlinable
    func append(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { return }
        reserve(bytes.count)
        (base + count).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        count += bytes.count
    }

    /// Appends `n` bytes written by `body` straight into the buffer.
    @inlinable
    func append(count n: Int, _ body: (UnsafeMutableRawBufferPointer) -> Void) {
        reserve(n)
        body(UnsafeMutableRawBufferPointer(start: base + count, count: n))
        count += n
    }

    @inlinable
    func appendString(_ s: String) {
        var s = s
        s.withUTF8 { utf8 in
            append(UInt32(utf8.count))
            append(UnsafeRawBufferPointer(utf8))
        }
    }

    /// Overwrites a value written earlier (a length known only afterwards).
    @inlinable
    func patch<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        precondition(offset >= 0 && offset + MemoryLayout<T>.size <= count)
        base.storeBytes(of: value.littleEndian, toByteOffset: offset, as: T.self)
    }

    func removeAll() {
        count = 0
        externals.removeAll()
        externalBytes = 0
    }

    /// Drops what was written after the first `n` bytes.
    func truncate(to n: Int) {
        precondition(n >= 0 && n <= count)
        count = n
        while let last = externals.last, last.at >= n {
            externalBytes -= last.bytes.count
            externals.removeLast()
        }
    }

    // MARK: Bytes written from elsewhere

    /// Whether big numeric arrays may be referenced instead of copied
    /// (a worker's reply buffer, written with `write(to:)`).
    @usableFromInline var allowsExternal = false
    /// Referenced bytes, each to be written after inline byte `at`.
    private var externals: [(at: Int, keep: Any, bytes: UnsafeRawBufferPointer)] = []
    /// Total size of the referenced bytes.
    private(set) var externalBytes = 0
    @usableFromInline static let externalThreshold = 1 << 20

    /// References `array`'s memory as the next bytes. The copy in `keep`
    /// holds the array's storage, which does not move while it is shared
    /// and unmutated, so the pointer stays valid until the buffer is reset.
    @usableFromInline func appendExternal<T: BitwiseCopyable>(_ array: [T]) {
        let keep: Any = array
        array.withUnsafeBytes { raw in
            externals.append((count, keep, raw))
            externalBytes += raw.count
        }
    }

    /// The referenced bytes placed after inline byte `offset`.
    func externalBytes(after offset: Int) -> Int {
        var total = 0
        for e in externals.reversed() {
            if e.at < offset { break }
            total += e.bytes.count
        }
        return total
    }

    /// Inline and referenced bytes together: the size of what `write(to:)`
    /// writes.
    var totalCount: Int { count + externalBytes }

    /// Whether some bytes are referenced rather than held.
    var hasExternals: Bool { !externals.isEmpty }

    /// Calls `body` with every run of bytes, inline and referenced, in order.
    func forEachSegment(_ body: (UnsafeRawBufferPointer) throws -> Void) rethrows {
        var at = 0
        for e in externals {
            try body(UnsafeRawBufferPointer(start: base + at, count: e.at - at))
            try body(e.bytes)
            at = e.at
        }
        try body(UnsafeRawBufferPointer(start: base + at, count: count - at))
    }

    /// Writes everything, inline and referenced bytes in order, to `fd`.
    func write(to fd: Int32) throws {
        try forEachSegment { try writeAll(fd, $0) }
    }

    /// The bytes written so far (valid until the next write).
    @inlinable
    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

    /// A copy of the bytes written so far.
    var array: [UInt8] { Array(bytes) }
}

/// Reads values back from received bytes. Every read is bounds-checked: a
/// truncated or corrupt frame throws `WireError`, never reads past its end.
@usableFromInline
struct WireReader {
    @usableFromInline let base: UnsafeRawPointer
    @usableFromInline var offset: Int
    @usableFromInline let end: Int
    /// The bytes are private memory of this process that nothing reads
    /// again once decoded (a frame the driver received), so a big array
    /// may give their pages back as it copies them (`copyReleasing`).
    @usableFromInline var releasable = false

    @usableFromInline
    init(_ bytes: UnsafeRawBufferPointer) {
        // An empty buffer may have no address; any non-null pointer will do
        // since nothing is read from it.
        base = bytes.baseAddress ?? UnsafeRawPointer(bitPattern: 16)!
        offset = 0
        end = bytes.count
    }

    @inlinable var remaining: Int { end - offset }
    @inlinable var isAtEnd: Bool { offset == end }

    @inlinable
    mutating func read<T: FixedWidthInteger>(_: T.Type = T.self) throws -> T {
        guard remaining >= MemoryLayout<T>.size else {
            throw WireError.truncated(needed: MemoryLayout<T>.size, left: remaining)
        }
        let v = base.loadUnaligned(fromByteOffset: offset, as: T.self)
        offset += MemoryLayout<T>.size
        return T(littleEndian: v)
    }

    @inlinable
    mutating func readBytes(_ n: Int) throws -> UnsafeRawBufferPointer {
        guard n >= 0, remaining >= n else { throw WireError.truncated(needed: n, left: remaining) }
        defer { offset += n }
        return UnsafeRawBufferPointer(start: base + offset, count: n)
    }

    /// Reads a count of things that each take at least `minBytes` bytes,
    /// rejecting counts the rest of the frame cannot hold.
    @inlinable
    mutating func readCount(minBytes: Int = 1) throws -> Int {
        let n = try read(UInt64.self)
        guard n <= UInt64(remaining / max(minBytes, 1)) else {
            throw WireError.corrupt("a count of \(n) does not fit in the \(remaining) bytes left")
        }
        return Int(n)
    }

    /// Copies the next `n` bytes to `destination`. When the bytes are
    /// `releasable`, copies them 8 MiB at a time and gives the pages copied
    /// back to the system, so a big array decoded from a frame never needs
    /// twice its size.
    @usableFromInline
    mutating func copyReleasing(_ n: Int, to destination: UnsafeMutableRawPointer) throws {
        let source = try readBytes(n)
        guard releasable, n >= Self.releaseThreshold, let from = source.baseAddress else {
            destination.copyMemory(from: source.baseAddress ?? UnsafeRawPointer(destination), byteCount: n)
            return
        }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        var done = 0
        while done < n {
            let step = min(8 << 20, n - done)
            (destination + done).copyMemory(from: from + done, byteCount: step)
            done += step
            // Whole pages of the source that are copied by now.
            let first = (Int(bitPattern: from) + page - 1) / page * page
            let last = (Int(bitPattern: from) + done) / page * page
            if last > first { madvise(UnsafeMutableRawPointer(bitPattern: first), last - first, MADV_DONTNEED) }
        }
    }

    /// Arrays at least this big give their source pages back as they copy.
    @usableFromInline static let releaseThreshold = 32 << 20

    @usableFromInline
    mutating func readString() throws -> String {
        let n = Int(try read(UInt32.self))
        let raw = try readBytes(n)
        guard let s = String(validating: raw, as: UTF8.self) else {
            throw WireError.corrupt("a string is not valid UTF-8")
        }
        return s
    }
}

/// Why bytes could not be decoded.
public enum WireError: Error, Equatable, CustomStringConvertible {
    /// The bytes end before the value does.
    case truncated(needed: Int, left: Int)
    /// The bytes do not describe a value of the expected type.
    case corrupt(String)

    public var description: String {
        switch self {
        case .truncated(let needed, let left): return "truncated data: needed \(needed) more bytes, \(left) left"
        case .corrupt(let why): return "corrupt data: \(why)"
        }
    }
}
