//! Expressions and values of the text form → libnftables JSON expressions: what a rule
//! reads from the packet (header fields, `meta`, `ct`, `fib`, `numgen`, hashes, ...),
//! binary operations and concatenations of them; the values they are compared with or
//! set to (numbers, addresses, prefixes, ranges, lists of flags, anonymous sets and
//! maps, `@name`); and the statements made of them: matches, `... set ...` and
//! `... vmap ...`.

use std::net::IpAddr;

use serde_json::{json, Value};

use super::lex::Kind;
use super::{Parser, Res, MAX_DEPTH};
use crate::rules::nft::value::parse_num;

/// Protocols whose header fields are written `PROTO FIELD` (`ip saddr`, `th dport`).
const PAYLOAD: &[&str] = &[
    "ip", "ip6", "tcp", "udp", "udplite", "sctp", "dccp", "th", "icmp", "icmpv6", "igmp", "ether",
    "vlan", "arp", "ah", "esp", "comp", "gre", "geneve", "vxlan", "gretap",
];

/// IPv6 extension headers (`frag frag-off`, `hbh nexthdr`).
const EXTHDR: &[&str] = &["hbh", "rt0", "rt2", "rt4", "srh", "frag", "dst", "mh"];

/// `meta` keys written without `meta` (`iifname "eth0"`, `mark set 1`).
const BARE_META: &[&str] = &[
    "mark",
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
    "ibriport",
    "obriport",
    "pkttype",
    "cpu",
    "cgroup",
    "ipsec",
];

/// The addresses a `fib` lookup may be keyed by.
const FIB_FLAGS: &[&str] = &["saddr", "daddr", "mark", "iif", "oif"];

/// Keys that start an expression reading the packet, followed by a word of their own.
const SELECTORS: &[&str] = &[
    "meta", "ct", "fib", "numgen", "jhash", "symhash", "socket", "osf", "ipsec", "exthdr", "rt",
];

/// A word as a value: a number (decimal or `0x` hex), an address prefix (`10.0.0.0/8`),
/// a range of numbers or addresses (`1000-2000`, `10.0.0.1-10.0.0.9`), or a string.
pub(super) fn literal_word(s: &str) -> Value {
    if let Some(n) = parse_num(s).filter(|_| !s.starts_with('+')) {
        return n.into();
    }
    if let Some((a, len)) = s.rsplit_once('/') {
        if let (Ok(a), Ok(len)) = (a.parse::<IpAddr>(), len.parse::<u8>()) {
            if len <= if a.is_ipv4() { 32 } else { 128 } {
                return json!({"prefix": {"addr": a.to_string(), "len": len}});
            }
        }
    }
    if let Some((lo, hi)) = s.split_once('-') {
        let num = |x: &str| parse_num(x).filter(|_| !x.starts_with('+'));
        if num(lo).is_some() && num(hi).is_some()
            || lo.parse::<IpAddr>().is_ok() && hi.parse::<IpAddr>().is_ok()
        {
            return json!({"range": [literal_word(lo), literal_word(hi)]});
        }
    }
    Value::String(s.to_string())
}

/// One value, or the concatenation of several.
fn concat(mut parts: Vec<Value>) -> Value {
    if parts.len() == 1 {
        parts.swap_remove(0)
    } else {
        json!({ "concat": parts })
    }
}

/// A binary operator's JSON name (`&`, and its word `and`).
fn binop(p: &str) -> Option<&'static str> {
    Some(match p {
        "&" | "and" => "&",
        "|" | "or" => "|",
        "^" | "xor" => "^",
        "<<" | "lshift" => "<<",
        ">>" | "rshift" => ">>",
        _ => return None,
    })
}

fn relop(p: &str) -> Option<&'static str> {
    Some(match p {
        "==" | "eq" => "==",
        "!=" | "ne" => "!=",
        "<" | "lt" => "<",
        ">" | "gt" => ">",
        "<=" | "le" => "<=",
        ">=" | "ge" => ">=",
        _ => return None,
    })
}

/// Whether `left` is a field of flags, which a bare value matches by any of its bits
/// (`ct state new`, `tcp flags syn`: nft's implicit `in`).
fn flag_field(left: &Value) -> bool {
    let ct = left
        .get("ct")
        .and_then(|c| c.get("key"))
        .and_then(Value::as_str);
    let payload = left.get("payload");
    let field = |k: &str| payload.and_then(|p| p.get(k)).and_then(Value::as_str);
    matches!(ct, Some("state" | "status" | "event" | "label"))
        || (field("protocol"), field("field")) == (Some("tcp"), Some("flags"))
}

/// Whether `left` tests for presence (`fib ... oif missing`, `exthdr frag exists`).
fn presence_field(left: &Value) -> bool {
    ["fib", "exthdr", "tcp option", "ip option", "sctp chunk"]
        .iter()
        .any(|k| left.get(*k).is_some())
}

/// The datatype names nft gives a set declared with `typeof` (`ip daddr . tcp dport`
/// → `ipv4_addr`, `inet_service`); an expression without one is named as written.
pub(super) fn datatypes(key: &Value) -> Vec<String> {
    let parts: Vec<&Value> = match key.get("concat") {
        Some(Value::Array(p)) => p.iter().collect(),
        _ => vec![key],
    };
    parts.into_iter().map(datatype).collect()
}

fn datatype(e: &Value) -> String {
    fn s(v: Option<&Value>) -> &str {
        v.and_then(Value::as_str).unwrap_or_default()
    }
    let name = if let Some(p) = e.get("payload") {
        match (s(p.get("protocol")), s(p.get("field"))) {
            ("ip", "saddr" | "daddr") => "ipv4_addr",
            ("ip6", "saddr" | "daddr") => "ipv6_addr",
            ("ip", "protocol") | ("ip6", "nexthdr") => "inet_proto",
            (_, "sport" | "dport") => "inet_service",
            ("ether", "saddr" | "daddr") => "ether_addr",
            ("ether", "type") => "ether_type",
            ("icmp", "type") => "icmp_type",
            ("icmpv6", "type") => "icmpv6_type",
            _ => "",
        }
    } else if let Some(m) = e.get("meta") {
        match s(m.get("key")) {
            "l4proto" => "inet_proto",
            "nfproto" => "nf_proto",
            "mark" => "mark",
            "iifname" | "oifname" => "ifname",
            "iif" | "oif" => "iface_index",
            "protocol" => "ether_type",
            _ => "",
        }
    } else if let Some(c) = e.get("ct") {
        match s(c.get("key")) {
            "mark" => "mark",
            "state" => "ct_state",
            "status" => "ct_status",
            "ip saddr" | "ip daddr" => "ipv4_addr",
            "ip6 saddr" | "ip6 daddr" => "ipv6_addr",
            "proto-src" | "proto-dst" => "inet_service",
            _ => "",
        }
    } else {
        ""
    };
    if name.is_empty() {
        crate::rules::nft::render::expr(e)
    } else {
        name.to_string()
    }
}

/// The right-hand side of a match, and how it was written.
struct Rhs {
    value: Value,
    /// `established,related`: several flags.
    list: bool,
    /// `{ ... }` or `@name`.
    set: bool,
    /// `/ fin,syn,rst,ack`: the bits compared.
    mask: Option<Value>,
}

impl Parser<'_> {
    /// Whether the next words read the packet rather than give a value: a key such as
    /// `meta`, `ct` or `ip` followed by its field, or a bare `meta` key (`mark`).
    pub(super) fn starts_selector(&self) -> bool {
        let Some(w) = self.word() else {
            return false;
        };
        let field_follows = self.word_at(1).is_some_and(|f| f != "." && f != ":");
        BARE_META.contains(&w)
            || (SELECTORS.contains(&w) || PAYLOAD.contains(&w) || EXTHDR.contains(&w))
                && field_follows
            || self.raw_payload()
    }

    /// `@nh,16,16`: bits of a header by offset and length.
    fn raw_payload(&self) -> bool {
        self.word()
            .is_some_and(|w| matches!(w, "@ll" | "@nh" | "@th" | "@ih"))
            && self.punct_at(1) == Some(",")
    }

    /// A word of the expression being read (a field, a key, a mode).
    fn field(&mut self) -> Res<&str> {
        match self.word() {
            Some(w) if w != "." && w != ":" => {
                self.bump();
                Ok(w)
            }
            _ => self.fail(format!("a field name expected, found {}", self.shown())),
        }
    }

    /// A concatenation of packet expressions (`ip daddr . meta l4proto . th dport`).
    pub(super) fn expr(&mut self) -> Res<Value> {
        let mut parts = vec![self.binop_expr()?];
        while self.is_word(".") {
            self.bump();
            parts.push(self.binop_expr()?);
        }
        Ok(concat(parts))
    }

    /// A packet expression and the binary operations applied to it (`meta mark &
    /// 0xff00`, `tcp flags & (syn | ack)`), left to right.
    fn binop_expr(&mut self) -> Res<Value> {
        let mut v = self.selector()?;
        self.binops(&mut v)?;
        Ok(v)
    }

    /// Each operator nests the expression one level deeper (left to right), so a
    /// chain counts against [`MAX_DEPTH`] like brackets do.
    fn binops(&mut self, v: &mut Value) -> Res<()> {
        let mut n = 0;
        while let Some(op) = self
            .tok()
            .filter(|t| matches!(t.kind, Kind::Punct | Kind::Word))
            .and_then(|t| binop(t.text(self.src)))
        {
            n += 1;
            if self.depth + n > MAX_DEPTH {
                return self.fail(format!(
                    "more than {MAX_DEPTH} operators and brackets in one expression"
                ));
            }
            self.bump();
            let rhs = self.operand()?;
            let mut m = serde_json::Map::new();
            m.insert(op.to_string(), Value::Array(vec![v.take(), rhs]));
            *v = Value::Object(m);
        }
        Ok(())
    }

    /// What a packet expression is combined with: a value, or a group of constants
    /// (`(syn | ack)`: those flags; `(0x1 | 0x2)`: their union).
    fn operand(&mut self) -> Res<Value> {
        if !self.is_punct("(") {
            return self.literal();
        }
        self.enter()?;
        self.bump();
        let mut items = vec![self.literal()?];
        while self.is_punct("|") || self.is_punct(",") || self.is_word("or") {
            self.bump();
            items.push(self.literal()?);
        }
        self.expect_punct(")")?;
        self.leave();
        let numbers: Option<Vec<u64>> = items.iter().map(Value::as_u64).collect();
        Ok(match numbers {
            Some(ns) => ns.into_iter().fold(0, |a, n| a | n).into(),
            None if items.len() == 1 => items.swap_remove(0),
            None => items.into(),
        })
    }

    /// One packet expression.
    fn selector(&mut self) -> Res<Value> {
        if self.is_punct("(") {
            self.enter()?;
            self.bump();
            let v = self.expr()?;
            self.expect_punct(")")?;
            self.leave();
            return Ok(v);
        }
        let Some(w) = self.word() else {
            return self.fail(format!("an expression expected, found {}", self.shown()));
        };
        match w {
            "meta" => {
                self.bump();
                let key = self.field()?;
                Ok(json!({"meta": {"key": key}}))
            }
            w if BARE_META.contains(&w) => {
                self.bump();
                Ok(json!({"meta": {"key": w}}))
            }
            "ct" => self.ct_expr(),
            "fib" => self.fib_expr(),
            "numgen" => self.numgen_expr(),
            "jhash" | "symhash" => self.hash_expr(w),
            "rt" if matches!(
                self.word_at(1),
                Some("ip" | "ip6" | "nexthop" | "mtu" | "classid" | "ipsec")
            ) =>
            {
                self.keyed_expr("rt")
            }
            "socket" | "osf" | "ipsec" => self.keyed_expr(w),
            "tcp" | "ip" | "sctp" | "dccp"
                if matches!(self.word_at(1), Some("option" | "chunk")) =>
            {
                self.option_expr(w)
            }
            w if PAYLOAD.contains(&w) => {
                self.bump();
                let f = self.field()?;
                Ok(json!({"payload": {"protocol": w, "field": f}}))
            }
            "exthdr" => {
                self.bump();
                let name = self.field()?;
                Ok(json!({"exthdr": {"name": name}}))
            }
            w if EXTHDR.contains(&w) || w == "rt" => {
                self.bump();
                let f = self.field()?;
                Ok(json!({"exthdr": {"name": w, "field": f}}))
            }
            _ if self.raw_payload() => self.raw_payload_expr(),
            _ => self.fail(format!("{} not understood", self.shown())),
        }
    }

    /// `ct [original|reply] KEY`, `ct original ip daddr`.
    fn ct_expr(&mut self) -> Res<Value> {
        self.bump();
        let mut obj = serde_json::Map::new();
        if let Some(d @ ("original" | "reply")) = self.word() {
            obj.insert("dir".into(), d.into());
            self.bump();
        }
        let mut key = self.field()?.to_string();
        if key == "ip" || key == "ip6" {
            if let Some(f @ ("saddr" | "daddr")) = self.word() {
                key = format!("{key} {f}");
                self.bump();
            }
        }
        obj.insert("key".into(), key.into());
        Ok(json!({ "ct": obj }))
    }

    /// `fib saddr . iif oif`, `fib daddr type`.
    fn fib_expr(&mut self) -> Res<Value> {
        self.bump();
        let mut flags = vec![self.field()?.to_string()];
        while self.is_word(".") && self.word_at(1).is_some_and(|f| FIB_FLAGS.contains(&f)) {
            self.bump();
            flags.push(self.field()?.to_string());
        }
        let result = self.field()?;
        Ok(json!({"fib": {"result": result, "flags": flags}}))
    }

    /// `numgen random|inc mod N [offset M]`.
    fn numgen_expr(&mut self) -> Res<Value> {
        self.bump();
        let mode = self.field()?.to_string();
        self.expect_word("mod")?;
        let modulus = self.number()?;
        let mut offset = 0;
        if self.is_word("offset") {
            self.bump();
            offset = self.number()?;
        }
        Ok(json!({"numgen": {"mode": mode, "mod": modulus, "offset": offset}}))
    }

    /// `jhash EXPR mod N [seed S] [offset O]`, `symhash mod N [offset O]`.
    fn hash_expr(&mut self, kind: &str) -> Res<Value> {
        self.bump();
        let mut obj = serde_json::Map::new();
        if kind == "jhash" {
            obj.insert("expr".into(), self.expr()?);
        }
        self.expect_word("mod")?;
        obj.insert("mod".into(), self.number()?.into());
        while let Some(k @ ("seed" | "offset")) = self.word() {
            self.bump();
            obj.insert(k.into(), self.number()?.into());
        }
        Ok(json!({ kind: obj }))
    }

    /// `socket transparent`, `osf [ttl skip] name`, `rt [ip] nexthop`, `ipsec in
    /// [spnum N] reqid`: a key after the expression's name.
    fn keyed_expr(&mut self, kind: &str) -> Res<Value> {
        self.bump();
        let mut obj = serde_json::Map::new();
        while let Some(w) = self.word() {
            match w {
                "ip" | "ip6" if kind == "rt" => {
                    obj.insert("family".into(), w.into());
                    self.bump();
                }
                "in" | "out" if kind == "ipsec" => {
                    obj.insert("dir".into(), w.into());
                    self.bump();
                }
                "ttl" | "spnum" => {
                    self.bump();
                    let v = self.field()?;
                    obj.insert(w.into(), literal_word(v));
                }
                _ => break,
            }
        }
        let key = self.field()?;
        obj.insert("key".into(), key.into());
        if kind == "socket" && self.is_word("level") {
            self.bump();
            obj.insert("level".into(), self.number()?.into());
        }
        Ok(json!({ kind: obj }))
    }

    /// `tcp option maxseg size`, `sctp chunk data flags`, `ip option ra exists`.
    fn option_expr(&mut self, proto: &str) -> Res<Value> {
        self.bump();
        let what = self.field()?.to_string();
        let name = self.field()?.to_string();
        let mut obj = serde_json::Map::new();
        obj.insert("name".into(), name.into());
        if let Some(f) = self.word().filter(|f| {
            f.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !matches!(*f, "exists" | "missing" | "set")
                && !f.chars().all(|c| c.is_ascii_digit())
        }) {
            obj.insert("field".into(), f.into());
            self.bump();
        }
        Ok(json!({ format!("{proto} {what}"): obj }))
    }

    /// `@nh,16,16`.
    fn raw_payload_expr(&mut self) -> Res<Value> {
        let base = self.field()?.trim_start_matches('@').to_string();
        self.expect_punct(",")?;
        let offset = self.number()?;
        self.expect_punct(",")?;
        let len = self.number()?;
        Ok(json!({"payload": {"base": base, "offset": offset, "len": len}}))
    }

    /// A value written in a rule: a number, address, prefix, range (`a-b` or `a - b`),
    /// string, `@set`, or an anonymous set.
    pub(super) fn literal(&mut self) -> Res<Value> {
        if self.is_punct("{") {
            return self.set_literal();
        }
        let v = match self.tok() {
            Some(t) if t.kind == Kind::Str => Value::String(t.text(self.src).to_string()),
            Some(t)
                if t.kind == Kind::Word && !matches!(t.text(self.src), "." | ":" | "/" | "-") =>
            {
                literal_word(t.text(self.src))
            }
            _ => return self.fail(format!("a value expected, found {}", self.shown())),
        };
        self.bump();
        if self.is_word("-") {
            self.bump();
            let hi = self.literal()?;
            return Ok(json!({"range": [v, hi]}));
        }
        Ok(v)
    }

    /// A value or a concatenation of values (`10.96.0.10 . udp . 53`).
    fn literal_concat(&mut self) -> Res<Value> {
        let mut parts = vec![self.literal()?];
        while self.is_word(".") {
            self.bump();
            parts.push(self.literal()?);
        }
        Ok(concat(parts))
    }

    /// A value a statement sets or maps from: a packet expression (`meta mark | 0x4000`,
    /// `ip daddr . tcp dport`) or a literal, looked up in a map when `map` follows.
    pub(super) fn value_expr(&mut self) -> Res<Value> {
        let mut parts = vec![self.value_term()?];
        while self.is_word(".") {
            self.bump();
            parts.push(self.value_term()?);
        }
        let v = concat(parts);
        if self.is_word("map") {
            self.bump();
            let data = self.map_source()?;
            return Ok(json!({"map": {"key": v, "data": data}}));
        }
        Ok(v)
    }

    fn value_term(&mut self) -> Res<Value> {
        let mut v = if self.starts_selector() || self.is_punct("(") {
            self.selector()?
        } else {
            self.literal()?
        };
        self.binops(&mut v)?;
        Ok(v)
    }

    /// A map to look a key up in: `@name` or `{ key : value, ... }`.
    fn map_source(&mut self) -> Res<Value> {
        match self.word().filter(|w| w.starts_with('@')) {
            Some(name) => {
                self.bump();
                Ok(name.into())
            }
            None => self.set_literal(),
        }
    }

    /// `{ a, b-c, d . e : value, ... }`, over lines.
    pub(super) fn set_literal(&mut self) -> Res<Value> {
        Ok(json!({ "set": self.set_items()? }))
    }

    /// The elements of `{ ... }`: values, or `key : value` pairs of a map; element
    /// options (`timeout`, `expires`, `comment`, `counter`) are left out.
    pub(super) fn set_items(&mut self) -> Res<Vec<Value>> {
        self.expect_punct("{")?;
        self.enter()?;
        let mut items = Vec::new();
        loop {
            self.skip_newlines();
            if self.is_punct("}") {
                self.bump();
                break;
            }
            let key = self.literal_concat()?;
            self.element_options()?;
            let item = if self.is_word(":") {
                self.bump();
                let data = self.map_value()?;
                self.element_options()?;
                json!([key, data])
            } else {
                key
            };
            items.push(item);
            self.skip_newlines();
            if self.is_punct(",") {
                self.bump();
            } else if !self.is_punct("}") {
                return self.fail(format!("\",\" or \"}}\" expected, found {}", self.shown()));
            }
        }
        self.leave();
        Ok(items)
    }

    /// `timeout 30m expires 29m59s comment "x" counter packets 1 bytes 60`.
    pub(super) fn element_options(&mut self) -> Res<()> {
        while let Some(w) = self.word() {
            match w {
                "timeout" | "expires" | "comment" => {
                    self.bump();
                    self.name()?;
                }
                "counter" => {
                    self.bump();
                    if self.is_word("packets") {
                        self.bump();
                        self.number()?;
                        self.expect_word("bytes")?;
                        self.number()?;
                    }
                }
                _ => break,
            }
        }
        Ok(())
    }

    /// The value of a map element: a verdict (`goto chain`), or a value.
    fn map_value(&mut self) -> Res<Value> {
        match self.word() {
            Some(w @ ("accept" | "drop" | "continue" | "return")) => {
                self.bump();
                Ok(json!({ w: null }))
            }
            Some(w @ ("jump" | "goto")) => {
                self.bump();
                let target = self.name()?;
                Ok(json!({ w: {"target": target} }))
            }
            _ => self.literal_concat(),
        }
    }

    /// The right-hand side of a match.
    fn rhs(&mut self) -> Res<Rhs> {
        if self.is_punct("{") {
            let value = self.set_literal()?;
            return Ok(Rhs {
                value,
                list: false,
                set: true,
                mask: None,
            });
        }
        let mut items = vec![self.literal_concat()?];
        while self.is_punct(",") {
            self.bump();
            items.push(self.literal_concat()?);
        }
        let list = items.len() > 1;
        // `syn | ack` (as older nft prints flags compared after a mask): those flags.
        while !list && (self.is_punct("|") || self.is_word("or")) {
            self.bump();
            items.push(self.literal()?);
        }
        let value = if items.len() > 1 {
            Value::Array(items)
        } else {
            items.swap_remove(0)
        };
        let set = value.as_str().is_some_and(|s| s.starts_with('@'));
        let mut mask = None;
        if self.is_word("/") {
            self.bump();
            let mut bits = vec![self.literal()?];
            while self.is_punct(",") {
                self.bump();
                bits.push(self.literal()?);
            }
            mask = Some(if bits.len() == 1 {
                bits.swap_remove(0)
            } else {
                Value::Array(bits)
            });
        }
        Ok(Rhs {
            value,
            list,
            set,
            mask,
        })
    }

    /// A match: `LEFT [OP] RIGHT`; without an operator, `in` for flags and lists,
    /// `==` otherwise (as nft -j prints them).
    fn relational(&mut self, mut left: Value) -> Res<Value> {
        let op = self
            .tok()
            .filter(|t| matches!(t.kind, Kind::Punct | Kind::Word))
            .and_then(|t| relop(t.text(self.src)));
        if op.is_some() {
            self.bump();
        }
        let rhs = self.rhs()?;
        let mut right = rhs.value;
        if let Some(m) = rhs.mask {
            left = json!({"&": [left, m]});
        }
        if presence_field(&left) {
            match right.as_str() {
                Some("exists") => right = true.into(),
                Some("missing") => right = false.into(),
                _ => {}
            }
        }
        let masked = left.get("&").is_some();
        let op = op.unwrap_or({
            let bits = flag_field(&left) && !rhs.set;
            if !masked && (rhs.list || bits) {
                "in"
            } else {
                "=="
            }
        });
        Ok(json!({"match": {"op": op, "left": left, "right": right}}))
    }

    /// A statement that starts with a packet expression: a match, `EXPR set VALUE`, or
    /// `EXPR vmap MAP`.
    pub(super) fn expr_statement(&mut self) -> Res<Value> {
        let left = self.expr()?;
        if self.is_word("set") {
            self.bump();
            let value = self.value_expr()?;
            return Ok(json!({"mangle": {"key": left, "value": value}}));
        }
        if self.is_word("vmap") {
            self.bump();
            let data = self.map_source()?;
            return Ok(json!({"vmap": {"key": left, "data": data}}));
        }
        self.relational(left)
    }
}
