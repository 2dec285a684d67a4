//! IP reassembly: puts the fragments of one datagram (IPv4 or IPv6) back together, so
//! that the whole datagram decodes once, with its ports, into its flow.
//!
//! conntrack reassembles before NAT and the host fragments again on the way out, so
//! fragment boundaries may differ between capture points; whole datagrams are what
//! match. Datagrams are keyed by the caller's key (the capture point) and the
//! [`FragmentKey`] (source, destination, protocol, identification).
//!
//! Bounded like the kernel's reassembly (`ipfrag_high_thresh`, `ipfrag_time`): at most
//! [`Limits::max_datagrams`] datagrams and [`Limits::max_bytes`] captured bytes in
//! progress, and a datagram not complete [`Limits::timeout_ns`] of capture time after
//! its first fragment is given up. Overlapping fragments discard the whole datagram
//! (RFC 5722, which Linux applies to IPv4 as well); an exact duplicate of a fragment
//! already held is dropped alone. Every fragment that ends in no datagram is counted
//! once, by reason ([`Reassembler::dropped`]).
//!
//! A fragment the snaplen cut still counts for its announced length: the datagram is
//! complete when the announced ranges cover it, and holds the captured bytes up to the
//! first missing one, so it decodes as a truncated packet.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::Hash;

use super::{Fragment, FragmentKey};

/// The largest IP datagram: IPv4 total length, IPv6 payload length (without jumbograms).
const MAX_DATAGRAM: usize = 65535;
const IPV6_HEADER_LEN: usize = 40;

pub const NEVER_COMPLETED: &str = "ip fragment: datagram never completed";
pub const OVERLAP: &str = "ip fragment: overlaps another fragment";
pub const DUPLICATE: &str = "ip fragment: duplicate";
pub const TOO_LONG: &str = "ip fragment: datagram beyond 65535 bytes";
pub const MALFORMED: &str = "ip fragment: length not a multiple of 8";
pub const TOO_MANY: &str = "ip fragment: too many datagrams in reassembly";
pub const TOO_MUCH: &str = "ip fragment: reassembly memory full";

/// How much reassembly may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_datagrams: usize,
    /// Captured fragment bytes held, over all datagrams.
    pub max_bytes: usize,
    /// Capture time after a datagram's first fragment at which it is given up.
    pub timeout_ns: i64,
}

impl Default for Limits {
    /// Linux's defaults: 4 MiB (`ipfrag_high_thresh`), 30 s (`ipfrag_time`); and at most
    /// 4096 datagrams at a time.
    fn default() -> Self {
        Limits {
            max_datagrams: 4096,
            max_bytes: 4 << 20,
            timeout_ns: 30_000_000_000,
        }
    }
}

/// A whole datagram put back together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    /// The IP packet without fragmentation: as captured, up to the first missing byte.
    pub bytes: Vec<u8>,
    /// Its length as sent.
    pub len: usize,
    /// How many fragments it was made of.
    pub frames: u64,
    pub key: FragmentKey,
}

struct Piece {
    offset: usize,
    /// Announced length.
    len: usize,
    /// Captured bytes (at most `len`).
    bytes: Vec<u8>,
}

struct Queue {
    generation: u64,
    first_ns: i64,
    /// The unfragmentable part, from the first fragment, and the protocol byte to patch.
    header: Option<(Vec<u8>, Option<usize>)>,
    pieces: Vec<Piece>,
    /// Length of the fragmentable part, once the last fragment was seen.
    total: Option<usize>,
    frames: u64,
    bytes: usize,
}

/// Reassembly of the datagrams of many capture points (`K` names the point).
pub struct Reassembler<K> {
    limits: Limits,
    queues: HashMap<(K, FragmentKey), Queue>,
    /// Datagrams in the order they started; entries whose generation no longer matches
    /// a queue are stale and skipped.
    order: VecDeque<((K, FragmentKey), u64)>,
    generation: u64,
    bytes: usize,
    dropped: BTreeMap<&'static str, u64>,
}

impl<K: Hash + Eq + Clone> Reassembler<K> {
    pub fn new(limits: Limits) -> Self {
        Reassembler {
            limits,
            queues: HashMap::new(),
            order: VecDeque::new(),
            generation: 0,
            bytes: 0,
            dropped: BTreeMap::new(),
        }
    }

    /// Fragments that ended in no datagram so far, by reason.
    pub fn dropped(&self) -> &BTreeMap<&'static str, u64> {
        &self.dropped
    }

    /// Datagrams in progress.
    pub fn in_progress(&self) -> usize {
        self.queues.len()
    }

    /// Gives up every datagram still in progress (the end of the capture) and returns
    /// the fragments that ended in no datagram, by reason.
    pub fn finish(mut self) -> BTreeMap<&'static str, u64> {
        for (_, q) in self.queues.drain() {
            *self.dropped.entry(NEVER_COMPLETED).or_insert(0) += q.frames;
        }
        self.dropped
    }

    fn drop_frames(&mut self, reason: &'static str, n: u64) {
        *self.dropped.entry(reason).or_insert(0) += n;
    }

    fn discard(&mut self, key: &(K, FragmentKey), reason: &'static str) {
        if let Some(q) = self.queues.remove(key) {
            self.bytes = self.bytes.saturating_sub(q.bytes);
            self.drop_frames(reason, q.frames);
        }
    }

    /// Discards the oldest datagram in progress, if any.
    fn discard_oldest(&mut self, reason: &'static str) {
        while let Some((key, generation)) = self.order.pop_front() {
            if self
                .queues
                .get(&key)
                .is_some_and(|q| q.generation == generation)
            {
                self.discard(&key, reason);
                return;
            }
        }
    }

    /// Gives up the datagrams whose first fragment is older than the timeout at `now`.
    fn expire(&mut self, now: i64) {
        while let Some((key, generation)) = self.order.front() {
            match self.queues.get(key) {
                Some(q) if q.generation == *generation => {
                    if q.first_ns.saturating_add(self.limits.timeout_ns) >= now {
                        return;
                    }
                    let key = key.clone();
                    self.order.pop_front();
                    self.discard(&key, NEVER_COMPLETED);
                }
                _ => {
                    self.order.pop_front();
                }
            }
        }
    }

    /// The queue of `key`, opened (the oldest discarded when too many are open) when
    /// this is the datagram's first fragment seen.
    fn open_queue(&mut self, key: &(K, FragmentKey), ts_ns: i64) {
        if !self.queues.contains_key(key) {
            if self.queues.len() >= self.limits.max_datagrams {
                self.discard_oldest(TOO_MANY);
            }
            self.generation += 1;
            self.queues.insert(
                key.clone(),
                Queue {
                    generation: self.generation,
                    first_ns: ts_ns,
                    header: None,
                    pieces: Vec::new(),
                    total: None,
                    frames: 0,
                    bytes: 0,
                },
            );
            self.order.push_back((key.clone(), self.generation));
        }
    }

    /// Adds the fragment `frag` of `frame`, captured at `ts_ns` at point `point`;
    /// returns the whole datagram when this fragment completes it.
    pub fn push(
        &mut self,
        point: K,
        frag: &Fragment,
        frame: &[u8],
        ts_ns: i64,
    ) -> Option<Datagram> {
        self.expire(ts_ns);
        let end = frag.offset.saturating_add(frag.data_len);
        if end > MAX_DATAGRAM {
            self.drop_frames(TOO_LONG, 1);
            return None;
        }
        // RFC 791, RFC 8200 4.5: every fragment but the last carries a multiple of 8.
        if frag.more && (frag.data_len == 0 || frag.data_len % 8 != 0) {
            self.drop_frames(MALFORMED, 1);
            return None;
        }
        let key = (point, frag.key);
        self.open_queue(&key, ts_ns);
        let q = self.queues.get_mut(&key)?;
        if q.pieces
            .iter()
            .any(|p| p.offset == frag.offset && p.len == frag.data_len)
            && (frag.more || q.total == Some(end))
        {
            self.drop_frames(DUPLICATE, 1);
            return None;
        }
        let overlaps = q
            .pieces
            .iter()
            .any(|p| frag.offset < p.offset + p.len && p.offset < end);
        let inconsistent = match (frag.more, q.total) {
            (_, Some(total)) if end > total => true,
            (false, Some(total)) => total != end,
            (false, None) => q.pieces.iter().any(|p| p.offset + p.len > end),
            (true, _) => false,
        };
        if overlaps || inconsistent {
            q.frames += 1;
            self.discard(&key, OVERLAP);
            return None;
        }
        if !frag.more {
            q.total = Some(end);
        }
        if frag.offset == 0 {
            let header = frame.get(frag.header.0..frag.header.1).unwrap_or_default();
            q.header = Some((header.to_vec(), frag.nh_at));
        }
        let data = frame.get(frag.data.0..frag.data.1).unwrap_or_default();
        let data = data.get(..frag.data_len).unwrap_or(data);
        q.pieces.push(Piece {
            offset: frag.offset,
            len: frag.data_len,
            bytes: data.to_vec(),
        });
        q.frames += 1;
        q.bytes += data.len();
        self.bytes += data.len();
        if self.bytes > self.limits.max_bytes {
            while self.bytes > self.limits.max_bytes && !self.queues.is_empty() {
                self.discard_oldest(TOO_MUCH);
            }
            if !self.queues.contains_key(&key) {
                return None;
            }
        }
        let total = complete(self.queues.get_mut(&key)?)?;
        let q = self.queues.remove(&key)?;
        self.bytes = self.bytes.saturating_sub(q.bytes);
        let frames = q.frames;
        let datagram = build(q, total, frag.key);
        if datagram.is_none() {
            self.drop_frames(TOO_LONG, frames);
        }
        datagram
    }
}

/// The datagram's length when every byte of it has arrived (the last fragment and
/// the first, with no hole between); the pieces are sorted by offset.
fn complete(q: &mut Queue) -> Option<usize> {
    let total = q.total?;
    q.header.as_ref()?;
    q.pieces.sort_by_key(|p| p.offset);
    let mut covered = 0;
    for p in &q.pieces {
        if p.offset != covered {
            return None;
        }
        covered += p.len;
    }
    if covered != total {
        return None;
    }
    Some(total)
}

/// The datagram of a complete queue: the first fragment's unfragmentable part with its
/// length fixed and its fragmentation undone, then the fragment data in order.
fn build(q: Queue, total: usize, key: FragmentKey) -> Option<Datagram> {
    let (mut bytes, nh_at) = q.header?;
    let header_len = bytes.len();
    let len = header_len + total;
    match nh_at {
        None => {
            // IPv4: total length, no more fragments, offset 0 (DF is kept).
            if len > MAX_DATAGRAM {
                return None;
            }
            bytes
                .get_mut(2..4)?
                .copy_from_slice(&(len as u16).to_be_bytes());
            *bytes.get_mut(6)? &= 0x40;
            *bytes.get_mut(7)? = 0;
        }
        Some(at) => {
            // IPv6: the fragment header is gone; whatever named it names its next header.
            let payload = len.checked_sub(IPV6_HEADER_LEN)?;
            if payload > MAX_DATAGRAM {
                return None;
            }
            bytes
                .get_mut(4..6)?
                .copy_from_slice(&(payload as u16).to_be_bytes());
            *bytes.get_mut(at)? = key.proto;
        }
    }
    bytes.reserve(total);
    for p in &q.pieces {
        bytes.extend_from_slice(&p.bytes);
        if p.bytes.len() < p.len {
            break;
        }
    }
    Some(Datagram {
        bytes,
        len,
        frames: q.frames,
        key,
    })
}
