//! audit: says what went wrong and where. It reads what `correlate` rebuilt from the
//! captures (and, when given, conntrack snapshots) and turns the evidence into
//! [`Finding`]s, each with a stable [`Code`], a [`Severity`], the capture points and
//! tuples it is about, the time range and packet count behind it, a one-line
//! explanation and what to check next. The codes are documented in docs/findings.md.
//!
//! Invariants:
//! * Findings are facts about the inputs, never guesses dressed as facts: every
//!   detector states the evidence it rests on, and absence-based findings (packets
//!   that did not arrive) count only while the point that should have seen them was
//!   capturing.
//! * Output is deterministic: findings are sorted (severity, code, time, connections,
//!   points, message) and nothing is emitted from hash-map iteration order.
//! * Audit does not re-read inputs: the topology it needs (which addresses sit inside
//!   the NAT, which points are upstream of which) is learned from the correlated
//!   connections themselves, or declared with `--inside`.

pub mod cidr;
pub mod ct;
mod topology;
mod wire;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Serialize, Serializer};

use crate::correlate::Correlation;
use crate::model::Tuple;
use crate::report::time::rfc3339_ns;
pub use cidr::Cidr;

/// How bad a finding is. Ordered: `Info < Warning < Error`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// A fact worth knowing (a port NAT moved), not a fault.
    Info,
    /// Something that may break some traffic, or evidence that is incomplete.
    Warning,
    /// Traffic was dropped, leaked or could not be translated.
    Error,
}

impl Severity {
    pub const ALL: [Severity; 3] = [Severity::Error, Severity::Warning, Severity::Info];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Severity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Stable finding codes (a contract: never renamed or repurposed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Code {
    /// Packets seen at one point and never at the next one on their path.
    Lost,
    /// Packets that escaped NAT: an inside address on the outside, or the NAT host's
    /// own RST answering a segment conntrack would not translate.
    Leak,
    /// Packets arriving at a NAT address that belong to no translation.
    Unsolicited,
    /// NAT changed the source port.
    PortReallocated,
    /// The translation on the wire differs from the conntrack entry's.
    CtContradiction,
    /// A connection translated on the wire across a snapshot's time has no entry.
    CtMissing,
    /// A NATed entry active while the captures ran, with no packet on the wire.
    CtUnobserved,
    /// An entry marked [UNREPLIED] although replies were on the wire.
    CtUnreplied,
    /// A DNAT back to the client itself without masquerade (hairpin).
    CtHairpinNoMasq,
    /// Several entries of one snapshot share a reply tuple.
    CtDuplicate,
}

impl Code {
    pub const ALL: [Code; 10] = [
        Code::Lost,
        Code::Leak,
        Code::Unsolicited,
        Code::PortReallocated,
        Code::CtContradiction,
        Code::CtMissing,
        Code::CtUnobserved,
        Code::CtUnreplied,
        Code::CtHairpinNoMasq,
        Code::CtDuplicate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Code::Lost => "lost",
            Code::Leak => "leak",
            Code::Unsolicited => "unsolicited",
            Code::PortReallocated => "port-reallocated",
            Code::CtContradiction => "ct-contradiction",
            Code::CtMissing => "ct-missing",
            Code::CtUnobserved => "ct-unobserved",
            Code::CtUnreplied => "ct-unreplied",
            Code::CtHairpinNoMasq => "ct-hairpin-no-masq",
            Code::CtDuplicate => "ct-duplicate",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Code {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl FromStr for Code {
    type Err = String;
    fn from_str(s: &str) -> Result<Code, String> {
        Code::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown finding code `{s}`"))
    }
}

/// A tuple at a capture point, in the initiator's direction, with what it is in the
/// finding (`leaked`, `translated`, `last-seen`, ...).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Seen {
    pub point: String,
    pub role: &'static str,
    #[serde(flatten)]
    pub tuple: Tuple,
}

/// Which way packets were going, relative to the connection's initiator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Initiator to responder.
    Fwd,
    /// Responder to initiator.
    Rev,
}

/// Code-specific facts, for scripts (the human version is in `message`/`evidence`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Detail {
    Lost {
        /// The point the packets were seen at, and the next one they never reached.
        from: String,
        to: String,
        direction: Direction,
        /// Nothing of the connection ever reached `to` in this direction.
        blocked: bool,
        first_tcp_flags: Option<String>,
        /// Connections whose path shows that `to` comes after `from` (for packets of a
        /// connection never seen at `to` at all).
        path_from: Vec<String>,
    },
    Leak {
        /// `inside-address`: packets on an outside point carrying an address NAT
        /// hides there; `host-rst`: the NAT host answered an untranslated segment
        /// with its own RST.
        kind: &'static str,
        inside_address: Option<IpAddr>,
        /// Connections that translated this same traffic.
        translated_by: Vec<String>,
    },
    Unsolicited {
        /// The NAT endpoint the packets were sent to.
        nat_address: IpAddr,
        nat_port: Option<u16>,
        /// The peer that sent them.
        from_address: IpAddr,
        from_port: Option<u16>,
        /// Connections translated to this NAT endpoint, and the peer they talked to.
        translations: Vec<String>,
        expected_peer: Option<String>,
    },
    PortReallocated {
        wanted_sport: u16,
        got_sport: u16,
        colliding: Option<String>,
        colliding_started_first: Option<bool>,
        /// How the allocator behaved across every translation to the same NAT address
        /// at the same point: `collision`, `random`, `range`, `mixed`.
        mode: &'static str,
        /// The observed span of allocated ports when `mode` is `range`.
        range: Option<[u16; 2]>,
    },
    Conntrack {
        /// The entry (`file:line`), or the snapshot file for `ct-missing`.
        entry: String,
        /// The tuple the wire shows after the translation, when it was captured.
        wire: Option<Tuple>,
        /// The tuple after NAT according to conntrack (reverse of the REPLY tuple).
        conntrack: Option<Tuple>,
    },
}

/// One finding.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub code: Code,
    pub severity: Severity,
    /// Indices (into `Correlation::connections`) of the connections it concerns, the
    /// one it is mainly about first.
    pub conns: Vec<usize>,
    /// The same connections' ids.
    pub connections: Vec<String>,
    pub points: Vec<String>,
    pub tuples: Vec<Seen>,
    /// Corrected times of the first and last packet behind it.
    pub first_ns: Option<i64>,
    pub last_ns: Option<i64>,
    pub packets: u64,
    /// One line: what happened.
    pub message: String,
    /// What to check next.
    pub check: String,
    /// The evidence, one fact per line.
    pub evidence: Vec<String>,
    pub detail: Detail,
}

impl Finding {
    fn sort_key(&self) -> impl Ord + '_ {
        (
            std::cmp::Reverse(self.severity),
            self.code,
            self.first_ns,
            &self.conns,
            &self.points,
            &self.message,
        )
    }
}

/// JSON shape of a finding (see docs/findings.md): times as RFC 3339 strings.
impl Serialize for Finding {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Finding", 12)?;
        st.serialize_field("code", &self.code)?;
        st.serialize_field("severity", &self.severity)?;
        st.serialize_field("connections", &self.connections)?;
        st.serialize_field("points", &self.points)?;
        st.serialize_field("tuples", &self.tuples)?;
        st.serialize_field("first", &self.first_ns.map(rfc3339_ns))?;
        st.serialize_field("last", &self.last_ns.map(rfc3339_ns))?;
        st.serialize_field("packets", &self.packets)?;
        st.serialize_field("message", &self.message)?;
        st.serialize_field("check", &self.check)?;
        st.serialize_field("evidence", &self.evidence)?;
        st.serialize_field("detail", &self.detail)?;
        st.end()
    }
}

/// What the audit is told beyond the captures.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// Declared inside prefixes (container, pod and bridge networks). When empty they
    /// are learned from the translations seen on the wire.
    pub inside: Vec<Cidr>,
    /// Conntrack snapshots to check the wire against.
    pub conntrack: Vec<ct::Snapshot>,
}

/// Every finding of a run, sorted, and which belong to which connection.
#[derive(Clone, Debug, Default)]
pub struct Audit {
    pub findings: Vec<Finding>,
    /// For each connection (by index), the indices of its findings.
    pub by_connection: Vec<Vec<usize>>,
    /// The inside prefixes the audit worked with (declared or learned).
    pub inside: Vec<Cidr>,
    /// True when `inside` came from `--inside`.
    pub inside_declared: bool,
    /// What each conntrack input contributed.
    pub conntrack: Vec<ct::Witness>,
}

impl Audit {
    pub fn of_connection(&self, i: usize) -> impl Iterator<Item = &Finding> {
        self.by_connection
            .get(i)
            .into_iter()
            .flatten()
            .map(|&f| &self.findings[f])
    }

    /// Count per severity, every severity present (0 when none).
    pub fn severities(&self) -> BTreeMap<String, usize> {
        let mut m: BTreeMap<String, usize> = Severity::ALL
            .iter()
            .map(|s| (s.as_str().to_string(), 0))
            .collect();
        for f in &self.findings {
            *m.entry(f.severity.as_str().to_string()).or_insert(0) += 1;
        }
        m
    }

    /// Whether any finding trips `--fail-on`.
    pub fn fails(&self, on: &FailOn) -> bool {
        self.findings.iter().any(|f| on.trips(f))
    }
}

/// `--fail-on`: the findings that make the run exit 1. A comma-separated list of
/// severities (a severity means "at or above it") and finding codes; `none` never fails.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FailOn {
    pub severity: Option<Severity>,
    pub codes: BTreeSet<Code>,
}

impl FailOn {
    pub fn trips(&self, f: &Finding) -> bool {
        self.severity.is_some_and(|s| f.severity >= s) || self.codes.contains(&f.code)
    }
}

impl FromStr for FailOn {
    type Err = String;
    fn from_str(s: &str) -> Result<FailOn, String> {
        let mut out = FailOn::default();
        let mut none = false;
        for item in s.split(',').map(str::trim) {
            match item {
                "" => return Err(format!("`{s}`: empty item")),
                "none" => none = true,
                "error" | "warning" | "info" => {
                    let sev = Severity::ALL
                        .into_iter()
                        .find(|x| x.as_str() == item)
                        .expect("listed above");
                    // The lowest severity listed wins: "error,warning" means warning.
                    out.severity = Some(out.severity.map_or(sev, |o| o.min(sev)));
                }
                code => {
                    out.codes.insert(code.parse().map_err(|e| {
                        format!(
                            "{e} (expected none, error, warning, info or one of: {})",
                            Code::ALL.map(Code::as_str).join(", ")
                        )
                    })?);
                }
            }
        }
        if none && (out.severity.is_some() || !out.codes.is_empty()) {
            return Err(format!("`{s}`: `none` cannot be combined with anything"));
        }
        Ok(out)
    }
}

/// Runs every detector on a correlation.
pub fn audit(c: &Correlation, cfg: &Config) -> Audit {
    let topo = topology::Topology::learn(c, &cfg.inside);
    let mut findings = wire::findings(c, &topo);
    findings.extend(ct::findings(c, &cfg.conntrack));
    finish(c, &mut findings);
    let mut by_connection = vec![Vec::new(); c.connections.len()];
    for (i, f) in findings.iter().enumerate() {
        for &ci in &f.conns {
            if let Some(v) = by_connection.get_mut(ci) {
                if !v.contains(&i) {
                    v.push(i);
                }
            }
        }
    }
    Audit {
        findings,
        by_connection,
        inside: topo.inside.clone(),
        inside_declared: topo.declared,
        conntrack: ct::witnesses(c, &cfg.conntrack),
    }
}

/// Fills connection ids, removes exact duplicates and sorts.
fn finish(c: &Correlation, findings: &mut Vec<Finding>) {
    for f in findings.iter_mut() {
        // Keep the main connection first, the others in index order.
        if f.conns.len() > 1 {
            let rest: BTreeSet<usize> = f.conns[1..].iter().copied().collect();
            let main = f.conns[0];
            f.conns = std::iter::once(main)
                .chain(rest.into_iter().filter(|&x| x != main))
                .collect();
        }
        f.connections = f
            .conns
            .iter()
            .filter_map(|&i| c.connections.get(i).map(|x| x.id.clone()))
            .collect();
    }
    findings.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    findings.dedup();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_on_parses_severities_and_codes() {
        let f: FailOn = "warning".parse().unwrap();
        assert_eq!(f.severity, Some(Severity::Warning));
        let f: FailOn = "error,port-reallocated".parse().unwrap();
        assert_eq!(f.severity, Some(Severity::Error));
        assert!(f.codes.contains(&Code::PortReallocated));
        let f: FailOn = "lost, leak".parse().unwrap();
        assert_eq!(f.severity, None);
        assert_eq!(f.codes.len(), 2);
        let f: FailOn = "error,info".parse().unwrap();
        assert_eq!(f.severity, Some(Severity::Info));
        assert_eq!("none".parse::<FailOn>().unwrap(), FailOn::default());
        assert!("none,error".parse::<FailOn>().is_err());
        assert!("bogus".parse::<FailOn>().is_err());
        assert!("error,".parse::<FailOn>().is_err());
    }

    #[test]
    fn severities_order_for_fail_on() {
        assert!(Severity::Error > Severity::Warning && Severity::Warning > Severity::Info);
        let on: FailOn = "warning".parse().unwrap();
        let mk = |severity, code| Finding {
            code,
            severity,
            conns: vec![],
            connections: vec![],
            points: vec![],
            tuples: vec![],
            first_ns: None,
            last_ns: None,
            packets: 0,
            message: String::new(),
            check: String::new(),
            evidence: vec![],
            detail: Detail::Leak {
                kind: "host-rst",
                inside_address: None,
                translated_by: vec![],
            },
        };
        assert!(on.trips(&mk(Severity::Error, Code::Lost)));
        assert!(on.trips(&mk(Severity::Warning, Code::Lost)));
        assert!(!on.trips(&mk(Severity::Info, Code::PortReallocated)));
        let on: FailOn = "port-reallocated".parse().unwrap();
        assert!(on.trips(&mk(Severity::Info, Code::PortReallocated)));
        assert!(!on.trips(&mk(Severity::Error, Code::Lost)));
    }
}
