//! The capture itself: one thread per capture point walks its ring and appends an
//! enhanced packet block per packet to a buffer of its own, and one writer thread
//! appends the full buffers to `capture.pcapng`. Packets of different points are
//! therefore grouped in runs in the file, each point's in time order; readers place
//! packets by interface and timestamp, not by position.
//!
//! Limits are kept exactly: before a packet is written, it takes its place in a
//! shared count (`--count`) and its bytes in a shared budget (`--max-size`, less
//! room for the statistics blocks written at the end); the packet that would go past
//! a limit is not written and stops the capture. After a signal or the duration,
//! the packets already in the kernel's rings are still written: each thread closes
//! its socket's filter (no packet enters the ring any more) and goes on for twice
//! the ring's retire timeout, the time the kernel takes to hand over a block it has
//! started filling. The kernel's counters then agree with the packets written.

use std::fs::File;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::pcapng::{self, LINKTYPE_ETHERNET};
use super::ring::{self, Counters, PacketSocket};
use super::stop::Stop;

/// The size a point's buffer reaches before it is handed to the writer.
const CHUNK: usize = 256 << 10;
/// Buffers waiting for the writer before capture threads wait for it in turn (and
/// the kernel's rings fill).
const QUEUE: usize = 64;
/// Room kept under `--max-size` for each point's statistics block.
pub const STATS_ROOM: u64 = 128;

/// Limits on what is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// Packets over all points.
    pub count: Option<u64>,
    /// Bytes of the capture file.
    pub max_bytes: Option<u64>,
}

/// What the capture threads share.
struct Shared {
    stop: Arc<Stop>,
    limits: Limits,
    packets: AtomicU64,
    bytes: AtomicU64,
}

impl Shared {
    /// Takes a place for a packet block of `len` bytes; false (and the capture
    /// stops) when it would go past a limit.
    fn admit(&self, len: usize) -> bool {
        if let Some(count) = self.limits.count {
            if self.packets.fetch_add(1, Ordering::SeqCst) >= count {
                self.stop.count();
                return false;
            }
        }
        if let Some(max) = self.limits.max_bytes {
            let len = len as u64;
            if self.bytes.fetch_add(len, Ordering::SeqCst) + len > max {
                self.stop.size();
                return false;
            }
        }
        true
    }
}

/// One point's result.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PointResult {
    /// Packets written.
    pub packets: u64,
    pub counters: Counters,
    pub end_ns: u64,
    /// What went wrong reading the point, if anything.
    pub error: Option<String>,
}

/// A running capture.
pub struct Capture {
    points: Vec<JoinHandle<PointResult>>,
    writer: JoinHandle<(File, Option<io::Error>)>,
}

/// Starts capturing from every socket into `file`, which already holds `written`
/// bytes (the section header and interface descriptions). Socket `i` is interface
/// `i` of the file.
pub fn start(
    file: File,
    written: u64,
    sockets: Vec<PacketSocket>,
    limits: Limits,
    stop: Arc<Stop>,
) -> io::Result<Capture> {
    let reserve = STATS_ROOM * sockets.len() as u64;
    let shared = Arc::new(Shared {
        stop: stop.clone(),
        limits: Limits {
            count: limits.count,
            max_bytes: limits.max_bytes.map(|m| m.saturating_sub(reserve)),
        },
        packets: AtomicU64::new(0),
        bytes: AtomicU64::new(written),
    });
    let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(QUEUE);
    let writer = std::thread::Builder::new()
        .name("natcheck-writer".into())
        .spawn(move || write_chunks(file, rx, &stop))?;
    let mut points = Vec::new();
    for (i, sock) in sockets.into_iter().enumerate() {
        let (shared, tx) = (shared.clone(), tx.clone());
        let index = u32::try_from(i).unwrap_or(u32::MAX);
        points.push(
            std::thread::Builder::new()
                .name(format!("natcheck-capture-{i}"))
                .spawn(move || run_point(index, sock, &shared, &tx))?,
        );
    }
    Ok(Capture { points, writer })
}

impl Capture {
    /// Waits for every thread (they end once the stop is set) and returns each
    /// point's result and the file, or the error that stopped writing it.
    pub fn finish(self) -> (Vec<PointResult>, io::Result<File>) {
        let results = self
            .points
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| PointResult {
                    error: Some("the capture thread panicked".into()),
                    ..PointResult::default()
                })
            })
            .collect();
        let file = match self.writer.join() {
            Ok((file, None)) => Ok(file),
            Ok((_, Some(e))) => Err(e),
            Err(_) => Err(io::Error::other("the writer thread panicked")),
        };
        (results, file)
    }
}

/// Writes buffers as they come; after an error, the stop is set and buffers are
/// still taken (and dropped) so that no capture thread waits forever.
fn write_chunks(mut file: File, rx: Receiver<Vec<u8>>, stop: &Stop) -> (File, Option<io::Error>) {
    let mut err = None;
    for chunk in rx {
        if err.is_none() {
            if let Err(e) = file.write_all(&chunk) {
                stop.error(format!("writing the capture: {e}"));
                err = Some(e);
            }
        }
    }
    (file, err)
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// One point's loop: take every block the kernel handed over, write its packets,
/// hand the buffer to the writer, wait for the next block; until the stop.
fn run_point(
    index: u32,
    mut sock: PacketSocket,
    shared: &Shared,
    tx: &SyncSender<Vec<u8>>,
) -> PointResult {
    let mut r = PointResult::default();
    let mut chunk = Vec::with_capacity(CHUNK);
    let mut block = 0usize;
    let mut drain_until: Option<Instant> = None;
    let drain = super::RING_RETIRE * 2 + Duration::from_millis(20);
    let ethernet = sock.linktype == LINKTYPE_ETHERNET;
    'outer: loop {
        if shared.stop.is_set() {
            if shared.stop.at_limit() {
                break;
            }
            let until = *drain_until.get_or_insert_with(|| {
                // Nothing enters the ring from now on; the block the kernel was
                // filling is handed over within its retire timeout.
                if let Err(e) = sock.stop_receiving() {
                    r.error = Some(format!("closing the filter: {e}"));
                }
                Instant::now() + drain
            });
            if Instant::now() >= until {
                break;
            }
        }
        // At most one turn of the ring before the stop is looked at again.
        let mut took = 0;
        while let Some(go_on) = sock.ring.take(block, |b| {
            append_block(b, index, ethernet, shared, &mut chunk, &mut r.packets)
        }) {
            took += 1;
            block = (block + 1) % sock.ring.blocks().max(1);
            if (chunk.len() >= CHUNK || !go_on) && !send(tx, &mut chunk) {
                break 'outer;
            }
            if !go_on {
                break 'outer;
            }
            if took >= sock.ring.blocks() {
                break;
            }
        }
        if !send(tx, &mut chunk) {
            break;
        }
        if took == 0 {
            if let Err(e) = sock.wait(Duration::from_millis(50)) {
                r.error = Some(format!("waiting for packets: {e}"));
                shared
                    .stop
                    .error(format!("capture point {index}: waiting for packets: {e}"));
                break;
            }
        }
    }
    let _ = send(tx, &mut chunk);
    match sock.counters() {
        Ok(c) => r.counters = c,
        Err(e) => r.error = Some(format!("reading the kernel's counters: {e}")),
    }
    r.end_ns = now_ns();
    r
}

/// Hands a non-empty buffer to the writer; false when the writer is gone.
fn send(tx: &SyncSender<Vec<u8>>, chunk: &mut Vec<u8>) -> bool {
    chunk.is_empty()
        || tx
            .send(std::mem::replace(chunk, Vec::with_capacity(CHUNK)))
            .is_ok()
}

/// Appends every packet of a block; false when a limit stopped it midway.
fn append_block(
    block: &[u8],
    index: u32,
    ethernet: bool,
    shared: &Shared,
    out: &mut Vec<u8>,
    written: &mut u64,
) -> bool {
    for p in ring::packets(block) {
        let flags = pcapng::packet_flags(p.pkttype);
        // The kernel took the VLAN tag off the frame; it goes back after the MAC
        // addresses, as it was on the wire.
        let tag;
        let (parts, len): (&[&[u8]], u32) = match (p.vlan, ethernet, p.data.split_at_checked(12)) {
            (Some((tpid, tci)), true, Some((macs, rest))) => {
                let [a, b] = tpid.to_be_bytes();
                let [c, d] = tci.to_be_bytes();
                tag = [a, b, c, d];
                (&[macs, &tag, rest], p.len.saturating_add(4))
            }
            _ => (&[p.data], p.len),
        };
        let captured = p.data.len() + if parts.len() > 1 { 4 } else { 0 };
        if !shared.admit(pcapng::packet_block_len(captured)) {
            return false;
        }
        pcapng::packet(out, index, p.ts_ns, parts, len, flags);
        *written += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(limits: Limits) -> Shared {
        Shared {
            stop: Arc::new(Stop::default()),
            limits,
            packets: AtomicU64::new(0),
            bytes: AtomicU64::new(100),
        }
    }

    #[test]
    fn limits_are_exact() {
        let s = shared(Limits {
            count: Some(3),
            max_bytes: None,
        });
        assert!((0..3).all(|_| s.admit(64)));
        assert!(!s.stop.is_set());
        assert!(!s.admit(64));
        assert!(s.stop.at_limit());
        let s = shared(Limits {
            count: None,
            max_bytes: Some(300),
        });
        assert!(s.admit(100));
        assert!(s.admit(100));
        // 100 already written + 200: a third block of 100 would reach 400.
        assert!(!s.admit(100));
        assert_eq!(s.stop.reason(), Some(super::super::stop::Reason::Size));
        let s = shared(Limits::default());
        assert!((0..1000).all(|_| s.admit(1 << 20)));
    }
}
