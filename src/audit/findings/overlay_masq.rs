//! `overlay-masq`: pod-to-pod traffic masqueraded on its way into an overlay tunnel.
//! In the Kubernetes network model pods reach each other's addresses untranslated. A
//! connection whose source NAT rewrote while its destination stayed the one the
//! client addressed (no DNAT: not Service traffic, whose masquerade by kube-proxy is
//! by design), and whose packets then went into an overlay tunnel (VXLAN, Geneve, IP in
//! IP) towards another node, was caught by a masquerade rule meant for traffic leaving
//! the cluster: flannel's `-s <cluster> -j MASQUERADE` without the RETURN for traffic
//! to the cluster, Calico's natOutgoing when `cali40all-ipam-pools` lacks the
//! destination's pool. The destination sees the node's address, not the client pod's.
//!
//! Decided from the wire: a hop before the connection's first hop in an overlay tunnel
//! shows another source, and no hop up to the tunnel shows another destination, neither
//! in its packets nor in the replies it carried (a bridge port with bridge netfilter
//! DNATs before the bridge's capture: its replies still come from the address the
//! client called). A conntrack entry of the connection that rewrote its destination
//! rules it out too; otherwise the entry is named, and with `--rules` the MASQUERADE or
//! SNAT rule that made the translation. Silent when no capture shows the tunnel: a
//! rewritten source alone does not say where the packets went. GRE, ERSPAN and the
//! IPv6 transition tunnels are not overlays here (site-to-site links and mirrors, where
//! masquerade is ordinary). One finding per pair of points and address the destinations
//! saw, with every connection. Warning: the traffic flows, but network policies by pod
//! address and the destination's logs lose the client.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::audit::ct::CtEntry;
use crate::audit::{Code, Ctx, Detail, Evidence, Finding, RuleRole, Severity};
use crate::correlate::Connection;
use crate::model::{Tunnel, TunnelKind};

/// The tunnels overlay networks carry pod traffic between nodes in.
fn overlay(t: &Tunnel) -> bool {
    matches!(
        t.kind,
        TunnelKind::Vxlan | TunnelKind::Geneve | TunnelKind::Ipip
    )
}

/// Where `conn` went into an overlay tunnel with its source rewritten and its
/// destination not: (the first hop with another source, the first hop in the tunnel).
fn masqueraded_into_tunnel(conn: &Connection) -> Option<(usize, usize)> {
    let t = conn
        .hops
        .iter()
        .position(|h| h.flow.tunnel().is_some_and(overlay))?;
    let into = conn.hops[t].flow.tuple;
    let called = (into.dst, into.dport);
    let from = conn.hops[..t]
        .iter()
        .position(|h| h.flow.tuple.src != into.src)?;
    let destination_kept = conn.hops[..=t].iter().all(|h| {
        (h.flow.tuple.dst, h.flow.tuple.dport) == called
            && h.reply_tuple
                .as_deref()
                .is_none_or(|r| (r.src, r.sport) == called)
    });
    (destination_kept && conn.hops[from].point != conn.hops[t].point).then_some((from, t))
}

pub fn detect(x: &Ctx) -> Vec<Finding> {
    let c = x.c;
    // Per (point before, tunnel point, address the destination saw): (connection,
    // hop before, tunnel hop, its entry).
    type Member<'a> = (usize, usize, usize, Option<&'a CtEntry>);
    let mut groups: BTreeMap<(usize, usize, IpAddr), Vec<Member>> = BTreeMap::new();
    for (ci, conn) in c.connections.iter().enumerate() {
        // ICMP errors follow the connection they quote, in its reply direction.
        if conn.icmp_error().is_some() {
            continue;
        }
        let Some((from, t)) = masqueraded_into_tunnel(conn) else {
            continue;
        };
        let e = x.entry_of(ci);
        let ch = e.map(CtEntry::change);
        if ch.is_some_and(|ch| ch.dst_addr_changed || ch.dport_changed) {
            continue;
        }
        let (up, down) = (&conn.hops[from], &conn.hops[t]);
        groups
            .entry((up.point, down.point, down.flow.tuple.src))
            .or_default()
            .push((ci, from, t, e));
    }
    let mut out = Vec::new();
    for ((_, _, seen_as), members) in groups {
        let (ci, from, t, e) = members[0];
        let conn = &c.connections[ci];
        let (up, down) = (&conn.hops[from], &conn.hops[t]);
        let collect = |of: &dyn Fn(usize, usize) -> IpAddr| {
            let mut v: Vec<IpAddr> = members.iter().map(|&(k, f, _, _)| of(k, f)).collect();
            v.sort();
            v.dedup();
            v
        };
        let clients = collect(&|k, f| c.connections[k].hops[f].flow.tuple.src);
        let destinations = collect(&|k, f| c.connections[k].hops[f].flow.tuple.dst);
        let Some(&tunnel) = down.flow.tunnel() else {
            continue;
        };
        let mut f = Finding::new(
            Code::OverlayMasq,
            Severity::Warning,
            Detail::OverlayMasq {
                original: up.flow.tuple,
                seen_as,
                clients,
                destinations,
                tunnel,
            },
        );
        super::across(x, &mut f, ci, up, down);
        f.evidence.extend(e.map(|e| Evidence::Entry(e.facts())));
        if let Some(n) = x
            .attribution(ci)
            .and_then(|a| a.outcome())
            .and_then(|o| o.snat.as_ref())
        {
            f.evidence.extend(x.rule(&n.rule, RuleRole::Translated));
        }
        super::of_connections(x, &mut f, members.iter().map(|&(k, _, _, _)| k).collect());
        out.push(f);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::findings::testing::*;

    const POINTS: [&str; 3] = ["veth-c1", "docker0", "eth0"];

    fn found(scenario: &str, points: &[&str]) -> Vec<Finding> {
        run(&wire_at(scenario, points), &[], Code::OverlayMasq)
    }

    /// flannel's masquerade over VXLAN (TCP), Calico's natOutgoing over IP in IP (UDP,
    /// ICMP echo): every connection, its client and the tunnel address it was given.
    #[test]
    fn pod_traffic_masqueraded_into_the_tunnel() {
        for (s, kind, conns) in [
            ("fault-overlay-masq", TunnelKind::Vxlan, 3),
            ("fault-overlay-masq-ipip", TunnelKind::Ipip, 3),
        ] {
            for points in [&POINTS[..], &["veth-c1", "eth0"], &["docker0", "eth0"]] {
                let got = found(s, points);
                assert_eq!(got.len(), 1, "{s} {points:?}: {got:?}");
                let f = &got[0];
                assert_eq!(f.conns.len(), conns, "{s} {points:?}");
                assert_eq!(f.severity, Severity::Warning);
                let Detail::OverlayMasq {
                    original,
                    seen_as,
                    clients,
                    destinations,
                    tunnel,
                } = &f.detail
                else {
                    panic!("{:?}", f.detail)
                };
                assert_eq!(tunnel.kind, kind, "{s}");
                assert_eq!(clients, &[original.src]);
                assert_eq!(destinations, &[original.dst]);
                assert!(!clients.contains(seen_as));
                assert_eq!(f.points.last().map(String::as_str), Some("eth0"));
            }
        }
    }

    /// Service traffic: DNAT, then masquerade into the tunnel, is kube-proxy's by design,
    /// also where bridge netfilter DNATs before docker0's capture (only its replies
    /// show the service address).
    #[test]
    fn silent_on_service_traffic_into_the_tunnel() {
        for s in ["overlay-vxlan", "overlay-ipip"] {
            for points in [&POINTS[..], &["docker0", "eth0"]] {
                assert!(found(s, points).is_empty(), "{s} {points:?}");
            }
        }
    }

    /// Without a capture in the tunnel, a masqueraded source says nothing of where it
    /// went; and masquerade to the outside is no overlay's.
    #[test]
    fn silent_without_the_tunnel() {
        assert!(found("fault-overlay-masq", &["veth-c1", "docker0"]).is_empty());
        for s in ["masquerade", "kube-rules", "nodeport"] {
            assert!(found(s, &POINTS).is_empty(), "{s}");
        }
    }

    /// The entry and, with the rules, the masquerade rule that made the translation.
    #[test]
    fn names_the_entry_and_the_rule() {
        for (s, files) in [
            ("fault-overlay-masq", &["conntrack.txt", "iptables.txt"][..]),
            (
                "fault-overlay-masq-ipip",
                &["conntrack.txt", "iptables.txt", "ipsets.txt"][..],
            ),
        ] {
            let got = run_with(&wire_at(s, &POINTS), s, files, Code::OverlayMasq);
            assert_eq!(got.len(), 1, "{s}: {got:?}");
            let ev = &got[0].evidence;
            assert!(
                ev.iter().any(|e| matches!(e, Evidence::Entry(_))),
                "{s}: {ev:?}"
            );
            assert!(
                ev.iter().any(|e| matches!(
                    e,
                    Evidence::Rule { role: RuleRole::Translated, rule }
                        if rule.table == "nat" && rule.text.contains("-j MASQUERADE")
                )),
                "{s}: {ev:?}"
            );
        }
    }
}
