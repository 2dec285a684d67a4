//! Community IDs against an independent implementation: every hop's `community_id` in
//! `correlate --format json` (and every flow's in `flows --format json`) must be one
//! that tshark's Community ID dissector computes for a packet of that capture, on every
//! recorded scenario (IPv4 and IPv6; TCP, UDP, ICMP echo and errors).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;

use crate::util::{have, natcheck, root, second_uplink, skip, stderr, SCENARIOS};

/// The Community IDs tshark computes for the packets of `pcap`.
fn tshark_ids(pcap: &str) -> BTreeSet<String> {
    let out = Command::new("tshark")
        .args(["-n", "-r", pcap, "--enable-protocol", "communityid"])
        .args(["-T", "fields", "-e", "communityid"])
        .current_dir(root())
        .output()
        .expect("run tshark");
    assert!(
        out.status.success(),
        "tshark -r {pcap}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .flat_map(|l| l.split(','))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn json(args: &[&str]) -> Value {
    let out = natcheck(args);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "natcheck {args:?}: {}",
        stderr(&out)
    );
    serde_json::from_slice(&out.stdout).expect("valid JSON")
}

#[test]
fn every_hop_has_the_community_id_tshark_computes() {
    if !have("tshark") {
        return skip("tshark not installed");
    }
    let mut checked = 0;
    for s in SCENARIOS {
        let dir = format!("samples/{s}");
        let mut files = vec![
            format!("{dir}/veth-c1.pcap"),
            format!("{dir}/docker0.pcap"),
            format!("{dir}/eth0.pcap"),
        ];
        files.extend(second_uplink(s));
        let mut args = vec!["correlate", "--format", "json", "--fail-on", "none"];
        args.extend(files.iter().map(String::as_str));
        let doc = json(&args);
        let sources: BTreeMap<String, String> = doc["points"]
            .as_array()
            .expect("points")
            .iter()
            .map(|p| {
                let name = p["name"].as_str().expect("name").to_string();
                (name, p["source"].as_str().expect("source").to_string())
            })
            .collect();
        let mut ids: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
        for c in doc["connections"].as_array().expect("connections") {
            for h in c["hops"].as_array().expect("hops") {
                let Some(id) = h["community_id"].as_str() else {
                    assert!(
                        matches!(h["proto"].as_str(), Some("icmp" | "icmpv6")),
                        "{s}: only ICMP other than echo and errors lacks a Community ID: {h}"
                    );
                    continue;
                };
                // Wireshark 4.0 hashes an ICMPv6 error with the quoted packet's protocol
                // and ports beside the outer addresses; Zeek, the specification's
                // baseline (unit tests) and natcheck use the error's type and code, as
                // Wireshark does for ICMP errors over IPv4.
                if h["proto"] == "icmpv6" && h["icmp_error"].is_object() {
                    continue;
                }
                let point = h["point"].as_str().expect("point");
                let pcap = &sources[point];
                let want = ids.entry(pcap).or_insert_with(|| tshark_ids(pcap));
                assert!(want.contains(id), "{s}: {point} {h}: {id} is not tshark's");
                checked += 1;
            }
        }
        // The flows command gives each flow of a capture the same identifiers.
        let flows = json(&["flows", "--format", "json", &files[2]]);
        let want = tshark_ids(&files[2]);
        for f in flows["points"][0]["flows"].as_array().expect("flows") {
            if f["proto"] == "icmpv6" && f["icmp_error"].is_object() {
                continue;
            }
            if let Some(id) = f["community_id"].as_str() {
                assert!(want.contains(id), "{s}: flow {f}: {id} is not tshark's");
                checked += 1;
            }
        }
    }
    assert!(checked > 300, "only {checked} Community IDs compared");
}
