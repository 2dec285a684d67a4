//! `underlay-drop`: packets lost inside a tunnel, between two nodes. An overlay
//! (VXLAN, Geneve, GRE, IP in IP) carries the inner packets over an underlay network
//! netfilter on neither node sees: a security group, a firewall blocking the tunnel's
//! UDP port or protocol, a link or switch with a smaller MTU that drops what does not
//! fit. Capture points on both nodes' underlay interfaces see the same tunnel (same
//! kind, VNI or key, outer addresses and destination port); what left one in it and
//! never reached the other was lost in between, after the sending node's last
//! netfilter hook and before the receiving node's first.
//!
//! One finding per tunnel, direction and pair of points, when packets of that tunnel
//! crossed that way before the first lost one and packets of the tunnel (either way)
//! crossed after the last: the tunnel worked, and the receiving point was capturing.
//! It says what the lost packets have in common when the evidence shows it: each one
//! larger than every packet of the tunnel that crossed that way (the underlay drops
//! by size), and nothing of the tunnel crossing that way from the first to the last
//! (the underlay dropped everything for a time, or from a time on). The packets are
//! explained: `lost` and `pmtu-black-hole` do not report them again.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::Detected;
use crate::audit::{
    Code, Ctx, Detail, Direction, Evidence, Explained, Finding, Role, Severity, UnderlayFact,
    UnderlayFacts,
};
use crate::correlate::{Hop, Sizes};
use crate::model::{Proto, Tunnel, TunnelKind};

/// A tunnel one way between two points: kind, VNI or key, outer protocol, addresses
/// and destination port (UDP tunnels pick their source port per inner flow), then
/// the sending and the receiving point.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Way {
    kind: TunnelKind,
    id: Option<u32>,
    proto: Proto,
    src: IpAddr,
    dst: IpAddr,
    dport: u16,
    from: usize,
    to: usize,
}

/// A tunnel's ends one way between two points, whatever its protocol and ports.
type Ends = (TunnelKind, Option<u32>, IpAddr, IpAddr, usize, usize);

impl Way {
    fn of(t: &Tunnel, from: usize, to: usize) -> Way {
        let o = &t.outer;
        Way {
            kind: t.kind,
            id: t.id,
            proto: o.proto,
            src: o.src,
            dst: o.dst,
            dport: o.dport,
            from,
            to,
        }
    }

    fn ends(&self) -> Ends {
        (self.kind, self.id, self.src, self.dst, self.from, self.to)
    }

    /// The same tunnel the other way between the same points.
    fn back(&self) -> Ends {
        (self.kind, self.id, self.dst, self.src, self.to, self.from)
    }
}

/// One direction of one connection's link inside a tunnel.
struct Side<'a> {
    ci: usize,
    li: usize,
    dir: Direction,
    from: &'a Hop,
    to: &'a Hop,
    sizes: &'a Sizes,
    /// Lost packets no earlier rule explained.
    lost: u64,
}

/// The tunnel packets travelling from `from` to `to` were sent in (initiator packets:
/// the flow's first tunnel, responder packets: the second), when `to` carried the
/// same tunnel: it sits on the far side of the underlay.
fn tunnel_across(from: &Hop, to: &Hop, dir: Direction) -> Option<Tunnel> {
    let t = from.flow.tunnels()[usize::from(dir == Direction::Rev)]?;
    let same = |u: &Tunnel| {
        let (a, b) = (&t.outer, &u.outer);
        u.kind == t.kind
            && u.id == t.id
            && ((a.src, a.dst) == (b.src, b.dst) || (a.src, a.dst) == (b.dst, b.src))
    };
    to.flow.tunnels().iter().flatten().any(same).then_some(t)
}

pub fn detect(x: &Ctx, explained: &Explained) -> Detected {
    let mut sides: BTreeMap<Way, (Tunnel, Vec<Side>)> = BTreeMap::new();
    for (ci, conn) in x.c.connections.iter().enumerate() {
        for (li, l) in conn.links.iter().enumerate() {
            let (up, down) = (&conn.hops[l.from], &conn.hops[l.to]);
            for (dir, from, to, sizes, gap) in [
                (
                    Direction::Fwd,
                    up,
                    down,
                    &l.sizes.fwd,
                    &l.unmatched.lost_fwd,
                ),
                (
                    Direction::Rev,
                    down,
                    up,
                    &l.sizes.rev,
                    &l.unmatched.lost_rev,
                ),
            ] {
                let Some(t) = tunnel_across(from, to, dir) else {
                    continue;
                };
                let lost = gap.packets.saturating_sub(explained.get(ci, li, dir));
                let e = sides
                    .entry(Way::of(&t, from.point, to.point))
                    .or_insert((t, Vec::new()));
                e.1.push(Side {
                    ci,
                    li,
                    dir,
                    from,
                    to,
                    sizes,
                    lost,
                });
            }
        }
    }
    // When each tunnel (either way, between the same points) last carried a packet
    // across.
    let mut last_crossed: BTreeMap<Ends, i64> = BTreeMap::new();
    for (way, (_, v)) in &sides {
        for b in v
            .iter()
            .filter_map(|s| s.sizes.crossed_span)
            .map(|(_, b)| b)
        {
            let e = last_crossed.entry(way.ends()).or_insert(b);
            *e = (*e).max(b);
        }
    }
    let mut out = Detected::default();
    for (way, (tunnel, v)) in &sides {
        let later = |t: i64| {
            [way.ends(), way.back()]
                .iter()
                .any(|e| last_crossed.get(e).is_some_and(|&b| b > t))
        };
        let Some(f) = finding(x, *tunnel, v, later) else {
            continue;
        };
        for s in v.iter().filter(|s| s.lost > 0) {
            out.explains.add(s.ci, s.li, s.dir, s.lost);
        }
        out.findings.push(f);
    }
    out
}

/// The finding for one tunnel's sides one way between two points, when packets were
/// lost while the receiving point was capturing, packets of the tunnel crossed that
/// way before the first of them, and `later` says some crossed after the last.
fn finding(
    x: &Ctx,
    tunnel: Tunnel,
    sides: &[Side],
    later: impl Fn(i64) -> bool,
) -> Option<Finding> {
    let lossy: Vec<&Side> = sides
        .iter()
        .filter(|s| s.lost > 0 && s.sizes.missing().is_some())
        .collect();
    let first = lossy
        .iter()
        .filter_map(|s| s.sizes.missing())
        .map(|m| m.first_ns)
        .min()?;
    let last = lossy
        .iter()
        .filter_map(|s| s.sizes.missing())
        .map(|m| m.last_ns)
        .max()?;
    let (from, to) = (lossy[0].from.point, lossy[0].to.point);
    let before = sides
        .iter()
        .filter_map(|s| s.sizes.crossed_span)
        .any(|(a, _)| a < first);
    if !before || !later(last) || !x.capturing(to, first) {
        return None;
    }
    let lost: u64 = lossy.iter().map(|s| s.lost).sum();
    let crossed: u64 = sides.iter().map(|s| s.sizes.crossed).sum();
    let crossed_max = sides.iter().map(|s| s.sizes.crossed_max).max().unwrap_or(0);
    let missing = || lossy.iter().filter_map(|s| s.sizes.missing());
    let min_len = missing().map(|m| m.min_len).min().unwrap_or(0);
    let max_len = missing().map(|m| m.max_len).max().unwrap_or(0);
    let facts = UnderlayFacts {
        from: x.name(from).to_string(),
        to: x.name(to).to_string(),
        tunnel,
        lost_len: (min_len, max_len),
        crossed,
        crossed_max,
        larger: min_len > crossed_max,
        window: window(sides, first, last),
    };
    let mut f = Finding::new(
        Code::UnderlayDrop,
        Severity::Error,
        Detail::UnderlayDrop(facts.clone()),
    );
    let head = lossy[0];
    f.evidence = vec![x.hop(head.from), x.hop(head.to)];
    for s in &lossy {
        let m = s.sizes.missing().unwrap_or_default();
        f.evidence.push(Evidence::Underlay(UnderlayFact::Lost {
            conn: x.id(s.ci),
            direction: s.dir,
            packets: s.lost,
            min_len: m.min_len,
            max_len: m.max_len,
            first_ns: m.first_ns,
            last_ns: m.last_ns,
        }));
    }
    f.evidence.push(Evidence::Underlay(UnderlayFact::Crossed {
        packets: crossed,
        max_len: crossed_max,
        before: last_before(sides, first),
        window: facts.window,
    }));
    f.conns = lossy.iter().map(|s| s.ci).collect();
    f.conns.sort_unstable();
    f.conns.dedup();
    f.points = vec![facts.from.clone(), facts.to.clone()];
    // As the lost packets travelled: responder packets go the other way.
    f.tuples = vec![x.seen(head.from, Role::Seen), x.seen(head.to, Role::Next)];
    if head.dir == Direction::Rev {
        for t in &mut f.tuples {
            t.tuple = t.tuple.reversed();
        }
    }
    f.first_ns = Some(first);
    f.last_ns = Some(last);
    f.packets = lost;
    Some(f)
}

/// The last packet of the tunnel known to have crossed that way before `first`: a
/// side's last before its own first lost packet, or its last of all.
fn last_before(sides: &[Side], first: i64) -> Option<i64> {
    let known = sides.iter().flat_map(|s| {
        let m = s.sizes.missing().filter(|_| s.lost > 0);
        [
            m.and_then(|m| m.crossed_before),
            s.sizes.crossed_span.map(|(_, b)| b),
        ]
    });
    known.flatten().filter(|&t| t < first).max()
}

/// Whether nothing of the tunnel crossed that way from the first lost packet to the
/// last: then the first that crossed after them (`None`: nothing did).
fn window(sides: &[Side], first: i64, last: i64) -> Option<Option<i64>> {
    let mut after: Option<i64> = None;
    for s in sides {
        let mut next = |t: Option<i64>| {
            if let Some(t) = t {
                after = Some(after.map_or(t, |a| a.min(t)));
            }
        };
        match (
            s.sizes.missing().filter(|_| s.lost > 0),
            s.sizes.crossed_span,
        ) {
            (Some(m), _) => {
                // Its own packets that crossed are all before its first lost one or
                // after its last: none within the tunnel's span.
                let clear = m.crossed_amid == 0
                    && m.crossed_before.is_none_or(|b| b < first)
                    && m.crossed_after.is_none_or(|a| a > last);
                if !clear {
                    return None;
                }
                next(m.crossed_after);
            }
            (None, Some((a, b))) => {
                // Without a lost packet, only its first and last are known.
                if b < first {
                    continue;
                }
                if a <= last {
                    return None;
                }
                next(Some(a));
            }
            (None, None) => {}
        }
    }
    Some(after)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{run, wire};
    use crate::audit::{Code, Detail, Severity};
    use crate::capture::{InputSpec, ReadOptions};
    use crate::correlate::{self, Config, Correlation};
    use crate::model::{Proto, TunnelKind};

    /// Both nodes of an overlay recording: node A's pod link and eth0, node B's eth0
    /// and pod link (on the lab's own clock), under the names given in that order.
    fn nodes(scenario: &str, names: [&str; 4]) -> Correlation {
        let root = env!("CARGO_MANIFEST_DIR");
        let files = ["veth-c1", "eth0", "node-b/eth0", "node-b/veth-c1"];
        let specs: Vec<InputSpec> = names
            .iter()
            .zip(files)
            .map(|(n, f)| {
                format!("{n}={root}/samples/{scenario}/{f}.pcap")
                    .parse()
                    .unwrap()
            })
            .collect();
        correlate::run(&specs, &ReadOptions::default(), Config::default())
    }

    #[test]
    fn tunnel_packets_larger_than_the_underlay_carries() {
        let c = nodes(
            "fault-underlay-drop",
            ["a-pod", "a-eth0", "b-eth0", "b-pod"],
        );
        let f = run(&c, &[], Code::UnderlayDrop);
        assert_eq!(f.len(), 1, "{f:#?}");
        let f = &f[0];
        assert_eq!(f.severity, Severity::Error);
        let Detail::UnderlayDrop(d) = &f.detail else {
            panic!("{:?}", f.detail)
        };
        assert_eq!(d.tunnel.kind, TunnelKind::Vxlan);
        assert_eq!((d.from.as_str(), d.to.as_str()), ("b-eth0", "a-eth0"));
        // Full-size segments inside (the pods' MTU); everything smaller crossed, pings
        // included while the segments were lost.
        assert_eq!(d.lost_len, (1450, 1450));
        assert!(d.larger && d.crossed_max < 1450, "{d:?}");
        assert_eq!(d.window, None);
        assert!(f.packets >= 3, "{}", f.packets);
        assert_eq!(f.proto(), Some(Proto::Tcp));
        // The segments are this finding's, not `pmtu-black-hole`'s nor `lost`'s.
        assert!(run(&c, &[], Code::PmtuBlackHole).is_empty());
        assert!(run(&c, &[], Code::Lost).is_empty());
    }

    #[test]
    fn every_tunnel_packet_one_way_for_a_time() {
        let c = nodes("fault-underlay-blocked", ["pod1", "node1", "node2", "pod2"]);
        let f = run(&c, &[], Code::UnderlayDrop);
        assert_eq!(f.len(), 1, "{f:#?}");
        let f = &f[0];
        let Detail::UnderlayDrop(d) = &f.detail else {
            panic!("{:?}", f.detail)
        };
        assert_eq!((d.from.as_str(), d.to.as_str()), ("node2", "node1"));
        assert_eq!(d.tunnel.id, Some(1));
        // DNS answers and echo replies alike: packets of the same sizes crossed before
        // and after, none between.
        assert!(!d.larger, "{d:?}");
        let after = d.window.flatten().expect("crossed after");
        assert!(after > f.last_ns.unwrap());
        let protos: Vec<Proto> = f.conns.iter().map(|&k| c.connections[k].proto).collect();
        assert_eq!(protos, [Proto::Udp, Proto::Icmp]);
        assert!(run(&c, &[], Code::Lost).is_empty());
    }

    #[test]
    fn silent_where_the_tunnel_lost_nothing_or_there_is_none() {
        let c = nodes("overlay-vxlan", ["a-pod", "a-eth0", "b-eth0", "b-pod"]);
        assert!(run(&c, &[], Code::UnderlayDrop).is_empty());
        for s in ["fault-pmtu-black-hole", "fault-forward-drop", "masquerade6"] {
            assert!(run(&wire(s), &[], Code::UnderlayDrop).is_empty(), "{s}");
        }
    }
}
