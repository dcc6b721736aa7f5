//! The heap policy of a training process: freed memory stays in the process for the next step.
//!
//! A step allocates and frees the same large activations and gradients every time. glibc's
//! default serves each block over 128 KiB (up to 32 MiB, adaptively) with a fresh `mmap` and
//! unmaps it on free, so the kernel zeroes every page of every activation again, every step:
//! 14 % of a full-size step at batch 32 was `clear_page` (perf, BENCHMARKS.md). Served from the
//! heap and never trimmed, the blocks are reused as they are. The resident size then stays at
//! the step's peak between steps instead of falling back, which training reaches again at once.

/// Serves every allocation from the heap and keeps freed memory (glibc on Linux; elsewhere the
/// allocator's own policy stays). Call before the first step.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes the allocator's thresholds; it is thread-safe and every
    // value here is one glibc documents for these parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX);
        libc::mallopt(libc::M_TOP_PAD, 256 << 20);
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    /// Bytes glibc currently serves from `mmap`ed blocks.
    fn mapped_bytes() -> usize {
        // SAFETY: mallinfo2 only reads the allocator's statistics.
        unsafe { libc::mallinfo2() }.hblkhd
    }

    #[test]
    fn a_large_block_comes_from_the_heap_and_is_kept() {
        super::keep_freed_memory();
        let before = mapped_bytes();
        // glibc's default maps a block this size on its own (over its 128 KiB threshold). A
        // test runs on a thread of its own, whose arena's heaps hold up to 64 MiB each.
        let block = vec![1u8; 16 << 20];
        assert_eq!(mapped_bytes(), before, "a 16 MiB block was mmapped");
        assert_eq!(block.iter().map(|&b| b as usize).sum::<usize>(), 16 << 20);
    }
}
