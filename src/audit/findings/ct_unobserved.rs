//! `ct-unobserved`: a NATed entry that no capture shows (neither its ORIGINAL tuple nor
//! its translated one), whose last refresh (snapshot time minus the time spent of its
//! state's default timeout) fell inside the captures' span: conntrack saw a packet of
//! it while the captures ran and they missed it.

use super::entry_finding;
use crate::audit::ct::{locate, SnapTime};
use crate::audit::{Code, CtFacts, Ctx, Evidence, Finding, Severity};
use crate::model::NatKind;

/// The clock-corrected span over every capture point.
fn capture_span(x: &Ctx) -> Option<(i64, i64)> {
    (0..x.c.points.len())
        .filter_map(|p| x.span(p))
        .reduce(|(x0, y0), (a, b)| (x0.min(a), y0.max(b)))
}

pub fn detect(x: &Ctx) -> Vec<Finding> {
    let mut out = Vec::new();
    let Some((a, b)) = capture_span(x) else {
        return out;
    };
    for (snap, &when) in x.snapshots.iter().zip(x.snap_times()) {
        for e in &snap.entries {
            let post = e.post();
            if locate(x.c, &x.hops_by_tuple, e).is_some()
                || e.change().kind == NatKind::None
                || x.hops_by_tuple.contains_key(&post)
            {
                continue;
            }
            let (
                Some(SnapTime {
                    ns: s, slack_ns, ..
                }),
                Some(t),
            ) = (when, e.timeout_s)
            else {
                continue;
            };
            let full = e.full_timeout_s(&x.timeouts);
            if t > full {
                continue;
            }
            // The entry's last refresh: a packet conntrack saw then.
            let idle_ns = (full - t) as i64 * 1_000_000_000;
            let refreshed = s - idle_ns;
            if refreshed < a + slack_ns || refreshed > b - slack_ns {
                continue;
            }
            let mut f = entry_finding(
                x,
                Code::CtUnobserved,
                Severity::Warning,
                e,
                None,
                CtFacts {
                    idle_ns: Some(idle_ns),
                    ..CtFacts::default()
                },
            );
            f.first_ns = Some(refreshed);
            f.last_ns = Some(refreshed);
            f.evidence.push(Evidence::SnapshotVsCaptures {
                source: snap.source.clone(),
                ns: s,
                slack_ns,
                from_ns: a,
                to_ns: b,
            });
            out.push(f);
        }
    }
    out
}
