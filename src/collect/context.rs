//! The second witness and the context, taken around the capture in the network
//! namespace collect runs in: the conntrack table (over netlink, as `natcheck
//! snapshot` prints it) and statistics (/proc/net/stat/nf_conntrack) before and
//! after, the conntrack events in between, the rules before and after
//! (`iptables-save -c`, `ip6tables-save -c`, `nft -j list ruleset`), and once
//! `ipset save`, `ip -j addr`, `ip -j link`, the routes and routing rules of both
//! families, and the netfilter and routing sysctls read from /proc/sys.
//!
//! Every file is recorded with the command that made it and when it was started. A
//! tool that is missing, fails or hangs (stopped after [`TOOL_TIMEOUT`]) costs its
//! file only: the record says why instead. Nothing here writes to the kernel: the
//! tools only list, the sysctls are only read.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};

use crate::bundle::manifest::{rfc3339, FileRecord};
use crate::bundle::Kind;
use crate::conntrack;

/// How long a tool may run before it is stopped and its file given up.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// The tools run before and after the capture, and once before it.
const RULES: [(Kind, Kind, &[&str]); 3] = [
    (
        Kind::IptablesBefore,
        Kind::IptablesAfter,
        &["iptables-save", "-c"],
    ),
    (
        Kind::Ip6tablesBefore,
        Kind::Ip6tablesAfter,
        &["ip6tables-save", "-c"],
    ),
    (
        Kind::NftBefore,
        Kind::NftAfter,
        &["nft", "-j", "list", "ruleset"],
    ),
];
const ONCE: [(Kind, &[&str]); 7] = [
    (Kind::Ipset, &["ipset", "save"]),
    (Kind::Addresses, &["ip", "-j", "addr"]),
    (Kind::Links, &["ip", "-j", "link"]),
    (Kind::Routes, &["ip", "-j", "route", "show", "table", "all"]),
    (
        Kind::Routes6,
        &["ip", "-j", "-6", "route", "show", "table", "all"],
    ),
    (Kind::RoutingRules, &["ip", "-j", "rule"]),
    (Kind::RoutingRules6, &["ip", "-j", "-6", "rule"]),
];

/// The conntrack statistics file of the namespace.
const CT_STATS: &str = "/proc/net/stat/nf_conntrack";

/// The context files of one bundle, as they are taken.
pub struct Context {
    dir: PathBuf,
    records: Vec<FileRecord>,
}

fn record(kind: Kind, command: &str, taken: SystemTime) -> FileRecord {
    FileRecord {
        name: kind.file(),
        kind: kind.name().into(),
        what: kind.what().into(),
        command: command.into(),
        taken: rfc3339(taken),
        ..FileRecord::default()
    }
}

impl Context {
    pub fn new(dir: &Path) -> Context {
        Context {
            dir: dir.to_path_buf(),
            records: Vec::new(),
        }
    }

    /// Everything taken before the capture.
    pub fn before(&mut self) {
        self.conntrack_table(Kind::ConntrackBefore);
        self.conntrack_stats(Kind::ConntrackStatsBefore);
        for (before, _, argv) in RULES {
            self.tool(before, argv);
        }
        for (kind, argv) in ONCE {
            self.tool(kind, argv);
        }
        self.sysctls();
    }

    /// Everything taken after the capture.
    pub fn after(&mut self) {
        self.conntrack_table(Kind::ConntrackAfter);
        self.conntrack_stats(Kind::ConntrackStatsAfter);
        for (_, after, argv) in RULES {
            self.tool(after, argv);
        }
    }

    /// Adds a record made elsewhere (the capture, the event log).
    pub fn add(&mut self, r: FileRecord) {
        self.records.push(r);
    }

    /// Every record in the bundle's order, each written file with its size and
    /// SHA-256.
    pub fn finish(mut self) -> Vec<FileRecord> {
        for r in &mut self.records {
            if r.error.is_some() && !self.dir.join(&r.name).is_file() {
                continue;
            }
            match hash(&self.dir.join(&r.name)) {
                Ok((bytes, sha)) => {
                    r.bytes = Some(bytes);
                    r.sha256 = Some(sha);
                }
                Err(e) => {
                    r.error
                        .get_or_insert_with(|| format!("reading it back: {e}"));
                }
            }
        }
        let order = |r: &FileRecord| Kind::from_name(&r.kind);
        self.records.sort_by_key(order);
        self.records
    }

    fn path(&self, kind: Kind) -> PathBuf {
        self.dir.join(kind.file())
    }

    /// Runs a tool with its output going to the file of `kind`.
    fn tool(&mut self, kind: Kind, argv: &[&str]) {
        let command = argv.join(" ");
        let mut r = record(kind, &command, SystemTime::now());
        if let Err(e) = run_tool(argv, &self.path(kind), &self.dir) {
            let _ = fs::remove_file(self.path(kind));
            r.error = Some(e);
        }
        self.records.push(r);
    }

    fn conntrack_table(&mut self, kind: Kind) {
        let mut r = record(
            kind,
            "netlink: conntrack table dump (conntrack -L -o extended,id)",
            SystemTime::now(),
        );
        match conntrack::netlink::dump(None) {
            Ok(mut table) => {
                conntrack::netlink::sort_entries(&mut table.entries);
                let mut text = String::new();
                for e in &table.entries {
                    conntrack::write_entry(e, &mut text);
                    text.push('\n');
                }
                r.records = Some(table.entries.len() as u64);
                if !table.warnings.is_empty() {
                    r.error = Some(format!(
                        "{} entries the kernel sent could not be read: {}",
                        table.warnings.len(),
                        table.warnings[0]
                    ));
                }
                if let Err(e) = fs::write(self.path(kind), text) {
                    r.error = Some(format!("writing: {e}"));
                }
            }
            Err(e) => r.error = Some(e.to_string()),
        }
        self.records.push(r);
    }

    fn conntrack_stats(&mut self, kind: Kind) {
        let mut r = record(kind, CT_STATS, SystemTime::now());
        let result = fs::read(CT_STATS).and_then(|b| fs::write(self.path(kind), b));
        if let Err(e) = result {
            r.error = Some(if e.kind() == io::ErrorKind::NotFound {
                format!("no {CT_STATS}: conntrack is not loaded in this network namespace")
            } else {
                format!("{CT_STATS}: {e}")
            });
        }
        self.records.push(r);
    }

    fn sysctls(&mut self) {
        let mut r = record(
            Kind::Sysctl,
            "/proc/sys/net (netfilter, forwarding, rp_filter, bridge-nf-call)",
            SystemTime::now(),
        );
        let text = sysctl_text(Path::new("/proc/sys"));
        if let Err(e) = fs::write(self.path(Kind::Sysctl), text) {
            r.error = Some(format!("writing: {e}"));
        }
        self.records.push(r);
    }
}

/// The host collect runs on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Host {
    /// The host name (`uname -n`).
    pub name: String,
    /// The kernel release (`uname -r`).
    pub kernel: String,
    /// The network namespace, as `readlink /proc/self/ns/net` names it.
    pub netns: Option<String>,
}

/// Reads the host's name, kernel and network namespace from /proc.
pub fn host() -> Host {
    let read = |p: &str| {
        fs::read_to_string(p)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    Host {
        name: read("/proc/sys/kernel/hostname"),
        kernel: read("/proc/sys/kernel/osrelease"),
        netns: fs::read_link("/proc/self/ns/net")
            .ok()
            .map(|p| p.display().to_string()),
    }
}

/// Runs `argv` with standard output to `out`; the error says why it gave nothing.
fn run_tool(argv: &[&str], out: &Path, dir: &Path) -> Result<(), String> {
    let command = argv.join(" ");
    let (program, args) = argv.split_first().ok_or("no command")?;
    let file = File::create(out).map_err(|e| format!("creating {}: {e}", out.display()))?;
    let err_path = dir.join(".stderr.tmp");
    let err_file = File::create(&err_path).map_err(|e| format!("creating a scratch file: {e}"))?;
    let spawned = Command::new(program)
        .args(args)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err_file)
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            let _ = fs::remove_file(&err_path);
            return Err(if e.kind() == io::ErrorKind::NotFound {
                format!("`{program}` is not installed (not found on PATH)")
            } else {
                format!("`{command}` could not be started: {e}")
            });
        }
    };
    let deadline = Instant::now() + TOOL_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!(
                    "`{command}` did not finish within {} s and was stopped",
                    TOOL_TIMEOUT.as_secs()
                ));
            }
            Err(e) => break Err(format!("waiting for `{command}`: {e}")),
        }
    };
    let stderr = fs::read(&err_path).unwrap_or_default();
    let _ = fs::remove_file(&err_path);
    let status = status?;
    if status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&stderr);
    let said: String = said.trim().replace('\n', "; ").chars().take(300).collect();
    Err(if said.is_empty() {
        format!("`{command}` failed ({status})")
    } else {
        format!("`{command}` failed ({status}): {said}")
    })
}

/// Size and SHA-256 (lower-case hex) of a file.
pub fn hash(path: &Path) -> io::Result<(u64, String)> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        bytes += n as u64;
        h.update(&buf[..n]);
    }
    let hex = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok((bytes, hex))
}

/// Sysctls read under /proc/sys: whole directories, single files, and settings of
/// every IPv4 interface (`net/ipv4/conf/*/NAME`).
const SYSCTL_TREES: [&str; 1] = ["net/netfilter"];
const SYSCTL_FILES: [&str; 13] = [
    "net/ipv4/ip_forward",
    "net/ipv4/ip_local_port_range",
    "net/ipv4/ip_local_reserved_ports",
    "net/ipv4/ip_nonlocal_bind",
    "net/ipv4/tcp_timestamps",
    "net/ipv6/conf/all/forwarding",
    "net/ipv6/conf/default/forwarding",
    "net/bridge/bridge-nf-call-iptables",
    "net/bridge/bridge-nf-call-ip6tables",
    "net/bridge/bridge-nf-call-arptables",
    "net/bridge/bridge-nf-filter-vlan-tagged",
    "net/core/netdev_max_backlog",
    "net/unix/max_dgram_qlen",
];
const SYSCTL_PER_IFACE: [&str; 6] = [
    "rp_filter",
    "forwarding",
    "route_localnet",
    "accept_local",
    "proxy_arp",
    "log_martians",
];

/// The sysctls as `sysctl -a` prints them (`net.ipv4.ip_forward = 1`), sorted by
/// name. Settings that do not exist here (no bridge module) or cannot be read are
/// left out.
pub fn sysctl_text(root: &Path) -> String {
    let mut files: Vec<String> = SYSCTL_FILES.iter().map(|s| s.to_string()).collect();
    for tree in SYSCTL_TREES {
        walk(root, tree, &mut files);
    }
    let conf = root.join("net/ipv4/conf");
    if let Ok(rd) = fs::read_dir(&conf) {
        for e in rd.flatten() {
            let iface = e.file_name().to_string_lossy().into_owned();
            for name in SYSCTL_PER_IFACE {
                files.push(format!("net/ipv4/conf/{iface}/{name}"));
            }
        }
    }
    let mut lines: Vec<(String, String)> = files
        .iter()
        .filter_map(|rel| {
            let value = fs::read_to_string(root.join(rel)).ok()?;
            // sysctl's names: a `.` inside a component (eth0.100) is shown as `/`.
            let name = rel
                .split('/')
                .map(|c| c.replace('.', "/"))
                .collect::<Vec<_>>()
                .join(".");
            Some((name, value.trim_end_matches('\n').to_string()))
        })
        .collect();
    lines.sort();
    lines.dedup();
    lines.iter().map(|(n, v)| format!("{n} = {v}\n")).collect()
}

/// Every file under `root/rel`, as paths relative to `root`.
fn walk(root: &Path, rel: &str, out: &mut Vec<String>) {
    let Ok(rd) = fs::read_dir(root.join(rel)) else {
        return;
    };
    for e in rd.flatten() {
        let child = format!("{rel}/{}", e.file_name().to_string_lossy());
        match e.file_type() {
            Ok(t) if t.is_dir() => walk(root, &child, out),
            Ok(_) => out.push(child),
            Err(_) => {}
        }
    }
}

/// The conntrack event recording, running in a thread of its own from before the
/// first table dump to after the last.
pub struct Events {
    handle: JoinHandle<FileRecord>,
    stop: Arc<AtomicBool>,
}

impl Events {
    /// Starts recording into the bundle's event log and waits (up to a few seconds)
    /// until the recorder is subscribed, so that every event after this call is in it.
    pub fn start(dir: &Path) -> Events {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel();
        let path = dir.join(Kind::ConntrackEvents.file());
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("natcheck-events".into())
            .spawn(move || record_events(&path, &flag, ready_tx));
        let handle = match handle {
            Ok(h) => h,
            Err(e) => {
                let mut r = record(Kind::ConntrackEvents, EVENTS_COMMAND, SystemTime::now());
                r.error = Some(format!("starting the event recorder: {e}"));
                let handle = std::thread::spawn(move || r);
                return Events { handle, stop };
            }
        };
        let _ = ready_rx.recv_timeout(Duration::from_secs(5));
        Events { handle, stop }
    }

    /// Stops the recording and returns its record.
    pub fn finish(self) -> FileRecord {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().unwrap_or_else(|_| {
            let mut r = record(Kind::ConntrackEvents, EVENTS_COMMAND, SystemTime::now());
            r.error = Some("the event recorder panicked".into());
            r
        })
    }
}

const EVENTS_COMMAND: &str = "netlink: conntrack events (conntrack -E -o timestamp,extended,id)";

fn record_events(path: &Path, stop: &AtomicBool, ready: mpsc::Sender<()>) -> FileRecord {
    let mut r = record(Kind::ConntrackEvents, EVENTS_COMMAND, SystemTime::now());
    let mut out = match File::create(path) {
        Ok(f) => BufWriter::new(f),
        Err(e) => {
            r.error = Some(format!("creating {}: {e}", path.display()));
            let _ = ready.send(());
            return r;
        }
    };
    let mut line = String::new();
    let mut subscribed = false;
    let go_on = || {
        if !subscribed {
            subscribed = true;
            let _ = ready.send(());
        }
        (!stop.load(Ordering::SeqCst)).then_some(Duration::from_millis(100))
    };
    let result = conntrack::netlink::record_events_while(None, go_on, |ev| {
        line.clear();
        conntrack::write_event(&ev, &mut line);
        line.push('\n');
        out.write_all(line.as_bytes())
    });
    r.finished = Some(rfc3339(SystemTime::now()));
    match result {
        Ok(rec) => {
            r.records = Some(rec.events);
            r.overruns = Some(rec.overruns);
            if let Some(w) = rec.warnings.first() {
                r.error = Some(w.to_string());
            }
        }
        Err(e) => r.error = Some(e.to_string()),
    }
    if let Err(e) = out.flush() {
        r.error.get_or_insert(format!("writing: {e}"));
    }
    // The waiter is released even when subscribing failed.
    let _ = ready.send(());
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("natcheck-context-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn sysctls_read_like_sysctl_prints_them() {
        let root = scratch("sysctl");
        let put = |rel: &str, v: &str| {
            let p = root.join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, v).unwrap();
        };
        put("net/ipv4/ip_forward", "1\n");
        put("net/ipv4/ip_local_port_range", "32768\t60999\n");
        put("net/netfilter/nf_conntrack_max", "262144\n");
        put("net/netfilter/nf_log/2", "NONE\n");
        put("net/ipv4/conf/eth0.100/rp_filter", "2\n");
        put("net/ipv4/conf/all/rp_filter", "0\n");
        put("net/ipv4/tcp_syncookies", "1\n");
        let text = sysctl_text(&root);
        let _ = fs::remove_dir_all(&root);
        assert_eq!(
            text,
            "net.ipv4.conf.all.rp_filter = 0\n\
             net.ipv4.conf.eth0/100.rp_filter = 2\n\
             net.ipv4.ip_forward = 1\n\
             net.ipv4.ip_local_port_range = 32768\t60999\n\
             net.netfilter.nf_conntrack_max = 262144\n\
             net.netfilter.nf_log.2 = NONE\n"
        );
    }

    #[test]
    fn a_missing_or_failing_tool_says_why() {
        let dir = scratch("tools");
        let out = dir.join("out.txt");
        let e = run_tool(&["natcheck-no-such-tool", "-x"], &out, &dir).unwrap_err();
        assert_eq!(
            e,
            "`natcheck-no-such-tool` is not installed (not found on PATH)"
        );
        let e = run_tool(
            &["sh", "-c", "echo partial; echo oops >&2; exit 3"],
            &out,
            &dir,
        )
        .unwrap_err();
        assert!(
            e.starts_with(
                "`sh -c echo partial; echo oops >&2; exit 3` failed (exit status: 3): oops"
            ),
            "{e}"
        );
        run_tool(&["sh", "-c", "echo fine"], &out, &dir).unwrap();
        assert_eq!(fs::read_to_string(&out).unwrap(), "fine\n");
        assert!(!dir.join(".stderr.tmp").exists());
        let (bytes, sha) = hash(&out).unwrap();
        assert_eq!(bytes, 5);
        // sha256("fine\n")
        assert_eq!(
            sha,
            "8ecc5f94c57b05d6c5e0ee316bee4875427e1845bbeef3ead59df29c72aab36e"
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn records_come_out_in_bundle_order_with_hashes() {
        let dir = scratch("records");
        let mut c = Context::new(&dir);
        fs::write(dir.join(Kind::Sysctl.file()), "a = 1\n").unwrap();
        c.add(record(Kind::Sysctl, "x", SystemTime::now()));
        let mut missing = record(Kind::NftAfter, "nft -j list ruleset", SystemTime::now());
        missing.error = Some("`nft` is not installed (not found on PATH)".into());
        c.add(missing);
        fs::write(dir.join(Kind::Capture.file()), "").unwrap();
        c.add(record(Kind::Capture, "AF_PACKET", SystemTime::now()));
        let recs = c.finish();
        let _ = fs::remove_dir_all(&dir);
        let kinds: Vec<&str> = recs.iter().map(|r| r.kind.as_str()).collect();
        assert_eq!(kinds, ["capture", "nft-after", "sysctl"]);
        assert_eq!(recs[0].bytes, Some(0));
        assert_eq!(
            recs[0].sha256.as_deref(),
            Some("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
        assert_eq!(recs[1].bytes, None);
        assert_eq!(recs[2].bytes, Some(6));
    }
}
