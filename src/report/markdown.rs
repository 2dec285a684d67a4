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

use super::fmt::{clock, path_label, rfc3339_ns, secs, short, time_range, tuple};
use super::text::{connection_block, finding_lines, kind_label, summary_line};
use super::{Model, Render};
use crate::audit::{Finding, Severity, WitnessKind};

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

fn table(out: &mut String, headers: &[&str], rows: &[Vec<String>]) {
    let _ = writeln!(out, "| {} |", headers.join(" | "));
    let _ = writeln!(
        out,
        "|{}",
        headers.iter().map(|_| "---|").collect::<String>()
    );
    for r in rows {
        let _ = writeln!(out, "| {} |", r.join(" | "));
    }
    out.push('\n');
}

fn when(f: &Finding) -> String {
    match time_range(f.first_ns, f.last_ns) {
        Some((a, Some(d))) => format!("{a} (+{d})"),
        Some((a, None)) => a,
        None => "-".into(),
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `--format markdown`.
pub struct Markdown;

impl Render for Markdown {
    fn render(&self, m: &Model, out: &mut dyn Write) -> anyhow::Result<()> {
        out.write_all(render(m).as_bytes())?;
        Ok(())
    }
}

/// The whole Markdown report.
pub fn render(m: &Model) -> String {
    let mut out = String::new();
    headline(m, &mut out);
    inputs(m, &mut out);
    findings(m, &mut out);
    connections(m, &mut out);
    out
}

/// The title, the counts, the summary line and the exit status.
fn headline(m: &Model, out: &mut String) {
    let (c, audit, warnings) = (&m.correlation, &m.audit, &m.warnings);
    let count = |s: Severity| m.count(s);
    let _ = writeln!(out, "# natcheck report\n");
    let headline = if audit.findings.is_empty() {
        "No findings.".to_string()
    } else {
        format!(
            "**{}**, **{}**, {}.",
            plural(count(Severity::Error), "error", "errors"),
            plural(count(Severity::Warning), "warning", "warnings"),
            plural(count(Severity::Info), "info finding", "info findings")
        )
    };
    let _ = writeln!(out, "{headline}\n");
    if let Some(s) = &m.selection {
        let _ = writeln!(out, "{}.\n", esc(&s.line()));
    }
    let _ = writeln!(out, "{}.\n", esc(&summary_line(c)));
    let _ = writeln!(
        out,
        "Exit status {} (`--fail-on {}`{}).\n",
        m.exit_status() as u8,
        m.fail_on_text(),
        if warnings.is_empty() {
            String::new()
        } else {
            format!(
                "; {} about the inputs, see below",
                plural(warnings.len(), "warning", "warnings")
            )
        }
    );
}

/// The capture points, clocks, inside prefixes, witnesses and input warnings.
fn inputs(m: &Model, out: &mut String) {
    let (c, audit, warnings) = (&m.correlation, &m.audit, &m.warnings);
    let _ = writeln!(out, "## Inputs\n");
    let rows: Vec<Vec<String>> = c
        .points
        .iter()
        .enumerate()
        .map(|(i, p)| {
            vec![
                cell(&p.name),
                code(&p.source),
                cell(&p.linktype),
                p.packets.to_string(),
                p.flows.to_string(),
                p.first_ns.map(rfc3339_ns).unwrap_or_else(|| "-".into()),
                p.last_ns.map(rfc3339_ns).unwrap_or_else(|| "-".into()),
                match (p.first_ns, p.last_ns) {
                    (Some(a), Some(b)) => secs(b - a),
                    _ => "-".into(),
                },
                cell(&clock(c, i)),
            ]
        })
        .collect();
    table(
        out,
        &[
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
        &rows,
    );
    let _ = writeln!(
        out,
        "Times are as captured here and clock-corrected everywhere else (corrected = captured − offset). Matching window: {}.\n",
        short(c.config.window_ns)
    );
    let prefixes: Vec<String> = audit.inside.iter().map(|p| code(&p.to_string())).collect();
    let _ = writeln!(
        out,
        "Inside prefixes: {} ({}).\n",
        if prefixes.is_empty() {
            "none known".to_string()
        } else {
            prefixes.join(", ")
        },
        if audit.inside_declared {
            "declared with `--inside`, plus translated addresses"
        } else {
            "learned from the translations on the wire; declare them with `--inside`"
        }
    );
    for b in &m.bundles {
        let _ = writeln!(
            out,
            "Bundle: {}.\n",
            esc(&super::text::bundle_line(b, false))
        );
    }
    witness_tables(audit, out);
    if !warnings.is_empty() {
        let _ = writeln!(out, "### Input warnings\n");
        for w in warnings {
            let _ = writeln!(out, "- {}", esc(&w.to_string()));
        }
        out.push('\n');
    }
}

/// What each witness contributed: conntrack inputs, then the rule set.
fn witness_tables(audit: &crate::audit::Audit, out: &mut String) {
    let (rule_inputs, ct_inputs): (Vec<_>, Vec<_>) = audit
        .witnesses
        .iter()
        .partition(|w| w.kind == WitnessKind::Rules);
    if !ct_inputs.is_empty() {
        let rows: Vec<Vec<String>> = ct_inputs
            .iter()
            .map(|w| {
                vec![
                    code(&w.source),
                    w.kind.as_str().to_string(),
                    w.entries.to_string(),
                    w.on_wire.to_string(),
                    w.agree.to_string(),
                    match w.time_ns {
                        None => "-".into(),
                        Some(t) if w.time_recorded => rfc3339_ns(t),
                        Some(t) => format!("{} (estimated)", rfc3339_ns(t)),
                    },
                ]
            })
            .collect();
        table(
            out,
            &[
                "conntrack input",
                "kind",
                "entries",
                "on the wire",
                "agree with the wire",
                "snapshot time",
            ],
            &rows,
        );
    }
    if !rule_inputs.is_empty() {
        let rows: Vec<Vec<String>> = rule_inputs
            .iter()
            .map(|w| {
                vec![
                    code(&w.source),
                    w.entries.to_string(),
                    w.on_wire.to_string(),
                    w.agree.to_string(),
                ]
            })
            .collect();
        table(
            out,
            &[
                "rules input",
                "rules",
                "connections walked through them",
                "agree with the wire",
            ],
            &rows,
        );
    }
}

/// Every finding: a table, then each with its evidence and what to check.
fn findings(m: &Model, out: &mut String) {
    let audit = &m.audit;
    let _ = writeln!(out, "## Findings\n");
    if audit.findings.is_empty() {
        let _ = writeln!(out, "None.\n");
    } else {
        let rows: Vec<Vec<String>> = m
            .findings()
            .enumerate()
            .map(|(i, (f, w))| {
                vec![
                    (i + 1).to_string(),
                    f.severity.to_string(),
                    code(f.code.as_str()),
                    cell(&f.connections.join(", ")),
                    cell(&f.points.join(" → ")),
                    f.first_ns.map(rfc3339_ns).unwrap_or_else(|| "-".into()),
                    f.packets.to_string(),
                    cell(&w.message),
                ]
            })
            .collect();
        table(
            out,
            &[
                "#",
                "severity",
                "code",
                "connections",
                "points",
                "first",
                "packets",
                "what",
            ],
            &rows,
        );
        for (i, (f, w)) in m.findings().enumerate() {
            let _ = writeln!(
                out,
                "### {}. {} `{}`: {}\n",
                i + 1,
                f.severity,
                f.code,
                esc(&w.message)
            );
            let _ = writeln!(
                out,
                "- **Connections:** {}",
                if f.connections.is_empty() {
                    "-".into()
                } else {
                    f.connections.join(", ")
                }
            );
            let _ = writeln!(out, "- **Points:** {}", esc(&f.points.join(" → ")));
            let _ = writeln!(out, "- **Time:** {}", when(f));
            let _ = writeln!(out, "- **Packets:** {}", f.packets);
            if !f.tuples.is_empty() {
                let _ = writeln!(out, "- **Tuples** (as the packets travelled):");
                for t in &f.tuples {
                    let _ = writeln!(
                        out,
                        "  - {} at {}: {}",
                        t.role,
                        esc(&t.point),
                        code(&format!("{} {}", t.tuple.proto, tuple(&t.tuple)))
                    );
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
fn connections(m: &Model, out: &mut String) {
    let (c, audit) = (&m.correlation, &m.audit);
    let _ = writeln!(out, "## Connections\n");
    if c.connections.is_empty() {
        let _ = writeln!(out, "None.\n");
        return;
    }
    let rows: Vec<Vec<String>> = c
        .connections
        .iter()
        .enumerate()
        .map(|(i, conn)| {
            let first = &conn.hops[0].flow.tuple;
            let last = &conn.hops[conn.hops.len() - 1].flow.tuple;
            let codes: Vec<String> = audit
                .of_connection(i)
                .map(|f| format!("{} {}", f.severity, f.code))
                .collect();
            vec![
                conn.id.clone(),
                conn.proto.to_string(),
                cell(&path_label(c, conn, " → ")),
                cell(&kind_label(conn)),
                code(&tuple(first)),
                if conn.hops.len() > 1 {
                    code(&tuple(last))
                } else {
                    "-".into()
                },
                if codes.is_empty() {
                    "-".into()
                } else {
                    cell(&codes.join(", "))
                },
            ]
        })
        .collect();
    table(
        out,
        &[
            "id",
            "proto",
            "path",
            "nat",
            "first hop",
            "last hop",
            "findings",
        ],
        &rows,
    );
    let _ = writeln!(
        out,
        "<details><summary>Per-connection detail (tuple at every hop, translations, matched and unmatched packets)</summary>\n"
    );
    let _ = writeln!(out, "```text");
    for (i, conn) in c.connections.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let extra = finding_lines(m, i);
        // A fence inside a fenced block would end it early.
        out.push_str(
            &connection_block(c, conn, &|h| m.tcp_state(i, h), &extra).replace("```", "'''"),
        );
    }
    let _ = writeln!(out, "```\n\n</details>");
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
