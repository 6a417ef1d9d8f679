extension Array {
    /// An array of `count` elements that `body` initializes, all of them,
    /// in place. Unlike `init(unsafeUninitializedCapacity:)`, an empty one
    /// never touches the standard library's shared empty-array storage
    /// (which that initializer writes a zero count into: a data race Thread
    /// Sanitizer reports when two threads make empty arrays at once).
    /// `body` runs either way, with an empty buffer for `count` 0.
    @inlinable
    init(filling count: Int, _ body: (UnsafeMutableBufferPointer<Element>) throws -> Void) rethrows {
        guard count > 0 else {
            try body(UnsafeMutableBufferPointer(start: nil, count: 0))
            self = []
            return
        }
        try self.init(unsafeUninitializedCapacity: count) { buffer, initialized in
            try body(buffer)
            initialized = count
        }
    }
}
