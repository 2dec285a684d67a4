//! The synthetic capture generator behind the benchmarks (`benches/support/synth.rs`)
//! against the real binary: on small generated docker0/eth0 pairs, `natcheck correlate`
//! must pair every connection with its own translation, the port reallocations the
//! generator made and the connections that held the wanted ports, with every packet
//! matched. This keeps the benchmark inputs honest (they measure natcheck doing the
//! whole job, not failing fast) and checks natcheck at a scale the lab samples lack.

#[path = "../../benches/support/synth.rs"]
mod synth;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use synth::{Config, Ends, Proto, Truth};

use crate::util::skip;

/// A scratch directory for one test, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "natcheck-bench-synth-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn correlate_json(dir: &Path) -> (i32, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_natcheck"))
        .arg("correlate")
        .arg(dir.join("docker0.pcap"))
        .arg(dir.join("eth0.pcap"))
        .args(["--format", "json"])
        .output()
        .expect("natcheck runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let doc = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("natcheck printed no JSON ({e}); stderr: {stderr}"));
    (out.status.code().expect("exited normally"), doc)
}

/// A hop's tuple as the generator writes it (ICMP echo: no destination port, 0 here).
fn hop_ends(hop: &Value) -> Ends {
    let proto = match hop["proto"].as_str() {
        Some("tcp") => Proto::Tcp,
        Some("udp") => Proto::Udp,
        Some("icmp") => Proto::Icmp,
        other => panic!("unexpected protocol {other:?} in {hop}"),
    };
    let addr = |k: &str| {
        hop[k]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no {k} in {hop}"))
    };
    let port = |k: &str| hop[k].as_u64().unwrap_or(0) as u16;
    Ends {
        proto,
        src: addr("src"),
        sport: port("sport"),
        dst: addr("dst"),
        dport: port("dport"),
    }
}

fn count(v: &Value) -> u64 {
    v["packets"].as_u64().expect("packet count")
}

/// Checks natcheck's report against the ground truth, connection by connection.
fn check(truth: &Truth, doc: &Value, skew_ns: i64) {
    assert_eq!(
        doc["warnings"].as_array().map(Vec::len),
        Some(0),
        "warnings"
    );
    let conns = doc["connections"].as_array().expect("connections");
    assert_eq!(
        conns.len(),
        truth.conns.len(),
        "one connection per generated one"
    );

    // natcheck's connections by their docker0 tuple, and their ids.
    let mut by_inside: BTreeMap<Ends, &Value> = BTreeMap::new();
    let mut inside_of_id: BTreeMap<&str, Ends> = BTreeMap::new();
    for c in conns {
        let hops = c["hops"].as_array().expect("hops");
        assert_eq!(hops.len(), 2, "two hops: {c}");
        assert_eq!(hops[0]["point"], "docker0", "initiator side first: {c}");
        assert_eq!(hops[1]["point"], "eth0");
        let inside = hop_ends(&hops[0]);
        assert!(by_inside.insert(inside, c).is_none(), "{inside:?} twice");
        inside_of_id.insert(c["id"].as_str().expect("id"), inside);
    }

    for t in &truth.conns {
        let c = by_inside
            .get(&t.inside)
            .unwrap_or_else(|| panic!("no connection for {}", synth::fmt_ends(&t.inside)));
        let what = synth::fmt_ends(&t.inside);
        assert_eq!(hop_ends(&c["hops"][1]), t.outside, "{what}: eth0 tuple");
        let tr = &c["translations"][0];
        assert_eq!(
            c["translations"].as_array().map(Vec::len),
            Some(1),
            "{what}"
        );
        assert_eq!(tr["kind"], "snat", "{what}");
        assert_eq!(
            tr["port_reallocated"].as_bool(),
            Some(t.port_reallocated()),
            "{what}: port reallocation"
        );
        let ev = &tr["evidence"];
        assert_eq!(
            ev["matched_fwd"].as_u64(),
            Some(u64::from(t.packets_out)),
            "{what}"
        );
        assert_eq!(
            ev["matched_rev"].as_u64(),
            Some(u64::from(t.packets_in)),
            "{what}"
        );
        for k in ["lost_fwd", "lost_rev", "appeared_fwd", "appeared_rev"] {
            assert_eq!(count(&tr["unmatched"][k]), 0, "{what}: {k}");
        }
        // Forwarding latency is what the generator used: 20 to 60 µs plus up to 7 µs
        // of jitter (a little more where one direction's packets were spaced to keep
        // their order). Only on one clock: a skew is estimated to within a forwarding
        // latency (below), which shifts every latency by as much.
        if skew_ns == 0 {
            let p50 = tr["latency"]["p50_ns"].as_i64().expect("latency");
            assert!((15_000..=120_000).contains(&p50), "{what}: latency {p50}");
        }

        match t.holder {
            None => assert!(tr["port_realloc"].is_null(), "{what}: {tr}"),
            Some(h) => {
                let r = &tr["port_realloc"];
                assert_eq!(r["wanted_sport"].as_u64(), Some(u64::from(t.inside.sport)));
                assert_eq!(r["got_sport"].as_u64(), Some(u64::from(t.outside.sport)));
                let holder = r["colliding"].as_str().expect("a holder was captured");
                assert_eq!(
                    inside_of_id.get(holder),
                    Some(&truth.conns[h as usize].inside),
                    "{what}: holder"
                );
            }
        }
    }

    let summary = &doc["summary"];
    assert_eq!(
        summary["correlated"].as_u64(),
        Some(truth.conns.len() as u64)
    );
    assert_eq!(
        summary["port_reallocations"].as_u64(),
        Some(truth.reallocated() as u64)
    );
    // eth0's clock offset from docker0 is the skew the generator added, or 0 without
    // one. natcheck takes the median time difference of packets seen once at both
    // points, which lies within the outbound or the inbound latency cluster (whichever
    // holds more packets), so it can be off by up to one forwarding latency (≤ 67 µs).
    let off = doc["points"][1]["clock_offset_ns"]
        .as_i64()
        .expect("offset");
    let tolerance = if skew_ns == 0 { 0 } else { 70_000 };
    assert!(
        (off - skew_ns).abs() <= tolerance,
        "clock offset {off} for a skew of {skew_ns}"
    );
}

fn run(name: &str, cfg: &Config) {
    let dir = Scratch::new(name);
    let truth = synth::write_pair(cfg, &dir.0).expect("pair written");
    // The configurations below must exercise reallocation and every protocol.
    assert!(
        truth.reallocated() >= 3,
        "{} reallocations",
        truth.reallocated()
    );
    for p in [Proto::Tcp, Proto::Udp, Proto::Icmp] {
        assert!(truth.count(p) > 0, "no {p:?}");
    }
    let (code, doc) = correlate_json(&dir.0);
    // Reallocations are info findings: nothing fails the run.
    assert_eq!(code, 0, "exit status");
    check(&truth, &doc, cfg.skew_ns);
}

#[test]
fn correlate_recovers_generated_masquerade() {
    run(
        "plain",
        &Config {
            packets: 4_000,
            collision_permille: 40,
            ..Config::default()
        },
    );
}

#[test]
fn correlate_recovers_generated_masquerade_with_skewed_clock() {
    // Few containers and a high rate: many connections to one destination at once,
    // and eth0's capture host 3.25 ms ahead of docker0's.
    run(
        "skewed",
        &Config {
            seed: 7,
            packets: 6_000,
            containers: 3,
            conns_per_sec: 20_000,
            collision_permille: 60,
            skew_ns: 3_250_000,
            ..Config::default()
        },
    );
}

#[test]
fn generation_is_deterministic() {
    let digest = |cfg: &Config| {
        let mut sum = [0u64; 2];
        let truth = synth::generate(cfg, |side, ts, bytes| {
            let s = &mut sum[side as usize];
            *s = s.wrapping_mul(0x100_0000_01b3) ^ ts as u64;
            for &b in bytes {
                *s = s.wrapping_mul(0x100_0000_01b3) ^ u64::from(b);
            }
        });
        (sum, truth.packets, truth.conns.len())
    };
    let cfg = Config {
        packets: 3_000,
        ..Config::default()
    };
    let a = digest(&cfg);
    assert_eq!(a, digest(&cfg));
    assert_ne!(
        a,
        digest(&Config {
            seed: 2,
            ..cfg.clone()
        })
    );
    // Both sides hold every packet.
    assert!(a.1 >= 3_000);
}

/// tshark (when installed) reads both files with no error or warning beyond the TCP
/// resets the generator sends on purpose, checksums included.
#[test]
fn tshark_reads_generated_pair() {
    if Command::new("tshark").arg("--version").output().is_err() {
        return skip("tshark is not installed (.ci/run installs it): generated pair not read");
    }
    let dir = Scratch::new("tshark");
    let truth = synth::write_pair(
        &Config {
            packets: 3_000,
            ..Config::default()
        },
        &dir.0,
    )
    .expect("pair written");
    for name in ["docker0.pcap", "eth0.pcap"] {
        let out = Command::new("tshark")
            .arg("-r")
            .arg(dir.0.join(name))
            .args(["-q", "-z", "expert,warn"])
            .args(["-o", "ip.check_checksum:TRUE"])
            .args(["-o", "tcp.check_checksum:TRUE"])
            .args(["-o", "udp.check_checksum:TRUE"])
            .output()
            .expect("tshark runs");
        assert!(out.status.success(), "tshark failed on {name}");
        let text = String::from_utf8_lossy(&out.stdout);
        // Lines of the expert table: frequency, group, protocol, summary.
        let rows: Vec<&str> = text
            .lines()
            .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
            .collect();
        // The generator aborts some connections: their resets prove the table was read.
        assert!(
            truth.conns.iter().any(|c| c.inside.proto == Proto::Tcp),
            "no TCP generated"
        );
        assert!(!rows.is_empty(), "{name}: no expert rows in:\n{text}");
        for row in &rows {
            assert!(
                row.contains("Connection reset (RST)"),
                "{name}: tshark complains: {row}\n{text}"
            );
        }
    }
}
