//! `state-lost` (FM-02 with `nf_conntrack_tcp_loose=1`, FM-14 for TCP): a TCP
//! connection that NAT sent on under another tuple partway through.
//!
//! NAT is decided once per conntrack entry. When a connection's entry goes (it expired
//! while the connection was idle for longer than `nf_conntrack_tcp_timeout_established`,
//! a program deleted it or flushed the table, the table evicted it), the kernel by
//! default picks the connection's next segment up mid-stream as a new entry, and NAT
//! runs again: another source port when the old one is taken or the rule picks at
//! random (`--random-fully`), another backend behind a balancing rule. The far side
//! knows no connection on the new tuple and resets it; the client's connection dies
//! (the `nf_conntrack_tcp_loose=0` variant, where the segment leaves untranslated, is
//! `leak`).
//!
//! Decided from the wire: a connection whose hop at a point is a flow that began
//! without a SYN, whose packets correlation matched to another connection's packets
//! at an earlier point (a [`crate::correlate::Related`] pair it could not join, since
//! that connection already had a flow at the point), where that connection's own flow
//! has another tuple and began first, and the packets its link into the point did not
//! carry began when this flow did. The quiet spell before them is held against the
//! established timeout (the host's when its settings are given): past it, the entry
//! expired; within it, something removed the entry. An event log's `[DESTROY]` of the
//! entry says which, when given.

use crate::audit::{Code, Ctx, Detail, Evidence, Finding, Role, Seen, Severity};
use crate::correlate::{Connection, Hop};
use crate::model::{Proto, Tuple};

/// How far apart the first packet the connection's link did not carry and the first
/// packet of the flow under the new tuple may lie: a NAT host forwards within this.
const SAME_PACKET_NS: i64 = 1_000_000_000;

pub fn detect(x: &Ctx) -> Vec<Finding> {
    let c = x.c;
    let mut out = Vec::new();
    for (bi, b) in c.connections.iter().enumerate() {
        if b.proto != Proto::Tcp {
            continue;
        }
        for hb in b
            .all_hops()
            .filter(|h| !h.flow.tcp.syn && !h.flow.tcp.syn_ack)
        {
            let here = x.name(hb.point);
            let mut found = b
                .related
                .iter()
                .filter(|r| r.point == here)
                .filter_map(|r| x.conn_index(&r.connection))
                .filter_map(|ai| Some((ai, continued(&c.connections[ai], hb)?)));
            let Some((ai, j)) = found.next() else {
                continue;
            };
            out.push(finding(x, (ai, j), (bi, hb)));
        }
    }
    out
}

/// The index of `a`'s hop at `hb`'s point when `hb`'s flow carried on `a` there under
/// another tuple, translated otherwise: `a`'s hop there began first, and the packets
/// `a`'s link into the point did not carry began with `hb`.
fn continued(a: &Connection, hb: &Hop) -> Option<usize> {
    if a.proto != Proto::Tcp {
        return None;
    }
    let j = a.hops.iter().position(|h| h.point == hb.point)?;
    let (ha, link) = (&a.hops[j], a.links.get(j.checked_sub(1)?)?);
    let lost = link.unmatched.lost_fwd.first_ns?;
    let (after, _) = oriented(ha, hb);
    // Packets that crossed untranslated (the tuple of the point before) are a leak:
    // no new entry, NAT skipped them.
    let untranslated = a.hops[j - 1].flow.tuple == after;
    (ha.flow.tuple != after
        && !untranslated
        && ha.first_ns < hb.first_ns
        && lost.abs_diff(hb.first_ns) <= SAME_PACKET_NS.unsigned_abs())
    .then_some(j)
}

/// `hb`'s tuple in the direction of `ha`'s initiator, and the side of `hb`'s flow that
/// answered: a flow picked up mid-stream has no SYN to orient it, and NAT that maps a
/// connection again keeps one of its ends (the server for a new source, the client
/// for a new backend).
fn oriented(ha: &Hop, hb: &Hop) -> (Tuple, usize) {
    let (t, u) = (hb.flow.tuple, ha.flow.tuple);
    let same_way = (t.src, t.sport) == (u.src, u.sport) || (t.dst, t.dport) == (u.dst, u.dport);
    if same_way {
        (t, 1)
    } else {
        (t.reversed(), 0)
    }
}

fn finding(x: &Ctx, (ai, j): (usize, usize), (bi, hb): (usize, &Hop)) -> Finding {
    let a = &x.c.connections[ai];
    let (first, up, ha) = (&a.hops[0], &a.hops[j - 1], &a.hops[j]);
    let gap = &a.links[j - 1].unmatched.lost_fwd;
    let (timeout_ns, sysctl) = x.timeouts.tcp_established();
    // What came back: the packets of the side that answered.
    let (after, back) = oriented(ha, hb);
    let (replies, reset) = (hb.flow.packets[back], hb.flow.tcp.rst[back]);
    let mut f = Finding::new(
        Code::StateLost,
        Severity::Error,
        Detail::StateLost {
            tuple: first.flow.tuple,
            before: ha.flow.tuple,
            after,
            idle_ns: gap.quiet_before_ns,
            timeout_ns,
            sysctl: sysctl.to_string(),
            given_at: x.sysctls.get(sysctl).map(|s| s.place.clone()),
            replies,
            reset,
        },
    );
    f.conns = vec![ai, bi];
    f.tuples = vec![
        x.seen(first, Role::Original),
        x.seen(ha, Role::Before),
        Seen {
            tuple: after,
            ..x.seen(hb, Role::After)
        },
    ];
    f.points = vec![x.name(up.point).to_string(), x.name(ha.point).to_string()];
    f.evidence = vec![x.translation(ai, first, ha), x.hop(hb)];
    // The packets under the new tuple are those of the connection's hop before.
    if let Some(r) = a.related.iter().find(|r| r.connection == x.id(bi)) {
        f.evidence.push(Evidence::SamePackets {
            packets: r.matched_packets,
            conn: x.id(ai),
            point: r.point.clone(),
        });
    }
    // The entry's ORIGINAL is the connection's tuple before NAT; its end is the first
    // `[DESTROY]` after the old hop began, up to a window past the new flow's first
    // packet (which found it gone; the new entry's own end may follow at once).
    f.evidence.extend(x.destroyed_within(
        &first.flow.tuple,
        (ha.first_ns, hb.first_ns.saturating_add(SAME_PACKET_NS)),
        hb.first_ns,
    ));
    f.evidence
        .extend(x.entry_of(ai).map(|e| Evidence::Entry(e.facts())));
    f.evidence
        .extend(x.entry_of(bi).map(|e| Evidence::Entry(e.facts())));
    f.evidence.extend(x.stats_evidence());
    f.first_ns = Some(gap.first_ns.unwrap_or(hb.first_ns).min(hb.first_ns));
    f.last_ns = Some(hb.last_ns);
    f.packets = hb.flow.packets[0] + hb.flow.packets[1];
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::findings::testing::*;

    /// Outbound through MASQUERADE --random-fully (IPv4 and IPv6), the entry expired
    /// after 7 s idle (a 5 s established timeout); inbound through a balancing DNAT, the entry
    /// deleted while the connection was open. Each time the next segment left under
    /// another tuple (another port, another backend) and was reset.
    #[test]
    fn a_connection_sent_on_under_another_tuple_after_its_entry_went() {
        for (s, points, moved_src) in [
            ("fault-idle-expiry-remap", &["docker0", "eth0"][..], true),
            (
                "fault-idle-expiry-remap",
                &["veth-c1", "docker0", "eth0"][..],
                true,
            ),
            ("fault-state-loss-dnat", &["eth0", "docker0"][..], false),
        ] {
            let c = wire_at(s, points);
            let found = run(&c, &[], Code::StateLost);
            assert_eq!(found.len(), 1, "{s} {points:?}: {found:#?}");
            let f = &found[0];
            let Detail::StateLost {
                tuple,
                before,
                after,
                idle_ns,
                replies,
                reset,
                ..
            } = &f.detail
            else {
                panic!("{s}: {:?}", f.detail);
            };
            assert_eq!(f.severity, Severity::Error);
            assert_ne!(before, after);
            assert_eq!(
                before.src != after.src || before.sport != after.sport,
                moved_src
            );
            assert_eq!(
                before.dst != after.dst || before.dport != after.dport,
                !moved_src
            );
            assert_eq!(tuple.proto, Proto::Tcp);
            assert!(*reset && *replies == 1, "{s}");
            // The connection is named first, then the flow that carried it on.
            let (old, new) = (&c.connections[f.conns[0]], &c.connections[f.conns[1]]);
            assert!(old.hops.len() > new.hops.len());
            assert!(idle_ns.is_some(), "{s}");
        }
    }

    /// Connections whose later flows are a port moved at the start (a collision), or
    /// a capture that began mid-stream, are no finding.
    #[test]
    fn nothing_on_connections_whole_at_every_point() {
        for s in [
            "masquerade",
            "port-collision",
            "snat-random-fully",
            "midstream",
            "fault-invalid-leak",
            "published-port",
            "masquerade6",
        ] {
            assert!(run(&wire(s), &[], Code::StateLost).is_empty(), "{s}");
        }
    }
}
