use std::net::IpAddr;

use super::*;
use crate::rules::Chain;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn table<'a>(rs: &'a RuleSet, name: &str) -> &'a Table {
    rs.tables
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no table {name}: {rs:?}"))
}

fn chain<'a>(rs: &'a RuleSet, t: &str, c: &str) -> &'a Chain {
    table(rs, t)
        .chain(c)
        .unwrap_or_else(|| panic!("no chain {t}/{c}"))
}

fn clean(name: &str, text: &str) -> RuleSet {
    let rs = parse(name, text);
    assert!(rs.warnings.is_empty(), "{name}: {:?}", rs.warnings);
    rs
}

fn kinds(r: &Rule) -> Vec<&MatchKind> {
    r.matches.iter().map(|m| &m.kind).collect()
}

const SAMPLES: &[(&str, &str)] = &[
    (
        "fault-forward-drop",
        include_str!("../../../samples/fault-forward-drop/iptables.txt"),
    ),
    (
        "fault-invalid-leak",
        include_str!("../../../samples/fault-invalid-leak/iptables.txt"),
    ),
    (
        "fault-wrong-source-udp",
        include_str!("../../../samples/fault-wrong-source-udp/iptables.txt"),
    ),
    (
        "masquerade",
        include_str!("../../../samples/masquerade/iptables.txt"),
    ),
    (
        "masquerade6",
        include_str!("../../../samples/masquerade6/iptables.txt"),
    ),
    (
        "masquerade6-ip6",
        include_str!("../../../samples/masquerade6/ip6tables.txt"),
    ),
    (
        "nodeport",
        include_str!("../../../samples/nodeport/iptables.txt"),
    ),
    (
        "port-collision",
        include_str!("../../../samples/port-collision/iptables.txt"),
    ),
    (
        "published-port",
        include_str!("../../../samples/published-port/iptables.txt"),
    ),
    (
        "snat-random-fully",
        include_str!("../../../samples/snat-random-fully/iptables.txt"),
    ),
];

#[test]
fn every_sample_parses_cleanly() {
    for (name, text) in SAMPLES {
        let rs = clean(name, text);
        assert_eq!(rs.tables.len(), 2, "{name}");
        for t in &rs.tables {
            assert_eq!(t.dialect, Dialect::IptablesSave);
            for c in &t.chains {
                for r in &c.rules {
                    assert!(
                        !r.matches
                            .iter()
                            .any(|m| matches!(m.kind, MatchKind::Unknown { .. })),
                        "{name}: {r:?}"
                    );
                    assert!(!matches!(r.target, Target::Unknown { .. }), "{name}: {r:?}");
                }
            }
        }
    }
}

#[test]
fn sample_nodeport() {
    let (_, text) = SAMPLES.iter().find(|s| s.0 == "nodeport").unwrap();
    let rs = clean("nodeport", text);
    let nat = table(&rs, "nat");
    assert_eq!(nat.family, Family::Ip);
    let pre = nat.chain("PREROUTING").unwrap();
    assert_eq!(
        pre.base,
        Some(Base {
            hook: Hook::Prerouting,
            priority: -100,
            kind: ChainType::Nat,
            policy: Verdict::Accept,
            counters: Some(Counters::default()),
        })
    );
    assert_eq!(
        nat.chain("POSTROUTING")
            .unwrap()
            .base
            .as_ref()
            .unwrap()
            .priority,
        100
    );
    assert!(nat.chain("KUBE-SVC-WEB").unwrap().base.is_none());

    let sep = &chain(&rs, "nat", "KUBE-SEP-WEB1").rules[0];
    assert_eq!(
        sep.target,
        Target::Dnat {
            to: NatTo {
                addrs: Some((ip("172.17.0.2"), ip("172.17.0.2"))),
                ports: Some((80, 80)),
            },
            flags: NatFlags::default(),
        }
    );
    assert_eq!(sep.comment.as_deref(), Some("default/web"));
    assert_eq!(
        kinds(sep),
        vec![&MatchKind::Proto(Proto::Tcp), &MatchKind::Comment]
    );
    assert_eq!(
        sep.text,
        "-A KUBE-SEP-WEB1 -p tcp -m comment --comment \"default/web\" -m tcp -j DNAT --to-destination 172.17.0.2:80"
    );

    let masq = &chain(&rs, "nat", "KUBE-MARK-MASQ").rules[0];
    assert_eq!(
        masq.target,
        Target::Mark(MarkOp {
            clear: 0x4000,
            xor: 0x4000
        })
    );
    assert_eq!(
        chain(&rs, "nat", "KUBE-POSTROUTING").rules[1].target,
        Target::Mark(MarkOp {
            clear: 0,
            xor: 0x4000
        })
    );
    let ret = &chain(&rs, "nat", "KUBE-POSTROUTING").rules[0];
    assert_eq!(
        ret.matches,
        vec![Match {
            negated: true,
            kind: MatchKind::Mark {
                value: 0x4000,
                mask: 0x4000
            }
        }]
    );
    assert_eq!(
        chain(&rs, "nat", "KUBE-POSTROUTING").rules[2].target,
        Target::Masquerade {
            ports: None,
            flags: NatFlags {
                random_fully: true,
                ..NatFlags::default()
            }
        }
    );
    let svc = &chain(&rs, "nat", "KUBE-SERVICES").rules[0];
    assert!(svc.matches.contains(&Match {
        negated: false,
        kind: MatchKind::AddrType {
            src: vec![],
            dst: vec![AddrType::Local],
            limit_in: false,
            limit_out: false
        }
    }));
    assert_eq!(svc.target, Target::Jump("KUBE-NODEPORTS".into()));
    let np = &chain(&rs, "nat", "KUBE-NODEPORTS").rules[0];
    assert!(np
        .matches
        .iter()
        .any(|m| m.kind == MatchKind::Dport(Ports(vec![(30080, 30080)]))));

    let filter = table(&rs, "filter");
    let fwd = filter.chain("FORWARD").unwrap();
    assert_eq!(
        fwd.base.as_ref().map(|b| (b.hook, b.priority, b.kind)),
        Some((Hook::Forward, 0, ChainType::Filter))
    );
    assert_eq!(
        filter.chain("KUBE-FORWARD").unwrap().rules[0].matches,
        vec![Match {
            negated: false,
            kind: MatchKind::CtState(vec![CtState::Invalid])
        }]
    );
}

#[test]
fn sample_fault_forward_drop() {
    let (_, text) = SAMPLES
        .iter()
        .find(|s| s.0 == "fault-forward-drop")
        .unwrap();
    let rs = clean("fault-forward-drop", text);
    let fwd = chain(&rs, "filter", "FORWARD");
    assert_eq!(fwd.base.as_ref().unwrap().policy, Verdict::Drop);
    assert_eq!(fwd.line, 3);
    let drop = &fwd.rules[0];
    assert_eq!(drop.line, 9);
    assert_eq!(drop.text, "-A FORWARD -p tcp -m tcp --dport 9090 -j DROP");
    assert_eq!(drop.target, Target::Drop);
    assert_eq!(
        kinds(drop),
        vec![
            &MatchKind::Proto(Proto::Tcp),
            &MatchKind::Dport(Ports(vec![(9090, 9090)]))
        ]
    );
    let out = &fwd.rules[5];
    assert_eq!(
        out.matches,
        vec![
            Match {
                negated: false,
                kind: MatchKind::InIface(Iface {
                    name: "docker0".into(),
                    prefix: false
                })
            },
            Match {
                negated: true,
                kind: MatchKind::OutIface(Iface {
                    name: "docker0".into(),
                    prefix: false
                })
            },
        ]
    );
    let pre = chain(&rs, "nat", "PREROUTING");
    assert_eq!(
        pre.base.as_ref().unwrap().counters,
        Some(Counters {
            packets: 4,
            bytes: 240
        })
    );
    let out = &chain(&rs, "nat", "OUTPUT").rules[0];
    assert_eq!(
        out.matches[0],
        Match {
            negated: true,
            kind: MatchKind::Dst(Prefix {
                addr: ip("127.0.0.0"),
                len: 8
            })
        }
    );
}

#[test]
fn sample_masquerade6_is_ipv6() {
    let (_, text) = SAMPLES.iter().find(|s| s.0 == "masquerade6-ip6").unwrap();
    let rs = clean("ip6tables.txt", text);
    // The nat table names IPv6 prefixes; the filter table names none and takes the
    // family of the input.
    assert!(rs.tables.iter().all(|t| t.family == Family::Ip6));
    let post = &chain(&rs, "nat", "POSTROUTING").rules[0];
    assert_eq!(
        post.matches[0].kind,
        MatchKind::Src(Prefix {
            addr: ip("fd00:172:17::"),
            len: 64
        })
    );
}

#[test]
fn sample_snat_port_range() {
    let (_, text) = SAMPLES.iter().find(|s| s.0 == "snat-random-fully").unwrap();
    let rs = clean("snat", text);
    assert_eq!(
        chain(&rs, "nat", "POSTROUTING").rules[0].target,
        Target::Snat {
            to: NatTo {
                addrs: Some((ip("203.0.113.1"), ip("203.0.113.1"))),
                ports: Some((20000, 20003)),
            },
            flags: NatFlags {
                random_fully: true,
                ..NatFlags::default()
            }
        }
    );
}

const KUBE: &str = r#"# Generated by iptables-save v1.8.9 (nf_tables) on Mon Nov 30 06:00:00 2026
*nat
:PREROUTING ACCEPT [12:720]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [30:1800]
:POSTROUTING ACCEPT [30:1800]
:KUBE-MARK-MASQ - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-ABC - [0:0]
:KUBE-SEP-1 - [0:0]
:KUBE-SEP-2 - [0:0]
:KUBE-SEP-3 - [0:0]
[12:720] -A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
[0:0] -A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
[3:180] -A KUBE-SERVICES -d 10.96.0.10/32 -p udp -m comment --comment "kube-system/kube-dns:dns cluster IP" -m udp --dport 53 -j KUBE-SVC-ABC
[1:60] -A KUBE-SVC-ABC -m comment --comment "kube-system/kube-dns:dns -> 10.244.0.2:53" -m statistic --mode random --probability 0.33333333349 -j KUBE-SEP-1
[1:60] -A KUBE-SVC-ABC -m comment --comment "kube-system/kube-dns:dns -> 10.244.0.3:53" -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-2
[1:60] -A KUBE-SVC-ABC -m comment --comment "kube-system/kube-dns:dns -> 10.244.0.4:53" -j KUBE-SEP-3
[0:0] -A KUBE-SEP-1 -s 10.244.0.2/32 -m comment --comment "kube-system/kube-dns:dns" -j KUBE-MARK-MASQ
[1:60] -A KUBE-SEP-1 -p udp -m comment --comment "kube-system/kube-dns:dns" -m udp -j DNAT --to-destination 10.244.0.2:53
[1:60] -A KUBE-SEP-2 -p udp -m comment --comment "kube-system/kube-dns:dns" -m udp -j DNAT --to-destination 10.244.0.3:53
[1:60] -A KUBE-SEP-3 -p udp -m comment --comment "kube-system/kube-dns:dns" -m udp -j DNAT --to-destination 10.244.0.4:53
COMMIT
"#;

#[test]
fn kube_proxy_with_counters() {
    let rs = clean("kube", KUBE);
    let svc = chain(&rs, "nat", "KUBE-SVC-ABC");
    assert_eq!(svc.rules.len(), 3);
    assert_eq!(
        svc.rules[0].matches[1].kind,
        MatchKind::Random {
            probability: 0.33333333349
        }
    );
    assert_eq!(svc.rules[0].target, Target::Jump("KUBE-SEP-1".into()));
    assert_eq!(
        svc.rules[0].counters,
        Some(Counters {
            packets: 1,
            bytes: 60
        })
    );
    assert_eq!(svc.rules[0].line, 16);
    assert!(svc.rules[0].text.starts_with("-A KUBE-SVC-ABC -m comment"));
    assert_eq!(
        svc.rules[0].comment.as_deref(),
        Some("kube-system/kube-dns:dns -> 10.244.0.2:53")
    );
    assert_eq!(
        svc.rules[2].matches,
        vec![Match {
            negated: false,
            kind: MatchKind::Comment
        }]
    );
    assert_eq!(
        chain(&rs, "nat", "KUBE-MARK-MASQ").rules[0].target,
        Target::Mark(MarkOp {
            clear: 0x4000,
            xor: 0x4000
        })
    );
    assert_eq!(
        chain(&rs, "nat", "OUTPUT").base.as_ref().unwrap().counters,
        Some(Counters {
            packets: 30,
            bytes: 1800
        })
    );
}

const DOCKER: &str = r#"# Warning: iptables-legacy tables present, use iptables-legacy-save to see them
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-ISOLATION-STAGE-1 - [0:0]
:DOCKER-ISOLATION-STAGE-2 - [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-ISOLATION-STAGE-1
-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT
-A DOCKER-ISOLATION-STAGE-1 -i br-+ ! -o br-+ -j DOCKER-ISOLATION-STAGE-2
-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP
-A DOCKER-USER -s 192.168.1.0/255.255.255.0 -p tcp -m multiport --dports 22,8000:8080 -j REJECT --reject-with icmp-port-unreachable
-A DOCKER-USER -m conntrack --ctstate NEW --ctorigdst 198.51.100.7 --ctorigdstport 8080 --ctdir ORIGINAL -j LOG --log-prefix "new: "
-A DOCKER-USER -p icmp -m icmp --icmp-type echo-request -j ACCEPT
-A DOCKER-USER -p icmp -m icmp --icmp-type 3/4 -j ACCEPT
-A DOCKER-USER -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu
-A DOCKER-USER -p tcp -m tcp --sport 1024: --dport :1023 ! --syn -j DROP
-A DOCKER-USER -m state --state INVALID -j DROP
-A DOCKER-USER -m statistic --mode nth --every 4 --packet 1 -j DROP
-A DOCKER-USER -m limit --limit 5/sec --limit-burst 10 -j RETURN
-A DOCKER-USER -m recent --set --name ssh --rsource -p tcp -m tcp --dport 22 -j RETURN
-A DOCKER-USER -j RETURN
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -o eth0 -m addrtype ! --src-type LOCAL --limit-iface-out -j MASQUERADE --to-ports 20000-30000 --random
-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80
-A DOCKER -p tcp -m tcp --dport 8081 -j DNAT --to-destination 172.17.0.3-172.17.0.4 --persistent
-A DOCKER -p tcp -m tcp --dport 8082 -j REDIRECT --to-ports 3128
COMMIT
*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -i lo -j NOTRACK
-A PREROUTING -p udp -m udp --dport 53 -j CT --notrack
-A PREROUTING -p tcp -m tcp --dport 21 -j CT --helper ftp
-A OUTPUT -j CT --zone 5
COMMIT
*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -m connmark --mark 0x1/0xff -j CONNMARK --restore-mark --nfmask 0xff --ctmask 0xff
-A PREROUTING -j CONNMARK --set-xmark 0x2/0xff
-A OUTPUT -j MARK --set-mark 0x10/0xf0
-A OUTPUT -j MARK --and-mark 0xff
-A OUTPUT -j MARK --xor-mark 0x3
COMMIT
"#;

#[test]
fn docker_rule_set() {
    let rs = clean("docker", DOCKER);
    assert_eq!(rs.tables.len(), 4);
    let user = chain(&rs, "filter", "DOCKER-USER");
    let r = &user.rules[0];
    assert_eq!(
        kinds(r),
        vec![
            &MatchKind::Src(Prefix {
                addr: ip("192.168.1.0"),
                len: 24
            }),
            &MatchKind::Proto(Proto::Tcp),
            &MatchKind::Dport(Ports(vec![(22, 22), (8000, 8080)])),
        ]
    );
    assert_eq!(
        r.target,
        Target::Reject {
            with: Some("icmp-port-unreachable".into())
        }
    );
    let r = &user.rules[1];
    assert_eq!(
        r.matches,
        vec![
            Match {
                negated: false,
                kind: MatchKind::CtState(vec![CtState::New])
            },
            Match {
                negated: false,
                kind: MatchKind::CtOrigDst(Prefix {
                    addr: ip("198.51.100.7"),
                    len: 32
                })
            },
            Match {
                negated: false,
                kind: MatchKind::CtOrigDstPort(Ports(vec![(8080, 8080)]))
            },
            Match {
                negated: true,
                kind: MatchKind::CtDirReply
            },
        ]
    );
    assert_eq!(r.target, Target::Log);
    assert_eq!(
        user.rules[2].matches[1].kind,
        MatchKind::IcmpType {
            icmp_type: 8,
            code: None
        }
    );
    assert_eq!(
        user.rules[3].matches[1].kind,
        MatchKind::IcmpType {
            icmp_type: 3,
            code: Some(4)
        }
    );
    assert_eq!(
        user.rules[4].matches[1].kind,
        MatchKind::TcpFlags {
            mask: 0x06,
            comp: 0x02
        }
    );
    assert_eq!(
        user.rules[4].target,
        Target::Continue {
            name: "TCPMSS".into()
        }
    );
    assert_eq!(
        user.rules[5].matches[1..],
        [
            Match {
                negated: false,
                kind: MatchKind::Sport(Ports(vec![(1024, 65535)]))
            },
            Match {
                negated: false,
                kind: MatchKind::Dport(Ports(vec![(0, 1023)]))
            },
            Match {
                negated: true,
                kind: MatchKind::TcpFlags {
                    mask: 0x17,
                    comp: 0x02
                }
            },
        ]
    );
    assert_eq!(
        user.rules[6].matches[0].kind,
        MatchKind::CtState(vec![CtState::Invalid])
    );
    assert_eq!(
        user.rules[7].matches[0].kind,
        MatchKind::Nth {
            every: 4,
            packet: 1
        }
    );
    assert_eq!(
        user.rules[8].matches,
        vec![Match {
            negated: false,
            kind: MatchKind::Unknown {
                name: "limit".into(),
                text: "-m limit --limit 5/sec --limit-burst 10".into()
            }
        }]
    );
    assert_eq!(
        user.rules[9].matches[0].kind,
        MatchKind::Unknown {
            name: "recent".into(),
            text: "-m recent --set --name ssh --rsource".into()
        }
    );
    assert_eq!(
        user.rules[9].matches[2].kind,
        MatchKind::Dport(Ports(vec![(22, 22)]))
    );
    let iso = &chain(&rs, "filter", "DOCKER-ISOLATION-STAGE-1").rules[0];
    assert_eq!(
        iso.matches[1],
        Match {
            negated: true,
            kind: MatchKind::OutIface(Iface {
                name: "br-".into(),
                prefix: true
            })
        }
    );

    let post = &chain(&rs, "nat", "POSTROUTING").rules[0];
    assert_eq!(
        post.matches[1],
        Match {
            negated: true,
            kind: MatchKind::AddrType {
                src: vec![AddrType::Local],
                dst: vec![],
                limit_in: false,
                limit_out: true
            }
        }
    );
    assert_eq!(
        post.target,
        Target::Masquerade {
            ports: Some((20000, 30000)),
            flags: NatFlags {
                random: true,
                ..NatFlags::default()
            }
        }
    );
    let docker = chain(&rs, "nat", "DOCKER");
    assert_eq!(
        docker.rules[1].target,
        Target::Dnat {
            to: NatTo {
                addrs: Some((ip("172.17.0.3"), ip("172.17.0.4"))),
                ports: None
            },
            flags: NatFlags {
                persistent: true,
                ..NatFlags::default()
            }
        }
    );
    assert_eq!(
        docker.rules[2].target,
        Target::Redirect {
            ports: Some((3128, 3128)),
            flags: NatFlags::default()
        }
    );

    let raw = table(&rs, "raw");
    assert_eq!(
        raw.chain("PREROUTING")
            .unwrap()
            .base
            .as_ref()
            .unwrap()
            .priority,
        -300
    );
    assert_eq!(
        raw.chain("PREROUTING").unwrap().rules[0].target,
        Target::Notrack
    );
    assert_eq!(
        raw.chain("PREROUTING").unwrap().rules[1].target,
        Target::Notrack
    );
    assert_eq!(
        raw.chain("PREROUTING").unwrap().rules[2].target,
        Target::Helper { name: "ftp".into() }
    );
    assert_eq!(
        raw.chain("OUTPUT").unwrap().rules[0].target,
        Target::Continue { name: "CT".into() }
    );

    let mangle = table(&rs, "mangle");
    assert_eq!(
        mangle
            .chain("OUTPUT")
            .unwrap()
            .base
            .as_ref()
            .map(|b| (b.priority, b.kind)),
        Some((-150, ChainType::Route))
    );
    assert_eq!(
        mangle
            .chain("PREROUTING")
            .unwrap()
            .base
            .as_ref()
            .map(|b| b.kind),
        Some(ChainType::Filter)
    );
    let pre = &mangle.chain("PREROUTING").unwrap().rules;
    assert_eq!(
        pre[0].matches[0].kind,
        MatchKind::ConnMark {
            value: 1,
            mask: 0xff
        }
    );
    assert_eq!(
        pre[0].target,
        Target::CopyMark {
            restore: true,
            nfmask: 0xff,
            ctmask: 0xff
        }
    );
    assert_eq!(
        pre[1].target,
        Target::ConnMark(MarkOp {
            clear: 0xff,
            xor: 2
        })
    );
    let out = &mangle.chain("OUTPUT").unwrap().rules;
    // --set-mark 0x10/0xf0: zero 0xf0, then OR 0x10.
    assert_eq!(
        out[0].target,
        Target::Mark(MarkOp {
            clear: 0xf0,
            xor: 0x10
        })
    );
    let Target::Mark(and) = out[1].target else {
        panic!("{:?}", out[1].target)
    };
    assert_eq!(and.apply(0x1234), 0x34);
    assert_eq!(out[2].target, Target::Mark(MarkOp { clear: 0, xor: 3 }));
}

const CALICO: &str = r#"*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:cali-POSTROUTING - [0:0]
:cali-nat-outgoing - [0:0]
-A POSTROUTING -m comment --comment "cali:O3lYWMrLQYEMJtB5" -j cali-POSTROUTING
-A cali-POSTROUTING -m comment --comment "cali:nYKhEzDlr11Jccal" -j cali-nat-outgoing
-A cali-nat-outgoing -m comment --comment "cali:flqWnvo8yq4ULQLa" -m set --match-set cali40masq-ipam-pools src -m set ! --match-set cali40all-ipam-pools dst -j MASQUERADE --random-fully
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:cali-FORWARD - [0:0]
:cali-from-wl-dispatch - [0:0]
:cali-to-wl-dispatch - [0:0]
-A FORWARD -m comment --comment "cali:wUHhoiAYhphO9Mso" -j cali-FORWARD
-A cali-FORWARD -m comment --comment "cali:vjrMJCRpqwy5oRoX" -j MARK --set-xmark 0x0/0xe0000
-A cali-FORWARD -m comment --comment "cali:A_sPAO0mcxbT9mOV" -m mark --mark 0x0/0x10000 -j cali-from-hep-forward
-A cali-FORWARD -i cali+ -m comment --comment "cali:8ZoYfO5HKXWbB3pk" -j cali-from-wl-dispatch
-A cali-FORWARD -o cali+ -m comment --comment "cali:jdEuaPBe14V2hutn" -j cali-to-wl-dispatch
-A cali-FORWARD -m comment --comment "cali:MH9kMp5aNICL-Olv" -m comment --comment "Policy explicitly accepted packet." -m mark --mark 0x10000/0x10000 -j ACCEPT
-A cali-from-wl-dispatch -i cali12d4a061371 -m comment --comment "cali:RoFqlFzYEXLYcH_A" -g cali-fw-cali12d4a061371
-A cali-from-wl-dispatch -m comment --comment "cali:pQWJHnvHJ7xuRs5Y" -m comment --comment "Unknown interface" -j DROP
COMMIT
"#;

#[test]
fn calico_rule_set() {
    let rs = clean("calico", CALICO);
    let out = &chain(&rs, "nat", "cali-nat-outgoing").rules[0];
    assert_eq!(
        out.matches[1..],
        [
            Match {
                negated: false,
                kind: MatchKind::Set {
                    name: "cali40masq-ipam-pools".into(),
                    dims: vec![SetDim::Src]
                }
            },
            Match {
                negated: true,
                kind: MatchKind::Set {
                    name: "cali40all-ipam-pools".into(),
                    dims: vec![SetDim::Dst]
                }
            },
        ]
    );
    let fwd = chain(&rs, "filter", "cali-FORWARD");
    assert_eq!(
        fwd.rules[0].target,
        Target::Mark(MarkOp {
            clear: 0xe0000,
            xor: 0
        })
    );
    let acc = &fwd.rules[4];
    assert_eq!(acc.comment.as_deref(), Some("cali:MH9kMp5aNICL-Olv"));
    assert_eq!(
        acc.matches[2].kind,
        MatchKind::Mark {
            value: 0x10000,
            mask: 0x10000
        }
    );
    assert_eq!(
        chain(&rs, "filter", "cali-from-wl-dispatch").rules[0].target,
        Target::Goto("cali-fw-cali12d4a061371".into())
    );
    assert_eq!(
        fwd.rules[2].matches[0].kind,
        MatchKind::InIface(Iface {
            name: "cali".into(),
            prefix: true
        })
    );
}

const IP6: &str = r#"# Generated by ip6tables-save v1.8.9 (legacy) on Mon Nov 30 06:00:00 2026
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination [fd00:172:17::2]:80
-A DOCKER -d 2001:db8::1 -p udp -m udp --dport 53 -j DNAT --to-destination [2001:db8::10]-[2001:db8::20]:5353-5354
-A DOCKER -p tcp -m tcp --dport 8443 -j DNAT --to-destination 2001:db8::30
-A POSTROUTING -s fd00:172:17::/64 -j SNAT --to-source 2001:db8::1
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -p ipv6-icmp -m icmp6 --icmpv6-type neighbour-solicitation -j ACCEPT
-A FORWARD -i docker0 -j ACCEPT
COMMIT
"#;

#[test]
fn ip6tables_save() {
    let rs = clean("ip6", IP6);
    assert!(rs.tables.iter().all(|t| t.family == Family::Ip6));
    let docker = chain(&rs, "nat", "DOCKER");
    assert_eq!(
        docker.rules[0].target,
        Target::Dnat {
            to: NatTo {
                addrs: Some((ip("fd00:172:17::2"), ip("fd00:172:17::2"))),
                ports: Some((80, 80))
            },
            flags: NatFlags::default()
        }
    );
    assert_eq!(
        docker.rules[1].matches[0].kind,
        MatchKind::Dst(Prefix {
            addr: ip("2001:db8::1"),
            len: 128
        })
    );
    assert_eq!(
        docker.rules[1].target,
        Target::Dnat {
            to: NatTo {
                addrs: Some((ip("2001:db8::10"), ip("2001:db8::20"))),
                ports: Some((5353, 5354))
            },
            flags: NatFlags::default()
        }
    );
    assert_eq!(
        docker.rules[2].target,
        Target::Dnat {
            to: NatTo {
                addrs: Some((ip("2001:db8::30"), ip("2001:db8::30"))),
                ports: None
            },
            flags: NatFlags::default()
        }
    );
    let input = &chain(&rs, "filter", "INPUT").rules[0];
    assert_eq!(
        kinds(input),
        vec![
            &MatchKind::Proto(Proto::Icmpv6),
            &MatchKind::IcmpType {
                icmp_type: 135,
                code: None
            }
        ]
    );
}

#[test]
fn iptables_s_filter_and_nat() {
    let filter = "-P INPUT ACCEPT\n-P FORWARD DROP\n-P OUTPUT ACCEPT\n-N DOCKER-USER\n-A FORWARD -j DOCKER-USER\n-A DOCKER-USER -s 10.0.0.0/8 -j RETURN\n";
    let rs = clean("S", filter);
    assert_eq!(rs.tables.len(), 1);
    let t = &rs.tables[0];
    assert_eq!((t.name.as_str(), t.dialect), ("filter", Dialect::IptablesS));
    let fwd = t.chain("FORWARD").unwrap();
    assert_eq!(
        fwd.base.as_ref().map(|b| (b.hook, b.priority, b.policy)),
        Some((Hook::Forward, 0, Verdict::Drop))
    );
    assert_eq!(fwd.rules[0].line, 5);
    assert!(t.chain("DOCKER-USER").unwrap().base.is_none());

    let nat = "-P PREROUTING ACCEPT\n-P POSTROUTING ACCEPT\n-N DOCKER\n-A DOCKER -p tcp -m tcp --dport 80 -j DNAT --to-destination 172.17.0.2\n";
    let rs = clean("S", nat);
    let t = &rs.tables[0];
    assert_eq!(t.name, "nat");
    assert_eq!(
        t.chain("POSTROUTING")
            .unwrap()
            .base
            .as_ref()
            .map(|b| (b.priority, b.kind)),
        Some((100, ChainType::Nat))
    );
    // The set of `-P` lines names the table; without them, the rules do.
    for (text, name) in [
        (
            "-P PREROUTING ACCEPT\n-P INPUT ACCEPT\n-P FORWARD ACCEPT\n-P OUTPUT ACCEPT\n-P POSTROUTING ACCEPT\n-A PREROUTING -j MARK --set-xmark 0x1/0xffffffff\n",
            "mangle",
        ),
        (
            "-P PREROUTING ACCEPT\n-P OUTPUT ACCEPT\n-A PREROUTING -i lo -j CT --notrack\n",
            "raw",
        ),
        ("-P PREROUTING ACCEPT\n-P INPUT ACCEPT\n-P OUTPUT ACCEPT\n-P POSTROUTING ACCEPT\n", "nat"),
        ("-N KUBE-SERVICES\n-A KUBE-SERVICES -j KUBE-NODEPORTS\n", "filter"),
        ("-A POSTROUTING -o eth0 -j KUBE-POSTROUTING\n", "nat"),
        ("-A PREROUTING -j NOTRACK\n", "raw"),
    ] {
        let rs = clean("S", text);
        assert_eq!(rs.tables[0].name, name, "{text}");
    }
    let rs = clean("S", "-P PREROUTING ACCEPT\n-P INPUT ACCEPT\n-P FORWARD ACCEPT\n-P OUTPUT ACCEPT\n-P POSTROUTING ACCEPT\n");
    assert_eq!(
        rs.tables[0]
            .chain("OUTPUT")
            .unwrap()
            .base
            .as_ref()
            .map(|b| (b.priority, b.kind)),
        Some((-150, ChainType::Route))
    );
    // `iptables -S -v` counters.
    let rs = clean(
        "Sv",
        "-P INPUT DROP -c 5 300\n-A INPUT -i lo -c 2 100 -j ACCEPT\n",
    );
    let input = rs.tables[0].chain("INPUT").unwrap();
    assert_eq!(
        input.base.as_ref().unwrap().counters,
        Some(Counters {
            packets: 5,
            bytes: 300
        })
    );
    assert_eq!(
        input.rules[0].counters,
        Some(Counters {
            packets: 2,
            bytes: 100
        })
    );
}

#[test]
fn quoting_and_old_negation() {
    let text = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -s ! 10.0.0.1 -p ! udp -m comment --comment \"say \\\"hi\\\" -j DROP\" -j ACCEPT\n-A INPUT -p 47 -p tcp --dport ! 22 -j DROP\n-A INPUT -p all -m multiport --ports 80,443 -j DROP\nCOMMIT\n";
    let rs = clean("q", text);
    let rules = &chain(&rs, "filter", "INPUT").rules;
    assert_eq!(rules[0].comment.as_deref(), Some("say \"hi\" -j DROP"));
    assert_eq!(rules[0].target, Target::Accept);
    assert_eq!(
        rules[0].matches[..2],
        [
            Match {
                negated: true,
                kind: MatchKind::Src(Prefix {
                    addr: ip("10.0.0.1"),
                    len: 32
                })
            },
            Match {
                negated: true,
                kind: MatchKind::Proto(Proto::Udp)
            },
        ]
    );
    assert_eq!(rules[1].matches[0].kind, MatchKind::Proto(Proto::Gre));
    assert_eq!(
        rules[1].matches[2],
        Match {
            negated: true,
            kind: MatchKind::Dport(Ports(vec![(22, 22)]))
        }
    );
    // `-p all` is no match; `--ports` holds for either side's port.
    assert_eq!(
        kinds(&rules[2]),
        vec![&MatchKind::EitherPort(Ports(vec![(80, 80), (443, 443)]))]
    );
}

#[test]
fn garbage_between_good_lines() {
    let text = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -s 10.0.0.1/32 -j DROP\nthis is not a rule\n-A INPUT -s 10.0.0.2 -j DROP junk\n-A INPUT -m comment --comment \"unterminated -j DROP\n-A INPUT -s 10.0.0.3/32 -j ACCEPT\nCOMMIT\n";
    let rs = parse("g", text);
    let rules = &chain(&rs, "filter", "INPUT").rules;
    assert_eq!(rules.iter().map(|r| r.line).collect::<Vec<_>>(), vec![3, 7]);
    assert_eq!(rules[1].target, Target::Accept);
    let locs: Vec<_> = rs
        .warnings
        .iter()
        .map(|w| (w.location.clone(), w.message.starts_with("expected")))
        .collect();
    assert_eq!(
        locs,
        vec![
            (Location::Line { line: 4, column: 1 }, true),
            (
                Location::Line {
                    line: 5,
                    column: 30
                },
                true
            ),
            (
                Location::Line {
                    line: 6,
                    column: 31
                },
                true
            ),
        ]
    );
    assert!(rs.warnings.iter().all(|w| w.source == "g"));
}

#[test]
fn truncated_input_keeps_what_was_read() {
    let text = "*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.0.0.1:8080\n-A PREROUTING -p tcp -m tcp --dport 81 -j DNAT --to-desti";
    let rs = parse("t", text);
    let rules = &chain(&rs, "nat", "PREROUTING").rules;
    assert_eq!(rules.len(), 2);
    assert!(matches!(rules[0].target, Target::Dnat { .. }));
    assert!(matches!(rules[1].target, Target::Unknown { .. }));
    assert_eq!(rs.warnings.len(), 1);
    assert!(rs.warnings[0].message.contains("COMMIT"));
}

#[test]
fn hostile_inputs_do_not_panic() {
    for text in [
        "",
        "\n\n",
        "*",
        ":",
        "[",
        "[1:2]",
        "-A",
        "-A X !",
        "-A X -m",
        "-A X -j",
        "-A X -s",
        "-A X -s 1.2.3.4/33",
        "-A X -s 1.2.3.4/255.0.255.0",
        "-A X -j DNAT --to-destination [::1",
        "-A X -j DNAT --to-destination 1.2.3.4:9-1",
        "-A X -j DNAT --to-destination ]:",
        "-A X -j MARK --set-xmark /",
        "-A X -m tcp --dport 99999",
        "-A X -m statistic --mode random --probability NaN",
        "-A X -m icmp --icmp-type 300",
        "-A X \\",
        "-A X '",
        "*nat\n-I X 5 -j ACCEPT",
        "é-A\u{0}X ! ! -s",
        "-P X MAYBE",
        ":X ACCEPT [1:x]",
        "COMMIT",
        "-A X -c 1",
    ] {
        let _ = parse("h", text);
        // The fuzz target's property: good tables around the input stay intact.
        const GOOD: &str =
            "*filter\n:FORWARD DROP [0:0]\n-A FORWARD -s 10.0.0.1/32 -j ACCEPT\nCOMMIT\n";
        let all = format!("{GOOD}{text}\n{GOOD}");
        let rs = parse("h", &all);
        let last_first = 4 + text.split('\n').count() as u64 + 1;
        for (t, first_line) in [(rs.tables.first(), 1), (rs.tables.last(), last_first)] {
            let fwd = t.and_then(|t| t.chain("FORWARD")).expect("good table kept");
            assert_eq!(fwd.rules.len(), 1, "{text:?}");
            assert_eq!(fwd.rules[0].line, first_line + 2, "{text:?}");
            assert_eq!(fwd.base.as_ref().unwrap().policy, Verdict::Drop);
        }
    }
}

/// Real rule sets from public bug reports and documentation: every line is read (a
/// truncated excerpt may only miss its COMMIT), and what natcheck cannot decide is
/// kept as unknown matches, counted here.
#[test]
fn real_rule_sets() {
    const REAL: &[(&str, &str, usize, usize)] = &[
        // (file, text, rules, unknown matches)
        (
            "calico-felix",
            include_str!("../../../tests/data/rules/calico-felix.txt"),
            4,
            0,
        ),
        (
            "cilium-filter",
            include_str!("../../../tests/data/rules/cilium-filter.txt"),
            13,
            0,
        ),
        (
            "docker-nftables-save",
            include_str!("../../../tests/data/rules/docker-nftables-save.txt"),
            19,
            0,
        ),
        (
            "docker-usernet-portmap-filter-S",
            include_str!("../../../tests/data/rules/docker-usernet-portmap-filter-S.txt"),
            16,
            0,
        ),
        (
            "docker-usernet-portmap-nat-S",
            include_str!("../../../tests/data/rules/docker-usernet-portmap-nat-S.txt"),
            7,
            0,
        ),
        (
            "firewalld-ip6tables-save",
            include_str!("../../../tests/data/rules/firewalld-ip6tables-save.txt"),
            7,
            1,
        ),
        (
            "flannel-kube-proxy-nat",
            include_str!("../../../tests/data/rules/flannel-kube-proxy-nat.txt"),
            14,
            0,
        ),
        (
            "kube-proxy-iptables-counters",
            include_str!("../../../tests/data/rules/kube-proxy-iptables-counters.txt"),
            9,
            0,
        ),
        (
            "kube-proxy-iptables-recent",
            include_str!("../../../tests/data/rules/kube-proxy-iptables-recent.txt"),
            8,
            1,
        ),
        (
            "kube-proxy-ipvs",
            include_str!("../../../tests/data/rules/kube-proxy-ipvs.txt"),
            4,
            0,
        ),
        (
            "nixos-docker",
            include_str!("../../../tests/data/rules/nixos-docker.txt"),
            14,
            1,
        ),
    ];
    for &(name, text, n_rules, n_unknown) in REAL {
        assert!(text.starts_with("# https://"), "{name}: source line");
        let rs = parse(name, text);
        for w in &rs.warnings {
            assert!(w.message.contains("COMMIT"), "{name}: {w}");
        }
        let rules: Vec<&Rule> = rs
            .tables
            .iter()
            .flat_map(|t| t.chains.iter().flat_map(|c| c.rules.iter()))
            .collect();
        assert_eq!(rules.len(), n_rules, "{name}");
        let unknown = rules
            .iter()
            .flat_map(|r| r.matches.iter())
            .filter(|m| matches!(m.kind, MatchKind::Unknown { .. }))
            .count();
        assert_eq!(unknown, n_unknown, "{name}");
        for r in &rules {
            assert!(!matches!(r.target, Target::Unknown { .. }), "{name}: {r:?}");
            assert!(r.line > 1 && !r.text.starts_with('['), "{name}: {r:?}");
        }
    }
}

#[test]
fn real_rule_sets_spot_checks() {
    let rs = parse(
        "counters",
        include_str!("../../../tests/data/rules/kube-proxy-iptables-counters.txt"),
    );
    let t = &rs.tables[0];
    assert_eq!((t.name.as_str(), t.dialect), ("nat", Dialect::IptablesS));
    let r = &t.chain("KUBE-SEP-EHRALZ2IVFLIEMXK").unwrap().rules[0];
    assert_eq!(
        r.counters,
        Some(Counters {
            packets: 102,
            bytes: 8638
        })
    );
    assert!(r.text.starts_with("-A KUBE-SEP-EHRALZ2IVFLIEMXK -p udp"));

    let rs = parse(
        "firewalld",
        include_str!("../../../tests/data/rules/firewalld-ip6tables-save.txt"),
    );
    assert!(rs.tables.iter().all(|t| t.family == Family::Ip6));
    assert_eq!(
        table(&rs, "security")
            .chain("INPUT")
            .unwrap()
            .base
            .as_ref()
            .unwrap()
            .priority,
        50
    );

    let rs = parse(
        "ipvs",
        include_str!("../../../tests/data/rules/kube-proxy-ipvs.txt"),
    );
    let r = &rs.tables[0].chain("KUBE-SERVICES").unwrap().rules[1];
    assert_eq!(
        r.matches[1].kind,
        MatchKind::Set {
            name: "KUBE-CLUSTER-IP".into(),
            dims: vec![SetDim::Dst, SetDim::Dst]
        }
    );
}

#[test]
fn long_lines_and_many_rules_stay_linear() {
    let mut text = String::from("*filter\n:INPUT ACCEPT [0:0]\n");
    for i in 0..20_000 {
        text.push_str(&format!(
            "-A INPUT -s 10.{}.{}.0/24 -j ACCEPT\n",
            i / 256 % 256,
            i % 256
        ));
    }
    text.push_str("-A INPUT");
    for _ in 0..20_000 {
        text.push_str(" -m comment --comment x");
    }
    text.push_str("\nCOMMIT\n");
    let rs = clean("big", &text);
    assert_eq!(chain(&rs, "filter", "INPUT").rules.len(), 20_001);
}

#[test]
fn addrtype_lists_and_connmark_save_restore() {
    let text = "*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -m addrtype --dst-type UNICAST,LOCAL -j ACCEPT\nCOMMIT\n";
    let rs = parse("a", text);
    assert!(rs.warnings.is_empty(), "{:?}", rs.warnings);
    let r = &chain(&rs, "nat", "PREROUTING").rules[0];
    assert_eq!(
        kinds(r),
        vec![&MatchKind::AddrType {
            src: vec![],
            dst: vec![AddrType::Unicast, AddrType::Local],
            limit_in: false,
            limit_out: false
        }]
    );
}

#[test]
fn netmap_maps_onto_a_prefix_and_other_forms_stay_unknown() {
    let rs = parse(
        "rules",
        "*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -d 198.18.0.0/16 -i eth0 -j NETMAP --to 172.17.0.0/255.255.0.0
-A POSTROUTING -s 2001:db8:1::/64 -j NETMAP --to 2001:db8:99::/64
-A POSTROUTING -j NETMAP --to 10.0.0.0/33
-A POSTROUTING -j NETMAP
COMMIT
",
    );
    let post = chain(&rs, "nat", "POSTROUTING");
    assert_eq!(
        chain(&rs, "nat", "PREROUTING").rules[0].target,
        Target::Netmap {
            to: Prefix {
                addr: ip("172.17.0.0"),
                len: 16
            }
        }
    );
    assert_eq!(
        post.rules[0].target,
        Target::Netmap {
            to: Prefix {
                addr: ip("2001:db8:99::"),
                len: 64
            }
        }
    );
    for r in &post.rules[1..] {
        assert!(matches!(r.target, Target::Unknown { .. }), "{:?}", r.target);
    }
    let p = Prefix {
        addr: ip("198.18.0.0"),
        len: 15,
    };
    assert_eq!(p.map(ip("172.17.5.9")), ip("198.19.5.9"));
    assert_eq!(p.map(ip("2001:db8::1")), ip("2001:db8::1"), "other family");
}
