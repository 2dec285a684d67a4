//! Words of `client-address-lost`.

use super::evidence::{few_addrs, group_ids};
use super::unexplained;
use crate::audit::{Detail, Finding, Role};
use crate::report::fmt::{dst, plural};

pub fn explain(f: &Finding) -> (String, String) {
    let Detail::ClientAddressLost {
        service,
        seen_as,
        clients,
        external_cluster,
    } = &f.detail
    else {
        return unexplained(f);
    };
    let backend = f
        .tuples
        .iter()
        .find(|s| s.role == Role::Translated)
        .map(|s| dst(&s.tuple))
        .unwrap_or_default();
    let message = format!(
        "{} to {} ({}) reached the backend {backend} with source {seen_as}: NAT replaced the client {} {}, so the backend sees this host, not who called",
        plural(f.connections.len() as u64, "connection", "connections"),
        dst(service),
        group_ids(&f.connections),
        if clients.len() == 1 { "address" } else { "addresses" },
        few_addrs(clients),
    );
    let check = if *external_cluster {
        "kube-proxy masquerades traffic from outside the cluster to a Service with `externalTrafficPolicy: Cluster` (KUBE-EXT-* marks it with KUBE-MARK-MASQ, KUBE-POSTROUTING masquerades it) so that replies come back through this node. To keep client addresses: `externalTrafficPolicy: Local` (only nodes with a ready local endpoint answer), or carry the address at layer 7 (PROXY protocol, X-Forwarded-For).".to_string()
    } else {
        format!(
            "A MASQUERADE or SNAT rule on the way to the backend replaces the client's address (with --rules, it is named below). If the backend needs it, exempt this traffic from that rule (e.g. match only the sources that need it, or `! -s` the client networks), or carry the address at layer 7 (PROXY protocol, X-Forwarded-For). To see which rule: `iptables -t nat -L POSTROUTING -v -n --line-numbers`, or `conntrack -L -d {}`.",
            service.dst
        )
    };
    (message, check)
}
