//! `manifest.json`, the table of contents of an evidence bundle (schema
//! `natcheck.bundle/1`, documented in docs/collect.md): who collected it, where and
//! when, why it stopped, every capture point with its packet and kernel drop
//! counts, and every file with what it is, the command that made it, when, its size
//! and SHA-256, or why it is missing.
//!
//! The manifest is data both ways: `natcheck collect` fills one and writes it, the
//! bundle reader reads it back. Times are RFC 3339 in UTC with nanoseconds, so that
//! they sort as text and read the same on any host. Fields a later version adds are
//! ignored on reading, and a missing optional field reads as absent.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The schema name written in every manifest; readers accept any `natcheck.bundle/1`.
pub const SCHEMA: &str = "natcheck.bundle/1";

/// The manifest of one bundle.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema: String,
    /// The natcheck version that collected it.
    pub natcheck: String,
    /// The command line, one argument per element.
    pub command_line: Vec<String>,
    /// The host name (`uname -n`) of the host collect ran on.
    pub host: String,
    /// The kernel release (`uname -r`).
    pub kernel: String,
    /// The network namespace collect ran in, as `readlink /proc/self/ns/net` names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    pub started: String,
    pub stopped: String,
    /// Why the capture stopped.
    pub stop: Stop,
    /// The capture points, in the order of `-i`.
    pub points: Vec<Point>,
    /// Every file of the bundle (but the manifest), in a fixed order.
    pub files: Vec<FileRecord>,
    /// The flight recorder (`--ring`), when the capture was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ring: Option<Ring>,
}

/// The flight recorder: the capture kept only its most recent packets.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ring {
    /// Bytes of packet blocks kept at most (`--ring SIZE`).
    pub size: u64,
    /// Bytes of each segment file the oldest packets were discarded by.
    pub segment_size: u64,
    /// Packets discarded over every interface, and their blocks' bytes.
    pub discarded_packets: u64,
    pub discarded_bytes: u64,
    /// Packets at or before this time were discarded at every interface; every
    /// packet after it was kept. Absent when nothing was discarded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discarded_through: Option<String>,
    /// The first and last packet kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept_from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept_to: Option<String>,
    /// The files taken before the capture (`conntrack-before.txt`, the rules
    /// before) predate the packets kept: packets were discarded in between.
    pub before_predates_packets: bool,
}

/// Why the capture stopped.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stop {
    /// `duration`, `count`, `size`, `signal` or `error`.
    pub reason: String,
    /// The limit reached (`30s`, `1000 packets`, `2147483648 bytes`), the signal
    /// (`SIGINT`) or the error.
    pub detail: String,
}

/// One capture point: an interface, maybe in another network namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Point {
    /// The point's name: the interface, or `NETNS:IFACE`; the `if_name` of its
    /// interface description block in the capture.
    pub name: String,
    /// The network namespace as given (`NETNS` of `NETNS:IFACE`), absent for the
    /// namespace collect ran in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    pub interface: String,
    pub ifindex: u32,
    /// The pcap link type name (`ETHERNET`, `RAW`).
    pub linktype: String,
    pub snaplen: u32,
    /// The tcpdump filter, when one was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// Packets written to the capture.
    pub packets: u64,
    /// Packets the kernel handed to the packet socket (PACKET_STATISTICS
    /// `tp_packets`, drops included), after the filter.
    pub kernel_packets: u64,
    /// Packets the kernel dropped because the ring was full (`tp_drops`).
    pub kernel_drops: u64,
    /// Packets and bytes the flight recorder discarded (`--ring` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discarded_packets: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discarded_bytes: Option<u64>,
    /// The interfaces an `any` point met, in the order met.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
}

/// An interface an `any` point met: each is an interface description block of
/// the capture.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    /// The `if_name` of its description: the interface's name, `NETNS:NAME` for
    /// another namespace's.
    pub name: String,
    pub ifindex: u32,
    pub linktype: String,
    /// Packets of it in the capture.
    pub packets: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discarded_packets: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discarded_bytes: Option<u64>,
}

/// One file of the bundle, or one that could not be made.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// The file name inside the bundle.
    pub name: String,
    /// What it holds, as a stable name (`capture`, `conntrack-after`, ...).
    pub kind: String,
    /// What it holds, in words.
    pub what: String,
    /// The command that made it, as it could be typed (`iptables-save -c`), or what
    /// natcheck read itself (`netlink: conntrack table dump`, `/proc/sys/...`).
    pub command: String,
    /// When it was started.
    pub taken: String,
    /// When it was finished (recordings: the capture and the event log).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
    /// Its size in bytes, when it was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// The SHA-256 of its bytes, lower-case hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Conntrack entries or events it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<u64>,
    /// Times the kernel reported events lost (conntrack event log: ENOBUFS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overruns: Option<u64>,
    /// Why the file is absent or incomplete (a tool missing or failing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl FileRecord {
    /// Whether the file was written (a file with an error may still be, partly).
    pub fn written(&self) -> bool {
        self.bytes.is_some()
    }
}

impl Manifest {
    /// The manifest as written to `manifest.json`: pretty JSON ending in a newline.
    pub fn to_json(&self) -> String {
        // Serialising plain strings, numbers and vectors cannot fail.
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }

    /// Reads a manifest; a document of another schema is an error.
    pub fn from_json(text: &str) -> Result<Manifest, String> {
        let m: Manifest = serde_json::from_str(text).map_err(|e| format!("not a manifest: {e}"))?;
        let family = SCHEMA.split('/').next().unwrap_or(SCHEMA);
        if m.schema.split('/').next() != Some(family) {
            return Err(format!(
                "schema `{}`, expected `{SCHEMA}`",
                m.schema.replace('`', "'")
            ));
        }
        Ok(m)
    }

    /// The record of the file of `kind`, if the manifest has one.
    pub fn file(&self, kind: &str) -> Option<&FileRecord> {
        self.files.iter().find(|f| f.kind == kind)
    }
}

/// `t` as RFC 3339 in UTC with nanoseconds: `2026-11-23T05:43:19.481465000Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let ns = i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
    rfc3339_ns(ns)
}

/// Nanoseconds since the epoch as RFC 3339 in UTC with nanoseconds.
pub fn rfc3339_ns(ns: i64) -> String {
    crate::capture::range::rfc3339(ns)
}

/// An RFC 3339 time back to nanoseconds since the epoch.
pub fn parse_time(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()?
        .timestamp_nanos_opt()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            schema: SCHEMA.into(),
            natcheck: "0.1.0".into(),
            command_line: vec![
                "natcheck".into(),
                "collect".into(),
                "-i".into(),
                "eth0".into(),
            ],
            host: "router".into(),
            kernel: "6.1.0".into(),
            netns: Some("net:[4026531840]".into()),
            started: rfc3339_ns(1_700_000_000_123_456_789),
            stopped: rfc3339_ns(1_700_000_030_000_000_000),
            stop: Stop {
                reason: "signal".into(),
                detail: "SIGINT".into(),
            },
            points: vec![Point {
                name: "ns1:eth0".into(),
                netns: Some("ns1".into()),
                interface: "eth0".into(),
                ifindex: 2,
                linktype: "ETHERNET".into(),
                snaplen: 262144,
                filter: None,
                packets: 10,
                kernel_packets: 12,
                kernel_drops: 2,
                ..Point::default()
            }],
            files: vec![
                FileRecord {
                    name: "capture.pcapng".into(),
                    kind: "capture".into(),
                    what: "packets".into(),
                    command: "AF_PACKET".into(),
                    taken: rfc3339_ns(1_700_000_000_123_456_789),
                    finished: Some(rfc3339_ns(1_700_000_030_000_000_000)),
                    bytes: Some(1234),
                    sha256: Some("ab".repeat(32)),
                    ..FileRecord::default()
                },
                FileRecord {
                    name: "nft-after.json".into(),
                    kind: "nft-after".into(),
                    what: "nft".into(),
                    command: "nft -j list ruleset".into(),
                    taken: rfc3339_ns(1_700_000_030_000_000_000),
                    error: Some("nft: not found on PATH".into()),
                    ..FileRecord::default()
                },
            ],
            ring: None,
        }
    }

    #[test]
    fn round_trips_and_leaves_out_what_is_absent() {
        let m = sample();
        let text = m.to_json();
        assert!(text.ends_with("}\n"));
        assert!(text.contains("\"schema\": \"natcheck.bundle/1\""));
        assert!(text.contains("\"started\": \"2023-11-14T22:13:20.123456789Z\""));
        // The failed file has no size or hash, the written one no error.
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(v["files"][1].get("bytes").is_none());
        assert!(v["files"][0].get("error").is_none());
        assert_eq!(v["points"][0]["kernel_drops"], 2);
        assert_eq!(Manifest::from_json(&text).unwrap(), m);
        assert_eq!(m.to_json(), text, "the same manifest, the same bytes");
        assert!(m.file("capture").is_some_and(FileRecord::written));
        assert!(!m.file("nft-after").unwrap().written());
        assert!(m.file("ipset").is_none());
    }

    #[test]
    fn reading_tolerates_new_fields_and_refuses_other_documents() {
        let mut v: serde_json::Value = serde_json::from_str(&sample().to_json()).unwrap();
        v["future"] = serde_json::json!({"x": 1});
        v["files"][0]["future"] = serde_json::json!(true);
        v["schema"] = serde_json::json!("natcheck.bundle/1.1");
        assert!(Manifest::from_json(&v.to_string()).is_ok());
        v["schema"] = serde_json::json!("natcheck.conntrack/1");
        let e = Manifest::from_json(&v.to_string()).unwrap_err();
        assert!(e.contains("expected `natcheck.bundle/1`"), "{e}");
        assert!(Manifest::from_json("[1, 2]").is_err());
        assert!(Manifest::from_json("").is_err());
    }

    #[test]
    fn times() {
        let ns = 1_700_000_000_000_000_001;
        assert_eq!(rfc3339_ns(ns), "2023-11-14T22:13:20.000000001Z");
        assert_eq!(parse_time(&rfc3339_ns(ns)), Some(ns));
        assert_eq!(parse_time("yesterday"), None);
        let t = UNIX_EPOCH + Duration::from_nanos(ns as u64);
        assert_eq!(rfc3339(t), rfc3339_ns(ns));
    }
}
