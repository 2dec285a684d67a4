//! diff: two `correlate --format json` reports compared, as data: the findings and
//! translations that are new, gone or changed from a baseline to a current report.
//!
//! Connection ids are per report, so connections are matched by what they are: first by
//! the Community ID and tuple of every hop (the same packets, read twice), then, for
//! recordings of the same traffic made at different times, by the tuple at the first
//! hop without the initiator's port (an ephemeral port, or an ICMP echo identifier,
//! that each run picks anew), in time order. A finding is the same in both reports when
//! its code and points agree and its connections match; a translation is compared by
//! kind, the addresses it rewrote and the destination port it rewrote, never by the
//! ephemeral ports themselves.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::audit::{Code, FailOn, Severity};

/// The report schemas this reads: what it reads of a report (connections' hops and
/// translations, the findings) means the same in both; they differ in what a
/// connection's `findings` hold (the findings themselves in `/1`, their positions in
/// the report's `findings` in `/2`), which is not read here.
pub const SCHEMAS: [&str; 2] = ["natcheck.report/1", "natcheck.report/2"];

/// What `diff` reads of a report.
#[derive(Clone, Debug, Deserialize)]
pub struct Report {
    pub schema: String,
    #[serde(default)]
    pub connections: Vec<Connection>,
    #[serde(default)]
    pub findings: Vec<Finding>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Connection {
    pub id: String,
    pub proto: String,
    pub first_seen: String,
    pub hops: Vec<Hop>,
    #[serde(default)]
    pub translations: Vec<Translation>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Hop {
    pub point: String,
    pub src: IpAddr,
    pub sport: Option<u16>,
    pub dst: IpAddr,
    pub dport: Option<u16>,
    #[serde(default)]
    pub community_id: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Translation {
    pub from: String,
    pub to: String,
    pub kind: String,
    #[serde(default)]
    pub port_reallocated: bool,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Finding {
    pub code: String,
    pub severity: String,
    #[serde(default)]
    pub connections: Vec<String>,
    #[serde(default)]
    pub points: Vec<String>,
    #[serde(default)]
    pub message: String,
}

impl Report {
    /// Parses a report, checking its schema. `source` names it in errors.
    pub fn parse(source: &str, text: &str) -> anyhow::Result<Report> {
        let r: Report = serde_json::from_str(text).map_err(|e| {
            anyhow::anyhow!(
                "{source}:{}:{}: not a natcheck JSON report (`correlate --format json`): {e}",
                e.line(),
                e.column()
            )
        })?;
        anyhow::ensure!(
            SCHEMAS.contains(&r.schema.as_str()),
            "{source}: schema `{}`, expected `{}` (a `correlate --format json` report)",
            r.schema,
            SCHEMAS.join("` or `")
        );
        Ok(r)
    }
}

/// A connection as the diff names it: its id in its report, protocol, path and the tuple
/// at its first and last hop.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ConnRef {
    pub id: String,
    pub proto: String,
    pub path: Vec<String>,
    pub first: Hop,
    pub last: Hop,
}

/// What NAT did to a connection, without the ephemeral ports: the points it crossed,
/// and per translated link the kind and the rewritten addresses and destination port
/// (`docker0>eth0 snat src 172.17.0.2 => 203.0.113.1`).
#[derive(Clone, Debug, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Nat {
    pub path: Vec<String>,
    pub links: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct TranslationChange {
    /// In the baseline, when it had the connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<ConnRef>,
    /// In the current report, when it has the connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current: Option<ConnRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<Nat>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Nat>,
}

#[derive(Clone, Debug, Serialize)]
pub struct FindingChange {
    pub code: String,
    pub severity: String,
    /// The severity in the baseline, for a finding whose severity changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity_before: Option<String>,
    pub points: Vec<String>,
    pub message: String,
    /// The finding's connections, in the report it is taken from (the current one,
    /// except for gone findings).
    pub connections: Vec<ConnRef>,
}

/// The comparison.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Diff {
    pub new_findings: Vec<FindingChange>,
    pub gone_findings: Vec<FindingChange>,
    pub changed_findings: Vec<FindingChange>,
    pub new_translations: Vec<TranslationChange>,
    pub gone_translations: Vec<TranslationChange>,
    pub changed_translations: Vec<TranslationChange>,
    /// Connections matched by the same packets (Community ID and tuple at every hop),
    /// and by the same endpoints in another recording.
    pub matched_exactly: usize,
    pub matched_by_endpoints: usize,
}

impl Diff {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.new_findings.is_empty()
            && self.gone_findings.is_empty()
            && self.changed_findings.is_empty()
            && self.new_translations.is_empty()
            && self.gone_translations.is_empty()
            && self.changed_translations.is_empty()
    }

    /// Whether a new finding, or one whose severity rose, trips `fail_on`.
    pub fn fails(&self, fail_on: &FailOn) -> bool {
        let rose = self.changed_findings.iter().filter(|f| {
            let now: Option<Severity> = f.severity.parse().ok();
            let then: Option<Severity> = f.severity_before.as_deref().and_then(|s| s.parse().ok());
            now > then
        });
        self.new_findings.iter().chain(rose).any(|f| {
            match (f.code.parse::<Code>(), f.severity.parse::<Severity>()) {
                (Ok(code), Ok(sev)) => fail_on.trips_code(code, sev),
                // A code or severity this build does not know: only a severity rule can
                // decide, and an unknown severity fails it.
                _ => fail_on.severity.is_some(),
            }
        })
    }
}

fn conn_ref(c: &Connection) -> Option<ConnRef> {
    Some(ConnRef {
        id: c.id.clone(),
        proto: c.proto.clone(),
        path: c.hops.iter().map(|h| h.point.clone()).collect(),
        first: c.hops.first()?.clone(),
        last: c.hops.last()?.clone(),
    })
}

/// The key of the same packets: path, and Community ID and tuple at every hop.
fn exact_key(c: &Connection) -> String {
    let hops: Vec<String> = c
        .hops
        .iter()
        .map(|h| {
            format!(
                "{} {} {}:{:?}>{}:{:?} {}",
                h.point,
                c.proto,
                h.src,
                h.sport,
                h.dst,
                h.dport,
                h.community_id.as_deref().unwrap_or("-")
            )
        })
        .collect();
    hops.join(" | ")
}

/// The key of the same endpoints in another recording: the first hop's point and tuple
/// without the initiator's port (how far the connection went may be what changed).
fn endpoint_key(c: &Connection) -> String {
    match c.hops.first() {
        Some(h) => format!(
            "{} {} {} > {}:{:?}",
            h.point, c.proto, h.src, h.dst, h.dport
        ),
        None => String::new(),
    }
}

/// What NAT did to `c`, per link.
fn nat(c: &Connection) -> Nat {
    let hop = |point: &str| c.hops.iter().find(|h| h.point == point);
    let links = c
        .translations
        .iter()
        .filter(|t| t.kind != "none" || t.port_reallocated)
        .map(|t| {
            let mut s = format!("{}>{} {}", t.from, t.to, t.kind);
            if let (Some(a), Some(b)) = (hop(&t.from), hop(&t.to)) {
                if a.src != b.src {
                    s.push_str(&format!(" src {} => {}", a.src, b.src));
                }
                if a.dst != b.dst || a.dport != b.dport {
                    s.push_str(&format!(
                        " dst {}{} => {}{}",
                        a.dst,
                        port(a.dport),
                        b.dst,
                        port(b.dport)
                    ));
                }
            }
            if t.port_reallocated {
                s.push_str(", port reallocated");
            }
            s
        })
        .collect();
    Nat {
        path: c.hops.iter().map(|h| h.point.clone()).collect(),
        links,
    }
}

fn port(p: Option<u16>) -> String {
    p.map(|p| format!(":{p}")).unwrap_or_default()
}

/// Pairs the current connections `cur` (indices into `cur_conns`) with the baseline's
/// `base` of the same `key`, the first with the first, into `out`.
fn pair_by(
    key: fn(&Connection) -> String,
    base_conns: &[Connection],
    base: &[usize],
    cur_conns: &[Connection],
    cur: &[usize],
    out: &mut BTreeMap<usize, usize>,
) {
    let mut by_key: BTreeMap<String, std::collections::VecDeque<usize>> = BTreeMap::new();
    for &i in base {
        by_key.entry(key(&base_conns[i])).or_default().push_back(i);
    }
    for &j in cur {
        if let Some(i) = by_key
            .get_mut(&key(&cur_conns[j]))
            .and_then(|q| q.pop_front())
        {
            out.insert(j, i);
        }
    }
}

/// The indices of `conns` that `keep` keeps, in order of their first packet.
fn in_time_order(conns: &[Connection], keep: impl Fn(usize) -> bool) -> Vec<usize> {
    let mut v: Vec<usize> = (0..conns.len()).filter(|&i| keep(i)).collect();
    v.sort_by(|&a, &b| conns[a].first_seen.cmp(&conns[b].first_seen));
    v
}

/// Current connection index → baseline connection index, for the connections matched,
/// with how many were matched each way: by the same packets, then the rest by
/// endpoints in time order on each side.
fn match_connections(base: &Report, cur: &Report) -> (BTreeMap<usize, usize>, usize, usize) {
    let (b, c) = (&base.connections[..], &cur.connections[..]);
    let mut out = BTreeMap::new();
    let all = |n: usize| (0..n).collect::<Vec<_>>();
    pair_by(exact_key, b, &all(b.len()), c, &all(c.len()), &mut out);
    let exact = out.len();
    let taken: BTreeSet<usize> = out.values().copied().collect();
    let base_rest = in_time_order(b, |i| !taken.contains(&i));
    let cur_rest = in_time_order(c, |j| !out.contains_key(&j));
    pair_by(endpoint_key, b, &base_rest, c, &cur_rest, &mut out);
    let loose = out.len() - exact;
    (out, exact, loose)
}

/// A finding's identity: code, points and its connections as baseline indices (or,
/// for a current connection with no baseline match, a mark no baseline finding has).
type FindingKey = (String, Vec<String>, Vec<String>);

fn finding_key(f: &Finding, conn_ids: &BTreeMap<&str, String>) -> FindingKey {
    let mut conns: Vec<String> = f
        .connections
        .iter()
        .map(|id| {
            conn_ids
                .get(id.as_str())
                .cloned()
                .unwrap_or_else(|| format!("?{id}"))
        })
        .collect();
    conns.sort();
    let mut points = f.points.clone();
    points.sort();
    (f.code.clone(), points, conns)
}

/// A report's connections by id (the first of an id), looked up for every finding.
fn by_id(r: &Report) -> BTreeMap<&str, &Connection> {
    let mut out = BTreeMap::new();
    for c in &r.connections {
        out.entry(c.id.as_str()).or_insert(c);
    }
    out
}

fn finding_change(
    f: &Finding,
    conns: &BTreeMap<&str, &Connection>,
    before: Option<&Finding>,
) -> FindingChange {
    FindingChange {
        code: f.code.clone(),
        severity: f.severity.clone(),
        severity_before: before.map(|b| b.severity.clone()),
        points: f.points.clone(),
        message: f.message.clone(),
        connections: f
            .connections
            .iter()
            .filter_map(|id| conns.get(id.as_str()))
            .filter_map(|c| conn_ref(c))
            .collect(),
    }
}

/// Compares `cur` with `base`.
pub fn diff(base: &Report, cur: &Report) -> Diff {
    let (matched, exact, loose) = match_connections(base, cur);
    let mut d = Diff {
        matched_exactly: exact,
        matched_by_endpoints: loose,
        ..Diff::default()
    };
    // Findings: both sides keyed by baseline connection identity.
    let base_ids: BTreeMap<&str, String> = base
        .connections
        .iter()
        .enumerate()
        .map(|(i, c)| (c.id.as_str(), format!("b{i}")))
        .collect();
    let cur_ids: BTreeMap<&str, String> = cur
        .connections
        .iter()
        .enumerate()
        .map(|(j, c)| {
            let id = matched
                .get(&j)
                .map_or_else(|| format!("n{j}"), |i| format!("b{i}"));
            (c.id.as_str(), id)
        })
        .collect();
    let (base_by_id, cur_by_id) = (by_id(base), by_id(cur));
    // Each baseline finding with its place in the baseline, for those gone.
    let mut base_findings: BTreeMap<FindingKey, Vec<(usize, &Finding)>> = BTreeMap::new();
    for (i, f) in base.findings.iter().enumerate() {
        base_findings
            .entry(finding_key(f, &base_ids))
            .or_default()
            .push((i, f));
    }
    for v in base_findings.values_mut() {
        v.reverse();
    }
    for f in &cur.findings {
        match base_findings
            .get_mut(&finding_key(f, &cur_ids))
            .and_then(Vec::pop)
        {
            Some((_, b)) if b.severity != f.severity => {
                d.changed_findings
                    .push(finding_change(f, &cur_by_id, Some(b)));
            }
            Some(_) => {}
            None => d.new_findings.push(finding_change(f, &cur_by_id, None)),
        }
    }
    let mut gone: Vec<(usize, &Finding)> = base_findings.into_values().flatten().collect();
    gone.sort_by_key(|&(i, _)| i);
    d.gone_findings = gone
        .iter()
        .map(|(_, f)| finding_change(f, &base_by_id, None))
        .collect();
    // Translations.
    let translated = |c: &Connection| !c.translations.is_empty();
    for (j, c) in cur.connections.iter().enumerate() {
        let b = matched.get(&j).map(|&i| &base.connections[i]);
        match b {
            Some(b) if translated(b) || translated(c) => {
                let (before, after) = (nat(b), nat(c));
                if before != after {
                    d.changed_translations.push(TranslationChange {
                        baseline: conn_ref(b),
                        current: conn_ref(c),
                        before: Some(before),
                        after: Some(after),
                    });
                }
            }
            None if translated(c) => d.new_translations.push(TranslationChange {
                baseline: None,
                current: conn_ref(c),
                before: None,
                after: Some(nat(c)),
            }),
            _ => {}
        }
    }
    let matched_base: BTreeSet<usize> = matched.values().copied().collect();
    for (i, b) in base.connections.iter().enumerate() {
        if !matched_base.contains(&i) && translated(b) {
            d.gone_translations.push(TranslationChange {
                baseline: conn_ref(b),
                current: None,
                before: Some(nat(b)),
                after: None,
            });
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(
        conns: &[(&str, &str, u16, &str, &str)],
        findings: &[(&str, &str, &[&str])],
    ) -> Report {
        // (id, inside src, sport, outside src, kind); destination 198.51.100.20:80.
        let connections = conns
            .iter()
            .enumerate()
            .map(|(i, &(id, src, sport, out, kind))| Connection {
                id: id.into(),
                proto: "tcp".into(),
                first_seen: format!("2026-01-01T00:00:0{i}Z"),
                hops: vec![
                    Hop {
                        point: "docker0".into(),
                        src: src.parse().unwrap(),
                        sport: Some(sport),
                        dst: "198.51.100.20".parse().unwrap(),
                        dport: Some(80),
                        community_id: Some(format!("1:{src}:{sport}")),
                    },
                    Hop {
                        point: "eth0".into(),
                        src: out.parse().unwrap(),
                        sport: Some(sport),
                        dst: "198.51.100.20".parse().unwrap(),
                        dport: Some(80),
                        community_id: Some(format!("1:{out}:{sport}")),
                    },
                ],
                translations: vec![Translation {
                    from: "docker0".into(),
                    to: "eth0".into(),
                    kind: kind.into(),
                    port_reallocated: false,
                }],
            })
            .collect();
        let findings = findings
            .iter()
            .map(|&(code, sev, conns)| Finding {
                code: code.into(),
                severity: sev.into(),
                connections: conns.iter().map(|s| s.to_string()).collect(),
                points: vec!["docker0".into(), "eth0".into()],
                message: String::new(),
            })
            .collect();
        Report {
            schema: SCHEMAS[1].into(),
            connections,
            findings,
        }
    }

    #[test]
    fn the_same_report_has_no_difference() {
        let r = report(&[("c1", "172.17.0.2", 40000, "203.0.113.1", "snat")], &[]);
        let d = diff(&r, &r);
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(d.matched_exactly, 1);
    }

    #[test]
    fn another_run_matches_by_endpoints_and_names_the_new_finding() {
        let base = report(
            &[
                ("c1", "172.17.0.2", 40000, "203.0.113.1", "snat"),
                ("c2", "172.17.0.3", 40001, "203.0.113.1", "snat"),
            ],
            &[],
        );
        // Another run: new ports, ids swapped, and c2's connection now leaks.
        let cur = report(
            &[
                ("c1", "172.17.0.3", 51000, "172.17.0.3", "none"),
                ("c2", "172.17.0.2", 52000, "203.0.113.1", "snat"),
            ],
            &[("leak", "error", &["c1"])],
        );
        let d = diff(&base, &cur);
        assert_eq!(d.matched_by_endpoints, 2);
        assert_eq!(d.new_findings.len(), 1);
        assert_eq!(
            d.new_findings[0].connections[0].first.src.to_string(),
            "172.17.0.3"
        );
        assert!(d.gone_findings.is_empty());
        assert_eq!(d.changed_translations.len(), 1);
        let ch = &d.changed_translations[0];
        assert_eq!(
            ch.before.as_ref().unwrap().links,
            ["docker0>eth0 snat src 172.17.0.3 => 203.0.113.1"]
        );
        assert!(ch.after.as_ref().unwrap().links.is_empty());
        assert!(d.fails(&"error".parse().unwrap()));
        assert!(!d.fails(&"none".parse().unwrap()));
        // The other way round the finding is gone, which fails nothing.
        let back = diff(&cur, &base);
        assert_eq!(back.gone_findings.len(), 1);
        assert!(back.new_findings.is_empty());
        assert!(!back.fails(&"info".parse().unwrap()));
    }

    #[test]
    fn a_finding_whose_severity_rose_is_changed_and_fails() {
        let base = report(
            &[("c1", "172.17.0.2", 40000, "203.0.113.1", "snat")],
            &[("lost", "warning", &["c1"])],
        );
        let cur = report(
            &[("c1", "172.17.0.2", 40000, "203.0.113.1", "snat")],
            &[("lost", "error", &["c1"])],
        );
        let d = diff(&base, &cur);
        assert_eq!(d.changed_findings.len(), 1);
        assert_eq!(
            d.changed_findings[0].severity_before.as_deref(),
            Some("warning")
        );
        assert!(d.fails(&"error".parse().unwrap()));
    }

    #[test]
    fn a_wrong_document_is_refused_with_its_place() {
        let e = Report::parse("a.json", "{\"schema\": 3")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("a.json:1:"), "{e}");
        let e = Report::parse("b.json", r#"{"schema": "natcheck.flows/1"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("natcheck.flows/1"), "{e}");
    }
}
