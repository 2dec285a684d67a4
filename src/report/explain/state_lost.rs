//! Words of `state-lost`.

use super::unexplained;
use crate::audit::{Detail, Evidence, Finding};
use crate::report::fmt::{before_or_after, rfc3339_ns, secs, tuple};

/// What an event log says of the entry's end: its `[DESTROY]`, and whether a program
/// caused it.
pub fn cause(f: &Finding) -> Option<String> {
    f.evidence.iter().find_map(|e| match e {
        Evidence::Destroyed {
            time_ns,
            before_ns,
            by,
            ..
        } => Some(format!(
            "The event log shows the entry destroyed at {} ({} the segment NAT sent on), {}.",
            rfc3339_ns(*time_ns),
            before_or_after(*before_ns),
            match by {
                Some(b) => format!("by a program ([USERSPACE] {b}: a `conntrack -D`, a flush, or a proxy or CNI cleaning up entries)"),
                None => "by the kernel, not a program (its timeout, or the table evicting it)".to_string(),
            }
        )),
        _ => None,
    })
}

pub fn explain(f: &Finding) -> (String, String) {
    let Detail::StateLost {
        tuple: _,
        before,
        after,
        idle_ns,
        timeout_ns,
        sysctl,
        given_at,
        replies,
        reset,
    } = &f.detail
    else {
        return unexplained(f);
    };
    let (conn, carried) = match &f.connections[..] {
        [conn, carried, ..] => (conn.as_str(), carried.as_str()),
        _ => return unexplained(f),
    };
    let at = f.points.get(1).map_or("the next point", String::as_str);
    let setting = match given_at {
        Some(place) => format!("{sysctl} = {} s, {place}", timeout_ns / 1_000_000_000),
        None => format!(
            "{} s, the kernel's default {sysctl}",
            timeout_ns / 1_000_000_000
        ),
    };
    // Why the entry went, from the wire and the settings: the quiet spell held against
    // the timeout (an event log's word is the cause, [`cause`]).
    let why = match idle_ns {
        Some(idle) if idle > timeout_ns => format!(
            "its entry expired: it was quiet {} there, past conntrack's established timeout ({setting})",
            secs(*idle)
        ),
        Some(idle) => format!(
            "its entry went after {} quiet, within conntrack's established timeout ({setting}): deleted (`conntrack -D`, a flush, an agent's clean-up) or evicted from a full table",
            secs(*idle)
        ),
        None => "its entry went".to_string(),
    };
    let moved = if before.src != after.src || before.sport != after.sport {
        "another source"
    } else {
        "another backend"
    };
    let answer = match (reset, replies) {
        (true, _) => "the far side, which knows no such connection, reset it",
        (false, 0) => "nothing answered it",
        (false, _) => "the far side answered on the new tuple",
    };
    let message = format!(
        "{conn} left {at} as {} and, partway through, as {} ({carried}, from a segment without a SYN): {why}, and conntrack picked the next segment up as a new entry that NAT gave {moved}; {answer}",
        tuple(before),
        tuple(after),
    );
    let check = format!(
        "For idle connections: TCP keepalives more often than the timeout (SO_KEEPALIVE with net.ipv4.tcp_keepalive_time below it, or the application's own pings), or a longer `{sysctl}` on the NAT host (kube-proxy sets 86400). For a removed entry: `conntrack -E` for its [DESTROY] (with `-o userspace`, the program), `conntrack -S` (early_drop, a full table), agents that delete entries (kube-proxy and CNIs on endpoint changes). With net.netfilter.nf_conntrack_tcp_loose=0 the segment is dropped as INVALID instead of re-NATed (or leaks untranslated where INVALID packets are not dropped)."
    );
    (message, check)
}
