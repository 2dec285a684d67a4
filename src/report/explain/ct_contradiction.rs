//! Words of `ct-contradiction`.

use super::{ct_words, unexplained};
use crate::audit::Finding;
use crate::model::{NatChange, NatKind, Tuple};
use crate::report::fmt::tuple_proto;

/// `snat to tcp A -> B`, or `no translation`.
fn says(ch: &NatChange, t: &Tuple) -> String {
    if ch.kind == NatKind::None {
        "no translation".to_string()
    } else {
        format!("{} to {}", ch.kind, tuple_proto(t))
    }
}

pub fn explain(f: &Finding) -> (String, String) {
    let (Some(w), Some(wire)) = (ct_words(f), f.tuples.get(1)) else {
        return unexplained(f);
    };
    let wire_change = w
        .facts
        .wire_change
        .unwrap_or_else(|| NatChange::between(&w.orig, &wire.tuple));
    (
        format!(
            "conntrack says {} but the wire shows {} at {}",
            says(&NatChange::between(&w.orig, &w.post), &w.post),
            says(&wire_change, &wire.tuple),
            w.facts.wire_point.as_deref().unwrap_or(&wire.point)
        ),
        "The snapshot does not describe the traffic captured: an entry replaced after the capture (conntrack -D / flush, a new translation after a state loss, FM-02), a snapshot from another host or network namespace, or captures from a different NAT hop. Compare `conntrack -E` events for this tuple with the capture times.".into(),
    )
}
