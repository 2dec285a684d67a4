//! The library entry point: one call from inputs to the report model, the way the
//! `correlate` command, the tests and the benchmarks run natcheck.
//! capture → decode → flows → correlate → audit (with the witnesses) → report model
//! (cut to the connections `--filter` selects).

use std::collections::BTreeMap;

use crate::audit::{self, FailOn};
use crate::capture::{InputSpec, ReadOptions};
use crate::correlate;
use crate::diag::Warning;
use crate::filter::Filter;
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
    /// When conntrack tables among `witnesses` were taken (nanoseconds since the
    /// epoch, on the captures' clock), by path: a bundle's manifest says.
    pub conntrack_times: BTreeMap<String, i64>,
    /// The bundles the inputs came from, for the report.
    pub bundles: Vec<crate::bundle::Summary>,
    /// What reading the bundles found wrong (files changed, kernel drops).
    pub bundle_warnings: Vec<Warning>,
    /// `--filter`: the connections the report keeps, with the findings about them.
    /// The audit sees every connection (a port collision needs both sides).
    pub filter: Option<Filter>,
}

/// Reads the witnesses, then the captures, correlates, audits, and builds the model.
/// A witness that cannot be opened fails the run before any capture is read; problems
/// inside inputs are warnings in the model. The rules are read first and parsed on a
/// core of their own beside the correlation.
pub fn run(cfg: &Config) -> anyhow::Result<Model> {
    let mut witnesses = cfg
        .witnesses
        .iter()
        .map(|f| {
            let mut w = Witness::read_conntrack(f)?;
            if let (Witness::Conntrack(d), Some(&t)) = (&mut w, cfg.conntrack_times.get(f)) {
                d.time_ns = Some(t);
            }
            Ok(w)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let rules = if cfg.rules.is_empty() {
        None
    } else {
        Some(crate::rules::read_texts(&cfg.rules, &cfg.rules_before)?)
    };
    // The host's conntrack timeouts, when its settings are among the inputs, decide
    // when a quiet UDP or ICMP tuple is a new connection.
    let read = ReadOptions {
        timeouts: crate::conntrack::Dump::timeouts(witnesses.iter().filter_map(|w| match w {
            Witness::Conntrack(d) => Some(d),
            Witness::Rules(_) => None,
        })),
        ..cfg.read.clone()
    };
    // Parsing is one thread's work, and the correlation leaves a core idle between its
    // parallel stages.
    let (c, parsed) = rayon::join(
        || correlate::run(&cfg.captures, &read, cfg.correlate.clone()),
        || rules.map(|texts| texts.parse()),
    );
    if let Some(set) = parsed {
        witnesses.push(Witness::Rules(set));
    }
    let warnings = cfg
        .bundle_warnings
        .iter()
        .cloned()
        .chain(witnesses.iter().flat_map(|w| w.warnings().iter().cloned()))
        .collect();
    let found = audit::audit(&c, &cfg.audit, witnesses);
    crate::mem::step("audit");
    let mut model = Model::new(c, found, warnings, cfg.fail_on.clone());
    model.bundles = cfg.bundles.clone();
    if let Some(f) = &cfg.filter {
        model.select(f);
    }
    crate::mem::step("model");
    Ok(model)
}
