//! Words of `hairpin-no-masq`.

use super::unexplained;
use crate::audit::{Detail, Evidence, Finding};
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

/// What conntrack says of the cause: an entry that shows the DNAT back to the client
/// and no masquerade (no masquerade rule matched it), or no entry in a snapshot taken
/// while an unanswered one would still be there (the kernel never confirmed one).
pub fn cause(f: &Finding) -> Option<String> {
    f.evidence.iter().find_map(|e| match e {
        Evidence::Entry(e) if e.reply.dst == e.orig.src => Some(format!(
            "conntrack's entry ({}:{}) shows the DNAT back to the client and no masquerade: no masquerade rule matched the connection.",
            e.source, e.line
        )),
        Evidence::NoEntry { snapshot, .. } => Some(format!(
            "{snapshot} holds no entry for the connection, though it was taken while an unanswered entry would still be there: the kernel never confirmed one, so no rule of nat POSTROUTING ran for it, masquerade or not. With bridge netfilter, a container's hairpin turned back out of its own bridge port whose hairpin mode is off goes so, whatever masquerade rule the host has: check the port (`bridge -d link show dev PORT`: `hairpin on`; kubelet's `--hairpin-mode`)."
        )),
        _ => None,
    })
}
