//! The table report (`--format table`, the default), made to be read in a terminal
//! and pasted into tickets, in the order a reader needs it: the verdict first (the
//! findings counted, the inputs that were witnesses, then one entry per problem, most
//! severe first: `problems.rs`); then the capture points, the connections by path and
//! one line per connection (`tables.rs`); each connection hop by hop and packet by
//! packet only on request (`--detail`, `--connection`: `connection.rs`). Colour only
//! where [`View::colour`] says (`style.rs`).

mod connection;
mod problems;
mod style;
mod tables;

use std::fmt::Write as _;
use std::io::Write;

pub use connection::{connection_block, finding_lines, kind_label};
#[cfg(feature = "frames")]
pub use tables::by_path_table;
pub use tables::{bundle_line, summary_line, witness_line};

use super::{Model, Render};
use crate::audit::{Severity, WitnessKind};
use crate::correlate::{Cap, Trace};
use style::Paint;

/// Packets shown per connection under a single `--detail`.
pub const PACKETS_SHOWN: usize = 20;

/// How much of the table report to show, and how.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct View {
    /// Every connection in detail: at 1 with its first [`PACKETS_SHOWN`] packets, at 2
    /// with every packet; every finding in full.
    pub detail: u8,
    /// These connections (ids) in detail, with every packet.
    pub connections: Vec<String>,
    /// Colour severities and what NAT changed (ANSI escapes).
    pub colour: bool,
    /// The terminal's width: lines of the overview longer than this wrap, and tables
    /// wider than it are stacked. `None`: no limit (a file, a pipe).
    pub width: Option<usize>,
}

impl View {
    /// The connections the correlation must keep packet by packet for this view.
    pub fn trace(&self) -> Trace {
        Trace {
            all: self.detail > 0,
            cap: (self.detail < 2).then_some(Cap {
                first: PACKETS_SHOWN,
                last: 0,
            }),
            named: self.connections.iter().cloned().collect(),
        }
    }

    /// The indices of the connections shown in detail, in report order; an id that
    /// names no connection is an error that says which exist.
    fn detailed(&self, m: &Model) -> anyhow::Result<Vec<usize>> {
        let conns = &m.correlation.connections;
        if let Some(bad) = self
            .connections
            .iter()
            .find(|id| !conns.iter().any(|c| &c.id == *id))
        {
            let ids: Vec<&str> = conns.iter().map(|c| c.id.as_str()).collect();
            let have = match ids.as_slice() {
                [] => "none".to_string(),
                [one] => one.to_string(),
                [first, .., last] if (1..=ids.len()).all(|n| ids[n - 1] == format!("c{n}")) => {
                    format!("{first} to {last}")
                }
                _ => ids.join(", "),
            };
            anyhow::bail!("--connection {bad}: no such connection (the connections are {have})");
        }
        Ok((0..conns.len())
            .filter(|&i| self.detail > 0 || self.connections.contains(&conns[i].id))
            .collect())
    }
}

/// `--format table`.
pub struct Text(pub View);

impl Text {
    /// The counts, the bundles and the witnesses.
    fn head(m: &Model) -> String {
        let mut out = String::new();
        let (e, w) = (m.count(Severity::Error), m.count(Severity::Warning));
        let _ = writeln!(
            out,
            "findings: {e} error{}, {w} warning{}, {} info",
            if e == 1 { "" } else { "s" },
            if w == 1 { "" } else { "s" },
            m.count(Severity::Info)
        );
        for b in &m.bundles {
            let _ = writeln!(out, "bundle: {}", bundle_line(b, true));
        }
        for w in &m.audit.witnesses {
            match w.kind {
                WitnessKind::Rules => {
                    let _ = writeln!(out, "rules: {}", super::rules::witness_line(w));
                }
                _ => {
                    let _ = writeln!(out, "conntrack: {}", witness_line(w));
                }
            }
        }
        out
    }

    /// The headline counts, the points and the connections by path; then
    /// [`tables::connections_table`], one line per connection.
    fn overview(m: &Model, width: Option<usize>) -> String {
        let c = &m.correlation;
        let mut out = String::new();
        let _ = writeln!(out, "{}\n", summary_line(c));
        out.push_str(&tables::points_table(c).render_within("", width));
        out.push('\n');
        #[cfg(feature = "frames")]
        {
            let findings: Vec<u32> = (0..c.connections.len())
                .map(|i| m.findings_of(i).count() as u32)
                .collect();
            if let Some(t) = tables::by_path_table(c, &findings) {
                out.push_str(&t.render_within("", width));
                out.push('\n');
            }
        }
        out
    }
}

impl Render for Text {
    fn render(&self, m: &Model, out: &mut dyn Write) -> anyhow::Result<()> {
        let view = &self.0;
        let detailed = view.detailed(m)?;
        let paint = Paint { on: view.colour };
        let mut text = Self::head(m);
        text.push_str(&problems::section(m.findings(), view.detail > 0, paint));
        if !m.correlation.connections.is_empty() || !m.audit.findings.is_empty() {
            text.push('\n');
        }
        text.push_str(&Self::overview(m, view.width));
        let connections = tables::connections_table(&m.correlation, paint);
        match view.width {
            Some(w) => {
                text.push_str(&connections.render_within("", Some(w)));
                text = super::table::wrap(&text, w);
            }
            // No width to fit (a file, a pipe): the line per connection goes out as
            // it is made, not copied into the report's text first.
            None => {
                out.write_all(text.as_bytes())?;
                text.clear();
                connections.write("", out)?;
            }
        }
        drop(connections);
        // Each connection in detail (never wrapped), made on every core and written a
        // run at a time.
        out.write_all(text.as_bytes())?;
        text.clear();
        super::in_runs(detailed.len(), out, |k, s| {
            s.push('\n');
            s.push_str(&connection::detail(m, detailed[k], paint));
        })?;
        if detailed.is_empty() && !m.correlation.connections.is_empty() {
            text.push_str(
                "\nEach connection hop by hop and packet by packet: --detail, or --connection ID.\n",
            );
        }
        out.write_all(text.as_bytes())?;
        Ok(())
    }
}
