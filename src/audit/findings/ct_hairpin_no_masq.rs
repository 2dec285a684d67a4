//! `ct-hairpin-no-masq` (FM-07): an entry that DNATs a client back to itself and keeps
//! the client's own address as the source. The server (the client) answers itself
//! directly, never back through NAT, so the connection cannot complete. Checked on
//! snapshots and event logs alike. An entry of a connection whose captures show the
//! hairpin is left to `hairpin-no-masq`, which says it from the wire.

use super::entry_finding;
use crate::audit::ct::CtEntry;
use crate::audit::{Code, CtFacts, Ctx, Finding, Severity};

/// Whether the entry DNATs its client back to itself and keeps its source.
pub fn back_to_client(e: &CtEntry) -> bool {
    let post = e.post();
    e.change().dst_addr_changed && post.dst == e.orig.src && post.src == e.orig.src
}

pub fn detect(x: &Ctx) -> Vec<Finding> {
    let mut out = Vec::new();
    for snap in x.snapshots {
        for e in &snap.entries {
            let post = e.post();
            if !back_to_client(e) {
                continue;
            }
            let located = crate::audit::ct::locate(x.c, &x.hops_by_tuple, e)
                .or_else(|| x.hops_by_tuple.get(&post).and_then(|v| v.first().copied()));
            if located
                .is_some_and(|(ci, _)| super::hairpin_no_masq::link(&x.c.connections[ci]).is_some())
            {
                continue;
            }
            out.push(entry_finding(
                x,
                Code::CtHairpinNoMasq,
                Severity::Error,
                e,
                located.map(|(ci, _)| ci),
                CtFacts::default(),
            ));
        }
    }
    out
}
