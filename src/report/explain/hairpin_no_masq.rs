//! Words of `hairpin-no-masq`.

use super::unexplained;
use crate::audit::{Detail, Finding};
use crate::report::fmt::{dst, plural, tuple_proto};

pub fn explain(f: &Finding) -> (String, String) {
    let Detail::HairpinNoMasq {
        client,
        back_at,
        delivered,
        replies,
    } = &f.detail
    else {
        return unexplained(f);
    };
    let answered = if *replies == 0 {
        "no answer left it".to_string()
    } else {
        format!(
            "{} left it, to itself, never back through NAT",
            plural(*replies, "answer", "answers")
        )
    };
    (
        format!(
            "{} was DNATed back to the client itself without masquerade: {} reached {back_at} with {} as source and destination, and {answered}",
            tuple_proto(client),
            plural(*delivered, "translated packet", "translated packets"),
            client.src,
        ),
        format!(
            "Hairpin traffic (a client reaching its own published port or service {}) needs masquerade, so that the answer comes back through NAT: kube-proxy marks it (KUBE-MARK-MASQ, 0x4000) and masquerades it in KUBE-POSTROUTING; Docker adds `-A POSTROUTING -s C -d C -p PROTO --dport P -j MASQUERADE` per published port. Look for that rule (`iptables -t nat -S POSTROUTING`), and at the bridge port's hairpin mode (`bridge link show`, kubelet's `--hairpin-mode`) (FM-07).",
            dst(client)
        ),
    )
}
