//! What the Markdown and HTML reports both show, in the same words, as text that each
//! format marks up its own way ([`Markup`]): the headline, the sentences about the
//! inputs, and the tables (as [`Grid`]s of text, code and connection ids).

use super::fmt::{
    clock, conn_tuple, path_label, plural, rfc3339_ns, secs, short, time_range, tuple_proto,
};
use super::text::{kind_label, summary_line};
use super::Model;
use crate::audit::{Audit, Finding, Severity, WitnessKind};
use crate::correlate::Correlation;

/// How a format writes inline text.
pub trait Markup {
    /// Free text, escaped.
    fn text(&self, s: &str) -> String;
    /// Code: an address, a command, a file name.
    fn code(&self, s: &str) -> String;
    /// Emphasised text.
    fn strong(&self, s: &str) -> String;
    /// Connection ids (`c1`), comma-separated: links where the format has them.
    fn ids(&self, ids: &[String]) -> String;
}

/// A table cell.
pub enum Cell {
    Text(String),
    Code(String),
    /// Connection ids (`c1`), comma-separated: links where the format has them.
    Ids(Vec<String>),
}

impl Cell {
    /// Text, or `-` when empty.
    fn or_dash(s: String) -> Cell {
        Cell::Text(if s.is_empty() { "-".into() } else { s })
    }
}

/// A table: its headers and its rows.
pub struct Grid {
    pub headers: &'static [&'static str],
    pub rows: Vec<Vec<Cell>>,
}

/// A table cell, marked up.
pub fn cell(c: &Cell, mk: &dyn Markup) -> String {
    match c {
        Cell::Text(s) => mk.text(s),
        Cell::Code(s) => mk.code(s),
        Cell::Ids(v) => mk.ids(v),
    }
}

/// `No findings.`, or the count of each severity: `1 error, 2 warnings, 0 info
/// findings.` (errors and warnings emphasised).
pub fn headline(m: &Model, mk: &dyn Markup) -> String {
    if m.audit.findings.is_empty() {
        return "No findings.".into();
    }
    let count = |s: Severity| m.count(s);
    format!(
        "{}, {}, {}.",
        mk.strong(&plural(count(Severity::Error) as u64, "error", "errors")),
        mk.strong(&plural(
            count(Severity::Warning) as u64,
            "warning",
            "warnings"
        )),
        mk.text(&plural(
            count(Severity::Info) as u64,
            "info finding",
            "info findings"
        ))
    )
}

/// What `--filter` kept, when it cut the report.
pub fn selection(m: &Model, mk: &dyn Markup) -> Option<String> {
    let s = m.selection.as_ref()?;
    Some(format!("{}.", mk.text(&s.line())))
}

/// The counts of points and connections, by translation.
pub fn summary(m: &Model, mk: &dyn Markup) -> String {
    format!("{}.", mk.text(&summary_line(&m.correlation)))
}

/// `Exit status 1 (--fail-on error; 2 warnings about the inputs, see below).`
pub fn exit_status(m: &Model, mk: &dyn Markup) -> String {
    let warnings = &m.warnings;
    format!(
        "Exit status {} ({}{}).",
        m.exit_status() as u8,
        mk.code(&format!("--fail-on {}", m.fail_on_text())),
        if warnings.is_empty() {
            String::new()
        } else {
            format!(
                "; {} about the inputs, see below",
                plural(warnings.len() as u64, "warning", "warnings")
            )
        }
    )
}

/// What the times of the report are, and the matching window.
pub fn clock_note(c: &Correlation, mk: &dyn Markup) -> String {
    mk.text(&format!(
        "Times are as captured here and clock-corrected everywhere else (corrected = captured − offset). Matching window: {}.",
        short(c.config.window_ns)
    ))
}

/// The inside prefixes and where they come from.
pub fn inside_prefixes(audit: &Audit, mk: &dyn Markup) -> String {
    let prefixes: Vec<String> = audit
        .inside
        .iter()
        .map(|p| mk.code(&p.to_string()))
        .collect();
    let inside = mk.code("--inside");
    format!(
        "Inside prefixes: {} ({}).",
        if prefixes.is_empty() {
            "none known".to_string()
        } else {
            prefixes.join(", ")
        },
        if audit.inside_declared {
            format!("declared with {inside}, plus translated addresses")
        } else {
            format!("learned from the translations on the wire; declare them with {inside}")
        }
    )
}

/// The facts listed under a finding's heading: (label, value).
pub fn finding_facts(f: &Finding, mk: &dyn Markup) -> [(&'static str, String); 4] {
    [
        (
            "Connections",
            if f.connections.is_empty() {
                "-".into()
            } else {
                mk.ids(&f.connections)
            },
        ),
        ("Points", mk.text(&f.points.join(" → "))),
        ("Time", when(f)),
        ("Packets", f.packets.to_string()),
    ]
}

/// A finding's tuples as the packets travelled, one line each: `before at docker0:
/// tcp 172.17.0.3:40000 -> 203.0.113.2:7000`.
pub fn finding_tuples(f: &Finding, mk: &dyn Markup) -> Vec<String> {
    f.tuples
        .iter()
        .map(|t| {
            format!(
                "{} at {}: {}",
                t.role,
                mk.text(&t.point),
                mk.code(&tuple_proto(&t.tuple))
            )
        })
        .collect()
}

/// When a finding happened: its start, and how long it lasted.
pub fn when(f: &Finding) -> String {
    match time_range(f.first_ns, f.last_ns) {
        Some((a, Some(d))) => format!("{a} (+{d})"),
        Some((a, None)) => a,
        None => "-".into(),
    }
}

/// The capture points with their time ranges and clocks.
pub fn points(c: &Correlation) -> Grid {
    let rows = c
        .points
        .iter()
        .enumerate()
        .map(|(i, p)| {
            vec![
                Cell::Text(p.name.clone()),
                Cell::Code(p.source.clone()),
                Cell::Text(p.linktype.clone()),
                Cell::Text(p.packets.to_string()),
                Cell::Text(p.flows.to_string()),
                Cell::Text(p.first_ns.map(rfc3339_ns).unwrap_or_else(|| "-".into())),
                Cell::Text(p.last_ns.map(rfc3339_ns).unwrap_or_else(|| "-".into())),
                Cell::Text(match (p.first_ns, p.last_ns) {
                    (Some(a), Some(b)) => secs(b - a),
                    _ => "-".into(),
                }),
                Cell::Text(clock(c, i)),
            ]
        })
        .collect();
    Grid {
        headers: &[
            "point",
            "source",
            "link type",
            "packets",
            "flows",
            "first packet",
            "last packet",
            "span",
            "clock offset",
        ],
        rows,
    }
}

/// What each witness contributed: the conntrack inputs, then the rule set (each
/// table only when there are such inputs).
pub fn witnesses(audit: &Audit) -> Vec<Grid> {
    let (rule_inputs, ct_inputs): (Vec<_>, Vec<_>) = audit
        .witnesses
        .iter()
        .partition(|w| w.kind == WitnessKind::Rules);
    let mut out = Vec::new();
    if !ct_inputs.is_empty() {
        let rows = ct_inputs
            .iter()
            .map(|w| {
                vec![
                    Cell::Code(w.source.clone()),
                    Cell::Text(w.kind.as_str().to_string()),
                    Cell::Text(w.entries.to_string()),
                    Cell::Text(w.on_wire.to_string()),
                    Cell::Text(w.agree.to_string()),
                    Cell::Text(match w.time_ns {
                        None => "-".into(),
                        Some(t) if w.time_recorded => rfc3339_ns(t),
                        Some(t) => format!("{} (estimated)", rfc3339_ns(t)),
                    }),
                ]
            })
            .collect();
        out.push(Grid {
            headers: &[
                "conntrack input",
                "kind",
                "entries",
                "on the wire",
                "agree with the wire",
                "snapshot time",
            ],
            rows,
        });
    }
    if !rule_inputs.is_empty() {
        let rows = rule_inputs
            .iter()
            .map(|w| {
                vec![
                    Cell::Code(w.source.clone()),
                    Cell::Text(w.entries.to_string()),
                    Cell::Text(w.on_wire.to_string()),
                    Cell::Text(w.agree.to_string()),
                ]
            })
            .collect();
        out.push(Grid {
            headers: &[
                "rules input",
                "rules",
                "connections walked through them",
                "agree with the wire",
            ],
            rows,
        });
    }
    out
}

/// One row per finding.
pub fn findings(m: &Model) -> Grid {
    let rows = m
        .findings()
        .enumerate()
        .map(|(i, (f, w))| {
            vec![
                Cell::Text((i + 1).to_string()),
                Cell::Text(f.severity.to_string()),
                Cell::Code(f.code.as_str().to_string()),
                Cell::Ids(f.connections.clone()),
                Cell::Text(f.points.join(" → ")),
                Cell::Text(f.first_ns.map(rfc3339_ns).unwrap_or_else(|| "-".into())),
                Cell::Text(f.packets.to_string()),
                Cell::Text(w.message.clone()),
            ]
        })
        .collect();
    Grid {
        headers: &[
            "#",
            "severity",
            "code",
            "connections",
            "points",
            "first",
            "packets",
            "what",
        ],
        rows,
    }
}

/// One row per connection: its path, translation, first and last tuple, findings.
pub fn connections(m: &Model) -> Grid {
    Grid {
        headers: CONNECTION_HEADERS,
        rows: (0..m.correlation.connections.len())
            .map(|i| connection_row(m, i))
            .collect(),
    }
}

/// The columns of [`connections`].
pub const CONNECTION_HEADERS: &[&str] = &[
    "id",
    "proto",
    "path",
    "nat",
    "first hop",
    "last hop",
    "findings",
];

/// Connection `i`'s row of [`connections`].
pub fn connection_row(m: &Model, i: usize) -> Vec<Cell> {
    let c = &m.correlation;
    let conn = &c.connections[i];
    let first = &conn.hops[0].flow.tuple;
    let last = &conn.hops[conn.hops.len() - 1].flow.tuple;
    let codes: Vec<String> = m
        .audit
        .of_connection(i)
        .map(|f| format!("{} {}", f.severity, f.code))
        .collect();
    vec![
        Cell::Ids(vec![conn.id.clone()]),
        Cell::Text(conn.proto.to_string()),
        Cell::Text(path_label(c, conn, " → ")),
        Cell::Text(kind_label(conn)),
        Cell::Code(conn_tuple(conn, first)),
        if conn.hops.len() > 1 {
            Cell::Code(conn_tuple(conn, last))
        } else {
            Cell::Text("-".into())
        },
        Cell::or_dash(codes.join(", ")),
    ]
}
