//! A connection's ladder diagram in SVG, from the packets the correlation traced
//! ([`crate::correlate::Packets`], the rows the table report lists): one vertical line
//! per hop of its path (in path order, labelled with the point's name and the tuple
//! seen there, the fields a translation rewrote highlighted), and one arrow per packet
//! from the hop it was first seen at to the last, at its clock-corrected times (time
//! runs down). The initiator's packets go right, the responder's left; a packet lost
//! on the way ends in a cross beside the last point that saw it; a stretch it crossed
//! beside the path (replies by another way) is dashed. A path that stops short (a
//! finding names its last hop as where its packets were last seen) gets a dashed line
//! for the point it should have reached, when the finding names it.
//!
//! Time is drawn to a scale that grows with the logarithm of the gaps between
//! sightings, in whole pixels: microseconds of forwarding latency slope the arrows,
//! seconds between packets do not stretch the page, and the same input always makes
//! the same drawing.

use std::fmt::Write as _;

use super::esc;
use crate::audit::Role;
use crate::correlate::{Connection, Packet, Packets, Sighting};
use crate::model::{tcp_flags, NatChange, NatKind, Tuple};
use crate::report::fmt::{self, rfc3339_ns, short_us};
use crate::report::Model;
use crate::rules::eval::Fate;

/// Width of a monospace character of the labels, in tenths of a pixel.
const CHAR_TENTHS: i32 = 72;
/// Room left of the first line for the times.
const LEFT: i32 = 92;
/// Height of a label line.
const LINE: i32 = 15;
/// Least distance between two packets' first sightings (their labels).
const ROW: i32 = 16;
/// The band where the packets not drawn would be.
const BREAK: i32 = 36;
/// A packet's stub toward the point it did not reach.
const STUB: i32 = 26;

/// What happened at one end of a packet's way along the path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// The path's end: nothing was captured beyond it.
    Path,
    /// Not seen at the adjacent hop while its point was capturing: lost (at the end
    /// of its way) or appeared there from nowhere (at its start).
    Unseen,
    /// Crossed, but not one for one: its bytes in segments cut differently, a later
    /// ACK, a copy of a packet that crossed, or by a point beside the path.
    Elsewhere,
    /// The adjacent hop's point was not capturing then.
    Uncaptured,
}

/// A packet as drawn: where it was seen on the path, in the order of its way
/// (hops rising for the initiator's packets, falling for the responder's).
struct Rung<'a> {
    p: &'a Packet,
    /// (hop, clock-corrected time) of each sighting on the path.
    seen: Vec<(usize, i64)>,
    /// Why it was not seen at the hop before the first that saw it on its way, and
    /// at the hop after the last.
    from: End,
    to: End,
}

impl<'a> Rung<'a> {
    /// Packet `p` of a connection whose path has `path` hops; `None` when no hop of
    /// the path saw it (only a point beside it did).
    fn of(p: &'a Packet, path: usize) -> Option<Self> {
        let mut seen: Vec<(usize, i64)> = p.at[..path]
            .iter()
            .enumerate()
            .filter_map(|(h, s)| match s {
                Sighting::Seen(t) => Some((h, *t)),
                _ => None,
            })
            .collect();
        if seen.is_empty() {
            return None;
        }
        if !p.fwd {
            seen.reverse();
        }
        // A return hop saw it or accounted for it: it crossed beside the path.
        let beside = p.at[path..]
            .iter()
            .any(|s| matches!(s, Sighting::Seen(_) | Sighting::Accounted));
        let end = |h: Option<usize>| match h.filter(|&h| h < path).map(|h| p.at[h]) {
            None => End::Path,
            Some(Sighting::Accounted) => End::Elsewhere,
            Some(_) if beside => End::Elsewhere,
            Some(Sighting::Uncaptured) => End::Uncaptured,
            Some(_) => End::Unseen,
        };
        let mut r = Rung {
            p,
            seen,
            from: End::Path,
            to: End::Path,
        };
        (r.from, r.to) = (end(r.prev_hop()), end(r.next_hop()));
        Some(r)
    }

    /// The hop it was first seen at, on its way, and the last.
    fn first_hop(&self) -> usize {
        self.seen[0].0
    }

    fn last_hop(&self) -> usize {
        self.seen[self.seen.len() - 1].0
    }

    /// The hop after the last that saw it, on its way (maybe past the path's end),
    /// and the hop before the first (`None` before the first hop).
    fn next_hop(&self) -> Option<usize> {
        let last = self.last_hop();
        if self.p.fwd {
            Some(last + 1)
        } else {
            last.checked_sub(1)
        }
    }

    fn prev_hop(&self) -> Option<usize> {
        let first = self.first_hop();
        if self.p.fwd {
            first.checked_sub(1)
        } else {
            Some(first + 1)
        }
    }
}

/// The packets of `p` drawn on a path of `path` hops, and how many of them come
/// before the packets left out (when some were).
fn rungs(p: &Packets, path: usize) -> (Vec<Rung<'_>>, Option<usize>) {
    let mut head = 0;
    let rungs = (p.rows.iter().enumerate())
        .filter_map(|(k, r)| {
            let rung = Rung::of(r, path)?;
            head += usize::from(k < p.head);
            Some(rung)
        })
        .collect();
    (rungs, (p.total > p.rows.len()).then_some(head))
}

/// One line of the diagram: a hop, or the point a path that stops short was expected
/// to reach.
struct Lane {
    /// Label lines, each a run of (text, highlighted) pieces: the point's name, the
    /// tuple, and what else is known of the hop.
    label: Vec<Vec<(String, bool)>>,
    /// The last label line is the hop's Community ID.
    community_id: bool,
    expected: bool,
}

/// The pieces of an endpoint, its address and its port (or ICMP id) highlighted as
/// asked.
fn endpoint(text: String, addr: &str, port: u16, hl: (bool, bool)) -> Vec<(String, bool)> {
    let Some(at) = text.find(addr) else {
        return vec![(text, hl.0 || hl.1)];
    };
    let (before, rest) = text.split_at(at);
    let (a, rest) = rest.split_at(addr.len());
    let port = port.to_string();
    let (mid, p) = if hl.1 && rest.ends_with(&port) {
        rest.split_at(rest.len() - port.len())
    } else {
        (rest, "")
    };
    let mut out = vec![(before.to_string(), false), (a.to_string(), hl.0)];
    out.push((mid.to_string(), false));
    out.push((p.to_string(), true));
    out.retain(|(s, _)| !s.is_empty());
    out
}

/// The tuple at a hop on two lines, source then destination, with the fields the
/// translation from the previous hop (`ch`) rewrote highlighted.
fn tuple_lines(t: &Tuple, ch: Option<&NatChange>) -> [Vec<(String, bool)>; 2] {
    let changed = |f: fn(&NatChange) -> bool| ch.is_some_and(f);
    let src = endpoint(
        fmt::src(t),
        &t.src.to_string(),
        t.sport,
        (
            changed(|c| c.src_addr_changed),
            changed(|c| c.sport_changed),
        ),
    );
    let mut dst = vec![("→ ".to_string(), false)];
    dst.extend(endpoint(
        fmt::dst(t),
        &t.dst.to_string(),
        t.dport,
        (
            changed(|c| c.dst_addr_changed),
            changed(|c| c.dport_changed),
        ),
    ));
    [src, dst]
}

/// Where a finding says the connection's path stopped short (its last hop's tuple is
/// one of the finding's `last-seen` tuples: `lost`, `snat-port-exhaustion`,
/// `conntrack-table-full`): the point it should have reached next, when the
/// finding's points name one after it, and when its packets were lost.
struct Stop {
    next: Option<String>,
    first_ns: i64,
    last_ns: i64,
}

/// Where connection `i` stopped short, if a finding says it did.
fn stopped(m: &Model, i: usize) -> Option<Stop> {
    let c = &m.correlation;
    let last = c.connections[i].hops.last()?;
    let name = &c.points[last.point].name;
    m.findings_of(i).find_map(|(f, _)| {
        f.tuples
            .iter()
            .any(|t| t.role == Role::LastSeen && &t.point == name && t.tuple == last.flow.tuple)
            .then_some(())?;
        let at = f.points.iter().position(|p| p == name);
        Some(Stop {
            next: at.and_then(|k| f.points.get(k + 1)).cloned(),
            first_ns: f.first_ns?,
            last_ns: f.last_ns?,
        })
    })
}

fn lanes(m: &Model, i: usize, expected: Option<&str>) -> Vec<Lane> {
    let c = &m.correlation;
    let conn = &c.connections[i];
    let mut out: Vec<Lane> = conn
        .hops
        .iter()
        .enumerate()
        .map(|(k, h)| {
            let change = k.checked_sub(1).map(|l| &conn.links[l].change);
            let mut label = vec![vec![(c.points[h.point].name.clone(), false)]];
            label.extend(tuple_lines(&h.flow.tuple, change));
            if let Some(r) = &h.reply_tuple {
                label.push(vec![("replies seen here as".to_string(), false)]);
                label.push(vec![(fmt::tuple(r), false)]);
            }
            for (what, t) in [
                ("in", h.flow.tunnel()),
                ("replies in", h.flow.reply_tunnel()),
            ] {
                if let Some(t) = t {
                    label.push(vec![(format!("{what} {}", fmt::tunnel_name(t)), false)]);
                    label.extend(tuple_lines(&t.outer, None));
                }
            }
            if let Some(s) = m.tcp_state(i, h) {
                label.push(vec![(s.to_string(), false)]);
            }
            let community_id = h.flow.community_id();
            if let Some(id) = &community_id {
                label.push(vec![(id.clone(), false)]);
            }
            Lane {
                label,
                community_id: community_id.is_some(),
                expected: false,
            }
        })
        .collect();
    if let Some(name) = expected {
        out.push(Lane {
            label: vec![
                vec![(name.to_string(), false)],
                vec![("not seen".to_string(), false)],
            ],
            community_id: false,
            expected: true,
        });
    }
    out
}

/// What to write between line `k` and the next, each with its style: the
/// translation, the rules that made it and the host's conntrack entry for it, or,
/// before the point a path was expected to reach, the rule that dropped its packets.
fn link_label(m: &Model, i: usize, conn: &Connection, k: usize) -> Vec<(String, &'static str)> {
    let rules = m.audit.rules.as_ref();
    let outcome = rules.zip(m.attribution(i).and_then(|a| a.outcome()));
    let name = |rules, r| {
        crate::report::rules::rule_json(rules, r).map(|j| format!("{} {}", j.table, j.chain))
    };
    let Some(l) = conn.links.get(k) else {
        let Some((rules, o)) = outcome.filter(|_| k + 1 == conn.hops.len()) else {
            return Vec::new();
        };
        let by = match &o.fate {
            Fate::Dropped { rule: Some(r), .. } => {
                name(rules, r).map(|n| format!("dropped by {n}"))
            }
            Fate::Dropped {
                rule: None,
                table,
                chain,
                ..
            } => rules
                .tables
                .get(*table)
                .map(|t| format!("dropped by the policy of {} {chain}", t.name)),
            Fate::Rejected { rule, .. } => name(rules, rule).map(|n| format!("rejected by {n}")),
            _ => None,
        };
        return by.into_iter().map(|w| (w, "drop")).collect();
    };
    let ch = &l.change;
    let mut out = Vec::new();
    if ch.kind != NatKind::None {
        out.push((ch.kind.to_string(), "nat"));
    }
    if let Some(pr) = &l.port_realloc {
        out.push((
            format!("port {} → {}", pr.wanted_sport, pr.got_sport),
            "rule",
        ));
    }
    if let Some((rules, o)) = outcome {
        let src = ch.src_addr_changed || ch.sport_changed;
        let dst = ch.dst_addr_changed || ch.dport_changed;
        for (n, changed) in [(&o.dnat, dst), (&o.snat, src)] {
            if let Some(n) = n.as_ref().filter(|_| changed) {
                out.extend(name(rules, &n.rule).map(|w| (w, "rule")));
            }
        }
    }
    // The host's conntrack entry, on the first link from its original tuple to the
    // tuple after its translation.
    if let Some(ct) = m.conntrack_entry(i).map(|x| &x.entry) {
        let between = |j: usize| {
            ct.orig == conn.hops[j].flow.tuple && ct.post() == conn.hops[j + 1].flow.tuple
        };
        if (0..conn.links.len()).find(|&j| between(j)) == Some(k) {
            let state = ct.state.as_deref().or(match (ct.unreplied, ct.assured) {
                (true, _) => Some("UNREPLIED"),
                (_, true) => Some("ASSURED"),
                _ => None,
            });
            out.push((format!("conntrack {}", state.unwrap_or("entry")), "ct"));
        }
    }
    out
}

fn chars(s: &str) -> i32 {
    s.chars().count() as i32
}

/// Pixels for a gap of `ns` between two sightings: two per bit of the gap in
/// microseconds, at most 40 (a second or more).
fn gap(ns: i64) -> i32 {
    if ns <= 0 {
        return 0;
    }
    let us = (ns / 1_000) as u64 + 1;
    (2 * (64 - us.leading_zeros()) as i32).min(40)
}

/// The vertical position of every sighting of every packet drawn (`band_at`: the
/// packets left out come before `rungs[band_at]`), the position of the band of the
/// packets not drawn, and the bottom of the last.
fn rows(rungs: &[Rung], band_at: Option<usize>, top: i32) -> (Vec<Vec<i32>>, Option<i32>, i32) {
    let mut events: Vec<(i64, usize, usize)> = rungs
        .iter()
        .enumerate()
        .flat_map(|(p, r)| r.seen.iter().enumerate().map(move |(j, &(_, t))| (t, p, j)))
        .collect();
    events.sort_unstable();
    let mut ys: Vec<Vec<i32>> = rungs.iter().map(|r| vec![0; r.seen.len()]).collect();
    let (mut y, mut last_start, mut prev) = (top, top - ROW, None);
    let mut band = None;
    for (t, p, j) in events {
        if let Some(prev) = prev {
            y += gap(t - prev);
        }
        if band.is_none() && band_at.is_some_and(|h| p >= h) {
            band = Some(y.max(last_start + ROW) + BREAK / 2);
            y = y.max(last_start + ROW) + BREAK;
            last_start = y - ROW;
        }
        if j == 0 {
            y = y.max(last_start + ROW);
            last_start = y;
        }
        ys[p][j] = y;
        prev = Some(t);
    }
    (ys, band, y)
}

/// `[S.]` for TCP, the length for other protocols.
fn packet_label(r: &Rung) -> String {
    match r.p.tcp_flags {
        Some(f) => format!("[{}]", tcp_flags::to_string(f)),
        None => format!("{} bytes", r.p.ip_len),
    }
}

/// Writes the ladder of connection `i` (nothing when its packets were not traced).
pub fn write(m: &Model, i: usize, out: &mut String) {
    let c = &m.correlation;
    let conn = &c.connections[i];
    let Some(packets) = conn.packets.as_deref() else {
        return;
    };
    let (rungs, band_at) = rungs(packets, conn.hops.len());
    let stop = stopped(m, i);
    let lanes = lanes(m, i, stop.as_ref().and_then(|s| s.next.as_deref()));
    let links: Vec<Vec<(String, &str)>> = (1..lanes.len())
        .map(|k| link_label(m, i, conn, k - 1))
        .collect();
    let widest = lanes
        .iter()
        .flat_map(|l| l.label.iter())
        .map(|line| line.iter().map(|(s, _)| chars(s)).sum::<i32>())
        .chain(links.iter().flatten().map(|(s, _)| chars(s)))
        .max()
        .unwrap_or(0);
    let col = (widest * CHAR_TENTHS / 10 + 28).max(240);
    let x0 = (LEFT + 30).max(col / 2);
    let x = |k: usize| x0 + col * k as i32;
    let label_lines = lanes.iter().map(|l| l.label.len()).max().unwrap_or(1) as i32;
    let link_lines = links.iter().map(Vec::len).max().unwrap_or(0) as i32;
    let header = 8 + LINE * (label_lines + link_lines) + 8;
    let top = header + 16;
    let (ys, band, bottom) = rows(&rungs, band_at, top);
    let width = x(lanes.len() - 1) + col / 2 + 8;
    let height = bottom + 28;
    let t0 = rungs.iter().map(|r| r.seen[0].1).min();
    let _ = writeln!(
        out,
        r#"<svg class="ladder" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" aria-label="packets of {} between {}">"#,
        esc(&conn.id),
        esc(&fmt::path_label(c, conn, ", "))
    );
    // The lines and their labels.
    for (k, lane) in lanes.iter().enumerate() {
        let x = x(k);
        for (n, line) in lane.label.iter().enumerate() {
            let cid = lane.community_id && n + 1 == lane.label.len();
            let class = match (n, lane.expected) {
                (0, _) => "pt",
                (_, true) => "nf",
                _ if cid => "cid",
                _ => "tu",
            };
            let _ = write!(
                out,
                r#"<text x="{x}" y="{}" class="{class}">"#,
                8 + LINE * (n as i32 + 1)
            );
            if cid {
                out.push_str("<title>Community ID</title>");
            }
            for (s, hl) in line {
                if *hl {
                    let _ = write!(out, r#"<tspan class="chg">{}</tspan>"#, esc(s));
                } else {
                    out.push_str(&esc(s));
                }
            }
            out.push_str("</text>\n");
        }
        let _ = writeln!(
            out,
            r#"<line x1="{x}" y1="{header}" x2="{x}" y2="{}" class="{}"/>"#,
            height - 8,
            if lane.expected { "lane exp" } else { "lane" }
        );
    }
    for (k, words) in links.iter().enumerate() {
        let mid = x(k) + col / 2;
        for (n, (w, class)) in words.iter().enumerate() {
            let y = 8 + LINE * (label_lines + n as i32 + 1);
            let _ = writeln!(
                out,
                r#"<text x="{mid}" y="{y}" class="{class}">{}</text>"#,
                esc(w)
            );
        }
    }
    if let Some(y) = band {
        let _ = writeln!(
            out,
            r#"<line x1="8" y1="{y}" x2="{}" y2="{y}" class="gap"/><text x="{}" y="{}" class="gapt">{} not drawn</text>"#,
            width - 8,
            width / 2,
            y - 4,
            fmt::plural(
                (packets.total - packets.rows.len()) as u64,
                "more packet",
                "more packets"
            )
        );
    }
    let frame = Frame {
        m,
        conn,
        xs: (0..lanes.len()).map(x).collect(),
        t0: t0.unwrap_or(0),
    };
    let name = |k: Option<usize>| match k.and_then(|k| conn.hops.get(k)) {
        Some(h) => c.points[h.point].name.as_str(),
        None => "the next point",
    };
    for (p, (r, ys)) in rungs.iter().zip(&ys).enumerate() {
        let t = r.seen[r.seen.len() - 1].1;
        // Where it was lost: at the next hop, or, for the initiator's packets at the
        // end of a path that stopped short, at the point it should have reached.
        let lost = match (r.to, &stop) {
            (End::Unseen, _) => Some(name(r.next_hop())),
            (End::Path, Some(s))
                if r.p.fwd
                    && r.last_hop() + 1 == conn.hops.len()
                    && (s.first_ns..=s.last_ns).contains(&t) =>
            {
                Some(s.next.as_deref().unwrap_or_else(|| name(None)))
            }
            _ => None,
        };
        frame.rung(r, ys, lost, p, out);
    }
    out.push_str("</svg>\n");
}

/// Where a ladder's lines are and when it starts.
struct Frame<'a> {
    m: &'a Model,
    conn: &'a Connection,
    /// The x of every lane.
    xs: Vec<i32>,
    /// The time the first packet drawn was first seen.
    t0: i64,
}

/// A run of straight segments of one packet's arrow.
struct Stroke {
    points: Vec<(i32, i32)>,
    /// Crossed in other packets: drawn dashed.
    dashed: bool,
}

impl Frame<'_> {
    /// One packet (the `p`-th drawn, at heights `ys`): its arrow from the first point
    /// that saw it to the last, a dashed stub where it crossed in other packets, a
    /// cross where it was lost, a circle where it appeared, its label and time.
    /// `lost` names the point it was not seen at, when it was lost.
    fn rung(&self, r: &Rung, ys: &[i32], lost: Option<&str>, p: usize, out: &mut String) {
        let dir = if r.p.fwd { 1 } else { -1 };
        let main: Vec<(i32, i32)> = r
            .seen
            .iter()
            .zip(ys)
            .map(|(&(h, _), &y)| (self.xs[h], y))
            .collect();
        let ((sx, sy), (lx, ly)) = (main[0], main[main.len() - 1]);
        let mut strokes: Vec<Stroke> = Vec::new();
        let mut add = |points: Vec<(i32, i32)>, dashed: bool| match strokes.last_mut() {
            Some(s) if !s.dashed && !dashed && s.points.last() == points.first() => {
                s.points.extend(&points[1..])
            }
            _ => strokes.push(Stroke { points, dashed }),
        };
        if r.from == End::Elsewhere {
            add(vec![(sx - dir * STUB, sy), (sx, sy)], true);
        }
        // Between hops not next to each other it crossed beside the path.
        for (k, w) in main.windows(2).enumerate() {
            let beside = r.seen[k].0.abs_diff(r.seen[k + 1].0) > 1;
            add(w.to_vec(), beside);
        }
        let stub = vec![(lx, ly), (lx + dir * STUB, ly)];
        match (lost, r.to) {
            (Some(_), _) => add(stub, false),
            (None, End::Elsewhere) => add(stub, true),
            // Seen at one point only: a tick shows which way it went.
            _ if main.len() == 1 && r.from != End::Elsewhere => add(stub, false),
            _ => {}
        }
        let class = if r.p.fwd { "pk f" } else { "pk r" };
        let _ = write!(
            out,
            r#"<g class="{class}" id="{}-p{}"><title>{}</title>"#,
            esc(&self.conn.id),
            p + 1,
            esc(&self.title(r, lost))
        );
        let arrow = if r.p.fwd { "arrow-f" } else { "arrow-r" };
        for (k, s) in strokes.iter().enumerate() {
            let points: Vec<String> = s.points.iter().map(|(x, y)| format!("{x},{y}")).collect();
            let _ = write!(
                out,
                r#"<polyline points="{}"{}{}/>"#,
                points.join(" "),
                if s.dashed { r#" class="else""# } else { "" },
                if k + 1 == strokes.len() && lost.is_none() {
                    format!(r#" marker-end="url(#{arrow})""#)
                } else {
                    String::new()
                }
            );
        }
        if r.from == End::Unseen {
            let _ = write!(out, r#"<circle cx="{sx}" cy="{sy}" r="3.5" class="new"/>"#);
        }
        if lost.is_some() {
            let _ = write!(
                out,
                r#"<path d="M{} {}l10 10m0 -10l-10 10" class="lost"/>"#,
                lx + dir * STUB - 5,
                ly - 5
            );
        }
        // The label above the middle of the first segment from the first point.
        let label_on = strokes
            .iter()
            .find(|s| s.points[0] == (sx, sy))
            .unwrap_or(&strokes[0]);
        let ((ax, ay), (bx, by)) = (label_on.points[0], label_on.points[1]);
        let _ = write!(
            out,
            r#"<text x="{}" y="{}" class="pl">{}</text><text x="{}" y="{}" class="tm">+{}</text></g>"#,
            (ax + bx) / 2,
            (ay + by) / 2 - 4,
            esc(&packet_label(r)),
            LEFT - 8,
            sy + 4,
            short_us(r.seen[0].1 - self.t0)
        );
        out.push('\n');
    }

    /// What a packet's tooltip says: who sent it, where and when it was seen, and what
    /// happened at its ends.
    fn title(&self, r: &Rung, lost: Option<&str>) -> String {
        let c = &self.m.correlation;
        let hops = &self.conn.hops;
        let name = |k: usize| c.points[hops[k].point].name.as_str();
        let seen: Vec<String> = r
            .seen
            .iter()
            .map(|&(h, t)| format!("{} {}", name(h), rfc3339_ns(t)))
            .collect();
        let who = if r.p.fwd { "initiator" } else { "responder" };
        let mut title = format!("{who} {}: {}", packet_label(r), seen.join(", "));
        // Where a point beside the path saw it (replies by another way).
        let beside: Vec<String> = (r.p.at[hops.len()..].iter().zip(&self.conn.returns))
            .filter_map(|(s, ret)| match s {
                Sighting::Seen(t) => Some(format!(
                    "{} {}",
                    c.points[ret.hop.point].name,
                    rfc3339_ns(*t)
                )),
                _ => None,
            })
            .collect();
        if !beside.is_empty() {
            let _ = write!(title, "; beside the path: {}", beside.join(", "));
        }
        let elsewhere = |end: End| end == End::Elsewhere && beside.is_empty();
        if let Some(at) = lost {
            let _ = write!(title, "; not seen at {at}");
        } else if elsewhere(r.to) {
            title.push_str("; crossed in other packets");
        }
        match (r.from, r.prev_hop().filter(|&k| k < hops.len())) {
            (End::Unseen, Some(k)) => {
                let _ = write!(title, "; not seen at {} before", name(k));
            }
            (from, _) if elsewhere(from) => title.push_str("; crossed to here in other packets"),
            _ => {}
        }
        title
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::FailOn;
    use crate::correlate::testkit::{point, tcp_conv, view, MS, US};
    use crate::correlate::{correlate, Config};

    fn pieces(v: &[(String, bool)]) -> Vec<(&str, bool)> {
        v.iter().map(|(s, h)| (s.as_str(), *h)).collect()
    }

    #[test]
    fn highlights_the_address_and_the_port_apart() {
        let v6 = endpoint("[2001:db8::1]:80".into(), "2001:db8::1", 80, (false, true));
        assert_eq!(
            pieces(&v6),
            [
                ("[", false),
                ("2001:db8::1", false),
                ("]:", false),
                ("80", true)
            ]
        );
        let icmp = endpoint("10.0.0.1 id=7".into(), "10.0.0.1", 7, (true, false));
        assert_eq!(pieces(&icmp), [("10.0.0.1", true), (" id=7", false)]);
        let bare = endpoint("10.0.0.1".into(), "10.0.0.1", 0, (false, true));
        assert_eq!(pieces(&bare), [("10.0.0.1", false)]);
    }

    #[test]
    fn each_end_of_a_packets_way_says_why_it_ends_there() {
        use Sighting::{Accounted, Seen, Uncaptured, Unseen};
        let ends = |fwd: bool, at: Vec<Sighting>, path: usize| {
            let p = Packet {
                fwd,
                tcp_flags: None,
                ip_len: 60,
                field_sets: Default::default(),
                at,
            };
            Rung::of(&p, path).map(|r| (r.seen.clone(), r.from, r.to))
        };
        // A reply through a point beside the path's last hop: in by another way.
        assert_eq!(
            ends(false, vec![Seen(30), Seen(20), Unseen, Seen(10)], 3),
            Some((vec![(1, 20), (0, 30)], End::Elsewhere, End::Path))
        );
        assert_eq!(
            ends(true, vec![Seen(0), Unseen, Unseen], 3),
            Some((vec![(0, 0)], End::Path, End::Unseen))
        );
        assert_eq!(
            ends(true, vec![Seen(0), Uncaptured], 2),
            Some((vec![(0, 0)], End::Path, End::Uncaptured))
        );
        assert_eq!(
            ends(true, vec![Accounted, Seen(5)], 2),
            Some((vec![(1, 5)], End::Elsewhere, End::Path))
        );
        // Seen only beside the path: nothing to draw on it.
        assert_eq!(ends(false, vec![Unseen, Unseen, Seen(1)], 2), None);
    }

    #[test]
    fn time_runs_down_and_labels_never_overlap() {
        // Initiator packets at hop 0 then 1, the responder's at hop 1 then 0.
        let packet = |t: i64, fwd: bool| {
            let (a, b) = (Sighting::Seen(t), Sighting::Seen(t + 30 * US));
            Packet {
                fwd,
                tcp_flags: None,
                ip_len: 60,
                field_sets: Default::default(),
                at: if fwd { vec![a, b] } else { vec![b, a] },
            }
        };
        // Packets 2µs apart, then a second later; the middle ones not drawn.
        const HEAD: usize = 48;
        let mut drawn: Vec<Packet> = (0..HEAD as i64)
            .map(|k| packet(k * 2 * US, k % 2 == 0))
            .collect();
        drawn.push(packet(1_000 * MS, true));
        let total = drawn.len() + 7;
        let p = Packets {
            rows: drawn,
            head: HEAD,
            total,
        };
        let (rungs, band_at) = rungs(&p, 2);
        assert_eq!(band_at, Some(HEAD));
        assert!(rungs
            .iter()
            .all(|r| r.from == End::Path && r.to == End::Path));
        let (ys, band, bottom) = rows(&rungs, band_at, 100);
        let starts: Vec<i32> = ys.iter().map(|y| y[0]).collect();
        assert_eq!(starts[0], 100);
        assert!(starts.windows(2).all(|w| w[1] - w[0] >= ROW), "{starts:?}");
        // Every arrow slopes down with its 30µs of latency.
        assert!(ys.iter().all(|y| y[1] > y[0]), "{ys:?}");
        let band = band.expect("packets were left out");
        assert!(
            ys[HEAD - 1][1] < band && band < starts[HEAD],
            "{band} {ys:?}"
        );
        assert_eq!(bottom, ys[HEAD][1]);
        // The gaps grow with the time between sightings, and stop growing.
        assert!(gap(0) == 0 && gap(US) < gap(MS) && gap(MS) < gap(1_000 * MS));
        assert_eq!(gap(1_000 * MS), gap(3_600_000 * MS));
    }

    #[test]
    fn draws_every_packet_the_rewritten_fields_and_the_lost_one() {
        let inside = tcp_conv(0, "172.17.0.2:40000", "198.51.100.7:443", 1000);
        let mut outside = view(&inside, "203.0.113.1:40000", "198.51.100.7:443", 30 * US, 1);
        // The request (an initiator's packet) never left.
        outside.remove(3);
        let points = vec![point("docker<0>", 0, &inside), point("eth0", 1, &outside)];
        let c = correlate(
            points,
            Vec::new(),
            Config {
                trace: crate::report::html::TRACE,
                ..Config::default()
            },
        );
        let audit = crate::audit::audit(&c, &Default::default(), Vec::new());
        let m = Model::new(c, audit, Vec::new(), FailOn::default());
        let mut svg = String::new();
        write(&m, 0, &mut svg);
        assert!(svg.starts_with("<svg class=\"ladder\""), "{svg}");
        assert_eq!(svg.matches("<g class=\"pk f\"").count(), 4, "{svg}");
        assert_eq!(svg.matches("<g class=\"pk r\"").count(), 2, "{svg}");
        // One cross, on the lost request, beside docker0.
        assert_eq!(svg.matches(r#"class="lost""#).count(), 1, "{svg}");
        assert!(
            svg.contains("[P.]: docker&lt;0&gt; 1970-01-01T00:00:00.003000000Z; not seen at eth0"),
            "{svg}"
        );
        // The point names escaped; at eth0 the source address rewritten, its port kept.
        assert!(svg.contains(">docker&lt;0&gt;</text>"), "{svg}");
        assert!(
            svg.contains(r#"<tspan class="chg">203.0.113.1</tspan>:40000</text>"#),
            "{svg}"
        );
        assert!(svg.contains(">172.17.0.2:40000</text>"), "{svg}");
        assert!(svg.contains(r#"class="nat">snat</text>"#), "{svg}");
    }
}
