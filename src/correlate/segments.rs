//! Segments: TCP bytes followed from point to point whatever the cut.
//!
//! Segmentation offloads cut one TCP stream differently at different points. TSO and
//! GSO hand a device super-packets of up to 64 kB that are cut into MSS-sized
//! segments only where a device cannot take them whole; GRO merges the segments a
//! device receives into aggregates. A 30 kB aggregate at one point is twenty
//! segments at the next, and none of them has the aggregate's fingerprint. What every
//! piece of one transmission keeps, however it is cut, is where its bytes lie in the
//! sequence space, its acknowledgement number and its timestamp option (GSO copies
//! the header to every piece, GRO merges only segments whose headers agree), and its
//! bytes; NAT keeps them too. The IPv4 ID is not kept: GSO numbers the pieces on.
//!
//! `cover` pairs the segments two points (or two hops) did not match one for one:
//! within one key (acknowledgement number and timestamp option), the sequence space
//! is cut at both ends of every segment, and in each elementary range the copies
//! seen at one side pair with copies at the other, nearest in time within the window,
//! each copy at most once, so that a retransmission is never taken for the
//! transmission it repeats. Where two copies start at the same sequence number and
//! both captures hold their first payload bytes, those must agree (the one check of
//! the bytes themselves that digests of differently cut payloads allow); else they
//! do not pair. A segment is covered when every range of it paired: all
//! its bytes crossed, in whatever segments. Sorting and one sweep per key: n log n,
//! never all pairs, and the same result whatever the thread count.
//!
//! [`overlapping`] gives the pairs that let flows pair and orient; [`account`] what
//! a link's two hops saw of each direction: segments covered at the other hop, and
//! pure ACKs that never crossed but whose acknowledgement a later ACK carried across.

use serde::Serialize;

use super::points::{PointData, Rec};
use crate::model::tcp_flags::{ACK, FIN, RST, SYN};

/// Packets of one direction of a link accounted for by their bytes or by a later
/// acknowledgement rather than one for one: the two hops saw the stream cut
/// differently (segmentation offloads).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Resegmented {
    /// Data segments the sending hop saw whose bytes the receiving hop saw, all of
    /// them, in segments cut differently.
    pub sent: u64,
    /// The receiving hop's segments that carried them (and nothing that did not
    /// come across).
    pub received: u64,
    /// Payload bytes of the sending hop's segments.
    pub bytes: u64,
    /// Pure ACKs the sending hop saw and the receiving hop did not, whose
    /// acknowledgement a later ACK that reached the receiving hop carried.
    pub superseded_acks: u64,
}

impl Resegmented {
    pub const NONE: Resegmented = Resegmented {
        sent: 0,
        received: 0,
        bytes: 0,
        superseded_acks: 0,
    };

    pub fn is_none(&self) -> bool {
        *self == Resegmented::NONE
    }
}

/// Both directions of a link: initiator packets (sent by the upstream hop) and
/// responder packets (sent by the downstream hop).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Resegmentation {
    pub fwd: Resegmented,
    pub rev: Resegmented,
}

impl Resegmentation {
    pub fn is_none(&self) -> bool {
        self.fwd.is_none() && self.rev.is_none()
    }
}

/// A TCP segment's place in one transmission.
#[derive(Clone, Copy, Debug)]
struct Piece {
    /// Index of the record in the caller's slice.
    rec: u32,
    /// Clock-corrected time.
    ts: i64,
    seq: u32,
    /// Sequence space the segment occupies: its payload, plus one for a FIN.
    span: u32,
    /// Acknowledgement number and timestamp option digest.
    key: (u32, u16),
    /// The payload's first bytes, 0 when not captured.
    head: u32,
}

impl Piece {
    /// Whether two copies may hold the same bytes: unless both start at one sequence
    /// number with their first bytes captured, and those differ.
    fn agrees(&self, other: &Piece) -> bool {
        self.seq != other.seq || self.head == 0 || other.head == 0 || self.head == other.head
    }
}

/// The piece of record `r` (index `k`, clock offset `off`): segments with data or a
/// FIN. A SYN or RST is followed one for one only.
fn piece(r: &Rec, k: usize, off: i64) -> Option<Piece> {
    let s = r.seg()?;
    if r.tcp_flags() & (SYN | RST) != 0 {
        return None;
    }
    let span = s.len.saturating_add(u32::from(r.tcp_flags() & FIN != 0));
    (span > 0).then_some(Piece {
        rec: k as u32,
        ts: r.ts - off,
        seq: s.seq,
        span,
        key: (s.ack, s.ts_key),
        head: s.head,
    })
}

/// Records as `cover` takes them: a slice, its clock offset, and which records are
/// matched already (they take no part).
#[derive(Clone, Copy)]
pub(super) struct Recs<'a> {
    pub recs: &'a [Rec],
    pub off: i64,
    pub used: &'a [bool],
}

impl Recs<'_> {
    fn pieces(&self, keep: impl Fn(&Rec) -> bool) -> Vec<Piece> {
        self.recs
            .iter()
            .enumerate()
            .filter(|&(k, r)| !self.used[k] && keep(r))
            .filter_map(|(k, r)| piece(r, k, self.off))
            .collect()
    }
}

/// The outcome of `cover`: pairs of positions (in the two piece lists) that carried
/// bytes of one transmission, and for each side which pieces had every byte paired.
struct Cover {
    pairs: Vec<(u32, u32)>,
    whole: [Vec<bool>; 2],
}

/// Pairs the pieces of two sides byte range by byte range (see the module
/// documentation). `later_only`: a copy at `b` pairs only with a copy at `a` seen at
/// the same time or earlier (two hops at one point).
fn cover(a: &[Piece], b: &[Piece], window: i64, later_only: bool) -> Cover {
    let mut out = Cover {
        pairs: Vec::new(),
        whole: [vec![false; a.len()], vec![false; b.len()]],
    };
    // Both sides by key, then side, then time.
    let mut order: Vec<((u32, u16), u8, i64, u32)> = a
        .iter()
        .enumerate()
        .map(|(i, p)| (p.key, 0, p.ts, i as u32))
        .chain(
            b.iter()
                .enumerate()
                .map(|(i, p)| (p.key, 1, p.ts, i as u32)),
        )
        .collect();
    order.sort_unstable();
    let mut start = 0;
    while start < order.len() {
        let key = order[start].0;
        let end = start + order[start..].iter().take_while(|o| o.0 == key).count();
        let split = start + order[start..end].iter().take_while(|o| o.1 == 0).count();
        let ga: Vec<u32> = order[start..split].iter().map(|o| o.3).collect();
        let gb: Vec<u32> = order[split..end].iter().map(|o| o.3).collect();
        if !ga.is_empty() && !gb.is_empty() {
            let group = Group {
                pieces: [a, b],
                members: [&ga, &gb],
            };
            group.cover(window, later_only, &mut out);
        }
        start = end;
    }
    out.pairs.sort_unstable();
    out.pairs.dedup();
    out
}

/// The pieces of one key at both sides (positions into the piece lists, each side in
/// time order).
struct Group<'a> {
    pieces: [&'a [Piece]; 2],
    members: [&'a [u32]; 2],
}

impl Group<'_> {
    fn piece(&self, side: usize, k: usize) -> &Piece {
        &self.pieces[side][self.members[side][k] as usize]
    }

    /// Every member's range, relative to the sequence number of the earliest member so
    /// that a group that wraps around 2^32 stays in order.
    fn ranges(&self) -> [Vec<(i64, i64)>; 2] {
        let (x, y) = (self.piece(0, 0), self.piece(1, 0));
        let reference = if x.ts <= y.ts { x.seq } else { y.seq };
        [0, 1].map(|side| {
            (0..self.members[side].len())
                .map(|k| {
                    let p = self.piece(side, k);
                    let s = i64::from(p.seq.wrapping_sub(reference) as i32);
                    (s, s + i64::from(p.span))
                })
                .collect()
        })
    }

    /// Cuts the group's sequence space at every member's ends and pairs the copies of
    /// each elementary range; marks the members whose every range paired.
    fn cover(&self, window: i64, later_only: bool, out: &mut Cover) {
        let ranges = self.ranges();
        let mut cuts: Vec<i64> = ranges.iter().flatten().flat_map(|&(s, e)| [s, e]).collect();
        cuts.sort_unstable();
        cuts.dedup();
        let at = |x: i64| cuts.partition_point(|&c| c < x);
        // Per member: its first elementary range and the one after its last.
        let spans: [Vec<(usize, usize)>; 2] =
            [0, 1].map(|side| ranges[side].iter().map(|&(s, e)| (at(s), at(e))).collect());
        let mut by_start: [Vec<usize>; 2] = [0, 1].map(|side| (0..spans[side].len()).collect());
        for side in 0..2 {
            by_start[side].sort_by_key(|&k| spans[side][k].0);
        }
        let mut next = [0usize; 2];
        let mut active: [Vec<usize>; 2] = [Vec::new(), Vec::new()];
        let mut paired: [Vec<usize>; 2] = [0, 1].map(|side| vec![0; spans[side].len()]);
        for j in 0..cuts.len().saturating_sub(1) {
            for side in 0..2 {
                while let Some(&k) = by_start[side].get(next[side]) {
                    if spans[side][k].0 != j {
                        break;
                    }
                    active[side].push(k);
                    next[side] += 1;
                }
                active[side].retain(|&k| spans[side][k].1 > j);
            }
            if active[0].is_empty() || active[1].is_empty() {
                continue;
            }
            let times = |side: usize| -> Vec<Stamp> {
                active[side]
                    .iter()
                    .map(|&k| (self.piece(side, k).ts, self.members[side][k]))
                    .collect()
            };
            let agree = |x: usize, y: usize| {
                self.piece(0, active[0][x])
                    .agrees(self.piece(1, active[1][y]))
            };
            for (x, y) in pair_nearest(&times(0), &times(1), window, later_only, agree) {
                let (kx, ky) = (active[0][x], active[1][y]);
                paired[0][kx] += 1;
                paired[1][ky] += 1;
                out.pairs.push((self.members[0][kx], self.members[1][ky]));
            }
        }
        for side in 0..2 {
            for (k, &(lo, hi)) in spans[side].iter().enumerate() {
                if paired[side][k] == hi - lo {
                    out.whole[side][self.members[side][k] as usize] = true;
                }
            }
        }
    }
}

/// Above this many candidate pairs in one elementary range, copies pair in time
/// order instead of nearest first (only a storm of identical retransmissions gets
/// there).
const NEAREST_MAX: usize = 256;

/// A copy of a byte range: its clock-corrected time and a tie-breaker.
type Stamp = (i64, u32);

/// Pairs copies of one byte range, given as (time, tie-breaker): nearest in time
/// first (earlier, then lower tie-breakers, on equal distance), each at most once,
/// never further apart than `window` nor when `agree` (positions) says their bytes
/// differ; `later_only`: a `ys` copy never before its `xs` copy. Returns positions.
fn pair_nearest(
    xs: &[Stamp],
    ys: &[Stamp],
    window: i64,
    later_only: bool,
    agree: impl Fn(usize, usize) -> bool,
) -> Vec<(usize, usize)> {
    let ok = |d: i64| d.abs() <= window && (!later_only || d >= 0);
    let mut out = Vec::new();
    if xs.len() * ys.len() <= NEAREST_MAX {
        let mut cands: Vec<(i64, Stamp, Stamp, usize, usize)> = Vec::new();
        for (i, x) in xs.iter().enumerate() {
            for (j, y) in ys.iter().enumerate() {
                let d = y.0 - x.0;
                if ok(d) && agree(i, j) {
                    cands.push((d.abs(), *x, *y, i, j));
                }
            }
        }
        cands.sort_unstable();
        let (mut used_x, mut used_y) = (vec![false; xs.len()], vec![false; ys.len()]);
        for (_, _, _, i, j) in cands {
            if !used_x[i] && !used_y[j] {
                used_x[i] = true;
                used_y[j] = true;
                out.push((i, j));
            }
        }
        return out;
    }
    let mut ox: Vec<usize> = (0..xs.len()).collect();
    let mut oy: Vec<usize> = (0..ys.len()).collect();
    ox.sort_by_key(|&i| xs[i]);
    oy.sort_by_key(|&j| ys[j]);
    let (mut i, mut j) = (0, 0);
    while i < ox.len() && j < oy.len() {
        let d = ys[oy[j]].0 - xs[ox[i]].0;
        if ok(d) && agree(ox[i], oy[j]) {
            out.push((ox[i], oy[j]));
            i += 1;
            j += 1;
        } else if d < 0 {
            j += 1;
        } else {
            i += 1;
        }
    }
    out
}

/// Pairs (index in `x`, index in `y`) of records not used yet that carried bytes of
/// one transmission, sorted. `later_only`: a `y` copy never before its `x` copy.
pub(super) fn overlapping(x: Recs, y: Recs, window: i64, later_only: bool) -> Vec<(usize, usize)> {
    let (px, py) = (x.pieces(|_| true), y.pieces(|_| true));
    if px.is_empty() || py.is_empty() {
        return Vec::new();
    }
    let c = cover(&px, &py, window, later_only);
    let mut out: Vec<(usize, usize)> = c
        .pairs
        .iter()
        .map(|&(i, j)| (px[i as usize].rec as usize, py[j as usize].rec as usize))
        .collect();
    out.sort_unstable();
    out
}

/// One hop of a link as [`account`] sees it: its point, its records in time order,
/// its clock offset, and which records are accounted for (matched one for one
/// before, marked here as covered or superseded).
pub(super) struct Hop<'a> {
    pub point: &'a PointData,
    pub recs: &'a [Rec],
    pub off: i64,
    pub matched: &'a mut [bool],
}

impl Hop<'_> {
    /// The hop's records not accounted for yet, as `cover` takes them.
    fn unaccounted(&self) -> Recs<'_> {
        Recs {
            recs: self.recs,
            off: self.off,
            used: self.matched,
        }
    }
}

/// What the packets a link's hops did not match one for one say, per direction.
#[derive(Default)]
pub(super) struct Accounting {
    pub resegmented: Resegmentation,
    /// Segments (index at the upstream hop, index at the downstream hop) that carried
    /// bytes of one transmission.
    pub pairs: Vec<(usize, usize)>,
}

/// Accounts, in both directions of a link, for the packets the two hops did not
/// match one for one: the sending hop's data segments whose every byte reached the
/// receiving hop in other segments (and those segments), and the sending hop's pure
/// ACKs superseded there. Marks them in the hops' `matched`. `same_point`: both
/// hops are at one point, so the receiving hop's copy comes later.
pub(super) fn account<'a>(
    up: &mut Hop<'a>,
    down: &mut Hop<'a>,
    window: i64,
    same_point: bool,
) -> Accounting {
    let mut acc = Accounting::default();
    for fwd in [true, false] {
        let (s, r) = if fwd {
            (&mut *up, &mut *down)
        } else {
            (&mut *down, &mut *up)
        };
        let (reseg, pairs) = one_way(s, r, fwd, window, same_point);
        if fwd {
            acc.resegmented.fwd = reseg;
            acc.pairs.extend(pairs);
        } else {
            acc.resegmented.rev = reseg;
            acc.pairs.extend(pairs.into_iter().map(|(i, j)| (j, i)));
        }
    }
    acc.pairs.sort_unstable();
    acc
}

/// [`account`] for one direction (`fwd`: the initiator's) from the sending hop `s`
/// to the receiving hop `r`; pairs are (index at `s`, index at `r`).
fn one_way(
    s: &mut Hop,
    r: &mut Hop,
    fwd: bool,
    window: i64,
    later_only: bool,
) -> (Resegmented, Vec<(usize, usize)>) {
    let (sp, rp) = (
        s.unaccounted().pieces(|x| s.point.is_fwd(x) == fwd),
        r.unaccounted().pieces(|x| r.point.is_fwd(x) == fwd),
    );
    let mut reseg = Resegmented::default();
    let mut pairs = Vec::new();
    if !sp.is_empty() && !rp.is_empty() {
        let c = cover(&sp, &rp, window, later_only);
        for (p, _) in sp.iter().zip(&c.whole[0]).filter(|(_, &w)| w) {
            s.matched[p.rec as usize] = true;
            reseg.sent += 1;
            reseg.bytes += u64::from(s.recs[p.rec as usize].seg().map_or(0, |g| g.len));
        }
        // The receiving hop's segments that carried bytes of a segment that crossed
        // whole count as received; any segment whose bytes all came across is
        // accounted for.
        let mut carried = vec![false; rp.len()];
        for &(i, j) in &c.pairs {
            carried[j as usize] |= c.whole[0][i as usize];
        }
        for (k, p) in rp.iter().enumerate().filter(|&(k, _)| c.whole[1][k]) {
            r.matched[p.rec as usize] = true;
            reseg.received += u64::from(carried[k]);
        }
        pairs = c
            .pairs
            .iter()
            .map(|&(i, j)| (sp[i as usize].rec as usize, rp[j as usize].rec as usize))
            .collect();
    }
    let acks: Vec<usize> = (0..s.recs.len())
        .filter(|&k| !s.matched[k] && is_pure_ack(&s.recs[k]) && s.point.is_fwd(&s.recs[k]) == fwd)
        .collect();
    if !acks.is_empty() {
        let later: Vec<(i64, u32)> = r
            .recs
            .iter()
            .filter(|x| x.tcp_flags() & ACK != 0 && r.point.is_fwd(x) == fwd)
            .filter_map(|x| Some((x.ts - r.off, x.seg()?.ack)))
            .collect();
        for k in superseded(&acks, s.recs, s.off, &later, window) {
            s.matched[k] = true;
            reseg.superseded_acks += 1;
        }
    }
    (reseg, pairs)
}

/// A segment that only acknowledges: no data, no SYN, FIN or RST.
fn is_pure_ack(r: &Rec) -> bool {
    r.seg().is_some_and(|s| s.len == 0)
        && r.tcp_flags() & (SYN | FIN | RST) == 0
        && r.tcp_flags() & ACK != 0
}

/// Of the pure ACKs `cands` (indices into `recs`, clock offset `off`), those a later
/// ACK of `acks` (clock-corrected time, acknowledgement number, in time order) makes
/// redundant: one that acknowledges more, seen from a window before the pure ACK on
/// (acknowledgement numbers only grow, so it was sent after it), or one that
/// acknowledges as much, seen at the same time or later.
fn superseded(
    cands: &[usize],
    recs: &[Rec],
    off: i64,
    acks: &[(i64, u32)],
    window: i64,
) -> Vec<usize> {
    let Some(&(_, reference)) = acks.first() else {
        return Vec::new();
    };
    let rel = |a: u32| i64::from(a.wrapping_sub(reference) as i32);
    // Greatest acknowledgement from each position on.
    let mut most = vec![i64::MIN; acks.len() + 1];
    for i in (0..acks.len()).rev() {
        most[i] = most[i + 1].max(rel(acks[i].1));
    }
    cands
        .iter()
        .copied()
        .filter(|&k| {
            let r = &recs[k];
            let (t, a) = (r.ts - off, rel(r.seg().map_or(0, |s| s.ack)));
            let from_window = acks.partition_point(|x| x.0 < t - window);
            let from_now = acks.partition_point(|x| x.0 < t);
            most[from_window] > a || most[from_now] >= a
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::correlate::testkit::{data, point, Hdr, MS, US};
    use crate::correlate::{correlate, Config, Correlation, Link};
    use crate::model::{NatKind, Packet};

    const CLIENT: &str = "172.17.0.2:40000";
    const NATED: &str = "203.0.113.1:40000";
    const SERVER: &str = "198.51.100.7:443";
    /// Forwarding latency from one point to the other.
    const LAT: i64 = 30 * US;
    /// The server's next sequence number, which the client's data acknowledges.
    const SERVER_SEQ: u32 = 5000;

    /// Where a packet was seen: inside (docker0) or outside (eth0, after SNAT).
    #[derive(Clone, Copy, PartialEq)]
    enum At {
        In,
        Out,
    }

    fn hdr(tsval: u32) -> Hdr {
        Hdr {
            ack: SERVER_SEQ,
            tsval: Some(tsval),
            flags: ACK,
        }
    }

    /// Client data (`len` bytes from `seq`) sent at `t`, as `at` saw it: inside as
    /// sent, outside `LAT` later after one routed hop.
    fn up(at: At, t: i64, seq: u32, len: u32, h: Hdr) -> Packet {
        match at {
            At::In => data(t, CLIENT, SERVER, seq, len, h),
            At::Out => {
                let mut p = data(t + LAT, NATED, SERVER, seq, len, h);
                p.ttl -= 1;
                p
            }
        }
    }

    /// A server packet sent at `t`: outside then, inside `LAT` later.
    fn down(at: At, t: i64, seq: u32, len: u32, h: Hdr) -> Packet {
        match at {
            At::Out => data(t, SERVER, NATED, seq, len, h),
            At::In => data(t + LAT, SERVER, CLIENT, seq, len, h),
        }
    }

    /// The server's pure ACK of the client's bytes up to `ack`, sent at `t`.
    fn ack(at: At, t: i64, ack: u32) -> Packet {
        let h = Hdr {
            ack,
            tsval: Some(7),
            flags: ACK,
        };
        down(at, t, SERVER_SEQ, 0, h)
    }

    /// The handshake as `at` saw it; the client's data starts at 1000.
    fn handshake(at: At) -> Vec<Packet> {
        let syn = Hdr {
            ack: 0,
            tsval: Some(1),
            flags: SYN,
        };
        let syn_ack = Hdr {
            ack: 1000,
            tsval: Some(2),
            flags: SYN | ACK,
        };
        vec![
            up(at, 0, 999, 0, syn),
            down(at, 100 * US, SERVER_SEQ - 1, 0, syn_ack),
            up(at, 200 * US, 1000, 0, hdr(3)),
        ]
    }

    fn run(mut inside: Vec<Packet>, mut outside: Vec<Packet>) -> Correlation {
        inside.sort_by_key(|p| p.ts_ns);
        outside.sort_by_key(|p| p.ts_ns);
        let points = vec![point("docker0", 0, &inside), point("eth0", 1, &outside)];
        correlate(points, Vec::new(), Config::default())
    }

    /// The link of the one SNAT connection the points saw.
    fn link(inside: Vec<Packet>, outside: Vec<Packet>) -> Link {
        let c = run(inside, outside);
        assert_eq!(c.connections.len(), 1, "{:#?}", c.connections);
        let conn = &c.connections[0];
        let points: Vec<usize> = conn.hops.iter().map(|h| h.point).collect();
        assert_eq!(points, [0, 1]);
        assert_eq!(conn.links[0].change.kind, NatKind::Snat);
        conn.links[0].clone()
    }

    /// Packets lost forward, lost backward, appeared forward, appeared backward.
    fn unmatched(l: &Link) -> [u64; 4] {
        let u = &l.unmatched;
        [
            u.lost_fwd.packets,
            u.lost_rev.packets,
            u.appeared_fwd.packets,
            u.appeared_rev.packets,
        ]
    }

    fn reseg(sent: u64, received: u64, bytes: u64) -> Resegmented {
        Resegmented {
            sent,
            received,
            bytes,
            superseded_acks: 0,
        }
    }

    /// Both points' handshakes plus the given packets, and the server's ACK of
    /// everything up to `acked` at both.
    fn conversation(inside: Vec<Packet>, outside: Vec<Packet>, acked: u32) -> Link {
        let mut i = [handshake(At::In), inside].concat();
        let mut o = [handshake(At::Out), outside].concat();
        i.push(ack(At::In, 50 * MS, acked));
        o.push(ack(At::Out, 50 * MS, acked));
        link(i, o)
    }

    #[test]
    fn three_segments_cross_as_one_aggregate() {
        let inside = (0..3)
            .map(|i| up(At::In, MS + i * US, 1000 + i as u32 * 1000, 1000, hdr(10)))
            .collect();
        // GRO merged them before the outside capture.
        let outside = vec![up(At::Out, MS + 2 * US, 1000, 3000, hdr(10))];
        let l = conversation(inside, outside, 4000);
        assert_eq!(unmatched(&l), [0; 4]);
        assert_eq!(l.resegmented.fwd, reseg(3, 1, 3000));
        assert!(l.resegmented.rev.is_none());
        assert!(l.evidence.fields.names().contains(&"tcp.seq"));
        assert_eq!(l.confidence, 1.0);
    }

    #[test]
    fn one_super_packet_crosses_as_three_segments() {
        // TSO hands the inside link one 3000-byte packet; the uplink cuts it.
        let inside = vec![up(At::In, MS, 1000, 3000, hdr(10))];
        let outside = (0..3)
            .map(|i| up(At::Out, MS + i * US, 1000 + i as u32 * 1000, 1000, hdr(10)))
            .collect();
        let l = conversation(inside, outside, 4000);
        assert_eq!(unmatched(&l), [0; 4]);
        assert_eq!(l.resegmented.fwd, reseg(1, 3, 3000));
    }

    #[test]
    fn partially_overlapping_cuts_cover_each_other() {
        let inside = vec![
            up(At::In, MS, 1000, 1500, hdr(10)),
            up(At::In, MS + US, 2500, 1500, hdr(10)),
        ];
        let outside = vec![
            up(At::Out, MS, 1000, 1000, hdr(10)),
            up(At::Out, MS + US, 2000, 1500, hdr(10)),
            up(At::Out, MS + 2 * US, 3500, 500, hdr(10)),
        ];
        let l = conversation(inside, outside, 4000);
        assert_eq!(unmatched(&l), [0; 4]);
        assert_eq!(l.resegmented.fwd, reseg(2, 3, 3000));
    }

    #[test]
    fn a_hole_is_lost_even_when_its_retransmission_crosses() {
        // The middle segment never left; its retransmission 200 ms later (a new
        // TSval) crossed, cut differently.
        let inside = vec![
            up(At::In, MS, 1000, 1000, hdr(10)),
            up(At::In, MS + US, 2000, 1000, hdr(10)),
            up(At::In, MS + 2 * US, 3000, 1000, hdr(10)),
            up(At::In, 201 * MS, 2000, 500, hdr(30)),
            up(At::In, 201 * MS + US, 2500, 500, hdr(30)),
        ];
        let outside = vec![
            up(At::Out, MS, 1000, 1000, hdr(10)),
            up(At::Out, MS + 2 * US, 3000, 1000, hdr(10)),
            up(At::Out, 201 * MS + US, 2000, 1000, hdr(30)),
        ];
        let mut i = [handshake(At::In), inside].concat();
        let mut o = [handshake(At::Out), outside].concat();
        i.push(ack(At::In, 250 * MS, 4000));
        o.push(ack(At::Out, 250 * MS, 4000));
        let l = link(i, o);
        assert_eq!(unmatched(&l), [1, 0, 0, 0]);
        let gap = l.unmatched.lost_fwd;
        assert_eq!(gap.first_ns, Some(MS + US));
        assert_eq!(gap.first_tcp_flags, Some(ACK));
        assert_eq!(l.resegmented.fwd, reseg(2, 1, 1000));
    }

    #[test]
    fn a_fin_that_never_crossed_is_lost_though_its_bytes_did() {
        let mut fin = hdr(10);
        fin.flags |= FIN;
        let inside = vec![
            up(At::In, MS, 1000, 1000, hdr(10)),
            up(At::In, MS + US, 2000, 1000, fin),
        ];
        let outside = vec![up(At::Out, MS + US, 1000, 2000, hdr(10))];
        let l = conversation(inside, outside, 3000);
        assert_eq!(unmatched(&l), [1, 0, 0, 0]);
        assert_eq!(l.unmatched.lost_fwd.first_tcp_flags, Some(FIN | ACK));
        // The outside segment's bytes all came from inside: it did not appear.
        assert_eq!(l.resegmented.fwd, reseg(1, 1, 1000));
    }

    #[test]
    fn pure_acks_superseded_by_a_later_ack_are_not_lost() {
        let inside = vec![up(At::In, MS, 1000, 3000, hdr(10))];
        let outside: Vec<Packet> = (0..3)
            .map(|i| up(At::Out, MS + i * US, 1000 + i as u32 * 1000, 1000, hdr(10)))
            .collect();
        // The server acknowledged each segment; only its last ACK reached docker0.
        let acks = |at| -> Vec<Packet> {
            (0..3)
                .map(|i| ack(at, 2 * MS + i * 10 * US, 2000 + i as u32 * 1000))
                .collect()
        };
        let i = [handshake(At::In), inside.clone(), vec![acks(At::In)[2]]].concat();
        let o = [handshake(At::Out), outside.clone(), acks(At::Out)].concat();
        let l = link(i, o);
        assert_eq!(unmatched(&l), [0; 4]);
        assert_eq!(l.resegmented.rev.superseded_acks, 2);
        assert_eq!(l.resegmented.fwd, reseg(1, 3, 3000));

        // Only the first reached docker0: nothing later acknowledged as much as the
        // other two, which are lost.
        let i = [handshake(At::In), inside, vec![acks(At::In)[0]]].concat();
        let o = [handshake(At::Out), outside, acks(At::Out)].concat();
        let l = link(i, o);
        assert_eq!(unmatched(&l), [0, 2, 0, 0]);
        assert_eq!(l.resegmented.rev.superseded_acks, 0);
        assert_eq!(l.unmatched.lost_rev.first_ns, Some(2 * MS + 10 * US));
    }

    #[test]
    fn a_retransmission_cut_differently_again_loses_nothing() {
        // The original crossed as three segments; a spurious retransmission (new
        // TSval), cut in two inside, crossed merged into one.
        let inside = vec![
            up(At::In, MS, 1000, 3000, hdr(10)),
            up(At::In, 20 * MS, 1000, 1500, hdr(30)),
            up(At::In, 20 * MS + US, 2500, 1500, hdr(30)),
        ];
        let mut outside: Vec<Packet> = (0..3)
            .map(|i| up(At::Out, MS + i * US, 1000 + i as u32 * 1000, 1000, hdr(10)))
            .collect();
        outside.push(up(At::Out, 20 * MS + 2 * US, 1000, 3000, hdr(30)));
        let l = conversation(inside, outside, 4000);
        assert_eq!(unmatched(&l), [0; 4]);
        assert_eq!(l.resegmented.fwd, reseg(3, 4, 6000));
    }

    #[test]
    fn without_timestamps_the_copy_nearest_in_time_is_the_one_that_crossed() {
        // Same acknowledgement, no timestamp option: a transmission that never left
        // and its retransmission 200 µs later look alike but for time (and IPv4 ID).
        let h = Hdr {
            ack: SERVER_SEQ,
            tsval: None,
            flags: ACK,
        };
        let mut retx = [
            up(At::In, 1200 * US, 1000, 1500, h),
            up(At::In, 1200 * US + 1, 2500, 1500, h),
        ];
        retx[0].ip_id = Some(77);
        retx[1].ip_id = Some(78);
        let mut merged = up(At::Out, 1200 * US + 2, 1000, 3000, h);
        merged.ip_id = Some(77);
        let inside = [vec![up(At::In, MS, 1000, 3000, h)], retx.to_vec()].concat();
        let l = conversation(inside, vec![merged], 4000);
        assert_eq!(unmatched(&l), [1, 0, 0, 0]);
        assert_eq!(l.unmatched.lost_fwd.first_ns, Some(MS));
        assert_eq!(l.resegmented.fwd, reseg(2, 1, 3000));
        assert!(l.evidence.fields.names().contains(&"tcp.ack"));
    }

    #[test]
    fn cuts_across_the_end_of_the_sequence_space() {
        let start = u32::MAX - 999;
        let inside = vec![up(At::In, MS, start, 3000, hdr(10))];
        let outside = (0..3)
            .map(|i| {
                up(
                    At::Out,
                    MS + i * US,
                    start.wrapping_add(i as u32 * 1000),
                    1000,
                    hdr(10),
                )
            })
            .collect();
        let mut i = inside;
        let mut o: Vec<Packet> = outside;
        i.push(ack(At::In, 2 * MS, 2000));
        o.push(ack(At::Out, 2 * MS, 2000));
        let l = link(i, o);
        assert_eq!(unmatched(&l), [0; 4]);
        assert_eq!(l.resegmented.fwd, reseg(1, 3, 3000));
    }

    #[test]
    fn flows_pair_by_bytes_when_no_segment_is_cut_alike() {
        // Mid-stream: data both ways, every segment cut differently at the two
        // points, no handshake and no ACK to match one for one.
        let back = |tsval| Hdr {
            ack: 4500,
            tsval: Some(tsval),
            flags: ACK,
        };
        let inside = vec![
            up(At::In, MS, 1000, 1000, hdr(10)),
            up(At::In, MS + US, 2000, 1000, hdr(10)),
            up(At::In, 2 * MS, 3000, 1500, hdr(11)),
            down(At::In, 3 * MS, 5000, 1500, back(20)),
            down(At::In, 3 * MS + US, 6500, 1500, back(20)),
        ];
        let outside = vec![
            up(At::Out, MS + US, 1000, 2000, hdr(10)),
            up(At::Out, 2 * MS, 3000, 700, hdr(11)),
            up(At::Out, 2 * MS + US, 3700, 800, hdr(11)),
            down(At::Out, 3 * MS, 5000, 3000, back(20)),
        ];
        let l = link(inside, outside);
        assert_eq!(unmatched(&l), [0; 4]);
        assert_eq!(l.evidence.matched_fwd + l.evidence.matched_rev, 0);
        assert_eq!(l.resegmented.fwd, reseg(3, 3, 3500));
        assert_eq!(l.resegmented.rev, reseg(1, 2, 3000));
        assert!(l.confidence > 0.99, "{}", l.confidence);
    }

    #[test]
    fn ipv6_segments_without_an_ip_id_pair_by_their_bytes() {
        let (client, nated, server) = (
            "[fd00:172:17::2]:40000",
            "[2001:db8:113::1]:40000",
            "[2001:db8:100::10]:443",
        );
        let v6 = |mut p: Packet| {
            p.ip_id = None;
            p
        };
        let mut inside = vec![v6(data(MS, client, server, 1000, 3000, hdr(10)))];
        let mut outside: Vec<Packet> = (0..3)
            .map(|i| {
                let t = MS + LAT + i * US;
                let mut p = v6(data(
                    t,
                    nated,
                    server,
                    1000 + i as u32 * 1000,
                    1000,
                    hdr(10),
                ));
                p.ttl -= 1;
                p
            })
            .collect();
        let acked = Hdr {
            ack: 4000,
            tsval: Some(7),
            flags: ACK,
        };
        inside.push(v6(data(2 * MS + LAT, server, client, SERVER_SEQ, 0, acked)));
        outside.push(v6(data(2 * MS, server, nated, SERVER_SEQ, 0, acked)));
        let l = link(inside, outside);
        assert_eq!(unmatched(&l), [0; 4]);
        assert_eq!(l.resegmented.fwd, reseg(1, 3, 3000));
    }

    #[test]
    fn pair_nearest_prefers_the_nearest_copy_and_uses_each_once() {
        let any = |_, _| true;
        let xs = [(0, 0), (200, 1)];
        let ys = [(230, 0)];
        assert_eq!(pair_nearest(&xs, &ys, 1_000, false, any), [(1, 0)]);
        assert_eq!(pair_nearest(&xs, &ys, 100, false, any), [(1, 0)]);
        assert!(pair_nearest(&xs, &ys, 20, false, any).is_empty());
        // Copies whose bytes differ never pair: the other one does.
        assert_eq!(
            pair_nearest(&xs, &ys, 1_000, false, |x, _| x == 0),
            [(0, 0)]
        );
        // At one point the later copy only.
        assert!(pair_nearest(&[(300, 0)], &ys, 1_000, true, any).is_empty());
        // Many copies: in time order.
        let many: Vec<(i64, u32)> = (0..40).map(|i| (i * 10, i as u32)).collect();
        let later: Vec<(i64, u32)> = many.iter().map(|&(t, i)| (t + 1, i)).collect();
        let pairs = pair_nearest(&many, &later, 5, false, any);
        assert_eq!(pairs, (0..40).map(|i| (i, i)).collect::<Vec<_>>());
        let pairs = pair_nearest(&many, &later, 5, false, |x, _| x % 2 == 0);
        assert_eq!(
            pairs,
            (0..40).step_by(2).map(|i| (i, i)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn segments_that_start_alike_but_differ_in_their_first_bytes_do_not_pair() {
        // Same range, acknowledgement and timestamps, other bytes (as if the payload
        // had been rewritten between the points): not the same transmission.
        let inside = vec![up(At::In, MS, 1000, 3000, hdr(10))];
        let mut outside: Vec<Packet> = (0..3)
            .map(|i| up(At::Out, MS + i * US, 1000 + i as u32 * 1000, 1000, hdr(10)))
            .collect();
        let l = conversation(inside.clone(), outside.clone(), 4000);
        assert_eq!(unmatched(&l), [0; 4]);
        outside[0].payload_head = outside[0].payload_head.map(|h| h ^ 0x100);
        let l = conversation(inside, outside, 4000);
        // The super-packet is lost; the two segments after the first crossed bytes of
        // it, the first appeared.
        assert_eq!(unmatched(&l), [1, 0, 1, 0]);
        assert_eq!(l.resegmented.fwd, reseg(0, 0, 0));
    }

    #[test]
    fn cover_is_not_quadratic_in_one_key() {
        // A long one-way transfer without timestamps: one acknowledgement number for
        // every segment, 20 000 aggregates of two MSS at one side, 40 000 segments at
        // the other.
        let p = |rec: u32, ts: i64, seq: u32, span: u32| Piece {
            rec,
            ts,
            seq,
            span,
            key: (7, 0),
            head: 0,
        };
        let a: Vec<Piece> = (0..20_000u32)
            .map(|i| p(i, i64::from(i) * 20 * US, i * 2896, 2896))
            .collect();
        let b: Vec<Piece> = (0..40_000u32)
            .map(|i| p(i, i64::from(i / 2) * 20 * US + 30 * US, i * 1448, 1448))
            .collect();
        let start = std::time::Instant::now();
        let c = cover(&a, &b, 1_000 * MS, false);
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
        assert!(c.whole[0].iter().all(|&w| w) && c.whole[1].iter().all(|&w| w));
        assert_eq!(c.pairs.len(), 40_000);
    }
}
