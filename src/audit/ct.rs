//! Detectors that compare conntrack snapshots with the wire: `ct-contradiction`,
//! `ct-missing`, `ct-unobserved`, `ct-unreplied`, `ct-hairpin-no-masq` and
//! `ct-duplicate`.
//!
//! The audit reads entries through [`CtEntry`], a view holding only what these checks
//! use, so it does not depend on how the `conntrack` module parses each text form.
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

use std::collections::{BTreeMap, HashMap};

use super::{Code, Detail, Finding, Seen, Severity};
use crate::correlate::{Connection, Correlation};
use crate::model::{NatChange, NatKind, Proto, Tuple};
use crate::report::time::{rfc3339_ns, secs};

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
}

impl CtEntry {
    /// The tuple after NAT, in the initiator's direction.
    pub fn post(&self) -> Tuple {
        self.reply.reversed()
    }

    pub fn change(&self) -> NatChange {
        NatChange::between(&self.orig, &self.post())
    }

    fn place(&self) -> String {
        format!("{}:{}", self.source, self.line)
    }

    /// The entry as `conntrack -L` would show its tuples.
    fn text(&self) -> String {
        let t = |t: &Tuple| {
            if t.proto.has_ports() {
                format!(
                    "src={} dst={} sport={} dport={}",
                    t.src, t.dst, t.sport, t.dport
                )
            } else if t.proto.is_icmp() {
                format!("src={} dst={} id={}", t.src, t.dst, t.sport)
            } else {
                format!("src={} dst={}", t.src, t.dst)
            }
        };
        format!(
            "{}{} {}{} {}{}",
            self.orig.proto,
            self.state
                .as_deref()
                .map(|s| format!(" {s}"))
                .unwrap_or_default(),
            t(&self.orig),
            if self.unreplied { " [UNREPLIED]" } else { "" },
            t(&self.reply),
            if self.assured { " [ASSURED]" } else { "" }
        )
    }

    /// The state's full timeout in seconds, with the kernel's defaults.
    fn full_timeout_s(&self) -> u64 {
        match self.orig.proto {
            Proto::Tcp => match self.state.as_deref() {
                Some("SYN_SENT") | Some("SYN_SENT2") => 120,
                Some("SYN_RECV") => 60,
                Some("ESTABLISHED") => 432_000,
                Some("FIN_WAIT") | Some("TIME_WAIT") => 120,
                Some("CLOSE_WAIT") => 60,
                Some("LAST_ACK") => 30,
                Some("CLOSE") => 10,
                _ => 300,
            },
            Proto::Udp if self.assured => 120,
            Proto::Udp | Proto::Icmp | Proto::Icmpv6 => 30,
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
                time_ns: None,
                from_events: false,
            });
        }
        if !d.events.is_empty() {
            out.push(Snapshot {
                source: d.source.clone(),
                entries: crate::conntrack::timelines(&d.events)
                    .iter()
                    .map(|t| CtEntry::from_entry(&d.source, &t.last(&d.events).entry))
                    .collect(),
                time_ns: None,
                from_events: true,
            });
        }
        out
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
}

/// Where an entry sits on the wire: (connection, index of the last hop carrying
/// ORIGINAL). The same connection may carry ORIGINAL at several hops (a veth and its
/// bridge); the translation follows the last of them. When several connections carry
/// it (packets that leaked under the inside tuple), the one that goes on past it wins.
fn locate(
    c: &Correlation,
    idx: &HashMap<Tuple, Vec<(usize, usize)>>,
    e: &CtEntry,
) -> Option<(usize, usize)> {
    idx.get(&e.orig)?.iter().copied().max_by_key(|&(ci, h)| {
        (
            h + 1 < c.connections[ci].hops.len(),
            std::cmp::Reverse(ci),
            h,
        )
    })
}

fn index(c: &Correlation) -> HashMap<Tuple, Vec<(usize, usize)>> {
    let mut idx: HashMap<Tuple, Vec<(usize, usize)>> = HashMap::new();
    for (ci, conn) in c.connections.iter().enumerate() {
        for (hi, h) in conn.hops.iter().enumerate() {
            idx.entry(h.flow.tuple).or_default().push((ci, hi));
        }
    }
    idx
}

/// The snapshot's time: given, or estimated (see the module doc).
pub fn snapshot_time(c: &Correlation, snap: &Snapshot) -> Option<SnapTime> {
    if let Some(ns) = snap.time_ns {
        return Some(SnapTime {
            ns,
            slack_ns: GIVEN_SLACK_NS,
        });
    }
    let idx = index(c);
    snap.entries
        .iter()
        .filter_map(|e| {
            let (ci, _) = locate(c, &idx, e)?;
            let t = e.timeout_s?;
            let full = e.full_timeout_s();
            (t <= full).then(|| {
                c.connections[ci].last_ns() + ((full - t) as i64).saturating_mul(1_000_000_000)
            })
        })
        .min()
        .map(|upper| SnapTime {
            ns: upper - ESTIMATE_SLACK_NS / 2,
            slack_ns: ESTIMATE_SLACK_NS,
        })
}

/// What one conntrack input contributed: how many of its entries the wire shows and
/// how many of those agree with the translation on the wire.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Witness {
    pub source: String,
    /// `snapshot` (a table at one instant) or `events` (an event log's connections).
    pub kind: &'static str,
    pub entries: usize,
    /// Entries whose ORIGINAL tuple is a hop of a captured connection.
    pub on_wire: usize,
    /// Of those, entries whose translation is the one the wire shows at the next hop
    /// (or that have no next hop to compare with).
    pub agree: usize,
    /// The snapshot's estimated time on the captures' clock.
    #[serde(serialize_with = "ser_time")]
    pub time_ns: Option<i64>,
}

fn ser_time<S: serde::Serializer>(t: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(ns) => s.serialize_some(&rfc3339_ns(*ns)),
        None => s.serialize_none(),
    }
}

pub fn witnesses(c: &Correlation, snaps: &[Snapshot]) -> Vec<Witness> {
    let idx = index(c);
    snaps
        .iter()
        .map(|snap| {
            let located: Vec<(usize, usize, &CtEntry)> = snap
                .entries
                .iter()
                .filter_map(|e| locate(c, &idx, e).map(|(ci, hi)| (ci, hi, e)))
                .collect();
            let agree = located
                .iter()
                .filter(|(ci, hi, e)| {
                    c.connections[*ci]
                        .hops
                        .get(hi + 1)
                        .is_none_or(|next| next.flow.tuple == e.post())
                })
                .count();
            Witness {
                source: snap.source.clone(),
                kind: if snap.from_events {
                    "events"
                } else {
                    "snapshot"
                },
                entries: snap.entries.len(),
                on_wire: located.len(),
                agree,
                time_ns: if snap.from_events {
                    None
                } else {
                    snapshot_time(c, snap).map(|t| t.ns)
                },
            }
        })
        .collect()
}

fn tuple_line(t: &Tuple) -> String {
    let ep = |a, p| crate::model::fmt_endpoint(a, t.proto.has_ports().then_some(p));
    format!(
        "{} {} -> {}",
        t.proto,
        ep(t.src, t.sport),
        ep(t.dst, t.dport)
    )
}

pub fn findings(c: &Correlation, snaps: &[Snapshot]) -> Vec<Finding> {
    let idx = index(c);
    let mut out = Vec::new();
    let name = |p: usize| c.points[p].name.clone();
    // Connections some entry of any snapshot matched.
    let mut matched = vec![false; c.connections.len()];
    for snap in snaps {
        let when = if snap.from_events {
            None
        } else {
            snapshot_time(c, snap)
        };
        let mut by_reply: BTreeMap<(u16, Tuple), Vec<&CtEntry>> = BTreeMap::new();
        for e in &snap.entries {
            by_reply.entry((e.zone, e.reply)).or_default().push(e);
            let located =
                locate(c, &idx, e).or_else(|| idx.get(&e.post()).and_then(|v| v.first().copied()));
            if let Some((ci, _)) = located {
                matched[ci] = true;
            }
            // Hairpin without masquerade (FM-07): DNAT back to the client itself with
            // the client's own address as the source; the client answers itself.
            let post = e.post();
            if e.change().dst_addr_changed && post.dst == e.orig.src && post.src == e.orig.src {
                out.push(entry_finding(
                    Code::CtHairpinNoMasq,
                    Severity::Error,
                    e,
                    located.map(|(ci, _)| ci),
                    format!(
                        "{} is DNATed to the client itself without masquerade: the reply goes from {} to itself and never back through NAT",
                        tuple_line(&e.orig),
                        e.orig.src
                    ),
                    "Hairpin traffic needs masquerade: kube-proxy marks it (KUBE-MARK-MASQ, 0x4000) and masquerades in KUBE-POSTROUTING; Docker adds `-A POSTROUTING -s C -d C -p tcp --dport P -j MASQUERADE` per published port. Also check the bridge port's hairpin_mode (FM-07).".into(),
                    c,
                ));
            }
            let Some((ci, hi)) = locate(c, &idx, e) else {
                unobserved(c, snap, e, when, &mut out);
                continue;
            };
            let conn = &c.connections[ci];
            contradiction(c, conn, ci, hi, e, &mut out, &name);
            if e.unreplied && !snap.from_events {
                unreplied(c, conn, ci, hi, e, when, &mut out);
            }
        }
        for ((zone, reply), es) in by_reply {
            if es.len() < 2 || snap.from_events {
                continue;
            }
            let places: Vec<String> = es.iter().map(|e| e.place()).collect();
            let mut f = entry_finding(
                Code::CtDuplicate,
                Severity::Error,
                es[0],
                None,
                format!(
                    "{} entries share the reply tuple {}{}: conntrack cannot tell their replies apart",
                    es.len(),
                    tuple_line(&reply),
                    if zone != 0 { format!(" in zone {zone}") } else { String::new() }
                ),
                "Two connections were given the same outside tuple (a NAT clash the kernel would refuse at confirm time, FM-03/FM-06), or the file joins two snapshots. Check `conntrack -S` (insert_failed, clash_resolve) and whether the file holds one snapshot.".into(),
                c,
            );
            f.evidence = es
                .iter()
                .map(|e| format!("{}: {}", e.place(), e.text()))
                .collect();
            f.evidence.push(format!("lines {}", places.join(", ")));
            out.push(f);
        }
        if let Some(t) = when {
            missing(c, snap, t, &matched, &mut out);
        }
    }
    out
}

/// A finding about one entry, its connection when known.
fn entry_finding(
    code: Code,
    severity: Severity,
    e: &CtEntry,
    conn: Option<usize>,
    message: String,
    check: String,
    c: &Correlation,
) -> Finding {
    let (first_ns, last_ns) = conn
        .map(|ci| {
            (
                Some(c.connections[ci].first_ns()),
                Some(c.connections[ci].last_ns()),
            )
        })
        .unwrap_or((None, None));
    Finding {
        code,
        severity,
        conns: conn.into_iter().collect(),
        connections: Vec::new(),
        points: Vec::new(),
        tuples: Vec::new(),
        first_ns,
        last_ns,
        packets: 0,
        message,
        check,
        evidence: vec![format!("{}: {}", e.place(), e.text())],
        detail: Detail::Conntrack {
            entry: e.place(),
            wire: None,
            conntrack: Some(e.post()),
        },
    }
}

fn contradiction(
    c: &Correlation,
    conn: &Connection,
    ci: usize,
    hi: usize,
    e: &CtEntry,
    out: &mut Vec<Finding>,
    name: &dyn Fn(usize) -> String,
) {
    let Some(next) = conn.hops.get(hi + 1) else {
        return;
    };
    let here = &conn.hops[hi];
    let post = e.post();
    if next.flow.tuple == post {
        return;
    }
    let wire = NatChange::between(&here.flow.tuple, &next.flow.tuple);
    let ct = e.change();
    let says = |ch: &NatChange, t: &Tuple| {
        if ch.kind == NatKind::None {
            "no translation".to_string()
        } else {
            format!("{} to {}", ch.kind, tuple_line(t))
        }
    };
    let mut f = entry_finding(
        Code::CtContradiction,
        Severity::Error,
        e,
        Some(ci),
        format!(
            "conntrack says {} but the wire shows {} at {}",
            says(&ct, &post),
            says(&wire, &next.flow.tuple),
            name(next.point)
        ),
        "The snapshot does not describe the traffic captured: an entry replaced after the capture (conntrack -D / flush, a new translation after a state loss, FM-02), a snapshot from another host or network namespace, or captures from a different NAT hop. Compare `conntrack -E` events for this tuple with the capture times.".into(),
        c,
    );
    f.points = vec![name(here.point), name(next.point)];
    f.tuples = vec![
        Seen {
            point: name(here.point),
            role: "original",
            tuple: here.flow.tuple,
        },
        Seen {
            point: name(next.point),
            role: "wire",
            tuple: next.flow.tuple,
        },
    ];
    f.packets = next.flow.packets[0] + next.flow.packets[1];
    f.evidence.push(format!(
        "{}: {} => {}: {}",
        name(here.point),
        tuple_line(&here.flow.tuple),
        name(next.point),
        tuple_line(&next.flow.tuple)
    ));
    f.detail = Detail::Conntrack {
        entry: e.place(),
        wire: Some(next.flow.tuple),
        conntrack: Some(post),
    };
    out.push(f);
}

fn unreplied(
    c: &Correlation,
    conn: &Connection,
    ci: usize,
    hi: usize,
    e: &CtEntry,
    when: Option<SnapTime>,
    out: &mut Vec<Finding>,
) {
    let Some(SnapTime { ns: s, slack_ns }) = when else {
        return;
    };
    // Replies the wire carried for this entry's tuples before the snapshot.
    let post = e.post();
    let replied = conn.hops.iter().enumerate().any(|(i, h)| {
        (i == hi || h.flow.tuple == post) && h.flow.packets[1] > 0 && h.first_ns + slack_ns < s
    });
    if !replied {
        return;
    }
    let mut f = entry_finding(
        Code::CtUnreplied,
        Severity::Warning,
        e,
        Some(ci),
        format!(
            "conntrack marks {} [UNREPLIED] although replies were on the wire before the snapshot",
            tuple_line(&e.orig)
        ),
        "The replies bypassed this host's conntrack (asymmetric routing, another path back, FM-16) or did not match the entry (a NAT or server that answers from another address); check routes and rp_filter on the reply path.".into(),
        c,
    );
    f.evidence.push(format!(
        "snapshot time estimated at {} ({})",
        rfc3339_ns(s),
        e.source
    ));
    out.push(f);
}

/// A NATed entry with no packets on the wire while the captures were running.
fn unobserved(
    c: &Correlation,
    snap: &Snapshot,
    e: &CtEntry,
    when: Option<SnapTime>,
    out: &mut Vec<Finding>,
) {
    let post = e.post();
    if e.change().kind == NatKind::None
        || c.connections
            .iter()
            .any(|k| k.hops.iter().any(|h| h.flow.tuple == post))
    {
        return;
    }
    let (Some(SnapTime { ns: s, slack_ns }), Some(t)) = (when, e.timeout_s) else {
        return;
    };
    let full = e.full_timeout_s();
    if t > full {
        return;
    }
    // The entry's last refresh: a packet conntrack saw then.
    let refreshed = s - (full - t) as i64 * 1_000_000_000;
    let span = c
        .points
        .iter()
        .filter_map(|p| {
            Some((
                p.first_ns? - p.clock.offset_ns,
                p.last_ns? - p.clock.offset_ns,
            ))
        })
        .fold(None::<(i64, i64)>, |acc, (a, b)| match acc {
            None => Some((a, b)),
            Some((x, y)) => Some((x.min(a), y.max(b))),
        });
    let Some((a, b)) = span else { return };
    if refreshed < a + slack_ns || refreshed > b - slack_ns {
        return;
    }
    let mut f = entry_finding(
        Code::CtUnobserved,
        Severity::Warning,
        e,
        None,
        format!(
            "conntrack translated {} to {} and saw a packet of it about {} before the snapshot, while the captures ran, but no capture has it",
            tuple_line(&e.orig),
            tuple_line(&post),
            secs((full - t) as i64 * 1_000_000_000)
        ),
        "The captures miss traffic this host translated: another interface or path, a capture filter, or dropped packets (check the capture's drop counters); or the snapshot is from another host.".into(),
        c,
    );
    f.first_ns = Some(refreshed);
    f.last_ns = Some(refreshed);
    f.evidence.push(format!(
        "snapshot {} at {} (±{}); captures ran from {} to {}",
        snap.source,
        rfc3339_ns(s),
        secs(slack_ns),
        rfc3339_ns(a),
        rfc3339_ns(b)
    ));
    out.push(f);
}

/// Translated connections alive across the snapshot time that no entry matches.
fn missing(
    c: &Correlation,
    snap: &Snapshot,
    when: SnapTime,
    matched: &[bool],
    out: &mut Vec<Finding>,
) {
    let SnapTime { ns: s, slack_ns } = when;
    for (ci, conn) in c.connections.iter().enumerate() {
        if matched[ci] || !conn.links.iter().any(|l| l.change.kind != NatKind::None) {
            continue;
        }
        if !(conn.first_ns() + slack_ns < s && conn.last_ns() > s + slack_ns) {
            continue;
        }
        let first = &conn.hops[0];
        out.push(Finding {
            code: Code::CtMissing,
            severity: Severity::Warning,
            conns: vec![ci],
            connections: Vec::new(),
            points: conn.hops.iter().map(|h| c.points[h.point].name.clone()).collect(),
            tuples: vec![Seen {
                point: c.points[first.point].name.clone(),
                role: "original",
                tuple: first.flow.tuple,
            }],
            first_ns: Some(conn.first_ns()),
            last_ns: Some(conn.last_ns()),
            packets: first.flow.packets[0] + first.flow.packets[1],
            message: format!(
                "{} was translated on the wire before and after the snapshot {}, which has no entry for it",
                conn.id, snap.source
            ),
            check: "The entry was deleted or expired while the connection lived (conntrack -D, a flush, a timeout shorter than the idle gap, a full table: FM-02, FM-13, FM-14), or the snapshot comes from another host or namespace. `conntrack -E` shows a DESTROY; later packets may leak or be re-translated.".into(),
            evidence: vec![format!(
                "snapshot at {} (±{}); {} has packets from {} to {}",
                rfc3339_ns(s),
                secs(slack_ns),
                conn.id,
                rfc3339_ns(conn.first_ns()),
                rfc3339_ns(conn.last_ns())
            )],
            detail: Detail::Conntrack {
                entry: snap.source.clone(),
                wire: Some(first.flow.tuple),
                conntrack: None,
            },
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::{InputSpec, ReadOptions};
    use crate::correlate::{self, Config};

    fn wire(scenario: &str) -> Correlation {
        let dir = format!("{}/samples/{scenario}", env!("CARGO_MANIFEST_DIR"));
        let specs: Vec<InputSpec> = ["docker0", "eth0"]
            .iter()
            .map(|p| format!("{dir}/{p}.pcap").parse().expect("input spec"))
            .collect();
        correlate::run(&specs, &ReadOptions::default(), Config::default())
    }

    fn snapshot(scenario: &str, file: &str) -> Snapshot {
        let path = format!("{}/samples/{scenario}/{file}", env!("CARGO_MANIFEST_DIR"));
        let mut d = crate::conntrack::read_path(&path).expect("sample snapshot");
        d.source = file.into();
        assert!(d.warnings.is_empty(), "{:?}", d.warnings);
        Snapshot::from_dump(&d).remove(0)
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
            let t = snapshot_time(&c, &snap).expect("snapshot time").ns;
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
        assert!(
            f[0].message.contains(&format!(":{}", edited.reply.dport)),
            "{}",
            f[0].message
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
