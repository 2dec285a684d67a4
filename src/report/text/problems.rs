//! The problems at the top of the table report, one entry per cause, most severe
//! first. Findings of one severity and code with the same advice are one entry: each
//! finding a line or two (its connections, points, time and packets; its message),
//! then once what they share (evidence, what the evidence says of the cause, the
//! advice). A finding alone shows its whole proof. Findings of NAT working as
//! configured ([`Words::expected`]) fold into one line per kind, unless every detail
//! is asked for.

use foldhash::{HashMap, HashMapExt};
use std::fmt::Write as _;

use super::style::Paint;
use crate::audit::{Code, Finding, Severity};
use crate::report::explain::Words;
use crate::report::fmt::{plural, time_range};

/// Connections named on a folded line before `and N more`.
const FOLDED_IDS: usize = 20;

/// Findings of one cause.
struct Entry<'a> {
    severity: Severity,
    code: Code,
    members: Vec<(&'a Finding, &'a Words)>,
}

/// Findings of one expected kind, folded into a line.
struct Fold<'a> {
    severity: Severity,
    what: (&'static str, &'static str),
    connections: Vec<&'a str>,
}

/// The entries and folded lines of `findings` (in the audit's order: most severe
/// first, which the entries and the folded lines keep); `fold`: expected findings
/// fold.
fn gather<'a>(
    findings: impl Iterator<Item = (&'a Finding, &'a Words)>,
    fold: bool,
) -> (Vec<Entry<'a>>, Vec<Fold<'a>>) {
    let mut entries: Vec<Entry> = Vec::new();
    let mut folds: Vec<Fold> = Vec::new();
    let mut entry_of: HashMap<(Severity, Code, &str), usize> = HashMap::new();
    let mut fold_of: HashMap<(Severity, &str), usize> = HashMap::new();
    for (f, w) in findings {
        if let Some(what) = w.expected.filter(|_| fold) {
            let id = f.connections.first().map_or("-", String::as_str);
            let k = *fold_of.entry((f.severity, what.1)).or_insert_with(|| {
                folds.push(Fold {
                    severity: f.severity,
                    what,
                    connections: Vec::new(),
                });
                folds.len() - 1
            });
            folds[k].connections.push(id);
            continue;
        }
        let k = *entry_of
            .entry((f.severity, f.code, w.advice.as_str()))
            .or_insert_with(|| {
                entries.push(Entry {
                    severity: f.severity,
                    code: f.code,
                    members: Vec::new(),
                });
                entries.len() - 1
            });
        entries[k].members.push((f, w));
    }
    (entries, folds)
}

/// `c1,c2  docker0 > eth0  <first packet>  lasted 1.053s  13 packets`: what a finding
/// is about, the parts it has; of a group's connections the first [`FOLDED_IDS`]
/// unless `detail` asks for every one.
fn about(f: &Finding, detail: bool) -> String {
    let mut parts = Vec::new();
    let n = f.connections.len();
    if detail || n <= FOLDED_IDS {
        parts.extend((n > 0).then(|| f.connections.join(",")));
    } else {
        let ids = f.connections[..FOLDED_IDS].join(",");
        parts.push(format!("{ids} and {} more", n - FOLDED_IDS));
    }
    if !f.points.is_empty() {
        parts.push(f.points.join(" > "));
    }
    match time_range(f.first_ns, f.last_ns) {
        Some((a, Some(d))) => parts.extend([a, format!("lasted {d}")]),
        Some((a, None)) => parts.push(a),
        None => {}
    }
    parts.push(plural(f.packets, "packet", "packets"));
    parts.join("  ")
}

/// What every member says, in the first member's order.
fn shared<'a>(members: &[(&Finding, &'a Words)]) -> Vec<&'a str> {
    let (_, first) = members[0];
    first
        .evidence
        .iter()
        .filter(|e| members.iter().all(|(_, w)| w.evidence.contains(e)))
        .map(String::as_str)
        .collect()
}

/// One entry: a finding with its proof, or the findings of one cause.
fn entry(e: &Entry, detail: bool, paint: Paint, out: &mut String) {
    let sev = paint.severity(e.severity);
    if let [(f, w)] = e.members[..] {
        let _ = writeln!(out, "{sev} {}  {}", e.code, about(f, detail));
        let _ = writeln!(out, "    {}", w.message);
        for line in &w.evidence {
            let _ = writeln!(out, "    - {line}");
        }
        if let Some(c) = &w.cause {
            let _ = writeln!(out, "    cause: {c}");
        }
        let _ = writeln!(out, "    check: {}", w.advice);
        return;
    }
    let _ = writeln!(out, "{sev} {}  {} findings", e.code, e.members.len());
    let common = shared(&e.members);
    let causes: Vec<Option<&String>> = e.members.iter().map(|(_, w)| w.cause.as_ref()).collect();
    let one_cause = causes.iter().all(|c| *c == causes[0]);
    for (f, w) in &e.members {
        let _ = writeln!(out, "    {}", about(f, detail));
        let _ = writeln!(out, "        {}", w.message);
        if detail {
            for line in w.evidence.iter().filter(|l| !common.contains(&l.as_str())) {
                let _ = writeln!(out, "        - {line}");
            }
        }
        if let Some(c) = w.cause.as_ref().filter(|_| !one_cause) {
            let _ = writeln!(out, "        cause: {c}");
        }
    }
    for line in &common {
        let _ = writeln!(out, "    - {line}");
    }
    if let Some(c) = causes[0].filter(|_| one_cause) {
        let _ = writeln!(out, "    cause: {c}");
    }
    let _ = writeln!(out, "    check: {}", e.members[0].1.advice);
}

/// `[info] 3 source ports moved to avoid a clash (expected): c2, c4, c6`.
fn folded(x: &Fold, paint: Paint, out: &mut String) {
    let n = x.connections.len();
    let ids = &x.connections[..n.min(FOLDED_IDS)];
    let more = if n > FOLDED_IDS {
        format!(" and {} more (`--detail` lists them)", n - FOLDED_IDS)
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "{} {n} {} (expected): {}{more}",
        paint.severity(x.severity),
        if n == 1 { x.what.0 } else { x.what.1 },
        ids.join(", ")
    );
}

/// Every problem, a blank line before each entry and before the folded lines;
/// `detail`: every finding in full, nothing folded.
pub fn section<'a>(
    findings: impl Iterator<Item = (&'a Finding, &'a Words)>,
    detail: bool,
    paint: Paint,
) -> String {
    let (entries, folds) = gather(findings, !detail);
    let mut out = String::new();
    for e in &entries {
        out.push('\n');
        entry(e, detail, paint, &mut out);
    }
    if !folds.is_empty() {
        out.push('\n');
    }
    for x in &folds {
        folded(x, paint, &mut out);
    }
    out
}
