//! `natcheck correlate` on the real-kernel lab samples: the same translations whether the
//! interfaces come as separate files, one pcapng, one `-i any` capture, or with one
//! capture's clock shifted; snapshots of the rebuilt paths for every scenario.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::util::*;

fn correlate_json(args: &[&str]) -> Value {
    let mut all = vec!["correlate", "--format", "json"];
    all.extend_from_slice(args);
    let out = natcheck(&all);
    assert!(
        out.status.code() == Some(0) || out.status.code() == Some(1),
        "natcheck {all:?} exited {:?}: {}",
        out.status.code(),
        stderr(&out)
    );
    serde_json::from_slice(&out.stdout).expect("valid JSON")
}

fn tuple(v: &Value) -> String {
    let port = |p: &Value| {
        if p.is_null() {
            String::new()
        } else {
            format!(":{p}")
        }
    };
    format!(
        "{} {}{} -> {}{}",
        v["proto"].as_str().unwrap(),
        v["src"].as_str().unwrap(),
        port(&v["sport"]),
        v["dst"].as_str().unwrap(),
        port(&v["dport"])
    )
}

/// For every connection seen at both points `a` and `b`: (tuple at a, tuple at b).
fn mapping(doc: &Value, a: &str, b: &str) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for c in doc["connections"].as_array().unwrap() {
        let hops = c["hops"].as_array().unwrap();
        let at = |p: &str| hops.iter().find(|h| h["point"] == p).map(tuple);
        if let (Some(x), Some(y)) = (at(a), at(b)) {
            out.insert((x, y));
        }
    }
    out
}

/// A compact, readable rendering of the rebuilt paths for snapshots: independent of
/// ids, times and findings, sorted.
fn paths(doc: &Value) -> String {
    let mut lines: Vec<String> = doc["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let hops = c["hops"].as_array().unwrap();
            let mut s = String::new();
            for (i, h) in hops.iter().enumerate() {
                if i > 0 {
                    let t = &c["translations"][i - 1];
                    s.push_str(&format!(
                        "  --{}{}-->  ",
                        t["kind"].as_str().unwrap(),
                        if t["port_reallocated"] == true {
                            ",realloc"
                        } else {
                            ""
                        }
                    ));
                }
                s.push_str(&format!(
                    "{}[{}] {}>/{}<",
                    h["point"].as_str().unwrap(),
                    tuple(h),
                    h["packets_fwd"],
                    h["packets_rev"]
                ));
                if !h["reply_tuple"].is_null() {
                    s.push_str(&format!(" (replies as {})", tuple(&h["reply_tuple"])));
                }
            }
            for r in c["returns"].as_array().unwrap() {
                s.push_str(&format!(
                    "  (replies by {}[{}] {}>/{}< beside {}, {})",
                    r["point"].as_str().unwrap(),
                    tuple(r),
                    r["packets_fwd"],
                    r["packets_rev"],
                    r["beside"].as_str().unwrap(),
                    r["joined_by"].as_str().unwrap()
                ));
            }
            s
        })
        .collect();
    lines.sort();
    lines.join("\n")
}

#[test]
fn rebuilt_paths_of_every_scenario() {
    for s in SCENARIOS {
        let dir = format!("samples/{s}");
        assert!(root().join(&dir).is_dir(), "{dir} is missing");
        let mut files = vec![
            format!("{dir}/veth-c1.pcap"),
            format!("{dir}/docker0.pcap"),
            format!("{dir}/eth0.pcap"),
        ];
        files.extend(second_uplink(s));
        let doc = correlate_json(&files.iter().map(String::as_str).collect::<Vec<_>>());
        insta::assert_snapshot!(format!("paths-{s}"), paths(&doc));
    }
}

/// Routed pods with no bridge (`routed-pods`): each connection's path from pod link to
/// uplink or pod link, with the kernel's translations, and the same from `-i any`.
#[test]
fn rebuilt_paths_of_routed_pods() {
    let d = "samples/routed-pods";
    let doc = correlate_json(&[
        &format!("{d}/cali-c1.pcap"),
        &format!("{d}/cali-c2.pcap"),
        &format!("{d}/eth0.pcap"),
    ]);
    insta::assert_snapshot!("paths-routed-pods", paths(&doc));
    let any = correlate_json(&[
        &format!("{d}/any.pcap"),
        "--links",
        &format!("{d}/links.txt"),
    ]);
    assert_eq!(paths(&any), paths(&doc));
}

#[test]
fn shifted_clock_correlates_exactly_and_reports_the_offset() {
    let plain = correlate_json(&[
        "samples/masquerade/docker0.pcap",
        "samples/masquerade/eth0.pcap",
    ]);
    let shifted = correlate_json(&[
        "samples/masquerade/docker0.pcap",
        "samples/masquerade/shifted/eth0.pcap",
    ]);
    let m = mapping(&plain, "docker0", "eth0");
    assert!(m.len() >= 8, "{m:?}");
    assert_eq!(mapping(&shifted, "docker0", "eth0"), m);
    let off = shifted["points"][1]["clock_offset_ns"].as_i64().unwrap();
    assert!((off - 3_500_000_000).abs() < 1_000_000, "offset {off}");
    assert_eq!(shifted["points"][1]["clock_basis"], "estimated");
    // The corrected times line up with the unshifted run's.
    assert_eq!(
        plain["connections"][0]["first_seen"],
        shifted["connections"][0]["first_seen"]
    );
}

#[test]
fn one_pcapng_or_one_any_capture_gives_the_same_translations_as_separate_files() {
    for s in SCENARIOS {
        let dir = format!("samples/{s}");
        let separate =
            correlate_json(&[&format!("{dir}/docker0.pcap"), &format!("{dir}/eth0.pcap")]);
        let want = mapping(&separate, "docker0", "eth0");
        let multi = correlate_json(&[&format!("{dir}/multi.pcapng")]);
        assert_eq!(
            mapping(&multi, "docker0", "eth0"),
            want,
            "{s}: multi.pcapng"
        );
        let any = correlate_json(&[
            &format!("{dir}/any.pcap"),
            "--links",
            &format!("{dir}/links.txt"),
        ]);
        assert_eq!(mapping(&any, "docker0", "eth0"), want, "{s}: any.pcap");
    }
}

#[test]
fn labels_name_points_and_unnamed_any_interfaces_get_index_names() {
    let doc = correlate_json(&[
        "inside=samples/masquerade/docker0.pcap",
        "outside=samples/masquerade/eth0.pcap",
    ]);
    let names: Vec<&str> = doc["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["inside", "outside"]);
    let doc = correlate_json(&["samples/masquerade/any.pcap"]);
    let names: BTreeSet<&str> = doc["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains("any:if2") && names.contains("any:if5"),
        "{names:?}"
    );
}

/// A conntrack table (`conntrack -L -o extended`) as (original tuple, reply tuple
/// reversed), both written as [`tuple`] writes a hop: what a connection looks like
/// before and after the host's NAT.
fn conntrack_translations(path: &str) -> BTreeSet<(String, String)> {
    let text = std::fs::read_to_string(root().join(path)).unwrap();
    text.lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            // Tunnel entries (`unknown 4` for IP in IP) have no ports: not a connection.
            let proto = *words
                .get(2)
                .filter(|p| ["tcp", "udp", "icmp", "icmpv6"].contains(p))?;
            let all = |key: &str| -> Vec<&str> {
                words
                    .iter()
                    .filter_map(|w| w.strip_prefix(key)?.strip_prefix('='))
                    .collect()
            };
            let (src, dst) = (all("src"), all("dst"));
            let (orig, reply) = if proto.starts_with("icmp") {
                let id = all("id");
                (
                    format!("{proto} {}:{} -> {}", src[0], id[0], dst[0]),
                    format!("{proto} {}:{} -> {}", dst[1], id[1], src[1]),
                )
            } else {
                let (sport, dport) = (all("sport"), all("dport"));
                (
                    format!("{proto} {}:{} -> {}:{}", src[0], sport[0], dst[0], dport[0]),
                    format!("{proto} {}:{} -> {}:{}", dst[1], dport[1], src[1], sport[1]),
                )
            };
            Some((orig, reply))
        })
        .collect()
}

/// Two nodes joined by a tunnel (VXLAN, IP in IP), captured on both (node B's clock
/// shifted): every connection crosses the four points, translated on node A's way out
/// exactly as node A's conntrack entry says (service traffic: DNAT and masquerade; pod
/// to pod through a masquerade rule: the source only), untranslated through the tunnel
/// and on node B, whose entry is plain; node B's clock offset is recovered.
#[test]
fn overlay_connections_cross_both_nodes_with_node_a_translating() {
    for (scenario, tunnel, node_a, protos) in [
        (
            "overlay-vxlan",
            "vxlan",
            "snat+dnat",
            &["icmp", "tcp", "udp"][..],
        ),
        ("overlay-ipip", "ipip", "snat+dnat", &["icmp", "tcp", "udp"]),
        ("fault-overlay-masq", "vxlan", "snat", &["tcp"]),
        ("fault-overlay-masq-ipip", "ipip", "snat", &["icmp", "udp"]),
    ] {
        overlay_paths(scenario, tunnel, node_a, protos);
    }
}

fn overlay_paths(scenario: &str, tunnel: &str, node_a: &str, protos: &[&str]) {
    let d = format!("samples/{scenario}");
    let labels = ["a-pod", "a-eth0", "b-eth0", "b-pod"];
    let plain_args = overlay_points(scenario, labels, "node-b");
    let shifted_args = overlay_points(scenario, labels, "node-b/shifted");
    let plain = correlate_json(&plain_args.iter().map(String::as_str).collect::<Vec<_>>());
    let doc = correlate_json(&shifted_args.iter().map(String::as_str).collect::<Vec<_>>());
    let conns = doc["connections"].as_array().unwrap();
    let got: BTreeSet<&str> = conns.iter().map(|c| c["proto"].as_str().unwrap()).collect();
    assert_eq!(got, BTreeSet::from_iter(protos.iter().copied()), "{d}");
    for c in conns {
        let at: Vec<&str> = c["hops"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["point"].as_str().unwrap())
            .collect();
        assert_eq!(
            at,
            ["a-pod", "a-eth0", "b-eth0", "b-pod"],
            "{d} {}",
            c["id"]
        );
        let kinds: Vec<&str> = c["translations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, [node_a, "none", "none"], "{d} {}", c["id"]);
        for h in &c["hops"].as_array().unwrap()[1..3] {
            assert_eq!(h["tunnel"]["kind"], tunnel, "{d} {}", c["id"]);
        }
    }
    // Node A's translation is its conntrack entry's; node B's entry is untranslated.
    let across = mapping(&doc, "a-pod", "a-eth0");
    assert_eq!(across.len(), conns.len());
    let node_a = conntrack_translations(&format!("{d}/conntrack.txt"));
    assert!(across.is_subset(&node_a), "{across:?}\nnot in {node_a:?}");
    let node_b = conntrack_translations(&format!("{d}/node-b/conntrack.txt"));
    for (_, pod) in mapping(&doc, "b-eth0", "b-pod") {
        assert!(node_b.contains(&(pod.clone(), pod.clone())), "{pod}");
    }
    // The same pairs as with node B's own clock; its offset within 1 ms of the shift
    // (`OVL_SHIFT` in samples/lab/record.sh).
    assert_eq!(
        mapping(&plain, "a-pod", "b-pod"),
        mapping(&doc, "a-pod", "b-pod")
    );
    for i in [2, 3] {
        let p = &doc["points"][i];
        assert_eq!(p["clock_basis"], "estimated");
        let off = p["clock_offset_ns"].as_i64().unwrap();
        assert!(
            (off - 250_000_000).abs() < 1_000_000,
            "{}: offset {off}",
            p["name"]
        );
        assert_eq!(plain["points"][i]["clock_offset_ns"], 0);
    }
}

#[test]
fn link_local_control_traffic_is_counted_not_correlated_unless_all() {
    // Neighbour discovery on both sides of an IPv6 MASQUERADE, and around an IPv6
    // userland proxy (clients outside, the backend over IPv4).
    for s in ["masquerade6", "userland-proxy6"] {
        let files = [
            format!("samples/{s}/docker0.pcap"),
            format!("samples/{s}/eth0.pcap"),
        ];
        let args: Vec<&str> = files.iter().map(String::as_str).collect();
        let counted = correlate_json(&args);
        let all = correlate_json(&[args.as_slice(), &["--all"]].concat());
        let control = |doc: &Value, point: &str| -> u64 {
            (doc["inputs"].as_array().unwrap().iter())
                .filter_map(|i| i["control_flows"][point].as_u64())
                .sum()
        };
        let conns = |doc: &Value| doc["connections"].as_array().unwrap().clone();
        let mut hidden = 0;
        for (p, q) in
            (counted["points"].as_array().unwrap().iter()).zip(all["points"].as_array().unwrap())
        {
            let name = p["name"].as_str().unwrap();
            let n = control(&counted, name);
            assert_eq!(control(&all, name), 0, "{s}: --all still counts them");
            assert_eq!(
                q["flows"].as_u64().unwrap() - p["flows"].as_u64().unwrap(),
                n,
                "{s}: {name}'s flows"
            );
            hidden += n;
        }
        assert!(hidden > 0, "{s}: no control flow counted");
        // Each control flow is a connection of its own under --all, seen at one point,
        // with no translation; everything else is the same.
        let (counted_c, all_c) = (conns(&counted), conns(&all));
        assert_eq!(all_c.len() as u64, counted_c.len() as u64 + hidden, "{s}");
        let extra: Vec<&Value> = (all_c.iter())
            .filter(|c| c["translations"].as_array().unwrap().is_empty())
            .filter(|c| c["proto"] == "icmpv6")
            .collect();
        assert!(extra.len() as u64 >= hidden, "{s}: {extra:?}");
        assert!(counted_c
            .iter()
            .all(|c| c["hops"].as_array().unwrap().iter().all(|h| {
                let dst = h["dst"].as_str().unwrap();
                h["proto"] != "icmpv6" || h["sport"] != 0 || !dst.starts_with("ff02:")
            })));
        assert_eq!(
            mapping(&counted, "docker0", "eth0"),
            mapping(&all, "docker0", "eth0"),
            "{s}"
        );
        let table = stdout(&natcheck(&["correlate", &files[0], &files[1]]));
        assert!(
            table.contains(&format!(
                "; {hidden} link-local control flows not listed (--all lists them)"
            )),
            "{s}: {table}"
        );
    }
}

/// A recording's captures in every form: veth-c1, docker0 and eth0 as separate files,
/// `multi.pcapng`, and `any.pcap` with its `links.txt`.
fn capture_forms(d: &str) -> [String; 6] {
    [
        "veth-c1.pcap",
        "docker0.pcap",
        "eth0.pcap",
        "multi.pcapng",
        "any.pcap",
        "links.txt",
    ]
    .map(|f| format!("{d}/{f}"))
}

/// The same bytes from two containers over IPv6 (no IP ID): datagrams in fragments that
/// the host fragments again under identifications of its own, the bridge showing them
/// whole (`fragments6`; over IPv4, `fragments`, refragmented under the datagram's IP
/// ID), probes sent at once, their copies a millisecond or less apart
/// (`probes6`), and the same sent one way to a collector that answers nothing
/// (`sink6`). Every way of capturing the interfaces gives each container's connection
/// its own translation, as conntrack has it, and nothing to report.
#[test]
fn the_same_bytes_from_two_containers_keep_their_connections_apart() {
    for s in ["fragments", "fragments6", "probes6", "sink6"] {
        let (c1, c2) = if s.ends_with('6') {
            ("fd00:172:17::2", "fd00:172:17::3")
        } else {
            ("172.17.0.2", "172.17.0.3")
        };
        let d = format!("samples/{s}");
        let want = conntrack_translations(&format!("{d}/conntrack.txt"));
        assert_eq!(want.len(), 2, "{s}: {want:?}");
        let [veth, docker0, eth0, multi, any, links] = capture_forms(&d);
        // Where each container's path starts: its own link where it was captured (c2's
        // only in `any.pcap`), docker0 otherwise.
        for (args, c2_from) in [
            (vec![veth.as_str(), &docker0, &eth0], "docker0"),
            (vec![&multi], "docker0"),
            (vec![&any, "--links", &links], "veth-c2"),
        ] {
            let doc = correlate_json(&args);
            assert_eq!(mapping(&doc, "docker0", "eth0"), want, "{args:?}");
            assert_eq!(doc["findings"].as_array().unwrap().len(), 0, "{args:?}");
            let firsts: BTreeSet<(&str, &str)> = (doc["connections"].as_array().unwrap().iter())
                .map(|c| {
                    let h = &c["hops"][0];
                    (h["src"].as_str().unwrap(), h["point"].as_str().unwrap())
                })
                .collect();
            let expected = BTreeSet::from([(c1, "veth-c1"), (c2, c2_from)]);
            assert_eq!(firsts, expected, "{args:?}");
            let paths: Vec<usize> = (doc["connections"].as_array().unwrap().iter())
                .map(|c| c["hops"].as_array().unwrap().len())
                .collect();
            assert!(paths.iter().all(|&n| n <= 3), "{args:?}: {paths:?}");
        }
    }
}

/// Connections a host sends back out of the interface they came in by: NAT loopback,
/// clients outside reaching the host's own address, DNATed to a server on the same
/// link and masqueraded (`hairpin-routed`, `hairpin-routed6`), and a host with one
/// interface for two networks masquerading a client's traffic back out of it, the
/// destination the same (`one-armed`, `one-armed6`). eth0 sees each packet twice, the requests in
/// the client's flow first and the replies in the other flow first. Every packet
/// pairs with its other copy in both directions, each connection carries the
/// translation its conntrack entry has, and nothing is reported lost, whether the
/// interfaces come as separate files, one pcapng or one `-i any` capture.
#[test]
fn a_connection_turned_back_out_of_its_interface_crosses_both_ways() {
    for s in [
        "hairpin-routed",
        "hairpin-routed6",
        "one-armed",
        "one-armed6",
    ] {
        let d = format!("samples/{s}");
        let want = conntrack_translations(&format!("{d}/conntrack.txt"));
        let [veth, docker0, eth0, multi, any, links] = capture_forms(&d);
        let ct = format!("{d}/conntrack.txt");
        for args in [
            vec![veth.as_str(), &docker0, &eth0, "--conntrack", &ct],
            vec![&multi, "--conntrack", &ct],
            vec![&any, "--links", &links, "--conntrack", &ct],
            vec![eth0.as_str()],
        ] {
            let doc = correlate_json(&args);
            let codes: Vec<&str> = (doc["findings"].as_array().unwrap().iter())
                .map(|f| f["code"].as_str().unwrap())
                .filter(|&c| c != "client-address-lost")
                .collect();
            assert!(codes.is_empty(), "{args:?}: {codes:?}");
            let mut turned = BTreeSet::new();
            for c in doc["connections"].as_array().unwrap() {
                let hops = c["hops"].as_array().unwrap();
                for (t, to) in c["translations"].as_array().unwrap().iter().zip(&hops[1..]) {
                    let e = &t["evidence"];
                    let (fwd, rev) = (e["matched_fwd"].as_u64(), e["matched_rev"].as_u64());
                    assert_eq!(fwd, to["packets_fwd"].as_u64(), "{args:?}: {t}");
                    assert_eq!(rev, to["packets_rev"].as_u64(), "{args:?}: {t}");
                    assert!(rev > Some(0), "{args:?}: {t}");
                    for gap in ["lost_fwd", "lost_rev", "appeared_fwd", "appeared_rev"] {
                        assert_eq!(t["unmatched"][gap]["packets"], 0, "{args:?}: {gap} {t}");
                    }
                }
                if let [first, last] = &hops[..] {
                    if first["point"] == "eth0" && last["point"] == "eth0" {
                        turned.insert((tuple(first), tuple(last)));
                    }
                }
            }
            // The connections of every client but the containers, each turned back at
            // eth0 as conntrack translated it.
            let outside: BTreeSet<_> = (want.iter())
                .filter(|(orig, _)| !orig.contains("172.17.") && !orig.contains("fd00:"))
                .cloned()
                .collect();
            assert!(outside.len() >= 2, "{s}: {want:?}");
            assert_eq!(turned, outside, "{args:?}");
        }
    }
}

/// A UDP or ICMP tuple used again after conntrack forgot it is a new connection, NATed
/// afresh: at the kernel's default timeouts, or at the host's own when its settings are
/// among the inputs (a host that keeps entries 60 s kept both lives in one entry).
#[test]
fn a_tuple_quiet_past_its_timeout_is_used_again_as_a_new_connection() {
    let files = |s: &str| -> Vec<String> {
        ["veth-c1", "docker0", "eth0"]
            .iter()
            .map(|p| format!("samples/{s}/{p}.pcap"))
            .collect()
    };
    let lives = |doc: &Value| -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for c in doc["connections"].as_array().unwrap() {
            let hops = c["hops"].as_array().unwrap();
            let (first, last) = (&hops[0], &hops[hops.len() - 1]);
            let t = |h: &Value| format!("{} {}:{}", h["proto"], h["src"], h["sport"]);
            let to = format!("{} {}:{}", t(last), last["dst"], last["dport"]);
            out.entry(format!("{} {}", first["point"], t(first)))
                .or_default()
                .push(to);
        }
        out
    };
    // Outbound: c1's second life is moved off the port and identifier c2 took.
    let out = files("reuse-after-expiry");
    let args: Vec<&str> = out.iter().map(String::as_str).collect();
    let doc = correlate_json(&args);
    let got = lives(&doc);
    for proto in ["udp", "icmp"] {
        let reused: Vec<&Vec<String>> = (got.iter())
            .filter(|(k, v)| k.starts_with(&format!("\"veth-c1\" \"{proto}\"")) && v.len() > 1)
            .map(|(_, v)| v)
            .collect();
        assert_eq!(reused.len(), 1, "{proto}: {got:?}");
        assert_eq!(reused[0].len(), 2, "{proto}: {got:?}");
        assert_ne!(
            reused[0][0], reused[0][1],
            "{proto}: both lives NATed alike"
        );
    }
    assert_eq!(doc["summary"]["by_kind"]["snat"], 6, "{got:?}");
    // With the recording's own settings (the defaults), the same.
    let own = [
        &args[..],
        &["--conntrack", "samples/reuse-after-expiry/sysctl.txt"],
    ]
    .concat();
    assert_eq!(lives(&correlate_json(&own)), got);
    // A host that keeps UDP and ICMP entries 60 s made no new entry: no new flow.
    let dir = std::env::temp_dir().join(format!("natcheck-timeouts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sysctl = dir.join("sysctl.txt");
    std::fs::write(
        &sysctl,
        "net.netfilter.nf_conntrack_udp_timeout = 60\nnet.netfilter.nf_conntrack_icmp_timeout = 60\n",
    )
    .unwrap();
    let long = [&args[..], &["--conntrack", sysctl.to_str().unwrap()]].concat();
    let joined = lives(&correlate_json(&long));
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        joined.values().all(|v| v.len() == 1),
        "one flow a tuple at 60 s: {joined:?}"
    );
    // Inbound: one tuple outside, a backend a life.
    let inbound = files("reuse-after-expiry-dnat");
    let args: Vec<&str> = inbound.iter().map(String::as_str).collect();
    let got = lives(&correlate_json(&args));
    let outside: Vec<&Vec<String>> = got.values().filter(|v| v.len() > 1).collect();
    assert_eq!(outside.len(), 1, "{got:?}");
    assert_eq!(outside[0].len(), 2, "{got:?}");
    assert_ne!(outside[0][0], outside[0][1], "both lives to one backend");
}

/// An ICMP error that crosses the NAT back (a port unreachable about a datagram DNATed
/// to a container, with and without SNAT on the way) is translated as the connection it
/// quotes: the reports count it as an ICMP error, not as a translation of its own, and
/// name that connection; its endpoints carry the error, not an identifier.
#[test]
fn an_icmp_error_is_counted_as_one_and_names_the_connection_it_quotes() {
    for s in ["stale-udp", "stale-udp-vip"] {
        let files: Vec<String> = ["veth-c1", "docker0", "eth0"]
            .iter()
            .map(|p| format!("samples/{s}/{p}.pcap"))
            .collect();
        let a: Vec<&str> = files.iter().map(String::as_str).collect();
        let doc = correlate_json(&a);
        assert_eq!(doc["summary"]["by_kind"]["icmp-error"], 1, "{s}");
        let conns = doc["connections"].as_array().unwrap();
        let errors: Vec<&Value> = (conns.iter())
            .filter(|c| c["hops"][0]["icmp_error"].is_object())
            .collect();
        assert_eq!(errors.len(), 1, "{s}");
        let about = errors[0]["about"].as_str().unwrap();
        let quoted = conns.iter().find(|c| c["id"] == about).unwrap();
        assert_eq!(quoted["proto"], "udp", "{s}");
        // The error left where the datagram it answers arrived, and went back its way.
        let points = |c: &Value| -> Vec<String> {
            let mut p: Vec<String> = (c["hops"].as_array().unwrap().iter())
                .map(|h| h["point"].as_str().unwrap().to_string())
                .collect();
            p.sort();
            p
        };
        assert_eq!(points(errors[0]), points(quoted), "{s}");
        assert!(
            conns.iter().filter(|c| c["about"].is_string()).count() == 1,
            "{s}"
        );
        let out = natcheck(&[&["correlate"], &a[..]].concat());
        let text = stdout(&out);
        let id = errors[0]["id"].as_str().unwrap();
        let row = (text.lines())
            .find(|l| l.starts_with(&format!("{id} ")))
            .unwrap_or_else(|| panic!("{s}: no row for {id}\n{text}"));
        assert!(
            row.contains(&format!("icmp error about {about}")),
            "{s}: {row}"
        );
        assert!(
            row.contains("port unreachable") && !row.contains("id=0"),
            "{s}: {row}"
        );
        assert!(text.contains("1 icmp error"), "{s}: {text}");
    }
}

/// Every recording has the same paths whatever the order of its captures, with no
/// `--links`: as given, reversed, and sorted as the shell's `*.pcap` gives them. With
/// one container at work, its veth and the bridge see the same connections, and a lone
/// datagram is stamped once at both; the connections whose packets ordered the two
/// tell which is the port.
#[test]
fn paths_do_not_depend_on_the_order_of_the_captures() {
    for s in SCENARIOS.iter().chain(HAIRPIN_SCENARIOS) {
        let mut files: Vec<String> = (["veth-c1", "docker0", "eth0"].iter())
            .map(|p| format!("samples/{s}/{p}.pcap"))
            .collect();
        files.extend(second_uplink(s));
        let run = |files: &[String]| {
            let a: Vec<&str> = files.iter().map(String::as_str).collect();
            paths(&correlate_json(&a))
        };
        let want = run(&files);
        files.reverse();
        assert_eq!(run(&files), want, "{s}: reversed");
        files.sort();
        assert_eq!(run(&files), want, "{s}: sorted");
    }
}

/// A container's hairpin through bridge netfilter: the bridge's capture shows the
/// port's packet already DNATed, stamped with the port's time, so the two sightings
/// tie on time. The path is the same whichever capture is given first: the client's
/// link, the bridge, and the client's link again, with the DNAT on the way (TCP and
/// UDP, answered or not, the hairpin masquerade missing or skipped).
#[test]
fn a_bridged_hairpin_has_one_path_whatever_the_order_of_the_captures() {
    for s in [
        "fault-hairpin-no-masq",
        "fault-hairpin-udp",
        "fault-hairpin-mode-off",
    ] {
        let run = |order: [&str; 3]| {
            let files: Vec<String> = (order.iter())
                .map(|p| format!("samples/{s}/{p}.pcap"))
                .collect();
            let a: Vec<&str> = files.iter().map(String::as_str).collect();
            paths(&correlate_json(&a))
        };
        let want = run(["veth-c1", "docker0", "eth0"]);
        assert!(
            want.lines()
                .any(|l| l.starts_with("veth-c1[") && l.contains("--dnat-->  docker0[")),
            "{s}: {want}"
        );
        for order in [
            ["docker0", "eth0", "veth-c1"],
            ["eth0", "veth-c1", "docker0"],
        ] {
            assert_eq!(run(order), want, "{s}: {order:?}");
        }
    }
}
