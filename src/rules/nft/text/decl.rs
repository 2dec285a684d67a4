//! Declarations: the top level of the input, `table` blocks, `chain` blocks with their
//! base chain's `type ... hook ... priority ...; policy ...;`, `set` and `map` blocks
//! with their type and elements, and the same declarations written as commands (`add
//! table`, `add chain`, `add rule`, `add element`, ...).

use serde_json::{json, Map, Value};

use super::expr::datatypes;
use super::lex::Kind;
use super::{Parser, Res};
use crate::rules::nft::family;

/// Statements of a table that declare stateful objects natcheck does not model.
const TABLE_OBJECTS: &[&str] = &[
    "flowtable",
    "counter",
    "quota",
    "limit",
    "ct",
    "secmark",
    "synproxy",
    "tunnel",
];

/// Lines of a set or map block that do not bear on its members.
const SET_OPTIONS: &[&str] = &[
    "timeout",
    "gc-interval",
    "size",
    "policy",
    "auto-merge",
    "counter",
    "quota",
    "stateful",
];

/// A set or map's key or value type: one name, or the list of a concatenation.
fn type_value(names: Vec<String>) -> Value {
    match <[String; 1]>::try_from(names) {
        Ok([one]) => Value::String(one),
        Err(many) => Value::Array(many.into_iter().map(Value::String).collect()),
    }
}

impl Parser<'_> {
    /// The whole input: tables, commands, and what nft files may hold besides.
    pub(super) fn file(&mut self) {
        loop {
            self.skip_blank();
            let at = self.pos;
            let Some(&tok) = self.tok() else {
                break;
            };
            let line = self.src[tok.start..].split('\n').next().unwrap_or_default();
            if super::is_command_line(line) {
                while self.tok().is_some_and(|t| t.line == tok.line) {
                    self.bump();
                }
                continue;
            }
            match self.word() {
                Some("table") => {
                    self.bump();
                    self.table(at);
                }
                Some("add" | "create" | "insert" | "replace") => self.command(),
                Some("flush") if self.word_at(1) == Some("ruleset") => {
                    self.cleared = self.objects.len();
                    self.skip_statement();
                }
                Some("define") => {
                    let name = self.word_at(1).unwrap_or("?");
                    let message = format!(
                        "define {name} not expanded (nft list ruleset never prints one): rules \
                         that use ${name} read it as an unknown value"
                    );
                    self.warn(at, message);
                    self.skip_statement();
                }
                Some("include") => {
                    self.warn(
                        at,
                        "include not followed: the rules of the included file are not read".into(),
                    );
                    self.skip_statement();
                }
                Some(
                    w @ ("delete" | "destroy" | "flush" | "reset" | "rename" | "list" | "monitor"
                    | "describe"),
                ) => {
                    let message = format!(
                        "command {w} not applied: the rule set is read as the declarations in \
                         the input make it"
                    );
                    self.warn(at, message);
                    self.skip_statement();
                }
                _ => {
                    let message = format!(
                        "{} not understood: expected a table, or an nft command (add, insert, ...)",
                        self.shown()
                    );
                    self.warn(at, message);
                    self.skip_statement();
                }
            }
            if self.pos == at {
                self.bump();
            }
        }
    }

    /// `FAMILY NAME`, or `NAME` alone (family `ip`), as commands name a table.
    fn family_and_name(&mut self) -> Res<(String, String)> {
        let first = self.name()?;
        let named = self
            .tok()
            .is_some_and(|t| matches!(t.kind, Kind::Word | Kind::Str));
        if family(&first).is_some() && named {
            let name = self.name()?;
            return Ok((first, name));
        }
        Ok(("ip".into(), first))
    }

    /// `table [FAMILY] NAME [{ ... }]`, the word `table` (at `at`) read.
    fn table(&mut self, at: usize) {
        let named = |f: super::Fail| super::Fail {
            message: format!("table: {}", f.message),
            ..f
        };
        let names = self.name().map_err(named).and_then(|first| {
            if self.is_punct("{") || self.at_end() {
                return Ok(("ip".to_string(), first));
            }
            let at_name = self.pos;
            let name = self.name().map_err(named)?;
            if family(&first).is_none() {
                return Err(super::Fail {
                    at: at_name - 1,
                    message: format!(
                        "unknown family {first:?} (ip, ip6, inet, bridge, arp or netdev) of \
                         table {name}: skipped"
                    ),
                });
            }
            Ok((first, name))
        });
        let (fam, name) = match names {
            Ok(x) => x,
            Err(f) => {
                self.warn(f.at, f.message);
                self.recover(at);
                return;
            }
        };
        if !self.is_punct("{") && !self.at_end() {
            let message = format!(
                "table {fam} {name}: {} not understood: skipped",
                self.shown()
            );
            self.warn(self.pos, message);
            self.recover(at);
            return;
        }
        self.push(
            json!({"table": {"family": fam, "name": name}}),
            at,
            String::new(),
        );
        if self.is_punct("{") {
            self.bump();
            self.table_body(&fam, &name, at);
        }
    }

    /// Whether the next token is the `}` closing a block; a block the input ends in
    /// is a warning at its opening.
    fn block_ends(&mut self, what: &str, open: usize) -> bool {
        match self.tok() {
            None => {
                self.warn(
                    open,
                    format!("{what}: no closing brace before the end of the input"),
                );
                true
            }
            Some(t) if t.kind == Kind::Punct && t.text(self.src) == "}" => {
                self.bump();
                true
            }
            _ => false,
        }
    }

    fn table_body(&mut self, fam: &str, table: &str, open: usize) {
        let what = format!("table {fam} {table}");
        loop {
            self.family = fam.to_string();
            self.skip_blank();
            if self.block_ends(&what, open) {
                return;
            }
            let at = self.pos;
            match self.word() {
                Some("chain") => {
                    self.bump();
                    self.chain(fam, table, at);
                }
                Some(w @ ("set" | "map")) => {
                    self.bump();
                    self.set(fam, table, w == "map", at);
                }
                Some("comment" | "flags") => self.skip_statement(),
                Some("ct") if self.word_at(1) == Some("helper") => self.ct_helper(fam, table, at),
                Some(w) if TABLE_OBJECTS.contains(&w) => self.skip_statement(),
                _ => {
                    let message = format!("{} not understood in {what}: skipped", self.shown());
                    self.warn(at, message);
                    self.skip_statement();
                }
            }
            if self.pos == at {
                self.bump();
            }
        }
    }

    /// `ct helper NAME { type "ftp" protocol tcp; l3proto inet }` (at `at`): the helper
    /// object a rule's `ct helper set "NAME"` assigns, kept for the type it names (the
    /// kernel's helper, as conntrack's `helper=` shows it).
    fn ct_helper(&mut self, fam: &str, table: &str, at: usize) {
        self.pos = at + 2;
        let name = self.name().ok();
        let (mut ty, mut depth) = (None, 0usize);
        while let Some(t) = self.tok() {
            match (t.kind, t.text(self.src)) {
                (Kind::Punct, "{") => depth += 1,
                (Kind::Punct, "}") if depth <= 1 => break,
                (Kind::Punct, "}") => depth -= 1,
                (Kind::Newline | Kind::Handle(_), _) | (Kind::Punct, ";") if depth == 0 => break,
                (Kind::Word, "type") if depth == 1 && ty.is_none() => {
                    ty = (self.tok_at(1))
                        .filter(|t| matches!(t.kind, Kind::Str | Kind::Word))
                        .map(|t| t.text(self.src).to_string());
                }
                _ => {}
            }
            self.bump();
        }
        self.pos = at;
        self.skip_statement();
        if let (Some(name), Some(ty)) = (name, ty) {
            let obj =
                json!({"ct helper": {"family": fam, "table": table, "name": name, "type": ty}});
            self.push(obj, at, String::new());
        }
    }

    /// `chain NAME [{ ... }]`, the word `chain` (at `at`) read.
    fn chain(&mut self, fam: &str, table: &str, at: usize) {
        let name = match self.name() {
            Ok(n) => n,
            Err(f) => {
                self.warn(f.at, format!("chain: {}", f.message));
                self.recover(at);
                return;
            }
        };
        let mut obj = Map::new();
        obj.insert("family".into(), fam.into());
        obj.insert("table".into(), table.into());
        obj.insert("name".into(), name.as_str().into());
        // The chain comes before its rules; its base is known after the block.
        let k = self.push(Value::Null, at, String::new());
        if self.is_punct("{") {
            self.bump();
            self.chain_body(&mut obj, table, &name, at);
        }
        self.objects[k] = json!({ "chain": obj });
    }

    fn chain_body(&mut self, obj: &mut Map<String, Value>, table: &str, name: &str, open: usize) {
        let fam = self.family.clone();
        let what = format!("chain {fam} {table} {name}");
        loop {
            self.skip_blank();
            if self.block_ends(&what, open) {
                return;
            }
            let at = self.pos;
            match self.word() {
                Some("type") => {
                    if let Err(f) = self.base_spec(obj) {
                        self.warn(f.at, format!("{what}: {}", f.message));
                        self.recover(at);
                    }
                }
                Some("policy") => {
                    self.bump();
                    match self.word() {
                        Some(p) => {
                            obj.insert("policy".into(), p.into());
                            self.bump();
                        }
                        None => {
                            let message =
                                format!("{what}: a policy expected, found {}", self.shown());
                            self.warn(self.pos, message);
                        }
                    }
                }
                // The chain's own comment, on a line of its own.
                Some("comment")
                    if self.tok_at(1).is_some_and(|t| t.kind == Kind::Str)
                        && self.tok_at(2).is_none_or(|t| {
                            matches!(t.kind, Kind::Newline | Kind::Handle(_))
                                || t.kind == Kind::Punct && matches!(t.text(self.src), ";" | "}")
                        }) =>
                {
                    self.bump();
                    self.bump();
                }
                Some("devices" | "flags") => self.skip_statement(),
                _ => self.rule(table, name, at),
            }
            if self.pos == at {
                self.bump();
            }
        }
    }

    /// `type TYPE hook HOOK [device DEV | devices = {...}] priority PRIORITY`.
    fn base_spec(&mut self, obj: &mut Map<String, Value>) -> Res<()> {
        self.expect_word("type")?;
        let kind = self.name()?;
        self.expect_word("hook")?;
        let hook = self.name()?;
        if self.is_word("device") {
            self.bump();
            let dev = self.name()?;
            obj.insert("dev".into(), dev.into());
        } else if self.is_word("devices") {
            self.bump();
            self.expect_punct("=")?;
            if !self.is_punct("{") {
                return self.fail(format!("\"{{\" expected, found {}", self.shown()));
            }
            // `{ eth0, eth1 }`: skipped whole.
            self.skip_group();
        }
        self.expect_word("priority")?;
        let from = self.pos;
        while !self.at_end() {
            self.bump();
        }
        let words: Vec<&str> = self.toks[from..self.pos]
            .iter()
            .map(|t| t.text(self.src))
            .collect();
        if words.is_empty() {
            return self.fail("a priority expected");
        }
        let prio = words.join(" ");
        let prio = match prio.parse::<i64>() {
            Ok(n) => Value::from(n),
            Err(_) => Value::String(prio),
        };
        obj.insert("type".into(), kind.into());
        obj.insert("hook".into(), hook.into());
        obj.insert("prio".into(), prio);
        Ok(())
    }

    /// `set NAME { ... }` or `map NAME { ... }`, the keyword (at `at`) read.
    fn set(&mut self, fam: &str, table: &str, is_map: bool, at: usize) {
        let what = if is_map { "map" } else { "set" };
        let name = match self.name() {
            Ok(n) => n,
            Err(f) => {
                self.warn(f.at, format!("{what}: {}", f.message));
                self.recover(at);
                return;
            }
        };
        let mut obj = Map::new();
        obj.insert("family".into(), fam.into());
        obj.insert("table".into(), table.into());
        obj.insert("name".into(), name.as_str().into());
        if self.is_punct("{") {
            self.bump();
            self.set_body(&mut obj, &format!("{what} {fam} {table} {name}"), at);
        }
        self.push(json!({ what: obj }), at, String::new());
    }

    fn set_body(&mut self, obj: &mut Map<String, Value>, what: &str, open: usize) {
        loop {
            self.skip_blank();
            if self.block_ends(what, open) {
                return;
            }
            let at = self.pos;
            if let Err(f) = self.set_line(obj) {
                self.warn(f.at, format!("{what}: {}", f.message));
                self.recover(at);
            }
            if self.pos == at {
                self.bump();
            }
        }
    }

    /// One line of a set or map block.
    fn set_line(&mut self, obj: &mut Map<String, Value>) -> Res<()> {
        match self.word() {
            Some("type") => {
                self.bump();
                let key = self.type_names()?;
                obj.insert("type".into(), type_value(key));
                if self.is_word(":") {
                    self.bump();
                    if self.is_word("interval") {
                        self.bump();
                    }
                    obj.insert("map".into(), self.type_names()?.join(" . ").into());
                }
            }
            Some("typeof") => {
                self.bump();
                let key = self.expr()?;
                obj.insert("type".into(), type_value(datatypes(&key)));
                if self.is_word(":") {
                    self.bump();
                    let data = if self.is_word("verdict") {
                        self.bump();
                        vec!["verdict".to_string()]
                    } else {
                        datatypes(&self.expr()?)
                    };
                    obj.insert("map".into(), data.join(" . ").into());
                }
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
            Some("elements") => {
                self.bump();
                self.expect_punct("=")?;
                let items = self.set_items()?;
                obj.insert("elem".into(), items.into());
            }
            Some("comment") => {
                self.bump();
                obj.insert("comment".into(), self.name()?.into());
            }
            Some(w) if SET_OPTIONS.contains(&w) => self.skip_statement(),
            _ => return self.fail(format!("{} not understood", self.shown())),
        }
        Ok(())
    }

    /// `ipv4_addr . inet_proto . inet_service`.
    fn type_names(&mut self) -> Res<Vec<String>> {
        let mut names = vec![self.name()?];
        while self.is_word(".") {
            self.bump();
            names.push(self.name()?);
        }
        Ok(names)
    }

    /// `add|create|insert|replace OBJECT ...` on one line (a block may span lines).
    fn command(&mut self) {
        let at = self.pos;
        let verb = self.word().unwrap_or_default();
        self.bump();
        let what = self.word().unwrap_or_default();
        self.bump();
        if let Err(f) = self.command_object(verb, what, at) {
            self.warn(f.at, format!("{verb} {what}: {}", f.message));
            self.recover(at);
        }
    }

    fn command_object(&mut self, verb: &str, what: &str, at: usize) -> Res<()> {
        match what {
            "table" => self.table(at),
            "chain" | "set" | "map" => {
                let (fam, table) = self.family_and_name()?;
                self.family = fam.clone();
                if what == "chain" {
                    self.chain(&fam, &table, at);
                } else {
                    self.set(&fam, &table, what == "map", at);
                }
            }
            "rule" => {
                let (fam, table) = self.family_and_name()?;
                let chain = self.name()?;
                self.family = fam;
                if verb != "add" && verb != "create" {
                    let message = format!(
                        "{verb} rule read as add rule: the rule is placed at the end of its chain"
                    );
                    self.warn(at, message);
                }
                if let Some(p @ ("position" | "handle" | "index")) = self.word() {
                    let message =
                        format!("rule {p} not applied: the rule is placed at the end of its chain");
                    self.warn(self.pos, message);
                    self.bump();
                    self.bump();
                }
                let from = self.pos;
                self.rule(&table, &chain, from);
            }
            "element" => {
                let (fam, table) = self.family_and_name()?;
                let name = self.name()?;
                let items = self.set_items()?;
                let obj = json!({"element": {"family": fam, "table": table, "name": name, "elem": items}});
                self.push(obj, at, String::new());
            }
            w if TABLE_OBJECTS.contains(&w) => self.skip_statement(),
            _ => {
                return self
                    .fail("not understood (table, chain, rule, set, map or element expected)")
            }
        }
        Ok(())
    }
}
