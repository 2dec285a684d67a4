//! The conntrack witness as the audit sees it: snapshots of [`CtEntry`] (a view
//! holding only what the `ct-*` rules use, so the audit does not depend on how the
//! `conntrack` module parses each text form), where each entry sits on the wire, the
//! snapshot's time, and what each input contributed ([`WitnessSummary`]).
//!
//! Matching: an entry belongs to a wire connection when its ORIGINAL tuple is the
//! tuple of one of the connection's hops (in the initiator's direction). What the
//! entry says NAT did is ORIGINAL → reverse(REPLY); what the wire says is the tuple at
//! the hop after the last hop carrying ORIGINAL.
//!
//! Time: `conntrack -L` prints no time. A snapshot's time, in the captures' corrected
//! clock, is taken from the entries themselves: an entry with `T` seconds left of a
//! state timeout `F` was last refreshed `F − T` seconds before the snapshot, and its
//! connection's last packet is no later than that refresh, so `last + (F − T)` bounds
//! the snapshot time from above; the smallest bound over the matched entries is the
//! estimate (connections that went on after the snapshot only give looser bounds).
//! Kernel default timeouts are assumed (nf_conntrack-sysctl.rst); an entry whose
//! timeout exceeds its state's default says the defaults do not hold and is not used.
//! Checks that need the time are skipped when no estimate exists.

use std::collections::BTreeMap;

use foldhash::{HashMap, HashMapExt, HashSet};
use smallvec::SmallVec;

use super::EntryFacts;
use crate::correlate::Correlation;
use crate::model::{CtTimeouts, NatChange, Proto, Tuple};

/// One conntrack entry as the audit uses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CtEntry {
    /// Where it was read: the file as given and its 1-based line.
    pub source: String,
    pub line: u64,
    pub orig: Tuple,
    pub reply: Tuple,
    /// TCP (or SCTP/DCCP) state as printed, e.g. `ESTABLISHED`.
    pub state: Option<String>,
    pub unreplied: bool,
    pub assured: bool,
    pub zone: u16,
    /// Seconds left before the entry expires, when printed.
    pub timeout_s: Option<u64>,
    /// The kernel's entry id (`-o id`) and `mark=`, when printed.
    pub id: Option<u32>,
    pub mark: Option<u32>,
    /// The NAT helper assigned to it (`helper=ftp`), when printed.
    pub helper: Option<String>,
    /// An event log's entry whose ORIGINAL tuple had other entries in the log (the
    /// tuple used again after its entry went): the part of the log's time it stood
    /// for the tuple.
    pub era: Option<Era>,
}

/// When an event log shows an entry created, and the next entry of its ORIGINAL
/// tuple (if any): the time the entry stood for the tuple. A connection on the tuple
/// is that entry's when its first packet falls in the era (give or take
/// [`Era::SLACK_NS`]: a packet is captured before conntrack confirms its entry, and
/// the log's clock is the NAT host's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Era {
    pub created_ns: i64,
    pub next_ns: Option<i64>,
}

impl Era {
    pub const SLACK_NS: i64 = 1_000_000_000;

    /// Whether a connection whose first packet is at `first_ns` falls in the era.
    pub fn holds(&self, first_ns: i64) -> bool {
        let at = first_ns.saturating_add(Self::SLACK_NS);
        at >= self.created_ns && self.next_ns.is_none_or(|n| at < n)
    }
}

impl CtEntry {
    /// The tuple after NAT, in the initiator's direction.
    pub fn post(&self) -> Tuple {
        self.reply.reversed()
    }

    pub fn change(&self) -> NatChange {
        NatChange::between(&self.orig, &self.post())
    }

    /// `file:line`.
    pub fn place(&self) -> String {
        format!("{}:{}", self.source, self.line)
    }

    /// The entry as evidence.
    pub fn facts(&self) -> EntryFacts {
        EntryFacts {
            source: self.source.clone(),
            line: self.line,
            orig: self.orig,
            reply: self.reply,
            state: self.state.clone(),
            unreplied: self.unreplied,
            assured: self.assured,
        }
    }

    /// The state's full timeout in seconds: the host's for an established TCP entry, a
    /// UDP and an ICMP one (`timeouts`: its settings when given, else the kernel's
    /// defaults), the kernel's defaults for the others.
    pub fn full_timeout_s(&self, timeouts: &CtTimeouts) -> u64 {
        let s = |ns: i64| (ns / 1_000_000_000).max(0) as u64;
        match self.orig.proto {
            Proto::Tcp => match self.state.as_deref() {
                Some("SYN_SENT") | Some("SYN_SENT2") => 120,
                Some("SYN_RECV") => 60,
                Some("ESTABLISHED") => s(timeouts.tcp_established_ns),
                Some("FIN_WAIT") | Some("TIME_WAIT") => 120,
                Some("CLOSE_WAIT") => 60,
                Some("LAST_ACK") => 30,
                Some("CLOSE") => 10,
                _ => 300,
            },
            Proto::Udp if self.assured => s(timeouts.udp_stream_ns),
            Proto::Udp => s(timeouts.udp_ns),
            Proto::Icmp => s(timeouts.icmp_ns),
            Proto::Icmpv6 => s(timeouts.icmpv6_ns),
            _ => 600,
        }
    }
}

impl CtEntry {
    /// The audit's view of a parsed entry read from `source`.
    pub fn from_entry(source: &str, e: &crate::conntrack::Entry) -> CtEntry {
        CtEntry {
            source: source.to_string(),
            line: e.line,
            orig: e.orig,
            reply: e.reply,
            state: e.state.clone(),
            unreplied: e.flags.unreplied,
            assured: e.flags.assured,
            zone: e.zone_id(),
            timeout_s: e.timeout_s,
            id: e.id,
            mark: e.mark,
            helper: (e.extra.iter()).find_map(|(k, v)| (k == "helper").then(|| v.clone())),
            era: None,
        }
    }
}

/// One conntrack snapshot (`conntrack -L`, `/proc/net/nf_conntrack`), or the
/// connections of an event log (`conntrack -E`).
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub source: String,
    pub entries: Vec<CtEntry>,
    /// The snapshot's time on the captures' corrected clock, when known from outside
    /// (otherwise estimated from the entries).
    pub time_ns: Option<i64>,
    /// The entries are an event log's connections (the latest event of each), not a
    /// table at one instant: only the translations are checked, since presence,
    /// `[UNREPLIED]` and shared reply tuples depend on when each event was printed.
    pub from_events: bool,
}

impl Snapshot {
    /// The snapshots an input holds: its table lines as one, its event log as another.
    pub fn from_dump(d: &crate::conntrack::Dump) -> Vec<Snapshot> {
        let mut out = Vec::new();
        if !d.entries.is_empty() {
            out.push(Snapshot {
                source: d.source.clone(),
                entries: d
                    .entries
                    .iter()
                    .map(|e| CtEntry::from_entry(&d.source, e))
                    .collect(),
                time_ns: d.time_ns,
                from_events: false,
            });
        }
        if !d.events.is_empty() {
            let timelines = crate::conntrack::timelines(&d.events);
            // The creation times of each ORIGINAL tuple's entries, in order.
            let mut created: HashMap<(u16, Tuple), Vec<i64>> = HashMap::new();
            for t in &timelines {
                if let Some(at) = t.created_ns {
                    created.entry((t.zone, t.orig)).or_default().push(at);
                }
            }
            created.values_mut().for_each(|v| v.sort_unstable());
            let era = |t: &crate::conntrack::Timeline| {
                let all = created.get(&(t.zone, t.orig)).filter(|v| v.len() > 1)?;
                let created_ns = t.created_ns?;
                let next_ns = all.iter().copied().find(|&at| at > created_ns);
                Some(Era {
                    created_ns,
                    next_ns,
                })
            };
            out.push(Snapshot {
                source: d.source.clone(),
                entries: timelines
                    .iter()
                    .map(|t| CtEntry {
                        era: era(t),
                        ..CtEntry::from_entry(&d.source, &t.last(&d.events).entry)
                    })
                    .collect(),
                time_ns: None,
                from_events: true,
            });
        }
        out
    }
}

/// A `[DESTROY]` event of an event log: which connection's entry went, when, and
/// whether a program removed it (`[USERSPACE]`: `conntrack -D`, a flush, a proxy's
/// cleanup) rather than a timeout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destroyed {
    pub source: String,
    pub line: u64,
    pub time_ns: Option<i64>,
    pub orig: Tuple,
    /// `progname=` or `portid=` of the program, when a program caused it.
    pub by: Option<String>,
}

impl Destroyed {
    /// The DESTROY events of every event log among the inputs.
    pub fn of(dumps: &[&crate::conntrack::Dump]) -> Vec<Destroyed> {
        let mut out = Vec::new();
        for d in dumps {
            for e in &d.events {
                if e.kind != crate::conntrack::EventKind::Destroy {
                    continue;
                }
                let userspace = e.entry.flags.other.iter().any(|w| w == "USERSPACE");
                let named = |k: &str| {
                    e.entry
                        .extra
                        .iter()
                        .find(|(n, _)| n == k)
                        .map(|(_, v)| format!("{k}={v}"))
                };
                out.push(Destroyed {
                    source: d.source.clone(),
                    line: e.entry.line,
                    time_ns: e.time_ns,
                    orig: e.entry.orig,
                    by: userspace.then(|| {
                        named("progname")
                            .or_else(|| named("portid"))
                            .unwrap_or_else(|| "a program".into())
                    }),
                });
            }
        }
        out
    }
}

/// A connection's entry as an event log saw it live: the tuple after NAT it held, from
/// its `[NEW]` until it stopped holding it (destroyed, or a TCP entry closed), or,
/// with neither logged, until its latest event plus that state's timeout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lifetime {
    pub source: String,
    /// The line of its `[NEW]` event.
    pub line: u64,
    /// The tuple after NAT, in the initiator's direction (the reverse of REPLY).
    pub post: Tuple,
    pub created_ns: i64,
    pub ended_ns: i64,
}

/// For each connection, whether its opening was not seen: packets at or before `cut`
/// were discarded, and no event log shows its entry created after `cut` (its `[NEW]`
/// came with its first packet, which was kept). Its first packet captured is then
/// no connection's first packet, nor is its sender known to have opened it.
pub fn openings_unseen(c: &Correlation, lifetimes: &[Lifetime], cut: i64) -> Vec<bool> {
    let created: HashSet<Tuple> = lifetimes
        .iter()
        .filter(|l| l.created_ns > cut)
        .map(|l| l.post.canonical())
        .collect();
    c.connections
        .iter()
        .map(|conn| {
            !conn
                .hops
                .iter()
                .any(|h| created.contains(&h.flow.tuple.canonical()))
        })
        .collect()
}

/// For each connection of captures read from `since` on (`--since`), whether it was
/// open before: an event log shows its entry created before `since` and still held
/// then, or it is TCP and no hop saw its SYN. Its first packet read is then not its
/// first packet (the one nat rules saw), nor is its sender known to have opened it.
/// UDP and ICMP without an event log are taken as opened where first seen.
pub fn opened_before(c: &Correlation, lifetimes: &[Lifetime], since: i64) -> Vec<bool> {
    let open: HashSet<Tuple> = lifetimes
        .iter()
        .filter(|l| l.created_ns < since && l.ended_ns >= since)
        .map(|l| l.post.canonical())
        .collect();
    c.connections
        .iter()
        .map(|conn| {
            let logged = conn
                .hops
                .iter()
                .any(|h| open.contains(&h.flow.tuple.canonical()));
            let no_syn = conn.proto == Proto::Tcp && !conn.all_hops().any(|h| h.flow.tcp.syn);
            logged || no_syn
        })
        .collect()
}

impl Lifetime {
    /// The lifetimes of every connection whose `[NEW]` the event logs hold with a time.
    pub fn of(dumps: &[&crate::conntrack::Dump]) -> Vec<Lifetime> {
        let timeouts = crate::conntrack::Dump::timeouts(dumps.iter().copied());
        let mut out = Vec::new();
        for d in dumps {
            for t in crate::conntrack::timelines(&d.events) {
                let (Some(created_ns), Some(&first)) = (t.created_ns, t.events.first()) else {
                    continue;
                };
                let new = &d.events[first];
                let mut ended_ns = t.destroyed_ns;
                let mut latest = (created_ns, &new.entry);
                for &i in &t.events {
                    let ev = &d.events[i];
                    let Some(at) = ev.time_ns else { continue };
                    latest = (at, &ev.entry);
                    let closed = matches!(ev.entry.state.as_deref(), Some("TIME_WAIT" | "CLOSE"));
                    if closed && ended_ns.is_none_or(|e| at < e) {
                        ended_ns = Some(at);
                    }
                }
                let (at, entry) = latest;
                let timeout =
                    CtEntry::from_entry(&d.source, entry).full_timeout_s(&timeouts) as i64;
                out.push(Lifetime {
                    source: d.source.clone(),
                    line: new.entry.line,
                    post: new.entry.reply.reversed(),
                    created_ns,
                    ended_ns: ended_ns.unwrap_or(at.saturating_add(timeout * 1_000_000_000)),
                });
            }
        }
        out
    }

    /// `file:line` of its `[NEW]` event.
    pub fn place(&self) -> String {
        format!("{}:{}", self.source, self.line)
    }
}

/// The `conntrack -S` counters the inputs give, by name: one reading's totals over
/// the CPUs (counted since the namespace's conntrack started), or, with several
/// readings, how much each counter grew from the first to the last (in time order
/// when every reading has a time, else in input order). A counter that went down (a
/// reboot, a reading of another host) leaves the growth unknown: the last reading then
/// stands alone. The `entries` column of `/proc/net/stat/nf_conntrack` is the table's
/// size, not a counter: [`TableSize`] has it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub counts: BTreeMap<String, u64>,
    /// The earlier reading the counts grew from, when they are a growth.
    pub since: Option<String>,
}

impl Stats {
    pub fn of(dumps: &[&crate::conntrack::Dump]) -> Stats {
        let mut readings: Vec<(&str, Option<i64>, BTreeMap<String, u64>)> = dumps
            .iter()
            .filter(|d| !d.stats.is_empty())
            .map(|d| {
                let counts = d
                    .stats_total()
                    .into_iter()
                    .filter(|(k, _)| k != "entries")
                    .collect();
                (d.source.as_str(), d.time_ns, counts)
            })
            .collect();
        if readings.iter().all(|(_, t, _)| t.is_some()) {
            readings.sort_by_key(|(_, t, _)| *t);
        }
        let (Some((first, _, before)), Some((_, _, after))) = (readings.first(), readings.last())
        else {
            return Stats::default();
        };
        let grown: Option<BTreeMap<String, u64>> = (readings.len() > 1)
            .then(|| {
                after
                    .iter()
                    .filter_map(|(k, v)| Some((k, v, before.get(k)?)))
                    .map(|(k, v, b)| v.checked_sub(*b).map(|g| (k.clone(), g)))
                    .collect()
            })
            .flatten();
        match grown {
            Some(counts) => Stats {
                counts,
                since: Some(first.to_string()),
            },
            None => Stats {
                counts: after.clone(),
                since: None,
            },
        }
    }
}

/// A number the inputs give about the table, and where: `file:line` of a setting or
/// a statistics row, or the file of a listing.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Setting {
    pub value: u64,
    pub place: String,
}

/// Every numeric setting the inputs carry, by name, where it was given: the last
/// input, and its last line, wins.
pub fn settings(dumps: &[&crate::conntrack::Dump]) -> BTreeMap<String, Setting> {
    let mut out = BTreeMap::new();
    for d in dumps {
        for s in &d.sysctls {
            if let Ok(value) = s.value.parse() {
                out.insert(
                    s.name.clone(),
                    Setting {
                        value,
                        place: format!("{}:{}", d.source, s.line),
                    },
                );
            }
        }
    }
    out
}

/// How large the table may grow and how full the inputs show it: the settings
/// `nf_conntrack_max` (one limit for the whole machine; `net.nf_conntrack_max` is the
/// same) and `nf_conntrack_buckets`, and every entry count they give: the
/// `nf_conntrack_count` setting, the `entries` of `/proc/net/stat/nf_conntrack`, and
/// the entries of each table listing (`conntrack -L`, `/proc/net/nf_conntrack`). The
/// count is per network namespace: each input counts the namespace it was taken in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableSize {
    pub max: Option<Setting>,
    pub buckets: Option<Setting>,
    pub counts: Vec<Setting>,
}

impl TableSize {
    pub fn of(dumps: &[&crate::conntrack::Dump]) -> TableSize {
        let mut out = TableSize::default();
        let setting = |d: &crate::conntrack::Dump, names: &[&str]| {
            let s = names.iter().find_map(|n| d.sysctl(n))?;
            Some(Setting {
                value: s.value.parse().ok()?,
                place: format!("{}:{}", d.source, s.line),
            })
        };
        for d in dumps {
            out.max = setting(
                d,
                &["net.netfilter.nf_conntrack_max", "net.nf_conntrack_max"],
            )
            .or(out.max.take());
            out.buckets =
                setting(d, &["net.netfilter.nf_conntrack_buckets"]).or(out.buckets.take());
            out.counts
                .extend(setting(d, &["net.netfilter.nf_conntrack_count"]));
            let entries = d.stats_total().into_iter().find(|(k, _)| k == "entries");
            if let (Some((_, value)), Some(row)) = (entries, d.stats.first()) {
                out.counts.push(Setting {
                    value,
                    place: format!("{}:{}", d.source, row.line),
                });
            }
            if !d.entries.is_empty() {
                out.counts.push(Setting {
                    value: d.entries.len() as u64,
                    place: d.source.clone(),
                });
            }
        }
        out
    }

    /// The largest count, when the limit is known and the count reaches 95 % of it:
    /// then new entries are about to or do need early drop (the kernel's own
    /// threshold for evicting from its garbage collector).
    pub fn at_limit(&self) -> Option<&Setting> {
        let max = self.max.as_ref()?.value;
        self.counts
            .iter()
            .max_by_key(|s| s.value)
            .filter(|s| max > 0 && s.value.saturating_mul(100) >= max.saturating_mul(95))
    }
}

/// Uncertainty of an estimated snapshot time: timeouts are printed in whole seconds
/// (rounded down), so the estimate is the middle of a one-second interval. A time
/// given from outside is taken as exact but for clock jitter.
const ESTIMATE_SLACK_NS: i64 = 1_000_000_000;
const GIVEN_SLACK_NS: i64 = 10_000_000;

/// A snapshot's time and how far off it may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapTime {
    pub ns: i64,
    pub slack_ns: i64,
    /// Whether the time was recorded when the table was taken (a bundle's
    /// manifest), not estimated from the entries.
    pub recorded: bool,
}

/// Where an entry sits on the wire: (connection, index of the last hop carrying
/// ORIGINAL). The same connection may carry ORIGINAL at several hops (a veth and its
/// bridge); the translation follows the last of them. When several connections carry
/// it, the one whose later hops show the entry's translation wins (a tuple used
/// again after its entry expired is translated afresh, perhaps otherwise: each
/// entry is its own connection's), then the one that goes on past it (packets that
/// leaked under the inside tuple go nowhere), then the first. An event log's entry of
/// a tuple that had several is only ever the one of a connection in its [`Era`].
pub fn locate(c: &Correlation, idx: &HopIndex, e: &CtEntry) -> Option<(usize, usize)> {
    let post = e.post();
    let in_era = |ci: usize| {
        e.era
            .is_none_or(|era| era.holds(c.connections[ci].first_ns()))
    };
    let candidates = idx.get(&e.orig)?.iter().copied();
    candidates
        .filter(|&(ci, _)| in_era(ci))
        .max_by_key(|&(ci, h)| {
            let hops = &c.connections[ci].hops;
            (
                hops[h + 1..].iter().any(|x| x.flow.tuple == post),
                h + 1 < hops.len(),
                std::cmp::Reverse(ci),
                h,
            )
        })
}

/// Whether an entry located at hop `hi` of `conn` has its translated tuple `post` on
/// the wire after it: at some later hop (the translation may show in steps: DNAT as a
/// bridge with bridge netfilter receives the packet, SNAT at the uplink), or `hi` is
/// the last hop, so nothing after it was captured.
pub fn translated_downstream(conn: &crate::correlate::Connection, hi: usize, post: &Tuple) -> bool {
    conn.hops
        .get(hi + 1..)
        .is_none_or(|later| later.is_empty() || later.iter().any(|h| h.flow.tuple == *post))
}

/// The connection an entry stands for when its translation happened before the first
/// capture point: its ORIGINAL tuple is no hop, and the tuple after NAT is the first
/// hop of a connection (the lowest, when several).
pub fn upstream(idx: &HopIndex, e: &CtEntry) -> Option<usize> {
    let post = e.post();
    if post == e.orig || idx.contains_key(&e.orig) {
        return None;
    }
    (idx.get(&post)?.iter())
        .filter(|&&(_, h)| h == 0)
        .map(|&(ci, _)| ci)
        .min()
}

/// Each connection translated before its first hop ([`upstream`]) with the entry that
/// says so: from the first table, then event log, in input order that has one.
pub fn upstream_entries<'s>(idx: &HopIndex, snaps: &'s [Snapshot]) -> BTreeMap<usize, &'s CtEntry> {
    let mut first = BTreeMap::new();
    let tables = snaps.iter().filter(|s| !s.from_events);
    let logs = snaps.iter().filter(|s| s.from_events);
    for e in tables.chain(logs).flat_map(|s| &s.entries) {
        if let Some(ci) = upstream(idx, e) {
            first.entry(ci).or_insert(e);
        }
    }
    first
}

/// Whether an event log's entry is the one a connection was carried on under after
/// its earlier entry went (`state-lost`): its ORIGINAL is the hop of connections of
/// other eras only, and its tuple after NAT the hop of a connection of its own era
/// (the flow NAT sent the connection's later packets on as). The wire shows it as it
/// says.
pub fn carried_on(c: &Correlation, idx: &HopIndex, e: &CtEntry) -> bool {
    let Some(era) = e.era else {
        return false;
    };
    let post = e.post();
    let in_era = |hops: &SmallVec<[(usize, usize); 1]>| {
        (hops.iter()).any(|&(ci, _)| era.holds(c.connections[ci].first_ns()))
    };
    post != e.orig
        && idx.get(&e.orig).is_some_and(|h| !in_era(h))
        && idx.get(&post).is_some_and(in_era)
}

/// Where each tuple is a hop: tuple → (connection, hop).
pub type HopIndex = HashMap<Tuple, SmallVec<[(usize, usize); 1]>>;

/// The [`HopIndex`] of a correlation: built once a run, beside the topology, and only
/// when conntrack tables are given (it places their entries; [`super::audit`]), or by
/// [`super::Ctx::new`].
pub fn index(c: &Correlation) -> HopIndex {
    let mut idx = HopIndex::with_capacity(c.connections.len() * 2);
    for (ci, conn) in c.connections.iter().enumerate() {
        for (hi, h) in conn.hops.iter().enumerate() {
            idx.entry(h.flow.tuple).or_default().push((ci, hi));
        }
    }
    idx
}

/// A connection's entry in a conntrack table (its ORIGINAL tuple is the tuple of one
/// of the connection's hops).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CtMatch {
    pub conn: usize,
    pub entry: CtEntry,
}

/// Each connection's entry in the tables (snapshots, not event logs), in connection
/// order: from the last table, in input order, that holds one; within a table, the
/// first entry located on the connection (see [`locate`]).
pub fn matches(c: &Correlation, idx: &HopIndex, snaps: &[Snapshot]) -> Vec<CtMatch> {
    let mut by_conn: BTreeMap<usize, CtMatch> = BTreeMap::new();
    for snap in snaps.iter().filter(|s| !s.from_events) {
        let mut here: BTreeMap<usize, CtMatch> = BTreeMap::new();
        for e in &snap.entries {
            if let Some((conn, _)) = locate(c, idx, e) {
                here.entry(conn).or_insert_with(|| CtMatch {
                    conn,
                    entry: e.clone(),
                });
            }
        }
        by_conn.extend(here);
    }
    by_conn.into_values().collect()
}

/// The snapshot's time: given, or estimated (see the module doc) from the entries
/// `idx` places on the wire.
pub fn snapshot_time(
    c: &Correlation,
    idx: &HopIndex,
    snap: &Snapshot,
    timeouts: &CtTimeouts,
) -> Option<SnapTime> {
    if let Some(ns) = snap.time_ns {
        return Some(SnapTime {
            ns,
            slack_ns: GIVEN_SLACK_NS,
            recorded: true,
        });
    }
    snap.entries
        .iter()
        .filter_map(|e| {
            let (ci, _) = locate(c, idx, e)?;
            let t = e.timeout_s?;
            let full = e.full_timeout_s(timeouts);
            (t <= full).then(|| {
                c.connections[ci].last_ns() + ((full - t) as i64).saturating_mul(1_000_000_000)
            })
        })
        .min()
        .map(|upper| SnapTime {
            ns: upper - ESTIMATE_SLACK_NS / 2,
            slack_ns: ESTIMATE_SLACK_NS,
            recorded: false,
        })
}

/// What one witness input contributed: how many of its entries the wire shows and
/// how many of those agree with the translation on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WitnessSummary {
    pub source: String,
    pub kind: WitnessKind,
    pub entries: usize,
    /// Entries whose ORIGINAL tuple is a hop of a captured connection, or whose tuple
    /// after NAT is the first hop of one ([`upstream`]).
    pub on_wire: usize,
    /// Of those, entries whose translation is the one the wire shows at the next hop
    /// (or that have no next hop to compare with), and those translated before the
    /// first hop (the wire shows their tuple after NAT, nothing else).
    pub agree: usize,
    /// The snapshot's time on the captures' clock: recorded or estimated.
    pub time_ns: Option<i64>,
    /// Whether `time_ns` was recorded when the table was taken (a bundle's
    /// manifest) rather than estimated from the entries.
    pub time_recorded: bool,
}

/// What kind of witness input a summary is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum WitnessKind {
    /// A conntrack table at one instant.
    Snapshot,
    /// A conntrack event log's connections.
    Events,
    /// A rule set (iptables, nftables, ipsets, host addresses), read together.
    Rules,
}

impl WitnessKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WitnessKind::Snapshot => "snapshot",
            WitnessKind::Events => "events",
            WitnessKind::Rules => "rules",
        }
    }
}

/// What each snapshot contributed; `times` are their [`check_time`]s, in order.
pub fn witnesses(
    c: &Correlation,
    idx: &HopIndex,
    snaps: &[Snapshot],
    times: &[Option<SnapTime>],
) -> Vec<WitnessSummary> {
    snaps
        .iter()
        .zip(times)
        .map(|(snap, &time)| {
            let located: Vec<(usize, usize, &CtEntry)> = snap
                .entries
                .iter()
                .filter_map(|e| locate(c, idx, e).map(|(ci, hi)| (ci, hi, e)))
                .collect();
            let agree = located
                .iter()
                .filter(|(ci, hi, e)| translated_downstream(&c.connections[*ci], *hi, &e.post()))
                .count();
            let upstream = (snap.entries.iter())
                .filter(|e| upstream(idx, e).is_some())
                .count();
            let carried = (snap.entries.iter())
                .filter(|e| carried_on(c, idx, e))
                .count();
            WitnessSummary {
                source: snap.source.clone(),
                kind: if snap.from_events {
                    WitnessKind::Events
                } else {
                    WitnessKind::Snapshot
                },
                entries: snap.entries.len(),
                on_wire: located.len() + upstream + carried,
                agree: agree + upstream + carried,
                time_ns: time.map(|t| t.ns),
                time_recorded: time.is_some_and(|t| t.recorded),
            }
        })
        .collect()
}

/// The snapshot's time for checks that need one (event logs have none). Computed
/// once a run ([`super::Ctx::snap_times`]): an estimate reads every entry.
pub fn check_time(
    c: &Correlation,
    idx: &HopIndex,
    snap: &Snapshot,
    timeouts: &CtTimeouts,
) -> Option<SnapTime> {
    if snap.from_events {
        None
    } else {
        snapshot_time(c, idx, snap, timeouts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::findings::testing::wire;
    use crate::audit::{Detail, Finding};
    use crate::correlate::Connection;

    /// Every conntrack finding of the snapshots.
    fn findings(c: &Correlation, snaps: &[Snapshot]) -> Vec<Finding> {
        crate::audit::findings::testing::run_all(c, snaps)
            .into_iter()
            .filter(|f| f.code.as_str().starts_with("ct-"))
            .collect()
    }

    fn snapshot(scenario: &str, file: &str) -> Snapshot {
        let path = format!("{}/samples/{scenario}/{file}", env!("CARGO_MANIFEST_DIR"));
        let mut d = crate::conntrack::read_path(&path).expect("sample snapshot");
        d.source = file.into();
        assert!(d.warnings.is_empty(), "{:?}", d.warnings);
        Snapshot::from_dump(&d).remove(0)
    }

    #[test]
    fn counters_grow_between_readings_in_time_order() {
        let reading = |source: &str, drop: u64, time_ns: Option<i64>| {
            let text = format!(
                "cpu=0 found=0 insert_failed=1 drop={drop}\ncpu=1 found=0 insert_failed=0 drop=1\n"
            );
            let mut d = crate::conntrack::parse_str(source, &text);
            d.time_ns = time_ns;
            d
        };
        let one = reading("after", 10, None);
        let s = Stats::of(&[&one]);
        assert_eq!((s.counts["drop"], s.counts["insert_failed"]), (11, 1));
        assert_eq!(s.since, None);
        // Before and after, in input order; then in time order whatever the input's.
        let before = reading("before", 4, None);
        let s = Stats::of(&[&before, &one]);
        assert_eq!((s.counts["drop"], s.counts["insert_failed"]), (6, 0));
        assert_eq!(s.since.as_deref(), Some("before"));
        let (early, late) = (reading("early", 4, Some(1)), reading("late", 10, Some(2)));
        assert_eq!(Stats::of(&[&late, &early]).since.as_deref(), Some("early"));
        // A counter that went down: another host or a reboot; the last reading alone.
        let s = Stats::of(&[&one, &before]);
        assert_eq!((s.counts["drop"], s.since.as_deref()), (5, None));
    }

    #[test]
    fn the_table_is_at_its_limit_from_95_percent() {
        let text = |count: u64| {
            format!(
                "net.netfilter.nf_conntrack_max = 100\nnet.netfilter.nf_conntrack_count = {count}\nnet.netfilter.nf_conntrack_buckets = 1024\n"
            )
        };
        let d = crate::conntrack::parse_str("sysctl.txt", &text(95));
        let t = TableSize::of(&[&d]);
        assert_eq!(
            t.max.as_ref().map(|s| (s.value, s.place.as_str())),
            Some((100, "sysctl.txt:1"))
        );
        assert_eq!(t.buckets.as_ref().map(|s| s.value), Some(1024));
        assert_eq!(t.at_limit().map(|s| s.value), Some(95));
        let d = crate::conntrack::parse_str("sysctl.txt", &text(94));
        assert_eq!(TableSize::of(&[&d]).at_limit(), None);
        // The largest count of any input: a listing, /proc/net/stat/nf_conntrack.
        let listing = crate::conntrack::parse_str(
            "conntrack.txt",
            &"udp 17 29 src=10.0.0.1 dst=10.0.0.2 sport=1 dport=53 [UNREPLIED] src=10.0.0.2 dst=10.0.0.1 sport=53 dport=1 mark=0 use=1\n".repeat(3),
        );
        let stat = crate::conntrack::parse_str(
            "stat.txt",
            "entries  found new drop\n00000062  00000000 00000000 00000000\n00000062  00000000 00000000 00000000\n",
        );
        let t = TableSize::of(&[&d, &listing, &stat]);
        let counts: Vec<(u64, &str)> = t
            .counts
            .iter()
            .map(|s| (s.value, s.place.as_str()))
            .collect();
        assert_eq!(
            counts,
            [
                (94, "sysctl.txt:2"),
                (3, "conntrack.txt"),
                (98, "stat.txt:2")
            ]
        );
        assert_eq!(t.at_limit().map(|s| s.place.as_str()), Some("stat.txt:2"));
        // No limit given: nothing is at it.
        assert_eq!(TableSize::of(&[&listing, &stat]).at_limit(), None);
    }

    fn entry(source: &str, line: u64, l: &str) -> CtEntry {
        match crate::conntrack::parse_line(line, l) {
            Ok(crate::conntrack::Line::Entry(e)) => CtEntry::from_entry(source, &e),
            other => panic!("{l}: {other:?}"),
        }
    }

    /// In the masquerade recording the snapshot sits between the last ICMP echo and
    /// the close of the held connections; the middle of that gap stands for the time
    /// the lab knows and `conntrack -L` does not print.
    fn lab_snapshot_time(c: &Correlation) -> i64 {
        let held = c
            .connections
            .iter()
            .filter(|k| k.hops[0].flow.tuple.dport == 8443)
            .map(Connection::last_ns)
            .min()
            .unwrap();
        let before = c
            .connections
            .iter()
            .filter(|k| k.proto == Proto::Icmp)
            .map(Connection::last_ns)
            .max()
            .unwrap();
        assert!(before < held);
        (before + held) / 2
    }

    fn codes(f: &[Finding]) -> Vec<&'static str> {
        f.iter().map(|f| f.code.as_str()).collect()
    }

    /// An entry's seconds left count down from the host's timeout: on a host that
    /// keeps established TCP entries 5 s, an entry with 4 s left was refreshed a
    /// second before the table was taken, which the kernel's default (5 days) would
    /// put days after the captures.
    #[test]
    fn the_snapshot_time_counts_from_the_hosts_own_timeouts() {
        // Over IPv4 and IPv6.
        for s in ["fault-idle-expiry-remap", "fault-idle-expiry-remap6"] {
            let c = wire(s);
            let snap = snapshot(s, "conntrack.txt");
            let last = c.connections.iter().map(Connection::last_ns).max().unwrap();
            let at = |t: &CtTimeouts| snapshot_time(&c, &index(&c), &snap, t).unwrap().ns;
            let host = CtTimeouts {
                tcp_established_ns: 5_000_000_000,
                ..CtTimeouts::default()
            };
            assert!(
                at(&CtTimeouts::default()) > last + 86_400_000_000_000,
                "{s}"
            );
            assert!(at(&host) <= last + 2_000_000_000, "{s}");
        }
    }

    #[test]
    fn clean_snapshots_agree_with_the_wire() {
        for s in [
            "masquerade",
            "port-collision",
            "nodeport",
            "published-port",
            "snat-random-fully",
            "fault-wrong-source-udp",
        ] {
            let c = wire(s);
            let snap = snapshot(s, "conntrack.txt");
            assert!(!snap.entries.is_empty(), "{s}");
            let t = snapshot_time(&c, &index(&c), &snap, &Default::default())
                .expect("snapshot time")
                .ns;
            let (first, last) = (
                c.connections
                    .iter()
                    .map(Connection::first_ns)
                    .min()
                    .unwrap(),
                c.connections.iter().map(Connection::last_ns).max().unwrap(),
            );
            assert!(
                t > first && t < last + 5_000_000_000,
                "{s}: {t} outside {first}..{last}"
            );
            let f = findings(&c, &[snap]);
            assert!(f.is_empty(), "{s}: {:?}", codes(&f));
        }
    }

    #[test]
    fn each_life_of_a_reused_tuple_has_its_own_entry() {
        // Tuples used again after their entries expired, NATed otherwise the second
        // time: each entry, of the log and of the table, is the one of the connection
        // whose translation it shows, and in its own era only.
        for s in ["reuse-after-expiry", "reuse-after-expiry-dnat"] {
            let c = wire(s);
            let idx = index(&c);
            for file in ["events.txt", "conntrack.txt"] {
                let snap = snapshot(s, file);
                for e in &snap.entries {
                    let (ci, _) = locate(&c, &idx, e).unwrap_or_else(|| panic!("{s}/{file}"));
                    let conn = &c.connections[ci];
                    assert!(
                        conn.hops.iter().any(|h| h.flow.tuple == e.post()),
                        "{s}/{file}:{} on {}",
                        e.line,
                        conn.id
                    );
                }
                let f = findings(&c, &[snap]);
                assert!(f.is_empty(), "{s}/{file}: {:?}", codes(&f));
            }
            let log = snapshot(s, "events.txt");
            let eras: Vec<Era> = log.entries.iter().filter_map(|e| e.era).collect();
            assert!(eras.len() >= 2, "{s}");
            for e in log.entries.iter().filter(|e| e.era.is_some()) {
                let era = e.era.unwrap();
                // The first life's entry is no later connection's.
                if let Some(next) = era.next_ns {
                    assert!(!era.holds(next));
                    assert!(era.holds(era.created_ns));
                }
            }
        }
    }

    #[test]
    fn an_entry_is_upstream_only_when_its_translation_precedes_the_first_hop() {
        let c = wire("masquerade");
        let idx = index(&c);
        let snap = snapshot("masquerade", "conntrack.txt");
        let e = (snap.entries.iter())
            .find(|e| e.orig.proto == Proto::Tcp)
            .unwrap();
        // Its ORIGINAL is on the wire (docker0): located, not upstream.
        assert!(locate(&c, &idx, e).is_some());
        assert_eq!(upstream(&idx, e), None);
        // An ORIGINAL no capture shows, translated to the first hop's tuple: upstream.
        let (ci, first) = (c.connections.iter().enumerate())
            .find(|(_, k)| k.hops.len() > 1)
            .map(|(ci, k)| (ci, k.hops[0].flow.tuple))
            .unwrap();
        let mut before = e.clone();
        before.orig = Tuple {
            dport: first.dport.wrapping_add(1),
            ..first
        };
        before.reply = first.reversed();
        assert_eq!(upstream(&idx, &before), Some(ci));
        // Translated to a later hop's tuple: the ORIGINAL should have been seen first.
        let later = c.connections[ci].hops[1].flow.tuple;
        let mut mid = before.clone();
        mid.reply = later.reversed();
        mid.orig = Tuple {
            dport: later.dport.wrapping_add(1),
            ..later
        };
        assert_eq!(upstream(&idx, &mid), None);
        // No translation at all.
        let mut none = before.clone();
        none.orig = first;
        assert_eq!(upstream(&idx, &none), None);
    }

    #[test]
    fn an_edited_reply_port_contradicts_the_wire() {
        let c = wire("masquerade");
        let mut snap = snapshot("masquerade", "conntrack.txt");
        let e = snap
            .entries
            .iter_mut()
            .find(|e| e.orig.proto == Proto::Tcp && e.state.as_deref() == Some("TIME_WAIT"))
            .unwrap();
        e.reply.dport = e.reply.dport.wrapping_add(1);
        let edited = e.clone();
        let f = findings(&c, &[snap]);
        assert_eq!(codes(&f), ["ct-contradiction"]);
        let ci = f[0].conns[0];
        assert_eq!(c.connections[ci].hops[0].flow.tuple, edited.orig);
        let words = crate::report::explain::words(&f[0]);
        assert!(
            words.message.contains(&format!(":{}", edited.reply.dport)),
            "{}",
            words.message
        );
        match &f[0].detail {
            Detail::Conntrack {
                wire: Some(w),
                conntrack: Some(p),
                ..
            } => {
                assert_eq!(p.sport, edited.reply.dport);
                assert_eq!(w.sport, edited.orig.sport);
            }
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn a_removed_entry_of_a_live_connection_is_missing() {
        let c = wire("masquerade");
        let mut snap = snapshot("masquerade", "conntrack.txt");
        let gone = snap
            .entries
            .iter()
            .position(|e| e.state.as_deref() == Some("ESTABLISHED"))
            .unwrap();
        let removed = snap.entries.remove(gone);
        snap.time_ns = Some(lab_snapshot_time(&c));
        let f = findings(&c, &[snap]);
        assert_eq!(codes(&f), ["ct-missing"]);
        assert_eq!(
            c.connections[f[0].conns[0]].hops[0].flow.tuple,
            removed.orig
        );
    }

    #[test]
    fn unreplied_with_replies_on_the_wire() {
        let c = wire("masquerade");
        let mut snap = snapshot("masquerade", "conntrack.txt");
        let e = snap
            .entries
            .iter_mut()
            .find(|e| e.orig.proto == Proto::Udp)
            .unwrap();
        e.unreplied = true;
        snap.time_ns = Some(lab_snapshot_time(&c));
        let f = findings(&c, &[snap]);
        assert_eq!(codes(&f), ["ct-unreplied"]);
    }

    #[test]
    fn unobserved_hairpin_and_duplicate_entries() {
        let c = wire("masquerade");
        let mut snap = snapshot("masquerade", "conntrack.txt");
        let n = snap.entries.len() as u64;
        let time = lab_snapshot_time(&c);
        let mut extra = vec![
            // A NATed flow refreshed 1 s before the snapshot, never captured.
            "ipv4 2 udp 17 29 src=172.17.0.9 dst=203.0.113.2 sport=5000 dport=53 src=203.0.113.2 dst=203.0.113.1 sport=53 dport=5000 mark=0 use=1",
            // DNAT of c1 to itself without masquerade (FM-07).
            "ipv4 2 tcp 6 118 SYN_SENT src=172.17.0.2 dst=203.0.113.1 sport=47002 dport=81 [UNREPLIED] src=172.17.0.2 dst=172.17.0.2 sport=8080 dport=47002 mark=0 use=1",
        ]
        .into_iter()
        .enumerate()
        .map(|(i, l)| entry("conntrack.txt", n + 1 + i as u64, l))
        .collect::<Vec<_>>();
        // A second entry with the first entry's reply tuple.
        let mut dup = snap.entries[0].clone();
        dup.orig.src = "172.17.0.8".parse().unwrap();
        dup.line = n + 3;
        extra.push(dup);
        snap.entries.extend(extra);
        snap.time_ns = Some(time);
        let mut f = findings(&c, &[snap]);
        f.sort_by_key(|f| f.code);
        assert_eq!(
            codes(&f),
            ["ct-unobserved", "ct-hairpin-no-masq", "ct-duplicate"]
        );
    }
}
