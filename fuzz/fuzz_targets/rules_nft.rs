//! Fuzzes the `nft -j list ruleset` reader: any bytes, as a whole document or spliced
//! into a rule's expressions, must parse without a panic; and any string placed in the
//! values of a valid document (a priority, a set element, a match's right-hand side, a
//! NAT address, a map key, a comment, a chain name) must leave the valid rule after it
//! intact. The first byte (still part of the input) picks which of the three checks an input gets, so that each
//! execution builds one document rather than three.
#![no_main]

use libfuzzer_sys::fuzz_target;
use natcheck::rules::{nft, MatchKind, Prefix, Target};

const HEAD: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
 {"table": {"family": "ip", "name": "t", "handle": 1}},"#;

const GOOD_RULE: &str = r#"{"rule": {"family": "ip", "table": "t", "chain": "c", "handle": 2, "expr": [
 {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "10.0.0.1"}},
 {"jump": {"target": "x"}}]}}]}"#;

/// The bytes as the contents of a JSON string.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some(&check) = data.first() else {
        return;
    };
    let text = String::from_utf8_lossy(data);
    match check % 3 {
        // The bytes alone.
        0 => {
            let _ = nft::parse_json("fuzz", &text);
        }
        // The bytes spliced in as expressions of a rule.
        1 => {
            let spliced = format!(
                r#"{HEAD} {{"chain": {{"family": "ip", "table": "t", "name": "c", "handle": 1}}}},
 {{"rule": {{"family": "ip", "table": "t", "chain": "c", "handle": 3, "expr": [{text}]}}}},
 {GOOD_RULE}"#
            );
            let _ = nft::parse_json("fuzz", &spliced);
        }
        _ => value_slots(&text),
    }
});

/// The bytes as a string in every kind of value slot of a valid document: the good
/// rule after them is read intact.
fn value_slots(text: &str) {
    let s = escape(text);
    let doc = format!(
        r#"{HEAD}
 {{"chain": {{"family": "ip", "table": "t", "name": "c", "handle": 1, "type": "nat", "hook": "prerouting", "prio": "{s}", "policy": "{s}"}}}},
 {{"set": {{"family": "ip", "table": "t", "name": "s", "type": "ipv4_addr", "elem": ["{s}", {{"prefix": {{"addr": "{s}", "len": 8}}}}, {{"range": ["{s}", "10.0.0.9"]}}]}}}},
 {{"map": {{"family": "ip", "table": "t", "name": "m", "type": ["ipv4_addr", "inet_service"], "map": "verdict", "elem": [[{{"concat": ["{s}", "{s}"]}}, {{"goto": {{"target": "{s}"}}}}]]}}}},
 {{"rule": {{"family": "ip", "table": "t", "chain": "c", "handle": 3, "comment": "{s}", "expr": [
   {{"match": {{"op": "{s}", "left": {{"payload": {{"protocol": "tcp", "field": "dport"}}}}, "right": "{s}"}}}},
   {{"match": {{"op": "==", "left": {{"meta": {{"key": "{s}"}}}}, "right": {{"set": ["{s}", {{"range": ["{s}", "{s}"]}}]}}}}}},
   {{"match": {{"op": "in", "left": {{"ct": {{"key": "state"}}}}, "right": "{s}"}}}},
   {{"match": {{"op": "==", "left": {{"&": [{{"meta": {{"key": "mark"}}}}, "{s}"]}}, "right": "{s}"}}}},
   {{"match": {{"op": "==", "left": {{"payload": {{"protocol": "ip", "field": "saddr"}}}}, "right": "@{s}"}}}},
   {{"mangle": {{"key": {{"meta": {{"key": "mark"}}}}, "value": {{"|": [{{"meta": {{"key": "mark"}}}}, "{s}"]}}}}}},
   {{"vmap": {{"key": {{"numgen": {{"mode": "random", "mod": "{s}"}}}}, "data": {{"set": [["{s}", {{"jump": {{"target": "{s}"}}}}]]}}}}}},
   {{"dnat": {{"addr": "{s}", "port": "{s}", "flags": "{s}"}}}}]}}}},
 {{"rule": {{"family": "ip", "table": "t", "chain": "{s}", "handle": 4, "expr": [
   {{"vmap": {{"key": {{"payload": {{"protocol": "ip", "field": "daddr"}}}}, "data": "@{s}"}}}},
   {{"dnat": {{"addr": {{"map": {{"key": {{"numgen": {{"mode": "inc", "mod": 2}}}}, "data": "@m"}}}}}}}},
   {{"{s}": {{"{s}": "{s}"}}}}]}}}},
 {GOOD_RULE}"#
    );
    let rs = nft::parse_json("fuzz", &doc);
    for w in &rs.warnings {
        assert!(
            !w.message.starts_with("not valid JSON"),
            "the document is valid JSON: {w}\n{doc}"
        );
    }
    let chain = rs
        .tables
        .iter()
        .find(|t| t.name == "t")
        .and_then(|t| t.chain("c"))
        .expect("chain c lost");
    let good: Vec<_> = chain.rules.iter().filter(|r| r.handle == Some(2)).collect();
    assert_eq!(good.len(), 1, "{:?}", chain.rules);
    assert_eq!(good[0].text, "ip daddr 10.0.0.1 jump x");
    assert_eq!(good[0].target, Target::Jump("x".into()));
    assert_eq!(good[0].matches.len(), 1);
    assert_eq!(
        good[0].matches[0].kind,
        MatchKind::Dst(Prefix {
            addr: "10.0.0.1".parse().unwrap(),
            len: 32
        })
    );
}
