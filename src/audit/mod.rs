//! audit: says what went wrong and where, as data. It reads what `correlate` rebuilt
//! from the captures and what the witnesses (conntrack, the host's rules) say, and
//! runs the rules of `findings/` (one file per finding code, in one ordered list) to
//! produce [`Finding`]s: a stable [`Code`], a [`Severity`], the capture points and
//! tuples it is about, the time range and packet count behind it, code-specific facts
//! and the evidence, each a value. `report` writes the words. The codes are
//! documented in docs/findings.md.
//!
//! Invariants:
//! * Findings are facts about the inputs, never guesses dressed as facts: every rule
//!   states the evidence it rests on, and absence-based findings (packets that did
//!   not arrive) count only while the point that should have seen them was
//!   capturing.
//! * Output is deterministic: findings are sorted ([`Finding::sort_key`], then
//!   everything else) and nothing is emitted from hash-map iteration order.
//! * Audit does not re-read inputs: the topology it needs (which addresses sit inside
//!   the NAT, which points are upstream of which) is learned from the correlated
//!   connections themselves, or declared with `--inside`.

mod context;
pub mod ct;
mod evidence;
mod finding;
pub mod findings;
pub mod helpers;
pub mod rules;
mod topology;

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

pub use crate::cidr::Cidr;
use crate::correlate::Correlation;
use crate::witness::Witness;
pub use context::{Ctx, ErrorHop, Explained};
pub use ct::{WitnessKind, WitnessSummary};
pub use evidence::{Endpoint, EntryFacts, Evidence, GapFacts, HopFacts, RuleFacts, RuleRole};
pub use evidence::{RouteFact, SizeFact, SpliceFact, TableFact, UnderlayFact};
pub use finding::{
    AllocatorMode, Code, CtFacts, Detail, Direction, Finding, LeakKind, PathReason, RaceKind,
    RangeFrom, Role, Seen, Severity, PATH_FROM_SHOWN,
};
pub use finding::{PmtuFacts, RouteFacts, SpliceFacts, TableFullFacts, UnderlayFacts};

/// What the audit is told beyond the captures and witnesses.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// Declared inside prefixes (container, pod and bridge networks). When empty they
    /// are learned from the translations seen on the wire.
    pub inside: Vec<Cidr>,
    /// Packets at or before this time (on the captures' clock) were discarded at
    /// every point (a flight recorder's window): connections open by then were not
    /// seen opening.
    pub discarded_through_ns: Option<i64>,
}

/// Every finding of a run, sorted, and which belong to which connection.
#[derive(Clone, Debug, Default)]
pub struct Audit {
    pub findings: Vec<Finding>,
    /// For each connection (by index), the indices of its findings.
    pub by_connection: Vec<Vec<usize>>,
    /// The inside prefixes the audit worked with (declared or learned).
    pub inside: Vec<Cidr>,
    /// True when `inside` came from `--inside`.
    pub inside_declared: bool,
    /// What each witness input contributed, in input order.
    pub witnesses: Vec<WitnessSummary>,
    /// The rule set the connections were walked through (every rules input merged,
    /// with the host addresses the captures show when none were given).
    pub rules: Option<crate::rules::RuleSet>,
    /// Each walked connection's way through the rules, in connection order.
    pub attributions: Vec<rules::Attribution>,
    /// Each connection's conntrack entry, when a table holds one, in connection order.
    pub conntrack: Vec<ct::CtMatch>,
}

impl Audit {
    pub fn of_connection(&self, i: usize) -> impl Iterator<Item = &Finding> {
        self.by_connection
            .get(i)
            .into_iter()
            .flatten()
            .map(|&f| &self.findings[f])
    }

    /// Count per severity, every severity present (0 when none).
    pub fn severities(&self) -> BTreeMap<Severity, usize> {
        let mut m: BTreeMap<Severity, usize> = Severity::ALL.iter().map(|&s| (s, 0)).collect();
        for f in &self.findings {
            *m.entry(f.severity).or_insert(0) += 1;
        }
        m
    }

    /// Whether any finding trips `--fail-on`.
    pub fn fails(&self, on: &FailOn) -> bool {
        self.findings.iter().any(|f| on.trips(f))
    }
}

/// `--fail-on`: the findings that make the run exit 1. A comma-separated list of
/// severities (a severity means "at or above it") and finding codes; `none` never fails.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FailOn {
    pub severity: Option<Severity>,
    pub codes: BTreeSet<Code>,
}

impl FailOn {
    pub fn trips(&self, f: &Finding) -> bool {
        self.trips_code(f.code, f.severity)
    }

    /// Whether a finding of `code` at `severity` trips it.
    pub fn trips_code(&self, code: Code, severity: Severity) -> bool {
        self.severity.is_some_and(|s| severity >= s) || self.codes.contains(&code)
    }
}

impl FromStr for FailOn {
    type Err = String;
    fn from_str(s: &str) -> Result<FailOn, String> {
        let mut out = FailOn::default();
        let mut none = false;
        for item in s.split(',').map(str::trim) {
            match item {
                "" => return Err(format!("`{s}`: empty item")),
                "none" => none = true,
                "error" | "warning" | "info" => {
                    let sev: Severity = item.parse()?;
                    // The lowest severity listed wins: "error,warning" means warning.
                    out.severity = Some(out.severity.map_or(sev, |o| o.min(sev)));
                }
                code => {
                    out.codes.insert(code.parse().map_err(|e| {
                        format!(
                            "{e} (expected none, error, warning, info or one of: {})",
                            Code::ALL
                                .iter()
                                .map(|c| c.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    })?);
                }
            }
        }
        if none && (out.severity.is_some() || !out.codes.is_empty()) {
            return Err(format!("`{s}`: `none` cannot be combined with anything"));
        }
        Ok(out)
    }
}

/// Runs every rule on a correlation and its witnesses.
pub fn audit(c: &Correlation, cfg: &Config, witnesses: Vec<Witness>) -> Audit {
    // Two independent passes over every connection; the index of hops by tuple is
    // only read to place conntrack entries.
    let tables = witnesses.iter().any(|w| matches!(w, Witness::Conntrack(_)));
    let (topo, hops) = rayon::join(
        || topology::Topology::learn(c, &cfg.inside),
        || {
            if tables {
                ct::index(c)
            } else {
                ct::HopIndex::default()
            }
        },
    );
    let mut dumps = Vec::new();
    let mut rule_sets = Vec::new();
    for w in witnesses {
        match w {
            Witness::Conntrack(d) => dumps.push(d),
            Witness::Rules(r) => rule_sets.push(r),
        }
    }
    let snapshots: Vec<ct::Snapshot> = dumps.iter().flat_map(ct::Snapshot::from_dump).collect();
    let rule_set = merged_rules(c, &topo, rule_sets);
    let dumps: Vec<&crate::conntrack::Dump> = dumps.iter().collect();
    let mut x = Ctx::with_index(c, &topo, &snapshots, hops);
    x.set_destroyed(ct::Destroyed::of(&dumps));
    x.lifetimes = ct::Lifetime::of(&dumps);
    x.stats = ct::Stats::of(&dumps);
    x.table = ct::TableSize::of(&dumps);
    x.sysctls = ct::settings(&dumps);
    x.set_timeouts(crate::conntrack::Dump::timeouts(dumps.iter().copied()));
    if let Some(cut) = cfg.discarded_through_ns {
        x.opening_unseen = ct::openings_unseen(c, &x.lifetimes, cut);
    }
    if let Some(since) = c.range.since {
        let before = ct::opened_before(c, &x.lifetimes, since);
        x.opening_unseen.resize(before.len(), false);
        for (u, b) in x.opening_unseen.iter_mut().zip(before) {
            *u |= b;
        }
    }
    if let Some(r) = &rule_set {
        x = x.with_rules(r);
    }
    let mut findings = findings::run_all(&x);
    let attributions = std::mem::take(&mut x.attributions);
    finish(c, &mut findings);
    let conntrack = ct::matches(c, &x.hops_by_tuple, &snapshots);
    let mut witnesses = ct::witnesses(c, &x.hops_by_tuple, &snapshots, x.snap_times());
    drop(x);
    witnesses.extend(rule_set.iter().map(|r| rules::summary(r, &attributions)));
    Audit {
        by_connection: by_connection(&findings, c.connections.len()),
        findings,
        inside: topo.inside.clone(),
        inside_declared: topo.declared,
        witnesses,
        rules: rule_set,
        attributions,
        conntrack,
    }
}

/// For each of `n` connections, the indices of the findings that name it.
pub fn by_connection(findings: &[Finding], n: usize) -> Vec<Vec<usize>> {
    let mut by_connection = vec![Vec::new(); n];
    for (i, f) in findings.iter().enumerate() {
        for &ci in &f.conns {
            if let Some(v) = by_connection.get_mut(ci) {
                // Findings come in order: a repeat of `ci` in one finding is the last.
                if v.last() != Some(&i) {
                    v.push(i);
                }
            }
        }
    }
    by_connection
}

/// Every rules input as one rule set; the host addresses the captures show when no
/// input gave any.
fn merged_rules(
    c: &Correlation,
    topo: &topology::Topology,
    inputs: Vec<crate::rules::RuleSet>,
) -> Option<crate::rules::RuleSet> {
    let mut inputs = inputs.into_iter();
    let mut m = inputs.next()?;
    for r in inputs {
        m.merge(r);
    }
    if m.addrs.is_empty() {
        m.addrs = rules::learned_addrs(c, topo);
        m.addrs_learned = true;
    }
    Some(m)
}

/// Fills connection ids, sorts and removes exact duplicates.
fn finish(c: &Correlation, findings: &mut Vec<Finding>) {
    for f in findings.iter_mut() {
        // Keep the main connection first, the others in index order.
        if f.conns.len() > 1 {
            let rest: BTreeSet<usize> = f.conns[1..].iter().copied().collect();
            let main = f.conns[0];
            f.conns = std::iter::once(main)
                .chain(rest.into_iter().filter(|&x| x != main))
                .collect();
        }
        f.connections = f
            .conns
            .iter()
            .filter_map(|&i| c.connections.get(i).map(|x| x.id.clone()))
            .collect();
    }
    findings.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()).then_with(|| a.cmp(b)));
    findings.dedup();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_on_parses_severities_and_codes() {
        let f: FailOn = "warning".parse().unwrap();
        assert_eq!(f.severity, Some(Severity::Warning));
        let f: FailOn = "error,port-reallocated".parse().unwrap();
        assert_eq!(f.severity, Some(Severity::Error));
        assert!(f.codes.contains(&Code::PortReallocated));
        let f: FailOn = "lost, leak".parse().unwrap();
        assert_eq!(f.severity, None);
        assert_eq!(f.codes.len(), 2);
        let f: FailOn = "error,info".parse().unwrap();
        assert_eq!(f.severity, Some(Severity::Info));
        assert_eq!("none".parse::<FailOn>().unwrap(), FailOn::default());
        assert!("none,error".parse::<FailOn>().is_err());
        assert!("bogus".parse::<FailOn>().is_err());
        assert!("error,".parse::<FailOn>().is_err());
    }

    #[test]
    fn severities_order_for_fail_on() {
        assert!(Severity::Error > Severity::Warning && Severity::Warning > Severity::Info);
        let on: FailOn = "warning".parse().unwrap();
        let mk = |severity, code| {
            Finding::new(
                code,
                severity,
                Detail::Leak {
                    kind: LeakKind::HostRst,
                    inside_address: None,
                    translated_by: vec![],
                    host_rst: None,
                },
            )
        };
        assert!(on.trips(&mk(Severity::Error, Code::Lost)));
        assert!(on.trips(&mk(Severity::Warning, Code::Lost)));
        assert!(!on.trips(&mk(Severity::Info, Code::PortReallocated)));
        let on: FailOn = "port-reallocated".parse().unwrap();
        assert!(on.trips(&mk(Severity::Info, Code::PortReallocated)));
        assert!(!on.trips(&mk(Severity::Error, Code::Lost)));
    }
}
