//! Words of `rule-contradiction`.

use super::unexplained;
use crate::audit::{Detail, Finding};
use crate::report::fmt::tuple_proto;

pub fn explain(f: &Finding) -> (String, String) {
    let Detail::Rules {
        walked,
        wire: Some(wire),
        rules,
        stopped,
        outcomes,
        ..
    } = &f.detail
    else {
        return unexplained(f);
    };
    let conn = f.connections.first().map_or("", String::as_str);
    let rules_say = match (rules, stopped) {
        (Some(t), false) if t == walked => "pass it on untranslated".to_string(),
        (Some(t), false) => format!("send it on as {}", tuple_proto(t)),
        (Some(t), true) if t != walked => format!("translate it to {} and stop it", tuple_proto(t)),
        _ => "stop it".to_string(),
    };
    let ways = if *outcomes > 1 {
        format!(" (in every one of {outcomes} ways through them)")
    } else {
        String::new()
    };
    // A client's hairpin the rules masquerade that left with its own address as both
    // source and destination: the DNAT ran, the masquerade did not.
    let masquerade_skipped = !stopped
        && wire.src == wire.dst
        && rules.is_some_and(|t| (t.dst, t.dport) == (wire.dst, wire.dport) && t.src != wire.src);
    if masquerade_skipped {
        return (
            format!(
                "the rules {rules_say}{ways}, but {conn} left the host as {}, DNATed back to its client and not masqueraded: the first packet {} met the rules' DNAT and never their masquerade",
                tuple_proto(wire),
                tuple_proto(walked)
            ),
            "The kernel skipped nat POSTROUTING for this hairpin. With bridge netfilter, a container's hairpin on a bridge port whose hairpin mode is off goes so, and conntrack keeps no entry for it: check the port (`bridge -d link show dev PORT`: `hairpin on`; kubelet's `--hairpin-mode`). Otherwise the masquerade rule was added after the capture (Docker and kube-proxy rewrite their chains on every sync).".to_string(),
        );
    }
    (
        format!(
            "the rules {rules_say}{ways}, but {conn} left the host as {}: the first packet {} was not handled by these rules",
            tuple_proto(wire),
            tuple_proto(walked)
        ),
        "The rule set does not describe the traffic captured: rules rewritten after the capture (kube-proxy and Docker rewrite their chains on every sync), a dump from another host or network namespace, rules the dump does not hold (iptables-legacy beside iptables-nft: `iptables-legacy-save`; native nftables: `nft list ruleset`), IPVS (kube-proxy ipvs mode: `ipvsadm -Ln`), or an eBPF datapath (Cilium) that translates outside netfilter.".to_string(),
    )
}
