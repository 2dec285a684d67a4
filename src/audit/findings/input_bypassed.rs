//! `input-bypassed`: a DROP or REJECT rule in a filter INPUT chain that matches the
//! first packet of connections as they arrived, but never saw them: nat PREROUTING
//! DNATed them to an address that is not the host's, so the routing decision sent
//! them to FORWARD (the NodePort and published-port case). One finding per rule, with
//! every connection it missed.

use std::collections::BTreeMap;

use crate::audit::rules::unseen_input_rules;
use crate::audit::{Code, Ctx, Detail, Finding, Role, RuleRole, Severity};
use crate::rules::eval::RuleRef;
use crate::rules::Hook;

pub fn detect(x: &Ctx) -> Vec<Finding> {
    let Some(rules) = x.rules else {
        return Vec::new();
    };
    let mut missed: BTreeMap<RuleRef, Vec<usize>> = BTreeMap::new();
    for a in &x.attributions {
        let Some(o) = a.outcome() else { continue };
        if o.filter_hook != Some(Hook::Forward) || o.dnat.is_none() {
            continue;
        }
        for r in unseen_input_rules(rules, &a.packet) {
            missed.entry(r).or_default().push(a.conn);
        }
    }
    let mut out = Vec::new();
    for (r, conns) in missed {
        let Some(a) = x.attribution(conns[0]) else {
            continue;
        };
        let mut f = Finding::new(
            Code::InputBypassed,
            Severity::Warning,
            Detail::Rules {
                walked: a.packet.tuple,
                wire: a.wire,
                rules: a.outcome().and_then(|o| o.dnat.as_ref()).map(|n| n.after),
                stopped: false,
                outcomes: a.walk.outcomes.len(),
                assumed: a.outcome().is_some_and(|o| o.assumed()),
            },
        );
        f.evidence.extend(x.rule(&r, RuleRole::NeverSaw));
        let first = &x.c.connections[conns[0]];
        if let Some(h) = first.hops.iter().find(|h| h.flow.tuple == a.packet.tuple) {
            f.tuples.push(x.seen(h, Role::Original));
            f.evidence.push(x.hop(h));
            f.points = vec![x.name(h.point).to_string()];
        }
        // Where DNAT sent them: each destination once, with its rule.
        let mut dnat_rules = Vec::new();
        for &k in &conns {
            let Some(b) = x.attribution(k) else { continue };
            let (Some(n), Some(wire)) = (b.outcome().and_then(|o| o.dnat.as_ref()), b.wire) else {
                continue;
            };
            if !dnat_rules.contains(&n.rule) {
                dnat_rules.push(n.rule.clone());
                f.evidence.extend(x.rule(&n.rule, RuleRole::Translated));
            }
            let conn = &x.c.connections[k];
            let seen_to =
                |s: &crate::audit::Seen| s.tuple.dst == wire.dst && s.tuple.dport == wire.dport;
            if !f
                .tuples
                .iter()
                .any(|s| s.role == Role::Translated && seen_to(s))
            {
                if let Some(h) = conn.hops.iter().find(|h| h.flow.tuple == wire) {
                    f.tuples.push(x.seen(h, Role::Translated));
                }
            }
        }
        f.first_ns = conns.iter().map(|&k| x.c.connections[k].first_ns()).min();
        f.last_ns = conns.iter().map(|&k| x.c.connections[k].last_ns()).max();
        f.packets = conns.len() as u64;
        f.conns = conns;
        out.push(f);
    }
    out
}
