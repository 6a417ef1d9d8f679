#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The kinds of frame on a driver–worker channel (see PROTOCOL.md).
enum FrameKind: UInt8 {
    /// Worker → driver, first: protocol version, pid, task signatures.
    case hello = 1
    /// Driver → worker: run a batch of one task.
    case request = 2
    /// Worker → driver: the outcome of one request.
    case reply = 3
    /// Driver → worker: exit once idle.
    case shutdown = 4
    /// Worker → driver, last: the worker hit a protocol error and exits.
    case fatal = 5
    /// Driver → worker: run the pool's initialiser.
    case initialize = 6
}

/// The version of the frame layout and handshake. Driver and worker must
/// agree exactly.
let wireProtocolVersion: UInt16 = 4

/// Every frame starts with these 16 bytes.
struct FrameHeader: Equatable {
    static let size = 16
    /// Bytes after the header.
    var length: UInt32
    var kind: FrameKind
    /// Matches a reply to its request; 0 for other frames.
    var seq: UInt64
    /// A request whose inputs are in the shared arena (flag bit 0).
    var shared = false

    func write(into buffer: WireBuffer) {
        buffer.append(length)
        buffer.append(kind.rawValue)
        buffer.append(UInt8(shared ? 1 : 0))  // flags
        buffer.append(UInt16(0))  // reserved
        buffer.append(seq)
    }

    static func parse(_ bytes: UnsafeRawBufferPointer, maxLength: Int) throws -> FrameHeader {
        var r = WireReader(bytes)
        let length = try r.read(UInt32.self)
        let rawKind = try r.read(UInt8.self)
        let flags = try r.read(UInt8.self)
        let reserved = try r.read(UInt16.self)
        let seq = try r.read(UInt64.self)
        guard let kind = FrameKind(rawValue: rawKind) else {
            throw FrameError.malformed("unknown frame kind \(rawKind)")
        }
        guard flags & ~1 == 0, reserved == 0, flags == 0 || kind == .request else {
            throw FrameError.malformed("reserved header bits set")
        }
        guard Int(length) <= maxLength else { throw FrameError.oversized(Int(length), limit: maxLength) }
        return FrameHeader(length: length, kind: kind, seq: seq, shared: flags == 1)
    }
}

/// A channel fault.
enum FrameError: Error, CustomStringConvertible {
    case malformed(String)
    case oversized(Int, limit: Int)
    /// The stream ended inside a frame.
    case truncated
    case io(String, Int32)

    var description: String {
        switch self {
        case .malformed(let why): return "malformed frame: \(why)"
        case .oversized(let n, let limit): return "oversized frame: \(n) bytes, limit \(limit)"
        case .truncated: return "the channel closed in the middle of a frame"
        case .io(let call, let err): return "\(call) failed: \(String(cString: strerror(err)))"
        }
    }
}

/// Reads frames from a file descriptor through one buffer, so that several
/// small frames cost one `read` call.
final class FrameReader {
    let fd: Int32
    let maxLength: Int
    private var storage: UnsafeMutableRawPointer
    private var capacity: Int
    private var start = 0
    private var end = 0
    /// For a non-blocking `fd`: waits until it can be read, or returns
    /// false when nothing more will come (the writer has gone), which then
    /// reads as the end of the stream.
    private let waitReadable: (() -> Bool)?

    init(fd: Int32, maxLength: Int, capacity: Int = 1 << 16, waitReadable: (() -> Bool)? = nil) {
        self.fd = fd
        self.maxLength = maxLength
        self.waitReadable = waitReadable
        self.capacity = capacity
        storage = .allocate(byteCount: capacity, alignment: 16)
    }

    deinit { storage.deallocate() }

    /// True when a whole frame is already buffered (no `read` needed).
    var hasBufferedFrame: Bool {
        guard end - start >= FrameHeader.size else { return false }
        let length = storage.loadUnaligned(fromByteOffset: start, as: UInt32.self)
        return end - start - FrameHeader.size >= Int(length)
    }

    /// The next frame, or nil at a clean end of stream. The body is valid
    /// until the next call.
    func next() throws -> (FrameHeader, UnsafeRawBufferPointer)? {
        if start == end && capacity > 1 << 20 {
            // The last frame was big and is consumed: do not keep its memory.
            storage.deallocate()
            capacity = 1 << 16
            storage = .allocate(byteCount: capacity, alignment: 16)
            start = 0
            end = 0
        }
        guard try fill(FrameHeader.size, eofOK: true) else { return nil }
        let header = try FrameHeader.parse(
            UnsafeRawBufferPointer(start: storage + start, count: FrameHeader.size),
            maxLength: maxLength)
        let total = FrameHeader.size + Int(header.length)
        guard try fill(total, eofOK: false) else { throw FrameError.truncated }
        let body = UnsafeRawBufferPointer(start: storage + start + FrameHeader.size, count: Int(header.length))
        start += total
        return (header, body)
    }

    /// Ensures `n` bytes are buffered. Returns false at end of stream with
    /// nothing buffered (when `eofOK`).
    private func fill(_ n: Int, eofOK: Bool) throws -> Bool {
        if end - start >= n { return true }
        if capacity - start < n {
            // Move what is buffered to the front, growing if the frame needs it.
            let have = end - start
            if n > capacity {
                var newCapacity = capacity
                while newCapacity < n { newCapacity *= 2 }
                let bigger = UnsafeMutableRawPointer.allocate(byteCount: newCapacity, alignment: 16)
                bigger.copyMemory(from: storage + start, byteCount: have)
                storage.deallocate()
                storage = bigger
                capacity = newCapacity
            } else {
                (storage).copyMemory(from: storage + start, byteCount: have)
            }
            start = 0
            end = have
        }
        while end - start < n {
            let got = read(fd, storage + end, capacity - end)
            if got > 0 {
                end += got
            } else if got == 0 || (errno == EAGAIN && waitReadable?() == false) {
                if eofOK && end == start { return false }
                throw FrameError.truncated
            } else if errno != EINTR && errno != EAGAIN {
                throw FrameError.io("read", errno)
            }
        }
        return true
    }
}

/// Writes all of `bytes` to `fd`, retrying partial writes.
func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) throws {
    var offset = 0
    while offset < bytes.count {
        let n = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
        if n > 0 {
            offset += n
        } else if n < 0 && errno != EINTR {
            throw FrameError.io("write", errno)
        }
    }
}

/// Appends a frame whose body `body` writes, patching the length afterwards.
func appendFrame(_ kind: FrameKind, seq: UInt64, to buffer: WireBuffer, _ body: (WireBuffer) throws -> Void) throws {
    let headerAt = buffer.count
    let externalBefore = buffer.externalBytes
    FrameHeader(length: 0, kind: kind, seq: seq).write(into: buffer)
    try body(buffer)
    let length = buffer.count - headerAt - FrameHeader.size + buffer.externalBytes - externalBefore
    guard length <= Int(UInt32.max) else { throw FrameError.oversized(length, limit: Int(UInt32.max)) }
    buffer.patch(UInt32(length), at: headerAt)
}
