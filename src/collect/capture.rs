//! The capture itself: one thread per capture point walks its ring and appends an
//! enhanced packet block per packet to a buffer of its own, and one writer thread
//! appends the full buffers to `capture.pcapng`, or to the flight recorder
//! (`--ring`). Packets of different points are therefore grouped in runs in the
//! file, each point's in time order; readers place packets by interface and
//! timestamp, not by position.
//!
//! A point bound to every interface (`any`) writes each packet under the interface
//! it was seen on: the first packet of an interface makes its interface description
//! block, numbered and handed to the writer under one lock, so that descriptions
//! reach the file in the order of their numbers and before any packet of theirs.
//!
//! Limits are kept exactly: before a packet is written, it takes its place in a
//! shared count (`--count`) and its bytes in a shared budget (`--max-size`, less
//! room for the statistics blocks written at the end); the packet that would go past
//! a limit is not written and stops the capture. After a signal or the duration,
//! the packets already in the kernel's rings are still written: each thread closes
//! its socket's filter (no packet enters the ring any more) and goes on for twice
//! the ring's retire timeout, the time the kernel takes to hand over a block it has
//! started filling. The kernel's counters then agree with the packets written.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::flight::Recorder;
use super::pcapng::{self, LINKTYPE_ETHERNET};
use super::ring::{self, Counters, Names, PacketSocket};
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

/// What the capture threads hand the writer.
pub enum Piece {
    /// Enhanced packet blocks.
    Packets(Vec<u8>),
    /// The description block of an interface met by an `any` point.
    Interface(Vec<u8>),
}

/// Where the writer puts the blocks.
pub enum Sink {
    /// The capture file, after its section header and first descriptions.
    File(File),
    /// The flight recorder; descriptions met are kept for the file's head.
    Ring(Recorder, Vec<u8>),
}

impl Sink {
    fn put(&mut self, piece: Piece) -> io::Result<()> {
        match (self, piece) {
            (Sink::File(f), Piece::Packets(b) | Piece::Interface(b)) => f.write_all(&b),
            (Sink::Ring(r, _), Piece::Packets(b)) => r.write(&b),
            (Sink::Ring(_, head), Piece::Interface(b)) => {
                head.extend_from_slice(&b);
                Ok(())
            }
        }
    }
}

/// What the capture threads share.
struct Shared {
    stop: Arc<Stop>,
    limits: Limits,
    packets: AtomicU64,
    bytes: AtomicU64,
    /// The number the next interface description gets.
    next_interface: Mutex<u32>,
}

/// How a point's packets are described in the file.
pub enum Describe {
    /// By the point's own interface description.
    Fixed(u32),
    /// Each by the interface it was seen on (`any`).
    Any(AnyInterfaces),
}

/// The interfaces an `any` point met, and what their descriptions say.
pub struct AnyInterfaces {
    names: Names,
    /// Before each interface's name: `NETNS:` for another namespace's.
    pub prefix: String,
    pub snaplen: u32,
    pub filter: Option<String>,
    pub host: String,
    met: Vec<Met>,
    by_ifindex: HashMap<u32, usize>,
}

/// An interface an `any` point met.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Met {
    /// Its interface description's number in the file.
    pub iface: u32,
    pub ifindex: u32,
    /// As written in `if_name`: `NAME` or `NETNS:NAME`.
    pub name: String,
    pub linktype: u16,
    pub packets: u64,
}

impl AnyInterfaces {
    pub fn new(
        names: Names,
        prefix: String,
        snaplen: u32,
        filter: Option<String>,
        host: String,
    ) -> AnyInterfaces {
        AnyInterfaces {
            names,
            prefix,
            snaplen,
            filter,
            host,
            met: Vec::new(),
            by_ifindex: HashMap::new(),
        }
    }

    /// The interface `ifindex` (of ARPHRD type `hatype`) as met: on its first
    /// packet, its description is numbered and handed to the writer.
    fn meet(
        &mut self,
        ifindex: u32,
        hatype: u16,
        shared: &Shared,
        tx: &SyncSender<Piece>,
    ) -> Option<usize> {
        if let Some(&i) = self.by_ifindex.get(&ifindex) {
            return Some(i);
        }
        let name = self
            .names
            .name(ifindex)
            .unwrap_or_else(|| format!("ifindex{ifindex}"));
        let linktype = ring::linktype_of(hatype);
        let mut idb = Vec::new();
        pcapng::interface(
            &mut idb,
            &pcapng::Interface {
                linktype,
                snaplen: self.snaplen,
                name: format!("{}{name}", self.prefix),
                description: format!(
                    "{}{name} (ifindex {ifindex}) on {}, met by {}any",
                    self.prefix, self.host, self.prefix
                ),
                filter: self.filter.clone(),
            },
        );
        let mut next = shared.next_interface.lock().ok()?;
        let iface = *next;
        tx.send(Piece::Interface(idb)).ok()?;
        *next += 1;
        drop(next);
        self.by_ifindex.insert(ifindex, self.met.len());
        self.met.push(Met {
            iface,
            ifindex,
            name: format!("{}{name}", self.prefix),
            linktype,
            packets: 0,
        });
        Some(self.met.len() - 1)
    }
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
    /// The interfaces an `any` point met, in the order met.
    pub interfaces: Vec<Met>,
}

/// A running capture.
pub struct Capture {
    points: Vec<JoinHandle<PointResult>>,
    writer: JoinHandle<(Sink, Option<io::Error>)>,
}

/// Starts capturing from every socket into `sink`, which already holds `written`
/// bytes (the section header and the first `described` interface descriptions);
/// each socket's packets are described as its [`Describe`] says.
pub fn start(
    sink: Sink,
    written: u64,
    points: Vec<(PacketSocket, Describe)>,
    described: u32,
    limits: Limits,
    stop: Arc<Stop>,
) -> io::Result<Capture> {
    let reserve = STATS_ROOM * points.len() as u64;
    let shared = Arc::new(Shared {
        stop: stop.clone(),
        limits: Limits {
            count: limits.count,
            max_bytes: limits.max_bytes.map(|m| m.saturating_sub(reserve)),
        },
        packets: AtomicU64::new(0),
        bytes: AtomicU64::new(written),
        next_interface: Mutex::new(described),
    });
    let (tx, rx) = mpsc::sync_channel::<Piece>(QUEUE);
    let writer = std::thread::Builder::new()
        .name("natcheck-writer".into())
        .spawn(move || write_pieces(sink, rx, &stop))?;
    let mut threads = Vec::new();
    for (i, (sock, describe)) in points.into_iter().enumerate() {
        let (shared, tx) = (shared.clone(), tx.clone());
        threads.push(
            std::thread::Builder::new()
                .name(format!("natcheck-capture-{i}"))
                .spawn(move || run_point(i, sock, describe, &shared, &tx))?,
        );
    }
    Ok(Capture {
        points: threads,
        writer,
    })
}

impl Capture {
    /// Waits for every thread (they end once the stop is set) and returns each
    /// point's result and the sink, or the error that stopped writing it.
    pub fn finish(self) -> (Vec<PointResult>, io::Result<Sink>) {
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
            Ok((sink, None)) => Ok(sink),
            Ok((_, Some(e))) => Err(e),
            Err(_) => Err(io::Error::other("the writer thread panicked")),
        };
        (results, file)
    }
}

/// Writes pieces as they come; after an error, the stop is set and pieces are
/// still taken (and dropped) so that no capture thread waits forever.
fn write_pieces(mut sink: Sink, rx: Receiver<Piece>, stop: &Stop) -> (Sink, Option<io::Error>) {
    let mut err = None;
    for piece in rx {
        if err.is_none() {
            if let Err(e) = sink.put(piece) {
                stop.error(format!("writing the capture: {e}"));
                err = Some(e);
            }
        }
    }
    (sink, err)
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
    index: usize,
    mut sock: PacketSocket,
    mut describe: Describe,
    shared: &Shared,
    tx: &SyncSender<Piece>,
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
            let out = Out {
                shared,
                tx,
                chunk: &mut chunk,
                written: &mut r.packets,
            };
            append_block(b, &mut describe, ethernet, out)
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
    if let Describe::Any(a) = describe {
        r.interfaces = a.met;
    }
    r
}

/// Hands a non-empty buffer to the writer; false when the writer is gone.
fn send(tx: &SyncSender<Piece>, chunk: &mut Vec<u8>) -> bool {
    chunk.is_empty()
        || tx
            .send(Piece::Packets(std::mem::replace(
                chunk,
                Vec::with_capacity(CHUNK),
            )))
            .is_ok()
}

/// Where a point's thread appends its packet blocks.
struct Out<'a> {
    shared: &'a Shared,
    tx: &'a SyncSender<Piece>,
    chunk: &'a mut Vec<u8>,
    /// Packets appended.
    written: &'a mut u64,
}

/// Appends every packet of a block; false when a limit stopped it midway.
/// `ethernet`: the socket's packets have Ethernet headers (on `any`, those of
/// Ethernet and loopback interfaces do, the others are cut to their network header).
fn append_block(block: &[u8], describe: &mut Describe, ethernet: bool, out: Out) -> bool {
    for p in ring::packets(block) {
        let (index, ethernet, met, p) = match describe {
            Describe::Fixed(i) => (*i, ethernet, None, p),
            Describe::Any(a) => {
                let Some(m) = a.meet(p.ifindex, p.hatype, out.shared, out.tx) else {
                    return false;
                };
                let eth = a.met[m].linktype == LINKTYPE_ETHERNET;
                let p = if eth { p } else { p.from_network_header() };
                (a.met[m].iface, eth, Some(m), p)
            }
        };
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
        if !out.shared.admit(pcapng::packet_block_len(captured)) {
            return false;
        }
        pcapng::packet(out.chunk, index, p.ts_ns, parts, len, flags);
        *out.written += 1;
        if let (Describe::Any(a), Some(m)) = (&mut *describe, met) {
            a.met[m].packets += 1;
        }
        if out.chunk.len() >= CHUNK && !send(out.tx, out.chunk) {
            return false;
        }
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
            next_interface: Mutex::new(0),
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
