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

/// With `NATCHECK_MEM_STEPS` set, prints to standard error the peak resident memory
/// since the last call (`VmHWM`) and what is resident now (`VmRSS`), then resets the
/// peak (`/proc/self/clear_refs`), so that each figure is the named step's own peak.
/// For measuring where memory goes (bench/README.md); nothing otherwise.
pub fn step(name: &str) {
    use std::sync::OnceLock;
    static ON: OnceLock<bool> = OnceLock::new();
    if !*ON.get_or_init(|| std::env::var_os("NATCHECK_MEM_STEPS").is_some()) {
        return;
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map_or(0, |v| {
                v.trim().trim_end_matches(" kB").parse::<u64>().unwrap_or(0)
            })
    };
    eprintln!(
        "mem: {name:<28} peak {:>9} kB  held {:>9} kB",
        field("VmHWM:"),
        field("VmRSS:")
    );
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}
