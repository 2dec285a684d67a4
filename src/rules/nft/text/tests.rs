use super::*;
use crate::rules::{Chain, MatchKind, Rule, Set, Table, Target};

/// The first way two rule sets read from the same kernel differ, on everything but
/// where things were read (source, lines, rule text, dialect). Anonymous sets are
/// compared by their members, as their names hold the rule's handle or line. With
/// `written`, the text is a file written for `nft -f` rather than nft's own listing:
/// its rules have no handles, and a `counter` without values is the kernel's zero.
pub(crate) fn first_difference(text: &RuleSet, json: &RuleSet, written: bool) -> Option<String> {
    if written {
        // The kernel lists a set's elements in its own order, not the file's.
        let (text, json) = (in_order(text), in_order(json));
        return differences(&text, &json, written);
    }
    differences(text, json, written)
}

/// The rule set with set members and map branches sorted.
fn in_order(rs: &RuleSet) -> RuleSet {
    let mut rs = rs.clone();
    for set in rs.sets.values_mut() {
        set.members.sort_by_key(|m| format!("{m:?}"));
    }
    for t in &mut rs.tables {
        for c in &mut t.chains {
            for r in &mut c.rules {
                if let Target::Map { branches, .. } = &mut r.target {
                    branches.sort_by(|a, b| a.key.cmp(&b.key));
                }
            }
        }
    }
    rs
}

fn differences(text: &RuleSet, json: &RuleSet, written: bool) -> Option<String> {
    let names = |rs: &RuleSet| -> Vec<String> {
        rs.tables
            .iter()
            .map(|t| format!("{:?} {}", t.family, t.name))
            .collect()
    };
    if names(text) != names(json) {
        return Some(format!(
            "tables: text {:?}, json {:?}",
            names(text),
            names(json)
        ));
    }
    for (a, b) in text.tables.iter().zip(&json.tables) {
        if let Some(d) = table_difference(text, json, a, b, written) {
            return Some(format!("table {:?} {}: {d}", a.family, a.name));
        }
    }
    let named = |rs: &RuleSet| -> Vec<(String, Set)> {
        rs.sets
            .iter()
            .filter(|(k, _)| !k.contains(" __"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    let (a, b) = (named(text), named(json));
    if a != b {
        let d = a.iter().zip(&b).find(|(x, y)| x != y);
        return Some(format!(
            "named sets: first difference {d:?} ({} vs {})",
            a.len(),
            b.len()
        ));
    }
    None
}

fn table_difference(
    ta: &RuleSet,
    tb: &RuleSet,
    a: &Table,
    b: &Table,
    written: bool,
) -> Option<String> {
    let names = |t: &Table| t.chains.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
    if names(a) != names(b) {
        return Some(format!("chains: text {:?}, json {:?}", names(a), names(b)));
    }
    for (ca, cb) in a.chains.iter().zip(&b.chains) {
        if let Some(d) = chain_difference(ta, tb, ca, cb, written) {
            return Some(format!("chain {}: {d}", ca.name));
        }
    }
    None
}

fn chain_difference(
    ta: &RuleSet,
    tb: &RuleSet,
    a: &Chain,
    b: &Chain,
    written: bool,
) -> Option<String> {
    if a.base != b.base {
        return Some(format!("base: text {:?}, json {:?}", a.base, b.base));
    }
    if a.rules.len() != b.rules.len() {
        return Some(format!(
            "{} rules in the text, {} in the json",
            a.rules.len(),
            b.rules.len()
        ));
    }
    for (k, (ra, rb)) in a.rules.iter().zip(&b.rules).enumerate() {
        if let Some(d) = rule_difference(ta, tb, ra, rb, written) {
            return Some(format!(
                "rule {} (line {}, handle {:?}: {}): {d}",
                k + 1,
                ra.line,
                rb.handle,
                ra.text
            ));
        }
    }
    None
}

fn rule_difference(
    ta: &RuleSet,
    tb: &RuleSet,
    a: &Rule,
    b: &Rule,
    written: bool,
) -> Option<String> {
    if a.handle != b.handle && !(written && a.handle.is_none()) {
        return Some(format!("handle: text {:?}, json {:?}", a.handle, b.handle));
    }
    let zero = written
        && a.counters.is_none()
        && b.counters.is_some_and(|c| c.packets == 0 && c.bytes == 0);
    if a.counters != b.counters && !zero {
        return Some(format!(
            "counters: text {:?}, json {:?}",
            a.counters, b.counters
        ));
    }
    if a.comment != b.comment {
        return Some(format!(
            "comment: text {:?}, json {:?}",
            a.comment, b.comment
        ));
    }
    if a.matches.len() != b.matches.len() {
        return Some(format!(
            "matches: text {:?}, json {:?}",
            a.matches, b.matches
        ));
    }
    for (ma, mb) in a.matches.iter().zip(&b.matches) {
        let same = match (&ma.kind, &mb.kind) {
            (MatchKind::Set { name: na, dims: da }, MatchKind::Set { name: nb, dims: db })
                if na.contains(" __") && nb.contains(" __") =>
            {
                ma.negated == mb.negated && da == db && ta.sets.get(na) == tb.sets.get(nb)
            }
            _ => ma == mb,
        };
        if !same {
            return Some(format!("match: text {ma:?}, json {mb:?}"));
        }
    }
    if a.target != b.target {
        return Some(format!("target: text {:?}, json {:?}", a.target, b.target));
    }
    None
}

fn read(path: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The text and JSON forms of the same kernel's rule set read the same, the text with
/// no warning.
fn same_rules(text: &str, json: &str, written: bool) -> RuleSet {
    let a = parse_text(text, &read(text));
    let b = crate::rules::nft::parse_json(json, &read(json));
    assert!(a.warnings.is_empty(), "{text}: {:?}", a.warnings);
    assert!(b.warnings.is_empty(), "{json}: {:?}", b.warnings);
    assert!(!a.tables.is_empty());
    if let Some(d) = first_difference(&a, &b, written) {
        panic!("{text} and {json} differ: {d}");
    }
    a
}

#[test]
fn kube_nft_listing_reads_like_its_json() {
    let rs = same_rules(
        "samples/kube-nft/nft.txt",
        "samples/kube-nft/nft.json",
        false,
    );
    for t in &rs.tables {
        assert_eq!(t.dialect, Dialect::NftText);
    }
}

#[test]
fn recorded_kube_proxy_commands_read_like_their_json() {
    same_rules(
        "tests/data/rules/kube-proxy-nftables-recorded.nft",
        "tests/data/rules/kube-proxy-nftables-recorded.json",
        true,
    );
}

#[test]
fn recorded_native_firewall_reads_like_its_json() {
    same_rules(
        "tests/data/rules/native-firewall-recorded.nft",
        "tests/data/rules/native-firewall-recorded.json",
        true,
    );
}

#[test]
fn recorded_syntax_listing_reads_like_its_json() {
    same_rules(
        "tests/data/rules/nft-syntax-recorded.txt",
        "tests/data/rules/nft-syntax-recorded.json",
        false,
    );
    same_rules(
        "tests/data/rules/nft-syntax-recorded.nft",
        "tests/data/rules/nft-syntax-recorded.json",
        true,
    );
}
