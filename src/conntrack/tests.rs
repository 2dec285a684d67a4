//! The excerpts of real conntrack output collected in the design notes, each parsed
//! into the entries it holds, and the ways a line can be bad.

use std::net::IpAddr;

use super::*;
use crate::model::{NatKind, Proto};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn one(text: &str) -> Entry {
    let d = parse_str("t", text);
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    assert_eq!(d.entries.len(), 1, "{d:?}");
    d.entries.into_iter().next().unwrap()
}

fn implied(e: &Entry) -> Implied {
    Implied::of(e, &Default::default())
}

#[test]
fn e1_plain_list_udp_service_dnat_and_black_hole() {
    let d = parse_str(
        "e1",
        "udp      17 29 src=10.12.0.14 dst=10.15.240.10 sport=43145 dport=53 [UNREPLIED] src=10.12.0.11 dst=10.12.0.14 sport=53 dport=43145 mark=0 use=1\n\
         udp      17 29 src=10.12.0.14 dst=10.15.240.10 sport=43145 dport=53 [UNREPLIED] src=10.15.240.10 dst=10.12.0.14 sport=53 dport=43145 mark=0 use=1\n",
    );
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    let [a, b] = &d.entries[..] else {
        panic!("{d:?}")
    };
    assert_eq!(a.orig.proto, Proto::Udp);
    assert_eq!(a.timeout_s, Some(29));
    assert_eq!(a.state, None);
    assert_eq!(
        (a.orig.src, a.orig.sport, a.orig.dst, a.orig.dport),
        (ip("10.12.0.14"), 43145, ip("10.15.240.10"), 53)
    );
    assert_eq!((a.reply.src, a.reply.sport), (ip("10.12.0.11"), 53));
    assert!(a.flags.unreplied && !a.flags.assured);
    assert_eq!(
        (a.mark, a.use_count, a.id, a.l3num),
        (Some(0), Some(1), None, None)
    );
    assert_eq!(a.line, 1);
    let ia = implied(a);
    assert_eq!(ia.change.kind, NatKind::Dnat);
    assert_eq!(ia.post.dst, ip("10.12.0.11"));
    assert!(!ia.change.port_reallocated && !ia.redirect && !ia.hairpin);
    // The same service address with no DNAT: the entry that black-holes the flow.
    assert_eq!(implied(b).change.kind, NatKind::None);
    assert_eq!(b.line, 2);
}

#[test]
fn e2_accounting_offload_and_proc_lines() {
    let text = "root@OpenWrt:/# conntrack -L\n\
tcp      6 7206 ESTABLISHED src=192.168.1.10 dst=10.0.1.1 sport=42978 dport=5201 packets=2 bytes=112 src=10.0.1.1 dst=10.0.1.2 sport=5201 dport=42978 packets=1 bytes=60 [ASSURED] mark=0 use=1\n\
tcp      6 src=192.168.1.10 dst=10.0.1.1 sport=42984 dport=5201 packets=2 bytes=112 src=10.0.1.1 dst=10.0.1.2 sport=5201 dport=42984 packets=1 bytes=60 [OFFLOAD] mark=0 use=2\n\
root@OpenWrt:/# cat /proc/net/nf_conntrack\n\
ipv4     2 tcp      6 7208 ESTABLISHED src=192.168.1.10 dst=10.0.1.1 sport=42978 dport=5201 packets=2 bytes=112 src=10.0.1.1 dst=10.0.1.2 sport=5201 dport=42978 packets=1 bytes=60 [ASSURED] mark=0 zone=0 use=2\n\
ipv6     10 udp      17 20 src=fe80:0000:0000:0000:f03e:b3ff:fe46:64c4 dst=ff02:0000:0000:0000:0000:0000:0001:0002 sport=546 dport=547 [UNREPLIED] src=ff02:0000:0000:0000:0000:0000:0001:0002 dst=fe80:0000:0000:0000:f03e:b3ff:fe46:64c4 sport=547 dport=546 mark=0 zone=0 use=2\n";
    let d = parse_str("e2", text);
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    assert_eq!(d.skipped_lines, 2);
    let [a, b, c, v6] = &d.entries[..] else {
        panic!("{d:?}")
    };
    assert_eq!(
        a.orig_counters,
        Some(Counters {
            packets: 2,
            bytes: 112
        })
    );
    assert_eq!(
        a.reply_counters,
        Some(Counters {
            packets: 1,
            bytes: 60
        })
    );
    assert_eq!(a.state.as_deref(), Some("ESTABLISHED"));
    assert!(a.flags.assured && !a.flags.offload);
    // Offloaded: no timeout column, and the state is not printed either.
    assert_eq!((b.timeout_s, b.state.as_deref()), (None, None));
    assert!(b.flags.offload && !b.flags.assured);
    assert_eq!(
        (c.l3num, c.zone, c.timeout_s),
        (Some(2), Some(0), Some(7208))
    );
    // The reply goes to 10.0.1.2, not to the client: SNAT.
    let i = implied(a);
    assert_eq!(i.change.kind, NatKind::Snat);
    assert_eq!(i.post.src, ip("10.0.1.2"));
    assert!(!i.change.port_reallocated);
    assert_eq!(v6.l3num, Some(10));
    assert_eq!(v6.orig.src, ip("fe80::f03e:b3ff:fe46:64c4"));
    assert_eq!(implied(v6).change.kind, NatKind::None);
}

#[test]
fn e3_hw_offload_in_both_tools() {
    let a = one("tcp      6 src=1.1.1.17 dst=1.1.1.16 sport=56408 dport=5001 src=1.1.1.16 dst=1.1.1.17 sport=5001 dport=56408 [HW_OFFLOAD] mark=0 use=2");
    let b = one("ipv4     2 tcp      6 src=1.1.1.17 dst=1.1.1.16 sport=56408 dport=5001 src=1.1.1.16 dst=1.1.1.17 sport=5001 dport=56408 [HW_OFFLOAD] mark=0 zone=0 use=3");
    for e in [&a, &b] {
        assert!(e.flags.hw_offload && !e.flags.offload && !e.flags.assured);
        assert_eq!(e.timeout_s, None);
    }
    assert_eq!((a.orig, a.reply), (b.orig, b.reply));
    assert_eq!((a.use_count, b.use_count), (Some(2), Some(3)));
}

#[test]
fn e4_timestamped_events_with_port_rewrite_offload_and_delta_time() {
    let text = "[1712662404.573225]\t    [NEW] tcp      6 120 SYN_SENT src=192.168.7.101 dst=157.240.251.61 sport=52717 dport=5222 [UNREPLIED] src=157.240.251.61 dst=87.138.198.79 sport=5222 dport=26886 mark=25165825\n\
[1712662404.588094]\t [UPDATE] tcp      6 60 SYN_RECV src=192.168.7.101 dst=157.240.251.61 sport=52717 dport=5222 src=157.240.251.61 dst=87.138.198.79 sport=5222 dport=26886 mark=25165825\n\
[1712662404.591802]\t [UPDATE] tcp      6 86400 ESTABLISHED src=192.168.7.101 dst=157.240.251.61 sport=52717 dport=5222 src=157.240.251.61 dst=87.138.198.79 sport=5222 dport=26886 [OFFLOAD] mark=25165825\n\
[1712662405.704370]\t [UPDATE] tcp      6 120 TIME_WAIT src=192.168.7.101 dst=157.240.251.61 sport=52717 dport=5222 src=157.240.251.61 dst=87.138.198.79 sport=5222 dport=26886 [ASSURED] mark=25165825\n\
[1712662451.967906]\t[DESTROY] tcp      6 ESTABLISHED src=192.168.6.122 dst=52.98.243.2 sport=52717 dport=443 packets=14 bytes=4134 src=52.98.243.2 dst=37.24.174.42 sport=443 dport=20116 packets=17 bytes=13712 [ASSURED] mark=16777216 delta-time=140\n";
    let d = parse_str("e4", text);
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    assert!(d.entries.is_empty());
    assert_eq!(d.events.len(), 5);
    let kinds: Vec<_> = d.events.iter().map(|e| e.kind.clone()).collect();
    use EventKind::*;
    assert_eq!(kinds, [New, Update, Update, Update, Destroy]);
    assert_eq!(d.events[0].time_ns, Some(1_712_662_404_573_225_000));
    assert_eq!(d.events[0].entry.mark, Some(25_165_825));
    assert!(d.events[0].entry.flags.unreplied);
    assert!(d.events[2].entry.flags.offload);
    let destroy = &d.events[4].entry;
    assert_eq!((destroy.timeout_s, destroy.delta_time_s), (None, Some(140)));
    assert_eq!(
        destroy.reply_counters,
        Some(Counters {
            packets: 17,
            bytes: 13712
        })
    );
    // The NEW already carries the NAT decision: SNAT to 87.138.198.79 with a new port.
    let i = implied(&d.events[0].entry);
    assert_eq!(i.change.kind, NatKind::Snat);
    assert!(i.change.port_reallocated);
    assert_eq!((i.post.src, i.post.sport), (ip("87.138.198.79"), 26886));
    // Two connections: the first four events, then the other host's DESTROY.
    let t = timelines(&d.events);
    assert_eq!(t.len(), 2);
    assert_eq!(t[0].events, [0, 1, 2, 3]);
    assert!(t[0].saw_new && !t[0].saw_destroy);
    assert_eq!(t[0].created_ns, Some(1_712_662_404_573_225_000));
    assert_eq!(t[1].events, [4]);
    assert_eq!(t[1].destroyed_ns, Some(1_712_662_451_967_906_000));
}

#[test]
fn e4_untimestamped_nat66_events() {
    let text = "[NEW] tcp      6 120 SYN_SENT src=fd00::192:168:5:32 dst=2a05:d014:687:ed01::21 sport=58790 dport=443 [UNREPLIED] src=2a05:d014:687:ed01::21 dst=2003:a:c7f:e5e8:a3ae:63f7:7f92:e286 sport=443 dport=60848 mark=16777216\n \
[DESTROY] tcp      6 TIME_WAIT src=fd00::192:168:5:32 dst=2a05:d014:687:ed01::21 sport=58790 dport=443 packets=15 bytes=1750 src=2a05:d014:687:ed01::21 dst=2003:a:c7f:e5e8:a3ae:63f7:7f92:e286 sport=443 dport=60848 packets=13 bytes=6905 [ASSURED] mark=16777216 delta-time=120\n";
    let d = parse_str("e4b", text);
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    assert_eq!(d.events.len(), 2);
    assert!(d.events.iter().all(|e| e.time_ns.is_none()));
    let i = implied(&d.events[0].entry);
    assert_eq!(i.change.kind, NatKind::Snat);
    assert!(i.change.port_reallocated);
    assert_eq!(i.post.src, ip("2003:a:c7f:e5e8:a3ae:63f7:7f92:e286"));
    let t = timelines(&d.events);
    assert_eq!(t.len(), 1);
    assert!(t[0].saw_new && t[0].saw_destroy);
}

#[test]
fn e5_zone_mark_secctx() {
    let e = one("udp      17 23 src=172.18.0.5 dst=172.18.0.4 sport=45083 dport=30648 src=10.244.1.4 dst=172.18.0.5 sport=90 dport=45083 mark=10 secctx=system_u:object_r:unlabeled_t:s0 zone=2 use=1");
    assert_eq!((e.mark, e.zone, e.zone_id()), (Some(10), Some(2), 2));
    assert_eq!(
        e.secctx.as_deref(),
        Some("system_u:object_r:unlabeled_t:s0")
    );
    let i = implied(&e);
    assert_eq!(i.change.kind, NatKind::Dnat);
    assert_eq!((i.post.dst, i.post.dport), (ip("10.244.1.4"), 90));
}

#[test]
fn e6_statistics_both_forms() {
    let text = "cpu=7           found=4 invalid=9927 ignore=530587402 insert=0 insert_failed=1 drop=1 early_drop=0 error=513 search_restart=88005\n\
entries  clashres found new invalid ignore delete delete_list insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart\n\
0000002a  00000000 00000000 00000000 00000003 00000000 00000000 00000000 00000000 00000002 00000002 00000000 00000000  00000000 00000000 00000000 00000010\n";
    let d = parse_str("e6", text);
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    assert_eq!(d.stats.len(), 2);
    assert_eq!(d.stats[0].cpu, Some(7));
    assert!(d.stats[0].counters.contains(&("insert_failed".into(), 1)));
    assert_eq!(d.stats[1].cpu, None);
    assert!(d.stats[1].counters.contains(&("entries".into(), 42)));
    assert!(d.stats[1].counters.contains(&("search_restart".into(), 16)));
    let total = d.stats_total();
    assert!(total.contains(&("insert_failed".into(), 3)), "{total:?}");
}

#[test]
fn the_udp_and_icmp_timeouts_come_from_the_settings_given() {
    use crate::model::CtTimeouts;
    const S: i64 = 1_000_000_000;
    let host = parse_str(
        "sysctl.txt",
        "$ sysctl -a | grep timeout\n\
net.netfilter.nf_conntrack_udp_timeout = 60\n\
net.netfilter.nf_conntrack_icmpv6_timeout = 10\n\
net.netfilter.nf_conntrack_tcp_timeout_established = 86400\n\
net.netfilter.nf_conntrack_udp_timeout = 65\n",
    );
    let later = parse_str(
        "later",
        "net.netfilter.nf_conntrack_udp_timeout_stream = 180\n",
    );
    let t = Dump::timeouts([&host, &later]);
    assert_eq!(
        t,
        CtTimeouts {
            udp_ns: 65 * S,
            udp_stream_ns: 180 * S,
            icmpv6_ns: 10 * S,
            tcp_established_ns: 86_400 * S,
            ..CtTimeouts::default()
        }
    );
    assert_eq!(t.icmp_ns, 30 * S);
    assert_eq!(Dump::timeouts([]), CtTimeouts::default());
}

#[test]
fn a_full_table_pasted_statistics_count_and_settings() {
    // What a ticket shows of a full table: the settings, the per-CPU statistics, and
    // /proc/net/stat/nf_conntrack, whose `entries` is the table's count on every row.
    let text = "$ sysctl net.netfilter.nf_conntrack_max net.netfilter.nf_conntrack_count net.ipv4.ip_local_port_range\n\
net.netfilter.nf_conntrack_max = 65536\n\
net.netfilter.nf_conntrack_count = 65536\n\
net.ipv4.ip_local_port_range = 32768\t60999\n\
net.ipv4.conf.eth0/100.rp_filter = 1\n\
net.ipv4.conf.Wg+0.forwarding = 0\n\
cpu=0   \tfound=0 invalid=2 insert=0 insert_failed=1 drop=812 early_drop=3 error=0 search_restart=0\n\
entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop\n\
00010000  00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000010 00000000\n\
00010000  00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000020 00000000\n";
    let d = parse_str("full", text);
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    assert_eq!(d.skipped_lines, 1);
    let names: Vec<(&str, &str, u64)> = d
        .sysctls
        .iter()
        .map(|s| (s.name.as_str(), s.value.as_str(), s.line))
        .collect();
    assert_eq!(
        names,
        [
            ("net.netfilter.nf_conntrack_max", "65536", 2),
            ("net.netfilter.nf_conntrack_count", "65536", 3),
            ("net.ipv4.ip_local_port_range", "32768\t60999", 4),
            ("net.ipv4.conf.eth0/100.rp_filter", "1", 5),
            ("net.ipv4.conf.Wg+0.forwarding", "0", 6),
        ]
    );
    assert_eq!(
        d.sysctl("net.netfilter.nf_conntrack_max")
            .map(|s| s.value.as_str()),
        Some("65536")
    );
    let total = d.stats_total();
    let get = |k: &str| total.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
    assert_eq!(get("drop"), Some(812 + 0x30));
    assert_eq!(get("entries"), Some(65536), "the count, not summed");
    // Not settings: no dot in the name, a capital first, no spaces around `=`.
    for bad in [
        "foo = 1",
        "Net.netfilter.x = 1",
        "net.netfilter.x=1",
        "net..x = 1",
    ] {
        let d = parse_str("bad", bad);
        assert!(
            d.sysctls.is_empty() && d.warnings.len() == 1,
            "{bad}: {d:?}"
        );
    }
}

#[test]
fn e7_lab_output_extended_id_unknown_protocol_and_udp_events() {
    let text = "# conntrack -L -p tcp -o extended,id\n\
ipv4     2 tcp      6 431999 ESTABLISHED src=10.0.1.3 dst=192.0.2.2 sport=40000 dport=8080 src=192.0.2.2 dst=192.0.2.1 sport=8080 dport=8942 [ASSURED] mark=0 use=1 id=675049517\n\
# cat /proc/net/nf_conntrack\n\
ipv4     2 unknown  2 593 src=10.0.1.1 dst=224.0.0.22 [UNREPLIED] src=224.0.0.22 dst=10.0.1.1 mark=0 zone=0 use=2\n\
# conntrack -E -o timestamp -p udp\n\
[1795407837.706052]\t    [NEW] udp      17 30 src=10.0.1.2 dst=192.0.2.100 sport=45000 dport=53 [UNREPLIED] src=192.0.2.2 dst=10.0.1.2 sport=9000 dport=45000\n\
[1795407839.710483]\t [UPDATE] udp      17 120 src=10.0.1.2 dst=192.0.2.100 sport=45000 dport=53 src=192.0.2.2 dst=10.0.1.2 sport=9000 dport=45000 [ASSURED]\n\
# conntrack -S\n\
cpu=0   \tfound=0 invalid=2 insert=0 insert_failed=6 drop=6 early_drop=0 error=0 search_restart=0 clash_resolve=0 chaintoolong=0\n";
    let d = parse_str("e7", text);
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    assert_eq!(
        (
            d.entries.len(),
            d.events.len(),
            d.stats.len(),
            d.skipped_lines
        ),
        (2, 2, 1, 4)
    );
    let tcp = &d.entries[0];
    assert_eq!(tcp.id, Some(675_049_517));
    let i = implied(tcp);
    assert_eq!(i.change.kind, NatKind::Snat);
    assert!(i.change.port_reallocated);
    assert_eq!((i.post.src, i.post.sport), (ip("192.0.2.1"), 8942));
    let igmp = &d.entries[1];
    assert_eq!(igmp.orig.proto, Proto::Other(2));
    assert_eq!(
        (igmp.orig.sport, igmp.orig.dport, igmp.timeout_s),
        (0, 0, Some(593))
    );
    // DNAT to 192.0.2.2:9000 decided at NEW time.
    let i = implied(&d.events[0].entry);
    assert_eq!(i.change.kind, NatKind::Dnat);
    assert_eq!((i.post.dst, i.post.dport), (ip("192.0.2.2"), 9000));
}

#[test]
fn icmp_identifier_and_entry_id_are_told_apart() {
    let e = one("ipv4     2 icmp     1 29 src=172.17.0.2 dst=203.0.113.2 type=8 code=0 id=3073 src=203.0.113.2 dst=203.0.113.1 type=0 code=0 id=3073 mark=0 use=1 id=3728395646");
    assert_eq!((e.orig.sport, e.orig.dport, e.reply.sport), (3073, 0, 3073));
    assert_eq!(e.id, Some(3_728_395_646));
    assert_eq!(
        e.orig_icmp,
        Some(IcmpKey {
            icmp_type: 8,
            code: 0
        })
    );
    assert_eq!(
        e.reply_icmp,
        Some(IcmpKey {
            icmp_type: 0,
            code: 0
        })
    );
    let i = implied(&e);
    assert_eq!(i.change.kind, NatKind::Snat);
    assert!(!i.change.port_reallocated);
    let moved = one("icmpv6   58 29 src=fd00::2 dst=2001:db8::2 type=128 code=0 id=7 src=2001:db8::2 dst=2001:db8::1 type=129 code=0 id=9 mark=0 use=1");
    assert!(implied(&moved).change.port_reallocated);
}

#[test]
fn redirect_hairpin_ktimestamp_labels_gre_and_unknown_keys() {
    // REDIRECT of a locally generated connection to loopback.
    let r = one("tcp      6 117 SYN_SENT src=10.0.0.5 dst=198.51.100.7 sport=40000 dport=80 [UNREPLIED] src=127.0.0.1 dst=10.0.0.5 sport=3128 dport=40000 mark=0 use=1");
    assert!(implied(&r).redirect);
    // Hairpin: a pod reaching its own service address lands on itself, masqueraded.
    let h = one("tcp      6 431999 ESTABLISHED src=10.244.1.4 dst=10.96.0.10 sport=5000 dport=80 src=10.244.1.4 dst=10.244.1.1 sport=8080 dport=5000 [ASSURED] mark=0 use=1");
    let ih = implied(&h);
    assert_eq!(ih.change.kind, NatKind::SnatDnat);
    assert!(ih.hairpin && !ih.redirect);
    assert_eq!(ih.label(), "snat+dnat (hairpin)");
    // A DNAT to an address the host masquerades with is a REDIRECT too.
    let d = parse_str("r", "tcp      6 100 ESTABLISHED src=198.51.100.9 dst=203.0.113.1 sport=1000 dport=80 src=203.0.113.1 dst=198.51.100.9 sport=8080 dport=1000 [ASSURED] mark=0 use=1\n\
tcp      6 100 ESTABLISHED src=172.17.0.2 dst=198.51.100.9 sport=2000 dport=443 src=198.51.100.9 dst=203.0.113.1 sport=443 dport=2000 [ASSURED] mark=0 use=1\n");
    let host = host_addresses(&d.entries);
    assert_eq!(
        host.iter().copied().collect::<Vec<_>>(),
        [ip("203.0.113.1")]
    );
    assert!(Implied::of(&d.entries[0], &host).redirect);
    assert_eq!(Implied::of(&d.entries[0], &host).label(), "dnat (redirect)");
    // -o ktimestamp,labels, helper= and a key never seen before.
    let k = one("tcp      6 431999 ESTABLISHED src=10.0.0.1 dst=10.0.0.2 sport=21 dport=2121 src=10.0.0.2 dst=10.0.0.1 sport=2121 dport=21 [ASSURED] [start=Tue Apr  9 13:33:24 2024] [stop=Tue Apr  9 13:35:44 2024] mark=0 helper=ftp labels=blue,green frobnicate=7 delta-time=140 use=1 id=12");
    assert_eq!(k.start.as_deref(), Some("Tue Apr  9 13:33:24 2024"));
    assert_eq!(k.stop.as_deref(), Some("Tue Apr  9 13:35:44 2024"));
    assert_eq!(k.labels, ["blue", "green"]);
    assert_eq!(
        k.extra,
        [
            ("helper".into(), "ftp".into()),
            ("frobnicate".into(), "7".into())
        ]
    );
    assert_eq!((k.delta_time_s, k.id), (Some(140), Some(12)));
    // GRE keys are hexadecimal and sit in the port fields; SCTP has states and ports.
    let g = one("gre      47 29 src=10.0.0.1 dst=10.0.0.2 srckey=0x1a dstkey=0x0 src=10.0.0.2 dst=10.0.0.1 srckey=0x0 dstkey=0x1a mark=0 use=1");
    assert_eq!(
        (g.orig.proto, g.orig.sport, g.reply.dport),
        (Proto::Gre, 0x1a, 0x1a)
    );
    let s = one("sctp     132 3 COOKIE_WAIT src=10.0.0.1 dst=10.0.0.2 sport=5000 dport=36412 [UNREPLIED] src=10.0.0.2 dst=10.0.0.1 sport=36412 dport=5000 mark=0 use=1");
    assert_eq!(
        (s.orig.proto, s.state.as_deref()),
        (Proto::Sctp, Some("COOKIE_WAIT"))
    );
    let zones = one("tcp      6 10 CLOSE src=10.0.0.1 dst=10.0.0.2 sport=1 dport=2 zone-orig=3 src=10.0.0.2 dst=10.0.0.1 sport=2 dport=1 zone-reply=4 [UNKNOWN_FLAG] mark=0x10 use=1");
    assert_eq!(
        (zones.zone_orig, zones.zone_reply, zones.zone_id()),
        (Some(3), Some(4), 3)
    );
    assert_eq!(
        (zones.mark, zones.flags.other.as_slice()),
        (Some(16), &["UNKNOWN_FLAG".to_string()][..])
    );
}

#[test]
fn footers_are_recognised_and_checked() {
    let ok = "tcp      6 10 CLOSE src=10.0.0.1 dst=10.0.0.2 sport=1 dport=2 src=10.0.0.2 dst=10.0.0.1 sport=2 dport=1 mark=0 use=1\n\
conntrack v1.4.7 (conntrack-tools): 1 flow entries have been shown.\n";
    let d = parse_str("f", ok);
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    assert_eq!(d.footers.len(), 1);
    assert_eq!(
        (d.footers[0].count, d.footers[0].what.as_str()),
        (1, "entries")
    );
    let d = parse_str("f", &ok.replace(": 1 flow", ": 3 flow"));
    assert_eq!(d.warnings.len(), 1);
    assert_eq!(
        d.warnings[0].to_string(),
        "f:2:1: the footer counts 3 entries but 1 were read since the previous one"
    );
    let d = parse_str(
        "f",
        "conntrack v1.4.7 (conntrack-tools): connection tracking table has been emptied.\n",
    );
    assert!(d.warnings.is_empty() && d.skipped_lines == 1);
}

#[test]
fn bad_lines_are_located_and_the_rest_is_kept() {
    let good = "udp      17 29 src=10.0.0.1 dst=10.0.0.2 sport=1 dport=2 src=10.0.0.2 dst=10.0.0.1 sport=2 dport=1 mark=0 use=1";
    let cases: &[(&str, &str)] = &[
        ("hello world", "1: expected a conntrack entry"),
        ("udp      17 29 src=10.0.0.1 dst=10.0.0.2 sport=1 dport=2 mark=0", "64: expected the REPLY tuple"),
        ("udp      17 29 src=10.0.0.999 dst=10.0.0.2 sport=1 dport=2 src=10.0.0.2 dst=10.0.0.1 sport=2 dport=1", "20: expected an IP address after `src=`, found `10.0.0.999`"),
        ("udp      17 29 src=10.0.0.1 dst=10.0.0.2 sport=70000 dport=2 src=10.0.0.2 dst=10.0.0.1 sport=2 dport=1", "48: expected a port after `sport=`"),
        ("udp      17 29 src=10.0.0.1 dst=10.0.0.2 src=10.0.0.2 dst=10.0.0.1", "16: ORIGINAL tuple: expected `sport=` and `dport=` for udp"),
        ("udp      17 29 src=10.0.0.1 dst=::1 sport=1 dport=2 src=::1 dst=10.0.0.1 sport=2 dport=1", "different address families"),
        ("ipv6     10 udp      17 29 src=10.0.0.1 dst=10.0.0.2 sport=1 dport=2 src=10.0.0.2 dst=10.0.0.1 sport=2 dport=1", "layer-3 number 10 does not match"),
        // A time prefix without an event tag is stripped; the column is the line's.
        ("[1712662404.573225]\tudp      17 29 src=10.0.0.1", "2:48: expected the REPLY tuple"),
        ("udp      17 29 src=10.0.0.1 dst=10.0.0.2 sport=1 dport=2 src=10.0.0.2 dst=10.0.0.1 sport=2 dport=1 src=1.1.1.1", "a third tuple"),
        ("udp      17 29 dport=2 src=10.0.0.1", "`dport=` before the first `src=`"),
        ("udp      17 29 src=10.0.0.1 dst=10.0.0.2 sport=1 dport=2 src=10.0.0.2 dst=10.0.0.1 sport=2 dport=1 oops", "expected `key=value` or `[FLAG]`, found `oops`"),
        ("<flow><meta direction=\"original\"></flow>", "2:34: expected `</meta>`, found `</flow>`"),
    ];
    for (bad, want) in cases {
        let text = format!("{good}\n{bad}\n{good}\n");
        let d = parse_str("ct.txt", &text);
        assert_eq!(d.entries.len(), 2, "{bad}: {d:?}");
        assert_eq!(d.entries[1].line, 3);
        assert_eq!(d.warnings.len(), 1, "{bad}: {:?}", d.warnings);
        let w = d.warnings[0].to_string();
        assert!(w.starts_with("ct.txt:2:"), "{w}");
        assert!(w.contains(want), "{bad}\n  got: {w}\n want: {want}");
    }
}

#[test]
fn stray_bytes_and_crlf_do_not_hide_entries() {
    let text = b"udp      17 29 src=10.0.0.1 dst=10.0.0.2 sport=1 dport=2 src=10.0.0.2 dst=10.0.0.1 sport=2 dport=1 mark=0 use=1\r\n\xff\xfe\x00garbage\n";
    let d = read("x", &text[..]).unwrap();
    assert_eq!(d.entries.len(), 1);
    assert_eq!(d.warnings.len(), 1);
}

const UDP: &str = "udp      17 29 src=10.0.0.1 dst=10.0.0.2 sport=1 dport=2 src=10.0.0.2 dst=10.0.0.1 sport=2 dport=1 mark=0 use=1";

#[test]
fn decorated_paste_is_read_with_a_note() {
    let text = format!(
        "[root@gw ~]# conntrack -L\n\
         > {UDP}\n\
         > > root@gw:~# {UDP}\n\
         # {UDP}\n\
         # a comment, not a command\n\
         #\n\
         conntrack v1.4.7 (conntrack-tools): 3 flow entries have been shown.\n\
         Nov 30 06:00:01 gw conntrack[123]: [NEW] {UDP}\n\
         2024-04-09T13:33:24+0200 gw conntrack[77]:  [UPDATE] {UDP}\n\
         02:03:47.404103 [DESTROY] {UDP}\n\
         $ \n"
    );
    let d = parse_str("p", &text);
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    assert_eq!((d.entries.len(), d.events.len()), (3, 3));
    assert_eq!(
        d.stripped,
        Stripped {
            quote: 2,
            time: 3,
            prompt: 3,
            hash: 1,
        }
    );
    // The prompt line, the comment, the bare `#` and the empty prompt.
    assert_eq!(d.skipped_lines, 4);
    assert_eq!(d.footers.len(), 1);
    let times: Vec<_> = d
        .events
        .iter()
        .map(|e| (e.time_ns, e.local_time.as_deref()))
        .collect();
    assert_eq!(
        times,
        [
            (None, Some("Nov 30 06:00:01")),
            (Some(1_712_662_404_000_000_000), None),
            (None, Some("02:03:47.404103")),
        ]
    );
    assert_eq!(
        d.stripped.note(),
        "3 lines had a shell prompt, 3 a time prefix, 2 mail quoting, 1 a `#` before the entry"
    );
}

#[test]
fn a_damaged_entry_after_a_prompt_is_a_warning_at_its_column() {
    let d = parse_str("p", "root@gw:~# udp 17 29 src=10.0.0.1\n");
    assert_eq!(d.warnings.len(), 1);
    assert_eq!(
        d.warnings[0].to_string(),
        "p:1:34: expected the REPLY tuple (a second `src=`)"
    );
}

#[test]
fn footers_of_piped_or_stderr_first_output_are_not_checked() {
    let piped = format!(
        "# conntrack -L | grep 4789\n\
         conntrack v1.4.6 (conntrack-tools): 50 flow entries have been shown.\n\
         {UDP}\n"
    );
    let d = parse_str("p", &piped);
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    assert_eq!(
        (d.entries.len(), d.stripped.prompt, d.skipped_lines),
        (1, 1, 1)
    );
    // `conntrack -D` says what it deleted: no footer of a listing.
    let deleted = format!(
        "\tconntrack v1.4.4 (conntrack-tools): 17 flow entries have been deleted.\n\t{UDP}\n"
    );
    let d = parse_str("p", &deleted);
    assert!(d.warnings.is_empty() && d.footers.is_empty(), "{d:?}");
    // A bare command before the output, as people paste it.
    let d = parse_str("p", &format!("conntrack -L | grep 10.0.0.2\n{UDP}\n"));
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    assert_eq!((d.entries.len(), d.skipped_lines), (1, 1));
}

#[test]
fn xml_listing_and_events_of_the_tool() {
    let list = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<conntrack>\n\
<flow><meta direction=\"original\"><layer3 protonum=\"2\" protoname=\"ipv4\"><src>127.0.0.1</src><dst>127.0.0.1</dst></layer3><layer4 protonum=\"17\" protoname=\"udp\"><sport>52224</sport><dport>5300</dport></layer4></meta><meta direction=\"reply\"><layer3 protonum=\"2\" protoname=\"ipv4\"><src>127.0.0.1</src><dst>127.0.0.1</dst></layer3><layer4 protonum=\"17\" protoname=\"udp\"><sport>5301</sport><dport>40000</dport></layer4></meta><meta direction=\"independent\"><timeout>29</timeout><mark>7</mark><use>1</use><id>3385517261</id></meta></flow>\n\
<flow>\n  <meta direction=\"original\"><layer3 protonum=\"2\" protoname=\"ipv4\"><src>10.0.0.1</src><dst>10.0.0.2</dst></layer3>\n  <layer4 protonum=\"6\" protoname=\"tcp\"><sport>1</sport><dport>2</dport></layer4></meta>\n  <meta direction=\"reply\"><layer3 protonum=\"2\" protoname=\"ipv4\"><src>10.0.0.2</src><dst>10.0.0.1</dst></layer3><layer4 protonum=\"6\" protoname=\"tcp\"><sport>2</sport><dport>1</dport></layer4></meta>\n</flow>\n\
</conntrack>\nconntrack v1.4.7 (conntrack-tools): 2 flow entries have been shown.\n";
    let d = parse_str("x", list);
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    assert_eq!(d.entries.len(), 2);
    let e = &d.entries[0];
    assert_eq!((e.line, e.id, e.mark), (3, Some(3385517261), Some(7)));
    let i = implied(e);
    assert_eq!(i.change.kind, NatKind::SnatDnat);
    // A flow re-indented over lines is one entry, at the line it starts.
    assert_eq!(d.entries[1].line, 4);
    assert_eq!(d.footers.len(), 1);
    // A flow cut off: located at its start, the flows before it kept.
    let cut = list.replace("</flow>\n</conntrack>", "\n</conntrack>");
    let d = parse_str("x", &cut);
    assert_eq!(d.entries.len(), 1);
    assert!(
        d.warnings[0].to_string() == "x:4:1: `<flow>` is not closed by `</flow>`",
        "{:?}",
        d.warnings
    );
}

#[test]
fn gre_keys_are_no_ports() {
    let e = one("gre      47 29 src=10.0.0.1 dst=192.0.2.1 srckey=0x1a2b dstkey=0x0 src=192.0.2.1 dst=10.0.0.1 srckey=0x0 dstkey=0x77 mark=0 use=1");
    let i = implied(&e);
    assert_eq!(i.change.kind, NatKind::None);
    assert!(!i.change.port_reallocated && !i.change.sport_changed);
    assert!(!i.label().contains("port"));
    let snat = one("gre      47 29 src=10.0.0.1 dst=192.0.2.1 srckey=0x1a2b dstkey=0x0 src=192.0.2.1 dst=203.0.113.1 srckey=0x0 dstkey=0x77 mark=0 use=1");
    assert_eq!(implied(&snat).label(), "snat");
}
