//! Components: which flows are one connection, and which way round each of them is.
//!
//! [`group`] joins the paired flows greedily, best evidence first, into components
//! that hold at most one flow per point, except through a hairpin edge (the pair is at
//! one point) or for the two halves of a connection that a point saw under different
//! tuples ([`complementary`]). A flow pair that would break that rule is kept as
//! rejected, to be reported as `related` (e.g. packets that escaped NAT after conntrack
//! lost the entry), never silently dropped.
//!
//! [`orient`] then turns every flow of a component like its flow with the best
//! initiator evidence, following the accepted pairs outward from it: matched packets
//! say whether two flows share orientation.

use std::collections::BTreeMap;

use smallvec::{smallvec, SmallVec};

use super::pairing::{match_all, EdgeKey, Vote};
use super::points::PointData;
use super::returns::Joined;
use crate::flows::Flow;

/// Flows grouped into connections.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Components {
    /// Every flow as (point, flow index), by point then flow: node `i` is `nodes[i]`.
    pub nodes: Vec<(usize, u32)>,
    /// Node of flow 0 of each point.
    pub first_node: Vec<usize>,
    /// Each component's nodes in ascending order; components in order of their
    /// smallest node.
    pub members: Vec<Vec<usize>>,
    /// Each component's accepted flow pairs, best evidence first (same order as
    /// `members`).
    pub edges: Vec<Vec<EdgeKey>>,
    /// Flow pairs refused because they would put two flows of one point into one
    /// connection, best evidence first.
    pub rejected: Vec<(EdgeKey, Vote)>,
    /// Nodes joined to a component by the fields of the replies they hold, not by
    /// packets in common (`returns::attach`), and how.
    pub joined: BTreeMap<usize, Joined>,
}

impl Components {
    /// Asks the processor to fetch the flows of `members` and their first records into
    /// its cache ([`crate::mem::map_fetching_ahead`]).
    pub(super) fn fetch(&self, points: &[PointData], members: &[usize]) {
        for &n in members {
            let (p, f) = self.nodes[n];
            points[p].prefetch_flow(f as usize);
        }
    }

    fn node(&self, p: usize, f: u32) -> usize {
        self.first_node[p] + f as usize
    }
}

/// Two one-way flows at one point that are the two directions of one connection seen
/// under different tuples: the packets of one go to where the packets of the other
/// come from, and only one of the two ends matches. An ICMP query's identifier travels
/// both ways in the same field (there is no second port): the two halves carry the
/// same one and only the addresses tell the ends apart.
pub(super) fn complementary(a: &Flow, b: &Flow) -> bool {
    if !a.is_one_way() || !b.is_one_way() || a.tuple.proto != b.tuple.proto {
        return false;
    }
    let (x, y) = (a.sending_tuple(), b.sending_tuple());
    let (x_to_y, y_to_x) = if x.proto.is_icmp() {
        if x.sport != y.sport {
            return false;
        }
        (x.dst == y.src, y.dst == x.src)
    } else {
        (
            x.dst == y.src && x.dport == y.sport,
            y.dst == x.src && y.dport == x.sport,
        )
    };
    x_to_y != y_to_x
}

/// Greedy union of the flow pairs `edges` (best first, as [`super::pairing::flow_pairs`]
/// gives them) into components.
pub(super) fn group(points: &[PointData], edges: Vec<(EdgeKey, Vote)>) -> Components {
    let mut c = Components::default();
    for (p, pd) in points.iter().enumerate() {
        c.first_node.push(c.nodes.len());
        c.nodes.extend((0..pd.flows.len() as u32).map(|f| (p, f)));
    }
    let mut uf = UnionFind::new(c.nodes.len());
    // Per component (at its root): its flows, as (point, flow).
    let mut comp_flows: Vec<Flows> = (c.nodes.iter())
        .map(|&(p, f)| smallvec![(p as u32, f)])
        .collect();
    let mut accepted: Vec<EdgeKey> = Vec::new();
    for (key, vote) in edges {
        let (a, fa, b, fb) = key;
        let (ra, rb) = (uf.find(c.node(a, fa)), uf.find(c.node(b, fb)));
        if ra == rb {
            accepted.push(key);
            continue;
        }
        if a != b && clash(points, &comp_flows[ra], &comp_flows[rb]) {
            c.rejected.push((key, vote));
            continue;
        }
        let root = uf.union(ra, rb);
        let other = if root == ra { rb } else { ra };
        let moved = std::mem::take(&mut comp_flows[other]);
        comp_flows[root].extend(moved);
        accepted.push(key);
    }
    drop(comp_flows);

    // Components in node order (deterministic): a root is its component's smallest
    // node, so components come in the order their roots are met. Each component's
    // lists are made the size they end up (counted first): there is one a flow or
    // two, and a list grown a push at a time holds room for four.
    let mut comp_of = vec![u32::MAX; c.nodes.len()];
    let mut sizes: Vec<(u32, u32)> = Vec::new();
    for i in 0..c.nodes.len() {
        let root = uf.find(i);
        if comp_of[root] == u32::MAX {
            comp_of[root] = sizes.len() as u32;
            sizes.push((0, 0));
        }
        sizes[comp_of[root] as usize].0 += 1;
    }
    for key in &accepted {
        sizes[comp_of[uf.find(c.node(key.0, key.1))] as usize].1 += 1;
    }
    c.members = (sizes.iter())
        .map(|s| Vec::with_capacity(s.0 as usize))
        .collect();
    c.edges = (sizes.iter())
        .map(|s| Vec::with_capacity(s.1 as usize))
        .collect();
    drop(sizes);
    for i in 0..c.nodes.len() {
        c.members[comp_of[uf.find(i)] as usize].push(i);
    }
    for key in accepted {
        let root = uf.find(c.node(key.0, key.1));
        c.edges[comp_of[root] as usize].push(key);
    }
    c
}

/// A component's flows, as (point, flow): most hold one or two. 24 bytes, one for each
/// flow of every point while flows are grouped.
type Flows = SmallVec<[(u32, u32); 2]>;

/// Whether joining two components would put two flows of one point into one connection,
/// other than the two complementary halves of a connection at that point.
fn clash(points: &[PointData], x: &Flows, y: &Flows) -> bool {
    // A component's flows at point p.
    let at = |fs: &Flows, p: u32| -> SmallVec<[u32; 2]> {
        fs.iter().filter(|q| q.0 == p).map(|q| q.1).collect()
    };
    x.iter().any(|&(p, _)| {
        let (fs, gs) = (at(x, p), at(y, p));
        match (fs.as_slice(), gs.as_slice()) {
            (_, []) => false,
            ([f], [g]) => {
                let flows = &points[p as usize].flows;
                !complementary(&flows[*f as usize], &flows[*g as usize])
            }
            _ => true,
        }
    })
}

/// Orients every flow of each component like its best-evidenced flow (the strongest
/// initiator evidence; the first node on a tie), through the accepted pairs. The
/// components are independent: each decides its flips on its own core, and the flips
/// are made at the end.
pub(super) fn orient(points: &mut [PointData], comps: &Components, off: &[i64], window: i64) {
    let shared: &[PointData] = points;
    // Each component oriented while the flows and first records of the next are
    // fetched into the cache (they lie elsewhere in memory).
    let flips: Vec<Vec<usize>> = crate::mem::map_fetching_ahead(
        &comps.members,
        |next| comps.fetch(shared, next),
        |k, members| flips_of(shared, comps, members, &comps.edges[k], off, window),
    );
    for y in flips.into_iter().flatten() {
        let (yp, yf) = comps.nodes[y];
        points[yp].flows[yf as usize].flip();
    }
}

/// The nodes of one component to flip, from its best-evidenced flow outward.
fn flips_of(
    points: &[PointData],
    comps: &Components,
    members: &[usize],
    edges: &[EdgeKey],
    off: &[i64],
    window: i64,
) -> Vec<usize> {
    let best = *members
        .iter()
        .min_by_key(|&&i| {
            let (p, f) = comps.nodes[i];
            (points[p].flows[f as usize].initiator, i)
        })
        .expect("components are never empty");
    // A component holds one flow a point (a few more through a hairpin): small sets.
    let mut oriented: SmallVec<[usize; 8]> = smallvec![best];
    let mut flipped: SmallVec<[usize; 8]> = SmallVec::new();
    let mut stack: SmallVec<[usize; 8]> = smallvec![best];
    while let Some(x) = stack.pop() {
        for &(a, fa, b, fb) in edges {
            let (na, nb) = (comps.node(a, fa), comps.node(b, fb));
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
            oriented.push(y);
            let (mut same, mut opposite) =
                orientation_votes(points, comps.nodes[x], comps.nodes[y], off, window);
            // As the votes would be with x already turned round.
            if flipped.contains(&x) {
                std::mem::swap(&mut same, &mut opposite);
            }
            if opposite > same {
                flipped.push(y);
            }
            stack.push(y);
        }
    }
    flipped.sort_unstable();
    flipped.into_vec()
}

/// How many matched packets (and segments that carried the same bytes) say two flows,
/// each (point, flow), share orientation, and how many say the opposite.
fn orientation_votes(
    points: &[PointData],
    (xp, xf): (usize, u32),
    (yp, yf): (usize, u32),
    off: &[i64],
    window: i64,
) -> (u64, u64) {
    let (rx, ry) = (
        points[xp].flow_recs(xf as usize),
        points[yp].flow_recs(yf as usize),
    );
    let (mut same, mut flipped) = (0, 0);
    for (i, j) in match_all(rx, off[xp], ry, off[yp], window, false) {
        if points[xp].is_fwd(&rx[i]) == points[yp].is_fwd(&ry[j]) {
            same += 1;
        } else {
            flipped += 1;
        }
    }
    (same, flipped)
}

/// Disjoint sets of `n` items (at most 2^32: one per flow of every point), 4 bytes an
/// item.
pub(super) struct UnionFind {
    parent: Vec<u32>,
}

impl UnionFind {
    pub(super) fn new(n: usize) -> Self {
        let n = u32::try_from(n).expect("fewer than 2^32 items");
        UnionFind {
            parent: (0..n).collect(),
        }
    }

    pub(super) fn find(&mut self, x: usize) -> usize {
        let mut r = x as u32;
        while self.parent[r as usize] != r {
            r = self.parent[r as usize];
        }
        let mut x = x as u32;
        while self.parent[x as usize] != r {
            let next = self.parent[x as usize];
            self.parent[x as usize] = r;
            x = next;
        }
        r as usize
    }

    /// Joins two roots; the smaller index stays root (deterministic).
    pub(super) fn union(&mut self, ra: usize, rb: usize) -> usize {
        let (root, child) = if ra < rb { (ra, rb) } else { (rb, ra) };
        self.parent[child] = root as u32;
        root
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::correlate::pairing::flow_pairs;
    use crate::correlate::testkit::{point, tcp, tcp_conv, view, MS, US};
    use crate::flows::FlowTable;
    use crate::model::tcp_flags::ACK;
    use crate::model::{Proto, L4};

    const SECOND: i64 = 1_000 * MS;

    fn components(points: &[PointData]) -> Components {
        let off = vec![0; points.len()];
        group(points, flow_pairs(points, &off, SECOND))
    }

    #[test]
    fn group_joins_paired_flows_and_refuses_a_second_flow_at_one_point() {
        // Outside, the connection's last two packets escaped NAT (conntrack lost the
        // entry) and travel under the inside tuple: a second flow of the same packets.
        let inside = tcp_conv(0, "172.17.0.2:40000", "198.51.100.7:443", 1000);
        let mut outside = view(&inside, "203.0.113.1:40000", "198.51.100.7:443", 30 * US, 1);
        let escaped = view(&inside, "172.17.0.2:40000", "198.51.100.7:443", 30 * US, 1);
        outside.truncate(4);
        outside.extend_from_slice(&escaped[4..]);
        let other = tcp_conv(MS, "172.17.0.3:40000", "198.51.100.8:443", 5000);
        let points = [
            point("docker0", 0, &[inside, other].concat()),
            point("eth0", 1, &outside),
        ];
        let c = components(&points);
        assert_eq!(c.nodes, [(0, 0), (0, 1), (1, 0), (1, 1)]);
        assert_eq!(c.first_node, [0, 2]);
        // docker0 flow 0 with eth0 flow 0 (four packets); docker0 flow 1 alone; eth0
        // flow 1 (two packets) could not join.
        assert_eq!(c.members, [vec![0, 2], vec![1], vec![3]]);
        assert_eq!(c.edges, [vec![(0, 0, 1, 0)], vec![], vec![]]);
        assert_eq!(c.rejected.len(), 1);
        assert_eq!(c.rejected[0].0, (0, 0, 1, 1));
        assert_eq!(c.rejected[0].1.packets, 2);
    }

    #[test]
    fn complementary_halves_of_one_connection() {
        // A bridge port that saw requests leave translated and replies come back
        // already translated back: two one-way flows.
        let mut t = FlowTable::default();
        let req = tcp(0, "203.0.113.1:40000", "198.51.100.7:8443", 1, ACK, 64);
        let reply = tcp(MS, "198.51.100.7:8443", "172.17.0.2:40000", 2, ACK, 64);
        let unrelated = tcp(MS, "198.51.100.9:8443", "172.17.0.2:40000", 3, ACK, 64);
        let two_way = tcp(2 * MS, "172.17.0.2:40000", "198.51.100.9:8443", 4, ACK, 64);
        for p in [req, reply, unrelated, two_way] {
            t.push(&p);
        }
        let f = t.finish();
        assert!(complementary(&f[0], &f[1]));
        assert!(complementary(&f[1], &f[0]));
        // Nowhere near each other, and a flow seen both ways, are not halves.
        assert!(!complementary(&f[0], &f[2]));
        assert!(!complementary(&f[1], &f[2]));
    }

    #[test]
    fn complementary_halves_of_one_icmp_query() {
        // Echo requests leave a bridge port already sent to the backend; the replies
        // come back from the service address. The identifier is the same both ways.
        let echo = |ts, src: &str, dst: &str, icmp_type, id| {
            let mut p = tcp(ts, &format!("{src}:{id}"), &format!("{dst}:0"), 1, ACK, 64);
            p.tuple.proto = Proto::Icmp;
            p.l4 = L4::Icmp {
                icmp_type,
                code: 0,
                echo: Some((id, 1)),
                quoted: None,
                mtu: None,
            };
            p
        };
        let mut t = FlowTable::default();
        t.push(&echo(0, "172.17.0.2", "172.17.1.2", 8, 3073));
        t.push(&echo(MS, "198.51.100.53", "172.17.0.2", 0, 3073));
        t.push(&echo(MS, "198.51.100.53", "172.17.0.2", 0, 3074));
        let f = t.finish();
        assert!(complementary(&f[0], &f[1]));
        assert!(complementary(&f[1], &f[0]));
        // Another query's replies are not this one's.
        assert!(!complementary(&f[0], &f[2]));
    }

    #[test]
    fn orient_turns_flows_like_the_best_evidenced_one() {
        // eth0 missed the handshake, and the server spoke first there: without a SYN
        // and with two unprivileged ports, neither ephemeral, it takes the server for
        // the initiator.
        let inside = tcp_conv(0, "172.17.0.2:20000", "198.51.100.7:8443", 1000);
        let all = view(
            &inside,
            "203.0.113.1:20000",
            "198.51.100.7:8443",
            30 * US,
            1,
        );
        let outside = [all[4], all[5]];
        let mut points = [point("docker0", 0, &inside), point("eth0", 1, &outside)];
        let server: std::net::IpAddr = "198.51.100.7".parse().unwrap();
        assert_eq!(points[1].flows[0].tuple.src, server);
        let c = components(&points);
        assert_eq!(c.members, [vec![0, 1]]);
        orient(&mut points, &c, &[0, 0], SECOND);
        let f = &points[1].flows[0];
        assert_eq!(f.tuple.dst, server);
        assert_eq!(f.packets, [1, 1]);
        // The SYN-seen flow kept its orientation.
        assert_eq!(points[0].flows[0].tuple.dst, server);
        let ack = &points[1].recs[0];
        assert!(!points[1].is_fwd(ack));
    }
}
