//! `natcheck correlate` findings on the real-kernel lab samples: each fault scenario
//! yields exactly its expected findings, clean scenarios no error or warning, whatever
//! the form of the captures; exit statuses 0/1/2 as documented; Markdown and JSON
//! findings snapshotted.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::util::*;

/// Runs `natcheck correlate ARGS` and returns (exit code, stdout).
fn correlate(args: &[&str]) -> (i32, String) {
    let mut all = vec!["correlate"];
    all.extend_from_slice(args);
    let out = natcheck(&all);
    let code = out.status.code().expect("exited normally");
    (code, stdout(&out))
}

fn json(args: &[&str]) -> (i32, Value) {
    let mut all = vec!["--format", "json"];
    all.extend_from_slice(args);
    let (code, out) = correlate(&all);
    (code, serde_json::from_str(&out).expect("valid JSON"))
}

fn pair(s: &str) -> Vec<String> {
    vec![
        format!("samples/{s}/docker0.pcap"),
        format!("samples/{s}/eth0.pcap"),
    ]
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// (severity, code) of every finding, in report order.
/// The codes of the findings that are not `nat-before-capture`'s: the entries of
/// connections the captures show only translated.
fn codes_but_before_capture(doc: &Value) -> Vec<(String, String)> {
    let mut v = codes(doc);
    v.retain(|(_, c)| c != "nat-before-capture");
    v
}

fn codes(doc: &Value) -> Vec<(String, String)> {
    doc["findings"]
        .as_array()
        .expect("findings array")
        .iter()
        .map(|f| {
            (
                f["severity"].as_str().unwrap().to_string(),
                f["code"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

/// The connection id whose hop at `point` has this source endpoint.
fn conn_with(doc: &Value, point: &str, src: &str, sport: u64) -> String {
    doc["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| {
            c["hops"].as_array().unwrap().iter().any(|h| {
                h["point"] == point && h["src"] == src && h["sport"].as_u64() == Some(sport)
            })
        })
        .map(|c| s(&c["id"]).to_string())
        .unwrap_or_else(|| panic!("no connection from {src}:{sport} at {point}"))
}

fn snapshot_findings(name: &str, doc: &Value) {
    insta::assert_snapshot!(
        format!("findings-{name}"),
        serde_json::to_string_pretty(&doc["findings"]).unwrap()
    );
}

fn snapshot_markdown(name: &str, a: &[&str]) {
    let mut all = vec!["--format", "markdown"];
    all.extend_from_slice(a);
    let (_, md) = correlate(&all);
    insta::assert_snapshot!(format!("markdown-{name}"), md);
}

#[test]
fn forward_drop_is_one_blocked_connection() {
    let a = pair("fault-forward-drop");
    let (code, doc) = json(&args(&a));
    assert_eq!(code, 1, "an error finding exits 1 by default");
    assert_eq!(codes(&doc), [("error".into(), "lost".into())]);
    let f = &doc["findings"][0];
    assert_eq!(f["detail"]["blocked"], true);
    assert_eq!(f["detail"]["from"], "docker0");
    assert_eq!(f["detail"]["to"], "eth0");
    assert_eq!(f["detail"]["first_tcp_flags"], "S");
    assert_eq!(f["tuples"][0]["dport"], 9090);
    assert_eq!(f["tuples"][0]["src"], "172.17.0.2");
    // The SYN and its two retransmissions.
    assert_eq!(f["packets"], 3);
    // The 7000 connection is what shows docker0 → eth0 is the way out.
    let via = s(&f["detail"]["path_from"][0]);
    let c = doc["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == via)
        .unwrap();
    let last = c["hops"].as_array().unwrap().last().unwrap();
    assert_eq!(
        (&last["point"], &last["dport"]),
        (&"eth0".into(), &7000.into())
    );
    snapshot_findings("fault-forward-drop", &doc);
    snapshot_markdown("fault-forward-drop", &args(&a));
}

#[test]
fn invalid_leak_is_an_inside_address_leak_and_a_host_rst() {
    let a = pair("fault-invalid-leak");
    let (code, doc) = json(&args(&a));
    assert_eq!(code, 1);
    assert_eq!(
        codes(&doc),
        [
            ("error".into(), "leak".into()),
            ("error".into(), "leak".into())
        ]
    );
    let translated = conn_with(&doc, "eth0", "203.0.113.1", 41000);
    let leaked = conn_with(&doc, "eth0", "172.17.0.2", 41000);
    let kinds: BTreeSet<&str> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| s(&f["detail"]["kind"]))
        .collect();
    assert_eq!(kinds, BTreeSet::from(["inside-address", "host-rst"]));
    for f in doc["findings"].as_array().unwrap() {
        match s(&f["detail"]["kind"]) {
            "inside-address" => {
                assert_eq!(f["detail"]["inside_address"], "172.17.0.2");
                assert_eq!(f["connections"][0], leaked.as_str());
                assert_eq!(f["detail"]["translated_by"][0], translated.as_str());
                assert_eq!(f["points"][0], "eth0");
                assert_eq!(f["tuples"][0]["role"], "leaked");
                assert_eq!(f["tuples"][0]["src"], "172.17.0.2");
            }
            _ => {
                assert_eq!(f["connections"][0], translated.as_str());
                // The server's FIN that was not translated back, and the host's RST.
                assert_eq!(f["packets"], 2);
                assert!(s(&f["message"]).contains("RST"), "{}", f["message"]);
            }
        }
    }
    snapshot_findings("fault-invalid-leak", &doc);
    snapshot_markdown("fault-invalid-leak", &args(&a));
}

/// A multi-homed server answering from another address than the query went to, over
/// IPv4 and over IPv6 MASQUERADE: the stray replies, the translation they missed and
/// the host's ICMP port unreachable.
#[test]
fn wrong_source_udp_reply_is_unsolicited() {
    for (name, nat, from, expected) in [
        (
            "fault-wrong-source-udp",
            "203.0.113.1",
            "203.0.113.2",
            "203.0.113.3:53",
        ),
        (
            "fault-wrong-source-udp6",
            "2001:db8:113::1",
            "2001:db8:113::2",
            "[2001:db8:113::3]:53",
        ),
    ] {
        let a = pair(name);
        let (code, doc) = json(&args(&a));
        assert_eq!(code, 1, "{name}");
        assert_eq!(
            codes(&doc),
            [("error".into(), "unsolicited".into())],
            "{name}"
        );
        let f = &doc["findings"][0];
        let d = &f["detail"];
        assert_eq!(d["nat_address"], nat, "{name}");
        assert_eq!(d["from_address"], from, "{name}");
        assert_eq!(d["from_port"], 53, "{name}");
        assert_eq!(d["expected_peer"], expected, "{name}");
        // The query's translation is named, and so is the host's ICMP port unreachable.
        let query = conn_with(&doc, "eth0", nat, d["nat_port"].as_u64().unwrap());
        assert_eq!(d["translations"][0], query.as_str(), "{name}");
        assert_eq!(f["connections"].as_array().unwrap().len(), 3, "{name}");
        assert_eq!(f["packets"], 3, "{name}");
        if name == "fault-wrong-source-udp" {
            snapshot_findings(name, &doc);
            snapshot_markdown(name, &args(&a));
        }
    }
}

#[test]
fn one_moved_port_alone_is_undetermined_until_the_rule_says() {
    // A time range that holds one translation to the NAT address: a TCP connection
    // through SNAT to a port range over IPv4, a UDP datagram through MASQUERADE over
    // IPv6. One moved port cannot tell a range from a random pick or from a holder the
    // captures missed; the rule, when given and confirmed, can.
    for (scen, since, until) in [
        (
            "snat-random-fully",
            "2026-11-23T05:43:28.4Z",
            "2026-11-23T05:43:28.56Z",
        ),
        (
            "fault-snat-exhaustion-udp6",
            "2026-11-30T08:40:52.9Z",
            "2026-11-30T08:40:53Z",
        ),
    ] {
        let a = pair(scen);
        let range = ["--since", since, "--until", until];
        let modes = |doc: &Value| -> Vec<String> {
            (doc["findings"].as_array().unwrap().iter())
                .filter(|f| f["code"] == "port-reallocated")
                .map(|f| s(&f["detail"]["mode"]).to_string())
                .collect()
        };
        let (_, doc) = json(&[&range[..], &args(&a)[..]].concat());
        assert_eq!(modes(&doc), ["undetermined"], "{scen}");
        let f = (doc["findings"].as_array().unwrap().iter())
            .find(|f| f["code"] == "port-reallocated")
            .unwrap();
        assert!(
            s(&f["check"]).contains("conntrack -L --src-nat"),
            "{scen}: {f}"
        );
        if scen == "snat-random-fully" {
            let rules = [
                "--rules",
                "samples/snat-random-fully/iptables.txt",
                "--rules",
                "samples/snat-random-fully/addrs.txt",
            ];
            let (_, doc) = json(&[&range[..], &rules[..], &args(&a)[..]].concat());
            assert_eq!(modes(&doc), ["range"]);
        }
    }
}

#[test]
fn port_collision_names_the_other_connection() {
    let a = pair("port-collision");
    let (code, doc) = json(&args(&a));
    assert_eq!(code, 0, "info findings do not fail by default");
    assert_eq!(
        codes(&doc),
        vec![("info".into(), "port-reallocated".into()); 3]
    );
    for f in doc["findings"].as_array().unwrap() {
        let d = &f["detail"];
        assert_eq!(d["mode"], "collision");
        assert_eq!(d["colliding_started_first"], true);
        // The holder kept the wanted port: its tuple at eth0 has it.
        let holder = conn_with(
            &doc,
            "eth0",
            "203.0.113.1",
            d["wanted_sport"].as_u64().unwrap(),
        );
        assert_eq!(d["colliding"], holder.as_str());
        assert_eq!(f["connections"][1], holder.as_str());
        assert!(s(&f["message"]).contains(&holder), "{}", f["message"]);
        assert_ne!(d["wanted_sport"], d["got_sport"]);
    }
    snapshot_findings("port-collision", &doc);
    snapshot_markdown("port-collision", &args(&a));
    assert_eq!(json(&[&["--fail-on", "info"], &args(&a)[..]].concat()).0, 1);
    assert_eq!(
        json(&[&["--fail-on", "port-reallocated"], &args(&a)[..]].concat()).0,
        1
    );
    assert_eq!(
        json(&[&["--fail-on", "warning"], &args(&a)[..]].concat()).0,
        0
    );
}

#[test]
fn clean_samples_have_no_error_or_warning() {
    for name in [
        "masquerade",
        "masquerade6",
        "published-port",
        "nodeport",
        "snat-random-fully",
        "bulk-offload",
        "bulk-no-offload",
        "overlay-vxlan",
        "overlay-ipip",
    ] {
        let a = pair(name);
        let (code, doc) = json(&args(&a));
        assert_eq!(code, 0, "{name}");
        for (sev, c) in codes(&doc) {
            assert_eq!(sev, "info", "{name}: {c}");
            // The NodePort's masquerade hides the client: a fact, not a fault.
            let expected =
                c == "port-reallocated" || (name == "nodeport" && c == "client-address-lost");
            assert!(expected, "{name}: {c}");
        }
        let sum = &doc["summary"]["findings_by_severity"];
        assert_eq!(sum["error"], 0, "{name}");
        assert_eq!(sum["warning"], 0, "{name}");
    }
    // The allocator's mode, from the distribution of the ports it picked.
    let (_, doc) = json(&args(&pair("snat-random-fully")));
    assert_eq!(doc["findings"].as_array().unwrap().len(), 4);
    for f in doc["findings"].as_array().unwrap() {
        assert_eq!(f["detail"]["mode"], "range");
        assert_eq!(f["detail"]["range"], serde_json::json!([20000, 20003]));
    }
    let (_, doc) = json(&args(&pair("nodeport")));
    let moved: Vec<&Value> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == "port-reallocated")
        .collect();
    assert_eq!(moved.len(), 3);
    for f in moved {
        assert_eq!(f["detail"]["mode"], "random");
        assert!(f["detail"]["colliding"].is_null());
    }
    let (_, doc) = json(&args(&pair("masquerade")));
    assert!(doc["findings"].as_array().unwrap().is_empty());
    snapshot_markdown("masquerade", &args(&pair("masquerade")));
}

/// What a finding says, independent of connection ids (which depend on the points).
fn essence(doc: &Value) -> Vec<String> {
    let mut v: Vec<String> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let tuples: Vec<String> = f["tuples"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| {
                    format!(
                        "{}:{}:{}:{}:{}",
                        t["point"], t["src"], t["sport"], t["dst"], t["dport"]
                    )
                })
                .collect();
            // Times are left out: pcapng keeps nanoseconds where pcap has microseconds.
            format!(
                "{} {} {} {}",
                f["severity"],
                f["code"],
                f["packets"],
                tuples.join(" ")
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn same_findings_from_three_points_one_pcapng_and_one_any_capture() {
    // Not fault-snat-exhaustion-udp6: its lost IPv6 datagrams, unanswered, carry the
    // same timestamp at veth-c1 and docker0 in one pcapng or `-i any` capture, so
    // nothing orders those two hops and the path is not known to stop short.
    for name in [
        "fault-forward-drop",
        "fault-invalid-leak",
        "fault-wrong-source-udp",
        "port-collision",
        "fault-snat-exhaustion",
        "fault-syn-dropped-once",
        "fault-dns-pair-dropped",
    ] {
        let d = format!("samples/{name}");
        let (_, base) = json(&args(&pair(name)));
        let want = essence(&base);
        assert!(!want.is_empty(), "{name}");
        let (_, three) = json(&[
            format!("{d}/veth-c1.pcap").as_str(),
            &format!("{d}/docker0.pcap"),
            &format!("{d}/eth0.pcap"),
        ]);
        assert_eq!(codes(&three), codes(&base), "{name}: three points");
        let (_, multi) = json(&[format!("{d}/multi.pcapng").as_str()]);
        assert_eq!(essence(&multi), want, "{name}: multi.pcapng");
        let (_, any) = json(&[
            format!("{d}/any.pcap").as_str(),
            "--links",
            &format!("{d}/links.txt"),
        ]);
        let any_codes: Vec<_> = codes(&any);
        assert_eq!(any_codes, codes(&base), "{name}: any.pcap");
    }
}

#[test]
fn exit_statuses() {
    let drop = pair("fault-forward-drop");
    let drop = args(&drop);
    let with = |extra: &[&str]| correlate(&[extra, &drop[..]].concat()).0;
    assert_eq!(with(&[]), 1);
    assert_eq!(with(&["--fail-on", "error"]), 1);
    assert_eq!(with(&["--fail-on", "none"]), 0);
    assert_eq!(with(&["--fail-on", "lost"]), 1);
    assert_eq!(with(&["--fail-on", "leak,unsolicited"]), 0);
    assert_eq!(with(&["--format", "markdown"]), 1);
    assert_eq!(with(&["--format", "table"]), 1);
    // Bad arguments are input errors.
    assert_eq!(with(&["--fail-on", "bogus"]), 2);
    assert_eq!(with(&["--fail-on", "none,error"]), 2);
    assert_eq!(with(&["--inside", "10.0.0.0/33"]), 2);
    // A truncated capture is an input error whatever the findings: the evidence is
    // incomplete. Same with --fail-on none.
    let cut = "tests/data/audit/eth0-truncated.pcap";
    let out = natcheck(&["correlate", "samples/fault-forward-drop/docker0.pcap", cut]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("capture ends inside a packet"),
        "{}",
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("[error] lost"),
        "findings still reported"
    );
    let out = natcheck(&[
        "correlate",
        "--fail-on",
        "none",
        "samples/masquerade/docker0.pcap",
        cut,
    ]);
    assert_eq!(out.status.code(), Some(2));
    // Clean.
    assert_eq!(correlate(&args(&pair("masquerade"))).0, 0);
}

/// Every finding code has its row in docs/findings.md and is a `--fail-on` item.
#[test]
fn every_code_is_documented_and_can_fail_a_run() {
    let doc = std::fs::read_to_string(root().join("docs/findings.md")).unwrap();
    for c in natcheck::audit::Code::ALL {
        assert!(
            doc.contains(&format!("| `{c}` |")),
            "{c}: no row in docs/findings.md"
        );
        let on: natcheck::audit::FailOn = c.as_str().parse().unwrap();
        assert!(on.codes.contains(c), "{c}");
    }
}

#[test]
fn findings_are_in_the_json_per_connection_and_in_the_text_report() {
    let a = pair("fault-invalid-leak");
    let (_, doc) = json(&args(&a));
    let all = doc["findings"].as_array().unwrap();
    for c in doc["connections"].as_array().unwrap() {
        let id = s(&c["id"]);
        let want: Vec<&Value> = all
            .iter()
            .filter(|f| f["connections"].as_array().unwrap().iter().any(|x| x == id))
            .collect();
        let got = findings_of(&doc, c);
        assert_eq!(got, want, "{id}");
    }
    assert_eq!(doc["summary"]["findings_by_severity"]["error"], 2);
    let (_, text) = correlate(&[&["--detail"], &args(&a)[..]].concat());
    assert!(
        text.starts_with("findings: 2 errors, 0 warnings, 0 info\n"),
        "{text}"
    );
    // Once among the problems (two causes, two entries), once under each connection
    // the finding names.
    assert_eq!(text.matches("[error] leak  ").count(), 2, "{text}");
    assert_eq!(text.matches("finding: error leak:").count(), 3, "{text}");
}

#[test]
fn declared_inside_prefixes_give_the_same_findings() {
    for name in [
        "fault-forward-drop",
        "fault-invalid-leak",
        "fault-wrong-source-udp",
    ] {
        let a = pair(name);
        let (_, learned) = json(&args(&a));
        let (_, declared) = json(&[&["--inside", "172.17.0.0/16"], &args(&a)[..]].concat());
        assert_eq!(essence(&declared), essence(&learned), "{name}");
    }
    let (_, md) = correlate(
        &[
            &[
                "--format",
                "markdown",
                "--inside",
                "172.17.0.0/16,fd00:172:17::/64",
            ],
            &args(&pair("masquerade"))[..],
        ]
        .concat(),
    );
    assert!(
        md.contains("Inside prefixes: `172.17.0.0/16`, `fd00:172:17::/64`"),
        "{md}"
    );
}

#[test]
fn output_does_not_depend_on_the_thread_count() {
    let a = pair("fault-invalid-leak");
    for fmt in ["json", "markdown", "table", "html"] {
        let one = natcheck(&[&["-j", "1", "correlate", "--format", fmt], &args(&a)[..]].concat());
        let two = natcheck(&[&["-j", "4", "correlate", "--format", fmt], &args(&a)[..]].concat());
        assert_eq!(stdout(&one), stdout(&two), "{fmt}");
    }
}

#[test]
fn conntrack_of_each_run_agrees_with_the_wire_and_adds_no_finding() {
    for &name in SCENARIOS {
        // With the container's veth: a service address DNATed as the bridge receives
        // the packet is on no other capture.
        let mut a = pair(name);
        a.push(format!("samples/{name}/veth-c1.pcap"));
        let ct = [
            "--conntrack".to_string(),
            format!("samples/{name}/conntrack.txt"),
            "--conntrack".to_string(),
            format!("samples/{name}/events.txt"),
        ];
        let (code0, plain) = json(&args(&a));
        let (code1, with) = json(&args(&[&a[..], &ct[..]].concat()));
        assert_eq!(code0, code1, "{name}");
        // The same findings; conntrack may only add evidence to them (the event log's
        // DESTROY that explains a leak, the entry of a masqueraded connection), never a
        // finding or a change of verdict.
        let facts = |doc: &Value| -> Vec<Value> {
            doc["findings"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| {
                    serde_json::json!([
                        f["code"],
                        f["severity"],
                        f["connections"],
                        f["points"],
                        f["tuples"],
                        f["message"],
                        f["detail"],
                        f["first"],
                        f["packets"]
                    ])
                })
                .collect()
        };
        // An entry's `helper=` names a NAT helper and makes its master known:
        // conntrack may add or complete `nat-helper` findings (their own test). An
        // entry whose ORIGINAL no capture shows adds `nat-before-capture` (its own
        // test). An entry that kept a loopback destination says the host answered
        // itself, which `loopback-exposed`'s words then name (its own test): the same
        // finding, with its cause.
        let not_helper = |doc: &Value| -> Value {
            let mut d = doc.clone();
            if let Some(fs) = d["findings"].as_array_mut() {
                fs.retain(|f| f["code"] != "nat-helper" && f["code"] != "nat-before-capture");
                for f in fs.iter_mut().filter(|f| f["code"] == "loopback-exposed") {
                    f["message"] = Value::Null;
                }
            }
            d
        };
        let (plain, with) = (not_helper(&plain), not_helper(&with));
        assert_eq!(facts(&plain), facts(&with), "{name}");
        for (p, w) in plain["findings"]
            .as_array()
            .unwrap()
            .iter()
            .zip(with["findings"].as_array().unwrap())
        {
            let (pe, we) = (
                p["evidence"].as_array().unwrap(),
                w["evidence"].as_array().unwrap(),
            );
            assert_eq!(&we[..pe.len()], &pe[..], "{name}: evidence is only added");
            // The event log's facts, and the entry of a connection the finding names:
            // from the table, or from the event log when the table no longer holds it
            // (it expired before the snapshot).
            let entry = format!("samples/{name}/conntrack.txt:");
            let logged = format!("samples/{name}/events.txt:");
            for extra in &we[pe.len()..] {
                let e = extra.as_str().unwrap();
                assert!(
                    e.starts_with("conntrack -E (")
                        || e.starts_with(&entry)
                        || e.starts_with(&logged),
                    "{name}: {extra}"
                );
            }
        }
        let witnesses = with["conntrack"].as_array().unwrap();
        assert_eq!(witnesses.len(), 2, "{name}");
        for w in witnesses {
            assert!(w["on_wire"].as_u64().unwrap() > 0, "{name}: {w}");
            assert_eq!(w["on_wire"], w["agree"], "{name}: {w}");
        }
        assert_eq!(witnesses[0]["kind"], "snapshot");
        assert!(
            witnesses[0]["time_ns"].is_string(),
            "{name}: snapshot time estimated"
        );
        assert_eq!(witnesses[1]["kind"], "events");
        assert!(
            plain.get("conntrack").is_none(),
            "absent without --conntrack"
        );
    }
}

#[test]
fn edited_snapshot_contradicts_the_wire() {
    // The second connection from port 40000 was moved to 16268 by the kernel; the
    // edited snapshot claims 16269.
    let orig =
        std::fs::read_to_string(root().join("samples/port-collision/conntrack.txt")).unwrap();
    let line = orig
        .lines()
        .position(|l| l.contains("dport=16268"))
        .unwrap()
        + 1;
    let edited = orig.replace("dport=16268", "dport=16269");
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("edited-ct");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("conntrack.txt");
    std::fs::write(&path, edited).unwrap();
    let p = path.to_str().unwrap();
    let a = pair("port-collision");
    let full = [&args(&a)[..], &["--conntrack", p]].concat();
    let (code, doc) = json(&full);
    assert_eq!(code, 1, "an error finding fails the run");
    let got = codes(&doc);
    assert_eq!(
        got.iter().filter(|(_, c)| c == "ct-contradiction").count(),
        1,
        "{got:?}"
    );
    assert_eq!(
        got.iter()
            .filter(|(_, c)| c != "ct-contradiction" && c != "port-reallocated")
            .count(),
        0,
        "{got:?}"
    );
    let f = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == "ct-contradiction")
        .unwrap();
    assert_eq!(f["severity"], "error");
    assert_eq!(f["detail"]["entry"], format!("{p}:{line}"));
    assert_eq!(f["detail"]["conntrack"]["sport"], 16269);
    assert_eq!(f["detail"]["wire"]["sport"], 16268);
    let w = &doc["conntrack"][0];
    assert_eq!(
        (
            w["entries"].as_u64(),
            w["on_wire"].as_u64(),
            w["agree"].as_u64()
        ),
        (Some(6), Some(6), Some(5))
    );
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(&regex_escape(dir.to_str().unwrap()), "[tmp]");
    settings.bind(|| {
        snapshot_findings("edited-conntrack", &doc);
        snapshot_markdown("edited-conntrack", &full);
    });
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let special = "\\.+*?()|[]{}^$#&-~".contains(c);
            special
                .then_some('\\')
                .into_iter()
                .chain(std::iter::once(c))
        })
        .collect()
}

#[test]
fn a_leak_cites_the_destroy_event_and_the_statistics_given() {
    let a = pair("fault-invalid-leak");
    let extra = [
        "--conntrack",
        "samples/fault-invalid-leak/events.txt",
        "--conntrack",
        "samples/fault-invalid-leak/conntrack-stats.txt",
    ];
    let (_, doc) = json(&[&args(&a)[..], &extra[..]].concat());
    let events =
        std::fs::read_to_string(root().join("samples/fault-invalid-leak/events.txt")).unwrap();
    let line = events
        .lines()
        .position(|l| l.contains("[DESTROY]") && l.contains("sport=41000"))
        .expect("the recording's DESTROY")
        + 1;
    let leaks: Vec<&Value> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == "leak")
        .collect();
    assert_eq!(leaks.len(), 2);
    for f in leaks {
        let ev = f["evidence"].to_string();
        assert!(
            ev.contains(&format!("events.txt:{line}): the entry was destroyed")),
            "{ev}"
        );
        assert!(ev.contains("[USERSPACE] progname=conntrack"), "{ev}");
        assert!(
            ev.contains("conntrack -S: insert_failed=0 drop=0 early_drop=0 invalid="),
            "{ev}"
        );
        let check = f["check"].as_str().unwrap();
        assert!(
            check.starts_with("The event log shows the cause"),
            "{check}"
        );
    }
}

/// A leak needs no translated twin: packets from an inside prefix that NAT hides at
/// the outside point, from a host no NAT rule matched, in both address families.
#[test]
fn untranslated_inside_traffic_with_no_translated_twin_is_a_leak() {
    for (s, inside) in [
        ("fault-masq-miss", "172.17.0.3"),
        ("fault-masq-miss6", "fd00:172:17::3"),
    ] {
        let (code, doc) = json(&args(&pair(s)));
        assert_eq!(code, 1, "{s}");
        let leaks: Vec<&Value> = doc["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["code"] == "leak")
            .collect();
        // The TCP connection and the UDP query (and, over IPv6, the echo request).
        assert!(leaks.len() >= 2, "{s}: {}", doc["findings"]);
        let mut protos = std::collections::BTreeSet::new();
        for f in leaks {
            assert_eq!(f["severity"], "error");
            assert_eq!(f["detail"]["kind"], "inside-address");
            assert_eq!(f["detail"]["inside_address"], inside, "{s}");
            assert_eq!(f["detail"]["translated_by"], serde_json::json!([]), "{s}");
            assert_eq!(f["points"], serde_json::json!(["eth0"]));
            protos.insert(f["tuples"][0]["proto"].as_str().unwrap().to_string());
        }
        assert!(
            protos.contains("tcp") && protos.contains("udp"),
            "{s}: {protos:?}"
        );
        // The translated container's traffic is not a leak.
        let translated_src = doc["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["detail"]["inside_address"] != inside && f["code"] == "leak");
        assert!(!translated_src, "{s}");
    }
}

/// Connections from outside to the host that nothing answered and nothing forwarded
/// are blocked on the way in, whether a NodePort (FORWARD after DNAT) or a published
/// port (DOCKER-USER); with the rules, the rule that dropped them is named.
#[test]
fn inbound_traffic_that_goes_no_further_is_blocked_on_the_way_in() {
    for (s, dport, chain) in [
        ("fault-nodeport-blocked", 30081, "filter FORWARD"),
        ("kube-rules", 9090, "filter DOCKER-USER"),
    ] {
        let (_, doc) = json(&args(&pair(s)));
        let lost: Vec<&Value> = doc["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["code"] == "lost")
            .collect();
        assert_eq!(lost.len(), 1, "{s}: {}", doc["findings"]);
        let f = lost[0];
        assert_eq!(f["severity"], "warning", "{s}");
        assert_eq!(f["tuples"][0]["dport"], dport, "{s}");
        assert_eq!(f["points"], serde_json::json!(["eth0"]), "{s}");
        assert!(
            f["message"]
                .as_str()
                .unwrap()
                .contains("an address of this host"),
            "{s}"
        );
        // With the host's rules: an error naming the DROP.
        let rules = format!("samples/{s}/iptables.txt");
        let (code, doc) = json(&[&args(&pair(s))[..], &["--rules", &rules]].concat());
        let f = doc["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["code"] == "lost")
            .expect("the blocked connection");
        assert_eq!(f["severity"], "error", "{s}");
        assert!(
            f["evidence"]
                .to_string()
                .contains(&format!("dropped by {chain}")),
            "{s}: {}",
            f["evidence"]
        );
        assert_eq!(code, 1, "{s}");
    }
}

/// NodePort connections reach the backend from the host's address: `client-address-lost`
/// names the service, the hidden client, and with the rules the mark and masquerade
/// that did it (kube-proxy in iptables mode and in nftables mode); it stays silent
/// where the client keeps its address.
#[test]
fn nodeport_masquerade_hides_the_client_address() {
    for (s, rules) in [("kube-rules", "iptables.txt"), ("kube-nft", "nft.json")] {
        let r = format!("samples/{s}/{rules}");
        let (_, doc) = json(&[&args(&pair(s))[..], &["--rules", &r]].concat());
        let found: Vec<&Value> = doc["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["code"] == "client-address-lost")
            .collect();
        assert_eq!(found.len(), 1, "{s}: {}", doc["findings"]);
        let f = found[0];
        assert_eq!(f["severity"], "info", "{s}");
        let d = &f["detail"];
        assert_eq!(d["external_cluster"], true, "{s}: {d}");
        assert_ne!(d["seen_as"], d["service"]["dst"], "{s}: {d}");
        assert!(
            !d["clients"].as_array().unwrap().contains(&d["seen_as"]),
            "{s}: {d}"
        );
        let evidence = f["evidence"].to_string();
        assert!(
            evidence.contains("marked for masquerade by"),
            "{s}: {evidence}"
        );
        assert!(evidence.contains("translated by"), "{s}: {evidence}");
    }
    for s in [
        "published-port",
        "masquerade",
        "masquerade6",
        "bulk-offload",
    ] {
        let (_, doc) = json(&args(&pair(s)));
        assert!(
            !doc["findings"].to_string().contains("client-address-lost"),
            "{s}"
        );
    }
}

/// A UDP flow left on its old backend after the DNAT was retargeted: `stale-entry`
/// from the wire alone (a newer flow to the same service went to the new backend, the
/// old one answers with ICMP errors), and with the rules naming the rule that now
/// decides; `rule-contradiction` does not also fire for it. A published port
/// (outside in) and a service address (inside out).
#[test]
fn a_flow_left_on_its_old_backend_is_a_stale_entry() {
    for s in ["stale-udp", "stale-udp-vip"] {
        let three = [
            format!("samples/{s}/docker0.pcap"),
            format!("samples/{s}/eth0.pcap"),
            format!("samples/{s}/veth-c1.pcap"),
        ];
        let rules = format!("samples/{s}/iptables.txt");
        for with_rules in [false, true] {
            let mut a = args(&three);
            if with_rules {
                a.extend(["--rules", rules.as_str()]);
            }
            let (code, doc) = json(&a);
            assert_eq!(code, 1, "{s}");
            let found: Vec<&Value> = doc["findings"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|f| f["code"] == "stale-entry")
                .collect();
            assert_eq!(found.len(), 1, "{s}: {}", doc["findings"]);
            let d = &found[0]["detail"];
            assert_ne!(d["stale"]["dst"], d["now_on_wire"]["dst"], "{s}: {d}");
            assert!(d["error_packets"].as_u64().unwrap() > 0, "{s}: {d}");
            if with_rules {
                assert_eq!(
                    d["now_by_rules"]["dst"], d["now_on_wire"]["dst"],
                    "{s}: {d}"
                );
            } else {
                assert!(d["now_by_rules"].is_null(), "{s}: {d}");
            }
            assert!(
                !doc["findings"].to_string().contains("rule-contradiction"),
                "{s}: {}",
                doc["findings"]
            );
        }
    }
}

/// The recording's pair with its own witnesses: the rules (both families) and the
/// `conntrack -S` counters.
fn with_witnesses(name: &str) -> Vec<String> {
    let mut a = pair(name);
    for f in ["iptables.txt", "ip6tables.txt"] {
        if root().join("samples").join(name).join(f).is_file() {
            a.extend(["--rules".to_string(), format!("samples/{name}/{f}")]);
        }
    }
    a.extend([
        "--conntrack".to_string(),
        format!("samples/{name}/conntrack-stats.txt"),
    ]);
    a
}

/// Every NAT port of the rule's two-port range held by two live connections to one
/// server: the third connection's SYNs (TCP, MASQUERADE --to-ports) or datagrams (UDP
/// over IPv6, SNAT --to-source) never leave the host, and the kernel counts a failed
/// insert for each. Without the rules the range is not known, and the loss is `lost`.
#[test]
fn snat_port_exhaustion_names_the_range_the_holders_and_the_lost() {
    for (name, inside, sport, nat, dport, packets, failed) in [
        (
            "fault-snat-exhaustion",
            "172.17.0.2",
            40100,
            "203.0.113.1",
            7000,
            4,
            4,
        ),
        (
            "fault-snat-exhaustion-udp6",
            "fd00:172:17::2",
            40153,
            "2001:db8:113::1",
            53,
            3,
            3,
        ),
    ] {
        let a = with_witnesses(name);
        let (code, doc) = json(&args(&a));
        assert_eq!(code, 1, "{name}");
        let errors: Vec<(String, String)> = codes(&doc)
            .into_iter()
            .filter(|(sev, _)| sev != "info")
            .collect();
        assert_eq!(
            errors,
            [("error".into(), "snat-port-exhaustion".into())],
            "{name}"
        );
        let f = &doc["findings"][0];
        let d = &f["detail"];
        let lost = conn_with(&doc, "docker0", inside, sport);
        let holders: Vec<String> = [20000, 20001]
            .iter()
            .map(|&p| conn_with(&doc, "eth0", nat, p))
            .collect();
        assert_eq!(f["connections"][0], lost.as_str(), "{name}");
        assert_eq!(d["lost"], serde_json::json!([lost]), "{name}");
        let mut got: Vec<String> = d["holders"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| s(h).to_string())
            .collect();
        got.sort();
        let mut want = holders.clone();
        want.sort();
        assert_eq!(got, want, "{name}");
        assert_eq!(d["range"], serde_json::json!([20000, 20001]), "{name}");
        assert_eq!(d["range_from"], "rule", "{name}");
        assert_eq!(
            (d["usable"].as_u64(), d["held"].as_u64()),
            (Some(2), Some(2))
        );
        assert_eq!(d["nat_addresses"], serde_json::json!([nat]), "{name}");
        assert_eq!(
            d["destination"].as_str().unwrap().rsplit(':').next(),
            Some(dport.to_string().as_str())
        );
        assert_eq!(f["packets"], packets, "{name}");
        assert_eq!(f["points"], serde_json::json!(["docker0", "eth0"]));
        let roles: Vec<&str> = f["tuples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| s(&t["role"]))
            .collect();
        assert_eq!(roles, ["last-seen", "holder", "holder"], "{name}");
        let ev = f["evidence"].to_string();
        assert!(ev.contains("source NAT by nat POSTROUTING"), "{name}: {ev}");
        assert!(ev.contains("2 of 2 held"), "{name}: {ev}");
        assert!(
            ev.contains(&format!(
                "conntrack -S: insert_failed={failed} drop={failed}"
            )),
            "{name}: {ev}"
        );
        // Not reported again as lost; the fail-on code trips it alone.
        assert!(!codes(&doc).iter().any(|(_, c)| c == "lost"), "{name}");
        let only = |on: &str| json(&[&["--fail-on", on], &args(&a)[..]].concat()).0;
        assert_eq!(only("snat-port-exhaustion"), 1, "{name}");
        assert_eq!(only("insert-race,lost"), 0, "{name}");
        // Every format says it.
        let (_, text) = correlate(&args(&a));
        assert!(text.contains("[error] snat-port-exhaustion"), "{name}");
        assert!(text.contains("ran out of NAT ports"), "{name}");
        let (_, md) = correlate(&[&["--format", "markdown"], &args(&a)[..]].concat());
        assert!(md.contains("`snat-port-exhaustion`"), "{name}");
        // Without the rules the range is unknown: the connection is blocked, `lost`.
        let (_, plain) = json(&args(&pair(name)));
        let lost_f = plain["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["code"] == "lost")
            .expect("lost without the rules");
        assert_eq!(lost_f["connections"][0], lost.as_str(), "{name}");
        assert!(!codes(&plain)
            .iter()
            .any(|(_, c)| c == "snat-port-exhaustion"));
    }
    let a = with_witnesses("fault-snat-exhaustion");
    let (_, doc) = json(&args(&a));
    snapshot_findings("fault-snat-exhaustion", &doc);
    snapshot_markdown("fault-snat-exhaustion", &args(&a));
}

/// A connection's first SYN lost at the host and its retransmission 1 s later through,
/// and the AAAA query of an A/AAAA pair lost and resent 3 s later: recovered losses,
/// one warning each, not `lost` as well. The rule behind them and the counters that
/// rule an insert failure out are cited.
#[test]
fn a_loss_recovered_by_a_resend_is_an_insert_race_warning() {
    let name = "fault-syn-dropped-once";
    let a = with_witnesses(name);
    let (code, doc) = json(&args(&a));
    assert_eq!(code, 0, "warnings do not fail by default");
    assert_eq!(
        codes(&doc),
        vec![("warning".into(), "insert-race".into()); 2]
    );
    let want: BTreeSet<String> = [
        ("172.17.0.2", "203.0.113.2"),
        ("172.17.0.3", "198.51.100.10"),
    ]
    .iter()
    .map(|(src, dst)| {
        doc["connections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| {
                c["proto"] == "tcp" && c["hops"][0]["src"] == *src && c["hops"][0]["dst"] == *dst
            })
            .map(|c| s(&c["id"]).to_string())
            .unwrap()
    })
    .collect();
    let mut got = BTreeSet::new();
    for f in doc["findings"].as_array().unwrap() {
        let d = &f["detail"];
        assert_eq!(d["kind"], "syn");
        assert_eq!((s(&d["from"]), s(&d["to"])), ("docker0", "eth0"));
        let after = d["recovered_after_ns"].as_i64().unwrap();
        assert!((900_000_000..1_500_000_000).contains(&after), "{after}");
        assert!(d["pair_gap_ns"].is_null());
        assert_eq!(f["packets"], 1);
        assert_eq!(f["tuples"][0]["role"], "seen");
        assert_eq!(f["tuples"][1]["role"], "next");
        let ev = f["evidence"].to_string();
        assert!(ev.contains("the first SYN seen at docker0"), "{ev}");
        assert!(
            ev.contains("--mode nth --every 2 --packet 0 -j DROP"),
            "{ev}"
        );
        assert!(
            ev.contains("conntrack -S: insert_failed=0 drop=0 clash_resolve=0"),
            "{ev}"
        );
        assert!(
            s(&f["message"]).contains("recovered after 1."),
            "{}",
            f["message"]
        );
        got.insert(s(&f["connections"][0]).to_string());
    }
    assert_eq!(got, want);
    let only = |on: &str| json(&[&["--fail-on", on], &args(&a)[..]].concat()).0;
    assert_eq!(only("insert-race"), 1);
    assert_eq!(only("warning"), 1);
    assert_eq!(only("lost,snat-port-exhaustion"), 0);

    let name = "fault-dns-pair-dropped";
    let a = with_witnesses(name);
    let (code, doc) = json(&args(&a));
    assert_eq!(code, 0);
    assert_eq!(codes(&doc), [("warning".into(), "insert-race".into())]);
    let f = &doc["findings"][0];
    let d = &f["detail"];
    assert_eq!(d["kind"], "datagram-pair");
    assert!(d["pair_gap_ns"].as_i64().unwrap() < 1_000_000);
    let after = d["recovered_after_ns"].as_i64().unwrap();
    assert!((2_500_000_000..3_500_000_000).contains(&after), "{after}");
    assert_eq!(f["tuples"][0]["src"], "172.17.0.2");
    assert_eq!(f["tuples"][0]["dport"], 53);
    let ev = f["evidence"].to_string();
    assert!(ev.contains("two datagrams of one socket"), "{ev}");
    assert!(ev.contains("the second one was lost"), "{ev}");
    let (_, text) = correlate(&args(&a));
    assert!(text.contains("[warning] insert-race"), "{text}");
    snapshot_findings(name, &doc);
    snapshot_markdown(name, &args(&a));
}

/// A container reaching its own published port with no hairpin masquerade: the kernel
/// DNATs it back to itself with its own address as the source and it never answers.
/// The captures say so when the container's own point is among them
/// (`hairpin-no-masq`), the entry says so otherwise (`ct-hairpin-no-masq`); never
/// both, and the copies bridge netfilter hands each point are neither lost nor a
/// leak. Over TCP and over UDP.
#[test]
fn hairpin_without_masquerade_is_one_error_from_the_wire_or_the_entry() {
    let error = |code: &str| vec![("error".to_string(), code.to_string())];
    // The container to its own port; the third is `hairpin-direct-reply`'s.
    for &s in &HAIRPIN_SCENARIOS[..2] {
        let ct = [
            "--conntrack".to_string(),
            format!("samples/{s}/conntrack.txt"),
        ];
        let mut wire = pair(s);
        wire.push(format!("samples/{s}/veth-c1.pcap"));
        for a in [wire.clone(), [&wire[..], &ct[..]].concat()] {
            let (code, doc) = json(&args(&a));
            assert_eq!(code, 1, "{s}: {a:?}");
            // (The other container's connection to the port, which worked, reached
            // the bridge's capture already DNATed on its port: its entry says so.)
            assert_eq!(
                codes_but_before_capture(&doc),
                error("hairpin-no-masq"),
                "{s}: {a:?}"
            );
            // The entry says which cause: the DNAT back, and no masquerade rule matched.
            let check = doc["findings"][0]["check"].as_str().unwrap();
            assert_eq!(
                check.contains("no masquerade rule matched"),
                a.len() > wire.len(),
                "{s}: {check}"
            );
            let f = &doc["findings"][0];
            assert_eq!(f["detail"]["back_at"], "veth-c1", "{s}");
            assert_eq!(f["detail"]["replies"], 0, "{s}");
            assert_eq!(
                f["detail"]["client"]["src"], f["tuples"][1]["dst"],
                "{s}: sent back to itself"
            );
        }
        let (_, doc) = json(&args(&wire));
        snapshot_findings(s, &doc);
        // Without the container's point the bridge shows the packets already DNATed:
        // nothing on the wire, the entry names it.
        let (code, doc) = json(&args(&[&pair(s)[..], &ct[..]].concat()));
        assert_eq!(code, 1, "{s}");
        assert_eq!(
            codes_but_before_capture(&doc),
            error("ct-hairpin-no-masq"),
            "{s}"
        );
    }
}

/// A container's hairpin with Docker's hairpin masquerade rules in place, turned back by
/// its bridge port in hairpin mode off: the wire shows it DNATed back unmasqueraded
/// (TCP and UDP, over IPv4 and IPv6), and the snapshot, taken seconds later, holds no
/// entry for either, so the finding says the kernel never confirmed one and points at
/// the port's hairpin mode, not at a missing rule.
#[test]
fn a_hairpin_conntrack_never_confirmed_points_at_the_bridge_port() {
    for s in ["fault-hairpin-mode-off", "fault-hairpin-mode-off6"] {
        let file = |f: &str| format!("samples/{s}/{f}");
        let wire: Vec<String> = ["veth-c1.pcap", "docker0.pcap", "eth0.pcap"]
            .iter()
            .map(|f| file(f))
            .collect();
        let ct = ["--conntrack".to_string(), file("conntrack.txt")];
        let (code, doc) = json(&args(&[&wire[..], &ct[..]].concat()));
        assert_eq!(code, 1, "{s}");
        let want = vec![("error".to_string(), "hairpin-no-masq".to_string()); 2];
        assert_eq!(codes_but_before_capture(&doc), want, "{s}");
        for f in (doc["findings"].as_array().unwrap().iter()).filter(|f| f["severity"] == "error") {
            let check = f["check"].as_str().unwrap();
            assert!(check.contains("never confirmed one"), "{s}: {check}");
            assert!(check.contains("hairpin mode is off"), "{s}: {check}");
            let ev: Vec<&str> = (f["evidence"].as_array().unwrap().iter())
                .map(|e| e.as_str().unwrap())
                .collect();
            assert!(
                ev.iter().any(|e| e.contains("no entry for it")),
                "{s}: {ev:?}"
            );
        }
        // The rules masquerade it and the wire shows the DNAT alone: the contradiction
        // says the masquerade was skipped, and where to look.
        let mut rules = Vec::new();
        for f in ["iptables.txt", "ip6tables.txt", "addrs.txt"] {
            if root().join(file(f)).is_file() {
                rules.extend(["--rules".to_string(), file(f)]);
            }
        }
        let (_, doc) = json(&args(&[&wire[..], &rules[..]].concat()));
        let contradictions: Vec<&Value> = (doc["findings"].as_array().unwrap().iter())
            .filter(|f| f["code"] == "rule-contradiction")
            .collect();
        assert_eq!(contradictions.len(), 2, "{s}: {}", doc["findings"]);
        for f in contradictions {
            let (msg, check) = (f["message"].as_str().unwrap(), f["check"].as_str().unwrap());
            assert!(msg.contains("never their masquerade"), "{s}: {msg}");
            assert!(check.contains("hairpin mode is off"), "{s}: {check}");
        }
        // The bridge and the uplink alone show nothing of it, and no entry names it.
        // The other container's connections to the published port, which worked,
        // reached the bridge's capture already DNATed on its port: their entries say
        // so.
        let (code, doc) = json(&args(&[&pair(s)[..], &ct[..]].concat()));
        let info = ("info".to_string(), "nat-before-capture".to_string());
        assert_eq!((code, codes(&doc)), (0, vec![info; 2]), "{s}");
        snapshot_findings(s, &json(&args(&[&wire[..], &ct[..]].concat())).1);
    }
}

/// A connection DNATed back out of the interface it came in by, to a server other than
/// the client, with the client's address kept: the server answers the client directly,
/// past the host. A router's NAT loopback on its LAN, over IPv4 and IPv6 (no answer in
/// any capture: a warning each for TCP and UDP) and a bridge that does not call netfilter (the answers
/// seen as the server sent them: an error each, and the answers are not also lost),
/// in every capture form; the masqueraded connections beside them are clean.
#[test]
fn a_hairpin_answered_past_the_host_is_named_and_not_lost() {
    for (s, severity, at, answers_at) in [
        ("fault-hairpin-routed-no-masq", "warning", "eth0", None),
        ("fault-hairpin-routed-no-masq6", "warning", "eth0", None),
        (
            "fault-hairpin-no-br-netfilter",
            "error",
            "docker0",
            Some("docker0"),
        ),
    ] {
        let d = format!("samples/{s}");
        let forms = [
            pair(s),
            [&pair(s)[..], &[format!("{d}/veth-c1.pcap")]].concat(),
            vec![format!("{d}/multi.pcapng")],
            vec![
                format!("{d}/any.pcap"),
                "--links".into(),
                format!("{d}/links.txt"),
            ],
        ];
        for form in forms {
            let (code, doc) = json(&args(&form));
            let want = vec![(severity.to_string(), "hairpin-direct-reply".to_string()); 2];
            assert_eq!(codes(&doc), want, "{s}: {form:?}");
            assert_eq!(code, i32::from(severity == "error"), "{s}: {form:?}");
            let mut protos = Vec::new();
            for f in doc["findings"].as_array().unwrap() {
                let d = &f["detail"];
                assert_eq!(d["at"], at, "{s}");
                assert_eq!(d["answers_at"].as_str(), answers_at, "{s}");
                assert_eq!(
                    d["answers"].as_u64().unwrap() > 0,
                    answers_at.is_some(),
                    "{s}"
                );
                assert!(d["delivered"].as_u64().unwrap() > 0, "{s}");
                assert_eq!(d["client"]["src"], d["server"]["src"], "{s}: source kept");
                assert_ne!(d["client"]["dst"], d["server"]["dst"], "{s}: DNATed");
                protos.push(d["client"]["proto"].as_str().unwrap().to_string());
            }
            protos.sort();
            assert_eq!(protos, ["tcp", "udp"], "{s}");
        }
        let (_, doc) = json(&args(&pair(s)));
        snapshot_findings(s, &doc);
    }
}

/// Full-size segments that never get past a smaller link, sent again unchanged, with
/// the ICMP error dropped by the host (IPv4) or seen leaving it and never acted on
/// (IPv6): one error each, in every format; `lost` does not repeat it.
#[test]
fn a_path_mtu_black_hole_is_one_error_with_the_sizes_and_the_mss() {
    for (name, from, to, dir, mss, mtu) in [
        (
            "fault-pmtu-black-hole",
            "docker0",
            "eth0",
            "fwd",
            1460,
            None,
        ),
        (
            "fault-pmtu-black-hole6",
            "eth0",
            "docker0",
            "rev",
            1440,
            Some(1400),
        ),
    ] {
        let a = pair(name);
        let (code, doc) = json(&args(&a));
        assert_eq!(code, 1, "{name}");
        assert_eq!(
            codes(&doc),
            [("error".into(), "pmtu-black-hole".into())],
            "{name}"
        );
        let f = &doc["findings"][0];
        let d = &f["detail"];
        assert_eq!((s(&d["from"]), s(&d["to"])), (from, to), "{name}");
        assert_eq!(d["direction"], dir, "{name}");
        assert_eq!(d["failed"], serde_json::json!([1500, 1500]), "{name}");
        assert!(d["crossed_max"].as_u64().unwrap() < 200, "{name}: {d}");
        assert!(d["resent"].as_u64().unwrap() >= 3, "{name}: {d}");
        assert_eq!(d["mss_initiator"], mss, "{name}");
        assert_eq!(d["mss_responder"], mss, "{name}");
        assert_eq!(f["points"], serde_json::json!([from, to]), "{name}");
        assert_eq!(f["tuples"][0]["role"], "seen", "{name}");
        // The segments travel from the sender: the server's (7000) in the download.
        let sport = if dir == "fwd" { "dport" } else { "sport" };
        assert_eq!(f["tuples"][0][sport], 7000, "{name}");
        let ev = f["evidence"].to_string();
        match mtu {
            None => {
                assert!(d["mtu"].is_null(), "{name}");
                assert_eq!(d["mtu_range"][1], 1499, "{name}");
                assert!(ev.contains("no ICMP fragmentation needed"), "{name}: {ev}");
                assert_eq!(f["connections"].as_array().unwrap().len(), 1, "{name}");
            }
            Some(m) => {
                assert_eq!(d["mtu"], m, "{name}");
                assert_eq!(d["mtu_range"], serde_json::json!([m, m]), "{name}");
                assert_eq!(d["icmp_seen_at"], serde_json::json!(["eth0"]), "{name}");
                assert!(
                    ev.contains("packet too big errors (mtu 1400)"),
                    "{name}: {ev}"
                );
                assert!(ev.contains("it never reached the sender"), "{name}: {ev}");
                // The connection and the ICMP errors about it.
                assert_eq!(f["connections"].as_array().unwrap().len(), 2, "{name}");
            }
        }
        assert!(
            s(&f["message"]).starts_with("PMTU black hole between"),
            "{name}"
        );
        let (_, text) = correlate(&args(&a));
        assert!(text.contains("[error] pmtu-black-hole"), "{name}: {text}");
        assert_eq!(
            correlate(&[&["--fail-on", "pmtu-black-hole"], &args(&a)[..]].concat()).0,
            1
        );
        assert_eq!(
            correlate(&[&["--fail-on", "lost"], &args(&a)[..]].concat()).0,
            0
        );
        snapshot_findings(name, &doc);
        snapshot_markdown(name, &args(&a));
    }
}

/// Both nodes of an underlay recording under the labels given (node A's pod link and
/// eth0, node B's eth0 and pod link, node B on the lab's own clock).
fn nodes(name: &str, labels: [&str; 4]) -> Vec<String> {
    overlay_points(name, labels, "node-b")
}

/// Packets lost inside the tunnel between the two nodes of an overlay: one error per
/// tunnel and direction naming the tunnel, what the lost packets have in common (by
/// size: TCP segments larger than all that crossed; by time: DNS answers and echo
/// replies while the network blocked node B), and no `lost` or `pmtu-black-hole` for
/// the same packets. With node A's captures alone, nothing of the kind.
#[test]
fn packets_lost_between_the_nodes_of_an_overlay_are_an_underlay_drop() {
    for (name, labels, larger, window, protos) in [
        (
            "fault-underlay-drop",
            ["a-pod", "a-eth0", "b-eth0", "b-pod"],
            true,
            false,
            vec!["tcp"],
        ),
        (
            "fault-underlay-blocked",
            ["pod1", "node1", "node2", "pod2"],
            false,
            true,
            vec!["udp", "icmp"],
        ),
    ] {
        let a = nodes(name, labels);
        let (code, doc) = json(&args(&a));
        assert_eq!(code, 1, "{name}");
        let errors: Vec<_> = codes(&doc)
            .into_iter()
            .filter(|(sev, _)| sev != "info")
            .collect();
        assert_eq!(errors, [("error".into(), "underlay-drop".into())], "{name}");
        let f = doc["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["code"] == "underlay-drop")
            .unwrap();
        let d = &f["detail"];
        assert_eq!(
            (s(&d["from"]), s(&d["to"])),
            (labels[2], labels[1]),
            "{name}"
        );
        assert_eq!(
            f["points"],
            serde_json::json!([labels[2], labels[1]]),
            "{name}"
        );
        assert_eq!(d["tunnel"]["kind"], "vxlan", "{name}");
        assert_eq!(d["tunnel"]["id"], 1, "{name}");
        assert_eq!(d["tunnel"]["dport"], 4789, "{name}");
        assert_eq!(d["larger"], larger, "{name}: {d}");
        assert_eq!(d["window"], window, "{name}: {d}");
        assert_eq!(d["crossed_again"].is_null(), !window, "{name}: {d}");
        let lost = d["lost_len"][0].as_u64().unwrap();
        assert_eq!(lost > d["crossed_max"].as_u64().unwrap(), larger, "{name}");
        // The lost packets travel from node B: the pod's replies.
        assert_eq!(f["tuples"][0]["role"], "seen", "{name}");
        assert_eq!(f["tuples"][0]["src"], "172.17.1.2", "{name}");
        let got: Vec<&str> = f["connections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let c = doc["connections"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|k| &k["id"] == c)
                    .unwrap();
                s(&c["proto"])
            })
            .collect();
        assert_eq!(got, protos, "{name}");
        assert!(
            s(&f["message"]).starts_with(&format!(
                "Underlay drop between {} and {}",
                labels[2], labels[1]
            )),
            "{name}"
        );
        let fail = |on: &str| correlate(&[&["--fail-on", on], &args(&a)[..]].concat()).0;
        assert_eq!(fail("underlay-drop"), 1, "{name}");
        assert_eq!(fail("lost,pmtu-black-hole"), 0, "{name}");
        // The same with node B's clock moved (estimated from the packets): the
        // finding's evidence does not depend on the two hosts' clocks agreeing.
        let shifted = overlay_points(name, labels, "node-b/shifted");
        let (code, moved) = json(&args(&shifted));
        assert_eq!(code, 1, "{name}");
        let g = moved["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["code"] == "underlay-drop")
            .unwrap_or_else(|| panic!("{name}: no underlay-drop with node B's clock moved"));
        for k in ["connections", "points", "tuples"] {
            assert_eq!(f[k], g[k], "{name}: {k}");
        }
        for k in ["lost_len", "crossed_max", "larger", "window", "tunnel"] {
            assert_eq!(d[k], g["detail"][k], "{name}: {k}");
        }
        // Node A's captures alone see nothing of the underlay's far side.
        let (_, alone) = json(&args(&a[..2]));
        assert!(
            !codes(&alone).iter().any(|(_, c)| c == "underlay-drop"),
            "{name}"
        );
        snapshot_findings(name, &doc);
    }
}

/// A pod's full-size segments too big for the tunnel they were to enter (a vxlan
/// device at the underlay's own MTU, outer DF set): a PMTU black hole between the pod
/// and its node's underlay point, naming the tunnel and what its headers make of them.
#[test]
fn segments_too_big_for_the_tunnel_are_a_black_hole_naming_it() {
    let a = nodes("fault-vxlan-mtu", ["pod-a", "node-a", "node-b", "pod-b"]);
    let (code, doc) = json(&args(&a));
    assert_eq!(code, 1);
    let bad: Vec<_> = codes(&doc)
        .into_iter()
        .filter(|(sev, _)| sev != "info")
        .collect();
    assert_eq!(bad, [("error".into(), "pmtu-black-hole".into())]);
    let f = &doc["findings"][0];
    let d = &f["detail"];
    assert_eq!((s(&d["from"]), s(&d["to"])), ("pod-b", "node-b"));
    assert_eq!(d["tunnel"]["kind"], "vxlan");
    assert_eq!(d["tunnel"]["src"], "203.0.113.2");
    assert_eq!(d["tunnel_overhead"], 50);
    assert!(
        s(&f["message"]).ends_with(
            "at node-b they were to enter VXLAN VNI 1 from 203.0.113.2 to 203.0.113.1 (UDP port 4789), whose headers add 50 bytes (1550-byte packets on the underlay)"
        ),
        "{}",
        f["message"]
    );
    assert!(s(&f["check"]).contains("ip_forward_use_pmtu"));
    snapshot_findings("fault-vxlan-mtu", &doc);
}

/// No other recording loses packets inside a tunnel: the overlay with every point,
/// and every scenario's own captures.
#[test]
fn no_other_recording_has_an_underlay_drop() {
    let overlay = nodes("overlay-vxlan", ["a-pod", "a-eth0", "b-eth0", "b-pod"]);
    let (_, doc) = json(&args(&overlay));
    assert!(!codes(&doc).iter().any(|(_, c)| c == "underlay-drop"));
    for &name in SCENARIOS.iter().chain(HAIRPIN_SCENARIOS) {
        let (_, doc) = json(&args(&recording(name)[1..]));
        assert!(
            !codes(&doc).iter().any(|(_, c)| c == "underlay-drop"),
            "{name}"
        );
    }
}

/// A userland proxy splices two TCP connections: each outside client's connection
/// ends at the host, a connection of the proxy's own from the bridge address carries
/// its bytes to the container. Paired by bytes and timing: a warning per client (its
/// address is lost), info for the host's own client over lo; the IPv4 client of the
/// IPv6 recording is DNATed and keeps its address. Nothing else about those
/// connections.
#[test]
fn a_userland_proxy_pairs_the_clients_connection_with_its_own() {
    for (name, clients) in [("userland-proxy", 2), ("userland-proxy6", 2)] {
        let a = pair(name);
        let (code, doc) = json(&args(&a));
        assert_eq!(code, 0, "{name}: warnings do not fail by default");
        assert_eq!(
            codes(&doc),
            vec![("warning".to_string(), "userland-proxy".to_string()); clients],
            "{name}"
        );
        for f in doc["findings"].as_array().unwrap() {
            let d = &f["detail"];
            let (outer, inner) = (s(&d["outer"]), s(&d["inner"]));
            assert_eq!(
                f["connections"],
                serde_json::json!([outer, inner]),
                "{name}"
            );
            assert_eq!(d["client_address_lost"], true, "{name}");
            assert_eq!(d["local_client"], false, "{name}");
            assert!(s(&d["listen"]).ends_with(":8080"), "{name}: {d}");
            assert_eq!(d["backend"], "172.17.0.2:80", "{name}");
            assert!(s(&d["source"]).starts_with("172.17.0.1:"), "{name}: {d}");
            assert_eq!(
                f["points"],
                serde_json::json!(["eth0", "docker0"]),
                "{name}"
            );
            let roles: Vec<&str> = f["tuples"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| s(&t["role"]))
                .collect();
            assert_eq!(roles, ["before", "after"], "{name}");
            // The client's connection is at eth0 only, the proxy's at docker0 only.
            let c = doc["connections"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["id"] == outer)
                .unwrap();
            assert_eq!(c["hops"].as_array().unwrap().len(), 1, "{name}");
            assert_eq!(c["findings"].as_array().unwrap().len(), 1, "{name}");
            let ev = f["evidence"].to_string();
            assert!(ev.contains("went on over"), "{name}: {ev}");
            assert!(
                s(&f["message"]).starts_with("client address lost via userland proxy"),
                "{name}"
            );
        }
        if name == "userland-proxy6" {
            // The IPv4 client went through DNAT: one connection, two hops, no finding.
            let dnat = doc["connections"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["hops"][0]["src"] == "198.51.100.20")
                .expect("the IPv4 client");
            assert_eq!(dnat["hops"].as_array().unwrap().len(), 2);
            assert!(dnat["findings"].as_array().unwrap().is_empty());
        }
        assert_eq!(
            correlate(&[&["--fail-on", "userland-proxy"], &args(&a)[..]].concat()).0,
            1
        );
        assert_eq!(
            correlate(&[&["--fail-on", "error"], &args(&a)[..]].concat()).0,
            0
        );
        snapshot_findings(name, &doc);
        snapshot_markdown(name, &args(&a));
    }
    // With lo captured too, the host's own client is a third pair, info.
    let d = "samples/userland-proxy";
    let (code, doc) = json(&[
        &format!("{d}/docker0.pcap"),
        &format!("{d}/eth0.pcap"),
        &format!("{d}/lo.pcap"),
    ]);
    assert_eq!(code, 0);
    let local: Vec<&Value> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "info")
        .collect();
    assert_eq!(local.len(), 1, "{}", doc["findings"]);
    assert_eq!(local[0]["detail"]["local_client"], true);
    assert!(s(&local[0]["detail"]["client"]).starts_with("127.0.0.1:"));
    assert_eq!(local[0]["points"], serde_json::json!(["lo", "docker0"]));
}

/// The asymmetric-route recordings' three points (inside, the uplink the requests
/// took, the one the replies came back by), named as `labels` say.
fn uplinks(name: &str, labels: [&str; 3]) -> Vec<String> {
    ["docker0", "eth0", "eth1"]
        .iter()
        .zip(labels)
        .map(|(f, l)| format!("{l}=samples/{name}/{f}.pcap"))
        .collect()
}

/// Replies that came back by the other uplink and went no further: IPv4 TCP dropped by
/// the rp_filter sysctl, IPv6 UDP and ICMPv6 by a raw rpfilter rule, whatever the
/// points are called. One error per connection, with the entry and the rules when
/// given; nothing else about those connections.
#[test]
fn replies_back_by_another_uplink_that_go_no_further_are_an_asymmetric_route() {
    for (name, labels, count, joined, unreplied, rules) in [
        (
            "fault-asym-route",
            ["docker0", "eth0", "eth1"],
            1,
            "acknowledgement",
            false,
            "iptables.txt",
        ),
        (
            "fault-asym-route6",
            ["lan", "isp-a", "isp-b"],
            2,
            "tuple",
            true,
            "ip6tables.txt",
        ),
    ] {
        let a = uplinks(name, labels);
        let [inside, requests, replies] = labels;
        let (code, doc) = json(&args(&a));
        assert_eq!(code, 1, "{name}");
        assert_eq!(
            codes(&doc),
            vec![("error".to_string(), "asymmetric-route".to_string()); count],
            "{name}"
        );
        for f in doc["findings"].as_array().unwrap() {
            let d = &f["detail"];
            assert_eq!(d["requests_at"], requests, "{name}");
            assert_eq!(d["replies_at"], replies, "{name}");
            assert_eq!(d["not_reached"], inside, "{name}");
            assert_eq!(d["joined_by"], joined, "{name}");
            assert_eq!(d["replies_crossed"], 0, "{name}");
            assert_eq!(d["translated"], true, "{name}");
            assert!(d["conntrack_unreplied"].is_null(), "{name}");
            assert_eq!(f["points"], serde_json::json!(labels), "{name}");
            let roles: Vec<&str> = f["tuples"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| s(&t["role"]))
                .collect();
            assert_eq!(roles, ["seen", "next", "requests"], "{name}");
            // The replies travel from the server to the NAT address.
            assert_eq!(f["tuples"][0]["dst"], f["tuples"][2]["src"], "{name}");
            let msg = s(&f["message"]);
            assert!(
                msg.starts_with(&format!(
                    "replies came back by {replies}, not by {requests} where the requests went, and never reached {inside}"
                )),
                "{name}: {msg}"
            );
            assert!(
                msg.contains("Not a NAT rule that failed, nor NAT ports run out"),
                "{msg}"
            );
            // The connection holds the replies as a return hop, and no other finding.
            let c = doc["connections"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["id"] == f["connections"][0])
                .unwrap();
            assert_eq!(c["returns"][0]["point"], replies, "{name}");
            assert_eq!(c["returns"][0]["beside"], requests, "{name}");
            assert_eq!(c["returns"][0]["toward"]["point"], inside, "{name}");
            assert_eq!(c["findings"].as_array().unwrap().len(), 1, "{name}");
        }
        let with = |extra: &[&str]| correlate(&[extra, &args(&a)[..]].concat()).0;
        assert_eq!(with(&["--fail-on", "asymmetric-route"]), 1, "{name}");
        assert_eq!(with(&["--fail-on", "lost,unsolicited"]), 0, "{name}");
        assert_eq!(with(&["--fail-on", "none"]), 0, "{name}");
        // One entry: the finding, or the findings of one cause.
        let (_, text) = correlate(&args(&a));
        let entry = match count {
            1 => "[error] asymmetric-route  c".to_string(),
            n => format!("[error] asymmetric-route  {n} findings\n"),
        };
        assert_eq!(text.matches(&entry).count(), 1, "{name}: {text}");

        // The entry says whether conntrack saw the replies (the sysctl drops after it,
        // the raw table before); the rules name the rpfilter rule, or that none does.
        // Rules name interfaces: the points are named after theirs.
        let w = [
            "--conntrack".to_string(),
            format!("samples/{name}/conntrack.txt"),
            "--rules".to_string(),
            format!("samples/{name}/{rules}"),
        ];
        let aw = [&uplinks(name, ["docker0", "eth0", "eth1"])[..], &w[..]].concat();
        let (code, with_witnesses) = json(&args(&aw));
        assert_eq!(code, 1, "{name}");
        assert_eq!(codes(&with_witnesses), codes(&doc), "{name}");
        for f in with_witnesses["findings"].as_array().unwrap() {
            assert_eq!(f["detail"]["conntrack_unreplied"], unreplied, "{name}");
            let ev = f["evidence"].to_string();
            if unreplied {
                assert!(ev.contains("[UNREPLIED]"), "{name}: {ev}");
                assert!(
                    ev.contains("a reverse-path filter in raw PREROUTING")
                        && ev.contains("-m rpfilter --invert -j DROP"),
                    "{name}: {ev}"
                );
            } else {
                assert!(ev.contains(" SYN_RECV "), "{name}: {ev}");
                assert!(
                    ev.contains("no rule given drops on a reverse-path check"),
                    "{name}: {ev}"
                );
            }
        }
        snapshot_findings(name, &with_witnesses);
        snapshot_markdown(name, &args(&a));

        // The host's settings (a bundle's sysctl.txt, or `sysctl -a` passed with the
        // conntrack inputs): IPv4 names the sysctl that dropped the replies where
        // they arrived; IPv6 has none to name.
        let settings = [
            "--conntrack".to_string(),
            format!("samples/{name}/sysctl.txt"),
        ];
        let (_, doc) = json(&args(&[&aw[..], &settings[..]].concat()));
        assert_eq!(codes(&doc), codes(&with_witnesses), "{name}");
        for f in doc["findings"].as_array().unwrap() {
            let ev = f["evidence"].to_string();
            assert_eq!(
                ev.contains("reverse-path filtering on eth1 is 1, strict"),
                !unreplied,
                "{name}: {ev}"
            );
        }
    }
}

/// The same findings from the recorder's one pcapng and its `-i any` capture as from
/// the interfaces' own files. Not for `fault-asym-route6`'s point towards the
/// initiator: its unanswered IPv6 packets carry one timestamp at veth-c1 and docker0
/// in one capture, which leaves those two hops unordered (docs/findings.md, Limits).
#[test]
fn an_asymmetric_route_reads_the_same_from_one_pcapng_and_one_any_capture() {
    for name in ["fault-asym-route", "fault-asym-route6"] {
        let d = format!("samples/{name}");
        let files: Vec<String> = ["veth-c1", "docker0", "eth0", "eth1"]
            .iter()
            .map(|p| format!("{d}/{p}.pcap"))
            .collect();
        let (_, base) = json(&args(&files));
        let want = essence(&base);
        assert!(
            want.iter().all(|f| f.contains("\"asymmetric-route\"")) && !want.is_empty(),
            "{name}: {want:?}"
        );
        let (_, multi) = json(&[format!("{d}/multi.pcapng").as_str()]);
        let (_, any) = json(&[
            format!("{d}/any.pcap").as_str(),
            "--links",
            &format!("{d}/links.txt"),
        ]);
        for (form, doc) in [("multi.pcapng", &multi), ("any.pcap", &any)] {
            if name.ends_with('6') {
                assert_eq!(codes(doc), codes(&base), "{name}: {form}");
                for (f, g) in doc["findings"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .zip(base["findings"].as_array().unwrap())
                {
                    assert_eq!(f["tuples"][0], g["tuples"][0], "{name}: {form}");
                    assert_eq!(f["tuples"][2], g["tuples"][2], "{name}: {form}");
                    assert_eq!(f["packets"], g["packets"], "{name}: {form}");
                }
            } else {
                assert_eq!(essence(doc), want, "{name}: {form}");
            }
        }
    }
}

/// With loose reverse-path filtering the replies that came back by the other uplink
/// (outbound), or left by it (inbound, DNAT), were delivered: each connection shows the
/// other uplink as a return hop, nothing is lost and nothing is reported.
#[test]
fn an_asymmetric_route_that_works_is_no_finding() {
    let d = "samples/asym-route-loose";
    let files: Vec<String> = ["veth-c1", "docker0", "eth0", "eth1"]
        .iter()
        .map(|p| format!("{d}/{p}.pcap"))
        .collect();
    let (code, doc) = json(&args(&files));
    assert_eq!(code, 0);
    assert!(
        doc["findings"].as_array().unwrap().is_empty(),
        "{}",
        doc["findings"]
    );
    let conns = doc["connections"].as_array().unwrap();
    assert_eq!(conns.len(), 2);
    for c in conns {
        let r = &c["returns"][0];
        assert_eq!((s(&r["point"]), s(&r["beside"])), ("eth1", "eth0"), "{c}");
        assert_eq!(r["joined_by"], "packets");
        // Outbound the replies reach the inside from eth1; inbound they reach eth1
        // from the inside.
        let (there, back) = if c["hops"][0]["point"] == "eth0" {
            (&r["from"], &r["toward"])
        } else {
            (&r["toward"], &r["from"])
        };
        assert_eq!(there["point"], "docker0", "{c}");
        assert_eq!(there["matched"], 5, "{c}");
        assert_eq!(there["unmatched"]["packets"], 0, "{c}");
        assert!(back.is_null(), "{c}");
        for t in c["translations"].as_array().unwrap() {
            assert_eq!(t["unmatched"]["lost_rev"]["packets"], 0, "{c}");
            assert_eq!(t["unmatched"]["appeared_rev"]["packets"], 0, "{c}");
        }
    }
    let (_, text) = correlate(&args(&files));
    assert_eq!(text.matches("(replies by eth1)").count(), 4, "{text}");
}

/// Every interface capture of a recording's host (not `any.pcap`, which holds them all).
fn every_capture(name: &str) -> Vec<String> {
    std::fs::read_dir(root().join("samples").join(name))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".pcap") && f != "any.pcap")
        .map(|f| format!("samples/{name}/{f}"))
        .collect()
}

/// No other recording has replies beside its path, from every capture it has.
#[test]
fn no_other_recording_has_an_asymmetric_route() {
    for &name in SCENARIOS.iter().chain(HAIRPIN_SCENARIOS) {
        if name.contains("asym-route") {
            continue;
        }
        let (_, doc) = json(&args(&every_capture(name)));
        for (_, code) in codes(&doc) {
            assert_ne!(code, "asymmetric-route", "{name}");
        }
        for c in doc["connections"].as_array().unwrap() {
            assert!(c["returns"].as_array().unwrap().is_empty(), "{name}: {c}");
        }
    }
}

/// A recording's three points (its new connections are lost on the container's veth,
/// where bridge netfilter runs conntrack), with what the kernel says of its table
/// among `witnesses`: `conntrack -S` readings, the sysctls, the snapshot.
fn three_points(name: &str, witnesses: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = ["veth-c1", "docker0", "eth0"]
        .iter()
        .map(|p| format!("samples/{name}/{p}.pcap"))
        .collect();
    for w in witnesses {
        a.extend(["--conntrack".to_string(), format!("samples/{name}/{w}")]);
    }
    a
}

const TABLE_WITNESSES: [&str; 4] = [
    "conntrack-stats-before.txt",
    "conntrack-stats.txt",
    "sysctl.txt",
    "conntrack.txt",
];

/// New connections to three destinations lost at the host while its conntrack table
/// was full (the limit lowered to the entries it held) and two held connections kept
/// exchanging: TCP and UDP from a container, and over IPv6 also TCP from outside to a
/// published port (lost on eth0). One error naming the span, the connections, the
/// destinations, the counters grown between the two readings and the count at the
/// limit; not `lost` as well. The captures alone show three `lost` connections.
#[test]
fn a_full_conntrack_table_loses_new_connections_to_every_destination() {
    for name in ["fault-ct-table-full", "fault-ct-table-full6"] {
        let a = three_points(name, &TABLE_WITNESSES);
        let (code, doc) = json(&args(&a));
        assert_eq!(code, 1, "{name}");
        assert_eq!(
            codes(&doc),
            [("error".into(), "conntrack-table-full".into())],
            "{name}"
        );
        let f = &doc["findings"][0];
        let d = &f["detail"];
        let len = |v: &Value| v.as_array().unwrap().len();
        assert_eq!(
            (len(&d["lost"]), len(&d["destinations"]), len(&d["flowing"])),
            (3, 3, 2),
            "{name}: {d}"
        );
        assert_eq!(len(&d["crossed"]), 0, "{name}");
        // One drop per lost packet, none a failed insert; the table at its limit.
        assert_eq!(d["drops"], f["packets"], "{name}");
        assert_eq!(d["early_drop"], 0, "{name}");
        assert!(s(&d["counted_since"]).ends_with("conntrack-stats-before.txt"));
        assert_eq!(d["entries"], d["max"], "{name}");
        assert_eq!(d["buckets"], 262144, "{name}");
        let protos: BTreeSet<&str> = d["destinations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| s(&x["proto"]))
            .collect();
        assert_eq!(protos, ["tcp", "udp"].into(), "{name}");
        let ev = f["evidence"].to_string();
        assert!(
            ev.contains("drop=9 insert_failed=0 early_drop=0 (grown since"),
            "{ev}"
        );
        assert!(
            ev.contains("meanwhile 2 connections opened before crossed"),
            "{ev}"
        );
        assert!(
            s(&f["message"])
                .starts_with("conntrack table full: 3 new connections to 3 destinations"),
            "{}",
            f["message"]
        );
        let only = |on: &str| json(&[&["--fail-on", on], &args(&a)[..]].concat()).0;
        assert_eq!(only("conntrack-table-full"), 1, "{name}");
        assert_eq!(only("lost,snat-port-exhaustion,insert-race"), 0, "{name}");
        let (_, text) = correlate(&args(&a));
        assert!(text.contains("[error] conntrack-table-full"), "{name}");
        let (_, md) = correlate(&[&["--format", "markdown"], &args(&a)[..]].concat());
        assert!(md.contains("`conntrack-table-full`"), "{name}");
        // The counters after alone count since boot: enough, as no new connection
        // crossed meanwhile.
        let after = three_points(name, &["conntrack-stats.txt"]);
        let (_, doc) = json(&args(&after));
        assert_eq!(
            codes(&doc),
            [("error".into(), "conntrack-table-full".into())],
            "{name}"
        );
        // Without the kernel's word, three blocked connections.
        let (_, plain) = json(&args(&three_points(name, &[])));
        assert_eq!(
            codes(&plain),
            vec![("error".into(), "lost".into()); 3],
            "{name}"
        );
        snapshot_findings(name, &doc_of(&a));
    }
    let a = three_points("fault-ct-table-full", &TABLE_WITNESSES);
    snapshot_markdown("fault-ct-table-full", &args(&a));
}

fn doc_of(a: &[String]) -> Value {
    json(&args(a)).1
}

/// No other recording says its table was full, with its own counters, sysctls and
/// snapshot: their drops, if any, are failed inserts.
#[test]
fn no_other_recording_had_a_full_table() {
    for &name in SCENARIOS.iter().chain(HAIRPIN_SCENARIOS) {
        if name.starts_with("fault-ct-table-full") {
            continue;
        }
        let a = three_points(name, &TABLE_WITNESSES[1..]);
        let (_, doc) = json(&args(&a));
        assert!(
            !codes(&doc).iter().any(|(_, c)| c == "conntrack-table-full"),
            "{name}"
        );
    }
}

/// Pod-to-pod traffic masqueraded into the overlay tunnel: flannel's rule over VXLAN
/// (TCP), Calico's natOutgoing over IP in IP (UDP, ICMP echo). One warning naming every
/// connection, the tunnel, the entry and the MASQUERADE rule; `--fail-on warning` or
/// the code fails the run. No other recording has it, from every capture it has: the
/// overlays' service traffic is DNATed first.
#[test]
fn overlay_masq_on_pod_traffic_into_the_tunnel_only() {
    for (name, tunnel, rules) in [
        ("fault-overlay-masq", "vxlan", &["iptables.txt"][..]),
        (
            "fault-overlay-masq-ipip",
            "ipip",
            &["iptables.txt", "ipsets.txt"][..],
        ),
    ] {
        let mut a = three_points(name, &["conntrack.txt"]);
        for r in rules {
            a.extend(["--rules".to_string(), format!("samples/{name}/{r}")]);
        }
        let (code, doc) = json(&args(&a));
        assert_eq!(code, 0, "{name}");
        let found: Vec<&Value> = doc["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["code"] == "overlay-masq")
            .collect();
        assert_eq!(found.len(), 1, "{name}");
        let f = found[0];
        assert_eq!(f["severity"], "warning");
        assert_eq!(f["connections"].as_array().unwrap().len(), 3, "{name}");
        let d = &f["detail"];
        assert_eq!(d["tunnel"]["kind"], tunnel, "{name}");
        assert_eq!(d["clients"], serde_json::json!([d["original"]["src"]]));
        assert_ne!(d["seen_as"], d["original"]["src"]);
        let ev = f["evidence"].to_string();
        assert!(
            ev.contains("conntrack.txt:") && ev.contains("-j MASQUERADE"),
            "{ev}"
        );
        for fail_on in ["warning", "overlay-masq"] {
            let run = [&["--fail-on", fail_on], &args(&a)[..]].concat();
            assert_eq!(json(&run).0, 1, "{name} --fail-on {fail_on}");
        }
    }
    for &name in SCENARIOS.iter().chain(HAIRPIN_SCENARIOS) {
        if name.starts_with("fault-overlay-masq") {
            continue;
        }
        let (_, doc) = json(&args(&every_capture(name)));
        assert!(
            !codes(&doc).iter().any(|(_, c)| c == "overlay-masq"),
            "{name}"
        );
    }
}

/// A master a NAT helper worked for: its id, the packets rewritten and the shift of
/// each direction, the connections it expected.
type Master<'a> = (&'a str, [u64; 2], [i64; 2], &'a [&'a str]);

/// The nat-helper findings of a run: (connections, detail) of each.
fn helpers_of(doc: &Value) -> Vec<(Value, Value)> {
    doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == "nat-helper")
        .map(|f| (f["connections"].clone(), f["detail"].clone()))
        .collect()
}

/// FTP through the kernel's FTP helper, over IPv4 (PORT and 227 rewritten, one byte
/// longer each) and IPv6 (EPRT rewritten, 25 bytes longer; the published EPSV
/// rewritten not at all), and TFTP through its helper (UDP, nothing rewritten). The rewritten control connections lose no packet, the data
/// connections the helper expected are not blamed on the rules, and each master is
/// an info `nat-helper` with what it rewrote and expected: from the wire alone where
/// the payload changed, and from conntrack's `helper=` or the rule that assigns the
/// helper for the master that changed nothing.
#[test]
fn an_ftp_helper_rewrites_and_expects_without_a_loss_or_a_contradiction() {
    let wire_only = |rewritten: &[Master]| -> Vec<(Value, Value)> {
        (rewritten.iter())
            .map(|&(m, r, s, e)| {
                let conns: Vec<&str> = std::iter::once(m).chain(e.iter().copied()).collect();
                (
                    serde_json::json!(conns),
                    serde_json::json!({"helper": null, "rewritten": r, "shift": s, "expected": e}),
                )
            })
            .collect()
    };
    let named = |v: &[(Value, Value)], helper: &str| -> Vec<(Value, Value)> {
        (v.iter().cloned())
            .map(|(c, mut d)| {
                d["helper"] = helper.into();
                (c, d)
            })
            .collect()
    };
    let passive = ("c4", [0, 0], [0, 0], &["c5", "c6"][..]);
    let none = [0, 0];
    let cases: [(&str, &str, Vec<_>, Vec<_>); 3] = [
        (
            "ftp-alg",
            "iptables.txt",
            vec![
                ("c1", [2, 0], [2, 0], &["c2", "c3"][..]),
                ("c7", [0, 2], [0, 2], &["c8", "c9"][..]),
            ],
            vec![
                ("c1", [2, 0], [2, 0], &["c2", "c3"][..]),
                passive,
                ("c7", [0, 2], [0, 2], &["c8", "c9"][..]),
            ],
        ),
        (
            "ftp-alg6",
            "ip6tables.txt",
            vec![("c1", [2, 0], [50, 0], &["c2", "c3"][..])],
            vec![
                ("c1", [2, 0], [50, 0], &["c2", "c3"][..]),
                passive,
                ("c7", [0, 0], [0, 0], &["c8", "c9"][..]),
            ],
        ),
        // TFTP over UDP rewrites nothing: a read request names a file. The server
        // answers from a port of its own, which the helper expected.
        (
            "tftp-alg",
            "iptables.txt",
            vec![],
            vec![
                ("c1", none, [0, 0], &["c2"][..]),
                ("c3", none, [0, 0], &["c4"][..]),
                ("c5", none, [0, 0], &["c6"][..]),
            ],
        ),
    ];
    for (name, rules, seen, known) in cases {
        let helper = name.split('-').next().unwrap();
        let caps = three_points(name, &[]);
        let ct = format!("samples/{name}/conntrack.txt");
        let rules = format!("samples/{name}/{rules}");
        let runs = [
            (vec![], wire_only(&seen)),
            (
                vec!["--conntrack", ct.as_str()],
                named(&wire_only(&known), helper),
            ),
            (
                vec!["--rules", rules.as_str()],
                named(&wire_only(&known), helper),
            ),
        ];
        for (with, want) in runs {
            let (code, doc) = json(&[&args(&caps)[..], &with[..]].concat());
            assert_eq!(code, 0, "{name} {with:?}: {:?}", codes(&doc));
            assert!(
                codes(&doc)
                    .iter()
                    .all(|(s, c)| s == "info" && c == "nat-helper"),
                "{name} {with:?}: {:?}",
                codes(&doc)
            );
            assert_eq!(helpers_of(&doc), want, "{name} {with:?}");
            // Every packet of every link crossed, the rewritten ones by their shifted
            // numbers.
            for c in doc["connections"].as_array().unwrap() {
                for l in c["translations"].as_array().unwrap() {
                    for gap in ["lost_fwd", "lost_rev", "appeared_fwd", "appeared_rev"] {
                        assert_eq!(l["unmatched"][gap]["packets"], 0, "{name}: {c}");
                    }
                }
            }
            for r in doc
                .get("rules")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                assert_eq!(r["on_wire"], r["agree"], "{name}: {r}");
            }
        }
    }
    let (_, doc) = json(&args(&three_points("ftp-alg", &["conntrack.txt"])));
    snapshot_findings("ftp-alg", &doc);
}

/// A connection every capture shows already translated is named from its entry
/// (`nat-before-capture`, info), in every shape: the host's own connections to its
/// published port, DNATed in nat OUTPUT with every interface captured
/// (`local-published`, over IPv4 and IPv6), and its connections out SNATed to an egress
/// address in POSTROUTING (`egress-snat`: told the host's by the TTL they left with,
/// its containers' by theirs); a node's own connection to its NodePort, DNATed and SNATed
/// before any interface (`kube-rules`, `kube-nft`); connections in from outside with
/// only the bridge captured (`published-port`: TCP and UDP; `nodeport`: DNAT and
/// SNAT; both over IPv6 too); masqueraded ones out with only the uplink captured
/// (`masquerade`, `masquerade6`: TCP, UDP, ICMP; `snat-pool6`: SNAT to a range). Without the entries nothing is said, and with them
/// every entry is on the wire and agrees with it.
#[test]
fn connections_translated_before_any_capture_are_named_from_their_entries() {
    let all: &[&str] = &["veth-c1", "docker0", "eth0"];
    // (recording, points given, connections named, of which the host opened)
    let cases: [(&str, &[&str], usize, usize); 13] = [
        ("local-published", all, 2, 2),
        ("egress-snat", all, 3, 3),
        ("egress-snat", &["eth0"], 5, 3),
        ("local-published6", all, 2, 2),
        ("kube-rules", all, 1, 1),
        ("kube-nft", all, 1, 1),
        ("published-port", &["docker0"], 4, 0),
        ("published-port6", &["docker0"], 4, 0),
        ("nodeport", &["docker0"], 3, 0),
        ("nodeport6", &["docker0"], 4, 0),
        ("masquerade", &["eth0"], 10, 0),
        ("masquerade6", &["eth0"], 6, 0),
        ("snat-pool6", &["eth0"], 7, 0),
    ];
    for (s, points, named, local) in cases {
        let mut a: Vec<String> = (points.iter())
            .map(|p| format!("samples/{s}/{p}.pcap"))
            .collect();
        let (_, plain) = json(&args(&a));
        let before = |doc: &Value| -> Vec<Value> {
            (doc["findings"].as_array().unwrap().iter())
                .filter(|f| f["code"] == "nat-before-capture")
                .cloned()
                .collect()
        };
        assert!(before(&plain).is_empty(), "{s}: only from entries");
        a.extend([
            "--conntrack".to_string(),
            format!("samples/{s}/conntrack.txt"),
        ]);
        let (_, doc) = json(&args(&a));
        let found = before(&doc);
        assert_eq!(found.len(), named, "{s}: {found:#?}");
        let opened = (found.iter())
            .filter(|f| {
                f["message"]
                    .as_str()
                    .unwrap()
                    .contains("the host opened it")
            })
            .count();
        assert_eq!(opened, local, "{s}");
        let conns: Vec<&Value> = doc["connections"].as_array().unwrap().iter().collect();
        for f in &found {
            assert_eq!(f["severity"], "info", "{s}");
            // The first hop carries the entry's tuple after NAT, and no hop its ORIGINAL.
            let id = &f["connections"][0];
            let c = conns
                .iter()
                .find(|c| &c["id"] == id)
                .expect("its connection");
            let first = &c["hops"][0];
            let wire = &f["detail"]["wire"];
            assert_eq!(wire, &f["detail"]["conntrack"], "{s}: {f}");
            for k in ["proto", "src", "dst"] {
                assert_eq!(first[k], wire[k], "{s}: {id} {k}");
            }
            assert_eq!(f["points"][0], first["point"], "{s}");
            let evidence = f["evidence"][0].as_str().unwrap();
            assert!(evidence.contains("conntrack.txt:"), "{s}: {evidence}");
        }
        for w in doc["conntrack"].as_array().unwrap() {
            assert_eq!(w["on_wire"], w["agree"], "{s}: {w}");
            assert!(w["on_wire"].as_u64().unwrap() >= named as u64, "{s}: {w}");
        }
    }
}

/// Packets from outside addressed straight to a container's address (routed to the
/// bridge's network, not through a published port; Docker's nftables backend drops
/// them in raw PREROUTING, `docker-nft`) did not escape NAT: nothing left from the
/// inside address, so no `leak`. Containers whose traffic left untranslated
/// (`fault-masq-miss`) still are one, counted by the packets they sent.
#[test]
fn traffic_to_an_inside_address_from_outside_is_not_a_leak() {
    let (_, doc) = json(&args(&three_points("docker-nft", &[])));
    let direct: Vec<&Value> = (doc["connections"].as_array().unwrap().iter())
        .filter(|c| c["hops"][0]["point"] == "eth0" && c["hops"][0]["dst"] == "172.17.0.2")
        .collect();
    assert_eq!(direct.len(), 1, "{doc}");
    assert_eq!(direct[0]["hops"][0]["packets_rev"], 0, "{doc}");
    assert!(
        !codes(&doc).iter().any(|(_, c)| c == "leak"),
        "{:?}",
        codes(&doc)
    );
    let (_, doc) = json(&args(&three_points("fault-masq-miss", &[])));
    let leaks: Vec<&Value> = (doc["findings"].as_array().unwrap().iter())
        .filter(|f| f["code"] == "leak")
        .collect();
    assert!(!leaks.is_empty(), "{doc}");
    for f in leaks {
        assert_eq!(f["detail"]["inside_address"], "172.17.0.3", "{f}");
        assert!(f["packets"].as_u64().unwrap() > 0, "{f}");
    }
}

/// A loopback destination reached from the network: Docker's DNAT for
/// `-p 127.0.0.1:8080:80` takes a neighbour's SYNs for 127.0.0.1:8080 to the container,
/// which answers (TCP, two points past eth0); route_localnet lets the host's own UDP and
/// TCP services on 127.0.0.1 answer a neighbour (no NAT, one point). One error per
/// port reached, from the separate captures, `-i any` and pcapng alike, with the entry
/// and, with the rules, the DNAT rule; the run fails. No other recording has it: the
/// host's own loopback traffic (`userland-proxy`'s `lo`) comes from a loopback address.
#[test]
fn loopback_exposed_for_loopback_destinations_from_the_network_only() {
    for (name, expect) in [
        (
            "fault-loopback-published",
            &[("tcp", 8080, Some("172.17.0.2"))][..],
        ),
        (
            "fault-localnet-service",
            &[("udp", 53, None), ("tcp", 8000, None)][..],
        ),
    ] {
        let mut a = three_points(name, &["conntrack.txt"]);
        a.extend([
            "--rules".to_string(),
            format!("samples/{name}/iptables.txt"),
        ]);
        let forms = [
            a.clone(),
            vec![format!("samples/{name}/any.pcap")],
            vec![format!("samples/{name}/multi.pcapng")],
        ];
        for (i, form) in forms.iter().enumerate() {
            let (code, doc) = json(&args(form));
            assert_eq!(code, 1, "{name} {form:?}");
            let found: Vec<&Value> = (doc["findings"].as_array().unwrap().iter())
                .filter(|f| f["code"] == "loopback-exposed")
                .collect();
            assert_eq!(found.len(), expect.len(), "{name} {form:?}: {found:?}");
            for &(proto, port, backend) in expect {
                let f = (found.iter())
                    .find(|f| {
                        f["detail"]["arrived"]["proto"] == proto
                            && f["detail"]["arrived"]["dport"] == port
                    })
                    .unwrap_or_else(|| panic!("{name}: {proto} {port}: {found:?}"));
                assert_eq!(f["severity"], "error", "{f}");
                let d = &f["detail"];
                assert_eq!(d["arrived"]["dst"], "127.0.0.1", "{f}");
                assert_eq!(d["answered"], true, "{f}");
                assert!(d["answers"].as_u64().unwrap() > 0, "{f}");
                assert_eq!(d["clients"], serde_json::json!([d["arrived"]["src"]]));
                assert_eq!(
                    d["backend"]["dst"].as_str(),
                    backend,
                    "{name}: {}",
                    d["backend"]
                );
                if i == 0 {
                    let ev = f["evidence"].to_string();
                    assert!(ev.contains("conntrack.txt:"), "{ev}");
                    assert_eq!(backend.is_some(), ev.contains("-j DNAT"), "{ev}");
                }
                // No backend on the wire: the entry that kept the destination says the
                // host answered itself; without the entry both causes stay open.
                if backend.is_none() {
                    let m = f["message"].as_str().unwrap();
                    let own = m.contains("the host answered it itself");
                    assert_eq!(own, i == 0, "{name} {form:?}: {m}");
                }
            }
        }
    }
    for &name in SCENARIOS.iter().chain(HAIRPIN_SCENARIOS) {
        if name.starts_with("fault-loopback") || name.starts_with("fault-localnet") {
            continue;
        }
        let (_, doc) = json(&args(&every_capture(name)));
        assert!(
            !codes(&doc).iter().any(|(_, c)| c == "loopback-exposed"),
            "{name}"
        );
    }
}

/// A UDP or ICMP tuple used again past its conntrack timeout and mapped otherwise is
/// one info finding per new life (outbound: the port and identifier moved; inbound:
/// another backend), from separate captures, `-i any` and pcapng alike, with the
/// timeout the recording's own settings give; no other recording has one.
#[test]
fn remapped_after_idle_for_each_life_mapped_otherwise() {
    for (name, lives) in [("reuse-after-expiry", 2), ("reuse-after-expiry-dnat", 1)] {
        let mut a = three_points(name, &["events.txt", "sysctl.txt"]);
        a.extend([
            "--rules".to_string(),
            format!("samples/{name}/iptables.txt"),
        ]);
        let forms = [
            a,
            vec![format!("samples/{name}/any.pcap")],
            vec![format!("samples/{name}/multi.pcapng")],
        ];
        for (i, form) in forms.iter().enumerate() {
            let (code, doc) = json(&args(form));
            assert_eq!(code, 0, "{name} {form:?}");
            let found: Vec<&Value> = (doc["findings"].as_array().unwrap().iter())
                .filter(|f| f["code"] == "remapped-after-idle")
                .collect();
            assert_eq!(found.len(), lives, "{name} {form:?}");
            for f in found {
                assert_eq!(f["severity"], "info");
                let d = &f["detail"];
                assert_ne!(d["before"], d["after"], "{name}");
                assert_eq!(d["timeout_ns"], 30_000_000_000u64, "{name}");
                let idle = d["idle_ns"].as_i64().unwrap();
                assert!(idle > 30_000_000_000, "{name}: {idle}");
                // With the settings given, the words cite where the timeout was read.
                assert_eq!(d["given_at"].is_string(), i == 0, "{name} {form:?}");
                assert_eq!(f["connections"].as_array().unwrap().len(), 2);
            }
        }
    }
    for &name in SCENARIOS.iter().chain(HAIRPIN_SCENARIOS) {
        if name.starts_with("reuse-after-expiry") {
            continue;
        }
        let (_, doc) = json(&args(&every_capture(name)));
        assert!(
            !codes(&doc).iter().any(|(_, c)| c == "remapped-after-idle"),
            "{name}"
        );
    }
}

/// A connection whose entry went while it went on and whose next packet NAT sent on
/// under another tuple is one finding naming both connections: outbound TCP, the entry
/// expired past the recording's 5 s established timeout, another source port (over
/// IPv4 and IPv6); inbound TCP and UDP, the entry deleted, another backend; outbound
/// ICMP echo, the entry deleted, another identifier. An error for TCP (the peer reset
/// it), info for the UDP queries and pings answered.
/// From separate captures, `-i any` and pcapng alike; the settings say whether it
/// expired, the event log who removed it. No other recording has one.
#[test]
fn state_lost_when_a_connection_is_sent_on_under_another_tuple() {
    const DAYS_5: i64 = 432_000_000_000_000;
    let tcp = (1, "error", true, DAYS_5);
    for (name, moved_src, expired, (exit, severity, reset, default_ns)) in [
        ("fault-idle-expiry-remap", true, true, tcp),
        ("fault-idle-expiry-remap6", true, true, tcp),
        ("fault-state-loss-dnat", false, false, tcp),
        (
            "fault-state-loss-udp",
            false,
            false,
            (0, "info", false, 30_000_000_000),
        ),
        (
            "fault-state-loss-icmp",
            true,
            false,
            (0, "info", false, 30_000_000_000),
        ),
    ] {
        let forms = [
            three_points(name, &["events.txt", "sysctl.txt"]),
            vec![format!("samples/{name}/any.pcap")],
            vec![format!("samples/{name}/multi.pcapng")],
        ];
        for (i, form) in forms.iter().enumerate() {
            let (code, doc) = json(&args(form));
            assert_eq!(code, exit, "{name} {form:?}");
            let found: Vec<&Value> = (doc["findings"].as_array().unwrap().iter())
                .filter(|f| f["code"] == "state-lost")
                .collect();
            assert_eq!(found.len(), 1, "{name} {form:?}");
            let f = found[0];
            assert_eq!(f["severity"], severity, "{name}");
            let d = &f["detail"];
            let (before, after) = (&d["before"], &d["after"]);
            assert_ne!(before, after, "{name}");
            let src_moved = before["src"] != after["src"] || before["sport"] != after["sport"];
            assert_eq!(src_moved, moved_src, "{name}");
            assert_eq!(d["reset"], reset, "{name}");
            let idle = d["idle_ns"].as_i64().unwrap();
            // The recording's own setting, when given, decides whether it expired.
            let timeout = d["timeout_ns"].as_i64().unwrap();
            if i == 0 {
                assert!(d["given_at"].is_string(), "{name}");
                assert_eq!(idle > timeout, expired, "{name}: {idle} {timeout}");
            } else {
                assert_eq!(timeout, default_ns, "{name}");
            }
            assert_eq!(f["connections"].as_array().unwrap().len(), 2);
            // Both entries of the event log are on the wire: the old one on the
            // connection, the new one on the flow that carried it on.
            for w in doc["conntrack"].as_array().into_iter().flatten() {
                assert_eq!(w["entries"], 2, "{name}: {w}");
                assert_eq!((&w["on_wire"], &w["agree"]), (&w["entries"], &w["entries"]));
            }
            // The settings say whether it expired; the event log who removed it.
            let (message, check) = (f["message"].as_str().unwrap(), f["check"].as_str().unwrap());
            assert_eq!(message.contains("expired"), i == 0 && expired, "{message}");
            assert_eq!(
                check.contains("by a program"),
                i == 0 && !expired,
                "{check}"
            );
        }
    }
    for &name in SCENARIOS.iter().chain(HAIRPIN_SCENARIOS) {
        if name.starts_with("fault-idle-expiry-remap") || name.starts_with("fault-state-loss") {
            continue;
        }
        let (_, doc) = json(&args(&every_capture(name)));
        assert!(
            !codes(&doc).iter().any(|(_, c)| c == "state-lost"),
            "{name}"
        );
    }
}
