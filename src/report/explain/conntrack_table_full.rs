//! Words of `conntrack-table-full`, and of its facts ([`TableFact`]).

use super::evidence::{few, ids};
use super::unexplained;
use crate::audit::{Detail, Endpoint, Finding, TableFact};
use crate::report::fmt::{at_or_span, dst_endpoint, plural, secs};

/// `tcp 203.0.113.2:8443, udp 203.0.113.2:53`, short for many.
fn destinations(d: &[Endpoint]) -> String {
    let one =
        |&(proto, addr, port): &Endpoint| format!("{proto} {}", dst_endpoint(proto, addr, port));
    few(d.iter().take(6).map(one), d.len())
}

pub fn explain(f: &Finding) -> (String, String) {
    let Detail::TableFull(d) = &f.detail else {
        return unexplained(f);
    };
    let span = match (f.first_ns, f.last_ns) {
        (Some(a), Some(b)) => format!(" within {}", secs(b - a)),
        _ => String::new(),
    };
    let kernel = match (d.drops, &d.since, d.entries.zip(d.max)) {
        (Some(n), Some(_), _) => {
            format!("; conntrack -S counted {n} drops no failed insert explains meanwhile")
        }
        (Some(n), None, _) => format!("; conntrack -S counts {n} drops no failed insert explains"),
        (None, _, Some((n, max))) => format!("; {n} entries of nf_conntrack_max {max}"),
        (None, _, None) => String::new(),
    };
    let message = format!(
        "conntrack table full: {} to {} lost at the host{span} while {} kept crossing{kernel}",
        plural(d.lost.len() as u64, "new connection", "new connections"),
        plural(d.destinations.len() as u64, "destination", "destinations"),
        plural(
            d.flowing.len() as u64,
            "existing connection",
            "existing connections"
        ),
    );
    let limit = match (d.entries, d.max) {
        (Some(n), Some(max)) => format!(" The inputs show {n} entries for a limit of {max}."),
        _ => String::new(),
    };
    let check = format!(
        "A full conntrack table (FM-13): once a namespace's entries reach nf_conntrack_max, conntrack drops the first packet of every new connection, whatever its destination, protocol or direction, unless early drop can evict an entry that never became ASSURED (early_drop counts those); packets of existing entries still pass, and the kernel logs `nf_conntrack: table full, dropping packet` (`table full in netns N` on recent kernels). Several unrelated destinations rule out a rule or one destination's NAT ports running out (snat-port-exhaustion, counted in insert_failed); drops beyond insert_failed rule out insert races.{limit} Check `sysctl net.netfilter.nf_conntrack_max net.netfilter.nf_conntrack_count net.netfilter.nf_conntrack_buckets` (the limit is one for the whole machine, the count is per namespace), `dmesg | grep 'table full'`, and what fills the table: long-lived connections (`conntrack -L -p tcp --state ESTABLISHED | wc -l`; nf_conntrack_tcp_timeout_established is 432000 s by default, kube-proxy sets 86400), unanswered UDP such as DNS (`conntrack -L -p udp | grep -c UNREPLIED`; NOTRACK, a node-local cache). Raise nf_conntrack_max (kube-proxy: --conntrack-max-per-core) with nf_conntrack_buckets, or shorten the timeouts that keep entries alive."
    );
    (message, check)
}

/// One line of evidence for a [`TableFact`].
pub fn fact(f: &TableFact) -> String {
    match f {
        TableFact::NewLost {
            conns,
            packets,
            destinations: d,
            from_ns,
            to_ns,
        } => format!(
            "{} ({}) to {} lost at the host {}: {}",
            plural(*conns as u64, "new connection", "new connections"),
            plural(*packets, "packet", "packets"),
            plural(d.len() as u64, "destination", "destinations"),
            at_or_span(*from_ns, *to_ns),
            destinations(d)
        ),
        TableFact::KeptCrossing { existing, new } => format!(
            "meanwhile {} opened before crossed the host: {}; {}",
            plural(existing.len() as u64, "connection", "connections"),
            ids(existing),
            match new.len() {
                0 => "no new connection did".to_string(),
                n => format!(
                    "{} did ({}): early drop or an expired entry made room",
                    plural(n as u64, "new connection", "new connections"),
                    ids(new)
                ),
            }
        ),
        TableFact::RulesForward { walked, lost } => format!(
            "the host's rules forward {}: no way through them drops one",
            if walked == lost {
                format!("all {lost}")
            } else {
                format!("the {walked} of {lost} walked through them")
            }
        ),
        TableFact::Size {
            entries,
            max,
            buckets,
        } => {
            let part = |what: &str, v: &Option<(u64, String)>| {
                v.as_ref().map(|(n, place)| format!("{what} {n} ({place})"))
            };
            [
                part("entries", entries),
                part("nf_conntrack_max", max),
                part("nf_conntrack_buckets", buckets),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", ")
        }
    }
}
