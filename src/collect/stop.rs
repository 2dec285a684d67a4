//! When the capture stops: the first of the duration, the packet count, the size
//! limit, SIGINT or SIGTERM, or an error. [`Stop`] is shared by every thread of a
//! collection; the first reason set is the one kept. Signals are caught for the
//! whole process by a handler that only stores the signal number in an atomic
//! (async-signal-safe), which every [`Stop`] reads.

use std::sync::atomic::{AtomicI32, AtomicU8, Ordering};
use std::sync::Mutex;

/// The signal caught, 0 for none.
static SIGNALLED: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    let _ = SIGNALLED.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst);
}

/// Catches SIGINT and SIGTERM from now on: they stop the capture instead of the
/// process, which then finishes the bundle.
pub fn catch_signals() -> std::io::Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: an all-zero sigaction is a valid value (empty mask, no flags) that
        // is then given a handler; the handler only stores into an atomic, which is
        // async-signal-safe. No SA_RESTART: a blocking call returns EINTR and the
        // caller looks at the stop state.
        let rc = unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut act.sa_mask);
            libc::sigaction(sig, &act, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Why a capture stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    Duration,
    Count,
    Size,
    Signal(i32),
    Error(String),
}

impl Reason {
    /// The manifest's `stop.reason`.
    pub fn name(&self) -> &'static str {
        match self {
            Reason::Duration => "duration",
            Reason::Count => "count",
            Reason::Size => "size",
            Reason::Signal(_) => "signal",
            Reason::Error(_) => "error",
        }
    }
}

/// The name of a signal collect catches.
pub fn signal_name(sig: i32) -> String {
    match sig {
        libc::SIGINT => "SIGINT".into(),
        libc::SIGTERM => "SIGTERM".into(),
        n => format!("signal {n}"),
    }
}

const NONE: u8 = 0;
const DURATION: u8 = 1;
const COUNT: u8 = 2;
const SIZE: u8 = 3;
const ERROR: u8 = 4;

/// The stop state of one collection.
#[derive(Debug, Default)]
pub struct Stop {
    reason: AtomicU8,
    error: Mutex<Option<String>>,
}

impl Stop {
    fn set_code(&self, code: u8) {
        let _ = self
            .reason
            .compare_exchange(NONE, code, Ordering::SeqCst, Ordering::SeqCst);
    }

    pub fn duration(&self) {
        self.set_code(DURATION);
    }

    pub fn count(&self) {
        self.set_code(COUNT);
    }

    pub fn size(&self) {
        self.set_code(SIZE);
    }

    /// Stops because something failed: the capture ends and the bundle is finished
    /// with what was collected.
    pub fn error(&self, message: String) {
        if let Ok(mut e) = self.error.lock() {
            e.get_or_insert(message);
        }
        self.set_code(ERROR);
    }

    /// Whether the capture is to stop (a signal counts once it was caught).
    pub fn is_set(&self) -> bool {
        self.reason.load(Ordering::SeqCst) != NONE || SIGNALLED.load(Ordering::SeqCst) != 0
    }

    /// Why it stopped: the first reason set, a signal caught before any other.
    pub fn reason(&self) -> Option<Reason> {
        let code = self.reason.load(Ordering::SeqCst);
        let sig = SIGNALLED.load(Ordering::SeqCst);
        Some(match code {
            DURATION => Reason::Duration,
            COUNT => Reason::Count,
            SIZE => Reason::Size,
            ERROR => Reason::Error(
                self.error
                    .lock()
                    .ok()
                    .and_then(|e| e.clone())
                    .unwrap_or_default(),
            ),
            _ if sig != 0 => Reason::Signal(sig),
            _ => return None,
        })
    }

    /// Whether the stop is at a limit of what to write (count, size, an error):
    /// then nothing more is written, where after a signal or the duration the
    /// packets already in the kernel's ring still are.
    pub fn at_limit(&self) -> bool {
        matches!(self.reason.load(Ordering::SeqCst), COUNT | SIZE | ERROR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_reason_is_kept() {
        let s = Stop::default();
        // No signal is raised in unit tests: SIGNALLED stays 0 here.
        assert!(!s.is_set());
        assert_eq!(s.reason(), None);
        s.count();
        s.duration();
        s.error("late".into());
        assert!(s.is_set() && s.at_limit());
        assert_eq!(s.reason(), Some(Reason::Count));
        let s = Stop::default();
        s.error("disk full".into());
        s.error("second".into());
        assert_eq!(s.reason(), Some(Reason::Error("disk full".into())));
        let s = Stop::default();
        s.duration();
        assert!(!s.at_limit());
        assert_eq!(s.reason().map(|r| r.name()), Some("duration"));
        assert_eq!(signal_name(libc::SIGINT), "SIGINT");
        assert_eq!(signal_name(libc::SIGTERM), "SIGTERM");
    }
}
