//! What people wrap around conntrack output when they paste it: mail quoting (`> `),
//! a time prefix (`02:03:47.404103 `, `[1700000000.123456] `, a syslog or journal
//! prefix `Nov 30 06:00:01 host conntrack[123]: `, journalctl's monotonic
//! `[ 1234.567890] `), a shell prompt in any common form
//! (`[root@host ~]# `, `root@host:~# `, `root@host ~ # `, `host$ `, `$ `, zsh's
//! `➜  ~ `), and a `# ` before an entry. [`strip`] peels them off a line, outermost
//! first, and says what it peeled; the caller reads what is left and counts the
//! decorations per kind ([`Stripped`]), a note rather than a warning.
//!
//! Whether a prompt is followed by a command or by an entry is decided by what follows:
//! the line reader parses the rest, and a rest that is not conntrack output is the
//! command (`conntrack -L`, `cat /proc/net/nf_conntrack`), skipped.

use serde::Serialize;

/// A time a prefix printed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum PrefixTime {
    /// A full date with its zone (`[sec.usec]`, ISO 8601 with an offset): nanoseconds
    /// since the Unix epoch.
    Epoch(i64),
    /// A time without a year, a date or a zone (`Nov 30 06:00:01`, `02:03:47.404103`,
    /// `2024-04-09 13:33:24`), as printed.
    Local(String),
}

/// The decorations found in front of one line, and where its content starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Decor<'a> {
    pub quote: bool,
    pub time: Option<PrefixTime>,
    pub prompt: bool,
    /// A lone `#` (a root prompt without host, or a commented-out line).
    pub hash: bool,
    /// The line after the decorations.
    pub rest: &'a str,
    /// Characters stripped, to locate warnings in the original line.
    pub offset: u64,
}

impl Decor<'_> {
    pub fn any(&self) -> bool {
        self.quote || self.time.is_some() || self.prompt || self.hash
    }
}

/// Lines of one input that carried each kind of decoration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stripped {
    /// Mail quoting (`> `, `> > `).
    #[serde(skip_serializing_if = "is_zero")]
    pub quote: u64,
    /// A time, syslog or journal prefix.
    #[serde(skip_serializing_if = "is_zero")]
    pub time: u64,
    /// A shell prompt, before a command or before an entry.
    #[serde(skip_serializing_if = "is_zero")]
    pub prompt: u64,
    /// A `#` before an entry.
    #[serde(skip_serializing_if = "is_zero")]
    pub hash: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Stripped {
    pub(super) fn count(&mut self, d: &Decor<'_>) {
        self.quote += u64::from(d.quote);
        self.time += u64::from(d.time.is_some());
        self.prompt += u64::from(d.prompt);
        self.hash += u64::from(d.hash);
    }

    pub fn is_empty(&self) -> bool {
        *self == Stripped::default()
    }

    /// `12 lines had a shell prompt, 40 a time prefix`, or empty.
    pub fn note(&self) -> String {
        let mut parts = Vec::new();
        for (n, what) in [
            (self.prompt, "a shell prompt"),
            (self.time, "a time prefix"),
            (self.quote, "mail quoting"),
            (self.hash, "a `#` before the entry"),
        ] {
            if n == 0 {
                continue;
            }
            if parts.is_empty() {
                let lines = if n == 1 { "line" } else { "lines" };
                parts.push(format!("{n} {lines} had {what}"));
            } else {
                parts.push(format!("{n} {what}"));
            }
        }
        parts.join(", ")
    }
}

/// Peels the decorations off `line` (without its newline).
pub(super) fn strip(line: &str) -> Decor<'_> {
    let mut d = Decor {
        rest: line,
        ..Decor::default()
    };
    // Quoting is outermost; a quoted paste can carry any of the others.
    loop {
        let t = d.rest.trim_start();
        let Some(after) = t.strip_prefix('>') else {
            break;
        };
        d.quote = true;
        d.rest = after;
    }
    if d.quote {
        d.rest = d.rest.trim_start();
    }
    if let Some((time, rest)) = time_prefix(d.rest) {
        d.time = Some(time);
        d.rest = rest;
    }
    if let Some(rest) = prompt(d.rest) {
        d.prompt = true;
        d.rest = rest;
    } else if let Some(rest) = d.rest.trim_start().strip_prefix('#') {
        d.hash = true;
        d.rest = rest;
    }
    if d.any() {
        d.rest = d.rest.trim_start();
    }
    d.offset = line[..line.len() - d.rest.len()].chars().count() as u64;
    d
}

/// The first whitespace-separated word of `s` and what follows it.
fn word(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start();
    if s.is_empty() {
        return None;
    }
    let end = s.find(char::is_whitespace).unwrap_or(s.len());
    Some((&s[..end], &s[end..]))
}

fn digits(s: &str, n: std::ops::RangeInclusive<usize>) -> bool {
    n.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

/// `HH:MM:SS` with an optional fraction; its nanoseconds since midnight.
fn clock(s: &str) -> Option<i64> {
    let (hms, frac) = s.split_once(['.', ',']).unwrap_or((s, ""));
    let mut it = hms.split(':');
    let (h, m, sec) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() || !digits(h, 1..=2) || !digits(m, 2..=2) || !digits(sec, 2..=2) {
        return None;
    }
    if !frac.is_empty() && !digits(frac, 1..=9) {
        return None;
    }
    let (h, m, sec): (i64, i64, i64) = (h.parse().ok()?, m.parse().ok()?, sec.parse().ok()?);
    if h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let ns = if frac.is_empty() {
        0
    } else {
        frac.parse::<i64>().ok()? * 10i64.pow(9 - frac.len() as u32)
    };
    Some((h * 3600 + m * 60 + sec) * 1_000_000_000 + ns)
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `2024-04-09`.
fn is_date(s: &str) -> bool {
    let mut it = s.split('-');
    matches!(
        (it.next(), it.next(), it.next(), it.next()),
        (Some(y), Some(m), Some(d), None) if digits(y, 4..=4) && digits(m, 2..=2) && digits(d, 2..=2)
    )
}

/// A time in front of the line, and the line after it (and after a syslog host and
/// tag, when the time is a syslog or journal one).
fn time_prefix(s: &str) -> Option<(PrefixTime, &str)> {
    // `[ 1234.567890] ` (journalctl -o short-monotonic, dmesg): seconds since boot.
    if let Some((inner, after)) = s
        .trim_start()
        .strip_prefix('[')
        .and_then(|r| r.split_once(']'))
    {
        let t = inner.trim();
        if inner.starts_with(' ') {
            let (sec, frac) = t.split_once('.').unwrap_or((t, ""));
            if digits(sec, 1..=8) && digits(frac, 1..=9) {
                return Some((
                    PrefixTime::Local(format!("[{inner}]")),
                    syslog_source(after),
                ));
            }
        }
    }
    let (w0, r0) = word(s)?;
    // `[1700000000.123456]` not followed by an event tag (with a tag it is conntrack's
    // own `-o timestamp`, read by the line parser).
    if let Some(inner) = w0.strip_prefix('[').and_then(|w| w.strip_suffix(']')) {
        let (sec, frac) = inner.split_once('.').unwrap_or((inner, ""));
        if digits(sec, 9..=11) && (frac.is_empty() || digits(frac, 1..=9)) {
            let next = word(r0).map(|(w, _)| w);
            if matches!(next, Some("[NEW]" | "[UPDATE]" | "[DESTROY]")) {
                return None;
            }
            let ns = sec.parse::<i64>().ok()? * 1_000_000_000
                + if frac.is_empty() {
                    0
                } else {
                    frac.parse::<i64>().ok()? * 10i64.pow(9 - frac.len() as u32)
                };
            return Some((PrefixTime::Epoch(ns), r0));
        }
        return None;
    }
    // ISO 8601 with a `T` (journalctl -o short-iso, RFC 5424 syslog).
    if let Some((date, _)) = w0.split_once('T').filter(|(d, _)| is_date(d)) {
        let _ = date;
        let time = match chrono::DateTime::parse_from_rfc3339(w0)
            .ok()
            .or_else(|| chrono::DateTime::parse_from_str(w0, "%Y-%m-%dT%H:%M:%S%.f%z").ok())
        {
            Some(t) => PrefixTime::Epoch(t.timestamp_nanos_opt()?),
            None => {
                let (_, t) = w0.split_once('T')?;
                clock(t)?;
                PrefixTime::Local(w0.to_string())
            }
        };
        return Some((time, syslog_source(r0)));
    }
    // `2024-04-09 13:33:24.123` (ts '%F %T').
    if is_date(w0) {
        let (w1, r1) = word(r0)?;
        clock(w1)?;
        return Some((PrefixTime::Local(format!("{w0} {w1}")), syslog_source(r1)));
    }
    // `Nov 30 06:00:01` (BSD syslog, journalctl's default, moreutils ts).
    if MONTHS.contains(&w0) {
        let (day, r1) = word(r0)?;
        let (hms, r2) = word(r1)?;
        if !digits(day, 1..=2) {
            return None;
        }
        clock(hms)?;
        return Some((
            PrefixTime::Local(format!("{w0} {day} {hms}")),
            syslog_source(r2),
        ));
    }
    // `02:03:47.404103`.
    clock(w0)?;
    Some((PrefixTime::Local(w0.to_string()), r0))
}

/// After a syslog time: `host tag[pid]: ` or `tag: `, skipped when present.
fn syslog_source(s: &str) -> &str {
    let is_tag = |w: &str| {
        w.strip_suffix(':').is_some_and(|t| {
            let name = t.split_once('[').map_or(t, |(n, pid)| {
                if pid.strip_suffix(']').is_some_and(|p| digits(p, 1..=10)) {
                    n
                } else {
                    ""
                }
            });
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-./@".contains(c))
        })
    };
    let Some((w1, r1)) = word(s) else {
        return s;
    };
    if is_tag(w1) {
        return r1;
    }
    match word(r1) {
        Some((w2, r2)) if is_tag(w2) => r2,
        _ => s,
    }
}

/// After `]` of `[root@host ~]# `: the sigil and a blank, then the rest.
fn after_sigil(r: &str) -> Option<&str> {
    let mut cs = r.chars();
    let c = cs.next()?;
    let rest = cs.as_str();
    let blank = rest.is_empty() || rest.starts_with(char::is_whitespace);
    (matches!(c, '#' | '$' | '%' | '>') && blank).then_some(rest)
}

/// A shell prompt in front of the line: the line after it.
fn prompt(s: &str) -> Option<&str> {
    let t = s.trim_start();
    // `(venv) ` in front of any prompt.
    let t = match t.strip_prefix('(') {
        Some(r)
            if r.find(')')
                .is_some_and(|i| !r[..i].contains(char::is_whitespace)) =>
        {
            r[r.find(')')? + 1..].trim_start()
        }
        _ => t,
    };
    // `[root@host ~]# `
    if let Some(r) = t.strip_prefix('[') {
        let close = r.find(']')?;
        if r[..close].contains('@') {
            return after_sigil(&r[close + 1..]);
        }
        return None;
    }
    // zsh themes: `➜  ~ `, `➜  repo git:(main) ✗ `, `❯ `.
    let (w0, r0) = word(t)?;
    if matches!(w0, "➜" | "❯" | "λ" | "»" | "→") {
        let mut rest = r0;
        if w0 == "➜" {
            let (_dir, r) = word(rest)?;
            rest = r;
        }
        if let Some((w, r)) = word(rest).filter(|(w, _)| w.starts_with("git:(")) {
            let _ = w;
            rest = r;
        }
        if let Some((_, r)) = word(rest).filter(|(w, _)| *w == "✗") {
            rest = r;
        }
        return Some(rest);
    }
    let last = w0.chars().last()?;
    // `$ `, `% ` (a lone `#` is decided by the caller).
    if w0 == "$" || w0 == "%" {
        return Some(r0);
    }
    // `root@host:~# `, `host$ `, `bash-5.1# `, `OpenWrt# `.
    if w0.chars().count() > 1 && matches!(last, '#' | '$' | '%') {
        let name = &w0[..w0.len() - last.len_utf8()];
        if name
            .chars()
            .all(|c| c.is_alphanumeric() || "@:~/._-+".contains(c))
        {
            return Some(r0);
        }
        return None;
    }
    // `root@host ~ # `, `user@host /etc $ `.
    if w0.contains('@') && !w0.contains('=') {
        let (dir, r1) = word(r0)?;
        let (s2, r2) = word(r1)?;
        if (dir.starts_with('~') || dir.starts_with('/')) && matches!(s2, "#" | "$" | "%") {
            return Some(r2);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const E: &str = "tcp      6 431999 ESTABLISHED src=10.0.1.3 dst=192.0.2.2 sport=40000 dport=8080 src=192.0.2.2 dst=192.0.2.1 sport=8080 dport=8942 [ASSURED] mark=0 use=1";

    fn rest_of(line: &str) -> String {
        strip(line).rest.trim().to_string()
    }

    #[test]
    fn quoting_at_any_depth() {
        for q in ["> ", ">", "> > ", ">> ", "  > >"] {
            let line = format!("{q}{E}");
            let d = strip(&line);
            assert!(d.quote && !d.prompt && d.time.is_none(), "{q}");
            assert_eq!(d.rest.trim(), E, "{q}");
        }
        assert!(!strip(E).any());
    }

    #[test]
    fn time_prefixes() {
        let line = format!("02:03:47.404103 [NEW] {E}");
        let d = strip(&line);
        assert_eq!(d.time, Some(PrefixTime::Local("02:03:47.404103".into())));
        assert_eq!(d.rest.trim(), format!("[NEW] {E}"));
        let line = format!("[1700000000.123456] {E}");
        let d = strip(&line);
        assert_eq!(d.time, Some(PrefixTime::Epoch(1_700_000_000_123_456_000)));
        // conntrack's own `-o timestamp` is no decoration.
        let own = format!("[1700000000.123456]\t    [NEW] {E}");
        assert!(!strip(&own).any());
        let line = format!("Nov 30 06:00:01 host conntrack[123]: {E}");
        let d = strip(&line);
        assert_eq!(d.time, Some(PrefixTime::Local("Nov 30 06:00:01".into())));
        assert_eq!(d.rest.trim(), E);
        let line = format!("Nov  3 06:00:01.123456 gw kernel: {E}");
        let d = strip(&line);
        assert_eq!(d.rest.trim(), E);
        let line = format!("2024-04-09T13:33:24+0200 gw conntrack[77]: [NEW] {E}");
        let d = strip(&line);
        assert_eq!(d.time, Some(PrefixTime::Epoch(1_712_662_404_000_000_000)));
        assert_eq!(d.rest.trim(), format!("[NEW] {E}"));
        let line = format!("2024-04-09T11:33:24.5Z {E}");
        let d = strip(&line);
        assert_eq!(d.time, Some(PrefixTime::Epoch(1_712_662_404_500_000_000)));
        let line = format!("2024-04-09 13:33:24 {E}");
        let d = strip(&line);
        assert_eq!(
            d.time,
            Some(PrefixTime::Local("2024-04-09 13:33:24".into()))
        );
        assert_eq!(d.rest.trim(), E);
        let line = format!("[ 1234.567890] gw conntrack[9]: {E}");
        let d = strip(&line);
        assert_eq!(d.time, Some(PrefixTime::Local("[ 1234.567890]".into())));
        assert_eq!(d.rest, E);
        // Not times.
        for line in ["12:3:45 x", "99:00:00 x", "Nov x 06:00:01", "[12.5] x"] {
            assert_eq!(strip(line).time, None, "{line}");
        }
    }

    #[test]
    fn prompts_in_common_forms() {
        for p in [
            "[root@host ~]# ",
            "[user@host tmp]$ ",
            "root@host:~# ",
            "root@OpenWrt:/# ",
            "user@host:~/src$ ",
            "root@host ~ # ",
            "user@host /etc $ ",
            "host$ ",
            "bash-5.1# ",
            "$ ",
            "% ",
            "➜  ~ ",
            "➜  natcheck git:(main) ✗ ",
            "❯ ",
            "(venv) user@host:~$ ",
        ] {
            let line = format!("{p}sudo conntrack -L");
            let d = strip(&line);
            assert!(d.prompt && !d.hash, "{p}");
            assert_eq!(d.rest.trim(), "sudo conntrack -L", "{p}");
            assert_eq!(d.offset, p.chars().count() as u64, "{p}");
        }
        // A lone `#` is the caller's to decide.
        let line = format!("# {E}");
        let d = strip(&line);
        assert!(d.hash && !d.prompt);
        assert_eq!(d.rest.trim(), E);
        // Entries and tool output are not prompts.
        for line in [
            E,
            "conntrack v1.4.7 (conntrack-tools): 1 flow entries have been shown.",
        ] {
            assert!(!strip(line).any(), "{line}");
        }
    }

    #[test]
    fn decorations_nest() {
        let d = strip("> Nov 30 06:00:01 host conntrack[1]: [root@host ~]# conntrack -E");
        assert!(d.quote && d.time.is_some() && d.prompt);
        assert_eq!(rest_of("> > root@gw:~# conntrack -L"), "conntrack -L");
    }

    #[test]
    fn note_counts_by_kind() {
        let s = Stripped {
            prompt: 12,
            time: 40,
            ..Stripped::default()
        };
        assert_eq!(s.note(), "12 lines had a shell prompt, 40 a time prefix");
        let one = Stripped {
            quote: 1,
            ..Stripped::default()
        };
        assert_eq!(one.note(), "1 line had mail quoting");
        assert!(Stripped::default().is_empty());
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"time":40,"prompt":12}"#
        );
    }
}
