//! `ct-unreplied`: a snapshot entry marked `[UNREPLIED]` although the wire carried
//! replies for its tuples before the snapshot was taken (the snapshot's time is
//! needed, given or estimated). The replies bypassed this host's conntrack or did not
//! match the entry.

use super::entry_finding;
use crate::audit::ct::{locate, SnapTime};
use crate::audit::{Code, CtFacts, Ctx, Evidence, Finding, Severity};

pub fn detect(x: &Ctx) -> Vec<Finding> {
    let mut out = Vec::new();
    for (snap, &time) in x.snapshots.iter().zip(x.snap_times()) {
        let Some(SnapTime {
            ns: s,
            slack_ns,
            recorded,
        }) = time
        else {
            continue;
        };
        for e in snap.entries.iter().filter(|e| e.unreplied) {
            let Some((ci, hi)) = locate(x.c, &x.hops_by_tuple, e) else {
                continue;
            };
            // Replies the wire carried for this entry's tuples before the snapshot.
            let post = e.post();
            let replied = x.c.connections[ci].hops.iter().enumerate().any(|(i, h)| {
                (i == hi || h.flow.tuple == post)
                    && h.flow.packets[1] > 0
                    && h.first_ns + slack_ns < s
            });
            if !replied {
                continue;
            }
            let mut f = entry_finding(
                x,
                Code::CtUnreplied,
                Severity::Warning,
                e,
                Some(ci),
                CtFacts::default(),
            );
            f.evidence.push(Evidence::SnapshotTime {
                ns: s,
                source: e.source.clone(),
                recorded,
            });
            out.push(f);
        }
    }
    out
}
