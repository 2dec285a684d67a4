//! `ct-duplicate` (FM-03, FM-06): several entries of one snapshot share a reply tuple
//! (in one zone), so conntrack could not tell their replies apart; the kernel refuses
//! such a clash at confirm time, so the file holds a clash it resolved badly or joins
//! two snapshots. Not checked on event logs, whose entries span time.

use std::collections::BTreeMap;

use super::entry_finding;
use crate::audit::ct::CtEntry;
use crate::audit::{Code, CtFacts, Ctx, Evidence, Finding, Severity};
use crate::model::Tuple;

pub fn detect(x: &Ctx) -> Vec<Finding> {
    let mut out = Vec::new();
    for snap in x.snapshots.iter().filter(|s| !s.from_events) {
        let mut by_reply: BTreeMap<(u16, Tuple), Vec<&CtEntry>> = BTreeMap::new();
        for e in &snap.entries {
            by_reply.entry((e.zone, e.reply)).or_default().push(e);
        }
        for ((zone, reply), es) in by_reply {
            if es.len() < 2 {
                continue;
            }
            let mut f = entry_finding(
                x,
                Code::CtDuplicate,
                Severity::Error,
                es[0],
                None,
                CtFacts {
                    shared_reply: Some((es.len(), reply, zone)),
                    ..CtFacts::default()
                },
            );
            f.evidence = es.iter().map(|e| Evidence::Entry(e.facts())).collect();
            f.evidence
                .push(Evidence::Lines(es.iter().map(|e| e.place()).collect()));
            out.push(f);
        }
    }
    out
}
