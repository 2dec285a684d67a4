//! `pmtu-black-hole` (FM-18, FM-20): TCP segments too large for the path between two
//! points. On one direction of a link, data segments larger than every packet of that
//! direction that crossed reached one point and never the next, all of them marked
//! not to be fragmented (IPv4 DF, or IPv6), some of them the same bytes sent again
//! whole, none of those bytes delivered later in smaller segments, and nothing
//! smaller lost from the first of them on: the path drops by size, and the sender
//! never learned to send smaller. Path MTU discovery failed: no ICMP "fragmentation
//! needed" / ICMPv6 "packet too big" about the connection was captured, or one was
//! and the too-large segments went on after it (dropped before the sender, or
//! ignored).
//!
//! Segments that crossed cut differently (segmentation offloads) count as crossed,
//! and the largest packet that crossed is measured at the receiving point, so
//! super-packets that crossed in MSS-sized pieces never make the path look smaller
//! than it is. The segments are explained: `lost` does not report them again. Segments
//! `underlay-drop` already explained (lost in a tunnel between two nodes) are left to it.
//!
//! Segments that travelled plain to a point where the connection travels inside a
//! tunnel were to enter it there (a node's underlay interface): the tunnel is named,
//! its headers come on top of them (a tunnel device whose MTU leaves no room for
//! them, outer DF set, drops them without a word to the sender).

use super::Detected;
use crate::audit::{
    Code, Ctx, Detail, Direction, ErrorHop, Evidence, Explained, Finding, PmtuFacts, Role,
    Severity, SizeFact,
};
use crate::correlate::{Connection, Hop, Oversize, Sizes};
use crate::flows::IcmpError;
use crate::model::{Proto, Tunnel};

pub fn detect(x: &Ctx, explained: &Explained) -> Detected {
    let mut out = Detected::default();
    for (ci, conn) in x.c.connections.iter().enumerate() {
        if conn.proto != Proto::Tcp {
            continue;
        }
        for (li, l) in conn.links.iter().enumerate() {
            let (up, down) = (&conn.hops[l.from], &conn.hops[l.to]);
            for (dir, sizes, from, to) in [
                (Direction::Fwd, &l.sizes.fwd, up, down),
                (Direction::Rev, &l.sizes.rev, down, up),
            ] {
                let Some(o) = black_hole(x, sizes, to) else {
                    continue;
                };
                if explained.get(ci, li, dir) >= o.packets {
                    // An earlier rule accounted for them (`underlay-drop`).
                    continue;
                }
                let side = Side {
                    ci,
                    dir,
                    sizes,
                    o,
                    from,
                    to,
                };
                out.explains.add(ci, li, dir, o.packets);
                out.findings.push(finding(x, conn, &side));
            }
        }
    }
    out
}

/// The oversize segments of one direction of a link, when they make a black hole:
/// every one not to be fragmented, some sent again whole, none delivered later,
/// nothing smaller lost after the first, something of that direction crossed, and
/// the receiving point was capturing.
fn black_hole(x: &Ctx, s: &Sizes, to: &Hop) -> Option<Oversize> {
    let o = s.oversize()?;
    (o.df == o.packets
        && o.resent > 0
        && !o.delivered
        && o.smaller_lost == 0
        && s.crossed > 0
        && x.capturing(to.point, o.first_ns))
    .then_some(o)
}

/// One direction of a link with a black hole: the connection, the direction, its
/// sizes, the oversize segments, the sending and the receiving hop.
struct Side<'a> {
    ci: usize,
    dir: Direction,
    sizes: &'a Sizes,
    o: Oversize,
    from: &'a Hop,
    to: &'a Hop,
}

/// ICMP errors saying a packet was too big, about connection `conn` (quoting one of
/// its tuples at the point they were seen): (connection, hop, error) of each.
fn icmp_errors<'a>(x: &Ctx<'a>, conn: &Connection) -> Vec<(usize, &'a Hop, IcmpError)> {
    let mut about: Vec<ErrorHop> = conn
        .hops
        .iter()
        .flat_map(|c| x.errors_quoting(c.point, &c.flow.tuple))
        .copied()
        .collect();
    // An error quoting two of the connection's hops is one error.
    about.sort_unstable_by_key(|q| (q.conn, q.hop));
    about.dedup_by_key(|q| (q.conn, q.hop));
    about
        .into_iter()
        .filter(|q| {
            matches!(
                (
                    x.c.connections[q.conn].proto,
                    q.error.icmp_type,
                    q.error.code
                ),
                (Proto::Icmp, 3, 4) | (Proto::Icmpv6, 2, _)
            )
        })
        .map(|q| (q.conn, q.at, *q.error))
        .collect()
}

fn finding(x: &Ctx, conn: &Connection, s: &Side) -> Finding {
    let (from, to, o) = (s.from, s.to, s.o);
    let (fname, tname) = (x.name(from.point), x.name(to.point));
    let v6 = from.flow.tuple.src.is_ipv6();
    let errors = icmp_errors(x, conn);
    let mut icmp_points: Vec<usize> = errors.iter().map(|(_, h, _)| h.point).collect();
    icmp_points.sort_unstable();
    icmp_points.dedup();
    let facts = PmtuFacts {
        from: fname.to_string(),
        to: tname.to_string(),
        direction: s.dir,
        crossed_max: s.sizes.crossed_max,
        failed: (o.min_len, o.max_len),
        resent: o.resent,
        mss: from.flow.mss,
        v6,
        icmp_mtu: errors.iter().find_map(|(_, _, e)| e.mtu),
        icmp_points: icmp_points.iter().map(|&p| x.name(p).to_string()).collect(),
        tunnel: entering(from, to, s.dir),
    };
    let mut f = Finding::new(
        Code::PmtuBlackHole,
        Severity::Error,
        Detail::PmtuBlackHole(facts),
    );
    f.evidence = vec![
        x.hop(from),
        x.hop(to),
        Evidence::Size(SizeFact::TooBig {
            direction: s.dir,
            packets: o.packets,
            df: o.df,
            v6,
            min_len: o.min_len,
            max_len: o.max_len,
            first_ns: o.first_ns,
            last_ns: o.last_ns,
            from: fname.to_string(),
            to: tname.to_string(),
        }),
        Evidence::Size(SizeFact::SentAgain {
            copies: o.resent,
            to: tname.to_string(),
        }),
        Evidence::Size(SizeFact::SmallerCrossed {
            direction: s.dir,
            packets: s.sizes.crossed,
            max_len: s.sizes.crossed_max,
        }),
        Evidence::Size(SizeFact::Mss {
            point: fname.to_string(),
            mss: from.flow.mss,
            v6,
        }),
    ];
    f.conns = vec![s.ci];
    if errors.is_empty() {
        let points = (0..x.c.points.len()).map(|p| x.name(p).to_string());
        f.evidence.push(Evidence::Size(SizeFact::NoIcmp {
            points: points.collect(),
            v6,
        }));
    }
    for (ei, h, err) in errors {
        f.conns.push(ei);
        f.evidence.push(icmp_fact(x, ei, h, err, v6, o.last_ns));
    }
    f.conns.dedup();
    f.points = vec![fname.to_string(), tname.to_string()];
    // As the segments travelled: responder segments go the other way.
    f.tuples = vec![x.seen(from, Role::Seen), x.seen(to, Role::Next)];
    if s.dir == Direction::Rev {
        for t in &mut f.tuples {
            t.tuple = t.tuple.reversed();
        }
    }
    f.first_ns = Some(o.first_ns);
    f.last_ns = Some(o.last_ns);
    f.packets = o.packets;
    f
}

/// The tunnel the connection travels in at `to` when it travelled plain at `from`:
/// the segments (going `dir`) were to enter it there, that way.
fn entering(from: &Hop, to: &Hop, dir: Direction) -> Option<Tunnel> {
    if from.flow.tunnel().is_some() {
        return None;
    }
    let [fwd, rev] = to.flow.tunnels();
    let (same, other) = match dir {
        Direction::Fwd => (fwd, rev),
        Direction::Rev => (rev, fwd),
    };
    same.or_else(|| {
        other.map(|t| Tunnel {
            outer: t.outer.reversed(),
            ..t
        })
    })
}

/// An ICMP error about the connection (`conn`'s hop `h`) as evidence; the segments
/// went on after it when the last of them came after its first packet.
fn icmp_fact(x: &Ctx, conn: usize, h: &Hop, err: IcmpError, v6: bool, last_ns: i64) -> Evidence {
    Evidence::Size(SizeFact::Icmp {
        point: x.name(h.point).to_string(),
        conn: x.id(conn),
        sender: h.flow.tuple.src,
        packets: h.flow.total_packets(),
        mtu: err.mtu,
        v6,
        first_ns: h.first_ns,
        later: last_ns > h.first_ns,
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::{run, wire, wire_at};
    use crate::audit::{Code, Detail, Direction, Evidence, Severity, SizeFact};
    use crate::model::TunnelKind;

    #[test]
    fn full_size_segments_that_never_leave_the_host_are_a_black_hole() {
        let c = wire("fault-pmtu-black-hole");
        let f = run(&c, &[], Code::PmtuBlackHole);
        assert_eq!(f.len(), 1, "{f:#?}");
        let f = &f[0];
        assert_eq!(f.severity, Severity::Error);
        let Detail::PmtuBlackHole(d) = &f.detail else {
            panic!("{:?}", f.detail)
        };
        assert_eq!((d.from.as_str(), d.to.as_str()), ("docker0", "eth0"));
        assert_eq!(d.direction, Direction::Fwd);
        assert_eq!(d.failed, (1500, 1500));
        assert!(d.crossed_max < 200, "{}", d.crossed_max);
        assert_eq!(d.mss, [Some(1460), Some(1460)]);
        assert_eq!((d.icmp_mtu, d.icmp_points.len()), (None, 0));
        assert!(d.resent >= 3);
        assert!(f
            .evidence
            .iter()
            .any(|e| matches!(e, Evidence::Size(SizeFact::NoIcmp { .. }))));
        // The segments are this finding's, not `lost`'s.
        assert!(run(&c, &[], Code::Lost).is_empty());
    }

    #[test]
    fn a_packet_too_big_that_never_reached_the_sender() {
        let c = wire("fault-pmtu-black-hole6");
        let f = run(&c, &[], Code::PmtuBlackHole);
        assert_eq!(f.len(), 1, "{f:#?}");
        let Detail::PmtuBlackHole(d) = &f[0].detail else {
            panic!()
        };
        assert_eq!((d.from.as_str(), d.to.as_str()), ("eth0", "docker0"));
        assert_eq!(d.direction, Direction::Rev);
        assert_eq!(d.failed, (1500, 1500));
        assert_eq!(d.mss, [Some(1440), Some(1440)]);
        assert_eq!(d.icmp_mtu, Some(1400));
        assert_eq!(d.icmp_points, ["eth0"]);
        assert_eq!(d.mtu(), (1400, 1400));
        // The error's connection is named, and the segments went on after it.
        assert_eq!(f[0].conns.len(), 2);
        assert!(f[0].evidence.iter().any(|e| matches!(
            e,
            Evidence::Size(SizeFact::Icmp {
                later: true,
                mtu: Some(1400),
                ..
            })
        )));
        assert!(run(&c, &[], Code::Lost).is_empty());
    }

    /// A pod's full-size segments that never entered the tunnel to the other node: the
    /// vxlan device's MTU leaves no room for its 50 bytes and its outer DF is set.
    #[test]
    fn segments_too_big_for_the_tunnel_they_were_to_enter() {
        let c = wire_at(
            "fault-vxlan-mtu",
            &["veth-c1", "eth0", "node-b/eth0", "node-b/veth-c1"],
        );
        let f = run(&c, &[], Code::PmtuBlackHole);
        assert_eq!(f.len(), 1, "{f:#?}");
        let Detail::PmtuBlackHole(d) = &f[0].detail else {
            panic!()
        };
        assert_eq!(d.direction, Direction::Rev);
        assert_eq!(d.failed, (1500, 1500));
        assert_eq!((d.icmp_mtu, d.icmp_points.len()), (None, 0));
        let t = d.tunnel.expect("the tunnel");
        assert_eq!((t.kind, t.id), (TunnelKind::Vxlan, Some(1)));
        // The way the segments went: from node B's underlay address to node A's.
        assert_eq!(t.outer.dport, 4789);
        assert_eq!(t.outer.src.to_string(), "203.0.113.2");
        assert_eq!(t.overhead(), Some((50, true)));
        assert!(run(&c, &[], Code::UnderlayDrop).is_empty());
        assert!(run(&c, &[], Code::Lost).is_empty());
        // Plain links on both sides: no tunnel.
        for s in ["fault-pmtu-black-hole", "fault-pmtu-black-hole6"] {
            for f in run(&wire(s), &[], Code::PmtuBlackHole) {
                let Detail::PmtuBlackHole(d) = &f.detail else {
                    panic!()
                };
                assert_eq!(d.tunnel, None, "{s}");
            }
        }
    }

    #[test]
    fn no_black_hole_where_nothing_is_too_big() {
        for s in [
            "masquerade",
            "masquerade6",
            "bulk-offload",
            "bulk-no-offload",
            "fault-forward-drop",
            "fault-invalid-leak",
            "userland-proxy",
        ] {
            assert!(run(&wire(s), &[], Code::PmtuBlackHole).is_empty(), "{s}");
        }
    }
}
