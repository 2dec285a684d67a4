use std::net::IpAddr;

use super::*;
use crate::model::Proto;
use crate::rules::{
    AddrType, Branch, Counters, CtState, Family, Iface, MarkOp, MatchKind, NatFlags, NatTo, Ports,
    Prefix, SetDim, SetMember,
};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn pfx(s: &str) -> Prefix {
    match s.split_once('/') {
        Some((a, l)) => Prefix {
            addr: ip(a),
            len: l.parse().unwrap(),
        },
        None => Prefix {
            addr: ip(s),
            len: if s.contains(':') { 128 } else { 32 },
        },
    }
}

fn m(kind: MatchKind) -> Match {
    Match {
        negated: false,
        kind,
    }
}

fn not(kind: MatchKind) -> Match {
    Match {
        negated: true,
        kind,
    }
}

fn chain<'a>(rs: &'a RuleSet, table: &str, name: &str) -> &'a Chain {
    rs.tables
        .iter()
        .find(|t| t.name == table)
        .unwrap_or_else(|| panic!("no table {table}"))
        .chain(name)
        .unwrap_or_else(|| panic!("no chain {name}"))
}

fn dnat(a: &str, port: u16) -> Target {
    Target::Dnat {
        to: NatTo {
            addrs: Some((ip(a), ip(a))),
            ports: Some((port, port)),
        },
        flags: NatFlags::default(),
    }
}

/// kube-proxy in nftables mode: a `services` verdict map keyed by `ip daddr . meta
/// l4proto . th dport`, service chains choosing an endpoint with `numgen random mod 2
/// vmap`, endpoint chains that mark for masquerade and DNAT, and the masquerading chain.
const KUBE_PROXY: &str = r#"{"nftables": [
 {"metainfo": {"version": "1.1.1", "release_name": "Commodore Bullmoose #2", "json_schema_version": 1}},
 {"table": {"family": "ip", "name": "kube-proxy", "handle": 3, "comment": "rules for kube-proxy"}},
 {"set": {"family": "ip", "name": "cluster-ips", "table": "kube-proxy", "type": "ipv4_addr", "handle": 2, "elem": ["10.96.0.1", "10.96.0.10"]}},
 {"map": {"family": "ip", "name": "service-ips", "table": "kube-proxy", "type": ["ipv4_addr", "inet_proto", "inet_service"], "handle": 5, "map": "verdict",
   "elem": [[{"concat": ["10.96.0.10", "udp", 53]}, {"goto": {"target": "service-TCOU7JCQ-kube-system/kube-dns/udp/dns"}}],
            [{"elem": {"val": {"concat": ["10.96.0.1", "tcp", 443]}, "comment": "default/kubernetes:https"}}, {"goto": {"target": "service-2QRHZV4L-default/kubernetes/tcp/https"}}]]}},
 {"chain": {"family": "ip", "table": "kube-proxy", "name": "nat-prerouting", "handle": 10, "type": "nat", "hook": "prerouting", "prio": "dstnat", "policy": "accept"}},
 {"chain": {"family": "ip", "table": "kube-proxy", "name": "nat-postrouting", "handle": 11, "type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"}},
 {"chain": {"family": "ip", "table": "kube-proxy", "name": "filter-prerouting-pre-dnat", "handle": 12, "type": "filter", "hook": "prerouting", "prio": "dstnat - 10", "policy": "accept"}},
 {"chain": {"family": "ip", "table": "kube-proxy", "name": "services", "handle": 13}},
 {"chain": {"family": "ip", "table": "kube-proxy", "name": "mark-for-masquerade", "handle": 14}},
 {"chain": {"family": "ip", "table": "kube-proxy", "name": "masquerading", "handle": 15}},
 {"chain": {"family": "ip", "table": "kube-proxy", "name": "service-TCOU7JCQ-kube-system/kube-dns/udp/dns", "handle": 16}},
 {"chain": {"family": "ip", "table": "kube-proxy", "name": "endpoint-AAAA2222-kube-system/kube-dns/udp/dns__10.244.1.2/53", "handle": 17}},
 {"rule": {"family": "ip", "table": "kube-proxy", "chain": "nat-prerouting", "handle": 30, "expr": [{"jump": {"target": "services"}}]}},
 {"rule": {"family": "ip", "table": "kube-proxy", "chain": "nat-postrouting", "handle": 31, "expr": [{"jump": {"target": "masquerading"}}]}},
 {"rule": {"family": "ip", "table": "kube-proxy", "chain": "services", "handle": 32, "expr": [
   {"vmap": {"key": {"concat": [{"payload": {"protocol": "ip", "field": "daddr"}}, {"meta": {"key": "l4proto"}}, {"payload": {"protocol": "th", "field": "dport"}}]}, "data": "@service-ips"}}]}},
 {"rule": {"family": "ip", "table": "kube-proxy", "chain": "services", "handle": 33, "expr": [
   {"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}}, "right": "local"}},
   {"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": {"prefix": {"addr": "127.0.0.0", "len": 8}}}},
   {"vmap": {"key": {"concat": [{"meta": {"key": "l4proto"}}, {"payload": {"protocol": "th", "field": "dport"}}]}, "data": "@service-nodeports"}}]}},
 {"rule": {"family": "ip", "table": "kube-proxy", "chain": "mark-for-masquerade", "handle": 34, "expr": [
   {"mangle": {"key": {"meta": {"key": "mark"}}, "value": {"|": [{"meta": {"key": "mark"}}, 16384]}}}]}},
 {"rule": {"family": "ip", "table": "kube-proxy", "chain": "masquerading", "handle": 35, "expr": [
   {"match": {"op": "==", "left": {"&": [{"meta": {"key": "mark"}}, 16384]}, "right": 0}}, {"return": null}]}},
 {"rule": {"family": "ip", "table": "kube-proxy", "chain": "masquerading", "handle": 36, "expr": [
   {"mangle": {"key": {"meta": {"key": "mark"}}, "value": {"^": [{"meta": {"key": "mark"}}, 16384]}}}]}},
 {"rule": {"family": "ip", "table": "kube-proxy", "chain": "masquerading", "handle": 37, "expr": [{"masquerade": {"flags": "fully-random"}}]}},
 {"rule": {"family": "ip", "table": "kube-proxy", "chain": "service-TCOU7JCQ-kube-system/kube-dns/udp/dns", "handle": 38, "expr": [
   {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "10.96.0.10"}},
   {"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": 53}},
   {"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": {"prefix": {"addr": "10.244.0.0", "len": 16}}}},
   {"jump": {"target": "mark-for-masquerade"}}]}},
 {"rule": {"family": "ip", "table": "kube-proxy", "chain": "service-TCOU7JCQ-kube-system/kube-dns/udp/dns", "handle": 39, "expr": [
   {"vmap": {"key": {"numgen": {"mode": "random", "mod": 2, "offset": 0}}, "data": {"set": [
     [0, {"goto": {"target": "endpoint-AAAA2222-kube-system/kube-dns/udp/dns__10.244.1.2/53"}}],
     [1, {"goto": {"target": "endpoint-BBBB3333-kube-system/kube-dns/udp/dns__10.244.2.3/53"}}]]}}}]}},
 {"rule": {"family": "ip", "table": "kube-proxy", "chain": "endpoint-AAAA2222-kube-system/kube-dns/udp/dns__10.244.1.2/53", "handle": 40, "expr": [
   {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "10.244.1.2"}}, {"jump": {"target": "mark-for-masquerade"}}]}},
 {"rule": {"family": "ip", "table": "kube-proxy", "chain": "endpoint-AAAA2222-kube-system/kube-dns/udp/dns__10.244.1.2/53", "handle": 41, "expr": [
   {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": "udp"}}, {"dnat": {"addr": "10.244.1.2", "port": 53}}]}},
 {"rule": {"family": "ip", "table": "kube-proxy", "chain": "filter-prerouting-pre-dnat", "handle": 42, "expr": [
   {"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": "new"}},
   {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "@cluster-ips"}},
   {"reject": {"type": "icmp", "expr": "port-unreachable"}}], "comment": "Reject traffic to invalid ports of ClusterIPs"}}
]}"#;

#[test]
fn kube_proxy_nftables_mode() {
    let rs = parse_json("kp.json", KUBE_PROXY);
    assert!(rs.warnings.is_empty(), "{:?}", rs.warnings);
    assert_eq!(rs.tables.len(), 1);
    let t = &rs.tables[0];
    assert_eq!(
        (t.name.as_str(), t.family, t.dialect),
        ("kube-proxy", Family::Ip, Dialect::NftJson)
    );
    assert_eq!(t.source, "kp.json");

    let pre = chain(&rs, "kube-proxy", "nat-prerouting");
    assert_eq!(
        pre.base,
        Some(Base {
            hook: Hook::Prerouting,
            priority: -100,
            kind: ChainType::Nat,
            policy: Verdict::Accept,
            counters: None
        })
    );
    assert_eq!(pre.rules[0].target, Target::Jump("services".into()));
    assert_eq!((pre.rules[0].line, pre.rules[0].handle), (0, Some(30)));
    assert_eq!(
        chain(&rs, "kube-proxy", "filter-prerouting-pre-dnat")
            .base
            .as_ref()
            .unwrap()
            .priority,
        -110
    );
    assert_eq!(chain(&rs, "kube-proxy", "services").base, None);

    // The services verdict map, read from the named map of the same table.
    let services = chain(&rs, "kube-proxy", "services");
    assert_eq!(
        services.rules[0].text,
        "ip daddr . meta l4proto . th dport vmap @service-ips"
    );
    assert_eq!(
        services.rules[0].target,
        Target::Map {
            by: "ip daddr . meta l4proto . th dport".into(),
            branches: vec![
                Branch {
                    share: None,
                    key: "10.96.0.10 . udp . 53".into(),
                    target: Box::new(Target::Goto(
                        "service-TCOU7JCQ-kube-system/kube-dns/udp/dns".into()
                    )),
                },
                Branch {
                    share: None,
                    key: "10.96.0.1 . tcp . 443".into(),
                    target: Box::new(Target::Goto(
                        "service-2QRHZV4L-default/kubernetes/tcp/https".into()
                    )),
                },
            ]
        }
    );
    // fib daddr type local; a map that is not in the input.
    let nodeports = &services.rules[1];
    assert_eq!(
        nodeports.matches,
        vec![
            m(MatchKind::AddrType {
                src: vec![],
                dst: vec![AddrType::Local],
                limit_in: false,
                limit_out: false
            }),
            not(MatchKind::Dst(pfx("127.0.0.0/8"))),
        ]
    );
    assert!(
        matches!(&nodeports.target, Target::Unknown { text, .. } if text.contains("@service-nodeports"))
    );

    // meta mark set meta mark | 0x4000
    let mark = &chain(&rs, "kube-proxy", "mark-for-masquerade").rules[0];
    assert_eq!(mark.text, "meta mark set meta mark | 0x00004000");
    assert_eq!(
        mark.target,
        Target::Mark(MarkOp {
            clear: 0x4000,
            xor: 0x4000
        })
    );

    let masq = &chain(&rs, "kube-proxy", "masquerading").rules;
    assert_eq!(
        masq[0].matches,
        vec![m(MatchKind::Mark {
            value: 0,
            mask: 0x4000
        })]
    );
    assert_eq!(masq[0].target, Target::Return);
    assert_eq!(
        masq[1].target,
        Target::Mark(MarkOp {
            clear: 0,
            xor: 0x4000
        })
    );
    assert_eq!(
        masq[2].target,
        Target::Masquerade {
            ports: None,
            flags: NatFlags {
                random_fully: true,
                ..NatFlags::default()
            }
        }
    );

    // The service chain: masquerade marking for outside sources, numgen endpoint choice.
    let svc = &chain(
        &rs,
        "kube-proxy",
        "service-TCOU7JCQ-kube-system/kube-dns/udp/dns",
    )
    .rules;
    assert_eq!(
        svc[0].text,
        "ip daddr 10.96.0.10 udp dport 53 ip saddr != 10.244.0.0/16 jump mark-for-masquerade"
    );
    assert_eq!(
        svc[0].matches,
        vec![
            m(MatchKind::Dst(pfx("10.96.0.10"))),
            m(MatchKind::Proto(Proto::Udp)),
            m(MatchKind::Dport(Ports(vec![(53, 53)]))),
            not(MatchKind::Src(pfx("10.244.0.0/16"))),
        ]
    );
    let Target::Map { by, branches } = &svc[1].target else {
        panic!("{:?}", svc[1].target)
    };
    assert_eq!(by, "numgen random mod 2");
    assert_eq!(branches.len(), 2);
    assert_eq!(branches[0].share, Some(0.5));
    assert_eq!(branches[1].key, "1");
    assert_eq!(
        *branches[1].target,
        Target::Goto("endpoint-BBBB3333-kube-system/kube-dns/udp/dns__10.244.2.3/53".into())
    );

    let ep = &chain(
        &rs,
        "kube-proxy",
        "endpoint-AAAA2222-kube-system/kube-dns/udp/dns__10.244.1.2/53",
    )
    .rules;
    assert_eq!(ep[1].text, "meta l4proto udp dnat to 10.244.1.2:53");
    assert_eq!(ep[1].matches, vec![m(MatchKind::Proto(Proto::Udp))]);
    assert_eq!(ep[1].target, dnat("10.244.1.2", 53));

    // Named sets are kept under "family table name"; comments and rejects.
    let reject = &chain(&rs, "kube-proxy", "filter-prerouting-pre-dnat").rules[0];
    assert_eq!(
        reject.comment.as_deref(),
        Some("Reject traffic to invalid ports of ClusterIPs")
    );
    assert_eq!(
        reject.text,
        "ct state new ip daddr @cluster-ips reject with icmp port-unreachable comment \"Reject traffic to invalid ports of ClusterIPs\""
    );
    assert_eq!(
        reject.matches,
        vec![
            m(MatchKind::CtState(vec![CtState::New])),
            m(MatchKind::Set {
                name: "ip kube-proxy cluster-ips".into(),
                dims: vec![SetDim::Dst]
            }),
        ]
    );
    assert_eq!(
        reject.target,
        Target::Reject {
            with: Some("icmp port-unreachable".into())
        }
    );
    assert_eq!(
        rs.sets["ip kube-proxy cluster-ips"],
        Set {
            kind: "ipv4_addr".into(),
            members: vec![
                SetMember::Addr(pfx("10.96.0.1")),
                SetMember::Addr(pfx("10.96.0.10"))
            ]
        }
    );
    // Maps are lookups, not sets.
    assert!(!rs.sets.contains_key("ip kube-proxy service-ips"));
}

/// A native ruleset as Docker (nftables firewall backend) or firewalld write it.
const NATIVE: &str = r#"{"nftables": [
 {"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}},
 {"table": {"family": "ip", "name": "docker-bridges", "handle": 7}},
 {"set": {"family": "ip", "name": "published", "table": "docker-bridges", "type": ["inet_proto", "inet_service"], "handle": 1, "elem": [{"concat": ["tcp", 8080]}, {"concat": ["udp", {"range": [5000, 5001]}]}]}},
 {"chain": {"family": "ip", "table": "docker-bridges", "name": "nat-prerouting-and-output", "handle": 1, "type": "nat", "hook": "prerouting", "prio": -100, "policy": "accept"}},
 {"chain": {"family": "ip", "table": "docker-bridges", "name": "nat-postrouting", "handle": 2, "type": "nat", "hook": "postrouting", "prio": "srcnat", "policy": "accept"}},
 {"chain": {"family": "ip", "table": "docker-bridges", "name": "filter-forward", "handle": 3, "type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}},
 {"chain": {"family": "ip", "table": "docker-bridges", "name": "nat-bridge-docker0", "handle": 4}},
 {"rule": {"family": "ip", "table": "docker-bridges", "chain": "nat-prerouting-and-output", "handle": 10, "expr": [
   {"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}}, "right": "local"}},
   {"counter": {"packets": 12, "bytes": 720}},
   {"jump": {"target": "nat-bridge-docker0"}}]}},
 {"rule": {"family": "ip", "table": "docker-bridges", "chain": "nat-bridge-docker0", "handle": 11, "expr": [
   {"match": {"op": "!=", "left": {"meta": {"key": "iifname"}}, "right": "docker0"}},
   {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 8080}},
   {"dnat": {"addr": "172.17.0.2", "port": 80}}], "comment": "DNAT"}},
 {"rule": {"family": "ip", "table": "docker-bridges", "chain": "nat-postrouting", "handle": 12, "expr": [
   {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": {"prefix": {"addr": "172.17.0.0", "len": 16}}}},
   {"match": {"op": "!=", "left": {"meta": {"key": "oifname"}}, "right": "docker0"}},
   {"masquerade": {"port": {"range": [1024, 65535]}, "flags": ["random", "persistent"]}}]}},
 {"rule": {"family": "ip", "table": "docker-bridges", "chain": "nat-postrouting", "handle": 13, "expr": [
   {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "eth*"}},
   {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": {"range": ["10.0.0.4", "10.0.0.7"]}}},
   {"snat": {"addr": {"range": ["203.0.113.5", "203.0.113.9"]}}}]}},
 {"rule": {"family": "ip", "table": "docker-bridges", "chain": "filter-forward", "handle": 14, "expr": [
   {"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}}, {"accept": null}]}},
 {"rule": {"family": "ip", "table": "docker-bridges", "chain": "filter-forward", "handle": 15, "expr": [
   {"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": {"set": [{"prefix": {"addr": "10.0.0.0", "len": 8}}, {"prefix": {"addr": "172.16.0.0", "len": 12}}]}}},
   {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": {"set": [{"range": [8000, 8100]}, 9000]}}},
   {"match": {"op": "==", "left": {"concat": [{"meta": {"key": "l4proto"}}, {"payload": {"protocol": "th", "field": "dport"}}]}, "right": "@published"}},
   {"log": {"prefix": "fwd "}},
   {"mangle": {"key": {"ct": {"key": "mark"}}, "value": 1}},
   {"accept": null}]}},
 {"rule": {"family": "ip", "table": "docker-bridges", "chain": "filter-forward", "handle": 16, "expr": [
   {"match": {"op": "==", "left": {"ct": {"key": "direction"}}, "right": "original"}},
   {"match": {"op": "==", "left": {"ct": {"key": "ip daddr", "dir": "original"}}, "right": "198.51.100.1"}},
   {"match": {"op": "==", "left": {"ct": {"key": "proto-dst", "dir": "original"}}, "right": 443}},
   {"match": {"op": "in", "left": {"ct": {"key": "status"}}, "right": "dnat"}},
   {"match": {"op": "==", "left": {"&": [{"payload": {"protocol": "tcp", "field": "flags"}}, ["syn", "ack"]]}, "right": "syn"}},
   {"match": {"op": "==", "left": {"payload": {"protocol": "icmp", "field": "type"}}, "right": "echo-request"}},
   {"match": {"op": "==", "left": {"meta": {"key": "nfproto"}}, "right": "ipv4"}},
   {"limit": {"rate": 5, "burst": 5, "per": "second"}},
   {"counter": {"packets": 0, "bytes": 0}},
   {"notrack": null}]}},
 {"table": {"family": "netdev", "name": "ingress0", "handle": 9}},
 {"chain": {"family": "netdev", "table": "ingress0", "name": "in", "handle": 1, "type": "filter", "hook": "ingress", "dev": "eth0", "prio": -500, "policy": "accept"}},
 {"flowtable": {"family": "ip", "name": "ft", "table": "docker-bridges", "handle": 5, "hook": "ingress", "prio": 0, "dev": ["eth0"]}},
 {"counter": {"family": "ip", "name": "c1", "table": "docker-bridges", "handle": 6, "packets": 0, "bytes": 0}}
]}"#;

#[test]
fn native_ruleset() {
    let rs = parse_json("native.json", NATIVE);
    assert!(rs.warnings.is_empty(), "{:?}", rs.warnings);
    assert_eq!(rs.tables.len(), 2);
    assert_eq!(
        chain(&rs, "docker-bridges", "nat-postrouting")
            .base
            .as_ref()
            .unwrap()
            .priority,
        100
    );
    assert_eq!(
        chain(&rs, "docker-bridges", "filter-forward")
            .base
            .as_ref()
            .unwrap()
            .policy,
        Verdict::Drop
    );
    // A netdev ingress chain has no place in the IP hooks.
    assert_eq!(chain(&rs, "ingress0", "in").base, None);

    let pre = &chain(&rs, "docker-bridges", "nat-prerouting-and-output").rules[0];
    assert_eq!(
        pre.counters,
        Some(Counters {
            packets: 12,
            bytes: 720
        })
    );
    assert_eq!(
        pre.text,
        "fib daddr type local counter jump nat-bridge-docker0"
    );

    let d = &chain(&rs, "docker-bridges", "nat-bridge-docker0").rules[0];
    assert_eq!(
        d.matches,
        vec![
            not(MatchKind::InIface(Iface {
                name: "docker0".into(),
                prefix: false
            })),
            m(MatchKind::Proto(Proto::Tcp)),
            m(MatchKind::Dport(Ports(vec![(8080, 8080)]))),
        ]
    );
    assert_eq!(d.target, dnat("172.17.0.2", 80));
    assert_eq!(d.comment.as_deref(), Some("DNAT"));

    let post = &chain(&rs, "docker-bridges", "nat-postrouting").rules;
    assert_eq!(
        post[0].target,
        Target::Masquerade {
            ports: Some((1024, 65535)),
            flags: NatFlags {
                random: true,
                random_fully: false,
                persistent: true
            }
        }
    );
    assert_eq!(
        post[0].text,
        "ip saddr 172.17.0.0/16 oifname != \"docker0\" masquerade to :1024-65535 random,persistent"
    );
    // oifname "eth*" is a prefix; an address range is the prefixes that cover it.
    assert_eq!(
        post[1].matches[0],
        m(MatchKind::OutIface(Iface {
            name: "eth".into(),
            prefix: true
        }))
    );
    assert_eq!(post[1].matches[1], m(MatchKind::Src(pfx("10.0.0.4/30"))));
    assert_eq!(
        post[1].target,
        Target::Snat {
            to: NatTo {
                addrs: Some((ip("203.0.113.5"), ip("203.0.113.9"))),
                ports: None
            },
            flags: NatFlags::default()
        }
    );

    let fwd = &chain(&rs, "docker-bridges", "filter-forward").rules;
    assert_eq!(
        fwd[0].matches,
        vec![m(MatchKind::CtState(vec![
            CtState::Established,
            CtState::Related
        ]))]
    );
    // log, ct mark set 1, accept: the log is left out, the mark and the verdict are two
    // rules of one handle.
    let split: Vec<&Rule> = fwd.iter().filter(|r| r.handle == Some(15)).collect();
    assert_eq!(split.len(), 2);
    assert_eq!(
        split[0].target,
        Target::ConnMark(MarkOp {
            clear: u32::MAX,
            xor: 1
        })
    );
    assert_eq!(split[1].target, Target::Accept);
    assert_eq!(split[0].matches, split[1].matches);
    assert_eq!(split[0].text, split[1].text);
    assert_eq!(
        split[0].matches,
        vec![
            not(MatchKind::Set {
                name: "ip docker-bridges __rule15_set1".into(),
                dims: vec![SetDim::Dst]
            }),
            m(MatchKind::Proto(Proto::Tcp)),
            m(MatchKind::Dport(Ports(vec![(8000, 8100), (9000, 9000)]))),
            m(MatchKind::Set {
                name: "ip docker-bridges published".into(),
                dims: vec![SetDim::Dst]
            }),
        ]
    );
    assert_eq!(
        rs.sets["ip docker-bridges __rule15_set1"].members,
        vec![
            SetMember::Addr(pfx("10.0.0.0/8")),
            SetMember::Addr(pfx("172.16.0.0/12"))
        ]
    );
    assert_eq!(
        rs.sets["ip docker-bridges published"],
        Set {
            kind: "inet_proto . inet_service".into(),
            members: vec![
                SetMember::Port(Some(Proto::Tcp), (8080, 8080)),
                SetMember::Port(Some(Proto::Udp), (5000, 5001)),
            ]
        }
    );

    let ct = fwd.iter().find(|r| r.handle == Some(16)).unwrap();
    assert_eq!(
        ct.matches[..6],
        [
            not(MatchKind::CtDirReply),
            m(MatchKind::CtOrigDst(pfx("198.51.100.1"))),
            m(MatchKind::CtOrigDstPort(Ports(vec![(443, 443)]))),
            m(MatchKind::CtState(vec![CtState::Dnat])),
            m(MatchKind::Proto(Proto::Tcp)),
            m(MatchKind::TcpFlags {
                mask: 0x12,
                comp: 0x02
            }),
        ]
    );
    assert_eq!(ct.matches[6], m(MatchKind::Proto(Proto::Icmp)));
    assert_eq!(
        ct.matches[7],
        m(MatchKind::IcmpType {
            icmp_type: 8,
            code: None
        })
    );
    assert_eq!(ct.matches[8], m(MatchKind::Family(Family::Ip)));
    assert!(
        matches!(&ct.matches[9].kind, MatchKind::Unknown { name, text } if name == "limit" && text == "limit rate 5/second")
    );
    assert_eq!(ct.target, Target::Notrack);
    assert_eq!(ct.counters, Some(Counters::default()));
}

/// What iptables-nft leaves in nft's JSON: `xt` expressions without their arguments.
const IPTABLES_NFT: &str = r#"{"nftables": [
 {"metainfo": {"version": "1.0.9", "release_name": "Old Doc Yak #3", "json_schema_version": 1}},
 {"table": {"family": "ip", "name": "nat", "handle": 1}},
 {"chain": {"family": "ip", "table": "nat", "name": "DOCKER", "handle": 1}},
 {"chain": {"family": "ip", "table": "nat", "name": "PREROUTING", "handle": 5, "type": "nat", "hook": "prerouting", "prio": -100, "policy": "accept"}},
 {"chain": {"family": "ip", "table": "nat", "name": "POSTROUTING", "handle": 2, "type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"}},
 {"rule": {"family": "ip", "table": "nat", "chain": "PREROUTING", "handle": 6, "expr": [{"xt": {"type": "match", "name": "addrtype"}}, {"counter": {"packets": 0, "bytes": 0}}, {"jump": {"target": "DOCKER"}}]}},
 {"rule": {"family": "ip", "table": "nat", "chain": "POSTROUTING", "handle": 11, "expr": [
   {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": {"prefix": {"addr": "172.17.0.0", "len": 16}}}},
   {"match": {"op": "!=", "left": {"meta": {"key": "oifname"}}, "right": "docker0"}},
   {"counter": {"packets": 1910, "bytes": 113828}}, {"xt": {"type": "target", "name": "MASQUERADE"}}]}},
 {"rule": {"family": "ip", "table": "nat", "chain": "DOCKER", "handle": 923, "expr": [
   {"match": {"op": "!=", "left": {"meta": {"key": "iifname"}}, "right": "docker0"}},
   {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 4021}},
   {"xt": {"type": "match", "name": "comment"}},
   {"counter": {"packets": 0, "bytes": 0}}, {"xt": {"type": "target", "name": "DNAT"}}]}}
]}"#;

/// Read beside iptables-save, the twin tables that held the xt expressions are left
/// out, and the warning about them with them, whichever input comes first; an xt
/// expression in a table iptables-save does not hold keeps it.
#[test]
fn the_xt_warning_goes_with_the_twins() {
    let save = crate::rules::iptables::parse(
        "save.txt",
        "*nat\n:PREROUTING ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:DOCKER - [0:0]\n\
         -A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE\nCOMMIT\n",
    );
    assert!(save.warnings.is_empty(), "{:?}", save.warnings);
    for nft_first in [false, true] {
        let nft = parse_json("ipt.json", IPTABLES_NFT);
        let (mut a, b) = if nft_first {
            (nft, save.clone())
        } else {
            (save.clone(), nft)
        };
        a.merge(b);
        assert!(a.warnings.is_empty(), "{nft_first}: {:?}", a.warnings);
    }
    let other = IPTABLES_NFT.replace("\"nat\"", "\"natx\"");
    let mut a = save.clone();
    a.merge(parse_json("ipt.json", &other));
    assert_eq!(a.warnings.len(), 1, "{:?}", a.warnings);
    assert!(crate::rules::nft::is_xt_warning(&a.warnings[0]));
}

#[test]
fn iptables_nft_xt_expressions() {
    let rs = parse_json("ipt.json", IPTABLES_NFT);
    assert_eq!(
        rs.warnings.len(),
        1,
        "one warning per input: {:?}",
        rs.warnings
    );
    let w = &rs.warnings[0];
    assert_eq!(
        (w.source.as_str(), &w.location),
        ("ipt.json", &Location::File)
    );
    assert!(
        w.message.starts_with("3 rules hold xt expressions"),
        "{}",
        w.message
    );
    assert!(
        w.message.contains("iptables-save is the complete source"),
        "{}",
        w.message
    );

    let pre = &chain(&rs, "nat", "PREROUTING").rules[0];
    assert_eq!(pre.text, "xt match addrtype counter jump DOCKER");
    assert!(
        matches!(&pre.matches[..], [Match { kind: MatchKind::Unknown { name, text }, .. }]
        if name == "addrtype" && text.contains("iptables-save is the complete source"))
    );
    assert_eq!(pre.target, Target::Jump("DOCKER".into()));

    let post = &chain(&rs, "nat", "POSTROUTING").rules[0];
    assert_eq!(
        post.counters,
        Some(Counters {
            packets: 1910,
            bytes: 113828
        })
    );
    assert!(
        matches!(&post.target, Target::Unknown { name, text } if name == "MASQUERADE" && text.contains("arguments not shown"))
    );

    // An xt comment match is always true; the DNAT's arguments are unknown.
    let d = &chain(&rs, "nat", "DOCKER").rules[0];
    assert_eq!(d.matches[3], m(MatchKind::Comment));
    assert!(matches!(&d.target, Target::Unknown { name, .. } if name == "DNAT"));
}

#[test]
fn malformed_json_is_one_located_warning() {
    let text = "{\"nftables\": [\n  {\"table\": {\"family\": \"ip\",\n    \"name\": }}\n]}";
    let rs = parse_json("bad.json", text);
    assert!(rs.tables.is_empty() && rs.sets.is_empty());
    assert_eq!(rs.warnings.len(), 1);
    assert_eq!(
        rs.warnings[0].location,
        Location::Line {
            line: 3,
            column: 13
        }
    );
    assert!(
        rs.warnings[0]
            .message
            .starts_with("not valid JSON (expected value)"),
        "{}",
        rs.warnings[0]
    );

    let truncated = parse_json("cut.json", &KUBE_PROXY[..200]);
    assert_eq!(truncated.warnings.len(), 1);
    assert!(matches!(
        truncated.warnings[0].location,
        Location::Line { line: 3, .. }
    ));
    assert!(truncated.tables.is_empty());

    let other = parse_json("other.json", "[{\"ifname\": \"lo\"}]");
    assert_eq!(other.warnings.len(), 1);
    assert_eq!(other.warnings[0].location, Location::File);
}

#[test]
fn unknown_objects_and_expressions_are_kept_going_past() {
    let text = r#"{"nftables": [
      {"table": {"family": "inet", "name": "t", "handle": 1}},
      {"secmark": {"family": "inet", "table": "t", "name": "s"}},
      {"chain": {"family": "inet", "table": "t", "name": "c", "handle": 2, "type": "filter", "hook": "input", "prio": "filter + 5", "policy": "drop"}},
      {"rule": {"family": "inet", "table": "t", "chain": "c", "handle": 3, "expr": [
        {"match": {"op": "==", "left": {"osf": {"key": "name"}}, "right": "Linux"}},
        {"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "length"}}, "right": 20}},
        {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": {"set": ["tcp", "udp"]}}},
        {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": {"set": ["eth0", "eth1"]}}},
        {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": 12}},
        {"queue": {"num": 3}}]}},
      {"rule": {"family": "inet", "table": "t", "chain": "c", "handle": 4, "expr": [{"frobnicate": {"x": 1}}]}},
      {"rule": {"family": "inet", "table": "t", "chain": "undeclared", "handle": 5, "expr": [{"tproxy": {"port": 1}}, {"accept": null}]}},
      {"rule": {"family": "inet", "table": "t", "chain": "c", "handle": 6, "expr": "not a list"}},
      {"rule": {"family": "inet", "table": "t", "handle": 7, "expr": []}},
      {"table": {"family": "decnet", "name": "x"}},
      "a string",
      {"rule": {"family": "inet", "table": "t", "chain": "c", "handle": 8, "expr": [
        {"match": {"op": "~~", "left": {"meta": {"key": "mark"}}, "right": 1}},
        {"mangle": {"key": {"ct": {"key": "mark"}}, "value": {"meta": {"key": "mark"}}}},
        {"mangle": {"key": {"payload": {"protocol": "ip", "field": "dscp"}}, "value": 46}}]}},
      {"rule": {"family": "inet", "table": "t", "chain": "c", "handle": 9, "expr": [
        {"vmap": {"key": {"meta": {"key": "mark"}}, "data": {"set": [[1, {"accept": null}], [2, {"queue": null}]]}}}]}}
    ]}"#;
    let rs = parse_json("odd.json", text);
    assert_eq!(rs.warnings.len(), 2, "{:?}", rs.warnings);
    // The tables and chains are read before the rules.
    assert!(
        rs.warnings[0].message.contains("unknown family \"decnet\""),
        "{}",
        rs.warnings[0]
    );
    assert!(
        rs.warnings[1]
            .message
            .contains("without family, table or chain"),
        "{}",
        rs.warnings[1]
    );
    let c = chain(&rs, "t", "c");
    assert_eq!(c.base.as_ref().unwrap().priority, 5);
    let r = &c.rules[0];
    assert_eq!(r.matches.len(), 6, "{:?}", r.matches);
    assert!(matches!(&r.matches[0].kind, MatchKind::Unknown { name, .. } if name == "osf name"));
    assert_eq!(r.matches[1], m(MatchKind::Proto(Proto::Udp)));
    assert!(matches!(&r.matches[2].kind, MatchKind::Unknown { name, .. } if name == "udp length"));
    assert_eq!(
        r.matches[3],
        m(MatchKind::AnyProto(vec![Proto::Tcp, Proto::Udp]))
    );
    assert!(r.matches[4..]
        .iter()
        .all(|m| matches!(m.kind, MatchKind::Unknown { .. })));
    assert!(matches!(&r.target, Target::Unknown { name, .. } if name == "queue"));
    assert!(matches!(&c.rules[1].target, Target::Unknown { name, .. } if name == "frobnicate"));
    // A rule of an undeclared chain makes the chain; the tproxy stops the rule there.
    let u = chain(&rs, "t", "undeclared");
    assert_eq!(u.rules.len(), 1);
    assert!(matches!(&u.rules[0].target, Target::Unknown { name, .. } if name == "tproxy"));
    // A rule whose expr is not a list only counts.
    assert_eq!(c.rules[2].target, Target::None);
    assert_eq!(c.rules[2].handle, Some(6));
    // An unknown operator; ct mark set meta mark (CONNMARK --save-mark) is a rule of
    // its own, and ip dscp set goes on.
    let h8: Vec<&Rule> = c.rules.iter().filter(|r| r.handle == Some(8)).collect();
    assert_eq!(h8.len(), 2);
    assert!(matches!(&h8[0].matches[0].kind, MatchKind::Unknown { .. }));
    assert_eq!(
        h8[0].target,
        Target::CopyMark {
            restore: false,
            nfmask: u32::MAX,
            ctmask: u32::MAX
        }
    );
    assert_eq!(
        h8[1].target,
        Target::Continue {
            name: "ip dscp set 46".into()
        }
    );
    assert_eq!(
        h8[0].text,
        "meta mark ~~ 0x00000001 ct mark set meta mark ip dscp set 46"
    );
    // A verdict map on the mark; a branch whose value is not a verdict.
    let h9 = c.rules.iter().find(|r| r.handle == Some(9)).unwrap();
    let Target::Map { by, branches } = &h9.target else {
        panic!()
    };
    assert_eq!(by, "meta mark");
    assert_eq!(*branches[0].target, Target::Accept);
    assert!(matches!(*branches[1].target, Target::Unknown { .. }));
}

#[test]
fn dnat_through_maps() {
    let text = r#"{"nftables": [
      {"table": {"family": "ip", "name": "kp", "handle": 1}},
      {"map": {"family": "ip", "name": "x", "table": "kp", "type": "ipv4_addr", "handle": 2, "map": "ipv4_addr", "elem": [["192.0.2.1", "10.0.0.1"]]}},
      {"chain": {"family": "ip", "table": "kp", "name": "svc", "handle": 3}},
      {"rule": {"family": "ip", "table": "kp", "chain": "svc", "handle": 4, "expr": [
        {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": "tcp"}},
        {"dnat": {"family": "ip", "addr": {"map": {"key": {"numgen": {"mode": "random", "mod": 3, "offset": 0}},
          "data": {"set": [[{"range": [0, 1]}, {"concat": ["10.244.1.5", 8080]}], [2, {"concat": ["10.244.2.7", 8080]}]]}}}}}]}},
      {"rule": {"family": "ip", "table": "kp", "chain": "svc", "handle": 5, "expr": [
        {"dnat": {"addr": {"map": {"key": {"payload": {"protocol": "ip", "field": "daddr"}}, "data": "@x"}}}}]}}
    ]}"#;
    let rs = parse_json("maps.json", text);
    assert!(rs.warnings.is_empty(), "{:?}", rs.warnings);
    let rules = &chain(&rs, "kp", "svc").rules;
    assert_eq!(rules[0].text, "meta l4proto tcp dnat ip to numgen random mod 3 map { 0-1 : 10.244.1.5 . 8080, 2 : 10.244.2.7 . 8080 }");
    let Target::Map { by, branches } = &rules[0].target else {
        panic!("{:?}", rules[0].target)
    };
    assert_eq!(by, "numgen random mod 3");
    assert_eq!(branches[0].key, "0-1");
    assert!((branches[0].share.unwrap() - 2.0 / 3.0).abs() < 1e-9);
    assert!((branches[1].share.unwrap() - 1.0 / 3.0).abs() < 1e-9);
    assert_eq!(*branches[1].target, dnat("10.244.2.7", 8080));
    assert_eq!(
        rules[1].target,
        Target::Map {
            by: "ip daddr".into(),
            branches: vec![Branch {
                share: None,
                key: "192.0.2.1".into(),
                target: Box::new(Target::Dnat {
                    to: NatTo {
                        addrs: Some((ip("10.0.0.1"), ip("10.0.0.1"))),
                        ports: None
                    },
                    flags: NatFlags::default()
                })
            }]
        }
    );
}

#[test]
fn priorities() {
    let p = |v: Value, f: &str| priority(&v, f);
    assert_eq!(p(serde_json::json!(-150), "ip"), Some(-150));
    assert_eq!(p(serde_json::json!("dstnat"), "ip"), Some(-100));
    assert_eq!(p(serde_json::json!("dstnat"), "bridge"), Some(-300));
    assert_eq!(p(serde_json::json!("srcnat + 10"), "inet"), Some(110));
    assert_eq!(p(serde_json::json!("mangle-1"), "ip"), Some(-151));
    assert_eq!(p(serde_json::json!("raw"), "ip"), Some(-300));
    assert_eq!(p(serde_json::json!("security"), "ip6"), Some(50));
    assert_eq!(p(serde_json::json!("-5"), "ip"), Some(-5));
    assert_eq!(p(serde_json::json!("sometimes"), "ip"), None);
}

/// Real `nft -j list ruleset` outputs (tests/data/rules/*.json, each with a `.source`
/// file saying where it comes from) parse without a fatal error.
#[test]
fn real_outputs_parse() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/rules");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.extension().and_then(|e| e.to_str()) != Some("json") || name.starts_with("addrs-") {
            continue;
        }
        seen += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            path.with_extension("json.source").exists(),
            "{name} has no .source file"
        );
        assert_eq!(
            crate::rules::InputKind::detect(&text),
            Some(crate::rules::InputKind::NftJson),
            "{name}"
        );
        let rs = parse_json(&name, &text);
        assert!(!rs.tables.is_empty(), "{name}: no tables");
        let rules: usize = rs
            .tables
            .iter()
            .flat_map(|t| &t.chains)
            .map(|c| c.rules.len())
            .sum();
        assert!(
            rules > 0 || name.starts_with("priorities"),
            "{name}: no rules"
        );
        // Only the xt note may be warned about.
        for w in &rs.warnings {
            assert!(w.message.contains("xt expressions"), "{name}: {w}");
        }
    }
    assert!(seen >= 3, "only {seen} real outputs");
}

#[test]
fn recorded_kube_proxy_ruleset() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/rules/kube-proxy-nftables-recorded.json"
    );
    let rs = parse_json("kp", &std::fs::read_to_string(path).unwrap());
    assert!(rs.warnings.is_empty(), "{:?}", rs.warnings);
    let svc = chain(
        &rs,
        "kube-proxy",
        "service-TCOU7JCQ-kube-system/kube-dns/udp/dns",
    );
    let Target::Map { by, branches } = &svc.rules[1].target else {
        panic!()
    };
    assert_eq!(by, "numgen random mod 3");
    assert_eq!(branches.iter().map(|b| b.share.unwrap()).sum::<f64>(), 1.0);
    let services = chain(&rs, "kube-proxy", "services");
    let Target::Map { branches, .. } = &services.rules[0].target else {
        panic!()
    };
    assert_eq!(branches.len(), 2);
    assert_eq!(branches[0].key, "10.96.0.10 . udp . 53");
    // The no-endpoint map's element carries a comment wrapper.
    let check = chain(&rs, "kube-proxy", "service-endpoints-check");
    let Target::Map { branches, .. } = &check.rules[0].target else {
        panic!()
    };
    assert_eq!(branches[0].key, "10.96.0.46 . tcp . 80");
    assert_eq!(*branches[0].target, Target::Goto("reject-chain".into()));
    let masq = chain(&rs, "kube-proxy", "masquerading");
    assert_eq!(
        masq.rules[0].text,
        "meta mark & 0x00004000 == 0x00000000 return"
    );
    assert_eq!(
        masq.rules[0].matches,
        vec![m(MatchKind::Mark {
            value: 0,
            mask: 0x4000
        })]
    );
}

#[test]
fn recorded_iptables_nft_ruleset() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/rules/docker-iptables-nft-recorded.json"
    );
    let rs = parse_json("ipt", &std::fs::read_to_string(path).unwrap());
    assert_eq!(rs.warnings.len(), 1);
    // iptables-nft wrote MARK --set-xmark 0x10/0xff as an xt target, and the raw
    // table's CT --notrack likewise.
    let mangle = chain(&rs, "mangle", "PREROUTING");
    assert!(matches!(&mangle.rules[0].target, Target::Unknown { name, .. } if name == "MARK"));
    // Natively translated parts are read as usual.
    let fwd = chain(&rs, "filter", "FORWARD");
    assert_eq!(fwd.base.as_ref().unwrap().policy, Verdict::Drop);
    assert_eq!(
        fwd.rules[2].matches,
        vec![
            m(MatchKind::InIface(Iface {
                name: "docker0".into(),
                prefix: false
            })),
            not(MatchKind::OutIface(Iface {
                name: "docker0".into(),
                prefix: false
            })),
        ]
    );
}

#[test]
fn recorded_native_ruleset() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/rules/native-firewall-recorded.json"
    );
    let rs = parse_json("native", &std::fs::read_to_string(path).unwrap());
    assert!(rs.warnings.is_empty(), "{:?}", rs.warnings);
    let families: Vec<Family> = rs.tables.iter().map(|t| t.family).collect();
    assert_eq!(
        families,
        [
            Family::Inet,
            Family::Ip,
            Family::Ip6,
            Family::Ip,
            Family::Bridge,
            Family::Netdev,
            Family::Arp
        ]
    );
    assert_eq!(
        rs.sets["inet fw blocked4"].members,
        vec![
            SetMember::Addr(pfx("192.0.2.0/24")),
            SetMember::Addr(pfx("198.51.100.7")),
            SetMember::Addr(pfx("203.0.113.10/31")),
            SetMember::Addr(pfx("203.0.113.12/30")),
            SetMember::Addr(pfx("203.0.113.16/30")),
            SetMember::Addr(pfx("203.0.113.20")),
        ]
    );
    let post = chain(&rs, "nat", "postrouting");
    assert_eq!(post.base.as_ref().unwrap().priority, 110);
    let dnat6 = &chain(&rs, "nat6", "prerouting").rules[0];
    assert_eq!(dnat6.target, dnat("fd00::10", 8443));
    assert_eq!(
        dnat6.text,
        "ip6 daddr 2001:db8::10 tcp dport 443 dnat to [fd00::10]:8443"
    );
    let redirect = &chain(&rs, "nat", "prerouting").rules[2];
    assert_eq!(
        redirect.target,
        Target::Redirect {
            ports: Some((3129, 3129)),
            flags: NatFlags::default()
        }
    );
}

#[test]
fn protocol_sets_and_address_type_sets() {
    let text = r#"{"nftables": [
      {"table": {"family": "inet", "name": "f", "handle": 1}},
      {"chain": {"family": "inet", "table": "f", "name": "c", "handle": 2}},
      {"rule": {"family": "inet", "table": "f", "chain": "c", "handle": 3, "expr": [
        {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": {"set": ["tcp", "udp"]}}},
        {"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}}, "right": {"set": ["local", "broadcast"]}}},
        {"accept": null}]}},
      {"rule": {"family": "inet", "table": "f", "chain": "c", "handle": 4, "expr": [
        {"match": {"op": "!=", "left": {"meta": {"key": "l4proto"}}, "right": {"set": ["tcp", "udp"]}}},
        {"drop": null}]}}
    ]}"#;
    let rs = parse_json("p.json", text);
    assert!(rs.warnings.is_empty(), "{:?}", rs.warnings);
    let c = chain(&rs, "f", "c");
    assert_eq!(
        c.rules[0].matches,
        vec![
            m(MatchKind::AnyProto(vec![Proto::Tcp, Proto::Udp])),
            m(MatchKind::AddrType {
                src: vec![],
                dst: vec![AddrType::Local, AddrType::Broadcast],
                limit_in: false,
                limit_out: false
            })
        ]
    );
    assert_eq!(
        c.rules[1].matches,
        vec![
            not(MatchKind::Proto(Proto::Tcp)),
            not(MatchKind::Proto(Proto::Udp))
        ]
    );
}

#[test]
fn a_ct_helper_statement_assigns_a_helper_and_the_path_goes_on() {
    let text = r#"table inet raw {
	ct helper ftp-standard {
		type "ftp" protocol tcp
		l3proto inet
	}

	chain prerouting {
		type filter hook prerouting priority raw; policy accept;
		tcp dport 21 ct helper set "ftp-standard"
	}
}
"#;
    // The object names the kernel's helper by its type, as conntrack's `helper=`
    // shows it; an object not declared leaves the name as written.
    let rs = parse_text("raw.nft", text);
    let rules = &chain(&rs, "raw", "prerouting").rules;
    assert_eq!(rules.len(), 1, "{rules:#?} {:?}", rs.warnings);
    assert!(rs.warnings.is_empty(), "{:?}", rs.warnings);
    let helper = |name: &str| Target::Helper { name: name.into() };
    assert_eq!(rules[0].target, helper("ftp"));
    let undeclared = text.replace("ct helper ftp-standard {", "ct helper other {");
    let rs = parse_text("raw.nft", &undeclared);
    let rules = &chain(&rs, "raw", "prerouting").rules;
    assert_eq!(rules[0].target, helper("ftp-standard"));
}

#[test]
fn a_ct_helper_object_names_its_type_in_json_too() {
    let doc = r#"{"nftables": [
        {"table": {"family": "inet", "name": "raw", "handle": 1}},
        {"ct helper": {"family": "inet", "name": "sip-5060", "table": "raw", "handle": 2,
            "type": "sip", "protocol": "udp", "l3proto": "inet"}},
        {"chain": {"family": "inet", "table": "raw", "name": "prerouting", "handle": 3,
            "type": "filter", "hook": "prerouting", "prio": -300, "policy": "accept"}},
        {"rule": {"family": "inet", "table": "raw", "chain": "prerouting", "handle": 4,
            "expr": [
                {"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": 5060}},
                {"ct helper": "sip-5060"}
            ]}}
    ]}"#;
    let rs = parse_json("raw.json", doc);
    let rules = &chain(&rs, "raw", "prerouting").rules;
    assert_eq!(rules.len(), 1, "{rules:#?} {:?}", rs.warnings);
    assert_eq!(rules[0].target, Target::Helper { name: "sip".into() });
}
