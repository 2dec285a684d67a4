use std::path::PathBuf;

use super::manifest::{FileRecord, Point, Stop, SCHEMA};
use super::*;

/// A scratch directory removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let d = std::env::temp_dir().join(format!("natcheck-bundle-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        Scratch(d)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn record(kind: Kind, bytes: Option<u64>, error: Option<&str>) -> FileRecord {
    FileRecord {
        name: kind.file(),
        kind: kind.name().into(),
        what: kind.what().into(),
        command: "test".into(),
        taken: manifest::rfc3339_ns(1_700_000_000_000_000_000),
        bytes,
        error: error.map(str::to_string),
        ..FileRecord::default()
    }
}

/// A bundle with a capture, two conntrack tables, rules after and before (the IPv6
/// ones empty), a missing nft and a point with drops.
fn write_bundle(dir: &Path) -> Manifest {
    let mut files = Vec::new();
    let mut put = |kind: Kind, content: &str| {
        fs::write(dir.join(kind.file()), content).unwrap();
        files.push(record(kind, Some(content.len() as u64), None));
    };
    put(Kind::Capture, "not really a capture");
    put(Kind::ConntrackBefore, "");
    put(Kind::ConntrackAfter, "ipv4 2 udp 17 29 src=10.0.0.2 dst=192.0.2.1 sport=5 dport=53 src=192.0.2.1 dst=10.0.0.2 sport=53 dport=5 mark=0 use=1\n");
    put(
        Kind::IptablesBefore,
        "*nat\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n",
    );
    put(
        Kind::IptablesAfter,
        "*nat\n:POSTROUTING ACCEPT [1:60]\nCOMMIT\n",
    );
    put(Kind::Ip6tablesAfter, "\n");
    put(Kind::Addresses, "[]\n");
    put(Kind::Links, "[]\n");
    files.push(record(Kind::NftAfter, None, Some("nft: not found on PATH")));
    let m = Manifest {
        schema: SCHEMA.into(),
        natcheck: "0.1.0".into(),
        host: "router".into(),
        kernel: "6.1.0".into(),
        started: manifest::rfc3339_ns(1_700_000_000_000_000_000),
        stopped: manifest::rfc3339_ns(1_700_000_010_000_000_000),
        stop: Stop {
            reason: "signal".into(),
            detail: "SIGINT".into(),
        },
        points: vec![
            Point {
                name: "eth0".into(),
                interface: "eth0".into(),
                packets: 100,
                kernel_packets: 100,
                ..Point::default()
            },
            Point {
                name: "ns1:eth0".into(),
                netns: Some("ns1".into()),
                interface: "eth0".into(),
                packets: 90,
                kernel_packets: 100,
                kernel_drops: 10,
                ..Point::default()
            },
        ],
        files,
        ..Manifest::default()
    };
    fs::write(dir.join(MANIFEST), m.to_json()).unwrap();
    m
}

#[test]
fn a_bundle_names_its_captures_witnesses_and_rules() {
    let s = Scratch::new("read");
    let m = write_bundle(&s.0);
    assert!(Bundle::is_bundle(&s.0));
    let b = Bundle::open(&s.0).unwrap();
    assert_eq!(b.manifest, m);
    assert_eq!(b.capture(), Some(s.0.join("capture.pcapng")));
    let ct: Vec<Kind> = b.conntrack().into_iter().map(|(_, k)| k).collect();
    assert_eq!(ct, [Kind::ConntrackBefore, Kind::ConntrackAfter]);
    // The empty ip6tables dump is no rule set; the missing nft is not there.
    assert_eq!(
        b.rules(),
        [s.0.join("iptables-after.txt"), s.0.join("ip-addr.json")]
    );
    assert_eq!(b.rules_before(), [s.0.join("iptables-before.txt")]);
    assert_eq!(b.links(), Some(s.0.join("ip-link.json")));
    assert_eq!(b.path(Kind::NftAfter), None);
    assert_eq!(
        b.taken_ns(Kind::ConntrackAfter),
        Some(1_700_000_000_000_000_000)
    );
    // Only the dropping point is a warning.
    assert_eq!(b.warnings.len(), 1, "{:?}", b.warnings);
    let w = b.warnings[0].to_string();
    assert!(
        w.contains("capture.pcapng: the kernel dropped 10 of 100 packets at ns1:eth0"),
        "{w}"
    );
    let sum = b.summary();
    assert_eq!(sum.host, "router");
    assert_eq!(sum.stop.detail, "SIGINT");
    assert_eq!(sum.points[1], ("ns1:eth0".to_string(), 90, 10));
    assert_eq!(
        sum.missing,
        [(
            "nft-after.json".to_string(),
            "nft: not found on PATH".to_string()
        )]
    );
    assert_eq!(sum.stopped_ns, Some(1_700_000_010_000_000_000));
}

#[test]
fn files_changed_or_missing_after_collection_are_warnings() {
    let s = Scratch::new("changed");
    write_bundle(&s.0);
    fs::write(s.0.join("conntrack-after.txt"), "shorter\n").unwrap();
    fs::remove_file(s.0.join("iptables-before.txt")).unwrap();
    let b = Bundle::open(&s.0).unwrap();
    let text: Vec<String> = b.warnings.iter().map(|w| w.to_string()).collect();
    assert!(
        text.iter()
            .any(|w| w.contains("conntrack-after.txt: 8 bytes, the manifest says")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|w| w.contains("iptables-before.txt: listed in the manifest but missing")),
        "{text:?}"
    );
    // A changed file is still read, a missing one is not.
    assert!(b.path(Kind::ConntrackAfter).is_some());
    assert!(b.rules_before().is_empty());
}

#[test]
fn a_manifest_cannot_point_outside_the_bundle() {
    let s = Scratch::new("escape");
    let mut m = write_bundle(&s.0);
    m.files[0].name = "../../etc/passwd".into();
    fs::write(s.0.join(MANIFEST), m.to_json()).unwrap();
    let b = Bundle::open(&s.0).unwrap();
    assert_eq!(b.capture(), None);
    assert!(b.warnings[0]
        .message
        .contains("expected `capture.pcapng`: not used"));
}

#[test]
fn directories_that_are_not_bundles() {
    let s = Scratch::new("none");
    assert!(!Bundle::is_bundle(&s.0));
    let e = Bundle::open(&s.0).unwrap_err().to_string();
    assert!(
        e.contains("not a natcheck bundle (no readable manifest.json)"),
        "{e}"
    );
    fs::write(s.0.join(MANIFEST), "{\"schema\": \"other/1\"}").unwrap();
    let e = format!("{:#}", Bundle::open(&s.0).unwrap_err());
    assert!(e.contains("manifest.json: not a manifest"), "{e}");
    fs::write(s.0.join(MANIFEST), [0xff, 0xfe, 0]).unwrap();
    assert!(Bundle::open(&s.0).is_err());
}

#[test]
fn kinds_have_distinct_names_and_files() {
    let mut names: Vec<String> = Kind::ALL.iter().map(|k| k.file()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), Kind::ALL.len());
    for k in Kind::ALL {
        assert_eq!(Kind::from_name(k.name()), Some(k));
    }
    assert_eq!(Kind::from_name("nope"), None);
}

/// Packs the files of `dir` into a gzip'd tar at `out`, each under `prefix`.
fn pack(dir: &Path, prefixes: &[&str], out: &Path) {
    let gz =
        flate2::write::GzEncoder::new(fs::File::create(out).unwrap(), flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    for prefix in prefixes {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let name = format!("{prefix}{}", p.file_name().unwrap().to_str().unwrap());
            b.append_path_with_name(&p, name).unwrap();
        }
    }
    b.into_inner().unwrap().finish().unwrap();
}

#[test]
fn an_archive_of_a_bundle_reads_as_the_bundle_with_its_files_inside_it() {
    let s = Scratch::new("archive");
    let dir = s.0.join("b1");
    fs::create_dir(&dir).unwrap();
    let m = write_bundle(&dir);
    let archive = s.0.join("b1.tar.gz");
    pack(&dir, &["b1/"], &archive);
    assert!(Bundle::is_archive(&archive) && !Bundle::is_bundle(&archive));
    let b = Bundle::open(&archive).unwrap();
    assert_eq!(b.manifest, m);
    let inside = archive.join("b1");
    assert_eq!(b.dir, inside);
    assert_eq!(b.capture(), Some(inside.join("capture.pcapng")));
    assert_eq!(
        b.rules(),
        [
            inside.join("iptables-after.txt"),
            inside.join("ip-addr.json")
        ]
    );
    assert_eq!(b.warnings.len(), 1, "{:?}", b.warnings);
    // At the root, the archive is the bundle's directory.
    let root = s.0.join("root.tgz");
    pack(&dir, &[""], &root);
    let b = Bundle::open(&root).unwrap();
    assert_eq!(b.capture(), Some(root.join("capture.pcapng")));
    // Two bundles in one archive, or none.
    let two = s.0.join("two.tar.gz");
    pack(&dir, &["x/", "y/"], &two);
    let e = Bundle::open(&two).unwrap_err().to_string();
    assert!(
        e.ends_with("two.tar.gz: holds 2 bundles (x, y): name one archive per bundle"),
        "{e}"
    );
    fs::remove_file(dir.join(MANIFEST)).unwrap();
    let none = s.0.join("none.tar.gz");
    pack(&dir, &["a/b/"], &none);
    let e = Bundle::open(&none).unwrap_err().to_string();
    assert!(
        e.contains("none.tar.gz: not a natcheck bundle (no manifest.json at its root"),
        "{e}"
    );
}
