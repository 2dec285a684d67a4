//! Immediate values of the libnftables JSON schema: numbers, addresses, prefixes,
//! ranges, ports, protocol and service names, and the set/element wrappers around them.

use std::net::IpAddr;

use serde_json::Value;

use crate::model::Proto;
use crate::rules::Prefix;

/// A number, or a string holding one (decimal or `0x` hex): nft prints marks and
/// some flags as strings in a few versions.
pub(super) fn num(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => parse_num(s),
        _ => None,
    }
}

pub(super) fn parse_num(s: &str) -> Option<u64> {
    let s = s.trim();
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16).ok()
    } else {
        s.parse().ok()
    }
}

pub(super) fn num_u32(v: &Value) -> Option<u32> {
    num(v).and_then(|n| u32::try_from(n).ok())
}

/// The value inside a set element wrapper (`{"elem": {"val": V, "comment": ...}}`), or
/// the value itself.
pub(super) fn unwrap_elem(v: &Value) -> &Value {
    match v.get("elem").and_then(|e| e.get("val")) {
        Some(inner) => unwrap_elem(inner),
        None => v,
    }
}

/// The members of a right-hand side: an anonymous set's elements, a plain list's
/// items, or the value alone.
pub(super) fn members(v: &Value) -> Vec<&Value> {
    if let Some(Value::Array(items)) = v.get("set") {
        return items.iter().map(unwrap_elem).collect();
    }
    match v {
        Value::Array(items) => items.iter().map(unwrap_elem).collect(),
        other => vec![unwrap_elem(other)],
    }
}

/// Two-element `{"range": [lo, hi]}`.
pub(super) fn range(v: &Value) -> Option<(&Value, &Value)> {
    match v.get("range") {
        Some(Value::Array(r)) if r.len() == 2 => Some((&r[0], &r[1])),
        _ => None,
    }
}

pub(super) fn addr(v: &Value) -> Option<IpAddr> {
    v.as_str()?.trim().parse().ok()
}

fn host_len(a: IpAddr) -> u8 {
    if a.is_ipv4() {
        32
    } else {
        128
    }
}

/// An address, prefix or address range as prefixes (a range becomes the fewest
/// prefixes that cover exactly it).
pub(super) fn prefixes(v: &Value) -> Option<Vec<Prefix>> {
    let v = unwrap_elem(v);
    if let Some(a) = addr(v) {
        return Some(vec![Prefix {
            addr: a,
            len: host_len(a),
        }]);
    }
    if let Some(p) = v.get("prefix") {
        let a = addr(p.get("addr")?)?;
        let len = u8::try_from(num(p.get("len")?)?).ok()?;
        if len > host_len(a) {
            return None;
        }
        return Some(vec![Prefix { addr: a, len }]);
    }
    if let Some((lo, hi)) = range(v) {
        return range_prefixes(addr(lo)?, addr(hi)?);
    }
    None
}

/// Every member of a right-hand side as prefixes; `None` when one is not an address.
pub(super) fn all_prefixes(v: &Value) -> Option<Vec<Prefix>> {
    let mut out = Vec::new();
    for m in members(v) {
        out.extend(prefixes(m)?);
    }
    Some(out)
}

/// The first and last address of a prefix.
pub(super) fn prefix_bounds(p: Prefix) -> (IpAddr, IpAddr) {
    match p.addr {
        IpAddr::V4(a) => {
            let mask = if p.len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(p.len.min(32)))
            };
            let lo = u32::from(a) & mask;
            (IpAddr::V4(lo.into()), IpAddr::V4((lo | !mask).into()))
        }
        IpAddr::V6(a) => {
            let mask = if p.len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(p.len.min(128)))
            };
            let lo = u128::from(a) & mask;
            (IpAddr::V6(lo.into()), IpAddr::V6((lo | !mask).into()))
        }
    }
}

/// The fewest prefixes covering `lo..=hi` exactly (same family, `lo <= hi`).
pub(in crate::rules) fn range_prefixes(lo: IpAddr, hi: IpAddr) -> Option<Vec<Prefix>> {
    let (lo_n, hi_n, bits) = match (lo, hi) {
        (IpAddr::V4(l), IpAddr::V4(h)) => (u128::from(u32::from(l)), u128::from(u32::from(h)), 32),
        (IpAddr::V6(l), IpAddr::V6(h)) => (u128::from(l), u128::from(h), 128),
        _ => return None,
    };
    if lo_n > hi_n {
        return None;
    }
    let make = |n: u128, len: u32| Prefix {
        addr: if bits == 32 {
            IpAddr::V4((n as u32).into())
        } else {
            IpAddr::V6(n.into())
        },
        len: len as u8,
    };
    let mut out = Vec::new();
    let mut cur = lo_n;
    loop {
        // The largest aligned block starting at `cur` that stays within `hi`.
        let mut k = if cur == 0 {
            bits
        } else {
            cur.trailing_zeros().min(bits)
        };
        loop {
            let last = if k >= 128 {
                Some(u128::MAX)
            } else {
                cur.checked_add((1u128 << k) - 1)
            };
            match last {
                Some(last) if last <= hi_n => break,
                _ => k -= 1,
            }
        }
        out.push(make(cur, bits - k));
        let last = if k >= 128 {
            u128::MAX
        } else {
            cur + ((1u128 << k) - 1)
        };
        if last >= hi_n {
            break;
        }
        cur = last + 1;
    }
    Some(out)
}

/// Well-known service names nft may print instead of a port number.
fn service(name: &str) -> Option<u16> {
    Some(match name {
        "ftp-data" => 20,
        "ftp" => 21,
        "ssh" => 22,
        "telnet" => 23,
        "smtp" => 25,
        "domain" => 53,
        "bootps" => 67,
        "bootpc" => 68,
        "tftp" => 69,
        "http" => 80,
        "pop3" => 110,
        "ntp" => 123,
        "imap" | "imap2" => 143,
        "snmp" => 161,
        "ldap" => 389,
        "https" => 443,
        "submission" => 587,
        "imaps" => 993,
        "pop3s" => 995,
        "mysql" => 3306,
        "postgresql" => 5432,
        _ => return None,
    })
}

pub(super) fn port(v: &Value) -> Option<u16> {
    match v {
        Value::String(s) => service(s).or_else(|| s.parse().ok()),
        other => num(other).and_then(|n| u16::try_from(n).ok()),
    }
}

/// A port, port range, or a set of them, as inclusive ranges.
pub(super) fn port_ranges(v: &Value) -> Option<Vec<(u16, u16)>> {
    let mut out = Vec::new();
    for m in members(v) {
        if let Some((lo, hi)) = range(m) {
            let (lo, hi) = (port(lo)?, port(hi)?);
            if lo > hi {
                return None;
            }
            out.push((lo, hi));
        } else {
            let p = port(m)?;
            out.push((p, p));
        }
    }
    if out.is_empty() {
        None
    } else {
        Some(out)
    }
}

/// An IP protocol by nft name (`tcp`, `ipv6-icmp`, ...) or number.
pub(super) fn proto(v: &Value) -> Option<Proto> {
    if let Some(n) = num(v) {
        return u8::try_from(n).ok().map(Proto::from_number);
    }
    let n = match v.as_str()? {
        "tcp" => 6,
        "udp" => 17,
        "icmp" => 1,
        "ipv6-icmp" | "icmpv6" => 58,
        "sctp" => 132,
        "gre" => 47,
        "igmp" => 2,
        "ipip" | "ipencap" | "ipv4" => 4,
        "ipv6" => 41,
        "dccp" => 33,
        "esp" => 50,
        "ah" => 51,
        "ospf" | "ospfigp" => 89,
        "udplite" => 136,
        "comp" => 108,
        "pim" => 103,
        "vrrp" => 112,
        "l2tp" => 115,
        _ => return None,
    };
    Some(Proto::from_number(n))
}

/// The protocol a transport header match implies (`tcp dport 80` matches TCP only).
pub(super) fn header_proto(protocol: &str) -> Option<Proto> {
    Some(Proto::from_number(match protocol {
        "tcp" => 6,
        "udp" => 17,
        "sctp" => 132,
        "dccp" => 33,
        "udplite" => 136,
        "icmp" => 1,
        "icmpv6" => 58,
        _ => return None,
    }))
}

pub(super) fn tcp_flag(name: &str) -> Option<u8> {
    Some(match name {
        "fin" => 0x01,
        "syn" => 0x02,
        "rst" => 0x04,
        "psh" => 0x08,
        "ack" => 0x10,
        "urg" => 0x20,
        "ecn" => 0x40,
        "cwr" => 0x80,
        _ => return None,
    })
}

/// TCP flags written as a name, a list of names (`syn,ack`: their union) or a number.
pub(super) fn tcp_flags(v: &Value) -> Option<u8> {
    if let Some(n) = num(v) {
        return u8::try_from(n).ok();
    }
    match v {
        Value::String(s) => s.split(['|', ',']).map(|f| tcp_flag(f.trim())).sum_bits(),
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().and_then(tcp_flag))
            .sum_bits(),
        _ => None,
    }
}

trait SumBits {
    fn sum_bits(self) -> Option<u8>;
}

impl<I: Iterator<Item = Option<u8>>> SumBits for I {
    fn sum_bits(self) -> Option<u8> {
        let mut acc = 0u8;
        for b in self {
            acc |= b?;
        }
        Some(acc)
    }
}

/// ICMP (`v6 = false`) or ICMPv6 type by name or number.
pub(super) fn icmp_type(v: &Value, v6: bool) -> Option<u8> {
    if let Some(n) = num(v) {
        return u8::try_from(n).ok();
    }
    let name = v.as_str()?;
    let t = if v6 {
        match name {
            "destination-unreachable" => 1,
            "packet-too-big" => 2,
            "time-exceeded" => 3,
            "parameter-problem" => 4,
            "echo-request" => 128,
            "echo-reply" => 129,
            "mld-listener-query" => 130,
            "mld-listener-report" => 131,
            "mld-listener-done" | "mld-listener-reduction" => 132,
            "nd-router-solicit" => 133,
            "nd-router-advert" => 134,
            "nd-neighbor-solicit" => 135,
            "nd-neighbor-advert" => 136,
            "nd-redirect" => 137,
            "router-renumbering" => 138,
            "ind-neighbor-solicit" => 141,
            "ind-neighbor-advert" => 142,
            "mld2-listener-report" => 143,
            _ => return None,
        }
    } else {
        match name {
            "echo-reply" => 0,
            "destination-unreachable" => 3,
            "source-quench" => 4,
            "redirect" => 5,
            "echo-request" => 8,
            "router-advertisement" => 9,
            "router-solicitation" => 10,
            "time-exceeded" => 11,
            "parameter-problem" => 12,
            "timestamp-request" => 13,
            "timestamp-reply" => 14,
            "info-request" => 15,
            "info-reply" => 16,
            "address-mask-request" => 17,
            "address-mask-reply" => 18,
            _ => return None,
        }
    };
    Some(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(s: &str) -> Prefix {
        let (a, l) = s.split_once('/').unwrap();
        Prefix {
            addr: a.parse().unwrap(),
            len: l.parse().unwrap(),
        }
    }

    #[test]
    fn ranges_become_the_fewest_prefixes() {
        let r = |lo: &str, hi: &str| range_prefixes(lo.parse().unwrap(), hi.parse().unwrap());
        assert_eq!(
            r("203.0.113.10", "203.0.113.20").unwrap(),
            vec![
                p("203.0.113.10/31"),
                p("203.0.113.12/30"),
                p("203.0.113.16/30"),
                p("203.0.113.20/32")
            ]
        );
        assert_eq!(r("10.0.0.0", "10.0.0.255").unwrap(), vec![p("10.0.0.0/24")]);
        assert_eq!(
            r("0.0.0.0", "255.255.255.255").unwrap(),
            vec![p("0.0.0.0/0")]
        );
        assert_eq!(
            r("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff").unwrap(),
            vec![p("::/0")]
        );
        assert_eq!(
            r(
                "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe",
                "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
            )
            .unwrap(),
            vec![p("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/127")]
        );
        assert_eq!(r("10.0.0.5", "10.0.0.1"), None);
        assert_eq!(r("10.0.0.1", "::1"), None);
    }

    #[test]
    fn values_of_every_shape() {
        assert_eq!(num(&json!("0x4000")), Some(0x4000));
        assert_eq!(num(&json!(16384)), Some(16384));
        assert_eq!(port(&json!("https")), Some(443));
        assert_eq!(
            port_ranges(&json!({"set": [{"range": [8000, 8100]}, 9000]})),
            Some(vec![(8000, 8100), (9000, 9000)])
        );
        assert_eq!(port_ranges(&json!({"range": [9, 3]})), None);
        assert_eq!(proto(&json!("ipv6-icmp")), Some(Proto::Icmpv6));
        assert_eq!(proto(&json!(47)), Some(Proto::Gre));
        assert_eq!(tcp_flags(&json!(["syn", "ack"])), Some(0x12));
        assert_eq!(tcp_flags(&json!("syn")), Some(0x02));
        assert_eq!(tcp_flags(&json!(["syn", "bogus"])), None);
        assert_eq!(icmp_type(&json!("echo-request"), false), Some(8));
        assert_eq!(icmp_type(&json!("echo-request"), true), Some(128));
        assert_eq!(
            prefixes(
                &json!({"elem": {"val": {"prefix": {"addr": "10.0.0.0", "len": 8}}, "comment": "x"}})
            ),
            Some(vec![p("10.0.0.0/8")])
        );
        assert_eq!(
            prefixes(&json!({"prefix": {"addr": "10.0.0.0", "len": 33}})),
            None
        );
        assert_eq!(
            prefixes(&json!("2001:db8::1")),
            Some(vec![p("2001:db8::1/128")])
        );
        assert_eq!(
            prefix_bounds(p("192.168.1.0/24")),
            (
                "192.168.1.0".parse().unwrap(),
                "192.168.1.255".parse().unwrap()
            )
        );
    }
}
