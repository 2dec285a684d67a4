//! `ipset save` (and `ipset list`) → the named sets of a [`RuleSet`].
//!
//! `create NAME TYPE OPTIONS...` declares a set and `add NAME MEMBER OPTIONS...` adds a
//! member; `ipset list` prints the same as `Name:`/`Type:` headers followed by a
//! `Members:` block. Members become [`SetMember`]s by the set's type: addresses and
//! networks (`hash:ip`, `hash:net`, `bitmap:ip`) as prefixes, `hash:ip,port` and
//! `hash:net,port` as address-port pairs (`10.0.0.1,tcp:80`; no protocol means TCP),
//! `bitmap:port` as ports. Types whose members have no [`SetMember`] form
//! (`hash:ip,port,ip`, `hash:net,iface`, `hash:mac`, `list:set`, ...) are kept with
//! their type and no members. A line that cannot be read is a located warning.

use std::net::IpAddr;

use super::nft::value::range_prefixes;
use super::{Prefix, RuleSet, Set, SetMember};
use crate::diag::{Location, Warning};
use crate::model::Proto;

/// Parses the text; lines it cannot read are located warnings.
pub fn parse(source: &str, text: &str) -> RuleSet {
    let mut r = Reader {
        out: RuleSet {
            source: source.to_string(),
            ..RuleSet::default()
        },
        list_name: None,
        in_members: false,
    };
    for (i, raw) in text.lines().enumerate() {
        r.line(i as u64 + 1, raw);
    }
    r.out
}

/// The parts of a member, by the set type's dimensions (`hash:ip,port` → ip, port).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Dim {
    Addr,
    Port,
    Other,
}

fn dims(kind: &str) -> Vec<Dim> {
    let Some((_, parts)) = kind.split_once(':') else {
        return vec![Dim::Other];
    };
    parts
        .split(',')
        .map(|p| match p {
            "ip" | "net" => Dim::Addr,
            "port" => Dim::Port,
            _ => Dim::Other,
        })
        .collect()
}

fn prefixes(s: &str) -> Option<Vec<Prefix>> {
    if let Some((lo, hi)) = s.split_once('-') {
        return range_prefixes(lo.parse().ok()?, hi.parse().ok()?);
    }
    let (a, len) = match s.split_once('/') {
        Some((a, l)) => (a.parse::<IpAddr>().ok()?, Some(l.parse::<u8>().ok()?)),
        None => (s.parse::<IpAddr>().ok()?, None),
    };
    let max = if a.is_ipv4() { 32 } else { 128 };
    let len = len.unwrap_or(max);
    if len > max {
        return None;
    }
    Some(vec![Prefix { addr: a, len }])
}

fn proto(name: &str) -> Option<Proto> {
    let n = match name {
        "tcp" => 6,
        "udp" => 17,
        "sctp" => 132,
        "udplite" => 136,
        "icmp" => 1,
        "icmpv6" | "ipv6-icmp" => 58,
        n => n.parse::<u8>().ok()?,
    };
    Some(Proto::from_number(n))
}

/// `80`, `tcp:80`, `udp:53-55` → the protocol (TCP when not written) and ports.
/// ICMP `type/code` "ports" have no [`SetMember`] form: `Ok(None)`.
fn ports(s: &str) -> Result<Option<(Option<Proto>, u16, u16)>, ()> {
    let (proto_name, ports) = match s.split_once(':') {
        Some((p, rest)) => (Some(p), rest),
        None => (None, s),
    };
    let proto = match proto_name {
        Some(p) => Some(proto(p).ok_or(())?),
        None => None,
    };
    if proto.is_some_and(Proto::is_icmp) {
        return Ok(None);
    }
    let (lo, hi) = match ports.split_once('-') {
        Some((lo, hi)) => (lo.parse().map_err(|_| ())?, hi.parse().map_err(|_| ())?),
        None => {
            let p = ports.parse().map_err(|_| ())?;
            (p, p)
        }
    };
    if lo > hi {
        return Err(());
    }
    Ok(Some((proto, lo, hi)))
}

/// The members one entry stands for; `Ok(vec![])` for a type with no [`SetMember`]
/// form, `Err` for an entry that does not read as its type.
fn members(kind: &str, entry: &str) -> Result<Vec<SetMember>, ()> {
    let ds = dims(kind);
    let parts: Vec<&str> = entry.split(',').collect();
    match (ds.as_slice(), parts.as_slice()) {
        ([Dim::Addr], [a]) => Ok(prefixes(a)
            .ok_or(())?
            .into_iter()
            .map(SetMember::Addr)
            .collect()),
        ([Dim::Addr, Dim::Port], [a, p]) => {
            let addrs = prefixes(a).ok_or(())?;
            let Some((proto, lo, hi)) = ports(p)? else {
                return Ok(Vec::new());
            };
            // hash:ip,port without a protocol means TCP.
            let proto = proto.or(Some(Proto::Tcp));
            Ok(addrs
                .iter()
                .map(|&a| SetMember::AddrPort(a, proto, (lo, hi)))
                .collect())
        }
        ([Dim::Port], [p]) => {
            let Some((proto, lo, hi)) = ports(p)? else {
                return Ok(Vec::new());
            };
            Ok(vec![SetMember::Port(proto, (lo, hi))])
        }
        (ds, parts) if ds.len() == parts.len() || ds.contains(&Dim::Other) || ds.len() > 2 => {
            Ok(Vec::new())
        }
        _ => Err(()),
    }
}

/// Most members one set is read with (a range of addresses is its prefixes, a range
/// of ports one member).
const MAX_MEMBERS: usize = 1 << 20;

struct Reader {
    out: RuleSet,
    /// The set of the `ipset list` block being read.
    list_name: Option<String>,
    in_members: bool,
}

impl Reader {
    fn warn(&mut self, line: u64, message: String) {
        self.out.warnings.push(Warning::new(
            self.out.source.clone(),
            Location::Line { line, column: 1 },
            message,
        ));
    }

    fn line(&mut self, n: u64, raw: &str) {
        let line = raw.trim();
        if line.is_empty() {
            self.in_members = false;
            return;
        }
        if line.starts_with('#') {
            return;
        }
        // `ipset list` blocks.
        if let Some(name) = line.strip_prefix("Name:") {
            self.list_name = Some(name.trim().to_string());
            self.in_members = false;
            return;
        }
        if let Some(kind) = line.strip_prefix("Type:") {
            match &self.list_name {
                Some(name) => {
                    self.out.sets.insert(
                        name.clone(),
                        Set {
                            kind: kind.trim().to_string(),
                            members: Vec::new(),
                        },
                    );
                }
                None => self.warn(n, "a Type: line before any Name: line".into()),
            }
            return;
        }
        if line == "Members:" {
            self.in_members = self.list_name.is_some();
            return;
        }
        if [
            "Revision:",
            "Header:",
            "Size in memory:",
            "References:",
            "Number of entries:",
        ]
        .iter()
        .any(|h| line.starts_with(h))
        {
            return;
        }
        if self.in_members {
            let name = self.list_name.clone().unwrap_or_default();
            let entry = line.split_whitespace().next().unwrap_or("");
            self.add(n, &name, entry, line);
            return;
        }

        // `ipset save` lines (also written as commands: `ipset add ...`).
        let line = line.strip_prefix("ipset ").unwrap_or(line);
        let words: Vec<&str> = line.split_whitespace().filter(|w| *w != "-exist").collect();
        match words.as_slice() {
            ["create" | "-N" | "n", name, kind, ..] => {
                self.out.sets.insert(
                    name.to_string(),
                    Set {
                        kind: kind.to_string(),
                        members: Vec::new(),
                    },
                );
            }
            ["add" | "-A" | "a", name, entry, ..] => self.add(n, name, entry, line),
            ["flush" | "-F"] => self.out.sets.values_mut().for_each(|s| s.members.clear()),
            ["flush" | "-F", name] => {
                if let Some(s) = self.out.sets.get_mut(*name) {
                    s.members.clear();
                }
            }
            ["destroy" | "-X"] => self.out.sets.clear(),
            ["destroy" | "-X", name] => {
                self.out.sets.remove(*name);
            }
            ["COMMIT" | "commit"] => {}
            _ => self.warn(
                n,
                format!("not an ipset save or ipset list line: {}", short(line)),
            ),
        }
    }

    fn add(&mut self, n: u64, name: &str, entry: &str, line: &str) {
        let Some(set) = self.out.sets.get(name) else {
            self.warn(
                n,
                format!(
                    "member of set {name}, which no earlier line creates: {}",
                    short(line)
                ),
            );
            return;
        };
        if line.split_whitespace().any(|w| w == "nomatch") {
            self.warn(
                n,
                format!(
                    "nomatch entry {entry} of set {name} (an exception within the set) is left out"
                ),
            );
            return;
        }
        match members(&set.kind, entry) {
            Ok(ms) => {
                let room = MAX_MEMBERS.saturating_sub(set.members.len());
                if ms.len() > room {
                    self.warn(
                        n,
                        format!("set {name} holds more than {MAX_MEMBERS} members; the rest are left out"),
                    );
                }
                if let Some(set) = self.out.sets.get_mut(name) {
                    set.members.extend(ms.into_iter().take(room));
                }
            }
            Err(()) => {
                let kind = set.kind.clone();
                self.warn(
                    n,
                    format!("member {entry:?} does not read as an entry of {name} ({kind})"),
                );
            }
        }
    }
}

/// A line cut short for a message.
fn short(line: &str) -> String {
    if line.chars().count() > 80 {
        format!("{}...", line.chars().take(80).collect::<String>())
    } else {
        line.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        prefixes(s).unwrap()[0]
    }

    const SAVE: &str = "\
create KUBE-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 65536 comment bucketsize 12
add KUBE-CLUSTER-IP 10.96.0.1,tcp:443 comment \"default/kubernetes:https\"
add KUBE-CLUSTER-IP 10.96.0.10,udp:53
add KUBE-CLUSTER-IP 10.96.0.5,8080
create KUBE-NODE-PORT-TCP bitmap:port range 0-65535
add KUBE-NODE-PORT-TCP 30080
add KUBE-NODE-PORT-TCP 30000-30001
create blocked hash:net family inet hashsize 1024 maxelem 65536 counters
add blocked 192.0.2.0/24 packets 3 bytes 180
add blocked 198.51.100.7
add blocked 10.1.0.0/16 nomatch
create KUBE-LOOP-BACK hash:ip,port,ip family inet
add KUBE-LOOP-BACK 10.244.1.2,tcp:53,10.244.1.2
create v6 hash:net family inet6 timeout 300
add v6 2001:db8::/32 timeout 97
add v6 2001:db8::/129
add nosuch 10.0.0.1
frobnicate everything
";

    #[test]
    fn ipset_save() {
        let rs = parse("ipset.txt", SAVE);
        assert_eq!(
            rs.sets["KUBE-CLUSTER-IP"],
            Set {
                kind: "hash:ip,port".into(),
                members: vec![
                    SetMember::AddrPort(p("10.96.0.1"), Some(Proto::Tcp), (443, 443)),
                    SetMember::AddrPort(p("10.96.0.10"), Some(Proto::Udp), (53, 53)),
                    SetMember::AddrPort(p("10.96.0.5"), Some(Proto::Tcp), (8080, 8080)),
                ]
            }
        );
        assert_eq!(
            rs.sets["KUBE-NODE-PORT-TCP"].members,
            vec![
                SetMember::Port(None, (30080, 30080)),
                SetMember::Port(None, (30000, 30001))
            ]
        );
        assert_eq!(
            rs.sets["blocked"].members,
            vec![
                SetMember::Addr(p("192.0.2.0/24")),
                SetMember::Addr(p("198.51.100.7"))
            ]
        );
        // A type with no member form: kept, without members, and no warning.
        assert_eq!(rs.sets["KUBE-LOOP-BACK"].kind, "hash:ip,port,ip");
        assert!(rs.sets["KUBE-LOOP-BACK"].members.is_empty());
        assert_eq!(
            rs.sets["v6"].members,
            vec![SetMember::Addr(p("2001:db8::/32"))]
        );

        let w: Vec<(u64, &str)> = rs
            .warnings
            .iter()
            .map(|w| match w.location {
                Location::Line { line, .. } => (line, w.message.as_str()),
                _ => panic!("{w}"),
            })
            .collect();
        assert_eq!(w.len(), 4, "{w:?}");
        assert_eq!(w[0].0, 11);
        assert!(w[0].1.contains("nomatch"));
        assert_eq!(w[1].0, 16);
        assert!(w[1].1.contains("\"2001:db8::/129\""), "{}", w[1].1);
        assert_eq!(w[2].0, 17);
        assert!(w[2].1.contains("nosuch"));
        assert_eq!(w[3].0, 18);
        assert!(w[3].1.contains("frobnicate"));
    }

    #[test]
    fn ipset_list() {
        let text = "\
Name: KUBE-CLUSTER-IP
Type: hash:ip,port
Revision: 7
Header: family inet hashsize 1024 maxelem 65536 comment bucketsize 12
Size in memory: 449
References: 0
Number of entries: 2
Members:
10.96.0.1,tcp:443 comment \"default/kubernetes:https\"
10.96.0.10,udp:53

Name: bm
Type: bitmap:ip
Revision: 3
Header: range 192.168.0.0-192.168.0.255
Members:
192.168.0.7
192.168.0.8-192.168.0.11
";
        let rs = parse("list.txt", text);
        assert!(rs.warnings.is_empty(), "{:?}", rs.warnings);
        assert_eq!(rs.sets["KUBE-CLUSTER-IP"].members.len(), 2);
        assert_eq!(
            rs.sets["bm"].members,
            vec![
                SetMember::Addr(p("192.168.0.7")),
                SetMember::Addr(p("192.168.0.8/30")),
            ]
        );
    }

    #[test]
    fn members_by_type() {
        assert_eq!(
            members("hash:ip,port", "10.0.0.6,icmp:echo-request"),
            Ok(vec![])
        );
        assert_eq!(
            members("hash:net,port", "10.0.0.0/31,sctp:9"),
            Ok(vec![SetMember::AddrPort(
                p("10.0.0.0/31"),
                Some(Proto::Sctp),
                (9, 9)
            )])
        );
        assert_eq!(members("hash:ip,port", "10.0.0.6,tcp:99-97"), Err(()));
        // A range of ports is one member, however wide.
        assert_eq!(
            members("hash:ip,port", "10.0.0.6,udp:0-65535"),
            Ok(vec![SetMember::AddrPort(
                p("10.0.0.6"),
                Some(Proto::Udp),
                (0, 65535)
            )])
        );
        assert_eq!(
            members("bitmap:port", "30000-32767"),
            Ok(vec![SetMember::Port(None, (30000, 32767))])
        );
        assert_eq!(members("hash:ip,port", "10.0.0.6"), Err(()));
        assert_eq!(members("hash:ip", "nonsense"), Err(()));
        assert_eq!(members("hash:net,iface", "10.1.0.0/16,eth0"), Ok(vec![]));
        assert_eq!(members("list:set", "blocked"), Ok(vec![]));
        assert_eq!(
            members("bitmap:port", "tcp:80"),
            Ok(vec![SetMember::Port(Some(Proto::Tcp), (80, 80))])
        );
    }

    /// Real `ipset save` and `ipset list` outputs of the same sets read alike.
    #[test]
    fn recorded_outputs() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/rules/");
        let save = std::fs::read_to_string(format!("{dir}ipset-save-recorded.txt")).unwrap();
        let list = std::fs::read_to_string(format!("{dir}ipset-list-recorded.txt")).unwrap();
        assert_eq!(
            super::super::InputKind::detect(&save),
            Some(super::super::InputKind::Ipset)
        );
        assert_eq!(
            super::super::InputKind::detect(&list),
            Some(super::super::InputKind::Ipset)
        );
        let a = parse("save", &save);
        let b = parse("list", &list);
        assert!(a.warnings.is_empty(), "{:?}", a.warnings);
        assert!(b.warnings.is_empty(), "{:?}", b.warnings);
        assert_eq!(a.sets, b.sets);
        assert_eq!(a.sets.len(), 10);
        assert_eq!(a.sets["blocked"].members.len(), 6);
        assert_eq!(a.sets["KUBE-NODE-PORT-TCP"].members.len(), 4);
        assert_eq!(
            a.sets["svcports"].members,
            vec![
                SetMember::AddrPort(p("10.0.0.5"), Some(Proto::Tcp), (80, 80)),
                SetMember::AddrPort(p("10.0.0.5"), Some(Proto::Sctp), (9, 9)),
            ]
        );
    }
}
