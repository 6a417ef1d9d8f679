import CFleetShims

/// Process-wide settings of the C allocator that matter when large results
/// move between threads.
public enum MallocTuning {
    /// Makes glibc's `malloc` serve blocks of `bytes` or more with their own
    /// mappings and return them to the system as soon as they are freed.
    ///
    /// By default glibc raises that threshold as large blocks are freed and
    /// keeps freed blocks in the arena of the thread that allocated them. A
    /// pool whose workers make large results that the caller frees (a
    /// `reduce` over 16 MiB arrays, say) then holds several freed results
    /// per worker thread in memory: resident memory grows well past the
    /// window's worth of live results. With a fixed threshold it stays at
    /// the live set, at the cost of fresh pages for each large block.
    /// Returns false where the allocator does not support it.
    @discardableResult
    public static func returnLargeBlocksToSystem(above bytes: Int = 4 << 20) -> Bool {
        cfleet_set_mmap_threshold(Int32(clamping: bytes)) == 1
    }
}
