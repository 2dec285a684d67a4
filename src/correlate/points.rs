//! Reading captures for correlation: per capture point, the oriented flows plus one
//! compact record per packet (fingerprint, time, flow, side, TTL, and for TCP where
//! the segment lies in the sequence space), kept in two orders: by flow (for
//! per-connection detail) and by fingerprint (for the cross-point join). A point's
//! facts for the report ([`PointData::summary`]) come from here too.

use rayon::prelude::*;
use twox_hash::XxHash3_64;

use super::fingerprint::{
    datagram_resend_key, field_set, fingerprint, is_matchable, tcp_resend_key, Strength, FP_BITS,
    FP_MAX, SEQ_RANGE, SEQ_RANGE_TS, SHIFTED, SHIFTED_TS,
};
use super::offset::Offset;
use super::PointSummary;
use crate::capture::{self, InputResult, InputSpec, PointInfo, ReadOptions};
use crate::flows::{self, Flow, Side};
use crate::model::{Packet, L4};

/// One packet as correlation sees it. 40 bytes, so a capture of N packets costs
/// about 44·N bytes here until the cross-point join (this record plus its index in
/// fingerprint order, [`PointData::by_fp`], and a bit in [`PointData::runs`]) and 40·N
/// after it, given back as the connections that read them are linked ([`Release`]).
///
/// The small fields share words: the fingerprint's 48 bits ([`FP_BITS`]) its word with
/// the timestamp option's 16-bit digest, and lengths keep 20 bits, so an IP packet or
/// TCP payload of more than [`Rec::MAX_LEN`] bytes (only an IPv6 jumbogram is) reads as
/// that many. Records lie 4-byte aligned (an array of them holds no padding): their
/// 8-byte fields are read by value, never by reference.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(C, packed(4))]
pub struct Rec {
    /// The fingerprint (bits 16-63) and, TCP only, [`Seg::ts_key`] (bits 0-15).
    key: u64,
    pub ts: i64,
    pub flow: u32,
    /// TCP only: the fields [`Seg`] gives but its length and timestamp digest. Other
    /// protocols keep their resend key ([`Rec::resend`]) here and zeros in the other
    /// two.
    seq: u32,
    ack: u32,
    head: u32,
    /// The IP packet's length (bits 0-19), don't-fragment (20), side (21), strength
    /// (22-23) and TTL (24-31).
    ip: u32,
    /// The TCP payload's length (bits 0-19), the field set (20-23) and the TCP flags
    /// (24-31).
    l4: u32,
}

/// What a TCP segment keeps when segmentation offloads (TSO/GSO) cut a stream into
/// other segments, or GRO merges segments: every piece of one transmission carries
/// the same acknowledgement number and timestamp option, and its bytes keep their
/// sequence numbers. NAT leaves all of them alone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Seg {
    pub seq: u32,
    pub ack: u32,
    /// Payload bytes, as sent.
    pub len: u32,
    /// A 16-bit digest of the timestamp option (TSval, TSecr), 0 without one: it
    /// tells transmissions with one acknowledgement number apart.
    pub ts_key: u16,
    /// The payload's first bytes ([`Packet::payload_head`]), 0 when not captured:
    /// segments of one transmission that start at one sequence number share them.
    pub head: u32,
}

/// The fields of a record but its fingerprint, time, flow and resend key, as
/// [`Rec::new`] takes them.
#[derive(Clone, Copy, Debug)]
pub struct Fields {
    pub side: Side,
    pub strength: Strength,
    /// Index into the fingerprint's field sets ([`field_set`]).
    pub fields: u8,
    pub ttl: u8,
    /// TCP flags (0 for other protocols).
    pub tcp_flags: u8,
    /// Length of the IP packet as sent, and whether it may not be fragmented on the
    /// way ([`Packet::df`]).
    pub ip_len: u32,
    pub df: bool,
    /// TCP only: the fields that stay the same however offloads cut the stream.
    pub seg: Option<Seg>,
}

impl Rec {
    /// The largest length a record holds.
    pub const MAX_LEN: u32 = (1 << 20) - 1;

    /// A record of the given fields; the field set of a TCP segment is one of
    /// [`field_set`]'s TCP sets (below 4), of anything else one of the others.
    /// `resend` is what a datagram sent again repeats (its
    /// [`datagram_resend_key`]); a TCP segment's comes from its fields.
    pub fn new(fp: u64, ts: i64, flow: u32, resend: u32, f: Fields) -> Rec {
        debug_assert_eq!(f.fields < 4, f.seg.is_some(), "field set {}", f.fields);
        debug_assert!(fp <= FP_MAX, "fingerprint {fp:#x} past {FP_BITS} bits");
        let seg = f.seg.unwrap_or(Seg {
            seq: resend,
            ..Seg::default()
        });
        Rec {
            key: (fp & FP_MAX) << 16 | u64::from(seg.ts_key),
            ts,
            flow,
            seq: seg.seq,
            ack: seg.ack,
            head: seg.head,
            ip: f.ip_len.min(Self::MAX_LEN)
                | u32::from(f.df) << 20
                | (f.side as u32) << 21
                | (f.strength as u32) << 22
                | u32::from(f.ttl) << 24,
            l4: seg.len.min(Self::MAX_LEN)
                | u32::from(f.fields & 0xf) << 20
                | u32::from(f.tcp_flags) << 24,
        }
    }

    /// The packet's fingerprint ([`fingerprint`]): what pairs its copies at other
    /// points.
    #[inline]
    pub fn fp(&self) -> u64 {
        self.key >> 16
    }

    /// What a copy sent again repeats ([`super::fingerprint::resend_key`]):
    /// retransmissions share it.
    pub fn resend(&self) -> u64 {
        if self.is_tcp() {
            tcp_resend_key(self.seq, self.l4 & Self::MAX_LEN, self.tcp_flags())
        } else {
            u64::from(self.seq)
        }
    }

    /// The record's fields but its fingerprint, time, flow and resend key.
    pub fn fields_of(&self) -> Fields {
        Fields {
            side: self.side(),
            strength: self.strength(),
            fields: self.fields(),
            ttl: self.ttl(),
            tcp_flags: self.tcp_flags(),
            ip_len: self.ip_len(),
            df: self.df(),
            seg: self.seg(),
        }
    }

    /// The TCP segment's fields, `None` for other protocols.
    pub fn seg(&self) -> Option<Seg> {
        self.is_tcp().then_some(Seg {
            seq: self.seq,
            ack: self.ack,
            len: self.l4 & Self::MAX_LEN,
            ts_key: self.key as u16,
            head: self.head,
        })
    }

    fn is_tcp(&self) -> bool {
        self.fields() < 4
    }

    /// Which side of its flow sent it.
    pub fn side(&self) -> Side {
        if self.ip >> 21 & 1 == 0 {
            Side::A
        } else {
            Side::B
        }
    }

    pub fn strength(&self) -> Strength {
        Strength::from_bits(self.ip >> 22)
    }

    /// Index into the fingerprint's field sets of the fields that identify it.
    pub fn fields(&self) -> u8 {
        (self.l4 >> 20 & 0xf) as u8
    }

    /// Index into the fingerprint's field sets of the fields a TCP segment shares with
    /// the segments that carried its bytes cut differently: its sequence space, and
    /// its timestamp option when it has one.
    pub fn segment_fields(&self) -> u8 {
        if self.seg().is_some_and(|s| s.ts_key != 0) {
            SEQ_RANGE_TS
        } else {
            SEQ_RANGE
        }
    }

    /// Index into the fingerprint's field sets of the fields a TCP segment shares with
    /// its copy whose sequence numbers a NAT helper shifted: its flags, and its
    /// timestamp option when it has one.
    pub fn shifted_fields(&self) -> u8 {
        if self.seg().is_some_and(|s| s.ts_key != 0) {
            SHIFTED_TS
        } else {
            SHIFTED
        }
    }

    pub fn ttl(&self) -> u8 {
        (self.ip >> 24) as u8
    }

    /// TCP flags (0 for other protocols).
    pub fn tcp_flags(&self) -> u8 {
        (self.l4 >> 24) as u8
    }

    /// Length of the IP packet as sent (at most [`Rec::MAX_LEN`]).
    pub fn ip_len(&self) -> u32 {
        self.ip & Self::MAX_LEN
    }

    /// Whether the packet may not be fragmented on the way ([`Packet::df`]).
    pub fn df(&self) -> bool {
        self.ip >> 20 & 1 == 1
    }

    /// The record of packet `p`, of flow `flow` (sent by `side`).
    pub fn of(p: &Packet, flow: usize, side: Side) -> Rec {
        let (fp, strength) = fingerprint(p);
        let (tcp_flags, seg) = match p.l4 {
            L4::Tcp {
                seq,
                ack,
                flags,
                ts,
                ..
            } => {
                let ts_key = ts.map_or(0, |(val, ecr)| {
                    let mut b = [0u8; 8];
                    b[..4].copy_from_slice(&val.to_be_bytes());
                    b[4..].copy_from_slice(&ecr.to_be_bytes());
                    XxHash3_64::oneshot(&b) as u16 | 1
                });
                let seg = Seg {
                    seq,
                    ack,
                    len: p.payload_len,
                    ts_key,
                    head: p.payload_head.map_or(0, |h| h | 1),
                };
                (flags, Some(seg))
            }
            _ => (0, None),
        };
        let f = Fields {
            side,
            strength,
            fields: field_set(p),
            ttl: p.ttl,
            tcp_flags,
            ip_len: p.ip_len,
            df: p.df,
            seg,
        };
        let resend = if seg.is_some() {
            0
        } else {
            datagram_resend_key(p)
        };
        Rec::new(fp, p.ts_ns, flow as u32, resend, f)
    }
}

impl std::fmt::Debug for Rec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (fp, ts, flow) = (self.fp(), self.ts, self.flow);
        f.debug_struct("Rec")
            .field("fp", &fp)
            .field("ts", &ts)
            .field("flow", &flow)
            .field("resend", &self.resend())
            .field("fields", &self.fields_of())
            .finish()
    }
}

// The size the memory estimate above counts on.
const _: () = assert!(std::mem::size_of::<Rec>() == 40);
// The side and strength fit the bits they are given. The fields are integers only, so
// any bytes are a valid record: what the pages [`Release`] gives back read as (zeros),
// were they read again.
const _: () = assert!(Side::B as u32 == 1 && Strength::Strong as u32 <= 3);

/// A capture point ready for correlation.
#[derive(Clone, Debug)]
pub struct PointData {
    pub info: PointInfo,
    /// Index of the input (command-line order) the point came from: points of one
    /// input share a clock.
    pub input: usize,
    pub flows: Vec<Flow>,
    /// Records sorted by (flow, ts); `flow_start[f]..flow_start[f + 1]` are flow f's.
    pub recs: Vec<Rec>,
    pub flow_start: Vec<u32>,
    /// Indices into `recs`, sorted by (fp, ts), for the clock offsets and the
    /// cross-point join; [`super::correlate`] empties it once the join is done.
    pub by_fp: Vec<u32>,
    /// Where runs of one fingerprint lie in `by_fp`, read without reading records.
    pub runs: Runs,
    /// Per flow, the place in its input of the frame that opened it: the frames of one
    /// input counted in file order across all its points. Copies of one packet at two
    /// points of one capture (`tcpdump -i any`: a bridge port and its bridge) carry one
    /// timestamp; the order the capture wrote them in tells which point saw it first.
    /// All 0 where that order says nothing (an input of several capture interfaces:
    /// [`InputResult::one_stream`]).
    pub first_frame: Vec<u64>,
}

/// Which positions of a fingerprint order hold the fingerprint of the position before
/// them: one bit a position.
#[derive(Clone, Debug, Default)]
pub struct Runs(Vec<u64>);

impl Runs {
    fn new(len: usize) -> Runs {
        Runs(vec![0; len.div_ceil(64)])
    }

    fn set(&mut self, pos: usize) {
        self.0[pos / 64] |= 1 << (pos % 64);
    }

    /// Whether position `pos` holds the fingerprint of position `pos - 1`.
    fn continues(&self, pos: usize) -> bool {
        self.0
            .get(pos / 64)
            .is_some_and(|w| w >> (pos % 64) & 1 == 1)
    }

    /// The end of the run that starts at or holds `pos`: the first later position
    /// with another fingerprint (or the order's length).
    fn end(&self, pos: usize, len: usize) -> usize {
        let mut i = pos + 1;
        while i < len && self.continues(i) {
            i += 1;
        }
        i
    }

    /// The first run of more than one position that starts at or after `from` (the
    /// start of a run), as its range of positions; whole words without one are
    /// skipped at once.
    pub fn next_shared(&self, from: usize, len: usize) -> Option<std::ops::Range<usize>> {
        let mut i = from + 1;
        while i < len {
            let w = self.0[i / 64] >> (i % 64);
            if w == 0 {
                i = (i / 64 + 1) * 64;
                continue;
            }
            let at = i + w.trailing_zeros() as usize;
            if at >= len {
                break;
            }
            return Some(at - 1..self.end(at, len));
        }
        None
    }
}

/// How many positions ahead of a walk of a fingerprint order its records are fetched
/// ([`PointData::prefetch_fp_order`]).
pub const PREFETCH_AHEAD: usize = 16;

/// How many ranges of fingerprints [`PointData::fp_slices`] cuts a point's fingerprint
/// order into.
pub const FP_SLICES: usize = 16;

/// The first fingerprint of range `k` of [`FP_SLICES`], none past the last.
pub fn fp_slice_start(k: usize) -> Option<u64> {
    (k < FP_SLICES).then(|| ((k as u128 * (1u128 << FP_BITS)) / FP_SLICES as u128) as u64)
}

impl PointData {
    /// Where each of [`FP_SLICES`] equal ranges of the fingerprint space starts in
    /// [`PointData::by_fp`] (and its length at the end): range `k` of two points holds
    /// the same fingerprints, so the points' orders can be merged a range a core.
    pub fn fp_slices(&self) -> Vec<usize> {
        (0..=FP_SLICES)
            .map(|k| match fp_slice_start(k) {
                Some(fp) => self
                    .by_fp
                    .partition_point(|&r| self.recs[r as usize].fp() < fp),
                None => self.by_fp.len(),
            })
            .collect()
    }

    /// The end of the run of one fingerprint at position `pos` of the fingerprint
    /// order: the first later position with another fingerprint.
    pub fn run_end(&self, pos: usize) -> usize {
        self.runs.end(pos, self.by_fp.len())
    }

    /// Asks the processor to fetch the record at position `pos` of the fingerprint
    /// order into its cache, when there is one: walks of that order read records in
    /// no order of their own, and a record asked for some positions ahead is there
    /// when the walk reaches it.
    #[inline]
    pub fn prefetch_fp_order(&self, pos: usize) {
        if let Some(&k) = self.by_fp.get(pos) {
            crate::mem::prefetch(&self.recs[k as usize]);
        }
    }

    /// [`PointData::prefetch_fp_order`] for the flow of the record at position `pos`:
    /// call it for a position whose record was asked for some steps before.
    #[inline]
    pub fn prefetch_flow_of(&self, pos: usize) {
        if let Some(&k) = self.by_fp.get(pos) {
            crate::mem::prefetch(&self.flows[self.recs[k as usize].flow as usize]);
        }
    }

    /// Asks the processor to fetch flow `flow` and its first record into its cache:
    /// call it for the flows of the connection made after the current one, whose
    /// records lie elsewhere in memory.
    #[inline]
    pub fn prefetch_flow(&self, flow: usize) {
        crate::mem::prefetch(&self.flows[flow]);
        if let Some(&a) = self.flow_start.get(flow) {
            if let Some(r) = self.recs.get(a as usize) {
                crate::mem::prefetch(r);
            }
        }
    }

    pub fn flow_recs(&self, flow: usize) -> &[Rec] {
        let a = self.flow_start[flow] as usize;
        let b = self.flow_start[flow + 1] as usize;
        &self.recs[a..b]
    }

    /// Whether a record was sent by the flow's initiator.
    pub fn is_fwd(&self, r: &Rec) -> bool {
        self.flows[r.flow as usize].dir_index(r.side()) == 0
    }

    /// The point's facts for the report, with its clock.
    pub fn summary(&self, clock: Offset) -> PointSummary {
        PointSummary {
            name: self.info.name.clone(),
            source: self.info.source.clone(),
            linktype: self.info.linktype.clone(),
            interface: self.info.interface.clone(),
            packets: self.info.packets,
            flows: self.flows.len(),
            first_ns: self.info.first_ns,
            last_ns: self.info.last_ns,
            clock,
        }
    }

    /// A point of records in capture order (as tests make them), with the frame that
    /// opened each flow.
    #[cfg(test)]
    pub(super) fn new(
        info: PointInfo,
        input: usize,
        flows: Vec<Flow>,
        recs: Vec<Rec>,
        first_frame: Vec<u64>,
    ) -> PointData {
        let orders = Orders::of(recs, flows.len());
        PointData::ordered(info, input, (flows, orders, first_frame))
    }

    fn ordered(info: PointInfo, input: usize, (flows, o, first_frame): Read) -> PointData {
        debug_assert_eq!(flows.len(), first_frame.len());
        PointData {
            info,
            input,
            flows,
            recs: o.recs,
            flow_start: o.flow_start,
            by_fp: o.by_fp,
            runs: o.runs,
            first_frame,
        }
    }
}

/// A point as read: its flows, its records in order, the frame that opened each flow.
type Read = (Vec<Flow>, Orders, Vec<u64>);

/// A point's records in the orders correlation reads them in, as [`PointData`] holds
/// them.
struct Orders {
    recs: Vec<Rec>,
    flow_start: Vec<u32>,
    by_fp: Vec<u32>,
    runs: Runs,
}

impl Orders {
    /// Puts a point's records (in capture order; the point has `flows` flows) in
    /// flow order, keeping capture order within a flow (a counting sort: one pass to
    /// count, one to place) unless the capture's timestamps were out of order there
    /// (then by time), and makes their fingerprint order.
    fn of(recs: Vec<Rec>, flows: usize) -> Orders {
        let _turn = Turn::take(recs.len() * 8);
        let flow_start = flow_starts(&recs, flows);
        let recs = by_flow(recs, &flow_start);
        let (by_fp, runs) = fingerprint_order(&recs);
        Orders {
            recs,
            flow_start,
            by_fp,
            runs,
        }
    }
}

/// Bytes that putting points' records in order may take beside them at once: 8 a
/// record (the fingerprint order's keys; 4 for the flow order's destinations). The
/// points of one input are put in order as soon as it is read, side by side with
/// other inputs' while their records add up to at most 16 M (two points of 8 M
/// packets), one after the other beyond: the transient memory of large points does
/// not add up while every record is held.
const ORDERING_BUDGET: usize = 128 << 20;

/// A point's turn to be put in order, within [`ORDERING_BUDGET`]: taken when the
/// bytes it needs fit beside those of the points being ordered (or none are), given
/// back when dropped. The ordering runs on the thread that holds the turn and waits
/// on no other task: a holder waiting in a rayon join could take up another point's
/// ordering meanwhile and wait for a turn it holds itself.
struct Turn(usize);

static ORDERING: (std::sync::Mutex<usize>, std::sync::Condvar) =
    (std::sync::Mutex::new(0), std::sync::Condvar::new());

impl Turn {
    fn take(bytes: usize) -> Turn {
        let (lock, freed) = &ORDERING;
        let mut in_use = lock.lock().unwrap_or_else(|e| e.into_inner());
        while *in_use > 0 && *in_use + bytes > ORDERING_BUDGET {
            in_use = freed.wait(in_use).unwrap_or_else(|e| e.into_inner());
        }
        *in_use += bytes;
        Turn(bytes)
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let (lock, freed) = &ORDERING;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) -= self.0;
        freed.notify_all();
    }
}

/// The indices of `recs` ordered by (fingerprint, time, index). Fingerprints are
/// hashes, spread evenly: one counting pass places compact keys (read side by side, not
/// through the records) into buckets by their top bits, about eight a bucket, and each
/// bucket is then sorted on its own. A key is 8 bytes: the 32 bits of the fingerprint
/// below the bucket's, then the index; the few keys of a bucket that share those bits
/// are put in order by their records. A bucket that crafted packets fill is sorted like
/// any other, in n log n. The indices are then moved to the front of the keys' own
/// memory, and the rest given back: no second list beside the keys. The runs of one
/// fingerprint are marked as they are found: only keys sharing their 32 bits can.
fn fingerprint_order(recs: &[Rec]) -> (Vec<u32>, Runs) {
    let bits = (usize::BITS - (recs.len() / 8).leading_zeros()).clamp(1, 24);
    let bucket = |fp: u64| (fp >> (FP_BITS - bits)) as usize;
    let start = starts(1 << bits, recs.iter().map(|r| bucket(r.fp())));
    let mut next = start.clone();
    let mut keys = vec![[0u32; 2]; recs.len()];
    for (i, r) in recs.iter().enumerate() {
        let b = &mut next[bucket(r.fp())];
        keys[*b as usize] = [((r.fp() << (64 - FP_BITS + bits)) >> 32) as u32, i as u32];
        *b += 1;
    }
    drop(next);
    let full = |k: &[u32; 2]| {
        let r = &recs[k[1] as usize];
        (r.fp(), r.ts, k[1])
    };
    let mut runs = Runs::new(recs.len());
    for w in start.windows(2) {
        let run = &mut keys[w[0] as usize..w[1] as usize];
        if run.len() < 2 {
            continue;
        }
        run.sort_unstable_by_key(|k| u64::from(k[0]) << 32 | u64::from(k[1]));
        let mut at = w[0] as usize;
        for same in run.chunk_by_mut(|a, b| a[0] == b[0]) {
            if same.len() > 1 {
                same.sort_unstable_by_key(full);
                for (i, pair) in same.windows(2).enumerate() {
                    if recs[pair[0][1] as usize].fp() == recs[pair[1][1] as usize].fp() {
                        runs.set(at + i + 1);
                    }
                }
            }
            at += same.len();
        }
    }
    // Key `i` lies at words 2i and 2i + 1, never before word `i`: moving the indices
    // to the front in order overwrites only keys already read.
    let mut order = keys.into_flattened();
    for i in 0..recs.len() {
        order[i] = order[2 * i + 1];
    }
    order.truncate(recs.len());
    order.shrink_to_fit();
    (order, runs)
}

/// Where each of `flows` flows starts once `recs` are in flow order: the records of
/// the flows before it, summed (and the total at the end).
fn flow_starts(recs: &[Rec], flows: usize) -> Vec<u32> {
    starts(flows, recs.iter().map(|r| r.flow as usize))
}

/// Where each of `n` groups starts once items are placed by group (`of` gives each
/// item's group): the items of the groups before it, summed (and the total at the end).
fn starts(n: usize, of: impl Iterator<Item = usize>) -> Vec<u32> {
    let mut start = vec![0u32; n + 1];
    for g in of {
        start[g + 1] += 1;
    }
    for i in 1..start.len() {
        start[i] += start[i - 1];
    }
    start
}

/// `recs` ordered by (flow, ts, fp), flows apart as `flow_start` says (the records
/// per flow, summed), each flow's records in capture order unless that is not time
/// order. Moved in place ([`permute`]): a destination of 4 bytes per record and a copy
/// of one region, not a second copy of the records (40 bytes each), is what this
/// costs beside them.
fn by_flow(mut recs: Vec<Rec>, flow_start: &[u32]) -> Vec<Rec> {
    let mut next: Vec<u32> = flow_start[..flow_start.len() - 1].to_vec();
    let mut dest: Vec<u32> = recs
        .iter()
        .map(|r| {
            let f = r.flow as usize;
            next[f] += 1;
            next[f] - 1
        })
        .collect();
    drop(next);
    permute(&mut recs, &mut dest, REGION);
    drop(dest);
    for w in flow_start.windows(2) {
        let flow = &mut recs[w[0] as usize..w[1] as usize];
        if !flow.is_sorted_by_key(|r| (r.ts, r.fp())) {
            flow.sort_by_key(|r| (r.ts, r.fp()));
        }
    }
    recs
}

/// Records a region of [`permute`] holds: 768 KiB of them, with their destinations
/// well inside a core's second-level cache.
const REGION: usize = 1 << 14;

/// Moves `recs[i]` to `dest[i]` for every `i` (`dest` a permutation), in place, in two
/// passes so that no move waits for memory. Following the permutation's cycles
/// directly reads the records in an order no prefetcher can guess: each move's
/// address is known only once the record the last one displaced has been read, a
/// cache miss a record once the records outgrow the caches. So the records are
/// first put into the regions of `region` records their destinations fall in (each
/// region filled from its front: every move reads and writes at one of these fronts,
/// which advance one record at a time), then each region's records are copied to
/// their places from a copy of the region, which the cache holds.
fn permute(recs: &mut [Rec], dest: &mut [u32], region: usize) {
    let n = recs.len();
    debug_assert_eq!(dest.len(), n);
    if n > region {
        let regions = n.div_ceil(region);
        // The first place of each region not yet holding one of its own records.
        let mut front: Vec<usize> = (0..regions).map(|g| g * region).collect();
        for g in 0..regions {
            let end = n.min((g + 1) * region);
            while front[g] < end {
                let i = front[g];
                let t = dest[i] as usize / region;
                if t == g {
                    front[g] += 1;
                    continue;
                }
                // The record goes to the front of its region, whose record comes here
                // to be looked at next; earlier regions are full of their own, so `t`
                // is a later one.
                let j = front[t];
                front[t] += 1;
                recs.swap(i, j);
                dest.swap(i, j);
                if let Some(r) = recs.get(j + 4) {
                    crate::mem::prefetch(r);
                }
                if let Some(d) = dest.get(j + 16) {
                    crate::mem::prefetch(d);
                }
            }
        }
    }
    // Within a region, each record is copied to its place from a copy of the region:
    // reads in order, writes where the cache has them.
    let mut copy = Vec::with_capacity(region.min(n));
    for (g, (recs, dest)) in recs.chunks_mut(region).zip(dest.chunks(region)).enumerate() {
        let base = g * region;
        copy.clear();
        copy.extend_from_slice(recs);
        for (r, &d) in copy.iter().zip(dest) {
            recs[d as usize - base] = *r;
        }
    }
}

/// Gives the points' records back to the system as the per-connection steps finish
/// with them, so that the connections being built and the records already read are
/// not held at once in full. The records are in flow order, and flows in the order
/// their first packet came, as connections are: working through the connections in
/// their order frees the records from the front of each point's order to its back.
///
/// Records are given back a chunk of [`Release::CHUNK`] bytes at a time (whole pages
/// of it), once no flow with records in the chunk has a connection still to go. The
/// records stay in place: their pages read as zeros again (a valid record, never
/// read: nothing after the steps that [`Release::done`] is told of reads records).
pub struct Release {
    points: Vec<PointRelease>,
}

struct PointRelease {
    /// Per flow: the connections still to go that read its records.
    uses: Vec<u32>,
    /// Per chunk of the records' memory: the flows with records in it that still have
    /// uses.
    pending: Vec<u32>,
    /// Address of chunk 0: the records' address rounded down to a chunk.
    origin: usize,
}

impl Release {
    /// Bytes of records given back at once: a multiple of any page size.
    pub const CHUNK: usize = 1 << 18;

    /// Counts the uses `flows` lists ((point, flow), once per connection that reads
    /// the flow's records), and gives back at once the chunks of records no flow used
    /// holds.
    pub fn new(points: &mut [PointData], flows: impl Iterator<Item = (usize, usize)>) -> Release {
        let mut uses: Vec<Vec<u32>> = points.iter().map(|p| vec![0; p.flows.len()]).collect();
        for (p, f) in flows {
            uses[p][f] += 1;
        }
        let release = Release {
            points: points
                .iter()
                .zip(uses)
                .map(|(p, uses)| {
                    let origin = p.recs.as_ptr() as usize & !(Self::CHUNK - 1);
                    let end = p.recs.as_ptr_range().end as usize;
                    let chunks = (end - origin).div_ceil(Self::CHUNK);
                    let mut pending = vec![0u32; chunks];
                    for (f, _) in uses.iter().enumerate().filter(|(_, &u)| u > 0) {
                        for c in PointRelease::chunks(origin, p, f) {
                            pending[c] += 1;
                        }
                    }
                    PointRelease {
                        uses,
                        pending,
                        origin,
                    }
                })
                .collect(),
        };
        for (r, p) in release.points.iter().zip(points.iter_mut()) {
            for c in 0..r.pending.len() {
                if r.pending[c] == 0 {
                    r.give_back(p, c);
                }
            }
        }
        release
    }

    /// One use each of `flows` ((point, flow)) is done; the chunks of records no
    /// remaining use reads are given back.
    pub fn done(&mut self, points: &mut [PointData], flows: impl Iterator<Item = (usize, usize)>) {
        for (p, f) in flows {
            let r = &mut self.points[p];
            // A use not counted would give back records a later use reads: keep them.
            debug_assert!(
                r.uses[f] > 0,
                "flow {f} of point {p} done more than counted"
            );
            if r.uses[f] == 0 {
                continue;
            }
            r.uses[f] -= 1;
            if r.uses[f] > 0 {
                continue;
            }
            for c in PointRelease::chunks(r.origin, &points[p], f) {
                r.pending[c] -= 1;
                if r.pending[c] == 0 {
                    r.give_back(&mut points[p], c);
                }
            }
        }
    }
}

impl PointRelease {
    /// The chunks flow `f`'s records lie in (none for a flow without records).
    fn chunks(origin: usize, p: &PointData, f: usize) -> std::ops::Range<usize> {
        let recs = p.flow_recs(f).as_ptr_range();
        if recs.is_empty() {
            return 0..0;
        }
        let (first, last) = (recs.start as usize, recs.end as usize - 1);
        (first - origin) / Release::CHUNK..(last - origin) / Release::CHUNK + 1
    }

    /// Gives chunk `c` of `p`'s records back: the whole pages of it the records fill.
    fn give_back(&self, p: &mut PointData, c: usize) {
        let span = p.recs.as_mut_ptr_range();
        let (lo, hi) = (span.start as usize, span.end as usize);
        let start = (self.origin + c * Release::CHUNK).max(lo);
        let end = (self.origin + (c + 1) * Release::CHUNK).min(hi);
        let page = page_size();
        let (start, end) = (start.next_multiple_of(page), end - end % page);
        if start < end {
            // SAFETY: the range lies inside the records' own allocation, borrowed
            // mutably; MADV_DONTNEED on private anonymous memory makes its pages read
            // as zeros, which is a valid record (its fields are integers only), so this
            // is a write of zeros to records nothing reads again. Nothing else lives in
            // those pages: only whole pages between the first and last record's bytes
            // are named.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
            }
        }
    }
}

/// The size of a page of memory.
fn page_size() -> usize {
    // SAFETY: sysconf reads a constant of the system.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as usize
    } else {
        4096
    }
}

/// Reads every input in parallel into points (in input order, then the input's own
/// point order) and returns them with the per-input results (warnings, counters).
pub fn read_points(specs: &[InputSpec], opts: &ReadOptions) -> (Vec<PointData>, Vec<InputResult>) {
    // Per input: its result, and per point its flows and records in order. Each
    // input's points are put in order as soon as it is read, on the core that read it
    // (while others are still being read), not once every input is.
    type PerInput = (InputResult, Vec<Read>);
    let per_input: Vec<PerInput> = specs
        .par_iter()
        .map(|spec| {
            // Per point (in discovery order): its records, and the frame that opened
            // each of its flows (flows are numbered as they open).
            let mut read: Vec<(Vec<Rec>, Vec<u64>)> = Vec::new();
            let mut frame = 0u64;
            let f = flows::read_input_flows(spec, opts, |local, flow, side, p| {
                if read.len() <= local {
                    read.resize_with(local + 1, Default::default);
                }
                let (recs, first_frame) = &mut read[local];
                if flow == first_frame.len() {
                    first_frame.push(frame);
                }
                frame += 1;
                if is_matchable(p) {
                    recs.push(Rec::of(p, flow, side));
                }
            });
            read.resize_with(f.points.len(), Default::default);
            if !f.input.one_stream {
                for (_, first_frame) in &mut read {
                    first_frame.fill(0);
                }
            }
            let mut sorted: Vec<(Vec<Rec>, Vec<u64>)> = vec![Default::default(); f.points.len()];
            for (local, r) in read.into_iter().enumerate() {
                sorted[f.input.remap[local]] = r;
            }
            let points = (f.points.into_par_iter().zip(sorted))
                .map(|(p, (recs, first_frame))| {
                    let orders = Orders::of(recs, p.flows.len());
                    (p.flows, orders, first_frame)
                })
                .collect();
            (f.input, points)
        })
        .collect();
    let mut inputs: Vec<InputResult> = per_input.iter().map(|(i, _)| i.clone()).collect();
    capture::finish_inputs(specs, &mut inputs, opts);
    let mut points = Vec::new();
    for (input_idx, ((_, pts), input)) in per_input.into_iter().zip(&inputs).enumerate() {
        for (read, info) in pts.into_iter().zip(&input.points) {
            points.push(PointData::ordered(info.clone(), input_idx, read));
        }
    }
    (points, inputs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::correlate::testkit;

    /// A record of flow `flow` at `ts`, its fingerprint the low [`FP_BITS`] of `fp`.
    fn rec(flow: u32, ts: i64, fp: u64) -> Rec {
        Rec {
            flow,
            ..testkit::rec(fp & FP_MAX, ts)
        }
    }

    #[test]
    fn a_record_gives_back_the_fields_it_was_made_of() {
        let seg = Seg {
            seq: u32::MAX,
            ack: 7,
            len: 1448,
            ts_key: 0x8001,
            head: 3,
        };
        let tcp = Fields {
            side: Side::B,
            strength: Strength::Strong,
            fields: 3,
            ttl: 255,
            tcp_flags: 0xff,
            ip_len: 1500,
            df: true,
            seg: Some(seg),
        };
        let udp = Fields {
            side: Side::A,
            strength: Strength::Medium,
            fields: 9,
            ttl: 0,
            tcp_flags: 0,
            ip_len: 0,
            df: false,
            seg: None,
        };
        let weak = Fields {
            strength: Strength::Weak,
            fields: 11,
            ..udp
        };
        for f in [tcp, udp, weak] {
            let r = Rec::new(FP_MAX, i64::MIN, u32::MAX, u32::MAX, f);
            assert_eq!(format!("{:?}", r.fields_of()), format!("{f:?}"));
            assert_eq!((r.fp(), r.ts, r.flow), (FP_MAX, i64::MIN, u32::MAX));
            // A datagram keeps the resend key it was given; a segment's is its own.
            let resend = match f.seg {
                None => u64::from(u32::MAX),
                Some(s) => tcp_resend_key(s.seq, s.len, f.tcp_flags),
            };
            assert_eq!(r.resend(), resend);
        }
        // Lengths past 20 bits read as the largest held; nothing else changes.
        let jumbo = Fields {
            ip_len: 70_000 + (1 << 20),
            seg: Some(Seg {
                len: u32::MAX,
                ..seg
            }),
            ..tcp
        };
        let r = Rec::new(1, 2, 3, 4, jumbo).fields_of();
        assert_eq!(
            (r.ip_len, r.seg.map(|s| s.len)),
            (Rec::MAX_LEN, Some(Rec::MAX_LEN))
        );
        assert_eq!(
            (r.ttl, r.tcp_flags, r.df, r.side),
            (255, 0xff, true, Side::B)
        );
    }

    #[test]
    fn fingerprint_order_is_a_sort_by_fingerprint_time_and_index() {
        let mut rng = testkit::XorShift(0x2545_f491_4f6c_dd1d);
        let mut recs = Vec::new();
        for i in 0..20_000i64 {
            let x = rng.draw();
            // Spread fingerprints, some repeated, and a crowd sharing the top bits
            // (as crafted packets could) that one bucket takes.
            let fp = match i % 5 {
                0 => x % 64,
                1 => u64::MAX - (x % 4096),
                _ => x,
            };
            recs.push(rec((x % 7) as u32, (x >> 40) as i64 % 1000, fp));
        }
        for n in [0, 1, 2, 9, 100, recs.len()] {
            let recs = &recs[..n];
            let mut want: Vec<u32> = (0..n as u32).collect();
            want.sort_by_key(|&i| (recs[i as usize].fp(), recs[i as usize].ts, i));
            let (order, runs) = fingerprint_order(recs);
            assert_eq!(order, want, "{n} records");
            // Runs: each position's end is the first later one of another
            // fingerprint, and the shared runs are those of more than one record.
            let fp = |i: usize| recs[order[i] as usize].fp();
            let end_of = |i: usize| (i + 1..n).find(|&j| fp(j) != fp(i)).unwrap_or(n);
            for i in 0..n {
                assert_eq!(runs.end(i, n), end_of(i), "{n} records, position {i}");
            }
            let mut shared = Vec::new();
            let mut i = 0;
            while i < n {
                let end = end_of(i);
                if end - i > 1 {
                    shared.push(i..end);
                }
                i = end;
            }
            let mut found = Vec::new();
            let mut from = 0;
            while let Some(r) = runs.next_shared(from, n) {
                from = r.end;
                found.push(r);
            }
            assert_eq!(found, shared, "{n} records");
        }
    }

    #[test]
    fn records_moved_in_place_keep_capture_order_within_a_flow() {
        // Interleaved flows, one of them out of time order in the capture.
        let mut recs = Vec::new();
        let mut rng = testkit::XorShift(0x9e37_79b9_7f4a_7c15);
        for i in 0..5_000i64 {
            let x = rng.draw();
            let flow = (x % 37) as u32;
            let ts = if flow == 5 && i % 3 == 0 { i - 2 } else { i };
            recs.push(rec(flow, ts, x));
        }
        let flow_start = flow_starts(&recs, 37);
        // A stable sort by (flow, ts, fp): capture order kept among records that tie.
        let mut want = recs.clone();
        want.sort_by_key(|r| (r.flow, r.ts, r.fp()));
        assert_eq!(by_flow(recs, &flow_start), want);
    }

    #[test]
    fn a_permutation_is_applied_in_place_whatever_the_region() {
        let mut rng = testkit::XorShift(0x2545_f491_4f6c_dd1d);
        for n in [0usize, 1, 2, 63, 64, 65, 1000, 5003] {
            // A random permutation (Fisher-Yates), and records that say where they
            // started.
            let mut dest: Vec<u32> = (0..n as u32).collect();
            for i in (1..n).rev() {
                dest.swap(i, rng.below(i as u64 + 1) as usize);
            }
            let recs: Vec<Rec> = (0..n)
                .map(|i| rec(i as u32, i as i64, rng.draw()))
                .collect();
            let mut want = recs.clone();
            for (i, &d) in dest.iter().enumerate() {
                want[d as usize] = recs[i];
            }
            for region in [1, 7, 64, 1 << 14] {
                let (mut got, mut d) = (recs.clone(), dest.clone());
                permute(&mut got, &mut d, region);
                assert!(got == want, "{n} records, regions of {region}");
            }
        }
    }

    #[test]
    fn records_are_given_back_once_no_use_is_left_and_others_are_kept() {
        // 300 flows of 140 records each, interleaved in the capture: 1.7 MB of
        // records, several chunks.
        let mut packets = Vec::new();
        for i in 0..42_000u32 {
            let (flow, k) = (i % 300, i / 300);
            let src = format!("192.0.2.{}:{}", 1 + flow / 200, 1024 + flow);
            let ts = i64::from(i) * 1_000;
            packets.push(testkit::udp(
                ts,
                &src,
                "198.51.100.1:53",
                Some(k),
                u64::from(i) + 1,
            ));
        }
        let mut points = vec![testkit::point("p", 0, &packets)];
        let kept = points[0].recs.clone();
        let zero = |r: &Rec| r.fp() == 0 && r.ts == 0 && r.flow == 0;
        // Flows 0 to 9 are no connection's; 10 to 299 one connection's each, and
        // flow 150 two connections'.
        let uses = || (10..300).chain([150]).map(|f| (0, f));
        let mut release = Release::new(&mut points, uses());
        // The flows in use keep their records (flows 0 to 9 lose theirs only if the
        // allocation put them in a chunk of their own).
        let own = |p: &PointData, f: usize| {
            let (a, b) = (p.flow_start[f] as usize, p.flow_start[f + 1] as usize);
            assert_eq!(p.flow_recs(f), &kept[a..b], "flow {f}");
        };
        (10..300).for_each(|f| own(&points[0], f));
        release.done(&mut points, (10..200).map(|f| (0, f)));
        let p = &points[0];
        // Flows 151 to 199 are done too, and may have lost theirs where a whole chunk
        // lies among them.
        [150].into_iter().chain(200..300).for_each(|f| own(p, f));
        // Flows 0 to 149 (no use left; 0 to 9 never had one) fill 840 kB of the order
        // (more than three chunks, wherever they start): at least two whole chunks of
        // it are given back. (Flows 10 to 149 alone fill 784 kB, less than three
        // chunks: two whole ones lie in them only where the allocation puts them.)
        let done = &p.recs[..p.flow_start[150] as usize];
        let given_back = done.iter().filter(|r| zero(r)).count();
        // (Whole records: each end of the chunks may cut one.)
        let chunk = Release::CHUNK / std::mem::size_of::<Rec>();
        assert!(
            given_back >= 2 * chunk - 2,
            "{given_back} records given back"
        );
        release.done(
            &mut points,
            uses().filter(|&(_, f)| f >= 200).chain([(0, 150)]),
        );
        let page = page_size() / std::mem::size_of::<Rec>() + 1;
        let inner = &points[0].recs[page..kept.len() - page];
        assert!(
            inner.iter().all(zero),
            "all but the first and last pages given back"
        );
    }
}
