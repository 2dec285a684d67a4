//! `insert-race` (FM-03): the first packets of a connection that one point saw and the
//! next never did, while a copy the initiator sent again crossed: lost once at the NAT
//! host and recovered, at the cost of the initiator's timeout.
//!
//! Conntrack inserts ("confirms") a connection's entry when its first packet leaves
//! POSTROUTING. Until then another packet of the same connection, or of another
//! connection given the same NAT tuple, can race it for the same slot, and the loser is
//! dropped (`insert_failed`, `drop`; newer kernels resolve many UDP clashes instead and
//! count them in `clash_resolve`). Only packets sent before the entry is confirmed can
//! lose that race, so the signature is:
//!
//! * `syn`: a TCP connection whose lost initiator packets are all SYNs sent before any
//!   of its packets crossed, one of whose retransmissions crossed (the connect took one
//!   retransmission timeout longer: 1 s, then 3 s);
//! * `datagram-pair`: the first two datagrams of one socket (one 5-tuple) sent within
//!   [`PAIR_NS`] of each other (a resolver's A and AAAA queries), one of which crossed
//!   and the other of which did not until it was resent.
//!
//! Every lost initiator packet of the link must fit, and none may have been explained
//! by an earlier rule; they are then explained, so `lost` does not report them again.
//! The `conntrack -S` counters (`insert_failed`, `drop`, `clash_resolve`) and, with the
//! host's rules, a rule that drops some of these packets (a `statistic` branch, a match
//! that cannot be decided) are cited: they tell a race from a rule or the path. A
//! warning: the connection worked, late.

use super::Detected;
use crate::audit::{
    Code, Ctx, Detail, Direction, Evidence, Explained, Finding, RaceKind, Role, RuleRole, Severity,
};
use crate::correlate::{Connection, Link, Resent};
use crate::model::{tcp_flags, Proto};
use crate::rules::eval::Fate;

/// The most time between the two datagrams of a pair sent together (glibc sends the A
/// and AAAA queries in one `sendmmsg()`, microseconds apart).
pub const PAIR_NS: i64 = 1_000_000;

/// What the lost packets of one link were, when they fit the signature: the kind,
/// and for a pair the time between its datagrams and whether the second was lost.
fn signature(proto: Proto, resent: &[Resent]) -> Option<(RaceKind, Option<(i64, bool)>)> {
    match proto {
        Proto::Tcp => {
            let syn_only = |r: &Resent| {
                r.tcp_flags
                    .is_some_and(|f| f & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN)
            };
            resent
                .iter()
                .all(|r| syn_only(r) && r.crossed_before == 0)
                .then_some((RaceKind::Syn, None))
        }
        Proto::Udp => {
            let [r] = resent else { return None };
            // The partner: the other of the flow's first two datagrams, which crossed.
            let partner = match (r.nth, r.crossed_before) {
                (0, 0) => r.next,
                (1, 1) => r.prev,
                _ => None,
            };
            let (gap, crossed) = partner?;
            (crossed && gap <= PAIR_NS).then_some((RaceKind::DatagramPair, Some((gap, r.nth == 1))))
        }
        _ => None,
    }
}

/// The rules that drop the connection's first packet in some way through the host's
/// rules (when they were given).
fn droppers(x: &Ctx, ci: usize) -> Vec<Evidence> {
    let Some(a) = x.attribution(ci) else {
        return Vec::new();
    };
    let mut out: Vec<Evidence> = Vec::new();
    for o in &a.walk.outcomes {
        let r = match &o.fate {
            Fate::Dropped { rule: Some(r), .. } | Fate::Rejected { rule: r, .. } => r,
            _ => continue,
        };
        if let Some(e) = x.rule(r, RuleRole::MayDrop) {
            if !out.contains(&e) {
                out.push(e);
            }
        }
    }
    out
}

/// The finding for link `li` of connection `ci`, whose lost initiator packets fit.
fn finding(x: &Ctx, ci: usize, li: usize, kind: RaceKind, pair: Option<(i64, bool)>) -> Finding {
    let conn: &Connection = &x.c.connections[ci];
    let l: &Link = &conn.links[li];
    let (up, down) = (&conn.hops[l.from], &conn.hops[l.to]);
    let (from, to) = (x.name(up.point).to_string(), x.name(down.point).to_string());
    let gap = &l.unmatched.lost_fwd;
    let first = &l.resent_fwd[0];
    let mut f = Finding::new(
        Code::InsertRace,
        Severity::Warning,
        Detail::InsertRace {
            kind,
            from: from.clone(),
            to: to.clone(),
            recovered_after_ns: first.crossed_ns - first.lost_ns,
            pair_gap_ns: pair.map(|(g, _)| g),
        },
    );
    f.evidence = vec![x.hop(up), x.hop(down)];
    if let Some((gap_ns, lost_second)) = pair {
        let first_ns = if lost_second {
            first.lost_ns - gap_ns
        } else {
            first.lost_ns
        };
        f.evidence.push(Evidence::Pair {
            point: from.clone(),
            first_ns,
            gap_ns,
            lost_second,
        });
    }
    f.evidence.push(Evidence::Recovered {
        kind,
        packets: gap.packets,
        first_lost_ns: first.lost_ns,
        crossed_ns: first.crossed_ns,
        tcp_flags: first.tcp_flags,
        from: from.clone(),
        to: to.clone(),
    });
    f.evidence.extend(droppers(x, ci));
    f.evidence
        .extend(x.stats_of(&["insert_failed", "drop", "clash_resolve"]));
    f.conns = vec![ci];
    f.points = vec![from, to];
    f.tuples = vec![x.seen(up, Role::Seen), x.seen(down, Role::Next)];
    f.first_ns = gap.first_ns;
    f.last_ns = gap.last_ns;
    f.packets = gap.packets;
    f
}

pub fn detect(x: &Ctx, explained: &Explained) -> Detected {
    let mut out = Detected::default();
    for (ci, conn) in x.c.connections.iter().enumerate() {
        if x.unseen_opening(ci) {
            // Its first packets were not captured: none was seen lost first.
            continue;
        }
        for (li, l) in conn.links.iter().enumerate() {
            let gap = &l.unmatched.lost_fwd;
            let Some(first) = gap.first_ns else { continue };
            let fits = gap.packets > 0
                && l.resent_fwd.len() as u64 == gap.packets
                && explained.get(ci, li, Direction::Fwd) == 0
                && x.capturing(conn.hops[l.to].point, first);
            if !fits {
                continue;
            }
            let Some((kind, pair)) = signature(conn.proto, &l.resent_fwd) else {
                continue;
            };
            out.findings.push(finding(x, ci, li, kind, pair));
            out.explains.add(ci, li, Direction::Fwd, gap.packets);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::testing::{run, run_with, wire};
    use super::*;

    fn resent(nth: u32, crossed_before: u32, flags: Option<u8>) -> Resent {
        Resent {
            lost_ns: 1_000,
            crossed_ns: 1_000_001_000,
            tcp_flags: flags,
            nth,
            crossed_before,
            prev: None,
            next: None,
        }
    }

    #[test]
    fn only_packets_before_the_entry_is_confirmed_fit() {
        let syn = Some(tcp_flags::SYN);
        assert_eq!(
            signature(Proto::Tcp, &[resent(0, 0, syn), resent(1, 0, syn)]),
            Some((RaceKind::Syn, None))
        );
        // A data segment, or a SYN after something crossed: not a race on the entry.
        let psh = Some(tcp_flags::ACK | tcp_flags::PSH);
        assert_eq!(signature(Proto::Tcp, &[resent(3, 3, psh)]), None);
        assert_eq!(signature(Proto::Tcp, &[resent(2, 1, syn)]), None);
        // The second datagram of a pair 100 µs apart whose first crossed.
        let mut second = resent(1, 1, None);
        second.prev = Some((100_000, true));
        assert_eq!(
            signature(Proto::Udp, &[second]),
            Some((RaceKind::DatagramPair, Some((100_000, true))))
        );
        // Too far apart, the partner lost too, or not among the first two datagrams.
        second.prev = Some((5_000_000, true));
        assert_eq!(signature(Proto::Udp, &[second]), None);
        second.prev = Some((100_000, false));
        assert_eq!(signature(Proto::Udp, &[second]), None);
        let mut later = resent(4, 4, None);
        later.prev = Some((100_000, true));
        assert_eq!(signature(Proto::Udp, &[later]), None);
        // A lone datagram has no partner.
        assert_eq!(signature(Proto::Udp, &[resent(0, 0, None)]), None);
    }

    #[test]
    fn a_first_syn_dropped_once_is_recovered_not_lost() {
        let c = wire("fault-syn-dropped-once");
        let f = run(&c, &[], Code::InsertRace);
        assert_eq!(f.len(), 2, "{f:#?}");
        for f in &f {
            assert_eq!(f.severity, Severity::Warning);
            let Detail::InsertRace {
                kind,
                recovered_after_ns,
                ..
            } = &f.detail
            else {
                panic!("{:?}", f.detail)
            };
            assert_eq!(*kind, RaceKind::Syn);
            // The SYN retransmission timeout: 1 s.
            assert!((900_000_000..1_500_000_000).contains(recovered_after_ns));
            assert_eq!(f.packets, 1);
        }
        assert!(run(&c, &[], Code::Lost).is_empty());
    }

    #[test]
    fn the_aaaa_query_lost_beside_its_a_query_is_a_pair() {
        let c = wire("fault-dns-pair-dropped");
        let f = run(&c, &[], Code::InsertRace);
        assert_eq!(f.len(), 1, "{f:#?}");
        let Detail::InsertRace {
            kind, pair_gap_ns, ..
        } = &f[0].detail
        else {
            panic!("{:?}", f[0].detail)
        };
        assert_eq!(*kind, RaceKind::DatagramPair);
        assert!(pair_gap_ns.is_some_and(|g| g <= PAIR_NS));
        assert!(run(&c, &[], Code::Lost).is_empty());
    }

    #[test]
    fn the_rule_and_the_counters_are_cited() {
        for s in ["fault-syn-dropped-once", "fault-dns-pair-dropped"] {
            let c = wire(s);
            let f = run_with(
                &c,
                s,
                &["iptables.txt", "conntrack-stats.txt"],
                Code::InsertRace,
            );
            assert!(!f.is_empty(), "{s}");
            for f in &f {
                // The DOCKER-USER rule that drops every other such packet.
                assert!(
                    f.evidence.iter().any(|e| matches!(e,
                        Evidence::Rule { role: RuleRole::MayDrop, rule }
                            if rule.chain == "DOCKER-USER" && rule.text.contains("--mode nth"))),
                    "{s}: {:#?}",
                    f.evidence
                );
                // And the kernel's counters, which rule an insert failure out.
                assert!(f.evidence.iter().any(|e| matches!(e,
                    Evidence::Stats { counters: v, .. } if v.contains(&("insert_failed".to_string(), 0)))));
            }
            assert!(
                run_with(&c, s, &["iptables.txt"], Code::Lost).is_empty(),
                "{s}"
            );
        }
    }

    #[test]
    fn other_recordings_have_no_race() {
        for s in [
            "masquerade",
            "masquerade6",
            "port-collision",
            "fault-forward-drop",
            "fault-masq-miss",
            "fault-snat-exhaustion",
            "fault-snat-exhaustion-udp6",
        ] {
            assert!(run(&wire(s), &[], Code::InsertRace).is_empty(), "{s}");
        }
    }
}
