//! correlate: finds the same connection at every capture point and rebuilds what NAT
//! did to it between consecutive points, from the captures alone.
//!
//! Steps, each deterministic whatever the thread count:
//! 1. [`points::read_points`]: flows and one fingerprint record per packet, per point.
//! 2. [`offset`]: clock offset of every point from packets unambiguous at two points.
//! 3. Edge discovery: for every pair of points (and every point with itself, for hairpin
//!    traffic that crosses one interface twice), a merge join of the fingerprint-sorted
//!    records pairs each packet with the nearest same-fingerprint packet within the time
//!    window; matched packets vote for the pair of flows they belong to. Linear in the
//!    number of packets, never all-pairs.
//! 4. Connections: flow pairs are joined greedily, best evidence first, into one path per
//!    connection that holds at most one flow per point (except through a hairpin edge).
//!    A flow pair that would break that rule is kept as a `related` link (e.g. packets
//!    that escaped NAT after conntrack lost the entry), never silently dropped.
//! 5. Per connection (in parallel): a common orientation (initiator first), hops ordered
//!    along the initiator's direction (TTL decreases at every routed hop; corrected time
//!    orders the rest), and for each consecutive pair of hops the translation, matched
//!    and unmatched packets per direction, forwarding latency and, when the source port
//!    moved, the connection that held the wanted port.

pub mod fingerprint;
pub mod offset;
pub mod points;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rayon::prelude::*;
use serde::Serialize;

use crate::capture::{InputResult, InputSpec, ReadOptions};
use crate::flows::{Flow, InitiatorEvidence};
use crate::model::{NatChange, Proto, Tuple};
use fingerprint::FIELD_SETS;
use offset::Offset;
use points::{PointData, Rec};

/// Tunables of the correlation.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Two packets with the same fingerprint at two points are the same packet only if
    /// their clock-corrected times are at most this far apart.
    pub window_ns: i64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            window_ns: 1_000_000_000,
        }
    }
}

/// Minimum evidence for two flows to be one connection: one TCP packet, one IPv4
/// UDP/ICMP packet with its ID and payload, or two weaker matches.
const MIN_EDGE_SCORE: f64 = 0.6;

/// Per-point facts for the report.
#[derive(Clone, Debug, Serialize)]
pub struct PointSummary {
    pub name: String,
    pub source: String,
    pub linktype: String,
    pub interface: Option<String>,
    pub packets: u64,
    pub flows: usize,
    pub first_ns: Option<i64>,
    pub last_ns: Option<i64>,
    pub clock: Offset,
}

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
    pub reply_tuple: Option<Tuple>,
    /// TTL / hop limit of the first initiator packet seen here.
    pub fwd_ttl: Option<u8>,
    /// First and last packet times, clock-corrected.
    pub first_ns: i64,
    pub last_ns: i64,
    /// Flow indices at the point: one, or the initiator half and the reply half.
    #[doc(hidden)]
    pub flow_idx: Vec<usize>,
}

impl Hop {
    /// The hop's packet records (both halves), in time order.
    fn recs(&self, p: &PointData) -> Vec<Rec> {
        let mut v: Vec<Rec> = self
            .flow_idx
            .iter()
            .flat_map(|&f| p.flow_recs(f).iter().copied())
            .collect();
        if self.flow_idx.len() > 1 {
            v.sort_by_key(|r| (r.ts, r.flow, r.fp));
        }
        v
    }
}

/// Two one-way flows at one point that are the two directions of one connection seen
/// under different tuples: the packets of one go to where the packets of the other
/// come from, and only one of the two ends matches.
fn complementary(a: &Flow, b: &Flow) -> bool {
    if !a.is_one_way() || !b.is_one_way() || a.tuple.proto != b.tuple.proto {
        return false;
    }
    let (x, y) = (a.sending_tuple(), b.sending_tuple());
    let x_to_y = x.dst == y.src && x.dport == y.sport;
    let y_to_x = y.dst == x.src && y.dport == x.sport;
    x_to_y != y_to_x
}

/// Packets of one direction seen at one hop and not at the other.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Gap {
    pub packets: u64,
    /// Clock-corrected times of the first and last such packet.
    pub first_ns: Option<i64>,
    pub last_ns: Option<i64>,
    /// TCP flags of the first such packet (a SYN that never left, a stray RST).
    pub first_tcp_flags: Option<u8>,
}

impl Gap {
    fn add(&mut self, ts: i64, flags: Option<u8>) {
        self.packets += 1;
        if self.first_ns.is_none_or(|f| ts < f) {
            self.first_ns = Some(ts);
            self.first_tcp_flags = flags;
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

/// Forwarding latency between two consecutive hops over matched packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Latency {
    /// Latency of the earliest matched initiator packet (the SYN, usually).
    pub first_ns: Option<i64>,
    pub p50_ns: i64,
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

/// Evidence for one translation.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LinkEvidence {
    pub matched_fwd: u64,
    pub matched_rev: u64,
    /// Invariant fields the matched packets agreed on.
    pub fields: Vec<&'static str>,
    /// Matched packets whose direction disagreed with the path (should be 0).
    pub direction_conflicts: u64,
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
    pub unmatched: Unmatched,
    pub port_realloc: Option<PortRealloc>,
}

/// One connection across every point it was seen at.
#[derive(Clone, Debug)]
pub struct Connection {
    pub id: String,
    pub proto: Proto,
    /// Hops in the initiator's direction.
    pub hops: Vec<Hop>,
    /// `links[i]` joins `hops[i]` and `hops[i + 1]`.
    pub links: Vec<Link>,
    pub related: Vec<Related>,
    /// How the initiator was decided, from the hop with the best evidence.
    pub initiator: InitiatorEvidence,
}

impl Connection {
    pub fn first_ns(&self) -> i64 {
        self.hops.iter().map(|h| h.first_ns).min().unwrap_or(0)
    }

    pub fn last_ns(&self) -> i64 {
        self.hops.iter().map(|h| h.last_ns).max().unwrap_or(0)
    }
}

/// Everything correlation found.
#[derive(Clone, Debug)]
pub struct Correlation {
    pub points: Vec<PointSummary>,
    pub connections: Vec<Connection>,
    pub inputs: Vec<InputResult>,
    pub config: Config,
}

/// Reads the inputs and correlates them.
pub fn run(specs: &[InputSpec], opts: &ReadOptions, config: Config) -> Correlation {
    let (points, inputs) = points::read_points(specs, opts);
    correlate(points, inputs, config)
}

/// Votes for one flow pair from the cross-point join.
#[derive(Clone, Copy, Debug, Default)]
struct Vote {
    packets: u64,
    score: f64,
}

/// Flow pair key: (point a, flow a, point b, flow b) with (a, fa) < (b, fb).
type EdgeKey = (usize, u32, usize, u32);

pub fn correlate(
    mut points: Vec<PointData>,
    inputs: Vec<InputResult>,
    config: Config,
) -> Correlation {
    let n = points.len();
    let pairs: Vec<(usize, usize)> = (0..n).flat_map(|a| (a..n).map(move |b| (a, b))).collect();

    let offsets = offset::estimate(&points);
    let off: Vec<i64> = offsets.iter().map(|o| o.offset_ns).collect();

    // Edge discovery.
    let votes: Vec<Vec<(EdgeKey, Vote)>> = pairs
        .par_iter()
        .map(|&(a, b)| join_pair(&points, a, b, &off, config.window_ns))
        .collect();
    let mut edges: Vec<(EdgeKey, Vote)> = votes
        .into_iter()
        .flatten()
        .filter(|(_, v)| v.score >= MIN_EDGE_SCORE)
        .collect();
    edges.sort_by(|x, y| {
        y.1.score
            .total_cmp(&x.1.score)
            .then(y.1.packets.cmp(&x.1.packets))
            .then(x.0.cmp(&y.0))
    });

    // Components: greedy union, best edges first, one flow per point unless hairpin.
    let mut node_of: HashMap<(usize, u32), usize> = HashMap::new();
    let mut nodes: Vec<(usize, u32)> = Vec::new();
    for (p, pd) in points.iter().enumerate() {
        for f in 0..pd.flows.len() as u32 {
            node_of.insert((p, f), nodes.len());
            nodes.push((p, f));
        }
    }
    let mut uf = UnionFind::new(nodes.len());
    // Per component: its flows by point.
    let mut comp_flows: Vec<BTreeMap<usize, Vec<u32>>> = nodes
        .iter()
        .map(|&(p, f)| BTreeMap::from([(p, vec![f])]))
        .collect();
    let mut accepted: Vec<(EdgeKey, Vote)> = Vec::new();
    let mut rejected: Vec<(EdgeKey, Vote)> = Vec::new();
    for (key, vote) in edges {
        let (a, fa, b, fb) = key;
        let (na, nb) = (node_of[&(a, fa)], node_of[&(b, fb)]);
        let (ra, rb) = (uf.find(na), uf.find(nb));
        if ra == rb {
            accepted.push((key, vote));
            continue;
        }
        // Two flows at one point may join only as a hairpin (the edge is at that point)
        // or as the two halves of a connection seen under different tuples there.
        let clash = a != b
            && comp_flows[ra]
                .iter()
                .any(|(p, fs)| match comp_flows[rb].get(p) {
                    None => false,
                    Some(gs) => {
                        !(fs.len() == 1
                            && gs.len() == 1
                            && complementary(
                                &points[*p].flows[fs[0] as usize],
                                &points[*p].flows[gs[0] as usize],
                            ))
                    }
                });
        if clash {
            rejected.push((key, vote));
            continue;
        }
        let root = uf.union(ra, rb);
        let other = if root == ra { rb } else { ra };
        let moved = std::mem::take(&mut comp_flows[other]);
        for (p, fs) in moved {
            comp_flows[root].entry(p).or_default().extend(fs);
        }
        accepted.push((key, vote));
    }

    // Group nodes into components, in node order (deterministic).
    let mut comps: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for i in 0..nodes.len() {
        comps.entry(uf.find(i)).or_default().push(i);
    }
    let mut comp_edges: HashMap<usize, Vec<EdgeKey>> = HashMap::new();
    for (key, _) in &accepted {
        let root = uf.find(node_of[&(key.0, key.1)]);
        comp_edges.entry(root).or_default().push(*key);
    }

    // Orient every flow of a component like its best-evidenced flow, through the edges.
    for (root, members) in &comps {
        let best = *members
            .iter()
            .min_by_key(|&&i| {
                let (p, f) = nodes[i];
                (points[p].flows[f as usize].initiator, i)
            })
            .expect("components are never empty");
        let edges = comp_edges.get(root).cloned().unwrap_or_default();
        let mut oriented: BTreeSet<usize> = BTreeSet::from([best]);
        let mut stack = vec![best];
        while let Some(x) = stack.pop() {
            for &(a, fa, b, fb) in &edges {
                let (na, nb) = (node_of[&(a, fa)], node_of[&(b, fb)]);
                let y = if na == x {
                    nb
                } else if nb == x {
                    na
                } else {
                    continue;
                };
                if oriented.contains(&y) {
                    continue;
                }
                let (xp, xf) = nodes[x];
                let (yp, yf) = nodes[y];
                let (same, flipped) =
                    orientation_votes(&points, xp, xf, yp, yf, &off, config.window_ns);
                if flipped > same {
                    points[yp].flows[yf as usize].flip();
                }
                oriented.insert(y);
                stack.push(y);
            }
        }
    }

    // Build connections (hops ordered), in parallel.
    let comp_list: Vec<Vec<usize>> = comps.into_values().collect();
    let mut conns: Vec<Connection> = comp_list
        .par_iter()
        .map(|members| build_connection(&points, &nodes, members, &off, config.window_ns))
        .collect();
    conns.sort_by(|a, b| {
        a.first_ns()
            .cmp(&b.first_ns())
            .then(a.proto.cmp(&b.proto))
            .then(a.hops[0].flow.tuple.cmp(&b.hops[0].flow.tuple))
            .then(a.hops[0].point.cmp(&b.hops[0].point))
    });
    for (i, c) in conns.iter_mut().enumerate() {
        c.id = format!("c{}", i + 1);
    }

    // Cross-connection facts: related flow pairs and port-reallocation causes.
    let mut conn_of: HashMap<(usize, usize), usize> = HashMap::new();
    let mut by_tuple: HashMap<(usize, Tuple), Vec<usize>> = HashMap::new();
    for (ci, c) in conns.iter().enumerate() {
        for h in &c.hops {
            for &f in &h.flow_idx {
                conn_of.insert((h.point, f), ci);
            }
            by_tuple
                .entry((h.point, h.flow.tuple))
                .or_default()
                .push(ci);
        }
    }
    for ((a, fa, b, fb), vote) in rejected {
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
    let firsts: Vec<i64> = conns.iter().map(Connection::first_ns).collect();
    let ids: Vec<String> = conns.iter().map(|c| c.id.clone()).collect();
    for (ci, c) in conns.iter_mut().enumerate() {
        c.related.sort_by(|x, y| {
            (&x.point, &x.connection, &x.other_point).cmp(&(
                &y.point,
                &y.connection,
                &y.other_point,
            ))
        });
        for i in 0..c.links.len() {
            let (up, down) = (&c.hops[i], &c.hops[i + 1]);
            if !c.links[i].change.sport_changed {
                continue;
            }
            let wanted = Tuple {
                sport: up.flow.tuple.sport,
                ..down.flow.tuple
            };
            let holder = by_tuple
                .get(&(down.point, wanted))
                .and_then(|v| v.iter().copied().find(|&o| o != ci));
            c.links[i].port_realloc = Some(PortRealloc {
                wanted_sport: up.flow.tuple.sport,
                got_sport: down.flow.tuple.sport,
                colliding: holder.map(|o| ids[o].clone()),
                colliding_started_first: holder.map(|o| firsts[o] <= firsts[ci]),
            });
        }
    }

    Correlation {
        points: points
            .iter()
            .zip(offsets)
            .map(|(p, clock)| p.summary(clock))
            .collect(),
        connections: conns,
        inputs,
        config,
    }
}

/// Merge join of two points' fingerprint-sorted records (or one point with itself).
fn join_pair(
    points: &[PointData],
    a: usize,
    b: usize,
    off: &[i64],
    window: i64,
) -> Vec<(EdgeKey, Vote)> {
    let (pa, pb) = (&points[a], &points[b]);
    let mut votes: HashMap<(u32, u32), Vote> = HashMap::new();
    let mut add = |ra: &Rec, rb: &Rec| {
        let v = votes.entry((ra.flow, rb.flow)).or_default();
        v.packets += 1;
        // Combine as independent evidence: 1 - Π(1 - w).
        let w = ra.strength.min(rb.strength).weight();
        v.score = 1.0 - (1.0 - v.score) * (1.0 - w);
    };
    let (mut i, mut j) = (0, 0);
    let (fa, fb) = (&pa.by_fp, &pb.by_fp);
    if a == b {
        // Hairpin: the same packet crossing one interface twice, as two flows.
        while i < fa.len() {
            let fp = pa.recs[fa[i] as usize].fp;
            let end = i + fa[i..]
                .iter()
                .take_while(|&&k| pa.recs[k as usize].fp == fp)
                .count();
            let run = &fa[i..end];
            if run.len() > 1 {
                let mut used = vec![false; run.len()];
                for x in 0..run.len() {
                    if used[x] {
                        continue;
                    }
                    let rx = &pa.recs[run[x] as usize];
                    for y in x + 1..run.len() {
                        let ry = &pa.recs[run[y] as usize];
                        if ry.ts - rx.ts > window {
                            break;
                        }
                        if !used[y] && ry.flow != rx.flow {
                            used[x] = true;
                            used[y] = true;
                            let (lo, hi) = if rx.flow < ry.flow {
                                (rx, ry)
                            } else {
                                (ry, rx)
                            };
                            add(lo, hi);
                            break;
                        }
                    }
                }
            }
            i = end;
        }
    } else {
        while i < fa.len() && j < fb.len() {
            let ra = &pa.recs[fa[i] as usize];
            let rb = &pb.recs[fb[j] as usize];
            if ra.fp != rb.fp {
                if ra.fp < rb.fp {
                    i += 1;
                } else {
                    j += 1;
                }
                continue;
            }
            let fp = ra.fp;
            let ea = i + fa[i..]
                .iter()
                .take_while(|&&k| pa.recs[k as usize].fp == fp)
                .count();
            let eb = j + fb[j..]
                .iter()
                .take_while(|&&k| pb.recs[k as usize].fp == fp)
                .count();
            // Both runs are in time order; walk them together, pairing packets whose
            // corrected times are within the window.
            let (mut x, mut y) = (i, j);
            while x < ea && y < eb {
                let rx = &pa.recs[fa[x] as usize];
                let ry = &pb.recs[fb[y] as usize];
                let d = (ry.ts - off[b]) - (rx.ts - off[a]);
                if d.abs() <= window {
                    add(rx, ry);
                    x += 1;
                    y += 1;
                } else if d < 0 {
                    y += 1;
                } else {
                    x += 1;
                }
            }
            i = ea;
            j = eb;
        }
    }
    let mut out: Vec<(EdgeKey, Vote)> = votes
        .into_iter()
        .map(|((x, y), v)| ((a, x, b, y), v))
        .collect();
    out.sort_by_key(|(k, _)| *k);
    out
}

/// Pairs the packets of two flows: for each record of `up`, the nearest unused record
/// of `down` with the same fingerprint within the window. Returns index pairs.
fn match_flows(
    up: &[Rec],
    up_off: i64,
    down: &[Rec],
    down_off: i64,
    window: i64,
    same_point: bool,
) -> Vec<(usize, usize)> {
    let mut idx: HashMap<u64, Vec<usize>> = HashMap::new();
    for (k, r) in down.iter().enumerate() {
        idx.entry(r.fp).or_default().push(k);
    }
    let mut used = vec![false; down.len()];
    let mut out = Vec::new();
    for (k, r) in up.iter().enumerate() {
        let Some(cands) = idx.get(&r.fp) else {
            continue;
        };
        let t = r.ts - up_off;
        let best = cands
            .iter()
            .copied()
            .filter(|&c| !used[c])
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

/// How many matched packets say two flows share orientation, and how many say the
/// opposite.
fn orientation_votes(
    points: &[PointData],
    xp: usize,
    xf: u32,
    yp: usize,
    yf: u32,
    off: &[i64],
    window: i64,
) -> (u64, u64) {
    let (rx, ry) = (
        points[xp].flow_recs(xf as usize),
        points[yp].flow_recs(yf as usize),
    );
    let (mut same, mut flipped) = (0, 0);
    for (i, j) in match_flows(rx, off[xp], ry, off[yp], window, false) {
        if points[xp].is_fwd(&rx[i]) == points[yp].is_fwd(&ry[j]) {
            same += 1;
        } else {
            flipped += 1;
        }
    }
    (same, flipped)
}

fn build_connection(
    points: &[PointData],
    nodes: &[(usize, u32)],
    members: &[usize],
    off: &[i64],
    window: i64,
) -> Connection {
    // One hop per flow, except that the two one-way halves of the connection seen at
    // one point under different tuples make a single hop.
    let mut by_point: BTreeMap<usize, Vec<u32>> = BTreeMap::new();
    for &m in members {
        let (p, f) = nodes[m];
        by_point.entry(p).or_default().push(f);
    }
    let mut hops: Vec<Hop> = Vec::new();
    for (p, flows) in by_point {
        let pd = &points[p];
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut taken = vec![false; flows.len()];
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
            let mut g = vec![flows[i] as usize];
            if let Some(j) = partner {
                taken[j] = true;
                g.push(flows[j] as usize);
                if pd.flows[g[0]].packets[0] == 0 {
                    g.swap(0, 1);
                }
            }
            groups.push(g);
        }
        for g in groups {
            let mut flow = pd.flows[g[0]].clone();
            let reply_tuple = g.get(1).map(|&r| {
                let reply = &pd.flows[r];
                flow.absorb_reply(reply);
                reply.sending_tuple()
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
            hop.fwd_ttl = hop.recs(pd).iter().find(|r| pd.is_fwd(r)).map(|r| r.ttl);
            hops.push(hop);
        }
    }
    // Upstream first: a routed hop decrements the TTL of initiator packets, so the
    // highest TTL is the earliest hop; corrected time of the first initiator packet
    // orders hops within one routing step (a veth and its bridge).
    let first_fwd: Vec<i64> = hops
        .iter()
        .map(|h| {
            let pd = &points[h.point];
            h.recs(pd)
                .iter()
                .find(|r| pd.is_fwd(r))
                .map_or(h.first_ns, |r| r.ts - off[h.point])
        })
        .collect();
    // Within one TTL (a veth and its bridge, or several interfaces of one capture with
    // coarse timestamps) every matched packet votes: an initiator packet seen earlier at
    // x says x is upstream, a responder packet seen earlier at x says x is downstream.
    let mut wins = vec![0i64; hops.len()];
    for x in 0..hops.len() {
        for y in x + 1..hops.len() {
            if hops[x].fwd_ttl != hops[y].fwd_ttl {
                continue;
            }
            let v = precedence_votes(points, &hops[x], &hops[y], off, window);
            wins[x] += v;
            wins[y] -= v;
        }
    }
    let mut order: Vec<usize> = (0..hops.len()).collect();
    order.sort_by_key(|&i| {
        (
            std::cmp::Reverse(hops[i].fwd_ttl),
            std::cmp::Reverse(wins[i]),
            first_fwd[i],
            hops[i].point,
            hops[i].flow_idx.clone(),
        )
    });
    hops = order.iter().map(|&i| hops[i].clone()).collect();
    let initiator = hops
        .iter()
        .map(|h| h.flow.initiator)
        .min()
        .unwrap_or(InitiatorEvidence::FirstPacket);

    let links = hops
        .windows(2)
        .enumerate()
        .map(|(i, w)| link(points, &w[0], &w[1], i, off, window))
        .collect();
    Connection {
        id: String::new(),
        proto: hops[0].flow.tuple.proto,
        hops,
        links,
        related: Vec::new(),
        initiator,
    }
}

/// Positive when the packets of `x` and `y` say `x` is upstream of `y`, negative when
/// they say the opposite: the count of matched packets that agree minus those that don't.
fn precedence_votes(points: &[PointData], x: &Hop, y: &Hop, off: &[i64], window: i64) -> i64 {
    let (px, py) = (&points[x.point], &points[y.point]);
    let (rx, ry) = (x.recs(px), y.recs(py));
    let mut votes = 0i64;
    for (i, j) in match_flows(
        &rx,
        off[x.point],
        &ry,
        off[y.point],
        window,
        x.point == y.point,
    ) {
        let (tx, ty) = (rx[i].ts - off[x.point], ry[j].ts - off[y.point]);
        let earlier = (tx < ty) as i64 - (ty < tx) as i64;
        votes += if px.is_fwd(&rx[i]) { earlier } else { -earlier };
    }
    votes
}

fn link(points: &[PointData], up: &Hop, down: &Hop, i: usize, off: &[i64], window: i64) -> Link {
    let (pu, pd) = (&points[up.point], &points[down.point]);
    let (ru, rd) = (up.recs(pu), down.recs(pd));
    let pairs = match_flows(
        &ru,
        off[up.point],
        &rd,
        off[down.point],
        window,
        up.point == down.point,
    );
    let mut matched_u = vec![false; ru.len()];
    let mut matched_d = vec![false; rd.len()];
    let mut lat: Vec<i64> = Vec::with_capacity(pairs.len());
    let mut first_fwd: Option<(i64, i64)> = None;
    let (mut mf, mut mr, mut conflicts) = (0u64, 0u64, 0u64);
    let mut score = 0.0f64;
    let mut field_sets: BTreeSet<u8> = BTreeSet::new();
    for &(a, b) in &pairs {
        matched_u[a] = true;
        matched_d[b] = true;
        let (x, y) = (&ru[a], &rd[b]);
        let (tu, td) = (x.ts - off[up.point], y.ts - off[down.point]);
        let fwd = pu.is_fwd(x);
        if fwd != pd.is_fwd(y) {
            conflicts += 1;
        }
        field_sets.insert(x.fields);
        score = 1.0 - (1.0 - score) * (1.0 - x.strength.min(y.strength).weight());
        if fwd {
            mf += 1;
            lat.push(td - tu);
            if first_fwd.is_none_or(|(t, _)| tu < t) {
                first_fwd = Some((tu, td - tu));
            }
        } else {
            mr += 1;
            lat.push(tu - td);
        }
    }
    let latency = if lat.is_empty() {
        None
    } else {
        let max_ns = *lat.iter().max().expect("not empty");
        Some(Latency {
            first_ns: first_fwd.map(|(_, l)| l),
            p50_ns: offset::median(&mut lat).unwrap_or(0),
            max_ns,
        })
    };

    // Unmatched packets count only while the other point was capturing.
    let in_range = |p: &PointData, po: usize, t: i64| match (p.info.first_ns, p.info.last_ns) {
        (Some(f), Some(l)) => t >= f - off[po] - window && t <= l - off[po] + window,
        _ => false,
    };
    let mut un = Unmatched::default();
    for (k, r) in ru.iter().enumerate() {
        if matched_u[k] {
            continue;
        }
        let t = r.ts - off[up.point];
        if !in_range(pd, down.point, t) {
            continue;
        }
        let flags = (up.flow.tuple.proto == Proto::Tcp).then_some(r.tcp_flags);
        if pu.is_fwd(r) {
            un.lost_fwd.add(t, flags);
        } else {
            un.appeared_rev.add(t, flags);
        }
    }
    for (k, r) in rd.iter().enumerate() {
        if matched_d[k] {
            continue;
        }
        let t = r.ts - off[down.point];
        if !in_range(pu, up.point, t) {
            continue;
        }
        let flags = (down.flow.tuple.proto == Proto::Tcp).then_some(r.tcp_flags);
        if pd.is_fwd(r) {
            un.appeared_fwd.add(t, flags);
        } else {
            un.lost_rev.add(t, flags);
        }
    }

    let mut fields: Vec<&'static str> = Vec::new();
    for s in field_sets {
        for f in FIELD_SETS[s as usize] {
            if !fields.contains(f) {
                fields.push(f);
            }
        }
    }
    Link {
        from: i,
        to: i + 1,
        change: NatChange::between(&up.flow.tuple, &down.flow.tuple),
        confidence: (score * 10_000.0).round() / 10_000.0,
        evidence: LinkEvidence {
            matched_fwd: mf,
            matched_rev: mr,
            fields,
            direction_conflicts: conflicts,
        },
        latency,
        unmatched: un,
        port_realloc: None,
    }
}

struct UnionFind {
    parent: Vec<usize>,
}

impl UnionFind {
    fn new(n: usize) -> Self {
        UnionFind {
            parent: (0..n).collect(),
        }
    }

    fn find(&mut self, x: usize) -> usize {
        let mut r = x;
        while self.parent[r] != r {
            r = self.parent[r];
        }
        let mut x = x;
        while self.parent[x] != r {
            let next = self.parent[x];
            self.parent[x] = r;
            x = next;
        }
        r
    }

    /// Joins two roots; the smaller index stays root (deterministic).
    fn union(&mut self, ra: usize, rb: usize) -> usize {
        let (root, child) = if ra < rb { (ra, rb) } else { (rb, ra) };
        self.parent[child] = root;
        root
    }
}
