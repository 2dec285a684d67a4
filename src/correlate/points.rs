//! Reading captures for correlation: per capture point, the oriented flows plus one
//! compact record per packet (fingerprint, time, flow, side, TTL, and for TCP where
//! the segment lies in the sequence space), kept in two orders: by flow (for
//! per-connection detail) and by fingerprint (for the cross-point join). A point's
//! facts for the report ([`PointData::summary`]) come from here too.

use rayon::prelude::*;
use xxhash_rust::xxh3::xxh3_64;

use super::fingerprint::{field_set, fingerprint, is_matchable, resend_key, Strength};
use super::offset::Offset;
use super::PointSummary;
use crate::capture::{self, InputResult, InputSpec, PointInfo, ReadOptions};
use crate::flows::{self, Flow, Side};
use crate::model::{Packet, L4};

/// One packet as correlation sees it. 56 bytes, so a capture of N packets costs
/// about 60·N bytes here until the cross-point join (this record plus its index in
/// fingerprint order, [`PointData::by_fp`]) and 56·N after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rec {
    pub fp: u64,
    pub ts: i64,
    pub flow: u32,
    /// What a copy sent again repeats ([`resend_key`]): retransmissions share it.
    pub resend: u32,
    pub side: Side,
    pub strength: Strength,
    pub fields: u8,
    pub ttl: u8,
    /// TCP flags (0 for other protocols).
    pub tcp_flags: u8,
    /// Length of the IP packet as sent, and whether it may not be fragmented on the
    /// way ([`Packet::df`]).
    pub ip_len: u32,
    pub df: bool,
    /// Whether `segment` holds a TCP segment's fields ([`Rec::seg`]); a flag of one
    /// byte rather than an `Option`, whose tag would take four.
    pub is_tcp: bool,
    /// TCP only: the fields that stay the same however offloads cut the stream; all
    /// zero for other protocols.
    pub segment: Seg,
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
    /// A 32-bit digest of the timestamp option (TSval, TSecr), 0 without one.
    pub ts_key: u32,
    /// The payload's first bytes ([`Packet::payload_head`]), 0 when not captured:
    /// segments of one transmission that start at one sequence number share them.
    pub head: u32,
}

impl Rec {
    /// The TCP segment's fields, `None` for other protocols.
    pub fn seg(&self) -> Option<Seg> {
        self.is_tcp.then_some(self.segment)
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
                    xxh3_64(&b) as u32 | 1
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
        Rec {
            fp,
            ts: p.ts_ns,
            flow: flow as u32,
            resend: resend_key(p),
            side,
            strength,
            fields: field_set(p),
            ttl: p.ttl,
            tcp_flags,
            ip_len: p.ip_len,
            df: p.df,
            is_tcp: seg.is_some(),
            segment: seg.unwrap_or_default(),
        }
    }
}

// The size the memory estimate above counts on.
const _: () = assert!(std::mem::size_of::<Rec>() == 56);

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
}

/// How many ranges of fingerprints [`PointData::fp_slices`] cuts a point's fingerprint
/// order into.
pub const FP_SLICES: usize = 16;

/// The first fingerprint of range `k` of [`FP_SLICES`], none past the last.
pub fn fp_slice_start(k: usize) -> Option<u64> {
    (k < FP_SLICES).then(|| ((k as u128 * (1u128 << 64)) / FP_SLICES as u128) as u64)
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
                    .partition_point(|&r| self.recs[r as usize].fp < fp),
                None => self.by_fp.len(),
            })
            .collect()
    }

    pub fn flow_recs(&self, flow: usize) -> &[Rec] {
        let a = self.flow_start[flow] as usize;
        let b = self.flow_start[flow + 1] as usize;
        &self.recs[a..b]
    }

    /// Whether a record was sent by the flow's initiator.
    pub fn is_fwd(&self, r: &Rec) -> bool {
        self.flows[r.flow as usize].dir_index(r.side) == 0
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

    pub(super) fn new(
        info: PointInfo,
        input: usize,
        flows: Vec<Flow>,
        recs: Vec<Rec>,
    ) -> PointData {
        // By flow, keeping capture order (a counting sort: one pass to count, one to
        // place); then by time within a flow, where the capture's timestamps were out
        // of order.
        let flow_start = flow_starts(&recs, flows.len());
        let recs = by_flow(recs, &flow_start);
        let by_fp = fingerprint_order(&recs);
        PointData {
            info,
            input,
            flows,
            recs,
            flow_start,
            by_fp,
        }
    }
}

/// The indices of `recs` ordered by (fingerprint, time, index). Fingerprints are
/// hashes, spread evenly: one counting pass places compact keys (read side by side, not
/// through the records) into buckets by their top bits, about eight a bucket, and each
/// bucket is then sorted on its own. A bucket that crafted packets fill is sorted
/// like any other, in n log n.
fn fingerprint_order(recs: &[Rec]) -> Vec<u32> {
    let bits = (usize::BITS - (recs.len() / 8).leading_zeros()).clamp(1, 24);
    let bucket = |fp: u64| (fp >> (64 - bits)) as usize;
    let start = starts(1 << bits, recs.iter().map(|r| bucket(r.fp)));
    let mut next = start.clone();
    let mut keys = vec![(0u64, 0i64, 0u32); recs.len()];
    for (i, r) in recs.iter().enumerate() {
        let b = &mut next[bucket(r.fp)];
        keys[*b as usize] = (r.fp, r.ts, i as u32);
        *b += 1;
    }
    drop(next);
    for w in start.windows(2) {
        let run = &mut keys[w[0] as usize..w[1] as usize];
        if run.len() > 1 {
            run.sort_unstable();
        }
    }
    keys.into_iter().map(|(_, _, i)| i).collect()
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
/// order. Moved in place: a destination of 4 bytes per record, not a second copy of
/// the records (56 bytes each), is what this costs beside them.
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
    // Each swap puts one record where it belongs, so at most one per record.
    for i in 0..recs.len() {
        loop {
            let d = dest[i] as usize;
            if d == i {
                break;
            }
            recs.swap(i, d);
            dest.swap(i, d);
        }
    }
    drop(dest);
    for w in flow_start.windows(2) {
        let flow = &mut recs[w[0] as usize..w[1] as usize];
        if !flow.is_sorted_by_key(|r| (r.ts, r.fp)) {
            flow.sort_by_key(|r| (r.ts, r.fp));
        }
    }
    recs
}

/// Reads every input in parallel into points (in input order, then the input's own
/// point order) and returns them with the per-input results (warnings, counters).
pub fn read_points(specs: &[InputSpec], opts: &ReadOptions) -> (Vec<PointData>, Vec<InputResult>) {
    // Per input: its result, and per point its flows and records.
    type PerInput = (InputResult, Vec<(Vec<Flow>, Vec<Rec>)>);
    let per_input: Vec<PerInput> = specs
        .par_iter()
        .map(|spec| {
            let mut recs: Vec<Vec<Rec>> = Vec::new();
            let f = flows::read_input_flows(spec, opts, |local, flow, side, p| {
                if recs.len() <= local {
                    recs.resize_with(local + 1, Vec::new);
                }
                if is_matchable(p) {
                    recs[local].push(Rec::of(p, flow, side));
                }
            });
            recs.resize_with(f.points.len(), Vec::new);
            let mut sorted: Vec<Vec<Rec>> = vec![Vec::new(); f.points.len()];
            for (local, r) in recs.into_iter().enumerate() {
                sorted[f.input.remap[local]] = r;
            }
            let points = f
                .points
                .into_iter()
                .zip(sorted)
                .map(|(p, r)| (p.flows, r))
                .collect();
            (f.input, points)
        })
        .collect();
    let mut inputs: Vec<InputResult> = per_input.iter().map(|(i, _)| i.clone()).collect();
    capture::assign_names(specs, &mut inputs);
    let mut points = Vec::new();
    for (input_idx, ((_, pts), input)) in per_input.into_iter().zip(&inputs).enumerate() {
        for ((flows, recs), info) in pts.into_iter().zip(&input.points) {
            points.push((info.clone(), input_idx, flows, recs));
        }
    }
    let points = points
        .into_par_iter()
        .map(|(info, input, flows, recs)| PointData::new(info, input, flows, recs))
        .collect();
    (points, inputs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::correlate::testkit;

    fn rec(flow: u32, ts: i64, fp: u64) -> Rec {
        Rec {
            flow,
            ..testkit::rec(fp, ts)
        }
    }

    #[test]
    fn fingerprint_order_is_a_sort_by_fingerprint_time_and_index() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut recs = Vec::new();
        for i in 0..20_000i64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
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
            want.sort_by_key(|&i| (recs[i as usize].fp, recs[i as usize].ts, i));
            assert_eq!(fingerprint_order(recs), want, "{n} records");
        }
    }

    #[test]
    fn records_moved_in_place_keep_capture_order_within_a_flow() {
        // Interleaved flows, one of them out of time order in the capture.
        let mut recs = Vec::new();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in 0..5_000i64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let flow = (x % 37) as u32;
            let ts = if flow == 5 && i % 3 == 0 { i - 2 } else { i };
            recs.push(rec(flow, ts, x));
        }
        let flow_start = flow_starts(&recs, 37);
        // A stable sort by (flow, ts, fp): capture order kept among records that tie.
        let mut want = recs.clone();
        want.sort_by_key(|r| (r.flow, r.ts, r.fp));
        assert_eq!(by_flow(recs, &flow_start), want);
    }
}
