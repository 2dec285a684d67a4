//! The `natcheck conntrack` and `natcheck snapshot` reports: the
//! `natcheck.conntrack/1` JSON document and the table, from [`View`]s of the inputs.

use serde::Serialize;

use super::fmt::{rfc3339_ns, secs, tuple_proto};
use super::table::{Align, Table};
use crate::conntrack::{Entry, Event, Implied, Stripped, Timeline, View};
use crate::diag::Warning;
use crate::model::{Proto, Tuple};

/// A GRE tuple's keys, as conntrack prints them (`0x1a2b`).
#[derive(Serialize)]
struct GreKeys {
    srckey: String,
    dstkey: String,
}

impl GreKeys {
    fn of(t: &Tuple) -> Option<GreKeys> {
        (t.proto == Proto::Gre).then(|| GreKeys {
            srckey: format!("{:#x}", t.sport),
            dstkey: format!("{:#x}", t.dport),
        })
    }
}

#[derive(Serialize)]
struct EntryJson<'a> {
    #[serde(flatten)]
    entry: &'a Entry,
    /// The zone the table shows: `zone`, else the ORIGINAL direction's, else 0.
    zone_id: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    orig_keys: Option<GreKeys>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_keys: Option<GreKeys>,
    implied: Implied,
}

#[derive(Serialize)]
struct EventJson<'a> {
    kind: &'static str,
    time: Option<String>,
    line: u64,
    state: Option<&'a str>,
    timeout_s: Option<u64>,
}

#[derive(Serialize)]
struct TimelineJson<'a> {
    #[serde(flatten)]
    timeline: &'a Timeline,
    created: Option<String>,
    destroyed: Option<String>,
    /// What the latest event says NAT did.
    implied: Implied,
    #[serde(rename = "events")]
    event_list: Vec<EventJson<'a>>,
}

#[derive(Serialize)]
struct InputJson<'a> {
    source: &'a str,
    /// The network namespace a live dump was read in (`natcheck snapshot --netns`).
    #[serde(skip_serializing_if = "Option::is_none")]
    netns: Option<&'a str>,
    entries: Vec<EntryJson<'a>>,
    timelines: Vec<TimelineJson<'a>>,
    stats: Vec<(String, u64)>,
    cpus: usize,
    /// Settings pasted with the output: `[name, value]` pairs in file order.
    sysctls: Vec<(&'a str, &'a str)>,
    skipped_lines: u64,
    /// Lines read from inside a paste's decorations, by kind.
    stripped: Stripped,
    warnings: &'a [Warning],
}

#[derive(Serialize)]
struct Doc<'a> {
    schema: &'static str,
    inputs: Vec<InputJson<'a>>,
}

/// The `natcheck.conntrack/1` document of `views`, with a trailing newline.
pub fn document(views: &[View], netns: Option<&str>) -> serde_json::Result<String> {
    let doc = Doc {
        schema: "natcheck.conntrack/1",
        inputs: views.iter().map(|v| input_json(v, netns)).collect(),
    };
    let mut s = serde_json::to_string_pretty(&doc)?;
    s.push('\n');
    Ok(s)
}

fn input_json<'a>(v: &'a View<'a>, netns: Option<&'a str>) -> InputJson<'a> {
    let events = &v.dump.events;
    InputJson {
        source: &v.dump.source,
        netns,
        entries: v
            .entries
            .iter()
            .map(|(entry, implied)| EntryJson {
                entry,
                zone_id: entry.zone_id(),
                orig_keys: GreKeys::of(&entry.orig),
                reply_keys: GreKeys::of(&entry.reply),
                implied: *implied,
            })
            .collect(),
        timelines: v
            .timelines
            .iter()
            .map(|(t, implied)| TimelineJson {
                timeline: t,
                created: t.created_ns.map(rfc3339_ns),
                destroyed: t.destroyed_ns.map(rfc3339_ns),
                implied: *implied,
                event_list: t.events.iter().map(|&i| event_json(&events[i])).collect(),
            })
            .collect(),
        stats: v.dump.stats_total(),
        cpus: v.dump.stats.len(),
        sysctls: v
            .dump
            .sysctls
            .iter()
            .map(|s| (s.name.as_str(), s.value.as_str()))
            .collect(),
        skipped_lines: v.dump.skipped_lines,
        stripped: v.dump.stripped,
        warnings: &v.dump.warnings,
    }
}

fn event_json(e: &Event) -> EventJson<'_> {
    EventJson {
        kind: e.kind.as_str(),
        time: e.time_ns.map(rfc3339_ns).or_else(|| e.local_time.clone()),
        line: e.entry.line,
        state: e.entry.state.as_deref(),
        timeout_s: e.entry.timeout_s,
    }
}

/// `[UNREPLIED] [ASSURED]`-style status words, as conntrack prints them.
fn flags(e: &Entry) -> String {
    let f = &e.flags;
    let mut words: Vec<&str> = Vec::new();
    for (on, w) in [
        (f.unreplied, "UNREPLIED"),
        (f.assured, "ASSURED"),
        (f.offload, "OFFLOAD"),
        (f.hw_offload, "HW_OFFLOAD"),
    ] {
        if on {
            words.push(w);
        }
    }
    words.extend(f.other.iter().map(String::as_str));
    words.join(",")
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(String::new, |v| v.to_string())
}

/// A tuple cell: `tcp 10.0.0.1:1 -> 10.0.0.2:2`; GRE with its keys as conntrack
/// prints them.
fn tuple_cell(t: &Tuple) -> String {
    match GreKeys::of(t) {
        Some(k) => format!("{} srckey={} dstkey={}", tuple_proto(t), k.srckey, k.dstkey),
        None => tuple_proto(t),
    }
}

fn after(i: &Implied) -> String {
    if i.is_nat() {
        tuple_cell(&i.post)
    } else {
        "unchanged".into()
    }
}

/// The ZONE cell: the zone of both directions (0 by default), or `3/4` when the
/// ORIGINAL and REPLY directions have zones of their own that differ.
fn zone_cell(e: &Entry) -> String {
    match (e.zone_orig, e.zone_reply) {
        (o, r) if e.zone.is_none() && (o.is_some() || r.is_some()) && o != r => {
            format!("{}/{}", o.unwrap_or(0), r.unwrap_or(0))
        }
        _ => e.zone_id().to_string(),
    }
}

/// Counts of each NAT kind, for the input's heading.
fn kinds<'a>(it: impl Iterator<Item = &'a Implied>) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for i in it {
        let k = i.change.kind.to_string();
        match counts.iter_mut().find(|(n, _)| *n == k) {
            Some((_, c)) => *c += 1,
            None => counts.push((k, 1)),
        }
    }
    counts.sort();
    counts
        .iter()
        .map(|(k, c)| format!("{c} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `FILE: 6 entries; 4 connections in 12 events; NAT: 6 snat; ...`
fn heading(v: &View) -> String {
    let d = v.dump;
    let mut parts = Vec::new();
    if !d.entries.is_empty() || (d.events.is_empty() && d.stats.is_empty() && d.sysctls.is_empty())
    {
        parts.push(format!("{} entries", v.entries.len()));
    }
    if !d.events.is_empty() {
        parts.push(format!(
            "{} connections in {} events",
            v.timelines.len(),
            d.events.len()
        ));
    }
    let nat = kinds(
        v.entries
            .iter()
            .map(|(_, i)| i)
            .chain(v.timelines.iter().map(|(_, i)| i)),
    );
    if !nat.is_empty() {
        parts.push(format!("NAT: {nat}"));
    }
    if !d.stats.is_empty() {
        parts.push(format!("statistics of {} CPUs", d.stats.len()));
    }
    if !d.sysctls.is_empty() {
        parts.push(format!("{} sysctls", d.sysctls.len()));
    }
    if !d.warnings.is_empty() {
        parts.push(format!("{} warnings", d.warnings.len()));
    }
    format!("{}: {}\n", d.source, parts.join("; "))
}

/// One row per entry, with the translation it implies.
fn entries_table(v: &View) -> Table {
    let mut t = Table::new(&[
        ("LINE", Align::Right),
        ("STATE", Align::Left),
        ("ORIGINAL", Align::Left),
        ("AFTER NAT", Align::Left),
        ("NAT", Align::Left),
        ("FLAGS", Align::Left),
        ("TIMEOUT", Align::Right),
        ("MARK", Align::Right),
        ("ZONE", Align::Right),
        ("ID", Align::Right),
    ]);
    for (e, i) in &v.entries {
        t.row(vec![
            e.line.to_string(),
            opt(e.state.as_deref()),
            tuple_cell(&e.orig),
            after(i),
            i.label(),
            flags(e),
            opt(e.timeout_s),
            opt(e.mark),
            zone_cell(e),
            opt(e.id),
        ]);
    }
    t
}

/// One row per event-log connection.
fn timelines_table(v: &View) -> Table {
    let d = v.dump;
    let mut t = Table::new(&[
        ("LINE", Align::Right),
        ("CREATED", Align::Left),
        ("LIFETIME", Align::Right),
        ("ORIGINAL", Align::Left),
        ("AFTER NAT", Align::Left),
        ("NAT", Align::Left),
        ("EVENTS", Align::Left),
        ("LAST STATE", Align::Left),
        ("ZONE", Align::Right),
    ]);
    for (tl, i) in &v.timelines {
        let first = &d.events[tl.events[0]];
        let last = tl.last(&d.events);
        let lifetime = match (tl.created_ns, tl.destroyed_ns) {
            (Some(a), Some(b)) => secs(b - a),
            _ => String::new(),
        };
        let state = [
            last.entry.state.clone().unwrap_or_default(),
            flags(&last.entry),
        ]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
        let created = tl
            .created_ns
            .map(rfc3339_ns)
            .or_else(|| tl.saw_new.then(|| first.local_time.clone()).flatten());
        t.row(vec![
            first.entry.line.to_string(),
            opt(created),
            lifetime,
            tuple_cell(&tl.orig),
            after(i),
            i.label(),
            event_summary(&d.events, tl),
            state,
            zone_cell(&last.entry),
        ]);
    }
    t
}

/// The table of one input: a heading line, then entries, timelines and statistics.
pub fn table(v: &View) -> String {
    let d = v.dump;
    let mut out = heading(v);
    if !d.stripped.is_empty() {
        out.push_str(&format!(
            "  note: {} (stripped, not warnings)\n",
            d.stripped.note()
        ));
    }
    if !v.entries.is_empty() {
        out.push('\n');
        out.push_str(&entries_table(v).render("  "));
    }
    if !v.timelines.is_empty() {
        out.push('\n');
        out.push_str(&timelines_table(v).render("  "));
    }

    if !d.stats.is_empty() {
        let counters = d
            .stats_total()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        out.push_str(&format!(
            "\n  statistics, summed over {} CPU rows: {counters}\n",
            d.stats.len()
        ));
    }
    if !d.sysctls.is_empty() {
        out.push('\n');
        for s in &d.sysctls {
            out.push_str(&format!(
                "  {}:{}: {} = {}\n",
                d.source, s.line, s.name, s.value
            ));
        }
    }
    out
}

/// `NEW UPDATE×3 DESTROY`: the kinds of a timeline's events, runs collapsed.
fn event_summary(events: &[Event], t: &Timeline) -> String {
    let mut runs: Vec<(&str, usize)> = Vec::new();
    for &i in &t.events {
        let k = events[i].kind.as_str();
        match runs.last_mut() {
            Some((last, n)) if *last == k => *n += 1,
            _ => runs.push((k, 1)),
        }
    }
    runs.iter()
        .map(|(k, n)| {
            if *n == 1 {
                k.to_string()
            } else {
                format!("{k}×{n}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
