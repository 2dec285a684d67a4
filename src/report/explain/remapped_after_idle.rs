//! Words of `remapped-after-idle`.

use super::unexplained;
use crate::audit::{Detail, Finding};
use crate::report::fmt::{secs, tuple_proto};

pub fn explain(f: &Finding) -> (String, String) {
    let Detail::RemappedAfterIdle {
        tuple,
        before,
        after,
        idle_ns,
        timeout_ns,
        sysctl,
        given_at,
    } = &f.detail
    else {
        return unexplained(f);
    };
    let ids: Vec<&str> = f.connections.iter().map(String::as_str).collect();
    let (new, old) = match ids[..] {
        [new, old, ..] => (new, old),
        _ => return unexplained(f),
    };
    let first = f.points.first().map_or("its first point", String::as_str);
    let at = f.points.get(1).map_or("the next point", String::as_str);
    let from = match given_at {
        Some(place) => format!("{sysctl}, {place}"),
        None => format!("{sysctl}, the kernel's default"),
    };
    // What moved: the source (SNAT's port or address) or the destination (the backend).
    let lost = if before.src != after.src || before.sport != after.sport {
        "peers that keep the old source (a SIP registrar, a VPN, game or stateful server) lose it"
    } else {
        "what the old backend kept of the client (a session, a DTLS or QUIC connection) is not on the new one"
    };
    let message = format!(
        "{new} is {old}'s {} again at {first} after {} quiet, past conntrack's timeout ({} s: {from}): a new entry, which NAT mapped to {} at {at} where {old} had {}: {lost}",
        tuple_proto(tuple),
        secs(*idle_ns),
        timeout_ns / 1_000_000_000,
        tuple_proto(after),
        tuple_proto(before),
    );
    let check = format!(
        "Expected when the application is request and answer (DNS, NTP). For a long-lived association, send keepalives more often than the timeout (WireGuard's PersistentKeepalive = 25, SIP's and IKE's NAT keepalives), or raise `{sysctl}` on the NAT host; a balancing rule keeps a client on one backend only with affinity (`-m recent`, a Service's sessionAffinity: ClientIP). `conntrack -E` shows the old entry's [DESTROY] and the new one's [NEW]."
    );
    (message, check)
}
