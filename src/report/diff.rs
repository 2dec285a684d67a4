//! The words of `natcheck diff`: what changed from a baseline report to a current one,
//! as a table for terminals and tickets, JSON (`natcheck.diff/1`) for scripts, and
//! Markdown for a postmortem's before/after section.

use std::io::{self, Write};

use serde::Serialize;

use crate::diff::{ConnRef, Diff, FindingChange, Hop, TranslationChange};
use crate::model::{Proto, Tuple};

/// The two reports compared, as named on the command line.
pub struct Inputs<'a> {
    pub baseline: &'a str,
    pub current: &'a str,
}

/// A tuple as the correlation report writes it (ICMP echo: `addr id=N -> addr`).
fn hop(proto: &str, h: &Hop) -> String {
    let t = Tuple {
        proto: Proto::from_name(proto).unwrap_or(Proto::Other(0)),
        src: h.src,
        sport: h.sport.unwrap_or(0),
        dst: h.dst,
        dport: h.dport.unwrap_or(0),
    };
    super::fmt::tuple(&t)
}

/// `c3 tcp docker0 > eth0 172.17.0.2:40000 -> 198.51.100.20:80`.
fn conn(c: &ConnRef) -> String {
    format!(
        "{} {} {} {}",
        c.id,
        c.proto,
        c.path.join(" > "),
        hop(&c.proto, &c.first)
    )
}

fn plural(n: usize) -> String {
    super::fmt::plural(n as u64, "connection", "connections")
}

fn counts(d: &Diff) -> [(&'static str, usize, usize, usize); 2] {
    [
        (
            "findings",
            d.new_findings.len(),
            d.gone_findings.len(),
            d.changed_findings.len(),
        ),
        (
            "translations",
            d.new_translations.len(),
            d.gone_translations.len(),
            d.changed_translations.len(),
        ),
    ]
}

fn heading(d: &Diff, names: &Inputs) -> String {
    let mut s = format!(
        "{} -> {}: {} matched ({} by the same packets, {} by endpoints)",
        names.baseline,
        names.current,
        plural(d.matched_exactly + d.matched_by_endpoints),
        d.matched_exactly,
        d.matched_by_endpoints
    );
    for (what, new, gone, changed) in counts(d) {
        s.push_str(&format!(
            "\n{what}: {new} new, {gone} gone, {changed} changed"
        ));
    }
    if d.is_empty() {
        s.push_str("\nno difference");
    }
    s
}

fn finding_line(mark: char, f: &FindingChange) -> String {
    let sev = match &f.severity_before {
        Some(b) => format!("{b} -> {}", f.severity),
        None => f.severity.clone(),
    };
    let mut s = format!("{mark} [{sev}] {}", f.code);
    if !f.points.is_empty() {
        s.push_str(&format!("  {}", f.points.join(" > ")));
    }
    if !f.message.is_empty() {
        s.push_str(&format!("\n    {}", f.message));
    }
    for c in &f.connections {
        s.push_str(&format!("\n    {}", conn(c)));
    }
    s
}

fn translation_line(mark: char, t: &TranslationChange) -> String {
    let mut s = String::from(mark);
    match (&t.baseline, &t.current) {
        (Some(b), Some(c)) => s.push_str(&format!(" {} (was {})", conn(c), b.id)),
        (Some(x), None) | (None, Some(x)) => s.push_str(&format!(" {}", conn(x))),
        (None, None) => {}
    }
    let links = |n: &Option<crate::diff::Nat>| {
        n.as_ref().map_or_else(String::new, |n| {
            let nat = if n.links.is_empty() {
                "no translation".to_string()
            } else {
                n.links.join("; ")
            };
            format!("{}: {nat}", n.path.join(" > "))
        })
    };
    match (&t.before, &t.after) {
        (Some(_), Some(_)) => {
            s.push_str(&format!("\n    before: {}", links(&t.before)));
            s.push_str(&format!("\n    after:  {}", links(&t.after)));
        }
        (Some(_), None) => s.push_str(&format!("\n    {}", links(&t.before))),
        (None, Some(_)) => s.push_str(&format!("\n    {}", links(&t.after))),
        (None, None) => {}
    }
    s
}

/// Every change, one block each: `+` new, `-` gone, `~` changed.
fn entries(d: &Diff) -> Vec<String> {
    let mut out = Vec::new();
    out.extend(d.new_findings.iter().map(|f| finding_line('+', f)));
    out.extend(d.changed_findings.iter().map(|f| finding_line('~', f)));
    out.extend(d.gone_findings.iter().map(|f| finding_line('-', f)));
    out.extend(d.new_translations.iter().map(|t| translation_line('+', t)));
    out.extend(
        d.changed_translations
            .iter()
            .map(|t| translation_line('~', t)),
    );
    out.extend(d.gone_translations.iter().map(|t| translation_line('-', t)));
    out
}

/// The terminal form.
pub fn table(d: &Diff, names: &Inputs, out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, "{}", heading(d, names))?;
    for e in entries(d) {
        writeln!(out, "\n{e}")?;
    }
    Ok(())
}

/// Markdown for a postmortem: the counts as a table, then each change.
pub fn markdown(d: &Diff, names: &Inputs, out: &mut dyn Write) -> io::Result<()> {
    writeln!(
        out,
        "## Changes from `{}` to `{}`\n",
        names.baseline, names.current
    )?;
    writeln!(out, "| | new | gone | changed |\n|---|---|---|---|")?;
    for (what, new, gone, changed) in counts(d) {
        writeln!(out, "| {what} | {new} | {gone} | {changed} |")?;
    }
    writeln!(
        out,
        "\n{} matched: {} by the same packets (Community ID and tuple at every hop), {} by endpoints.",
        plural(d.matched_exactly + d.matched_by_endpoints),
        d.matched_exactly,
        d.matched_by_endpoints
    )?;
    let e = entries(d);
    if e.is_empty() {
        writeln!(out, "\nNo difference.")?;
    } else {
        writeln!(out, "\n```text\n{}\n```", e.join("\n\n"))?;
    }
    Ok(())
}

#[derive(Serialize)]
struct Document<'a> {
    schema: &'static str,
    baseline: &'a str,
    current: &'a str,
    #[serde(flatten)]
    diff: &'a Diff,
}

/// `natcheck.diff/1`: the inputs, then the `Diff` fields (docs/json-schema.md).
pub fn json(d: &Diff, names: &Inputs, out: &mut dyn Write) -> io::Result<()> {
    let doc = Document {
        schema: "natcheck.diff/1",
        baseline: names.baseline,
        current: names.current,
        diff: d,
    };
    serde_json::to_writer_pretty(&mut *out, &doc)?;
    writeln!(out)
}
