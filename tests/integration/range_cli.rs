//! `--since` and `--until` on the lab samples: a slice of every recording keeps the
//! translations the whole recording shows, its cut ends make no finding the whole
//! recording does not make, and the report says what was left out.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::util::*;

/// Sightings of one packet more than this far apart are not one packet, in both runs:
/// the samples last a second or two, and a cut end's margin is this window.
const WINDOW: &str = "50ms";

fn correlate_json(args: &[String]) -> Value {
    let mut all = vec!["correlate", "--format", "json", "--window", WINDOW];
    all.extend(args.iter().map(String::as_str));
    let out = natcheck(&all);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "natcheck {all:?} exited {:?}: {}",
        out.status.code(),
        stderr(&out)
    );
    serde_json::from_slice(&out.stdout).expect("valid JSON")
}

fn ns(v: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(v.as_str().expect("a time"))
        .unwrap()
        .timestamp_nanos_opt()
        .unwrap()
}

/// From the first packet any point saw to the last.
fn span(doc: &Value) -> (i64, i64) {
    let points = doc["points"].as_array().unwrap();
    let first = points.iter().map(|p| ns(&p["first_seen"])).min().unwrap();
    let last = points.iter().map(|p| ns(&p["last_seen"])).max().unwrap();
    (first, last)
}

fn stamp(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

fn hop(h: &Value) -> String {
    format!(
        "{} {} {}:{} -> {}:{}",
        h["point"], h["proto"], h["src"], h["sport"], h["dst"], h["dport"]
    )
}

/// Every link of every connection that NAT translated: the tuples at both ends and
/// what NAT did.
fn links(doc: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for c in doc["connections"].as_array().unwrap() {
        let hops = c["hops"].as_array().unwrap();
        for (i, t) in c["translations"].as_array().unwrap().iter().enumerate() {
            if t["kind"] == "none" {
                continue;
            }
            out.insert(format!(
                "{} =[{} {}]=> {}",
                hop(&hops[i]),
                t["kind"],
                t["port_reallocated"],
                hop(&hops[i + 1])
            ));
        }
    }
    out
}

/// Every hop of every connection, by its point and tuple.
fn hops(doc: &Value) -> BTreeSet<String> {
    let conns = doc["connections"].as_array().unwrap();
    conns
        .iter()
        .flat_map(|c| c["hops"].as_array().unwrap().iter().map(hop))
        .collect()
}

fn finding_codes(doc: &Value) -> BTreeSet<String> {
    doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| format!("{} {}", f["severity"], f["code"]))
        .collect()
}

/// The captures of a recording, without its conntrack snapshot.
fn captures(scenario: &str) -> Vec<String> {
    recording(scenario)
        .into_iter()
        .skip(1)
        .take_while(|a| a != "--conntrack")
        .collect()
}

#[test]
fn a_slice_of_every_scenario_keeps_its_translations_and_finds_nothing_new() {
    let mut sliced = 0;
    for s in SCENARIOS {
        let files = captures(s);
        let whole = correlate_json(&files);
        let (first, last) = span(&whole);
        // The middle half of the recording, cut through whatever was under way.
        let (since, until) = (first + (last - first) / 4, first + 3 * (last - first) / 4);
        let mut args = files.clone();
        args.extend([
            "--since".into(),
            stamp(since),
            "--until".into(),
            stamp(until),
        ]);
        let slice = correlate_json(&args);

        assert_eq!(slice["config"]["since"], stamp(since).as_str(), "{s}");
        assert_eq!(slice["config"]["until"], stamp(until).as_str(), "{s}");
        let inputs = slice["inputs"].as_array().unwrap();
        let outside: u64 = inputs
            .iter()
            .map(|i| i["outside_range"].as_u64().unwrap_or(0))
            .sum();
        assert!(outside > 0, "{s}: the cut left nothing out");
        for (i, w) in inputs.iter().zip(whole["inputs"].as_array().unwrap()) {
            assert_eq!(i["frames"], w["frames"], "{s}: every frame is read");
            // A frame is either outside the range or read as the whole run reads it.
            let n = |v: &Value, k: &str| v[k].as_u64().unwrap_or(0);
            let decoded = |v: &Value| n(v, "packets") + n(v, "fragments");
            assert!(decoded(i) + n(i, "outside_range") <= n(w, "frames"), "{s}");
            assert!(decoded(i) <= decoded(w), "{s}");
        }
        for p in slice["points"].as_array().unwrap() {
            if p["packets"].as_u64() > Some(0) {
                assert!(
                    ns(&p["first_seen"]) >= since && ns(&p["last_seen"]) < until,
                    "{s}"
                );
            }
        }

        let (got, all) = (links(&slice), links(&whole));
        let new: Vec<&String> = got.difference(&all).collect();
        assert!(
            new.is_empty(),
            "{s}: translations the whole recording does not have: {new:#?}"
        );
        // Flows the slice puts together otherwise: packets that crossed untranslated
        // (a leak whose translated part is cut away) are one connection there.
        let (got, all) = (hops(&slice), hops(&whole));
        let new: Vec<&String> = got.difference(&all).collect();
        assert!(
            new.is_empty(),
            "{s}: flows the whole recording does not have: {new:#?}"
        );
        // A packet lost less than TCP's first retransmission timeout (1 s, RFC 6298)
        // before the end may have been sent again after it: the slice cannot show the
        // recovery, as a capture stopped there could not.
        let all = finding_codes(&whole);
        let new: Vec<String> = slice["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| !all.contains(&format!("{} {}", f["severity"], f["code"])))
            .filter(|f| f["code"] != "lost" || ns(&f["last"]) < until - 1_000_000_000)
            .map(|f| format!("{} {} {}", f["severity"], f["code"], f["first"]))
            .collect();
        assert!(
            new.is_empty(),
            "{s}: findings the whole recording does not make: {new:?}"
        );
        sliced += usize::from(!links(&slice).is_empty());
    }
    // Most recordings have a translation under way in their middle half.
    assert!(
        sliced * 2 > SCENARIOS.len(),
        "{sliced} of {} sliced",
        SCENARIOS.len()
    );
}

#[test]
fn the_table_says_what_the_range_left_out_and_an_empty_slice_is_a_warning() {
    let files = captures("masquerade");
    let whole = correlate_json(&files);
    let first = ns(&whole["points"][0]["first_seen"]);
    let mut args: Vec<&str> = vec!["correlate"];
    args.extend(files.iter().map(String::as_str));
    let since = stamp(first + 1);
    let mut sliced = files.clone();
    sliced.extend(["--since".into(), since.clone()]);
    let outside: u64 = correlate_json(&sliced)["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["outside_range"].as_u64().unwrap_or(0))
        .sum();
    assert!(outside > 0);
    let out = natcheck(&[&args[..], &["--since", &since, "--window", WINDOW]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let line = text.lines().nth(2).unwrap();
    assert!(
        line.ends_with(&format!(
            "; frames captured from {since} only ({outside} others left out)"
        )),
        "{line}"
    );

    // The day after: nothing of either capture, said per capture, exit 2.
    let out = natcheck(&[&args[..], &["--since", &stamp(first + 86_400_000_000_000)]].concat());
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert_eq!(
        err.matches("no frame was captured from ").count(),
        3,
        "{err}"
    );
    assert!(
        err.contains("samples/masquerade/eth0.pcap: no frame was captured"),
        "{err}"
    );

    // `flows` reads the same way and counts them.
    let out = natcheck(&["flows", &files[1], "--until", &since]);
    let text = stdout(&out);
    assert!(text.contains("0 packets, 0 flows"), "{text}");
    assert!(
        text.contains(" frames captured outside --since/--until, left out"),
        "{text}"
    );
}

#[test]
fn times_are_checked_before_anything_is_read() {
    let files = captures("masquerade");
    let with = |extra: &[&str]| {
        let mut args: Vec<&str> = vec!["correlate"];
        args.extend(files.iter().map(String::as_str));
        args.extend(extra);
        natcheck(&args)
    };
    let out = with(&["--since", "2026-11-23 05:43:06"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("give RFC 3339 with a zone"),
        "{}",
        stderr(&out)
    );
    let out = with(&["--since", "1796173529.5", "--until", "2026-12-02T01:05:29Z"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(
            "--since (2026-12-02T01:05:29.500000000Z) is not before --until \
             (2026-12-02T01:05:29.000000000Z)"
        ),
        "{}",
        stderr(&out)
    );
    // Epoch seconds and RFC 3339 name the same instant.
    let a = with(&["--since", "2026-11-23T05:43:06.5Z", "--format", "json"]);
    let b = with(&["--since", "1795412586.5", "--format", "json"]);
    assert_eq!(stdout(&a), stdout(&b));
    assert!(stdout(&a).contains("\"since\": \"2026-11-23T05:43:06.500000000Z\""));
}

#[test]
fn a_slice_checked_against_its_witnesses_finds_nothing_they_contradict_that_the_whole_does_not() {
    // The middle of a path-MTU black hole holds only the large segments that never
    // left the host: the wire shows them untranslated inside, and conntrack's entry
    // (made by the handshake, cut away) says SNAT. Nothing contradicts it there. And a
    // UDP flow the event log shows opened before --since (kept on an old backend by
    // its entry) was translated by the rules of then: its first packet read is not the
    // one the nat rules saw, so the rules of now are not held against it.
    let witnessed = |c: &String| {
        ["\"ct-", "\"rule-", "\"not-netfilter"]
            .iter()
            .any(|k| c.contains(k))
    };
    for s in SCENARIOS {
        let mut files = captures(s);
        for f in ["conntrack.txt", "events.txt", "iptables.txt"] {
            let path = format!("samples/{s}/{f}");
            if root().join(&path).is_file() {
                let flag = if f == "iptables.txt" {
                    "--rules"
                } else {
                    "--conntrack"
                };
                files.extend([flag.to_string(), path]);
            }
        }
        let mut all = vec!["correlate", "--format", "json", "--window", WINDOW];
        all.extend(files.iter().map(String::as_str));
        if natcheck(&all).status.code() == Some(2) {
            // A rule dump of the other address family only (its input warning).
            files.truncate(files.len() - 2);
        }
        let whole = correlate_json(&files);
        let (first, last) = span(&whole);
        let had = finding_codes(&whole);
        // A tuple the whole shows used again (its entry expired, the next one NATed
        // afresh): a slice cut before the reuse holds its first life only, and a table
        // taken after it the later life's entry, which nothing in the slice tells from
        // the first life's (docs/findings.md, Limits).
        let first_hop_of = |h: &Value| hop(h).split_once(' ').unwrap().1.to_string();
        let first_hop = |c: &Value| first_hop_of(&c["hops"][0]);
        let mut lives: BTreeMap<String, usize> = BTreeMap::new();
        for c in whole["connections"].as_array().unwrap() {
            *lives.entry(first_hop(c)).or_default() += 1;
        }
        // The same for a TCP connection the whole shows NATed afresh partway through
        // (`state-lost`): a slice of its second part and a table of its first.
        for f in whole["findings"].as_array().unwrap() {
            if f["code"] == "state-lost" {
                let mut t = f["detail"]["tuple"].clone();
                t["point"] = Value::from("");
                *lives.entry(first_hop_of(&t)).or_default() += 2;
            }
        }
        let reused = |doc: &Value, f: &Value| {
            let conns = doc["connections"].as_array().unwrap();
            f["connections"].as_array().unwrap().iter().any(|id| {
                conns
                    .iter()
                    .find(|c| c["id"] == *id)
                    .is_some_and(|c| lives.get(&first_hop(c)).is_some_and(|&n| n > 1))
            })
        };
        let mid = first + (last - first) / 2;
        for cut in [
            vec![
                "--since".to_string(),
                stamp(first + (last - first) / 4),
                "--until".into(),
                stamp(first + 3 * (last - first) / 4),
            ],
            vec!["--since".into(), stamp(mid)],
            vec!["--until".into(), stamp(mid)],
        ] {
            let mut args = files.clone();
            args.extend(cut.iter().cloned());
            let sliced = correlate_json(&args);
            let new: Vec<String> = sliced["findings"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|f| !reused(&sliced, f))
                .map(|f| format!("{} {}", f["severity"], f["code"]))
                .filter(|c| witnessed(c) && !had.contains(c))
                .collect();
            assert!(new.is_empty(), "{s} {cut:?}: {new:?}");
        }
    }
}
