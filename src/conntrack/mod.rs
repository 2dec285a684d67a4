//! conntrack: the kernel's own record of each connection, the second witness next to
//! the wire. This module owns every text form of it that people attach to tickets
//! (`conntrack -L` with any `-o` options, `/proc/net/nf_conntrack`, `conntrack -E`
//! event logs with or without `-o timestamp`, `-o xml` listings and event logs, the
//! `conntrack -S` statistics, and the settings as `sysctl` prints them), the
//! translation each entry implies, the per-connection timeline of an event log, the
//! `conntrack -L -o extended,id` text writer, and the live netlink dump.
//!
//! Reading never stops at a bad line: a line that is not conntrack output becomes a
//! [`Warning`] at `path:line:column` saying what was expected, and every other line is
//! still used. Lines that belong to the tools rather than the table (the "N flow
//! entries have been shown." footer, a pasted shell prompt or command, the
//! statistics) are recognised and kept apart. What a paste wraps around a record (mail
//! quoting, a time, syslog or journal prefix, a shell prompt, a `#`) is stripped and
//! counted per kind in [`Dump::stripped`]: a note, not a warning. Tokens natcheck has never seen (`key=value` or
//! `[FLAG]`) are kept on the entry, not rejected.
//!
//! Tuples use the model's convention: for ICMP and ICMPv6 the echo identifier is the
//! `sport` and `dport` is 0; GRE keys (`srckey=`/`dstkey=`) sit in the port fields.
//! The text reader and the netlink reader build their tuples and entries with one
//! builder (`build`), so a tuple means the same and is refused for the same reasons
//! whichever way it was read.

mod build;
mod implied;
mod line;
#[cfg(target_os = "linux")]
pub mod netlink;
mod paste;
mod text;
mod timeline;
mod view;
mod xml;

#[cfg(test)]
mod tests;

use std::io::{BufRead, BufReader};
use std::net::IpAddr;

use serde::Serialize;

use crate::diag::{Location, Warning};
use crate::model::{CtTimeouts, Tuple};

pub use implied::{host_addresses, Implied};
pub use line::{parse_line, Line, LineError};
pub use paste::Stripped;
pub use text::{l3_name, l4_name, write_entry, write_event};
pub use timeline::{timelines, Timeline};
pub use view::View;

/// Packet and byte counters of one direction (`packets=N bytes=N`, printed when
/// `nf_conntrack_acct=1`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    pub packets: u64,
    pub bytes: u64,
}

/// ICMP type and code of one tuple (`type=8 code=0`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct IcmpKey {
    #[serde(rename = "type")]
    pub icmp_type: u8,
    pub code: u8,
}

/// The bracketed status words of an entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Flags {
    /// `[UNREPLIED]`: no packet was seen in the reply direction (IPS_SEEN_REPLY unset).
    pub unreplied: bool,
    /// `[ASSURED]`: traffic seen both ways; the entry is not early-dropped.
    pub assured: bool,
    /// `[OFFLOAD]`: moved to a software flowtable; `/proc` prints no timeout then.
    pub offload: bool,
    /// `[HW_OFFLOAD]`: offloaded to hardware.
    pub hw_offload: bool,
    /// Any other bracketed word, as printed without brackets (e.g. `USERSPACE`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub other: Vec<String>,
}

/// One conntrack entry: a line of `conntrack -L` or `/proc/net/nf_conntrack`, or the
/// entry part of an event line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// 1-based line the entry was read from (0 for entries that came from netlink).
    pub line: u64,
    /// Layer-3 protocol number when printed (`ipv4 2`, `ipv6 10`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub l3num: Option<u8>,
    /// Seconds left before the entry expires; absent for offloaded entries in
    /// `/proc` and in `[DESTROY]` events.
    pub timeout_s: Option<u64>,
    /// TCP, SCTP or DCCP state as printed (`ESTABLISHED`, `TIME_WAIT`, ...).
    pub state: Option<String>,
    /// The ORIGINAL direction, as the initiator sent it before any NAT.
    pub orig: Tuple,
    /// The REPLY direction the kernel expects back; its reverse is the tuple after NAT.
    pub reply: Tuple,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orig_icmp: Option<IcmpKey>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_icmp: Option<IcmpKey>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orig_counters: Option<Counters>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_counters: Option<Counters>,
    pub flags: Flags,
    pub mark: Option<u32>,
    /// `zone=`: the conntrack zone of both directions (absent or 0 is the default zone).
    pub zone: Option<u16>,
    /// `zone-orig=` / `zone-reply=`: per-direction zones, when they differ.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone_orig: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone_reply: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secctx: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// `use=`: reference count (1 in `conntrack -L`, 2 in `/proc` for the same entry).
    #[serde(rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_count: Option<u32>,
    /// `id=`: the kernel's entry id (`-o id`).
    pub id: Option<u32>,
    /// `delta-time=`: the entry's age in seconds (`nf_conntrack_timestamp=1`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta_time_s: Option<u64>,
    /// `[start=...]` / `[stop=...]` of `-o ktimestamp`, as printed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop: Option<String>,
    /// `key=value` tokens natcheck has no field for (e.g. `helper=ftp`), in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra: Vec<(String, String)>,
}

impl Entry {
    /// The effective zone (`zone=`, else the ORIGINAL direction's, else 0).
    pub fn zone_id(&self) -> u16 {
        self.zone.or(self.zone_orig).unwrap_or(0)
    }

    /// The tuple after NAT in the initiator's direction: the reverse of REPLY.
    pub fn post(&self) -> Tuple {
        self.reply.reversed()
    }
}

/// The event kind of a `conntrack -E` line.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    New,
    Update,
    Destroy,
}

impl EventKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            EventKind::New => "NEW",
            EventKind::Update => "UPDATE",
            EventKind::Destroy => "DESTROY",
        }
    }
}

/// One line of an event log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Event {
    pub kind: EventKind,
    /// `-o timestamp`: when the event was printed, nanoseconds since the Unix epoch
    /// (printed with microsecond precision), or from an ISO 8601 or epoch prefix
    /// pasted in front of the line.
    pub time_ns: Option<i64>,
    /// A time printed without a year, date or zone, as printed, when the line has no
    /// `time_ns`: a syslog or time-of-day prefix (`Nov 30 06:00:01`,
    /// `02:03:47.404103`) or the `<when>` of `-o xml,timestamp` (the tool's local
    /// time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_time: Option<String>,
    pub entry: Entry,
}

/// The `conntrack -S` counters of one CPU (`cpu=N found=.. insert_failed=.. drop=..`)
/// or one row of `/proc/net/stat/nf_conntrack`, by the names the kernel prints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CpuStats {
    pub line: u64,
    pub cpu: Option<u32>,
    pub counters: Vec<(String, u64)>,
}

/// A setting as `sysctl` printed it, with its 1-based line
/// (`net.netfilter.nf_conntrack_max = 262144`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Sysctl {
    pub line: u64,
    pub name: String,
    /// As printed, trimmed (several numbers are separated by tabs).
    pub value: String,
}

/// What the footer line says was printed ("N flow entries have been shown.").
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Footer {
    pub line: u64,
    pub count: u64,
    /// `entries` (`-L`) or `events` (`-E`).
    pub what: String,
}

/// Everything read from one conntrack input.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Dump {
    /// The input as given (`-` for stdin).
    pub source: String,
    /// Table lines (`conntrack -L`, `/proc/net/nf_conntrack`).
    pub entries: Vec<Entry>,
    /// Event lines (`conntrack -E`), in file order.
    pub events: Vec<Event>,
    pub stats: Vec<CpuStats>,
    /// Settings pasted with the output (`sysctl net.netfilter`), in file order.
    pub sysctls: Vec<Sysctl>,
    pub footers: Vec<Footer>,
    /// Lines recognised as not being conntrack records: pasted prompts, comments.
    pub skipped_lines: u64,
    /// Lines whose record was read from inside a decoration (a prompt, a time prefix,
    /// mail quoting, a `#`), by kind: a note, not a warning.
    pub stripped: Stripped,
    pub warnings: Vec<Warning>,
    /// When the table was taken, in nanoseconds since the epoch, when that is known
    /// from outside the text (a bundle's manifest): its time is then not estimated.
    pub time_ns: Option<i64>,
}

impl Dump {
    /// Sum of each statistics counter over CPUs, in the order first printed. The
    /// `entries` column of `/proc/net/stat/nf_conntrack` is the table's count, printed
    /// alike on every row: it is taken once (the largest), not summed.
    pub fn stats_total(&self) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = Vec::new();
        for row in &self.stats {
            for (k, v) in &row.counters {
                match out.iter_mut().find(|(n, _)| n == k) {
                    Some((n, t)) if n == "entries" => *t = (*t).max(*v),
                    Some((_, t)) => *t = t.saturating_add(*v),
                    None => out.push((k.clone(), *v)),
                }
            }
        }
        out
    }

    /// The value of the last setting named `name` (`net.netfilter.nf_conntrack_max`).
    pub fn sysctl(&self, name: &str) -> Option<&Sysctl> {
        self.sysctls.iter().rev().find(|s| s.name == name)
    }

    /// The UDP, ICMP and established TCP timeouts the settings among `dumps` give (the last of each
    /// wins), the kernel's defaults for those not given.
    pub fn timeouts<'a>(dumps: impl IntoIterator<Item = &'a Dump>) -> CtTimeouts {
        let mut t = CtTimeouts::default();
        for s in dumps.into_iter().flat_map(|d| &d.sysctls) {
            if let Ok(seconds) = s.value.parse() {
                t.set(&s.name, seconds);
            }
        }
        t
    }

    /// Every entry of the input: table lines, then the entry of each event.
    pub fn all_entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries
            .iter()
            .chain(self.events.iter().map(|e| &e.entry))
    }
}

/// Reads one conntrack input: a path, `-` for stdin; `.gz` files are decompressed.
/// I/O errors (missing file, unreadable gzip) are errors; bad lines are warnings.
pub fn read_path(path: &str) -> anyhow::Result<Dump> {
    use anyhow::Context;
    let input = crate::input::open(path)?;
    read(path, BufReader::new(input)).with_context(|| format!("{path}: read failed"))
}

/// Reads conntrack text from `input`, naming it `source` in warnings.
pub fn read<R: BufRead>(source: &str, mut input: R) -> std::io::Result<Dump> {
    let mut dump = Dump {
        source: source.to_string(),
        ..Dump::default()
    };
    let mut parser = line::Parser::default();
    let mut buf = Vec::new();
    let mut n = 0u64;
    loop {
        buf.clear();
        if input.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        n += 1;
        // Pasted output is sometimes re-encoded; a stray byte only spoils its token.
        let text = String::from_utf8_lossy(&buf);
        parser.feed(&mut dump, n, &text);
    }
    parser.finish(&mut dump);
    Ok(dump)
}

/// Parses conntrack text held in memory.
pub fn parse_str(source: &str, text: &str) -> Dump {
    read(source, text.as_bytes()).expect("reading from memory cannot fail")
}

fn warn(dump: &mut Dump, line: u64, column: u64, message: impl Into<String>) {
    dump.warnings.push(Warning::new(
        dump.source.clone(),
        Location::Line { line, column },
        message,
    ));
}

/// Whether an address family matches the layer-3 number printed (2 or 10).
fn family_matches(l3num: u8, addr: IpAddr) -> bool {
    matches!((l3num, addr), (2, IpAddr::V4(_)) | (10, IpAddr::V6(_)))
}
