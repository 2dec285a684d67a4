//! Words of `input-bypassed`.

use super::evidence::{few, group_ids};
use super::unexplained;
use crate::audit::{Detail, Finding, Role};
use crate::report::fmt::{dst, plural};

pub fn explain(f: &Finding) -> (String, String) {
    let Detail::Rules { walked, .. } = &f.detail else {
        return unexplained(f);
    };
    let to: Vec<String> = f
        .tuples
        .iter()
        .filter(|s| s.role == Role::Translated)
        .map(|s| dst(&s.tuple))
        .collect();
    let n = f.connections.len() as u64;
    let port = if walked.proto.has_ports() {
        format!(" --ctorigdstport {}", walked.dport)
    } else {
        format!(" --ctorigdst {}", walked.dst)
    };
    (
        format!(
            "an INPUT rule matches {} to {} ({}) but never saw them: nat PREROUTING DNATed them to {}, not {} of this host, so they were forwarded (FORWARD, not INPUT)",
            plural(n, "connection", "connections"),
            dst(walked),
            group_ids(&f.connections),
            few(to.iter().take(8), to.len()),
            if to.len() == 1 { "an address" } else { "addresses" }
        ),
        format!(
            "Filter DNATed traffic where it passes: in FORWARD after DNAT with `-m conntrack{port}` (the port before DNAT), in DOCKER-USER for Docker's published ports, in KUBE-FORWARD or with loadBalancerSourceRanges / a NetworkPolicy for Kubernetes services, or before DNAT in raw or mangle PREROUTING. A service with no endpoint gets no DNAT and does reach INPUT."
        ),
    )
}
