//! Return hops: a connection's replies seen at a point off its path.
//!
//! Routes may send a connection's requests out one interface and bring its replies
//! back by another (asymmetric routing: the far side routes back over another link, a
//! policy route, ECMP), or send the replies of a connection that came in by one
//! interface out by another. The point the replies use instead then carries the
//! connection's tuple at the point the requests used (the same stage of translation)
//! with responder packets only, and shares no packet with that point: it is not a hop
//! of the path, it stands beside one. Such a hop is a [`ReturnHop`] of the connection.
//!
//! Replies that went on from there share packets with the path's other points, so
//! pairing puts their flow into the connection and [`split`] takes it out of the
//! path. Replies that went no further share no packet with any point: [`attach`] joins
//! their flow to the connection by the replies' own fields before paths are built
//! (the tuple reversed and, for TCP, acknowledgement numbers that acknowledge what
//! the initiator sent there; otherwise replies that follow the requests).

use foldhash::{HashMap, HashMapExt, HashSet};

use serde::Serialize;
use smallvec::SmallVec;

use super::components::Components;
use super::pairing::match_all;
use super::paths::Hop;
use super::points::{PointData, Rec};
use super::translations::Gap;
use crate::model::{tcp_flags, Proto, Tuple};

/// How long after a request a reply is taken as its answer when nothing but the tuple
/// and time relate them: the kernel's timeout of an unreplied UDP entry.
pub const REPLY_WINDOW_NS: i64 = 30_000_000_000;

/// What joined a return hop to its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Joined {
    /// Packets it shares with another hop of the connection (the replies went on).
    Packets,
    /// TCP: its acknowledgement numbers acknowledge what the initiator sent at the hop
    /// beside it (a SYN-ACK acknowledges the SYN's sequence number + 1).
    Acknowledgement,
    /// Its packets carry the reverse of the tuple at the hop beside it, and came after
    /// the first request there, within [`REPLY_WINDOW_NS`] of the last.
    Tuple,
}

/// Replies crossing between a return hop and a hop of the path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ReturnLink {
    /// The hop of the path (index into `hops`).
    pub hop: usize,
    /// Responder packets seen at both.
    pub matched: u64,
    /// Responder packets seen where they came from and not where they went to (the
    /// return hop's that never reached `hop`, or `hop`'s that never reached the return
    /// hop), counted while the other point was capturing.
    pub unmatched: Gap,
}

/// A connection's replies at a point off its path.
#[derive(Clone, Debug)]
pub struct ReturnHop {
    /// The point and the flow there (responder packets only), in the initiator's
    /// direction like every hop.
    pub hop: Hop,
    /// The hop of the path with the same tuple (`hops[beside]`): the requests crossed
    /// there, the replies here.
    pub beside: usize,
    pub joined: Joined,
    /// Replies from here to the hop before `beside` (towards the initiator), when
    /// there is one.
    pub toward: Option<ReturnLink>,
    /// Replies from the hop after `beside` (the responder's side) to here, when there
    /// is one.
    pub from: Option<ReturnLink>,
}

/// Joins every connection's flow that holds only replies seen nowhere else to the
/// connection they answer: a component of one flow, one way, whose packets carry the
/// reverse of the tuple of exactly one flow at another point (with initiator packets,
/// in a component that has no flow at that point) and answer it (see [`Joined`]).
/// The flow is turned so that its packets are responder packets, its component
/// merged into the connection's, and how it was joined recorded in `comps.joined`.
pub(super) fn attach(points: &mut [PointData], comps: &mut Components, off: &[i64]) {
    // The connections of one one-way flow, and the tuple its requests would have had:
    // few, so only the flows carrying one of those tuples are looked for.
    let mut lone: Vec<(usize, usize, Tuple)> = Vec::new();
    for (ci, members) in comps.members.iter().enumerate() {
        let &[n] = members.as_slice() else {
            continue;
        };
        let (p, f) = comps.nodes[n];
        let flow = &points[p].flows[f as usize];
        if !flow.is_one_way() || flow.icmp_error.is_some() || flow.is_control() {
            continue;
        }
        lone.push((ci, n, flow.sending_tuple().reversed()));
    }
    if lone.is_empty() {
        return;
    }
    // Nodes are numbered densely; every node is in one component.
    let mut comp_of = vec![usize::MAX; comps.nodes.len()];
    for (ci, m) in comps.members.iter().enumerate() {
        for &n in m {
            comp_of[n] = ci;
        }
    }
    // Most tuples are one flow's: no allocation of their own.
    let mut by_tuple: HashMap<Tuple, SmallVec<[usize; 1]>> =
        lone.iter().map(|&(_, _, t)| (t, SmallVec::new())).collect();
    for (n, &(p, f)) in comps.nodes.iter().enumerate() {
        let flow = &points[p].flows[f as usize];
        if flow.packets[0] > 0 && flow.icmp_error.is_none() && !flow.is_control() {
            if let Some(v) = by_tuple.get_mut(&flow.tuple) {
                v.push(n);
            }
        }
    }
    // (node, its component, the connection it answers, how).
    let mut moves: Vec<(usize, usize, usize, Joined)> = Vec::new();
    for (ci, n, request) in lone {
        let (p, f) = comps.nodes[n];
        let answered: Vec<(usize, Joined)> = by_tuple[&request]
            .iter()
            .filter(|&&m| {
                let (q, _) = comps.nodes[m];
                let cm = comp_of[m];
                q != p && cm != ci && comps.members[cm].iter().all(|&o| comps.nodes[o].0 != p)
            })
            .filter_map(|&m| {
                let (q, g) = comps.nodes[m];
                answers(points, (p, f), (q, g), off).map(|j| (comp_of[m], j))
            })
            .collect();
        if let [(target, joined)] = answered[..] {
            moves.push((n, ci, target, joined));
        }
    }
    // Two reply flows may not join one connection at one point, and a flow that joins
    // another connection takes none in.
    let mut taken: HashMap<(usize, usize), usize> = HashMap::new();
    for &(n, _, target, _) in &moves {
        *taken.entry((target, comps.nodes[n].0)).or_default() += 1;
    }
    let sources: HashSet<usize> = moves.iter().map(|m| m.1).collect();
    for (n, ci, target, joined) in moves {
        let (p, f) = comps.nodes[n];
        if taken[&(target, p)] > 1 || sources.contains(&target) {
            continue;
        }
        let flow = &mut points[p].flows[f as usize];
        if flow.packets[0] > 0 {
            flow.flip();
        }
        comps.members[ci].clear();
        comps.members[target].push(n);
        comps.members[target].sort_unstable();
        comps.joined.insert(n, joined);
    }
    let keep: Vec<bool> = comps.members.iter().map(|m| !m.is_empty()).collect();
    let mut k = keep.iter();
    comps
        .members
        .retain(|_| *k.next().expect("one flag per component"));
    let mut k = keep.iter();
    comps
        .edges
        .retain(|_| *k.next().expect("one flag per component"));
}

/// How the one-way flow `(p, f)` answers the flow `(q, g)` whose tuple it carries
/// reversed, if it does.
fn answers(
    points: &[PointData],
    (p, f): (usize, u32),
    (q, g): (usize, u32),
    off: &[i64],
) -> Option<Joined> {
    let (pr, qr) = (&points[p], &points[q]);
    let replies = pr.flow_recs(f as usize);
    let requests: Vec<&Rec> = qr
        .flow_recs(g as usize)
        .iter()
        .filter(|r| qr.is_fwd(r))
        .collect();
    let first_request = requests.first()?;
    if pr.flows[f as usize].tuple.proto == Proto::Tcp {
        return acknowledges(&requests, replies).then_some(Joined::Acknowledgement);
    }
    let t = |r: &Rec, point: usize| r.ts - off[point];
    let last_request = requests.iter().map(|r| t(r, q)).max()?;
    let (first, last) = (
        replies.iter().map(|r| t(r, p)).min()?,
        replies.iter().map(|r| t(r, p)).max()?,
    );
    (first >= t(first_request, q) && last <= last_request + REPLY_WINDOW_NS)
        .then_some(Joined::Tuple)
}

/// Whether the TCP segments `replies` acknowledge what `requests` sent: at least one
/// carries an acknowledgement number, and every one of those lies past the first
/// request's sequence number and no further than the end of the furthest request (a
/// SYN and a FIN count one each).
fn acknowledges(requests: &[&Rec], replies: &[Rec]) -> bool {
    let Some(base) = requests.first().and_then(|r| r.seg()).map(|s| s.seq) else {
        return false;
    };
    let end = |r: &Rec| {
        let s = r.seg().expect("TCP records have segment fields");
        let flags = u32::from(r.tcp_flags() & tcp_flags::SYN != 0)
            + u32::from(r.tcp_flags() & tcp_flags::FIN != 0);
        s.seq
            .wrapping_add(s.len)
            .wrapping_add(flags)
            .wrapping_sub(base)
    };
    let Some(reach) = requests
        .iter()
        .filter(|r| r.seg().is_some())
        .map(|r| end(r))
        .max()
    else {
        return false;
    };
    let mut acks = replies
        .iter()
        .filter(|r| r.tcp_flags() & tcp_flags::ACK != 0)
        .filter_map(|r| r.seg())
        .map(|s| s.ack.wrapping_sub(base))
        .peekable();
    acks.peek().is_some() && acks.all(|a| a > 0 && a <= reach)
}

/// Takes the return hops out of a component's hops: a hop with responder packets only
/// whose tuple is that of exactly one other hop, at another point, with initiator
/// packets and no packet in common with it. Returns the hops of the path and each
/// return hop with the hop beside it (its point and flows, as the path's hop holds
/// them).
pub(super) fn split(
    points: &[PointData],
    hops: Vec<Hop>,
    off: &[i64],
    window: i64,
) -> (Vec<Hop>, Vec<(Hop, HopKey)>) {
    let beside = |r: &Hop| -> Option<usize> {
        if r.flow.packets[0] != 0 || r.flow.packets[1] == 0 || r.reply_tuple.is_some() {
            return None;
        }
        let mut same = hops
            .iter()
            .enumerate()
            .filter(|(_, k)| k.point != r.point && k.flow.tuple == r.flow.tuple);
        let (i, k) = same.next()?;
        if same.next().is_some() || k.flow.packets[0] == 0 {
            return None;
        }
        let (rp, kp) = (&points[r.point], &points[k.point]);
        let shared = match_all(
            &r.recs(rp),
            off[r.point],
            &k.recs(kp),
            off[k.point],
            window,
            false,
        );
        shared.is_empty().then_some(i)
    };
    // A hop beside a return hop has initiator packets: it is never one itself.
    let found: SmallVec<[Option<HopKey>; 4]> = hops
        .iter()
        .map(|r| beside(r).map(|k| (hops[k].point, hops[k].flow_idx.to_vec())))
        .collect();
    // Most connections have no return hop: their hops stay where they are.
    if found.iter().all(Option::is_none) {
        return (hops, Vec::new());
    }
    let mut path = Vec::new();
    let mut returns = Vec::new();
    for (h, k) in hops.into_iter().zip(found) {
        match k {
            Some(k) => returns.push((h, k)),
            None => path.push(h),
        }
    }
    (path, returns)
}

/// A hop by its point and its flows there.
pub(super) type HopKey = (usize, Vec<usize>);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::correlate::testkit::{point, tcp, tcp_conv, udp, view, MS, US};
    use crate::correlate::{correlate, Config, Correlation};
    use crate::model::tcp_flags::{ACK, SYN};
    use crate::model::{Packet, L4};

    const SECOND: i64 = 1_000 * MS;

    /// A TCP segment with an acknowledgement number and an IPv4 ID of its own.
    fn seg(ts: i64, src: &str, dst: &str, (seq, ack): (u32, u32), flags: u8, id: u32) -> Packet {
        let mut p = tcp(ts, src, dst, seq, flags, 64);
        if let L4::Tcp { ack: a, .. } = &mut p.l4 {
            *a = ack;
        }
        p.ip_id = Some(id);
        p
    }

    fn run(points: &[(&str, Vec<Packet>)]) -> Correlation {
        let points = points
            .iter()
            .enumerate()
            .map(|(i, (name, packets))| point(name, i, packets))
            .collect();
        correlate(points, Vec::new(), Config::default())
    }

    fn names(c: &Correlation, conn: usize) -> Vec<&str> {
        c.connections[conn]
            .all_hops()
            .map(|h| c.points[h.point].name.as_str())
            .collect()
    }

    /// SYNs sent three times from c1 through MASQUERADE out `eth0`; the server's SYN-ACKs,
    /// which acknowledge `ack`, arrive on `eth1` and go no further.
    fn syn_ack_elsewhere(ack: u32) -> Correlation {
        let (client, nat, server) = ("172.17.0.2:40000", "203.0.113.1:40000", "203.0.113.2:7000");
        let syns: Vec<Packet> = (0..3)
            .map(|i| seg(i * SECOND, client, server, (1000, 0), SYN, 10 + i as u32))
            .collect();
        let out = view(&syns, nat, server, 30 * US, 1);
        let back: Vec<Packet> = (0..3)
            .map(|i| {
                seg(
                    i * SECOND + 100 * US,
                    server,
                    nat,
                    (5000, ack),
                    SYN | ACK,
                    20 + i as u32,
                )
            })
            .collect();
        run(&[("docker0", syns), ("eth0", out), ("eth1", back)])
    }

    #[test]
    fn replies_that_went_no_further_join_by_their_acknowledgement_numbers() {
        let c = syn_ack_elsewhere(1001);
        assert_eq!(c.connections.len(), 1);
        let conn = &c.connections[0];
        assert_eq!(names(&c, 0), ["docker0", "eth0", "eth1"]);
        assert_eq!(conn.hops.len(), 2);
        let r = &conn.returns[0];
        assert_eq!((r.beside, r.joined), (1, Joined::Acknowledgement));
        assert_eq!(r.hop.flow.packets, [0, 3]);
        assert_eq!(r.hop.flow.tuple, conn.hops[1].flow.tuple);
        let toward = r.toward.expect("a hop before the one beside");
        assert_eq!(
            (toward.hop, toward.matched, toward.unmatched.packets),
            (0, 0, 3)
        );
        assert_eq!(toward.unmatched.first_tcp_flags, Some(SYN | ACK));
        assert!(r.from.is_none());
        assert_eq!(conn.last_ns(), 2 * SECOND + 100 * US);
    }

    #[test]
    fn replies_that_acknowledge_something_else_stay_apart() {
        for ack in [1000, 1002, 7777] {
            let c = syn_ack_elsewhere(ack);
            assert_eq!(c.connections.len(), 2, "ack {ack}");
            assert!(
                c.connections.iter().all(|k| k.returns.is_empty()),
                "ack {ack}"
            );
        }
    }

    #[test]
    fn datagrams_join_when_they_follow_the_requests() {
        let (client, nat, server) = ("172.17.0.2:5353", "203.0.113.1:5353", "203.0.113.2:53");
        let run_at = |answer_ns: i64| {
            let query = vec![udp(SECOND, client, server, Some(7), 1)];
            let out = view(&query, nat, server, 30 * US, 1);
            let answer = vec![udp(answer_ns, server, nat, Some(8), 2)];
            run(&[("lan", query), ("isp-a", out), ("isp-b", answer)])
        };
        let c = run_at(SECOND + MS);
        assert_eq!(c.connections.len(), 1);
        assert_eq!(names(&c, 0), ["lan", "isp-a", "isp-b"]);
        assert_eq!(c.connections[0].returns[0].joined, Joined::Tuple);
        // Before the query, or after the unreplied entry's timeout: unrelated.
        for t in [SECOND - MS, SECOND + REPLY_WINDOW_NS + MS] {
            let c = run_at(t);
            assert_eq!(c.connections.len(), 2, "answer at {t}");
        }
    }

    #[test]
    fn with_the_two_uplinks_alone_the_replies_are_still_the_requests_connection() {
        // A request-only flow and a reply-only flow, each a connection of its own point:
        // the replies join the requests, never the other way round.
        let (nat, server) = ("203.0.113.1:5353", "203.0.113.2:53");
        let query: Vec<Packet> = [SECOND, 2 * SECOND]
            .iter()
            .map(|&t| udp(t, nat, server, Some(7), 1))
            .collect();
        let answer = vec![udp(SECOND + MS, server, nat, Some(8), 2)];
        let c = run(&[("isp-a", query), ("isp-b", answer)]);
        assert_eq!(c.connections.len(), 1);
        assert_eq!(names(&c, 0), ["isp-a", "isp-b"]);
        let r = &c.connections[0].returns[0];
        assert_eq!((r.beside, r.joined), (0, Joined::Tuple));
        assert!(r.toward.is_none() && r.from.is_none());
    }

    #[test]
    fn replies_delivered_by_another_way_leave_the_path_and_count_as_crossed() {
        // Outbound: the requests leave eth0, the replies come in on eth1 and reach c1.
        let inside = tcp_conv(0, "172.17.0.2:40000", "203.0.113.2:7000", 1000);
        let outside = view(&inside, "203.0.113.1:40000", "203.0.113.2:7000", 30 * US, 1);
        let (out_a, out_b): (Vec<Packet>, Vec<Packet>) = outside
            .into_iter()
            .partition(|p| p.tuple.dst.to_string() == "203.0.113.2");
        let c = run(&[("docker0", inside), ("eth0", out_a), ("eth1", out_b)]);
        assert_eq!(c.connections.len(), 1);
        let conn = &c.connections[0];
        let r = &conn.returns[0];
        assert_eq!((r.beside, r.joined), (1, Joined::Packets));
        let toward = r.toward.unwrap();
        assert_eq!((toward.matched, toward.unmatched.packets), (2, 0));
        let u = &conn.links[0].unmatched;
        assert_eq!((u.lost_rev.packets, u.appeared_rev.packets), (0, 0));

        // Inbound: the requests come in on eth0, the replies leave by eth1.
        let outside = tcp_conv(0, "198.51.100.20:51000", "203.0.113.1:8080", 2000);
        let inside = view(&outside, "198.51.100.20:51000", "172.17.0.2:80", 30 * US, 1);
        let (in_a, in_b): (Vec<Packet>, Vec<Packet>) = outside
            .into_iter()
            .partition(|p| p.tuple.src.to_string() == "198.51.100.20");
        let c = run(&[("eth0", in_a), ("docker0", inside), ("eth1", in_b)]);
        assert_eq!(c.connections.len(), 1);
        let conn = &c.connections[0];
        assert_eq!(names(&c, 0), ["eth0", "docker0", "eth1"]);
        let r = &conn.returns[0];
        assert_eq!(r.beside, 0);
        assert!(r.toward.is_none());
        let from = r.from.unwrap();
        assert_eq!((from.hop, from.matched, from.unmatched.packets), (1, 2, 0));
        assert_eq!(conn.links[0].unmatched.lost_rev.packets, 0);
    }
}
