//! Words of `ct-duplicate`.

use super::{ct_words, unexplained};
use crate::audit::Finding;
use crate::report::fmt::tuple_proto;

pub fn explain(f: &Finding) -> (String, String) {
    let Some((n, reply, zone)) = ct_words(f).and_then(|w| w.facts.shared_reply) else {
        return unexplained(f);
    };
    (
        format!(
            "{n} entries share the reply tuple {}{}: conntrack cannot tell their replies apart",
            tuple_proto(&reply),
            if zone != 0 {
                format!(" in zone {zone}")
            } else {
                String::new()
            }
        ),
        "Two connections were given the same outside tuple (a NAT clash the kernel would refuse at confirm time, FM-03/FM-06), or the file joins two snapshots. Check `conntrack -S` (insert_failed, clash_resolve) and whether the file holds one snapshot.".into(),
    )
}
