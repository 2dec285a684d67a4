//! Words of `insert-race`.

use super::{stat, unexplained};
use crate::audit::{Detail, Evidence, Finding, RaceKind, RuleRole};
use crate::report::fmt::{dst, secs, short, src};

/// What the `conntrack -S` counters and the rules say about the cause.
fn cause(f: &Finding) -> String {
    let rule = f.evidence.iter().find_map(|e| match e {
        Evidence::Rule {
            role: RuleRole::MayDrop,
            rule,
        } => Some(rule),
        _ => None,
    });
    let mut out = Vec::new();
    if let Some(r) = rule {
        out.push(format!(
            "Some ways through the host's rules drop these packets at {} {} (`{}`): a `statistic`, `limit` or `recent` match, or one natcheck cannot decide; if that is meant, the delay is the rule's.",
            r.table, r.chain, r.text
        ));
    }
    let (failed, drop, clash) = (
        stat(f, "insert_failed"),
        stat(f, "drop"),
        stat(f, "clash_resolve"),
    );
    match (failed, drop) {
        (Some(0), Some(0)) => out.push(format!(
            "`conntrack -S` counts no failed insert and no drop (insert_failed=0, drop=0{}): on that host and at that time no insert race lost a packet; look for a rule or loss on the path.",
            clash.map(|c| format!(", clash_resolve={c}")).unwrap_or_default()
        )),
        (Some(n), d) => out.push(format!(
            "`conntrack -S` counts {n} failed inserts{}{}.",
            d.map(|d| format!(" and {d} drops")).unwrap_or_default(),
            clash
                .map(|c| format!(" ({c} clashes resolved without loss)"))
                .unwrap_or_default()
        )),
        (None, _) => {}
    }
    out.join(" ")
}

pub fn explain(f: &Finding) -> (String, String) {
    let Detail::InsertRace {
        kind,
        from,
        to,
        recovered_after_ns,
        pair_gap_ns,
    } = &f.detail
    else {
        return unexplained(f);
    };
    let (Some(t), Some(conn)) = (f.tuples.first(), f.connections.first()) else {
        return unexplained(f);
    };
    let t = &t.tuple;
    let after = secs(*recovered_after_ns);
    let message = match kind {
        RaceKind::Syn => format!(
            "{} of {conn} ({} to {}) lost between {from} and {to} once and recovered after {after}: a retransmission crossed, so the connect took {after} longer",
            if f.packets == 1 {
                "the first SYN".to_string()
            } else {
                format!("the first {} SYNs", f.packets)
            },
            src(t),
            dst(t)
        ),
        RaceKind::DatagramPair => format!(
            "one of two datagrams {conn} sent {} apart from one socket ({} to {}) lost between {from} and {to} and recovered after {after}, when it was resent: the insert race's signature (A and AAAA queries)",
            pair_gap_ns.map(short).unwrap_or_default(),
            src(t),
            dst(t)
        ),
    };
    let base = match kind {
        RaceKind::Syn => "An insert race (FM-03) drops the first packet of a connection when conntrack confirms its entry and finds the tuple taken: two clients given the same NAT port at once (`--random-fully` on MASQUERADE/SNAT avoids it). The client's SYN retransmission (1 s later, then backing off) hides it as a connect delay.",
        RaceKind::DatagramPair => "An insert race (FM-03): two datagrams of one new UDP flow processed in parallel both miss the table, and the one confirmed second is dropped; resolvers send A and AAAA queries that way and wait their timeout (5 s) before resending. `options single-request-reopen` or `use-vc` in resolv.conf, or a node-local DNS cache, avoid it; newer kernels resolve most such clashes (clash_resolve).",
    };
    let cause = cause(f);
    let check = if cause.is_empty() {
        format!("{base} Check `conntrack -S` (insert_failed, drop, clash_resolve) over the same time, and rules that drop some packets (statistic, limit, recent).")
    } else {
        format!("{base} {cause}")
    };
    (message, check)
}
