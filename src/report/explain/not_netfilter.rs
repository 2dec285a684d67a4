//! Words of `not-netfilter`.

use super::unexplained;
use crate::audit::{Detail, Finding};
use crate::report::fmt::tuple_proto;

pub fn explain(f: &Finding) -> (String, String) {
    let Detail::Rules {
        walked,
        wire: Some(wire),
        ..
    } = &f.detail
    else {
        return unexplained(f);
    };
    let conn = f.connections.first().map_or("", String::as_str);
    (
        format!(
            "{conn} was translated from {} to {}, and no rule of the rule set given can do that: the translation was made outside these netfilter rules",
            tuple_proto(walked),
            tuple_proto(wire)
        ),
        "Look for the datapath that did it: IPVS (kube-proxy's ipvs mode: `ipvsadm -Ln`, the KUBE-* ipsets), an eBPF service load balancer (Cilium's kube-proxy replacement: `cilium service list`; Calico's eBPF mode; `bpftool prog`), or rules this dump does not hold (iptables-legacy beside iptables-nft: `iptables-legacy-save`; native nftables: `nft list ruleset`; another network namespace).".to_string(),
    )
}
