//! Hints to the processor's memory system: asking for a cache line some time before
//! it is read, where the order of reads is known to the program but not to the
//! hardware (a walk through an index into a large array, or a file read across page
//! boundaries, where hardware prefetchers stop).

/// Asks the processor to fetch the cache line `r` starts in; nothing where there is no
/// such instruction. A hint only: it reads nothing the program sees.
#[inline(always)]
pub fn prefetch<T>(r: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE is part of x86-64; a prefetch cannot fault, and the address is that
    // of a live reference.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>((r as *const T).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = r;
}
