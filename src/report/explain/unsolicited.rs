//! Words of `unsolicited`.

use super::unexplained;
use crate::audit::{Detail, Finding, Severity};
use crate::report::fmt::{dst, endpoint, plural};

pub fn explain(f: &Finding) -> (String, String) {
    let Detail::Unsolicited {
        nat_address,
        from_address,
        translations,
        expected,
        seen,
        first_translation,
        ..
    } = &f.detail
    else {
        return unexplained(f);
    };
    let t = seen;
    // The ports of both sides as seen (ICMP: the echo id on either side).
    let (nat_port, peer_port) = if t.src == *nat_address {
        (t.sport, t.dport)
    } else {
        (t.dport, t.sport)
    };
    let nat_ep = endpoint(t.proto, *nat_address, nat_port);
    let peer_ep = endpoint(t.proto, *from_address, peer_port);
    match (expected, translations.first()) {
        (Some(exp), Some(k)) if f.severity == Severity::Error => {
            let exp = dst(exp);
            let kt = first_translation.unwrap_or(*t);
            let differs = if kt.dst != *from_address {
                format!("from the address {from_address}, not {}, where {k} sent", kt.dst)
            } else {
                format!("from {peer_ep}, not {exp}, where {k} sent")
            };
            (
                format!(
                    "replies to {nat_ep} came {differs}: conntrack cannot match them to the translation, so they never reach the client"
                ),
                format!(
                    "The server answers from another address or port than the client sent to: a multi-homed server whose UDP socket is bound to the wildcard address (bind it to the service address, or reply with IP_PKTINFO / IPV6_RECVPKTINFO), or a DNAT or load balancer in front of {} that does not translate replies back (FM-16). `conntrack -L` shows a reverse [UNREPLIED] entry {} -> {nat_ep} for the stray replies.",
                    kt.dst, peer_ep
                ),
            )
        }
        _ => (
            format!(
                "{} from {peer_ep} to the NAT address {nat_ep} belong to no translation seen in the captures",
                plural(f.packets, "packet", "packets")
            ),
            format!(
                "Whether a translation for {nat_ep} existed before the captures and expired or was flushed (`conntrack -E`, UDP timeouts 30 s / 120 s, TCP per state); a conntrack snapshot (`--conntrack`) tells. Otherwise the traffic was never asked for (scan, spoofing, a peer with stale state)."
            ),
        ),
    }
}
