//! Words of `lost`.

use super::{stats, unexplained};
use crate::audit::{Detail, Direction, Evidence, Finding, PathReason, RuleRole};
use crate::report::fmt::{dst, plural, src};

/// What the conntrack statistics given rule in or out for packets that vanished at
/// the host (the end of the check). `drop` counts every packet conntrack dropped: a
/// failed insert (counted in `insert_failed` too: an insert race, or no free NAT port)
/// or a packet no entry could be made for (a full table whose early drop found nothing
/// to evict); `early_drop` counts entries evicted to make room, nothing lost.
pub fn cause(f: &Finding) -> Option<String> {
    let c = stats(f)?;
    let get = |k: &str| c.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
    let failed = get("insert_failed").unwrap_or(0);
    let mut out = match (get("drop"), get("insert_failed")) {
        (Some(0), _) => "conntrack -S rules out a full table and insert races (drop=0).".to_string(),
        (Some(d), _) if d <= failed => format!(
            "conntrack -S rules out a full table: its {d} drops are failed inserts (insert_failed={failed}: insert races, or no free NAT port)."
        ),
        (Some(d), _) => format!(
            "conntrack -S counts {} dropped packets no failed insert explains (drop={d}, insert_failed={failed}): a full table, which drops the first packet of every new connection (`dmesg | grep 'table full'`).",
            d - failed
        ),
        (None, Some(0)) => "conntrack -S rules out insert races (insert_failed=0).".to_string(),
        (None, Some(n)) => format!("conntrack -S counts {n} failed inserts (insert races, or no free NAT port)."),
        (None, None) => return None,
    };
    if let Some(e) = get("early_drop").filter(|&e| e > 0) {
        out.push_str(&format!(
            " early_drop={e}: the table reached its limit and the kernel evicted entries to make room."
        ));
    }
    Some(out)
}

/// The message and the advice (the check without [`cause`]).
pub fn explain(f: &Finding) -> (String, String) {
    let Detail::Lost {
        from,
        to,
        direction,
        stopped,
        first_tcp_flags,
        ..
    } = &f.detail
    else {
        return unexplained(f);
    };
    // The rule that stopped it, when the host's rules were given.
    let rule = f.evidence.iter().find_map(|e| match e {
        Evidence::Rule {
            role: RuleRole::Dropped | RuleRole::Rejected | RuleRole::Policy,
            rule,
        } => Some(rule),
        _ => None,
    });
    if let (Some((sent, _)), Some(t)) = (stopped, f.tuples.first()) {
        let t = &t.tuple;
        let what = match (first_tcp_flags.as_deref(), *sent) {
            (Some("S"), 1) => "1 SYN".to_string(),
            (Some("S"), n) => format!(
                "{n} SYNs (the first and {} retransmission{})",
                n - 1,
                if n == 2 { "" } else { "s" }
            ),
            (_, n) => plural(n, "initiator packet", "initiator packets"),
        };
        let fate = match stopped {
            Some((_, PathReason::HostRules)) => {
                format!(" reached {from}, where the host's rules stop them")
            }
            Some((_, PathReason::Unanswered(meant))) => format!(
                ", an address of this host, reached {from} and went no further{}",
                meant
                    .map(|m| format!(" (it was to be sent on to {})", dst(&m)))
                    .unwrap_or_default()
            ),
            _ => format!(" reached {from} and never left on {to}"),
        };
        return (
            format!(
                "blocked: {what} from {} to {}{fate}; no reply",
                src(t),
                dst(t)
            ),
            match (rule, stopped) {
                (None, Some((_, PathReason::Unanswered(_)))) => format!(
                    "Nothing on the host answered and nothing was forwarded: a DROP in INPUT, or in FORWARD after DNAT for a published port or NodePort (DOCKER-USER, KUBE-FORWARD, `-m conntrack --ctorigdstport {}`), a service with no endpoint, or a full conntrack table (`conntrack -S`). `--rules` with the host's `iptables-save` names the rule.",
                    t.dport
                ),
                (Some(r), _) => format!(
                    "The rule set stops this traffic at {} {} (`{}`): change or remove that rule, or accept this traffic before it (DOCKER-USER for Docker, a NetworkPolicy or KUBE-FORWARD for Kubernetes). If the rule should not match, dump the rules with counters before and after a retry (`iptables-save -c`, or `nft list ruleset` with `counter` statements) and pass the earlier dump with `--rules-before`: the rule's counter then says how many of the retried packets it took.",
                    r.table, r.chain, r.text
                ),
                (None, _) => format!(
                    "A rule dropping this traffic between {from} and {to}: FORWARD, DOCKER-USER or KUBE-FORWARD DROP/REJECT rules whose counters grew (`iptables -L FORWARD -v -n --line-numbers`); a full conntrack table or failed inserts (`conntrack -S`: insert_failed, drop, early_drop; `dmesg | grep conntrack`); the route (`ip route get {} from {} iif <{from}'s interface>`).",
                    t.dst, t.src
                ),
            },
        );
    }
    let who = match direction {
        Direction::Fwd => "initiator",
        Direction::Rev => "responder",
    };
    let message = format!(
        "{} {who} {} of {} reached {from} and never {to}",
        f.packets,
        if f.packets == 1 { "packet" } else { "packets" },
        f.connections.first().map_or("", String::as_str)
    );
    let check = match direction {
        Direction::Fwd => format!(
            "Drops between {from} and {to}: FORWARD rules and their counters (`iptables -L FORWARD -v -n --line-numbers`, DOCKER-USER, KUBE-FORWARD), conntrack insert failures or a full table (`conntrack -S`: insert_failed, drop, early_drop), routing and MTU towards {to}."
        ),
        Direction::Rev => format!(
            "Replies that reached {from} but were not forwarded back to {to}: the conntrack entry (`conntrack -L`, expired or deleted?), INVALID replies (`conntrack -S` invalid), FORWARD rules for the reply direction, rp_filter on {from}."
        ),
    };
    (message, check)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Code, Severity};

    fn lost(counters: &[(&str, u64)]) -> Finding {
        let mut f = Finding::new(
            Code::Lost,
            Severity::Error,
            Detail::Lost {
                from: "docker0".into(),
                to: "eth0".into(),
                direction: Direction::Fwd,
                blocked: true,
                first_tcp_flags: None,
                path_from: Vec::new(),
                path_from_total: 0,
                stopped: None,
            },
        );
        f.evidence.push(Evidence::Stats {
            counters: counters.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            since: None,
        });
        f
    }

    fn said(counters: &[(&str, u64)]) -> Option<String> {
        cause(&lost(counters))
    }

    #[test]
    fn the_cause_closes_the_check_and_the_advice_is_the_rest() {
        let w = crate::report::explain::words(&lost(&[("drop", 0)]));
        let cause = w.cause.as_deref().expect("drop=0 says something");
        assert_eq!(w.check, format!("{} {cause}", w.advice));
        let w = crate::report::explain::words(&lost(&[("invalid", 3)]));
        assert_eq!((w.cause, &w.check), (None, &w.advice));
    }

    #[test]
    fn drops_beyond_failed_inserts_are_the_tables() {
        let s = said(&[("drop", 0), ("insert_failed", 0), ("early_drop", 0)]).unwrap();
        assert!(s.contains("rules out a full table and insert races"), "{s}");
        let s = said(&[("drop", 4), ("insert_failed", 4)]).unwrap();
        assert!(s.contains("its 4 drops are failed inserts"), "{s}");
        let s = said(&[("drop", 9), ("insert_failed", 2), ("early_drop", 5)]).unwrap();
        assert!(
            s.contains("counts 7 dropped packets no failed insert explains"),
            "{s}"
        );
        assert!(s.contains("early_drop=5"), "{s}");
        let s = said(&[("insert_failed", 3)]).unwrap();
        assert!(s.contains("3 failed inserts"), "{s}");
        assert_eq!(said(&[("invalid", 3)]), None);
    }
}
