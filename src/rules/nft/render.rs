//! A readable, nft-like rendering of JSON expressions and statements: what a rule's
//! `text` shows (`ip daddr 10.96.0.10 tcp dport 53 jump KUBE-SVC-X`), and how map keys
//! and selectors are spelled (`ip daddr . meta l4proto . th dport`, `10.96.0.10 . udp . 53`).

use serde_json::{Map, Value};

/// How immediates print: interface names quoted, marks in hex (as `nft list` does).
#[derive(Clone, Copy, Default)]
struct Style {
    quote: bool,
    hex: bool,
    /// Inside an operator chain whose style the outermost operator decided: the
    /// operators within do not look again.
    decided: bool,
}

/// Meta keys nft prints without the `meta` keyword.
const BARE_META: &[&str] = &[
    "iif",
    "oif",
    "iifname",
    "oifname",
    "iiftype",
    "oiftype",
    "iifgroup",
    "oifgroup",
    "skuid",
    "skgid",
    "nftrace",
    "rtclassid",
    "ibrname",
    "obrname",
    "pkttype",
    "cpu",
    "cgroup",
    "ipsec",
];

/// The single key and value of a one-key object (`{"payload": {...}}`).
pub(super) fn single(v: &Value) -> Option<(&str, &Value)> {
    let obj = v.as_object()?;
    if obj.len() == 1 {
        obj.iter().next().map(|(k, v)| (k.as_str(), v))
    } else {
        None
    }
}

fn field<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj.get(key).and_then(Value::as_str)
}

/// An expression as nft prints it.
pub(super) fn expr(v: &Value) -> String {
    styled(v, Style::default())
}

/// The style the right-hand side of a match on `left` prints in: quoted after an
/// interface name, hexadecimal after a mark. Decided from the words `left` holds, not
/// from its printed form, so that a chain of operators (`meta mark | 1 | 2 ...`, each
/// deciding the style of its left side) costs one walk, not one print per level.
fn style_for(left: &Value) -> Style {
    Style {
        quote: mentions(
            left,
            &["iifname", "oifname", "iif", "oif", "ibrname", "obrname"],
        ),
        hex: mentions(left, &["mark"]),
        decided: false,
    }
}

/// Whether a key or string of `v`, split at spaces and dots as nft prints them, is one
/// of `words`.
fn mentions(v: &Value, words: &[&str]) -> bool {
    let has = |s: &str| s.split([' ', '.']).any(|w| words.contains(&w));
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            Value::String(s) if has(s) => return true,
            Value::Array(items) => stack.extend(items),
            Value::Object(obj) => {
                if obj.keys().any(|k| has(k)) {
                    return true;
                }
                stack.extend(obj.values());
            }
            _ => {}
        }
    }
    false
}

fn styled(v: &Value, st: Style) -> String {
    match v {
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match n.as_u64() {
            Some(u) if st.hex => format!("0x{u:08x}"),
            _ => n.to_string(),
        },
        Value::String(s) => {
            if st.quote && !s.starts_with('@') {
                format!("\"{s}\"")
            } else {
                s.clone()
            }
        }
        Value::Array(items) => items
            .iter()
            .map(|i| styled(i, st))
            .collect::<Vec<_>>()
            .join(","),
        Value::Object(obj) => object(obj, st),
    }
}

fn object(obj: &Map<String, Value>, st: Style) -> String {
    let Some((key, val)) = obj.iter().next().filter(|_| obj.len() == 1) else {
        return Value::Object(obj.clone()).to_string();
    };
    let key = key.as_str();
    literal(key, val, st)
        .or_else(|| selector(key, val))
        .or_else(|| computed(key, val, st))
        .or_else(|| verdict(key, val))
        .unwrap_or_else(|| format!("{key} {val}"))
}

/// A value written out: a set, a range, a prefix, a concatenation, a set element.
fn literal(key: &str, val: &Value, st: Style) -> Option<String> {
    Some(match key {
        "set" => match val {
            Value::Array(items) => format!(
                "{{ {} }}",
                items
                    .iter()
                    .map(|i| set_item(i, st))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            other => styled(other, st),
        },
        "range" => match val {
            Value::Array(r) if r.len() == 2 => {
                format!("{}-{}", styled(&r[0], st), styled(&r[1], st))
            }
            other => other.to_string(),
        },
        "prefix" => format!(
            "{}/{}",
            val.get("addr").map(|a| styled(a, st)).unwrap_or_default(),
            val.get("len").map(expr).unwrap_or_default()
        ),
        "concat" => match val {
            Value::Array(items) => items
                .iter()
                .map(|i| styled(i, st))
                .collect::<Vec<_>>()
                .join(" . "),
            other => other.to_string(),
        },
        "elem" => val.get("val").map(|v| styled(v, st)).unwrap_or_default(),
        _ => return None,
    })
}

/// What a packet is read by: a header field, a meta or ct key, a fib lookup, an
/// extension header or option, a routing or socket key.
fn selector(key: &str, val: &Value) -> Option<String> {
    Some(match key {
        "payload" => match (field(val, "protocol"), field(val, "field")) {
            (Some(p), Some(f)) => format!("{p} {f}"),
            _ => format!(
                "@{},{},{}",
                field(val, "base").unwrap_or("?"),
                val.get("offset").map(expr).unwrap_or_default(),
                val.get("len").map(expr).unwrap_or_default()
            ),
        },
        "meta" => {
            let k = field(val, "key").or(val.as_str()).unwrap_or("?");
            if BARE_META.contains(&k) {
                k.to_string()
            } else {
                format!("meta {k}")
            }
        }
        "ct" => {
            let mut s = String::from("ct");
            if let Some(d) = field(val, "dir") {
                s.push(' ');
                s.push_str(d);
            }
            if let Some(f) = field(val, "family") {
                s.push(' ');
                s.push_str(f);
            }
            s.push(' ');
            s.push_str(field(val, "key").unwrap_or("?"));
            s
        }
        "fib" => {
            let flags = match val.get("flags") {
                Some(Value::Array(f)) => f.iter().map(expr).collect::<Vec<_>>().join(" . "),
                Some(other) => expr(other),
                None => String::new(),
            };
            format!("fib {flags} {}", field(val, "result").unwrap_or("?"))
        }
        "exthdr" => format!(
            "exthdr {} {}",
            field(val, "name").unwrap_or("?"),
            field(val, "field").unwrap_or("exists")
        ),
        "tcp option" | "ip option" | "sctp chunk" | "dccp option" => format!(
            "{key} {} {}",
            field(val, "name").unwrap_or("?"),
            field(val, "field").unwrap_or("exists")
        ),
        "rt" | "socket" | "osf" | "ipsec" => format!(
            "{key} {}",
            field(val, "key").or(field(val, "name")).unwrap_or("?")
        ),
        _ => return None,
    })
}

/// A value computed from others: a number generator, a hash, a binary operation, a
/// map lookup.
fn computed(key: &str, val: &Value, st: Style) -> Option<String> {
    Some(match key {
        "numgen" => {
            let mut s = format!(
                "numgen {} mod {}",
                field(val, "mode").unwrap_or("?"),
                val.get("mod").map(expr).unwrap_or_default()
            );
            if let Some(o) = val
                .get("offset")
                .and_then(Value::as_u64)
                .filter(|&o| o != 0)
            {
                s.push_str(&format!(" offset {o}"));
            }
            s
        }
        "jhash" | "symhash" => {
            let mut s = key.to_string();
            if let Some(e) = val.get("expr") {
                s.push(' ');
                s.push_str(&expr(e));
            }
            s.push_str(&format!(
                " mod {}",
                val.get("mod").map(expr).unwrap_or_default()
            ));
            s
        }
        "&" | "|" | "^" | "<<" | ">>" => match val {
            Value::Array(ops) if ops.len() == 2 => {
                let inner = Style {
                    hex: st.hex || (!st.decided && mentions(&ops[0], &["mark"])),
                    decided: true,
                    ..st
                };
                format!(
                    "{} {key} {}",
                    styled(&ops[0], inner),
                    styled(&ops[1], inner)
                )
            }
            other => format!("{key} {other}"),
        },
        "map" => format!(
            "{} map {}",
            val.get("key").map(expr).unwrap_or_default(),
            val.get("data").map(expr).unwrap_or_default()
        ),
        _ => return None,
    })
}

/// A verdict in a verdict map (`goto KUBE-SVC-X`).
fn verdict(key: &str, val: &Value) -> Option<String> {
    Some(match key {
        "accept" | "drop" | "continue" | "return" => key.to_string(),
        "jump" | "goto" => format!("{key} {}", field(val, "target").unwrap_or("?")),
        _ => return None,
    })
}

/// A set element; map elements are `[key, value]` pairs.
fn set_item(v: &Value, st: Style) -> String {
    match v {
        Value::Array(pair) if pair.len() == 2 => {
            format!("{} : {}", styled(&pair[0], st), expr(&pair[1]))
        }
        other => styled(other, st),
    }
}

/// A NAT address and port as `nft list` prints them (`[fd00::10]:8443`).
fn nat_to(val: &Value) -> String {
    let addr = val.get("addr").map(expr);
    let port = val.get("port").map(expr);
    let v6 = addr
        .as_deref()
        .is_some_and(|a| a.contains(':') && !a.contains(" map "));
    match (addr, port) {
        (Some(a), Some(p)) if v6 => format!(" to [{a}]:{p}"),
        (Some(a), Some(p)) => format!(" to {a}:{p}"),
        (Some(a), None) => format!(" to {a}"),
        (None, Some(p)) => format!(" to :{p}"),
        (None, None) => String::new(),
    }
}

fn flags(val: &Value) -> String {
    match val.get("flags") {
        Some(Value::Array(f)) => format!(" {}", f.iter().map(expr).collect::<Vec<_>>().join(",")),
        Some(Value::String(f)) => format!(" {f}"),
        _ => String::new(),
    }
}

/// One statement of a rule's `expr` array.
pub(super) fn statement(stmt: &Value) -> String {
    let Some((key, val)) = single(stmt) else {
        return stmt.to_string();
    };
    match key {
        "match" => {
            let left = val.get("left").unwrap_or(&Value::Null);
            let right = val.get("right").unwrap_or(&Value::Null);
            let op = field(val, "op").unwrap_or("==");
            let r = styled(right, style_for(left));
            // nft leaves `==` out except after a binary operation, where it is needed
            // to read the line (`meta mark & 0x00004000 == 0x00000000`).
            let binop = single(left).is_some_and(|(k, _)| ["&", "|", "^", "<<", ">>"].contains(&k));
            match op {
                "==" if binop => format!("{} == {r}", expr(left)),
                "==" | "in" => format!("{} {r}", expr(left)),
                _ => format!("{} {op} {r}", expr(left)),
            }
        }
        "counter" => match val {
            Value::String(name) => format!("counter name \"{name}\""),
            _ => "counter".into(),
        },
        "mangle" => {
            let k = val.get("key").unwrap_or(&Value::Null);
            let v = val.get("value").unwrap_or(&Value::Null);
            format!("{} set {}", expr(k), styled(v, style_for(k)))
        }
        "dnat" | "snat" => {
            let fam = field(val, "family")
                .map(|f| format!(" {f}"))
                .unwrap_or_default();
            format!("{key}{fam}{}{}", nat_to(val), flags(val))
        }
        "masquerade" | "redirect" => format!("{key}{}{}", nat_to(val), flags(val)),
        "reject" => match (field(val, "type"), val.get("expr")) {
            (Some(t), Some(e)) => format!("reject with {t} {}", expr(e)),
            (Some(t), None) => format!("reject with {t}"),
            _ => "reject".into(),
        },
        "log" => {
            let mut s = String::from("log");
            if let Some(p) = field(val, "prefix") {
                s.push_str(&format!(" prefix \"{p}\""));
            }
            if let Some(g) = val.get("group") {
                s.push_str(&format!(" group {}", expr(g)));
            }
            if let Some(l) = field(val, "level") {
                s.push_str(&format!(" level {l}"));
            }
            s
        }
        "limit" => {
            let over = if val.get("inv").and_then(Value::as_bool) == Some(true) {
                "over "
            } else {
                ""
            };
            format!(
                "limit rate {over}{}{}/{}",
                val.get("rate").map(expr).unwrap_or_default(),
                field(val, "rate_unit")
                    .filter(|u| *u != "packets")
                    .map(|u| format!(" {u}"))
                    .unwrap_or_default(),
                field(val, "per").unwrap_or("second")
            )
        }
        "vmap" => format!(
            "{} vmap {}",
            val.get("key").map(expr).unwrap_or_default(),
            val.get("data").map(expr).unwrap_or_default()
        ),
        "xt" => format!(
            "xt {} {}",
            field(val, "type").unwrap_or("?"),
            field(val, "name").unwrap_or("?")
        ),
        "set" => format!(
            "{} {} {{ {} }}",
            field(val, "op").unwrap_or("update"),
            field(val, "set").unwrap_or("?"),
            val.get("elem").map(expr).unwrap_or_default()
        ),
        "notrack" | "accept" | "drop" | "continue" | "return" => key.into(),
        "jump" | "goto" => format!("{key} {}", field(val, "target").unwrap_or("?")),
        "queue" => "queue".into(),
        "ct count" | "quota" | "meter" | "fwd" | "dup" | "flow" => stateful(key, val),
        _ => match val {
            Value::Null => key.into(),
            Value::Object(o) if o.is_empty() => key.into(),
            other => format!("{key} {}", expr(other)),
        },
    }
}

/// `ct count over 20`, `quota 100 mbytes`, `meter flood size 128 { ip saddr limit rate
/// 10/second }`, `fwd to "eth1"`, `dup to 10.0.0.2 device "eth0"`, `flow add @ft`.
fn stateful(key: &str, val: &Value) -> String {
    let over = if val.get("inv").and_then(Value::as_bool) == Some(true) {
        "over "
    } else {
        ""
    };
    let get = |k: &str| val.get(k).map(expr);
    let dev = |v: &Value| {
        let d = styled(
            v,
            Style {
                quote: true,
                ..Style::default()
            },
        );
        format!(" device {d}")
    };
    match (key, val) {
        (_, Value::String(name)) => format!("{key} name \"{name}\""),
        ("ct count", _) => format!("ct count {over}{}", get("val").unwrap_or_default()),
        ("quota", _) => format!(
            "quota {over}{} {}",
            get("val").unwrap_or_default(),
            get("val_unit").unwrap_or_default()
        ),
        ("meter", _) => format!(
            "meter {}{} {{ {} {} }}",
            get("name").unwrap_or_default(),
            get("size")
                .map(|s| format!(" size {s}"))
                .unwrap_or_default(),
            get("key").unwrap_or_default(),
            val.get("stmt").map(statement).unwrap_or_default()
        ),
        ("flow", _) => format!(
            "flow {} {}",
            get("op").unwrap_or_default(),
            get("flowtable").unwrap_or_default()
        ),
        (_, _) => {
            let fam = get("family").map(|f| format!(" {f}")).unwrap_or_default();
            match (val.get("addr"), val.get("dev")) {
                (Some(a), d) => format!(
                    "{key}{fam} to {}{}",
                    expr(a),
                    d.map(dev).unwrap_or_default()
                ),
                (None, Some(d)) => {
                    format!("{key}{fam} to {}", dev(d).trim_start_matches(" device "))
                }
                (None, None) => key.to_string(),
            }
        }
    }
}

/// A rule as `nft list` would show it (counter values left out: they are kept apart).
pub(super) fn rule(exprs: &[Value], comment: Option<&str>) -> String {
    let mut s = exprs
        .iter()
        .map(statement)
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if let Some(c) = comment {
        if !s.is_empty() {
            s.push(' ');
        }
        s.push_str(&format!("comment \"{c}\""));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Each operator of a chain decides the style of its left side; deciding it by
    /// printing that side made a chain of n operators cost 2^n prints (a 1 kB input
    /// never finished). 5 000 operators now print in one pass.
    #[test]
    fn a_long_operator_chain_prints_in_linear_time() {
        for (left, first) in [
            (json!({"meta": {"key": "mark"}}), "meta mark"),
            (
                json!({"payload": {"protocol": "tcp", "field": "dport"}}),
                "tcp dport",
            ),
        ] {
            let mut v = left;
            for i in 0..5_000 {
                let mut m = Map::new();
                m.insert("|".into(), Value::Array(vec![v, json!(i % 7)]));
                v = Value::Object(m);
            }
            // Printing (and freeing) recurses once per operator.
            let text = std::thread::Builder::new()
                .stack_size(256 << 20)
                .spawn(move || expr(&v))
                .unwrap()
                .join()
                .unwrap();
            assert!(text.starts_with(first), "{}", &text[..40]);
            let hex = first.contains("mark");
            let last = if hex { "| 0x00000001" } else { "| 1" };
            assert!(text.ends_with(last), "{}", &text[text.len() - 40..]);
            assert_eq!(text.matches(" | ").count(), 5_000);
        }
    }

    #[test]
    fn statements_print_like_nft_list() {
        let cases = [
            (
                json!({"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "10.96.0.10"}}),
                "ip daddr 10.96.0.10",
            ),
            (
                json!({"match": {"op": "!=", "left": {"meta": {"key": "iifname"}}, "right": "docker0"}}),
                "iifname != \"docker0\"",
            ),
            (
                json!({"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}}),
                "ct state established,related",
            ),
            (
                json!({"match": {"op": "==", "left": {"&": [{"meta": {"key": "mark"}}, 16384]}, "right": 0}}),
                "meta mark & 0x00004000 == 0x00000000",
            ),
            (
                json!({"mangle": {"key": {"meta": {"key": "mark"}}, "value": {"|": [{"meta": {"key": "mark"}}, 16384]}}}),
                "meta mark set meta mark | 0x00004000",
            ),
            (
                json!({"vmap": {"key": {"numgen": {"mode": "random", "mod": 2, "offset": 0}}, "data": {"set": [[0, {"goto": {"target": "a"}}], [1, {"goto": {"target": "b"}}]]}}}),
                "numgen random mod 2 vmap { 0 : goto a, 1 : goto b }",
            ),
            (
                json!({"vmap": {"key": {"concat": [{"payload": {"protocol": "ip", "field": "daddr"}}, {"meta": {"key": "l4proto"}}, {"payload": {"protocol": "th", "field": "dport"}}]}, "data": "@service-ips"}}),
                "ip daddr . meta l4proto . th dport vmap @service-ips",
            ),
            (
                json!({"dnat": {"addr": "fd00::10", "port": 8443}}),
                "dnat to [fd00::10]:8443",
            ),
            (
                json!({"dnat": {"addr": {"range": ["192.168.1.11", "192.168.1.12"]}, "port": {"range": [6000, 6010]}, "flags": "persistent"}}),
                "dnat to 192.168.1.11-192.168.1.12:6000-6010 persistent",
            ),
            (
                json!({"masquerade": {"port": {"range": [10000, 20000]}, "flags": "fully-random"}}),
                "masquerade to :10000-20000 fully-random",
            ),
            (json!({"masquerade": null}), "masquerade"),
            (
                json!({"reject": {"type": "icmp", "expr": "port-unreachable"}}),
                "reject with icmp port-unreachable",
            ),
            (
                json!({"xt": {"type": "target", "name": "MASQUERADE"}}),
                "xt target MASQUERADE",
            ),
            (
                json!({"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}}, "right": "local"}}),
                "fib daddr type local",
            ),
            (
                json!({"limit": {"rate": 5, "burst": 5, "per": "second"}}),
                "limit rate 5/second",
            ),
            (
                json!({"ct count": {"val": 20, "inv": true}}),
                "ct count over 20",
            ),
            (
                json!({"quota": {"val": 100, "val_unit": "mbytes", "inv": true}}),
                "quota over 100 mbytes",
            ),
            (
                json!({"meter": {"key": {"elem": {"val": {"payload": {"protocol": "ip", "field": "saddr"}}, "timeout": 10}}, "stmt": {"limit": {"rate": 10, "burst": 5, "per": "second", "inv": true}}, "size": 128, "name": "flood"}}),
                "meter flood size 128 { ip saddr limit rate over 10/second }",
            ),
            (json!({"fwd": {"dev": "lo"}}), "fwd to \"lo\""),
            (
                json!({"dup": {"addr": "10.0.0.2", "dev": "eth0"}}),
                "dup to 10.0.0.2 device \"eth0\"",
            ),
            (
                json!({"flow": {"op": "add", "flowtable": "@ft"}}),
                "flow add @ft",
            ),
        ];
        for (stmt, want) in cases {
            assert_eq!(statement(&stmt), want, "{stmt}");
        }
        assert_eq!(
            rule(
                &[
                    json!({"counter": {"packets": 3, "bytes": 180}}),
                    json!({"accept": null})
                ],
                Some("x y")
            ),
            "counter accept comment \"x y\""
        );
    }
}
