//! Every tuple, endpoint, time and duration a report prints, written one way for all
//! formats: RFC 3339 in UTC with nanoseconds (reports from different hosts line up and
//! paste unambiguously into tickets), endpoints as tools print them (`[v6]:port`,
//! ICMP echo ids as `id=N` on the initiator's side), durations with a unit.

use std::net::IpAddr;

use chrono::DateTime;
use serde::{Serialize, Serializer};

use crate::correlate::offset::OffsetBasis;
use crate::correlate::{Connection, Correlation, Hop};
use crate::model::{fmt_endpoint, Proto, Tunnel, Tuple};

/// `2026-11-23T10:15:02.123456789Z`.
pub fn rfc3339_ns(ns: i64) -> String {
    Stamp(ns).to_string()
}

/// A time as [`rfc3339_ns`] prints it, written where it is serialized or displayed
/// rather than kept as a `String`: reports print several a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp(pub i64);

impl Stamp {
    /// The text, laid out in `buf`. Any `i64` of nanoseconds falls in years 1677 to
    /// 2262, so four digits of year always hold it. The date is the proleptic
    /// Gregorian calendar's, counted from the days since 1970 (H. Hinnant's
    /// `civil_from_days`, in integers), as chrono would give it.
    fn text(self, buf: &mut [u8; 30]) -> &str {
        let secs = self.0.div_euclid(1_000_000_000);
        let nanos = self.0.rem_euclid(1_000_000_000) as u32;
        let (days, day_secs) = (secs.div_euclid(86_400), secs.rem_euclid(86_400) as u32);
        // Days since 0000-03-01, in eras of 400 years (146 097 days each).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097) as u32;
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        // Months from March, so that February's leap day ends the year.
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = era * 400 + i64::from(yoe) + i64::from(month <= 2);
        let fields = [
            (year as u32, 4),
            (month, 2),
            (day, 2),
            (day_secs / 3_600, 2),
            (day_secs / 60 % 60, 2),
            (day_secs % 60, 2),
            (nanos, 9),
        ];
        // `YYYY-MM-DDTHH:MM:SS.NNNNNNNNNZ`: each field, then the character after it.
        let mut at = 0;
        for ((mut v, width), after) in fields.into_iter().zip(*b"--T::.Z") {
            for k in (0..width).rev() {
                buf[at + k] = b'0' + (v % 10) as u8;
                v /= 10;
            }
            buf[at + width] = after;
            at += width + 1;
        }
        debug_assert!(buf.is_ascii());
        // SAFETY: every byte of `buf` was written above, each an ASCII digit or one of
        // `-T:.Z`.
        unsafe { std::str::from_utf8_unchecked(&buf[..]) }
    }
}

impl std::fmt::Display for Stamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.text(&mut [0; 30]))
    }
}

impl Serialize for Stamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.text(&mut [0; 30]))
    }
}

/// The UTC day of a time: `2026-11-23`. Out-of-range values print as raw nanoseconds.
pub fn utc_date(ns: i64) -> String {
    match DateTime::from_timestamp(ns.div_euclid(1_000_000_000), 0) {
        Some(dt) => dt.format("%Y-%m-%d").to_string(),
        None => format!("{ns}ns"),
    }
}

/// A duration in seconds with millisecond precision: `0.153s`, `12.000s`.
pub fn secs(ns: i64) -> String {
    let a = ns.unsigned_abs();
    // No sign on a value that prints as zero.
    let sign = if ns < 0 && a >= 1_000_000 { "-" } else { "" };
    format!(
        "{sign}{}.{:03}s",
        a / 1_000_000_000,
        (a % 1_000_000_000) / 1_000_000
    )
}

/// A short duration for latencies: `37µs`, `1.204ms`, `2.500s`.
pub fn short(ns: i64) -> String {
    let a = ns.unsigned_abs();
    let sign = if ns < 0 && a >= 1_000 { "-" } else { "" };
    if a < 1_000_000 {
        format!("{sign}{}µs", a / 1_000)
    } else if a < 1_000_000_000 {
        format!("{sign}{}.{:03}ms", a / 1_000_000, (a % 1_000_000) / 1_000)
    } else {
        format!("{sign}{}", secs(a as i64))
    }
}

/// How far an event came before a moment (`ns` from the event to the moment):
/// `37µs before`, or `166µs after` for an event that came later.
pub fn before_or_after(ns: i64) -> String {
    if ns < 0 {
        format!("{} after", short(ns.saturating_neg()))
    } else {
        format!("{} before", short(ns))
    }
}

/// [`short`] to the microsecond also past a second: `37µs`, `1.204ms`, `2.500013s`.
pub fn short_us(ns: i64) -> String {
    let a = ns.unsigned_abs();
    if a < 1_000_000_000 {
        return short(ns);
    }
    let sign = if ns < 0 { "-" } else { "" };
    format!(
        "{sign}{}.{:06}s",
        a / 1_000_000_000,
        (a % 1_000_000_000) / 1_000
    )
}

/// `at T` for one instant, `from A to B` for a span.
pub fn at_or_span(first: i64, last: i64) -> String {
    if first == last {
        format!("at {}", rfc3339_ns(first))
    } else {
        format!("from {} to {}", rfc3339_ns(first), rfc3339_ns(last))
    }
}

/// `3 packets`, `1 packet`.
pub fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// An endpoint: `10.0.0.1:80`, `[2001:db8::1]:80`; ICMP as `10.0.0.1 id=7` (the echo
/// id lives on the initiator's side); other protocols the address alone.
pub fn endpoint(proto: Proto, addr: IpAddr, port: u16) -> String {
    if proto.has_ports() {
        fmt_endpoint(addr, Some(port))
    } else if proto.is_icmp() {
        format!("{addr} id={port}")
    } else {
        addr.to_string()
    }
}

/// A tuple's source endpoint.
pub fn src(t: &Tuple) -> String {
    endpoint(t.proto, t.src, t.sport)
}

/// A tuple's destination endpoint (ICMP: the address; the id is printed at the source).
pub fn dst(t: &Tuple) -> String {
    dst_endpoint(t.proto, t.dst, t.dport)
}

/// A destination endpoint: [`endpoint`], but for ICMP the address alone.
pub fn dst_endpoint(proto: Proto, addr: IpAddr, port: u16) -> String {
    if proto.is_icmp() {
        addr.to_string()
    } else {
        endpoint(proto, addr, port)
    }
}

/// `172.17.0.2:40000 -> 203.0.113.2:7000`, `172.17.0.2 id=7 -> 203.0.113.2`: [`src`]
/// and [`dst`], written into one string.
pub fn tuple(t: &Tuple) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(48);
    for (addr, port, is_dst) in [(t.src, t.sport, false), (t.dst, t.dport, true)] {
        if is_dst {
            s.push_str(" -> ");
        }
        let _ = match addr {
            IpAddr::V6(a) if t.proto.has_ports() => write!(s, "[{a}]:{port}"),
            _ if t.proto.has_ports() => write!(s, "{addr}:{port}"),
            _ if t.proto.is_icmp() && !is_dst => write!(s, "{addr} id={port}"),
            _ => write!(s, "{addr}"),
        };
    }
    s
}

/// A part of a tuple as [`tuple()`] writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Src,
    Sport,
    Dst,
    Dport,
}

impl Part {
    /// Whether this part differs between two tuples.
    pub fn differs(self, a: &Tuple, b: &Tuple) -> bool {
        match self {
            Part::Src => a.src != b.src,
            Part::Sport => a.sport != b.sport,
            Part::Dst => a.dst != b.dst,
            Part::Dport => a.dport != b.dport,
        }
    }
}

/// [`tuple()`] with the text of every address and port passed through `mark` (to set
/// some apart): the same characters when `mark` returns its text unchanged.
pub fn tuple_marked(t: &Tuple, mark: &dyn Fn(Part, String) -> String) -> String {
    let addr = |part, a: IpAddr| {
        let text = mark(part, a.to_string());
        match a {
            IpAddr::V6(_) if t.proto.has_ports() => format!("[{text}]"),
            _ => text,
        }
    };
    let (src, dst) = (addr(Part::Src, t.src), addr(Part::Dst, t.dst));
    let sport = mark(Part::Sport, t.sport.to_string());
    let dport = mark(Part::Dport, t.dport.to_string());
    if t.proto.has_ports() {
        format!("{src}:{sport} -> {dst}:{dport}")
    } else if t.proto.is_icmp() {
        format!("{src} id={sport} -> {dst}")
    } else {
        format!("{src} -> {dst}")
    }
}

/// A tunnel as a hop carries it: `vxlan vni 1 203.0.113.1:40179 -> 203.0.113.2:4789`
/// ([`tunnel_name`], then the underlay tuple), `, 2 tunnels deep` when tunnels were
/// nested.
pub fn tunnel(t: &Tunnel) -> String {
    let deep = if t.depth > 1 {
        format!(", {} tunnels deep", t.depth)
    } else {
        String::new()
    };
    format!("{} {}{deep}", tunnel_name(t), tuple(&t.outer))
}

/// A tunnel's kind and identifier by the name its protocol gives it: `vxlan vni 1`,
/// `gre key 7`, `erspan session 3`, `ipip`.
pub fn tunnel_name(t: &Tunnel) -> String {
    let id =
        t.id.zip(t.kind.id_name())
            .map(|(id, name)| format!(" {} {id}", name.to_lowercase()));
    format!("{}{}", t.kind.as_str(), id.unwrap_or_default())
}

/// [`tuple()`] with the protocol first: `tcp 172.17.0.2:40000 -> 203.0.113.2:7000`.
pub fn tuple_proto(t: &Tuple) -> String {
    format!("{} {}", t.proto, tuple(t))
}

/// A tuple in conntrack's own notation: `src=A dst=B sport=P dport=Q`, `id=N` for ICMP.
pub fn ct_tuple(t: &Tuple) -> String {
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
}

/// ICMP errors by name where the name is well known (RFC 792, RFC 4443), else numbers.
pub fn icmp_error(proto: Proto, ty: u8, code: u8) -> String {
    let name = icmp_error_name(proto, ty, code);
    let proto = if proto == Proto::Icmpv6 {
        "ICMPv6"
    } else {
        "ICMP"
    };
    if name.is_empty() {
        format!("{proto} type {ty} code {code}")
    } else {
        format!("{proto} {name} (type {ty} code {code})")
    }
}

/// One of a connection's tuples as its tables show it: [`tuple()`], or for ICMP
/// errors [`error_tuple`].
pub fn conn_tuple(conn: &Connection, t: &Tuple) -> String {
    match conn.icmp_error() {
        Some(e) => error_tuple(t, e.icmp_type, e.code),
        None => tuple(t),
    }
}

/// An ICMP error flow's endpoints, with the error in place of the identifier (0) that
/// [`tuple()`] would show: `172.17.0.2 -> 198.51.100.20 port unreachable`.
pub fn error_tuple(t: &Tuple, ty: u8, code: u8) -> String {
    match icmp_error_name(t.proto, ty, code) {
        "" => format!("{} -> {} type {ty} code {code}", t.src, t.dst),
        name => format!("{} -> {} {name}", t.src, t.dst),
    }
}

/// The well-known name of an ICMP error (RFC 792, RFC 4443), else "".
fn icmp_error_name(proto: Proto, ty: u8, code: u8) -> &'static str {
    match (proto, ty, code) {
        (Proto::Icmp, 3, 0) => "network unreachable",
        (Proto::Icmp, 3, 1) => "host unreachable",
        (Proto::Icmp, 3, 2) => "protocol unreachable",
        (Proto::Icmp, 3, 3) => "port unreachable",
        (Proto::Icmp, 3, 4) => "fragmentation needed",
        (Proto::Icmp, 3, 9 | 10 | 13) => "administratively prohibited",
        (Proto::Icmp, 11, _) => "time exceeded",
        (Proto::Icmpv6, 1, 1) => "administratively prohibited",
        (Proto::Icmpv6, 1, 3) => "address unreachable",
        (Proto::Icmpv6, 1, 4) => "port unreachable",
        (Proto::Icmpv6, 1, 6) => "reject route",
        (Proto::Icmpv6, 2, _) => "packet too big",
        (Proto::Icmpv6, 3, _) => "time exceeded",
        _ => "",
    }
}

/// A connection's path: its points joined by `sep`, then the points its replies took
/// beside the path (`a > b > c (replies by d)`).
pub fn path_label(c: &Correlation, conn: &Connection, sep: &str) -> String {
    let name = |h: &Hop| c.points[h.point].name.as_str();
    let mut out = conn.hops.iter().map(name).collect::<Vec<_>>().join(sep);
    if !conn.returns.is_empty() {
        let back: Vec<&str> = conn.returns.iter().map(|r| name(&r.hop)).collect();
        out.push_str(&format!(" (replies by {})", back.join(", ")));
    }
    out
}

/// A point's clock against its reference: `reference`, `same file as eth0`,
/// `+0.153s vs docker0 (42 packets)`; an estimate under a millisecond is forwarding
/// latency, not skew: `+0.000s vs docker0 (42 packets, raw 2µs taken as 0)`.
pub fn clock(c: &Correlation, i: usize) -> String {
    let p = &c.points[i];
    let reference = &c.points[p.clock.reference].name;
    match p.clock.basis {
        OffsetBasis::Reference => "reference".into(),
        OffsetBasis::Unrelated => "unrelated (no packet in common)".into(),
        OffsetBasis::SameFile => format!("same file as {reference}"),
        OffsetBasis::Estimated => {
            let sign = if p.clock.offset_ns >= 0 { "+" } else { "" };
            let raw = if p.clock.offset_ns == 0 && p.clock.estimate_ns != 0 {
                format!(", raw {} taken as 0", short(p.clock.estimate_ns))
            } else {
                String::new()
            };
            format!(
                "{sign}{} vs {reference} ({} packets{raw})",
                secs(p.clock.offset_ns),
                p.clock.samples
            )
        }
    }
}

/// A time range as its start and, when it lasts, its duration: `("T", Some("1.053s"))`.
pub fn time_range(first: Option<i64>, last: Option<i64>) -> Option<(String, Option<String>)> {
    let a = first?;
    Some((rfc3339_ns(a), last.filter(|&b| b > a).map(|b| secs(b - a))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::SecondsFormat;

    #[test]
    fn a_stamp_prints_as_chrono_does() {
        let chrono = |ns: i64| {
            let dt = DateTime::from_timestamp(
                ns.div_euclid(1_000_000_000),
                ns.rem_euclid(1_000_000_000) as u32,
            )
            .unwrap();
            dt.to_rfc3339_opts(SecondsFormat::Nanos, true)
        };
        let day = 86_400 * 1_000_000_000i64;
        let mut ns = vec![i64::MIN, i64::MAX, 0, -1, 1, 999_999_999, -1_000_000_000];
        // 2024-02-29, 2000-02-29, 1900-03-01 and the days either side of them.
        for d in [19_782i64, 10_956, -25_508] {
            ns.extend([(d - 1) * day, d * day, (d + 1) * day - 1, (d + 1) * day]);
        }
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ns.push(x as i64);
        }
        for n in ns {
            let want = chrono(n);
            assert_eq!(Stamp(n).to_string(), want, "{n}");
            assert_eq!(rfc3339_ns(n), want, "{n}");
            assert_eq!(
                serde_json::to_string(&Stamp(n)).unwrap(),
                format!("\"{want}\""),
                "{n}"
            );
        }
    }

    fn t(proto: Proto, src: &str, sport: u16, dst: &str, dport: u16) -> Tuple {
        Tuple::of(proto, src, sport, dst, dport)
    }

    #[test]
    fn a_duration_that_prints_as_zero_has_no_sign() {
        assert_eq!(short(-400), "0µs");
        assert_eq!(short(-4_000), "-4µs");
        assert_eq!(secs(-400_000), "0.000s");
        assert_eq!(secs(-4_000_000), "-0.004s");
    }

    #[test]
    fn times() {
        assert_eq!(
            rfc3339_ns(1_700_000_000_123_456_789),
            "2023-11-14T22:13:20.123456789Z"
        );
        assert_eq!(rfc3339_ns(-1), "1969-12-31T23:59:59.999999999Z");
        assert_eq!(utc_date(1_700_000_000_123_456_789), "2023-11-14");
        assert_eq!(utc_date(-1), "1969-12-31");
        assert_eq!(secs(1_500_000_000), "1.500s");
        assert_eq!(secs(-2_000_000), "-0.002s");
        assert_eq!(short(37_000), "37µs");
        assert_eq!(short(1_204_000), "1.204ms");
        assert_eq!(short_us(1_204_000), "1.204ms");
        assert_eq!(short_us(-2_500_013_999), "-2.500013s");
        assert_eq!(at_or_span(0, 0), "at 1970-01-01T00:00:00.000000000Z");
    }

    #[test]
    fn one_icmp_tuple_one_way() {
        let icmp = t(Proto::Icmp, "172.17.0.2", 7, "203.0.113.2", 0);
        assert_eq!(tuple(&icmp), "172.17.0.2 id=7 -> 203.0.113.2");
        assert_eq!(tuple_proto(&icmp), "icmp 172.17.0.2 id=7 -> 203.0.113.2");
        assert_eq!(ct_tuple(&icmp), "src=172.17.0.2 dst=203.0.113.2 id=7");
        let v6 = t(Proto::Tcp, "2001:db8::1", 1, "2001:db8::2", 80);
        assert_eq!(tuple(&v6), "[2001:db8::1]:1 -> [2001:db8::2]:80");
        let same = |_, s: String| s;
        for x in [icmp, v6, t(Proto::Other(47), "10.0.0.1", 0, "10.0.0.2", 0)] {
            assert_eq!(tuple_marked(&x, &same), tuple(&x));
        }
        let star = |p: Part, s: String| {
            if p == Part::Sport {
                format!("*{s}*")
            } else {
                s
            }
        };
        assert_eq!(
            tuple_marked(&v6, &star),
            "[2001:db8::1]:*1* -> [2001:db8::2]:80"
        );
        assert_eq!(
            tuple_marked(&icmp, &star),
            "172.17.0.2 id=*7* -> 203.0.113.2"
        );
        assert_eq!(
            icmp_error(Proto::Icmp, 3, 3),
            "ICMP port unreachable (type 3 code 3)"
        );
        assert_eq!(icmp_error(Proto::Icmpv6, 9, 9), "ICMPv6 type 9 code 9");
    }
}
