//! Paths: each connection as the sequence of hops it took across the capture points.
//!
//! [`connection`] builds, for one component, one [`Hop`] per flow (the two one-way
//! halves of a connection that a point saw under different tuples make one hop), sets
//! the return hops apart (`returns`: replies at a point beside the path), orders the
//! hops along the initiator's direction (TTL decreases at every routed hop; within one
//! TTL, matched packets say which point saw them first; corrected time orders the
//! rest) and decides the connection's initiator evidence. [`in_time_order`] says in
//! which order components are made into connections (their first packet's), and
//! [`number`] numbers the connections in order of their first packet once all are
//! made. [`relate`] records the flow pairs that could not join one path as
//! [`Related`] on both connections.
//!
//! The links between consecutive hops are the translations step's.

use std::borrow::Cow;

use foldhash::HashMap;
use rayon::prelude::*;

use serde::Serialize;
use smallvec::SmallVec;

use super::components::{complementary, Components};
use super::pairing::{match_all, EdgeKey, Vote};
use super::points::{PointData, Rec};
use super::returns::{self, Joined, ReturnHop};
use super::Connection;
use crate::flows::{Flow, InitiatorEvidence};
use crate::model::Tuple;

/// A connection as seen at one capture point.
#[derive(Clone, Debug)]
pub struct Hop {
    pub point: usize,
    /// The flow, oriented in the connection's initiator direction. When the point saw
    /// the two directions under different tuples (see `reply_tuple`), this holds both
    /// halves' counters under the initiator half's tuple.
    pub flow: Flow,
    /// The tuple responder packets carried at this point, when it is not the reverse
    /// of `flow.tuple`: the point saw replies already translated back. A Linux bridge
    /// with bridge netfilter (`br_netfilter`) does this: conntrack runs on the bridge
    /// port, before the bridge device's capture point.
    /// (Boxed: most hops have none.)
    pub reply_tuple: Option<Box<Tuple>>,
    /// TTL / hop limit of the first initiator packet seen here.
    pub fwd_ttl: Option<u8>,
    /// First and last packet times, clock-corrected.
    pub first_ns: i64,
    pub last_ns: i64,
    /// Flow indices at the point: one, or the initiator half and the reply half (kept
    /// inline, not in an allocation of their own).
    #[doc(hidden)]
    pub flow_idx: SmallVec<[usize; 2]>,
}

// Kept per hop of every connection until the report is written.
const _: () = assert!(std::mem::size_of::<Hop>() <= 224);

impl Hop {
    /// The hop's packet records (both halves), in time order: a flow's own records
    /// when the hop is one flow.
    pub(super) fn recs<'p>(&self, p: &'p PointData) -> Cow<'p, [Rec]> {
        if let [f] = self.flow_idx[..] {
            return Cow::Borrowed(p.flow_recs(f));
        }
        let mut v: Vec<Rec> = self
            .flow_idx
            .iter()
            .flat_map(|&f| p.flow_recs(f).iter().copied())
            .collect();
        if self.flow_idx.len() > 1 {
            v.sort_by_key(|r| (r.ts, r.flow, r.fp()));
        }
        Cow::Owned(v)
    }
}

/// A flow pair with matching packets that could not join this connection's path.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Related {
    /// This connection's hop point.
    pub point: String,
    /// The other connection, and its point.
    pub connection: String,
    pub other_point: String,
    pub matched_packets: u64,
}

/// The components' members, taken out of them, in the order of each component's first
/// packet (clock-corrected; then the component's own order): the order connections
/// are made in, a batch at a time, so that the records they read can be given back
/// from the front of each point's order as they go.
pub(super) fn in_time_order(
    points: &[PointData],
    comps: &mut Components,
    off: &[i64],
) -> Vec<Vec<usize>> {
    let members = std::mem::take(&mut comps.members);
    let first = |m: &[usize]| {
        (m.iter())
            .map(|&n| {
                let (p, f) = comps.nodes[n];
                points[p].flows[f as usize].first_ns - off[p]
            })
            .min()
    };
    let mut keyed: Vec<(Option<i64>, usize, Vec<usize>)> = (members.into_iter().enumerate())
        .map(|(i, m)| (first(&m), i, m))
        .collect();
    keyed.sort_unstable_by_key(|(t, i, _)| (*t, *i));
    keyed.into_iter().map(|(_, _, m)| m).collect()
}

/// Which capture points are leaves of which: point `p` is a leaf of `q` when every
/// connection seen at `p` was seen at `q` too, and `q` saw others: a container's
/// veth beside its bridge, which carries every container's traffic. Between
/// separate captures, the packets a bridge takes in from its port carry one kernel
/// time stamp at both and the file order says nothing; the leaf is then the edge the
/// traffic came in by, or left by.
pub(super) struct Leaves {
    /// Connections seen at each point.
    seen: Vec<u32>,
    /// Connections seen at both points of a pair (each pair once, in either order).
    both: HashMap<(usize, usize), u32>,
    /// Pairs (leaf, other) the connections seen did not tell apart, learned from the
    /// order the packets gave ([`Leaves::learn`]).
    learned: Vec<(usize, usize)>,
}

/// How many connections whose packets ordered two points [`Leaves::learn`] asks, and
/// how many with both points it looks at, at most, per pair.
const LEARN_DECIDED: u32 = 16;
const LEARN_LOOKED: u32 = 1024;

impl Leaves {
    /// From the connections' members, as [`in_time_order`] gives them: the points
    /// each was seen at, then what the pairs those leave open learn
    /// ([`Leaves::learn`]).
    pub(super) fn of(
        points: &[PointData],
        comps: &Components,
        members: &[Vec<usize>],
        off_window: (&[i64], i64),
    ) -> Leaves {
        let mut leaves = Leaves {
            seen: vec![0; points.len()],
            both: HashMap::default(),
            learned: Vec::new(),
        };
        let mut at: Vec<usize> = Vec::new();
        for m in members {
            at.clear();
            at.extend(m.iter().map(|&n| comps.nodes[n].0));
            at.sort_unstable();
            at.dedup();
            for (i, &p) in at.iter().enumerate() {
                leaves.seen[p] += 1;
                for &q in &at[i + 1..] {
                    *leaves.both.entry((p, q)).or_insert(0) += 1;
                }
            }
        }
        leaves.learn(points, comps, members, off_window);
        leaves
    }

    /// Whether point `p` is a leaf of point `q`: by the connections, or because
    /// `--links` says `p`'s interface is a port of `q`'s bridge.
    fn leaf_of(&self, points: &[PointData], p: usize, q: usize) -> bool {
        let both = self.both.get(&(p.min(q), p.max(q))).copied().unwrap_or(0);
        let port_of = (points[p].info.master.as_deref()) == Some(points[q].info.link_name());
        port_of
            || both > 0 && both == self.seen[p] && self.seen[q] > both
            || self.learned.contains(&(p, q))
    }

    /// Learns which of two points is the leaf where the connections seen do not tell
    /// (every connection seen at one was seen at the other: a host with one busy
    /// container, captured on its veth and on its bridge). Connections whose matched
    /// packets ordered the two points' hops (one TTL, one hop at each) say it: the
    /// leaf is the point farther from the routed hop, so the later of the two when the
    /// traffic came in through a routed hop (a higher TTL before them), the earlier
    /// when it leaves through one. The majority of the first [`LEARN_DECIDED`] such
    /// connections (in time order) decides; a tie, or none among the first
    /// [`LEARN_LOOKED`] connections seen at both, leaves the pair as it was. Without
    /// it, a connection whose packets do not order the two (a lone datagram, stamped
    /// once at both) would take the order of the input files.
    fn learn(
        &mut self,
        points: &[PointData],
        comps: &Components,
        members: &[Vec<usize>],
        (off, window): (&[i64], i64),
    ) {
        let mut open: Vec<(usize, usize)> = (self.both.keys().copied())
            .filter(|&(p, q)| !self.leaf_of(points, p, q) && !self.leaf_of(points, q, p))
            .collect();
        if open.is_empty() {
            return;
        }
        open.sort_unstable();
        // Per open pair: connections looked at, and those that made each point the leaf.
        let mut tally: Vec<(u32, [u32; 2])> = vec![(0, [0, 0]); open.len()];
        let busy = |(looked, votes): &(u32, [u32; 2])| {
            *looked < LEARN_LOOKED && votes[0] + votes[1] < LEARN_DECIDED
        };
        let mut at: SmallVec<[usize; 8]> = SmallVec::new();
        for m in members {
            if !tally.iter().any(busy) {
                break;
            }
            at.clear();
            at.extend(m.iter().map(|&n| comps.nodes[n].0));
            let wanted: SmallVec<[usize; 4]> = (0..open.len())
                .filter(|&i| busy(&tally[i]) && at.contains(&open[i].0) && at.contains(&open[i].1))
                .collect();
            if wanted.is_empty() {
                continue;
            }
            let (path, _) = returns::split(points, hops(points, &comps.nodes, m, off), off, window);
            for i in wanted {
                tally[i].0 += 1;
                let (p, q) = open[i];
                let one = |point: usize| {
                    let mut here = path.iter().filter(|h| h.point == point);
                    here.next().filter(|_| here.next().is_none())
                };
                let (Some(x), Some(y)) = (one(p), one(q)) else {
                    continue;
                };
                let Some(ttl) = x.fwd_ttl.filter(|_| y.fwd_ttl == x.fwd_ttl) else {
                    continue;
                };
                let v = precedence(points, x, y, off, window);
                if v == 0 {
                    continue;
                }
                // A routed hop before the two (a higher TTL), or after them (a lower).
                let routed = |before: bool| {
                    (path.iter().filter_map(|h| h.fwd_ttl)).any(|t| (t > ttl) == before && t != ttl)
                };
                let x_leaf = match (routed(true), routed(false)) {
                    (true, false) => v < 0,
                    (false, true) => v > 0,
                    _ => continue,
                };
                tally[i].1[usize::from(!x_leaf)] += 1;
            }
        }
        for (&(p, q), (_, [p_leaf, q_leaf])) in open.iter().zip(tally) {
            match p_leaf.cmp(&q_leaf) {
                std::cmp::Ordering::Greater => self.learned.push((p, q)),
                std::cmp::Ordering::Less => self.learned.push((q, p)),
                std::cmp::Ordering::Equal => {}
            }
        }
    }
}

/// The connection of the component whose members are `members` (taken out of `comps`
/// by [`in_time_order`]): its hops in order, no links yet, no id (see [`number`]).
pub(super) fn connection(
    points: &[PointData],
    comps: &Components,
    members: &[usize],
    leaves: &Leaves,
    (off, window): (&[i64], i64),
) -> Connection {
    let hops = hops(points, &comps.nodes, members, off);
    let (hops, returns) = returns::split(points, hops, off, window);
    let hops = order(points, hops, leaves, off, window);
    let returns = returns
        .into_iter()
        .map(|(hop, (point, flows))| {
            let beside = hops
                .iter()
                .position(|h| h.point == point && h.flow_idx[..] == flows[..])
                .expect("the hop beside a return hop is on the path");
            let node = comps.first_node[hop.point] + hop.flow_idx[0];
            ReturnHop {
                joined: comps.joined.get(&node).copied().unwrap_or(Joined::Packets),
                hop,
                beside,
                toward: None,
                from: None,
            }
        })
        .collect();
    let initiator = hops
        .iter()
        .map(|h| h.flow.initiator)
        .min()
        .unwrap_or(InitiatorEvidence::FirstPacket);
    Connection {
        id: String::new(),
        proto: hops[0].flow.tuple.proto,
        hops,
        links: Vec::new(),
        returns,
        related: Vec::new(),
        initiator,
        streams: None,
        packets: None,
        about: None,
    }
}

/// Sorts connections by first packet (then protocol, first hop's tuple, point and
/// flow there: no two connections share the last two, so the order is the same
/// whatever order they were made in) and numbers them `c1`, `c2`, ...
pub(super) fn number(conns: &mut [Connection]) {
    conns.par_sort_unstable_by(|a, b| {
        a.first_ns()
            .cmp(&b.first_ns())
            .then(a.proto.cmp(&b.proto))
            .then(a.hops[0].flow.tuple.cmp(&b.hops[0].flow.tuple))
            .then(a.hops[0].point.cmp(&b.hops[0].point))
            .then(a.hops[0].flow_idx.cmp(&b.hops[0].flow_idx))
    });
    conns
        .par_iter_mut()
        .enumerate()
        .for_each(|(i, c)| c.id = format!("c{}", i + 1));
}

/// The hops of one component, by point: one per flow, except that the two one-way
/// halves of the connection seen at one point under different tuples make one hop.
fn hops(points: &[PointData], nodes: &[(usize, u32)], members: &[usize], off: &[i64]) -> Vec<Hop> {
    // The members by point (a stable sort: in member order within a point).
    let mut by_point: SmallVec<[(usize, u32); 8]> = members.iter().map(|&m| nodes[m]).collect();
    by_point.sort_by_key(|&(p, _)| p);
    let mut hops: Vec<Hop> = Vec::with_capacity(members.len());
    for run in by_point.chunk_by(|a, b| a.0 == b.0) {
        let p = run[0].0;
        let pd = &points[p];
        let flows: SmallVec<[u32; 4]> = run.iter().map(|&(_, f)| f).collect();
        for g in halves(pd, &flows) {
            let mut flow = pd.flows[g[0]].clone();
            let reply_tuple = g.get(1).map(|&r| {
                let reply = &pd.flows[r];
                flow.absorb_reply(reply);
                Box::new(reply.sending_tuple())
            });
            let mut hop = Hop {
                point: p,
                first_ns: flow.first_ns - off[p],
                last_ns: flow.last_ns - off[p],
                fwd_ttl: None,
                flow,
                reply_tuple,
                flow_idx: g,
            };
            hop.fwd_ttl = hop.recs(pd).iter().find(|r| pd.is_fwd(r)).map(|r| r.ttl());
            hops.push(hop);
        }
    }
    hops
}

/// Groups a point's flows of one component into hops: each flow alone, or with its
/// complementary half (initiator half first).
fn halves(pd: &PointData, flows: &[u32]) -> SmallVec<[SmallVec<[usize; 2]>; 4]> {
    let mut groups = SmallVec::new();
    let mut taken: SmallVec<[bool; 8]> = smallvec::smallvec![false; flows.len()];
    for i in 0..flows.len() {
        if taken[i] {
            continue;
        }
        taken[i] = true;
        let fi = &pd.flows[flows[i] as usize];
        let partner = (i + 1..flows.len()).find(|&j| {
            let fj = &pd.flows[flows[j] as usize];
            // After orientation one half carries initiator packets only and the
            // other responder packets only.
            !taken[j] && complementary(fi, fj) && (fi.packets[0] > 0) != (fj.packets[0] > 0)
        });
        let mut g: SmallVec<[usize; 2]> = smallvec::smallvec![flows[i] as usize];
        if let Some(j) = partner {
            taken[j] = true;
            g.push(flows[j] as usize);
            if pd.flows[g[0]].packets[0] == 0 {
                g.swap(0, 1);
            }
        }
        groups.push(g);
    }
    groups
}

/// Hops upstream first. A routed hop decrements the TTL of initiator packets, so the
/// highest TTL is the earliest hop. Within one TTL (a veth and its bridge, or several
/// interfaces of one capture with coarse timestamps) the matched packets of two hops
/// vote ([`precedence`]): an initiator packet seen earlier at x says x is upstream, a
/// responder packet seen earlier at x says x is downstream; the hops are ranked by the
/// pairs whose majority puts them upstream, less those that put them downstream.
/// Corrected time of the first initiator packet orders the rest; where two hops of
/// one capture socket saw it at one time
/// (`tcpdump -i any` stamps a packet once, however many interfaces it crosses: a
/// connection with no replies to vote), the one whose flow the capture wrote first is
/// upstream ([`PointData::first_frame`]; all 0 for other inputs). Hops of two
/// captures still tied go by the bridge one is a port of ([`Leaves`]), then by their
/// tuples: the hop whose tuple a later hop shows comes after the translation.
fn order(
    points: &[PointData],
    hops: Vec<Hop>,
    leaves: &Leaves,
    off: &[i64],
    window: i64,
) -> Vec<Hop> {
    let first_fwd: SmallVec<[i64; 4]> = hops
        .iter()
        .map(|h| {
            let pd = &points[h.point];
            h.recs(pd)
                .iter()
                .find(|r| pd.is_fwd(r))
                .map_or(h.first_ns, |r| r.ts - off[h.point])
        })
        .collect();
    let mut wins: SmallVec<[i64; 4]> = smallvec::smallvec![0; hops.len()];
    for x in 0..hops.len() {
        for y in x + 1..hops.len() {
            if hops[x].fwd_ttl != hops[y].fwd_ttl {
                continue;
            }
            // Each pair's majority counts once, however many packets it rests on:
            // the pairs of a hairpin's hops match different numbers of packets, and a
            // sum of votes let the pair with more outweigh the order the others gave.
            let v = precedence(points, &hops[x], &hops[y], off, window);
            wins[x] += v;
            wins[y] -= v;
        }
    }
    let mut keyed: Vec<_> = (hops.into_iter().enumerate())
        .map(|(i, h)| {
            let pd = &points[h.point];
            let frame = h.flow_idx.iter().map(|&f| pd.first_frame[f]).min();
            // Points are numbered in input order: across inputs this orders as the
            // point did before.
            let key = (
                std::cmp::Reverse(h.fwd_ttl),
                std::cmp::Reverse(wins[i]),
                first_fwd[i],
                pd.input,
                frame,
                h.point,
            );
            (key, h)
        })
        .collect();
    keyed.sort_by(|(ka, a), (kb, b)| ka.cmp(kb).then_with(|| a.flow_idx.cmp(&b.flow_idx)));
    // Hops of two captures still tied (one TTL, no pair's majority, one time: the
    // order of the inputs decided) where one point is a leaf of the other: the leaf is
    // the edge the traffic came in by, unless it came from a routed hop (a higher
    // TTL), then the edge it left by.
    let inbound = |ttl: Option<u8>| keyed.iter().any(|(k, _)| k.0 .0 > ttl);
    let leaf_last: SmallVec<[bool; 8]> = keyed.iter().map(|(k, _)| inbound(k.0 .0)).collect();
    for _ in 0..keyed.len() {
        let mut swapped = false;
        for i in 1..keyed.len() {
            let ((ka, a), (kb, b)) = (&keyed[i - 1], &keyed[i]);
            // Apart only by the inputs' order, or by the points' within one input
            // whose frames did not tell.
            let tied = (ka.0, ka.1, ka.2) == (kb.0, kb.1, kb.2) && (ka.3 != kb.3 || ka.4 == kb.4);
            let swap = if leaf_last[i] {
                leaves.leaf_of(points, a.point, b.point)
            } else {
                leaves.leaf_of(points, b.point, a.point)
            };
            if tied && swap {
                keyed.swap(i - 1, i);
                swapped = true;
            }
        }
        if !swapped {
            break;
        }
    }
    // Hops still tied whose tuples differ (one packet seen at two points at once,
    // translated between them: a bridge's capture shows its port's packet already
    // DNATed by bridge netfilter, with the time the port stamped it): NAT changes the
    // tuple only once on the way, so the hop whose tuple a later hop shows is the one
    // after the translation.
    for _ in 0..keyed.len() {
        let mut swapped = false;
        for i in 1..keyed.len() {
            let ((ka, a), (kb, b)) = (&keyed[i - 1], &keyed[i]);
            let tied = (ka.0, ka.1, ka.2) == (kb.0, kb.1, kb.2) && (ka.3 != kb.3 || ka.4 == kb.4);
            let (ta, tb) = (a.flow.tuple, b.flow.tuple);
            let later = |t: Tuple| keyed[i + 1..].iter().any(|(_, c)| c.flow.tuple == t);
            if tied
                && ta != tb
                && !leaves.leaf_of(points, a.point, b.point)
                && !leaves.leaf_of(points, b.point, a.point)
                && later(ta)
                && !later(tb)
            {
                keyed.swap(i - 1, i);
                swapped = true;
            }
        }
        if !swapped {
            break;
        }
    }
    keyed.into_iter().map(|(_, h)| h).collect()
}

/// Positive when the packets of `x` and `y` say `x` is upstream of `y`, negative when
/// they say the opposite, 0 when they do not say. Two points of one capture share its
/// clock: there the initiator's packets decide, the responder's only where those tie,
/// for the replies need not come back the way the requests went (in a hairpin through
/// a bridge, the bridge device sees the replies one container's port forwarded to the
/// other's after that port did, which would put the bridge before the port the
/// requests came from). Between captures, whose clocks are matched by the midpoint of
/// the two directions' delays, both directions count alike.
fn precedence(points: &[PointData], x: &Hop, y: &Hop, off: &[i64], window: i64) -> i64 {
    let (px, py) = (&points[x.point], &points[y.point]);
    let (rx, ry) = (x.recs(px), y.recs(py));
    // Matched packets that put `x` first less those that put it second, by direction.
    let mut votes = [0i64; 2];
    for (i, j) in match_all(
        &rx,
        off[x.point],
        &ry,
        off[y.point],
        window,
        x.point == y.point,
    ) {
        let (tx, ty) = (rx[i].ts - off[x.point], ry[j].ts - off[y.point]);
        let earlier = (tx < ty) as i64 - (ty < tx) as i64;
        if px.is_fwd(&rx[i]) {
            votes[0] += earlier;
        } else {
            votes[1] -= earlier;
        }
    }
    match votes {
        [fwd, rev] if px.input != py.input => (fwd + rev).signum(),
        [0, rev] => rev.signum(),
        [fwd, _] => fwd.signum(),
    }
}

/// Adds a [`Related`] on both sides of every rejected flow pair whose flows ended in
/// two different connections, then sorts each connection's list.
pub(super) fn relate(conns: &mut [Connection], rejected: &[(EdgeKey, Vote)], points: &[PointData]) {
    // The connection of each flow a refused pair names: few, so only those are looked
    // for among the hops, not every flow indexed.
    let mut conn_of: HashMap<(usize, usize), usize> = rejected
        .iter()
        .flat_map(|&((a, fa, b, fb), _)| [(a, fa as usize), (b, fb as usize)])
        .map(|k| (k, usize::MAX))
        .collect();
    if !conn_of.is_empty() {
        for (ci, c) in conns.iter().enumerate() {
            for h in c.all_hops() {
                for &f in &h.flow_idx {
                    if let Some(at) = conn_of.get_mut(&(h.point, f)) {
                        *at = ci;
                    }
                }
            }
        }
    }
    for &((a, fa, b, fb), vote) in rejected {
        let (ca, cb) = (conn_of[&(a, fa as usize)], conn_of[&(b, fb as usize)]);
        if ca == cb {
            continue;
        }
        let (ida, idb) = (conns[ca].id.clone(), conns[cb].id.clone());
        conns[ca].related.push(Related {
            point: points[a].info.name.clone(),
            connection: idb,
            other_point: points[b].info.name.clone(),
            matched_packets: vote.packets,
        });
        conns[cb].related.push(Related {
            point: points[b].info.name.clone(),
            connection: ida,
            other_point: points[a].info.name.clone(),
            matched_packets: vote.packets,
        });
    }
    for c in conns {
        c.related.sort_by(|x, y| {
            (&x.point, &x.connection, &x.other_point).cmp(&(
                &y.point,
                &y.connection,
                &y.other_point,
            ))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::correlate::testkit::{one_input, point, tcp_conv, udp, view, MS, US};
    use crate::correlate::{components, offset, pairing};
    use crate::flows::InitiatorEvidence;
    use crate::model::Packet;

    const SECOND: i64 = 1_000 * MS;

    /// The steps up to this one, on points with one clock.
    /// The points, the components' members (as grouped, then in the order their
    /// connections were made), the pairs refused and the connections.
    type Built = (
        Vec<PointData>,
        [Vec<Vec<usize>>; 2],
        Vec<(EdgeKey, Vote)>,
        Vec<Connection>,
    );

    fn paths_of(mut points: Vec<PointData>) -> Built {
        let off: Vec<i64> = offset::estimate(&points)
            .iter()
            .map(|o| o.offset_ns)
            .collect();
        assert!(off.iter().all(|&o| o == 0));
        let mut comps = components::group(&points, pairing::flow_pairs(&points, &off, SECOND));
        components::orient(&mut points, &comps, &off, SECOND);
        let rejected = std::mem::take(&mut comps.rejected);
        let members = comps.members.clone();
        let made = in_time_order(&points, &mut comps, &off);
        let leaves = Leaves::of(&points, &comps, &made, (&off, SECOND));
        let mut conns: Vec<Connection> = (made.iter())
            .map(|m| connection(&points, &comps, m, &leaves, (&off, SECOND)))
            .collect();
        number(&mut conns);
        (points, [members, made], rejected, conns)
    }

    #[test]
    fn three_hops_in_the_initiators_direction() {
        // A container's veth, then the docker0 bridge 10 µs later (same TTL), then eth0
        // after one routed hop; the points listed in another order.
        let veth = tcp_conv(0, "172.17.0.2:40000", "198.51.100.7:443", 1000);
        let docker0 = view(&veth, "172.17.0.2:40000", "198.51.100.7:443", 10 * US, 0);
        let eth0 = view(&veth, "203.0.113.1:40000", "198.51.100.7:443", 40 * US, 1);
        let points = vec![
            point("eth0", 0, &eth0),
            point("veth", 1, &veth),
            point("docker0", 2, &docker0),
        ];
        let (_, _, _, conns) = paths_of(points);
        assert_eq!(conns.len(), 1);
        let c = &conns[0];
        assert_eq!(c.id, "c1");
        let order: Vec<usize> = c.hops.iter().map(|h| h.point).collect();
        assert_eq!(order, [1, 2, 0]);
        let ttls: Vec<Option<u8>> = c.hops.iter().map(|h| h.fwd_ttl).collect();
        assert_eq!(ttls, [Some(64), Some(64), Some(63)]);
        assert_eq!((c.hops[0].first_ns, c.hops[0].last_ns), (0, 5 * MS));
        assert_eq!(c.hops[2].first_ns, 40 * US);
        assert_eq!(c.initiator, InitiatorEvidence::Syn);
        assert!(c.links.is_empty());
    }

    #[test]
    fn one_capture_of_several_interfaces_orders_hops_at_one_time_by_its_frames() {
        // `tcpdump -i any` on a Docker host: three datagrams with no reply, each
        // written at the container's veth, then at the bridge with the same time
        // stamp, then at eth0 after MASQUERADE. The bridge saw another packet first,
        // so it is the capture's first point: the order of the points is not the
        // order of the path, the order of the frames is.
        let out: Vec<Packet> = (0..3)
            .map(|i| {
                let at = i * 100 * MS;
                udp(at, "172.17.0.2:50000", "203.0.113.3:53", Some(i as u32), 7)
            })
            .collect();
        let bridge = view(&out, "172.17.0.2:50000", "203.0.113.3:53", 0, 0);
        let eth0 = view(&out, "203.0.113.1:50000", "203.0.113.3:53", 20 * US, 1);
        let to_host = udp(-MS, "172.17.0.3:40000", "172.17.0.1:53", Some(9), 5);
        let mut frames = vec![("docker0", to_host)];
        for i in 0..3 {
            frames.extend([("veth", out[i]), ("docker0", bridge[i]), ("eth0", eth0[i])]);
        }
        let points = one_input(0, &frames);
        let names = |pts: &[PointData], c: &Connection| -> Vec<String> {
            (c.hops.iter())
                .map(|h| pts[h.point].info.name.clone())
                .collect()
        };
        let (points, _, _, conns) = paths_of(points);
        let c = conns
            .iter()
            .find(|c| c.hops.len() == 3)
            .expect("the datagrams' path");
        assert_eq!(names(&points, c), ["veth", "docker0", "eth0"]);

        // The same frames with the bridge's copies written first: the bridge is
        // upstream then.
        let mut swapped = vec![("docker0", to_host)];
        for i in 0..3 {
            swapped.extend([("docker0", bridge[i]), ("veth", out[i]), ("eth0", eth0[i])]);
        }
        let (points, _, _, conns) = paths_of(one_input(0, &swapped));
        let c = conns
            .iter()
            .find(|c| c.hops.len() == 3)
            .expect("the datagrams' path");
        assert_eq!(names(&points, c), ["docker0", "veth", "eth0"]);
    }

    #[test]
    fn separate_captures_at_one_time_put_the_leaf_at_the_edge() {
        // One file per interface: datagrams with no reply carry one time stamp at a
        // container's veth and at the bridge; another container's traffic crosses the
        // bridge only, so the veth is a leaf of the bridge. Given bridge first, the
        // outbound datagrams still run veth > bridge > eth0 (routed after them).
        let out: Vec<Packet> = (0..3)
            .map(|i| {
                udp(
                    i * 100 * MS,
                    "172.17.0.2:50000",
                    "203.0.113.3:53",
                    Some(i as u32),
                    7,
                )
            })
            .collect();
        let other = tcp_conv(MS, "172.17.0.3:40000", "198.51.100.7:443", 1000);
        let bridge: Vec<Packet> = [
            view(&out, "172.17.0.2:50000", "203.0.113.3:53", 0, 0),
            view(&other, "172.17.0.3:40000", "198.51.100.7:443", 10 * US, 0),
        ]
        .concat();
        let eth0: Vec<Packet> = [
            view(&out, "203.0.113.1:50000", "203.0.113.3:53", 20 * US, 1),
            view(&other, "203.0.113.1:40000", "198.51.100.7:443", 30 * US, 1),
        ]
        .concat();
        let sorted = |mut v: Vec<Packet>| {
            v.sort_by_key(|p| p.ts_ns);
            v
        };
        let points = vec![
            point("docker0", 0, &sorted(bridge)),
            point("veth", 1, &out),
            point("eth0", 2, &sorted(eth0)),
        ];
        let (points, _, _, conns) = paths_of(points);
        let names = |c: &Connection| -> Vec<String> {
            (c.hops.iter())
                .map(|h| points[h.point].info.name.clone())
                .collect()
        };
        let c = conns
            .iter()
            .find(|c| c.hops[0].flow.tuple.proto == crate::model::Proto::Udp)
            .expect("the datagrams");
        assert_eq!(names(c), ["veth", "docker0", "eth0"]);

        // Inbound, from a routed hop: eth0 first, then the bridge, and the veth, the
        // edge the datagrams left by, last; given veth first.
        let inbound: Vec<Packet> = (0..3)
            .map(|i| {
                udp(
                    i * 100 * MS,
                    "198.51.100.9:5000",
                    "203.0.113.1:8053",
                    Some(i as u32),
                    9,
                )
            })
            .collect();
        let at = |p: &[Packet], dst: &str, lat: i64| view(p, "198.51.100.9:5000", dst, lat, 1);
        let inside = at(&inbound, "172.17.0.2:53", 20 * US);
        let bridge: Vec<Packet> = [
            inside.clone(),
            view(&other, "172.17.0.3:40000", "198.51.100.7:443", 10 * US, 0),
        ]
        .concat();
        let points = vec![
            point("veth", 0, &inside),
            point("docker0", 1, &sorted(bridge)),
            point("eth0", 2, &inbound),
        ];
        let (points, _, _, conns) = paths_of(points);
        let c = conns
            .iter()
            .find(|c| c.hops[0].flow.tuple.proto == crate::model::Proto::Udp)
            .expect("the datagrams");
        let names: Vec<&str> = (c.hops.iter())
            .map(|h| points[h.point].info.name.as_str())
            .collect();
        assert_eq!(names, ["eth0", "docker0", "veth"]);
    }

    #[test]
    fn with_one_container_the_ordered_connections_tell_the_leaf() {
        // One container only: its veth and the bridge see the same connections, so
        // neither is a leaf by them. Its TCP conversation, seen 10 µs later at the
        // bridge, orders the two; its lone datagrams, stamped once at both, take that
        // order though the bridge's capture is given first.
        let sorted = |mut v: Vec<Packet>| {
            v.sort_by_key(|p| p.ts_ns);
            v
        };
        let names = |points: &[PointData], c: &Connection| -> Vec<String> {
            (c.hops.iter())
                .map(|h| points[h.point].info.name.clone())
                .collect()
        };
        let conv = tcp_conv(0, "172.17.0.2:40000", "198.51.100.7:443", 1000);
        let out: Vec<Packet> = (0..3)
            .map(|i| {
                let ts = 10 * MS + i * 100 * MS;
                udp(ts, "172.17.0.2:50000", "203.0.113.3:53", Some(i as u32), 7)
            })
            .collect();
        let server = "198.51.100.7:443";
        let bridge = [
            view(&conv, "172.17.0.2:40000", server, 10 * US, 0),
            out.clone(),
        ];
        let eth0 = [
            view(&conv, "203.0.113.1:40000", server, 30 * US, 1),
            view(&out, "203.0.113.1:50000", "203.0.113.3:53", 20 * US, 1),
        ];
        let points = vec![
            point("docker0", 0, &sorted(bridge.concat())),
            point("veth", 1, &sorted([conv, out].concat())),
            point("eth0", 2, &sorted(eth0.concat())),
        ];
        let (points, _, _, conns) = paths_of(points);
        assert_eq!(conns.len(), 2);
        for c in &conns {
            assert_eq!(names(&points, c), ["veth", "docker0", "eth0"], "{}", c.id);
        }

        // Inbound through DNAT, given veth first: eth0, the bridge, then the veth.
        let client = "198.51.100.9:5000";
        let conv = tcp_conv(0, client, "203.0.113.1:8080", 2000);
        let inbound: Vec<Packet> = (0..3)
            .map(|i| {
                let ts = 10 * MS + i * 100 * MS;
                udp(ts, client, "203.0.113.1:8053", Some(i as u32), 9)
            })
            .collect();
        let inside = |lat: i64| {
            let dgrams = view(&inbound, client, "172.17.0.2:53", 20 * US, 1);
            sorted([view(&conv, client, "172.17.0.2:80", lat, 1), dgrams].concat())
        };
        let points = vec![
            point("veth", 0, &inside(30 * US)),
            point("docker0", 1, &inside(20 * US)),
            point("eth0", 2, &sorted([conv, inbound].concat())),
        ];
        let (points, _, _, conns) = paths_of(points);
        assert_eq!(conns.len(), 2);
        for c in &conns {
            assert_eq!(names(&points, c), ["eth0", "docker0", "veth"], "{}", c.id);
        }
    }

    #[test]
    fn connections_are_numbered_by_first_packet() {
        let late = tcp_conv(5 * MS, "172.17.0.3:40001", "198.51.100.8:443", 5000);
        let early = tcp_conv(0, "172.17.0.2:40000", "198.51.100.7:443", 1000);
        let inside = [late.clone(), early.clone()].concat();
        let outside = [
            view(&late, "203.0.113.1:40001", "198.51.100.8:443", 30 * US, 1),
            view(&early, "203.0.113.1:40000", "198.51.100.7:443", 30 * US, 1),
        ]
        .concat();
        let (_, members, _, conns) = paths_of(vec![
            point("docker0", 0, &inside),
            point("eth0", 1, &outside),
        ]);
        // Components come in flow order: the late connection first; connections are
        // made in time order.
        assert_eq!(
            members,
            [vec![vec![0, 2], vec![1, 3]], vec![vec![1, 3], vec![0, 2]]]
        );
        let ids: Vec<(&str, u16)> = conns
            .iter()
            .map(|c| (c.id.as_str(), c.hops[0].flow.tuple.sport))
            .collect();
        assert_eq!(ids, [("c1", 40000), ("c2", 40001)]);
    }

    #[test]
    fn relate_records_refused_pairs_on_both_connections() {
        // The last two packets escaped NAT outside (see components): eth0's second
        // flow is a connection of its own, related to the first.
        let inside = tcp_conv(0, "172.17.0.2:40000", "198.51.100.7:443", 1000);
        let mut outside = view(&inside, "203.0.113.1:40000", "198.51.100.7:443", 30 * US, 1);
        let escaped = view(&inside, "172.17.0.2:40000", "198.51.100.7:443", 30 * US, 1);
        outside.truncate(4);
        outside.extend_from_slice(&escaped[4..]);
        let (points, _, rejected, mut conns) = paths_of(vec![
            point("docker0", 0, &inside),
            point("eth0", 1, &outside),
        ]);
        relate(&mut conns, &rejected, &points);
        assert_eq!(conns.len(), 2);
        let related = |point: &str, connection: &str, other_point: &str| Related {
            point: point.into(),
            connection: connection.into(),
            other_point: other_point.into(),
            matched_packets: 2,
        };
        assert_eq!(conns[0].related, [related("docker0", "c2", "eth0")]);
        assert_eq!(conns[1].related, [related("eth0", "c1", "docker0")]);
    }
}
