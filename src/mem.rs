//! Hints to the processor's memory system: asking for a cache line some time before
//! it is read, where the order of reads is known to the program but not to the
//! hardware (a walk through an index into a large array, a file read across page
//! boundaries, where hardware prefetchers stop, or the next of a list of connections
//! whose parts lie elsewhere: [`map_fetching_ahead`]); and the step printer that
//! measures them.

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

/// [`prefetch`] of the first element of `s`, if any: where a structure's parts lie
/// elsewhere in memory (a `String`'s bytes, a `Vec`'s elements).
#[inline(always)]
pub fn prefetch_first<T>(s: &[T]) {
    if let Some(first) = s.first() {
        prefetch(first);
    }
}

/// Items a core takes at once where each is worked on while the next one's memory is
/// fetched ([`map_fetching_ahead`]): few enough to share among cores, many enough that
/// only the last of a run goes without.
pub const RUN: usize = 64;

/// `map` of every item of `items` (and its index), on every core, in order: in runs of
/// [`RUN`], each item mapped while `fetch` asks for the memory the next one will read,
/// where that lies elsewhere (records a connection points to, say) and the first read
/// of each would miss the cache.
pub fn map_fetching_ahead<T: Sync, R: Send>(
    items: &[T],
    fetch: impl Fn(&T) + Sync,
    map: impl Fn(usize, &T) -> R + Sync,
) -> Vec<R> {
    use rayon::prelude::*;
    let (fetch, map) = (&fetch, &map);
    items
        .par_chunks(RUN)
        .enumerate()
        .flat_map_iter(|(c, run)| {
            run.iter().enumerate().map(move |(k, x)| {
                if let Some(next) = run.get(k + 1) {
                    fetch(next);
                }
                map(c * RUN + k, x)
            })
        })
        .collect()
}

/// With `NATCHECK_STEPS` set, prints to standard error the wall time since the
/// last call, the processor time every thread spent meanwhile (user and system), the
/// peak resident memory since then (`VmHWM`) and what is resident now (`VmRSS`), then
/// resets the peak (`/proc/self/clear_refs`), so that each figure is the named step's
/// own. For measuring where time and memory go (bench/README.md); nothing otherwise.
pub fn step(name: &str) {
    use std::sync::{Mutex, OnceLock};
    use std::time::Instant;
    static ON: OnceLock<bool> = OnceLock::new();
    static LAST: Mutex<Option<(Instant, f64)>> = Mutex::new(None);
    if !*ON.get_or_init(|| std::env::var_os("NATCHECK_STEPS").is_some()) {
        return;
    }
    let now = (Instant::now(), cpu_ms());
    let (since, cpu) = LAST
        .lock()
        .ok()
        .and_then(|mut l| l.replace(now))
        .map_or((0.0, 0.0), |(t, c)| {
            ((now.0 - t).as_secs_f64() * 1e3, now.1 - c)
        });
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
        "step: {name:<28} {since:>9.1} ms  cpu {cpu:>9.1} ms  peak {:>9} kB  held {:>9} kB",
        field("VmHWM:"),
        field("VmRSS:")
    );
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Processor time the process has used so far, every thread, user and system, in
/// milliseconds.
fn cpu_ms() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return 0.0;
    }
    let ms = |t: libc::timeval| t.tv_sec as f64 * 1e3 + t.tv_usec as f64 / 1e3;
    ms(u.ru_utime) + ms(u.ru_stime)
}
