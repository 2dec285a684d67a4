//! The plain-text correlation report: a header with the points and their clocks, then
//! one block per connection showing the tuple at every hop and, between hops, what NAT
//! did and the evidence for it. Made to be read in a terminal and pasted into tickets.

use std::fmt::Write as _;
use std::io::Write;

use super::fmt::{clock, dst, path_label, plural, rfc3339_ns, secs, short, src, time_range, tuple};
use super::table::{Align, Table};
use super::{Model, Render};
use crate::audit::{Severity, WitnessKind, WitnessSummary};
use crate::correlate::{Connection, Correlation, Gap, Hop, Joined, Link, Resegmented, ReturnHop};
use crate::model::{tcp_flags, NatKind, Tuple};

/// What changed, in words: `src 172.17.0.2:40000 => 203.0.113.1:40000`.
fn change_text(before: &Tuple, after: &Tuple, l: &Link) -> String {
    let mut parts = Vec::new();
    if l.change.src_addr_changed || l.change.sport_changed {
        parts.push(format!("src {} => {}", src(before), src(after)));
    }
    if l.change.dst_addr_changed || l.change.dport_changed {
        parts.push(format!("dst {} => {}", dst(before), dst(after)));
    }
    parts.join(", ")
}

fn gap_text(what: &str, g: &Gap) -> Option<String> {
    if g.packets == 0 {
        return None;
    }
    let first = match g.first_tcp_flags {
        Some(f) => format!(
            ", first [{}] at {}",
            tcp_flags::to_string(f),
            rfc3339_ns(g.first_ns.unwrap_or(0))
        ),
        None => format!(", first at {}", rfc3339_ns(g.first_ns.unwrap_or(0))),
    };
    Some(format!("{} {what}{first}", g.packets))
}

/// Short label for a connection's end-to-end translation.
pub fn kind_label(c: &Connection) -> String {
    match c.end_to_end() {
        None => "single point".into(),
        Some(ch) => {
            let mut s = ch.kind.as_str().to_string();
            if ch.port_reallocated {
                s.push_str(", port reallocated");
            }
            s
        }
    }
}

/// The lines between hop `i` and the next: the translation, a port move and why, the
/// matching evidence and latency, and the packets seen on one side only.
fn link_lines(c: &Correlation, conn: &Connection, i: usize, l: &Link, out: &mut String) {
    let (h, f) = (&conn.hops[i], &conn.hops[i].flow);
    let next = &conn.hops[i + 1].flow.tuple;
    let what = if l.change.kind == NatKind::None {
        "no translation".to_string()
    } else {
        format!("{}  {}", l.change.kind, change_text(&f.tuple, next, l))
    };
    let _ = writeln!(out, "      | {what}");
    if let Some(pr) = &l.port_realloc {
        let why = match (&pr.colliding, pr.colliding_started_first) {
            (Some(id), Some(true)) => format!("{id} already held {}", pr.wanted_sport),
            (Some(id), _) => format!("{id} holds {} (it started later)", pr.wanted_sport),
            (None, _) => "no connection holding it was captured (random port selection, a port range, or an unseen holder)".into(),
        };
        let _ = writeln!(
            out,
            "      | source port {} -> {}: {why}",
            pr.wanted_sport, pr.got_sport
        );
    }
    let lat = match &l.latency {
        Some(lat) => format!(
            ", latency {}p50 {} max {}",
            lat.first_ns
                .map(|f| format!("first {} ", short(f)))
                .unwrap_or_default(),
            short(lat.p50_ns),
            short(lat.max_ns)
        ),
        None => String::new(),
    };
    let _ = writeln!(
        out,
        "      | matched {}>/{}< on {}; confidence {:.4}{lat}",
        l.evidence.matched_fwd,
        l.evidence.matched_rev,
        if l.evidence.fields.is_empty() {
            "nothing".to_string()
        } else {
            l.evidence.fields.join(",")
        },
        l.confidence
    );
    let next_name = &c.points[conn.hops[i + 1].point].name;
    let this_name = &c.points[h.point].name;
    let reseg = [
        ("initiator", &l.resegmented.fwd, this_name, next_name),
        ("responder", &l.resegmented.rev, next_name, this_name),
    ];
    for (who, r, from, to) in reseg {
        for line in resegmented_lines(who, r, from, to) {
            let _ = writeln!(out, "      | {line}");
        }
    }
    for line in [
        gap_text(
            &format!("initiator packets not seen at {next_name}"),
            &l.unmatched.lost_fwd,
        ),
        gap_text(
            &format!("responder packets not seen at {this_name}"),
            &l.unmatched.lost_rev,
        ),
        gap_text(
            &format!("initiator packets seen only at {next_name}"),
            &l.unmatched.appeared_fwd,
        ),
        gap_text(
            &format!("responder packets seen only at {this_name}"),
            &l.unmatched.appeared_rev,
        ),
    ]
    .into_iter()
    .flatten()
    {
        let _ = writeln!(out, "      | {line}");
    }
}

/// The lines under a return hop: the hop it stands beside, how it was joined, and
/// the replies it exchanged with the path.
fn return_lines(c: &Correlation, conn: &Connection, r: &ReturnHop, out: &mut String) {
    let name = |i: usize| &c.points[conn.hops[i].point].name;
    let joined = match r.joined {
        Joined::Packets => "packets in common with the path",
        Joined::Acknowledgement => {
            "acknowledgement numbers (they acknowledge what the initiator sent there)"
        }
        Joined::Tuple => "tuple and time (they follow the requests there)",
    };
    let _ = writeln!(
        out,
        "      | replies only, beside {} (another way than the requests): joined by {joined}",
        name(r.beside)
    );
    let links = [
        (r.toward, "responder packets not seen at", true),
        (r.from, "responder packets not seen here, of", false),
    ];
    for (l, what, toward) in links {
        let Some(l) = l else { continue };
        let other = name(l.hop);
        if l.matched > 0 {
            let dir = if toward { "to" } else { "from" };
            let _ = writeln!(
                out,
                "      | matched {} responder packets {dir} {other}",
                l.matched
            );
        }
        if let Some(line) = gap_text(&format!("{what} {other}"), &l.unmatched) {
            let _ = writeln!(out, "      | {line}");
        }
    }
}

/// What a link accounted for by bytes or by a later ACK in one direction (`who`
/// sends, from `from` to `to`).
fn resegmented_lines(who: &str, r: &Resegmented, from: &str, to: &str) -> Vec<String> {
    let mut lines = Vec::new();
    if r.sent > 0 || r.received > 0 {
        lines.push(format!(
            "resegmented: {} at {from} ({}) crossed as {} at {to}",
            plural(
                r.sent,
                &format!("{who} segment"),
                &format!("{who} segments")
            ),
            plural(r.bytes, "payload byte", "payload bytes"),
            plural(r.received, "segment", "segments")
        ));
    }
    if r.superseded_acks > 0 {
        lines.push(format!(
            "{} not seen at {to}, superseded by a later ACK seen there",
            plural(
                r.superseded_acks,
                &format!("{who} pure ACK"),
                &format!("{who} pure ACKs")
            )
        ));
    }
    lines
}

/// The connection block, also used by the Markdown renderer.
pub fn connection_block(
    c: &Correlation,
    conn: &Connection,
    state: &dyn Fn(&Hop) -> Option<&'static str>,
    extra: &[String],
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}  {}  {}  +{}  {}",
        conn.id,
        conn.proto,
        rfc3339_ns(conn.first_ns()),
        secs(conn.last_ns() - conn.first_ns()),
        kind_label(conn)
    );
    let width = conn
        .all_hops()
        .map(|h| c.points[h.point].name.chars().count())
        .max()
        .unwrap_or(0);
    // Packet counts differ from hop to hop where the stream was cut differently;
    // payload bytes do not.
    let resegmented = conn.resegmented();
    let hop_line = |h: &Hop, out: &mut String| {
        let f = &h.flow;
        let state = state(h).map(|s| format!("  {s}")).unwrap_or_default();
        let bytes = if resegmented {
            format!(" ({}>/{}< payload bytes)", f.payload[0], f.payload[1])
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "    {:<width$}  {}   {}>/{}< pkts{bytes}{}",
            c.points[h.point].name,
            tuple(&f.tuple),
            f.packets[0],
            f.packets[1],
            state
        );
    };
    for (i, h) in conn.hops.iter().enumerate() {
        let f = &h.flow;
        hop_line(h, &mut out);
        if let Some(e) = &f.icmp_error {
            let about = e
                .quoted
                .map(|q| format!(" about {} {}", q.proto, tuple(&q)))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "    {:<width$}  icmp error type {} code {}{about}",
                "", e.icmp_type, e.code
            );
        }
        if let Some(r) = &h.reply_tuple {
            let _ = writeln!(
                out,
                "    {:<width$}  replies seen here as {} (already translated back: bridge netfilter runs before this point)",
                "",
                tuple(r)
            );
        }
        if let Some(l) = conn.links.get(i) {
            link_lines(c, conn, i, l, &mut out);
        }
    }
    for r in &conn.returns {
        hop_line(&r.hop, &mut out);
        return_lines(c, conn, r, &mut out);
    }
    for r in &conn.related {
        let _ = writeln!(
            out,
            "    related: {} packets at {} also match {} at {}",
            r.matched_packets, r.point, r.connection, r.other_point
        );
    }
    for e in extra {
        let _ = writeln!(out, "    {e}");
    }
    out
}

/// The point table (name, source, packets, flows, time span, clock).
pub fn points_table(c: &Correlation) -> Table {
    let mut t = Table::new(&[
        ("point", Align::Left),
        ("source", Align::Left),
        ("packets", Align::Right),
        ("flows", Align::Right),
        ("first packet", Align::Left),
        ("span", Align::Right),
        ("clock", Align::Left),
    ]);
    for (i, p) in c.points.iter().enumerate() {
        t.row(vec![
            p.name.clone(),
            p.source.clone(),
            p.packets.to_string(),
            p.flows.to_string(),
            p.first_ns.map(rfc3339_ns).unwrap_or_else(|| "-".into()),
            match (p.first_ns, p.last_ns) {
                (Some(a), Some(b)) => secs(b - a),
                _ => "-".into(),
            },
            clock(c, i),
        ]);
    }
    t
}

/// One line per connection: id, proto, path, end-to-end translation, first and last tuple.
pub fn connections_table(c: &Correlation) -> Table {
    let mut t = Table::new(&[
        ("id", Align::Left),
        ("proto", Align::Left),
        ("path", Align::Left),
        ("nat", Align::Left),
        ("first hop", Align::Left),
        ("last hop", Align::Left),
    ]);
    for conn in &c.connections {
        let first = &conn.hops[0].flow.tuple;
        let last = &conn.hops[conn.hops.len() - 1].flow.tuple;
        t.row(vec![
            conn.id.clone(),
            conn.proto.to_string(),
            path_label(c, conn, " > "),
            kind_label(conn),
            tuple(first),
            if conn.hops.len() > 1 {
                tuple(last)
            } else {
                "-".into()
            },
        ]);
    }
    t
}

/// Headline counts.
pub fn summary_line(c: &Correlation) -> String {
    let mut by_kind: std::collections::BTreeMap<&str, usize> = Default::default();
    let mut single = 0;
    let mut realloc = 0;
    for conn in &c.connections {
        match conn.end_to_end() {
            Some(ch) => *by_kind.entry(ch.kind.as_str()).or_insert(0) += 1,
            None => single += 1,
        }
        realloc += conn
            .links
            .iter()
            .filter(|l| l.change.port_reallocated)
            .count();
    }
    let kinds: Vec<String> = by_kind.iter().map(|(k, n)| format!("{n} {k}")).collect();
    format!(
        "{} points, {} connections: {} seen at several points ({}), {} at one point only; {} source port reallocations",
        c.points.len(),
        c.connections.len(),
        c.connections.len() - single,
        if kinds.is_empty() { "none".into() } else { kinds.join(", ") },
        single,
        realloc
    )
}

/// Connections by path and translation kind (computed on the polars frame).
#[cfg(feature = "frames")]
pub fn by_path_table(c: &Correlation, findings: &[u32]) -> Option<Table> {
    let df = super::frame::connections(c, findings).ok()?;
    let s = super::frame::summary(&df).ok()?;
    let text = |n: &str| -> Option<Vec<String>> {
        let col = s.column(n).ok()?;
        Some(
            (0..s.height())
                .map(|i| {
                    col.get(i)
                        .map(|v| v.to_string().trim_matches('"').to_string())
                        .unwrap_or_default()
                })
                .collect(),
        )
    };
    let names = [
        "path",
        "kind",
        "connections",
        "packets_fwd",
        "packets_rev",
        "lost_fwd",
        "lost_rev",
        "findings",
    ];
    let cols: Vec<Vec<String>> = names.iter().map(|n| text(n)).collect::<Option<_>>()?;
    let mut t = Table::new(&[
        ("path", Align::Left),
        ("nat", Align::Left),
        ("connections", Align::Right),
        ("pkts>", Align::Right),
        ("pkts<", Align::Right),
        ("lost>", Align::Right),
        ("lost<", Align::Right),
        ("findings", Align::Right),
    ]);
    for i in 0..s.height() {
        t.row(cols.iter().map(|c| c[i].clone()).collect());
    }
    Some(t)
}

/// `ct.txt: snapshot of 6 entries, 6 on the wire, 6 agree with it, taken about <time>`.
pub fn witness_line(w: &WitnessSummary) -> String {
    let what = match w.kind {
        WitnessKind::Events => format!("event log of {} connections", w.entries),
        kind => format!("{} of {} entries", kind.as_str(), w.entries),
    };
    let mut s = format!(
        "{}: {what}, {} on the wire, {} agree with it",
        w.source, w.on_wire, w.agree
    );
    if let Some(t) = w.time_ns {
        let about = if w.time_recorded { "at" } else { "about" };
        let _ = write!(s, ", taken {about} {}", rfc3339_ns(t));
    }
    s
}

/// A bundle in one line: where and when it was collected, why it stopped, what
/// the kernel dropped, and what could not be collected.
pub fn bundle_line(b: &crate::bundle::Summary) -> String {
    let mut s = format!("{}: natcheck collect on {}", b.dir, b.host);
    if !b.kernel.is_empty() {
        let _ = write!(s, " (Linux {})", b.kernel);
    }
    if let Some(t) = b.started_ns {
        let _ = write!(s, ", {}", rfc3339_ns(t));
        if let Some(end) = b.stopped_ns {
            let _ = write!(s, " +{}", secs(end - t));
        }
    }
    let stop = match b.stop.reason.as_str() {
        "signal" => format!("stopped by {}", b.stop.detail),
        "error" => format!("stopped by an error ({})", b.stop.detail),
        r => format!("stopped at its {r} limit ({})", b.stop.detail),
    };
    let drops: Vec<String> = b
        .points
        .iter()
        .filter(|(_, _, d)| *d > 0)
        .map(|(n, _, d)| format!("{n} {d}"))
        .collect();
    let _ = write!(
        s,
        ", {stop}; kernel drops: {}",
        if drops.is_empty() {
            "none".to_string()
        } else {
            drops.join(", ")
        }
    );
    if let Some(r) = &b.ring {
        let _ = write!(s, "; flight recorder of {} bytes", r.size);
        match &r.discarded_through {
            Some(cut) => {
                let _ = write!(
                    s,
                    ": {} packets ({} bytes) up to {cut} discarded, every packet after it kept",
                    r.discarded_packets, r.discarded_bytes
                );
                if r.before_predates_packets {
                    s.push_str(
                        "; the conntrack table before predates the packets kept: not compared with them",
                    );
                }
            }
            None => s.push_str(": nothing discarded"),
        }
    }
    if !b.missing.is_empty() {
        let missing: Vec<String> = b
            .missing
            .iter()
            .map(|(f, why)| format!("{f} ({why})"))
            .collect();
        let _ = write!(s, "; not collected: {}", missing.join(", "));
    }
    s
}

/// The findings section at the top of the table report.
fn findings_section(m: &Model) -> String {
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
        let _ = writeln!(out, "bundle: {}", bundle_line(b));
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
    for (f, w) in m.findings() {
        let when = match time_range(f.first_ns, f.last_ns) {
            Some((a, Some(d))) => format!("{a}  +{d}"),
            Some((a, None)) => a,
            None => "-".into(),
        };
        let _ = writeln!(
            out,
            "\n[{}] {}  {}  {}  {}  {} packets",
            f.severity,
            f.code,
            f.connections.join(","),
            f.points.join(" > "),
            when,
            f.packets
        );
        let _ = writeln!(out, "    {}", w.message);
        for e in &w.evidence {
            let _ = writeln!(out, "    - {e}");
        }
        let _ = writeln!(out, "    check: {}", w.check);
    }
    if !m.correlation.connections.is_empty() || !m.audit.findings.is_empty() {
        out.push('\n');
    }
    out
}

/// The lines a connection's block ends with: its way through the host's rules, when
/// given, and its findings.
pub fn finding_lines(m: &Model, i: usize) -> Vec<String> {
    let mut lines = match (&m.audit.rules, m.attribution(i)) {
        (Some(rules), Some(a)) => super::rules::attribution_lines(rules, a),
        _ => Vec::new(),
    };
    lines.extend(
        m.findings_of(i)
            .map(|(f, w)| format!("finding: {} {}: {}", f.severity, f.code, w.message)),
    );
    lines
}

/// The correlation part of the text report (no findings section): lines under each
/// connection and the by-path table's findings column from the model.
fn correlation(m: &Model) -> String {
    let c = &m.correlation;
    let extra = |i| finding_lines(m, i);
    let mut out = String::new();
    let _ = writeln!(out, "{}\n", summary_line(c));
    out.push_str(&points_table(c).render(""));
    out.push('\n');
    #[cfg(feature = "frames")]
    {
        let findings: Vec<u32> = (0..c.connections.len())
            .map(|i| m.findings_of(i).count() as u32)
            .collect();
        if let Some(t) = by_path_table(c, &findings) {
            out.push_str(&t.render(""));
            out.push('\n');
        }
    }
    out.push_str(&connections_table(c).render(""));
    for (i, conn) in c.connections.iter().enumerate() {
        out.push('\n');
        out.push_str(&connection_block(
            c,
            conn,
            &|h| m.tcp_state(i, h),
            &extra(i),
        ));
    }
    out
}

/// `--format table`: the findings, then the correlation with each connection's
/// findings under it.
pub struct Text;

impl Render for Text {
    fn render(&self, m: &Model, out: &mut dyn Write) -> anyhow::Result<()> {
        out.write_all(findings_section(m).as_bytes())?;
        out.write_all(correlation(m).as_bytes())?;
        Ok(())
    }
}
