//! Helpers shared by the integration tests: running the real binary, locating the
//! bundled samples and the shared capture corpus, skipping what cannot run here.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The lab's recorded scenarios (`samples/<name>/`).
pub const SCENARIOS: &[&str] = &[
    "masquerade",
    "masquerade6",
    "published-port",
    "port-collision",
    "nodeport",
    "snat-random-fully",
    "fault-forward-drop",
    "fault-invalid-leak",
    "fault-wrong-source-udp",
    "fault-wrong-source-udp6",
    "kube-rules",
    "fault-masq-miss",
    "fault-masq-miss6",
    "fault-nodeport-blocked",
    "kube-nft",
    "bulk-offload",
    "bulk-no-offload",
    "stale-udp",
    "stale-udp-vip",
    "fault-snat-exhaustion",
    "fault-snat-exhaustion-udp6",
    "fault-syn-dropped-once",
    "fault-dns-pair-dropped",
    "userland-proxy",
    "userland-proxy6",
    "fault-pmtu-black-hole",
    "fault-pmtu-black-hole6",
    "fault-asym-route",
    "fault-asym-route6",
    "asym-route-loose",
    "fault-ct-table-full",
    "fault-ct-table-full6",
    "forward-drop-clean",
    "overlay-vxlan",
    "overlay-ipip",
    "fault-overlay-masq",
    "fault-overlay-masq-ipip",
    "fault-underlay-drop",
    "fault-underlay-blocked",
    "fault-vxlan-mtu",
    "redirect-local",
    "snat-pool",
    "netmap",
    "fragments6",
    "probes6",
    "sink6",
    "hairpin-routed",
    "hairpin-routed6",
    "one-armed",
    "one-armed6",
    "fault-hairpin-routed-no-masq",
    "fault-hairpin-routed-no-masq6",
    "ftp-alg",
    "ftp-alg6",
    "tftp-alg",
    "local-published",
    "published-port6",
    "local-published6",
    "port-collision6",
    "snat-pool6",
    "netmap6",
    "redirect-local6",
    "nodeport6",
    "nft-inet6",
    "icmp-errors6",
    "bulk-offload6",
    "egress-snat",
    "fragments",
    "midstream",
    "docker-nft",
    "fault-loopback-published",
    "fault-localnet-service",
    "reuse-after-expiry",
    "reuse-after-expiry-dnat",
    "fault-idle-expiry-remap",
    "fault-idle-expiry-remap6",
    "fault-state-loss-dnat",
    "fault-state-loss-udp",
    "fault-state-loss-icmp",
];

/// Scenarios where conntrack adds a finding or a fact by design, left out of the tests
/// that say it adds none: a container reaching its own published port without hairpin
/// masquerade (the first two) is named from the entry (`ct-hairpin-no-masq`), which the
/// captures alone do not name; answers that crossed a bridge without netfilter leave
/// their entry `[UNREPLIED]` (`ct-unreplied`); a hairpin turned back by a bridge port
/// with hairpin mode off leaves no entry, which the finding then says.
pub const HAIRPIN_SCENARIOS: &[&str] = &[
    "fault-hairpin-no-masq",
    "fault-hairpin-udp",
    "fault-hairpin-no-br-netfilter",
    "fault-hairpin-mode-off",
    "fault-hairpin-mode-off6",
];

/// Recordings of a topology of their own, whose capture points are not veth-c1,
/// docker0 and eth0 (`routed-pods`: cali-c1, cali-c2, eth0): their tests name their
/// captures.
pub const OWN_TOPOLOGY_SCENARIOS: &[&str] = &["routed-pods"];

/// The capture of a scenario's second uplink (`eth1.pcap`, in the asymmetric-route
/// recordings), when it has one.
pub fn second_uplink(scenario: &str) -> Option<String> {
    let rel = format!("samples/{scenario}/eth1.pcap");
    root().join(&rel).is_file().then_some(rel)
}

/// `correlate`'s arguments for a recording: its captures (veth-c1, docker0, eth0, and a
/// second uplink when it has one) and its conntrack snapshot.
pub fn recording(scenario: &str) -> Vec<String> {
    let d = format!("samples/{scenario}");
    let mut args = vec![
        "correlate".to_string(),
        format!("{d}/veth-c1.pcap"),
        format!("{d}/docker0.pcap"),
        format!("{d}/eth0.pcap"),
    ];
    args.extend(second_uplink(scenario));
    args.extend(["--conntrack".into(), format!("{d}/conntrack.txt")]);
    args
}

/// The four points of an overlay recording under the labels given: node A's pod link
/// and eth0, then node B's eth0 and pod link from `node_b` (`node-b`, or
/// `node-b/shifted` for node B's clock moved).
pub fn overlay_points(scenario: &str, labels: [&str; 4], node_b: &str) -> Vec<String> {
    let d = format!("samples/{scenario}");
    labels
        .iter()
        .zip([
            "veth-c1",
            "eth0",
            &format!("{node_b}/eth0"),
            &format!("{node_b}/veth-c1"),
        ])
        .map(|(l, f)| format!("{l}={d}/{f}.pcap"))
        .collect()
}

pub fn sample(rel: &str) -> String {
    format!("samples/{rel}")
}

/// Runs `natcheck ARGS...` from the crate root (so sample paths in reports are relative).
pub fn natcheck(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_natcheck"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("run natcheck")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Whether `NATCHECK_TEST_STRICT=1`: then a test that cannot run here fails.
pub fn strict() -> bool {
    std::env::var_os("NATCHECK_TEST_STRICT").is_some_and(|v| v == "1")
}

/// Says why a test (or a part of one) cannot run here: prints `skipped: REASON`, and
/// the caller returns (`return skip(...)`). Under `NATCHECK_TEST_STRICT=1`, which
/// `.ci/run` sets, it panics with the reason instead: where every tool, root and the
/// corpus are meant to be present, a skipped test is a failure, not a pass.
#[track_caller]
pub fn skip(reason: impl std::fmt::Display) {
    if strict() {
        panic!("cannot run: {reason} (NATCHECK_TEST_STRICT=1 makes this a failure)");
    }
    eprintln!("skipped: {reason}");
}

/// Whether an external tool is on PATH. Tests that need one [`skip`] without it.
/// Why a namespace lab cannot run here, if it cannot: not root (`root_for` says what
/// needs it), or one of `tools` missing.
pub fn lab_unavailable(root_for: &str, tools: &[&str]) -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some(format!("not root ({root_for} need it)"));
    }
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !have(t)).collect();
    (!missing.is_empty()).then(|| format!("missing tools: {}", missing.join(", ")))
}

pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// The tcpdump test-capture corpus shipped beside the project (`../shared/corpus`).
pub fn corpus_dir() -> Option<PathBuf> {
    let d = root().join("../shared/corpus/tcpdump-tests");
    d.is_dir().then_some(d)
}

/// The Suricata test-capture corpus shipped beside the project
/// (`../shared/corpus/suricata-verify`, one folder per test).
pub fn suricata_dir() -> Option<PathBuf> {
    let d = root().join("../shared/corpus/suricata-verify");
    d.is_dir().then_some(d)
}

pub fn scenario_dir(name: &str) -> Option<PathBuf> {
    let d = root().join("samples").join(name);
    d.join("docker0.pcap").is_file().then_some(d)
}

pub fn files_with_ext(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == ext))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The system python3 for lab helpers: it starts faster than a version manager's shim.
pub fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// A python3 that imports every one of `modules`: [`python`], else the `python3` on
/// PATH (where `pip install` puts packages when that is another interpreter).
pub fn python_with(modules: &[&str]) -> Option<&'static str> {
    let check = format!("import {}", modules.join(", "));
    [python(), "python3"].into_iter().find(|py| {
        Command::new(py)
            .args(["-c", &check])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// Runs a command of a lab test, failing the test with its output if it fails.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// [`run`] for a command given as words.
pub fn sh(args: &[&str]) -> Output {
    run(Command::new(args[0]).args(&args[1..]))
}

/// The findings of connection `c` of a JSON report `doc`, in full: a connection's
/// `findings` are their positions in the report's `findings`.
pub fn findings_of<'a>(
    doc: &'a serde_json::Value,
    c: &serde_json::Value,
) -> Vec<&'a serde_json::Value> {
    let all = doc["findings"].as_array().expect("the report's findings");
    (c["findings"]
        .as_array()
        .expect("a connection's findings")
        .iter())
    .map(|k| &all[k.as_u64().expect("a position") as usize])
    .collect()
}
