//! Words of `stale-entry`.

use super::unexplained;
use crate::audit::{Detail, Finding};
use crate::report::fmt::{dst, plural, tuple_proto};

pub fn explain(f: &Finding) -> (String, String) {
    let Detail::StaleEntry {
        service,
        stale,
        now_by_rules,
        now_on_wire,
        newer,
        error_packets,
    } = &f.detail
    else {
        return unexplained(f);
    };
    let now = match (now_by_rules, now_on_wire, newer) {
        (Some(r), _, _) => format!("the rules now send it to {}", dst(r)),
        (None, Some(w), Some(id)) => format!("the newer connection {id} went to {}", dst(w)),
        _ => "new flows go elsewhere".to_string(),
    };
    let errors = if *error_packets > 0 {
        format!(
            ", which answered with {}",
            plural(*error_packets, "ICMP error", "ICMP errors")
        )
    } else {
        String::new()
    };
    (
        format!(
            "{} kept going to its old backend {}{errors}, while {now}: its conntrack entry was made before the change, and nat rules apply to a flow's first packet only",
            tuple_proto(service),
            dst(stale),
        ),
        format!(
            "Delete the stale entry so the next packet is NATed afresh: `conntrack -D -p {} --orig-dst {} --orig-port-dst {} --reply-src {}` (kube-proxy does this when endpoints change; check that it ran), or let the sender pause longer than the UDP timeout (`net.netfilter.nf_conntrack_udp_timeout_stream`). A DESTROY in `conntrack -E` shows when the entry finally went.",
            service.proto.name(),
            service.dst,
            service.dport,
            stale.dst
        ),
    )
}
