//! `--filter` on the recordings: `correlate` keeps the connections with a hop the
//! expression matches (found by their inside or their outside tuple alike) and the
//! findings about them, says so in its summary, and exits as the kept findings say;
//! `flows` keeps flows, `conntrack` entries by either tuple. The expected sets are
//! worked out here from the unfiltered reports, so every connection of each
//! recording is tried, whatever its addresses.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::util::*;

/// Scenarios of different shapes: IPv4 with TCP, UDP and ICMP port collisions; IPv6
/// with ICMPv6 and several destinations; a blocked connection (an error finding) seen
/// at six points of three capture files.
const SCENARIOS: &[&str] = &["port-collision", "masquerade6", "fault-forward-drop"];

fn captures(scenario: &str) -> Vec<String> {
    let mut v = vec![
        sample(&format!("{scenario}/docker0.pcap")),
        sample(&format!("{scenario}/eth0.pcap")),
    ];
    if scenario == "fault-forward-drop" {
        v.push(sample(&format!("{scenario}/veth-c1.pcap")));
    }
    v
}

/// `natcheck correlate CAPTURES... --conntrack CT --rules RULES... EXTRA...`: exit
/// status and standard output.
fn run(scenario: &str, extra: &[&str]) -> (i32, Vec<u8>) {
    let mut files = captures(scenario);
    files.push("--conntrack".into());
    files.push(sample(&format!("{scenario}/conntrack.txt")));
    for rules in ["iptables.txt", "ip6tables.txt"] {
        let path = sample(&format!("{scenario}/{rules}"));
        if root().join(&path).is_file() {
            files.push("--rules".into());
            files.push(path);
        }
    }
    let mut args = vec!["correlate"];
    args.extend(files.iter().map(String::as_str));
    args.extend_from_slice(extra);
    let out = natcheck(&args);
    assert!(!out.stdout.is_empty(), "{args:?}: {}", stderr(&out));
    (out.status.code().unwrap_or(-1), out.stdout)
}

/// [`run`] with `--format json`: exit status and document.
fn correlate(scenario: &str, extra: &[&str]) -> (i32, Value) {
    let (code, out) = run(scenario, &[&["--format", "json"], extra].concat());
    let doc = serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{scenario} {extra:?}: {e}"));
    (code, doc)
}

/// The CSV rows (one per connection and hop) of the connections `ids`.
fn csv_rows(csv: &[u8], ids: &BTreeSet<String>) -> Vec<String> {
    String::from_utf8_lossy(csv)
        .lines()
        .skip(1)
        .filter(|l| l.split(',').next().is_some_and(|id| ids.contains(id)))
        .map(str::to_string)
        .collect()
}

/// One primitive of the language, worked out on a JSON tuple.
#[derive(Clone, Debug)]
enum Prim {
    SrcHost(String),
    Host(String),
    Port(u64),
}

fn has_ports(t: &Value) -> bool {
    matches!(t["proto"].as_str(), Some("tcp" | "udp" | "sctp"))
}

impl Prim {
    fn text(&self) -> String {
        match self {
            Prim::SrcHost(a) => format!("src host {a}"),
            Prim::Host(a) => format!("host {a}"),
            Prim::Port(p) => format!("port {p}"),
        }
    }

    fn matches(&self, t: &Value) -> bool {
        let addr = |k: &str, a: &str| {
            t[k].as_str().map(|x| x.parse::<std::net::IpAddr>().ok())
                == Some(a.parse::<std::net::IpAddr>().ok())
        };
        match self {
            Prim::SrcHost(a) => addr("src", a),
            Prim::Host(a) => addr("src", a) || addr("dst", a),
            Prim::Port(p) => has_ports(t) && (t["sport"] == *p || t["dport"] == *p),
        }
    }
}

/// Every tuple of a connection: its hops and its return hops.
fn tuples(c: &Value) -> Vec<&Value> {
    let hops = c["hops"].as_array().unwrap().iter();
    hops.chain(c["returns"].as_array().unwrap().iter().map(|r| &r["hop"]))
        .collect()
}

fn ids(doc: &Value) -> BTreeSet<String> {
    doc["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect()
}

/// The findings as (code, connections, first tuple) lines, comparable across runs.
fn findings(doc: &Value, keep: impl Fn(&Value) -> bool) -> Vec<String> {
    doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| keep(f))
        .map(|f| format!("{} {} {}", f["code"], f["connections"], f["tuples"]))
        .collect()
}

/// What `--filter P` must keep of the whole report `all`, checked against what it did.
fn check(scenario: &str, all: &Value, p: &Prim) -> BTreeSet<String> {
    let text = p.text();
    let (code, got) = correlate(scenario, &["--filter", &text]);
    let conns = all["connections"].as_array().unwrap();
    let want: BTreeSet<String> = conns
        .iter()
        .filter(|c| tuples(c).iter().any(|t| p.matches(t)))
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids(&got), want, "{scenario} --filter '{text}'");
    let summary = &got["summary"];
    assert_eq!(summary["filter"]["expression"], text.as_str());
    assert_eq!(summary["filter"]["kept"], want.len());
    assert_eq!(summary["filter"]["total"], conns.len());
    assert_eq!(summary["connections"], want.len());
    let about_kept = |f: &Value| {
        let named = f["connections"].as_array().unwrap();
        if named.is_empty() {
            f["tuples"].as_array().unwrap().iter().any(|t| p.matches(t))
        } else {
            named.iter().any(|id| want.contains(id.as_str().unwrap()))
        }
    };
    assert_eq!(
        findings(&got, |_| true),
        findings(all, about_kept),
        "{scenario} --filter '{text}': the findings about the kept connections"
    );
    let errors = got["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "error")
        .count();
    let warned = !got["warnings"].as_array().unwrap().is_empty();
    let expected = if warned { 2 } else { i32::from(errors > 0) };
    assert_eq!(code, expected, "{scenario} --filter '{text}': exit status");
    // Each kept connection's rows, with its conntrack entry, its rules and its
    // findings, are those of the whole run.
    if cfg!(feature = "frames") {
        let (_, whole) = run(scenario, &["--format", "csv"]);
        let (_, cut) = run(scenario, &["--format", "csv", "--filter", &text]);
        let rows = csv_rows(&cut, &want);
        assert_eq!(
            rows.len(),
            String::from_utf8_lossy(&cut).lines().count() - 1
        );
        assert_eq!(
            rows,
            csv_rows(&whole, &want),
            "{scenario} --filter '{text}' as CSV"
        );
    }
    want
}

#[test]
fn every_connection_is_found_by_its_inside_and_its_outside_tuple() {
    for scenario in SCENARIOS {
        let (_, all) = correlate(scenario, &[]);
        let conns = all["connections"].as_array().unwrap();
        assert!(
            conns.len() > 1,
            "{scenario}: too few connections to select from"
        );
        let mut translated = 0;
        for c in conns {
            let id = c["id"].as_str().unwrap();
            let hops = c["hops"].as_array().unwrap();
            let (first, last) = (&hops[0], &hops[hops.len() - 1]);
            let inside = first["src"].as_str().unwrap().to_string();
            let kept = check(scenario, &all, &Prim::SrcHost(inside.clone()));
            assert!(kept.contains(id), "{scenario}: {id} by `src host {inside}`");
            if first["src"] != last["src"] {
                translated += 1;
                let outside = last["src"].as_str().unwrap().to_string();
                let kept = check(scenario, &all, &Prim::Host(outside));
                assert!(kept.contains(id), "{scenario}: {id} by its outside address");
            }
            if has_ports(last) && first["sport"] != last["sport"] {
                let port = last["sport"].as_u64().unwrap();
                let kept = check(scenario, &all, &Prim::Port(port));
                assert!(kept.contains(id), "{scenario}: {id} by its outside port");
            }
        }
        assert!(
            translated > 0,
            "{scenario}: no translated connection to find"
        );
    }
}

#[test]
fn a_filter_that_keeps_no_error_exits_zero() {
    // The blocked connection makes the whole run exit 1; the other one alone does not.
    let (code, all) = correlate("fault-forward-drop", &[]);
    assert_eq!(code, 1);
    let blocked: BTreeSet<&str> = all["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "error")
        .flat_map(|f| f["connections"].as_array().unwrap())
        .filter_map(Value::as_str)
        .collect();
    assert!(!blocked.is_empty());
    let others: Vec<&Value> = all["connections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| !blocked.contains(c["id"].as_str().unwrap()))
        .collect();
    assert!(!others.is_empty());
    for c in others {
        let h = &c["hops"][0];
        let expr = format!(
            "src host {} and src port {}",
            h["src"].as_str().unwrap(),
            h["sport"]
        );
        let (code, doc) = correlate("fault-forward-drop", &["--filter", &expr]);
        assert_eq!(code, 0, "{expr}");
        assert_eq!(
            ids(&doc),
            BTreeSet::from([c["id"].as_str().unwrap().to_string()])
        );
        assert!(doc["findings"].as_array().unwrap().is_empty(), "{expr}");
    }
}

#[test]
fn protocols_families_and_nets_in_ipv6() {
    let (_, all) = correlate("masquerade6", &[]);
    let conns = all["connections"].as_array().unwrap();
    let by_proto = |p: &str| -> BTreeSet<String> {
        conns
            .iter()
            .filter(|c| c["proto"] == p)
            .map(|c| c["id"].as_str().unwrap().to_string())
            .collect()
    };
    let run = |expr: &str| ids(&correlate("masquerade6", &["--filter", expr]).1);
    assert!(!by_proto("icmpv6").is_empty());
    assert_eq!(run("icmp6"), by_proto("icmpv6"));
    assert_eq!(run("not icmp6"), &ids(&all) - &by_proto("icmpv6"));
    assert_eq!(run("tcp or udp"), &by_proto("tcp") | &by_proto("udp"));
    assert_eq!(run("ip6"), ids(&all));
    assert!(run("ip").is_empty());
    assert!(run("icmp").is_empty(), "icmp is ICMP for IPv4 only");
    // Every connection has an address in ::/0, none in 0.0.0.0/0.
    assert_eq!(run("net ::/0"), ids(&all));
    assert!(run("net 0.0.0.0/0").is_empty());
}

#[test]
fn the_table_markdown_and_html_say_a_filter_was_applied() {
    let caps = captures("port-collision");
    let mut args: Vec<&str> = vec!["correlate"];
    args.extend(caps.iter().map(String::as_str));
    let whole = stdout(&natcheck(&args));
    args.extend(["--filter", "tcp"]);
    let table = stdout(&natcheck(&args));
    let (_, all) = correlate("port-collision", &[]);
    let total = all["connections"].as_array().unwrap().len();
    let (_, tcp) = correlate("port-collision", &["--filter", "tcp"]);
    let kept = ids(&tcp).len();
    assert!(kept > 0 && kept < total);
    let line =
        format!("filter `tcp`: {kept} of {total} connections kept, and the findings about them");
    assert_eq!(table.lines().next(), Some(line.as_str()), "{table}");
    assert!(!whole.contains("filter `"));
    args.extend(["--format", "markdown"]);
    let md = stdout(&natcheck(&args));
    assert!(md.contains(&format!("{line}.\n")), "{md}");
    let n = args.len();
    args[n - 1] = "html";
    let html = stdout(&natcheck(&args));
    let said = format!("<p class=\"selection\">{line}.</p>\n");
    assert_eq!(html.matches(&said).count(), 1, "{html}");
    assert_eq!(html.matches("<section class=\"conn\"").count(), kept);
}

#[test]
fn bad_expressions_name_the_column_before_any_work() {
    for (cmd, extra) in [
        ("correlate", sample("port-collision/docker0.pcap")),
        ("flows", sample("port-collision/docker0.pcap")),
        ("conntrack", sample("port-collision/conntrack.txt")),
    ] {
        let out = natcheck(&[cmd, &extra, "--filter", "tcp and host"]);
        assert_eq!(out.status.code(), Some(2), "{cmd}");
        assert_eq!(
            stderr(&out),
            "natcheck: error: --filter: at 13: expected an address after 'host'\n",
            "{cmd}"
        );
        assert!(out.stdout.is_empty(), "{cmd}");
    }
}

/// The JSON document `natcheck ARGS...` writes, exiting 0.
fn json_of(args: &[&str]) -> Value {
    let out = natcheck(args);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn flows_keep_the_flows_it_matches() {
    for scenario in ["masquerade6", "port-collision"] {
        let pcap = sample(&format!("{scenario}/eth0.pcap"));
        let flows = |extra: &[&str]| -> Vec<Value> {
            json_of(&[&["flows", "--format", "json", pcap.as_str()], extra].concat())["points"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|p| p["flows"].as_array().unwrap().clone())
                .collect()
        };
        let all = flows(&[]);
        let ports: BTreeSet<u64> = all
            .iter()
            .filter(|f| has_ports(f))
            .filter_map(|f| f["dport"].as_u64())
            .collect();
        assert!(!ports.is_empty());
        for port in ports {
            let p = Prim::Port(port);
            let want: Vec<&Value> = all.iter().filter(|f| p.matches(f)).collect();
            let got = flows(&["--filter", &p.text()]);
            assert_eq!(
                got.iter().collect::<Vec<_>>(),
                want,
                "{scenario} {}",
                p.text()
            );
        }
    }
}

#[test]
fn conntrack_keeps_entries_by_either_tuple() {
    for scenario in ["port-collision", "masquerade6"] {
        let file = sample(&format!("{scenario}/conntrack.txt"));
        let entries = |extra: &[&str]| -> Vec<Value> {
            let args = [&["conntrack", "--format", "json", file.as_str()], extra].concat();
            json_of(&args)["inputs"][0]["entries"]
                .as_array()
                .unwrap()
                .clone()
        };
        let all = entries(&[]);
        let mut reply_only = 0;
        for e in &all {
            // The translated address and port are the REPLY tuple's destination.
            let (orig, reply) = (&e["orig"], &e["reply"]);
            let mut prims = vec![Prim::Host(reply["dst"].as_str().unwrap().to_string())];
            if has_ports(reply) {
                prims.push(Prim::Port(reply["dport"].as_u64().unwrap()));
            }
            for p in prims {
                let want: Vec<&Value> = all
                    .iter()
                    .filter(|e| p.matches(&e["orig"]) || p.matches(&e["reply"]))
                    .collect();
                let got = entries(&["--filter", &p.text()]);
                assert_eq!(
                    got.iter().collect::<Vec<_>>(),
                    want,
                    "{scenario} {}",
                    p.text()
                );
                if !p.matches(orig) {
                    reply_only += 1;
                }
            }
        }
        assert!(
            reply_only > 0,
            "{scenario}: no entry found by its REPLY tuple alone"
        );
    }
}
