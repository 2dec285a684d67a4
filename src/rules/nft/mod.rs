//! `nft -j list ruleset` (the libnftables JSON schema) → [`RuleSet`].
//!
//! The document is `{"nftables": [{"metainfo": ...}, {"table": ...}, {"chain": ...},
//! {"set": ...}, {"map": ...}, {"rule": ...}, ...]}`. Tables of every family are kept;
//! base chains get their hook, priority (a number, or a standard name such as `dstnat`)
//! and policy; each rule keeps its handle and comment, and a `text` rendered the way
//! `nft list ruleset` prints it.
//!
//! How the nft model maps onto [`Rule`]s:
//! * `match` expressions become [`Match`]es; a transport header match implies its
//!   protocol (`tcp dport 80` also gets `Proto(Tcp)`).
//! * A rule's statements run in order. Each statement that changes the packet (`meta
//!   mark set`, `ct mark set`, `notrack`) and the final one (a verdict, NAT, a verdict
//!   map) becomes a [`Rule`] of its own, with the same handle and text and the matches
//!   written before it: `meta mark set 0x1 accept` is a Mark rule followed by an Accept
//!   rule. A `log` followed by another statement is left out (it does not change the
//!   path).
//! * Named sets are kept in [`RuleSet::sets`] under `"FAMILY TABLE NAME"` (`"ip
//!   kube-proxy cluster-ips"`), the way nft names them, since two tables may each have
//!   a set of the same name; a [`MatchKind::Set`](crate::rules::MatchKind::Set) refers to that key. An anonymous
//!   set of addresses or of concatenations is kept the same way, named after its rule
//!   (`"ip filter __rule12_set1"`); one of ports becomes [`Ports`].
//! * `vmap` and `numgen ... vmap` become [`Target::Map`]; a named map's elements are
//!   read from the same document. `dnat to <key> map {...}` becomes a Map of Dnat
//!   branches.
//! * `xt` expressions (what iptables-nft leaves for what nft cannot translate) carry
//!   no arguments in JSON: they are Unknown matches and targets, and one warning per
//!   input says `iptables-save` is the complete source for those rules.
//!
//! [`Rule`]: crate::rules::Rule
//! [`Ports`]: crate::rules::Ports

mod expr;
mod render;
mod stmt;
pub(super) mod text;
pub(super) mod value;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::{
    Base, Chain, ChainType, Dialect, Family, Hook, Match, Rule, RuleSet, Set, Target, Verdict,
};
use crate::diag::{Location, Warning};
use stmt::Stmt;

pub use text::parse_text;

/// Parses the JSON; what it cannot read is a located warning.
pub fn parse_json(source: &str, text: &str) -> RuleSet {
    let mut out = RuleSet {
        source: source.to_string(),
        ..RuleSet::default()
    };
    let doc: Value = match serde_json::from_str(text) {
        Ok(doc) => doc,
        Err(e) => {
            let message = e.to_string();
            let message = match message.rfind(" at line ") {
                Some(i) => message[..i].to_string(),
                None => message,
            };
            out.warnings.push(Warning::new(
                source,
                Location::Line {
                    line: e.line() as u64,
                    column: e.column() as u64,
                },
                format!("not valid JSON ({message}): expected nft -j list ruleset output"),
            ));
            return out;
        }
    };
    let Some(objects) = doc.get("nftables").and_then(Value::as_array) else {
        out.warnings.push(Warning::new(
            source,
            Location::File,
            "not nft -j list ruleset output: no \"nftables\" array",
        ));
        return out;
    };
    read_objects(out, Dialect::NftJson, objects, &[])
}

/// Where an object of the text form was read: its line and column, and for a rule its
/// words as written.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Origin {
    pub(super) line: u64,
    pub(super) column: u64,
    pub(super) text: String,
}

/// Maps libnftables objects (`{"table": ...}`, `{"rule": ...}`, ...) onto `out`; for
/// the text form, `origins[i]` says where object `i` was read.
pub(super) fn read_objects(
    out: RuleSet,
    dialect: Dialect,
    objects: &[Value],
    origins: &[Option<Origin>],
) -> RuleSet {
    let mut reader = Reader {
        out,
        dialect,
        origins,
        tables: HashMap::new(),
        chains: HashMap::new(),
        defs: HashMap::new(),
        xt_rules: 0,
        branches_left: MAX_BRANCHES,
        crowded: 0,
        helpers: HashMap::default(),
    };
    reader.read(objects);
    reader.finish()
}

/// A named set or map of the input, as written.
struct SetDef {
    ty: Value,
    is_map: bool,
    elems: Vec<Value>,
}

/// `(family, table, name)`.
type Key = (String, String, String);

struct Reader<'o> {
    out: RuleSet,
    dialect: Dialect,
    /// Where each object was read (the text form); empty for JSON.
    origins: &'o [Option<Origin>],
    /// `(family, table)` → index in `out.tables`.
    tables: HashMap<(String, String), usize>,
    /// `(table index, chain name)` → index in that table's chains.
    chains: HashMap<(usize, String), usize>,
    defs: HashMap<Key, SetDef>,
    /// Rules holding an `xt` expression.
    xt_rules: usize,
    /// Map branches the rule set may still be given ([`MAX_BRANCHES`] in all).
    branches_left: usize,
    /// Rules cut short at [`MAX_EFFECTS`] statements that change the packet.
    crowded: usize,
    /// `(family, table, name)` of a `ct helper` object → the helper type it names.
    helpers: HashMap<(String, String, String), String>,
}

/// A chain of the output and its names in the input.
struct ChainRef<'v> {
    family: &'v str,
    table: &'v str,
    name: &'v str,
    /// Index in `out.tables`.
    t: usize,
    /// Index in that table's chains.
    c: usize,
}

/// What converting one rule needs: where it is, and where anonymous sets go.
pub(super) struct RuleCtx<'a> {
    family: &'a str,
    table: &'a str,
    /// What names the rule among its table's anonymous sets: `rule12` (its handle) or,
    /// for text without handles, `line40`.
    tag: String,
    /// Anonymous sets made so far for this rule.
    anon: usize,
    sets: &'a mut BTreeMap<String, Set>,
    defs: &'a HashMap<Key, SetDef>,
    /// Map branches the rule set may still be given.
    branches_left: &'a mut usize,
    /// Whether the rule holds an `xt` expression.
    xt: bool,
}

/// Most branches the verdict maps and NAT maps of one rule set are read into: every
/// rule that looks a named map up gets a copy of its elements, so many rules over one
/// large map would otherwise multiply.
const MAX_BRANCHES: usize = 1 << 20;

/// Most statements that change the packet (`meta mark set`, `ct mark set`, ...) one
/// rule is read with: each becomes a rule of its own holding the matches before it.
const MAX_EFFECTS: usize = 64;

/// What a rule's statements come to.
struct Read {
    matches: Vec<Match>,
    counters: Option<super::Counters>,
    /// Each statement that changes the packet or ends the rule: how many of the
    /// matches come before it, and what it does.
    parts: Vec<(usize, Target)>,
    /// Whether the rule was cut short at [`MAX_EFFECTS`].
    crowded: bool,
}

impl<'a> RuleCtx<'a> {
    /// A rule's statements in order, up to the one that ends it.
    fn read(&mut self, exprs: &[Value]) -> Read {
        let mut r = Read {
            matches: Vec::new(),
            counters: None,
            parts: Vec::new(),
            crowded: false,
        };
        for e in exprs {
            match self.statement(e) {
                Stmt::Match(ms) => r.matches.extend(ms),
                Stmt::Counter(c) => r.counters = Some(c),
                Stmt::Nothing => {}
                Stmt::Effect(_) if r.parts.len() >= MAX_EFFECTS => {
                    r.crowded = true;
                    let text = format!(
                        "more than {MAX_EFFECTS} statements that change the packet: not \
                         followed past them"
                    );
                    let name = "rule".into();
                    r.parts
                        .push((r.matches.len(), Target::Unknown { name, text }));
                    break;
                }
                Stmt::Effect(target) => r.parts.push((r.matches.len(), target)),
                Stmt::Final(target) => {
                    r.parts.push((r.matches.len(), target));
                    break;
                }
            }
        }
        r
    }

    /// The [`RuleSet::sets`] key of a set of this rule's table.
    fn set_key(&self, name: &str) -> String {
        format!("{} {} {}", self.family, self.table, name)
    }

    /// The elements of a named map of this rule's table.
    fn map_elements(&self, name: &str) -> Option<&'a [Value]> {
        let key = (
            self.family.to_string(),
            self.table.to_string(),
            name.to_string(),
        );
        self.defs.get(&key).map(|d| d.elems.as_slice())
    }
}

fn family(s: &str) -> Option<Family> {
    Some(match s {
        "ip" => Family::Ip,
        "ip6" => Family::Ip6,
        "inet" => Family::Inet,
        "bridge" => Family::Bridge,
        "arp" => Family::Arp,
        "netdev" => Family::Netdev,
        _ => return None,
    })
}

fn hook(s: &str) -> Option<Hook> {
    Some(match s {
        "prerouting" => Hook::Prerouting,
        "input" => Hook::Input,
        "forward" => Hook::Forward,
        "output" => Hook::Output,
        "postrouting" => Hook::Postrouting,
        _ => return None,
    })
}

/// A standard priority name's value in a family (nft(8), "Standard priority names").
fn standard_priority(name: &str, fam: &str) -> Option<i32> {
    let bridge = fam == "bridge";
    Some(match name {
        "raw" => -300,
        "mangle" => -150,
        "dstnat" if bridge => -300,
        "dstnat" => -100,
        "filter" if bridge => -200,
        "filter" => 0,
        "security" => 50,
        "out" => 100,
        "srcnat" if bridge => 300,
        "srcnat" => 100,
        _ => return None,
    })
}

/// A chain priority: a number, or a name with an optional offset (`dstnat - 10`).
fn priority(v: &Value, fam: &str) -> Option<i32> {
    if let Some(n) = v.as_i64() {
        return i32::try_from(n).ok();
    }
    let s = v.as_str()?.trim();
    if let Ok(n) = s.parse() {
        return Some(n);
    }
    let (name, rest) = match s.find(['+', '-']) {
        Some(i) => (s[..i].trim(), s[i..].trim()),
        None => (s, ""),
    };
    let base = standard_priority(name, fam)?;
    if rest.is_empty() {
        return Some(base);
    }
    let sign = if rest.starts_with('-') { -1 } else { 1 };
    let off: i32 = rest[1..].trim().parse().ok()?;
    base.checked_add(off.checked_mul(sign)?)
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// The [`Key`] of the set or map a `set`, `map` or `element` object names.
fn def_key(val: &Value) -> Option<Key> {
    Some((
        str_of(val, "family")?.to_string(),
        str_of(val, "table")?.to_string(),
        str_of(val, "name")?.to_string(),
    ))
}

impl Reader<'_> {
    fn origin(&self, i: usize) -> Option<&Origin> {
        self.origins.get(i).and_then(Option::as_ref)
    }

    /// A warning about object `i`: at its line in the text form, about the input as a
    /// whole in JSON.
    fn warn_at(&mut self, i: usize, message: String) {
        let location = match self.origin(i) {
            Some(o) => Location::Line {
                line: o.line,
                column: o.column,
            },
            None => Location::File,
        };
        self.out
            .warnings
            .push(Warning::new(self.out.source.clone(), location, message));
    }

    /// How object `i` is named in a warning: its place in the JSON array (the text form
    /// says where by the warning's line).
    fn object_name(&self, i: usize) -> String {
        if self.origin(i).is_some() {
            String::new()
        } else {
            format!("object {} of the nftables array: ", i + 1)
        }
    }

    fn read(&mut self, objects: &[Value]) {
        let mut rules = Vec::new();
        for (i, obj) in objects.iter().enumerate() {
            let Some((key, val)) = render::single(obj) else {
                continue;
            };
            // A command wrapper (`{"add": {"rule": ...}}`) as in JSON input files.
            let (key, val) = match key {
                "add" | "create" | "insert" | "replace" | "list" => match render::single(val) {
                    Some(inner) => inner,
                    None => continue,
                },
                _ => (key, val),
            };
            match key {
                "table" => {
                    if let (Some(f), Some(n)) = (str_of(val, "family"), str_of(val, "name")) {
                        self.table(i, f, n);
                    }
                }
                "chain" => self.chain(i, val),
                "set" | "map" => self.set(val, key == "map"),
                "element" => self.element(val),
                "rule" => rules.push((i, val)),
                "ct helper" => {
                    let field = |k| str_of(val, k).map(str::to_string);
                    if let (Some(f), Some(t), Some(n), Some(ty)) = (
                        field("family"),
                        field("table"),
                        field("name"),
                        field("type"),
                    ) {
                        self.helpers.insert((f, t, n), ty);
                    }
                }
                _ => {}
            }
        }
        for (key, def) in &self.defs {
            if def.is_map {
                continue;
            }
            let roles = expr::roles_of_type(&def.ty);
            let members = match &roles {
                Some(roles) => def
                    .elems
                    .iter()
                    .filter_map(|e| expr::element_members(roles, e))
                    .flatten()
                    .take(expr::MAX_MEMBERS)
                    .collect(),
                None => Vec::new(),
            };
            let kind = match &def.ty {
                Value::Array(parts) => parts
                    .iter()
                    .map(render::expr)
                    .collect::<Vec<_>>()
                    .join(" . "),
                other => render::expr(other),
            };
            self.out.sets.insert(
                format!("{} {} {}", key.0, key.1, key.2),
                Set { kind, members },
            );
        }
        for (i, val) in rules {
            self.rule(i, val);
        }
    }

    /// The index of a table, made when first seen.
    fn table(&mut self, i: usize, fam: &str, name: &str) -> Option<usize> {
        if let Some(&t) = self.tables.get(&(fam.to_string(), name.to_string())) {
            return Some(t);
        }
        let Some(family) = family(fam) else {
            let at = self.object_name(i);
            self.warn_at(
                i,
                format!("{at}table {name} of unknown family {fam:?} skipped"),
            );
            return None;
        };
        self.out.tables.push(super::Table {
            source: self.out.source.clone(),
            name: name.to_string(),
            family,
            dialect: self.dialect,
            chains: Vec::new(),
        });
        let t = self.out.tables.len() - 1;
        self.tables.insert((fam.to_string(), name.to_string()), t);
        Some(t)
    }

    /// The index of a chain in a table, made (as a user chain) when first seen.
    fn chain_index(&mut self, t: usize, name: &str) -> usize {
        let chains = &mut self.out.tables[t].chains;
        *self.chains.entry((t, name.to_string())).or_insert_with(|| {
            chains.push(Chain {
                name: name.to_string(),
                base: None,
                rules: Vec::new(),
                line: 0,
            });
            chains.len() - 1
        })
    }

    /// The chain object `i` of the array belongs to, named by its `family`, `table`
    /// and `name_key` fields; table and chain are made when first seen. `None` when a
    /// name is missing (with a warning that the `what` is skipped) or the table's
    /// family is unknown.
    fn chain_of<'v>(
        &mut self,
        i: usize,
        val: &'v Value,
        what: &str,
        name_key: &str,
    ) -> Option<ChainRef<'v>> {
        let (Some(family), Some(table), Some(name)) = (
            str_of(val, "family"),
            str_of(val, "table"),
            str_of(val, name_key),
        ) else {
            let at = self.object_name(i);
            self.warn_at(
                i,
                format!("{at}a {what} without family, table or {name_key}, skipped"),
            );
            return None;
        };
        let t = self.table(i, family, table)?;
        let c = self.chain_index(t, name);
        Some(ChainRef {
            family,
            table,
            name,
            t,
            c,
        })
    }

    fn chain(&mut self, i: usize, val: &Value) {
        let Some(ChainRef {
            family: fam,
            table,
            name,
            t,
            c,
        }) = self.chain_of(i, val, "chain", "name")
        else {
            return;
        };
        if let Some(o) = self.origin(i) {
            self.out.tables[t].chains[c].line = o.line;
        }
        // Hooks outside the IP stack (netdev ingress/egress) have no Base.
        let Some(hook) = str_of(val, "hook").and_then(hook) else {
            return;
        };
        let kind = match str_of(val, "type") {
            Some("nat") => ChainType::Nat,
            Some("route") => ChainType::Route,
            _ => ChainType::Filter,
        };
        let priority = match val.get("prio") {
            None => 0,
            Some(p) => {
                match priority(p, fam) {
                    Some(p) => p,
                    None => {
                        self.warn_at(
                        i,
                        format!("chain {fam} {table} {name}: priority {p} not understood, read as 0"),
                    );
                        0
                    }
                }
            }
        };
        let policy = match str_of(val, "policy") {
            Some("drop") => Verdict::Drop,
            _ => Verdict::Accept,
        };
        self.out.tables[t].chains[c].base = Some(Base {
            hook,
            priority,
            kind,
            policy,
            counters: None,
        });
    }

    fn set(&mut self, val: &Value, is_map: bool) {
        let Some(key) = def_key(val) else {
            return;
        };
        let elems = match val.get("elem") {
            Some(Value::Array(e)) => e.clone(),
            _ => Vec::new(),
        };
        let def = self.defs.entry(key).or_insert(SetDef {
            ty: Value::Null,
            is_map,
            elems: Vec::new(),
        });
        def.ty = val.get("type").cloned().unwrap_or(Value::Null);
        def.is_map = is_map;
        def.elems.extend(elems);
    }

    /// `{"element": {"family", "table", "name", "elem": [...]}}`: elements added to a set
    /// or map declared elsewhere in the document.
    fn element(&mut self, val: &Value) {
        let Some(key) = def_key(val) else {
            return;
        };
        if let (Some(def), Some(Value::Array(e))) = (self.defs.get_mut(&key), val.get("elem")) {
            def.elems.extend(e.iter().cloned());
        }
    }

    fn rule(&mut self, i: usize, val: &Value) {
        let Some(ChainRef {
            family: fam,
            table,
            t,
            c,
            ..
        }) = self.chain_of(i, val, "rule", "chain")
        else {
            return;
        };
        let handle = val.get("handle").and_then(Value::as_u64);
        let comment = str_of(val, "comment").map(str::to_string);
        let exprs: &[Value] = match val.get("expr") {
            Some(Value::Array(e)) => e,
            _ => &[],
        };
        let (line, text, tag) = match self.origin(i) {
            Some(o) => (
                o.line,
                o.text.clone(),
                match handle {
                    Some(h) => format!("rule{h}"),
                    None => format!("line{}", o.line),
                },
            ),
            None => (
                0,
                render::rule(exprs, comment.as_deref()),
                format!("rule{}", handle.unwrap_or(0)),
            ),
        };

        let mut ctx = RuleCtx {
            family: fam,
            table,
            tag,
            anon: 0,
            sets: &mut self.out.sets,
            defs: &self.defs,
            branches_left: &mut self.branches_left,
            xt: false,
        };
        let Read {
            matches,
            counters,
            parts,
            crowded,
        } = ctx.read(exprs);
        self.crowded += usize::from(crowded);
        if ctx.xt {
            self.xt_rules += 1;
        }
        // A log or other harmless statement followed by another one adds nothing to
        // the path.
        let last = parts.len().saturating_sub(1);
        let mut kept: Vec<(usize, Target)> = parts
            .into_iter()
            .enumerate()
            .filter(|(k, (_, t))| {
                *k == last
                    || !matches!(
                        t,
                        Target::Log | Target::Continue { .. } | Target::Helper { .. }
                    )
            })
            .map(|(_, p)| p)
            .collect();
        if kept.is_empty() {
            kept.push((matches.len(), Target::None));
        }
        // `ct helper set "NAME"` names an object of the table: the helper is its type.
        for (_, t) in &mut kept {
            if let Target::Helper { name } = t {
                let key = (fam.to_string(), table.to_string(), name.clone());
                if let Some(ty) = self.helpers.get(&key) {
                    *name = ty.clone();
                }
            }
        }
        let rules = &mut self.out.tables[t].chains[c].rules;
        for (n, target) in kept {
            rules.push(Rule {
                line,
                handle,
                text: text.clone(),
                matches: matches[..n].to_vec(),
                target,
                counters,
                comment: comment.clone(),
            });
        }
    }

    fn finish(mut self) -> RuleSet {
        if self.crowded > 0 {
            let n = self.crowded;
            self.out.warnings.push(Warning::new(
                self.out.source.clone(),
                Location::File,
                format!(
                    "{n} rule(s) with more than {MAX_EFFECTS} statements that change the \
                     packet: followed as far as those"
                ),
            ));
        }
        if self.branches_left == 0 {
            self.out.warnings.push(Warning::new(
                self.out.source.clone(),
                Location::File,
                format!(
                    "the rule set's maps hold more than {MAX_BRANCHES} branches in all: the \
                     lookups past those are read as targets natcheck cannot follow"
                ),
            ));
        }
        if self.xt_rules > 0 {
            let n = self.xt_rules;
            let rules = if n == 1 { "rule holds" } else { "rules hold" };
            let nft = if self.dialect == Dialect::NftText {
                "nft list ruleset"
            } else {
                "nft -j"
            };
            self.out.warnings.push(Warning::new(
                self.out.source.clone(),
                Location::File,
                format!(
                    "{n} {rules} {XT_WARNING}, whose arguments {nft} does \
                     not show: those matches and targets are read as unknown; iptables-save is \
                     the complete source for rules made by iptables-nft"
                ),
            ));
        }
        self.out
    }
}

/// The words that mark the warning about iptables-nft's `xt` expressions.
const XT_WARNING: &str = "xt expressions left by iptables-nft";

/// Whether `w` is the warning that an nft listing holds iptables-nft's `xt`
/// expressions.
pub fn is_xt_warning(w: &Warning) -> bool {
    w.message.contains(XT_WARNING)
}

/// Whether a table read from an nft listing holds an `xt` expression.
pub fn holds_xt(t: &super::Table) -> bool {
    let xt = |text: &str| text.contains(stmt::XT_NOTE);
    t.chains.iter().flat_map(|c| &c.rules).any(|r| {
        matches!(&r.target, Target::Unknown { text, .. } if xt(text))
            || r.matches
                .iter()
                .any(|m| matches!(&m.kind, super::MatchKind::Unknown { text, .. } if xt(text)))
    })
}
