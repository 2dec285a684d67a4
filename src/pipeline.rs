//! The library entry point: one call from inputs to the report model, the way the
//! `correlate` command, the tests and the benchmarks run natcheck.
//! capture → decode → flows → correlate → audit (with the witnesses) → report model.

use crate::audit::{self, FailOn};
use crate::capture::{InputSpec, ReadOptions};
use crate::correlate;
use crate::report::Model;
use crate::witness::Witness;

/// Everything a run needs, validated.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// The captures, each one or more capture points.
    pub captures: Vec<InputSpec>,
    pub read: ReadOptions,
    pub correlate: correlate::Config,
    pub audit: audit::Config,
    /// conntrack inputs, in the order given.
    pub witnesses: Vec<String>,
    /// Rules inputs (iptables-save, nft list ruleset, nft -j, ipset save, ip addr), read
    /// as one rule set.
    pub rules: Vec<String>,
    /// An earlier dump of the same rules, for counter deltas.
    pub rules_before: Vec<String>,
    /// The findings that make the run exit 1.
    pub fail_on: FailOn,
}

/// Reads the witnesses, then the captures, correlates, audits, and builds the model.
/// A witness that cannot be opened fails the run before any capture is read; problems
/// inside inputs are warnings in the model.
pub fn run(cfg: &Config) -> anyhow::Result<Model> {
    let mut witnesses = cfg
        .witnesses
        .iter()
        .map(|f| Witness::read_conntrack(f))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if !cfg.rules.is_empty() {
        let rules = crate::rules::read_all(&cfg.rules, &cfg.rules_before)?;
        witnesses.push(Witness::Rules(rules));
    }
    let c = correlate::run(&cfg.captures, &cfg.read, cfg.correlate);
    let warnings = witnesses
        .iter()
        .flat_map(|w| w.warnings().iter().cloned())
        .collect();
    let found = audit::audit(&c, &cfg.audit, witnesses);
    Ok(Model::new(c, found, warnings, cfg.fail_on.clone()))
}
