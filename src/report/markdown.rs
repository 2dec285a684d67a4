//! The Markdown report (`--format markdown`), made to be pasted as-is into an incident
//! ticket (GitHub, GitLab, or anything that renders CommonMark with GFM tables): a
//! summary, the inputs with their time ranges and clock offsets, every finding with
//! its evidence and what to check next, then the per-connection table and, folded,
//! the per-connection detail of the text report.
//!
//! Free text is escaped outside code spans so addresses, flags (`[S.]`), `<`/`>` and
//! sysctl names render literally; table cells also escape `|`.

use std::fmt::Write as _;
use std::io::Write;

use super::sections::{self, Cell, Grid, Markup};
use super::text::{connection_block, finding_lines};
use super::{Model, Render};

/// Escapes Markdown inline syntax outside `code spans`, and only where it would
/// change the rendering, so the raw text stays readable: `\\`, `*` and `~` always;
/// `_` at a word boundary (CommonMark never emphasises inside a word, so sysctl names
/// stay as they are); `<` before what could open an HTML tag. `>` matters only at the
/// start of a line and `[`/`]` only before a link target or a link definition, and no
/// line this renderer writes starts with free text.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, part) in s.split('`').enumerate() {
        if i > 0 {
            out.push('`');
        }
        if i % 2 == 1 {
            out.push_str(part);
            continue;
        }
        let chars: Vec<char> = part.chars().collect();
        for (k, &ch) in chars.iter().enumerate() {
            let prev = k.checked_sub(1).and_then(|j| chars.get(j)).copied();
            let next = chars.get(k + 1).copied();
            let word = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
            let escape = match ch {
                '\\' | '*' | '~' => true,
                '_' => !(word(prev) && word(next)),
                '<' => next.is_some_and(|c| c.is_ascii_alphabetic() || "/!?".contains(c)),
                '[' => next.is_some_and(|c| c == ']') || prev.is_some_and(|c| c == '!'),
                ']' => next.is_some_and(|c| c == '(' || c == '[' || c == ':'),
                _ => false,
            };
            if escape {
                out.push('\\');
            }
            out.push(ch);
        }
    }
    out
}

/// A table cell: escaped, pipes escaped, no line breaks.
fn cell(s: &str) -> String {
    esc(s).replace('|', "\\|").replace('\n', " ")
}

/// Inline code, with a fence long enough for backticks inside.
fn code(s: &str) -> String {
    if s.contains('`') {
        format!("`` {s} ``")
    } else {
        format!("`{s}`")
    }
}

/// Inline Markdown.
struct Md;

impl Markup for Md {
    fn text(&self, s: &str) -> String {
        esc(s)
    }
    fn code(&self, s: &str) -> String {
        code(s)
    }
    fn strong(&self, s: &str) -> String {
        format!("**{}**", esc(s))
    }
    fn ids(&self, ids: &[String]) -> String {
        ids.join(", ")
    }
}

fn table(out: &mut String, g: &Grid) {
    table_head(out, g.headers);
    for r in &g.rows {
        table_row(out, r);
    }
    out.push('\n');
}

/// A table's header line and the line under it.
fn table_head(out: &mut String, headers: &[&str]) {
    let _ = writeln!(out, "| {} |", headers.join(" | "));
    let _ = writeln!(
        out,
        "|{}",
        headers.iter().map(|_| "---|").collect::<String>()
    );
}

/// A table's row.
fn table_row(out: &mut String, r: &[Cell]) {
    let cells: Vec<String> = r
        .iter()
        .map(|c| match c {
            // A table cell cannot hold a pipe or a line break.
            Cell::Text(s) => cell(s),
            c => sections::cell(c, &Md),
        })
        .collect();
    let _ = writeln!(out, "| {} |", cells.join(" | "));
}

/// `--format markdown`.
pub struct Markdown;

impl Render for Markdown {
    fn render(&self, m: &Model, out: &mut dyn Write) -> anyhow::Result<()> {
        write(m, out)?;
        Ok(())
    }
}

/// The whole Markdown report.
pub fn render(m: &Model) -> String {
    let mut out = Vec::new();
    write(m, &mut out).expect("writing to memory does not fail");
    String::from_utf8(out).expect("the report is UTF-8")
}

/// Writes the Markdown report to `out`: the connections as they are made, a run at a
/// time (the report of a million connections is gigabytes).
fn write(m: &Model, out: &mut dyn Write) -> std::io::Result<()> {
    let mut head = String::new();
    headline(m, &mut head);
    inputs(m, &mut head);
    findings(m, &mut head);
    out.write_all(head.as_bytes())?;
    connections(m, out)
}

/// The title, the counts, the summary line and the exit status.
fn headline(m: &Model, out: &mut String) {
    let _ = writeln!(out, "# natcheck report\n");
    let _ = writeln!(out, "{}\n", sections::headline(m, &Md));
    if let Some(s) = sections::selection(m, &Md) {
        let _ = writeln!(out, "{s}\n");
    }
    let _ = writeln!(out, "{}\n", sections::summary(m, &Md));
    let _ = writeln!(out, "{}\n", sections::exit_status(m, &Md));
}

/// The capture points, clocks, inside prefixes, witnesses and input warnings.
fn inputs(m: &Model, out: &mut String) {
    let (c, audit, warnings) = (&m.correlation, &m.audit, &m.warnings);
    let _ = writeln!(out, "## Inputs\n");
    table(out, &sections::points(c));
    let _ = writeln!(out, "{}\n", sections::clock_note(c, &Md));
    let _ = writeln!(out, "{}\n", sections::inside_prefixes(audit, &Md));
    for b in &m.bundles {
        let _ = writeln!(
            out,
            "Bundle: {}.\n",
            esc(&super::text::bundle_line(b, false))
        );
    }
    for g in sections::witnesses(audit) {
        table(out, &g);
    }
    if !warnings.is_empty() {
        let _ = writeln!(out, "### Input warnings\n");
        for w in warnings {
            let _ = writeln!(out, "- {}", esc(&w.to_string()));
        }
        out.push('\n');
    }
}

/// Every finding: a table, then each with its evidence and what to check.
fn findings(m: &Model, out: &mut String) {
    let audit = &m.audit;
    let _ = writeln!(out, "## Findings\n");
    if audit.findings.is_empty() {
        let _ = writeln!(out, "None.\n");
    } else {
        table(out, &sections::findings(m));
        for (i, (f, w)) in m.findings().enumerate() {
            let _ = writeln!(
                out,
                "### {}. {} `{}`: {}\n",
                i + 1,
                f.severity,
                f.code,
                esc(&w.message)
            );
            for (label, value) in sections::finding_facts(f, &Md) {
                let _ = writeln!(out, "- **{label}:** {value}");
            }
            let tuples = sections::finding_tuples(f, &Md);
            if !tuples.is_empty() {
                let _ = writeln!(out, "- **Tuples** (as the packets travelled):");
                for t in tuples {
                    let _ = writeln!(out, "  - {t}");
                }
            }
            let _ = writeln!(out, "\n**Evidence:**\n");
            for e in &w.evidence {
                let _ = writeln!(out, "- {}", esc(e));
            }
            let _ = writeln!(out, "\n**Check next:** {}\n", esc(&w.check));
        }
    }
}

/// The connection table and, folded, each connection's detail.
fn connections(m: &Model, out: &mut dyn Write) -> std::io::Result<()> {
    let c = &m.correlation;
    let mut s = String::new();
    let _ = writeln!(s, "## Connections\n");
    if c.connections.is_empty() {
        let _ = writeln!(s, "None.\n");
        return out.write_all(s.as_bytes());
    }
    table_head(&mut s, sections::CONNECTION_HEADERS);
    out.write_all(s.as_bytes())?;
    super::in_runs(c.connections.len(), out, |i, s| {
        table_row(s, &sections::connection_row(m, i));
    })?;
    out.write_all(b"\n")?;
    writeln!(
        out,
        "<details><summary>Per-connection detail (tuple at every hop, translations, matched and unmatched packets)</summary>\n"
    )?;
    writeln!(out, "```text")?;
    super::in_runs(c.connections.len(), out, |i, s| {
        if i > 0 {
            s.push('\n');
        }
        let extra = finding_lines(m, i);
        let conn = &c.connections[i];
        // A fence inside a fenced block would end it early.
        s.push_str(
            &connection_block(c, conn, &|h| m.tcp_state(i, h), &extra).replace("```", "'''"),
        );
    })?;
    writeln!(out, "```\n\n</details>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_outside_code_spans_only() {
        assert_eq!(
            esc("a [S.] 5>/0< <x> nf_conntrack _y_ `conntrack -S | grep <a_b>` a*b"),
            "a [S.] 5>/0< \\<x> nf_conntrack \\_y\\_ `conntrack -S | grep <a_b>` a\\*b"
        );
        assert_eq!(esc("[x](y) ![z]"), "[x\\](y) !\\[z]");
        assert_eq!(cell("a|b"), "a\\|b");
        assert_eq!(code("x`y"), "`` x`y ``");
    }
}
