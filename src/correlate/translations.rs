//! Translations: what happened to a connection between each two consecutive hops.
//!
//! [`link_all`] builds, per connection (in parallel), one [`Link`] per consecutive hop
//! pair: the change of tuple ([`NatChange`]: SNAT, DNAT, both, a moved source port),
//! the evidence (packets matched per direction, the invariant fields they agreed on,
//! the confidence), the forwarding latency over matched packets, and the packets one
//! hop saw and the other did not while both were capturing. Packets count as seen at
//! the other hop when matched one for one, and, where offloads cut the TCP stream
//! differently at the two hops, when every byte of a segment reached the other hop in
//! other segments, or when a pure ACK that did not cross was superseded by a later
//! ACK that did (`segments`; the [`Resegmentation`] counts them). A copy of a packet
//! that crossed, seen again at the same hop within [`COPY_NS`] (a bridge with
//! netfilter, a hairpin port), crossed with it. Two hops at one point (a host turning
//! a connection back out of the interface it came in by) match each direction on its
//! own: a request's second copy comes later, a reply's earlier. [`port_reallocs`] then
//! names, for every link whose source port moved, the connection that held the wanted
//! port at the downstream point.

use foldhash::HashMap;
use smallvec::{smallvec, SmallVec};

use rayon::prelude::*;
use serde::Serialize;

use super::fingerprint::FieldSets;
use super::offset;
use super::pairing::match_flows;
use super::paths::Hop;
use super::points::{PointData, Rec};
use super::returns::ReturnLink;
use super::rewrites::{self, Rewrites, Rewritten};
use super::segments::{self, Resegmentation, Resegmented};
use super::sizes::{self, Sizes, Sizing};
use super::trace::{self, Crossed, Trace};
use super::Connection;
use crate::model::{NatChange, Proto, Tuple};

/// Packets of one direction seen at one hop and not at the other.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Gap {
    pub packets: u64,
    /// Clock-corrected times of the first and last such packet.
    pub first_ns: Option<i64>,
    pub last_ns: Option<i64>,
    /// TCP flags of the first such packet (a SYN that never left, a stray RST).
    pub first_tcp_flags: Option<u8>,
    /// How long the hop had been quiet (no packet either way) before the first such
    /// packet; none when that packet was the hop's first. A state loss shows here: a
    /// connection idle past its entry's timeout, whose next packet NAT sent on under
    /// another tuple.
    #[serde(skip)]
    pub quiet_before_ns: Option<i64>,
}

impl Gap {
    const NONE: Gap = Gap {
        packets: 0,
        first_ns: None,
        last_ns: None,
        first_tcp_flags: None,
        quiet_before_ns: None,
    };

    /// Counts a packet at `ts` that came `quiet_ns` after the hop's packet before it.
    fn add(&mut self, ts: i64, flags: Option<u8>, quiet_ns: Option<i64>) {
        self.packets += 1;
        if self.first_ns.is_none_or(|f| ts < f) {
            self.first_ns = Some(ts);
            self.first_tcp_flags = flags;
            self.quiet_before_ns = quiet_ns;
        }
        self.last_ns = Some(self.last_ns.map_or(ts, |l| l.max(ts)));
    }
}

/// What one hop saw that the next did not, and the other way round.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Unmatched {
    /// Initiator packets seen upstream, never downstream (dropped or lost between).
    pub lost_fwd: Gap,
    /// Responder packets seen downstream, never upstream.
    pub lost_rev: Gap,
    /// Initiator packets seen downstream only (made between the points, or missed upstream).
    pub appeared_fwd: Gap,
    /// Responder packets seen upstream only (e.g. a RST the NAT host made itself).
    pub appeared_rev: Gap,
}

/// A link's [`Unmatched`]: nothing on a link whose packets all crossed (most links),
/// boxed on one with packets that did not.
pub type Unmatches = Sparse<Unmatched>;

/// A part of a link that most links do not have, kept [`Sparse`]: `NONE` is its value
/// on a link without it.
pub trait Rare: PartialEq + 'static {
    const NONE: &'static Self;
}

/// A part of a link that most links do not have ([`Rare`]), read through `*` or its
/// fields: boxed where the link has it, nothing where it has none, so that a link
/// keeps 8 bytes for it rather than its whole size. Serialized as the value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sparse<T>(Option<Box<T>>);

impl<T: Rare> Sparse<T> {
    pub fn of(value: T) -> Sparse<T> {
        Sparse((value != *T::NONE).then(|| Box::new(value)))
    }
}

impl<T> Default for Sparse<T> {
    fn default() -> Self {
        Sparse(None)
    }
}

impl<T: Rare> std::ops::Deref for Sparse<T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.0.as_deref().unwrap_or(T::NONE)
    }
}

impl<T: Rare + Serialize> Serialize for Sparse<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(s)
    }
}

impl Rare for Unmatched {
    const NONE: &'static Unmatched = &Unmatched {
        lost_fwd: Gap::NONE,
        lost_rev: Gap::NONE,
        appeared_fwd: Gap::NONE,
        appeared_rev: Gap::NONE,
    };
}

impl Rare for Rewrites {
    const NONE: &'static Rewrites = &Rewrites {
        fwd: Rewritten::NONE,
        rev: Rewritten::NONE,
    };
}

impl Rare for Resegmentation {
    const NONE: &'static Resegmentation = &Resegmentation {
        fwd: Resegmented::NONE,
        rev: Resegmented::NONE,
    };
}

/// Forwarding latency between two consecutive hops over matched packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Latency {
    /// Latency of the earliest matched initiator packet (the SYN, usually).
    pub first_ns: Option<i64>,
    pub p50_ns: i64,
    /// The 99th percentile, interpolated between ranks as the median is
    /// ([`offset::percentile`]).
    pub p99_ns: i64,
    pub max_ns: i64,
}

/// The connection that already held the tuple a reallocated source port would have had.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PortRealloc {
    pub wanted_sport: u16,
    pub got_sport: u16,
    /// Id of the connection holding `(nat address, wanted port) -> destination` at the
    /// downstream point, when it was captured.
    pub colliding: Option<String>,
    /// True when the colliding connection started first (the usual clash).
    pub colliding_started_first: Option<bool>,
}

/// Evidence for one translation.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LinkEvidence {
    pub matched_fwd: u64,
    pub matched_rev: u64,
    /// Invariant fields the matched packets agreed on.
    pub fields: FieldSets,
    /// Matched packets whose direction disagreed with the path (should be 0).
    pub direction_conflicts: u64,
}

/// An initiator packet the upstream hop carried and the downstream one did not, that
/// the initiator sent again (the same [`resend_key`](super::fingerprint::resend_key):
/// a retransmitted SYN, a resent datagram) and whose copy crossed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Resent {
    /// Corrected upstream times of the lost packet and of the first copy that crossed.
    pub lost_ns: i64,
    pub crossed_ns: i64,
    /// TCP flags of the lost packet.
    pub tcp_flags: Option<u8>,
    /// Initiator packets upstream before it: all of them, and those that crossed.
    pub nth: u32,
    pub crossed_before: u32,
    /// The initiator packets upstream just before and just after it: how far in time,
    /// and whether each crossed.
    pub prev: Option<(i64, bool)>,
    pub next: Option<(i64, bool)>,
}

/// At most this many lost initiator packets per link are examined for copies that
/// crossed: losses worth naming one by one are few, and a link that lost more is
/// reported as lost packets.
pub const MAX_RESENT: u64 = 64;

/// How close in time two packets of one hop with the same fingerprint are copies of
/// one packet rather than two. A bridge whose ports pass through netfilter
/// (`bridge-nf-call-iptables`), above all with a hairpin port, hands one packet to
/// the capture point two or three times within one softirq, microseconds apart. A
/// packet sent again differs in its IP ID or TCP timestamps, and one with neither (a
/// UDP retry over IPv6) follows after hundreds of milliseconds.
pub const COPY_NS: i64 = 1_000_000;

/// [`match_flows`] for two hops of a connection at one point (a host turning it back
/// out of the interface it came in by): an initiator packet crosses from `up`'s flow
/// to `down`'s, so its copy at `down` is seen at the same time or later; a responder
/// packet crosses the other way, its copy at `down` first. Each direction is matched
/// on its own. Index pairs, in `up` order.
fn match_at_one_point(
    p: &PointData,
    up: &[Rec],
    down: &[Rec],
    off: i64,
    window: i64,
) -> Vec<(usize, usize)> {
    // One direction's records, in time order, with their indices in the hop's.
    let side = |recs: &[Rec], fwd: bool| -> (Vec<Rec>, Vec<usize>) {
        (recs.iter().enumerate())
            .filter(|(_, r)| p.is_fwd(r) == fwd)
            .map(|(k, r)| (*r, k))
            .unzip()
    };
    let mut out = Vec::new();
    for fwd in [true, false] {
        let ((u, ui), (d, di)) = (side(up, fwd), side(down, fwd));
        if fwd {
            let pairs = match_flows(&u, off, &d, off, window, true);
            out.extend(pairs.into_iter().map(|(a, b)| (ui[a], di[b])));
        } else {
            let pairs = match_flows(&d, off, &u, off, window, true);
            out.extend(pairs.into_iter().map(|(b, a)| (ui[a], di[b])));
        }
    }
    out.sort_unstable();
    out
}

/// Translation between two consecutive hops.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Link {
    pub from: usize,
    pub to: usize,
    pub change: NatChange,
    pub confidence: f64,
    pub evidence: LinkEvidence,
    pub latency: Option<Latency>,
    pub unmatched: Unmatches,
    /// Packets accounted for by their bytes or by a later ACK, not one for one
    /// (boxed: most links have none).
    pub resegmented: Sparse<Resegmentation>,
    /// Packets a NAT helper rewrote, and those matched by the sequence numbers it
    /// shifted (boxed: most links have none).
    pub rewritten: Sparse<Rewrites>,
    /// Each direction by packet size: the largest that crossed, the data segments
    /// larger than that which did not.
    #[serde(skip)]
    pub sizes: Sizing,
    pub port_realloc: Option<PortRealloc>,
    /// The lost initiator packets (`unmatched.lost_fwd`) whose copies crossed, in time
    /// order; empty when none did or more than `MAX_RESENT` were lost.
    #[serde(skip)]
    pub resent_fwd: Vec<Resent>,
}

// Kept per link of every connection until the report is written; what most links
// have none of is boxed ([`Unmatches`], [`Sizes`], the resegmented packets).
const _: () = assert!(std::mem::size_of::<Link>() <= 296);

/// Fills every connection's `links` (`links[i]` joins `hops[i]` and `hops[i + 1]`) and
/// its return hops' links; replies a hop of the path exchanged with a return hop count
/// as crossed on the path's links. The connections `trace` names keep their packets.
pub(super) fn link_all(
    points: &[PointData],
    conns: &mut [Connection],
    off: &[i64],
    window: i64,
    trace: &Trace,
) {
    conns.par_iter_mut().for_each(|c| {
        let keep = trace.cap_of(&c.id);
        let mut edges = Vec::new();
        // Records of the path's hops that crossed to or from a return hop (none,
        // and nothing allocated, without one).
        let mut crossed: SmallVec<[Vec<bool>; 4]> = smallvec![Vec::new(); c.hops.len()];
        let mut add = |h: usize, flags: &[bool]| {
            let into = &mut crossed[h];
            into.resize(flags.len(), false);
            into.iter_mut().zip(flags).for_each(|(a, b)| *a |= b);
        };
        let path = c.hops.len();
        for (j, r) in c.returns.iter_mut().enumerate() {
            let k = r.beside;
            if let Some(up) = k.checked_sub(1) {
                let (l, e) = link(points, &c.hops[up], &r.hop, up, off, window, [&[], &[]])
                    .split(up, path + j);
                r.toward = Some(ReturnLink {
                    hop: up,
                    matched: l.evidence.matched_rev,
                    unmatched: l.unmatched.lost_rev,
                });
                add(up, &e.crossed[0]);
                edges.extend(keep.map(|_| e));
            }
            if let Some(down) = c.hops.get(k + 1) {
                let (l, e) =
                    link(points, &r.hop, down, k, off, window, [&[], &[]]).split(path + j, k + 1);
                r.from = Some(ReturnLink {
                    hop: k + 1,
                    matched: l.evidence.matched_rev,
                    unmatched: l.unmatched.lost_rev,
                });
                add(k + 1, &e.crossed[1]);
                edges.extend(keep.map(|_| e));
            }
        }
        c.links = c
            .hops
            .windows(2)
            .enumerate()
            .map(|(i, w)| {
                let elsewhere = [crossed[i].as_slice(), crossed[i + 1].as_slice()];
                let (l, e) = link(points, &w[0], &w[1], i, off, window, elsewhere).split(i, i + 1);
                edges.extend(keep.map(|_| e));
                l
            })
            .collect();
        if let Some(cap) = keep {
            c.packets = Some(Box::new(trace::build(points, c, &edges, off, window, cap)));
        }
    });
}

/// A link with what it matched packet by packet: which records of each hop crossed
/// (in `Hop::recs` order), and the records matched one for one and by their bytes.
pub(super) struct Crossing {
    link: Link,
    crossed: [Crossed; 2],
    pairs: Vec<(usize, usize)>,
    shifted: Vec<(usize, usize)>,
    segments: Vec<(usize, usize)>,
}

impl Crossing {
    /// The link, and its packet-by-packet matches between hops numbered `up` and
    /// `down` as in [`trace::Packet::at`].
    fn split(self, up: usize, down: usize) -> (Link, trace::Edge) {
        let edge = trace::Edge {
            up,
            down,
            crossed: self.crossed,
            pairs: self.pairs,
            shifted: self.shifted,
            segments: self.segments,
        };
        (self.link, edge)
    }
}

/// The translation from hop `i` (`up`) to hop `i + 1` (`down`), and which records of
/// each crossed. `elsewhere` flags records of `up` and of `down` (in `Hop::recs`
/// order; empty for none) that crossed by another way: they count as crossed.
pub(super) fn link(
    points: &[PointData],
    up: &Hop,
    down: &Hop,
    i: usize,
    off: &[i64],
    window: i64,
    elsewhere: [&[bool]; 2],
) -> Crossing {
    let (pu, pd) = (&points[up.point], &points[down.point]);
    let (ru, rd) = (up.recs(pu), down.recs(pd));
    let same_point = up.point == down.point;
    let (off_u, off_d) = (off[up.point], off[down.point]);
    let pairs = if same_point {
        match_at_one_point(pu, &ru, &rd, off_u, window)
    } else {
        match_flows(&ru, off_u, &rd, off_d, window, false)
    };
    let mut matched_u: Crossed = smallvec![false; ru.len()];
    let mut matched_d: Crossed = smallvec![false; rd.len()];
    for &(a, b) in &pairs {
        matched_u[a] = true;
        matched_d[b] = true;
    }
    for (flags, into) in elsewhere.iter().zip([&mut matched_u, &mut matched_d]) {
        into.iter_mut()
            .zip(flags.iter())
            .for_each(|(a, &b)| *a |= b);
    }
    let mut hop_u = segments::Hop {
        point: pu,
        recs: &ru,
        off: off_u,
        matched: &mut matched_u,
    };
    let mut hop_d = segments::Hop {
        point: pd,
        recs: &rd,
        off: off_d,
        matched: &mut matched_d,
    };
    // Copies a NAT helper shifted are paired before the bytes are followed: a
    // rewritten payload's new length would read as the stream cut differently.
    let (rewrites, shifted) = if up.flow.tuple.proto == Proto::Tcp {
        rewrites::account(&mut hop_u, &mut hop_d, window, same_point)
    } else {
        Default::default()
    };
    let acc = segments::account(&mut hop_u, &mut hop_d, window, same_point);
    let mut m = Matched::of(&pairs, (up, pu, &ru), (down, pd, &rd), off, |r| r.fields());
    m.add(
        &shifted,
        (up, pu, &ru),
        (down, pd, &rd),
        off,
        Rec::shifted_fields,
    );
    m.add_segments(&acc.pairs, &ru, &rd);
    copies_crossed(&ru, &mut matched_u);
    copies_crossed(&rd, &mut matched_d);
    let side = |hop: &Hop, p, recs, crossed| sizes::Side {
        point: p,
        recs,
        off: off[hop.point],
        crossed,
    };
    let (su, sd) = (
        side(up, pu, &ru, &matched_u),
        side(down, pd, &rd, &matched_d),
    );
    let sizes = Sizing {
        fwd: capturing(pd, off_d, window)
            .map_or_else(Sizes::default, |span| sizes::measure(su, sd, true, span)),
        rev: capturing(pu, off_u, window)
            .map_or_else(Sizes::default, |span| sizes::measure(sd, su, false, span)),
    };
    // Upstream only: initiator packets lost, responder packets appeared; downstream
    // only: initiator packets appeared, responder packets lost.
    let (lost_fwd, appeared_rev) = gaps((up, pu, &ru), &matched_u, (down.point, pd), off, window);
    let (appeared_fwd, lost_rev) = gaps((down, pd, &rd), &matched_d, (up.point, pu), off, window);
    let resent_fwd = if lost_fwd.packets > 0 && lost_fwd.packets <= MAX_RESENT {
        resent((up, pu, &ru), &matched_u, &lost_fwd, off)
    } else {
        Vec::new()
    };
    let unmatched = Unmatches::of(Unmatched {
        lost_fwd,
        lost_rev,
        appeared_fwd,
        appeared_rev,
    });
    let link = Link {
        from: i,
        to: i + 1,
        change: NatChange::between(&up.flow.tuple, &down.flow.tuple),
        confidence: (m.score * 10_000.0).round() / 10_000.0,
        evidence: LinkEvidence {
            matched_fwd: m.fwd,
            matched_rev: m.rev,
            fields: m.field_sets,
            direction_conflicts: m.conflicts,
        },
        latency: m.latency(),
        unmatched,
        resegmented: Sparse::of(acc.resegmented),
        rewritten: Sparse::of(rewrites),
        sizes,
        port_realloc: None,
        resent_fwd,
    };
    Crossing {
        link,
        crossed: [matched_u, matched_d],
        pairs,
        shifted,
        segments: acc.pairs,
    }
}

/// The lost initiator packets of `gap` (upstream, unmatched, in the gap's time span)
/// whose copies crossed later, with where each sits among the initiator packets.
fn resent((hop, p, recs): HopRecs, matched: &[bool], gap: &Gap, off: &[i64]) -> Vec<Resent> {
    let (Some(first), Some(last)) = (gap.first_ns, gap.last_ns) else {
        return Vec::new();
    };
    let t = |r: &Rec| r.ts - off[hop.point];
    // The hop's initiator packets in time order, and whether each crossed.
    let fwd: Vec<(&Rec, bool)> = recs
        .iter()
        .zip(matched)
        .filter(|(r, _)| p.is_fwd(r))
        .map(|(r, &m)| (r, m))
        .collect();
    let tcp = hop.flow.tuple.proto == Proto::Tcp;
    let mut out = Vec::new();
    let mut crossed_before = 0u32;
    for (i, &(r, m)) in fwd.iter().enumerate() {
        if m {
            crossed_before += 1;
            continue;
        }
        let ts = t(r);
        if ts < first || ts > last {
            continue;
        }
        let Some(crossed_ns) = fwd[i + 1..]
            .iter()
            .find(|(c, cm)| *cm && c.resend() == r.resend())
            .map(|(c, _)| t(c))
        else {
            continue;
        };
        let near = |j: Option<usize>| {
            j.and_then(|j| fwd.get(j))
                .map(|(o, om)| ((t(o) - ts).abs(), *om))
        };
        out.push(Resent {
            lost_ns: ts,
            crossed_ns,
            tcp_flags: tcp.then_some(r.tcp_flags()),
            nth: i as u32,
            crossed_before,
            prev: near(i.checked_sub(1)),
            next: near(Some(i + 1)),
        });
    }
    out
}

/// When point `p` (clock offset `off`) was capturing, clock-corrected and widened by
/// the window on both sides, but kept the window in from each end of the time range
/// it was read in (copies of a packet sent there may lie outside it, unread); `None`
/// for a point with no packet or nothing left.
pub(super) fn capturing(p: &PointData, off: i64, window: i64) -> Option<(i64, i64)> {
    let near = (p.info.first_ns? - window, p.info.last_ns? + window);
    let (lo, hi) = p.info.range.inner(near, window)?;
    Some((lo - off, hi - off))
}

/// A hop, its point and its records.
type HopRecs<'a> = (&'a Hop, &'a PointData, &'a [Rec]);

/// What the matched packets of two hops say.
#[derive(Default)]
struct Matched {
    fwd: u64,
    rev: u64,
    conflicts: u64,
    /// Combined evidence, 1 - Π(1 - w) over the packets.
    score: f64,
    /// The field sets of the matched packets.
    field_sets: FieldSets,
    /// Forwarding latency of every matched packet.
    lat: SmallVec<[i64; 32]>,
    /// Upstream time and latency of the earliest matched initiator packet.
    first_fwd: Option<(i64, i64)>,
}

impl Matched {
    /// What `pairs` say, each matched on the field set `fields` gives its upstream
    /// record.
    fn of(
        pairs: &[(usize, usize)],
        up: HopRecs,
        down: HopRecs,
        off: &[i64],
        fields: impl Fn(&Rec) -> u8,
    ) -> Matched {
        let mut m = Matched {
            lat: SmallVec::with_capacity(pairs.len()),
            ..Matched::default()
        };
        m.add(pairs, up, down, off, fields);
        m
    }

    /// Adds `pairs`, as [`Matched::of`] takes them.
    fn add(
        &mut self,
        pairs: &[(usize, usize)],
        up: HopRecs,
        down: HopRecs,
        off: &[i64],
        fields: impl Fn(&Rec) -> u8,
    ) {
        let ((up, pu, ru), (down, pd, rd)) = (up, down);
        let m = self;
        for &(a, b) in pairs {
            let (x, y) = (&ru[a], &rd[b]);
            let (tu, td) = (x.ts - off[up.point], y.ts - off[down.point]);
            let fwd = pu.is_fwd(x);
            if fwd != pd.is_fwd(y) {
                m.conflicts += 1;
            }
            m.field_sets.add(fields(x));
            m.score = 1.0 - (1.0 - m.score) * (1.0 - x.strength().min(y.strength()).weight());
            if fwd {
                m.fwd += 1;
                m.lat.push(td - tu);
                if m.first_fwd.is_none_or(|(t, _)| tu < t) {
                    m.first_fwd = Some((tu, td - tu));
                }
            } else {
                m.rev += 1;
                m.lat.push(tu - td);
            }
        }
    }

    /// Adds segments that carried the same bytes cut differently, as evidence (not as
    /// matched packets: their counts differ from hop to hop).
    fn add_segments(&mut self, pairs: &[(usize, usize)], ru: &[Rec], rd: &[Rec]) {
        for &(a, b) in pairs {
            let (x, y) = (&ru[a], &rd[b]);
            self.field_sets.add(x.segment_fields());
            self.score = 1.0 - (1.0 - self.score) * (1.0 - x.strength().min(y.strength()).weight());
        }
    }

    fn latency(mut self) -> Option<Latency> {
        let max_ns = *self.lat.iter().max()?;
        Some(Latency {
            first_ns: self.first_fwd.map(|(_, l)| l),
            p50_ns: offset::median(&mut self.lat).unwrap_or(0),
            p99_ns: offset::percentile(&mut self.lat, 99).unwrap_or(0),
            max_ns,
        })
    }
}

/// Marks as crossed the unmatched records of a hop that are copies of a crossed one
/// ([`COPY_NS`]): the other hop saw that packet, so no copy of it was lost there or
/// appeared from nowhere.
fn copies_crossed(recs: &[Rec], matched: &mut [bool]) {
    if !matched.iter().any(|&m| m) || matched.iter().all(|&m| m) {
        return;
    }
    let mut crossed: Vec<(u64, i64)> = recs
        .iter()
        .zip(matched.iter())
        .filter(|(_, &m)| m)
        .map(|(r, _)| (r.fp(), r.ts))
        .collect();
    crossed.sort_unstable();
    for (r, m) in recs.iter().zip(matched.iter_mut()) {
        if *m {
            continue;
        }
        let from = (r.fp(), r.ts.saturating_sub(COPY_NS));
        let i = crossed.partition_point(|&c| c < from);
        *m = crossed
            .get(i)
            .is_some_and(|&(fp, ts)| fp == r.fp() && ts <= r.ts.saturating_add(COPY_NS));
    }
}

/// The unmatched packets of one hop, initiator ones and responder ones, counting only
/// those sent while the other hop's point was capturing (within the window of its
/// first and last packet).
fn gaps(
    (hop, p, recs): HopRecs,
    matched: &[bool],
    (other, po): (usize, &PointData),
    off: &[i64],
    window: i64,
) -> (Gap, Gap) {
    let (mut fwd, mut rev) = (Gap::default(), Gap::default());
    let Some((first, last)) = capturing(po, off[other], window) else {
        return (fwd, rev);
    };
    let mut before: Option<i64> = None;
    for (r, &m) in recs.iter().zip(matched) {
        let t = r.ts - off[hop.point];
        let quiet = before.map(|b| t.saturating_sub(b));
        before = Some(t);
        if m || t < first || t > last {
            continue;
        }
        let flags = (hop.flow.tuple.proto == Proto::Tcp).then_some(r.tcp_flags());
        if p.is_fwd(r) {
            fwd.add(t, flags, quiet);
        } else {
            rev.add(t, flags, quiet);
        }
    }
    (fwd, rev)
}

/// For every link whose source port changed, the connection holding the tuple the
/// connection would have had downstream with its original source port (another
/// connection's hop at the same point: the last to take it before, when several
/// did), and whether that one started first.
pub(super) fn port_reallocs(conns: &mut [Connection]) {
    // The tuples wanted: few connections have their port moved, so only those tuples
    // are looked for among every hop, not every hop indexed.
    let wanted: Vec<(usize, usize, (usize, Tuple))> = conns
        .par_iter()
        .enumerate()
        .flat_map_iter(|(ci, c)| {
            c.links
                .iter()
                .enumerate()
                .filter(|(_, l)| l.change.sport_changed)
                .map(move |(i, _)| {
                    let (up, down) = (&c.hops[i], &c.hops[i + 1]);
                    let t = Tuple {
                        sport: up.flow.tuple.sport,
                        ..down.flow.tuple
                    };
                    (ci, i, (down.point, t))
                })
        })
        .collect();
    if wanted.is_empty() {
        return;
    }
    let mut held: HashMap<(usize, Tuple), SmallVec<[u32; 1]>> =
        wanted.iter().map(|w| (w.2, SmallVec::new())).collect();
    // Every hop is looked up (on every core), the few found kept in order.
    let holders: Vec<((usize, Tuple), u32)> = conns
        .par_iter()
        .enumerate()
        .flat_map_iter(|(ci, c)| {
            let held = &held;
            c.hops
                .iter()
                .map(|h| (h.point, h.flow.tuple))
                .filter(move |k| held.contains_key(k))
                .map(move |k| (k, ci as u32))
        })
        .collect();
    for (k, ci) in holders {
        held.get_mut(&k).expect("only held tuples").push(ci);
    }
    // What each moved port wanted and who held it, decided before any is written.
    let found: Vec<(usize, usize, PortRealloc)> = wanted
        .into_iter()
        .map(|(ci, i, key)| {
            let c = &conns[ci];
            let (up, down) = (&c.hops[i], &c.hops[i + 1]);
            // The holder is the connection that took the tuple last before this one
            // began (a tuple used again after its entry expired was taken anew: an
            // earlier user that went quiet held nothing), else the first after.
            let others = held[&key].iter().map(|&o| o as usize).filter(|&o| o != ci);
            let start = c.first_ns();
            let holder = others
                .clone()
                .filter(|&o| conns[o].first_ns() <= start)
                .max_by_key(|&o| (conns[o].first_ns(), std::cmp::Reverse(o)))
                .or_else(|| others.min_by_key(|&o| (conns[o].first_ns(), o)));
            let r = PortRealloc {
                wanted_sport: up.flow.tuple.sport,
                got_sport: down.flow.tuple.sport,
                colliding: holder.map(|o| conns[o].id.clone()),
                colliding_started_first: holder.map(|o| conns[o].first_ns() <= c.first_ns()),
            };
            (ci, i, r)
        })
        .collect();
    for (ci, i, r) in found {
        conns[ci].links[i].port_realloc = Some(r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::correlate::testkit::{lost_request, point, tcp_conv, view, MS, US};
    use crate::correlate::{correlate, Config, Correlation};
    use crate::model::tcp_flags::{ACK, PSH, RST};
    use crate::model::NatKind;

    #[test]
    fn a_sparse_part_holds_nothing_when_it_is_none_and_reads_and_writes_as_its_value() {
        let none = Sparse::of(*Resegmentation::NONE);
        assert!(none.0.is_none(), "nothing allocated for a link without any");
        assert!(none.is_none());
        assert_eq!(none, Sparse::default());
        let some = Resegmentation {
            fwd: Resegmented {
                sent: 3,
                received: 1,
                bytes: 3000,
                superseded_acks: 0,
            },
            rev: Resegmented::NONE,
        };
        let kept = Sparse::of(some);
        assert!(kept.0.is_some());
        assert_eq!(*kept, some);
        assert_eq!(kept.fwd.received, 1);
        for (sparse, value) in [(&none, Resegmentation::NONE), (&kept, &some)] {
            assert_eq!(
                serde_json::to_string(sparse).unwrap(),
                serde_json::to_string(value).unwrap()
            );
        }
    }

    fn run(
        inside: &[Vec<crate::model::Packet>],
        outside: &[Vec<crate::model::Packet>],
    ) -> Correlation {
        let points = vec![
            point("docker0", 0, &inside.concat()),
            point("eth0", 1, &outside.concat()),
        ];
        correlate(points, Vec::new(), Config::default())
    }

    /// The connection whose first hop's initiator sends from `src`.
    fn conn<'a>(c: &'a Correlation, src: &str) -> &'a Connection {
        let src: std::net::SocketAddr = src.parse().unwrap();
        c.connections
            .iter()
            .find(|c| {
                let t = c.hops[0].flow.tuple;
                (t.src, t.sport) == (src.ip(), src.port())
            })
            .unwrap_or_else(|| panic!("no connection from {src}"))
    }

    #[test]
    fn classifies_snat_dnat_both_and_a_moved_port_with_its_holder() {
        let lat = 30 * US;
        // SNAT (MASQUERADE keeping the port).
        let snat = tcp_conv(0, "172.17.0.2:40000", "198.51.100.7:443", 1000);
        let snat_out = view(&snat, "203.0.113.1:40000", "198.51.100.7:443", lat, 1);
        // DNAT to a published port: the initiator is outside, eth0 the upstream hop.
        let dnat_out = tcp_conv(MS, "198.51.100.20:51000", "203.0.113.1:8080", 2000);
        let dnat = view(&dnat_out, "198.51.100.20:51000", "172.17.0.3:80", lat, 1);
        // Both: a service address rewritten, and the source masqueraded.
        let both = tcp_conv(2 * MS, "172.17.0.4:41000", "10.96.0.10:53", 3000);
        let both_out = view(&both, "203.0.113.1:41000", "198.51.100.53:53", lat, 1);
        // Two containers use one source port to one server: the second one's moves.
        let first = tcp_conv(3 * MS, "172.17.0.5:42000", "198.51.100.9:80", 4000);
        let first_out = view(&first, "203.0.113.1:42000", "198.51.100.9:80", lat, 1);
        let second = tcp_conv(4 * MS, "172.17.0.6:42000", "198.51.100.9:80", 5000);
        let second_out = view(&second, "203.0.113.1:42001", "198.51.100.9:80", lat, 1);
        let c = run(
            &[snat, dnat, both, first, second],
            &[snat_out, dnat_out, both_out, first_out, second_out],
        );
        assert_eq!(c.connections.len(), 5);

        let kind = |src: &str| {
            let cn = conn(&c, src);
            assert_eq!(cn.links.len(), 1);
            cn.links[0].change
        };
        let snat = kind("172.17.0.2:40000");
        assert_eq!(snat.kind, NatKind::Snat);
        assert!(snat.src_addr_changed && !snat.sport_changed && !snat.port_reallocated);
        let dnat = kind("198.51.100.20:51000");
        assert_eq!(dnat.kind, NatKind::Dnat);
        assert!(dnat.dst_addr_changed && dnat.dport_changed && !dnat.src_addr_changed);
        assert_eq!(kind("172.17.0.4:41000").kind, NatKind::SnatDnat);

        let first = conn(&c, "172.17.0.5:42000");
        assert_eq!(first.links[0].port_realloc, None);
        let second = conn(&c, "172.17.0.6:42000");
        let link = &second.links[0];
        assert_eq!(link.change.kind, NatKind::Snat);
        assert!(link.change.sport_changed && link.change.port_reallocated);
        assert_eq!(
            link.port_realloc,
            Some(PortRealloc {
                wanted_sport: 42000,
                got_sport: 42001,
                colliding: Some(first.id.clone()),
                colliding_started_first: Some(true),
            })
        );
    }

    #[test]
    fn link_evidence_latency_and_unmatched_packets() {
        let lat = 30 * US;
        // The request never left; the host answered the client with a reset itself.
        let (inside, outside) = lost_request(lat);
        let c = run(&[inside], &[outside]);
        assert_eq!(c.connections.len(), 1);
        let link = &c.connections[0].links[0];
        assert_eq!((link.from, link.to), (0, 1));
        assert_eq!(
            (link.evidence.matched_fwd, link.evidence.matched_rev),
            (3, 2)
        );
        assert_eq!(
            link.evidence.fields.names().as_slice(),
            ["ip.id", "tcp.seq", "tcp.ack", "tcp.flags", "payload"]
        );
        assert_eq!(link.evidence.direction_conflicts, 0);
        assert_eq!(link.confidence, 1.0);
        assert_eq!(
            link.latency,
            Some(Latency {
                first_ns: Some(lat),
                p50_ns: lat,
                p99_ns: lat,
                max_ns: lat,
            })
        );
        let gap = |t: i64, flags: u8, quiet: i64| Gap {
            packets: 1,
            first_ns: Some(t),
            last_ns: Some(t),
            first_tcp_flags: Some(flags),
            quiet_before_ns: Some(quiet),
        };
        assert_eq!(
            *link.unmatched,
            Unmatched {
                // Each a millisecond after the packet before it at its hop.
                lost_fwd: gap(3 * MS, PSH | ACK, MS),
                appeared_rev: gap(6 * MS, RST, MS),
                ..Unmatched::default()
            }
        );
    }
}
