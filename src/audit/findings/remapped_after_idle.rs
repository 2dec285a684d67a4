//! `remapped-after-idle` (FM-14, FM-02's UDP side): a UDP or ICMP tuple that went
//! quiet for longer than conntrack keeps its entry, and whose next packets NAT mapped
//! otherwise.
//!
//! NAT is decided once per entry. A UDP entry lives 30 s after its last packet (120 s
//! once it is a stream), an ICMP one 30 s (`nf_conntrack_udp_timeout`,
//! `_udp_timeout_stream`, `_icmp_timeout`, `_icmpv6_timeout`; the host's settings when
//! given). Past that the kernel forgets the mapping: the tuple's next packet makes a
//! new entry and NAT runs again, and it may choose otherwise: another source port
//! when the old one is another's by then (MASQUERADE, SNAT), a random one
//! (`--random-fully`), another backend (a Service's or a balancing rule's). A peer
//! keyed to the old mapping (a SIP registrar, a VPN or game server, a client of a
//! stateful backend) then loses it; keepalives more often than the timeout keep it.
//!
//! Decided from the wire: two connections whose first hops are the same tuple at the
//! same point (flows split a tuple only when the quiet spell between its packets
//! passed the timeout, as the kernel does) and whose tuples differ at a later point
//! both reached. Info: the kernel did what it is meant to; whether a peer minded is
//! not on the wire. One finding per new life, with both connections.

use crate::audit::{Code, Ctx, Detail, Finding, Role, Severity};
use crate::correlate::Connection;
use crate::model::Proto;

/// The timeout that ended `conn`'s entry, the setting that holds it, and where that
/// was read (none: the kernel's default).
fn timeout(x: &Ctx, conn: &Connection) -> Option<(i64, &'static str, Option<String>)> {
    let replied = conn.hops.first()?.flow.packets[1] > 0;
    let (ns, name) = x.timeouts.after_last(
        conn.proto,
        replied,
        conn.last_ns().saturating_sub(conn.first_ns()),
    )?;
    Some((ns, name, x.sysctls.get(name).map(|s| s.place.clone())))
}

pub fn detect(x: &Ctx) -> Vec<Finding> {
    let c = x.c;
    // The lives of each tuple, by where they were first seen.
    let mut lives: std::collections::BTreeMap<_, Vec<usize>> = Default::default();
    for (ci, conn) in c.connections.iter().enumerate() {
        let udp_or_icmp = matches!(conn.proto, Proto::Udp | Proto::Icmp | Proto::Icmpv6);
        if !udp_or_icmp || conn.icmp_error().is_some() || conn.hops.len() < 2 {
            continue;
        }
        let h = &conn.hops[0];
        lives.entry((h.point, h.flow.tuple)).or_default().push(ci);
    }
    let mut out = Vec::new();
    for mut conns in lives.into_values().filter(|v| v.len() > 1) {
        conns.sort_by_key(|&k| (c.connections[k].first_ns(), k));
        for pair in conns.windows(2) {
            let (a, b) = (&c.connections[pair[0]], &c.connections[pair[1]]);
            let Some((timeout_ns, sysctl, given_at)) = timeout(x, a) else {
                continue;
            };
            let idle_ns = b.first_ns().saturating_sub(a.last_ns());
            if idle_ns <= timeout_ns {
                continue;
            }
            // The first point past the first hop both lives reached where their tuples
            // differ.
            let Some((ha, hb)) = a.hops[1..].iter().find_map(|ha| {
                let hb = b.hops[1..].iter().find(|hb| hb.point == ha.point)?;
                (ha.flow.tuple != hb.flow.tuple).then_some((ha, hb))
            }) else {
                continue;
            };
            let first = &a.hops[0];
            let mut f = Finding::new(
                Code::RemappedAfterIdle,
                Severity::Info,
                Detail::RemappedAfterIdle {
                    tuple: first.flow.tuple,
                    before: ha.flow.tuple,
                    after: hb.flow.tuple,
                    idle_ns,
                    timeout_ns,
                    sysctl: sysctl.to_string(),
                    given_at,
                },
            );
            f.conns = vec![pair[1], pair[0]];
            f.tuples = vec![
                x.seen(first, Role::Original),
                x.seen(ha, Role::Before),
                x.seen(hb, Role::After),
            ];
            f.points = vec![
                x.name(first.point).to_string(),
                x.name(ha.point).to_string(),
            ];
            f.evidence = vec![
                x.translation(pair[0], first, ha),
                x.translation(pair[1], &b.hops[0], hb),
            ];
            for k in [pair[0], pair[1]] {
                f.evidence.extend(
                    x.entry_of(k)
                        .map(|e| crate::audit::Evidence::Entry(e.facts())),
                );
            }
            f.first_ns = Some(b.first_ns());
            f.last_ns = Some(b.last_ns());
            f.packets = b.hops[0].flow.packets[0] + b.hops[0].flow.packets[1];
            out.push(f);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::findings::testing::*;

    /// Outbound, MASQUERADE moves a container's second life (UDP and ICMP) off the
    /// port and identifier another container took meanwhile; inbound, a balancing
    /// rule sends a client's second life to the other backend. Each second life is
    /// one finding, with the quiet spell and the timeout it passed.
    #[test]
    fn a_tuple_used_again_past_its_timeout_and_mapped_otherwise() {
        for (s, want) in [
            ("reuse-after-expiry", vec![Proto::Udp, Proto::Icmp]),
            ("reuse-after-expiry-dnat", vec![Proto::Udp]),
        ] {
            let c = wire_at(s, &["veth-c1", "docker0", "eth0"]);
            let found = run(&c, &[], Code::RemappedAfterIdle);
            let mut protos: Vec<Proto> = found.iter().map(|f| f.tuples[0].tuple.proto).collect();
            protos.sort();
            assert_eq!(protos, want, "{s}");
            for f in &found {
                let Detail::RemappedAfterIdle {
                    tuple,
                    before,
                    after,
                    idle_ns,
                    timeout_ns,
                    given_at,
                    ..
                } = &f.detail
                else {
                    panic!("{s}: {:?}", f.detail);
                };
                assert_eq!(f.severity, Severity::Info);
                assert_eq!(*timeout_ns, 30_000_000_000, "{s}");
                assert!(
                    *idle_ns > 33_000_000_000 && *idle_ns < 35_000_000_000,
                    "{s}"
                );
                assert!(given_at.is_none());
                assert_ne!(before, after);
                assert_eq!(tuple.proto, before.proto);
                // The new life is named first, then the one before it.
                let (new, old) = (&c.connections[f.conns[0]], &c.connections[f.conns[1]]);
                assert!(new.first_ns() > old.last_ns());
            }
        }
    }

    /// Lives mapped alike are no finding, nor is a tuple the captures show once; the
    /// host's own timeout, when given, is the one the quiet spell is held to.
    #[test]
    fn lives_mapped_alike_or_within_the_timeout_are_none() {
        // Recordings of every kind of UDP and ICMP traffic, none quiet past 30 s.
        for s in [
            "masquerade",
            "port-collision",
            "snat-random-fully",
            "stale-udp",
            "fault-dns-pair-dropped",
            "masquerade6",
        ] {
            assert!(
                run(&wire(s), &[], Code::RemappedAfterIdle).is_empty(),
                "{s}"
            );
        }
        let c = wire_at("reuse-after-expiry", &["veth-c1", "docker0", "eth0"]);
        let held = |text: &str| {
            let d = crate::conntrack::parse_str("sysctl.txt", text);
            let w = vec![crate::witness::Witness::Conntrack(d)];
            (crate::audit::audit(&c, &Default::default(), w)
                .findings
                .into_iter())
            .filter(|f| f.code == Code::RemappedAfterIdle)
            .map(|f| match f.detail {
                Detail::RemappedAfterIdle {
                    tuple,
                    timeout_ns,
                    given_at,
                    ..
                } => (tuple.proto, timeout_ns, given_at),
                d => panic!("{d:?}"),
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
        };
        let s = 1_000_000_000;
        assert_eq!(
            held("net.netfilter.nf_conntrack_udp_timeout = 20\n"),
            [
                (Proto::Udp, 20 * s, Some("sysctl.txt:1".to_string())),
                (Proto::Icmp, 30 * s, None)
            ]
        );
        // A host that keeps UDP entries longer than the quiet spell: the kernel kept
        // one entry, which the same captures cannot show mapped otherwise.
        assert_eq!(
            held("net.netfilter.nf_conntrack_udp_timeout = 40\n"),
            [(Proto::Icmp, 30 * s, None)]
        );
    }
}
