//! `natcheck snapshot` against the real kernel and the real `conntrack` tool.
//!
//! Builds a small NAT lab in fresh network namespaces: a client (10.231.0.2 and
//! 2001:db8:a::2) behind a host that masquerades IPv4 to 203.0.113.1 and routes IPv6,
//! and a server (203.0.113.2, 2001:db8:b::2). The client keeps a TCP connection
//! open and exchanges UDP datagrams (one flow marked with CONNMARK 5, one in conntrack
//! zone 7, one over IPv6) and an ICMP echo with the server; the host counts packets
//! and timestamps entries. Then the host's table read by `natcheck snapshot --netns`
//! must equal `conntrack -L -o extended,id` entry for entry (timeouts and ages within
//! two seconds, `use=` aside), its JSON must hold the same entries, and `--events`
//! must see the NEW of flows made while it listens.
//!
//! Needs root and `ip`, `iptables`, `ip6tables`, `conntrack`, `python3` (installed by
//! .ci/run); without them the test says why and passes, or fails under
//! `NATCHECK_TEST_STRICT=1` (as in CI). Namespaces are named after the
//! test process, every address is a documentation or private one that exists only in
//! them, and they are deleted when the lab is dropped, also on failure.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use natcheck::conntrack::{self, Entry, EventKind};
use natcheck::model::Proto;

use crate::util::{self, have, python, run, sh, skip};

const CLIENT_V4: &str = "10.231.0.2";
const HOST_OUT_V4: &str = "203.0.113.1";
const SERVER_V4: &str = "203.0.113.2";
const CLIENT_V6: &str = "2001:db8:a::2";
const SERVER_V6: &str = "2001:db8:b::2";
const ICMP_IDENT: u16 = 4242;

/// Why the lab cannot run here, if it cannot.
fn unavailable() -> Option<String> {
    util::lab_unavailable(
        "network namespaces and iptables",
        &["ip", "iptables", "ip6tables", "conntrack", "python3"],
    )
}

/// A process whose stdout lines arrive on a channel, so the test can wait for one
/// with a deadline instead of sleeping.
struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Proc {
    fn spawn(cmd: &mut Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc { child, lines }
    }

    /// Waits for a line starting with `prefix`; the lines before it are returned too.
    fn wait_for(&self, prefix: &str, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.starts_with(prefix) => {
                    seen.push(l);
                    return seen;
                }
                Ok(l) => seen.push(l),
                Err(e) => panic!("waiting for `{prefix}`: {e:?}; got {seen:?}"),
            }
        }
    }

    fn stdin(&mut self) -> &mut ChildStdin {
        self.child.stdin.as_mut().expect("piped stdin")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The namespaces, and the processes running in them (stopped before the
/// namespaces are deleted).
struct Lab {
    client: String,
    host: String,
    server: String,
    procs: Vec<Proc>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.procs.clear();
        for ns in [&self.client, &self.host, &self.server] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Lab {
    fn ns(&self, ns: &str, args: &[&str]) -> Output {
        run(Command::new("ip").args(["netns", "exec", ns]).args(args))
    }

    fn host(&self, args: &[&str]) -> Output {
        self.ns(&self.host, args)
    }

    fn spawn_in(&mut self, ns: &str, script: &str) -> usize {
        let p = Proc::spawn(
            Command::new("ip")
                .args(["netns", "exec", ns, python(), "-u", "-c"])
                .arg(script),
        );
        self.procs.push(p);
        self.procs.len() - 1
    }

    fn build(tag: &str) -> Lab {
        let pid = std::process::id();
        let lab = Lab {
            client: format!("ncsnap-{tag}-{pid}-c"),
            host: format!("ncsnap-{tag}-{pid}-h"),
            server: format!("ncsnap-{tag}-{pid}-s"),
            procs: Vec::new(),
        };
        for ns in [&lab.client, &lab.host, &lab.server] {
            sh(&["ip", "netns", "add", ns]);
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        let (c, h, s) = (&lab.client, &lab.host, &lab.server);
        sh(&[
            "ip", "-n", h, "link", "add", "in0", "type", "veth", "peer", "name", "eth0", "netns", c,
        ]);
        sh(&[
            "ip", "-n", h, "link", "add", "out0", "type", "veth", "peer", "name", "eth0", "netns",
            s,
        ]);
        for (ns, dev, v4, v6) in [
            (c, "eth0", "10.231.0.2/24", "2001:db8:a::2/64"),
            (h, "in0", "10.231.0.1/24", "2001:db8:a::1/64"),
            (h, "out0", "203.0.113.1/24", "2001:db8:b::1/64"),
            (s, "eth0", "203.0.113.2/24", "2001:db8:b::2/64"),
        ] {
            sh(&["ip", "-n", ns, "addr", "add", v4, "dev", dev]);
            // nodad: the address is usable at once, nothing to wait for.
            sh(&["ip", "-n", ns, "addr", "add", v6, "dev", dev, "nodad"]);
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
            "10.231.0.1",
        ]);
        sh(&[
            "ip",
            "-n",
            c,
            "-6",
            "route",
            "add",
            "default",
            "via",
            "2001:db8:a::1",
        ]);
        sh(&[
            "ip",
            "-n",
            s,
            "-6",
            "route",
            "add",
            "default",
            "via",
            "2001:db8:b::1",
        ]);
        lab.host(&[
            "sysctl",
            "-q",
            "-w",
            "net.ipv4.ip_forward=1",
            "net.ipv6.conf.all.forwarding=1",
        ]);
        // MASQUERADE for IPv4; a CONNMARK on the 5353 flow; zone 7 for the 5354 flow
        // in both directions (its replies must be looked up in the same zone); and an
        // IPv6 rule that needs conntrack, so the host tracks IPv6 as well.
        for rule in [
            "-t nat -A POSTROUTING -s 10.231.0.0/24 -o out0 -j MASQUERADE",
            "-t mangle -A FORWARD -p udp --dport 5353 -j CONNMARK --set-mark 5",
            "-t raw -A PREROUTING -i in0 -p udp --dport 5354 -j CT --zone 7",
            "-t raw -A PREROUTING -i out0 -p udp --sport 5354 -j CT --zone 7",
        ] {
            let mut args = vec!["iptables"];
            args.extend(rule.split(' '));
            lab.host(&args);
        }
        lab.host(&[
            "ip6tables",
            "-A",
            "FORWARD",
            "-m",
            "conntrack",
            "--ctstate",
            "NEW,ESTABLISHED",
            "-j",
            "ACCEPT",
        ]);
        // Counters and timestamps, so packets= bytes= and delta-time= are compared too.
        // The conntrack sysctls exist once the rules above loaded conntrack.
        lab.host(&[
            "sysctl",
            "-q",
            "-w",
            "net.netfilter.nf_conntrack_acct=1",
            "net.netfilter.nf_conntrack_timestamp=1",
        ]);
        lab
    }

    /// The server: TCP echo on 8080 that keeps connections open, UDP echo on 5353,
    /// 5354 (IPv4) and 5355 (IPv6). Prints `ready` once every socket is bound.
    fn start_server(&mut self) {
        let script = format!(
            r#"
import socket, threading
def tcp():
    ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("{SERVER_V4}", 8080)); ls.listen(8)
    def serve(c):
        while True:
            d = c.recv(4096)
            if not d: return
            c.sendall(d)
    while True:
        c, _ = ls.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()
def udp(fam, addr, port):
    s = socket.socket(fam, socket.SOCK_DGRAM); s.bind((addr, port))
    return s
socks = [udp(socket.AF_INET, "{SERVER_V4}", 5353), udp(socket.AF_INET, "{SERVER_V4}", 5354),
         udp(socket.AF_INET6, "{SERVER_V6}", 5355)]
def echo(s):
    while True:
        d, peer = s.recvfrom(4096); s.sendto(d, peer)
for s in socks: threading.Thread(target=echo, args=(s,), daemon=True).start()
threading.Thread(target=tcp, daemon=True).start()
import time; time.sleep(0.05)
print("ready")
import sys; sys.stdin.read()
"#
        );
        let server = self.server.clone();
        let i = self.spawn_in(&server, &script);
        self.procs[i].wait_for("ready", Duration::from_secs(20));
    }

    /// The client's traffic: one TCP connection kept open, three UDP exchanges, then
    /// `ready`; the connection closes when the lab is dropped.
    fn start_client(&mut self) {
        let script = format!(
            r#"
import socket, sys
t = socket.create_connection(("{SERVER_V4}", 8080), timeout=10)
t.sendall(b"hello"); assert t.recv(16) == b"hello"
for fam, addr, port in [(socket.AF_INET, "{SERVER_V4}", 5353), (socket.AF_INET, "{SERVER_V4}", 5354),
                        (socket.AF_INET6, "{SERVER_V6}", 5355)]:
    u = socket.socket(fam, socket.SOCK_DGRAM); u.settimeout(10)
    u.sendto(b"ping", (addr, port)); assert u.recvfrom(16)[0] == b"ping"
print("ready")
sys.stdin.read()
"#
        );
        let client = self.client.clone();
        let i = self.spawn_in(&client, &script);
        self.procs[i].wait_for("ready", Duration::from_secs(20));
        let ping = util::root().join("samples/lab/icmp_ping.py");
        let ident = ICMP_IDENT.to_string();
        self.ns(
            &client,
            &[
                python(),
                ping.to_str().expect("UTF-8 path"),
                "--dst",
                SERVER_V4,
                "--count",
                "1",
                "--ident",
                &ident,
                "--timeout",
                "5",
            ],
        );
    }
}

fn natcheck(args: &[&str]) -> Output {
    util::natcheck(args)
}

fn parse(source: &str, text: &str) -> Vec<Entry> {
    let dump = conntrack::parse_str(source, text);
    assert!(dump.warnings.is_empty(), "{source}: {:?}", dump.warnings);
    assert!(dump.events.is_empty(), "{source}: events in a table dump");
    dump.entries
}

fn by_id(entries: Vec<Entry>) -> BTreeMap<u32, Entry> {
    let mut map = BTreeMap::new();
    for e in entries {
        let id = e.id.expect("-o id prints every entry's id");
        assert!(map.insert(id, e).is_none(), "id {id} twice");
    }
    map
}

fn close(a: Option<u64>, b: Option<u64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.abs_diff(b) <= 2,
        (a, b) => a == b,
    }
}

/// The entry with the fields that change from one read to the next blanked.
fn stable(e: &Entry) -> Entry {
    Entry {
        line: 0,
        timeout_s: None,
        delta_time_s: None,
        use_count: None,
        ..e.clone()
    }
}

/// Differences between two reads of the table, empty when they agree.
fn differences(a: &BTreeMap<u32, Entry>, b: &BTreeMap<u32, Entry>) -> Vec<String> {
    let mut out = Vec::new();
    for id in a.keys().chain(b.keys()) {
        match (a.get(id), b.get(id)) {
            (Some(x), Some(y)) => {
                if stable(x) != stable(y)
                    || !close(x.timeout_s, y.timeout_s)
                    || !close(x.delta_time_s, y.delta_time_s)
                {
                    out.push(format!("id {id}:\n  {x:?}\n  {y:?}"));
                }
            }
            _ => out.push(format!("id {id} in one read only")),
        }
    }
    out
}

fn find<'a>(m: &'a BTreeMap<u32, Entry>, what: &str, f: impl Fn(&Entry) -> bool) -> &'a Entry {
    let found: Vec<_> = m.values().filter(|e| f(e)).collect();
    assert_eq!(found.len(), 1, "{what}: {found:?} in {m:#?}");
    found[0]
}

#[test]
fn snapshot_equals_conntrack_tool_and_events_see_new_flows() {
    if let Some(why) = unavailable() {
        return skip(format!("network namespace lab: {why}"));
    }
    let mut lab = Lab::build("t");
    lab.start_server();
    lab.start_client();
    let host = lab.host.clone();

    // The table is read three times: conntrack, natcheck, conntrack. Late packets
    // (a delayed ACK) can still move counters and states, so the reads are repeated
    // until the two conntrack reads agree; natcheck's is then compared with them.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (tool, ours, text) = loop {
        let before = by_id(parse(
            "conntrack-before",
            &String::from_utf8_lossy(&lab.host(&["conntrack", "-L", "-o", "extended,id"]).stdout),
        ));
        let out = natcheck(&["snapshot", "--netns", &host]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).expect("UTF-8");
        let ours = by_id(parse("natcheck", &text));
        let after = by_id(parse(
            "conntrack-after",
            &String::from_utf8_lossy(&lab.host(&["conntrack", "-L", "-o", "extended,id"]).stdout),
        ));
        if differences(&before, &after).is_empty() {
            break (after, ours, text);
        }
        assert!(Instant::now() < deadline, "the table never settled");
        thread::sleep(Duration::from_millis(200));
    };
    let diff = differences(&tool, &ours);
    assert!(
        diff.is_empty(),
        "natcheck and conntrack differ:\n{}",
        diff.join("\n")
    );

    // The lab made what it meant to, so the comparison above covered it.
    let tcp = find(&ours, "the TCP connection", |e| e.orig.proto == Proto::Tcp);
    assert_eq!(tcp.state.as_deref(), Some("ESTABLISHED"));
    assert!(tcp.flags.assured && !tcp.flags.unreplied);
    assert_eq!(tcp.orig.src.to_string(), CLIENT_V4);
    assert_eq!(tcp.reply.dst.to_string(), HOST_OUT_V4, "masqueraded");
    assert!(tcp.orig_counters.is_some_and(|c| c.packets >= 3));
    assert!(tcp.delta_time_s.is_some());
    let marked = find(&ours, "the marked flow", |e| e.orig.dport == 5353);
    assert_eq!(marked.mark, Some(5));
    assert_eq!(marked.zone, None);
    let zoned = find(&ours, "the zone 7 flow", |e| e.orig.dport == 5354);
    assert_eq!(zoned.zone, Some(7));
    assert_eq!(zoned.mark, Some(0));
    let icmp = find(&ours, "the echo", |e| e.orig.proto == Proto::Icmp);
    assert_eq!(icmp.orig.sport, ICMP_IDENT);
    assert_eq!(icmp.orig_icmp.map(|k| k.icmp_type), Some(8));
    assert_eq!(icmp.reply_icmp.map(|k| k.icmp_type), Some(0));
    let v6 = find(&ours, "the IPv6 flow", |e| e.l3num == Some(10));
    assert_eq!(v6.orig.src.to_string(), CLIENT_V6);
    assert!(text.contains(&format!("src={CLIENT_V6} dst={SERVER_V6} sport=")));
    // Sorted by tuple: TCP before UDP before ICMP, IPv4 before IPv6.
    let protos: Vec<u8> = conntrack::parse_str("natcheck", &text)
        .entries
        .iter()
        .map(|e| e.orig.proto.number())
        .collect();
    assert_eq!(protos, vec![6, 17, 17, 1, 17]);

    // JSON: the same entries, with the translation each implies.
    let json_path =
        std::env::temp_dir().join(format!("natcheck-snapshot-{}.json", std::process::id()));
    let json_arg = json_path.to_str().expect("UTF-8 path");
    let out = natcheck(&[
        "snapshot", "--netns", &host, "--format", "json", "-o", json_arg,
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "-o writes the file, not stdout");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).expect("JSON written"))
            .expect("valid JSON");
    let _ = std::fs::remove_file(&json_path);
    assert_eq!(doc["schema"], "natcheck.conntrack/1");
    let input = &doc["inputs"][0];
    assert_eq!(input["source"], "netlink");
    assert_eq!(input["netns"], host.as_str());
    let entries = input["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), ours.len());
    let tcp_json = entries
        .iter()
        .find(|e| e["orig"]["proto"] == "tcp")
        .expect("TCP entry in JSON");
    assert_eq!(tcp_json["implied"]["kind"], "snat");
    assert_eq!(tcp_json["id"], tcp.id.expect("id"));

    // Events: two recorders (text and JSON) listen while the client opens a new UDP
    // flow every 100 ms; flows made after they subscribed must show as NEW. The
    // client stops on its own after 3 s, longer than the recordings.
    let rec = |format: &str| {
        Command::new(env!("CARGO_BIN_EXE_natcheck"))
            .args([
                "snapshot",
                "--netns",
                &host,
                "--events",
                "--duration",
                "2",
                "--format",
                format,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run natcheck")
    };
    let text_rec = rec("text");
    let json_rec = rec("json");
    let flows = lab.ns(
        &lab.client,
        &[
            python(),
            "-c",
            &format!(
                r#"
import socket, time
end = time.monotonic() + 3
while time.monotonic() < end:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.sendto(b"x", ("{SERVER_V4}", 5353)); print(u.getsockname()[1], flush=True); u.close()
    time.sleep(0.1)
"#
            ),
        ],
    );
    let sports: Vec<u16> = String::from_utf8_lossy(&flows.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    assert!(sports.len() >= 20, "{sports:?}");
    let text_out = text_rec.wait_with_output().expect("natcheck events");
    assert_eq!(
        text_out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&text_out.stderr)
    );
    let log = String::from_utf8(text_out.stdout).expect("UTF-8");
    let dump = conntrack::parse_str("events", &log);
    assert!(dump.warnings.is_empty(), "{:?}\n{log}", dump.warnings);
    assert!(dump.entries.is_empty());
    let new: Vec<_> = dump
        .events
        .iter()
        .filter(|e| {
            e.kind == EventKind::New
                && e.entry.orig.dport == 5353
                && sports.contains(&e.entry.orig.sport)
        })
        .collect();
    assert!(!new.is_empty(), "no NEW for the flows made:\n{log}");
    for ev in &new {
        assert!(ev.time_ns.is_some());
        assert!(ev.entry.flags.unreplied);
        assert_eq!(ev.entry.orig.src.to_string(), CLIENT_V4);
        assert_eq!(
            ev.entry.reply.dst.to_string(),
            HOST_OUT_V4,
            "the NAT decision"
        );
        assert_eq!(ev.entry.mark, Some(5));
        assert!(ev.entry.id.is_some());
    }
    let json_out = json_rec.wait_with_output().expect("natcheck events");
    assert_eq!(
        json_out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&json_out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&json_out.stdout).expect("valid JSON");
    let timelines = doc["inputs"][0]["timelines"].as_array().expect("timelines");
    assert!(
        timelines.iter().any(|t| t["saw_new"] == true
            && t["orig"]["dport"] == 5353
            && t["events"][0]["kind"] == "NEW"),
        "{doc:#}"
    );

    // Without CAP_NET_ADMIN: the message says what is missing. `nobody` runs a copy of
    // the binary, since the build directory may be closed to other users.
    if have("setpriv") {
        let dir = std::env::temp_dir().join(format!("natcheck-nobody-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        let bin = dir.join("natcheck");
        std::fs::copy(env!("CARGO_BIN_EXE_natcheck"), &bin).expect("copy the binary");
        // A process another test thread forks while the copy is being written holds
        // its write descriptor until that process execs: executing the copy then
        // fails with ETXTBSY ("Text file busy") for a moment.
        let run = || {
            Command::new("setpriv")
                .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(&bin)
                .arg("snapshot")
                .output()
                .expect("setpriv")
        };
        let mut out = run();
        for _ in 0..50 {
            if !String::from_utf8_lossy(&out.stderr).contains("Text file busy") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
            out = run();
        }
        let _ = std::fs::remove_dir_all(&dir);
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("Permission denied") {
            skip(format!("nobody cannot run {}: {err}", bin.display()));
        } else {
            assert_eq!(out.status.code(), Some(2), "{err}");
            assert!(
                err.contains("natcheck snapshot needs CAP_NET_ADMIN (run as root)"),
                "{err}"
            );
        }
    } else {
        skip("setpriv (util-linux) is not installed: the CAP_NET_ADMIN message is unchecked");
    }
    // Keep the client's TCP connection open until here.
    lab.procs[1].stdin().flush().expect("client alive");
}

#[test]
fn missing_namespace_is_an_error_naming_it() {
    let name = format!("ncsnap-none-{}", std::process::id());
    let out = natcheck(&["snapshot", "--netns", &name]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("network namespace `{name}` not found")),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}
