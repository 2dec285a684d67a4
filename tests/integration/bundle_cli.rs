//! Bundles read by the commands, without root: bundle directories assembled from a
//! lab sample (its multi-interface pcapng, conntrack table, event log, rules and
//! addresses) with a manifest, as `natcheck collect` lays them out. `correlate DIR`
//! must say what `correlate` says of the same files named one by one; two bundles
//! whose points share names read as one set of points prefixed by host; a capture
//! that dropped packets is a warning; a directory that is no bundle is an error.

use std::fs;
use std::path::{Path, PathBuf};

use natcheck::bundle::manifest::{rfc3339_ns, FileRecord, Manifest, Point, Ring, Stop, SCHEMA};
use natcheck::bundle::{Kind, MANIFEST};
use serde_json::Value;

use crate::util::{natcheck, root, stderr, stdout};

const SAMPLE: &str = "samples/published-port";
/// When the bundle's files were taken, as its manifest records.
const TAKEN_NS: i64 = 1_795_000_000_000_000_000;

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn scratch(tag: &str) -> Scratch {
    let d = std::env::temp_dir().join(format!("natcheck-bundle-cli-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    Scratch(d)
}

/// Writes a bundle of the sample's files into `dir`, from host `host`, with `drops`
/// kernel drops at eth0.
fn make_bundle(dir: &Path, host: &str, drops: u64) {
    let files = [
        (Kind::Capture, "multi.pcapng", TAKEN_NS),
        (Kind::ConntrackAfter, "conntrack.txt", TAKEN_NS),
        (Kind::ConntrackEvents, "events.txt", TAKEN_NS),
        (Kind::IptablesAfter, "iptables.txt", TAKEN_NS),
        (Kind::Addresses, "addrs.txt", TAKEN_NS),
    ];
    bundle_of(dir, SAMPLE, host, drops, &files);
}

/// Writes a bundle into `dir` of files of `sample`: (what it holds, the sample's
/// file, when it was taken) each.
fn bundle_of(dir: &Path, sample: &str, host: &str, drops: u64, of: &[(Kind, &str, i64)]) {
    fs::create_dir_all(dir).unwrap();
    let mut files = Vec::new();
    for &(kind, sample_file, taken) in of {
        let bytes = fs::read(root().join(sample).join(sample_file)).unwrap();
        fs::write(dir.join(kind.file()), &bytes).unwrap();
        files.push(FileRecord {
            name: kind.file(),
            kind: kind.name().into(),
            what: kind.what().into(),
            command: format!("copied from {sample}/{sample_file}"),
            taken: rfc3339_ns(taken),
            bytes: Some(bytes.len() as u64),
            ..FileRecord::default()
        });
    }
    files.push(FileRecord {
        name: Kind::NftAfter.file(),
        kind: Kind::NftAfter.name().into(),
        error: Some("`nft` is not installed (not found on PATH)".into()),
        ..FileRecord::default()
    });
    let point = |name: &str, packets, drops| Point {
        name: name.into(),
        interface: name.into(),
        linktype: "ETHERNET".into(),
        packets,
        kernel_packets: packets + drops,
        kernel_drops: drops,
        ..Point::default()
    };
    let m = Manifest {
        schema: SCHEMA.into(),
        natcheck: "0.1.0".into(),
        host: host.into(),
        kernel: "6.1.0".into(),
        started: rfc3339_ns(TAKEN_NS),
        stopped: rfc3339_ns(TAKEN_NS + 10_000_000_000),
        stop: Stop {
            reason: "signal".into(),
            detail: "SIGINT".into(),
        },
        points: vec![
            point("docker0", 43, 0),
            point("eth0", 43, drops),
            point("veth-c1", 43, 0),
        ],
        files,
        ..Manifest::default()
    };
    fs::write(dir.join(MANIFEST), m.to_json()).unwrap();
}

fn json(args: &[&str]) -> (Option<i32>, Value, String) {
    let out = natcheck(args);
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code(), v, stderr(&out))
}

/// A report with the inputs' paths (which differ between a bundle and the sample)
/// and the bundle itself left out.
fn pathless(v: &Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(
            o.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "source" | "bundles" | "inputs"))
                .map(|(k, v)| (k.clone(), pathless(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(pathless).collect()),
        other => other.clone(),
    }
}

#[test]
fn a_bundle_reads_like_its_files_named_one_by_one() {
    let s = scratch("one");
    let dir = s.0.join("router");
    make_bundle(&dir, "router", 0);
    let d = dir.to_str().unwrap();
    let (code, bundle, err) = json(&["correlate", d, "--format", "json"]);
    assert_eq!(code, Some(0), "{err}");
    let f = |name: &str| format!("{SAMPLE}/{name}");
    let (code, named, err) = json(&[
        "correlate",
        &f("multi.pcapng"),
        "--conntrack",
        &f("conntrack.txt"),
        "--conntrack",
        &f("events.txt"),
        "--rules",
        &f("iptables.txt"),
        "--rules",
        &f("addrs.txt"),
        "--format",
        "json",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        pathless(&bundle["connections"]),
        pathless(&named["connections"])
    );
    assert_eq!(bundle["findings"], named["findings"]);
    assert_eq!(bundle["conntrack"].as_array().unwrap().len(), 2);
    assert!(bundle["rules"][0]["source"]
        .as_str()
        .unwrap()
        .contains("iptables-after.txt"));
    let b = &bundle["bundles"][0];
    assert_eq!(b["host"], "router");
    assert_eq!(b["stop"]["detail"], "SIGINT");
    assert_eq!(b["missing"][0]["file"], "nft-after.json");
    // The table's time is the one the manifest recorded, not an estimate.
    let taken = rfc3339_ns(TAKEN_NS);
    assert_eq!(bundle["conntrack"][0]["time_ns"], taken.as_str());
    assert_eq!(bundle["conntrack"][0]["time_basis"], "recorded");
    assert_eq!(named["conntrack"][0]["time_basis"], "estimated");
    let md = stdout(&natcheck(&["correlate", d, "--format", "markdown"]));
    let row = md
        .lines()
        .find(|l| l.contains("conntrack-after.txt` | snapshot"))
        .unwrap_or_else(|| panic!("{md}"));
    assert!(row.ends_with(&format!("| {taken} |")), "{row}");
    let named_md = stdout(&natcheck(&[
        "correlate",
        &f("multi.pcapng"),
        "--conntrack",
        &f("conntrack.txt"),
        "--format",
        "markdown",
    ]));
    assert!(named_md.contains("Z (estimated) |"), "{named_md}");
    // The table report names the bundle and what it lacks.
    let out = natcheck(&["correlate", d]);
    let text = stdout(&out);
    assert!(
        text.contains(&format!("conntrack-after.txt: snapshot of 4 entries, 4 on the wire, 4 agree with it, taken at {taken}")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "bundle: {d}: natcheck collect on router (Linux 6.1.0), "
        )),
        "{text}"
    );
    assert!(
        text.contains("stopped by SIGINT; kernel drops: none; not collected: nft-after.json"),
        "{text}"
    );
    // flows, conntrack and explain read it too.
    let out = natcheck(&["flows", d]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let named = natcheck(&["flows", &f("multi.pcapng")]);
    assert_eq!(
        stdout(&out).replace(&format!("{d}/capture.pcapng"), "X"),
        stdout(&named).replace(&f("multi.pcapng"), "X")
    );
    let out = natcheck(&["conntrack", d, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["inputs"].as_array().unwrap().len(), 2);
    let packet = "tcp 198.51.100.20:40000 > 203.0.113.1:8080 in eth0";
    let out = natcheck(&["explain", "--rules", d, "--packet", packet]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let named = natcheck(&[
        "explain",
        "--rules",
        &f("iptables.txt"),
        "--rules",
        &f("addrs.txt"),
        "--packet",
        packet,
    ]);
    assert_eq!(
        stdout(&out)
            .replace(&format!("{d}/iptables-after.txt"), "X")
            .replace(&format!("{d}/ip-addr.json"), "Z"),
        stdout(&named)
            .replace(&f("iptables.txt"), "X")
            .replace(&f("addrs.txt"), "Z"),
    );
}

/// `tar czf` of a bundle, under its directory or at the archive's root, reads as the
/// directory does, every file named inside the archive; `flows`, `conntrack` and
/// `explain` read it too.
#[test]
fn a_gzipped_tar_of_a_bundle_reads_as_the_directory() {
    if !crate::util::have("tar") {
        return crate::util::skip("no tar");
    }
    let s = scratch("tar");
    let dir = s.0.join("router");
    make_bundle(&dir, "router", 0);
    let d = dir.to_str().unwrap();
    let (code, want, err) = json(&["correlate", d, "--format", "json"]);
    assert_eq!(code, Some(0), "{err}");
    let under = s.0.join("under.tar.gz");
    let root = s.0.join("root.tgz");
    let tar = |args: &[&str]| {
        let st = std::process::Command::new("tar")
            .args(args)
            .status()
            .unwrap();
        assert!(st.success(), "tar {args:?}");
    };
    let parent = s.0.to_str().unwrap();
    tar(&["czf", under.to_str().unwrap(), "-C", parent, "router"]);
    tar(&["czf", root.to_str().unwrap(), "-C", d, "."]);
    for (archive, inside) in [(&under, "/router"), (&root, "")] {
        let a = archive.to_str().unwrap();
        let named = format!("{a}{inside}");
        let (code, got, err) = json(&["correlate", a, "--format", "json"]);
        assert_eq!(code, Some(0), "{a}: {err}");
        let same = |v: &Value| v.to_string().replace(&named, "B").replace(d, "B");
        assert_eq!(same(&got), same(&want), "{a}");
        assert_eq!(got["bundles"][0]["dir"], named.as_str());
        assert_eq!(
            got["conntrack"][0]["source"],
            format!("{named}/conntrack-after.txt").as_str()
        );
        let text = stdout(&natcheck(&["correlate", a]));
        assert!(
            text.contains(&format!("bundle: {named}: natcheck collect on router")),
            "{text}"
        );
        let packet = "tcp 198.51.100.20:40000 > 203.0.113.1:8080 in eth0";
        for cmd in ["flows", "conntrack", "explain"] {
            let run = |b: &str| {
                let out = match cmd {
                    "explain" => natcheck(&[cmd, "--rules", b, "--packet", packet]),
                    _ => natcheck(&[cmd, b]),
                };
                assert_eq!(out.status.code(), Some(0), "{cmd} {b}: {}", stderr(&out));
                stdout(&out)
            };
            let got = run(a);
            assert!(cmd == "explain" || got.contains(&named), "{cmd}: {got}");
            assert_eq!(got.replace(&named, "B"), run(d).replace(d, "B"), "{cmd}");
        }
    }
    // A link in the archive: refused, the archive and the entry named.
    std::os::unix::fs::symlink("/etc/passwd", dir.join("ipset.txt")).unwrap();
    let bad = s.0.join("bad.tar.gz");
    tar(&["czf", bad.to_str().unwrap(), "-C", parent, "router"]);
    let out = natcheck(&["correlate", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(&format!(
            "{}: entry `router/ipset.txt`: a link: refused",
            bad.display()
        )),
        "{}",
        stderr(&out)
    );
}

/// A flight recorder's bundle: the table before predates the packets kept and is
/// not a witness; a connection whose `[NEW]` event came at or before the cut was not
/// seen opening, so its first packet captured is not walked through the rules as a
/// first packet; the others are. The report says what was discarded.
#[test]
fn a_flight_recorders_bundle_judges_only_the_openings_it_kept() {
    let s = scratch("ring");
    let dir = s.0.join("router");
    make_bundle(&dir, "router", 0);
    let mpath = dir.join(MANIFEST);
    let mut m = Manifest::from_json(&fs::read_to_string(&mpath).unwrap()).unwrap();
    let before = fs::read(root().join(SAMPLE).join("conntrack.txt")).unwrap();
    fs::write(dir.join(Kind::ConntrackBefore.file()), &before).unwrap();
    m.files.push(FileRecord {
        name: Kind::ConntrackBefore.file(),
        kind: Kind::ConntrackBefore.name().into(),
        taken: rfc3339_ns(TAKEN_NS),
        bytes: Some(before.len() as u64),
        ..FileRecord::default()
    });
    // The first connection's [NEW] is at 1795412593.099041 in the event log.
    m.ring = Some(Ring {
        size: 1 << 20,
        segment_size: 1 << 17,
        discarded_packets: 1234,
        discarded_bytes: 567_890,
        discarded_through: Some(rfc3339_ns(1_795_412_593_099_500_000)),
        before_predates_packets: true,
        ..Ring::default()
    });
    fs::write(&mpath, m.to_json()).unwrap();
    let d = dir.to_str().unwrap();
    let (code, v, err) = json(&["correlate", d, "--format", "json"]);
    assert_eq!(code, Some(0), "{err}");
    let sources: Vec<&str> = v["conntrack"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["source"].as_str().unwrap())
        .collect();
    assert_eq!(
        sources,
        [
            format!("{d}/conntrack-after.txt"),
            format!("{d}/conntrack-events.txt")
        ]
    );
    let walked: Vec<bool> = v["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| !c["rules"].is_null())
        .collect();
    assert_eq!(walked, [false, true, true, true]);
    assert_eq!(v["bundles"][0]["ring"]["discarded_packets"], 1234);
    let text = stdout(&natcheck(&["correlate", d]));
    assert!(
        text.contains("; flight recorder of 1048576 bytes: 1234 packets (567890 bytes) up to 2026-11-23T05:43:13.099500000Z discarded, every packet after it kept; the conntrack table before predates the packets kept: not compared with them"),
        "{text}"
    );
}

#[test]
fn two_hosts_bundles_are_one_set_of_points_prefixed_by_host() {
    let s = scratch("two");
    let (a, b) = (s.0.join("a"), s.0.join("b"));
    make_bundle(&a, "host-a", 0);
    make_bundle(&b, "host-b", 0);
    let (code, v, err) = json(&[
        "correlate",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let names: Vec<&str> = v["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "host-a/docker0",
            "host-a/eth0",
            "host-a/veth-c1",
            "host-b/docker0",
            "host-b/eth0",
            "host-b/veth-c1"
        ]
    );
    assert_eq!(v["bundles"].as_array().unwrap().len(), 2);
    // Both bundles' conntrack files are witnesses; the first bundle's rules are used.
    assert_eq!(v["conntrack"].as_array().unwrap().len(), 4);
    let rules = v["rules"][0]["source"].as_str().unwrap();
    assert!(
        rules.contains("/a/iptables-after.txt") && !rules.contains("/b/"),
        "{rules}"
    );
    // Hosts of one name: the directories' names.
    make_bundle(&s.0.join("c"), "host-a", 0);
    let (_, v, err) = json(&[
        "correlate",
        a.to_str().unwrap(),
        s.0.join("c").to_str().unwrap(),
        "--format",
        "json",
    ]);
    let names: Vec<&str> = v["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names[0], "a/docker0", "{err}");
    assert_eq!(names[3], "c/docker0");
}

#[test]
fn a_capture_with_kernel_drops_is_a_warning() {
    let s = scratch("drops");
    let dir = s.0.join("b");
    make_bundle(&dir, "router", 7);
    let d = dir.to_str().unwrap();
    let out = natcheck(&["correlate", d]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("kernel drops: eth0 7"),
        "{}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains(&format!(
            "warning: {d}/capture.pcapng: the kernel dropped 7 of 50 packets at eth0 while capturing: packets missing there may have been dropped by the capture, so loss findings at eth0 are uncertain"
        )),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_directory_that_is_no_bundle_is_an_error() {
    let s = scratch("none");
    let d = s.0.to_str().unwrap();
    for args in [vec!["correlate", d], vec!["flows", d], vec!["conntrack", d]] {
        let out = natcheck(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&out).contains(&format!(
                "{d}: is a directory, not a natcheck bundle (no manifest.json)"
            )),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}

/// A bundle's statistics before and after the capture and its sysctls reach the
/// audit: the counters' growth and the table's limit, as when they are named one by
/// one, whatever order the manifest lists the statistics in (the times it gives say
/// which came first).
#[test]
fn a_bundle_gives_the_counters_growth_and_the_tables_limit() {
    let s = scratch("table");
    let dir = s.0.join("host");
    let sample = "samples/fault-ct-table-full";
    bundle_of(
        &dir,
        sample,
        "host",
        0,
        &[
            (Kind::Capture, "multi.pcapng", TAKEN_NS),
            (
                Kind::ConntrackStatsAfter,
                "conntrack-stats.txt",
                TAKEN_NS + 5_000_000_000,
            ),
            (
                Kind::ConntrackStatsBefore,
                "conntrack-stats-before.txt",
                TAKEN_NS,
            ),
            (Kind::Sysctl, "sysctl.txt", TAKEN_NS),
        ],
    );
    let d = dir.to_str().unwrap();
    let (code, doc, err) = json(&["correlate", d, "--format", "json"]);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(doc["findings"].as_array().unwrap().len(), 1);
    let f = &doc["findings"][0];
    assert_eq!(f["code"], "conntrack-table-full", "{}", doc["findings"]);
    let detail = &f["detail"];
    assert_eq!(detail["drops"], 9);
    assert!(detail["counted_since"]
        .as_str()
        .unwrap()
        .ends_with("conntrack-stats-before.txt"));
    assert_eq!(
        (&detail["entries"], &detail["max"]),
        (&42.into(), &42.into())
    );
    let named = |f: &str| format!("{sample}/{f}");
    let (_, by_name, _) = json(&[
        "correlate",
        &named("multi.pcapng"),
        "--conntrack",
        &named("conntrack-stats-before.txt"),
        "--conntrack",
        &named("conntrack-stats.txt"),
        "--conntrack",
        &named("sysctl.txt"),
        "--format",
        "json",
    ]);
    let facts = |f: &Value| {
        let mut d = f["detail"].clone();
        d["counted_since"] = Value::Null;
        (f["connections"].clone(), f["packets"].clone(), d)
    };
    assert_eq!(facts(f), facts(&by_name["findings"][0]));
}

/// `--partition host` names the host as the bundle's manifest does, unless `--host`
/// gives another name.
#[cfg(feature = "frames")]
#[test]
fn a_bundle_names_the_host_partition() {
    let s = scratch("host");
    let dir = s.0.join("bundle");
    make_bundle(&dir, "edge-7", 0);
    let tables = s.0.join("tables");
    let (d, t) = (dir.to_str().unwrap(), tables.to_str().unwrap());
    let hosts = |extra: &[&str]| {
        let mut args = vec!["correlate", d, "--tables", t, "--partition", "host"];
        args.extend_from_slice(extra);
        let out = natcheck(&args);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let mut names: Vec<String> = fs::read_dir(tables.join("connections"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(hosts(&[]), ["host=edge-7"]);
    assert_eq!(hosts(&["--host", "router"]), ["host=edge-7", "host=router"]);
}
