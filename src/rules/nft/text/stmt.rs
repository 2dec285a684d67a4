//! A rule: its statements, each read into the libnftables JSON statement nft -j prints
//! for it (verdicts, `counter`, `log`, `limit`, NAT, `reject`, `notrack`, `queue`,
//! set updates, `xt`, ...; matches, `set` and `vmap` statements are read by `expr`),
//! its comment and its handle.

use serde_json::{json, Map, Value};

use super::lex::Kind;
use super::{Parser, Res};

/// NAT and `tproxy` flags.
const NAT_FLAGS: &[&str] = &["random", "fully-random", "persistent", "netmap"];

/// `log` options that take a value.
const LOG_OPTIONS: &[&str] = &["prefix", "level", "group", "snaplen", "queue-threshold"];

/// A NAT address or port as written: an address, `a-b`, `a/len`; a port or `p-q`.
fn nat_value(s: &str) -> Value {
    super::expr::literal_word(s)
}

/// `10.0.0.1:80`, `[fd00::1]:8443`, `:8080`, `10.0.0.1-10.0.0.9:80-90`, `fd00::1`:
/// the address and the port.
fn split_nat(s: &str) -> (Option<&str>, Option<&str>) {
    if let Some(rest) = s.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((a, p)) => (Some(a), p.strip_prefix(':').filter(|p| !p.is_empty())),
            None => (Some(s), None),
        };
    }
    if let Some(p) = s.strip_prefix(':') {
        return (None, Some(p));
    }
    match s.split_once(':') {
        Some((a, p)) if !p.contains(':') => (Some(a), Some(p)),
        _ => (Some(s), None),
    }
}

/// A verdict keyword's JSON, when `w` is one without an argument.
fn bare_verdict(w: &str) -> Option<Value> {
    matches!(w, "accept" | "drop" | "continue" | "return").then(|| json!({ w: null }))
}

impl Parser<'_> {
    /// One rule of chain `chain` in table `table` (of [`Parser::family`]), from token
    /// `at` to the end of its line, with its `# handle N`.
    pub(super) fn rule(&mut self, table: &str, chain: &str, at: usize) {
        self.omit.clear();
        let (exprs, comment) = self.statements();
        let text = self.rule_text(at, self.pos);
        let mut obj = Map::new();
        obj.insert("family".into(), self.family.as_str().into());
        obj.insert("table".into(), table.into());
        obj.insert("chain".into(), chain.into());
        if let Some(Kind::Handle(h)) = self.tok().map(|t| t.kind) {
            obj.insert("handle".into(), h.into());
            self.bump();
        }
        if let Some(c) = comment {
            obj.insert("comment".into(), c.into());
        }
        obj.insert("expr".into(), exprs.into());
        self.push(json!({ "rule": obj }), at, text);
    }

    /// The text of the rule in tokens `from..to`, without the counter values in it
    /// (`counter packets 3 bytes 180 accept` → `counter accept`).
    fn rule_text(&self, from: usize, to: usize) -> String {
        let mut parts = Vec::new();
        let mut start = from;
        for &(a, b) in &self.omit {
            if a >= start && b <= to {
                parts.push(self.span_text(start, a));
                start = b;
            }
        }
        parts.push(self.span_text(start, to));
        parts.retain(|p| !p.is_empty());
        parts.join(" ")
    }

    /// The statements up to the end of the rule, and its comment. A statement that
    /// cannot be read is a warning, and the rest of the rule one statement natcheck
    /// cannot follow.
    fn statements(&mut self) -> (Vec<Value>, Option<String>) {
        let mut out = Vec::new();
        let mut comment = None;
        while !self.at_end() {
            let at = self.pos;
            if self.is_word("comment") && self.tok_at(1).is_some_and(|t| t.kind == Kind::Str) {
                self.bump();
                comment = self.string().map(str::to_string);
                self.bump();
                continue;
            }
            self.depth = 0;
            let failed = match self.statement() {
                Ok(v) if self.pos > at => {
                    out.push(v);
                    continue;
                }
                Ok(_) => (self.pos, format!("{} not understood", self.shown())),
                Err(f) => (f.at, f.message),
            };
            let (v, c) = self.unreadable(at, failed);
            out.push(v);
            comment = comment.or(c);
            break;
        }
        (out, comment)
    }

    /// The rest of a rule from the statement at `from` on, read as one statement
    /// natcheck cannot follow; the warning says where and why it failed. A comment at
    /// the end of the rule is still its comment.
    fn unreadable(&mut self, from: usize, (at, why): (usize, String)) -> (Value, Option<String>) {
        self.pos = from;
        self.skip_statement();
        let mut end = self.pos;
        let mut comment = None;
        if end >= from + 2
            && self.toks[end - 2].kind == Kind::Word
            && self.toks[end - 2].text(self.src) == "comment"
            && self.toks[end - 1].kind == Kind::Str
        {
            comment = Some(self.toks[end - 1].text(self.src).to_string());
            end -= 2;
        }
        let text = self.span_text(from, end);
        self.warn(
            at.max(from),
            format!("{why}: the rest of the rule, \"{text}\", is read as a target natcheck cannot follow"),
        );
        let name = text.split_whitespace().next().unwrap_or("?").to_string();
        (json!({"unreadable": {"name": name, "text": text}}), comment)
    }

    /// One statement.
    fn statement(&mut self) -> Res<Value> {
        let Some(w) = self.word() else {
            if self.is_punct("(") {
                return self.expr_statement();
            }
            return self.fail(format!("a statement expected, found {}", self.shown()));
        };
        if let Some(v) = bare_verdict(w) {
            self.bump();
            return Ok(v);
        }
        match w {
            "jump" | "goto" => {
                self.bump();
                let target = self.name()?;
                Ok(json!({ w: {"target": target} }))
            }
            "counter" => self.counter(),
            "log" => self.log(),
            "limit" => self.limit(),
            "reject" => self.reject(),
            "notrack" => {
                self.bump();
                Ok(json!({"notrack": null}))
            }
            "dnat" | "snat" => self.nat(w),
            "masquerade" | "redirect" => self.masquerade(w),
            "tproxy" => self.tproxy(),
            "xt" => self.xt(),
            "add" | "update" | "delete" if self.word_at(1).is_some_and(|s| s.starts_with('@')) => {
                self.set_statement(w)
            }
            "ct" if matches!(self.word_at(1), Some("helper" | "timeout" | "expectation"))
                && self.word_at(2) == Some("set") =>
            {
                let key = format!("ct {}", self.word_at(1).unwrap_or_default());
                self.bump();
                self.bump();
                self.bump();
                let v = self.value_expr()?;
                Ok(json!({ key: v }))
            }
            "quota" => self.quota(),
            "ct" if self.word_at(1) == Some("count") => self.ct_count(),
            "meter" => self.meter(),
            "dup" | "fwd" => self.dup(w),
            "flow" if matches!(self.word_at(1), Some("add" | "offload")) => {
                let op = self.word_at(1).unwrap_or_default();
                self.bump();
                self.bump();
                let table = self.name()?;
                Ok(json!({"flow": {"op": op, "flowtable": table}}))
            }
            "queue" | "synproxy" | "last" => self.other_statement(w),
            _ => self.expr_statement(),
        }
    }

    /// `counter`, `counter packets N bytes M`, `counter name NAME`.
    fn counter(&mut self) -> Res<Value> {
        self.bump();
        if self.is_word("packets") {
            let from = self.pos;
            self.bump();
            let packets = self.number()?;
            self.expect_word("bytes")?;
            let bytes = self.number()?;
            self.omit.push((from, self.pos));
            return Ok(json!({"counter": {"packets": packets, "bytes": bytes}}));
        }
        if self.is_word("name") {
            self.bump();
            let name = self.name()?;
            return Ok(json!({ "counter": name }));
        }
        Ok(json!({"counter": null}))
    }

    /// `log [prefix "..."] [level L] [group N] [snaplen N] [queue-threshold N] [flags F]`.
    fn log(&mut self) -> Res<Value> {
        self.bump();
        let mut obj = Map::new();
        loop {
            match self.word() {
                Some(k) if LOG_OPTIONS.contains(&k) => {
                    self.bump();
                    let v = self.name()?;
                    let v = match crate::rules::nft::value::parse_num(&v) {
                        Some(n) if k != "prefix" => Value::from(n),
                        _ => Value::from(v),
                    };
                    obj.insert(k.into(), v);
                }
                Some("flags") => {
                    self.bump();
                    let mut flags = vec![Value::from(self.name()?)];
                    while self.is_punct(",") {
                        self.bump();
                        flags.push(self.name()?.into());
                    }
                    obj.insert("flags".into(), flags.into());
                }
                _ => break,
            }
        }
        Ok(if obj.is_empty() {
            json!({"log": null})
        } else {
            json!({ "log": obj })
        })
    }

    /// `limit rate [over] N/UNIT [burst N packets]`, `limit rate N mbytes/second`,
    /// `limit name NAME`.
    fn limit(&mut self) -> Res<Value> {
        self.bump();
        if self.is_word("name") {
            self.bump();
            let name = self.name()?;
            return Ok(json!({ "limit": name }));
        }
        self.expect_word("rate")?;
        let mut obj = Map::new();
        if self.is_word("over") {
            self.bump();
            obj.insert("inv".into(), true.into());
        }
        let first = self.name()?;
        let (rate, per) = match first.split_once('/') {
            Some((r, per)) => (r.to_string(), per.to_string()),
            None => {
                // `1 mbytes/second`
                let unit = self.name()?;
                let (u, per) = unit.split_once('/').unwrap_or((&unit, "second"));
                obj.insert("rate_unit".into(), u.into());
                (first, per.to_string())
            }
        };
        let Some(rate) = crate::rules::nft::value::parse_num(&rate) else {
            return self.fail(format!("a rate expected, found {rate:?}"));
        };
        obj.insert("rate".into(), rate.into());
        obj.insert("per".into(), per.into());
        if self.is_word("burst") {
            self.bump();
            let burst = self.number()?;
            obj.insert("burst".into(), burst.into());
            if let Some(u) = self
                .word()
                .filter(|u| u.chars().all(|c| c.is_ascii_alphabetic()))
            {
                obj.insert("burst_unit".into(), u.into());
                self.bump();
            }
        }
        Ok(json!({ "limit": obj }))
    }

    /// `reject`, `reject with icmp|icmpv6|icmpx [type] CODE`, `reject with tcp reset`.
    /// Without `with`, the kernel's default for the table's family.
    fn reject(&mut self) -> Res<Value> {
        self.bump();
        if !self.is_word("with") {
            let kind = match self.family.as_str() {
                "ip" => "icmp",
                "ip6" => "icmpv6",
                _ => "icmpx",
            };
            return Ok(json!({"reject": {"type": kind, "expr": "port-unreachable"}}));
        }
        self.bump();
        let kind = self.name()?;
        if kind == "tcp" {
            self.expect_word("reset")?;
            return Ok(json!({"reject": {"type": "tcp reset"}}));
        }
        if self.is_word("type") {
            self.bump();
        }
        let code = self.name()?;
        let code = match crate::rules::nft::value::parse_num(&code) {
            Some(n) => Value::from(n),
            None => Value::from(code),
        };
        Ok(json!({"reject": {"type": kind, "expr": code}}))
    }

    /// `random`, `fully-random,persistent`, ...: one flag a string, several a list.
    fn nat_flags(&mut self, obj: &mut Map<String, Value>) {
        let mut flags = Vec::new();
        while let Some(f) = self.word().filter(|f| NAT_FLAGS.contains(f)) {
            flags.push(Value::from(f));
            self.bump();
            if self.is_punct(",") && self.word_at(1).is_some_and(|f| NAT_FLAGS.contains(&f)) {
                self.bump();
            }
        }
        match flags.len() {
            0 => {}
            1 => {
                obj.insert("flags".into(), flags.swap_remove(0));
            }
            _ => {
                obj.insert("flags".into(), flags.into());
            }
        }
    }

    /// `dnat|snat [ip|ip6] [addr . port] [to] ADDRESS[:PORT] [FLAGS]`, the address an
    /// expression (`ip daddr map {...}`) or a literal.
    fn nat(&mut self, kind: &str) -> Res<Value> {
        self.bump();
        let mut obj = Map::new();
        if let Some(f @ ("ip" | "ip6")) = self.word() {
            if matches!(self.word_at(1), Some("to" | "addr" | "prefix")) {
                obj.insert("family".into(), f.into());
                self.bump();
            }
        }
        if self.is_word("addr") && self.word_at(1) == Some(".") && self.word_at(2) == Some("port") {
            self.pos += 3;
        } else if self.is_word("prefix") {
            self.bump();
        }
        if self.is_word("to") {
            self.bump();
        }
        if self.starts_selector() {
            let addr = self.value_expr()?;
            obj.insert("addr".into(), addr);
        } else {
            let Some(w) = self.word() else {
                return self.fail(format!("an address expected, found {}", self.shown()));
            };
            self.bump();
            let (addr, port) = split_nat(w);
            if let Some(a) = addr {
                obj.insert("addr".into(), nat_value(a));
            }
            if let Some(p) = port {
                obj.insert("port".into(), nat_value(p));
            }
        }
        self.nat_flags(&mut obj);
        Ok(json!({ kind: obj }))
    }

    /// `masquerade|redirect [to [:]PORT] [FLAGS]`.
    fn masquerade(&mut self, kind: &str) -> Res<Value> {
        self.bump();
        let mut obj = Map::new();
        if self.is_word("to") {
            self.bump();
            let Some(w) = self.word() else {
                return self.fail(format!("a port expected, found {}", self.shown()));
            };
            self.bump();
            obj.insert("port".into(), nat_value(w.strip_prefix(':').unwrap_or(w)));
        }
        self.nat_flags(&mut obj);
        Ok(if obj.is_empty() {
            json!({ kind: null })
        } else {
            json!({ kind: obj })
        })
    }

    /// `tproxy [ip|ip6] to ADDRESS[:PORT]`, `tproxy to :PORT`.
    fn tproxy(&mut self) -> Res<Value> {
        self.bump();
        let mut obj = Map::new();
        if let Some(f @ ("ip" | "ip6")) = self.word() {
            obj.insert("family".into(), f.into());
            self.bump();
        }
        self.expect_word("to")?;
        let Some(w) = self.word() else {
            return self.fail(format!("an address expected, found {}", self.shown()));
        };
        self.bump();
        let (addr, port) = split_nat(w);
        if let Some(a) = addr {
            obj.insert("addr".into(), nat_value(a));
        }
        if let Some(p) = port {
            obj.insert("port".into(), nat_value(p));
        }
        Ok(json!({ "tproxy": obj }))
    }

    /// `xt match NAME` / `xt target NAME`: what iptables-nft left that nft could not
    /// translate.
    fn xt(&mut self) -> Res<Value> {
        self.bump();
        let kind = self.name()?;
        let name = self.name()?;
        Ok(json!({"xt": {"type": kind, "name": name}}))
    }

    /// `add @set { ip saddr timeout 10s }`, `update @map { ... : ... }`: the packet's
    /// key added to a set; the element's options are skipped.
    fn set_statement(&mut self, op: &str) -> Res<Value> {
        self.bump();
        let set = self.word().unwrap_or_default().to_string();
        self.bump();
        if !self.is_punct("{") {
            return self.fail(format!("\"{{\" expected, found {}", self.shown()));
        }
        let open = self.pos;
        self.bump();
        let elem = self.value_expr()?;
        self.pos = open;
        self.skip_group();
        Ok(json!({"set": {"op": op, "elem": elem, "set": set}}))
    }

    /// `quota [over|until] N UNIT [used N UNIT]`, `quota name NAME`.
    fn quota(&mut self) -> Res<Value> {
        self.bump();
        if self.is_word("name") {
            self.bump();
            let name = self.name()?;
            return Ok(json!({ "quota": name }));
        }
        let mut obj = Map::new();
        match self.word() {
            Some("over") => {
                obj.insert("inv".into(), true.into());
                self.bump();
            }
            Some("until") => self.bump(),
            _ => {}
        }
        obj.insert("val".into(), self.number()?.into());
        obj.insert("val_unit".into(), self.name()?.into());
        if self.is_word("used") {
            self.bump();
            obj.insert("used".into(), self.number()?.into());
            obj.insert("used_unit".into(), self.name()?.into());
        }
        Ok(json!({ "quota": obj }))
    }

    /// `ct count [over] N`.
    fn ct_count(&mut self) -> Res<Value> {
        self.bump();
        self.bump();
        let mut obj = Map::new();
        if self.is_word("over") {
            obj.insert("inv".into(), true.into());
            self.bump();
        }
        obj.insert("val".into(), self.number()?.into());
        Ok(json!({ "ct count": obj }))
    }

    /// `meter NAME [size N] { KEY [timeout T] STATEMENT }`.
    fn meter(&mut self) -> Res<Value> {
        self.bump();
        let mut obj = Map::new();
        obj.insert("name".into(), self.name()?.into());
        if self.is_word("size") {
            self.bump();
            obj.insert("size".into(), self.number()?.into());
        }
        self.expect_punct("{")?;
        obj.insert("key".into(), self.expr()?);
        self.element_options()?;
        obj.insert("stmt".into(), self.statement()?);
        self.expect_punct("}")?;
        Ok(json!({ "meter": obj }))
    }

    /// `dup to ADDRESS [device DEV]`, `fwd [ip|ip6] to ADDRESS device DEV`, `fwd to DEV`.
    fn dup(&mut self, kind: &str) -> Res<Value> {
        self.bump();
        let mut obj = Map::new();
        if let Some(f @ ("ip" | "ip6")) = self.word() {
            obj.insert("family".into(), f.into());
            self.bump();
        }
        self.expect_word("to")?;
        let to = self.name()?;
        let is_addr = to.parse::<std::net::IpAddr>().is_ok() || obj.contains_key("family");
        obj.insert(if is_addr { "addr" } else { "dev" }.into(), to.into());
        if self.is_word("device") {
            self.bump();
            obj.insert("dev".into(), self.name()?.into());
        }
        Ok(json!({ kind: obj }))
    }

    /// A statement natcheck reads only as far as its name (`queue`, `synproxy`,
    /// `last`): the words up to the next statement, kept as its text.
    fn other_statement(&mut self, key: &str) -> Res<Value> {
        let from = self.pos;
        for _ in 0..key.split(' ').count() {
            self.bump();
        }
        while !self.at_end() && !self.starts_statement() {
            if self.is_punct("{") {
                self.skip_group();
            } else {
                self.bump();
            }
        }
        let text = self.span_text(from, self.pos);
        let rest = text.strip_prefix(key).unwrap_or(&text).trim().to_string();
        Ok(json!({ key: rest }))
    }

    /// Whether the next word starts a statement that ends the words of the one before
    /// (`queue num 1 bypass` stops before `accept`; `quota 10 mbytes` before `drop`).
    fn starts_statement(&self) -> bool {
        let Some(w) = self.word() else {
            return false;
        };
        bare_verdict(w).is_some()
            || matches!(
                w,
                "jump"
                    | "goto"
                    | "counter"
                    | "log"
                    | "limit"
                    | "reject"
                    | "notrack"
                    | "dnat"
                    | "snat"
                    | "masquerade"
                    | "redirect"
                    | "tproxy"
                    | "queue"
                    | "meta"
                    | "ct"
            )
    }
}
