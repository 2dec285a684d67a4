//! The correlation report as one value, built once per run: what was read, what
//! correlate rebuilt, what the audit found (with each finding's words), what the
//! witnesses contributed, and what decides the exit status. Every renderer reads this
//! and nothing else, so every format tells the same story.

use std::collections::BTreeMap;

use super::explain::{self, Words};
use crate::audit::{Audit, FailOn, Finding, Severity};
use crate::correlate::Correlation;
use crate::diag::{ExitStatus, Warning};

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
        let words = audit.findings.iter().map(explain::words).collect();
        Model {
            correlation,
            audit,
            words,
            warnings,
            fail_on,
            bundles: Vec::new(),
        }
    }

    /// Each finding with its words.
    pub fn findings(&self) -> impl Iterator<Item = (&Finding, &Words)> {
        self.audit.findings.iter().zip(&self.words)
    }

    /// The findings of connection `i`, with their words.
    pub fn findings_of(&self, i: usize) -> impl Iterator<Item = (&Finding, &Words)> {
        self.audit
            .by_connection
            .get(i)
            .into_iter()
            .flatten()
            .map(|&f| (&self.audit.findings[f], &self.words[f]))
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
