//! `natcheck conntrack` and the conntrack reader on the lab samples: every recorded
//! file parses without a warning, the `conntrack -L` and `/proc` forms of one snapshot
//! agree, the event log's NAT decisions match the snapshot, and bad lines are located
//! without losing the lines around them.

use std::collections::BTreeMap;

use natcheck::conntrack::{self, Implied};
use natcheck::model::NatKind;
use serde_json::Value;

use crate::util::*;

/// Every recording whose conntrack files are read here: the topology does not matter.
fn scenarios() -> Vec<String> {
    (SCENARIOS.iter().chain(OWN_TOPOLOGY_SCENARIOS))
        .map(|s| s.to_string())
        .collect()
}

fn read(rel: &str) -> conntrack::Dump {
    conntrack::read_path(root().join(rel).to_str().unwrap()).unwrap()
}

#[test]
fn every_recorded_scenario_is_tested() {
    let mut on_disk: Vec<String> = std::fs::read_dir(root().join("samples"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("conntrack.txt").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut listed = scenarios();
    listed.extend(HAIRPIN_SCENARIOS.iter().map(|s| s.to_string()));
    listed.sort();
    assert_eq!(
        on_disk, listed,
        "SCENARIOS, HAIRPIN_SCENARIOS or OWN_TOPOLOGY_SCENARIOS in tests/integration/util.rs \
         list every recorded scenario"
    );
}

#[test]
fn every_recorded_conntrack_file_parses_without_warnings() {
    let mut files = 0;
    for s in scenarios() {
        for f in std::fs::read_dir(root().join("samples").join(&s))
            .unwrap()
            .flatten()
        {
            let name = f.file_name().to_string_lossy().into_owned();
            if !(name.starts_with("conntrack") || name == "events.txt") {
                continue;
            }
            let d = read(&format!("samples/{s}/{name}"));
            assert!(d.warnings.is_empty(), "{s}/{name}: {:?}", d.warnings);
            let lines = std::fs::read_to_string(f.path())
                .unwrap()
                .lines()
                .filter(|l| !l.trim().is_empty())
                .count();
            let read = d.entries.len() + d.events.len() + d.stats.len() + d.skipped_lines as usize;
            assert_eq!(read, lines, "{s}/{name}: every line is accounted for");
            files += 1;
        }
    }
    assert!(files >= 36, "{files} files");
}

#[test]
fn list_and_proc_forms_of_one_snapshot_agree() {
    for s in scenarios() {
        let l = read(&format!("samples/{s}/conntrack.txt"));
        let p = read(&format!("samples/{s}/conntrack-proc.txt"));
        let key = |d: &conntrack::Dump| {
            let mut v: Vec<_> = d
                .entries
                .iter()
                .map(|e| {
                    (
                        e.orig,
                        e.reply,
                        e.state.clone(),
                        e.flags.clone(),
                        e.mark,
                        e.zone_id(),
                    )
                })
                .collect();
            v.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
            v
        };
        assert_eq!(key(&l), key(&p), "{s}");
        assert!(
            l.entries
                .iter()
                .all(|e| e.id.is_some() && e.l3num.is_some()),
            "{s}: -o extended,id"
        );
        assert!(
            p.entries
                .iter()
                .all(|e| e.id.is_none() && e.zone == Some(0)),
            "{s}: /proc"
        );
    }
}

/// Recordings whose first connections were opened before the captures and the event
/// log started: the log holds nothing of them. The kernel (`nf_conntrack_events=2`,
/// the default since 6.0) gives a connection its event cache only if someone listens
/// when it is created, so even its close goes unreported.
const OPENED_BEFORE_THE_LOG: &[&str] = &["midstream"];

#[test]
fn event_log_holds_the_snapshot_nat_decisions() {
    for s in scenarios() {
        let snap = read(&format!("samples/{s}/conntrack.txt"));
        let ev = read(&format!("samples/{s}/events.txt"));
        let timelines = conntrack::timelines(&ev.events);
        // The kernel may give a new entry the id of one it just freed (an entry
        // deleted and made again for the same tuple): an id can have several
        // timelines, one after the other.
        let mut by_id: BTreeMap<u32, Vec<&conntrack::Timeline>> = BTreeMap::new();
        for t in &timelines {
            if let Some(id) = t.id {
                by_id.entry(id).or_default().push(t);
            }
        }
        let mut from_new = 0;
        for e in &snap.entries {
            let ts = by_id.get(&e.id.unwrap());
            if ts.is_none() && OPENED_BEFORE_THE_LOG.contains(&s.as_str()) {
                continue;
            }
            let ts = ts.unwrap_or_else(|| panic!("{s}: entry id {:?} has no events", e.id));
            assert!(ts.iter().all(|t| t.orig == e.orig), "{s}");
            from_new += 1;
            assert!(
                ts.iter().all(|t| t.saw_new),
                "{s}: the log started before the connection"
            );
            // The REPLY tuple, i.e. the NAT decision, is fixed from the NEW event on:
            // the entry's is the one of a timeline of its id.
            assert!(
                ts.iter()
                    .any(|t| ev.events[t.events[0]].entry.reply == e.reply),
                "{s}: line {}",
                e.line
            );
        }
        assert!(from_new > 0, "{s}: no entry opened while the log ran");
    }
}

#[test]
fn implied_translations_of_the_lab_scenarios() {
    let kinds = |s: &str| {
        let d = read(&format!("samples/{s}/conntrack.txt"));
        let host = conntrack::host_addresses(&d.entries);
        let mut v: Vec<String> = d
            .entries
            .iter()
            .map(|e| Implied::of(e, &host).label())
            .collect();
        v.sort();
        v.dedup();
        v
    };
    assert_eq!(kinds("masquerade"), ["snat"]);
    assert_eq!(kinds("published-port"), ["dnat"]);
    assert_eq!(kinds("nodeport"), ["snat+dnat (port reallocated)"]);
    assert_eq!(kinds("port-collision"), ["snat", "snat (port reallocated)"]);
    let d = read("samples/snat-random-fully/conntrack.txt");
    assert!(d.entries.iter().all(|e| {
        let i = Implied::of(e, &Default::default());
        i.change.kind == NatKind::Snat && i.change.src_addr_changed
    }));
}

#[test]
fn table_output_of_a_snapshot_an_event_log_and_statistics() {
    let out = natcheck(&[
        "conntrack",
        "samples/port-collision/conntrack.txt",
        "samples/nodeport/events.txt",
        "samples/fault-invalid-leak/conntrack-stats.txt",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).is_empty());
    insta::assert_snapshot!("conntrack_table", stdout(&out));
}

#[test]
fn nat_filter_and_json() {
    let out = natcheck(&[
        "conntrack",
        "--nat",
        "dnat",
        "--format",
        "json",
        "samples/published-port/conntrack.txt",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["schema"], "natcheck.conntrack/1");
    let entries = v["inputs"][0]["entries"].as_array().unwrap();
    assert!(!entries.is_empty());
    for e in entries {
        assert_eq!(e["implied"]["kind"], "dnat", "{e}");
        assert_ne!(e["implied"]["post"]["dst"], e["orig"]["dst"]);
        assert!(e["id"].is_u64());
    }
    assert_eq!(entries.len(), 4);
    let snat = natcheck(&[
        "conntrack",
        "--nat",
        "snat",
        "--format",
        "json",
        "samples/published-port/conntrack.txt",
    ]);
    let snat: Value = serde_json::from_str(&stdout(&snat)).unwrap();
    assert_eq!(snat["inputs"][0]["entries"].as_array().unwrap().len(), 0);
    let any = natcheck(&[
        "conntrack",
        "--nat",
        "any",
        "--format",
        "json",
        "samples/port-collision/conntrack.txt",
    ]);
    let any: Value = serde_json::from_str(&stdout(&any)).unwrap();
    assert_eq!(any["inputs"][0]["entries"].as_array().unwrap().len(), 6);
}

#[test]
fn garbage_between_entries_is_located_and_the_entries_kept() {
    let good = std::fs::read_to_string(root().join("samples/masquerade/conntrack.txt")).unwrap();
    let lines: Vec<&str> = good.lines().collect();
    let mut text = String::new();
    for (i, l) in lines.iter().enumerate() {
        text.push_str(l);
        text.push('\n');
        if i == 2 {
            text.push_str("tcp      6 431999 ESTABLISHED src=172.17.0.2 dst=203.0.113.2 sport=99999 dport=7000\n");
            text.push_str("\u{1b}[0m garbage \u{fffd}\n");
        }
    }
    let dir = std::env::temp_dir().join(format!("natcheck-ct-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ct.txt");
    std::fs::write(&path, &text).unwrap();
    let out = natcheck(&["conntrack", "--format", "json", path.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(out.status.code(), Some(2), "warnings exit 2");
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        v["inputs"][0]["entries"].as_array().unwrap().len(),
        lines.len()
    );
    let err = stderr(&out);
    let p = path.display();
    assert!(
        err.contains(&format!(
            "{p}:4:68: expected a port after `sport=`, found `99999`"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("{p}:5:1: expected a conntrack entry")),
        "{err}"
    );
    assert_eq!(err.lines().count(), 2, "{err}");
}

#[test]
fn missing_file_is_an_error_naming_it() {
    let out = natcheck(&["conntrack", "samples/nope.txt"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("samples/nope.txt: cannot open"),
        "{}",
        stderr(&out)
    );
}

/// Real conntrack pastes from public issues (each with a `.source` naming it) and the
/// tool's own `-o xml` output: every record read, without a warning, and what was
/// stripped around them. The counts were checked by hand against each file.
#[test]
fn real_pastes_are_read_whole() {
    // file, entries, events, footers, skipped lines, prompts stripped
    let expected: &[(&str, usize, usize, usize, u64, u64)] = &[
        ("cloud-api-adaptor-2015-footer-first.txt", 3, 0, 1, 1, 1),
        ("jc-646-events.txt", 0, 7, 0, 0, 0),
        ("kubernetes-122740-grep.txt", 1, 0, 0, 1, 0),
        ("kubernetes-126130-klog-indented.txt", 2, 0, 0, 0, 0),
        ("kubernetes-126130-plain.txt", 1, 0, 0, 0, 0),
        ("kubernetes-127318-dnat.txt", 1, 0, 0, 0, 0),
        ("netlink-876-root-prompt.txt", 3, 0, 0, 1, 1),
        ("netlink-949-prose.txt", 1, 0, 0, 0, 0),
        ("openwrt-luci-5909-two-prompts.txt", 3, 0, 0, 2, 2),
        ("pyroute2-1198-offload.txt", 6, 0, 1, 1, 1),
        ("scope-245-sudo-prompt.txt", 8, 0, 0, 1, 1),
        ("list-id.xml", 5, 0, 1, 0, 0),
        ("list-ktimestamp.xml", 4, 0, 0, 0, 0),
        ("events-timestamp.xml", 0, 13, 0, 0, 0),
    ];
    let dir = root().join("tests/data/conntrack");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".source"))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = expected.iter().map(|e| e.0.to_string()).collect();
    listed.sort();
    assert_eq!(
        on_disk, listed,
        "every file in tests/data/conntrack is checked"
    );
    for &(name, entries, events, footers, skipped, prompts) in expected {
        let path = dir.join(name);
        let source = std::fs::read_to_string(dir.join(format!("{name}.source"))).unwrap();
        assert!(!source.trim().is_empty(), "{name}: its source is named");
        let d = conntrack::read_path(path.to_str().unwrap()).unwrap();
        assert!(d.warnings.is_empty(), "{name}: {:?}", d.warnings);
        assert_eq!(
            (d.entries.len(), d.events.len(), d.footers.len()),
            (entries, events, footers),
            "{name}"
        );
        assert_eq!(
            (d.skipped_lines, d.stripped.prompt),
            (skipped, prompts),
            "{name}"
        );
        if name.ends_with(".txt") {
            let lines = std::fs::read_to_string(&path)
                .unwrap()
                .lines()
                .filter(|l| !l.trim().is_empty())
                .count();
            let read = entries + events + footers + skipped as usize;
            assert_eq!(read, lines, "{name}: every line is accounted for");
        }
    }
}

#[test]
fn a_decorated_paste_exits_0_with_a_note() {
    let path = "tests/data/conntrack/openwrt-luci-5909-two-prompts.txt";
    let out = natcheck(&["conntrack", path]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    let table = stdout(&out);
    assert!(
        table.contains("note: 2 lines had a shell prompt (stripped, not warnings)"),
        "{table}"
    );
    let out = natcheck(&["conntrack", "--format", "json", path]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["inputs"][0]["stripped"], serde_json::json!({"prompt": 2}));
    assert_eq!(v["inputs"][0]["skipped_lines"], 2);
    assert_eq!(v["inputs"][0]["entries"].as_array().unwrap().len(), 3);
    // Nothing stripped: an empty object.
    let out = natcheck(&[
        "conntrack",
        "--format",
        "json",
        "tests/data/conntrack/netlink-949-prose.txt",
    ]);
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["inputs"][0]["stripped"], serde_json::json!({}));
}

#[test]
fn xml_events_zones_and_gre_keys_in_table_and_json() {
    let path = "tests/data/conntrack/events-timestamp.xml";
    let out = natcheck(&["conntrack", path]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let table = stdout(&out);
    assert!(table.contains("5 connections in 13 events"), "{table}");
    // `<when>` is the tool's local time, shown as printed.
    assert!(table.contains("2026-11-30 06:31:38"), "{table}");
    assert!(
        table.contains("gre 127.0.0.1 -> 127.0.0.1 srckey=0x0 dstkey=0x0"),
        "{table}"
    );
    let out = natcheck(&["conntrack", "--format", "json", path]);
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let timelines = v["inputs"][0]["timelines"].as_array().unwrap();
    let zoned: Vec<_> = timelines.iter().filter(|t| t["zone"] == 5).collect();
    assert_eq!(zoned.len(), 1);
    assert_eq!(timelines[0]["events"][0]["time"], "2026-11-30 06:31:38");
    let list = "tests/data/conntrack/list-id.xml";
    let out = natcheck(&["conntrack", "--format", "json", list]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let entries = v["inputs"][0]["entries"].as_array().unwrap();
    let gre = entries
        .iter()
        .find(|e| e["orig"]["proto"] == "gre")
        .unwrap();
    assert_eq!(
        gre["orig_keys"],
        serde_json::json!({"srckey": "0x0", "dstkey": "0x0"})
    );
    let zone5 = entries.iter().find(|e| e["zone"] == 5).unwrap();
    assert_eq!(zone5["zone_id"], 5);
    assert!(entries
        .iter()
        .filter(|e| e["zone"].is_null())
        .all(|e| e["zone_id"] == 0));
    let table = stdout(&natcheck(&["conntrack", list]));
    let zone_col: Vec<&str> = table
        .lines()
        .filter(|l| l.contains("udp 127.0.0.1:") && l.contains(":5353"))
        .collect();
    assert_eq!(zone_col.len(), 1, "{table}");
    assert!(zone_col[0].split_whitespace().any(|w| w == "5"), "{table}");
}
