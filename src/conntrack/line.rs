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
//! An entry line is read in named steps: its head (event tag, protocols, timeout,
//! state), then its body (tuples, flags and `key=value` fields), then the checks that
//! need the whole line. Key order after the protocol is not enforced (versions
//! differ); what is enforced is that both tuples are present and of one address
//! family, and what the tuple builder shared with the netlink reader requires of each
//! tuple (its addresses, and the ports of protocols that have them). `type=`, `code=`
//! and `id=` belong to the tuple only in ICMP and ICMPv6 entries: `id=` is the ICMP
//! identifier inside an ICMP tuple that has a type and no identifier yet, and the
//! entry id everywhere else; `type=` and `code=` elsewhere are unknown keys, kept.

use super::build::{CtTuple, EntryParts, TupleError, TupleParts};
use super::paste;
use super::xml;
use super::{
    family_matches, warn, Counters, CpuStats, Dump, Entry, Event, EventKind, Footer, Sysctl,
};
use crate::model::Proto;

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
    /// A setting as `sysctl` prints it (`net.netfilter.nf_conntrack_max = 262144`).
    Sysctl(Sysctl),
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
/// on entries. Decorations of a paste around the record (a prompt, a time prefix,
/// mail quoting, a `#`) are stripped; the parser also counts them.
pub fn parse_line(line: u64, text: &str) -> Result<Line, LineError> {
    let text = text.trim_end_matches(['\n', '\r']);
    classify(line, &mut paste::strip(text))
}

/// Whether `rest` starts the way a conntrack record does, so that an error in it is
/// a damaged record rather than a command after a prompt.
fn looks_like_record(rest: &str) -> bool {
    let Some(first) = rest.split_whitespace().next() else {
        return false;
    };
    matches!(
        first,
        "ipv4"
            | "ipv6"
            | "tcp"
            | "udp"
            | "udplite"
            | "icmp"
            | "icmpv6"
            | "sctp"
            | "gre"
            | "dccp"
            | "unknown"
            | "[NEW]"
            | "[UPDATE]"
            | "[DESTROY]"
    ) || first.starts_with("src=")
        || first.starts_with("cpu=")
        || event_time(first).is_some()
}

/// Commands people run to show conntrack, recognised after a lone `#` (a root prompt
/// without host) rather than taken for a comment.
fn is_command(rest: &str) -> bool {
    let first = rest.split_whitespace().next().unwrap_or_default();
    let name = first.rsplit('/').next().unwrap_or(first);
    matches!(
        name,
        "conntrack"
            | "cat"
            | "sudo"
            | "grep"
            | "zcat"
            | "less"
            | "head"
            | "tail"
            | "watch"
            | "sysctl"
            | "ip"
            | "nft"
            | "iptables"
            | "ip6tables"
            | "docker"
            | "kubectl"
            | "echo"
    )
}

/// Reads the line after its decorations, and settles what a prompt or a `#` was in
/// front of: a record (read, the decoration counted), or a command or comment
/// (skipped). Clears in `d` the decorations that turn out not to frame a record.
fn classify(line: u64, d: &mut paste::Decor<'_>) -> Result<Line, LineError> {
    let res = bare_line(line, d.rest).map_err(|mut e| {
        e.column += d.offset;
        e
    });
    let framed = d.prompt || d.hash;
    let res = match res {
        Ok(Line::Blank) if framed => Ok(Line::Skipped),
        Ok(Line::Blank) => Ok(Line::Blank),
        Ok(Line::Skipped) => Ok(Line::Skipped),
        // A command after a prompt, or pasted without one (`conntrack -L | grep ...`).
        Err(_) if (framed || is_command(d.rest)) && !looks_like_record(d.rest) => Ok(Line::Skipped),
        other => other,
    };
    match &res {
        // A bare `#` line, or `#` before text that is not a command: a comment.
        Ok(Line::Skipped) if d.hash => {
            d.hash = false;
            d.prompt = is_command(d.rest);
        }
        Ok(Line::Blank) => *d = paste::Decor::default(),
        _ => {}
    }
    let mut res = res;
    if let (Ok(Line::Event(ev)), Some(t)) = (&mut res, &d.time) {
        if ev.time_ns.is_none() && ev.local_time.is_none() {
            match t {
                paste::PrefixTime::Epoch(ns) => ev.time_ns = Some(*ns),
                paste::PrefixTime::Local(s) => ev.local_time = Some(s.clone()),
            }
        }
    }
    res
}

/// Parses a line without decorations.
fn bare_line(line: u64, text: &str) -> Result<Line, LineError> {
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
    if let Some(s) = sysctl(line, text, &toks) {
        return Ok(Line::Sysctl(s));
    }
    if first.text == "conntrack" && toks.get(1).is_some_and(|t| t.text.starts_with('v')) {
        return Ok(footer(line, text).map_or(Line::Skipped, Line::Footer));
    }
    if first.text.starts_with('<') {
        return err(
            first.col,
            "expected a conntrack entry, found XML outside a `<flow>` element",
        );
    }
    entry_or_event(line, &toks)
}

/// `name = value` as `sysctl` prints a setting: a dotted name starting with a
/// lower-case letter (`net.netfilter.nf_conntrack_max`; a component may be an
/// interface's name, in which sysctl shows a `.` as `/`), ` = `, the value as printed
/// (several numbers are separated by tabs).
fn sysctl(line: u64, text: &str, toks: &[Tok<'_>]) -> Option<Sysctl> {
    let [name, eq, ..] = toks else { return None };
    let named = name.text.starts_with(|c: char| c.is_ascii_lowercase())
        && name.text.split('.').count() > 1
        && name
            .text
            .split('.')
            .all(|c| !c.is_empty() && !c.contains('='));
    if !named || eq.text != "=" {
        return None;
    }
    let (_, value) = text.split_once('=')?;
    Some(Sysctl {
        line,
        name: name.text.to_string(),
        value: value.trim().to_string(),
    })
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
    // "have been deleted." (`conntrack -D`) and other counts are no footers of a listing.
    let shown = tail.trim_end().ends_with("have been shown.");
    (shown && matches!(what, "entries" | "events")).then(|| Footer {
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

/// A tuple being filled from `key=value` tokens: its fields, where its `src=` is, and
/// the counters printed inside it.
#[derive(Default)]
struct TupleBuf {
    col: u64,
    parts: TupleParts,
    packets: Option<u64>,
    bytes: Option<u64>,
}

impl TupleBuf {
    /// Reads `key=value` if it is a field of this tuple; false if it is not.
    fn read_field(
        &mut self,
        proto: Proto,
        key: &str,
        v: &str,
        col: u64,
    ) -> Result<bool, LineError> {
        let p = &mut self.parts;
        match key {
            "src" => p.src = Some(num(key, v, col, "an IP address")?),
            "dst" => p.dst = Some(num(key, v, col, "an IP address")?),
            "sport" => p.sport = Some(num(key, v, col, "a port")?),
            "dport" => p.dport = Some(num(key, v, col, "a port")?),
            "srckey" => p.sport = Some(gre_key(key, v, col)?),
            "dstkey" => p.dport = Some(gre_key(key, v, col)?),
            "type" if proto.is_icmp() => p.icmp_type = Some(num(key, v, col, "an ICMP type")?),
            "code" if proto.is_icmp() => p.icmp_code = Some(num(key, v, col, "an ICMP code")?),
            // The identifier follows the type; any other `id=` is the entry's.
            "id" if proto.is_icmp() && p.icmp_type.is_some() && p.icmp_id.is_none() => {
                p.icmp_id = Some(num(key, v, col, "an ICMP identifier")?)
            }
            "packets" => self.packets = Some(num(key, v, col, "a count")?),
            "bytes" => self.bytes = Some(num(key, v, col, "a count")?),
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn finish(&self, proto: Proto, which: &str) -> Result<CtTuple, LineError> {
        self.parts.build(proto).or_else(|e| {
            let message = match e {
                TupleError::NoAddresses => format!("{which} tuple: expected `src=` and `dst=`"),
                TupleError::MixedFamilies => {
                    format!("{which} tuple: `src=` and `dst=` are of different address families")
                }
                TupleError::MissingPort => {
                    format!("{which} tuple: expected `sport=` and `dport=` for {proto}")
                }
            };
            err(self.col, message)
        })
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

/// Keys of a tuple, which cannot come before the first `src=`.
const TUPLE_KEYS: [&str; 9] = [
    "dst", "sport", "dport", "srckey", "dstkey", "type", "code", "packets", "bytes",
];

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

/// GRE keys print as hexadecimal (`srckey=0x0`).
fn gre_key(key: &str, v: &str, col: u64) -> Result<u16, LineError> {
    u16::from_str_radix(v.trim_start_matches("0x"), 16)
        .or_else(|_| bad_value(key, v, col, "a hexadecimal key"))
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

/// The tokens still to read.
type Toks<'t, 'a> = &'t [Tok<'a>];

/// The tokens after the first `n`.
fn skip<'t, 'a>(toks: Toks<'t, 'a>, n: usize) -> Toks<'t, 'a> {
    toks.get(n..).unwrap_or_default()
}

/// What comes before the tuples: the event tag, the layer-3 and layer-4 protocols,
/// the timeout and the state.
struct Head {
    time_ns: Option<i64>,
    kind: Option<EventKind>,
    l3num: Option<u8>,
    proto: Proto,
    timeout_s: Option<u64>,
    state: Option<String>,
    /// Column of the line's first token, where a wrong layer-3 number is reported.
    line_col: u64,
    /// Column of the protocol name, where a missing ORIGINAL tuple is reported.
    proto_col: u64,
}

/// Reads the head of an entry line; returns it and the tokens after it.
fn head<'t, 'a>(toks: Toks<'t, 'a>) -> Result<(Head, Toks<'t, 'a>), LineError> {
    let line_col = toks.first().map_or(1, |t| t.col);
    let (time_ns, kind, rest) = event_tag(toks, line_col)?;
    let (l3num, rest) = layer3(rest)?;
    let proto_col = rest.first().map_or(line_col, |t| t.col);
    let (proto, rest) = protocol(rest, proto_col)?;
    let (timeout_s, rest) = timeout(rest)?;
    let (state, rest) = state(rest);
    let head = Head {
        time_ns,
        kind,
        l3num,
        proto,
        timeout_s,
        state,
        line_col,
        proto_col,
    };
    Ok((head, rest))
}

/// Events: `[<sec>.<usec>]` (`-o timestamp`), then `[NEW]`, `[UPDATE]` or `[DESTROY]`.
/// Both are optional, but a time is only printed before a kind.
fn event_tag<'t, 'a>(
    toks: Toks<'t, 'a>,
    line_col: u64,
) -> Result<(Option<i64>, Option<EventKind>, Toks<'t, 'a>), LineError> {
    let time_ns = toks.first().and_then(|t| event_time(t.text));
    let rest = skip(toks, usize::from(time_ns.is_some()));
    let kind = rest.first().and_then(|t| event_kind(t.text));
    let rest = skip(rest, usize::from(kind.is_some()));
    if time_ns.is_some() && kind.is_none() {
        let col = rest.first().map_or(line_col, |t| t.col);
        return err(
            col,
            "expected `[NEW]`, `[UPDATE]` or `[DESTROY]` after the event time",
        );
    }
    Ok((time_ns, kind, rest))
}

/// `ipv4 2` / `ipv6 10` of `-o extended` and `/proc`.
fn layer3<'t, 'a>(toks: Toks<'t, 'a>) -> Result<(Option<u8>, Toks<'t, 'a>), LineError> {
    let Some(t) = toks.first().filter(|t| matches!(t.text, "ipv4" | "ipv6")) else {
        return Ok((None, toks));
    };
    let Some(n) = toks.get(1).and_then(|n| n.text.parse::<u8>().ok()) else {
        return err(
            t.col,
            format!("expected the layer-3 number after `{}`", t.text),
        );
    };
    Ok((Some(n), skip(toks, 2)))
}

/// The layer-4 protocol: a lowercase name (`tcp`, `unknown`, `icmpv6`) and a number.
/// `col` is where an error is reported when there is no such pair.
fn protocol<'t, 'a>(toks: Toks<'t, 'a>, col: u64) -> Result<(Proto, Toks<'t, 'a>), LineError> {
    let (Some(name), Some(number)) = (toks.first(), toks.get(1)) else {
        return err(col, PROTO_EXPECTED);
    };
    let is_name = name
        .text
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase())
        && name
            .text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !is_name {
        return err(col, PROTO_EXPECTED);
    }
    let proto = match number.text.parse::<u8>() {
        Ok(n) => Proto::from_number(n),
        Err(_) if number.text.bytes().all(|b| b.is_ascii_digit()) => {
            return err(
                number.col,
                format!("protocol number `{}` is out of range", number.text),
            )
        }
        Err(_) => return err(col, PROTO_EXPECTED),
    };
    Ok((proto, skip(toks, 2)))
}

/// The seconds left, when printed (a number right after the protocol).
fn timeout<'t, 'a>(toks: Toks<'t, 'a>) -> Result<(Option<u64>, Toks<'t, 'a>), LineError> {
    let Some(t) = toks
        .first()
        .filter(|t| t.text.bytes().all(|b| b.is_ascii_digit()))
    else {
        return Ok((None, toks));
    };
    let Ok(secs) = t.text.parse() else {
        return err(t.col, format!("timeout `{}` is out of range", t.text));
    };
    Ok((Some(secs), skip(toks, 1)))
}

/// The protocol state, when printed: an uppercase word (`ESTABLISHED`, `SYN_SENT2`).
fn state<'t, 'a>(toks: Toks<'t, 'a>) -> (Option<String>, Toks<'t, 'a>) {
    let is_state = |t: &&Tok<'_>| {
        t.text
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_uppercase())
            && t.text
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    };
    match toks.first().filter(is_state) {
        Some(t) => (Some(t.text.to_string()), skip(toks, 1)),
        None => (None, toks),
    }
}

/// What follows the head: the tuples and the entry's other fields, in any order.
struct Body {
    tuples: Vec<TupleBuf>,
    parts: EntryParts,
}

impl Body {
    /// Reads every token after the head into `parts` and the tuples.
    fn read(proto: Proto, toks: &[Tok<'_>], parts: EntryParts) -> Result<Body, LineError> {
        let mut body = Body {
            tuples: Vec::with_capacity(2),
            parts,
        };
        for t in toks {
            match t.text.strip_prefix('[') {
                Some(inner) => bracketed(&mut body.parts, t, inner)?,
                None => body.key_value(proto, t)?,
            }
        }
        Ok(body)
    }

    /// `key=value`: a field of the current tuple (`src=` opens a new one), else a
    /// field of the entry, else a key kept as is.
    fn key_value(&mut self, proto: Proto, t: &Tok<'_>) -> Result<(), LineError> {
        let Some((key, v)) = t.text.split_once('=') else {
            return err(
                t.col,
                format!("expected `key=value` or `[FLAG]`, found `{}`", t.text),
            );
        };
        if key == "src" {
            if self.tuples.len() == 2 {
                return err(t.col, "a third tuple: an entry has only ORIGINAL and REPLY");
            }
            self.tuples.push(TupleBuf {
                col: t.col,
                ..TupleBuf::default()
            });
        }
        let tuple_field = match self.tuples.last_mut() {
            Some(tb) => tb.read_field(proto, key, v, t.col)?,
            None if TUPLE_KEYS.contains(&key) => {
                return err(t.col, format!("`{key}=` before the first `src=`"));
            }
            None => false,
        };
        if tuple_field {
            return Ok(());
        }
        entry_field(&mut self.parts, key, v, t.col)
    }

    /// Checks that both tuples are there and agree, and puts the entry together.
    /// `end_col` is the column just past the line, where a missing REPLY is reported.
    fn into_entry(self, line: u64, head: &Head, end_col: u64) -> Result<Entry, LineError> {
        let Body { tuples, mut parts } = self;
        let (orig_buf, reply_buf) = match tuples.as_slice() {
            [o, r] => (o, r),
            [_] => return err(end_col, "expected the REPLY tuple (a second `src=`)"),
            _ => {
                return err(
                    head.proto_col,
                    "expected the ORIGINAL tuple (`src=... dst=...`)",
                )
            }
        };
        let orig = orig_buf.finish(head.proto, "ORIGINAL")?;
        let reply = reply_buf.finish(head.proto, "REPLY")?;
        if orig.tuple.src.is_ipv4() != reply.tuple.src.is_ipv4() {
            return err(
                reply_buf.col,
                "ORIGINAL and REPLY tuples are of different address families",
            );
        }
        if let Some(n) = parts.l3num.filter(|&n| !family_matches(n, orig.tuple.src)) {
            return err(
                head.line_col,
                format!("layer-3 number {n} does not match the addresses"),
            );
        }
        parts.orig_counters = orig_buf.counters();
        parts.reply_counters = reply_buf.counters();
        Ok(parts.into_entry(line, orig, reply))
    }
}

/// A bracketed word after the head: a status flag, or `-o ktimestamp`'s
/// `[start=...]` / `[stop=...]`. `inner` is the token without its `[`.
fn bracketed(parts: &mut EntryParts, t: &Tok<'_>, inner: &str) -> Result<(), LineError> {
    let Some(inner) = inner.strip_suffix(']') else {
        return err(t.col, "expected `]` closing the bracketed word");
    };
    let flags = &mut parts.flags;
    match inner {
        "UNREPLIED" => flags.unreplied = true,
        "ASSURED" => flags.assured = true,
        "OFFLOAD" => flags.offload = true,
        "HW_OFFLOAD" => flags.hw_offload = true,
        _ => {
            if let Some(v) = inner.strip_prefix("start=") {
                parts.start = Some(v.to_string());
            } else if let Some(v) = inner.strip_prefix("stop=") {
                parts.stop = Some(v.to_string());
            } else {
                flags.other.push(inner.to_string());
            }
        }
    }
    Ok(())
}

/// A `key=value` of the entry as a whole; keys natcheck has no field for are kept in
/// [`Entry::extra`].
fn entry_field(parts: &mut EntryParts, key: &str, v: &str, col: u64) -> Result<(), LineError> {
    match key {
        "zone-orig" => parts.zone_orig = Some(num(key, v, col, "a zone")?),
        "zone-reply" => parts.zone_reply = Some(num(key, v, col, "a zone")?),
        "mark" => parts.mark = Some(mark(v, col)?),
        "zone" => parts.zone = Some(num(key, v, col, "a zone")?),
        "use" => parts.use_count = Some(num(key, v, col, "a count")?),
        "id" => parts.id = Some(num(key, v, col, "an entry id")?),
        "delta-time" => parts.delta_time_s = Some(num(key, v, col, "seconds")?),
        "secctx" => parts.secctx = Some(v.to_string()),
        "labels" => {
            parts.labels = v
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        }
        _ => parts.extra.push((key.to_string(), v.to_string())),
    }
    Ok(())
}

fn entry_or_event(line: u64, toks: &[Tok<'_>]) -> Result<Line, LineError> {
    let (mut head, rest) = head(toks)?;
    let parts = EntryParts {
        l3num: head.l3num,
        timeout_s: head.timeout_s,
        state: head.state.take(),
        ..EntryParts::default()
    };
    let body = Body::read(head.proto, rest, parts)?;
    let end_col = toks
        .last()
        .map_or(1, |t| t.col + t.text.chars().count() as u64);
    let entry = body.into_entry(line, &head, end_col)?;
    Ok(match head.kind {
        Some(kind) => Line::Event(Event {
            kind,
            time_ns: head.time_ns,
            local_time: None,
            entry,
        }),
        None => Line::Entry(entry),
    })
}

/// Feeds lines into a [`Dump`], keeping what spans lines.
#[derive(Default)]
pub(super) struct Parser {
    stat_header: Option<Vec<String>>,
    /// Entries (or events) read since the last footer, to check its count.
    since_footer: u64,
    /// An XML `<flow>` begun and not yet closed: its first line, the column of its
    /// `<`, and its text so far.
    flow: Option<(u64, u64, String)>,
    /// The last command pasted piped its output (`| grep`): footers count more than
    /// was shown.
    filtered: bool,
    /// A command was the last line read: a footer right after it is conntrack's
    /// stderr, printed before the entries it counts.
    after_command: bool,
}

/// Where the last XML flow went, for the tail conntrack -E prints after `</flow>`.
enum Last {
    Entry,
    Event,
}

impl Parser {
    pub(super) fn feed(&mut self, dump: &mut Dump, n: u64, text: &str) {
        let text = text.trim_end_matches(['\n', '\r']);
        if let Some(header) = &self.stat_header {
            if let Some(row) = hex_row(n, header, text) {
                dump.stats.push(row);
                return;
            }
        }
        let mut d = paste::strip(text);
        let body = d.rest.trim_start();
        let col = d.offset + (d.rest.chars().count() - body.chars().count()) as u64 + 1;
        if body.starts_with('<') || (self.flow.is_some() && !body.is_empty()) {
            if body.starts_with('<') {
                self.xml(dump, n, col, body);
                if self.flow.is_none() || body.contains("<flow") {
                    dump.stripped.count(&d);
                }
                return;
            }
            self.unclosed_flow(dump);
        }
        let res = classify(n, &mut d);
        if !matches!(res, Err(_) | Ok(Line::Blank)) {
            dump.stripped.count(&d);
        }
        match res {
            Ok(Line::Blank) => {}
            Ok(Line::Skipped) => {
                dump.skipped_lines += 1;
                if d.prompt || is_command(d.rest) {
                    self.since_footer = 0;
                    self.filtered = d.rest.contains('|');
                    self.after_command = true;
                }
            }
            Ok(Line::Entry(e)) => {
                self.since_footer += 1;
                self.after_command = false;
                dump.entries.push(e);
            }
            Ok(Line::Event(e)) => {
                self.since_footer += 1;
                self.after_command = false;
                dump.events.push(e);
            }
            Ok(Line::Stats(s)) => dump.stats.push(s),
            Ok(Line::Sysctl(s)) => dump.sysctls.push(s),
            Ok(Line::StatHeader(h)) => self.stat_header = Some(h),
            Ok(Line::Footer(f)) => {
                let stderr_first = self.after_command && self.since_footer == 0;
                self.after_command = false;
                if !self.filtered && !stderr_first && f.count != self.since_footer {
                    let msg = format!(
                        "the footer counts {} {} but {} were read since the previous one",
                        f.count, f.what, self.since_footer
                    );
                    warn(dump, n, 1, msg);
                }
                self.since_footer = 0;
                dump.footers.push(f);
            }
            Err(e) => warn(dump, n, e.column, e.message),
        }
    }

    /// The end of the input: a flow still open is damaged.
    pub(super) fn finish(&mut self, dump: &mut Dump) {
        self.unclosed_flow(dump);
    }

    fn unclosed_flow(&mut self, dump: &mut Dump) {
        if let Some((line, col, _)) = self.flow.take() {
            warn(dump, line, col, "`<flow>` is not closed by `</flow>`");
        }
    }

    /// A line of XML: the prolog, `<conntrack>`, flows (whole, begun, continued or
    /// ended here), and what conntrack -E prints after a flow.
    fn xml(&mut self, dump: &mut Dump, n: u64, col: u64, body: &str) {
        let mut rest = body;
        let mut rest_col = col;
        loop {
            if let Some((line, fcol, mut text)) = self.flow.take() {
                let Some(end) = rest.find("</flow>") else {
                    text.push('\n');
                    text.push_str(rest);
                    self.flow = Some((line, fcol, text));
                    return;
                };
                let close = end + "</flow>".len();
                text.push('\n');
                text.push_str(&rest[..close]);
                let last = self.flow_done(dump, line, fcol, &text);
                let after = &rest[close..];
                rest_col += rest[..close].chars().count() as u64;
                rest = after;
                // ` [USERSPACE] portid=N` after the flow, on its line.
                let trimmed = rest.trim_start();
                if !trimmed.is_empty() && !trimmed.starts_with('<') {
                    let entry = match last {
                        Some(Last::Entry) => dump.entries.last_mut(),
                        Some(Last::Event) => dump.events.last_mut().map(|e| &mut e.entry),
                        None => None,
                    };
                    if let Some(entry) = entry {
                        if let Err(at) = xml::tail(entry, rest) {
                            let c = rest_col + rest[..at].chars().count() as u64;
                            warn(
                                dump,
                                n,
                                c,
                                "expected `[FLAG]` or `key=value` after `</flow>`",
                            );
                        }
                    }
                    return;
                }
            }
            let trimmed = rest.trim_start();
            rest_col += (rest.chars().count() - trimmed.chars().count()) as u64;
            rest = trimmed;
            if rest.is_empty() {
                return;
            }
            if rest.starts_with("<flow") {
                self.flow = Some((n, rest_col, String::new()));
                continue;
            }
            // The prolog, `<conntrack>` and `</conntrack>` carry nothing.
            let known = ["<?xml", "<conntrack>", "</conntrack>", "<!--"];
            let Some(end) = rest
                .find('>')
                .filter(|_| known.iter().any(|k| rest.starts_with(k)))
            else {
                let at = rest_col;
                warn(
                    dump,
                    n,
                    at,
                    "expected `<flow>` or the `<conntrack>` element around flows",
                );
                return;
            };
            rest_col += rest[..end + 1].chars().count() as u64;
            rest = &rest[end + 1..];
        }
    }

    /// A complete flow's text, which began at `line`, column `col`.
    fn flow_done(&mut self, dump: &mut Dump, line: u64, col: u64, text: &str) -> Option<Last> {
        match xml::flow(line, text) {
            Ok(xml::Flow::Entry(e)) => {
                self.since_footer += 1;
                dump.entries.push(e);
                Some(Last::Entry)
            }
            Ok(xml::Flow::Event(e)) => {
                self.since_footer += 1;
                dump.events.push(e);
                Some(Last::Event)
            }
            Err(e) => {
                // Locate the error on its own line of the flow.
                let before = &text[..e.at.min(text.len())];
                let lines_in = before.matches('\n').count() as u64;
                let line_start = before.rfind('\n').map_or(0, |i| i + 1);
                let c = before[line_start..].chars().count() as u64;
                let (at_line, at_col) = if lines_in <= 1 {
                    (line, col + c)
                } else {
                    (line + lines_in - 1, c + 1)
                };
                warn(dump, at_line, at_col, e.message);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_steps() {
        let toks = tokenize("[1712662404.573225]\t [NEW] ipv6 10 tcp 6 120 SYN_SENT src=::1");
        let (h, rest) = head(&toks).unwrap();
        assert_eq!(h.time_ns, Some(1_712_662_404_573_225_000));
        assert_eq!(h.kind, Some(EventKind::New));
        assert_eq!(
            (h.l3num, h.proto, h.timeout_s),
            (Some(10), Proto::Tcp, Some(120))
        );
        assert_eq!(h.state.as_deref(), Some("SYN_SENT"));
        assert_eq!((h.line_col, h.proto_col), (1, 36));
        assert_eq!(rest.len(), 1);
        // Everything but the protocol is optional.
        let toks = tokenize("unknown 253 src=10.0.0.1");
        let (h, rest) = head(&toks).unwrap();
        assert_eq!((h.kind, h.l3num, h.timeout_s), (None, None, None));
        assert_eq!((h.proto, h.state), (Proto::Other(253), None));
        assert_eq!(rest[0].text, "src=10.0.0.1");
    }

    #[test]
    fn head_errors_are_located() {
        let at = |line: &str| head(&tokenize(line)).err().map(|e| e.column);
        // A time without an event kind, a layer-3 name without its number.
        assert_eq!(at("[1.5] tcp 6"), Some(7));
        assert_eq!(at("ipv4 tcp 6"), Some(1));
        // Not a protocol name, and a protocol number past 255.
        assert_eq!(at("TCP 6"), Some(1));
        assert_eq!(at("tcp 600"), Some(5));
        assert_eq!(at("tcp"), Some(1));
        assert_eq!(at("[DESTROY] tcp 6 99999999999999999999"), Some(17));
    }

    #[test]
    fn entry_fields_and_bracketed_words() {
        let mut parts = EntryParts::default();
        for (k, v) in [
            ("mark", "0x10"),
            ("zone", "2"),
            ("labels", "a,,b"),
            ("id", "7"),
            ("helper", "ftp"),
        ] {
            entry_field(&mut parts, k, v, 1).unwrap();
        }
        assert_eq!(
            (parts.mark, parts.zone, parts.id),
            (Some(16), Some(2), Some(7))
        );
        assert_eq!(parts.labels, ["a", "b"]);
        assert_eq!(parts.extra, [("helper".to_string(), "ftp".to_string())]);
        assert_eq!(
            entry_field(&mut parts, "use", "x", 10).unwrap_err().column,
            14
        );
        let tok = |text| Tok { text, col: 3 };
        for word in [
            "[OFFLOAD]",
            "[start=Tue Apr  9 13:33:24 2024]",
            "[USERSPACE]",
        ] {
            bracketed(&mut parts, &tok(word), &word[1..]).unwrap();
        }
        assert!(parts.flags.offload && !parts.flags.assured);
        assert_eq!(parts.start.as_deref(), Some("Tue Apr  9 13:33:24 2024"));
        assert_eq!(parts.flags.other, ["USERSPACE"]);
        let open = bracketed(&mut parts, &tok("[ASSURED"), "ASSURED").unwrap_err();
        assert_eq!(open.column, 3);
    }

    #[test]
    fn tuple_fields_follow_the_protocol() {
        let mut icmp = TupleBuf::default();
        let mut udp = TupleBuf::default();
        for (k, v) in [("type", "8"), ("code", "0"), ("id", "3073")] {
            assert!(icmp.read_field(Proto::Icmp, k, v, 1).unwrap(), "{k}");
            assert!(!udp.read_field(Proto::Udp, k, v, 1).unwrap(), "{k}");
        }
        // A second `id=` in an ICMP tuple is the entry's.
        assert!(!icmp.read_field(Proto::Icmp, "id", "9", 1).unwrap());
        assert_eq!(icmp.parts.icmp_id, Some(3073));
        assert!(udp.read_field(Proto::Gre, "srckey", "0x1a", 1).unwrap());
        assert_eq!(udp.parts.sport, Some(0x1a));
        let bad = udp.read_field(Proto::Udp, "dport", "x", 20).unwrap_err();
        assert_eq!(bad.column, 26);
    }

    #[test]
    fn type_and_code_outside_icmp_are_kept_as_unknown_keys() {
        let Ok(Line::Entry(e)) = parse_line(
            1,
            "tcp 6 src=10.0.0.1 dst=10.0.0.2 sport=1 dport=2 type=8 \
             src=10.0.0.2 dst=10.0.0.1 sport=2 dport=1 code=0",
        ) else {
            panic!("not an entry");
        };
        assert_eq!((e.orig_icmp, e.reply_icmp), (None, None));
        assert_eq!(
            e.extra,
            [
                ("type".to_string(), "8".to_string()),
                ("code".to_string(), "0".to_string())
            ]
        );
    }
}
