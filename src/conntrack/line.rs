//! One line of conntrack text at a time. [`parse_line`] is pure (the fuzz target and
//! the unit tests drive it directly); [`Parser`] adds what needs more than one line:
//! the hexadecimal rows of `/proc/net/stat/nf_conntrack` are read by the header line
//! before them, and footers are checked against the entries counted since the last one.
//!
//! The grammar followed is the kernel's `ct_seq_show()` and libnetfilter_conntrack's
//! default printer:
//!
//! ```text
//! [<sec>.<usec>]  [NEW]|[UPDATE]|[DESTROY]     (event logs; -o timestamp)
//! [ipv4 2|ipv6 10] <l4name> <l4num> [<timeout>] [<STATE>]
//! src= dst= (sport= dport= | type= code= id= | srckey= dstkey=) [zone-orig=] [packets= bytes=]
//! [UNREPLIED]
//! src= dst= ...   [zone-reply=] [packets= bytes=]
//! [ASSURED]|[OFFLOAD]|[HW_OFFLOAD] [start=..] [stop=..] mark= [secctx=] [zone=] [labels=]
//! [delta-time=] [use=] [id=] [any other key=value]
//! ```
//!
//! Key order after the protocol is not enforced (versions differ); what is enforced is
//! that each tuple has its addresses, that protocols with ports have them, and that both
//! tuples are present. `id=` is the ICMP identifier inside an ICMP tuple that has no
//! identifier yet, and the entry id everywhere else.

use std::net::IpAddr;

use super::{
    family_matches, warn, Counters, CpuStats, Dump, Entry, Event, EventKind, Flags, Footer, IcmpKey,
};
use crate::model::{Proto, Tuple};

/// What one line holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    Blank,
    Entry(Entry),
    Event(Event),
    /// A `conntrack -S` row (`cpu=N found=...`).
    Stats(CpuStats),
    /// The header of `/proc/net/stat/nf_conntrack` (column names).
    StatHeader(Vec<String>),
    Footer(Footer),
    /// Not conntrack output but expected around it: a pasted shell prompt or command,
    /// a `#` comment, another message of the conntrack tool.
    Skipped,
}

/// Why a line is not conntrack output, at a 1-based character column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError {
    pub column: u64,
    pub message: String,
}

fn err<T>(column: u64, message: impl Into<String>) -> Result<T, LineError> {
    Err(LineError {
        column,
        message: message.into(),
    })
}

/// A token: its text and 1-based character column.
#[derive(Clone, Copy, Debug)]
struct Tok<'a> {
    text: &'a str,
    col: u64,
}

/// Splits on whitespace, keeping a bracketed group (`[start=Tue Apr  9 13:33:24 2024]`)
/// as one token with its inner spacing.
fn tokenize(line: &str) -> Vec<Tok<'_>> {
    let mut out = Vec::new();
    let mut chars = line.char_indices().peekable();
    let mut col = 0u64;
    while let Some(&(start, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            col += 1;
            continue;
        }
        let start_col = col + 1;
        let bracket = c == '[';
        let mut end = start;
        while let Some(&(i, c)) = chars.peek() {
            if c.is_whitespace() && !bracket {
                break;
            }
            chars.next();
            col += 1;
            end = i + c.len_utf8();
            if bracket && c == ']' {
                break;
            }
        }
        out.push(Tok {
            text: &line[start..end],
            col: start_col,
        });
    }
    out
}

/// Parses one line (without its newline). `line` is the 1-based line number stored
/// on entries.
pub fn parse_line(line: u64, text: &str) -> Result<Line, LineError> {
    let text = text.trim_end_matches(['\n', '\r']);
    let toks = tokenize(text);
    let Some(first) = toks.first() else {
        return Ok(Line::Blank);
    };
    if first.text.ends_with('#') || first.text.ends_with('$') || first.text.starts_with('#') {
        return Ok(Line::Skipped);
    }
    if let Some(rest) = first.text.strip_prefix("cpu=") {
        return stats_row(line, rest, &toks).map(Line::Stats);
    }
    if first.text == "entries"
        && toks
            .iter()
            .all(|t| t.text.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
    {
        return Ok(Line::StatHeader(
            toks.iter().map(|t| t.text.to_string()).collect(),
        ));
    }
    if first.text == "conntrack" && toks.get(1).is_some_and(|t| t.text.starts_with('v')) {
        return Ok(footer(line, text).map_or(Line::Skipped, Line::Footer));
    }
    if first.text.starts_with('<') {
        return err(
            first.col,
            "XML output (`-o xml`) is not read; save `conntrack -L -o extended,id` instead",
        );
    }
    entry_or_event(line, &toks)
}

/// "conntrack v1.4.7 (conntrack-tools): 10 flow entries have been shown."
fn footer(line: u64, text: &str) -> Option<Footer> {
    let (_, tail) = text.split_once("): ")?;
    let mut words = tail.split_whitespace();
    let count = words.next()?.parse().ok()?;
    if words.next()? != "flow" {
        return None;
    }
    let what = words.next()?;
    matches!(what, "entries" | "events").then(|| Footer {
        line,
        count,
        what: what.to_string(),
    })
}

fn stats_row(line: u64, cpu: &str, toks: &[Tok<'_>]) -> Result<CpuStats, LineError> {
    let cpu = match cpu.parse() {
        Ok(n) => n,
        Err(_) => return err(toks[0].col + 4, "expected a CPU number after `cpu=`"),
    };
    let mut counters = Vec::new();
    for t in &toks[1..] {
        let Some((k, v)) = t.text.split_once('=') else {
            return err(t.col, format!("expected `name=count`, found `{}`", t.text));
        };
        let Ok(v) = v.parse() else {
            return err(
                t.col + k.len() as u64 + 1,
                format!("expected a count after `{k}=`, found `{v}`"),
            );
        };
        counters.push((k.to_string(), v));
    }
    Ok(CpuStats {
        line,
        cpu: Some(cpu),
        counters,
    })
}

/// A `/proc/net/stat/nf_conntrack` row: one hexadecimal number per header column.
fn hex_row(line: u64, header: &[String], text: &str) -> Option<CpuStats> {
    let toks = tokenize(text);
    if toks.len() != header.len() {
        return None;
    }
    let counters = header
        .iter()
        .zip(&toks)
        .map(|(h, t)| Some((h.clone(), u64::from_str_radix(t.text, 16).ok()?)))
        .collect::<Option<Vec<_>>>()?;
    Some(CpuStats {
        line,
        cpu: None,
        counters,
    })
}

/// `[1712662404.573225]` → nanoseconds since the epoch.
fn event_time(t: &str) -> Option<i64> {
    let inner = t.strip_prefix('[')?.strip_suffix(']')?;
    let (sec, frac) = inner.split_once('.').unwrap_or((inner, ""));
    let sec: i64 = sec.trim().parse().ok()?;
    // conntrack prints the microseconds zero-padded to six digits (`.044844`); the
    // digits are read as a count of microseconds.
    let frac = frac.trim();
    let usec: i64 = if frac.is_empty() {
        0
    } else {
        if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        frac.parse().ok()?
    };
    if !(0..1_000_000).contains(&usec) {
        return None;
    }
    sec.checked_mul(1_000_000_000)?.checked_add(usec * 1000)
}

fn event_kind(t: &str) -> Option<EventKind> {
    match t {
        "[NEW]" => Some(EventKind::New),
        "[UPDATE]" => Some(EventKind::Update),
        "[DESTROY]" => Some(EventKind::Destroy),
        _ => None,
    }
}

/// A tuple being filled from `key=value` tokens.
#[derive(Default)]
struct TupleBuf {
    col: u64,
    src: Option<IpAddr>,
    dst: Option<IpAddr>,
    sport: Option<u16>,
    dport: Option<u16>,
    icmp_type: Option<u8>,
    icmp_code: Option<u8>,
    icmp_id: Option<u16>,
    packets: Option<u64>,
    bytes: Option<u64>,
}

impl TupleBuf {
    fn finish(&self, proto: Proto, which: &str) -> Result<(Tuple, Option<IcmpKey>), LineError> {
        let (Some(src), Some(dst)) = (self.src, self.dst) else {
            return err(
                self.col,
                format!("{which} tuple: expected `src=` and `dst=`"),
            );
        };
        if src.is_ipv4() != dst.is_ipv4() {
            return err(
                self.col,
                format!("{which} tuple: `src=` and `dst=` are of different address families"),
            );
        }
        let icmp = match (self.icmp_type, self.icmp_code) {
            (Some(icmp_type), code) => Some(IcmpKey {
                icmp_type,
                code: code.unwrap_or(0),
            }),
            _ => None,
        };
        let (sport, dport) = if proto.is_icmp() {
            (self.icmp_id.unwrap_or(0), 0)
        } else {
            match (self.sport, self.dport) {
                (Some(s), Some(d)) => (s, d),
                (None, None) if !needs_ports(proto) => (0, 0),
                _ => {
                    return err(
                        self.col,
                        format!("{which} tuple: expected `sport=` and `dport=` for {proto}"),
                    )
                }
            }
        };
        Ok((
            Tuple {
                proto,
                src,
                sport,
                dst,
                dport,
            },
            icmp,
        ))
    }

    fn counters(&self) -> Option<Counters> {
        match (self.packets, self.bytes) {
            (None, None) => None,
            (p, b) => Some(Counters {
                packets: p.unwrap_or(0),
                bytes: b.unwrap_or(0),
            }),
        }
    }
}

/// Protocols whose conntrack tuples always carry ports.
fn needs_ports(p: Proto) -> bool {
    matches!(
        p,
        Proto::Tcp | Proto::Udp | Proto::Sctp | Proto::Other(33 | 136)
    )
}

/// The error for the value of `key=value` at column `col`: located at the value.
fn bad_value<T>(key: &str, v: &str, col: u64, what: &str) -> Result<T, LineError> {
    err(
        col + key.len() as u64 + 1,
        format!("expected {what} after `{key}=`, found `{v}`"),
    )
}

fn num<T: std::str::FromStr>(key: &str, v: &str, col: u64, what: &str) -> Result<T, LineError> {
    v.parse().or_else(|_| bad_value(key, v, col, what))
}

/// `mark=` is printed in decimal; people also paste `0x`-prefixed values.
fn mark(v: &str, col: u64) -> Result<u32, LineError> {
    let parsed = match v.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    };
    parsed.map_or_else(
        || {
            err(
                col + 5,
                format!("expected a 32-bit mark after `mark=`, found `{v}`"),
            )
        },
        Ok,
    )
}

const PROTO_EXPECTED: &str = "expected a conntrack entry: a protocol name and number \
     (`tcp 6`), optionally after `ipv4 2` or an event tag";

fn entry_or_event(line: u64, toks: &[Tok<'_>]) -> Result<Line, LineError> {
    let mut i = 0;
    let mut time_ns = None;
    let mut kind = None;
    if let Some(t) = toks.get(i).filter(|t| t.text.starts_with('[')) {
        if let Some(ns) = event_time(t.text) {
            time_ns = Some(ns);
            i += 1;
        }
    }
    if let Some(k) = toks.get(i).and_then(|t| event_kind(t.text)) {
        kind = Some(k);
        i += 1;
    }
    if time_ns.is_some() && kind.is_none() {
        let col = toks.get(i).map_or(toks[0].col, |t| t.col);
        return err(
            col,
            "expected `[NEW]`, `[UPDATE]` or `[DESTROY]` after the event time",
        );
    }
    let mut l3num = None;
    if let Some(t) = toks.get(i).filter(|t| matches!(t.text, "ipv4" | "ipv6")) {
        let Some(n) = toks.get(i + 1).and_then(|n| n.text.parse::<u8>().ok()) else {
            return err(
                t.col,
                format!("expected the layer-3 number after `{}`", t.text),
            );
        };
        l3num = Some(n);
        i += 2;
    }
    let proto_col = toks.get(i).map_or(toks[0].col, |t| t.col);
    let proto = match (toks.get(i), toks.get(i + 1)) {
        (Some(name), Some(number))
            if name
                .text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                && name
                    .text
                    .bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_lowercase()) =>
        {
            match number.text.parse::<u8>() {
                Ok(n) => Proto::from_number(n),
                Err(_) if number.text.bytes().all(|b| b.is_ascii_digit()) => {
                    return err(
                        number.col,
                        format!("protocol number `{}` is out of range", number.text),
                    )
                }
                Err(_) => return err(proto_col, PROTO_EXPECTED),
            }
        }
        _ => return err(proto_col, PROTO_EXPECTED),
    };
    i += 2;
    let mut timeout_s = None;
    if let Some(t) = toks
        .get(i)
        .filter(|t| t.text.bytes().all(|b| b.is_ascii_digit()))
    {
        let Ok(secs) = t.text.parse() else {
            return err(t.col, format!("timeout `{}` is out of range", t.text));
        };
        timeout_s = Some(secs);
        i += 1;
    }
    let mut state = None;
    if let Some(t) = toks.get(i).filter(|t| {
        t.text
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_uppercase())
            && t.text
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    }) {
        state = Some(t.text.to_string());
        i += 1;
    }

    let mut tuples: Vec<TupleBuf> = Vec::with_capacity(2);
    let mut flags = Flags::default();
    let mut e = EntryRest::default();
    for t in &toks[i..] {
        if let Some(inner) = t.text.strip_prefix('[') {
            let Some(inner) = inner.strip_suffix(']') else {
                return err(t.col, "expected `]` closing the bracketed word");
            };
            match inner {
                "UNREPLIED" => flags.unreplied = true,
                "ASSURED" => flags.assured = true,
                "OFFLOAD" => flags.offload = true,
                "HW_OFFLOAD" => flags.hw_offload = true,
                _ => {
                    if let Some(v) = inner.strip_prefix("start=") {
                        e.start = Some(v.to_string());
                    } else if let Some(v) = inner.strip_prefix("stop=") {
                        e.stop = Some(v.to_string());
                    } else {
                        flags.other.push(inner.to_string());
                    }
                }
            }
            continue;
        }
        let Some((key, v)) = t.text.split_once('=') else {
            return err(
                t.col,
                format!("expected `key=value` or `[FLAG]`, found `{}`", t.text),
            );
        };
        if key == "src" {
            if tuples.len() == 2 {
                return err(t.col, "a third tuple: an entry has only ORIGINAL and REPLY");
            }
            tuples.push(TupleBuf {
                col: t.col,
                ..TupleBuf::default()
            });
        }
        let tb = tuples.last_mut();
        match (key, tb) {
            ("src" | "dst", Some(tb)) => {
                let addr: IpAddr = num(key, v, t.col, "an IP address")?;
                let slot = if key == "src" {
                    &mut tb.src
                } else {
                    &mut tb.dst
                };
                *slot = Some(addr);
            }
            ("sport", Some(tb)) => tb.sport = Some(num(key, v, t.col, "a port")?),
            ("dport", Some(tb)) => tb.dport = Some(num(key, v, t.col, "a port")?),
            ("srckey" | "dstkey", Some(tb)) => {
                // GRE keys print as hexadecimal (`srckey=0x0`).
                let k = u16::from_str_radix(v.trim_start_matches("0x"), 16)
                    .or_else(|_| bad_value(key, v, t.col, "a hexadecimal key"))?;
                let slot = if key == "srckey" {
                    &mut tb.sport
                } else {
                    &mut tb.dport
                };
                *slot = Some(k);
            }
            ("type", Some(tb)) => tb.icmp_type = Some(num(key, v, t.col, "an ICMP type")?),
            ("code", Some(tb)) => tb.icmp_code = Some(num(key, v, t.col, "an ICMP code")?),
            ("id", Some(tb))
                if proto.is_icmp() && tb.icmp_type.is_some() && tb.icmp_id.is_none() =>
            {
                tb.icmp_id = Some(num(key, v, t.col, "an ICMP identifier")?)
            }
            ("packets", Some(tb)) => tb.packets = Some(num(key, v, t.col, "a count")?),
            ("bytes", Some(tb)) => tb.bytes = Some(num(key, v, t.col, "a count")?),
            ("zone-orig", _) => e.zone_orig = Some(num(key, v, t.col, "a zone")?),
            ("zone-reply", _) => e.zone_reply = Some(num(key, v, t.col, "a zone")?),
            ("mark", _) => e.mark = Some(mark(v, t.col)?),
            ("zone", _) => e.zone = Some(num(key, v, t.col, "a zone")?),
            ("use", _) => e.use_count = Some(num(key, v, t.col, "a count")?),
            ("id", _) => e.id = Some(num(key, v, t.col, "an entry id")?),
            ("delta-time", _) => e.delta_time_s = Some(num(key, v, t.col, "seconds")?),
            ("secctx", _) => e.secctx = Some(v.to_string()),
            ("labels", _) => {
                e.labels = v
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            }
            (
                "dst" | "sport" | "dport" | "srckey" | "dstkey" | "type" | "code" | "packets"
                | "bytes",
                None,
            ) => {
                return err(t.col, format!("`{key}=` before the first `src=`"));
            }
            _ => e.extra.push((key.to_string(), v.to_string())),
        }
    }
    let end_col = toks
        .last()
        .map_or(1, |t| t.col + t.text.chars().count() as u64);
    let (orig_buf, reply_buf) = match tuples.as_slice() {
        [o, r] => (o, r),
        [_] => return err(end_col, "expected the REPLY tuple (a second `src=`)"),
        _ => return err(proto_col, "expected the ORIGINAL tuple (`src=... dst=...`)"),
    };
    let (orig, orig_icmp) = orig_buf.finish(proto, "ORIGINAL")?;
    let (reply, reply_icmp) = reply_buf.finish(proto, "REPLY")?;
    if orig.src.is_ipv4() != reply.src.is_ipv4() {
        return err(
            reply_buf.col,
            "ORIGINAL and REPLY tuples are of different address families",
        );
    }
    if let Some(n) = l3num.filter(|&n| !family_matches(n, orig.src)) {
        return err(
            toks[0].col,
            format!("layer-3 number {n} does not match the addresses"),
        );
    }
    let entry = Entry {
        line,
        l3num,
        timeout_s,
        state,
        orig,
        reply,
        orig_icmp,
        reply_icmp,
        orig_counters: orig_buf.counters(),
        reply_counters: reply_buf.counters(),
        flags,
        mark: e.mark,
        zone: e.zone,
        zone_orig: e.zone_orig,
        zone_reply: e.zone_reply,
        secctx: e.secctx,
        labels: e.labels,
        use_count: e.use_count,
        id: e.id,
        delta_time_s: e.delta_time_s,
        start: e.start,
        stop: e.stop,
        extra: e.extra,
    };
    Ok(match kind {
        Some(kind) => Line::Event(Event {
            kind,
            time_ns,
            entry,
        }),
        None => Line::Entry(entry),
    })
}

/// The entry-level fields, gathered in any order.
#[derive(Default)]
struct EntryRest {
    mark: Option<u32>,
    zone: Option<u16>,
    zone_orig: Option<u16>,
    zone_reply: Option<u16>,
    secctx: Option<String>,
    labels: Vec<String>,
    use_count: Option<u32>,
    id: Option<u32>,
    delta_time_s: Option<u64>,
    start: Option<String>,
    stop: Option<String>,
    extra: Vec<(String, String)>,
}

/// Feeds lines into a [`Dump`], keeping what spans lines.
#[derive(Default)]
pub(super) struct Parser {
    stat_header: Option<Vec<String>>,
    /// Entries (or events) read since the last footer, to check its count.
    since_footer: u64,
    xml_warned: bool,
}

impl Parser {
    pub(super) fn feed(&mut self, dump: &mut Dump, n: u64, text: &str) {
        if let Some(header) = &self.stat_header {
            if let Some(row) = hex_row(n, header, text) {
                dump.stats.push(row);
                return;
            }
        }
        match parse_line(n, text) {
            Ok(Line::Blank) => {}
            Ok(Line::Skipped) => dump.skipped_lines += 1,
            Ok(Line::Entry(e)) => {
                self.since_footer += 1;
                dump.entries.push(e);
            }
            Ok(Line::Event(e)) => {
                self.since_footer += 1;
                dump.events.push(e);
            }
            Ok(Line::Stats(s)) => dump.stats.push(s),
            Ok(Line::StatHeader(h)) => self.stat_header = Some(h),
            Ok(Line::Footer(f)) => {
                if f.count != self.since_footer {
                    let msg = format!(
                        "the footer counts {} {} but {} were read since the previous one",
                        f.count, f.what, self.since_footer
                    );
                    warn(dump, n, 1, msg);
                }
                self.since_footer = 0;
                dump.footers.push(f);
            }
            Err(e) => {
                let xml = e.message.starts_with("XML");
                if !xml || !self.xml_warned {
                    warn(dump, n, e.column, e.message);
                }
                self.xml_warned |= xml;
            }
        }
    }
}
