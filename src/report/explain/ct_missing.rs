//! Words of `ct-missing`.

use super::unexplained;
use crate::audit::{Detail, Finding};

pub fn explain(f: &Finding) -> (String, String) {
    let Detail::Conntrack { facts, .. } = &f.detail else {
        return unexplained(f);
    };
    (
        format!(
            "{} was translated on the wire before and after the snapshot {}, which has no entry for it",
            f.connections.first().map_or("", String::as_str),
            facts.snapshot.as_deref().unwrap_or("")
        ),
        "The entry was deleted or expired while the connection lived (conntrack -D, a flush, a timeout shorter than the idle gap, a full table: FM-02, FM-13, FM-14), or the snapshot comes from another host or namespace. `conntrack -E` shows a DESTROY; later packets may leak or be re-translated.".into(),
    )
}
