//! `ip -o addr`, `ip addr` and `ip -j addr` → the host addresses of a [`RuleSet`].
//!
//! Each address becomes a [`HostAddr`] on its interface (the interface's name, not an
//! address label such as `eth0:1`), with the address itself as the prefix's address
//! and the on-link prefix length (`203.0.113.1/24`); a point-to-point address
//! (`inet 10.0.0.1 peer 10.0.0.2/32`) takes the length written after its peer.

use std::net::IpAddr;

use serde_json::Value;

use super::{HostAddr, Prefix, RuleSet};
use crate::diag::{Location, Warning};

/// Parses the text; lines it cannot read are located warnings.
pub fn parse(source: &str, text: &str) -> RuleSet {
    let mut out = RuleSet {
        source: source.to_string(),
        ..RuleSet::default()
    };
    if text.trim_start().starts_with('[') {
        json(&mut out, text);
    } else {
        lines(&mut out, text);
    }
    out
}

fn warn(out: &mut RuleSet, location: Location, message: String) {
    out.warnings
        .push(Warning::new(out.source.clone(), location, message));
}

/// An address as `ip` writes it (`203.0.113.1/24`, `10.0.0.1`), the length checked
/// against the family.
fn prefix(s: &str) -> Option<Prefix> {
    let (a, len) = match s.split_once('/') {
        Some((a, l)) => (a.parse::<IpAddr>().ok()?, Some(l.parse::<u8>().ok()?)),
        None => (s.parse::<IpAddr>().ok()?, None),
    };
    let max = if a.is_ipv4() { 32 } else { 128 };
    let len = len.unwrap_or(max);
    (len <= max).then_some(Prefix { addr: a, len })
}

/// The address of an `inet`/`inet6` clause: the tokens after the keyword.
fn address(tokens: &[&str]) -> Option<Prefix> {
    let first = tokens.first()?;
    let mut p = prefix(first)?;
    // `inet 10.0.0.1 peer 10.0.0.2/32`: the length is written after the peer.
    if !first.contains('/') {
        if let ["peer", peer, ..] = tokens[1..] {
            let peer = prefix(peer)?;
            if peer.addr.is_ipv4() != p.addr.is_ipv4() {
                return None;
            }
            p.len = peer.len;
        }
    }
    Some(p)
}

/// `6: eth0@eth0-peer:` / `6: eth0` → `eth0`.
fn iface_name(token: &str) -> &str {
    let t = token.trim_end_matches(':');
    t.split('@').next().unwrap_or(t)
}

/// `ip -o addr` (one line per address) and `ip addr` (one block per interface).
fn lines(out: &mut RuleSet, text: &str) {
    let mut iface: Option<String> = None;
    for (i, raw) in text.lines().enumerate() {
        let n = i as u64 + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // `ip -o addr` joins continuation lines with a backslash.
        let tokens: Vec<&str> = line.split_whitespace().filter(|t| *t != "\\").collect();
        let header = tokens
            .first()
            .and_then(|t| t.strip_suffix(':'))
            .is_some_and(|idx| !idx.is_empty() && idx.bytes().all(|b| b.is_ascii_digit()));
        let rest: &[&str] = if header {
            let Some(name) = tokens.get(1) else {
                warn(
                    out,
                    Location::Line { line: n, column: 1 },
                    "an interface line without a name".into(),
                );
                continue;
            };
            iface = Some(iface_name(name).to_string());
            &tokens[2..]
        } else {
            &tokens
        };
        let Some(k) = rest.iter().position(|t| *t == "inet" || *t == "inet6") else {
            if !header && !raw.starts_with([' ', '\t']) {
                warn(
                    out,
                    Location::Line { line: n, column: 1 },
                    format!("not an ip addr line: {line}"),
                );
            }
            continue;
        };
        // An address clause starts the line (`ip addr`) or follows the interface
        // (`ip -o addr`); elsewhere `inet` would be some other word.
        if k != 0 {
            continue;
        }
        let Some(name) = iface.clone() else {
            warn(
                out,
                Location::Line { line: n, column: 1 },
                "an address before any interface line".into(),
            );
            continue;
        };
        match address(&rest[1..]) {
            Some(prefix) => out.addrs.push(HostAddr {
                iface: name,
                prefix,
            }),
            None => {
                let word = rest.get(1).copied().unwrap_or("");
                let column = raw.find(word).map_or(1, |c| c as u64 + 1);
                warn(
                    out,
                    Location::Line { line: n, column },
                    format!("not an address: {word:?}"),
                );
            }
        }
    }
}

/// `ip -j addr`: `[{"ifname": ..., "addr_info": [{"family", "local", "prefixlen"}]}]`.
fn json(out: &mut RuleSet, text: &str) {
    let doc: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let message = e.to_string();
            let message = match message.rfind(" at line ") {
                Some(i) => message[..i].to_string(),
                None => message,
            };
            warn(
                out,
                Location::Line {
                    line: e.line() as u64,
                    column: e.column() as u64,
                },
                format!("not valid JSON ({message}): expected ip -j addr output"),
            );
            return;
        }
    };
    let Some(ifaces) = doc.as_array() else {
        warn(
            out,
            Location::File,
            "not ip -j addr output: not an array".into(),
        );
        return;
    };
    for (i, entry) in ifaces.iter().enumerate() {
        let Some(name) = entry.get("ifname").and_then(Value::as_str) else {
            warn(
                out,
                Location::File,
                format!("entry {} of the ip -j addr array has no ifname", i + 1),
            );
            continue;
        };
        let infos = match entry.get("addr_info") {
            Some(Value::Array(a)) => a.as_slice(),
            _ => &[],
        };
        for info in infos {
            // Entries of `ip -j addr` for interfaces without addresses are `{}`.
            let Some(local) = info.get("local").and_then(Value::as_str) else {
                continue;
            };
            let len = info.get("prefixlen").and_then(Value::as_u64);
            let p = match len {
                Some(l) => prefix(&format!("{local}/{l}")),
                None => prefix(local),
            };
            match p {
                Some(prefix) => out.addrs.push(HostAddr {
                    iface: name.to_string(),
                    prefix,
                }),
                None => warn(
                    out,
                    Location::File,
                    format!(
                        "entry {} of the ip -j addr array ({name}): not an address: {local:?}",
                        i + 1
                    ),
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(iface: &str, p: &str) -> HostAddr {
        HostAddr {
            iface: iface.into(),
            prefix: prefix(p).unwrap(),
        }
    }

    /// What `parse` read: these addresses, and a single warning, at `location`.
    #[track_caller]
    fn assert_read(rs: &RuleSet, addrs: &[HostAddr], location: Location) {
        assert_eq!(rs.addrs, addrs);
        assert_eq!(rs.warnings.len(), 1);
        assert_eq!(rs.warnings[0].location, location);
    }

    #[test]
    fn ip_o_addr() {
        let text = "\
1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
1: lo    inet6 ::1/128 scope host \\       valid_lft forever preferred_lft forever
6: eth0    inet 203.0.113.2/24 scope global secondary eth0:1\\       valid_lft forever preferred_lft forever
9: wg0    inet 10.0.0.1 peer 10.0.0.2/32 scope global wg0\\       valid_lft forever preferred_lft forever
9: wg0    inet 10.0.0.300/24 scope global wg0\\       valid_lft forever preferred_lft forever
";
        let rs = parse("addr.txt", text);
        assert_read(
            &rs,
            &[
                h("lo", "127.0.0.1/8"),
                h("lo", "::1/128"),
                h("eth0", "203.0.113.2/24"),
                h("wg0", "10.0.0.1/32"),
            ],
            Location::Line {
                line: 5,
                column: 16,
            },
        );
        assert!(rs.is_local("203.0.113.2".parse().unwrap()));
    }

    #[test]
    fn ip_addr_blocks() {
        let text = "\
1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN group default qlen 1000
    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00
    inet 127.0.0.1/8 scope host lo
       valid_lft forever preferred_lft forever
6: eth0@eth0-peer: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP group default qlen 1000
    link/ether 52:14:79:c2:b3:09 brd ff:ff:ff:ff:ff:ff
    altname enp0s3
    inet 203.0.113.1/24 brd 203.0.113.255 scope global eth0
       valid_lft forever preferred_lft forever
    inet6 2001:db8:113::1/64 scope global nodad
       valid_lft forever preferred_lft forever
garbage here
";
        let rs = parse("addr.txt", text);
        assert_read(
            &rs,
            &[
                h("lo", "127.0.0.1/8"),
                h("eth0", "203.0.113.1/24"),
                h("eth0", "2001:db8:113::1/64"),
            ],
            Location::Line {
                line: 12,
                column: 1,
            },
        );

        let orphan = parse("x", "    inet 10.0.0.1/8 scope global\n");
        assert!(orphan.addrs.is_empty());
        assert_eq!(orphan.warnings.len(), 1);
    }

    #[test]
    fn ip_j_addr() {
        let text = r#"[{"ifindex":1,"ifname":"lo","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8},{"family":"inet6","local":"::1","prefixlen":128}]},
            {"ifindex":2,"ifname":"eth0","addr_info":[{}]},
            {"ifindex":3,"ifname":"eth1","addr_info":[{"family":"inet","local":"192.0.2.1","prefixlen":40}]},
            {"ifindex":4}]"#;
        let rs = parse("addr.json", text);
        assert_eq!(rs.addrs, vec![h("lo", "127.0.0.1/8"), h("lo", "::1/128")]);
        assert_eq!(rs.warnings.len(), 2, "{:?}", rs.warnings);
        assert!(rs.warnings[0].message.contains("eth1"));
        assert!(rs.warnings[1].message.contains("entry 4"));

        let bad = parse("bad.json", "[{\"ifname\": \"lo\",\n \"addr_info\": [}]");
        assert_eq!(bad.warnings.len(), 1);
        assert!(matches!(
            bad.warnings[0].location,
            Location::Line { line: 2, .. }
        ));
    }

    /// Real outputs: the samples shipped with natcheck and three recorded listings of
    /// one network namespace, which read alike.
    #[test]
    fn recorded_outputs() {
        let root = env!("CARGO_MANIFEST_DIR");
        let read =
            |f: &str| std::fs::read_to_string(format!("{root}/tests/data/rules/{f}")).unwrap();
        let o = parse("o", &read("addrs-ip-o-recorded.txt"));
        let plain = parse("plain", &read("addrs-ip-recorded.txt"));
        let j = parse("j", &read("addrs-ip-j-recorded.json"));
        for rs in [&o, &plain, &j] {
            assert!(rs.warnings.is_empty(), "{}: {:?}", rs.source, rs.warnings);
            assert_eq!(rs.addrs, o.addrs, "{}", rs.source);
            assert_eq!(
                super::super::InputKind::detect(&read(match rs.source.as_str() {
                    "o" => "addrs-ip-o-recorded.txt",
                    "plain" => "addrs-ip-recorded.txt",
                    _ => "addrs-ip-j-recorded.json",
                })),
                Some(super::super::InputKind::Addrs)
            );
        }
        assert_eq!(o.addrs.len(), 11);
        assert!(o.addrs.contains(&h("eth0", "203.0.113.2/24")));
        assert!(o.addrs.contains(&h("kube-ipvs0", "10.96.0.10/32")));
        assert!(o.addrs.contains(&h("eth0", "2001:db8:113::1/64")));

        let sample = format!("{root}/samples/masquerade6/addrs.txt");
        if let Ok(text) = std::fs::read_to_string(sample) {
            let rs = parse("sample", &text);
            assert!(rs.warnings.is_empty(), "{:?}", rs.warnings);
            assert_eq!(rs.addrs.len(), 6);
            assert_eq!(rs.addrs[3], h("docker0", "fd00:172:17::1/64"));
        }
    }
}
