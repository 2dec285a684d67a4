//! The correlation report as one value, built once per run: what was read, what
//! correlate rebuilt, what the audit found (with each finding's words), what the
//! witnesses contributed, and what decides the exit status. Every renderer reads this
//! and nothing else, so every format tells the same story.

use std::collections::BTreeMap;

use rayon::prelude::*;

use super::explain::{self, Words};
use crate::audit::{Audit, FailOn, Finding, Severity};
use crate::correlate::Correlation;
use crate::diag::{ExitStatus, Warning};
use crate::filter::Filter;

pub struct Model {
    pub correlation: Correlation,
    pub audit: Audit,
    /// The words of each finding, in the audit's order.
    pub words: Vec<Words>,
    /// Every input's warnings: captures first, then witnesses, in input order.
    pub warnings: Vec<Warning>,
    /// `--fail-on`: the findings that make the run exit 1.
    pub fail_on: FailOn,
    /// The evidence bundles the inputs came from (`natcheck collect`).
    pub bundles: Vec<crate::bundle::Summary>,
    /// `--filter`: the expression and how many connections it kept.
    pub selection: Option<Selection>,
}

/// What `--filter` kept of the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    /// The expression as given.
    pub expression: String,
    /// Connections it kept, of `total`.
    pub kept: usize,
    pub total: usize,
}

impl Selection {
    /// `filter `host 10.88.0.3`: 1 of 12 connections kept, and the findings about them`.
    pub fn line(&self) -> String {
        format!(
            "filter `{}`: {} of {} connections kept, and the findings about them",
            self.expression, self.kept, self.total
        )
    }
}

impl Model {
    pub fn new(
        correlation: Correlation,
        audit: Audit,
        witness_warnings: Vec<Warning>,
        fail_on: FailOn,
    ) -> Model {
        let warnings = correlation
            .inputs
            .iter()
            .flat_map(|i| i.warnings.iter().cloned())
            .chain(witness_warnings)
            .collect();
        // Each finding's text is its own: written on every core, kept in order.
        let words = audit.findings.par_iter().map(explain::words).collect();
        Model {
            correlation,
            audit,
            words,
            warnings,
            fail_on,
            bundles: Vec::new(),
            selection: None,
        }
    }

    /// Keeps the connections `filter` matches at any hop (by their inside or their
    /// outside tuple alike) and the findings about them: those naming a kept
    /// connection, and those naming none whose tuples match (conntrack entries seen
    /// on no wire). Connection ids stay those of the whole run, so a filtered report
    /// and a whole one name a connection alike; the exit status follows the findings
    /// kept.
    pub fn select(&mut self, filter: &Filter) {
        let conns = std::mem::take(&mut self.correlation.connections);
        let total = conns.len();
        let mut index = vec![None; total];
        for (i, c) in conns.into_iter().enumerate() {
            if filter.matches_any(c.all_hops().map(|h| &h.flow.tuple)) {
                index[i] = Some(self.correlation.connections.len());
                self.correlation.connections.push(c);
            }
        }
        let new = |i: usize| index.get(i).copied().flatten();
        let audit = &mut self.audit;
        let findings = std::mem::take(&mut audit.findings);
        let words = std::mem::take(&mut self.words);
        for (mut f, w) in findings.into_iter().zip(words) {
            let keep = if f.conns.is_empty() {
                filter.matches_any(f.tuples.iter().map(|s| &s.tuple))
            } else {
                f.conns.iter().any(|&i| new(i).is_some())
            };
            if keep {
                f.conns = f.conns.iter().filter_map(|&i| new(i)).collect();
                audit.findings.push(f);
                self.words.push(w);
            }
        }
        let kept = self.correlation.connections.len();
        audit.by_connection = crate::audit::by_connection(&audit.findings, kept);
        renumber(&mut audit.attributions, &new, |a| &mut a.conn);
        renumber(&mut audit.conntrack, &new, |m| &mut m.conn);
        self.selection = Some(Selection {
            expression: filter.text().to_string(),
            kept,
            total,
        });
    }

    /// Each finding with its words.
    pub fn findings(&self) -> impl Iterator<Item = (&Finding, &Words)> {
        self.audit.findings.iter().zip(&self.words)
    }

    /// The positions in [`Model::findings`] of connection `i`'s findings, ascending.
    pub fn finding_indices(&self, i: usize) -> &[usize] {
        self.audit.by_connection.get(i).map_or(&[], Vec::as_slice)
    }

    /// The findings of connection `i`, with their words.
    pub fn findings_of(&self, i: usize) -> impl Iterator<Item = (&Finding, &Words)> {
        (self.finding_indices(i).iter()).map(|&f| (&self.audit.findings[f], &self.words[f]))
    }

    /// Connection `i`'s way through the host's rules, when rules were given and it was
    /// walked.
    pub fn attribution(&self, i: usize) -> Option<&crate::audit::rules::Attribution> {
        let a = &self.audit.attributions;
        a.binary_search_by_key(&i, |x| x.conn).ok().map(|k| &a[k])
    }

    /// Connection `i`'s entry in a conntrack table, when one holds it.
    pub fn conntrack_entry(&self, i: usize) -> Option<&crate::audit::ct::CtMatch> {
        let m = &self.audit.conntrack;
        m.binary_search_by_key(&i, |x| x.conn).ok().map(|k| &m[k])
    }

    /// The state a TCP hop of connection `i` reached: what its flags say, except where
    /// a `leak` finding shows the RST at that point was the NAT host's own.
    pub fn tcp_state(&self, i: usize, h: &crate::correlate::Hop) -> Option<&'static str> {
        use crate::audit::{Code, Detail, LeakKind};
        let f = &h.flow;
        if f.tuple.proto != crate::model::Proto::Tcp {
            return None;
        }
        let point = &self.correlation.points[h.point].name;
        let forged = self.findings_of(i).any(|(x, _)| {
            x.code == Code::Leak
                && matches!(
                    x.detail,
                    Detail::Leak {
                        kind: LeakKind::HostRst,
                        ..
                    }
                )
                && x.points.first() == Some(point)
        });
        Some(if forged {
            crate::flows::TcpState::ResetByNatHost.as_str()
        } else {
            f.tcp.state().as_str()
        })
    }

    /// How many findings of each severity (every severity present).
    pub fn count(&self, s: Severity) -> usize {
        self.audit.severities().get(&s).copied().unwrap_or(0)
    }

    /// Count per severity name, for the JSON summary.
    pub fn severities(&self) -> BTreeMap<String, usize> {
        self.audit
            .severities()
            .into_iter()
            .map(|(s, n)| (s.as_str().to_string(), n))
            .collect()
    }

    /// 2 when an input had problems (the evidence is incomplete), else 1 when a finding
    /// trips `--fail-on`, else 0.
    pub fn exit_status(&self) -> ExitStatus {
        if !self.warnings.is_empty() {
            ExitStatus::Error
        } else if self.audit.fails(&self.fail_on) {
            ExitStatus::Findings
        } else {
            ExitStatus::Clean
        }
    }

    /// `--fail-on` as the user would write it.
    pub fn fail_on_text(&self) -> String {
        let f = &self.fail_on;
        let mut parts: Vec<String> = f.severity.iter().map(|s| s.to_string()).collect();
        parts.extend(f.codes.iter().map(|c| c.to_string()));
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(",")
        }
    }
}

/// Keeps the items of `v` whose connection (`conn`) has a `new` number, renumbered.
fn renumber<T>(
    v: &mut Vec<T>,
    new: &impl Fn(usize) -> Option<usize>,
    conn: fn(&mut T) -> &mut usize,
) {
    v.retain_mut(|x| match new(*conn(x)) {
        Some(i) => {
            *conn(x) = i;
            true
        }
        None => false,
    });
}
