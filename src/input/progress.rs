//! How far the reading of the inputs has got, and the one line on stderr that shows it
//! when reading takes more than a second: `reading eth0.pcap 45 % 1.2 M packets`,
//! rewritten in place and cleared as soon as the last input is read, before anything
//! else is written. Off unless [`enable`]d (the binary does it when stderr is a
//! terminal and `--quiet` is not given); off, a reader only checks an `Option`.

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Reading that has gone on this long shows the line.
const AFTER: Duration = Duration::from_secs(1);
/// How often the line is rewritten.
const EVERY: Duration = Duration::from_millis(200);
/// Erases the terminal line the cursor is on and returns to its start.
const CLEAR: &str = "\r\x1b[2K";

static ENABLED: AtomicBool = AtomicBool::new(false);
static STATE: Mutex<State> = Mutex::new(State {
    reading: Vec::new(),
    since: None,
    drawn: false,
});

struct State {
    /// The inputs being read, in the order they started.
    reading: Vec<Arc<Counts>>,
    /// When the oldest reading still going on started.
    since: Option<Instant>,
    /// Whether the line is on the terminal.
    drawn: bool,
}

#[derive(Debug)]
struct Counts {
    name: String,
    /// The input's size, when it is a file.
    total: Option<u64>,
    bytes: AtomicU64,
    packets: AtomicU64,
}

/// Ends the reading when the last [`Reading`] of it goes.
#[derive(Debug)]
struct Handle(Arc<Counts>);

/// One input being read: bytes and packets count towards the line until the last
/// clone of it is dropped. Does nothing unless progress was enabled.
#[derive(Clone, Debug, Default)]
pub struct Reading(Option<Arc<Handle>>);

fn state() -> MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Shows the line from now on (the first call starts the thread that draws it).
pub fn enable() {
    if !ENABLED.swap(true, Ordering::Relaxed) {
        std::thread::spawn(|| loop {
            std::thread::sleep(EVERY);
            let mut s = state();
            if s.since.is_some_and(|t| t.elapsed() >= AFTER) {
                let text = line(&s.reading);
                let _ = write!(io::stderr().lock(), "{CLEAR}{text}");
                s.drawn = true;
            }
        });
    }
}

impl Reading {
    /// Starts reading the input `label` (a path, or `-`), whose size is that of the
    /// file at `path` when there is one.
    pub fn start(label: &str, path: Option<&Path>) -> Reading {
        if !ENABLED.load(Ordering::Relaxed) {
            return Reading(None);
        }
        let name = Path::new(label)
            .file_name()
            .map_or(label.into(), |n| n.to_string_lossy());
        let counts = Arc::new(Counts {
            name: name.chars().take(40).collect(),
            total: path
                .and_then(|p| std::fs::metadata(p).ok())
                .filter(|m| m.is_file())
                .map(|m| m.len()),
            bytes: AtomicU64::new(0),
            packets: AtomicU64::new(0),
        });
        let mut s = state();
        if s.reading.is_empty() {
            s.since = Some(Instant::now());
        }
        s.reading.push(counts.clone());
        Reading(Some(Arc::new(Handle(counts))))
    }

    /// One more packet read.
    pub fn packet(&self) {
        if let Some(h) = &self.0 {
            h.0.packets.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The input is read up to byte `offset` (for a file read without a stream that
    /// [`Reading::count`] could count).
    pub fn read_to(&self, offset: u64) {
        if let Some(h) = &self.0 {
            h.0.bytes.store(offset, Ordering::Relaxed);
        }
    }

    /// `r`, counting the bytes read from it (the raw bytes, before decompression,
    /// which the file's size is of).
    pub fn count<R: Read>(&self, r: R) -> Counted<R> {
        Counted {
            inner: r,
            reading: self.clone(),
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        let mut s = state();
        s.reading.retain(|c| !Arc::ptr_eq(c, &self.0));
        if s.reading.is_empty() {
            s.since = None;
            if s.drawn {
                let _ = write!(io::stderr().lock(), "{CLEAR}");
                s.drawn = false;
            }
        }
    }
}

/// A reader whose bytes count towards a [`Reading`].
pub struct Counted<R> {
    inner: R,
    reading: Reading,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(h) = &self.reading.0 {
            h.0.bytes.fetch_add(n as u64, Ordering::Relaxed);
        }
        Ok(n)
    }
}

/// The line for the inputs being read: the first one's name (and how many more),
/// the share of their bytes read when their sizes are known, and the packets.
fn line(reading: &[Arc<Counts>]) -> String {
    let Some(first) = reading.first() else {
        return String::new();
    };
    let mut s = format!("reading {}", first.name);
    if reading.len() > 1 {
        s.push_str(&format!(" and {} more", reading.len() - 1));
    }
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let totals: Option<u64> = reading.iter().map(|c| c.total).sum();
    if let Some(total) = totals.filter(|&t| t > 0) {
        let bytes: u64 = reading.iter().map(|c| load(&c.bytes)).sum();
        s.push_str(&format!(" {} %", (bytes.min(total) * 100 / total)));
    }
    let packets: u64 = reading.iter().map(|c| load(&c.packets)).sum();
    if packets > 0 {
        s.push_str(&format!(" {} packets", count(packets)));
    }
    s
}

/// `950`, `45.3 k`, `1.2 M`.
fn count(n: u64) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => format!("{:.1} k", n as f64 / 1e3),
        _ => format!("{:.1} M", n as f64 / 1e6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(name: &str, total: Option<u64>, bytes: u64, packets: u64) -> Arc<Counts> {
        Arc::new(Counts {
            name: name.into(),
            total,
            bytes: AtomicU64::new(bytes),
            packets: AtomicU64::new(packets),
        })
    }

    #[test]
    fn the_line() {
        assert_eq!(line(&[]), "");
        let one = [counts("eth0.pcap", Some(1000), 450, 1_234_567)];
        assert_eq!(line(&one), "reading eth0.pcap 45 % 1.2 M packets");
        let two = [
            counts("eth0.pcap", Some(1000), 1000, 900),
            counts("docker0.pcap", Some(3000), 0, 0),
        ];
        assert_eq!(line(&two), "reading eth0.pcap and 1 more 25 % 900 packets");
        // Standard input has no size: no share.
        let stdin = [counts("-", None, 10, 45_300)];
        assert_eq!(line(&stdin), "reading - 45.3 k packets");
        let text = [counts("ct.txt", Some(0), 0, 0)];
        assert_eq!(line(&text), "reading ct.txt");
    }

    #[test]
    fn off_unless_enabled() {
        // Tests never enable it: readings then count nothing and cost nothing.
        let r = Reading::start("eth0.pcap", None);
        assert!(r.0.is_none());
        let mut c = r.count(&b"abc"[..]);
        let mut out = Vec::new();
        c.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"abc");
    }
}
