//! Words of `ct-unobserved`.

use super::{ct_words, unexplained};
use crate::audit::Finding;
use crate::report::fmt::{secs, tuple_proto};

pub fn explain(f: &Finding) -> (String, String) {
    let Some(w) = ct_words(f) else {
        return unexplained(f);
    };
    (
        format!(
            "conntrack translated {} to {} and saw a packet of it about {} before the snapshot, while the captures ran, but no capture has it",
            tuple_proto(&w.orig),
            tuple_proto(&w.post),
            secs(w.facts.idle_ns.unwrap_or(0))
        ),
        "The captures miss traffic this host translated: another interface or path, a capture filter, or dropped packets (check the capture's drop counters); or the snapshot is from another host.".into(),
    )
}
