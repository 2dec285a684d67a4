//! `ct-missing` (FM-02, FM-13, FM-14): a connection translated on the wire whose
//! packets span a snapshot's time (beyond the time's uncertainty on both sides), while
//! no entry of that snapshot matches it: the entry was deleted or expired while the
//! connection lived, or the snapshot is from elsewhere.

use crate::audit::ct::{locate, SnapTime, Snapshot};
use crate::audit::{Code, CtFacts, Ctx, Detail, Evidence, Finding, Role, Severity};
use crate::model::NatKind;

/// Connections some entry of the snapshot stands for (by ORIGINAL, or by the
/// translated tuple).
fn matched(x: &Ctx, snap: &Snapshot) -> Vec<bool> {
    let mut m = vec![false; x.c.connections.len()];
    for e in &snap.entries {
        let located = locate(x.c, &x.hops_by_tuple, e).or_else(|| {
            x.hops_by_tuple
                .get(&e.post())
                .and_then(|v| v.first().copied())
        });
        if let Some((ci, _)) = located {
            m[ci] = true;
        }
    }
    m
}

pub fn detect(x: &Ctx) -> Vec<Finding> {
    let mut out = Vec::new();
    for (snap, &time) in x.snapshots.iter().zip(x.snap_times()) {
        let Some(SnapTime {
            ns: s, slack_ns, ..
        }) = time
        else {
            continue;
        };
        let matched = matched(x, snap);
        for (ci, conn) in x.c.connections.iter().enumerate() {
            if matched[ci] || !conn.links.iter().any(|l| l.change.kind != NatKind::None) {
                continue;
            }
            if !(conn.first_ns() + slack_ns < s && conn.last_ns() > s + slack_ns) {
                continue;
            }
            let first = &conn.hops[0];
            let mut f = Finding::new(
                Code::CtMissing,
                Severity::Warning,
                Detail::Conntrack {
                    entry: snap.source.clone(),
                    wire: Some(first.flow.tuple),
                    conntrack: None,
                    facts: CtFacts {
                        snapshot: Some(snap.source.clone()),
                        ..CtFacts::default()
                    },
                },
            );
            f.conns = vec![ci];
            f.points = conn
                .hops
                .iter()
                .map(|h| x.name(h.point).to_string())
                .collect();
            f.tuples = vec![x.seen(first, Role::Original)];
            f.first_ns = Some(conn.first_ns());
            f.last_ns = Some(conn.last_ns());
            f.packets = first.flow.packets[0] + first.flow.packets[1];
            f.evidence = vec![Evidence::SnapshotVsConnection {
                ns: s,
                slack_ns,
                conn: conn.id.clone(),
                from_ns: conn.first_ns(),
                to_ns: conn.last_ns(),
            }];
            out.push(f);
        }
    }
    out
}
