//! `leak` (FM-01, FM-02): packets that escaped NAT.
//!
//! * Inside address: a hop at an outside point whose tuple carries an address NAT
//!   hides at that point, sending to something that is not inside (as the
//!   connection's initiator, or answering a connection addressed straight to it): an address seen
//!   translated there, or any address of an inside prefix whose translations show the
//!   point is outside for it (a host with no translated connection of its own, when
//!   no NAT rule matched it). Connections that translated the same traffic
//!   (correlation matched the packets, or carried this very tuple across the
//!   translation into the point) are named with it.
//! * Host RST: on a translated TCP link, a segment towards the NAT endpoint reached
//!   the outside point and was never translated back, and right after it a RST left
//!   the outside point from the NAT endpoint without coming from inside: the host's
//!   own stack answered a segment conntrack would not translate. The segments are
//!   explained (not `lost`).

use std::collections::BTreeSet;
use std::net::IpAddr;

use foldhash::{HashMap, HashMapExt, HashSet};

use super::Detected;
use crate::audit::{
    Code, Ctx, Detail, Direction, Evidence, Explained, Finding, GapFacts, LeakKind, Role, Severity,
};
use crate::correlate::{Gap, Hop};
use crate::flows::TcpState;
use crate::model::{tcp_flags, NatKind, Proto, Tuple};

/// How soon after an untranslated segment the host's own RST must follow to be its
/// answer. The kernel answers within microseconds (under 100 µs in the lab, FM-01);
/// 5 ms leaves room for a busy host without pairing unrelated packets.
const HOST_RST_NS: i64 = 5_000_000;

pub fn gap_facts(g: &Gap) -> GapFacts {
    GapFacts {
        packets: g.packets,
        first_ns: g.first_ns,
        last_ns: g.last_ns,
        first_tcp_flags: g.first_tcp_flags,
    }
}

pub fn inside_address(x: &Ctx) -> Vec<Finding> {
    let (c, topo) = (x.c, x.topo);
    let mut out = Vec::new();
    // The hops that show an address the translation into their point hides, and
    // which one: seldom any.
    let leaked: Vec<(usize, &Hop, IpAddr)> = (c.connections.iter().enumerate())
        .flat_map(|(ci, conn)| conn.hops.iter().map(move |h| (ci, h)))
        .filter_map(|(ci, h)| {
            let t = h.flow.tuple;
            // Only packets from the inside address leaked: a connection from outside
            // addressed straight to one (routed to the inside network, not through a
            // published port) leaked only if the inside answered it untranslated.
            let inside = if topo.hides(h.point, t.src) && !topo.is_inside(t.dst) {
                t.src
            } else if topo.hides(h.point, t.dst) && !topo.is_inside(t.src) && h.flow.packets[1] > 0
            {
                t.dst
            } else {
                return None;
            };
            Some((ci, h, inside))
        })
        .collect();
    if leaked.is_empty() {
        return out;
    }
    // The connections that carried a leaked hop's tuple across a translation into its
    // point: (point, tuple before) → connections, ascending, each once.
    let wanted: HashSet<(usize, Tuple)> = leaked
        .iter()
        .map(|&(_, h, _)| (h.point, h.flow.tuple))
        .collect();
    let mut carried: HashMap<(usize, Tuple), Vec<usize>> = HashMap::new();
    for (k, other) in c.connections.iter().enumerate() {
        for l in other
            .links
            .iter()
            .filter(|l| l.change.kind != NatKind::None)
        {
            let key = (other.hops[l.to].point, other.hops[l.from].flow.tuple);
            if !wanted.contains(&key) {
                continue;
            }
            let ks = carried.entry(key).or_default();
            if ks.last() != Some(&k) {
                ks.push(k);
            }
        }
    }
    for (ci, h, inside) in leaked {
        // The direction the inside address sent in.
        let from_inside = usize::from(h.flow.tuple.src != inside);
        let (conn, t) = (&c.connections[ci], h.flow.tuple);
        // Connections that translated this same traffic: the flows correlate
        // matched but could not join (same packets), and connections that
        // carried this very tuple across the translation into this point.
        let here = x.name(h.point);
        let mut by: BTreeSet<usize> = conn
            .related
            .iter()
            .filter(|r| r.point == here)
            .filter_map(|r| x.conn_index(&r.connection))
            .collect();
        let into = carried.get(&(h.point, t)).into_iter().flatten();
        by.extend(into.filter(|&&k| k != ci));
        let by: Vec<usize> = by.into_iter().collect();
        let mut f = Finding::new(
            Code::Leak,
            Severity::Error,
            Detail::Leak {
                kind: LeakKind::InsideAddress,
                inside_address: Some(inside),
                translated_by: x.ids(&by),
                host_rst: None,
            },
        );
        f.tuples.push(x.seen(h, Role::Leaked));
        f.evidence.push(x.hop(h));
        for &k in &by {
            let other = &c.connections[k];
            if let Some(kh) = other.hops.iter().find(|o| o.point == h.point) {
                f.tuples.push(x.seen(kh, Role::Translated));
            }
            f.evidence.extend(x.translated(other, h.point));
            for r in other
                .related
                .iter()
                .filter(|r| r.connection == conn.id && r.other_point == here)
            {
                f.evidence.push(Evidence::SamePackets {
                    packets: r.matched_packets,
                    conn: other.id.clone(),
                    point: r.point.clone(),
                });
            }
        }
        // The entry's ORIGINAL is the leaked tuple for traffic from inside (SNAT).
        f.evidence.extend(x.destroyed_before(&t, h.first_ns));
        f.evidence.extend(x.stats_evidence());
        f.conns = std::iter::once(ci).chain(by).collect();
        f.points = vec![here.to_string()];
        f.first_ns = Some(h.first_ns);
        f.last_ns = Some(h.last_ns);
        f.packets = h.flow.packets[from_inside];
        out.push(f);
    }
    out
}

pub fn host_rst(x: &Ctx, explained: &Explained) -> Detected {
    let mut out = Detected::default();
    for (ci, conn) in x.c.connections.iter().enumerate() {
        if conn.proto != Proto::Tcp {
            continue;
        }
        for (li, l) in conn.links.iter().enumerate() {
            if l.change.kind == NatKind::None {
                continue;
            }
            let (up, down) = (&conn.hops[l.from], &conn.hops[l.to]);
            // SNAT alone: outside is downstream; any DNAT: outside is upstream.
            let outside_down = !(l.change.dst_addr_changed || l.change.dport_changed);
            let (lost, rst, lost_dir, outside, inside) = if outside_down {
                let u = &l.unmatched;
                (&u.lost_rev, &u.appeared_fwd, Direction::Rev, down, up)
            } else {
                let u = &l.unmatched;
                (&u.lost_fwd, &u.appeared_rev, Direction::Fwd, up, down)
            };
            let is_rst = rst.first_tcp_flags.is_some_and(|f| f & tcp_flags::RST != 0);
            let (Some(lf), Some(ll), Some(rf)) = (lost.first_ns, lost.last_ns, rst.first_ns) else {
                continue;
            };
            if !is_rst || rf < lf || rf > ll + HOST_RST_NS {
                continue;
            }
            let already = explained.get(ci, li, lost_dir);
            if already >= lost.packets {
                continue;
            }
            out.explains.add(ci, li, lost_dir, lost.packets - already);
            let t = outside.flow.tuple;
            let (s, d) = ((t.proto, t.src, t.sport), (t.proto, t.dst, t.dport));
            let (nat, peer) = if outside_down { (s, d) } else { (d, s) };
            let (oname, iname) = (x.name(outside.point), x.name(inside.point));
            let mut f = Finding::new(
                Code::Leak,
                Severity::Error,
                Detail::Leak {
                    kind: LeakKind::HostRst,
                    inside_address: None,
                    translated_by: Vec::new(),
                    host_rst: Some((outside_down, lost.first_tcp_flags)),
                },
            );
            // The RST at the outside point is the host's, not the connection's end's.
            let mut outside_hop = x.hop(outside);
            if let Evidence::Hop(facts) = &mut outside_hop {
                facts.tcp_state = Some(TcpState::ResetByNatHost);
            }
            f.evidence = vec![
                outside_hop,
                Evidence::Untranslated {
                    gap: gap_facts(lost),
                    peer,
                    nat,
                    outside: oname.to_string(),
                    inside: iname.to_string(),
                },
                Evidence::HostRst {
                    gap: gap_facts(rst),
                    nat,
                    peer,
                    outside: oname.to_string(),
                    delay_ns: rf - lf,
                },
            ];
            f.evidence
                .extend(x.destroyed_before(&conn.hops[0].flow.tuple, lf));
            f.evidence.extend(x.stats_evidence());
            f.conns = vec![ci];
            f.points = vec![oname.to_string()];
            f.tuples = vec![x.seen(outside, Role::Translated)];
            f.first_ns = Some(lf);
            f.last_ns = Some(rst.last_ns.unwrap_or(rf).max(ll));
            f.packets = lost.packets + rst.packets;
            out.findings.push(f);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::testing::{run, wire};
    use crate::audit::{Code, Detail, LeakKind};

    #[test]
    fn invalid_segment_leaks_with_the_inside_address() {
        let c = wire("fault-invalid-leak");
        let f = run(&c, &[], Code::Leak);
        assert!(f.iter().any(|f| matches!(
            f.detail,
            Detail::Leak {
                kind: LeakKind::InsideAddress,
                ..
            }
        )));
    }

    #[test]
    fn clean_masquerade_leaks_nothing() {
        for s in ["masquerade", "port-collision", "published-port"] {
            assert!(run(&wire(s), &[], Code::Leak).is_empty(), "{s}");
        }
    }
}
