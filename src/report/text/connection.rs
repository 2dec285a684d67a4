//! One connection in detail: the tuple at every hop and, between hops, what NAT did
//! and the evidence for it (the block the Markdown report shows too), then, in the
//! table report, every packet with where and when it was seen.

use std::fmt::Write as _;

use super::style::Paint;
use crate::correlate::{
    Connection, Correlation, Gap, Hop, Joined, Link, Packets, Resegmented, ReturnHop, Rewritten,
    Sighting,
};
use crate::model::{tcp_flags, NatKind, Tuple};
use crate::report::fmt::{dst, plural, rfc3339_ns, secs, short, src, tunnel, tuple};
use crate::report::table::{Align, Table};
use crate::report::Model;

/// What changed, in words: `src 172.17.0.2:40000 => 203.0.113.1:40000`.
fn change_text(before: &Tuple, after: &Tuple, l: &Link, error: bool) -> String {
    let mut parts = Vec::new();
    if error && l.change.src_addr_changed {
        // An ICMP error has no identifier to show (it is 0).
        parts.push(format!("src {} => {}", before.src, after.src));
    } else if l.change.src_addr_changed || l.change.sport_changed {
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
    let mut s = match c.end_to_end() {
        None => "single point".to_string(),
        Some(ch) => {
            let mut s = ch.kind.as_str().to_string();
            if ch.port_reallocated {
                s.push_str(", port reallocated");
            }
            s
        }
    };
    // An error's translation is the one of the connection it quotes.
    if c.icmp_error().is_some() {
        let about = c.about_id().map(|id| format!(" about {id}"));
        s = format!("icmp error{}, {s}", about.unwrap_or_default());
    }
    s
}

/// The lines between hop `i` and the next: the translation, a port move and why, the
/// matching evidence and latency, and the packets seen on one side only.
fn link_lines(c: &Correlation, conn: &Connection, i: usize, l: &Link, out: &mut String) {
    let (h, f) = (&conn.hops[i], &conn.hops[i].flow);
    let next = &conn.hops[i + 1].flow.tuple;
    let mut what = if l.change.kind == NatKind::None {
        "no translation".to_string()
    } else {
        format!(
            "{}  {}",
            l.change.kind,
            change_text(&f.tuple, next, l, f.icmp_error.is_some())
        )
    };
    // Encapsulation is not a translation: the inner packet is the one compared.
    let outer = |h: &Hop| {
        let t = h.flow.tunnel().or(h.flow.reply_tunnel())?;
        Some((
            t.kind,
            t.id,
            t.outer.src.min(t.outer.dst),
            t.outer.src.max(t.outer.dst),
        ))
    };
    what += match (outer(h), outer(&conn.hops[i + 1])) {
        (None, Some(_)) => "; encapsulated",
        (Some(a), Some(b)) if a == b => "; through the tunnel",
        (Some(_), Some(_)) => "; into another tunnel",
        (Some(_), None) => "; decapsulated",
        (None, None) => "",
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
            l.evidence.fields.names().join(",")
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
    let rewritten = [
        ("initiator", &l.rewritten.fwd, next_name),
        ("responder", &l.rewritten.rev, this_name),
    ];
    for (who, r, to) in rewritten {
        if let Some(line) = rewritten_line(who, r, to) {
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

/// What a NAT helper rewrote in one direction (`who` sends, towards `to`).
fn rewritten_line(who: &str, r: &Rewritten, to: &str) -> Option<String> {
    if r.is_none() {
        return None;
    }
    let matched = plural(
        r.shifted,
        &format!("{who} packet"),
        &format!("{who} packets"),
    );
    if r.packets == 0 {
        return Some(format!(
            "{matched} matched by sequence or acknowledgement numbers a NAT helper shifted"
        ));
    }
    let shift = match r.shift {
        0 => String::new(),
        s => format!(", sequence numbers {s:+} at {to} from then on"),
    };
    Some(format!(
        "rewritten by a NAT helper: {}{shift}; {matched} matched by shifted numbers",
        plural(
            r.packets,
            &format!("{who} payload"),
            &format!("{who} payloads")
        ),
    ))
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

/// `c2  tcp  <first packet>  lasted 1.053s  snat, port reallocated`; the duration as
/// `+1.053s` unless `lasted`.
fn header(conn: &Connection, lasted: bool) -> String {
    let d = secs(conn.last_ns() - conn.first_ns());
    format!(
        "{}  {}  {}  {}  {}\n",
        conn.id,
        conn.proto,
        rfc3339_ns(conn.first_ns()),
        if lasted {
            format!("lasted {d}")
        } else {
            format!("+{d}")
        },
        kind_label(conn)
    )
}

/// The connection block, also used by the Markdown renderer: a `header` with the
/// duration as `+1.053s`, then `hops`.
pub fn connection_block(
    c: &Correlation,
    conn: &Connection,
    state: &dyn Fn(&Hop) -> Option<&'static str>,
    extra: &[String],
) -> String {
    let mut out = header(conn, false);
    hops(c, conn, state, extra, Paint::default(), &mut out);
    out
}

/// Connection `i` in detail for the table report: a [`header`], [`hops`] with the
/// rules and findings under them, then its packets (the first of them when the
/// correlation kept only those).
pub fn detail(m: &Model, i: usize, paint: Paint) -> String {
    let c = &m.correlation;
    let conn = &c.connections[i];
    let mut out = header(conn, true);
    let state = |h: &Hop| m.tcp_state(i, h);
    hops(c, conn, &state, &finding_lines(m, i), paint, &mut out);
    if let Some(p) = &conn.packets {
        packets(c, conn, p, &mut out);
    }
    out
}

/// Every hop of a connection with its tuple (what changed since the hop before set
/// apart), packet counts and state, the links between them, its return hops, the
/// connections related to it, and `extra` lines.
fn hops(
    c: &Correlation,
    conn: &Connection,
    state: &dyn Fn(&Hop) -> Option<&'static str>,
    extra: &[String],
    paint: Paint,
    out: &mut String,
) {
    let width = conn
        .all_hops()
        .map(|h| c.points[h.point].name.chars().count())
        .max()
        .unwrap_or(0);
    // Packet counts differ from hop to hop where the stream was cut differently;
    // payload bytes do not.
    let resegmented = conn.resegmented();
    let hop_line = |h: &Hop, before: Option<&Tuple>, out: &mut String| {
        let f = &h.flow;
        let state = state(h).map(|s| format!("  {s}")).unwrap_or_default();
        let bytes = if resegmented {
            format!(" ({}>/{}< payload bytes)", f.payload[0], f.payload[1])
        } else {
            String::new()
        };
        let cid = f
            .community_id()
            .map(|id| format!("  community_id {id}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "    {:<width$}  {}   {}>/{}< pkts{bytes}{}{cid}",
            c.points[h.point].name,
            paint.flow_tuple(&f.tuple, f.icmp_error.as_deref(), before),
            f.packets[0],
            f.packets[1],
            state
        );
        // The underlay the packets travelled in here: the tunnel is part of the hop.
        let tunnels = [("in", f.tunnel()), ("replies in", f.reply_tunnel())];
        for (what, t) in tunnels {
            if let Some(t) = t {
                let _ = writeln!(out, "    {:<width$}  {what} {}", "", tunnel(t));
            }
        }
    };
    for (i, h) in conn.hops.iter().enumerate() {
        let f = &h.flow;
        let before = i.checked_sub(1).map(|k| &conn.hops[k].flow.tuple);
        hop_line(h, before, out);
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
            link_lines(c, conn, i, l, out);
        }
    }
    for r in &conn.returns {
        hop_line(&r.hop, None, out);
        return_lines(c, conn, r, out);
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
}

/// The packets of a connection, one line each in the order they were first seen: its
/// direction, TCP flags, IP length, when it was first seen and how long after that
/// each hop saw it, and the fields it was matched on (said once above them when they
/// are the same for all); then how many more there were.
fn packets(c: &Correlation, conn: &Connection, p: &Packets, out: &mut String) {
    let tcp = p.rows.iter().any(|r| r.tcp_flags.is_some());
    let fields: Vec<String> = p
        .rows
        .iter()
        .map(|r| r.field_sets.names().join(","))
        .collect();
    // One list for every packet (or none matched) goes above them, not in a column.
    let same = fields.iter().all(|f| *f == fields[0]);
    let mut headers = vec![("#", Align::Right), ("dir", Align::Left)];
    if tcp {
        headers.push(("flags", Align::Left));
    }
    headers.extend([("size", Align::Right), ("first seen", Align::Left)]);
    headers.extend(
        conn.all_hops()
            .map(|h| (c.points[h.point].name.as_str(), Align::Right)),
    );
    if !same {
        headers.push(("matched on", Align::Left));
    }
    let mut t = Table::new(&headers);
    let (mut unseen, mut accounted) = (false, false);
    for (k, (row, fields)) in p.rows.iter().zip(&fields).enumerate() {
        let Some((first, at)) = row.first() else {
            continue;
        };
        let mut cells = vec![
            (k + 1).to_string(),
            if row.fwd { ">" } else { "<" }.to_string(),
        ];
        if tcp {
            cells.push(row.tcp_flags.map_or("-".into(), tcp_flags::to_string));
        }
        cells.extend([row.ip_len.to_string(), rfc3339_ns(first)]);
        for (h, s) in row.at.iter().enumerate() {
            cells.push(match s {
                Sighting::Seen(_) if h == at => "first".to_string(),
                Sighting::Seen(t) => short(t - first),
                Sighting::Accounted => {
                    accounted = true;
                    "accounted".to_string()
                }
                Sighting::Unseen | Sighting::Uncaptured => {
                    unseen = true;
                    "-".to_string()
                }
            });
        }
        if !same {
            cells.push(if fields.is_empty() {
                "-".to_string()
            } else {
                fields.clone()
            });
        }
        t.row(cells);
    }
    let mut legend = String::from("    packets");
    if let Some(f) = fields.first().filter(|f| same && !f.is_empty()) {
        let _ = write!(legend, " (each matched on {f})");
    }
    legend.push_str(": when first seen, and how long after that each point saw it");
    if unseen {
        legend.push_str("; -: not seen");
    }
    if accounted {
        legend.push_str("; accounted: crossed in other segments, as a later ACK or as a copy");
    }
    let _ = writeln!(out, "{legend}");
    out.push_str(&t.render("    "));
    let more = p.total - p.rows.len();
    if more > 0 {
        let _ = writeln!(
            out,
            "    ... {} (`--detail --detail` or `--connection {}` shows every one)",
            plural(more as u64, "more packet", "more packets"),
            conn.id
        );
    }
}

/// The lines a connection's block ends with: its way through the host's rules, when
/// given, and its findings.
pub fn finding_lines(m: &Model, i: usize) -> Vec<String> {
    let mut lines = match (&m.audit.rules, m.attribution(i)) {
        (Some(rules), Some(a)) => crate::report::rules::attribution_lines(rules, a),
        _ => Vec::new(),
    };
    lines.extend(
        m.findings_of(i)
            .map(|(f, w)| format!("finding: {} {}: {}", f.severity, f.code, w.message)),
    );
    lines
}
