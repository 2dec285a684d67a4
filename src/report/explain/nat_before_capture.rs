//! Words of `nat-before-capture`.

use super::{ct_words, unexplained};
use crate::audit::{Detail, Finding};
use crate::report::fmt::tuple_proto;

/// A connection translated where no capture looked is NAT at work, not a fault.
pub fn expected(f: &Finding) -> Option<(&'static str, &'static str)> {
    matches!(f.detail, Detail::Conntrack { .. }).then_some((
        "connection translated before the first capture point (by its conntrack entry)",
        "connections translated before the first capture point (by their conntrack entries)",
    ))
}

pub fn explain(f: &Finding) -> (String, String) {
    let Some(w) = ct_words(f) else {
        return unexplained(f);
    };
    let point = f.points.first().map_or("the first point", String::as_str);
    let change = crate::model::NatChange::between(&w.orig, &w.post);
    let whose = match (w.facts.local, change.kind.has_dnat(), change.kind.has_snat()) {
        (false, ..) => "it reached the host by an interface that was not captured",
        (true, true, true) => {
            "the host opened it itself and translated it before any interface saw it (DNAT in nat OUTPUT, SNAT in POSTROUTING)"
        }
        (true, true, false) => {
            "the host opened it itself and translated it before any interface saw it (nat OUTPUT)"
        }
        (true, false, _) => {
            "the host opened it itself and translated it before any interface saw it (nat POSTROUTING)"
        }
    };
    (
        format!(
            "{point} saw {} already translated: conntrack has it opened as {} ({}); {whose}",
            tuple_proto(&w.post),
            tuple_proto(&w.orig),
            change.kind.as_str(),
        ),
        "Nothing is wrong with the translation; the captures cannot show it. Capture the interface the connection came in by to see it on the wire. A connection the host opens itself (a published port reached by the host's own address, a Kubernetes ClusterIP or NodePort from the node) is translated in nat OUTPUT before any interface sees it: only conntrack shows its tuple before NAT, and `natcheck explain --packet 'PROTO SRC:PORT > DST:PORT local'` walks that tuple through the rules.".into(),
    )
}
