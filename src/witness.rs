//! Witnesses: what the host itself says about its NAT, independent of the captures.
//! One kind of input with one variant per source: conntrack now (tables and event
//! logs, as text or read over netlink); rule sets next. The audit checks each against
//! the wire and reports, for every input, one summary in every format.

use crate::conntrack::{self, Dump};
use crate::diag::Warning;
use crate::rules::RuleSet;

/// One witness input, read.
#[derive(Clone, Debug)]
pub enum Witness {
    /// A conntrack table, event log or statistics, in any text form.
    Conntrack(Dump),
    /// A rule set: iptables-save, iptables -S, iptables -L, nft list ruleset, nft -j,
    /// ipset save or ip addr output.
    Rules(RuleSet),
}

impl Witness {
    /// Reads a conntrack file (`-` for standard input, `.gz` decompressed).
    pub fn read_conntrack(path: &str) -> anyhow::Result<Witness> {
        conntrack::read_path(path).map(Witness::Conntrack)
    }

    /// The input as given on the command line.
    pub fn source(&self) -> &str {
        match self {
            Witness::Conntrack(d) => &d.source,
            Witness::Rules(r) => &r.source,
        }
    }

    /// Problems met while reading it (the rest of the input is still used).
    pub fn warnings(&self) -> &[Warning] {
        match self {
            Witness::Conntrack(d) => &d.warnings,
            Witness::Rules(r) => &r.warnings,
        }
    }
}
