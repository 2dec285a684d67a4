//! Words of `state-lost`.

use super::unexplained;
use crate::audit::{Detail, Evidence, Finding};
use crate::model::Proto;
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
            "The event log shows the entry destroyed at {} ({} the first packet NAT sent on), {}.",
            rfc3339_ns(*time_ns),
            before_or_after(*before_ns),
            match by {
                Some(b) => super::evidence::by_program(b),
                None => "by the kernel, not a program (its timeout, or the table evicting it)"
                    .to_string(),
            }
        )),
        _ => None,
    })
}

pub fn explain(f: &Finding) -> (String, String) {
    let Detail::StateLost {
        tuple: first,
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
    let tcp = first.proto == Proto::Tcp;
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
            "its entry expired: it was quiet {} there, past conntrack's timeout ({setting})",
            secs(*idle)
        ),
        Some(idle) => format!(
            "its entry went after {} quiet, within conntrack's timeout ({setting}): deleted (`conntrack -D`, a flush, an agent's clean-up) or evicted from a full table",
            secs(*idle)
        ),
        None => "its entry went".to_string(),
    };
    let moved_src = before.src != after.src || before.sport != after.sport;
    let echo = matches!(first.proto, Proto::Icmp | Proto::Icmpv6);
    let moved = match (moved_src, before.src != after.src, echo) {
        (false, ..) => "another backend",
        (true, true, _) => "another source address",
        (true, false, true) => "another identifier",
        (true, false, false) => "another source port",
    };
    let (how, picked) = if tcp {
        (
            format!("{carried}, from a segment without a SYN"),
            "conntrack picked the next segment up as a new entry",
        )
    } else {
        (carried.to_string(), "the next packet made a new entry")
    };
    let answer = match (reset, replies, tcp, moved_src) {
        (true, ..) => "the far side, which knows no such connection, reset it",
        (false, 0, ..) => "nothing answered it",
        (false, _, false, _) if echo => {
            "the far side answered under the new identifier (harmless for echo requests)"
        }
        (false, _, true, _) => "the far side answered on the new tuple",
        (false, _, false, true) => {
            "the far side answered the new source: a peer that keys its state to the old one (a SIP registrar, a VPN, a DTLS or QUIC server) lost it"
        }
        (false, _, false, false) => {
            "the new backend answered: request and answer (DNS) is unharmed, state the old one kept (a session, a DTLS or QUIC connection) is lost"
        }
    };
    let message = format!(
        "{conn} left {at} as {} and, partway through, as {} ({how}): {why}, and {picked} that NAT gave {moved}; {answer}",
        tuple(before),
        tuple(after),
    );
    let check = if tcp {
        format!(
            "For idle connections: TCP keepalives more often than the timeout (SO_KEEPALIVE with net.ipv4.tcp_keepalive_time below it, or the application's own pings), or a longer `{sysctl}` on the NAT host (kube-proxy sets 86400). For a removed entry: `conntrack -E` for its [DESTROY] (with `-o userspace`, the program), `conntrack -S` (early_drop, a full table), agents that delete entries (kube-proxy and CNIs on endpoint changes). With net.netfilter.nf_conntrack_tcp_loose=0 the segment is dropped as INVALID instead of re-NATed (or leaks untranslated where INVALID packets are not dropped)."
        )
    } else {
        format!(
            "An agent that clears entries on purpose (kube-proxy deletes a Service's UDP entries when its endpoints change, so that clients move to live backends) does this by design; otherwise `conntrack -E -o userspace` names the program behind a [DESTROY], `conntrack -S` counts early_drop for a full table, and a quiet spell past the timeout calls for keepalives or a longer `{sysctl}`."
        )
    };
    (message, check)
}
