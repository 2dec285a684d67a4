//! Words of `userland-proxy`, and of its facts ([`SpliceFact`]).

use super::unexplained;
use crate::audit::{Detail, Finding, SpliceFact};
use crate::report::fmt::{dst, endpoint, plural, short, src};

/// A proxy for a client on the host itself, and a transparent one, lose nothing.
pub fn expected(f: &Finding) -> Option<(&'static str, &'static str)> {
    let Detail::UserlandProxy(d) = &f.detail else {
        return None;
    };
    match (d.local_client, d.address_lost) {
        (true, _) => Some((
            "connection through a userland proxy for a client on the host itself",
            "connections through a userland proxy for clients on the host itself",
        )),
        (false, false) => Some((
            "connection through a transparent userland proxy",
            "connections through a transparent userland proxy",
        )),
        (false, true) => None,
    }
}

pub fn explain(f: &Finding) -> (String, String) {
    let Detail::UserlandProxy(d) = &f.detail else {
        return unexplained(f);
    };
    let (o, i) = (&d.outer_tuple, &d.inner_tuple);
    let splice = format!(
        "{}'s connection to {} ({}) ends there, and a proxy opened {} from {} to {} with the same bytes",
        src(o),
        dst(o),
        d.outer,
        d.inner,
        src(i),
        dst(i)
    );
    let message = match (d.local_client, d.address_lost) {
        (false, true) => format!(
            "client address lost via userland proxy: {splice}: the backend sees {}, not {}",
            i.src, o.src
        ),
        (true, _) => format!("userland proxy for a client on the host itself: {splice}"),
        (false, false) => {
            format!("transparent userland proxy: {splice}, keeping the client's address")
        }
    };
    let who = format!(
        "`ss -tlnp 'sport = :{}'` on the host names the process listening on {}.",
        o.dport,
        dst(o)
    );
    let check = if d.address_lost && !d.local_client {
        format!(
            "A userland proxy ended the client's TCP connection and made its own: Docker's docker-proxy (a published port that no DNAT rule takes: reached over loopback, or over IPv6 with \"ip6tables\" off), socat, or a REDIRECT/TPROXY sidecar (Envoy, Istio). The backend logs and filters by {}: allowlists, rate limits and access logs by client address see the proxy. To keep the client's address, let iptables DNAT the traffic (Docker: \"userland-proxy\": false, and \"ip6tables\": true for IPv6 clients), or have the proxy pass it on (PROXY protocol, X-Forwarded-For). {who}",
            i.src
        )
    } else {
        format!(
            "Expected for clients on the host itself, which the DNAT of PREROUTING never sees (Docker's DNAT in OUTPUT skips 127.0.0.0/8; \"userland-proxy\": false with route_localnet changes that), and for transparent proxies. {who}"
        )
    };
    (message, check)
}

/// One line of evidence for a [`SpliceFact`].
pub fn fact(f: &SpliceFact) -> String {
    match f {
        SpliceFact::Ended {
            conn,
            point,
            answered_by,
        } => format!(
            "{conn} ends at {point}: {} answered its handshake there, and no other point carries it",
            endpoint(answered_by.0, answered_by.1, answered_by.2)
        ),
        SpliceFact::Opened {
            inner,
            outer,
            point,
            after_ns,
        } => format!(
            "{inner}'s SYN left {point} {} after {outer}'s handshake was answered, with sequence numbers and timestamps of its own",
            short(*after_ns)
        ),
        SpliceFact::SameBytes {
            to_backend,
            from,
            to,
            bytes,
            carried,
            compared,
            lag_ns,
        } => format!(
            "the {} the {} sent on {from} went on over {to} in the same order ({} at the same offsets agree in their first bytes), the first {} later; {to} carried {}",
            plural(*bytes, "byte", "bytes"),
            if *to_backend { "client" } else { "backend" },
            plural(*compared as u64, "segment", "segments"),
            short(*lag_ns),
            if carried == bytes {
                "as many".to_string()
            } else {
                plural(*carried, "byte", "bytes")
            }
        ),
    }
}
