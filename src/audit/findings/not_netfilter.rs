//! `not-netfilter`: a translation on the wire that no rule of the rule set given can
//! make: a destination no DNAT names, a new source with no SNAT or MASQUERADE rule
//! anywhere. The datapath that translated it is outside these netfilter rules: IPVS
//! (kube-proxy's ipvs mode), an eBPF service load balancer (Cilium's kube-proxy
//! replacement, Calico's eBPF mode), or rules the dump does not hold. Said instead of
//! `rule-contradiction`, which is for a rule set that would translate it otherwise.

use crate::audit::rules::Reach;
use crate::audit::{Code, Ctx, Detail, Finding, Severity};

/// The connections whose translation no rule given can make, ascending, but for flows
/// left on a backend by an entry older than the rules (`stale`: `stale-entry`'s,
/// ascending).
pub fn beyond(x: &Ctx, stale: &[usize]) -> Vec<usize> {
    let Some(rules) = x.rules else {
        return Vec::new();
    };
    let reach = Reach::of(rules);
    x.attributions
        .iter()
        .filter(|a| a.chosen.is_none() && stale.binary_search(&a.conn).is_err())
        .filter(|a| a.wire.is_some_and(|w| reach.beyond(&a.packet.tuple, &w)))
        .map(|a| a.conn)
        .collect()
}

pub fn detect(x: &Ctx) -> Vec<Finding> {
    let mut out = Vec::new();
    // Only a connection walked through the rules can be beyond them: without one (no
    // rules given), `stale-entry`'s pass is not needed.
    if x.attributions.is_empty() {
        return out;
    }
    for ci in beyond(x, &super::stale_entry::stale_conns(x)) {
        let Some(a) = x.attribution(ci) else {
            continue;
        };
        let Some(wire) = a.wire else { continue };
        let mut f = Finding::new(
            Code::NotNetfilter,
            Severity::Warning,
            Detail::Rules {
                walked: a.packet.tuple,
                wire: Some(wire),
                rules: None,
                stopped: false,
                outcomes: a.walk.outcomes.len(),
                assumed: false,
            },
        );
        super::walked_finding(x, &mut f, ci, a.packet.tuple, wire);
        out.push(f);
    }
    out
}
