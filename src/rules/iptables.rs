//! `iptables-save` / `ip6tables-save` (with or without `-c`, legacy or nft variants)
//! and `iptables -S` output → [`RuleSet`].
//!
//! One pass over the lines. A `*table` line opens a table, `:CHAIN POLICY [p:b]`
//! declares a chain, `[p:b] -A CHAIN ...` appends a rule and `COMMIT` closes the table.
//! `-P`, `-N` and `-A` lines outside a table are `iptables -S` output: they gather in
//! one table whose name is inferred when the input ends (or a `*table` line starts).
//!
//! A rule line is split like a shell splits it (double quotes with backslash escapes),
//! then read option by option. Matches natcheck cannot decide are kept as
//! [`MatchKind::Unknown`] with their option text; targets it does not know as
//! [`Target::Unknown`], and so are values of a module's option natcheck cannot read
//! (a port name, a probability out of range). A line that is not in this syntax at all
//! (no `-A`, an unclosed quote, a word that is no option, an unreadable address after
//! `-s`) is a located warning; the line is left out and reading goes on with the next.
//!
//! The address family of a table is what its rules name (addresses, `-p icmp` or
//! `ipv6-icmp`, `--reject-with icmp6-*`, ...); a table that names none takes the family
//! the whole input shows, IPv4 when it shows none.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;

use smallvec::SmallVec;

use super::{
    AddrType, Base, Chain, ChainType, Counters, CtState, Dialect, Family, Hook, Iface, MarkOp,
    Match, MatchKind, NatFlags, NatTo, Ports, Prefix, Rule, RuleSet, SetDim, Table, Target,
    Verdict,
};
use crate::diag::{Location, Warning};
use crate::model::Proto;

#[cfg(test)]
mod tests;

/// Parses the text; lines it cannot read are located warnings.
pub fn parse(source: &str, text: &str) -> RuleSet {
    let mut p = Parser {
        source,
        tables: Vec::new(),
        warnings: Vec::new(),
        cur: None,
        pending_s: None,
        words: Vec::new(),
    };
    let mut last_line = 0u64;
    for (i, raw) in lines(text).enumerate() {
        let line_no = i as u64 + 1;
        last_line = line_no;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        p.line(line_no, line);
    }
    if let Some(t) = p.cur.take() {
        p.warn(
            last_line,
            1,
            format!(
                "expected COMMIT to close table {}",
                t.name.as_deref().unwrap_or("")
            ),
        );
        p.finish(t);
    }
    if let Some(t) = p.pending_s.take() {
        p.finish(t);
    }
    let tables = with_families(p.tables.into_iter().map(|(t, h)| (t, h.v4, h.v6)));
    RuleSet {
        source: source.to_string(),
        tables,
        warnings: p.warnings,
        ..RuleSet::default()
    }
}

/// The lines of `text`, split at `\n` as `str::split('\n')` splits them.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let t = rest?;
        match memchr::memchr(b'\n', t.as_bytes()) {
            Some(end) => {
                rest = Some(&t[end + 1..]);
                Some(&t[..end])
            }
            None => {
                rest = None;
                Some(t)
            }
        }
    })
}

/// Each table's address family from the addresses its rules show (`v4`, `v6`: how
/// many of each). A table without addresses of its own (only interfaces, marks, ...)
/// takes the family the rest of the input shows: an ip6tables-save filter table is
/// IPv6 even when none of its rules names an address.
pub(super) fn with_families(tables: impl Iterator<Item = (Table, usize, usize)>) -> Vec<Table> {
    let tables: Vec<(Table, usize, usize)> = tables.collect();
    let (v4, v6) = tables
        .iter()
        .fold((0usize, 0usize), |(a, b), t| (a + t.1, b + t.2));
    let input_family = if v6 > 0 && v4 == 0 {
        Family::Ip6
    } else {
        Family::Ip
    };
    tables
        .into_iter()
        .map(|(mut t, v4, v6)| {
            t.family = if v6 > v4 {
                Family::Ip6
            } else if v4 > 0 {
                Family::Ip
            } else {
                input_family
            };
            t
        })
        .collect()
}

/// Evidence of a table's address family: how many IPv4 and IPv6 things its rules name.
#[derive(Clone, Copy, Debug, Default)]
struct FamilyHints {
    v4: usize,
    v6: usize,
}

impl FamilyHints {
    fn addr(&mut self, a: IpAddr) {
        match a {
            IpAddr::V4(_) => self.v4 += 1,
            IpAddr::V6(_) => self.v6 += 1,
        }
    }
}

/// A table being read.
struct TableBuilder<'t> {
    /// `None` for `iptables -S` input until the end.
    name: Option<String>,
    dialect: Dialect,
    chains: Vec<Chain>,
    /// Chain name (as the input wrote it) → chain index.
    index: HashMap<Cow<'t, str>, usize>,
    /// The chain looked up last, tried before the map (iptables-save writes the rules of
    /// a chain together).
    last: Option<usize>,
    /// Declared policies (`:INPUT DROP [0:0]`, `-P INPUT DROP`), by chain index.
    policies: Vec<(Option<Verdict>, Option<Counters>)>,
    /// `-I CHAIN` rules, to go before the chain's `-A` rules (most recent first).
    inserted: HashMap<usize, Vec<Rule>>,
    hints: FamilyHints,
    /// What an `iptables -S` table's name is inferred from (see [`infer_table`]).
    clues: Clues,
}

/// What an `iptables -S` dump shows of its table: the built-in chains it sets policies
/// for, the built-in chains its rules are in, and the targets they use.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Clues {
    /// Bit per hook (see [`hook_bit`]) of `-P` lines.
    pub(super) policies: u8,
    /// Bit per hook of `-A` lines in built-in chains.
    pub(super) rules: u8,
    pub(super) nat_target: bool,
    pub(super) notrack_target: bool,
}

impl Clues {
    /// What a rule's target says of its table: a NAT target only the nat table takes,
    /// NOTRACK and CT (with `--notrack` or not: zones, helpers, timeouts) only raw.
    pub(super) fn target(&mut self, t: &Target) {
        match t {
            t if t.is_nat() => self.nat_target = true,
            Target::Notrack => self.notrack_target = true,
            Target::Continue { name } if name == "CT" => self.notrack_target = true,
            Target::Helper { .. } => self.notrack_target = true,
            _ => {}
        }
    }
}

pub(super) fn hook_bit(chain: &str) -> u8 {
    match chain {
        "PREROUTING" => 1,
        "INPUT" => 2,
        "FORWARD" => 4,
        "OUTPUT" => 8,
        "POSTROUTING" => 16,
        _ => 0,
    }
}

/// The table of an `iptables -S` dump. `iptables -t T -S` prints a `-P` line for each
/// built-in chain of T, and the sets differ: raw {PREROUTING, OUTPUT}, nat {PREROUTING,
/// INPUT, OUTPUT, POSTROUTING}, mangle all five, filter (and security) {INPUT, FORWARD,
/// OUTPUT}. Without `-P` lines (one chain dumped), NAT targets or PREROUTING/POSTROUTING
/// rules say nat, NOTRACK/CT say raw, and anything else is filter.
pub(super) fn infer_table(c: Clues) -> &'static str {
    match c.policies {
        0b11111 => return "mangle",
        0b11011 => return "nat",
        0b01001 => return "raw",
        0b01110 => return "filter",
        _ => {}
    }
    let seen = c.policies | c.rules;
    if seen & 4 != 0 && seen & 17 != 0 {
        "mangle"
    } else if c.nat_target || seen & 17 != 0 && !c.notrack_target {
        "nat"
    } else if c.notrack_target {
        "raw"
    } else {
        "filter"
    }
}

impl<'t> TableBuilder<'t> {
    fn new(name: Option<String>, dialect: Dialect) -> Self {
        TableBuilder {
            name,
            dialect,
            chains: Vec::new(),
            index: HashMap::new(),
            last: None,
            policies: Vec::new(),
            inserted: HashMap::new(),
            hints: FamilyHints::default(),
            clues: Clues::default(),
        }
    }

    /// The index of the chain the word `name` names, declared now (at `line`) if it is
    /// new.
    fn chain(&mut self, name: &Tok<'t>, line: u64) -> usize {
        let name = &name.s;
        if let Some(i) = self.last.filter(|&i| self.chains[i].name == **name) {
            return i;
        }
        let i = match self.index.get(&**name) {
            Some(&i) => i,
            None => {
                self.chains.push(Chain {
                    name: name.to_string(),
                    base: None,
                    rules: Vec::new(),
                    line,
                });
                self.policies.push((None, None));
                self.index.insert(name.clone(), self.chains.len() - 1);
                self.chains.len() - 1
            }
        };
        self.last = Some(i);
        i
    }
}

struct Parser<'a, 't> {
    source: &'a str,
    tables: Vec<(Table, FamilyHints)>,
    warnings: Vec<Warning>,
    /// The `*table` being read.
    cur: Option<TableBuilder<'t>>,
    /// `iptables -S` lines seen outside any `*table`.
    pending_s: Option<TableBuilder<'t>>,
    /// The words of the line being read (kept from line to line for their room).
    words: Vec<Tok<'t>>,
}

/// A located problem within a line: 1-based column and what was expected.
type Fail = (u64, String);

impl<'t> Parser<'_, 't> {
    fn warn(&mut self, line: u64, column: u64, message: String) {
        self.warnings.push(Warning::new(
            self.source,
            Location::Line { line, column },
            message,
        ));
    }

    fn line(&mut self, line_no: u64, line: &'t str) {
        let trimmed = line.trim_start();
        let indent = (line.len() - trimmed.len()) as u64;
        if trimmed.is_empty() || trimmed.starts_with('#') {
            return;
        }
        if let Some(name) = trimmed.strip_prefix('*') {
            if let Some(t) = self.cur.take() {
                let prev = t.name.clone().unwrap_or_default();
                self.warn(
                    line_no,
                    indent + 1,
                    format!("expected COMMIT to close table {prev} before a new table"),
                );
                self.finish(t);
            }
            if let Some(t) = self.pending_s.take() {
                self.finish(t);
            }
            let name = name.trim();
            if name.is_empty() || name.contains(char::is_whitespace) {
                self.warn(line_no, indent + 2, "expected a table name after *".into());
                return;
            }
            self.cur = Some(TableBuilder::new(
                Some(name.to_string()),
                Dialect::IptablesSave,
            ));
            return;
        }
        if trimmed.trim_end() == "COMMIT" {
            match self.cur.take() {
                Some(t) => self.finish(t),
                None => self.warn(
                    line_no,
                    indent + 1,
                    "expected a table (*name) before COMMIT".into(),
                ),
            }
            return;
        }
        let mut words = std::mem::take(&mut self.words);
        let read = match trimmed.strip_prefix(':') {
            Some(decl) => self.chain_decl(line_no, decl, indent + 2, &mut words),
            None => self.command(line_no, line, &mut words),
        };
        self.words = words;
        if let Err((col, msg)) = read {
            self.warn(line_no, col, msg);
        }
    }

    /// `:NAME POLICY [packets:bytes]`; `col` is the column of NAME.
    fn chain_decl(
        &mut self,
        line_no: u64,
        decl: &'t str,
        col: u64,
        toks: &mut Vec<Tok<'t>>,
    ) -> Result<(), Fail> {
        tokenize(decl, toks).map_err(|(c, m)| (col + c - 1, m))?;
        let at = |t: &Tok| col + t.col - 1;
        let Some(name) = toks.first() else {
            return Err((col, "expected a chain name after :".into()));
        };
        let policy = match toks.get(1).map(|t| t.s.as_ref()) {
            Some("ACCEPT") => Some(Verdict::Accept),
            Some("DROP") => Some(Verdict::Drop),
            Some("-") => None,
            Some(_) => {
                return Err((
                    at(&toks[1]),
                    "expected a chain policy (ACCEPT, DROP or -)".into(),
                ))
            }
            None => {
                return Err((
                    col + decl.chars().count() as u64,
                    "expected a chain policy (ACCEPT, DROP or -)".into(),
                ))
            }
        };
        let counters = match toks.get(2) {
            Some(t) => Some(
                parse_counters(&t.s)
                    .ok_or_else(|| (at(t), "expected counters [packets:bytes]".to_string()))?,
            ),
            None => None,
        };
        if let Some(t) = toks.get(3) {
            return Err((at(t), "expected the end of the chain declaration".into()));
        }
        let Some(table) = self.cur.as_mut() else {
            return Err((
                1,
                "expected a table (*name) before a chain declaration".into(),
            ));
        };
        let ci = table.chain(name, line_no);
        table.policies[ci] = (policy, counters);
        Ok(())
    }

    /// `[p:b] -A CHAIN ...`, `-I CHAIN [1] ...`, `-P CHAIN POLICY`, `-N CHAIN`.
    fn command(
        &mut self,
        line_no: u64,
        line: &'t str,
        words: &mut Vec<Tok<'t>>,
    ) -> Result<(), Fail> {
        tokenize(line, words)?;
        let mut toks = &words[..];
        let mut counters = None;
        let mut text_start = 0;
        if let Some(t) = toks.first().filter(|t| t.s.starts_with('[')) {
            counters = Some(
                parse_counters(&t.s)
                    .ok_or_else(|| (t.col, "expected counters [packets:bytes]".to_string()))?,
            );
            toks = &toks[1..];
            text_start = toks.first().map_or(line.len(), |t| t.start);
        }
        let Some(cmd) = toks.first() else {
            return Err((1, "expected a rule after the counters".into()));
        };
        let cmd_col = cmd.col;
        let after_cmd = || cmd.col + cmd.s.chars().count() as u64 + 1;
        let cmd: &str = &cmd.s;
        let need_chain = || {
            toks.get(1)
                .filter(|t| !t.s.is_empty() && !t.s.starts_with('-'))
                .ok_or_else(|| (after_cmd(), "expected a chain name".to_string()))
        };
        match cmd {
            "-A" | "--append" | "-I" | "--insert" => {
                let chain = need_chain()?;
                let mut rest = &toks[2..];
                let mut insert = false;
                if cmd == "-I" || cmd == "--insert" {
                    insert = true;
                    if let Some(n) = rest.first().filter(|t| t.s.bytes().all(|b| b.is_ascii_digit())) {
                        if n.s != "1" {
                            return Err((
                                n.col,
                                "expected -A or -I CHAIN 1 (rule positions are not followed)"
                                    .into(),
                            ));
                        }
                        rest = &rest[1..];
                    }
                }
                let table = self.table_for_rule();
                let mut rule = read_rule(line, rest, &mut table.hints)?;
                rule.line = line_no;
                rule.text = line[text_start..].trim().to_string();
                if rule.counters.is_none() {
                    rule.counters = counters;
                }
                table.clues.rules |= hook_bit(&chain.s);
                table.clues.target(&rule.target);
                let ci = table.chain(chain, line_no);
                if insert {
                    table.inserted.entry(ci).or_default().push(rule);
                } else {
                    table.chains[ci].rules.push(rule);
                }
                Ok(())
            }
            "-P" | "--policy" => {
                let chain = need_chain()?;
                let policy = match toks.get(2).map(|t| t.s.as_ref()) {
                    Some("ACCEPT") => Verdict::Accept,
                    Some("DROP") => Verdict::Drop,
                    Some(_) => {
                        return Err((toks[2].col, "expected ACCEPT or DROP".into()));
                    }
                    None => {
                        let col = chain.col + chain.s.chars().count() as u64 + 1;
                        return Err((col, "expected ACCEPT or DROP".into()));
                    }
                };
                // `iptables -S -v` prints `-c packets bytes` after the policy.
                let mut pc = None;
                let mut i = 3;
                while i < toks.len() {
                    if matches!(toks[i].s.as_ref(), "-c" | "--set-counters") {
                        pc = Some(read_c_counters(toks, i)?);
                        i += 3;
                    } else {
                        return Err((toks[i].col, "expected the end of the policy".into()));
                    }
                }
                let table = self.table_for_rule();
                let ci = table.chain(chain, line_no);
                table.policies[ci] = (Some(policy), pc.or(counters));
                table.clues.policies |= hook_bit(&chain.s);
                Ok(())
            }
            "-N" | "--new-chain" => {
                let chain = need_chain()?;
                if let Some(t) = toks.get(2) {
                    return Err((t.col, "expected the end of the chain declaration".into()));
                }
                self.table_for_rule().chain(chain, line_no);
                Ok(())
            }
            _ => Err((
                cmd_col,
                "expected a rule (-A CHAIN ...), a chain (:NAME POLICY [p:b]), a table (*name) or COMMIT"
                    .into(),
            )),
        }
    }

    /// The table a rule line goes to: the open `*table`, else the `iptables -S` table.
    fn table_for_rule(&mut self) -> &mut TableBuilder<'t> {
        match self.cur {
            Some(ref mut t) => t,
            None => self
                .pending_s
                .get_or_insert_with(|| TableBuilder::new(None, Dialect::IptablesS)),
        }
    }

    fn finish(&mut self, mut t: TableBuilder<'t>) {
        let name = t
            .name
            .take()
            .unwrap_or_else(|| infer_table(t.clues).to_string());
        for (ci, mut ins) in std::mem::take(&mut t.inserted) {
            if let Some(chain) = t.chains.get_mut(ci) {
                ins.reverse();
                ins.append(&mut chain.rules);
                chain.rules = ins;
            }
        }
        for (chain, &(policy, counters)) in t.chains.iter_mut().zip(&t.policies) {
            if let Some((hook, priority, kind)) = builtin(&name, &chain.name) {
                chain.base = Some(Base {
                    hook,
                    priority,
                    kind,
                    policy: policy.unwrap_or(Verdict::Accept),
                    counters,
                });
            }
        }
        self.tables.push((
            Table {
                source: self.source.to_string(),
                name,
                family: Family::Ip,
                dialect: t.dialect,
                chains: t.chains,
            },
            t.hints,
        ));
    }
}

/// The hook, priority and type of a table's built-in chain.
pub(super) fn builtin(table: &str, chain: &str) -> Option<(Hook, i32, ChainType)> {
    let hook = match chain {
        "PREROUTING" => Hook::Prerouting,
        "INPUT" => Hook::Input,
        "FORWARD" => Hook::Forward,
        "OUTPUT" => Hook::Output,
        "POSTROUTING" => Hook::Postrouting,
        _ => return None,
    };
    match (table, hook) {
        ("raw", Hook::Prerouting | Hook::Output) => Some((hook, -300, ChainType::Filter)),
        ("mangle", Hook::Output) => Some((hook, -150, ChainType::Route)),
        ("mangle", _) => Some((hook, -150, ChainType::Filter)),
        ("nat", Hook::Prerouting | Hook::Output) => Some((hook, -100, ChainType::Nat)),
        ("nat", Hook::Input | Hook::Postrouting) => Some((hook, 100, ChainType::Nat)),
        ("filter", Hook::Input | Hook::Forward | Hook::Output) => {
            Some((hook, 0, ChainType::Filter))
        }
        ("security", Hook::Input | Hook::Forward | Hook::Output) => {
            Some((hook, 50, ChainType::Filter))
        }
        _ => None,
    }
}

/// `[packets:bytes]`.
fn parse_counters(s: &str) -> Option<Counters> {
    let inner = s.strip_prefix('[')?.strip_suffix(']')?;
    let (p, b) = inner.split_once(':')?;
    Some(Counters {
        packets: p.parse().ok()?,
        bytes: b.parse().ok()?,
    })
}

/// `-c packets bytes` at `toks[i]`.
fn read_c_counters(toks: &[Tok], i: usize) -> Result<Counters, Fail> {
    let num = |j: usize| -> Result<u64, Fail> {
        let t = toks
            .get(j)
            .ok_or_else(|| (toks[i].col, "expected -c packets bytes".to_string()))?;
        t.s.parse()
            .map_err(|_| (t.col, "expected a counter value".to_string()))
    };
    Ok(Counters {
        packets: num(i + 1)?,
        bytes: num(i + 2)?,
    })
}

/// One shell word of a line: its text after unquoting (the line's own text unless it
/// held quotes or backslashes), where it starts (byte offset and 1-based column) and
/// where it ends (byte offset).
#[derive(Clone, Debug)]
struct Tok<'a> {
    s: Cow<'a, str>,
    start: usize,
    end: usize,
    col: u64,
}

/// Splits a line the way iptables-restore does: blanks separate words, double or single
/// quotes group them, a backslash takes the next character as is. The words replace
/// those in `toks`.
fn tokenize<'a>(line: &'a str, toks: &mut Vec<Tok<'a>>) -> Result<(), Fail> {
    toks.clear();
    let bytes = line.as_bytes();
    // Byte offset and 1-based column of the next character.
    let (mut i, mut col) = (0usize, 1u64);
    while let Some(&b) = bytes.get(i) {
        let blank = match BYTE_CLASS[usize::from(b)] {
            ByteClass::Blank => Some(1),
            ByteClass::Plain => None,
            ByteClass::Special => line[i..]
                .chars()
                .next()
                .filter(|c| c.is_whitespace())
                .map(char::len_utf8),
        };
        if let Some(len) = blank {
            i += len;
            col += 1;
            continue;
        }
        // Most words are plain ASCII up to a blank or the end of the line: the line's
        // own text; the others are read by `word`.
        let run = plain_run(&bytes[i..]);
        if bytes
            .get(i + run)
            .is_none_or(|&b| BYTE_CLASS[usize::from(b)] == ByteClass::Blank)
        {
            toks.push(Tok {
                s: Cow::Borrowed(&line[i..i + run]),
                start: i,
                end: i + run,
                col,
            });
            i += run;
            col += run as u64;
        } else {
            toks.push(word(line, &mut i, &mut col)?);
        }
    }
    Ok(())
}

/// The word at byte `*i` (column `*col`), which is not blank; `*i` and `*col` move past
/// it.
fn word<'a>(line: &'a str, i: &mut usize, col: &mut u64) -> Result<Tok<'a>, Fail> {
    let bytes = line.as_bytes();
    let (start, start_col) = (*i, *col);
    if let Some((text, end)) = whole_quote(line, start) {
        // The quotes and the characters between them.
        *col += 2 + text.chars().count() as u64;
        *i = end;
        return Ok(Tok {
            s: Cow::Borrowed(text),
            start,
            end,
            col: start_col,
        });
    }
    // The word's text once a quote or backslash made it differ from the line's.
    let mut unquoted: Option<String> = None;
    loop {
        let run = plain_run(&bytes[*i..]);
        if let Some(u) = unquoted.as_mut() {
            u.push_str(&line[*i..*i + run]);
        }
        *i += run;
        *col += run as u64;
        let (at, at_col) = (*i, *col);
        // The run ends at the end of the line, a blank, or a character to look at.
        match bytes.get(at) {
            None => break,
            Some(&b) if BYTE_CLASS[usize::from(b)] == ByteClass::Blank => break,
            Some(_) => {}
        }
        let Some(c) = line[at..].chars().next() else {
            break;
        };
        if c.is_whitespace() {
            break;
        }
        *i += c.len_utf8();
        *col += 1;
        match c {
            '"' | '\'' => {
                let u = unquoted.get_or_insert_with(|| line[start..at].to_string());
                loop {
                    // The quoted text up to the closing quote or, in double quotes, a
                    // backslash.
                    let run = bytes[*i..]
                        .iter()
                        .position(|&b| char::from(b) == c || (c == '"' && b == b'\\'))
                        .unwrap_or(bytes.len() - *i);
                    let text = &line[*i..*i + run];
                    u.push_str(text);
                    *i += run;
                    *col += text.chars().count() as u64;
                    let Some(&q) = bytes.get(*i) else {
                        return Err((at_col, format!("expected a closing {c}")));
                    };
                    *i += 1;
                    *col += 1;
                    if q != b'\\' {
                        break;
                    }
                    let Some(e) = line[*i..].chars().next() else {
                        return Err((at_col, format!("expected a closing {c}")));
                    };
                    u.push(e);
                    *i += e.len_utf8();
                    *col += 1;
                }
            }
            '\\' => {
                let Some(e) = line[*i..].chars().next() else {
                    return Err((at_col, "expected a character after \\".into()));
                };
                unquoted
                    .get_or_insert_with(|| line[start..at].to_string())
                    .push(e);
                *i += e.len_utf8();
                *col += 1;
            }
            c => {
                if let Some(u) = unquoted.as_mut() {
                    u.push(c);
                }
            }
        }
    }
    Ok(Tok {
        s: unquoted.map_or(Cow::Borrowed(&line[start..*i]), Cow::Owned),
        start,
        end: *i,
        col: start_col,
    })
}

/// The word at byte `start` when it is one quoted text and nothing more, with nothing to
/// unescape (`"ns/web:http"`): the text between the quotes, and the byte after them.
fn whole_quote(line: &str, start: usize) -> Option<(&str, usize)> {
    let bytes = line.as_bytes();
    let q = *bytes.get(start)?;
    if q != b'"' && q != b'\'' {
        return None;
    }
    let len = bytes[start + 1..]
        .iter()
        .position(|&b| b == q || (q == b'"' && b == b'\\'))?;
    let close = start + 1 + len;
    let ends_word = line[close + 1..]
        .chars()
        .next()
        .is_none_or(char::is_whitespace);
    (bytes[close] == q && ends_word).then(|| (&line[start + 1..close], close + 1))
}

/// How many bytes `bytes` starts with that are plain ASCII characters of a word.
fn plain_run(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .take_while(|&&b| BYTE_CLASS[usize::from(b)] == ByteClass::Plain)
        .count()
}

/// What a byte is to the tokenizer.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ByteClass {
    /// An ASCII character of a word.
    Plain,
    /// An ASCII blank.
    Blank,
    /// A quote, a backslash, or a byte of a non-ASCII character (which may be a blank).
    Special,
}

const BYTE_CLASS: [ByteClass; 256] = {
    let mut t = [ByteClass::Special; 256];
    let mut b = 0;
    while b < 128 {
        t[b] = match b as u8 {
            b' ' | b'\t'..=b'\r' => ByteClass::Blank,
            b'"' | b'\'' | b'\\' => ByteClass::Special,
            _ => ByteClass::Plain,
        };
        b += 1;
    }
    t
};

/// Options of the rule syntax itself (not of a `-m` module or a target).
fn is_core(s: &str) -> bool {
    matches!(
        s,
        "-s" | "--source"
            | "--src"
            | "-d"
            | "--destination"
            | "--dst"
            | "-i"
            | "--in-interface"
            | "-o"
            | "--out-interface"
            | "-p"
            | "--protocol"
            | "-m"
            | "--match"
            | "-j"
            | "--jump"
            | "-g"
            | "--goto"
            | "-f"
            | "--fragment"
            | "-c"
            | "--set-counters"
            | "-4"
            | "--ipv4"
            | "-6"
            | "--ipv6"
    )
}

/// An option of a module or target with its arguments, borrowed from the line's words.
#[derive(Clone, Debug)]
struct Opt<'t> {
    negated: bool,
    name: &'t str,
    args: &'t [Tok<'t>],
    /// Byte span in the line, from its `!` (if any) to its last argument.
    start: usize,
    end: usize,
}

/// How many arguments an option takes when they may look like options themselves
/// (free text) or when it takes more than one.
fn arity(name: &str) -> Option<usize> {
    match name {
        "--comment" | "--log-prefix" | "--nflog-prefix" | "--string" | "--hex-string"
        | "--algo" | "--bytecode" | "--u32" | "--reject-with" => Some(1),
        "--tcp-flags" | "--match-set" => Some(2),
        _ => None,
    }
}

/// Reads the options after `-m NAME` or `-j NAME` (or an implicit protocol match),
/// from `toks[*i]`, up to the next option of the rule syntax.
fn read_opts<'t>(toks: &'t [Tok<'t>], i: &mut usize) -> SmallVec<[Opt<'t>; 4]> {
    let mut opts = SmallVec::new();
    while *i < toks.len() {
        let t = &toks[*i];
        let (negated, name_at) = if t.s == "!" {
            match toks.get(*i + 1) {
                Some(n) if n.s.starts_with("--") && !is_core(&n.s) => (true, *i + 1),
                _ => break,
            }
        } else if t.s.starts_with("--") && !is_core(&t.s) {
            (false, *i)
        } else {
            break;
        };
        let name_tok = &toks[name_at];
        let mut negated = negated;
        let mut j = name_at + 1;
        // The old form puts the `!` after the option: `--dport ! 80`.
        if toks.get(j).is_some_and(|n| n.s == "!")
            && toks
                .get(j + 1)
                .is_some_and(|n| !n.s.starts_with('-') || n.s.len() == 1)
        {
            negated = !negated;
            j += 1;
        }
        let first = j;
        match arity(&name_tok.s) {
            Some(n) => j = (j + n).min(toks.len()),
            None => {
                while let Some(a) = toks.get(j) {
                    if a.s == "!" || (a.s.starts_with('-') && a.s.len() > 1 && !is_number(&a.s)) {
                        break;
                    }
                    j += 1;
                }
            }
        }
        let args = &toks[first..j];
        opts.push(Opt {
            negated,
            name: &name_tok.s,
            args,
            start: t.start,
            end: args.last().map_or(name_tok.end, |a| a.end),
        });
        *i = j;
    }
    opts
}

fn is_number(s: &str) -> bool {
    s.strip_prefix('-')
        .is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
}

/// Reads the words of a rule after `-A CHAIN`.
fn read_rule(line: &str, toks: &[Tok], hints: &mut FamilyHints) -> Result<Rule, Fail> {
    let mut rule = Rule {
        line: 0,
        handle: None,
        text: String::new(),
        matches: Vec::new(),
        target: Target::None,
        counters: None,
        comment: None,
    };
    let mut proto: Option<Cow<str>> = None;
    let mut negate = false;
    let mut i = 0;
    let mut target_seen = false;
    while i < toks.len() {
        let t = &toks[i];
        let s = t.s.as_ref();
        if s == "!" {
            if negate {
                return Err((t.col, "expected an option after !".into()));
            }
            negate = true;
            i += 1;
            continue;
        }
        // The value of a core option, with the old `-s ! x` negation.
        let value = |i: &mut usize, what: &str| -> Result<(&Tok, bool), Fail> {
            let mut j = *i + 1;
            let mut neg = false;
            if toks.get(j).is_some_and(|v| v.s == "!") {
                neg = true;
                j += 1;
            }
            let v = toks
                .get(j)
                .filter(|v| !(v.s.starts_with('-') && v.s.len() > 1) || what == "a protocol")
                .ok_or_else(|| {
                    let at = toks
                        .get(j)
                        .map_or(t.col + t.s.chars().count() as u64 + 1, |v| v.col);
                    (at, format!("expected {what} after {}", t.s))
                })?;
            *i = j + 1;
            Ok((v, neg))
        };
        match s {
            "-s" | "--source" | "--src" | "-d" | "--destination" | "--dst" => {
                let (v, neg) = value(&mut i, "an address")?;
                let p = parse_prefix(&v.s)
                    .ok_or_else(|| (v.col, "expected an address or prefix".to_string()))?;
                hints.addr(p.addr);
                let kind = if s.starts_with("-s") || s == "--source" || s == "--src" {
                    MatchKind::Src(p)
                } else {
                    MatchKind::Dst(p)
                };
                push(&mut rule, negate ^ neg, kind);
            }
            "-i" | "--in-interface" | "-o" | "--out-interface" => {
                let (v, neg) = value(&mut i, "an interface")?;
                let iface = match v.s.strip_suffix('+') {
                    Some(p) => Iface {
                        name: p.to_string(),
                        prefix: true,
                    },
                    None => Iface {
                        name: v.s.to_string(),
                        prefix: false,
                    },
                };
                let kind = if s == "-i" || s == "--in-interface" {
                    MatchKind::InIface(iface)
                } else {
                    MatchKind::OutIface(iface)
                };
                push(&mut rule, negate ^ neg, kind);
            }
            "-p" | "--protocol" => {
                let (v, neg) = value(&mut i, "a protocol")?;
                let name = if v.s.bytes().any(|b| b.is_ascii_uppercase()) {
                    Cow::Owned(v.s.to_ascii_lowercase())
                } else {
                    Cow::Borrowed(&*v.s)
                };
                match parse_proto(&name) {
                    Some(Some(p)) => {
                        match p {
                            Proto::Icmp => hints.v4 += 1,
                            Proto::Icmpv6 => hints.v6 += 1,
                            _ => {}
                        }
                        push(&mut rule, negate ^ neg, MatchKind::Proto(p));
                    }
                    Some(None) if !(negate ^ neg) => {}
                    _ => push(
                        &mut rule,
                        false,
                        MatchKind::Unknown {
                            name: "protocol".into(),
                            text: line[t.start..v.end].to_string(),
                        },
                    ),
                }
                proto = Some(name);
            }
            "-f" | "--fragment" => {
                hints.v4 += 1;
                push(
                    &mut rule,
                    false,
                    MatchKind::Unknown {
                        name: "fragment".into(),
                        text: line[toks[i.saturating_sub(negate as usize)].start..t.end]
                            .to_string(),
                    },
                );
                i += 1;
            }
            "-4" | "--ipv4" => {
                hints.v4 += 1;
                i += 1;
            }
            "-6" | "--ipv6" => {
                hints.v6 += 1;
                i += 1;
            }
            "-c" | "--set-counters" => {
                rule.counters = Some(read_c_counters(toks, i)?);
                i += 3;
            }
            "-m" | "--match" => {
                let name = toks
                    .get(i + 1)
                    .filter(|n| !n.s.starts_with('-'))
                    .ok_or_else(|| (t.col + 3, "expected a match name after -m".to_string()))?;
                let start = t.start;
                let mut end = name.end;
                i += 2;
                let opts = read_opts(toks, &mut i);
                if let Some(o) = opts.last() {
                    end = o.end;
                }
                if negate {
                    return Err((t.col, "expected an option after !, not -m".into()));
                }
                module(&mut rule, hints, &name.s, &opts, line, &line[start..end]);
            }
            "-j" | "--jump" | "-g" | "--goto" => {
                if negate {
                    return Err((t.col, "expected a match after !".into()));
                }
                if target_seen {
                    return Err((t.col, "expected one target".into()));
                }
                let name = toks
                    .get(i + 1)
                    .filter(|n| !n.s.starts_with('-'))
                    .ok_or_else(|| (t.col + 3, format!("expected a target after {s}")))?;
                let start = t.start;
                i += 2;
                let opts = read_opts(toks, &mut i);
                let end = opts.last().map_or(name.end, |o| o.end);
                target_seen = true;
                rule.target = if s == "-g" || s == "--goto" {
                    if opts.is_empty() {
                        Target::Goto(name.s.to_string())
                    } else {
                        Target::Unknown {
                            name: name.s.to_string(),
                            text: line[start..end].to_string(),
                        }
                    }
                } else {
                    target(&name.s, &opts, &line[start..end], hints)
                };
            }
            _ if s.starts_with("--") => {
                // Options of the protocol's own match, written without `-m tcp`.
                let start = toks[i.saturating_sub(negate as usize)].start;
                let opts = read_opts(toks, &mut i);
                let end = opts.last().map_or(t.end, |o| o.end);
                let implicit = proto.as_deref().unwrap_or_default();
                let mut opts = opts;
                if negate {
                    if let Some(o) = opts.first_mut() {
                        o.negated = !o.negated;
                    }
                }
                module(&mut rule, hints, implicit, &opts, line, &line[start..end]);
            }
            _ => {
                return Err((t.col, "expected an option".into()));
            }
        }
        negate = false;
    }
    if negate {
        return Err((
            toks.last().map_or(1, |t| t.col),
            "expected an option after !".into(),
        ));
    }
    Ok(rule)
}

fn push(rule: &mut Rule, negated: bool, kind: MatchKind) {
    rule.matches.push(Match { negated, kind });
}

/// `Some(Some(p))` for a protocol, `Some(None)` for `all`, `None` when unknown.
pub(super) fn parse_proto(name: &str) -> Option<Option<Proto>> {
    let p = match name {
        "all" | "0" => return Some(None),
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        "icmp" => Proto::Icmp,
        "icmpv6" | "ipv6-icmp" | "icmp6" => Proto::Icmpv6,
        "sctp" => Proto::Sctp,
        "gre" => Proto::Gre,
        "esp" => Proto::Other(50),
        "ah" => Proto::Other(51),
        "udplite" => Proto::Other(136),
        "dccp" => Proto::Other(33),
        "igmp" => Proto::Other(2),
        "ipip" | "ipencap" => Proto::Other(4),
        "ipv6" => Proto::Other(41),
        "ospf" => Proto::Other(89),
        "vrrp" => Proto::Other(112),
        "mh" | "ipv6-mh" => Proto::Other(135),
        n => Proto::from_number(n.parse().ok()?),
    };
    Some(Some(p))
}

/// `10.0.0.0/8`, `10.0.0.0/255.0.0.0`, `10.0.0.1` (a /32), `2001:db8::/32`.
pub(super) fn parse_prefix(s: &str) -> Option<Prefix> {
    let (a, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let addr: IpAddr = a.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len {
        None => max,
        Some(l) if !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()) => {
            let n: u8 = l.parse().ok()?;
            if n > max {
                return None;
            }
            n
        }
        Some(l) => {
            let mask: IpAddr = l.parse().ok()?;
            let bits: u128 = match (addr, mask) {
                (IpAddr::V4(_), IpAddr::V4(m)) => u128::from(u32::from(m)) << 96,
                (IpAddr::V6(_), IpAddr::V6(m)) => u128::from(m),
                _ => return None,
            };
            let ones = bits.leading_ones();
            if bits.checked_shl(ones).unwrap_or(0) != 0 {
                // Not a contiguous mask.
                return None;
            }
            ones as u8
        }
    };
    Some(Prefix { addr, len })
}

/// A port or range split at `sep` (`:` in matches, `-` in NAT targets): `80`,
/// `8000:8080`, `:1023`, `1024:`.
pub(super) fn parse_port_range(s: &str, sep: char) -> Option<(u16, u16)> {
    match s.split_once(sep) {
        None => {
            let p = s.parse().ok()?;
            Some((p, p))
        }
        Some((a, b)) => {
            let lo = if a.is_empty() { 0 } else { a.parse().ok()? };
            let hi = if b.is_empty() {
                u16::MAX
            } else {
                b.parse().ok()?
            };
            (lo <= hi).then_some((lo, hi))
        }
    }
}

/// A multiport list: `80,443,8000:8080`.
pub(super) fn parse_ports(s: &str) -> Option<Ports> {
    let ranges = s
        .split(',')
        .map(|p| parse_port_range(p, ':'))
        .collect::<Option<Vec<_>>>()?;
    Some(Ports(ranges))
}

pub(super) fn parse_u32(s: &str) -> Option<u32> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// `V[/M]`, the mask defaulting to all ones.
pub(super) fn parse_mark(s: &str) -> Option<(u32, u32)> {
    match s.split_once('/') {
        Some((v, m)) => Some((parse_u32(v)?, parse_u32(m)?)),
        None => Some((parse_u32(s)?, u32::MAX)),
    }
}

fn one_arg<'t>(o: &Opt<'t>) -> Option<&'t str> {
    match o.args {
        [a] => Some(&a.s),
        _ => None,
    }
}

/// Turns one `-m NAME` (or a protocol's implicit match) into matches. Options natcheck
/// does not know become `Unknown` matches with their text, one per option; a module it
/// does not know is one `Unknown` with the whole module text.
fn module(
    rule: &mut Rule,
    hints: &mut FamilyHints,
    name: &str,
    opts: &[Opt],
    line: &str,
    text: &str,
) {
    let unknown_opt = |o: &Opt| MatchKind::Unknown {
        name: name.to_string(),
        text: if text.starts_with("-m") {
            format!("-m {name} {}", &line[o.start..o.end])
        } else {
            line[o.start..o.end].to_string()
        },
    };
    match name {
        "tcp" | "udp" | "sctp" | "udplite" | "dccp" => {
            for o in opts {
                let kind = match o.name {
                    "--sport" | "--source-port" => one_arg(o)
                        .and_then(|a| parse_port_range(a, ':'))
                        .map(|r| MatchKind::Sport(Ports(vec![r]))),
                    "--dport" | "--destination-port" => one_arg(o)
                        .and_then(|a| parse_port_range(a, ':'))
                        .map(|r| MatchKind::Dport(Ports(vec![r]))),
                    "--tcp-flags" if name == "tcp" => match o.args {
                        [m, c] => tcp_flags(&m.s)
                            .zip(tcp_flags(&c.s))
                            .map(|(mask, comp)| MatchKind::TcpFlags { mask, comp }),
                        _ => None,
                    },
                    "--syn" if name == "tcp" && o.args.is_empty() => Some(MatchKind::TcpFlags {
                        mask: 0x17,
                        comp: 0x02,
                    }),
                    _ => None,
                };
                let kind = kind.unwrap_or_else(|| unknown_opt(o));
                push(rule, o.negated, kind);
            }
        }
        "multiport" => {
            for o in opts {
                let kind = match o.name {
                    "--sports" | "--source-ports" => {
                        one_arg(o).and_then(parse_ports).map(MatchKind::Sport)
                    }
                    "--dports" | "--destination-ports" => {
                        one_arg(o).and_then(parse_ports).map(MatchKind::Dport)
                    }
                    "--ports" => one_arg(o).and_then(parse_ports).map(MatchKind::EitherPort),
                    _ => None,
                };
                let kind = kind.unwrap_or_else(|| unknown_opt(o));
                push(rule, o.negated, kind);
            }
        }
        "addrtype" => {
            let limit_in = opts.iter().any(|o| o.name == "--limit-iface-in");
            let limit_out = opts.iter().any(|o| o.name == "--limit-iface-out");
            for o in opts {
                let ty = one_arg(o).and_then(addr_types);
                let kind = match (o.name, ty) {
                    ("--limit-iface-in" | "--limit-iface-out", _) if o.args.is_empty() => continue,
                    ("--src-type", Some(t)) => MatchKind::AddrType {
                        src: t,
                        dst: Vec::new(),
                        limit_in,
                        limit_out,
                    },
                    ("--dst-type", Some(t)) => MatchKind::AddrType {
                        src: Vec::new(),
                        dst: t,
                        limit_in,
                        limit_out,
                    },
                    _ => unknown_opt(o),
                };
                push(rule, o.negated, kind);
            }
        }
        "set" => {
            for o in opts {
                let kind = match (o.name, o.args) {
                    ("--match-set" | "--set", [set, dims]) => dims
                        .s
                        .split(',')
                        .map(|d| match d {
                            "src" => Some(SetDim::Src),
                            "dst" => Some(SetDim::Dst),
                            _ => None,
                        })
                        .collect::<Option<Vec<_>>>()
                        .map(|dims| MatchKind::Set {
                            name: set.s.to_string(),
                            dims,
                        }),
                    _ => None,
                };
                let kind = kind.unwrap_or_else(|| unknown_opt(o));
                push(rule, o.negated, kind);
            }
        }
        "mark" | "connmark" => {
            for o in opts {
                let kind = match o.name {
                    "--mark" => one_arg(o).and_then(parse_mark).map(|(value, mask)| {
                        if name == "mark" {
                            MatchKind::Mark { value, mask }
                        } else {
                            MatchKind::ConnMark { value, mask }
                        }
                    }),
                    _ => None,
                };
                let kind = kind.unwrap_or_else(|| unknown_opt(o));
                push(rule, o.negated, kind);
            }
        }
        "conntrack" | "state" => {
            for o in opts {
                let mut negated = o.negated;
                let kind = match o.name {
                    "--ctstate" | "--state" => {
                        one_arg(o).and_then(ct_states).map(MatchKind::CtState)
                    }
                    "--ctorigdst" | "--ctorigsrc" => one_arg(o).and_then(parse_prefix).map(|p| {
                        hints.addr(p.addr);
                        if o.name == "--ctorigdst" {
                            MatchKind::CtOrigDst(p)
                        } else {
                            MatchKind::CtOrigSrc(p)
                        }
                    }),
                    "--ctorigdstport" => one_arg(o)
                        .and_then(|a| parse_port_range(a, ':'))
                        .map(|r| MatchKind::CtOrigDstPort(Ports(vec![r]))),
                    "--ctdir" => match one_arg(o) {
                        Some("REPLY") => Some(MatchKind::CtDirReply),
                        Some("ORIGINAL") => {
                            negated = !negated;
                            Some(MatchKind::CtDirReply)
                        }
                        _ => None,
                    },
                    _ => None,
                };
                let kind = kind.unwrap_or_else(|| unknown_opt(o));
                push(rule, negated, kind);
            }
        }
        "statistic" => {
            let get = |n: &str| opts.iter().find(|o| o.name == n).and_then(one_arg);
            let negated = opts.iter().any(|o| o.negated);
            let known = opts
                .iter()
                .all(|o| matches!(o.name, "--mode" | "--probability" | "--every" | "--packet"));
            let kind = match (known, get("--mode")) {
                (true, Some("random")) => get("--probability")
                    .and_then(|p| p.parse::<f64>().ok())
                    .filter(|p| (0.0..=1.0).contains(p))
                    .map(|probability| MatchKind::Random { probability }),
                (true, Some("nth")) => get("--every")
                    .and_then(|e| e.parse::<u32>().ok())
                    .zip(get("--packet").map_or(Some(0), |p| p.parse::<u32>().ok()))
                    .map(|(every, packet)| MatchKind::Nth { every, packet }),
                _ => None,
            };
            match kind {
                Some(kind) => push(rule, negated, kind),
                None => push(
                    rule,
                    false,
                    MatchKind::Unknown {
                        name: name.to_string(),
                        text: text.to_string(),
                    },
                ),
            }
        }
        "icmp" | "icmp6" | "icmpv6" | "ipv6-icmp" => {
            for o in opts {
                let kind = match o.name {
                    "--icmp-type" => {
                        hints.v4 += 1;
                        one_arg(o).and_then(|a| icmp_type(a, ICMP_NAMES))
                    }
                    "--icmpv6-type" => {
                        hints.v6 += 1;
                        one_arg(o).and_then(|a| icmp_type(a, ICMPV6_NAMES))
                    }
                    _ => None,
                };
                match kind {
                    // `any`: every ICMP message.
                    Some(None) if !o.negated => {}
                    Some(Some((icmp_type, code))) => {
                        push(rule, o.negated, MatchKind::IcmpType { icmp_type, code })
                    }
                    _ => push(rule, false, unknown_opt(o)),
                }
            }
        }
        "comment" => {
            for o in opts {
                match (o.name, one_arg(o)) {
                    ("--comment", Some(c)) => {
                        if rule.comment.is_none() {
                            rule.comment = Some(c.to_string());
                        }
                        push(rule, false, MatchKind::Comment);
                    }
                    _ => push(rule, false, unknown_opt(o)),
                }
            }
            if opts.is_empty() {
                push(rule, false, MatchKind::Comment);
            }
        }
        _ => {
            if matches!(
                name,
                "ipv6header" | "rt" | "frag" | "hbh" | "dst" | "mh" | "eui64" | "hl"
            ) {
                hints.v6 += 1;
            }
            if name.is_empty() {
                for o in opts {
                    push(
                        rule,
                        false,
                        MatchKind::Unknown {
                            name: o.name.trim_start_matches('-').to_string(),
                            text: line[o.start..o.end].to_string(),
                        },
                    );
                }
            } else {
                push(
                    rule,
                    false,
                    MatchKind::Unknown {
                        name: name.to_string(),
                        text: text.to_string(),
                    },
                );
            }
        }
    }
}

/// `LOCAL`, or a list: `UNICAST,LOCAL`.
pub(super) fn addr_types(s: &str) -> Option<Vec<AddrType>> {
    s.split(',').map(addr_type).collect()
}

fn addr_type(s: &str) -> Option<AddrType> {
    Some(match s {
        "LOCAL" => AddrType::Local,
        "UNICAST" => AddrType::Unicast,
        "BROADCAST" => AddrType::Broadcast,
        "MULTICAST" => AddrType::Multicast,
        "UNSPEC" | "ANYCAST" | "BLACKHOLE" | "UNREACHABLE" | "PROHIBIT" | "THROW" | "NAT"
        | "XRESOLVE" => AddrType::Other,
        _ => return None,
    })
}

pub(super) fn ct_states(s: &str) -> Option<Vec<CtState>> {
    s.split(',')
        .map(|w| {
            Some(match w {
                "NEW" => CtState::New,
                "ESTABLISHED" => CtState::Established,
                "RELATED" => CtState::Related,
                "INVALID" => CtState::Invalid,
                "UNTRACKED" => CtState::Untracked,
                "SNAT" => CtState::Snat,
                "DNAT" => CtState::Dnat,
                _ => return None,
            })
        })
        .collect()
}

/// `SYN,ACK`, `ALL`, `NONE` → flag bits.
pub(super) fn tcp_flags(s: &str) -> Option<u8> {
    s.split(',').try_fold(0u8, |acc, f| {
        Some(
            acc | match f {
                "FIN" => 0x01,
                "SYN" => 0x02,
                "RST" => 0x04,
                "PSH" => 0x08,
                "ACK" => 0x10,
                "URG" => 0x20,
                "ECE" => 0x40,
                "CWR" => 0x80,
                "ALL" => 0xff,
                "NONE" => 0,
                _ => return None,
            },
        )
    })
}

pub(super) type IcmpName = (&'static str, u8, Option<u8>);

pub(super) const ICMP_NAMES: &[IcmpName] = &[
    ("echo-reply", 0, None),
    ("pong", 0, None),
    ("destination-unreachable", 3, None),
    ("network-unreachable", 3, Some(0)),
    ("host-unreachable", 3, Some(1)),
    ("protocol-unreachable", 3, Some(2)),
    ("port-unreachable", 3, Some(3)),
    ("fragmentation-needed", 3, Some(4)),
    ("source-route-failed", 3, Some(5)),
    ("network-unknown", 3, Some(6)),
    ("host-unknown", 3, Some(7)),
    ("network-prohibited", 3, Some(9)),
    ("host-prohibited", 3, Some(10)),
    ("TOS-network-unreachable", 3, Some(11)),
    ("TOS-host-unreachable", 3, Some(12)),
    ("communication-prohibited", 3, Some(13)),
    ("host-precedence-violation", 3, Some(14)),
    ("precedence-cutoff", 3, Some(15)),
    ("source-quench", 4, None),
    ("redirect", 5, None),
    ("network-redirect", 5, Some(0)),
    ("host-redirect", 5, Some(1)),
    ("TOS-network-redirect", 5, Some(2)),
    ("TOS-host-redirect", 5, Some(3)),
    ("echo-request", 8, None),
    ("ping", 8, None),
    ("router-advertisement", 9, None),
    ("router-solicitation", 10, None),
    ("time-exceeded", 11, None),
    ("ttl-exceeded", 11, None),
    ("ttl-zero-during-transit", 11, Some(0)),
    ("ttl-zero-during-reassembly", 11, Some(1)),
    ("parameter-problem", 12, None),
    ("ip-header-bad", 12, Some(0)),
    ("required-option-missing", 12, Some(1)),
    ("timestamp-request", 13, None),
    ("timestamp-reply", 14, None),
    ("address-mask-request", 17, None),
    ("address-mask-reply", 18, None),
];

const ICMPV6_NAMES: &[IcmpName] = &[
    ("destination-unreachable", 1, None),
    ("no-route", 1, Some(0)),
    ("communication-prohibited", 1, Some(1)),
    ("beyond-scope", 1, Some(2)),
    ("address-unreachable", 1, Some(3)),
    ("port-unreachable", 1, Some(4)),
    ("failed-policy", 1, Some(5)),
    ("reject-route", 1, Some(6)),
    ("packet-too-big", 2, None),
    ("time-exceeded", 3, None),
    ("ttl-exceeded", 3, None),
    ("ttl-zero-during-transit", 3, Some(0)),
    ("ttl-zero-during-reassembly", 3, Some(1)),
    ("parameter-problem", 4, None),
    ("bad-header", 4, Some(0)),
    ("unknown-header-type", 4, Some(1)),
    ("unknown-option", 4, Some(2)),
    ("echo-request", 128, None),
    ("ping", 128, None),
    ("echo-reply", 129, None),
    ("pong", 129, None),
    ("router-solicitation", 133, None),
    ("router-advertisement", 134, None),
    ("neighbour-solicitation", 135, None),
    ("neighbor-solicitation", 135, None),
    ("neighbour-advertisement", 136, None),
    ("neighbor-advertisement", 136, None),
    ("redirect", 137, None),
];

/// `T`, `T/C` or a name; `Some(None)` for `any`.
pub(super) fn icmp_type(s: &str, names: &[IcmpName]) -> Option<Option<(u8, Option<u8>)>> {
    if s == "any" {
        return Some(None);
    }
    if let Some(&(_, t, c)) = names.iter().find(|n| n.0.eq_ignore_ascii_case(s)) {
        return Some(Some((t, c)));
    }
    match s.split_once('/') {
        Some((t, c)) => Some(Some((t.parse().ok()?, Some(c.parse().ok()?)))),
        None => Some(Some((s.parse().ok()?, None))),
    }
}

/// Targets that are extensions, not user chains: known by name so that `-j NAME`
/// without options is not taken for a jump.
pub(super) const EXTENSION_TARGETS: &[&str] = &[
    "QUEUE",
    "NFQUEUE",
    "TPROXY",
    "NETMAP",
    "SAME",
    "MIRROR",
    "TEE",
    "SYNPROXY",
    "CLUSTERIP",
    "HMARK",
    "RATEEST",
    "IDLETIMER",
    "LED",
    "AUDIT",
    "SET",
    "ECN",
];

/// Targets that change nothing natcheck follows and never decide.
pub(super) const CONTINUE_TARGETS: &[&str] = &[
    "TCPMSS",
    "CHECKSUM",
    "CLASSIFY",
    "DSCP",
    "TOS",
    "TTL",
    "HL",
    "TCPOPTSTRIP",
    "SECMARK",
    "CONNSECMARK",
];

/// Turns `-j NAME OPTS` into a target; `text` is the target's text as written.
fn target(name: &str, opts: &[Opt], text: &str, hints: &mut FamilyHints) -> Target {
    let unknown = || Target::Unknown {
        name: name.to_string(),
        text: text.to_string(),
    };
    let get = |n: &str| opts.iter().find(|o| o.name == n);
    let only = |allowed: &[&str]| opts.iter().all(|o| allowed.contains(&o.name) && !o.negated);
    let flags = || NatFlags {
        random: get("--random").is_some(),
        random_fully: get("--random-fully").is_some(),
        persistent: get("--persistent").is_some(),
    };
    match name {
        "ACCEPT" | "DROP" | "RETURN" if !opts.is_empty() => unknown(),
        "ACCEPT" => Target::Accept,
        "DROP" => Target::Drop,
        "RETURN" => Target::Return,
        "REJECT" => {
            if !only(&["--reject-with"]) {
                return unknown();
            }
            let with = get("--reject-with").and_then(one_arg).map(str::to_string);
            if let Some(w) = &with {
                if w.starts_with("icmp6-") {
                    hints.v6 += 1;
                } else if w.starts_with("icmp-") {
                    hints.v4 += 1;
                }
            }
            Target::Reject { with }
        }
        "DNAT" | "SNAT" => {
            let opt = if name == "DNAT" {
                "--to-destination"
            } else {
                "--to-source"
            };
            if !only(&[opt, "--random", "--random-fully", "--persistent"])
                || opts.iter().filter(|o| o.name == opt).count() != 1
            {
                return unknown();
            }
            let Some(to) = get(opt).and_then(one_arg).and_then(parse_nat_to) else {
                return unknown();
            };
            if let Some((a, _)) = to.addrs {
                hints.addr(a);
            }
            if name == "DNAT" {
                Target::Dnat { to, flags: flags() }
            } else {
                Target::Snat { to, flags: flags() }
            }
        }
        "MASQUERADE" | "REDIRECT" => {
            if !only(&["--to-ports", "--random", "--random-fully"]) {
                return unknown();
            }
            let ports = match get("--to-ports") {
                Some(o) => match one_arg(o).and_then(|a| parse_port_range(a, '-')) {
                    Some(r) => Some(r),
                    None => return unknown(),
                },
                None => None,
            };
            if name == "MASQUERADE" {
                Target::Masquerade {
                    ports,
                    flags: flags(),
                }
            } else {
                Target::Redirect {
                    ports,
                    flags: flags(),
                }
            }
        }
        "NETMAP" => {
            if !only(&["--to"]) {
                return unknown();
            }
            let Some(to) = get("--to").and_then(one_arg).and_then(parse_prefix) else {
                return unknown();
            };
            hints.addr(to.addr);
            Target::Netmap { to }
        }
        "MARK" | "CONNMARK" => {
            if name == "CONNMARK"
                && opts
                    .iter()
                    .any(|o| o.name == "--save-mark" || o.name == "--restore-mark")
            {
                return copy_mark(opts).unwrap_or_else(unknown);
            }
            let [o] = opts else {
                return unknown();
            };
            let Some(op) = one_arg(o).and_then(|a| mark_op(o.name, a)) else {
                return unknown();
            };
            if o.negated {
                return unknown();
            }
            if name == "MARK" {
                Target::Mark(op)
            } else {
                Target::ConnMark(op)
            }
        }
        "LOG" | "NFLOG" | "TRACE" | "ULOG" => Target::Log,
        "NOTRACK" => Target::Notrack,
        "CT" if get("--notrack").is_some() => Target::Notrack,
        "CT" if get("--helper").is_some() => match get("--helper").and_then(one_arg) {
            Some(helper) => Target::Helper {
                name: helper.to_string(),
            },
            None => unknown(),
        },
        "CT" => Target::Continue {
            name: name.to_string(),
        },
        n if CONTINUE_TARGETS.contains(&n) => Target::Continue {
            name: name.to_string(),
        },
        n if EXTENSION_TARGETS.contains(&n) || !opts.is_empty() => unknown(),
        _ => Target::Jump(name.to_string()),
    }
}

/// `CONNMARK --restore-mark|--save-mark [--nfmask M] [--ctmask M] [--mask M]`.
fn copy_mark(opts: &[Opt]) -> Option<Target> {
    let (mut restore, mut nfmask, mut ctmask) = (None, u32::MAX, u32::MAX);
    for o in opts {
        match (o.name, one_arg(o)) {
            ("--restore-mark", None) if o.args.is_empty() => restore = Some(true),
            ("--save-mark", None) if o.args.is_empty() => restore = Some(false),
            ("--nfmask", Some(m)) => nfmask = parse_u32(m)?,
            ("--ctmask", Some(m)) => ctmask = parse_u32(m)?,
            ("--mask", Some(m)) => {
                nfmask = parse_u32(m)?;
                ctmask = nfmask;
            }
            _ => return None,
        }
    }
    Some(Target::CopyMark {
        restore: restore?,
        nfmask,
        ctmask,
    })
}

/// A MARK/CONNMARK option as `mark = (mark & !clear) ^ xor`.
pub(super) fn mark_op(opt: &str, arg: &str) -> Option<MarkOp> {
    Some(match opt {
        "--set-xmark" => {
            let (v, m) = parse_mark(arg)?;
            MarkOp { clear: m, xor: v }
        }
        // `--set-mark V/M` zeroes M and ORs V in: the kernel clears `M | V`, then the
        // XOR sets V.
        "--set-mark" => {
            let (v, m) = parse_mark(arg)?;
            MarkOp {
                clear: m | v,
                xor: v,
            }
        }
        "--or-mark" => {
            let v = parse_u32(arg)?;
            MarkOp { clear: v, xor: v }
        }
        "--and-mark" => {
            let v = parse_u32(arg)?;
            MarkOp { clear: !v, xor: 0 }
        }
        "--xor-mark" => {
            let v = parse_u32(arg)?;
            MarkOp { clear: 0, xor: v }
        }
        _ => return None,
    })
}

/// `A`, `A-B`, `A:p`, `A-B:p-q`, `[v6]:p`, `[v6]-[v6]:p-q`, `v6`, `:p-q`.
pub(super) fn parse_nat_to(s: &str) -> Option<NatTo> {
    fn addr(s: &str) -> Option<IpAddr> {
        let s = s
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .unwrap_or(s);
        s.parse().ok()
    }
    let (addrs, ports) = if s.starts_with('[') {
        // Bracketed IPv6: the port follows the last `]`.
        let close = s.rfind(']')?;
        let (a, rest) = s.split_at(close + 1);
        let ports = match rest {
            "" => None,
            r => Some(r.strip_prefix(':')?),
        };
        (Some(a), ports)
    } else if s.bytes().filter(|&b| b == b':').count() > 1 {
        // A bare IPv6 address or range: no port.
        (Some(s), None)
    } else {
        match s.split_once(':') {
            Some((a, p)) => ((!a.is_empty()).then_some(a), Some(p)),
            None => (Some(s), None),
        }
    };
    let addrs = match addrs {
        None => None,
        Some(a) => {
            // `A-B`; for bracketed forms the `-` sits between `]` and `[`.
            let bracketed = a.starts_with('[').then(|| a.find("]-[")).flatten();
            let (lo, hi) = match bracketed {
                Some(i) => (&a[..=i], &a[i + 2..]),
                None => match a.split_once('-') {
                    Some((lo, hi)) if !a.starts_with('[') => (lo, hi),
                    _ => (a, a),
                },
            };
            let (lo, hi) = (addr(lo)?, addr(hi)?);
            if lo.is_ipv4() != hi.is_ipv4() {
                return None;
            }
            Some((lo, hi))
        }
    };
    let ports = match ports {
        None => None,
        Some(p) => Some(parse_port_range(p, '-')?),
    };
    if addrs.is_none() && ports.is_none() {
        return None;
    }
    Some(NatTo { addrs, ports })
}
