//! The overview of the table report: the headline counts, the capture points, the
//! connections by path and translation, one line per connection; and the one-line
//! summaries of the witnesses and bundles at its top.

use std::fmt::Write as _;

use rayon::prelude::*;

use super::connection::kind_label;
use super::style::Paint;
use crate::audit::{WitnessKind, WitnessSummary};
use crate::correlate::Correlation;
use crate::report::fmt::{clock, path_label, plural, rfc3339_ns, secs};
use crate::report::table::{Align, Table};

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

/// One line per connection: id, proto, path, end-to-end translation, first and last
/// tuple (what NAT changed in it set apart).
pub fn connections_table(c: &Correlation, paint: Paint) -> Table {
    let headers = [
        ("id", Align::Left),
        ("proto", Align::Left),
        ("path", Align::Left),
        ("nat", Align::Left),
        ("first hop", Align::Left),
        ("last hop", Align::Left),
    ];
    // A line per connection, written on every core a run of connections at a time
    // into tables of their own (one buffer of text each, not a string a cell), put
    // one after the other.
    let parts: Vec<Table> = (c.connections.par_chunks(4096))
        .map(|run| {
            let mut t = Table::new(&headers);
            for conn in run {
                let first = &conn.hops[0].flow.tuple;
                let last = &conn.hops[conn.hops.len() - 1].flow.tuple;
                let shown = |t, before| paint.flow_tuple(t, conn.icmp_error(), before);
                t.row(vec![
                    conn.id.clone(),
                    conn.proto.to_string(),
                    path_label(c, conn, " > "),
                    kind_label(conn),
                    shown(first, None),
                    if conn.hops.len() > 1 {
                        shown(last, Some(first))
                    } else {
                        "-".into()
                    },
                ]);
            }
            t
        })
        .collect();
    let mut t = Table::new(&headers);
    t.append(parts);
    t
}

/// Headline counts.
pub fn summary_line(c: &Correlation) -> String {
    let mut by_kind: std::collections::BTreeMap<&str, usize> = Default::default();
    let mut single = 0;
    let mut realloc = 0;
    for conn in &c.connections {
        match conn.kind_token() {
            "single-point" => single += 1,
            "icmp-error" => *by_kind.entry("icmp error").or_insert(0) += 1,
            kind => *by_kind.entry(kind).or_insert(0) += 1,
        }
        realloc += conn
            .links
            .iter()
            .filter(|l| l.change.port_reallocated)
            .count();
    }
    let kinds: Vec<String> = by_kind.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let n = |k: usize| k as u64;
    let mut line = format!(
        "{}, {}: {} seen at several points ({}), {} at one point only; {}",
        plural(n(c.points.len()), "point", "points"),
        plural(n(c.connections.len()), "connection", "connections"),
        c.connections.len() - single,
        if kinds.is_empty() {
            "none".into()
        } else {
            kinds.join(", ")
        },
        single,
        plural(
            n(realloc),
            "source port reallocation",
            "source port reallocations"
        )
    );
    let control: u64 = (c.inputs.iter())
        .flat_map(|i| i.stats.control_flows.values())
        .sum();
    if control > 0 {
        let _ = write!(
            line,
            "; {} not listed (--all lists them)",
            plural(
                control,
                "link-local control flow",
                "link-local control flows"
            )
        );
    }
    if !c.range.is_all() {
        let outside: u64 = c.inputs.iter().map(|i| i.stats.outside_range).sum();
        let _ = write!(
            line,
            "; frames captured {} only ({} left out)",
            c.range,
            plural(outside, "other", "others")
        );
    }
    line
}

/// Connections by path and translation kind (computed on the polars frame).
#[cfg(feature = "frames")]
pub fn by_path_table(c: &Correlation, findings: &[u32]) -> Option<Table> {
    let df = crate::report::frame::connections(c, findings).ok()?;
    let s = crate::report::frame::summary(&df).ok()?;
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
        WitnessKind::Events => format!(
            "event log of {}",
            plural(w.entries as u64, "connection", "connections")
        ),
        kind => format!(
            "{} of {}",
            kind.as_str(),
            plural(w.entries as u64, "entry", "entries")
        ),
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

/// A bundle in one line: where and when it was collected (and, `lasted`, for how
/// long, else `+` its duration), why it stopped, what the kernel dropped, and what
/// could not be collected.
pub fn bundle_line(b: &crate::bundle::Summary, lasted: bool) -> String {
    let mut s = format!("{}: natcheck collect on {}", b.dir, b.host);
    if !b.kernel.is_empty() {
        let _ = write!(s, " (Linux {})", b.kernel);
    }
    if let Some(t) = b.started_ns {
        let _ = write!(s, ", {}", rfc3339_ns(t));
        if let Some(end) = b.stopped_ns {
            if lasted {
                let _ = write!(s, ", lasted {}", secs(end - t));
            } else {
                let _ = write!(s, " +{}", secs(end - t));
            }
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
