//! The host's rules as a witness, on the lab recordings: `correlate --rules` names the
//! rule behind every translation and drop the kernel made, `input-bypassed` and
//! `rule-contradiction` fire from their mechanism on recordings of different shape,
//! and `natcheck explain` walks one packet.

use std::path::PathBuf;

use serde_json::Value;

use crate::util::*;

fn pair(s: &str) -> [String; 2] {
    [
        format!("samples/{s}/docker0.pcap"),
        format!("samples/{s}/eth0.pcap"),
    ]
}

/// `correlate --format json` on a scenario's pair (and second uplink) with `--rules`
/// files.
fn report(s: &str, rules: &[&str]) -> (i32, Value) {
    let p = pair(s);
    let second = second_uplink(s);
    let mut inputs = vec![p[0].as_str(), p[1].as_str()];
    inputs.extend(second.as_deref());
    report_of(&inputs, rules)
}

/// `correlate --format json` on captures and other arguments with `--rules` files.
fn report_of(inputs: &[&str], rules: &[&str]) -> (i32, Value) {
    let mut args = vec!["correlate", "--format", "json"];
    args.extend_from_slice(inputs);
    for r in rules {
        args.extend(["--rules", r]);
    }
    let out = natcheck(&args);
    let doc = serde_json::from_str(&stdout(&out)).expect("valid JSON");
    (out.status.code().expect("exit code"), doc)
}

fn codes(doc: &Value) -> Vec<String> {
    doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap().to_string())
        .collect()
}

/// A rules file written for one test, removed when dropped.
struct TempRules(PathBuf);

impl TempRules {
    fn new(name: &str, text: &str) -> TempRules {
        let p = std::env::temp_dir().join(format!("natcheck-{}-{name}", std::process::id()));
        std::fs::write(&p, text).expect("write rules");
        TempRules(p)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }
}

impl Drop for TempRules {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The host's rules as recorded: iptables-save and ip6tables-save, or native nft where
/// no iptables rule exists (on an iptables-nft host nft.json is the same rules again,
/// seen through nft).
fn recorded_rules(s: &str) -> Vec<String> {
    let mut rules: Vec<String> = ["iptables.txt", "ip6tables.txt"]
        .iter()
        .map(|f| format!("samples/{s}/{f}"))
        .filter(|p| root().join(p).is_file())
        .collect();
    if rules.is_empty() {
        rules.push(format!("samples/{s}/nft.json"));
    }
    rules
}

#[test]
fn every_translation_of_every_sample_is_attributed_to_its_rule() {
    for s in SCENARIOS {
        let rules = recorded_rules(s);
        let rules: Vec<&str> = rules.iter().map(String::as_str).collect();
        // Every point, and the kernel's counters: what conntrack dropped (a full table)
        // is then known as such.
        let inputs: Vec<String> = ["veth-c1.pcap", "docker0.pcap", "eth0.pcap"]
            .iter()
            .map(|f| format!("samples/{s}/{f}"))
            .chain(second_uplink(s))
            .chain([
                "--conntrack".into(),
                format!("samples/{s}/conntrack-stats.txt"),
            ])
            .collect();
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let (_, doc) = report_of(&inputs, &rules);
        let (_, plain) = report_of(&inputs, &[]);
        // With the rule's port range a blocked connection can be one that found every
        // NAT port to its destination held: `snat-port-exhaustion` then replaces the
        // `lost` of that connection, and the rules, which forward it, do not agree with
        // the wire that stopped it.
        let lost_to = |code: &str| -> Vec<&str> {
            doc["findings"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|f| f["code"] == code)
                .flat_map(|f| f["detail"]["lost"].as_array().unwrap())
                .map(|id| id.as_str().unwrap())
                .collect()
        };
        let exhausted = lost_to("snat-port-exhaustion");
        let mut was = codes(&plain);
        for id in &exhausted {
            let blocked = plain["findings"]
                .as_array()
                .unwrap()
                .iter()
                .position(|f| f["code"] == "lost" && f["connections"][0] == *id)
                .unwrap_or_else(|| panic!("{s}: {id} was not lost without the rules"));
            assert_eq!(was.remove(blocked), "lost");
        }
        was.retain(|c| c != "nat-helper");
        // The rule that assigns a NAT helper makes its master known (ftp-alg's passive
        // session, whose payload nothing rewrote): `nat-helper` has its own test.
        let mut added: Vec<String> = codes(&doc)
            .into_iter()
            .filter(|c| c != "snat-port-exhaustion" && c != "nat-helper")
            .collect();
        // The rules add no finding to a recording the kernel made with them, but for
        // an INPUT rule that DNAT'ed traffic never met, and the drop of unanswered
        // traffic the host's rules stopped where it arrived (kube-rules has both).
        for c in was {
            let i = added
                .iter()
                .position(|x| *x == c)
                .expect("a finding went away");
            added.remove(i);
        }
        let input_drop = rules.iter().any(|r| {
            std::fs::read_to_string(root().join(r))
                .unwrap()
                .lines()
                .any(|l| l.starts_with("-A INPUT") && l.ends_with("-j DROP"))
        });
        let want: Vec<&str> = if input_drop {
            vec!["input-bypassed"]
        } else {
            vec![]
        };
        assert_eq!(added, want, "{s}");
        // An unanswered connection the rules drop where it arrived: the rule is named
        // and the finding is an error (without the rules, a warning).
        for (with, without) in doc["findings"]
            .as_array()
            .unwrap()
            .iter()
            .zip(plain["findings"].as_array().unwrap())
        {
            if with["code"] == "lost" && without["severity"] == "warning" {
                assert_eq!(with["severity"], "error", "{s}");
                let ev = with["evidence"].to_string();
                assert!(ev.contains("dropped by "), "{s}: {ev}");
            }
        }
        // A flow whose entry predates the rules dumped (a stale entry) is the one
        // walk the wire may contradict.
        let stale: Vec<&Value> = doc["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["code"] == "stale-entry")
            .map(|f| &f["connections"][0])
            .collect();
        // The connections a full table dropped: the rules forward them too.
        let mut dropped = exhausted.clone();
        dropped.extend(lost_to("conntrack-table-full"));
        let w = &doc["rules"][0];
        assert!(w["on_wire"].as_u64().unwrap() > 0, "{s}: {w}");
        assert_eq!(
            w["on_wire"].as_u64().unwrap(),
            w["agree"].as_u64().unwrap() + stale.len() as u64 + dropped.len() as u64,
            "{s}: {w}"
        );
        for c in doc["connections"].as_array().unwrap() {
            let Some(r) = c.get("rules") else { continue };
            if stale.contains(&&c["id"]) {
                continue;
            }
            if dropped.contains(&c["id"].as_str().unwrap()) {
                assert_eq!(r["agrees"], false, "{s}");
                continue;
            }
            assert_eq!(r["agrees"], true, "{s} {}: {r}", c["id"]);
            // Each translation on the wire has its rule, with its line in the file.
            for t in c["translations"].as_array().unwrap() {
                let kind = t["kind"].as_str().unwrap();
                for (nat, has) in [
                    ("dnat", kind.contains("dnat")),
                    ("snat", kind.contains("snat")),
                ] {
                    if has {
                        // Its place: a line of iptables-save, a handle of nft.
                        let rule = &r[nat];
                        assert!(
                            rule["line"].as_u64().unwrap() > 0 || rule["handle"].is_u64(),
                            "{s}: {r}"
                        );
                        let text = rule["text"].as_str().unwrap().to_lowercase();
                        let want: &[&str] = if nat == "dnat" {
                            &["dnat", "redirect", "netmap"]
                        } else {
                            &["masquerade", "snat", "netmap"]
                        };
                        assert!(want.iter().any(|w| text.contains(w)), "{s}: {text}");
                    }
                }
            }
        }
    }
}

#[test]
fn the_forward_drop_is_named_as_the_rule_that_blocked_the_connection() {
    let (code, doc) = report(
        "fault-forward-drop",
        &["samples/fault-forward-drop/iptables.txt"],
    );
    assert_eq!(code, 1);
    let lost = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == "lost")
        .expect("the blocked connection");
    let text =
        std::fs::read_to_string(root().join("samples/fault-forward-drop/iptables.txt")).unwrap();
    let line = text
        .lines()
        .position(|l| l.contains("--dport 9090 -j DROP"))
        .unwrap()
        + 1;
    let evidence: Vec<&str> = lost["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(
        evidence
            .iter()
            .any(|e| e.starts_with("dropped by filter FORWARD")
                && e.contains(&format!("iptables.txt:{line}"))),
        "{evidence:?}"
    );
    assert!(lost["check"]
        .as_str()
        .unwrap()
        .contains("--dport 9090 -j DROP"));
    let blocked = doc["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == lost["connections"][0])
        .unwrap();
    assert_eq!(blocked["rules"]["fate"], "dropped");
    assert_eq!(blocked["rules"]["decided_by"]["line"], line as u64);
}

/// The scenario's rules with one more rule appended to filter INPUT.
fn with_input_drop(s: &str, port: u16) -> TempRules {
    let text = std::fs::read_to_string(root().join(format!("samples/{s}/iptables.txt"))).unwrap();
    let text = text.replacen(
        ":INPUT ACCEPT [0:0]\n",
        &format!(":INPUT ACCEPT [0:0]\n-A INPUT -p tcp -m tcp --dport {port} -j DROP\n"),
        1,
    );
    TempRules::new(&format!("{s}-input-drop"), &text)
}

#[test]
fn an_input_drop_never_sees_dnat_traffic_nodeport_and_published_port() {
    for (s, port) in [("nodeport", 30080), ("published-port", 8080)] {
        let rules = with_input_drop(s, port);
        let (code, doc) = report(s, &[rules.path()]);
        let f: Vec<&Value> = doc["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["code"] == "input-bypassed")
            .collect();
        assert_eq!(f.len(), 1, "{s}: {}", doc["findings"]);
        assert_eq!(f[0]["severity"], "warning");
        // Every connection to the port that was DNATed is named.
        let dnat: Vec<&Value> = doc["connections"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["rules"]["dnat"].is_object() && c["rules"]["walked"]["dport"] == port)
            .map(|c| &c["id"])
            .collect();
        assert!(!dnat.is_empty(), "{s}");
        let named: Vec<&Value> = f[0]["connections"].as_array().unwrap().iter().collect();
        assert_eq!(named, dnat, "{s}");
        let msg = f[0]["message"].as_str().unwrap();
        assert!(msg.contains("FORWARD, not INPUT"), "{msg}");
        assert!(
            f[0]["check"]
                .as_str()
                .unwrap()
                .contains(&format!("--ctorigdstport {port}")),
            "{s}"
        );
        // A warning: the default --fail-on error is not tripped by it alone.
        assert_eq!(code, 0, "{s}");
    }
}

/// A DNAT rule whose target the wire contradicts: the rule edited (kube-proxy's
/// NodePort, Docker's published port), or an earlier rule for the same port that
/// shadows the one the kernel used (ip6tables, a router's port forward).
#[test]
fn a_dnat_target_the_wire_contradicts_is_a_finding() {
    const FWD6: &str =
        "-A PREROUTING -d 2001:db8:113::1/128 -p tcp -m tcp --dport 9000 -j DNAT --to-destination ";
    let shadowed = format!("{FWD6}[2001:db8:9::2]:8080\n{FWD6}[2001:db8:9::3]:7000");
    for (s, file, from, to, said) in [
        (
            "nodeport",
            "iptables.txt",
            "--to-destination 172.17.0.2:80".to_string(),
            "--to-destination 172.17.0.2:8081".to_string(),
            "172.17.0.2:8081",
        ),
        (
            "published-port",
            "iptables.txt",
            "--to-destination 172.17.0.2:80".to_string(),
            "--to-destination 172.17.0.3:80".to_string(),
            "172.17.0.3:80",
        ),
        (
            "fault-hairpin-routed-no-masq6",
            "ip6tables.txt",
            format!("{FWD6}[2001:db8:9::3]:7000"),
            shadowed,
            "[2001:db8:9::2]:8080",
        ),
    ] {
        let text = std::fs::read_to_string(root().join(format!("samples/{s}/{file}"))).unwrap();
        assert!(text.contains(&from), "{s}");
        let rules = TempRules::new(&format!("{s}-edited"), &text.replacen(&from, &to, 1));
        let (code, doc) = report(s, &[rules.path()]);
        let f: Vec<&Value> = doc["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["code"] == "rule-contradiction")
            .collect();
        assert!(!f.is_empty(), "{s}: {}", doc["findings"]);
        for x in &f {
            assert_eq!(x["severity"], "error");
            let msg = x["message"].as_str().unwrap();
            assert!(msg.contains(said), "{msg}");
        }
        assert_eq!(code, 1, "{s}");
    }
}

#[test]
fn a_target_natcheck_cannot_follow_contradicts_nothing() {
    // The translating rule replaced by one whose effect natcheck does not model: the
    // walk stops there, and what the wire shows may be that target's doing.
    for (s, from) in [
        ("nodeport", "-j DNAT --to-destination 172.17.0.2:80"),
        ("masquerade", "-j MASQUERADE"),
    ] {
        let text =
            std::fs::read_to_string(root().join(format!("samples/{s}/iptables.txt"))).unwrap();
        assert!(text.contains(from), "{s}");
        let edited = text.replace(from, "-j TPROXY --on-port 9 --on-ip 127.0.0.1");
        let rules = TempRules::new(&format!("{s}-tproxy"), &edited);
        let (code, doc) = report(s, &[rules.path()]);
        let codes: Vec<&str> = doc["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["code"].as_str().unwrap())
            .collect();
        assert!(!codes.contains(&"rule-contradiction"), "{s}: {codes:?}");
        assert_eq!(code, 0, "{s}: {codes:?}");
    }
}

#[test]
fn a_capture_on_any_interface_meets_the_rules_by_the_names_links_gives() {
    // `tcpdump -i any` records interface indexes; with `--links` they are names, and the
    // rules' `-i docker0`, `-o eth0` match them: the same walks agree as with one file
    // per interface, and the same warnings and errors follow.
    let summary = |doc: &Value| {
        let mut bad: Vec<String> = doc["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["severity"] != "info")
            .map(|f| format!("{} {}", f["severity"], f["code"]))
            .collect();
        bad.sort();
        (bad, doc["rules"][0]["agree"].clone())
    };
    // Each connection's points in order (those of `only`), by its first tuple there.
    let paths = |doc: &Value, only: &[String]| -> Vec<String> {
        let mut p: Vec<String> = doc["connections"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| {
                let hops: Vec<&Value> = c["hops"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|h| only.iter().any(|n| h["point"] == n.as_str()))
                    .collect();
                let names: Vec<&str> = hops.iter().map(|h| h["point"].as_str().unwrap()).collect();
                let first = hops.first()?;
                Some(format!(
                    "{}:{} {}",
                    first["src"],
                    first["sport"],
                    names.join(">")
                ))
            })
            .collect();
        p.sort();
        p
    };
    let mut compared = 0;
    for s in SCENARIOS {
        let rules = recorded_rules(s);
        let rules: Vec<&str> = rules.iter().map(String::as_str).collect();
        let d = format!("samples/{s}");
        let separate: Vec<String> = ["veth-c1", "docker0", "eth0"]
            .iter()
            .map(|p| format!("{d}/{p}.pcap"))
            .chain(second_uplink(s))
            .collect();
        let separate: Vec<&str> = separate.iter().map(String::as_str).collect();
        let (any, links) = (format!("{d}/any.pcap"), format!("{d}/links.txt"));
        let (_, want) = report_of(&separate, &rules);
        let (_, got) = report_of(&[&any, "--links", &links], &rules);
        // A connection's hops come in the same order in both forms, though the one
        // capture stamps the copies of a packet at a bridge port and at its bridge
        // alike (its frames' order tells them apart). The any capture also holds
        // interfaces no file of its own was written for (a second container's veth):
        // where connections join through one that are apart in the other form, the
        // forms are not compared.
        let names = |doc: &Value| -> Vec<String> {
            (doc["points"].as_array().unwrap().iter())
                .map(|p| p["name"].as_str().unwrap().to_string())
                .collect()
        };
        let (mine, all) = (names(&want), names(&got));
        let (got_paths, want_paths) = (paths(&got, &mine), paths(&want, &mine));
        if all.iter().all(|n| mine.contains(n)) || got_paths == want_paths {
            assert_eq!(got_paths, want_paths, "{s}");
            assert_eq!(summary(&got), summary(&want), "{s}");
            compared += 1;
        } else {
            eprintln!("{s}: connections join through points of the any capture's own");
        }
        let points = got["points"].as_array().unwrap();
        assert!(
            points
                .iter()
                .all(|p| !p["interface"].as_str().unwrap().starts_with("ifindex")),
            "{s}: {points:?}"
        );
    }
    assert!(
        compared * 10 >= SCENARIOS.len() * 9,
        "{compared} of {}",
        SCENARIOS.len()
    );
}

/// `natcheck explain` with the kube-rules host's rules, ipsets and addresses.
fn explain(packet: &str, format: &str) -> std::process::Output {
    let d = "samples/kube-rules";
    let (r, i, a) = (
        format!("{d}/iptables.txt"),
        format!("{d}/ipsets.txt"),
        format!("{d}/addrs.txt"),
    );
    natcheck(&[
        "explain", "--format", format, "--rules", &r, "--rules", &i, "--rules", &a, "--packet",
        packet,
    ])
}

#[test]
fn explain_lists_every_endpoint_branch_and_the_verdict() {
    let nodeport = "tcp 198.51.100.20:40000 > 203.0.113.1:30080 in eth0 out docker0";
    let out = explain(nodeport, "table");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    insta::assert_snapshot!("explain-kube-nodeport", stdout(&out));
    let doc: Value = serde_json::from_str(&stdout(&explain(nodeport, "json"))).unwrap();
    assert_eq!(doc["schema"], "natcheck.explain/1");
    let ways = doc["ways"].as_array().unwrap();
    assert_eq!(ways.len(), 3);
    let mut endpoints: Vec<&str> = Vec::new();
    for w in ways {
        assert!(
            (w["probability"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-6,
            "{w}"
        );
        assert_eq!(w["fate"], "forwarded");
        assert_eq!(w["filter_hook"], "FORWARD");
        assert!(w["snat"]["text"].as_str().unwrap().contains("MASQUERADE"));
        endpoints.push(w["dnat"]["chain"].as_str().unwrap());
    }
    endpoints.sort();
    assert_eq!(
        endpoints,
        ["KUBE-SEP-WEB1", "KUBE-SEP-WEB2", "KUBE-SEP-WEB3"]
    );
    // A published port that DOCKER-USER blocks: that rule is the verdict.
    let out = explain(
        "tcp 198.51.100.20:40000 > 203.0.113.1:9090 in eth0 out docker0",
        "json",
    );
    let doc: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let ways = doc["ways"].as_array().unwrap();
    assert_eq!(ways.len(), 1);
    assert_eq!(ways[0]["fate"], "dropped");
    assert_eq!(ways[0]["decided_by"]["chain"], "DOCKER-USER");
    assert!(ways[0]["decided_by"]["text"]
        .as_str()
        .unwrap()
        .contains("--ctorigdstport 9090 -j DROP"));
}

#[test]
fn explain_follows_undecided_matches_and_refuses_bad_packets() {
    // Without host addresses the routing after DNAT and `addrtype` cannot be decided:
    // every way is followed and said to rest on an assumption.
    let out = natcheck(&[
        "explain",
        "--format",
        "json",
        "--rules",
        "samples/fault-forward-drop/iptables.txt",
        "--packet",
        "tcp 172.17.0.2:40000 > 203.0.113.2:9090 in docker0 out eth0",
    ]);
    let doc: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let ways = doc["ways"].as_array().unwrap();
    assert!(ways.len() > 1);
    assert!(ways.iter().all(|w| w["assumed"] == true));
    let dropped: Vec<&Value> = ways.iter().filter(|w| w["fate"] == "dropped").collect();
    assert!(!dropped.is_empty());
    for w in dropped {
        assert!(w["decided_by"]["text"]
            .as_str()
            .unwrap()
            .contains("--dport 9090 -j DROP"));
    }
    for bad in ["tcp 1.2.3.4 5.6.7.8", "tcp 1.2.3.4:1 > 5.6.7.8:2"] {
        let out = natcheck(&[
            "explain",
            "--rules",
            "samples/nodeport/iptables.txt",
            "--packet",
            bad,
        ]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(stderr(&out).contains("--packet"), "{}", stderr(&out));
    }
}

/// The kernel's own trace of each first packet (`xtables-monitor --trace`):
/// (client address, client port) → the text of every rule that decided (`-j DNAT`,
/// `-j MASQUERADE`, `-j SNAT`, `-j DROP`, `-j REJECT`), as `iptables-save` writes it.
fn kernel_trace(path: &str) -> std::collections::BTreeMap<(String, u16), Vec<String>> {
    use std::collections::{BTreeMap, HashMap};
    let text = std::fs::read_to_string(root().join(path)).expect("trace");
    let mut packet_of: HashMap<String, (String, u16)> = HashMap::new();
    let mut out: BTreeMap<(String, u16), Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["PACKET:", _, id, rest @ ..] => {
                let field = |k: &str| {
                    rest.iter()
                        .find_map(|w| w.strip_prefix(k))
                        .map(str::to_string)
                };
                if let (Some(src), Some(sport)) = (field("SRC="), field("SPORT=")) {
                    packet_of.insert(id.to_string(), (src, sport.parse().unwrap()));
                }
            }
            ["TRACE:", _, id, _, rule @ ..] => {
                let rule = rule.join(" ");
                // `-4 -t nat -A CHAIN ...` → `-A CHAIN ...`
                let Some(a) = rule.find("-A ") else { continue };
                let rule = rule[a..].to_string();
                let decides = [
                    "-j DNAT",
                    "-j MASQUERADE",
                    "-j SNAT",
                    "-j DROP",
                    "-j REJECT",
                ]
                .iter()
                .any(|t| rule.contains(t));
                if let (true, Some(k)) = (decides, packet_of.get(*id)) {
                    out.entry(k.clone()).or_default().push(rule);
                }
            }
            _ => {}
        }
    }
    out
}

#[test]
fn attribution_names_the_rules_the_kernel_traced() {
    let d = "samples/kube-rules";
    let rules = [
        format!("{d}/iptables.txt"),
        format!("{d}/ipsets.txt"),
        format!("{d}/addrs.txt"),
    ];
    let (_, doc) = report(
        "kube-rules",
        &rules.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let trace = kernel_trace(&format!("{d}/trace.txt"));
    assert!(trace.len() >= 12, "{trace:?}");
    let mut checked = 0;
    for c in doc["connections"].as_array().unwrap() {
        let Some(r) = c.get("rules") else { continue };
        let key = (
            r["walked"]["src"].as_str().unwrap().to_string(),
            r["walked"]["sport"].as_u64().unwrap() as u16,
        );
        let Some(kernel) = trace.get(&key) else {
            continue;
        };
        let ours: Vec<String> = ["dnat", "snat"]
            .iter()
            .filter_map(|k| r[*k]["text"].as_str())
            .chain(r["decided_by"]["text"].as_str())
            .map(str::to_string)
            .collect();
        let mut kernel = kernel.clone();
        kernel.sort();
        kernel.dedup();
        let mut ours_sorted = ours.clone();
        ours_sorted.sort();
        assert_eq!(ours_sorted, kernel, "{}: {key:?}", c["id"]);
        checked += 1;
    }
    // Every NodePort connection, the published port and both masqueraded ones.
    assert!(checked >= 14, "checked {checked}");
    // The NodePort's three endpoints, each chosen by its statistic branch.
    let endpoints: std::collections::BTreeSet<&str> = doc["connections"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["rules"]["dnat"]["chain"].as_str())
        .filter(|ch| ch.starts_with("KUBE-SEP-"))
        .collect();
    assert_eq!(endpoints.len(), 3, "{endpoints:?}");
}

/// A rule set written natively in nftables, as kube-proxy's nftables mode lays it
/// out (a service verdict map keyed by address, protocol and port; `numgen random mod
/// 3` over the endpoints), recorded with `nft -j list ruleset`.
#[test]
fn explain_walks_native_nftables_verdict_maps() {
    let out = natcheck(&[
        "explain",
        "--format",
        "json",
        "--rules",
        "tests/data/rules/kube-proxy-nftables-recorded.json",
        "--rules",
        "tests/data/rules/addrs-ip-o-recorded.txt",
        "--packet",
        "udp 10.244.1.9:40000 > 10.96.0.10:53 in cni0 out cni0",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let doc: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let mut share: std::collections::BTreeMap<String, f64> = Default::default();
    for w in doc["ways"].as_array().unwrap() {
        assert_eq!(w["assumed"], false, "{w}");
        assert_eq!(w["fate"], "forwarded");
        let to = &w["dnat"]["to"];
        *share
            .entry(format!("{}:{}", to["dst"].as_str().unwrap(), to["dport"]))
            .or_default() += w["probability"].as_f64().unwrap();
        assert!(w["dnat"]["handle"].as_u64().is_some());
    }
    let got: Vec<(String, String)> = share
        .into_iter()
        .map(|(k, p)| (k, format!("{p:.3}")))
        .collect();
    assert_eq!(
        got,
        [
            ("10.244.1.2:53".to_string(), "0.667".to_string()),
            ("10.244.2.3:53".to_string(), "0.333".to_string())
        ]
    );
}

/// The kernel's own trace of each first packet through a native nftables rule set
/// (`nft monitor trace`): (client address, client port) → the (table, handle) of every
/// rule that decided (`dnat`, `masquerade`, `snat`, `drop`, `reject`).
fn nft_trace(path: &str) -> std::collections::BTreeMap<(String, u16), Vec<(String, u64)>> {
    use std::collections::{BTreeMap, HashMap};
    let text = std::fs::read_to_string(root().join(path)).expect("trace");
    let mut packet_of: HashMap<String, (String, u16)> = HashMap::new();
    let mut out: BTreeMap<(String, u16), Vec<(String, u64)>> = BTreeMap::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let ["trace", "id", id, _family, table, _chain, kind, rest @ ..] = words.as_slice() else {
            continue;
        };
        let after = |k: &str| {
            rest.windows(2)
                .find(|w| w[0] == k)
                .map(|w| w[1].to_string())
        };
        match *kind {
            "packet:" => {
                let field = |a: &str, b: &str| {
                    rest.windows(3)
                        .find(|w| w[0] == a && w[1] == b)
                        .map(|w| w[2].to_string())
                };
                let sport = field("tcp", "sport")
                    .or_else(|| field("udp", "sport"))
                    .and_then(|p| p.parse().ok());
                if let (Some(src), Some(sport)) = (field("ip", "saddr"), sport) {
                    packet_of.insert(id.to_string(), (src, sport));
                }
            }
            "rule" => {
                // The rule's statements, before `# handle N (verdict ...)`.
                let stmt: Vec<&str> = rest.iter().take_while(|w| **w != "#").copied().collect();
                let decides = stmt
                    .windows(2)
                    .any(|w| (w[0] == "dnat" || w[0] == "snat") && w[1] == "to")
                    || ["masquerade", "drop", "reject"]
                        .iter()
                        .any(|t| stmt.contains(t));
                let handle = after("handle").and_then(|h| h.parse().ok());
                if let (true, Some(h), Some(k)) = (decides, handle, packet_of.get(*id)) {
                    out.entry(k.clone())
                        .or_default()
                        .push((table.to_string(), h));
                }
            }
            _ => {}
        }
    }
    out
}

#[test]
fn attribution_of_a_native_nftables_host_names_the_rules_the_kernel_traced() {
    let d = "samples/kube-nft";
    let rules = [format!("{d}/nft.json"), format!("{d}/addrs.txt")];
    let (_, doc) = report(
        "kube-nft",
        &rules.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let w = &doc["rules"][0];
    assert_eq!(w["on_wire"], w["agree"], "{w}");
    let trace = nft_trace(&format!("{d}/trace.txt"));
    let mut checked = 0;
    let mut endpoints = std::collections::BTreeSet::new();
    for c in doc["connections"].as_array().unwrap() {
        let Some(r) = c.get("rules") else { continue };
        let key = (
            r["walked"]["src"].as_str().unwrap().to_string(),
            r["walked"]["sport"].as_u64().unwrap() as u16,
        );
        let Some(kernel) = trace.get(&key) else {
            continue;
        };
        let mut ours: Vec<(String, u64)> = ["dnat", "snat", "decided_by"]
            .iter()
            .filter(|k| r[**k].is_object())
            .map(|k| {
                (
                    r[*k]["table"].as_str().unwrap().to_string(),
                    r[*k]["handle"].as_u64().unwrap(),
                )
            })
            .collect();
        let mut kernel = kernel.clone();
        kernel.sort();
        kernel.dedup();
        ours.sort();
        assert_eq!(ours, kernel, "{}: {key:?}", c["id"]);
        if let Some(ch) = r["dnat"]["chain"].as_str() {
            if ch.starts_with("endpoint-") {
                endpoints.insert(ch.to_string());
            }
        }
        checked += 1;
    }
    // The NodePort connections, the masqueraded one and the blocked one.
    assert!(checked >= 13, "checked {checked}");
    assert_eq!(endpoints.len(), 3, "{endpoints:?}");
}

/// With an earlier dump of the same rules (`--rules-before`, taken as the rules were
/// loaded, before any traffic), every rule a report names says how much its counter
/// grew in between: the DROP grew by exactly the blocked SYNs the wire shows, and each
/// DNAT by at least the connections attributed to it (a nat rule counts first
/// packets). An iptables-save -c pair and an nft -j pair.
#[test]
fn counter_deltas_between_two_dumps_match_the_wire() {
    for (s, after, before) in [
        (
            "fault-nodeport-blocked",
            "iptables-counters.txt",
            "iptables-counters-before.txt",
        ),
        ("kube-nft", "nft-counters.json", "nft.json"),
    ] {
        let p = pair(s);
        let (after, before) = (
            format!("samples/{s}/{after}"),
            format!("samples/{s}/{before}"),
        );
        let out = natcheck(&[
            "correlate",
            "--format",
            "json",
            &p[0],
            &p[1],
            "--rules",
            &after,
            "--rules-before",
            &before,
        ]);
        assert!(stderr(&out).is_empty(), "{s}: {}", stderr(&out));
        let doc: Value = serde_json::from_str(&stdout(&out)).expect("valid JSON");
        // Per DNAT rule: its delta, and the translated connections it is named for.
        let mut dnat: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
        for c in doc["connections"].as_array().unwrap() {
            let r = &c["rules"];
            if r["fate"] != "forwarded"
                || r["dnat"].is_null()
                || c["hops"].as_array().unwrap().len() < 2
            {
                continue;
            }
            let counters = &r["dnat"]["counters"];
            if counters.is_null() {
                continue;
            }
            let since = &counters["since_before"];
            assert_eq!(since["change"], "grew", "{s}: {r}");
            // The earlier dump is the rule set as loaded: every counter started at 0.
            assert_eq!(since["packets"], counters["packets"], "{s}: {r}");
            let key = format!(
                "{}:{}:{}",
                r["dnat"]["chain"], r["dnat"]["line"], r["dnat"]["handle"]
            );
            let e = dnat.entry(key).or_default();
            e.0 = since["packets"].as_u64().unwrap();
            e.1 += 1;
        }
        assert!(!dnat.is_empty(), "{s}: no DNAT rule with counters");
        for (rule, (delta, conns)) in &dnat {
            assert!(
                delta >= conns,
                "{s}: {rule} grew by {delta} for {conns} connections"
            );
        }
        // The blocked connection: its DROP grew by the SYNs seen.
        let lost = doc["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["code"] == "lost")
            .expect("the blocked connection");
        let syns = lost["packets"].as_u64().unwrap();
        let evidence = lost["evidence"].to_string();
        assert!(
            evidence.contains(&format!("packets, +{syns} since {before}")),
            "{s}: {syns} SYNs: {evidence}"
        );
    }
}

/// An earlier dump without counters cannot give deltas: a warning says so, and the
/// report is still made.
#[test]
fn an_earlier_dump_without_counters_is_a_warning() {
    let s = "fault-nodeport-blocked";
    let p = pair(s);
    let out = natcheck(&[
        "correlate",
        &p[0],
        &p[1],
        "--rules",
        &format!("samples/{s}/iptables-counters.txt"),
        "--rules-before",
        &format!("samples/{s}/iptables.txt"),
        "--detail",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the earlier rules have no counters"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).contains("rules: dnat by"), "{}", stdout(&out));
}

/// `nft -j list ruleset` of an iptables-nft host shows the iptables tables a second
/// time, their matches as bare `xt` expressions: read beside iptables-save, those
/// twins are left out, and every connection is attributed as from iptables-save alone.
#[test]
fn iptables_nft_twins_in_nft_json_are_not_walked_twice() {
    let s = "kube-rules";
    let save = format!("samples/{s}/iptables.txt");
    let nft = format!("samples/{s}/nft.json");
    let ipsets = format!("samples/{s}/ipsets.txt");
    let (_, alone) = report(s, &[&save, &ipsets]);
    let (_, both) = report(s, &[&save, &nft, &ipsets]);
    let rules = |d: &Value| -> Vec<Value> {
        d["connections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["rules"].clone())
            .collect()
    };
    assert_eq!(rules(&alone), rules(&both));
    assert_eq!(alone["rules"][0]["entries"], both["rules"][0]["entries"]);
    assert_eq!(codes(&alone), codes(&both));
}

/// A report with where each rule was read left out (`source`, `line`, `text`), so
/// that the nft text and JSON of one rule set compare.
fn placeless(v: &Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(
            o.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "source" | "line" | "text"))
                .map(|(k, v)| (k.clone(), placeless(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(placeless).collect()),
        other => other.clone(),
    }
}

/// `nft -a list ruleset` of the kube-nft host walks the NodePort packet of the
/// kube-rules explain test the same ways, with the same chances and rules, as its `nft
/// -j list ruleset`; each rule is placed by its line and its handle.
#[test]
fn explain_reads_the_nft_listing_like_its_json() {
    let nodeport = "tcp 198.51.100.20:40000 > 203.0.113.1:30080 in eth0 out docker0";
    let run = |rules: &str, format: &str| {
        let out = natcheck(&[
            "explain",
            "--format",
            format,
            "--rules",
            rules,
            "--rules",
            "samples/kube-nft/addrs.txt",
            "--packet",
            nodeport,
        ]);
        assert_eq!(out.status.code(), Some(0), "{rules}: {}", stderr(&out));
        stdout(&out)
    };
    let text: Value = serde_json::from_str(&run("samples/kube-nft/nft.txt", "json")).unwrap();
    let json: Value = serde_json::from_str(&run("samples/kube-nft/nft.json", "json")).unwrap();
    let ways = text["ways"].as_array().unwrap();
    assert_eq!(ways.len(), 3);
    for w in ways {
        assert!(
            (w["probability"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-9,
            "{w}"
        );
        assert_eq!(w["fate"], "forwarded");
        assert!(w["dnat"]["line"].as_u64().unwrap() > 0, "{w}");
        assert!(w["dnat"]["handle"].as_u64().is_some(), "{w}");
        assert!(w["snat"]["text"].as_str().unwrap().contains("masquerade"));
    }
    assert_eq!(placeless(&text), placeless(&json));
    let table = run("samples/kube-nft/nft.txt", "table");
    assert!(
        table.contains("line 76, handle 36: meta l4proto tcp counter dnat to 172.17.0.2:80"),
        "{table}"
    );
}

/// `correlate` of the kube-nft recordings with the text listing attributes every
/// translation and drop to the same rules (table, chain, handle) as with the JSON.
#[test]
fn correlate_attributes_the_nft_listing_like_its_json() {
    let d = "samples/kube-nft";
    let (a, b) = (format!("{d}/nft.txt"), format!("{d}/nft.json"));
    let addrs = format!("{d}/addrs.txt");
    let (code_text, text) = report("kube-nft", &[&a, &addrs]);
    let (code_json, json) = report("kube-nft", &[&b, &addrs]);
    assert_eq!(code_text, code_json);
    let w = &text["rules"][0];
    assert!(w["on_wire"].as_u64().unwrap() > 0, "{w}");
    assert_eq!(w["on_wire"], w["agree"], "{w}");
    let mut attributed = 0;
    for (ct, cj) in text["connections"]
        .as_array()
        .unwrap()
        .iter()
        .zip(json["connections"].as_array().unwrap())
    {
        assert_eq!(ct["id"], cj["id"]);
        let (Some(rt), Some(rj)) = (ct.get("rules"), cj.get("rules")) else {
            assert_eq!(ct.get("rules"), cj.get("rules"));
            continue;
        };
        assert_eq!(placeless(rt), placeless(rj), "{}", ct["id"]);
        for k in ["dnat", "snat", "decided_by"] {
            if rt[k].is_object() {
                assert!(rt[k]["line"].as_u64().unwrap() > 0, "{}", rt[k]);
                attributed += 1;
            }
        }
    }
    assert!(attributed >= 13, "{attributed}");
    assert_eq!(codes(&text), codes(&json));
}

/// A translation no rule of the set can make (the host's DNAT rules removed, as on a
/// host whose services IPVS or an eBPF datapath translates): `not-netfilter`, not a
/// contradiction. kube-proxy in iptables mode and in nftables mode, and ip6tables'
/// port forwards on a router.
#[test]
fn a_translation_no_rule_can_make_is_outside_netfilter() {
    for (s, file, dnat) in [
        ("nodeport", "iptables.txt", "-j DNAT"),
        ("kube-nft", "nft.txt", "dnat to"),
        ("fault-hairpin-routed-no-masq6", "ip6tables.txt", "-j DNAT"),
    ] {
        let text = std::fs::read_to_string(root().join(format!("samples/{s}/{file}"))).unwrap();
        let kept: String = text
            .lines()
            .filter(|l| !l.contains(dnat))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_ne!(kept, text, "{s}");
        let rules = TempRules::new(&format!("{s}-no-dnat"), &kept);
        let (_, doc) = report(s, &[rules.path()]);
        let codes = codes(&doc);
        assert!(codes.iter().any(|c| c == "not-netfilter"), "{s}: {codes:?}");
        assert!(
            !codes.iter().any(|c| c == "rule-contradiction"),
            "{s}: {codes:?}"
        );
        for f in doc["findings"].as_array().unwrap() {
            if f["code"] == "not-netfilter" {
                assert_eq!(f["severity"], "warning", "{s}");
                assert_ne!(
                    f["detail"]["walked"]["dst"], f["detail"]["wire"]["dst"],
                    "{s}"
                );
            }
        }
    }
}

/// The JSON reports of a recording's veth-c1, docker0 and eth0 captures with its
/// iptables rules, first with its host addresses (`addrs.txt`), then without them;
/// each without a finding and exit status 0.
fn clean_reports(d: &str) -> Vec<Value> {
    let inputs = ["veth-c1", "docker0", "eth0"].map(|p| format!("{d}/{p}.pcap"));
    let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    let (iptables, addrs) = (format!("{d}/iptables.txt"), format!("{d}/addrs.txt"));
    [
        vec![iptables.as_str(), addrs.as_str()],
        vec![iptables.as_str()],
    ]
    .iter()
    .map(|rules| {
        let (code, doc) = report_of(&inputs, rules);
        assert_eq!(code, 0, "{rules:?}: {:?}", codes(&doc));
        assert!(codes(&doc).is_empty(), "{rules:?}: {:?}", codes(&doc));
        doc
    })
    .collect()
}

#[test]
fn a_redirect_to_a_local_proxy_is_named_at_the_bridge_that_ran_it() {
    // docker0 shows c1's packets already redirected (bridge netfilter ran PREROUTING as
    // the bridge received them from c1's port): the rules are walked with docker0 as
    // the interface they came in by, where `-i docker0` matches.
    // With the host's addresses, and without them: then docker0's address (where
    // REDIRECT sends) is the one the wire shows, and the servers the redirected
    // connections were addressed to are not taken for the host's (the other
    // connections' packets were routed on to them).
    for doc in clean_reports("samples/redirect-local") {
        let w = doc["rules"][0].clone();
        assert_eq!(
            (w["on_wire"].as_u64(), w["agree"].as_u64()),
            (Some(4), Some(4)),
            "{}",
            w["source"]
        );
        let conns = doc["connections"].as_array().unwrap();
        let redirected: Vec<&Value> = conns
            .iter()
            .filter(|c| {
                c["hops"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|h| h["dport"] == 15001)
            })
            .collect();
        assert_eq!(redirected.len(), 2);
        for c in redirected {
            let text = c.to_string();
            assert!(text.contains("REDIRECT --to-ports 15001"), "{text}");
            assert_eq!(c["translations"][0]["kind"], "dnat");
        }
    }
}

#[test]
fn snat_to_a_pool_agrees_with_whichever_address_the_kernel_took() {
    // The kernel gives each connection one address of `--to-source A-B` by a hash of
    // its addresses: the walk names the range, and any address of it agrees.
    for doc in clean_reports("samples/snat-pool") {
        let conns = doc["connections"].as_array().unwrap();
        let w = &doc["rules"][0];
        assert_eq!(w["on_wire"].as_u64(), Some(conns.len() as u64), "{w}");
        assert_eq!(w["agree"], w["on_wire"], "{w}");
        let mut used = std::collections::BTreeSet::new();
        for c in conns {
            let snat = &c["rules"]["snat"];
            assert!(
                snat["text"].as_str().unwrap().contains("--to-source"),
                "{c}"
            );
            let range = snat["to_range"].as_array().expect("a range");
            let last = c["hops"].as_array().unwrap().last().unwrap();
            let src = last["src"].as_str().unwrap();
            let (lo, hi) = (range[0].as_str().unwrap(), range[1].as_str().unwrap());
            let ip = |s: &str| s.parse::<std::net::Ipv4Addr>().unwrap();
            assert!(ip(lo) <= ip(src) && ip(src) <= ip(hi), "{src} in {lo}-{hi}");
            used.insert(src.to_string());
        }
        // Not only the range's first address: the recording is worth its name.
        assert!(used.len() >= 2, "{used:?}");
    }
}

#[test]
fn netmap_is_walked_both_ways_and_agrees_with_the_wire() {
    // NETMAP maps the network part of the source on the way out (POSTROUTING) and of
    // the destination on the way in (PREROUTING), the host part kept.
    let (mut out, mut inbound) = (0, 0);
    let docs = clean_reports("samples/netmap");
    for c in docs
        .iter()
        .flat_map(|d| d["connections"].as_array().unwrap())
    {
        let hops = c["hops"].as_array().unwrap();
        let (first, last) = (&hops[0], hops.last().unwrap());
        let r = &c["rules"];
        assert_eq!(r["agrees"], true, "{c}");
        let host = |a: &Value| a.as_str().unwrap().rsplit('.').next().unwrap().to_string();
        if let Some(s) = r["snat"]["text"].as_str() {
            assert!(s.contains("NETMAP --to 192.0.2.0/24"), "{s}");
            assert_eq!(host(&first["src"]), host(&last["src"]), "{c}");
            assert!(last["src"].as_str().unwrap().starts_with("192.0.2."), "{c}");
            out += 1;
        }
        if let Some(s) = r["dnat"]["text"].as_str() {
            assert!(s.contains("NETMAP --to 172.17.0.0/24"), "{s}");
            assert_eq!(host(&first["dst"]), host(&last["dst"]), "{c}");
            inbound += 1;
        }
    }
    assert!(out >= 4 && inbound >= 2, "{out} out, {inbound} in");
}

#[test]
fn packets_inside_a_tunnel_meet_the_rules_by_the_tunnels_device() {
    // Captured on eth0 inside VXLAN or IP-in-IP, a pod's packets left by the tunnel's
    // device (vxlan0, tunl0), which no capture point names: MASQUERADE gave them that
    // device's address, not eth0's. The walk does not take eth0 for the device they
    // met the rules by, so it agrees with the wire (before, every walk of these
    // recordings disagreed: false rule-contradiction errors).
    for s in [
        "overlay-vxlan",
        "overlay-ipip",
        "fault-overlay-masq",
        "fault-overlay-masq-ipip",
        "fault-vxlan-mtu",
    ] {
        let d = format!("samples/{s}");
        let inputs = ["veth-c1", "docker0", "eth0"].map(|p| format!("{d}/{p}.pcap"));
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let (iptables, addrs) = (format!("{d}/iptables.txt"), format!("{d}/addrs.txt"));
        let (code, doc) = report_of(&inputs, &[&iptables, &addrs]);
        let found = codes(&doc);
        assert!(
            !found.iter().any(|c| c == "rule-contradiction"),
            "{s}: {found:?}"
        );
        let w = &doc["rules"][0];
        assert!(w["on_wire"].as_u64().unwrap() > 0, "{s}: {w}");
        assert_eq!(w["on_wire"], w["agree"], "{s}: {w}");
        // The masquerade that gave them the tunnel's address is named.
        let named = doc["connections"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| {
                c["rules"]["snat"]["text"]
                    .as_str()
                    .is_some_and(|t| t.contains("MASQUERADE"))
            })
            .count();
        assert!(named > 0, "{s}");
        // Nothing an error: the faults here are warnings (overlay-masq) or none.
        assert_eq!(code, 0, "{s}: {found:?}");
    }
}

#[test]
fn a_hairpin_in_one_capture_of_every_interface_runs_port_bridge_port() {
    // `tcpdump -i any` of containers sending to the host's published port, DNATed to a
    // container on the same bridge (in fault-hairpin-udp back to the sender itself):
    // the packets cross the sender's veth, the bridge, and the receiver's veth. The
    // bridge writes each datagram several times, so the pairs of hops match different
    // numbers of packets, and it sees the replies one container's port forwarded to
    // the other's after that port did. Each pair's majority counts once and the
    // requests decide before the replies: every path starts at the sender's veth,
    // where the rules meet it (`-i docker0` once the bridge took it in).
    for s in ["fault-hairpin-udp", "fault-hairpin-no-masq"] {
        let d = format!("samples/{s}");
        let (any, links) = (format!("{d}/any.pcap"), format!("{d}/links.txt"));
        let (iptables, addrs) = (format!("{d}/iptables.txt"), format!("{d}/addrs.txt"));
        let (_, doc) = report_of(&[&any, "--links", &links], &[&iptables, &addrs]);
        assert_eq!(codes(&doc), ["hairpin-no-masq"], "{s}");
        let dnat: Vec<&Value> = (doc["connections"].as_array().unwrap().iter())
            .filter(|c| {
                c["translations"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|t| t["kind"] == "dnat")
            })
            .collect();
        assert!(!dnat.is_empty(), "{s}");
        for c in dnat {
            let path: Vec<&str> = (c["hops"].as_array().unwrap().iter())
                .map(|h| h["point"].as_str().unwrap())
                .collect();
            assert_eq!(path.len(), 3, "{s}: {path:?}");
            assert!(
                path[0].starts_with("veth") && path[2].starts_with("veth"),
                "{s}: {path:?}"
            );
            assert_eq!(path[1], "docker0", "{s}: {path:?}");
            assert_eq!(c["rules"]["agrees"], true, "{s}: {c}");
        }
    }
}

#[test]
fn links_tell_a_bridge_port_from_its_bridge_in_any_input_order() {
    // With one container, its veth and the bridge see the same connections, and a
    // datagram with no reply carries one time stamp at both: `--links` (`master
    // docker0`) tells which is the port, as do the connections whose packets ordered
    // the two. Given as the shell's `*.pcap` (docker0 first), with and without the
    // links, or as one pcapng of every interface with them, each recording reads as
    // with the veth's file given first.
    let bad = |doc: &Value| -> Vec<String> {
        let mut v: Vec<String> = (doc["findings"].as_array().unwrap().iter())
            .filter(|f| f["severity"] != "info")
            .map(|f| f["code"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    for s in [
        "fault-wrong-source-udp",
        "fault-hairpin-udp",
        "fault-snat-exhaustion-udp6",
    ] {
        let d = format!("samples/{s}");
        let f = |p: &str| format!("{d}/{p}");
        let (links, iptables, addrs) = (f("links.txt"), f("iptables.txt"), f("addrs.txt"));
        let rules = [iptables.as_str(), addrs.as_str()];
        let (veth, docker0, eth0, multi) = (
            f("veth-c1.pcap"),
            f("docker0.pcap"),
            f("eth0.pcap"),
            f("multi.pcapng"),
        );
        let (_, want) = report_of(&[&veth, &docker0, &eth0], &rules);
        let (_, glob) = report_of(&[&docker0, &eth0, &veth, "--links", &links], &rules);
        let (_, bare) = report_of(&[&docker0, &eth0, &veth], &rules);
        let (_, one) = report_of(&[&multi, "--links", &links], &rules);
        assert!(
            !bad(&want).contains(&"rule-contradiction".to_string()),
            "{s}"
        );
        assert_eq!(bad(&glob), bad(&want), "{s}: *.pcap with --links");
        assert_eq!(bad(&bare), bad(&want), "{s}: *.pcap");
        assert_eq!(bad(&one), bad(&want), "{s}: multi.pcapng with --links");
    }
}

/// The host's own connections, which NAT translated in OUTPUT before any capture
/// point, are walked from OUTPUT with the tuple their entry says they were sent with,
/// and the rules name their translation: the host's connections out SNATed to an
/// egress address in POSTROUTING (told the host's by their TTL, no address given), a
/// published port reached by the host's own address (Docker's DNAT, iptables and
/// ip6tables), a node's connection to its own NodePort
/// (kube-proxy's DNAT and masquerade, iptables and nft). Without the entries no capture
/// shows that tuple, and they are not walked.
#[test]
fn the_hosts_own_connections_are_walked_from_output_with_their_entries() {
    // (recording, rule set, connections the host opened, their DNAT chain, SNAT too)
    let cases = [
        ("local-published", "iptables.txt", 2, Some("DOCKER"), false),
        (
            "local-published6",
            "ip6tables.txt",
            2,
            Some("DOCKER"),
            false,
        ),
        ("kube-rules", "iptables.txt", 1, Some("KUBE-SEP-WEB3"), true),
        ("kube-nft", "rules.nft", 1, Some("endpoint-WEBEP003"), true),
        ("egress-snat", "iptables.txt", 3, None, true),
    ];
    for (s, rules, opened, dnat, snat) in cases {
        let d = format!("samples/{s}");
        let files: Vec<String> = ["veth-c1", "docker0", "eth0"]
            .iter()
            .map(|p| format!("{d}/{p}.pcap"))
            .collect();
        let mut inputs: Vec<&str> = files.iter().map(String::as_str).collect();
        let rules = format!("{d}/{rules}");
        let from_output = |doc: &Value| -> Vec<Value> {
            (doc["connections"].as_array().unwrap().iter())
                .filter(|c| c["rules"]["filter_hook"] == "OUTPUT")
                .map(|c| c["rules"].clone())
                .collect()
        };
        let (_, bare) = report_of(&inputs, &[&rules]);
        assert!(from_output(&bare).is_empty(), "{s}: no entry, no walk");
        let ct = format!("{d}/conntrack.txt");
        inputs.extend(["--conntrack", &ct]);
        let (_, doc) = report_of(&inputs, &[&rules]);
        let walks = from_output(&doc);
        assert_eq!(walks.len(), opened, "{s}: {walks:#?}");
        for w in &walks {
            assert_eq!(w["agrees"], true, "{s}: {w}");
            assert!(w["in_iface"].is_null(), "{s}: sent by the host: {w}");
            match dnat {
                // To the host's own published port or NodePort, from its own address.
                Some(dnat) => {
                    assert_eq!(w["walked"]["src"], w["walked"]["dst"], "{s}: {w}");
                    let chain = w["dnat"]["chain"].as_str().unwrap();
                    assert!(chain.starts_with(dnat), "{s}: {chain}");
                }
                None => assert!(w["dnat"].is_null(), "{s}: {w}"),
            }
            assert_eq!(w["snat"].is_object(), snat, "{s}: {w}");
        }
        let summary = &doc["rules"][0];
        assert_eq!(summary["on_wire"], summary["agree"], "{s}: {summary}");
        assert!(
            !codes(&doc).contains(&"rule-contradiction".to_string()),
            "{s}"
        );
    }
}

/// `explain` says what a rule that assigns a NAT helper does to the connection, for
/// iptables (`CT --helper`) over IPv4 and IPv6.
#[test]
fn explain_says_what_a_helper_rule_assigns() {
    for (s, packet) in [
        (
            "ftp-alg",
            "tcp 198.51.100.20:40000 > 203.0.113.1:21 in eth0",
        ),
        ("tftp-alg", "udp 203.0.113.2:40000 > 203.0.113.1:69 in eth0"),
        (
            "ftp-alg6",
            "tcp [2001:db8:100::20]:40000 > [2001:db8:113::1]:21 in eth0",
        ),
    ] {
        let d = format!("samples/{s}");
        let mut a = vec!["explain".to_string(), "--packet".into(), packet.into()];
        for f in ["iptables.txt", "ip6tables.txt", "addrs.txt"] {
            if root().join(format!("{d}/{f}")).is_file() {
                a.extend(["--rules".into(), format!("{d}/{f}")]);
            }
        }
        let out = natcheck(&a.iter().map(String::as_str).collect::<Vec<_>>());
        let text = stdout(&out);
        let helper = if s.starts_with("tftp") { "tftp" } else { "ftp" };
        let line = text
            .lines()
            .find(|l| l.contains("CT --helper"))
            .unwrap_or_else(|| panic!("{s}: {text}"));
        assert!(
            line.contains(&format!("=> NAT helper `{helper}` assigned")),
            "{s}: {line}"
        );
    }
}

/// One nftables `inet` table NATs both families (`nft-inet6`, recorded from the
/// kernel). Its TCP rules name their family (`meta nfproto`); its UDP rules do not, so
/// an IPv6 datagram matches the `dnat ip to` rule too, whose IPv4 translation the
/// kernel skips, and is DNATed by the `dnat ip6 to` rule after it, as its entry says.
/// The rules explain every connection of either family, read from the file loaded,
/// `nft -a list ruleset` and `nft -j list ruleset`, with the captures given as files,
/// as `-i any` and as one pcapng; the host's own connections are walked from OUTPUT.
/// `explain` gives each packet its own family's translation, with nothing assumed,
/// and says what the other family's rule did.
#[test]
fn an_inet_table_translates_each_family_by_its_own_rules() {
    let d = "samples/nft-inet6";
    let ct = format!("{d}/conntrack.txt");
    let files: Vec<String> = ["veth-c1", "docker0", "eth0"]
        .iter()
        .map(|p| format!("{d}/{p}.pcap"))
        .collect();
    let (any, links, multi) = (
        format!("{d}/any.pcap"),
        format!("{d}/links.txt"),
        format!("{d}/multi.pcapng"),
    );
    let shapes: [Vec<&str>; 3] = [
        files.iter().map(String::as_str).collect(),
        vec![&any, "--links", &links],
        vec![&multi],
    ];
    for rules in ["rules.nft", "nft.txt", "nft.json"] {
        let rules = format!("{d}/{rules}");
        for shape in &shapes {
            let mut inputs = shape.clone();
            inputs.extend(["--conntrack", &ct]);
            let (_, doc) = report_of(&inputs, &[&rules]);
            let n = doc["connections"].as_array().unwrap().len();
            let summary = &doc["rules"][0];
            assert_eq!(summary["on_wire"], n, "{rules} {shape:?}: {summary}");
            assert_eq!(summary["agree"], n, "{rules} {shape:?}: {summary}");
            let families = |v6: bool| {
                (doc["connections"].as_array().unwrap().iter())
                    .filter(|c| c["hops"][0]["src"].as_str().unwrap().contains(':') == v6)
                    .count()
            };
            assert!(families(false) >= 5 && families(true) >= 7, "{doc}");
            let own = (doc["connections"].as_array().unwrap().iter())
                .filter(|c| c["rules"]["filter_hook"] == "OUTPUT")
                .count();
            assert_eq!(own, 2, "{rules} {shape:?}: the host's own, one per family");
            let found = codes(&doc);
            assert!(
                !found
                    .iter()
                    .any(|c| c == "rule-contradiction" || c == "not-netfilter"),
                "{rules} {shape:?}: {found:?}"
            );
        }
    }
    for (packet, to) in [
        (
            "udp 198.51.100.20:40000 > 203.0.113.1:8053 in eth0",
            "172.17.0.2:53",
        ),
        (
            "udp [2001:db8:100::20]:40000 > [2001:db8:113::1]:8053 in eth0",
            "[fd00:172:17::2]:53",
        ),
        (
            "tcp 198.51.100.20:40000 > 203.0.113.1:8080 in eth0",
            "172.17.0.2:80",
        ),
        (
            "tcp [2001:db8:100::20]:40000 > [2001:db8:113::1]:8080 in eth0",
            "[fd00:172:17::2]:80",
        ),
    ] {
        let (rules, addrs) = (format!("{d}/rules.nft"), format!("{d}/addrs.txt"));
        let out = natcheck(&[
            "explain", "--rules", &rules, "--rules", &addrs, "--packet", packet,
        ]);
        let text = stdout(&out);
        assert!(
            text.contains("\n1 way through the rules\n"),
            "{packet}: {text}"
        );
        assert!(
            text.contains(&format!(": forwarded; DNAT to {to}\n")),
            "{packet}: {text}"
        );
        assert!(!text.contains("assum"), "{packet}: {text}");
        let skipped = text.contains("=> nothing: an IPv4 translation, skipped for an IPv6 packet");
        assert_eq!(skipped, packet.starts_with("udp ["), "{packet}: {text}");
    }
}

/// Docker's native nftables backend (`docker-nft`, its table as Docker writes it, loaded
/// in the lab): verdict maps dispatch by the bridge's name to its chains, the published
/// ports' DNAT is shared by prerouting and output, the bridge's network is
/// masqueraded. Read from the file loaded, `nft -a list ruleset` and `nft -j`, the
/// rules explain every translated connection, the host's own one from OUTPUT, and
/// `explain` names the raw-table rule that drops a packet sent from outside straight to
/// the container.
#[test]
fn dockers_nftables_backend_explains_its_connections() {
    let d = "samples/docker-nft";
    let files: Vec<String> = ["veth-c1", "docker0", "eth0"]
        .iter()
        .map(|p| format!("{d}/{p}.pcap"))
        .collect();
    let ct = format!("{d}/conntrack.txt");
    for rules in ["rules.nft", "nft.txt", "nft.json"] {
        let rules = format!("{d}/{rules}");
        let mut inputs: Vec<&str> = files.iter().map(String::as_str).collect();
        inputs.extend(["--conntrack", &ct]);
        let (_, doc) = report_of(&inputs, &[&rules]);
        let summary = &doc["rules"][0];
        assert!(
            summary["on_wire"].as_u64().unwrap() >= 7,
            "{rules}: {summary}"
        );
        assert_eq!(summary["on_wire"], summary["agree"], "{rules}: {summary}");
        let own = (doc["connections"].as_array().unwrap().iter())
            .filter(|c| c["rules"]["filter_hook"] == "OUTPUT")
            .count();
        assert_eq!(own, 1, "{rules}");
        assert!(
            codes(&doc).iter().all(|c| c == "nat-before-capture"),
            "{rules}: {:?}",
            codes(&doc)
        );
    }
    let (rules, addrs) = (format!("{d}/rules.nft"), format!("{d}/addrs.txt"));
    let out = natcheck(&[
        "explain",
        "--rules",
        &rules,
        "--rules",
        &addrs,
        "--packet",
        "tcp 198.51.100.20:40000 > 172.17.0.2:80 in eth0",
    ]);
    let text = stdout(&out);
    assert!(text.contains("\n1 way through the rules\n"), "{text}");
    assert!(text.contains("DROP DIRECT ACCESS"), "{text}");
    assert!(text.contains("=> dropped"), "{text}");
}
