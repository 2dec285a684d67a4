//! Counter deltas between two dumps of the same host's rules (`--rules-before`): a
//! rule's counters in a single dump are totals since the chain was last written, so
//! "did this DROP see the retry?" needs a dump from before and one from after.
//!
//! Rules are paired across the dumps by family, table, chain and text: the k-th rule of
//! a chain with a given text in the later dump is the k-th one with the same text in
//! the earlier dump. nft rules without text of their own are paired by handle. A rule
//! with no partner was added in between; a counter that went down was reset (kube-proxy
//! and Docker rewrite whole chains, which zeroes their counters), so its difference
//! says nothing.

use std::collections::HashMap;

use super::{Counters, RuleSet, Table};
use crate::diag::{Location, Warning};

/// How a counter changed between the earlier dump and this one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Change {
    /// It grew by this much.
    Grew(Counters),
    /// It went down: the rule or its chain was rewritten, or the counters zeroed, in
    /// between; what it counts now is since then.
    Reset,
    /// The earlier dump has no such rule: it was added in between, and its counter
    /// counts from then.
    New,
}

/// The earlier dump's counters, laid out like the later rule set's tables.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Baseline {
    /// The earlier dump's inputs, as given on the command line.
    pub source: String,
    /// `[table][chain][rule]`: the paired rule's counters in the earlier dump.
    rules: Vec<Vec<Vec<Option<Counters>>>>,
    /// `[table][chain]`: the earlier policy counters of base chains.
    policies: Vec<Vec<Option<Counters>>>,
}

impl Baseline {
    /// Pairs every rule of `after` with `before`'s. Warnings name what cannot be
    /// compared: an earlier dump without counters, tables it does not have.
    pub fn between(before: &RuleSet, after: &RuleSet) -> (Baseline, Vec<Warning>) {
        let mut warnings = Vec::new();
        let counted = before
            .tables
            .iter()
            .flat_map(|t| &t.chains)
            .any(|c| c.rules.iter().any(|r| r.counters.is_some()));
        if !counted && !before.tables.is_empty() {
            warnings.push(Warning::new(
                &before.source,
                Location::File,
                "the earlier rules have no counters: dump them with iptables-save -c or nft list ruleset with counter statements",
            ));
        }
        let mut base = Baseline {
            source: before.source.clone(),
            ..Baseline::default()
        };
        for t in &after.tables {
            let earlier = before
                .tables
                .iter()
                .find(|b| b.family == t.family && b.name == t.name);
            if earlier.is_none() && !before.tables.is_empty() {
                warnings.push(Warning::new(
                    &before.source,
                    Location::File,
                    format!(
                        "no table {} {} to compare {}'s counters with",
                        t.family.name(),
                        t.name,
                        t.source
                    ),
                ));
            }
            let (rules, policies) = pair_table(t, earlier);
            base.rules.push(rules);
            base.policies.push(policies);
        }
        (base, warnings)
    }

    /// The change of rule `rule` of chain `chain` of table `table`, whose counters are
    /// now `now`.
    pub fn rule(&self, table: usize, chain: usize, rule: usize, now: Counters) -> Change {
        let before = self
            .rules
            .get(table)
            .and_then(|t| t.get(chain))
            .and_then(|c| c.get(rule))
            .copied()
            .flatten();
        change(before, now)
    }

    /// The change of a base chain's policy counters.
    pub fn policy(&self, table: usize, chain: usize, now: Counters) -> Change {
        let before = self
            .policies
            .get(table)
            .and_then(|t| t.get(chain))
            .copied()
            .flatten();
        change(before, now)
    }
}

fn change(before: Option<Counters>, now: Counters) -> Change {
    match before {
        None => Change::New,
        Some(b) if now.packets >= b.packets && now.bytes >= b.bytes => Change::Grew(Counters {
            packets: now.packets - b.packets,
            bytes: now.bytes - b.bytes,
        }),
        Some(_) => Change::Reset,
    }
}

type Paired = (Vec<Vec<Option<Counters>>>, Vec<Option<Counters>>);

fn pair_table(t: &Table, earlier: Option<&Table>) -> Paired {
    let mut rules = Vec::with_capacity(t.chains.len());
    let mut policies = Vec::with_capacity(t.chains.len());
    for ch in &t.chains {
        let old = earlier.and_then(|e| e.chain(&ch.name));
        policies.push(old.and_then(|o| o.base.as_ref()).and_then(|b| b.counters));
        let Some(old) = old else {
            rules.push(vec![None; ch.rules.len()]);
            continue;
        };
        // Rules by identity, each identity's occurrences in order.
        let key = |r: &super::Rule| match (r.text.is_empty(), r.handle) {
            (true, Some(h)) => format!("handle {h}"),
            _ => r.text.clone(),
        };
        let mut earlier_rules: HashMap<String, Vec<Option<Counters>>> = HashMap::new();
        for r in old.rules.iter().rev() {
            earlier_rules.entry(key(r)).or_default().push(r.counters);
        }
        rules.push(
            ch.rules
                .iter()
                .map(|r| {
                    earlier_rules
                        .get_mut(&key(r))
                        .and_then(Vec::pop)
                        .map(|c| c.unwrap_or_default())
                })
                .collect(),
        );
    }
    (rules, policies)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::iptables;

    fn pair(before: &str, after: &str) -> (RuleSet, Baseline, Vec<Warning>) {
        let b = iptables::parse("before.txt", before);
        let a = iptables::parse("after.txt", after);
        let (base, w) = Baseline::between(&b, &a);
        (a, base, w)
    }

    fn at(rules: &RuleSet, base: &Baseline, chain: &str, i: usize) -> Change {
        let t = &rules.tables[0];
        let ci = t.chains.iter().position(|c| c.name == chain).unwrap();
        base.rule(0, ci, i, t.chains[ci].rules[i].counters.unwrap())
    }

    const BEFORE: &str = "*filter
:INPUT ACCEPT [10:600]
:FORWARD DROP [5:300]
:DOCKER-USER - [0:0]
[3:180] -A FORWARD -j DOCKER-USER
[1:60] -A DOCKER-USER -p tcp --dport 80 -j DROP
[1:60] -A DOCKER-USER -p tcp --dport 80 -j DROP
[2:120] -A DOCKER-USER -j RETURN
COMMIT
";

    #[test]
    fn deltas_by_rule_text_and_occurrence() {
        let after = "*filter
:INPUT ACCEPT [12:700]
:FORWARD DROP [9:540]
:DOCKER-USER - [0:0]
[6:360] -A FORWARD -j DOCKER-USER
[4:240] -A DOCKER-USER -p tcp --dport 80 -j DROP
[1:60] -A DOCKER-USER -p tcp --dport 80 -j DROP
[1:60] -A DOCKER-USER -p tcp --dport 22 -j DROP
[1:60] -A DOCKER-USER -j RETURN
COMMIT
";
        let (a, base, w) = pair(BEFORE, after);
        assert!(w.is_empty(), "{w:?}");
        let grew = |p, b| {
            Change::Grew(Counters {
                packets: p,
                bytes: b,
            })
        };
        assert_eq!(at(&a, &base, "FORWARD", 0), grew(3, 180));
        assert_eq!(at(&a, &base, "DOCKER-USER", 0), grew(3, 180));
        assert_eq!(at(&a, &base, "DOCKER-USER", 1), grew(0, 0));
        assert_eq!(at(&a, &base, "DOCKER-USER", 2), Change::New);
        assert_eq!(at(&a, &base, "DOCKER-USER", 3), Change::Reset);
        let t = &a.tables[0];
        let fwd = t.chains.iter().position(|c| c.name == "FORWARD").unwrap();
        let now = t.chains[fwd].base.as_ref().unwrap().counters.unwrap();
        assert_eq!(base.policy(0, fwd, now), grew(4, 240));
    }

    #[test]
    fn an_earlier_dump_without_counters_or_tables_is_named() {
        let plain = "*filter\n:INPUT ACCEPT\n-A INPUT -j ACCEPT\nCOMMIT\n";
        let (_, _, w) = pair(plain, BEFORE);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].message.contains("no counters"), "{w:?}");
        let nat = "*nat\n:PREROUTING ACCEPT [0:0]\n[1:60] -A PREROUTING -j ACCEPT\nCOMMIT\n";
        let (a, base, w) = pair(nat, BEFORE);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].message.contains("no table ip filter"), "{w:?}");
        assert_eq!(at(&a, &base, "DOCKER-USER", 0), Change::New);
    }
}
