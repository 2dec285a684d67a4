//! `natcheck collect` against the real kernel, then `natcheck correlate DIR` on the
//! bundle it wrote.
//!
//! The lab: a router namespace that masquerades its inside network (10.232.0.0/24)
//! to 203.0.113.1 and publishes TCP port 8080 to 10.232.0.2:80 (DNAT), a client
//! namespace inside (10.232.0.2, which also serves the published port) and a server
//! outside (203.0.113.2, TCP and UDP echo). `natcheck collect` runs inside the
//! router on its inside and outside interfaces and on the client's interface
//! (`CLIENT:eth0`, another namespace) while the client and the server make TCP, UDP
//! and ICMP traffic both ways, and is stopped by SIGINT. The bundle must then be
//! complete (every file its manifest lists, with that size and SHA-256), its
//! conntrack table must be the kernel's, and `correlate DIR` must rebuild every
//! translation that table holds, using the bundle's conntrack and rules by itself.
//!
//! The second test checks what fails at once and writes nothing (an interface or
//! namespace that does not exist, --filter without tcpdump), what a missing tool
//! costs (its file only, named in the manifest), and --filter with --count.
//!
//! Needs root and `ip`, `iptables`, `conntrack`, `tcpdump`, `python3` (installed by
//! .ci/run); without them the tests say why and pass, or fail under
//! `NATCHECK_TEST_STRICT=1`. Namespaces are named after the test process, every
//! address is a documentation or private one that exists only in them, and they are
//! deleted when the lab is dropped, also on failure.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use natcheck::bundle::{Bundle, Kind};
use natcheck::conntrack::{self, Entry};
use sha2::{Digest, Sha256};

use crate::util::{self, python, run, sh, skip};

const SERVER: &str = "203.0.113.2";
const ROUTER_OUT: &str = "203.0.113.1";
const CLIENT: &str = "10.232.0.2";

fn unavailable() -> Option<String> {
    util::lab_unavailable(
        "network namespaces and packet sockets",
        &["ip", "iptables", "conntrack", "tcpdump", "python3"],
    )
}

/// The namespaces, the servers running in them, and a scratch directory; all
/// removed when dropped.
struct Lab {
    client: String,
    router: String,
    server: String,
    servers: Vec<Child>,
    scratch: PathBuf,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.servers {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in [&self.client, &self.router, &self.server] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

impl Lab {
    fn build(tag: &str) -> Lab {
        let pid = std::process::id();
        let lab = Lab {
            client: format!("nccol-{tag}-{pid}-c"),
            router: format!("nccol-{tag}-{pid}-r"),
            server: format!("nccol-{tag}-{pid}-s"),
            servers: Vec::new(),
            scratch: std::env::temp_dir().join(format!("natcheck-collect-{tag}-{pid}")),
        };
        let _ = std::fs::remove_dir_all(&lab.scratch);
        std::fs::create_dir_all(&lab.scratch).expect("scratch directory");
        for ns in [&lab.client, &lab.router, &lab.server] {
            sh(&["ip", "netns", "add", ns]);
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        let (c, r, s) = (&lab.client, &lab.router, &lab.server);
        sh(&[
            "ip", "-n", r, "link", "add", "in0", "type", "veth", "peer", "name", "eth0", "netns", c,
        ]);
        sh(&[
            "ip", "-n", r, "link", "add", "out0", "type", "veth", "peer", "name", "eth0", "netns",
            s,
        ]);
        for (ns, dev, addr) in [
            (c, "eth0", "10.232.0.2/24"),
            (r, "in0", "10.232.0.1/24"),
            (r, "out0", "203.0.113.1/24"),
            (s, "eth0", "203.0.113.2/24"),
        ] {
            sh(&["ip", "-n", ns, "addr", "add", addr, "dev", dev]);
            sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
        }
        sh(&[
            "ip",
            "-n",
            c,
            "route",
            "add",
            "default",
            "via",
            "10.232.0.1",
        ]);
        lab.exec(r, &["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
        for rule in [
            "-t nat -A POSTROUTING -s 10.232.0.0/24 -o out0 -j MASQUERADE",
            "-t nat -A PREROUTING -i out0 -p tcp --dport 8080 -j DNAT --to-destination 10.232.0.2:80",
        ] {
            let mut args = vec!["iptables"];
            args.extend(rule.split(' '));
            lab.exec(r, &args);
        }
        lab
    }

    fn exec(&self, ns: &str, args: &[&str]) -> Output {
        run(Command::new("ip").args(["netns", "exec", ns]).args(args))
    }

    /// Starts a Python server in `ns` and waits for it to print `ready`.
    fn serve(&mut self, ns: &str, script: &str) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, python(), "-u", "-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("server output");
        assert_eq!(line.trim(), "ready", "the server in {ns} did not start");
        self.servers.push(child);
    }

    /// TCP and UDP echo outside, the published port's backend inside.
    fn start_servers(&mut self) {
        let echo = |addr: &str, udp: bool| {
            format!(
                r#"
import socket, threading
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("{addr}", {tcp})); ls.listen(16)
def serve(c):
    while True:
        d = c.recv(4096)
        if not d: break
        c.sendall(d)
    c.close()
def tcp():
    while True:
        c, _ = ls.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()
def udp():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("{addr}", 5353))
    while True:
        d, peer = u.recvfrom(4096); u.sendto(d, peer)
threading.Thread(target=tcp, daemon=True).start()
if {udp}: threading.Thread(target=udp, daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"#,
                tcp = if udp { 7000 } else { 80 },
                udp = if udp { "True" } else { "False" },
            )
        };
        let (c, s) = (self.client.clone(), self.server.clone());
        self.serve(&s, &echo(SERVER, true));
        self.serve(&c, &echo(CLIENT, false));
    }

    /// The traffic: three TCP connections and two UDP exchanges out (masqueraded),
    /// a datagram to a closed port (its ICMP error comes back through the NAT), two
    /// connections in to the published port (DNAT), and an ICMP echo out.
    fn traffic(&self) {
        let out = format!(
            r#"
import socket
for i in range(3):
    t = socket.create_connection(("{SERVER}", 7000), timeout=10)
    t.sendall(b"hello %d" % i); assert t.recv(64) == b"hello %d" % i; t.close()
for i in range(2):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(10)
    u.sendto(b"ping %d" % i, ("{SERVER}", 5353)); assert u.recvfrom(64)[0] == b"ping %d" % i; u.close()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(10)
u.connect(("{SERVER}", 5999)); u.send(b"closed")
try:
    u.recv(64); assert False, "port 5999 answered"
except ConnectionRefusedError:
    pass
"#
        );
        let inbound = format!(
            r#"
import socket
for i in range(2):
    t = socket.create_connection(("{ROUTER_OUT}", 8080), timeout=10)
    t.sendall(b"published %d" % i); assert t.recv(64) == b"published %d" % i; t.close()
"#
        );
        self.exec(&self.client, &[python(), "-c", &out]);
        self.exec(&self.server, &[python(), "-c", &inbound]);
        let ping = util::root().join("samples/lab/icmp_ping.py");
        self.exec(
            &self.client,
            &[
                python(),
                ping.to_str().expect("UTF-8 path"),
                "--dst",
                SERVER,
                "--count",
                "2",
                "--ident",
                "4343",
                "--timeout",
                "5",
            ],
        );
    }
}

/// `natcheck collect` running in the router, with its stderr lines on a channel.
struct Collector {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Collector {
    fn start(lab: &Lab, env_path: Option<&str>, args: &[&str]) -> Collector {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &lab.router]);
        if let Some(p) = env_path {
            cmd.args(["env", &format!("PATH={p}")]);
        }
        let mut child = cmd
            .arg(env!("CARGO_BIN_EXE_natcheck"))
            .arg("collect")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run natcheck collect");
        let stderr: ChildStderr = child.stderr.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Collector { child, lines }
    }

    /// Waits for the line saying the capture runs.
    fn wait_capturing(&self) {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(30))
            .expect("natcheck collect said nothing");
        assert!(line.starts_with("natcheck: capturing on "), "{line}");
    }

    fn interrupt(&self) {
        sh(&["kill", "-INT", &self.child.id().to_string()]);
    }

    /// Waits for the end (at most a minute) and returns the exit code and stderr.
    fn finish(mut self) -> (Option<i32>, String) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("natcheck collect did not stop");
            }
            thread::sleep(Duration::from_millis(20));
        };
        let rest: Vec<String> = self.lines.iter().collect();
        (status.code(), rest.join("\n"))
    }
}

/// The lab of `tag` with its servers running; `None` (the test is skipped) without
/// root or the tools.
fn lab_or_skip(tag: &str) -> Option<Lab> {
    if let Some(why) = unavailable() {
        skip(format!("collect lab: {why}"));
        return None;
    }
    let mut lab = Lab::build(tag);
    lab.start_servers();
    Some(lab)
}

/// Runs `natcheck collect ARGS` in the router while `traffic` runs, stops it by
/// SIGINT and returns its exit code and stderr.
fn collect_during(lab: &Lab, args: &[&str], traffic: impl FnOnce(&Lab)) -> (Option<i32>, String) {
    let col = Collector::start(lab, None, args);
    col.wait_capturing();
    traffic(lab);
    thread::sleep(Duration::from_millis(300));
    col.interrupt();
    col.finish()
}

fn sha256_hex(path: &Path) -> String {
    let bytes = std::fs::read(path).expect("read a bundle file");
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Every file the manifest says was written is there with its size and hash.
fn check_complete(b: &Bundle) {
    assert!(b.warnings.is_empty(), "{:?}", b.warnings);
    for f in &b.manifest.files {
        let path = b.dir.join(&f.name);
        match (f.bytes, &f.sha256) {
            (Some(bytes), Some(sha)) => {
                assert_eq!(std::fs::metadata(&path).unwrap().len(), bytes, "{}", f.name);
                assert_eq!(&sha256_hex(&path), sha, "{}", f.name);
            }
            _ => assert!(f.error.is_some() && !path.exists(), "{f:?}"),
        }
    }
    let mut names: Vec<String> = std::fs::read_dir(&b.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut listed: Vec<String> = b
        .manifest
        .files
        .iter()
        .filter(|f| f.bytes.is_some())
        .map(|f| f.name.clone())
        .chain(["manifest.json".to_string()])
        .collect();
    listed.sort();
    assert_eq!(
        names, listed,
        "the directory holds exactly what the manifest lists"
    );
}

/// `proto src:sport > dst:dport`, ports left out where the protocol has none.
fn key(proto: &str, src: &str, sport: Option<u64>, dst: &str, dport: Option<u64>) -> String {
    let port = |p: Option<u64>| p.map(|p| format!(":{p}")).unwrap_or_default();
    if proto == "icmp" {
        return format!("icmp {src} id {} > {dst}", sport.unwrap_or(0));
    }
    format!("{proto} {src}{} > {dst}{}", port(sport), port(dport))
}

fn tuple_key(t: &natcheck::model::Tuple) -> String {
    let name = t.proto.name();
    key(
        &name,
        &t.src.to_string(),
        Some(t.sport.into()),
        &t.dst.to_string(),
        Some(t.dport.into()),
    )
}

fn hop_key(h: &serde_json::Value) -> String {
    key(
        h["proto"].as_str().unwrap_or("?"),
        h["src"].as_str().unwrap_or("?"),
        h["sport"].as_u64(),
        h["dst"].as_str().unwrap_or("?"),
        h["dport"].as_u64(),
    )
}

/// Every (before, after) pair of tuples across a translation the report shows.
fn translations(report: &serde_json::Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for c in report["connections"].as_array().expect("connections") {
        let hops = c["hops"].as_array().expect("hops");
        for (i, t) in c["translations"]
            .as_array()
            .expect("translations")
            .iter()
            .enumerate()
        {
            if t["kind"] != "none" {
                out.insert((hop_key(&hops[i]), hop_key(&hops[i + 1])));
            }
        }
    }
    out
}

fn nat_entries(entries: &[Entry]) -> Vec<&Entry> {
    entries
        .iter()
        .filter(|e| e.orig != e.reply.reversed())
        .collect()
}

#[test]
fn collect_in_a_nat_lab_and_correlate_the_bundle() {
    let Some(lab) = lab_or_skip("t") else { return };
    let dir = lab.scratch.join("bundle");
    let dir_arg = dir.to_str().expect("UTF-8 path").to_string();
    let client_if = format!("{}:eth0", lab.client);
    let args = ["-i", "in0", "-i", "out0", "-i", &client_if, "-o", &dir_arg];
    let (code, err) = collect_during(&lab, &args, Lab::traffic);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("no kernel drops; stopped by SIGINT"), "{err}");

    let b = Bundle::open(&dir).expect("a bundle");
    check_lab_bundle(&b, &lab, &client_if);
    let nat = check_table_is_the_kernels(&b, &lab);
    let report = check_correlation(&b, &dir_arg, &nat);
    check_published_port(&report);

    // flows and conntrack read the bundle too.
    let out = util::natcheck(&["flows", &dir_arg]);
    assert_eq!(out.status.code(), Some(0), "{}", util::stderr(&out));
    assert!(util::stdout(&out).contains(&client_if));
    let out = util::natcheck(&["conntrack", &dir_arg, "--nat", "any"]);
    assert_eq!(out.status.code(), Some(0), "{}", util::stderr(&out));
}

/// SIGINT left a complete, readable bundle of the lab's three points, with the
/// context collect ran in.
fn check_lab_bundle(b: &Bundle, lab: &Lab, client_if: &str) {
    check_complete(b);
    let m = &b.manifest;
    assert_eq!(
        (m.stop.reason.as_str(), m.stop.detail.as_str()),
        ("signal", "SIGINT")
    );
    let names: Vec<&str> = m.points.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["in0", "out0", client_if]);
    for p in &m.points {
        assert!(p.packets > 0 && p.kernel_drops == 0, "{p:?}");
        assert_eq!(p.packets, p.kernel_packets, "{p:?}");
    }
    assert_eq!(m.points[2].netns.as_deref(), Some(lab.client.as_str()));
    for kind in [
        Kind::Capture,
        Kind::ConntrackBefore,
        Kind::ConntrackAfter,
        Kind::ConntrackEvents,
        Kind::ConntrackStatsAfter,
        Kind::IptablesBefore,
        Kind::IptablesAfter,
        Kind::Addresses,
        Kind::Links,
        Kind::Routes,
        Kind::Sysctl,
    ] {
        let f = m.file(kind.name()).unwrap_or_else(|| panic!("no {kind:?}"));
        assert!(f.error.is_none() && b.path(kind).is_some(), "{f:?}");
    }
    let sysctl = std::fs::read_to_string(b.path(Kind::Sysctl).unwrap()).unwrap();
    assert!(sysctl.contains("net.ipv4.ip_forward = 1\n"), "{sysctl}");
    let ipt = std::fs::read_to_string(b.path(Kind::IptablesAfter).unwrap()).unwrap();
    assert!(ipt.contains("-j MASQUERADE"), "{ipt}");
}

/// The bundle's table after the capture is the kernel's (what `conntrack -L` prints
/// now); returns its NAT entries.
fn check_table_is_the_kernels(b: &Bundle, lab: &Lab) -> Vec<Entry> {
    let after =
        conntrack::read_path(b.path(Kind::ConntrackAfter).unwrap().to_str().unwrap()).unwrap();
    assert!(after.warnings.is_empty(), "{:?}", after.warnings);
    let kernel = conntrack::parse_str(
        "conntrack -L",
        &String::from_utf8_lossy(
            &lab.exec(&lab.router, &["conntrack", "-L", "-o", "extended,id"])
                .stdout,
        ),
    );
    let ids = |es: &[&Entry]| -> BTreeSet<(Option<u32>, String, String)> {
        es.iter()
            .map(|e| (e.id, tuple_key(&e.orig), tuple_key(&e.reply)))
            .collect()
    };
    let bundle_nat = nat_entries(&after.entries);
    assert_eq!(ids(&bundle_nat), ids(&nat_entries(&kernel.entries)));
    // 3 TCP and 3 UDP masqueraded, 2 published-port connections, 1 echo.
    assert_eq!(bundle_nat.len(), 9, "{bundle_nat:#?}");
    bundle_nat.into_iter().cloned().collect()
}

/// `correlate DIR` rebuilds every translation of `nat`, using the bundle's conntrack
/// and rules by itself; returns the JSON report.
fn check_correlation(b: &Bundle, dir: &str, nat: &[Entry]) -> serde_json::Value {
    let out = util::natcheck(&["correlate", dir, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", util::stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let wire = translations(&report);
    for e in nat {
        let pair = (tuple_key(&e.orig), tuple_key(&e.reply.reversed()));
        assert!(wire.contains(&pair), "{pair:?} not among {wire:#?}");
    }
    let after_name = b.path(Kind::ConntrackAfter).unwrap().display().to_string();
    let ct = report["conntrack"]
        .as_array()
        .expect("the bundle's conntrack was used");
    let snap = ct
        .iter()
        .find(|w| w["source"] == after_name.as_str())
        .expect("after");
    assert_eq!(snap["entries"], nat.len());
    assert_eq!(snap["on_wire"], snap["entries"]);
    assert_eq!(snap["agree"], snap["entries"]);
    let rules = &report["rules"][0];
    let source = rules["source"].as_str().unwrap_or_default();
    assert!(source.contains("iptables-after.txt"), "{rules}");
    assert_eq!(rules["agree"], rules["on_wire"], "{rules}");
    assert_eq!(report["bundles"][0]["stop"]["detail"], "SIGINT");
    let warnings = &report["warnings"];
    assert!(warnings.as_array().unwrap().is_empty(), "{warnings}");
    report
}

/// A published-port connection is attributed to the DNAT rule, whose counter grew
/// since the rules before (`--rules-before` from the bundle).
fn check_published_port(report: &serde_json::Value) {
    let dnat = report["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| {
            c["proto"] == "tcp"
                && c["translations"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|t| t["kind"] == "dnat")
        })
        .expect("a published-port connection");
    let text = dnat["rules"]["dnat"]["text"].as_str().unwrap_or_default();
    assert!(text.contains("--to-destination 10.232.0.2:80"), "{dnat:#}");
    assert!(
        dnat["rules"]["dnat"]["counters"]["since_before"]["change"] == "grew",
        "--rules-before came from the bundle: {dnat:#}"
    );
}

#[test]
fn collect_fails_at_once_or_costs_only_the_missing_tools_files() {
    let Some(lab) = lab_or_skip("f") else { return };
    fails_at_once(&lab);
    missing_tools(&lab);
    filter_and_count(&lab);
}

fn scratch_dir(lab: &Lab, name: &str) -> String {
    lab.scratch.join(name).to_str().unwrap().to_string()
}

/// What does not exist fails before anything is written.
fn fails_at_once(lab: &Lab) {
    let client_nope = format!("{}:nope0", lab.client);
    let no_ns = format!("nccol-none-{}:eth0", std::process::id());
    for (args, msg, path) in [
        (
            vec!["-i", "in0", "-i", "nope0"],
            "no interface `nope0`".to_string(),
            None,
        ),
        (
            vec!["-i", &client_nope],
            format!("no interface `nope0` in network namespace `{}`", lab.client),
            None,
        ),
        (
            vec!["-i", &no_ns],
            "network namespace `nccol-none-".to_string(),
            None,
        ),
        (
            vec!["-i", "in0", "--filter", "udp"],
            "--filter needs tcpdump".to_string(),
            Some("/nonexistent"),
        ),
        (
            vec!["-i", "in0", "--filter", "udp port"],
            "tcpdump refused the filter `udp port`".to_string(),
            None,
        ),
    ] {
        let dir = scratch_dir(lab, "never");
        let mut all = args.clone();
        all.extend(["-o", &dir, "--duration", "5"]);
        let col = Collector::start(lab, path, &all);
        let (code, err) = col.finish();
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(&msg), "{args:?}: {err}");
        assert!(!Path::new(&dir).exists(), "{args:?} wrote {dir}");
    }
}

/// No tool on PATH: the capture, conntrack and sysctls are still collected, and the
/// manifest says what is missing and why.
fn missing_tools(lab: &Lab) {
    let dir = scratch_dir(lab, "no-tools");
    let col = Collector::start(
        lab,
        Some("/nonexistent"),
        &["-i", "in0", "-i", "out0", "--duration", "2", "-o", &dir],
    );
    col.wait_capturing();
    lab.traffic();
    let (code, err) = col.finish();
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("not collected: iptables-after.txt: `iptables-save` is not installed"),
        "{err}"
    );
    let b = Bundle::open(Path::new(&dir)).expect("a bundle");
    check_complete(&b);
    assert_eq!(b.manifest.stop.reason, "duration");
    for (kind, tool) in [
        (Kind::IptablesBefore, "iptables-save"),
        (Kind::Ip6tablesAfter, "ip6tables-save"),
        (Kind::NftAfter, "nft"),
        (Kind::Ipset, "ipset"),
        (Kind::Addresses, "ip"),
        (Kind::RoutingRules6, "ip"),
    ] {
        let f = b.manifest.file(kind.name()).expect("listed");
        let want = format!("`{tool}` is not installed (not found on PATH)");
        assert_eq!(f.error.as_deref(), Some(want.as_str()), "{f:?}");
        assert_eq!(f.bytes, None);
    }
    for kind in [
        Kind::Capture,
        Kind::ConntrackAfter,
        Kind::ConntrackEvents,
        Kind::Sysctl,
    ] {
        assert!(b.path(kind).is_some(), "{kind:?}");
    }
    let out = util::natcheck(&["correlate", &dir]);
    assert_eq!(out.status.code(), Some(0), "{}", util::stderr(&out));
    let text = util::stdout(&out);
    assert!(
        text.contains("not collected: iptables-before.txt (`iptables-save` is not installed"),
        "{text}"
    );
    assert!(!text.contains("\nrules: "), "{text}");
}

/// A filter and a count: exactly that many packets, all the filter's.
fn filter_and_count(lab: &Lab) {
    let dir = scratch_dir(lab, "filtered");
    let args = [
        "-i",
        "in0",
        "-i",
        "out0",
        "--filter",
        "udp port 5353",
        "-c",
        "6",
        "-o",
        &dir,
    ];
    let col = Collector::start(lab, None, &args);
    col.wait_capturing();
    lab.traffic();
    lab.traffic();
    let (code, err) = col.finish();
    assert_eq!(code, Some(0), "{err}");
    let b = Bundle::open(Path::new(&dir)).expect("a bundle");
    check_complete(&b);
    assert_eq!(b.manifest.stop.reason, "count");
    assert_eq!(b.manifest.points.iter().map(|p| p.packets).sum::<u64>(), 6);
    let seen = packets_of(&b.capture().unwrap());
    assert_eq!(seen.len(), 6);
    assert!(
        seen.iter()
            .all(|(_, _, t)| t.proto.name() == "udp" && (t.dport == 5353 || t.sport == 5353)),
        "{seen:?}"
    );
}

/// Many UDP datagrams of 100 bytes out through the NAT and back: far more than a
/// small flight recorder holds.
fn bulk(lab: &Lab, datagrams: u32) {
    let script = format!(
        r#"
import socket
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(10)
for i in range({datagrams}):
    u.sendto(b"%06d" % i + b"x" * 94, ("{SERVER}", 5353)); u.recvfrom(2048)
"#
    );
    lab.exec(&lab.client, &[python(), "-c", &script]);
}

/// Every packet of a capture file: (point name, timestamp, tuple).
fn packets_of(path: &Path) -> Vec<(String, i64, natcheck::model::Tuple)> {
    let spec: natcheck::capture::InputSpec = path.to_str().unwrap().parse().unwrap();
    let mut seen = Vec::new();
    let r = natcheck::capture::read_input(&spec, &Default::default(), |i, p| {
        seen.push((i, p.ts_ns, p.tuple))
    });
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    seen.into_iter()
        .map(|(i, ts, t)| (r.points[r.remap[i]].name.clone(), ts, t))
        .collect()
}

#[test]
fn collect_as_a_flight_recorder_keeps_the_latest_packets() {
    let Some(lab) = lab_or_skip("r") else { return };
    let dir = lab.scratch.join("ring");
    let d = dir.to_str().unwrap().to_string();
    let ring = 512u64 << 10;
    let args = ["-i", "in0", "-i", "out0", "--ring", "512KiB", "-o", &d];
    let (code, err) = collect_during(&lab, &args, |lab| {
        bulk(lab, 8000);
        lab.traffic();
    });
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("flight recorder: kept the packets from "),
        "{err}"
    );

    let b = Bundle::open(&dir).expect("a bundle");
    check_complete(&b);
    let m = &b.manifest;
    let r = m.ring.as_ref().expect("the manifest says a ring was used");
    assert_eq!(r.size, ring);
    assert!(
        r.before_predates_packets && r.discarded_packets > 0,
        "{r:?}"
    );
    let cut =
        natcheck::bundle::manifest::parse_time(r.discarded_through.as_deref().unwrap()).unwrap();
    let mut discarded = 0;
    for p in &m.points {
        assert_eq!(p.kernel_drops, 0, "{p:?}");
        let gone = p.discarded_packets.expect("per point");
        assert!(gone > 0 && p.packets > 0, "{p:?}");
        assert_eq!(
            p.packets + gone,
            p.kernel_packets,
            "every packet kept or counted: {p:?}"
        );
        discarded += gone;
    }
    assert_eq!(discarded, r.discarded_packets);
    // The file holds about the ring's size, and only packets after the cut, at
    // both points: the last connections are there, the first datagrams are not.
    let bytes = b.manifest.file("capture").unwrap().bytes.unwrap();
    // Kept: the ring's size less at most about a segment of each point.
    assert!(bytes <= ring + 4096 && bytes > ring / 2, "{bytes}");
    let seen = packets_of(&b.capture().unwrap());
    assert!(seen.iter().all(|(_, ts, _)| *ts > cut));
    assert_eq!(
        seen.len() as u64,
        m.points.iter().map(|p| p.packets).sum::<u64>()
    );
    let published = |point: &str| {
        seen.iter()
            .any(|(p, _, t)| p == point && (t.dport == 8080 || t.dport == 80))
    };
    assert!(
        published("in0") && published("out0"),
        "the last traffic is kept"
    );

    // correlate: the table before is not compared with the wire, no loss is made
    // up at the window's edge, and the report says what was discarded.
    let out = util::natcheck(&["correlate", &d, "--format", "json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        util::stderr(&out),
        util::stdout(&util::natcheck(&["correlate", &d]))
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sources: Vec<&str> = report["conntrack"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["source"].as_str().unwrap())
        .collect();
    assert!(
        !sources.iter().any(|s| s.ends_with("conntrack-before.txt")),
        "{sources:?}"
    );
    let findings: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    assert!(
        !findings
            .iter()
            .any(|c| *c == "lost" || c.starts_with("ct-")),
        "{findings:?}"
    );
    assert_eq!(
        report["bundles"][0]["ring"]["discarded_packets"],
        r.discarded_packets
    );
    let text = util::stdout(&util::natcheck(&["correlate", &d]));
    assert!(
        text.contains("flight recorder of 524288 bytes: ")
            && text.contains("the conntrack table before predates the packets kept"),
        "{text}"
    );
}

#[test]
fn collect_on_any_interface_writes_each_packet_under_its_interface() {
    let Some(lab) = lab_or_skip("a") else { return };
    let dir = lab.scratch.join("any");
    let d = dir.to_str().unwrap().to_string();
    let client_any = format!("{}:any", lab.client);
    let args = ["-i", "any", "-i", &client_any, "-o", &d];
    let (code, err) = collect_during(&lab, &args, |lab| {
        lab.traffic();
        // Three datagrams over the client's loopback, each answered.
        let lo = r#"
import socket
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 9999))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(3):
    s.sendto(b"lo %d" % i, ("127.0.0.1", 9999)); d, peer = u.recvfrom(64)
    u.sendto(d, peer); s.recvfrom(64)
"#;
        lab.exec(&lab.client, &[python(), "-c", lo]);
    });
    assert_eq!(code, Some(0), "{err}");

    let b = Bundle::open(&dir).expect("a bundle");
    check_complete(&b);
    let m = &b.manifest;
    let names: Vec<&str> = m.points.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["any", client_any.as_str()]);
    let met = |p: &natcheck::bundle::manifest::Point| -> BTreeSet<String> {
        p.interfaces.iter().map(|i| i.name.clone()).collect()
    };
    let router = met(&m.points[0]);
    assert!(
        router.contains("in0") && router.contains("out0"),
        "{router:?}"
    );
    let client_eth0 = format!("{}:eth0", lab.client);
    assert!(
        met(&m.points[1]).contains(&client_eth0),
        "{:?}",
        m.points[1]
    );
    // Loopback is taken, each packet once (not also as it leaves): three
    // datagrams and their answers.
    let lo = format!("{}:lo", lab.client);
    let lo = m.points[1].interfaces.iter().find(|i| i.name == lo);
    assert_eq!(lo.map(|i| i.packets), Some(6), "{:?}", m.points[1]);
    for p in &m.points {
        assert_eq!(p.packets, p.kernel_packets, "{p:?}");
        assert_eq!(
            p.packets,
            p.interfaces.iter().map(|i| i.packets).sum::<u64>()
        );
        assert!(
            p.interfaces
                .iter()
                .all(|i| i.linktype == "ETHERNET" && i.ifindex > 0),
            "{p:?}"
        );
    }
    let nat = check_table_is_the_kernels(&b, &lab);
    let report = check_correlation(&b, &d, &nat);
    let points: BTreeSet<&str> = report["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for want in ["in0", "out0", client_eth0.as_str()] {
        assert!(points.contains(want), "{points:?}");
    }
    check_published_port(&report);

    // A filter on any reads every interface's packets from their network header.
    let dir = lab.scratch.join("any-filtered");
    let d = dir.to_str().unwrap().to_string();
    let col = Collector::start(
        &lab,
        None,
        &[
            "-i",
            "any",
            "--filter",
            "tcp port 7000",
            "-c",
            "12",
            "-o",
            &d,
        ],
    );
    col.wait_capturing();
    lab.traffic();
    let (code, err) = col.finish();
    assert_eq!(code, Some(0), "{err}");
    let b = Bundle::open(&dir).expect("a bundle");
    let seen = packets_of(&b.capture().unwrap());
    assert_eq!(seen.len(), 12);
    assert!(
        seen.iter()
            .all(|(_, _, t)| t.proto.name() == "tcp" && (t.dport == 7000 || t.sport == 7000)),
        "{seen:?}"
    );
    let at: BTreeSet<&str> = seen.iter().map(|(p, _, _)| p.as_str()).collect();
    assert_eq!(at, BTreeSet::from(["in0", "out0"]));

    // any and another point of its namespace would capture that one twice.
    let col = Collector::start(
        &lab,
        None,
        &["-i", "any", "-i", "in0", "-o", &scratch_dir(&lab, "twice")],
    );
    let (code, err) = col.finish();
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(
            "`any` captures every interface of its namespace: `in0` would be captured twice"
        ),
        "{err}"
    );
}
