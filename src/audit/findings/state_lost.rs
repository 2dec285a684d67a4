//! `state-lost` (FM-02, FM-14): a connection that NAT sent on under another tuple
//! partway through, its conntrack entry gone.
//!
//! NAT is decided once per conntrack entry. When a connection's entry goes while the
//! connection goes on (it expired while a TCP connection was idle for longer than
//! `nf_conntrack_tcp_timeout_established`, a program deleted it or flushed the table,
//! as kube-proxy clears the UDP entries of a Service whose endpoints changed, the table
//! evicted it), the next packet makes a new entry (TCP: picked up mid-stream, with
//! `nf_conntrack_tcp_loose=1`, the default) and NAT runs again: another source port
//! when the old one is taken or the rule picks at random (`--random-fully`), another
//! backend behind a balancing rule. A TCP peer knows no connection on the new tuple
//! and resets it: the connection dies (error). A UDP or ICMP exchange goes on with the
//! new peer, which may answer (info: request and answer is unharmed, state kept on the
//! old backend or keyed to the old source is lost) or not (warning). The
//! `nf_conntrack_tcp_loose=0` variant, where the segment leaves untranslated, is
//! `leak`.
//!
//! Decided from the wire: a connection whose hop at a point is a flow (TCP: one that
//! began without a SYN) whose packets correlation matched to another connection's at
//! an earlier point (a [`crate::correlate::Related`] pair it could not join, since that
//! connection already had a flow at the point), where that connection's own flow has
//! another tuple and began first, and the packets its link into the point did not
//! carry began when this flow did. A UDP or ICMP tuple quiet past its timeout is two
//! flows at every point (`remapped-after-idle`), so only an entry that went before its
//! time shows this way. The quiet spell before the packets sent on is held against the
//! timeout (the host's when its settings are given): past it, the entry expired;
//! within it, something removed it. An event log's `[DESTROY]` of the entry says
//! when, and who.

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
        let tcp = b.proto == Proto::Tcp;
        let tuple_kept = matches!(b.proto, Proto::Udp | Proto::Icmp | Proto::Icmpv6);
        if !(tcp || tuple_kept) || b.icmp_error().is_some() {
            continue;
        }
        // A TCP flow that NAT made on its first packet began with a SYN.
        let mid_stream = |h: &&Hop| !tcp || !(h.flow.tcp.syn || h.flow.tcp.syn_ack);
        for hb in b.all_hops().filter(mid_stream) {
            let here = x.name(hb.point);
            let mut found = b
                .related
                .iter()
                .filter(|r| r.point == here)
                .filter_map(|r| x.conn_index(&r.connection))
                .filter_map(|ai| Some((ai, continued(&c.connections[ai], hb)?)));
            if let Some((ai, on)) = found.next() {
                out.extend(finding(x, (ai, on), (bi, hb)));
            }
        }
    }
    out
}

/// Where and how `hb`'s flow carried on `a`.
struct CarriedOn {
    /// `a`'s hop at `hb`'s point.
    hop: usize,
    /// `hb`'s tuple in the direction of `a`'s initiator, and the side of `hb`'s flow
    /// that answered ([`oriented`]).
    after: Tuple,
    back: usize,
}

/// How `hb`'s flow carried on `a` at its point under another tuple, translated
/// otherwise, when it did: `a`'s hop there began first, and the packets `a`'s link into
/// the point did not carry began with `hb`.
fn continued(a: &Connection, hb: &Hop) -> Option<CarriedOn> {
    if a.proto != hb.flow.tuple.proto || a.icmp_error().is_some() {
        return None;
    }
    let j = a.hops.iter().position(|h| h.point == hb.point)?;
    let (ha, link) = (&a.hops[j], a.links.get(j.checked_sub(1)?)?);
    let lost = link.unmatched.lost_fwd.first_ns?;
    let (after, back) = oriented(ha, hb);
    // Packets that crossed untranslated (the tuple of the point before) are a leak:
    // no new entry, NAT skipped them.
    let untranslated = a.hops[j - 1].flow.tuple == after;
    (ha.flow.tuple != after
        && !untranslated
        && ha.first_ns < hb.first_ns
        && lost.abs_diff(hb.first_ns) <= SAME_PACKET_NS.unsigned_abs())
    .then_some(CarriedOn {
        hop: j,
        after,
        back,
    })
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

fn finding(x: &Ctx, (ai, on): (usize, CarriedOn), (bi, hb): (usize, &Hop)) -> Option<Finding> {
    let a = &x.c.connections[ai];
    let j = on.hop;
    let (first, up, ha) = (&a.hops[0], &a.hops[j - 1], &a.hops[j]);
    let gap = &a.links[j - 1].unmatched.lost_fwd;
    // The timeout of the entry that went: a TCP connection's established one, a UDP
    // or ICMP flow's as the kernel chose it for the old entry.
    let (timeout_ns, sysctl) = match a.proto {
        Proto::Tcp => x.timeouts.tcp_established(),
        p => {
            let active = gap.first_ns.unwrap_or(hb.first_ns) - first.first_ns;
            x.timeouts
                .after_last(p, first.flow.packets[1] > 0, active)?
        }
    };
    // What came back: the packets of the side that answered.
    let (after, back) = (on.after, on.back);
    let (replies, reset) = (hb.flow.packets[back], hb.flow.tcp.rst[back]);
    let severity = match (a.proto, replies) {
        (Proto::Tcp, _) => Severity::Error,
        (_, 0) => Severity::Warning,
        _ => Severity::Info,
    };
    let mut f = Finding::new(
        Code::StateLost,
        severity,
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
    for k in [ai, bi] {
        f.evidence
            .extend(x.entry_of(k).map(|e| Evidence::Entry(e.facts())));
    }
    f.evidence.extend(x.stats_evidence());
    f.first_ns = Some(gap.first_ns.unwrap_or(hb.first_ns).min(hb.first_ns));
    f.last_ns = Some(hb.last_ns);
    f.packets = hb.flow.packets[0] + hb.flow.packets[1];
    Some(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::findings::testing::*;

    /// Outbound through MASQUERADE --random-fully (IPv4 and IPv6), the TCP entry
    /// expired after 7 s idle (a 5 s established timeout); inbound through a
    /// balancing DNAT, a TCP entry and a UDP one deleted while their flows went on;
    /// outbound, an ICMP echo entry deleted between two rounds of pings. Each time the
    /// next packet left under another tuple (another port or identifier, another
    /// backend): the TCP peer reset it (an error), the new DNS backend answered the
    /// three queries sent on, the server the three pings (info).
    #[test]
    fn a_connection_sent_on_under_another_tuple_after_its_entry_went() {
        let reset = (Severity::Error, true, 1);
        let answered = (Severity::Info, false, 3);
        for (s, points, moved_src, (severity, rst, back)) in [
            (
                "fault-idle-expiry-remap",
                &["docker0", "eth0"][..],
                true,
                reset,
            ),
            (
                "fault-idle-expiry-remap",
                &["veth-c1", "docker0", "eth0"][..],
                true,
                reset,
            ),
            (
                "fault-idle-expiry-remap6",
                &["docker0", "eth0"][..],
                true,
                reset,
            ),
            (
                "fault-state-loss-dnat",
                &["eth0", "docker0"][..],
                false,
                reset,
            ),
            (
                "fault-state-loss-udp",
                &["eth0", "docker0"][..],
                false,
                answered,
            ),
            (
                "fault-state-loss-icmp",
                &["docker0", "eth0"][..],
                true,
                answered,
            ),
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
            assert_eq!((f.severity, *reset, *replies), (severity, rst, back), "{s}");
            assert_ne!(before, after);
            assert_eq!(
                before.src != after.src || before.sport != after.sport,
                moved_src
            );
            assert_eq!(
                before.dst != after.dst || before.dport != after.dport,
                !moved_src
            );
            assert_eq!((tuple.proto, after.proto), (before.proto, before.proto));
            // The connection is named first, then the flow that carried it on.
            let (old, new) = (&c.connections[f.conns[0]], &c.connections[f.conns[1]]);
            assert!(old.hops.len() > new.hops.len());
            assert!(idle_ns.is_some(), "{s}");
        }
    }

    /// Connections whose later flows are a port moved at the start (a collision), a
    /// capture that began mid-stream, a leak, a UDP flow kept on its old backend or
    /// used again past its timeout, are no finding.
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
            "stale-udp",
            "reuse-after-expiry-dnat",
        ] {
            assert!(run(&wire(s), &[], Code::StateLost).is_empty(), "{s}");
        }
    }
}
