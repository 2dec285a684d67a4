//! Pairing: which packets seen at two points are one packet, and which flows they
//! belong to.
//!
//! [`flow_pairs`] is the cross-point join. Every point is first joined with itself,
//! for hairpin traffic that crosses one interface twice (`join_hairpin`); then, for
//! every pair of points, a merge join of the fingerprint-sorted records pairs each
//! packet with a same-fingerprint packet within the time window; matched packets vote
//! for the pair of flows they belong to. A fingerprint that several flows carry at one
//! point other than as a connection turned back (the same bytes from several senders:
//! IPv6 has no IP ID) pairs only copies clearly nearer each other than any other
//! (`Shared`, `pair_run_across`). TCP segments left unmatched then pair by the bytes
//! they carried (`segments`): where offloads cut the stream differently at the two
//! points, the segments that overlap vote, one vote per overlapping pair. Linear in
//! the number of packets (n log n for the segments), never all-pairs. Flow pairs with
//! too little evidence are dropped; the rest come out best evidence first.
//!
//! [`match_flows`] pairs the packets of two given flows (or hops) one by one, and
//! [`match_all`] adds the segments that carried the same bytes cut differently: the
//! orientation of a connection's flows, the order of its hops and its translations all
//! rest on them.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Mutex;

use foldhash::HashMap;
use rayon::prelude::*;
use smallvec::{smallvec, SmallVec};

use super::fingerprint::Strength;
use super::points::{PointData, Rec, PREFETCH_AHEAD};
use super::segments::{self, Recs};
use crate::flows::Side;
use crate::model::Tuple;

/// Minimum evidence for two flows to be one connection: one TCP packet, one IPv4
/// UDP/ICMP packet with its ID and payload, or two weaker matches.
pub(super) const MIN_EDGE_SCORE: f64 = 0.6;

/// Votes for one flow pair from the cross-point join.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) struct Vote {
    pub packets: u64,
    pub score: f64,
}

impl Vote {
    /// The votes of matched packets, counted by strength (indexed by
    /// `Strength as usize`), combined as independent evidence: 1 - Π(1 - w). The
    /// same counts give the same score whatever order the packets were matched in.
    fn of(counts: [u64; 3]) -> Vote {
        let mut unlikely = 1.0f64;
        for (s, &n) in [Strength::Weak, Strength::Medium, Strength::Strong]
            .iter()
            .zip(&counts)
        {
            unlikely *= (1.0 - s.weight()).powi(n.min(i32::MAX as u64) as i32);
        }
        Vote {
            packets: counts.iter().sum(),
            score: 1.0 - unlikely,
        }
    }
}

/// Flow pair key: (point a, flow a, point b, flow b) with (a, fa) < (b, fb).
pub(super) type EdgeKey = (usize, u32, usize, u32);

/// Flow pairs with at least [`MIN_EDGE_SCORE`] of evidence, best first: by score, then
/// matched packets, then the tuple parts the two flows share, then key. `off` holds
/// each point's clock offset.
pub(super) fn flow_pairs(points: &[PointData], off: &[i64], window: i64) -> Vec<(EdgeKey, Vote)> {
    let n = points.len();
    // Each point with itself first: which flows there are one connection turned back.
    let hairpins: Vec<(Votes, Vec<(u32, u32)>)> =
        points.par_iter().map(|p| join_hairpin(p, window)).collect();
    let shared = Shared::of(points, &hairpins);
    let pairs: Vec<(usize, usize)> = (0..n)
        .flat_map(|a| (a + 1..n).map(move |b| (a, b)))
        .collect();
    let across = pairs.par_iter().map(|&(a, b)| {
        let votes = join_across(&points[a], off[a], &points[b], off[b], window, &shared);
        keyed(a, b, votes)
    });
    let hairpin_parts = (hairpins.into_par_iter().enumerate())
        .map(|(a, (votes, _))| keyed(a, a, Votes::tally(vec![votes])));
    let mut parts: Vec<Vec<(EdgeKey, Vote)>> = hairpin_parts
        .chain(across)
        .map(|mut part| {
            part.retain(|(_, v)| v.score >= MIN_EDGE_SCORE);
            part
        })
        .collect();
    // The largest part takes the others in: no second list of every pair beside the
    // parts (48 bytes a pair, a million pairs in a capture of a million connections),
    // and the sort below, whose order is total (no two pairs share a key), moves them
    // in place.
    let mut edges = (parts.iter_mut())
        .max_by_key(|p| p.len())
        .map(std::mem::take)
        .unwrap_or_default();
    for mut part in parts {
        edges.append(&mut part);
    }
    // Of two pairs with as much evidence (copies of the same bytes from several
    // senders give it to the wrong pair as much as to the right one), the one NAT
    // changed less of the tuple first.
    let unchanged = |&(a, fa, b, fb): &EdgeKey| {
        let (x, y) = (
            &points[a].flows[fa as usize].tuple,
            &points[b].flows[fb as usize].tuple,
        );
        same_parts(x, y).max(same_parts(x, &y.reversed()))
    };
    edges.par_sort_unstable_by(|x, y| {
        y.1.score
            .total_cmp(&x.1.score)
            .then(y.1.packets.cmp(&x.1.packets))
            .then_with(|| unchanged(&y.0).cmp(&unchanged(&x.0)))
            .then(x.0.cmp(&y.0))
    });
    edges
}

/// How many of the four endpoint parts (addresses and ports) two tuples share.
fn same_parts(x: &Tuple, y: &Tuple) -> u8 {
    u8::from(x.src == y.src)
        + u8::from(x.sport == y.sport)
        + u8::from(x.dst == y.dst)
        + u8::from(x.dport == y.dport)
}

/// The matched packet pairs of two points (or of one point with itself), as cast:
/// each a vote for the pair of flows (flow at the first point, flow at the second),
/// as strong as the weaker of the two packets' fingerprints. A vote is 8 bytes: the
/// strength sits in the top two bits of the second flow's index (a point holds fewer
/// than 2^30 flows: each takes far more than 4 bytes).
#[derive(Default)]
struct Votes(Vec<(u32, u32)>);

impl Votes {
    const FLOW: u32 = (1 << 30) - 1;

    /// A vote of `strength` for flows `a` (at the first point) and `b`.
    fn cast(&mut self, a: u32, b: u32, strength: Strength) {
        debug_assert!(b <= Self::FLOW);
        self.0.push((a, b | (strength as u32) << 30));
    }

    /// Votes per flow pair, in the pairs' order, of the votes cast in `parts`. Each
    /// part is given back once counted.
    fn tally(parts: Vec<Votes>) -> Vec<((u32, u32), Vote)> {
        let flows = (parts.iter().flat_map(|p| &p.0))
            .map(|v| v.0 as usize + 1)
            .max()
            .unwrap_or(0);
        let ballot = Ballot::new(flows);
        for (a, b) in parts.into_iter().flat_map(|p| p.0) {
            ballot.cast(a, b & Self::FLOW, Strength::from_bits(b >> 30));
        }
        ballot.count()
    }
}

/// Votes counted as they are cast, from any number of cores at once: per flow pair,
/// its matched packets by strength. A flow of the first point has a slot for its first
/// partner (most flows have only one: 16 bytes a flow, however many packets match);
/// further partners, and counts past 2^32 - 1, go to a map. What is counted does not
/// depend on the order votes come in, so neither does the tally ([`Vote::of`]).
struct Ballot {
    first: Vec<Slot>,
    more: Mutex<HashMap<(u32, u32), [u64; 3]>>,
}

#[derive(Default)]
struct Slot {
    /// The first partner's flow + 1; 0 until a vote names one.
    partner: AtomicU32,
    counts: [AtomicU32; 3],
}

impl Ballot {
    /// A ballot for flows `0..flows` of the first point.
    fn new(flows: usize) -> Ballot {
        Ballot {
            first: (0..flows).map(|_| Slot::default()).collect(),
            more: Mutex::new(HashMap::default()),
        }
    }

    /// A vote of `strength` for flows `a` (at the first point) and `b`.
    fn cast(&self, a: u32, b: u32, strength: Strength) {
        let slot = &self.first[a as usize];
        let mine = b + 1;
        let partner = match slot.partner.load(Ordering::Relaxed) {
            0 => {
                match (slot.partner).compare_exchange(0, mine, Ordering::Relaxed, Ordering::Relaxed)
                {
                    Ok(_) => mine,
                    Err(other) => other,
                }
            }
            p => p,
        };
        let counted = partner == mine
            && (slot.counts[strength as usize])
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_add(1))
                .is_ok();
        if !counted {
            let mut more = self.more.lock().unwrap_or_else(|e| e.into_inner());
            more.entry((a, b)).or_default()[strength as usize] += 1;
        }
    }

    /// Votes per flow pair, in the pairs' order.
    fn count(self) -> Vec<((u32, u32), Vote)> {
        let mut more = self.more.into_inner().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<((u32, u32), Vote)> = Vec::new();
        for (a, slot) in self.first.into_iter().enumerate() {
            let Some(b) = slot.partner.into_inner().checked_sub(1) else {
                continue;
            };
            let mut counts = slot.counts.map(|c| u64::from(c.into_inner()));
            if let Some(spilled) = more.remove(&(a as u32, b)) {
                counts.iter_mut().zip(spilled).for_each(|(c, s)| *c += s);
            }
            out.push(((a as u32, b), Vote::of(counts)));
        }
        out.extend(more.into_iter().map(|(k, counts)| (k, Vote::of(counts))));
        out.sort_unstable_by_key(|(k, _)| *k);
        out
    }
}

/// Votes of points `a` and `b`'s flows, keyed by flow pair.
fn keyed(a: usize, b: usize, votes: Vec<((u32, u32), Vote)>) -> Vec<(EdgeKey, Vote)> {
    votes
        .into_iter()
        .map(|((x, y), v)| ((a, x, b, y), v))
        .collect()
}

/// The fingerprints that several flows carry at one point, other than as one
/// connection turned back there: the same bytes from several senders (over IPv6, which
/// has no IP ID). Each with how near two of its copies in different flows came at one
/// point: across points such a packet pairs only with a copy nearer than that.
#[derive(Default)]
struct Shared(HashMap<u64, i64>);

impl Shared {
    /// From every point's runs of one fingerprint, leaving out the flow pairs each
    /// point's hairpin join found turned back.
    fn of(points: &[PointData], hairpins: &[(Votes, Vec<(u32, u32)>)]) -> Shared {
        let found: Vec<Vec<(u64, i64)>> = (points.par_iter().zip(hairpins))
            .map(|(p, (_, turned))| {
                let mut out = Vec::new();
                let mut from = 0;
                while let Some(run) = p.runs.next_shared(from, p.by_fp.len()) {
                    from = run.end;
                    let recs: SmallVec<[&Rec; 8]> =
                        p.by_fp[run].iter().map(|&k| &p.recs[k as usize]).collect();
                    let near = (recs.windows(2))
                        .filter(|w| {
                            let (x, y) = (w[0].flow.min(w[1].flow), w[0].flow.max(w[1].flow));
                            x != y && turned.binary_search(&(x, y)).is_err()
                        })
                        .map(|w| w[1].ts - w[0].ts)
                        .min();
                    out.extend(near.map(|d| (recs[0].fp(), d)));
                }
                out
            })
            .collect();
        let mut shared = Shared::default();
        for (fp, d) in found.into_iter().flatten() {
            let e = shared.0.entry(fp).or_insert(d);
            *e = (*e).min(d);
        }
        shared
    }

    /// How near two copies of fingerprint `fp` in different flows came at one point,
    /// when several flows carry it.
    fn spacing(&self, fp: u64) -> Option<i64> {
        if self.0.is_empty() {
            None
        } else {
            self.0.get(&fp).copied()
        }
    }
}

/// How far apart a packet's two sightings at one point may be, whatever the window:
/// one host turned it back (or the next router, a round trip away), in microseconds to
/// a few milliseconds, and both sightings carry one clock. The window itself is as wide
/// as the clocks of different hosts may disagree; over all of it, two flows that carry
/// the same bytes (two clients' identical probes over IPv6, which has no IP ID) would
/// pair as one packet turned back.
pub(super) const HAIRPIN_WINDOW_NS: i64 = 100_000_000;

/// Hairpin: the same packet crossing one interface twice, as two flows. Within a run
/// of one fingerprint, each packet pairs with the next unpaired packet of another flow
/// within [`HAIRPIN_WINDOW_NS`] (or the window, when narrower), unless a third flow
/// carried the fingerprint near them ([`crowded`]). Two flows vote only if their pairs
/// turn back as the host turns a connection back ([`turns_back`]), and the second goes
/// elsewhere than the first (NAT changed the destination), or comes from elsewhere
/// with every packet routed between its two sightings (one less TTL): a host with one
/// interface for two networks (a cloud NAT instance, a router on a stick) sends what
/// it masquerades back out of the interface it came in by.
fn join_hairpin(p: &PointData, window: i64) -> (Votes, Vec<(u32, u32)>) {
    let window = window.min(HAIRPIN_WINDOW_NS);
    // Per pair of packets: the flows (lower first), the strength, the turn it took
    // (`Turn`), and whether the host routed it between the two sightings (one less TTL
    // or hop limit at the second).
    let mut found: Vec<(u32, u32, Strength, Turn, bool)> = Vec::new();
    let mut from = 0;
    while let Some(shared) = p.runs.next_shared(from, p.by_fp.len()) {
        from = shared.end;
        let run: Vec<&Rec> = p.by_fp[shared]
            .iter()
            .map(|&k| &p.recs[k as usize])
            .collect();
        let pairs = pair_run(&run, window);
        let crowded = crowded(&run, &pairs, window);
        for (&(x, y), _) in pairs.iter().zip(crowded).filter(|(_, c)| !c) {
            // `x` was seen first.
            let (rx, ry) = (run[x], run[y]);
            let turn = Turn {
                reply: rx.side() == Side::B,
                lower_first: rx.flow < ry.flow,
            };
            let strength = rx.strength().min(ry.strength());
            let routed = u16::from(rx.ttl()) == u16::from(ry.ttl()) + 1;
            let (lo, hi) = (rx.flow.min(ry.flow), rx.flow.max(ry.flow));
            found.push((lo, hi, strength, turn, routed));
        }
    }
    // Per flow pair: its pairs by turn (`Turn::index`), and how many were not routed.
    let mut turns: HashMap<(u32, u32), ([u32; 4], u32)> = HashMap::default();
    for &(lo, hi, _, turn, routed) in &found {
        let (by_turn, unrouted) = turns.entry((lo, hi)).or_default();
        by_turn[turn.index()] += 1;
        *unrouted += u32::from(!routed);
    }
    let turned_back = |&(lo, hi): &(u32, u32), (by_turn, unrouted): ([u32; 4], u32)| {
        let (x, y) = (&p.flows[lo as usize].tuple, &p.flows[hi as usize].tuple);
        // NAT sent it elsewhere, or a host with one interface for two networks (a NAT
        // instance, a router on a stick) routed every packet of it between its two
        // sightings and gave it another source. Seen one way only, a copy one TTL
        // lower from another source may be another sender's (injected, spoofed):
        // only its replies coming back through the host make it one connection.
        let masqueraded = unrouted == 0 && resourced(x, y);
        match turns_back(by_turn) {
            Turned::Back => redirected(x, y) || masqueraded,
            Turned::Not => false,
            Turned::OneWay => redirected(x, y) && kept_source(x, y),
        }
    };
    let mut turned: Vec<(u32, u32)> = (turns.into_iter())
        .filter(|(k, t)| turned_back(k, *t))
        .map(|(k, _)| k)
        .collect();
    turned.sort_unstable();
    let mut votes = Votes::default();
    for (lo, hi, strength, _, _) in found {
        if turned.binary_search(&(lo, hi)).is_ok() {
            votes.cast(lo, hi, strength);
        }
    }
    (votes, turned)
}

/// Which way a pair of hairpin sightings went: whether the first was a reply (as its
/// flow first saw the connection), and whether it was in the lower of the two flows.
#[derive(Clone, Copy)]
struct Turn {
    reply: bool,
    lower_first: bool,
}

impl Turn {
    fn index(self) -> usize {
        usize::from(self.reply) * 2 + usize::from(self.lower_first)
    }
}

/// What two flows' paired sightings at one point say of a turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Turned {
    /// Requests first in one flow, replies first in the other.
    Back,
    /// Not one connection turned back.
    Not,
    /// Sightings of one kind only, all first in one flow: nothing to tell.
    OneWay,
}

/// Whether two flows' paired sightings (counted by [`Turn::index`]) are one connection
/// turned back by the host. A packet crosses the interface in the flow it came by
/// before the flow NAT made of it, never after: every request is seen first in one of
/// the two flows, and every reply, when there are any, first in the other. Two flows
/// whose sightings come first now in one, now in the other, or whose requests and
/// replies both come first in the same one, are two senders of the same bytes (over
/// IPv6, which has no IP ID).
fn turns_back(t: [u32; 4]) -> Turned {
    // Per kind: which flow saw all of them first (`Some(lower)`), `None` for none of
    // that kind, and `Err` when they disagree.
    let first = |upper: u32, lower: u32| match (upper, lower) {
        (0, 0) => Ok(None),
        (0, _) => Ok(Some(true)),
        (_, 0) => Ok(Some(false)),
        _ => Err(()),
    };
    match (first(t[0], t[1]), first(t[2], t[3])) {
        (Ok(Some(a)), Ok(Some(b))) if a != b => Turned::Back,
        (Ok(Some(_)), Ok(None)) | (Ok(None), Ok(Some(_))) => Turned::OneWay,
        _ => Turned::Not,
    }
}

/// Flow `y`'s destination is not `x`'s (either way round): NAT sent it elsewhere.
fn redirected(x: &Tuple, y: &Tuple) -> bool {
    let to = |t: &Tuple| (t.dst, t.dport);
    to(x) != to(y) && to(x) != to(&y.reversed())
}

/// Flow `y`'s source address is not `x`'s (either way round): SNAT gave it another.
fn resourced(x: &Tuple, y: &Tuple) -> bool {
    x.src != y.src && x.src != y.dst
}

/// Whether flow `y` keeps the source port (or ICMP echo id) of flow `x` (either way
/// round): NAT changes it only on a collision, while two senders' sockets have ports
/// of their own (their addresses may be one, masqueraded). With sightings of one kind
/// only, the turn cannot tell two senders of the same bytes from one connection turned
/// back; this can.
fn kept_source(x: &Tuple, y: &Tuple) -> bool {
    x.sport == y.sport || x.sport == y.dport
}

/// Which of the `pairs` [`pair_run`] made of a run (by their first packet, in order)
/// are guesses: a packet that crosses one interface twice shows there in two flows,
/// the one it came in by and the one NAT made of it (and as copies in them), never in
/// a third. When packets of three flows or more carry the fingerprint within the window
/// of a pair (from a window before its first packet to two after), the fingerprint
/// names no one packet there: many clients sent the same bytes (one probe payload over
/// IPv6, which has no IP ID), and the pairing would chain their connections into one.
/// Linear: the flows in that span are counted as it slides along the run.
fn crowded(run: &[&Rec], pairs: &[(usize, usize)], window: i64) -> Vec<bool> {
    let first = run.first().map(|r| r.flow);
    let second = run.iter().map(|r| r.flow).find(|&f| Some(f) != first);
    let third = run
        .iter()
        .any(|r| Some(r.flow) != first && Some(r.flow) != second);
    if !third {
        // At most two flows in the whole run: nothing to tell apart.
        return vec![false; pairs.len()];
    }
    let mut count: HashMap<u32, u32> = HashMap::default();
    let (mut lo, mut hi) = (0, 0);
    pairs
        .iter()
        .map(|&(x, _)| {
            let t = run[x].ts;
            while hi < run.len() && run[hi].ts <= t.saturating_add(window.saturating_mul(2)) {
                *count.entry(run[hi].flow).or_default() += 1;
                hi += 1;
            }
            while lo < hi && run[lo].ts < t.saturating_sub(window) {
                let f = run[lo].flow;
                let n = count.get_mut(&f).expect("counted when it entered");
                *n -= 1;
                if *n == 0 {
                    count.remove(&f);
                }
                lo += 1;
            }
            count.len() >= 3
        })
        .collect()
}

/// Pairs the packets of one fingerprint at one point (in time order): each packet not
/// yet paired, in order, with the first later packet not yet paired that belongs to
/// another flow, if that one is within the window. Returns position pairs.
///
/// Linear but for the union-find: unpaired packets are found through links
/// (`unpaired`), and a stretch of packets of the packet's own flow is skipped in one
/// step (`next_other`), so many copies of one packet in one flow cost no scan.
fn pair_run(run: &[&Rec], window: i64) -> Vec<(usize, usize)> {
    let m = run.len();
    // First position after p that belongs to another flow than p, m when none.
    let mut next_other = vec![m as u32; m];
    for p in (0..m.saturating_sub(1)).rev() {
        next_other[p] = if run[p + 1].flow != run[p].flow {
            p as u32 + 1
        } else {
            next_other[p + 1]
        };
    }
    // First unpaired position >= p, m when none.
    let mut unpaired: Vec<u32> = (0..=m as u32).collect();
    let mut out = Vec::new();
    for x in 0..m {
        if find(&mut unpaired, x as u32) as usize != x {
            continue;
        }
        let rx = run[x];
        let mut y = find(&mut unpaired, x as u32 + 1) as usize;
        while y < m && run[y].ts - rx.ts <= window && run[y].flow == rx.flow {
            y = find(&mut unpaired, next_other[y]) as usize;
        }
        if y < m && run[y].ts - rx.ts <= window {
            unpaired[x] = x as u32 + 1;
            unpaired[y] = y as u32 + 1;
            out.push((x, y));
        }
    }
    out
}

/// Two points: walk both fingerprint orders together; within a fingerprint both runs
/// are in time order, and packets pair as [`pair_run_across`] says. Then the TCP
/// segments left over pair by the bytes they carried.
///
/// The walk is cut into ranges of fingerprints ([`PointData::fp_slices`]) walked on
/// whatever cores there are, counting votes into one [`Ballot`] as they are cast:
/// the count is the same on any number of cores, and it takes memory by flows, not by
/// matched packets. Votes per flow pair, in the pairs' order.
fn join_across(
    pa: &PointData,
    off_a: i64,
    pb: &PointData,
    off_b: i64,
    window: i64,
    shared: &Shared,
) -> Vec<((u32, u32), Vote)> {
    let (sa, sb) = (pa.fp_slices(), pb.fp_slices());
    let flags = |n: usize| (0..n).map(|_| AtomicBool::new(false)).collect::<Vec<_>>();
    let (used_a, used_b) = (flags(pa.recs.len()), flags(pb.recs.len()));
    let ballot = Ballot::new(pa.flows.len());
    (0..sa.len() - 1).into_par_iter().for_each(|k| {
        let (ra, rb) = (sa[k]..sa[k + 1], sb[k]..sb[k + 1]);
        merge_across(
            pa,
            ra,
            off_a,
            pb,
            rb,
            off_b,
            (window, shared),
            |i, j, x, y| {
                used_a[i as usize].store(true, Ordering::Relaxed);
                used_b[j as usize].store(true, Ordering::Relaxed);
                ballot.cast(x.flow, y.flow, x.strength().min(y.strength()));
            },
        )
    });
    let used = |flags: Vec<AtomicBool>| -> Vec<bool> {
        flags.into_iter().map(AtomicBool::into_inner).collect()
    };
    let (used_a, used_b) = (used(used_a), used(used_b));
    let (x, y) = (
        Recs {
            recs: &pa.recs,
            off: off_a,
            used: &used_a,
        },
        Recs {
            recs: &pb.recs,
            off: off_b,
            used: &used_b,
        },
    );
    for (i, j) in segments::overlapping(x, y, window, false) {
        let (x, y) = (&pa.recs[i], &pb.recs[j]);
        ballot.cast(x.flow, y.flow, x.strength().min(y.strength()));
    }
    ballot.count()
}

/// [`join_across`]'s walk over positions `ra` of `pa`'s fingerprint order and `rb` of
/// `pb`'s, which hold the same fingerprints: `matched` is told each pair of records it
/// finds (their indices into each point's records, and the records).
#[allow(clippy::too_many_arguments)]
fn merge_across(
    pa: &PointData,
    ra: std::ops::Range<usize>,
    off_a: i64,
    pb: &PointData,
    rb: std::ops::Range<usize>,
    off_b: i64,
    (window, shared): (i64, &Shared),
    mut matched: impl FnMut(u32, u32, &Rec, &Rec),
) {
    let (fa, fb) = (&pa.by_fp[..ra.end], &pb.by_fp[..rb.end]);
    let (mut i, mut j) = (ra.start, rb.start);
    while i < fa.len() && j < fb.len() {
        pa.prefetch_fp_order(i + PREFETCH_AHEAD);
        pb.prefetch_fp_order(j + PREFETCH_AHEAD);
        let ra = &pa.recs[fa[i] as usize];
        let rb = &pb.recs[fb[j] as usize];
        if ra.fp() != rb.fp() {
            if ra.fp() < rb.fp() {
                i += 1;
            } else {
                j += 1;
            }
            continue;
        }
        let (ea, eb) = (pa.run_end(i), pb.run_end(j));
        let spacing = shared.spacing(ra.fp());
        if ea - i == 1 && eb - j == 1 {
            // Once at each point, as nearly every packet is.
            let d = ((rb.ts - off_b) - (ra.ts - off_a)).abs();
            if d <= window && spacing.is_none_or(|sp| clear(d, sp)) {
                matched(fa[i], fb[j], ra, rb);
            }
        } else {
            fn at<'p>(p: &'p PointData, f: &[u32], k: usize) -> &'p Rec {
                &p.recs[f[k] as usize]
            }
            let times = |p: &PointData, f: &[u32], off: i64, r: std::ops::Range<usize>| {
                r.map(|k| at(p, f, k).ts - off)
                    .collect::<SmallVec<[i64; 8]>>()
            };
            let one_flow = |p: &PointData, f: &[u32], r: std::ops::Range<usize>| {
                let first = at(p, f, r.start).flow;
                r.clone().all(|k| at(p, f, k).flow == first)
            };
            let (ta, tb) = (times(pa, fa, off_a, i..ea), times(pb, fb, off_b, j..eb));
            let (one_a, one_b) = (one_flow(pa, fa, i..ea), one_flow(pb, fb, j..eb));
            let how = match (one_a, one_b, spacing) {
                (true, true, None) => Across::InOrder,
                // Several flows of one connection turned back at a point: its copies.
                (_, _, None) => Across::ClearThenInOrder(i64::MAX),
                (false, false, Some(sp)) => Across::ClearThenInOrder(sp),
                (_, _, Some(sp)) => Across::Clear(sp),
            };
            for (x, y) in pair_run_across(&ta, &tb, window, how) {
                let (x, y) = (fa[i + x], fb[j + y]);
                matched(x, y, &pa.recs[x as usize], &pb.recs[y as usize]);
            }
        }
        i = ea;
        j = eb;
    }
}

/// How [`pair_run_across`] pairs a run of one fingerprint.
#[derive(Clone, Copy, Debug)]
enum Across {
    /// One flow carries it at each point, and no point saw it in several: in order.
    InOrder,
    /// One flow carries it at one point at least, but some point saw copies of it in
    /// several flows, this near (ns): only packets clearly each other's nearest pair.
    /// In order would pair a sender's copy with another sender's wherever one point
    /// saw only some of them.
    Clear(i64),
    /// Several flows carry it at both points (copies in different flows at any point
    /// this near), or at one point as one connection turned back there: clear nearest
    /// packets first, then the rest in order, as both points saw the copies go by.
    ClearThenInOrder(i64),
}

/// Whether a pair `d` apart is clear of other copies at least `other` away: four times
/// nearer. Copies at one instant (`other` 0) leave nothing clear.
fn clear(d: i64, other: i64) -> bool {
    other > 0 && d.saturating_mul(4) <= other
}

/// Pairs the packets of one fingerprint at two points, `a` and `b` (their corrected
/// times, each in order), within the window, as `how` says; returns position pairs.
/// In order: each packet not yet paired with the first of the other point's within
/// the window. Clear: packets that are each other's nearest, with no other packet of
/// the other point, and no copy in another flow at any point, within four times that
/// distance. Where a fingerprint is the same bytes from several senders (over IPv6,
/// which has no IP ID) and a point saw only some of them, in order alone would pair a
/// packet whose own partner was not captured there with another sender's.
/// Linear: each packet's nearest and second nearest come from one merge of the two.
fn pair_run_across(a: &[i64], b: &[i64], window: i64, how: Across) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let (mut used_a, mut used_b) = (vec![false; a.len()], vec![false; b.len()]);
    if let Across::Clear(spacing) | Across::ClearThenInOrder(spacing) = how {
        let (na, nb) = (nearest_two(a, b), nearest_two(b, a));
        for (x, &(y, d, second)) in na.iter().enumerate() {
            let Some(y) = y else { continue };
            let other = second.min(nb[y].2).min(spacing);
            if nb[y].0 == Some(x) && d <= window && clear(d, other) {
                out.push((x, y));
                (used_a[x], used_b[y]) = (true, true);
            }
        }
    }
    if let Across::Clear(_) = how {
        return out;
    }
    let (mut x, mut y) = (0, 0);
    while x < a.len() && y < b.len() {
        if used_a[x] {
            x += 1;
            continue;
        }
        if used_b[y] {
            y += 1;
            continue;
        }
        let d = b[y] - a[x];
        if d.abs() <= window {
            out.push((x, y));
            x += 1;
            y += 1;
        } else if d < 0 {
            y += 1;
        } else {
            x += 1;
        }
    }
    out
}

/// For each time of `a`, its nearest in `b` (the earlier of two as near), how far, and
/// how far the next nearest is (`i64::MAX` without one). Both in order.
fn nearest_two(a: &[i64], b: &[i64]) -> Vec<(Option<usize>, i64, i64)> {
    let mut p = 0;
    a.iter()
        .map(|&t| {
            while p < b.len() && b[p] < t {
                p += 1;
            }
            // The nearest two lie among the two before `t` and the two from it on.
            let mut near: SmallVec<[(i64, usize); 4]> = (p.saturating_sub(2)..(p + 2).min(b.len()))
                .map(|k| ((b[k] - t).abs(), k))
                .collect();
            near.sort_unstable();
            let first = near.first().map(|&(d, k)| (Some(k), d));
            let (k, d) = first.unwrap_or((None, i64::MAX));
            (k, d, near.get(1).map_or(i64::MAX, |&(d, _)| d))
        })
        .collect()
}

/// Pairs the packets of two flows: for each record of `up`, the nearest unused record
/// of `down` with the same fingerprint within the window (the earliest of equally near
/// ones). Returns index pairs, in `up` order. At one point (`same_point`) a packet can
/// only pair with one seen at the same time or later. `down` must be in time order.
pub(super) fn match_flows(
    up: &[Rec],
    up_off: i64,
    down: &[Rec],
    down_off: i64,
    window: i64,
    same_point: bool,
) -> Vec<(usize, usize)> {
    debug_assert!(down.windows(2).all(|w| w[0].ts <= w[1].ts));
    // At one point both offsets are the point's: later means at distance 0 or more.
    debug_assert!(!same_point || up_off == down_off);
    let mut out = Vec::with_capacity(up.len().min(down.len()));
    if let Some(index) = FpIndex::of(down) {
        // Each fingerprint once in `down` (most flows): a packet's only candidate is
        // taken if unused and near enough, which is what the general way below comes
        // to for a run of one.
        let mut taken: SmallVec<[bool; 64]> = smallvec![false; down.len()];
        for (k, r) in up.iter().enumerate() {
            let Some(j) = index.get(down, r.fp()) else {
                continue;
            };
            // Its distance in corrected time: at one point, only later counts.
            let d = down[j].ts - down_off - (r.ts - up_off);
            let near = if d < 0 {
                !same_point && -d <= window
            } else {
                d <= window
            };
            if near && !taken[j] {
                taken[j] = true;
                out.push((k, j));
            }
        }
        return out;
    }
    // `down` by fingerprint, each fingerprint's records in time order (a record's
    // index is its place in time).
    let mut order: Vec<(u64, u32)> = (down.iter().enumerate())
        .map(|(k, r)| (r.fp(), k as u32))
        .collect();
    order.sort_unstable();
    let mut unused = Unused::new(order.len());
    for (k, r) in up.iter().enumerate() {
        let start = order.partition_point(|&(fp, _)| fp < r.fp());
        let len = order[start..].partition_point(|&(fp, _)| fp == r.fp());
        if len == 0 {
            continue;
        }
        let t = r.ts - up_off;
        // Distance of a candidate from this packet, signed, in corrected time.
        let dist = |c: &(u64, u32)| down[c.1 as usize].ts - down_off - t;
        let cands = &order[start..start + len];
        if let Some(pos) = unused.nearest(start, cands, dist, same_point, window) {
            out.push((k, order[pos].1 as usize));
        }
    }
    out
}

/// [`match_flows`], plus the TCP segments left over that carried bytes of one
/// transmission cut differently (several pairs per segment where the cuts differ).
/// Index pairs, sorted.
pub(super) fn match_all(
    up: &[Rec],
    up_off: i64,
    down: &[Rec],
    down_off: i64,
    window: i64,
    same_point: bool,
) -> Vec<(usize, usize)> {
    let mut pairs = match_flows(up, up_off, down, down_off, window, same_point);
    let mut used_u: SmallVec<[bool; 64]> = smallvec![false; up.len()];
    let mut used_d: SmallVec<[bool; 64]> = smallvec![false; down.len()];
    for &(a, b) in &pairs {
        used_u[a] = true;
        used_d[b] = true;
    }
    let (x, y) = (
        Recs {
            recs: up,
            off: up_off,
            used: &used_u,
        },
        Recs {
            recs: down,
            off: down_off,
            used: &used_d,
        },
    );
    pairs.extend(segments::overlapping(x, y, window, same_point));
    pairs.sort_unstable();
    pairs
}

/// The records of a flow by fingerprint, when no two share one: open addressing
/// over the fingerprint's low bits (hashes already), at most half full. A record
/// lies at most [`FpIndex::PROBES`] slots from where its fingerprint starts looking,
/// or there is no index (crafted fingerprints that crowd a few slots), so neither
/// making nor asking costs more than that many steps a record.
struct FpIndex {
    /// Record indices, `u32::MAX` where empty.
    slots: SmallVec<[u32; 128]>,
}

impl FpIndex {
    const PROBES: usize = 32;
    const EMPTY: u32 = u32::MAX;

    fn of(recs: &[Rec]) -> Option<FpIndex> {
        let mut slots = smallvec![Self::EMPTY; (2 * recs.len()).next_power_of_two().max(2)];
        let mask = slots.len() - 1;
        for (k, r) in recs.iter().enumerate() {
            let mut at = r.fp() as usize & mask;
            let mut probes = 0;
            while slots[at] != Self::EMPTY {
                probes += 1;
                if recs[slots[at] as usize].fp() == r.fp() || probes == Self::PROBES {
                    return None;
                }
                at = (at + 1) & mask;
            }
            slots[at] = k as u32;
        }
        Some(FpIndex { slots })
    }

    /// The index of the record of `recs` (those the index was made of) with
    /// fingerprint `fp`.
    fn get(&self, recs: &[Rec], fp: u64) -> Option<usize> {
        let mask = self.slots.len() - 1;
        let mut at = fp as usize & mask;
        for _ in 0..Self::PROBES {
            let k = self.slots[at];
            if k == Self::EMPTY {
                return None;
            }
            if recs[k as usize].fp() == fp {
                return Some(k as usize);
            }
            at = (at + 1) & mask;
        }
        None
    }
}

/// Which positions of a sequence are still unused, as union-find links with path
/// halving: from any position, the nearest unused one at or after it, and before it.
struct Unused {
    /// Nearest unused position >= i, the sequence's length when none.
    right: Vec<u32>,
    /// One past the nearest unused position < i, 0 when none.
    left: Vec<u32>,
}

impl Unused {
    fn new(n: usize) -> Unused {
        Unused {
            right: (0..=n as u32).collect(),
            left: (0..=n as u32).collect(),
        }
    }

    /// Takes the unused candidate nearest to distance 0 if it is within `window` (of
    /// equally near ones, the earliest), or none, and returns its position;
    /// `later_only`: only candidates at distance 0 or more count. `cands` are the
    /// positions from `start` on, `dist` signed and non-decreasing along them.
    fn nearest<T>(
        &mut self,
        start: usize,
        cands: &[T],
        dist: impl Fn(&T) -> i64,
        later_only: bool,
        window: i64,
    ) -> Option<usize> {
        let end = start + cands.len();
        // First position at distance >= 0.
        let split = start + cands.partition_point(|c| dist(c) < 0);
        let mut best: Option<(i64, usize)> = None;
        if !later_only {
            let before = find(&mut self.left, split as u32) as usize;
            if before > start {
                // The earliest unused candidate at the distance of the nearest one.
                let d = dist(&cands[before - 1 - start]);
                let first = start + cands.partition_point(|c| dist(c) < d);
                let pos = find(&mut self.right, first as u32) as usize;
                best = Some((-d, pos));
            }
        }
        let after = find(&mut self.right, split as u32) as usize;
        if after < end {
            let d = dist(&cands[after - start]);
            if best.is_none_or(|(bd, _)| d < bd) {
                best = Some((d, after));
            }
        }
        let (_, pos) = best.filter(|&(d, _)| d <= window)?;
        self.right[pos] = pos as u32 + 1;
        self.left[pos + 1] = pos as u32;
        Some(pos)
    }
}

/// Follows the links from `x` to a position that links to itself, halving the path.
fn find(links: &mut [u32], mut x: u32) -> u32 {
    while links[x as usize] != x {
        let next = links[x as usize];
        links[x as usize] = links[next as usize];
        x = next;
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::correlate::fingerprint::Strength;
    use crate::correlate::testkit::{
        datagram, flow_of, point, rec, tcp_conv, udp, view, XorShift, MS, US,
    };

    /// [`merge_across`] over positions `ra` of `a` and `rb` of `b` (`b`'s clock `off_b`
    /// ahead), a second's window, nothing shared elsewhere: the pairs it finds, as
    /// (record at `a`, record at `b`, flow at `a`, flow at `b`).
    fn walk(
        a: &PointData,
        ra: std::ops::Range<usize>,
        b: &PointData,
        rb: std::ops::Range<usize>,
        off_b: i64,
    ) -> Vec<(u32, u32, u32, u32)> {
        let mut out = Vec::new();
        let shared = Shared::default();
        merge_across(a, ra, 0, b, rb, off_b, (SECOND, &shared), |i, j, x, y| {
            out.push((i, j, x.flow, y.flow));
        });
        out
    }

    const SECOND: i64 = 1_000 * MS;

    #[test]
    fn flow_pairs_pair_flows_by_fingerprint_within_the_window() {
        let x = tcp_conv(0, "172.17.0.2:40000", "198.51.100.7:443", 1000);
        let y = tcp_conv(2 * MS, "172.17.0.3:50000", "198.51.100.8:80", 2000);
        // The same bytes as x, three seconds later, from another host outside.
        let z = tcp_conv(3 * SECOND, "192.0.2.9:40000", "198.51.100.7:443", 1000);
        let inside = [x.clone(), y.clone()].concat();
        let outside = [
            view(&x, "203.0.113.1:40000", "198.51.100.7:443", 30 * US, 1),
            view(&y, "203.0.113.1:50000", "198.51.100.8:80", 30 * US, 1),
            z,
        ]
        .concat();
        let points = [point("docker0", 0, &inside), point("eth0", 1, &outside)];
        let pairs = flow_pairs(&points, &[0, 0], SECOND);
        let (ix, iy) = (
            flow_of(&points[0], "172.17.0.2:40000", "198.51.100.7:443"),
            flow_of(&points[0], "172.17.0.3:50000", "198.51.100.8:80"),
        );
        let (ox, oy) = (
            flow_of(&points[1], "203.0.113.1:40000", "198.51.100.7:443"),
            flow_of(&points[1], "203.0.113.1:50000", "198.51.100.8:80"),
        );
        let keys: Vec<EdgeKey> = pairs.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, [(0, ix, 1, ox), (0, iy, 1, oy)]);
        let v = pairs[0].1;
        assert_eq!(v.packets, 6);
        let expected = 1.0 - (1.0f64 - Strength::Strong.weight()).powi(6);
        assert!((v.score - expected).abs() < 1e-12, "{v:?}");

        // Outside the window nothing pairs; with the outside clock 3 s ahead, z pairs.
        assert!(flow_pairs(&points, &[0, 0], 10 * US).is_empty());
        let pairs = flow_pairs(&points, &[0, 3 * SECOND], SECOND);
        let oz = flow_of(&points[1], "192.0.2.9:40000", "198.51.100.7:443");
        let keys: Vec<EdgeKey> = pairs.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, [(0, ix, 1, oz)]);
    }

    #[test]
    fn one_probe_from_many_clients_pairs_each_with_its_own_translation() {
        // Twenty clients send the same datagram (IPv6 has no IP ID: the payload is the
        // whole fingerprint) 50 µs apart, masqueraded 20 µs later. Each pairs with its
        // own translation; no two clients at one point pair as a hairpin would.
        let (mut inside, mut outside) = (Vec::new(), Vec::new());
        for i in 0..20 {
            let t = i * 50 * US;
            let client = format!("[2001:db8:1::{:x}]:{}", i + 1, 40_000 + i);
            let nat = format!("[2001:db8:ff::1]:{}", 1_024 + i);
            inside.push(udp(t, &client, "[2001:db8:2::1]:53", None, 7));
            outside.push(udp(t + 20 * US, &nat, "[2001:db8:2::1]:53", None, 7));
        }
        let points = [point("a", 0, &inside), point("b", 1, &outside)];
        let mut keys: Vec<EdgeKey> = flow_pairs(&points, &[0, 0], SECOND)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        keys.sort_unstable();
        let want: Vec<EdgeKey> = (0..20)
            .map(|i| {
                let client = format!("[2001:db8:1::{:x}]:{}", i + 1, 40_000 + i);
                let nat = format!("[2001:db8:ff::1]:{}", 1_024 + i);
                let a = flow_of(&points[0], &client, "[2001:db8:2::1]:53");
                let b = flow_of(&points[1], &nat, "[2001:db8:2::1]:53");
                (0, a, 1, b)
            })
            .collect();
        assert_eq!(keys, want);
    }

    #[test]
    fn votes_are_tallied_per_flow_pair_whatever_their_order() {
        use Strength::{Medium, Strong, Weak};
        // Cast in two parts, as two ranges of the join cast them; the largest flow
        // index a vote holds among them.
        let last = Votes::FLOW;
        let parts = [
            [
                (1, 5, Strong),
                (0, 3, Weak),
                (1, 6, Medium),
                (2, last, Strong),
            ],
            [
                (1, 5, Weak),
                (0, 3, Strong),
                (1, 6, Weak),
                (2, last, Medium),
            ],
        ];
        let votes = (parts.iter())
            .map(|part| {
                let mut v = Votes::default();
                part.iter().for_each(|&(a, b, s)| v.cast(a, b, s));
                v
            })
            .collect();
        // Weak, medium, strong.
        let of = |n: [u64; 3]| Vote::of(n);
        let want = [
            ((0, 3), of([1, 0, 1])),
            ((1, 5), of([1, 0, 1])),
            ((1, 6), of([1, 1, 0])),
            ((2, last), of([0, 1, 1])),
        ];
        assert_eq!(Votes::tally(votes), want);
        assert_eq!(of([1, 0, 1]).packets, 2);
        let expected = 1.0 - (1.0 - 0.3) * (1.0 - 0.95);
        assert!((of([1, 0, 1]).score - expected).abs() < 1e-12);
        // The same votes cast all at once into one ballot, in reverse.
        let ballot = Ballot::new(3);
        for &(a, b, st) in parts.iter().flatten().rev() {
            ballot.cast(a, b, st);
        }
        assert_eq!(ballot.count(), want);
        // A million packets of one strength say no more than certainty.
        assert_eq!(of([0, 0, 1_000_000]).score, 1.0);
    }

    #[test]
    fn a_ballot_counts_the_same_on_any_number_of_cores() {
        // Flows with one partner, with two, and votes in a scrambled order cast from
        // many tasks at once.
        let votes: Vec<(u32, u32, Strength)> = (0..20_000u32)
            .map(|i| {
                let x = i.wrapping_mul(2_654_435_761);
                let strength = Strength::from_bits(x >> 7);
                let a = x % 97;
                let b = if a % 3 == 0 { a + (x >> 20) % 2 } else { a };
                (a, b, strength)
            })
            .collect();
        let one = Ballot::new(97);
        votes.iter().for_each(|&(a, b, s)| one.cast(a, b, s));
        let many = Ballot::new(97);
        votes.par_chunks(7).for_each(|c| {
            c.iter().rev().for_each(|&(a, b, s)| many.cast(a, b, s));
        });
        let (one, many) = (one.count(), many.count());
        assert_eq!(one, many);
        assert!(one.iter().any(|((a, b), _)| a != b), "a second partner");
        let total: u64 = one.iter().map(|(_, v)| v.packets).sum();
        assert_eq!(total, votes.len() as u64);
    }

    #[test]
    fn a_count_past_32_bits_goes_on_in_the_map() {
        let ballot = Ballot::new(1);
        ballot.cast(0, 4, Strength::Strong);
        ballot.first[0].counts[Strength::Strong as usize].store(u32::MAX, Ordering::Relaxed);
        ballot.cast(0, 4, Strength::Strong);
        ballot.cast(0, 4, Strength::Weak);
        let counted = ballot.count();
        assert_eq!(counted.len(), 1);
        assert_eq!(counted[0].1.packets, u64::from(u32::MAX) + 2);
    }

    #[test]
    fn the_walk_in_slices_finds_the_pairs_of_one_walk() {
        // Sixty connections, their packets' fingerprints in every range of the space,
        // the outside clock 2 ms ahead and forwarding 30 µs.
        let (mut inside, mut outside) = (Vec::new(), Vec::new());
        for k in 0..60u16 {
            let src = format!("172.17.0.2:{}", 40000 + k);
            let conv = tcp_conv(
                i64::from(k) * MS,
                &src,
                "198.51.100.7:443",
                1000 + u32::from(k),
            );
            let nat = format!("203.0.113.1:{}", 40000 + k);
            outside.extend(view(&conv, &nat, "198.51.100.7:443", 2 * MS + 30 * US, 1));
            inside.extend(conv);
        }
        inside.sort_by_key(|p| p.ts_ns);
        outside.sort_by_key(|p| p.ts_ns);
        let (a, b) = (point("a", 0, &inside), point("b", 1, &outside));
        let (sa, sb) = (a.fp_slices(), b.fp_slices());
        assert!(sa.windows(2).filter(|w| w[1] > w[0]).count() > 8, "{sa:?}");
        let sliced: Vec<_> = (0..sa.len() - 1)
            .flat_map(|k| walk(&a, sa[k]..sa[k + 1], &b, sb[k]..sb[k + 1], 2 * MS))
            .collect();
        let whole = walk(&a, 0..a.by_fp.len(), &b, 0..b.by_fp.len(), 2 * MS);
        assert_eq!(sliced, whole);
        assert_eq!(whole.len(), inside.len());
    }

    #[test]
    fn flow_pairs_need_enough_evidence() {
        // One UDP packet without IPv4 ID and a short payload is weak evidence.
        let mut weak = udp(0, "10.0.0.2:5353", "10.0.0.9:5353", None, 7);
        weak.payload_len = 8;
        let mut later = weak;
        later.tuple.src = "10.0.1.2".parse().unwrap();
        later.ts_ns += 40 * US;
        let points = [point("a", 0, &[weak]), point("b", 1, &[later])];
        assert!(flow_pairs(&points, &[0, 0], SECOND).is_empty());
        let medium = udp(0, "10.0.0.2:5353", "10.0.0.9:5353", Some(9), 7);
        let mut after = medium;
        after.tuple.src = "10.0.1.2".parse().unwrap();
        let points = [point("a", 0, &[medium]), point("b", 1, &[after])];
        assert_eq!(flow_pairs(&points, &[0, 0], SECOND).len(), 1);
    }

    #[test]
    fn hairpin_pairs_two_flows_at_one_point() {
        // One interface sees the packets to the published port and again after DNAT.
        let before = tcp_conv(0, "172.17.0.2:40000", "203.0.113.1:8080", 1000);
        let after = view(&before, "172.17.0.1:40000", "172.17.0.3:80", 20 * US, 0);
        let mut all = [before, after].concat();
        all.sort_by_key(|p| p.ts_ns);
        let points = [point("docker0", 0, &all)];
        let pairs = flow_pairs(&points, &[0], SECOND);
        let keys: Vec<EdgeKey> = pairs.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, [(0, 0, 0, 1)]);
        assert_eq!(pairs[0].1.packets, 6);
    }

    #[test]
    fn a_hairpin_is_turned_back_within_the_host_not_the_window() {
        // Two containers send the same bytes over IPv6 (no IP ID), 300 ms apart: two
        // flows at one point, not one packet seen twice, though within the window.
        let one = |ts, src| datagram(ts, src, "[2001:db8:113::2]:9999", 400, 7);
        let c1 = one(0, "[fd00:172:17::2]:40000");
        let c2 = one(300 * MS, "[fd00:172:17::3]:40001");
        let points = [point("eth0", 0, &[c1, c2])];
        assert!(flow_pairs(&points, &[0], SECOND).is_empty());
        // The same packet again 30 µs later, after DNAT to a container, is one.
        let mut turned = one(30 * US, "[fd00:172:17::2]:40000");
        turned.tuple.dst = "fd00:172:17::3".parse().unwrap();
        turned.tuple.dport = 53;
        let points = [point("docker0", 0, &[c1, turned])];
        assert_eq!(flow_pairs(&points, &[0], SECOND).len(), 1);
    }

    #[test]
    fn a_host_with_one_interface_turns_back_what_it_masquerades() {
        // A NAT instance: the client's packets, then the same masqueraded to the same
        // server out of the same interface, one TTL lower each time the host routed
        // them (the requests on their way out, the replies on their way back).
        let mut before = tcp_conv(0, "192.0.2.2:40000", "198.51.100.7:443", 1000);
        let after = view(&before, "203.0.113.1:40000", "198.51.100.7:443", 20 * US, 1);
        let client = before[0].tuple.src;
        let at_one_point = |before: &[crate::model::Packet]| {
            let mut all = [before, &after[..]].concat();
            all.sort_by_key(|p| p.ts_ns);
            flow_pairs(&[point("eth0", 0, &all)], &[0], SECOND)
        };
        let replies = |b: &mut [crate::model::Packet], by: i16| {
            for p in b.iter_mut().filter(|p| p.tuple.src != client) {
                p.ttl = (i16::from(p.ttl) + by) as u8;
            }
        };
        replies(&mut before, -1);
        let pairs = at_one_point(&before);
        assert_eq!(pairs.len(), 1);
        assert_eq!(pairs[0].1.packets, 6);
        // The requests alone (no reply came back through the host): nothing tells
        // them from another sender's copies.
        let server = before[0].tuple.dst;
        let mut requests: Vec<_> = (before.iter().chain(&after).copied())
            .filter(|p| p.tuple.dst == server)
            .collect();
        requests.sort_by_key(|p| p.ts_ns);
        assert_eq!(requests.len(), 8);
        assert!(flow_pairs(&[point("eth0", 0, &requests)], &[0], SECOND).is_empty());
        // The replies not routed between their sightings: two senders of the same
        // bytes, not one connection.
        replies(&mut before, 1);
        assert!(at_one_point(&before).is_empty());
    }

    #[test]
    fn the_join_pairs_the_nearer_of_two_flows_where_one_partner_is_missing() {
        // docker0 saw both containers' identical datagrams; c2's link saw only c2's,
        // 394 ms after c1's: c2's pairs, c1's stays alone, whichever point comes first.
        let one = |ts, src| datagram(ts, src, "[2001:db8:113::2]:9999", 3000, 7);
        let c1 = one(0, "[fd00:172:17::2]:40000");
        let c2 = one(394 * MS, "[fd00:172:17::3]:40001");
        let at_link = one(394 * MS + 2 * US, "[fd00:172:17::3]:40001");
        let bridge = point("docker0", 0, &[c1, c2]);
        let link = point("veth-c2", 1, &[at_link]);
        let flows = |a: &PointData, b: &PointData| -> Vec<(u32, u32)> {
            (walk(a, 0..a.by_fp.len(), b, 0..b.by_fp.len(), 0).into_iter())
                .map(|(_, _, x, y)| (x, y))
                .collect()
        };
        assert_eq!(flows(&bridge, &link), [(1, 0)]);
        assert_eq!(flows(&link, &bridge), [(0, 1)]);
        // Both partners captured: in order, as many pairs as there are.
        let at_link_c1 = one(2 * US, "[fd00:172:17::2]:40000");
        let link = point("veth", 1, &[at_link_c1, at_link]);
        assert_eq!(flows(&bridge, &link), [(0, 0), (1, 1)]);
    }

    #[test]
    fn a_run_across_pairs_clear_nearest_packets_first_then_in_order() {
        use Across::*;
        // One flow a side: in order, the first within the window.
        assert_eq!(
            pair_run_across(&[0, 1000], &[1003], 5000, InOrder),
            [(0, 0)]
        );
        // Several flows: the packet whose partner was not captured stays alone.
        let several = ClearThenInOrder(1000);
        assert_eq!(
            pair_run_across(&[0, 1000], &[1003], 5000, several),
            [(1, 0)]
        );
        assert_eq!(
            pair_run_across(&[1003], &[0, 1000], 5000, several),
            [(0, 1)]
        );
        // Copies nearer each other than the latency: nothing clear, in order.
        assert_eq!(
            pair_run_across(&[0, 10], &[30, 40], 5000, ClearThenInOrder(10)),
            [(0, 0), (1, 1)]
        );
        // One copy a side of bytes another point saw from two senders 1000 apart:
        // only a pair far nearer than that.
        assert_eq!(pair_run_across(&[0], &[3], 5000, Clear(1000)), [(0, 0)]);
        assert!(pair_run_across(&[0], &[900], 5000, Clear(1000)).is_empty());
        // Never beyond the window.
        assert!(pair_run_across(&[0], &[6000], 5000, several).is_empty());
    }

    #[test]
    fn copies_from_two_senders_seen_apart_do_not_pair_across_their_links() {
        // Two containers send the same probe over IPv6 60 µs apart: the bridge sees
        // both (in two flows), each container's link its own. The links' copies are
        // 60 µs apart too, no nearer than the senders' copies are to each other: they
        // are not one packet. Each link pairs with the bridge's flow of its sender.
        let probe = |ts, src| datagram(ts, src, "[2001:db8:113::2]:9999", 64, 7);
        let (c1, c2) = ("[fd00:172:17::2]:40000", "[fd00:172:17::3]:40001");
        let bridge = point("docker0", 0, &[probe(2 * US, c2), probe(62 * US, c1)]);
        let link1 = point("veth-c1", 0, &[probe(60 * US, c1)]);
        let link2 = point("veth-c2", 0, &[probe(0, c2)]);
        let points = [bridge, link1, link2];
        let keys: Vec<EdgeKey> = (flow_pairs(&points, &[0, 0, 0], SECOND).iter())
            .map(|(k, _)| *k)
            .collect();
        let (c2_at_bridge, c1_at_bridge) = (0, 1);
        assert_eq!(keys.len(), 2, "{keys:?}");
        assert!(keys.contains(&(0, c1_at_bridge, 1, 0)), "{keys:?}");
        assert!(keys.contains(&(0, c2_at_bridge, 2, 0)), "{keys:?}");
    }

    #[test]
    fn a_point_that_saw_one_sender_pairs_no_guess_with_one_that_saw_both() {
        // Two containers' copies cross the bridge at one instant and leave eth0 90 µs
        // apart; c2's link saw c2's only. Which of eth0's copies is c2's, time cannot
        // tell: no vote from c2's link to either, where in order would have named c1's.
        let probe = |ts, src| datagram(ts, src, "[2001:db8:113::2]:8125", 20, 9);
        let (c1, c2) = ("[fd00:172:17::2]:40000", "[fd00:172:17::3]:40001");
        let (m1, m2) = ("[2001:db8:113::1]:40000", "[2001:db8:113::1]:40001");
        let points = [
            point("docker0", 0, &[probe(0, c1), probe(0, c2)]),
            point("eth0", 0, &[probe(90 * US, m1), probe(180 * US, m2)]),
            point("veth-c2", 0, &[probe(0, c2)]),
        ];
        let pairs = flow_pairs(&points, &[0, 0, 0], SECOND);
        assert!(
            pairs.iter().all(|((a, _, b, _), _)| (*a, *b) != (1, 2)),
            "{pairs:?}"
        );
    }

    #[test]
    fn hairpin_sightings_turn_back_or_are_two_senders() {
        // Requests first in one flow and replies first in the other: turned back.
        let t = |request_lower, request_upper, reply_lower, reply_upper| {
            let mut c = [0; 4];
            c[Turn {
                reply: false,
                lower_first: true,
            }
            .index()] = request_lower;
            c[Turn {
                reply: false,
                lower_first: false,
            }
            .index()] = request_upper;
            c[Turn {
                reply: true,
                lower_first: true,
            }
            .index()] = reply_lower;
            c[Turn {
                reply: true,
                lower_first: false,
            }
            .index()] = reply_upper;
            c
        };
        assert_eq!(turns_back(t(3, 0, 0, 3)), Turned::Back);
        assert_eq!(turns_back(t(0, 2, 2, 0)), Turned::Back);
        // Both first in the same flow, or now one first, now the other: two senders of
        // the same bytes.
        assert_eq!(turns_back(t(3, 0, 3, 0)), Turned::Not);
        assert_eq!(turns_back(t(4, 1, 0, 3)), Turned::Not);
        assert_eq!(turns_back(t(2, 2, 0, 0)), Turned::Not);
        // One kind only: nothing to tell from the turn.
        assert_eq!(turns_back(t(5, 0, 0, 0)), Turned::OneWay);
        assert_eq!(turns_back(t(0, 0, 0, 2)), Turned::OneWay);
        // Requests only, masqueraded to one address, to two servers: the ports tell
        // two senders; a hairpin keeps its port.
        let (m1, m2) = ("[2001:db8:113::1]:40000", "[2001:db8:113::1]:40001");
        let one_way = [
            datagram(0, m1, "[2001:db8:113::2]:8125", 20, 9),
            datagram(30 * US, m2, "[2001:db8:100::10]:8125", 20, 9),
        ];
        assert!(flow_pairs(&[point("eth0", 0, &one_way)], &[0], SECOND).is_empty());
        let turned = datagram(
            30 * US,
            "[2001:db8:113::1]:40000",
            "[fd00:172:17::3]:8125",
            20,
            9,
        );
        let hairpin = [one_way[0], turned];
        assert_eq!(
            flow_pairs(&[point("eth0", 0, &hairpin)], &[0], SECOND).len(),
            1
        );
        // Two containers' identical probes and answers over IPv6, 1 ms apart, at one
        // point: no hairpin.
        let probe = |ts, src, dst| datagram(ts, src, dst, 38, 7);
        let answer = |ts, src, dst| datagram(ts, src, dst, 43, 8);
        let (c1, c2) = ("[fd00:172:17::2]:40000", "[fd00:172:17::3]:40001");
        let (s1, s2) = ("[2001:db8:113::2]:9999", "[2001:db8:100::10]:9999");
        let packets = [
            probe(0, c2, s2),
            answer(400 * US, s2, c2),
            probe(MS, c1, s1),
            answer(MS + 400 * US, s1, c1),
        ];
        assert!(flow_pairs(&[point("docker0", 0, &packets)], &[0], SECOND).is_empty());
    }

    #[test]
    fn match_flows_takes_the_nearest_unused_packet_in_the_window() {
        let down = [rec(1, 50), rec(2, 100), rec(1, 140), rec(1, 160)];
        // Nearest first, then the next nearest once it is used; never beyond the window.
        let up = [
            rec(1, 100),
            rec(1, 100),
            rec(1, 100),
            rec(1, 100),
            rec(3, 100),
        ];
        assert_eq!(
            match_flows(&up, 0, &down, 0, 60, false),
            [(0, 2), (1, 0), (2, 3)]
        );
        assert_eq!(match_flows(&up, 0, &down, 0, 45, false), [(0, 2)]);
        // Equally near: the earlier one. Offsets shift the down side's clock.
        let down = [rec(1, 60), rec(1, 140)];
        assert_eq!(
            match_flows(&[rec(1, 100)], 0, &down, 0, 100, false),
            [(0, 0)]
        );
        assert_eq!(
            match_flows(&[rec(1, 100)], 0, &down, 30, 100, false),
            [(0, 1)]
        );
        // At one point, only a later (or simultaneous) packet is the same packet again.
        assert_eq!(
            match_flows(&[rec(1, 100)], 0, &down, 0, 100, true),
            [(0, 1)]
        );
        assert_eq!(
            match_flows(&[rec(1, 140)], 0, &down, 0, 100, true),
            [(0, 1)]
        );
        assert!(match_flows(&[rec(1, 141)], 0, &down, 0, 100, true).is_empty());
    }

    /// The definition: for each `up` record, the nearest unused `down` record with its
    /// fingerprint, by distance then index, scanning every candidate.
    fn match_flows_by_scan(
        up: &[Rec],
        up_off: i64,
        down: &[Rec],
        down_off: i64,
        window: i64,
        same_point: bool,
    ) -> Vec<(usize, usize)> {
        let mut used = vec![false; down.len()];
        let mut out = Vec::new();
        for (k, r) in up.iter().enumerate() {
            let t = r.ts - up_off;
            let best = (0..down.len())
                .filter(|&c| down[c].fp() == r.fp() && !used[c])
                .filter(|&c| !same_point || down[c].ts >= r.ts)
                .map(|c| ((down[c].ts - down_off - t).abs(), c))
                .filter(|&(d, _)| d <= window)
                .min();
            if let Some((_, c)) = best {
                used[c] = true;
                out.push((k, c));
            }
        }
        out
    }

    #[test]
    fn match_flows_agrees_with_the_scan() {
        fn recs(rng: &mut XorShift, fps: u64, span: u64) -> Vec<Rec> {
            let len = rng.below(25);
            let mut v: Vec<Rec> = (0..len)
                .map(|_| rec(rng.below(fps), rng.below(span) as i64))
                .collect();
            v.sort_by_key(|r| r.ts);
            v
        }
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let next = |rng: &mut XorShift, n: u64| rng.below(n);
        for round in 0..4_000 {
            // Few fingerprints (runs of several at `down`) and many (mostly one each).
            let fps = 1 + next(&mut rng, if round % 2 == 0 { 4 } else { 400 });
            let span = 1 + next(&mut rng, 60);
            let (up, down) = (recs(&mut rng, fps, span), recs(&mut rng, fps, span));
            let same_point = round % 3 == 0;
            let (up_off, down_off) = if same_point {
                (0, 0)
            } else {
                (
                    next(&mut rng, 20) as i64 - 10,
                    next(&mut rng, 20) as i64 - 10,
                )
            };
            let window = next(&mut rng, span + 5) as i64;
            assert_eq!(
                match_flows(&up, up_off, &down, down_off, window, same_point),
                match_flows_by_scan(&up, up_off, &down, down_off, window, same_point),
                "round {round}: up {up:?} down {down:?} offsets {up_off} {down_off} window {window}"
            );
        }
    }

    /// The definition: each unpaired packet with the first later unpaired packet of
    /// another flow, scanning up to the end of the window.
    fn pair_run_by_scan(run: &[&Rec], window: i64) -> Vec<(usize, usize)> {
        let mut used = vec![false; run.len()];
        let mut out = Vec::new();
        for x in 0..run.len() {
            if used[x] {
                continue;
            }
            for y in x + 1..run.len() {
                if run[y].ts - run[x].ts > window {
                    break;
                }
                if !used[y] && run[y].flow != run[x].flow {
                    used[x] = true;
                    used[y] = true;
                    out.push((x, y));
                    break;
                }
            }
        }
        out
    }

    /// A run of one fingerprint: up to `len` records of up to `flows` flows at times
    /// below `span`, in time order.
    fn random_run(rng: &mut XorShift, flows: u64, len: u64, span: u64) -> Vec<Rec> {
        let (flows, len) = (1 + rng.below(flows), rng.below(len + 1));
        let mut recs: Vec<Rec> = (0..len)
            .map(|_| {
                let mut r = rec(1, rng.below(span) as i64);
                r.flow = rng.below(flows) as u32;
                r
            })
            .collect();
        recs.sort_by_key(|r| r.ts);
        recs
    }

    #[test]
    fn pair_run_agrees_with_the_scan() {
        let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
        for round in 0..2_000 {
            let recs = random_run(&mut rng, 4, 30, 50);
            let run: Vec<&Rec> = recs.iter().collect();
            let window = rng.below(60) as i64;
            assert_eq!(
                pair_run(&run, window),
                pair_run_by_scan(&run, window),
                "round {round}: {recs:?} window {window}"
            );
        }
    }

    #[test]
    fn crowded_pairs_are_those_with_a_third_flow_near_them() {
        // Against the definition, by a scan for each pair: the flows of the packets
        // from a window before the pair's first packet to two windows after it.
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for round in 0..2_000 {
            let recs = random_run(&mut rng, 5, 40, 200);
            let run: Vec<&Rec> = recs.iter().collect();
            let window = 1 + rng.below(40) as i64;
            let pairs = pair_run(&run, window);
            let want: Vec<bool> = pairs
                .iter()
                .map(|&(x, _)| {
                    let t = run[x].ts;
                    let near: std::collections::BTreeSet<u32> = run
                        .iter()
                        .filter(|r| (t - window..=t + 2 * window).contains(&{ r.ts }))
                        .map(|r| r.flow)
                        .collect();
                    near.len() >= 3
                })
                .collect();
            assert_eq!(
                crowded(&run, &pairs, window),
                want,
                "round {round}: {recs:?}"
            );
        }
        // A hairpin: each packet, then its translation, copies and all: two flows.
        let recs: Vec<Rec> = (0..10)
            .map(|i| {
                let mut r = rec(1, i * US);
                r.flow = (i % 2) as u32;
                r
            })
            .collect();
        let run: Vec<&Rec> = recs.iter().collect();
        let pairs = pair_run(&run, SECOND);
        assert_eq!(pairs.len(), 5);
        assert!(crowded(&run, &pairs, SECOND).iter().all(|c| !c));
    }

    #[test]
    fn pair_run_is_not_quadratic_in_one_flow() {
        // 40 000 copies of one packet in one flow within the window: nothing to pair,
        // and no scan of the run for each of them (its time: `identical/run_N` in
        // benches/correlate.rs).
        let recs: Vec<Rec> = (0..40_000).map(|i| rec(1, i * 10 * US)).collect();
        let run: Vec<&Rec> = recs.iter().collect();
        assert!(pair_run(&run, SECOND).is_empty());
    }

    #[test]
    fn match_flows_is_not_quadratic_in_one_fingerprint() {
        // 40 000 identical packets (same payload, no IPv4 ID) 10 µs apart each side,
        // 25 µs of latency: each pairs with its own copy (the time it takes, linear in
        // the packets: `identical/run_N` in benches/correlate.rs).
        let n = 40_000;
        let up: Vec<Rec> = (0..n).map(|i| rec(1, i * 10 * US)).collect();
        let down: Vec<Rec> = up.iter().map(|r| rec(1, r.ts + 25 * US)).collect();
        let pairs = match_flows(&up, 0, &down, 0, SECOND, false);
        let own: Vec<(usize, usize)> = (0..n as usize).map(|k| (k, k)).collect();
        assert_eq!(pairs, own);
    }

    #[test]
    fn fp_index_finds_each_record_and_gives_up_on_crowded_slots() {
        let recs: Vec<Rec> = (0..1_000u64)
            .map(|i| rec(i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 16, 0))
            .collect();
        let index = FpIndex::of(&recs).expect("distinct fingerprints");
        for (k, r) in recs.iter().enumerate() {
            assert_eq!(index.get(&recs, r.fp()), Some(k));
        }
        assert_eq!(index.get(&recs, 7), None);
        // Two records with one fingerprint: no index.
        assert!(FpIndex::of(&[rec(5, 0), rec(9, 1), rec(5, 2)]).is_none());
        // Fingerprints that agree in their low bits (as crafted ones can) crowd one
        // slot: no index past the probe limit, and pairing takes the general way,
        // in time order as before, each packet with its own copy.
        let crowded: Vec<Rec> = (0..200u64).map(|i| rec((i + 1) << 40, i as i64)).collect();
        assert!(FpIndex::of(&crowded).is_none());
        let later: Vec<Rec> = crowded.iter().map(|r| rec(r.fp(), r.ts + 3)).collect();
        let own: Vec<(usize, usize)> = (0..200).map(|k| (k, k)).collect();
        assert_eq!(match_flows(&crowded, 0, &later, 0, 10, false), own);
        assert_eq!(
            match_flows(&crowded, 0, &later, 0, 10, false),
            match_flows_by_scan(&crowded, 0, &later, 0, 10, false)
        );
    }
}
