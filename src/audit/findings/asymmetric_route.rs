//! `asymmetric-route` (FM-16): a connection's replies came back by another interface
//! than its requests went by, and went no further.
//!
//! Correlation joins replies seen at a point beside the path to their connection (a
//! return hop: the connection's tuple at the point its requests used, responder
//! packets only, no packet in common with it). When those replies never reach the
//! point before, towards the initiator, while it was capturing, the host dropped them
//! on arrival. The kernel does that to packets that arrive by an interface the route
//! back to their source does not use when reverse-path filtering is strict: the
//! `rp_filter` sysctl at 1 (IPv4, at the routing decision, after conntrack has seen
//! the packet), or a rule that drops on a failed reverse-path check
//! (`-m rpfilter --invert -j DROP`, nft `fib saddr . iif oif missing drop`; in the raw
//! table, before conntrack). Loose mode (`rp_filter=2`) and no filter let them through,
//! and conntrack follows the connection as usual: correlation then shows the return
//! hop and nothing is reported.
//!
//! The evidence says what was seen: where the requests went, where the replies came
//! back and how they were told to be this connection's, the point they never
//! reached; with a conntrack snapshot taken after them, whether the entry saw them;
//! with the host's rules, the rules that drop on a reverse-path check.

use super::leak::gap_facts;
use crate::audit::{
    Code, Ctx, Detail, Direction, Evidence, Finding, Role, RouteFact, RouteFacts, RuleRole,
    Severity,
};
use crate::correlate::{Connection, ReturnHop, ReturnLink};
use crate::model::{NatChange, NatKind};
use crate::rules::eval::RuleRef;
use crate::rules::{MatchKind, Rule, Target};

pub fn detect(x: &Ctx) -> Vec<Finding> {
    let mut out = Vec::new();
    for (ci, conn) in x.c.connections.iter().enumerate() {
        for r in &conn.returns {
            let Some(toward) = r.toward else {
                continue;
            };
            let Some(first) = toward.unmatched.first_ns else {
                continue;
            };
            if x.capturing(conn.hops[toward.hop].point, first) {
                out.push(finding(x, ci, conn, r, &toward));
            }
        }
    }
    out
}

fn finding(x: &Ctx, ci: usize, conn: &Connection, r: &ReturnHop, t: &ReturnLink) -> Finding {
    let (near, beside) = (&conn.hops[t.hop], &conn.hops[r.beside]);
    let (nname, aname, bname) = (
        x.name(near.point),
        x.name(beside.point),
        x.name(r.hop.point),
    );
    let path = &conn.links[t.hop];
    let crossed = t.matched + path.evidence.matched_rev + path.resegmented.rev.sent;
    let gap = t.unmatched;
    let translated =
        NatChange::between(&conn.hops[0].flow.tuple, &beside.flow.tuple).kind != NatKind::None;
    let mut f = Finding::new(
        Code::AsymmetricRoute,
        if crossed == 0 {
            Severity::Error
        } else {
            Severity::Warning
        },
        Detail::AsymmetricRoute(RouteFacts {
            requests: aname.to_string(),
            replies: bname.to_string(),
            not_reached: nname.to_string(),
            joined: r.joined,
            crossed,
            reply: beside.flow.tuple.reversed(),
            translated,
            unreplied: None,
        }),
    );
    f.evidence = vec![
        x.hop(near),
        x.hop(beside),
        x.hop(&r.hop),
        Evidence::NeverReached {
            gap: gap_facts(&gap),
            direction: Direction::Rev,
            from: bname.to_string(),
            to: nname.to_string(),
        },
        Evidence::Route(RouteFact::Answer {
            joined: r.joined,
            requests: aname.to_string(),
            replies: bname.to_string(),
        }),
    ];
    if crossed > 0 {
        f.evidence.push(Evidence::OthersCrossed {
            packets: crossed,
            direction: Direction::Rev,
        });
    }
    if let Some((entry, unreplied)) = entry(x, ci, gap.first_ns.unwrap_or(i64::MAX)) {
        f.evidence.push(entry);
        f.evidence
            .push(Evidence::Route(RouteFact::Conntrack { unreplied }));
        if let Detail::AsymmetricRoute(d) = &mut f.detail {
            d.unreplied = Some(unreplied);
        }
    }
    if let Some(rules) = x.rules {
        let v6 = beside.flow.tuple.src.is_ipv6();
        let found = reverse_path_rules(x, rules, beside.flow.tuple.src);
        if found.is_empty() {
            f.evidence.push(Evidence::Route(RouteFact::NoRule { v6 }));
        }
        f.evidence.extend(found);
    }
    f.evidence
        .extend(rp_filter(x, bname, beside.flow.tuple.src).map(Evidence::Route));
    f.conns = vec![ci];
    f.points = vec![nname.to_string(), aname.to_string(), bname.to_string()];
    // The replies as they travelled; the requests as they went.
    let reply = |h, role| {
        let mut s = x.seen(h, role);
        s.tuple = s.tuple.reversed();
        s
    };
    f.tuples = vec![
        reply(&r.hop, Role::Seen),
        reply(near, Role::Next),
        x.seen(beside, Role::Requests),
    ];
    f.first_ns = gap.first_ns;
    f.last_ns = gap.last_ns;
    f.packets = gap.packets;
    f
}

/// The connection's entry in a conntrack snapshot taken after the first reply (at
/// `after`, corrected time), as evidence, and whether it was `[UNREPLIED]`.
fn entry(x: &Ctx, ci: usize, after: i64) -> Option<(Evidence, bool)> {
    x.timed_entries_of(ci)
        .find(|(_, _, t)| t.is_some_and(|t| t.ns - t.slack_ns > after))
        .map(|(_, e, _)| (Evidence::Entry(e.facts()), e.unreplied))
}

/// IPv4 reverse-path filtering at the interface the replies arrived on, when the
/// settings given name it. The point is that interface when it carries its name
/// (`eth1`, or `NETNS:eth1` from a bundle); a point named otherwise has no setting.
fn rp_filter(x: &Ctx, point: &str, peer: std::net::IpAddr) -> Option<RouteFact> {
    if !peer.is_ipv4() {
        return None;
    }
    let iface = point.rsplit(':').next().unwrap_or(point);
    let at_iface = x
        .sysctls
        .get(&format!("net.ipv4.conf.{iface}.rp_filter"))?
        .clone();
    Some(RouteFact::RpFilter {
        iface: iface.to_string(),
        at_iface,
        all: x.sysctls.get("net.ipv4.conf.all.rp_filter").cloned(),
    })
}

/// The rules of the set that drop or reject packets of `addr`'s family failing a
/// reverse-path check, as evidence.
fn reverse_path_rules(
    x: &Ctx,
    rules: &crate::rules::RuleSet,
    addr: std::net::IpAddr,
) -> Vec<Evidence> {
    let mut out = Vec::new();
    for (ti, t) in rules.tables.iter().enumerate() {
        if !t.family.sees(addr) {
            continue;
        }
        for (chi, ch) in t.chains.iter().enumerate() {
            for (ri, rule) in ch.rules.iter().enumerate() {
                if !drops_on_reverse_path(rule) {
                    continue;
                }
                let at = RuleRef {
                    table: ti,
                    chain_index: chi,
                    chain: ch.name.as_str().into(),
                    index: ri,
                };
                out.extend(x.rule(&at, RuleRole::ReversePath));
            }
        }
    }
    out
}

/// Whether a rule drops (or rejects) the packets that fail a reverse-path check: the
/// `rpfilter` match inverted, or an nft `fib` lookup of the source address with the
/// input interface that finds no output interface (`oif missing`, read as `false`;
/// `oif 0` in older nft).
pub fn drops_on_reverse_path(r: &Rule) -> bool {
    matches!(r.target, Target::Drop | Target::Reject { .. })
        && r.matches.iter().any(|m| match &m.kind {
            MatchKind::Unknown { name, text } => {
                let fails = |v: &str| text.strip_prefix(name.as_str()) == Some(v);
                (name == "rpfilter" && (m.negated || text.contains("--invert")))
                    || (name.starts_with("fib ")
                        && name.contains("saddr")
                        && name.contains("iif")
                        && name.ends_with(" oif")
                        && [" missing", " false", " 0"].into_iter().any(fails))
            }
            _ => false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::findings::testing::{run, run_with, wire_at};
    use crate::correlate::Joined;

    const POINTS: [&str; 3] = ["docker0", "eth0", "eth1"];

    fn facts(f: &Finding) -> &RouteFacts {
        match &f.detail {
            Detail::AsymmetricRoute(d) => d,
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn replies_back_by_the_other_uplink_that_went_no_further() {
        // IPv4 TCP (strict rp_filter): 4 SYN-ACKs, joined by their acknowledgement number.
        let c = wire_at("fault-asym-route", &POINTS);
        let found = run(&c, &[], Code::AsymmetricRoute);
        assert_eq!(found.len(), 1, "{found:?}");
        let f = &found[0];
        let d = facts(f);
        assert_eq!(f.severity, Severity::Error);
        assert_eq!((f.packets, d.crossed), (4, 0));
        assert_eq!(d.joined, Joined::Acknowledgement);
        assert_eq!(
            (
                d.requests.as_str(),
                d.replies.as_str(),
                d.not_reached.as_str()
            ),
            ("eth0", "eth1", "docker0")
        );
        assert_eq!(f.points, ["docker0", "eth0", "eth1"]);
        assert!(d.translated);
        assert_eq!(d.reply.sport, 7000);
        assert_eq!(f.tuples[0].tuple, d.reply);
        assert_eq!(f.tuples[2].role, Role::Requests);
        assert_eq!(f.tuples[2].tuple, d.reply.reversed());

        // IPv6 UDP and ICMPv6 (a raw rpfilter rule): joined by tuple and time.
        let c = wire_at("fault-asym-route6", &POINTS);
        let found = run(&c, &[], Code::AsymmetricRoute);
        let protos: Vec<_> = found.iter().map(|f| f.tuples[0].tuple.proto).collect();
        assert_eq!(
            protos,
            [crate::model::Proto::Udp, crate::model::Proto::Icmpv6]
        );
        for f in &found {
            assert_eq!((f.severity, f.packets), (Severity::Error, 2));
            assert_eq!(facts(f).joined, Joined::Tuple);
            assert!(facts(f).reply.src.is_ipv6());
        }
    }

    #[test]
    fn replies_delivered_by_the_other_uplink_are_no_finding() {
        let c = wire_at("asym-route-loose", &["veth-c1", "docker0", "eth0", "eth1"]);
        assert_eq!(
            c.connections.iter().map(|k| k.returns.len()).sum::<usize>(),
            2
        );
        assert!(super::super::testing::run_all(&c, &[]).is_empty());
    }

    #[test]
    fn the_entry_and_the_rules_say_where_the_host_dropped_them() {
        // The sysctl drops after conntrack: the entry saw the SYN-ACKs; no rule does it.
        let c = wire_at("fault-asym-route", &POINTS);
        let found = run_with(
            &c,
            "fault-asym-route",
            &["conntrack.txt", "iptables.txt"],
            Code::AsymmetricRoute,
        );
        assert_eq!(found.len(), 1);
        assert_eq!(facts(&found[0]).unreplied, Some(false));
        assert!(found[0]
            .evidence
            .contains(&Evidence::Route(RouteFact::NoRule { v6: false })));
        // The raw table's rule drops before conntrack: the entries stay [UNREPLIED].
        let c = wire_at("fault-asym-route6", &POINTS);
        let found = run_with(
            &c,
            "fault-asym-route6",
            &["conntrack.txt", "ip6tables.txt"],
            Code::AsymmetricRoute,
        );
        assert_eq!(found.len(), 2);
        for f in &found {
            assert_eq!(facts(f).unreplied, Some(true));
            let rule = f.evidence.iter().find_map(|e| match e {
                Evidence::Rule {
                    role: RuleRole::ReversePath,
                    rule,
                } => Some(rule),
                _ => None,
            });
            let rule = rule.expect("the rpfilter rule");
            assert_eq!(
                (rule.table.as_str(), rule.chain.as_str()),
                ("raw", "PREROUTING")
            );
            assert!(rule.counters.is_some_and(|c| c.packets == 4), "{rule:?}");
        }
    }

    #[test]
    fn rules_that_drop_on_a_failed_reverse_path_check() {
        let ipt = crate::rules::parse(
            "ip6tables.txt",
            "*raw\n:PREROUTING ACCEPT [0:0]\n\
             -A PREROUTING -m rpfilter --invert -j DROP\n\
             -A PREROUTING -m rpfilter -j ACCEPT\n\
             -A PREROUTING -m rpfilter --loose --invert -j REJECT\n\
             -A PREROUTING -p tcp -j DROP\nCOMMIT\n",
        );
        let nft = crate::rules::parse(
            "nft.txt",
            "table inet firewalld {\n\tchain filter_PREROUTING {\n\
             \t\ttype filter hook prerouting priority filter + 10; policy accept;\n\
             \t\tmeta nfproto ipv6 fib saddr . mark . iif oif missing drop\n\
             \t\tfib daddr type local accept\n\t}\n}\n",
        );
        let verdicts = |rs: &crate::rules::RuleSet| -> Vec<bool> {
            rs.tables
                .iter()
                .flat_map(|t| &t.chains)
                .flat_map(|c| &c.rules)
                .map(drops_on_reverse_path)
                .collect()
        };
        assert_eq!(verdicts(&ipt), [true, false, true, false]);
        assert_eq!(verdicts(&nft), [true, false]);
        // The same rule as `nft -j list ruleset` (nftables 1.0.6) prints it.
        let json = crate::rules::parse(
            "nft.json",
            r#"{"nftables": [{"table": {"family": "inet", "name": "firewalld", "handle": 1}},
            {"chain": {"family": "inet", "table": "firewalld", "name": "filter_PREROUTING", "handle": 1, "type": "filter", "hook": "prerouting", "prio": 10, "policy": "accept"}},
            {"rule": {"family": "inet", "table": "firewalld", "chain": "filter_PREROUTING", "handle": 4, "expr": [
              {"match": {"op": "==", "left": {"meta": {"key": "nfproto"}}, "right": "ipv6"}},
              {"match": {"op": "==", "left": {"fib": {"result": "oif", "flags": ["saddr", "mark", "iif"]}}, "right": false}},
              {"drop": null}]}}]}"#,
        );
        assert_eq!(verdicts(&json), [true]);
    }
}
