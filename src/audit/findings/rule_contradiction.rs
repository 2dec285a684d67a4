//! `rule-contradiction`: a connection the host translated and passed on, whose first
//! packet the host's rule set (every way through it, `statistic` branches included)
//! would translate otherwise, or drop. The rule set given does not describe the
//! traffic captured. An error when the rules' way rests on no undecided match, else a
//! warning.

use crate::audit::{Code, Ctx, Detail, Finding, RuleRole, Severity};
use crate::rules::eval::{Fate, Outcome};

/// The tuple after an outcome's NAT decisions.
fn outcome_tuple(o: &Outcome, before: crate::model::Tuple) -> crate::model::Tuple {
    o.snat
        .as_ref()
        .or(o.dnat.as_ref())
        .map_or(before, |n| n.after)
}

pub fn detect(x: &Ctx) -> Vec<Finding> {
    // Only a connection walked through the rules can contradict them: without one (no
    // rules given), `stale-entry`'s pass is not needed.
    if x.attributions.is_empty() {
        return Vec::new();
    }
    // A flow whose entry predates a rule change is `stale-entry`'s, not a rule set that
    // does not describe the host.
    // Nor one no rule could translate so (`not-netfilter`).
    let stale = super::stale_entry::stale_conns(x);
    let beyond = super::not_netfilter::beyond(x, &stale);
    let skip = |k: &usize| stale.binary_search(k).is_ok() || beyond.binary_search(k).is_ok();
    let mut out = Vec::new();
    for a in (x.attributions.iter()).filter(|a| !skip(&a.conn)) {
        let (Some(wire), None, Some(best)) = (a.wire, a.chosen, a.walk.outcomes.first()) else {
            continue;
        };
        // A way that met a target natcheck cannot follow (or a jump to a chain the dump
        // does not hold) may be the one that did what the wire shows.
        if a.walk
            .outcomes
            .iter()
            .any(|o| matches!(o.fate, Fate::Stopped { .. }))
        {
            continue;
        }
        let assumed = best.assumed() || a.walk.truncated;
        let mut f = Finding::new(
            Code::RuleContradiction,
            if assumed {
                Severity::Warning
            } else {
                Severity::Error
            },
            Detail::Rules {
                walked: a.packet.tuple,
                wire: Some(wire),
                rules: Some(outcome_tuple(best, a.packet.tuple)),
                stopped: !matches!(best.fate, Fate::Delivered | Fate::Forwarded | Fate::Sent),
                outcomes: a.walk.outcomes.len(),
                assumed,
            },
        );
        super::walked_finding(x, &mut f, a.conn, a.packet.tuple, wire);
        let deciding = best
            .dnat
            .iter()
            .chain(best.snat.iter())
            .map(|n| n.rule.clone())
            .chain(match &best.fate {
                Fate::Dropped { rule: Some(r), .. } | Fate::Rejected { rule: r, .. } => {
                    Some(r.clone())
                }
                _ => None,
            });
        for r in deciding {
            f.evidence.extend(x.rule(&r, RuleRole::Disagrees));
        }
        out.push(f);
    }
    out
}
