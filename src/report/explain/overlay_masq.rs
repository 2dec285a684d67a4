//! Words of `overlay-masq`.

use super::evidence::{few_addrs as list, group_ids};
use super::unexplained;
use crate::audit::{Detail, Finding};
use crate::model::TunnelKind;
use crate::report::fmt::plural;

pub fn explain(f: &Finding) -> (String, String) {
    let Detail::OverlayMasq {
        original,
        seen_as,
        clients,
        destinations,
        tunnel,
    } = &f.detail
    else {
        return unexplained(f);
    };
    let kind = match tunnel.kind {
        TunnelKind::Vxlan => "VXLAN",
        TunnelKind::Geneve => "Geneve",
        TunnelKind::Ipip => "IP-in-IP",
        k => k.as_str(),
    };
    let message = format!(
        "{} from {} to {} ({}) went into the {kind} tunnel to {} with source {seen_as}: masquerade replaced the client {} {}, so the pods on the other node see this node, not who called (traffic between pods is never translated in the Kubernetes network model)",
        plural(f.connections.len() as u64, "connection", "connections"),
        list(clients),
        list(destinations),
        group_ids(&f.connections),
        tunnel.outer.dst,
        if clients.len() == 1 { "address" } else { "addresses" },
        list(clients),
    );
    let check = format!(
        "A masquerade rule meant for traffic leaving the cluster also caught traffic to another node's pods (with --rules, it is named below); network policies that allow {} by address, and the destination's logs, see {seen_as} instead. flannel: FLANNEL-POSTRTG must RETURN `-s <this node's pod CIDR> -d <cluster CIDR>` before its MASQUERADE (the cluster CIDR in net-conf.json must cover every node's pod CIDR). Calico: `ipset list cali40all-ipam-pools` must hold every IP pool, {}'s included (`calicoctl get ippools`). To see the rule: `iptables -t nat -L POSTROUTING -v -n --line-numbers`, or `conntrack -L -s {}`.",
        original.src, original.dst, original.src,
    );
    (message, check)
}
