import CFleetShims

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Shared memory for big request payloads: one memory file per pool,
/// mapped by the driver and by every worker. The driver encodes a big
/// payload straight into it (see `WireBuffer`), and the request frame
/// carries only its offset and length, so the bytes are copied once on each
/// side and never pass through a pipe.
///
/// The mapping reserves address space for the largest arena up front; the
/// file grows as it is used (pages cost memory only once written).
/// Ranges are allocated first-fit and freed when the payload's job is done,
/// which is after the worker's reply, or its death.
@usableFromInline
final class SharedArena: @unchecked Sendable {
    // Safe: `free`, `end` and `size` are guarded by `mutex`; `base` and
    // `fd` never change.
    let fd: Int32
    let base: UnsafeMutableRawPointer
    static let reserved = 1 << 36  // 64 GiB of address space
    static let granule = 1 << 16
    private let mutex = PthreadMutex()
    private var free: [(offset: Int, length: Int)] = []
    private var end = 0
    private var size = 0

    init() throws {
        fd = cfleet_memfd("fleet-arena")
        guard fd >= 0 else { throw FleetError.workerStartFailed("memfd_create: \(String(cString: strerror(errno)))") }
        guard let p = mmap(nil, Self.reserved, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0),
            p != MAP_FAILED
        else {
            close(fd)
            throw FleetError.workerStartFailed("mmap of the shared arena: \(String(cString: strerror(errno)))")
        }
        base = p
    }

    deinit {
        munmap(base, Self.reserved)
        close(fd)
    }

    /// A range of at least `n` bytes, or nil if the arena is full.
    func allocate(_ n: Int) -> (offset: Int, length: Int)? {
        let length = (n + Self.granule - 1) / Self.granule * Self.granule
        mutex.lock()
        defer { mutex.unlock() }
        if let i = free.firstIndex(where: { $0.length >= length }) {
            let range = free[i]
            if range.length == length {
                free.remove(at: i)
            } else {
                free[i] = (range.offset + length, range.length - length)
            }
            return (range.offset, length)
        }
        guard end + length <= Self.reserved else { return nil }
        if end + length > size {
            let newSize = min(Self.reserved, max(size * 2, end + length, 1 << 26))
            guard ftruncate(fd, off_t(newSize)) == 0 else { return nil }
            size = newSize
        }
        defer { end += length }
        return (end, length)
    }

    func release(_ range: (offset: Int, length: Int)) {
        mutex.lock()
        defer { mutex.unlock() }
        var merged = range
        // Coalesce with free neighbours, then keep the list sorted.
        free.removeAll { r in
            if r.offset + r.length == merged.offset {
                merged = (r.offset, r.length + merged.length)
                return true
            }
            if merged.offset + merged.length == r.offset {
                merged.length += r.length
                return true
            }
            return false
        }
        if merged.offset + merged.length == end {
            end = merged.offset
        } else {
            let at = free.firstIndex { $0.offset > merged.offset } ?? free.count
            free.insert(merged, at: at)
        }
    }
}

/// A worker's read-only view of its pool's arena.
struct ArenaView {
    let fd: Int32
    let base: UnsafeRawPointer

    init(inherited fd: Int32) throws {
        self.fd = fd
        guard let p = mmap(nil, SharedArena.reserved, PROT_READ, MAP_SHARED | MAP_NORESERVE, fd, 0), p != MAP_FAILED
        else {
            throw FleetError.protocolViolation("cannot map the shared arena")
        }
        base = UnsafeRawPointer(p)
    }

    /// The bytes at `offset`, checked against the arena's current size so
    /// that a corrupt frame cannot make the worker touch unmapped pages.
    func bytes(offset: UInt64, length: UInt64) throws -> UnsafeRawBufferPointer {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw FrameError.io("fstat", errno) }
        guard offset <= UInt64(st.st_size), length <= UInt64(st.st_size) - offset else {
            throw WireError.corrupt("shared range \(offset)+\(length) is outside the arena (\(st.st_size) bytes)")
        }
        return UnsafeRawBufferPointer(start: base + Int(offset), count: Int(length))
    }
}
