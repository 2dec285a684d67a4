//! `client-address-lost` (FM-09, FM-11): connections that NAT rewrote in both
//! directions on their way in, DNAT to a backend and SNAT to an address of the host,
//! so the backend sees the host, not the client: a NodePort with
//! `externalTrafficPolicy: Cluster`, or any rule that masquerades traffic towards a
//! published service. Decided from the wire (a stretch of the path, one link or
//! several, over which both the destination and the source address changed between two
//! different points: a bridge port with bridge netfilter DNATs, the uplink
//! masquerades); with `--rules`, the rule that marked the connection for masquerade and
//! the one that masqueraded it are named. One
//! finding per service and NAT address, with every connection. Info: often by design,
//! but the first thing to know when a backend logs the wrong client.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::audit::{Code, Ctx, Detail, Finding, RuleRole, Severity};
use crate::model::Proto;
use crate::rules::eval::{Event, Outcome, RuleRef};
use crate::rules::{RuleSet, Target};

/// (from point, to point, protocol, service address and port, address the backend saw).
type Key = (usize, usize, Proto, IpAddr, u16, IpAddr);

/// The stretches of `conn`'s path, as (first hop, last hop), over which both the
/// destination and the source address were rewritten: one link (the host's NAT seen
/// from its two sides), or several, as when a bridge port DNATs (bridge netfilter) and
/// the uplink masquerades. Each stretch starts where the one before it ended.
fn rewritten_stretches(conn: &crate::correlate::Connection) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 1 < conn.hops.len() {
        let a = &conn.hops[i];
        let end = (i + 1..conn.hops.len()).find(|&k| {
            let b = &conn.hops[k];
            b.flow.tuple.src != a.flow.tuple.src && b.flow.tuple.dst != a.flow.tuple.dst
        });
        match end {
            Some(k) => {
                out.push((i, k));
                i = k;
            }
            None => i += 1,
        }
    }
    out
}

pub fn detect(x: &Ctx) -> Vec<Finding> {
    let c = x.c;
    // Per service: (connection, first hop, last hop).
    let mut groups: BTreeMap<Key, Vec<(usize, usize, usize)>> = BTreeMap::new();
    for (ci, conn) in c.connections.iter().enumerate() {
        // ICMP errors follow the connection they quote, in its reply direction.
        if conn.icmp_error().is_some() {
            continue;
        }
        for (from, to) in rewritten_stretches(conn) {
            let (up, down) = (&conn.hops[from], &conn.hops[to]);
            // One interface crossed twice is hairpin traffic, a case of its own.
            if up.point == down.point {
                continue;
            }
            let t = up.flow.tuple;
            let key = (
                up.point,
                down.point,
                t.proto,
                t.dst,
                t.dport,
                down.flow.tuple.src,
            );
            groups.entry(key).or_default().push((ci, from, to));
        }
    }
    let mut out = Vec::new();
    for ((_, _, _, _, _, seen_as), members) in groups {
        let (ci, from, to) = members[0];
        let conn = &c.connections[ci];
        let (up, down) = (&conn.hops[from], &conn.hops[to]);
        let mut clients: Vec<IpAddr> = members
            .iter()
            .map(|&(k, from, _)| c.connections[k].hops[from].flow.tuple.src)
            .collect();
        clients.sort();
        clients.dedup();
        let mut f = Finding::new(
            Code::ClientAddressLost,
            Severity::Info,
            Detail::ClientAddressLost {
                service: up.flow.tuple,
                seen_as,
                clients,
                external_cluster: false,
            },
        );
        super::across(x, &mut f, ci, up, down);
        if let (Some(rules), Some(o)) = (x.rules, x.attribution(ci).and_then(|a| a.outcome())) {
            if let Some(r) = marked_for_masquerade(rules, o) {
                f.evidence.extend(x.rule(&r, RuleRole::Marked));
            }
            if let Some(n) = &o.snat {
                f.evidence.extend(x.rule(&n.rule, RuleRole::Translated));
            }
            if let Detail::ClientAddressLost {
                external_cluster, ..
            } = &mut f.detail
            {
                *external_cluster = entered_external_chain(rules, o);
            }
        }
        super::of_connections(x, &mut f, members.iter().map(|&(k, _, _)| k).collect());
        out.push(f);
    }
    out
}

/// The last MARK rule that set a bit of the packet's mark before its source NAT: how
/// kube-proxy (and others) flag traffic for the masquerade rule of POSTROUTING (not
/// the rule that toggles the bit off again just before masquerading).
fn marked_for_masquerade(rules: &RuleSet, o: &Outcome) -> Option<RuleRef> {
    let snat = o.snat.as_ref()?;
    o.events
        .iter()
        .take_while(|e| !matches!(e, Event::Matched(r) if *r == snat.rule))
        .filter_map(|e| match e {
            Event::Matched(r) => Some(r),
            _ => None,
        })
        .filter(|r| {
            matches!(r.rule(rules).map(|x| &x.target), Some(Target::Mark(op)) if op.clear & op.xor != 0)
        })
        .last()
        .cloned()
}

/// Whether the way went through kube-proxy's chain for traffic from outside the
/// cluster (`KUBE-EXT-*`, nftables mode `external-*`), whose masquerade is what
/// `externalTrafficPolicy: Cluster` means.
fn entered_external_chain(rules: &RuleSet, o: &Outcome) -> bool {
    let external = |c: &str| c.starts_with("KUBE-EXT-") || c.starts_with("external-");
    o.events.iter().any(|e| match e {
        // A rule of that chain matched, or a jump to it (a verdict map's branch
        // shows as the rules it then matched).
        Event::Matched(r) => {
            external(&r.chain)
                || matches!(
                    r.rule(rules).map(|x| &x.target),
                    Some(Target::Jump(c) | Target::Goto(c)) if external(c)
                )
        }
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::findings::testing::*;

    fn found(scenario: &str) -> Vec<Finding> {
        run(&wire(scenario), &[], Code::ClientAddressLost)
    }

    #[test]
    fn inbound_dnat_with_snat_to_the_host_hides_the_client() {
        // kube-proxy in iptables mode (TCP and UDP), and in nftables mode.
        for s in ["nodeport", "kube-nft"] {
            let got = found(s);
            assert!(!got.is_empty(), "no finding on {s}");
            check(&got);
        }
    }

    fn check(got: &[Finding]) {
        for f in got {
            let Detail::ClientAddressLost {
                service,
                seen_as,
                clients,
                ..
            } = &f.detail
            else {
                panic!("{:?}", f.detail)
            };
            assert_ne!(service.dst, *seen_as);
            assert!(!clients.contains(seen_as), "{clients:?}");
            assert_eq!(f.severity, Severity::Info);
        }
    }

    /// A bridge port that DNATs (bridge netfilter) and an uplink that masquerades:
    /// the two rewrites on two links of one path are one lost client address, as when
    /// the bridge is not captured and one link shows both.
    #[test]
    fn dnat_and_masquerade_on_two_links_are_one_finding() {
        let conns = |points: &[&str]| {
            let got = run(
                &wire_at("overlay-vxlan", points),
                &[],
                Code::ClientAddressLost,
            );
            check(&got);
            got.iter().map(|f| f.conns.len()).sum::<usize>()
        };
        let split = conns(&["veth-c1", "docker0", "eth0"]);
        assert!(split > 0, "no finding with the bridge captured");
        assert_eq!(split, conns(&["veth-c1", "eth0"]));
    }

    #[test]
    fn silent_where_the_client_keeps_its_address() {
        // Docker's published port (DNAT only) and outbound masquerade (SNAT only).
        for s in ["published-port", "masquerade", "masquerade6"] {
            assert!(found(s).is_empty(), "{s}");
        }
    }
}
