//! The HTML report (`--format html`): one self-contained page (its style and a small
//! script inline, no reference to anything outside it) that works offline in any
//! browser and prints whole. The summary, the inputs, every finding with its evidence
//! (the Markdown report's words), a connection table that sorts by any column and
//! filters by any text, and per connection its details and a ladder diagram
//! (`ladder.rs`) of its packets across the capture points. When `--filter` cut the
//! report, the page says so under the counts, as the other formats do.
//!
//! Every text taken from the inputs (point and interface names, rule text, comments)
//! is escaped; the page says nothing of when it was made, so two runs on the same
//! inputs write the same bytes.

mod ladder;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::Write;

use super::fmt::{path_label, rfc3339_ns, secs, tuple, tuple_proto};
use super::sections::{self, Grid, Markup};
use super::text::{connection_block, kind_label};
use super::{Model, Render};
use crate::audit::Detail;
use crate::correlate::{Cap, Trace};

/// The packets the correlation keeps for the ladders, as it keeps those the table
/// report lists under `--detail`: of every connection the first 48 and the last 16.
pub const TRACE: Trace = Trace {
    all: true,
    cap: Some(Cap {
        first: 48,
        last: 16,
    }),
    named: BTreeSet::new(),
};

/// At most this many ladders in one page (a ladder of a few dozen packets weighs a
/// few kilobytes): a capture of many thousand connections still makes a page that a
/// browser opens. Connections with findings get theirs first.
const MAX_LADDERS: usize = 1000;

const STYLE: &str = include_str!("style.css");
const SCRIPT: &str = include_str!("script.js");

/// Escapes text for HTML and SVG, in element content and in quoted attributes.
pub(super) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Inline HTML.
struct Html;

impl Markup for Html {
    fn text(&self, s: &str) -> String {
        esc(s)
    }
    fn code(&self, s: &str) -> String {
        format!("<code>{}</code>", esc(s))
    }
    fn strong(&self, s: &str) -> String {
        format!("<strong>{}</strong>", esc(s))
    }
    /// Links to the connections' sections.
    fn ids(&self, ids: &[String]) -> String {
        ids.iter()
            .map(|id| format!(r##"<a href="#{0}">{0}</a>"##, esc(id)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A table of cells already marked up; `row` gives each row's attributes.
fn html_table<'a>(
    out: &mut String,
    headers: impl Iterator<Item = &'a str>,
    rows: &[Vec<String>],
    attrs: &str,
    row: &dyn Fn(usize) -> String,
) {
    table_head(out, headers, attrs);
    for (i, r) in rows.iter().enumerate() {
        table_row(out, &row(i), r);
    }
    out.push_str("</tbody></table>\n");
}

/// A table's opening, its header row and the opening of its body.
fn table_head<'a>(out: &mut String, headers: impl Iterator<Item = &'a str>, attrs: &str) {
    let _ = write!(out, "<table{attrs}><thead><tr>");
    for h in headers {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
}

/// A row of cells already marked up, with attributes `attrs`.
fn table_row(out: &mut String, attrs: &str, cells: &[String]) {
    let _ = write!(out, "<tr{attrs}>");
    for c in cells {
        let _ = write!(out, "<td>{c}</td>");
    }
    out.push_str("</tr>\n");
}

/// A table of the shared sections.
fn table(out: &mut String, g: &Grid, attrs: &str, row: &dyn Fn(usize) -> String) {
    let rows: Vec<Vec<String>> = g
        .rows
        .iter()
        .map(|r| r.iter().map(|c| sections::cell(c, &Html)).collect())
        .collect();
    html_table(out, g.headers.iter().copied(), &rows, attrs, row);
}

fn no_attrs(_: usize) -> String {
    String::new()
}

/// `--format html`.
pub struct HtmlReport;

impl Render for HtmlReport {
    fn render(&self, m: &Model, out: &mut dyn Write) -> anyhow::Result<()> {
        write_page(m, MAX_LADDERS, out)?;
        Ok(())
    }
}

/// The whole page, with at most `max_ladders` ladders.
pub fn render(m: &Model, max_ladders: usize) -> String {
    let mut out = Vec::new();
    write_page(m, max_ladders, &mut out).expect("writing to memory does not fail");
    String::from_utf8(out).expect("the page is UTF-8")
}

/// Writes the page to `out`: the connections' rows and sections as they are made, a
/// run at a time (the page of a million connections is gigabytes).
fn write_page(m: &Model, max_ladders: usize, out: &mut dyn Write) -> std::io::Result<()> {
    let mut page = String::new();
    let _ = write!(
        page,
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="natcheck {}">
<title>natcheck report</title>
<style>
{STYLE}</style>
</head>
<body>
"#,
        env!("CARGO_PKG_VERSION")
    );
    // The arrowheads every ladder uses.
    page.push_str(
        r#"<svg class="defs" width="0" height="0" aria-hidden="true"><defs>
<marker id="arrow-f" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto"><path d="M0 0L10 5L0 10z" class="ah f"/></marker>
<marker id="arrow-r" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto"><path d="M0 0L10 5L0 10z" class="ah r"/></marker>
</defs></svg>
"#,
    );
    headline(m, &mut page);
    inputs(m, &mut page);
    findings(m, &mut page);
    out.write_all(page.as_bytes())?;
    connections(m, max_ladders, out)?;
    write!(out, "<script>\n{SCRIPT}</script>\n</body>\n</html>\n")
}

/// The title, the counts, the summary, the exit status and the connections by path.
fn headline(m: &Model, out: &mut String) {
    let _ = writeln!(out, "<header>\n<h1>natcheck report</h1>");
    let _ = writeln!(
        out,
        r#"<p class="headline">{}</p>"#,
        sections::headline(m, &Html)
    );
    if let Some(s) = sections::selection(m, &Html) {
        let _ = writeln!(out, r#"<p class="selection">{s}</p>"#);
    }
    let _ = writeln!(out, "<p>{}</p>", sections::summary(m, &Html));
    let _ = writeln!(out, "<p>{}</p>", sections::exit_status(m, &Html));
    #[cfg(feature = "frames")]
    {
        let c = &m.correlation;
        let counts: Vec<u32> = (0..c.connections.len())
            .map(|i| m.findings_of(i).count() as u32)
            .collect();
        if let Some(t) = super::text::by_path_table(c, &counts).filter(|t| !t.is_empty()) {
            let rows: Vec<Vec<String>> =
                t.rows().map(|r| r.into_iter().map(esc).collect()).collect();
            html_table(out, t.headers(), &rows, r#" class="bypath""#, &no_attrs);
        }
    }
    let _ = writeln!(
        out,
        r##"<nav class="controls"><a href="#inputs">Inputs</a> · <a href="#findings">Findings</a> · <a href="#connections">Connections</a></nav>"##
    );
    out.push_str("</header>\n");
}

/// The capture points, clocks, inside prefixes, witnesses and input warnings.
fn inputs(m: &Model, out: &mut String) {
    let (c, audit) = (&m.correlation, &m.audit);
    out.push_str("<section id=\"inputs\">\n<h2>Inputs</h2>\n");
    table(out, &sections::points(c), "", &no_attrs);
    let _ = writeln!(out, "<p>{}</p>", sections::clock_note(c, &Html));
    let _ = writeln!(out, "<p>{}</p>", sections::inside_prefixes(audit, &Html));
    for b in &m.bundles {
        let _ = writeln!(
            out,
            "<p>Bundle: {}.</p>",
            esc(&super::text::bundle_line(b, false))
        );
    }
    for g in sections::witnesses(audit) {
        table(out, &g, "", &no_attrs);
    }
    if !m.warnings.is_empty() {
        out.push_str("<h3>Input warnings</h3>\n<ul>\n");
        for w in &m.warnings {
            let _ = writeln!(out, "<li>{}</li>", esc(&w.to_string()));
        }
        out.push_str("</ul>\n");
    }
    out.push_str("</section>\n");
}

/// Every finding: a table, then each with its evidence and what to check.
fn findings(m: &Model, out: &mut String) {
    out.push_str("<section id=\"findings\">\n<h2>Findings</h2>\n");
    if m.audit.findings.is_empty() {
        out.push_str("<p>None.</p>\n</section>\n");
        return;
    }
    table(out, &sections::findings(m), "", &no_attrs);
    for (i, (f, w)) in m.findings().enumerate() {
        let _ = writeln!(
            out,
            r#"<article class="finding {}" id="f{}">"#,
            f.severity,
            i + 1
        );
        let _ = writeln!(
            out,
            "<h3>{}. {} <code>{}</code>: {}</h3>\n<ul>",
            i + 1,
            f.severity,
            f.code,
            esc(&w.message)
        );
        for (label, value) in sections::finding_facts(f, &Html) {
            let _ = writeln!(out, "<li><strong>{label}:</strong> {value}</li>");
        }
        let tuples = sections::finding_tuples(f, &Html);
        if !tuples.is_empty() {
            out.push_str("<li><strong>Tuples</strong> (as the packets travelled):<ul>\n");
            for t in tuples {
                let _ = writeln!(out, "<li>{t}</li>");
            }
            out.push_str("</ul></li>\n");
        }
        out.push_str("</ul>\n<p><strong>Evidence:</strong></p>\n<ul>\n");
        for e in &w.evidence {
            let _ = writeln!(out, "<li>{}</li>", esc(e));
        }
        let _ = writeln!(
            out,
            "</ul>\n<p><strong>Check next:</strong> {}</p>\n</article>",
            esc(&w.check)
        );
    }
    out.push_str("</section>\n");
}

/// The connection table (sortable, filterable), then each connection's section.
fn connections(m: &Model, max_ladders: usize, out: &mut dyn Write) -> std::io::Result<()> {
    let c = &m.correlation;
    out.write_all(b"<section id=\"connections\">\n<h2>Connections</h2>\n")?;
    if c.connections.is_empty() {
        return out.write_all(b"<p>None.</p>\n</section>\n");
    }
    let n = c.connections.len();
    writeln!(
        out,
        r#"<p class="controls"><input type="search" id="filter" placeholder="filter: id, address, port, nat, finding, Community ID" aria-label="filter connections"> <span id="shown">{n} of {n}</span> · click a column header to sort</p>"#
    )?;
    // Every hop's tuple and Community ID, for the filter: the table shows the first and
    // last tuple only.
    let search = |i: usize| {
        let conn = &c.connections[i];
        let hops: Vec<String> = conn
            .all_hops()
            .map(|h| {
                let mut s = tuple_proto(&h.flow.tuple);
                if let Some(r) = &h.reply_tuple {
                    s = format!("{s} {}", tuple(r));
                }
                if let Some(id) = h.flow.community_id() {
                    s = format!("{s} {id}");
                }
                s
            })
            .collect();
        format!(r#" data-search="{}""#, esc(&hops.join(" ")))
    };
    let mut head = String::new();
    table_head(
        &mut head,
        sections::CONNECTION_HEADERS.iter().copied(),
        r#" id="conns" class="sortable""#,
    );
    out.write_all(head.as_bytes())?;
    super::in_runs(n, out, |i, s| {
        let cells: Vec<String> = (sections::connection_row(m, i).iter())
            .map(|c| sections::cell(c, &Html))
            .collect();
        table_row(s, &search(i), &cells);
    })?;
    out.write_all(b"</tbody></table>\n")?;
    // The connections whose ladders are drawn: those with findings first.
    let mut drawn = vec![false; n];
    let with_findings = |i: &usize| m.findings_of(*i).next().is_some();
    let (first, rest): (Vec<usize>, Vec<usize>) = (0..n).partition(with_findings);
    for i in first.into_iter().chain(rest).take(max_ladders) {
        drawn[i] = true;
    }
    let not_drawn = (n > max_ladders).then(|| {
        format!(
            "<p>Ladders drawn for {max_ladders} of the {n} connections, those with findings first.</p>\n"
        )
    });
    out.write_all(not_drawn.as_deref().unwrap_or_default().as_bytes())?;
    super::in_runs(n, out, |i, s| {
        connection(m, i, drawn[i], not_drawn.as_deref(), s);
    })?;
    out.write_all(b"</section>\n")
}

/// Why a source port moved, naming (and linking) the connection that held it: the
/// text report's words.
fn port_realloc(pr: &crate::correlate::PortRealloc) -> String {
    let held = pr.wanted_sport;
    let unseen = "no connection holding it was captured (random port selection, a port range, or an unseen holder)";
    let holder = pr
        .colliding
        .as_ref()
        .map(|id| Html.ids(std::slice::from_ref(id)));
    let why = match (holder, pr.colliding_started_first) {
        (Some(h), Some(true)) => format!("{h} already held {held}"),
        (Some(h), _) => format!("{h} holds {held} (it started later)"),
        (None, _) => unseen.into(),
    };
    format!("source port {held} -&gt; {}: {why}", pr.got_sport)
}

/// One connection: what it is, its findings, its ladder (when `drawn`, else why not),
/// its way through the rules and, folded, the text report's detail.
fn connection(m: &Model, i: usize, drawn: bool, why_not: Option<&str>, out: &mut String) {
    let c = &m.correlation;
    let conn = &c.connections[i];
    let _ = writeln!(out, r#"<section class="conn" id="{}">"#, esc(&conn.id));
    let _ = writeln!(
        out,
        "<h3>{} <small>{} · {} · {}</small></h3>",
        esc(&conn.id),
        conn.proto,
        esc(&path_label(c, conn, " → ")),
        esc(&kind_label(conn))
    );
    let _ = writeln!(
        out,
        "<p>{} +{}</p>",
        rfc3339_ns(conn.first_ns()),
        secs(conn.last_ns() - conn.first_ns())
    );
    let mut notes: Vec<String> = conn
        .links
        .iter()
        .filter_map(|l| l.port_realloc.as_ref())
        .map(port_realloc)
        .collect();
    for &f in m.audit.by_connection.get(i).into_iter().flatten() {
        let (x, w) = (&m.audit.findings[f], &m.words[f]);
        let mut note = format!(
            r##"finding: <a href="#f{}">{} <code>{}</code></a>: {}"##,
            f + 1,
            x.severity,
            x.code,
            esc(&w.message)
        );
        if let Detail::Conntrack { entry, .. } = &x.detail {
            let _ = write!(note, " (conntrack entry {})", Html.code(entry));
        }
        notes.push(note);
    }
    if let Some(ct) = m.conntrack_entry(i) {
        let entry = super::explain::entry(&ct.entry.facts());
        notes.push(format!("conntrack entry {}", Html.code(&entry)));
    }
    if let (Some(rules), Some(a)) = (&m.audit.rules, m.attribution(i)) {
        notes.extend(
            super::rules::attribution_lines(rules, a)
                .iter()
                .map(|l| format!(r#"<span class="rule">{}</span>"#, esc(l))),
        );
    }
    if !notes.is_empty() {
        out.push_str("<ul class=\"notes\">\n");
        for n in &notes {
            let _ = writeln!(out, "<li>{n}</li>");
        }
        out.push_str("</ul>\n");
    }
    match conn.packets.as_deref() {
        Some(_) if !drawn => out.push_str(why_not.unwrap_or_default()),
        Some(p) if p.rows.is_empty() => out.push_str(
            "<p>No ladder: its packets are link-local control traffic, never followed across points.</p>\n",
        ),
        Some(p) => {
        out.push_str("<figure>\n");
        ladder::write(m, i, out);
        let start = p
            .rows
            .iter()
            .filter_map(|r| r.first())
            .min()
            .map(|(t, _)| format!(" from {}", rfc3339_ns(t)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "<figcaption>Time runs down{start} (clock-corrected); the initiator's packets go right, the responder's left; × marks a packet not seen at the next point, ○ one not seen at the point before, a dashed stub one that crossed in other packets. Hover over a packet for its times.</figcaption>\n</figure>"
        );
        }
        None => {}
    }
    let _ = writeln!(
        out,
        "<details><summary>Detail (tuple at every hop, translations, matched and unmatched packets)</summary>\n<pre>{}</pre></details>\n</section>",
        esc(&connection_block(c, conn, &|h| m.tcp_state(i, h), &[]))
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::FailOn;
    use crate::correlate::testkit::{point, tcp_conv, view, MS, US};
    use crate::correlate::{correlate, Config};

    #[test]
    fn a_page_of_many_connections_draws_those_with_findings_first() {
        let (client, server) = ("172.17.0.2:40000", "198.51.100.7:443");
        let clean = tcp_conv(0, client, server, 1000);
        let lossy = tcp_conv(10 * MS, "172.17.0.2:40001", server, 5000);
        let mut outside = view(&clean, "203.0.113.1:40000", server, 30 * US, 1);
        let mut lossy_out = view(&lossy, "203.0.113.1:40001", server, 30 * US, 1);
        // The second connection's request never left.
        lossy_out.remove(3);
        outside.extend(lossy_out);
        let inside = [clean, lossy].concat();
        let points = vec![point("docker0", 0, &inside), point("eth0", 1, &outside)];
        let config = Config {
            trace: TRACE,
            ..Config::default()
        };
        let c = correlate(points, Vec::new(), config);
        let audit = crate::audit::audit(&c, &Default::default(), Vec::new());
        let m = Model::new(c, audit, Vec::new(), FailOn::default());
        assert!(m.findings_of(0).next().is_none() && m.findings_of(1).next().is_some());
        let page = render(&m, 1);
        for bad in ["http://", "https://", "src="] {
            assert!(!page.contains(bad), "{bad}");
        }
        let section = |id: &str| {
            let at = page
                .find(&format!(r#"<section class="conn" id="{id}">"#))
                .unwrap();
            &page[at..at + page[at..].find("</section>").unwrap()]
        };
        let said = "Ladders drawn for 1 of the 2 connections, those with findings first.";
        assert!(section("c1").contains(said) && !section("c1").contains("<svg"));
        assert_eq!(section("c2").matches(r#"<svg class="ladder""#).count(), 1);
        assert_eq!(page.matches(said).count(), 2);
        // Without a limit, both.
        let page = render(&m, MAX_LADDERS);
        assert_eq!(page.matches(r#"<svg class="ladder""#).count(), 2);
        assert!(!page.contains("Ladders drawn for"));
    }

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(esc(r#"<b a="x">&'"#), "&lt;b a=&quot;x&quot;&gt;&amp;&#39;");
        assert_eq!(
            Html.ids(&["c1".into(), "c2".into()]),
            r##"<a href="#c1">c1</a>, <a href="#c2">c2</a>"##
        );
    }
}
