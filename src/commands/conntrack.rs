//! `natcheck conntrack FILE...`: what conntrack says happened. Each input (a
//! `conntrack -L` snapshot, `/proc/net/nf_conntrack`, a `conntrack -E` event log, or
//! `conntrack -S` statistics, in any mix) is parsed; snapshot entries are listed with
//! the translation each implies, event logs as one timeline per connection.

use std::collections::BTreeSet;
use std::io::{self, Write};
use std::net::IpAddr;

use serde::Serialize;

use super::{print_warnings, ExitStatus, Format};
use crate::conntrack::{self, Dump, Entry, Event, Implied, Timeline};
use crate::diag::Warning;
use crate::model::NatKind;
use crate::report::table::{Align, Table};
use crate::report::time::{rfc3339_ns, secs};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// conntrack output: `conntrack -L [-o extended,id,...]`, /proc/net/nf_conntrack,
    /// `conntrack -E [-o timestamp,...]`, `conntrack -S`; `.gz` is decompressed, `-`
    /// reads standard input.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<String>,

    /// Show only entries whose implied translation includes SNAT, DNAT, or any NAT.
    #[arg(long, value_enum, value_name = "KIND")]
    pub nat: Option<NatFilter>,

    /// Addresses of the NAT host, so that DNAT to them reads as REDIRECT. Addresses the
    /// entries show the host masquerading with are known without it.
    #[arg(long = "host-addr", value_name = "IP")]
    pub host_addrs: Vec<IpAddr>,

    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum NatFilter {
    Snat,
    Dnat,
    Any,
}

impl NatFilter {
    fn keeps(self, kind: NatKind) -> bool {
        match self {
            NatFilter::Snat => kind.has_snat(),
            NatFilter::Dnat => kind.has_dnat(),
            NatFilter::Any => kind != NatKind::None,
        }
    }
}

#[derive(Serialize)]
struct EntryJson<'a> {
    #[serde(flatten)]
    entry: &'a Entry,
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
    skipped_lines: u64,
    warnings: &'a [Warning],
}

#[derive(Serialize)]
struct Doc<'a> {
    schema: &'static str,
    inputs: Vec<InputJson<'a>>,
}

/// One input with its entries and timelines, filtered and with their translations.
pub(super) struct View<'a> {
    dump: &'a Dump,
    entries: Vec<(&'a Entry, Implied)>,
    timelines: Vec<(Timeline, Implied)>,
}

pub(super) fn view<'a>(
    dump: &'a Dump,
    host: &BTreeSet<IpAddr>,
    filter: Option<NatFilter>,
) -> View<'a> {
    let keep = |i: &Implied| filter.is_none_or(|f| f.keeps(i.change.kind));
    let entries = dump
        .entries
        .iter()
        .map(|e| (e, Implied::of(e, host)))
        .filter(|(_, i)| keep(i))
        .collect();
    let timelines = conntrack::timelines(&dump.events)
        .into_iter()
        .map(|t| {
            let i = Implied::of(&t.last(&dump.events).entry, host);
            (t, i)
        })
        .filter(|(_, i)| keep(i))
        .collect();
    View {
        dump,
        entries,
        timelines,
    }
}

pub fn run(args: &Args) -> anyhow::Result<ExitStatus> {
    let stdin_uses = args.files.iter().filter(|f| f.as_str() == "-").count();
    anyhow::ensure!(stdin_uses <= 1, "standard input (-) can be read only once");
    let dumps = args
        .files
        .iter()
        .map(|f| conntrack::read_path(f))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut host: BTreeSet<IpAddr> = args.host_addrs.iter().copied().collect();
    for d in &dumps {
        host.extend(conntrack::host_addresses(d.all_entries()));
    }
    let views: Vec<View> = dumps.iter().map(|d| view(d, &host, args.nat)).collect();

    let out = match args.format {
        Format::Json => document(&views, None)?,
        Format::Table => views.iter().map(render).collect::<Vec<_>>().join("\n"),
    };
    io::stdout().lock().write_all(out.as_bytes())?;
    let warned = print_warnings(dumps.iter().flat_map(|d| &d.warnings));
    Ok(if warned {
        ExitStatus::Error
    } else {
        ExitStatus::Clean
    })
}

/// The `natcheck.conntrack/1` document of `views`, with a trailing newline.
pub(super) fn document(views: &[View], netns: Option<&str>) -> serde_json::Result<String> {
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
        skipped_lines: v.dump.skipped_lines,
        warnings: &v.dump.warnings,
    }
}

fn event_json(e: &Event) -> EventJson<'_> {
    EventJson {
        kind: e.kind.as_str(),
        time: e.time_ns.map(rfc3339_ns),
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

fn after(i: &Implied) -> String {
    if i.is_nat() {
        i.post.to_string()
    } else {
        "unchanged".into()
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

fn render(v: &View) -> String {
    let d = v.dump;
    let mut out = String::new();
    let mut parts = Vec::new();
    if !d.entries.is_empty() || (d.events.is_empty() && d.stats.is_empty()) {
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
    if !d.warnings.is_empty() {
        parts.push(format!("{} warnings", d.warnings.len()));
    }
    out.push_str(&format!("{}: {}\n", d.source, parts.join("; ")));

    if !v.entries.is_empty() {
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
                e.orig.to_string(),
                after(i),
                i.label(),
                flags(e),
                opt(e.timeout_s),
                opt(e.mark),
                e.zone_id().to_string(),
                opt(e.id),
            ]);
        }
        out.push('\n');
        out.push_str(&t.render("  "));
    }

    if !v.timelines.is_empty() {
        let mut t = Table::new(&[
            ("LINE", Align::Right),
            ("CREATED", Align::Left),
            ("LIFETIME", Align::Right),
            ("ORIGINAL", Align::Left),
            ("AFTER NAT", Align::Left),
            ("NAT", Align::Left),
            ("EVENTS", Align::Left),
            ("LAST STATE", Align::Left),
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
            t.row(vec![
                first.entry.line.to_string(),
                opt(tl.created_ns.map(rfc3339_ns)),
                lifetime,
                tl.orig.to_string(),
                after(i),
                i.label(),
                event_summary(&d.events, tl),
                state,
            ]);
        }
        out.push('\n');
        out.push_str(&t.render("  "));
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
