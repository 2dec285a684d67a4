//! Segmentation offloads on the real-kernel lab samples: `bulk-offload` carries bulk
//! TCP through MASQUERADE and a published port while docker0 and eth0 see the
//! streams cut differently (super-packets and GRO aggregates at one, MSS-sized
//! segments at the other), and `bulk-offload6` the same over IPv6, which has no IP ID;
//! `bulk-no-offload` is the same traffic with offloads off.
//! Both correlate into the connections conntrack recorded, with nothing lost, and the
//! reports say where packet counts differ because of the cut.

use std::path::{Path, PathBuf};

use pcap_file::pcap::{PcapReader, PcapWriter};
use serde_json::Value;

use crate::util::*;

/// `natcheck correlate FLAGS...` of the scenario's points with its conntrack table
/// and event log.
fn report(scenario: &str, flags: &[&str], points: &[&str]) -> (i32, String) {
    let mut args: Vec<String> = ["correlate"]
        .iter()
        .chain(flags)
        .map(|s| s.to_string())
        .collect();
    args.extend(
        points
            .iter()
            .map(|p| format!("samples/{scenario}/{p}.pcap")),
    );
    for f in ["conntrack.txt", "events.txt"] {
        args.push("--conntrack".into());
        args.push(format!("samples/{scenario}/{f}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = natcheck(&args);
    (out.status.code().expect("exited"), stdout(&out))
}

fn json(scenario: &str, points: &[&str]) -> Value {
    let (code, out) = report(scenario, &["--format", "json"], points);
    assert_eq!(code, 0, "{scenario}: {out}");
    serde_json::from_str(&out).expect("valid JSON")
}

fn array(v: &Value) -> &Vec<Value> {
    v.as_array().unwrap_or_else(|| panic!("not an array: {v}"))
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// The connection whose first hop's destination port is `dport`.
fn conn(doc: &Value, dport: u64) -> &Value {
    array(&doc["connections"])
        .iter()
        .find(|c| c["hops"][0]["dport"] == dport)
        .unwrap_or_else(|| panic!("no connection to port {dport}"))
}

/// The addresses of a recording: the container, the host's uplink, the client outside.
fn addresses(scenario: &str) -> [&'static str; 3] {
    if scenario.ends_with('6') {
        ["fd00:172:17::2", "2001:db8:113::1", "2001:db8:100::20"]
    } else {
        ["172.17.0.2", "203.0.113.1", "198.51.100.20"]
    }
}

/// What every recording must show: no finding, both witnesses agreeing with the
/// wire, the outbound MASQUERADE and the inbound DNAT rebuilt as conntrack says.
fn clean_and_translated(scenario: &str, doc: &Value) {
    let [container, host, client] = addresses(scenario);
    assert!(array(&doc["findings"]).is_empty(), "{scenario}");
    for w in array(&doc["conntrack"]) {
        assert_eq!(n(&w["on_wire"]), 2, "{scenario}: {w}");
        assert_eq!(w["on_wire"], w["agree"], "{scenario}: {w}");
    }
    assert_eq!(array(&doc["connections"]).len(), 2, "{scenario}");
    let out = conn(doc, 7000);
    let hops = array(&out["hops"]);
    assert_eq!(hops[0]["src"], container, "{scenario}");
    assert_eq!(hops.last().unwrap()["src"], host, "{scenario}");
    let kinds: Vec<&Value> = array(&out["translations"])
        .iter()
        .map(|t| &t["kind"])
        .collect();
    assert!(kinds.contains(&&"snat".into()), "{scenario}: {kinds:?}");
    let inbound = conn(doc, 8080);
    let last = array(&inbound["hops"]).last().unwrap().clone();
    assert_eq!(
        (&last["dst"], &last["dport"]),
        (&container.into(), &80.into()),
        "{scenario}"
    );
    assert_eq!(inbound["hops"][0]["src"], client, "{scenario}");
    for c in array(&doc["connections"]) {
        for t in array(&c["translations"]) {
            for gap in ["lost_fwd", "lost_rev", "appeared_fwd", "appeared_rev"] {
                assert_eq!(n(&t["unmatched"][gap]["packets"]), 0, "{scenario}: {t}");
            }
        }
    }
}

#[test]
fn offloaded_streams_cut_differently_pair_and_lose_nothing() {
    for (scenario, points) in ["bulk-offload", "bulk-offload6"].into_iter().flat_map(|s| {
        [
            (s, &["docker0", "eth0"][..]),
            (s, &["veth-c1", "docker0", "eth0"]),
        ]
    }) {
        let doc = json(scenario, points);
        clean_and_translated(scenario, &doc);
        for c in array(&doc["connections"]) {
            let hops = array(&c["hops"]);
            // The payload is the same at every hop; packet counts are not.
            for dir in ["payload_bytes_fwd", "payload_bytes_rev"] {
                let bytes: Vec<u64> = hops.iter().map(|h| n(&h[dir])).collect();
                assert!(bytes[0] >= 80_000, "{dir}: {bytes:?}");
                assert!(bytes.iter().all(|&b| b == bytes[0]), "{dir}: {bytes:?}");
            }
            let at = |point: &str| hops.iter().find(|h| h["point"] == point).unwrap();
            let (d, e) = (at("docker0"), at("eth0"));
            assert_ne!(d["packets_fwd"], e["packets_fwd"], "{}", c["id"]);
            assert_ne!(d["packets_rev"], e["packets_rev"], "{}", c["id"]);
            // The docker0-eth0 translation accounts for the bytes both ways.
            let t = array(&c["translations"])
                .iter()
                .find(|t| {
                    [&t["from"], &t["to"]].contains(&&"docker0".into())
                        && [&t["from"], &t["to"]].contains(&&"eth0".into())
                })
                .expect("a docker0-eth0 translation");
            for dir in ["fwd", "rev"] {
                let r = &t["resegmented"][dir];
                assert!(n(&r["sent"]) > 0 && n(&r["received"]) > 0, "{t}");
                assert!(n(&r["bytes"]) > 0, "{t}");
            }
        }
    }
}

#[test]
fn the_same_traffic_without_offloads_matches_one_for_one() {
    let doc = json("bulk-no-offload", &["veth-c1", "docker0", "eth0"]);
    clean_and_translated("bulk-no-offload", &doc);
    for c in array(&doc["connections"]) {
        let hops = array(&c["hops"]);
        for h in hops {
            assert_eq!(h["packets_fwd"], hops[0]["packets_fwd"], "{}", c["id"]);
            assert_eq!(h["packets_rev"], hops[0]["packets_rev"], "{}", c["id"]);
            assert!(h.get("payload_bytes_fwd").is_none(), "{h}");
        }
        for t in array(&c["translations"]) {
            assert!(t.get("resegmented").is_none(), "{t}");
            let e = &t["evidence"];
            assert_eq!(
                n(&e["matched_fwd"]) + n(&e["matched_rev"]),
                n(&hops[0]["packets_fwd"]) + n(&hops[0]["packets_rev"]),
                "{t}"
            );
        }
    }
}

#[test]
fn text_and_markdown_say_where_counts_differ_by_segmentation() {
    let (code, text) = report("bulk-offload", &["--detail"], &["docker0", "eth0"]);
    assert_eq!(code, 0);
    assert!(
        text.starts_with("findings: 0 errors, 0 warnings, 0 info\n"),
        "{text}"
    );
    assert_eq!(text.matches("| resegmented: ").count(), 4, "{text}");
    assert_eq!(text.matches(" payload bytes)  closed").count(), 4, "{text}");
    let (_, plain) = report("bulk-no-offload", &["--detail"], &["docker0", "eth0"]);
    assert!(!plain.contains("resegmented") && !plain.contains("payload bytes"));
    let (_, md) = report(
        "bulk-offload",
        &["--format", "markdown"],
        &["docker0", "eth0"],
    );
    insta::assert_snapshot!("markdown-bulk-offload", md);
}

/// `from` (a classic Ethernet pcap of the lab) written to `to` without the `nth`
/// (from 0) TCP data segment from `src` to `dst` (IPv4 addresses and TCP ports).
fn without_segment(from: &Path, to: &Path, src: ([u8; 4], u16), dst: ([u8; 4], u16), nth: usize) {
    let mut reader = PcapReader::new(std::fs::File::open(from).unwrap()).unwrap();
    let file = std::fs::File::create(to).unwrap();
    let mut writer = PcapWriter::with_header(file, reader.header()).unwrap();
    let mut seen = 0;
    while let Some(p) = reader.next_packet() {
        let p = p.unwrap();
        let d = p.data();
        // Ethernet, IPv4 (IHL 5 in the lab), TCP: addresses, ports, data offset.
        let ports = |at: usize| u16::from_be_bytes([d[at], d[at + 1]]);
        let is_tcp = d.len() > 54 && d[12..14] == [0x08, 0x00] && d[23] == 6;
        let data = is_tcp && {
            let ip_len = usize::from(u16::from_be_bytes([d[16], d[17]]));
            ip_len > 20 + usize::from(d[46] >> 4) * 4 || ip_len == 0
        };
        let selected = data
            && d[26..30] == src.0
            && ports(34) == src.1
            && d[30..34] == dst.0
            && ports(36) == dst.1;
        if selected {
            seen += 1;
            if seen - 1 == nth {
                continue;
            }
        }
        writer.write_packet(&p).unwrap();
    }
    assert!(
        seen > nth,
        "only {seen} such segments in {}",
        from.display()
    );
}

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The lost findings of `bulk-offload` with one data segment taken out of one
/// capture (`point`), as (from, to, packets, evidence).
fn lost_without(point: &str, src: ([u8; 4], u16), dst: ([u8; 4], u16)) -> Vec<Value> {
    let dir = Scratch(std::env::temp_dir().join(format!(
        "natcheck-segmentation-{}-{point}",
        std::process::id()
    )));
    std::fs::create_dir_all(&dir.0).unwrap();
    let sample = root().join("samples/bulk-offload");
    let mut files = Vec::new();
    for p in ["docker0", "eth0"] {
        let to = dir.0.join(format!("{p}.pcap"));
        if p == point {
            without_segment(&sample.join(format!("{p}.pcap")), &to, src, dst, 9);
        } else {
            std::fs::copy(sample.join(format!("{p}.pcap")), &to).unwrap();
        }
        files.push(to.display().to_string());
    }
    let out = natcheck(&["correlate", "--format", "json", &files[0], &files[1]]);
    let doc: Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    array(&doc["findings"]).clone()
}

#[test]
fn a_segment_that_never_crossed_is_lost_whatever_the_cut() {
    const C1: [u8; 4] = [172, 17, 0, 2];
    const HOST: [u8; 4] = [203, 0, 113, 1];
    const SERVER: [u8; 4] = [203, 0, 113, 2];
    const CLIENT: [u8; 4] = [198, 51, 100, 20];
    // The lab's ephemeral ports vary by recording: read them from the report.
    let doc = json("bulk-offload", &["docker0", "eth0"]);
    let sport = |client: [u8; 4], dport: u64| {
        let hop = &conn(&doc, dport)["hops"][0];
        assert_eq!(
            hop["src"],
            std::net::Ipv4Addr::from(client).to_string().as_str()
        );
        n(&hop["sport"]) as u16
    };
    // Outbound: one of the MSS-sized segments eth0 cut from c1's super-packets. The
    // super-packet it belonged to, seen whole at docker0, is the one packet lost.
    let out = sport(C1, 7000);
    let f = lost_without("eth0", (HOST, out), (SERVER, 7000));
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0]["severity"], "warning");
    assert_eq!(
        (&f[0]["detail"]["from"], &f[0]["detail"]["to"]),
        (&"docker0".into(), &"eth0".into())
    );
    assert_eq!(f[0]["detail"]["direction"], "fwd");
    assert_eq!(f[0]["packets"], 1);
    let evidence = f[0]["evidence"].to_string();
    assert!(evidence.contains("cut differently"), "{evidence}");
    // Inbound: one of the segments docker0 cut from the GRO aggregates of the
    // outside's data on the published port.
    let inb = sport(CLIENT, 8080);
    let f = lost_without("docker0", (CLIENT, inb), (C1, 80));
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(
        (&f[0]["detail"]["from"], &f[0]["detail"]["to"]),
        (&"eth0".into(), &"docker0".into())
    );
    assert_eq!(f[0]["packets"], 1);
}

#[test]
fn output_does_not_depend_on_the_thread_count() {
    let d = "samples/bulk-offload";
    let points = [
        format!("{d}/veth-c1.pcap"),
        format!("{d}/docker0.pcap"),
        format!("{d}/eth0.pcap"),
    ];
    for fmt in ["json", "table", "html"] {
        let run = |j: &str| {
            let mut a = vec!["-j", j, "correlate", "--format", fmt];
            if fmt == "table" {
                a.push("--detail");
            }
            a.extend(points.iter().map(String::as_str));
            stdout(&natcheck(&a))
        };
        assert_eq!(run("1"), run("4"), "{fmt}");
    }
}
