//! Words of `hairpin-direct-reply`.

use super::unexplained;
use crate::audit::{Detail, Finding};
use crate::report::fmt::{dst, plural, tuple_proto};

pub fn explain(f: &Finding) -> (String, String) {
    let Detail::HairpinDirectReply {
        client,
        server,
        at,
        delivered,
        answers,
        answers_at,
    } = &f.detail
    else {
        return unexplained(f);
    };
    let answered = match answers_at {
        Some(seen) => format!(
            "the server's {} went straight to the client from {} (seen at {seen}), never back through NAT",
            plural(*answers, "answer", "answers"),
            dst(server),
        ),
        None => "no answer came back through the host".to_string(),
    };
    (
        format!(
            "{} was DNATed to {} and sent back out of {at}, the interface it came in by, with its source {} kept: {} left, and {answered}",
            tuple_proto(client),
            dst(server),
            client.src,
            plural(*delivered, "translated packet", "translated packets"),
        ),
        format!(
            "A server that reaches the client without this host (on the client's own link, or across the same bridge) answers it directly from {}, and the client, which spoke to {}, refuses the answer (a TCP reset) or takes a datagram from an address it did not ask. Masquerade the hairpin so that the answers come back through NAT (`iptables -t nat -A POSTROUTING -o {at} -d {} -m conntrack --ctstate DNAT -j MASQUERADE`; a masquerade rule's `! -d LAN` exception is what usually leaves it out), or, where {at} is a bridge, let the bridge call netfilter so that conntrack sees the answers (`modprobe br_netfilter`, `sysctl net.bridge.bridge-nf-call-iptables=1`, as Docker and Kubernetes need) (FM-07).",
            server.dst,
            dst(client),
            server.dst,
        ),
    )
}
