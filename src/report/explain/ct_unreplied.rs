//! Words of `ct-unreplied`.

use super::{ct_words, unexplained};
use crate::audit::Finding;
use crate::report::fmt::tuple_proto;

pub fn explain(f: &Finding) -> (String, String) {
    let Some(w) = ct_words(f) else {
        return unexplained(f);
    };
    (
        format!(
            "conntrack marks {} [UNREPLIED] although replies were on the wire before the snapshot",
            tuple_proto(&w.orig)
        ),
        "The replies bypassed this host's conntrack (asymmetric routing, another path back, FM-16) or did not match the entry (a NAT or server that answers from another address); check routes and rp_filter on the reply path.".into(),
    )
}
