//! The table report (`natcheck correlate`, `--format table`) on the lab recordings: one
//! entry per problem with its proof, findings of one cause grouped, expected behaviour
//! folded into a line; every finding's words still there with `--detail`, which also
//! shows every connection hop by hop and packet by packet (`--connection` one of
//! them, with every packet); colour only when asked for or on a terminal without
//! `NO_COLOR`; the same bytes whatever the thread count.

use std::process::Command;

use serde_json::Value;

use crate::util::*;

/// The recording's captures (the container's veth, the second uplink and loopback
/// when it has them) with its rules and conntrack table and statistics.
fn inputs(name: &str) -> Vec<String> {
    let d = format!("samples/{name}");
    let mut a = Vec::new();
    for p in ["veth-c1", "docker0", "eth0", "eth1", "lo"] {
        if root().join(format!("{d}/{p}.pcap")).is_file() {
            a.push(format!("{d}/{p}.pcap"));
        }
    }
    for (flag, f) in [
        ("--rules", "iptables.txt"),
        ("--rules", "ip6tables.txt"),
        ("--conntrack", "conntrack.txt"),
        ("--conntrack", "conntrack-stats.txt"),
    ] {
        if root().join(format!("{d}/{f}")).is_file() {
            a.extend([flag.to_string(), format!("{d}/{f}")]);
        }
    }
    a
}

/// `natcheck correlate FLAGS... INPUTS...`: exit code and standard output.
fn table(flags: &[&str], inputs: &[String]) -> (i32, String) {
    let mut a = vec!["correlate"];
    a.extend_from_slice(flags);
    a.extend(inputs.iter().map(String::as_str));
    let out = natcheck(&a);
    (out.status.code().expect("exited"), stdout(&out))
}

fn json(inputs: &[String]) -> Value {
    let (_, out) = table(&["--format", "json"], inputs);
    serde_json::from_str(&out).expect("valid JSON")
}

/// The report down to the overview: the counts, the witnesses and the problems.
fn problems(text: &str) -> &str {
    let end = text.find(" points, ").expect("the headline counts");
    &text[..text[..end].rfind('\n').unwrap_or(0)]
}

/// `text` without its ANSI escapes (`ESC [ ... m`).
fn plain(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("\x1b[") {
        out.push_str(&rest[..i]);
        let tail = &rest[i + 2..];
        rest = tail.find('m').map_or("", |j| &tail[j + 1..]);
    }
    out.push_str(rest);
    out
}

/// The lines of connection `id`'s detail block (its header says how long it lasted),
/// empty when there is none.
fn block<'a>(text: &'a str, id: &str) -> Vec<&'a str> {
    let head = format!("{id}  ");
    text.lines()
        .skip_while(|l| !(l.starts_with(&head) && l.contains("  lasted ")))
        .take_while(|l| !l.is_empty())
        .collect()
}

/// The packet lines of a detail block: `#  dir ...` rows.
fn packet_rows(block: &[&str]) -> usize {
    block
        .iter()
        .filter(|l| {
            let mut w = l.split_whitespace();
            w.next().is_some_and(|n| n.parse::<u32>().is_ok())
                && matches!(w.next(), Some(">" | "<"))
        })
        .count()
}

/// Expected behaviour folds into one line per kind that names the connections: the
/// default allocator's port moves (port-collision: TCP, UDP and an ICMP id,
/// outbound), ports picked at random (nodeport: inbound, DNAT and masquerade), a
/// userland proxy for a client on the host (userland-proxy with loopback, beside two
/// warnings of that code that stay entries). With `--detail` each is a finding in
/// full again.
#[test]
fn expected_behaviour_folds_into_one_line() {
    for (name, code, what) in [
        (
            "port-collision",
            "port-reallocated",
            "source ports moved to avoid a clash",
        ),
        (
            "nodeport",
            "port-reallocated",
            "source ports picked at random (`--random`, `--random-fully`)",
        ),
        (
            "userland-proxy",
            "userland-proxy",
            "connection through a userland proxy for a client on the host itself",
        ),
    ] {
        let a = inputs(name);
        let doc = json(&a);
        let folded: Vec<&str> = doc["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["code"] == code && f["severity"] == "info")
            .map(|f| f["connections"][0].as_str().unwrap())
            .collect();
        let line = format!(
            "\n[info] {} {what} (expected): {}\n",
            folded.len(),
            folded.join(", ")
        );
        let (_, text) = table(&[], &a);
        let top = problems(&text);
        assert!(top.contains(&line), "{name}: {line}\n{top}");
        assert!(!top.contains(&format!("[info] {code}")), "{name}: {top}");
        assert!(!top.contains("check: Expected"), "{name}: {top}");
        let (_, full) = table(&["--detail"], &a);
        let top = problems(&full);
        assert!(!top.contains("(expected)"), "{name}: {top}");
        let entry = match folded.len() {
            1 => format!("[info] {code}  {}", folded[0]),
            n => format!("[info] {code}  {n} findings\n"),
        };
        assert!(top.contains(&entry), "{name}: {entry}\n{top}");
    }
}

/// A finding alone shows its proof: the packets with their times, the rule that
/// dropped them, what the statistics rule out, the advice; durations say `lasted`.
#[test]
fn a_blocked_connection_shows_its_proof() {
    let name = "fault-forward-drop";
    let a = inputs(name);
    let (code, text) = table(&[], &a);
    assert_eq!(code, 1);
    let top = problems(&text);
    for want in [
        "\n[error] lost  c2  docker0 > eth0  2026-11-23T05:43:33.954366000Z  lasted 2.040s  3 packets\n",
        "\n    - docker0: tcp 172.17.0.2:58358 -> 203.0.113.2:9090  3>/0< packets from 2026-11-23T05:43:33.954366000Z to 2026-11-23T05:43:35.994966000Z, syn-sent\n",
        "(samples/fault-forward-drop/iptables.txt:9): -A FORWARD -p tcp -m tcp --dport 9090 -j DROP\n",
        "\n    cause: conntrack -S rules out a full table and insert races (drop=0).\n",
        "\n    check: The rule set stops this traffic at filter FORWARD",
    ] {
        assert!(top.contains(want), "{want}\n{top}");
    }
    assert!(!text.contains(" +2.040s"), "{text}");
    assert!(
        block(&text, "c2").is_empty(),
        "no detail unless asked: {text}"
    );
    insta::assert_snapshot!(format!("table-{name}"), text);
}

/// Findings of one cause are one entry: IPv6 replies back by the other uplink (DNS
/// and ICMPv6, three points), each a line and its message, the rule they share and
/// the advice once; each one's own evidence with `--detail`.
#[test]
fn findings_of_one_cause_are_one_entry() {
    let name = "fault-asym-route6";
    let a = inputs(name);
    let doc = json(&a);
    let findings = doc["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 2);
    let (_, text) = table(&[], &a);
    let top = problems(&text);
    assert!(
        top.contains("\n[error] asymmetric-route  2 findings\n"),
        "{top}"
    );
    assert_eq!(top.matches("\n    check: ").count(), 1, "{top}");
    assert_eq!(
        top.matches("- a reverse-path filter in raw PREROUTING")
            .count(),
        1,
        "{top}"
    );
    for f in findings {
        let about = format!(
            "\n    {}  {}  {}  ",
            f["connections"].as_array().unwrap()[0].as_str().unwrap(),
            "docker0 > eth0 > eth1",
            f["first"].as_str().unwrap()
        );
        assert!(top.contains(&about), "{about}\n{top}");
        let message = format!("\n        {}\n", f["message"].as_str().unwrap());
        assert!(top.contains(&message), "{top}");
    }
    let entry = |f: &Value| -> String { f["evidence"][0].as_str().unwrap().to_string() };
    assert!(!top.contains(&entry(&findings[0])), "{top}");
    let (_, full) = table(&["--detail"], &a);
    for f in findings {
        assert!(problems(&full).contains(&entry(f)), "{full}");
    }
    insta::assert_snapshot!(format!("table-{name}"), text);
}

/// With `--detail` the table report says everything the findings say (JSON): every
/// message, piece of evidence and check, on every recording.
#[test]
fn detail_loses_no_word_of_any_finding() {
    for &name in SCENARIOS.iter().chain(HAIRPIN_SCENARIOS) {
        let a = inputs(name);
        let doc = json(&a);
        let (_, text) = table(&["--detail"], &a);
        let top = problems(&text);
        let causes: Vec<&str> = top
            .lines()
            .filter_map(|l| l.trim_start().strip_prefix("cause: "))
            .collect();
        for f in doc["findings"].as_array().unwrap() {
            let said = |s: &str| assert!(top.contains(s), "{name}: {s}\n{top}");
            said(f["message"].as_str().unwrap());
            for e in f["evidence"].as_array().unwrap() {
                said(&format!("- {}\n", e.as_str().unwrap()));
            }
            let check = f["check"].as_str().unwrap();
            let advice = causes
                .iter()
                .find_map(|c| {
                    check
                        .strip_prefix(&format!("{c} "))
                        .or_else(|| check.strip_suffix(&format!(" {c}")))
                })
                .unwrap_or(check);
            said(&format!("check: {advice}\n"));
        }
        // And every connection in detail.
        for c in doc["connections"].as_array().unwrap() {
            let id = c["id"].as_str().unwrap();
            assert!(!block(&text, id).is_empty(), "{name}: {id}");
        }
    }
}

/// `--detail` details every connection with its first 20 packets and says how many
/// more there are; `--connection ID` one connection with every packet, as does
/// `--detail` twice for all. Ids repeat or are comma-separated; an unknown one is an
/// error that says which exist.
#[test]
fn detail_and_connection_choose_what_is_detailed() {
    let a = inputs("bulk-offload");
    let (_, text) = table(&["--detail"], &a);
    let c1 = block(&text, "c1");
    assert_eq!(packet_rows(&c1), 20, "{c1:#?}");
    let more: usize = c1
        .iter()
        .find_map(|l| l.trim().strip_prefix("... "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no `... N more packets`: {c1:#?}"));
    assert!(!block(&text, "c2").is_empty());

    let (_, one) = table(&["--connection", "c1"], &a);
    let all = block(&one, "c1");
    assert_eq!(packet_rows(&all), 20 + more, "{all:#?}");
    assert!(!all.iter().any(|l| l.contains("more packet")), "{all:#?}");
    assert!(block(&one, "c2").is_empty(), "{one}");
    let (_, twice) = table(&["--detail", "--detail"], &a);
    assert_eq!(block(&twice, "c1"), all);
    assert_eq!(packet_rows(&block(&twice, "c2")), {
        let (_, c2) = table(&["--connection", "c2"], &a);
        packet_rows(&block(&c2, "c2"))
    });

    let (_, both) = table(&["--connection", "c2,c1"], &a);
    assert_eq!(
        both,
        table(&["--connection", "c1", "--connection", "c2"], &a).1
    );
    assert_eq!(both, twice, "both named: the same as every one in full");

    let mut bad = vec!["correlate", "--connection", "c1,c9"];
    bad.extend(a.iter().map(String::as_str));
    let out = natcheck(&bad);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--connection c9: no such connection (the connections are c1 to c2)"),
        "{}",
        stderr(&out)
    );
    let mut json = vec!["correlate", "--format", "json", "--detail"];
    json.extend(a.iter().map(String::as_str));
    assert_eq!(natcheck(&json).status.code(), Some(2));
}

/// Each connection hop by hop: the translation, the evidence, the rules and findings
/// under it, and its packets with the time each point saw them.
#[test]
fn a_connection_in_detail() {
    let name = "fault-forward-drop";
    let (_, text) = table(&["--detail"], &inputs(name));
    let c2 = block(&text, "c2");
    assert_eq!(
        c2[0],
        "c2  tcp  2026-11-23T05:43:33.954358000Z  lasted 2.040s  none"
    );
    let has = |s: &str| c2.iter().any(|l| l.starts_with(s));
    assert!(has("    finding: error lost: blocked: 3 SYNs"), "{c2:#?}");
    assert!(has("    rules: dropped by filter FORWARD"), "{c2:#?}");
    assert_eq!(packet_rows(&c2), 3, "{c2:#?}");
    // The third SYN at veth-c1, then at docker0 164µs later.
    let third = [
        "3",
        ">",
        "S",
        "60",
        "2026-11-23T05:43:35.994802000Z",
        "first",
        "164µs",
    ];
    assert!(
        c2.iter()
            .any(|l| l.split_whitespace().eq(third.iter().copied())),
        "{c2:#?}"
    );
    insta::assert_snapshot!(format!("table-detail-{name}"), text);
}

/// Colour with `--color always`, on a terminal unless `NO_COLOR` is set (to
/// anything), never otherwise; stripped of its escapes it is the plain report.
#[test]
fn colour_only_when_asked_or_on_a_terminal_without_no_color() {
    let a = inputs("fault-snat-exhaustion");
    let (_, never) = table(&["--detail", "--color", "never"], &a);
    let (_, auto) = table(&["--detail"], &a);
    let (_, always) = table(&["--detail", "--color", "always"], &a);
    assert!(!never.contains('\x1b') && !auto.contains('\x1b'));
    assert_eq!(auto, never);
    for want in [
        "\x1b[1m\x1b[31m[error]",
        "\x1b[36m[info]",
        "\x1b[1m\x1b[35m203.0.113.1\x1b[0m",
    ] {
        assert!(always.contains(want), "{want:?}: {always}");
    }
    assert_eq!(plain(&always), never);

    if !have("script") {
        return skip("no `script` (util-linux) to run natcheck on a terminal");
    }
    let on_terminal = |no_color: Option<&str>| {
        let mut cmd = format!("{} correlate", env!("CARGO_BIN_EXE_natcheck"));
        for x in &a {
            cmd.push(' ');
            cmd.push_str(x);
        }
        let mut c = Command::new("script");
        c.args(["-qec", &cmd, "/dev/null"]).current_dir(root());
        match no_color {
            Some(v) => c.env("NO_COLOR", v),
            None => c.env_remove("NO_COLOR"),
        };
        let out = c.output().expect("run script");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(on_terminal(None).contains("\x1b[1m\x1b[31m[error]"));
    for v in ["1", ""] {
        let t = on_terminal(Some(v));
        assert!(
            t.contains("[error]") && !t.contains('\x1b'),
            "NO_COLOR={v:?}: {t}"
        );
    }
}

/// The same bytes whatever the thread count, in every view.
#[test]
fn the_table_does_not_depend_on_the_thread_count() {
    for name in ["port-collision", "fault-asym-route6"] {
        let a = inputs(name);
        for flags in [&[][..], &["--detail"], &["--connection", "c1"]] {
            let with = |j: &str| table(&[&["-j", j][..], flags].concat(), &a).1;
            assert_eq!(with("1"), with("2"), "{name} {flags:?}");
        }
    }
}

/// The example in the README is the report's own beginning.
#[test]
fn the_readme_example_is_the_report() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let start = readme
        .find("```\nfindings: ")
        .expect("an example of the table report in the README")
        + 4;
    let example = &readme[start..start + readme[start..].find("```").unwrap()];
    let (_, text) = table(
        &[],
        &[
            "samples/port-collision/docker0.pcap".to_string(),
            "samples/port-collision/eth0.pcap".to_string(),
            "--conntrack".to_string(),
            "samples/port-collision/conntrack.txt".to_string(),
        ],
    );
    assert_eq!(example, text);
}

/// `--width 80`: the findings and the overview fit in 80 columns on recordings of
/// different shapes (only a single word longer than a line may stick out), and the
/// points table, too wide for it, becomes one block per point.
#[test]
fn the_report_fits_the_width_it_is_given() {
    for s in [
        "fault-forward-drop",
        "masquerade6",
        "kube-rules",
        "fault-asym-route6",
    ] {
        let rules = if s.ends_with('6') {
            "ip6tables.txt"
        } else {
            "iptables.txt"
        };
        let mut args = recording(s);
        args.extend([
            "--rules".into(),
            format!("samples/{s}/{rules}"),
            "--width".into(),
            "80".into(),
        ]);
        let out = natcheck(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{s}: {}",
            stderr(&out)
        );
        let text = stdout(&out);
        for line in text.lines() {
            let words = line.split_whitespace().count();
            assert!(
                line.chars().count() <= 80 || words <= 1,
                "{s}: {} columns: {line}",
                line.chars().count()
            );
        }
        assert!(
            text.contains("\n    source: samples/"),
            "{s}: the points stacked"
        );
    }
    let out = natcheck(&[
        "correlate",
        "--format",
        "json",
        "--width",
        "80",
        "samples/masquerade/eth0.pcap",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--width"), "{}", stderr(&out));
}

/// The tunnel is part of the hop: under each hop the packets crossed encapsulated,
/// the tunnel with its identifier and underlay tuple (as the JSON has it), and on the
/// links, where the packets went in, through and out of it, which is not a
/// translation.
#[test]
fn the_tunnel_is_part_of_the_hop() {
    for name in ["overlay-vxlan"] {
        let a = overlay_points(
            name,
            ["a-pod", "a-eth0", "b-eth0", "b-pod"],
            "node-b/shifted",
        );
        let doc = json(&a);
        let (_, text) = table(&["--detail"], &a);
        for c in doc["connections"].as_array().unwrap() {
            let id = c["id"].as_str().unwrap();
            let lines = block(&text, id);
            let mut tunnels = 0;
            for h in c["hops"].as_array().unwrap() {
                let Some(t) = h["tunnel"].as_object() else {
                    continue;
                };
                tunnels += 1;
                let end = |a: &str, p: &str| match t[p].as_u64() {
                    Some(p) => format!("{}:{p}", t[a].as_str().unwrap()),
                    None => t[a].as_str().unwrap().to_string(),
                };
                let id_part = match (t["kind"].as_str().unwrap(), t["id"].as_u64()) {
                    ("vxlan" | "geneve", Some(n)) => format!(" vni {n}"),
                    (_, Some(n)) => format!(" key {n}"),
                    (_, None) => String::new(),
                };
                let want = format!(
                    "in {}{id_part} {} -> {}",
                    t["kind"].as_str().unwrap(),
                    end("src", "sport"),
                    end("dst", "dport")
                );
                assert!(
                    lines.iter().any(|l| l.trim() == want),
                    "{id}: no line {want:?} in {lines:#?}"
                );
            }
            assert!(tunnels >= 2, "{id}: {tunnels} hops in the tunnel");
            let links: Vec<&str> = lines
                .iter()
                .filter_map(|l| l.trim().strip_prefix("| "))
                .filter(|l| !l.starts_with("matched "))
                .filter_map(|l| l.rsplit_once("; ").map(|(_, w)| w))
                .collect();
            assert_eq!(
                links,
                ["encapsulated", "through the tunnel", "decapsulated"],
                "{id}: {lines:#?}"
            );
        }
    }
}
