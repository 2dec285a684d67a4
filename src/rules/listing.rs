//! `iptables -L [-t TABLE] -n [-v] [--line-numbers] [-x]` listings → [`RuleSet`], as
//! far as the listing carries the rule.
//!
//! A listing is blocks of `Chain NAME (policy ACCEPT 0 packets, 0 bytes)` or `Chain
//! NAME (N references)`, each with a header line naming its columns (`num pkts bytes
//! target prot opt in out source destination`: which are there depends on `-v` and
//! `--line-numbers`), then one line per rule: those columns, then the free text the
//! match and target extensions print (`tcp dpt:30080`, `/* comment */`, `to:10.0.0.2:80`).
//!
//! The free text is read form by form; text that is no form natcheck knows becomes a
//! [`MatchKind::Unknown`] with that text, never a guessed match. Without `-v` the
//! listing does not show interfaces: such rules are read without their `-i`/`-o`.
//!
//! The table is the one a pasted command line names (`# iptables -t nat -L -n -v`),
//! else it is inferred as for `iptables -S` (the built-in chains listed, NAT targets).
//! A pasted command line, or a chain listed twice, starts a new table. Lines that fit
//! no form are located warnings.

use std::collections::HashMap;
use std::net::IpAddr;

use super::iptables::{
    addr_types, builtin, ct_states, hook_bit, icmp_type, infer_table, parse_mark, parse_nat_to,
    parse_port_range, parse_ports, parse_prefix, parse_proto, Clues, CONTINUE_TARGETS,
    EXTENSION_TARGETS, ICMP_NAMES,
};
use super::{
    Base, Chain, Counters, Dialect, Family, Iface, MarkOp, Match, MatchKind, NatFlags, Ports, Rule,
    RuleSet, SetDim, Table, Target, Verdict,
};
use crate::diag::{Location, Warning};

/// Whether a line is a pasted shell prompt or command (`# iptables -L -n`, `$ sudo
/// iptables -t nat -L`, `root@host:~# iptables -L`).
pub(super) fn is_command_line(line: &str) -> bool {
    let t = line.trim();
    if t.starts_with('#') || t.starts_with('$') {
        return true;
    }
    let first = t.split_whitespace().next().unwrap_or("");
    (first.ends_with('$') || first.ends_with('#') || first.ends_with('>')) && t.contains("tables")
}

/// Parses the listing; lines it cannot read are located warnings.
pub fn parse(source: &str, text: &str) -> RuleSet {
    let mut p = Reader {
        source,
        tables: Vec::new(),
        warnings: Vec::new(),
        cur: TableBuilder::default(),
        chain: None,
        cols: None,
    };
    for (i, raw) in text.split('\n').enumerate() {
        let line_no = i as u64 + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        p.line(line_no, line);
    }
    p.finish_table();
    let tables = super::iptables::with_families(p.tables.into_iter());
    RuleSet {
        source: source.to_string(),
        tables,
        warnings: p.warnings,
        ..RuleSet::default()
    }
}

#[derive(Default)]
struct TableBuilder {
    /// Named by a pasted command line.
    name: Option<String>,
    chains: Vec<Chain>,
    index: HashMap<String, usize>,
    policies: HashMap<String, (Verdict, Option<Counters>)>,
    clues: Clues,
    v4: usize,
    v6: usize,
}

impl TableBuilder {
    fn addr(&mut self, a: IpAddr) {
        if a.is_ipv4() {
            self.v4 += 1;
        } else {
            self.v6 += 1;
        }
    }
}

/// The columns a header line names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Col {
    Num,
    Pkts,
    Bytes,
    Target,
    Prot,
    Opt,
    In,
    Out,
    Source,
    Destination,
}

/// The in or out interface column (`eth0`, `!docker0`, `br+`).
fn iface_match(col: Col, t: &str) -> (bool, MatchKind) {
    let (neg, name) = negation(t);
    let iface = match name.strip_suffix('+') {
        Some(n) => Iface {
            name: n.to_string(),
            prefix: true,
        },
        None => Iface {
            name: name.to_string(),
            prefix: false,
        },
    };
    let kind = if col == Col::In {
        MatchKind::InIface(iface)
    } else {
        MatchKind::OutIface(iface)
    };
    (neg, kind)
}

/// One form's place in a rule line: the line, its words, where the form starts, a
/// leading `!`, the form's key word and the word after it.
#[derive(Clone, Copy)]
struct Form<'a> {
    line: &'a str,
    toks: &'a [(usize, usize)],
    i: usize,
    neg: bool,
    off: usize,
    key: &'a str,
    arg: Option<&'a str>,
}

struct Reader<'a> {
    source: &'a str,
    tables: Vec<(Table, usize, usize)>,
    warnings: Vec<Warning>,
    cur: TableBuilder,
    /// The chain being listed (index in `cur.chains`).
    chain: Option<usize>,
    /// Its header's columns, once seen.
    cols: Option<Vec<Col>>,
}

impl Reader<'_> {
    fn warn(&mut self, line: u64, message: String) {
        self.warnings.push(Warning {
            source: self.source.to_string(),
            location: Location::Line { line, column: 1 },
            message,
        });
    }

    fn line(&mut self, line_no: u64, line: &str) {
        let t = line.trim();
        if t.is_empty() {
            return;
        }
        if let Some(rest) = t.strip_prefix("Chain ") {
            self.chain_decl(line_no, rest);
        } else if is_command_line(t) {
            if is_list_command(t) {
                self.finish_table();
                self.cur.name = table_of_command(t);
            }
        } else if let Some(cols) = header(t) {
            if self.chain.is_none() {
                self.warn(line_no, "expected a Chain line before the header".into());
            }
            self.cols = Some(cols);
        } else {
            match (self.chain, self.cols.clone()) {
                (Some(ci), Some(cols)) => match self.rule(line_no, line, &cols) {
                    Some(rule) => self.cur.chains[ci].rules.push(rule),
                    None => self.warn(
                        line_no,
                        format!("expected a rule line with the columns {}", col_names(&cols)),
                    ),
                },
                _ => self.warn(
                    line_no,
                    "expected an iptables -L listing: Chain NAME (...), a header or a rule".into(),
                ),
            }
        }
    }

    /// `NAME (policy ACCEPT 0 packets, 0 bytes)`, `NAME (policy DROP)`, `NAME (2
    /// references)`.
    fn chain_decl(&mut self, line_no: u64, rest: &str) {
        let Some((name, paren)) = rest.split_once(' ') else {
            self.warn(line_no, "expected Chain NAME (...)".into());
            self.chain = None;
            return;
        };
        let inner = paren
            .trim()
            .strip_prefix('(')
            .and_then(|r| r.strip_suffix(')'));
        let Some(inner) = inner else {
            self.warn(line_no, "expected Chain NAME (...)".into());
            self.chain = None;
            return;
        };
        let words: Vec<&str> = inner.split_whitespace().collect();
        let policy = match words.as_slice() {
            ["policy", v, rest @ ..] => {
                let verdict = match *v {
                    "ACCEPT" => Verdict::Accept,
                    "DROP" => Verdict::Drop,
                    _ => {
                        self.warn(line_no, format!("expected policy ACCEPT or DROP, not {v}"));
                        Verdict::Accept
                    }
                };
                let counters = match rest {
                    [p, "packets,", b, "bytes"] => match (count(p), count(b)) {
                        (Some(packets), Some(bytes)) => Some(Counters { packets, bytes }),
                        _ => None,
                    },
                    _ => None,
                };
                Some((verdict, counters))
            }
            [_, "references" | "reference"] => None,
            _ => {
                self.warn(
                    line_no,
                    "expected (policy VERDICT ...) or (N references)".into(),
                );
                None
            }
        };
        if self.cur.index.contains_key(name) {
            // The same chain again: another listing pasted after this one.
            self.finish_table();
        }
        let ci = self.cur.chains.len();
        self.cur.index.insert(name.to_string(), ci);
        self.cur.chains.push(Chain {
            name: name.to_string(),
            base: None,
            rules: Vec::new(),
            line: line_no,
        });
        if let Some(pol) = policy {
            self.cur.clues.policies |= hook_bit(name);
            self.cur.policies.insert(name.to_string(), pol);
        }
        self.chain = Some(ci);
        self.cols = None;
    }

    fn finish_table(&mut self) {
        self.chain = None;
        self.cols = None;
        let mut t = std::mem::take(&mut self.cur);
        if t.chains.is_empty() {
            return;
        }
        let name = t
            .name
            .take()
            .unwrap_or_else(|| infer_table(t.clues).to_string());
        let chain_names: std::collections::HashSet<String> =
            t.chains.iter().map(|c| c.name.clone()).collect();
        for chain in &mut t.chains {
            if let Some((hook, priority, kind)) = builtin(&name, &chain.name) {
                let (policy, counters) = t
                    .policies
                    .get(&chain.name)
                    .cloned()
                    .unwrap_or((Verdict::Accept, None));
                chain.base = Some(Base {
                    hook,
                    priority,
                    kind,
                    policy,
                    counters,
                });
            }
            // A jump to a chain the listing does not show may be an extension target
            // natcheck does not know: not followed.
            for r in &mut chain.rules {
                if let Target::Jump(n) | Target::Goto(n) = &r.target {
                    if !chain_names.contains(n) {
                        r.target = Target::Unknown {
                            name: n.clone(),
                            text: n.clone(),
                        };
                    }
                }
            }
        }
        self.tables.push((
            Table {
                source: self.source.to_string(),
                name,
                family: Family::Ip,
                dialect: Dialect::IptablesS,
                chains: t.chains,
            },
            t.v4,
            t.v6,
        ));
    }

    fn rule(&mut self, line_no: u64, line: &str, cols: &[Col]) -> Option<Rule> {
        let toks = spans(line);
        let mut i = 0;
        let mut rule = Rule {
            line: line_no,
            handle: None,
            text: line.trim_end().to_string(),
            matches: Vec::new(),
            target: Target::None,
            counters: None,
            comment: None,
        };
        let tok = |i: usize| toks.get(i).map(|&(a, b)| &line[a..b]);
        let mut target_name = String::new();
        let mut packets = None;
        let mut bytes = None;
        for &col in cols {
            match col {
                Col::Num => {
                    tok(i)?.parse::<u64>().ok()?;
                    i += 1;
                }
                Col::Pkts => {
                    packets = Some(count(tok(i)?)?);
                    i += 1;
                }
                Col::Bytes => {
                    bytes = Some(count(tok(i)?)?);
                    i += 1;
                }
                Col::Target => {
                    // An empty target column: the next word is the protocol, and the
                    // one after it the option flags, or (ip6tables leaves them blank)
                    // no protocol.
                    let t = tok(i)?;
                    let proto_like = |w: &str| parse_proto(w.trim_start_matches('!')).is_some();
                    let empty = cols.contains(&Col::Prot)
                        && proto_like(t)
                        && tok(i + 1).is_some_and(|n| is_opt(n) || !proto_like(n));
                    if !empty {
                        target_name = t.to_string();
                        i += 1;
                    }
                }
                Col::Prot => {
                    let t = tok(i)?;
                    i += 1;
                    let (neg, name) = negation(t);
                    match parse_proto(name) {
                        Some(None) => {}
                        Some(Some(p)) => push(&mut rule, neg, MatchKind::Proto(p)),
                        None => push(&mut rule, false, unknown("prot", t)),
                    }
                }
                Col::Opt => {
                    // ip6tables prints the column blank.
                    if tok(i).is_some_and(is_opt) {
                        if tok(i) != Some("--") {
                            push(&mut rule, false, unknown("opt", tok(i)?));
                        }
                        i += 1;
                    }
                }
                Col::In | Col::Out => {
                    let t = tok(i)?;
                    i += 1;
                    if t != "*" {
                        let (neg, kind) = iface_match(col, t);
                        push(&mut rule, neg, kind);
                    }
                }
                Col::Source | Col::Destination => {
                    let t = tok(i)?;
                    i += 1;
                    self.address_col(col, t, &mut rule);
                }
            }
        }
        if let (Some(packets), Some(bytes)) = (packets, bytes) {
            rule.counters = Some(Counters { packets, bytes });
        }
        self.extensions(line, &toks[i.min(toks.len())..], &target_name, &mut rule);
        Some(rule)
    }

    /// The free text after the columns: the matches' forms, then the target's own
    /// text (a leading `[goto]` marks a goto); what the target tells of the table.
    fn extensions(
        &mut self,
        line: &str,
        toks: &[(usize, usize)],
        target_name: &str,
        rule: &mut Rule,
    ) {
        let mut goto = false;
        let mut rest: Vec<(usize, usize)> = toks.to_vec();
        if rest.first().is_some_and(|&(a, b)| &line[a..b] == "[goto]") {
            goto = true;
            rest.remove(0);
        }
        // The target's own text: from the word its extension starts with.
        let (match_toks, target_toks) = split_target(line, &rest, target_name);
        self.matches(line, match_toks, rule);
        rule.target = self.target(line, target_name, target_toks, goto);
        self.cur.clues.target(&rule.target);
        if let Some(ci) = self.chain {
            self.cur.clues.rules |= hook_bit(&self.cur.chains[ci].name);
        }
    }

    /// The source or destination column: a prefix (`0.0.0.0/0` and `anywhere` match
    /// anything), possibly negated.
    fn address_col(&mut self, col: Col, t: &str, rule: &mut Rule) {
        let (neg, a) = negation(t);
        if a == "anywhere" {
            return;
        }
        let Some(p) = parse_prefix(a) else {
            let what = if col == Col::Source {
                "source"
            } else {
                "destination"
            };
            push(rule, false, unknown(what, t));
            return;
        };
        self.cur.addr(p.addr);
        if p.len != 0 {
            let kind = if col == Col::Source {
                MatchKind::Src(p)
            } else {
                MatchKind::Dst(p)
            };
            push(rule, neg, kind);
        } else if neg {
            // `!0.0.0.0/0`: nothing matches; keep it undecided.
            push(rule, false, unknown("address", t));
        }
    }

    /// The extensions' match text, form by form.
    fn matches(&mut self, line: &str, toks: &[(usize, usize)], rule: &mut Rule) {
        let w = |i: usize| toks.get(i).map(|&(a, b)| &line[a..b]);
        let mut i = 0;
        // The start of a run of words no form reads.
        let mut unread: Option<usize> = None;
        while i < toks.len() {
            let before = rule.matches.len();
            let n = self.form(line, toks, i, rule);
            if n == 0 {
                unread.get_or_insert(i);
                i += 1;
                continue;
            }
            if let Some(s) = unread.take() {
                // Keep the order: the unread text before what this form read.
                let text = &line[toks[s].0..toks[i - 1].1];
                let name = w(s).unwrap_or("").trim_start_matches('!').to_string();
                let new: Vec<Match> = rule.matches.drain(before..).collect();
                rule.matches.push(Match {
                    negated: false,
                    kind: MatchKind::Unknown {
                        name,
                        text: text.to_string(),
                    },
                });
                rule.matches.extend(new);
            }
            i += n;
        }
        if let Some(s) = unread {
            let text = &line[toks[s].0..toks[toks.len() - 1].1];
            let name = w(s).unwrap_or("").trim_start_matches('!').to_string();
            push(
                rule,
                false,
                MatchKind::Unknown {
                    name,
                    text: text.to_string(),
                },
            );
        }
    }

    /// Reads one form at `toks[i]`; returns how many words it took (0: none).
    fn form(&mut self, line: &str, toks: &[(usize, usize)], i: usize, rule: &mut Rule) -> usize {
        let w = |k: usize| toks.get(k).map(|&(a, b)| &line[a..b]);
        let Some(first) = w(i) else { return 0 };
        if first.starts_with("/*") {
            let mut k = i;
            while k < toks.len() {
                if w(k).is_some_and(|t| t.ends_with("*/")) && (k > i || first.len() >= 4) {
                    let text = &line[toks[i].0 + 2..toks[k].1 - 2];
                    rule.comment = Some(text.trim().to_string());
                    push(rule, false, MatchKind::Comment);
                    return k - i + 1;
                }
                k += 1;
            }
            return 0;
        }
        let (neg, off) = if first == "!" { (true, 1) } else { (false, 0) };
        let Some(key) = w(i + off) else { return 0 };
        let arg = w(i + off + 1);
        let f = Form {
            line,
            toks,
            i,
            neg,
            off,
            key,
            arg,
        };
        match self.ports_form(&f, rule) {
            0 => match self.ct_form(&f, rule) {
                0 => self.other_form(&f, rule),
                n => n,
            },
            n => n,
        }
    }

    /// Reads the forms of the transport matches: ports, multiport, ICMP types (see [`Self::form`]).
    fn ports_form(&mut self, f: &Form, rule: &mut Rule) -> usize {
        let Form {
            i,
            neg,
            off,
            key,
            line,
            toks,
            ..
        } = *f;
        let w = |k: usize| toks.get(k).map(|&(a, b)| &line[a..b]);
        match key {
            "tcp" | "udp" if !neg => {
                // `tcp spt:1024:65535 dpt:80 flags:0x17/0x02`.
                let mut k = i + 1;
                let mut kinds = Vec::new();
                while let Some(t) = w(k) {
                    let (name, v) = match t.split_once(':') {
                        Some(x) => x,
                        None => break,
                    };
                    let (vneg, v) = negation(v);
                    let kind = match name {
                        "spt" | "spts" => {
                            parse_port_range(v, ':').map(|r| MatchKind::Sport(Ports(vec![r])))
                        }
                        "dpt" | "dpts" => {
                            parse_port_range(v, ':').map(|r| MatchKind::Dport(Ports(vec![r])))
                        }
                        "flags" if key == "tcp" => tcp_flags_arg(v),
                        _ => break,
                    };
                    let Some(kind) = kind else { break };
                    kinds.push(Match {
                        negated: vneg,
                        kind,
                    });
                    k += 1;
                }
                rule.matches.extend(kinds);
                k - i
            }
            "multiport" if !neg => {
                let (dir, mut k) = match w(i + 1) {
                    Some(d @ ("dports" | "sports" | "ports")) => (d, i + 2),
                    _ => return 0,
                };
                let mneg = w(k) == Some("!");
                if mneg {
                    k += 1;
                }
                let Some(list) = w(k).map(|t| t.trim_start_matches('!')) else {
                    return 0;
                };
                let mneg = mneg || w(k).is_some_and(|t| t.starts_with('!'));
                let Some(ports) = parse_ports(list) else {
                    return 0;
                };
                let kind = match dir {
                    "dports" => MatchKind::Dport(ports),
                    "sports" => MatchKind::Sport(ports),
                    _ => MatchKind::EitherPort(ports),
                };
                push(rule, mneg, kind);
                k + 1 - i
            }
            "icmptype" | "!icmptype" | "icmp" => {
                // `icmptype 8`, `icmptype 3 code 1`, `icmp !type 8`.
                let (mut k, mut tneg) = (i + off + 1, neg || key.starts_with('!'));
                if key == "icmp" {
                    match w(k) {
                        Some("type") => {}
                        Some("!type") => tneg = true,
                        _ => return 0,
                    }
                    k += 1;
                }
                let Some(Some((t, mut code))) = w(k).and_then(|a| icmp_type(a, ICMP_NAMES)) else {
                    return 0;
                };
                k += 1;
                if w(k) == Some("code") {
                    match w(k + 1).and_then(|c| c.parse::<u8>().ok()) {
                        Some(c) => code = Some(c),
                        None => return 0,
                    }
                    k += 2;
                }
                push(rule, tneg, MatchKind::IcmpType { icmp_type: t, code });
                k - i
            }
            _ => 0,
        }
    }

    /// Reads the forms of conntrack and set matches (see [`Self::form`]).
    fn ct_form(&mut self, f: &Form, rule: &mut Rule) -> usize {
        let Form {
            i,
            neg,
            off,
            key,
            arg,
            line,
            toks,
        } = *f;
        let w = |k: usize| toks.get(k).map(|&(a, b)| &line[a..b]);
        match key {
            "ctstate" | "state" => one(
                rule,
                neg,
                off,
                arg.and_then(ct_states).map(MatchKind::CtState),
                2,
            ),
            "ctorigdstport" => one(
                rule,
                neg,
                off,
                arg.and_then(|a| parse_port_range(a, ':'))
                    .map(|r| MatchKind::CtOrigDstPort(Ports(vec![r]))),
                2,
            ),
            "ctorigdst" | "ctorigsrc" => {
                let p = arg.and_then(parse_prefix);
                if let Some(p) = p {
                    self.cur.addr(p.addr);
                }
                one(
                    rule,
                    neg,
                    off,
                    p.map(|p| {
                        if key == "ctorigdst" {
                            MatchKind::CtOrigDst(p)
                        } else {
                            MatchKind::CtOrigSrc(p)
                        }
                    }),
                    2,
                )
            }
            "ctdir" => match arg {
                Some("REPLY") => one(rule, neg, off, Some(MatchKind::CtDirReply), 2),
                Some("ORIGINAL") => {
                    push(rule, !neg, MatchKind::CtDirReply);
                    off + 2
                }
                _ => 0,
            },
            "match-set" => {
                let (Some(name), Some(dims)) = (arg, w(i + off + 2)) else {
                    return 0;
                };
                let dims: Option<Vec<SetDim>> = dims
                    .split(',')
                    .map(|d| match d {
                        "src" => Some(SetDim::Src),
                        "dst" => Some(SetDim::Dst),
                        _ => None,
                    })
                    .collect();
                one(
                    rule,
                    neg,
                    off,
                    dims.map(|dims| MatchKind::Set {
                        name: name.to_string(),
                        dims,
                    }),
                    3,
                )
            }
            _ => 0,
        }
    }

    /// Reads address type, statistic and mark matches (see [`Self::form`]).
    fn other_form(&mut self, f: &Form, rule: &mut Rule) -> usize {
        let Form {
            i,
            neg,
            key,
            line,
            toks,
            ..
        } = *f;
        let w = |k: usize| toks.get(k).map(|&(a, b)| &line[a..b]);
        match key {
            "ADDRTYPE" if !neg && w(i + 1) == Some("match") => {
                let mut k = i + 2;
                let mut out = Vec::new();
                let mut limit_in = false;
                let mut limit_out = false;
                loop {
                    match w(k) {
                        Some(d @ ("src-type" | "dst-type")) => {
                            let mut j = k + 1;
                            let mut tneg = false;
                            if w(j) == Some("!") {
                                tneg = true;
                                j += 1;
                            }
                            let Some(v) = w(j) else { return 0 };
                            let (vneg, v) = negation(v);
                            let Some(ty) = addr_types(v) else { return 0 };
                            out.push((d == "src-type", tneg || vneg, ty));
                            k = j + 1;
                        }
                        Some("limit-in") => {
                            limit_in = true;
                            k += 1;
                        }
                        Some("limit-out") => {
                            limit_out = true;
                            k += 1;
                        }
                        _ => break,
                    }
                }
                if out.is_empty() {
                    return 0;
                }
                for (src, tneg, ty) in out {
                    push(
                        rule,
                        tneg,
                        MatchKind::AddrType {
                            src: if src { ty.clone() } else { Vec::new() },
                            dst: if src { Vec::new() } else { ty },
                            limit_in,
                            limit_out,
                        },
                    );
                }
                k - i
            }
            "statistic" if !neg => match (w(i + 1), w(i + 2), w(i + 3), w(i + 4)) {
                (Some("mode"), Some("random"), Some("probability"), Some(p)) => {
                    match p.parse::<f64>() {
                        Ok(probability) if (0.0..=1.0).contains(&probability) => {
                            push(rule, false, MatchKind::Random { probability });
                            5
                        }
                        _ => 0,
                    }
                }
                (Some("mode"), Some("nth"), Some("every"), Some(e)) => {
                    match (e.parse::<u32>(), w(i + 5), w(i + 6).map(str::parse::<u32>)) {
                        (Ok(every), Some("packet"), Some(Ok(packet))) if every > 0 => {
                            push(rule, false, MatchKind::Nth { every, packet });
                            7
                        }
                        _ => 0,
                    }
                }
                _ => 0,
            },
            "mark" | "connmark" if !neg && w(i + 1) == Some("match") => {
                let mut k = i + 2;
                let mneg = w(k) == Some("!");
                if mneg {
                    k += 1;
                }
                let Some((value, mask)) = w(k).and_then(parse_mark) else {
                    return 0;
                };
                let kind = if key == "mark" {
                    MatchKind::Mark { value, mask }
                } else {
                    MatchKind::ConnMark { value, mask }
                };
                push(rule, mneg, kind);
                k + 1 - i
            }
            _ => 0,
        }
    }

    /// The target from its column and the text its extension printed.
    fn target(&mut self, line: &str, name: &str, toks: &[(usize, usize)], goto: bool) -> Target {
        let words: Vec<&str> = toks.iter().map(|&(a, b)| &line[a..b]).collect();
        let text = match (toks.first(), toks.last()) {
            (Some(f), Some(l)) => format!("{name} {}", &line[f.0..l.1]),
            _ => name.to_string(),
        };
        let unknown = || Target::Unknown {
            name: name.to_string(),
            text: text.clone(),
        };
        let flags = |ws: &[&str]| NatFlags {
            random: ws.contains(&"random"),
            random_fully: ws.contains(&"random-fully"),
            persistent: ws.contains(&"persistent"),
        };
        let only_flags = |ws: &[&str]| {
            ws.iter()
                .all(|w| matches!(*w, "random" | "random-fully" | "persistent"))
        };
        match name {
            "" if words.is_empty() => Target::None,
            "ACCEPT" | "DROP" | "RETURN" if !words.is_empty() => unknown(),
            "ACCEPT" => Target::Accept,
            "DROP" => Target::Drop,
            "RETURN" => Target::Return,
            "REJECT" => match words.as_slice() {
                [] => Target::Reject { with: None },
                ["reject-with", w] => {
                    if w.starts_with("icmp6-") {
                        self.cur.v6 += 1;
                    } else if w.starts_with("icmp-") {
                        self.cur.v4 += 1;
                    }
                    Target::Reject {
                        with: Some(w.to_string()),
                    }
                }
                _ => unknown(),
            },
            "DNAT" | "SNAT" => {
                let Some((to, rest)) = words.split_first() else {
                    return unknown();
                };
                let Some(to) = to.strip_prefix("to:").and_then(parse_nat_to) else {
                    return unknown();
                };
                if !only_flags(rest) {
                    return unknown();
                }
                if let Some((a, _)) = to.addrs {
                    self.cur.addr(a);
                }
                if name == "DNAT" {
                    Target::Dnat {
                        to,
                        flags: flags(rest),
                    }
                } else {
                    Target::Snat {
                        to,
                        flags: flags(rest),
                    }
                }
            }
            "MASQUERADE" | "REDIRECT" => port_nat(name, &words).unwrap_or_else(unknown),
            "NETMAP" => match words.as_slice() {
                [to] => match to.strip_prefix("to:").and_then(parse_prefix) {
                    Some(to) => {
                        self.cur.addr(to.addr);
                        Target::Netmap { to }
                    }
                    None => unknown(),
                },
                _ => unknown(),
            },
            "MARK" | "CONNMARK" => {
                let op = match words.as_slice() {
                    [n, op, v] if *n == name => mark_word(op, v),
                    _ => None,
                };
                match op {
                    Some(op) if name == "MARK" => Target::Mark(op),
                    Some(op) => Target::ConnMark(op),
                    None if name == "CONNMARK" => match words.as_slice() {
                        // `CONNMARK restore`, `CONNMARK save mask 0xff`.
                        [_, dir @ ("save" | "restore"), rest @ ..] => {
                            let mask = match rest {
                                [] => Some(u32::MAX),
                                ["mask", m] => parse_mark(m).map(|(v, _)| v),
                                _ => None,
                            };
                            mask.map_or_else(unknown, |m| Target::CopyMark {
                                restore: *dir == "restore",
                                nfmask: m,
                                ctmask: m,
                            })
                        }
                        _ => unknown(),
                    },
                    None => unknown(),
                }
            }
            "LOG" | "NFLOG" | "TRACE" | "ULOG" => Target::Log,
            "NOTRACK" => Target::Notrack,
            "CT" if words.contains(&"notrack") => Target::Notrack,
            "CT" if words.contains(&"helper") => {
                let at = words.iter().position(|w| *w == "helper");
                match at.and_then(|i| words.get(i + 1)) {
                    Some(helper) => Target::Helper {
                        name: helper.to_string(),
                    },
                    None => unknown(),
                }
            }
            "CT" => Target::Continue {
                name: name.to_string(),
            },
            n if CONTINUE_TARGETS.contains(&n) => Target::Continue {
                name: name.to_string(),
            },
            n if EXTENSION_TARGETS.contains(&n) || !words.is_empty() || n.is_empty() => unknown(),
            _ if goto => Target::Goto(name.to_string()),
            _ => Target::Jump(name.to_string()),
        }
    }
}

/// MASQUERADE (`masq ports: 1024-65535 random-fully`) or REDIRECT (`redir ports 8080`)
/// from their text; `None` when the text is not theirs.
fn port_nat(name: &str, words: &[&str]) -> Option<Target> {
    let lead = if name == "MASQUERADE" {
        ["masq", "ports:"]
    } else {
        ["redir", "ports"]
    };
    let (ports, rest) = match words {
        [a, b, p, rest @ ..] if *a == lead[0] && *b == lead[1] => {
            (Some(parse_port_range(p, '-')?), rest)
        }
        rest => (None, rest),
    };
    let known = rest.iter().all(|w| matches!(*w, "random" | "random-fully"));
    if !known {
        return None;
    }
    let flags = NatFlags {
        random: rest.contains(&"random"),
        random_fully: rest.contains(&"random-fully"),
        persistent: false,
    };
    Some(if name == "MASQUERADE" {
        Target::Masquerade { ports, flags }
    } else {
        Target::Redirect { ports, flags }
    })
}

/// A word's byte range in its line.
type Span = (usize, usize);

/// The extension text of a target starts with a word of its own (`to:`, `masq`,
/// `redir`, `MARK`, `reject-with`, `LOG`); what comes before it is matches.
fn split_target<'t>(line: &str, toks: &'t [Span], target: &str) -> (&'t [Span], &'t [Span]) {
    let w = |&(a, b): &(usize, usize)| &line[a..b];
    let start = |pred: &dyn Fn(&str) -> bool| toks.iter().rposition(|t| pred(w(t)));
    let at = match target {
        "DNAT" | "SNAT" | "NETMAP" => start(&|t| t.starts_with("to:")),
        "MASQUERADE" => start(&|t| t == "masq").or_else(|| trailing_flags(line, toks)),
        "REDIRECT" => start(&|t| t == "redir").or_else(|| trailing_flags(line, toks)),
        "MARK" | "CONNMARK" => start(&|t| t == target),
        "REJECT" => start(&|t| t == "reject-with"),
        "LOG" => toks.iter().position(|t| w(t) == "LOG"),
        "NFLOG" => toks.iter().position(|t| w(t).starts_with("nflog-")),
        // Other extensions print their name first (`TCPMSS clamp to PMTU`, `NFQUEUE
        // num 0`); a user chain prints nothing.
        n if n == "CT" || CONTINUE_TARGETS.contains(&n) || EXTENSION_TARGETS.contains(&n) => {
            toks.iter().position(|t| w(t) == n)
        }
        _ => None,
    };
    match at {
        Some(k) => toks.split_at(k),
        None => (toks, &toks[toks.len()..]),
    }
}

/// `random`, `random-fully` at the end of a MASQUERADE/REDIRECT line.
fn trailing_flags(line: &str, toks: &[(usize, usize)]) -> Option<usize> {
    let mut k = toks.len();
    while k > 0
        && matches!(
            &line[toks[k - 1].0..toks[k - 1].1],
            "random" | "random-fully"
        )
    {
        k -= 1;
    }
    (k < toks.len()).then_some(k)
}

/// `MARK or 0x4000`, `MARK xset 0x4000/0x4000`, `MARK set 0x1`, `MARK and 0xffffbfff`:
/// the words the listing prints for the options iptables-save writes.
fn mark_word(op: &str, v: &str) -> Option<MarkOp> {
    let opt = match op {
        "xset" => "--set-xmark",
        "set" => "--set-mark",
        "or" => "--or-mark",
        "and" => "--and-mark",
        "xor" => "--xor-mark",
        _ => return None,
    };
    super::iptables::mark_op(opt, v)
}

/// `0x17/0x02` or `FIN,SYN,RST,ACK/SYN`.
fn tcp_flags_arg(v: &str) -> Option<MatchKind> {
    let (m, c) = v.split_once('/')?;
    let one = |s: &str| -> Option<u8> {
        match s.strip_prefix("0x") {
            Some(h) => u8::from_str_radix(h, 16).ok(),
            None => super::iptables::tcp_flags(s),
        }
    };
    Some(MatchKind::TcpFlags {
        mask: one(m)?,
        comp: one(c)?,
    })
}

/// Whether a pasted command line lists rules (`iptables -L`, `-nvL`, `--list`), so
/// what follows is a new listing; `# Warning: ...` lines are not.
fn is_list_command(line: &str) -> bool {
    line.contains("tables")
        && line.split_whitespace().any(|w| {
            w == "--list"
                || w.starts_with('-')
                    && !w.starts_with("--")
                    && w.contains('L')
                    && w[1..].bytes().all(|b| b.is_ascii_alphabetic())
        })
}

/// The table a pasted command line names (`-t nat`, `-tnat`, `--table nat`).
fn table_of_command(line: &str) -> Option<String> {
    let mut words = line.split_whitespace();
    while let Some(w) = words.next() {
        if w == "-t" || w == "--table" {
            return words.next().map(str::to_string);
        }
        if let Some(t) = w.strip_prefix("--table=") {
            return Some(t.to_string());
        }
        if let Some(t) = w.strip_prefix("-t").filter(|t| !t.is_empty()) {
            if t.bytes().all(|b| b.is_ascii_lowercase()) {
                return Some(t.to_string());
            }
        }
    }
    None
}

/// A header line's columns, or `None` when the line is no header.
fn header(line: &str) -> Option<Vec<Col>> {
    let words: Vec<&str> = line.split_whitespace().collect();
    if !words.contains(&"target") || !words.contains(&"destination") {
        return None;
    }
    words
        .iter()
        .map(|w| {
            Some(match *w {
                "num" => Col::Num,
                "pkts" => Col::Pkts,
                "bytes" => Col::Bytes,
                "target" => Col::Target,
                "prot" => Col::Prot,
                "opt" => Col::Opt,
                "in" => Col::In,
                "out" => Col::Out,
                "source" => Col::Source,
                "destination" => Col::Destination,
                _ => return None,
            })
        })
        .collect()
}

fn col_names(cols: &[Col]) -> String {
    cols.iter()
        .map(|c| format!("{c:?}").to_lowercase())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Words with their byte spans; a `"quoted string"` is one word.
fn spans(line: &str) -> Vec<(usize, usize)> {
    let b = line.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let mut quoted = false;
        while i < b.len() && (quoted || !b[i].is_ascii_whitespace()) {
            if b[i] == b'"' {
                quoted = !quoted;
            } else if b[i] == b'\\' && quoted {
                i += 1;
            }
            i += 1;
        }
        out.push((start, i.min(b.len())));
    }
    out
}

/// A counter as `-v` prints it: `1234`, or with `K`, `M`, `G`, `T` (powers of 1000)
/// without `-x`.
fn count(s: &str) -> Option<u64> {
    let (num, mult) = match s.as_bytes().last()? {
        b'K' => (&s[..s.len() - 1], 1_000),
        b'M' => (&s[..s.len() - 1], 1_000_000),
        b'G' => (&s[..s.len() - 1], 1_000_000_000),
        b'T' => (&s[..s.len() - 1], 1_000_000_000_000),
        _ => (s, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

fn is_opt(s: &str) -> bool {
    matches!(s, "--" | "-f" | "!f")
}

fn negation(s: &str) -> (bool, &str) {
    match s.strip_prefix('!') {
        Some(r) => (true, r),
        None => (false, s),
    }
}

fn unknown(name: &str, text: &str) -> MatchKind {
    MatchKind::Unknown {
        name: name.to_string(),
        text: text.to_string(),
    }
}

fn push(rule: &mut Rule, negated: bool, kind: MatchKind) {
    rule.matches.push(Match { negated, kind });
}

/// Pushes a one-word-argument form's match; the words it took, 0 when it did not read.
fn one(rule: &mut Rule, neg: bool, off: usize, kind: Option<MatchKind>, used: usize) -> usize {
    match kind {
        Some(kind) => {
            push(rule, neg, kind);
            off + used
        }
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Proto, Tuple};
    use crate::rules::eval::{walk, Packet};
    use crate::rules::{iptables, Hook, HostAddr, InputKind, Prefix};

    /// kube-proxy's nat table as `iptables -t nat -L -n -v --line-numbers` prints it.
    const KUBE_NAT_V: &str = "\
# iptables -t nat -L -n -v --line-numbers
Chain PREROUTING (policy ACCEPT 12K packets, 1500K bytes)
num   pkts bytes target     prot opt in     out     source               destination
1      10M 4000M KUBE-SERVICES  all  --  *      *       0.0.0.0/0            0.0.0.0/0            /* kubernetes service portals */

Chain INPUT (policy ACCEPT 0 packets, 0 bytes)
num   pkts bytes target     prot opt in     out     source               destination

Chain OUTPUT (policy ACCEPT 5 packets, 300 bytes)
num   pkts bytes target     prot opt in     out     source               destination
1        0     0 KUBE-SERVICES  all  --  *      *       0.0.0.0/0            0.0.0.0/0            /* kubernetes service portals */

Chain POSTROUTING (policy ACCEPT 5 packets, 300 bytes)
num   pkts bytes target     prot opt in     out     source               destination
1        7   420 KUBE-POSTROUTING  all  --  *      *       0.0.0.0/0            0.0.0.0/0            /* kubernetes postrouting rules */

Chain KUBE-MARK-MASQ (3 references)
num   pkts bytes target     prot opt in     out     source               destination
1        3   180 MARK       all  --  *      *       0.0.0.0/0            0.0.0.0/0            MARK or 0x4000

Chain KUBE-NODEPORTS (1 references)
num   pkts bytes target     prot opt in     out     source               destination
1        3   180 KUBE-MARK-MASQ  tcp  --  *      *       0.0.0.0/0            0.0.0.0/0            /* default/web */ tcp dpt:30080
2        3   180 KUBE-SVC-WEB  tcp  --  *      *       0.0.0.0/0            0.0.0.0/0            /* default/web */ tcp dpt:30080

Chain KUBE-POSTROUTING (1 references)
num   pkts bytes target     prot opt in     out     source               destination
1        7   420 RETURN     all  --  *      *       0.0.0.0/0            0.0.0.0/0            mark match ! 0x4000/0x4000
2        3   180 MARK       all  --  *      *       0.0.0.0/0            0.0.0.0/0            MARK xor 0x4000
3        3   180 MASQUERADE  all  --  *      *       0.0.0.0/0            0.0.0.0/0            /* kubernetes service traffic requiring SNAT */ masq ports: 1024-65535 random-fully

Chain KUBE-SEP-A (1 references)
num   pkts bytes target     prot opt in     out     source               destination
1        0     0 KUBE-MARK-MASQ  all  --  *      *       172.17.0.2           0.0.0.0/0            /* default/web */
2        1    60 DNAT       tcp  --  *      *       0.0.0.0/0            0.0.0.0/0            /* default/web */ tcp to:172.17.0.2:80

Chain KUBE-SEP-B (1 references)
num   pkts bytes target     prot opt in     out     source               destination
1        0     0 KUBE-MARK-MASQ  all  --  *      *       172.17.0.3           0.0.0.0/0            /* default/web */
2        1    60 DNAT       tcp  --  *      *       0.0.0.0/0            0.0.0.0/0            /* default/web */ tcp to:172.17.0.3:80

Chain KUBE-SERVICES (2 references)
num   pkts bytes target     prot opt in     out     source               destination
1        0     0 KUBE-MARK-MASQ  tcp  --  *      *      !10.244.0.0/16        10.96.0.50           /* default/web cluster IP */ tcp dpt:80
2        0     0 KUBE-SVC-WEB  tcp  --  *      *       0.0.0.0/0            10.96.0.50           /* default/web cluster IP */ tcp dpt:80
3       3K  180K KUBE-NODEPORTS  all  --  *      *       0.0.0.0/0            0.0.0.0/0            /* kubernetes service nodeports; NOTE: this must be the last rule in this chain */ ADDRTYPE match dst-type LOCAL

Chain KUBE-SVC-WEB (2 references)
num   pkts bytes target     prot opt in     out     source               destination
1        1    60 KUBE-SEP-A  all  --  *      *       0.0.0.0/0            0.0.0.0/0            /* default/web */ statistic mode random probability 0.50000000000
2        1    60 KUBE-SEP-B  all  --  *      *       0.0.0.0/0            0.0.0.0/0            /* default/web */
";

    /// The same rules as `iptables-save` writes them.
    const KUBE_NAT_SAVE: &str = "*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SEP-A - [0:0]
:KUBE-SEP-B - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-WEB - [0:0]
-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES
-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
-A KUBE-NODEPORTS -p tcp -m comment --comment \"default/web\" -m tcp --dport 30080 -j KUBE-MARK-MASQ
-A KUBE-NODEPORTS -p tcp -m comment --comment \"default/web\" -m tcp --dport 30080 -j KUBE-SVC-WEB
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --to-ports 1024-65535 --random-fully
-A KUBE-SEP-A -s 172.17.0.2/32 -m comment --comment \"default/web\" -j KUBE-MARK-MASQ
-A KUBE-SEP-A -p tcp -m comment --comment \"default/web\" -m tcp -j DNAT --to-destination 172.17.0.2:80
-A KUBE-SEP-B -s 172.17.0.3/32 -m comment --comment \"default/web\" -j KUBE-MARK-MASQ
-A KUBE-SEP-B -p tcp -m comment --comment \"default/web\" -m tcp -j DNAT --to-destination 172.17.0.3:80
-A KUBE-SERVICES ! -s 10.244.0.0/16 -d 10.96.0.50/32 -p tcp -m comment --comment \"default/web cluster IP\" -m tcp --dport 80 -j KUBE-MARK-MASQ
-A KUBE-SERVICES -d 10.96.0.50/32 -p tcp -m comment --comment \"default/web cluster IP\" -m tcp --dport 80 -j KUBE-SVC-WEB
-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-SVC-WEB -m comment --comment \"default/web\" -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-A
-A KUBE-SVC-WEB -m comment --comment \"default/web\" -j KUBE-SEP-B
COMMIT
";

    /// Docker's filter table as plain `iptables -L -n` prints it (no counters, no
    /// interfaces), after a prompt.
    const DOCKER_FILTER: &str = "\
$ sudo iptables -L -n
Chain INPUT (policy ACCEPT)
target     prot opt source               destination
ACCEPT     all  --  0.0.0.0/0            0.0.0.0/0            ctstate RELATED,ESTABLISHED
ACCEPT     tcp  --  0.0.0.0/0            0.0.0.0/0            tcp dpt:22
ACCEPT     icmp --  0.0.0.0/0            0.0.0.0/0            icmptype 8
REJECT     all  --  0.0.0.0/0            0.0.0.0/0            reject-with icmp-port-unreachable

Chain FORWARD (policy DROP)
target     prot opt source               destination
DOCKER-USER  all  --  0.0.0.0/0            0.0.0.0/0
DOCKER-ISOLATION-STAGE-1  all  --  0.0.0.0/0            0.0.0.0/0
ACCEPT     all  --  0.0.0.0/0            0.0.0.0/0            ctstate RELATED,ESTABLISHED
DOCKER     all  --  0.0.0.0/0            0.0.0.0/0

Chain OUTPUT (policy ACCEPT)
target     prot opt source               destination

Chain DOCKER (1 references)
target     prot opt source               destination
ACCEPT     tcp  --  0.0.0.0/0            172.17.0.2           tcp dpt:80

Chain DOCKER-ISOLATION-STAGE-1 (1 references)
target     prot opt source               destination
DOCKER-ISOLATION-STAGE-2  all  --  0.0.0.0/0            0.0.0.0/0
RETURN     all  --  0.0.0.0/0            0.0.0.0/0

Chain DOCKER-ISOLATION-STAGE-2 (1 references)
target     prot opt source               destination
DROP       all  --  0.0.0.0/0            0.0.0.0/0
RETURN     all  --  0.0.0.0/0            0.0.0.0/0

Chain DOCKER-USER (1 references)
target     prot opt source               destination
DROP       tcp  --  0.0.0.0/0            0.0.0.0/0            ctorigdstport 9090 match-set blocked src
RETURN     all  --  0.0.0.0/0            0.0.0.0/0
";

    fn rule<'a>(r: &'a RuleSet, chain: &str, n: usize) -> &'a Rule {
        &r.tables[0].chain(chain).expect(chain).rules[n]
    }

    fn m(negated: bool, kind: MatchKind) -> Match {
        Match { negated, kind }
    }

    #[test]
    fn detects_a_listing_after_a_prompt() {
        assert_eq!(InputKind::detect(KUBE_NAT_V), Some(InputKind::IptablesList));
        assert_eq!(
            InputKind::detect(DOCKER_FILTER),
            Some(InputKind::IptablesList)
        );
        assert_eq!(
            InputKind::detect("Chain INPUT (policy ACCEPT)\n"),
            Some(InputKind::IptablesList)
        );
        assert_eq!(InputKind::detect(KUBE_NAT_SAVE), Some(InputKind::Iptables));
        let r = crate::rules::parse("l.txt", DOCKER_FILTER);
        assert_eq!(r.tables.len(), 1);
    }

    #[test]
    fn reads_a_kube_proxy_nat_listing_with_counters_and_line_numbers() {
        let r = parse("nat.txt", KUBE_NAT_V);
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        assert_eq!(r.tables.len(), 1);
        let t = &r.tables[0];
        assert_eq!(t.name, "nat");
        assert_eq!(t.family, Family::Ip);
        let pre = t.chain("PREROUTING").unwrap();
        let base = pre.base.as_ref().unwrap();
        assert_eq!(base.hook, Hook::Prerouting);
        assert_eq!(base.priority, -100);
        assert_eq!(base.kind, super::super::ChainType::Nat);
        assert_eq!(
            base.counters,
            Some(Counters {
                packets: 12_000,
                bytes: 1_500_000
            })
        );
        assert_eq!(pre.line, 2);
        let r0 = &pre.rules[0];
        assert_eq!(r0.line, 4);
        assert!(r0.text.starts_with("1      10M 4000M KUBE-SERVICES"));
        assert_eq!(
            r0.counters,
            Some(Counters {
                packets: 10_000_000,
                bytes: 4_000_000_000
            })
        );
        assert_eq!(r0.comment.as_deref(), Some("kubernetes service portals"));
        assert_eq!(r0.target, Target::Jump("KUBE-SERVICES".into()));
        assert!(t.chain("KUBE-SVC-WEB").unwrap().base.is_none());

        let np = rule(&r, "KUBE-NODEPORTS", 0);
        assert_eq!(
            np.matches,
            vec![
                m(false, MatchKind::Proto(Proto::Tcp)),
                m(false, MatchKind::Comment),
                m(false, MatchKind::Dport(Ports(vec![(30080, 30080)]))),
            ]
        );
        assert_eq!(
            rule(&r, "KUBE-MARK-MASQ", 0).target,
            Target::Mark(MarkOp {
                clear: 0x4000,
                xor: 0x4000
            })
        );
        assert_eq!(
            rule(&r, "KUBE-POSTROUTING", 0).matches,
            vec![m(
                true,
                MatchKind::Mark {
                    value: 0x4000,
                    mask: 0x4000
                }
            )]
        );
        assert_eq!(
            rule(&r, "KUBE-POSTROUTING", 2).target,
            Target::Masquerade {
                ports: Some((1024, 65535)),
                flags: NatFlags {
                    random_fully: true,
                    ..NatFlags::default()
                }
            }
        );
        let sep = rule(&r, "KUBE-SEP-A", 1);
        assert_eq!(
            sep.target,
            Target::Dnat {
                to: super::super::NatTo {
                    addrs: Some(("172.17.0.2".parse().unwrap(), "172.17.0.2".parse().unwrap())),
                    ports: Some((80, 80)),
                },
                flags: NatFlags::default(),
            }
        );
        assert_eq!(
            rule(&r, "KUBE-SEP-A", 0).matches[0],
            m(
                false,
                MatchKind::Src(Prefix {
                    addr: "172.17.0.2".parse().unwrap(),
                    len: 32
                })
            )
        );
        let svc = rule(&r, "KUBE-SERVICES", 0);
        assert_eq!(
            svc.matches[1],
            m(
                true,
                MatchKind::Src(Prefix {
                    addr: "10.244.0.0".parse().unwrap(),
                    len: 16
                })
            )
        );
        assert_eq!(
            rule(&r, "KUBE-SERVICES", 2).matches.last(),
            Some(&m(
                false,
                MatchKind::AddrType {
                    src: vec![],
                    dst: vec![super::super::AddrType::Local],
                    limit_in: false,
                    limit_out: false
                }
            ))
        );
        assert_eq!(
            rule(&r, "KUBE-SERVICES", 2).comment.as_deref(),
            Some("kubernetes service nodeports; NOTE: this must be the last rule in this chain")
        );
        assert_eq!(
            rule(&r, "KUBE-SVC-WEB", 0).matches[1],
            m(false, MatchKind::Random { probability: 0.5 })
        );
    }

    #[test]
    fn reads_a_docker_filter_listing_without_counters() {
        let r = parse("filter.txt", DOCKER_FILTER);
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        let t = &r.tables[0];
        assert_eq!(t.name, "filter");
        let fwd = t.chain("FORWARD").unwrap().base.as_ref().unwrap();
        assert_eq!(fwd.policy, Verdict::Drop);
        assert_eq!(fwd.counters, None);
        assert_eq!(fwd.priority, 0);
        assert_eq!(
            rule(&r, "INPUT", 0).matches,
            vec![m(
                false,
                MatchKind::CtState(vec![
                    super::super::CtState::Related,
                    super::super::CtState::Established
                ])
            )]
        );
        assert_eq!(rule(&r, "INPUT", 0).counters, None);
        assert_eq!(
            rule(&r, "INPUT", 2).matches,
            vec![
                m(false, MatchKind::Proto(Proto::Icmp)),
                m(
                    false,
                    MatchKind::IcmpType {
                        icmp_type: 8,
                        code: None
                    }
                )
            ]
        );
        assert_eq!(
            rule(&r, "INPUT", 3).target,
            Target::Reject {
                with: Some("icmp-port-unreachable".into())
            }
        );
        assert_eq!(
            rule(&r, "FORWARD", 1).target,
            Target::Jump("DOCKER-ISOLATION-STAGE-1".into())
        );
        assert_eq!(
            rule(&r, "DOCKER-USER", 0).matches,
            vec![
                m(false, MatchKind::Proto(Proto::Tcp)),
                m(false, MatchKind::CtOrigDstPort(Ports(vec![(9090, 9090)]))),
                m(
                    false,
                    MatchKind::Set {
                        name: "blocked".into(),
                        dims: vec![SetDim::Src]
                    }
                ),
            ]
        );
        assert_eq!(rule(&r, "DOCKER-ISOLATION-STAGE-2", 0).target, Target::Drop);
    }

    #[test]
    fn verbose_filter_listing_keeps_interfaces_and_counters() {
        let text = "\
Chain FORWARD (policy DROP 0 packets, 0 bytes)
 pkts bytes target     prot opt in     out     source               destination
 1234 5678K DOCKER-USER  all  --  *      *       0.0.0.0/0            0.0.0.0/0
    0     0 ACCEPT     all  --  *      docker0  0.0.0.0/0            0.0.0.0/0            ctstate RELATED,ESTABLISHED
    0     0 ACCEPT     all  --  docker0 !docker0  0.0.0.0/0            0.0.0.0/0
    0     0 ACCEPT     all  --  br+    *       0.0.0.0/0            0.0.0.0/0

Chain DOCKER-USER (1 references)
 pkts bytes target     prot opt in     out     source               destination
    0     0            all  --  *      *       0.0.0.0/0            0.0.0.0/0
    0     0 RETURN     all  --  *      *       0.0.0.0/0            0.0.0.0/0
";
        let r = parse("f.txt", text);
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        assert_eq!(r.tables[0].name, "filter");
        let iface = |name: &str, prefix| Iface {
            name: name.into(),
            prefix,
        };
        assert_eq!(
            rule(&r, "FORWARD", 0).counters,
            Some(Counters {
                packets: 1234,
                bytes: 5_678_000
            })
        );
        assert_eq!(
            rule(&r, "FORWARD", 1).matches[0],
            m(false, MatchKind::OutIface(iface("docker0", false)))
        );
        assert_eq!(
            rule(&r, "FORWARD", 2).matches,
            vec![
                m(false, MatchKind::InIface(iface("docker0", false))),
                m(true, MatchKind::OutIface(iface("docker0", false))),
            ]
        );
        assert_eq!(
            rule(&r, "FORWARD", 3).matches,
            vec![m(false, MatchKind::InIface(iface("br", true)))]
        );
        let empty = rule(&r, "DOCKER-USER", 0);
        assert_eq!(empty.target, Target::None);
        assert!(empty.matches.is_empty());
    }

    #[test]
    fn netmap_reads_its_prefix_for_both_families() {
        // As `iptables -t nat -L -n -v` and `ip6tables ...` print them.
        let text = "\
Chain PREROUTING (policy ACCEPT 0 packets, 0 bytes)
 pkts bytes target     prot opt in     out     source               destination
    3   180 NETMAP     0    --  eth0   *       0.0.0.0/0            192.0.2.0/24         to:172.17.0.0/24

Chain POSTROUTING (policy ACCEPT 0 packets, 0 bytes)
 pkts bytes target     prot opt in     out     source               destination
    0     0 NETMAP     0    --  *      w       fd00:1::/64          ::/0                 to:2001:db8:172::/64
    0     0 NETMAP     0    --  *      w       fd00:1::/64          ::/0                 to:nowhere
";
        let r = parse("nat.txt", text);
        let prefix = |a: &str, len| Prefix {
            addr: a.parse().unwrap(),
            len,
        };
        assert_eq!(
            rule(&r, "PREROUTING", 0).target,
            Target::Netmap {
                to: prefix("172.17.0.0", 24)
            }
        );
        assert_eq!(
            rule(&r, "POSTROUTING", 0).target,
            Target::Netmap {
                to: prefix("2001:db8:172::", 64)
            }
        );
        assert!(matches!(
            rule(&r, "POSTROUTING", 1).target,
            Target::Unknown { .. }
        ));
    }

    #[test]
    fn a_ct_target_says_raw_whether_it_tracks_or_not() {
        // `iptables -t raw -L PREROUTING -n -v`: one chain, so no policy set names the
        // table; CT (a helper here, or a zone) is a raw-table target, as NOTRACK is.
        let helper = "\
Chain PREROUTING (policy ACCEPT 0 packets, 0 bytes)
 pkts bytes target     prot opt in     out     source               destination
    0     0 CT         6    --  *      *       0.0.0.0/0            0.0.0.0/0            tcp dpt:21 CT helper ftp
";
        let raw = parse("raw.txt", helper);
        assert_eq!(raw.tables[0].name, "raw");
        assert_eq!(
            raw.tables[0].chains[0].rules[0].target,
            Target::Helper { name: "ftp".into() }
        );
        let notrack = helper.replace("CT helper ftp", "CT notrack");
        assert_eq!(parse("raw.txt", &notrack).tables[0].name, "raw");
        // The same chain with a DNAT is nat's.
        let dnat = helper.replace(
            "CT         6    --  *      *       0.0.0.0/0            0.0.0.0/0            tcp dpt:21 CT helper ftp",
            "DNAT       6    --  *      *       0.0.0.0/0            0.0.0.0/0            tcp dpt:21 to:10.0.0.2",
        );
        assert_eq!(parse("nat.txt", &dnat).tables[0].name, "nat");
    }

    #[test]
    fn unreadable_text_is_an_unknown_match_and_stray_lines_are_located() {
        let text = "\
*** iptables nat table ***
Chain PREROUTING (policy ACCEPT 0 packets, 0 bytes)
 pkts bytes target     prot opt in     out     source               destination
 8702  494K DOCKER     all  --  *      *       0.0.0.0/0            0.0.0.0/0            ADDRTYPE match dst-type LOCAL
   66  3440 DNAT       tcp  --  eth0   *       0.0.0.0/0            0.0.0.0/0            tcp dpt:443 to:10.0.0.2
    0     0 ACCEPT     tcp  --  *      *       0.0.0.0/0            0.0.0.0/0            recent: CHECK seconds: 60 name: DEFAULT side: source tcp dpts:8000:8080 flags:0x17/0x02
    0     0 ACCEPT     tcp  --  *      *       0.0.0.0/0            0.0.0.0/0            multiport dports 80,443 state NEW
this is not a rule
Chain DOCKER (1 references)
 pkts bytes target     prot opt in     out     source               destination
    0     0 RETURN     all  --  docker0 *       0.0.0.0/0            0.0.0.0/0
    0     0 REDIRECT   tcp  --  *      *       0.0.0.0/0            0.0.0.0/0            tcp dpt:80 redir ports 8080
    0     0 MARK       all  --  *      *       0.0.0.0/0            0.0.0.0/0            MARK and 0xffffbfff
    0     0 MARK       all  --  *      *       0.0.0.0/0            0.0.0.0/0            MARK xset 0x4000/0x4000
    0     0 CONNMARK   all  --  *      *       0.0.0.0/0            0.0.0.0/0            CONNMARK restore
    0     0 WEIRD      all  --  *      *       0.0.0.0/0            0.0.0.0/0            WEIRD thing 7
    0     0 TCPMSS     tcp  --  *      *       0.0.0.0/0            0.0.0.0/0            tcp flags:0x06/0x02 TCPMSS clamp to PMTU
";
        let r = parse("x.txt", text);
        let lines: Vec<_> = r
            .warnings
            .iter()
            .map(|w| match w.location {
                Location::Line { line, .. } => line,
                _ => panic!("{w:?}"),
            })
            .collect();
        assert_eq!(lines, vec![1, 8], "{:?}", r.warnings);
        assert_eq!(r.tables[0].name, "nat");
        assert_eq!(
            rule(&r, "PREROUTING", 0).counters,
            Some(Counters {
                packets: 8702,
                bytes: 494_000
            })
        );
        let dnat = rule(&r, "PREROUTING", 1);
        assert!(matches!(&dnat.target, Target::Dnat { to, .. } if to.ports.is_none()));
        assert_eq!(
            dnat.matches.last(),
            Some(&m(false, MatchKind::Dport(Ports(vec![(443, 443)]))))
        );
        let recent = rule(&r, "PREROUTING", 2);
        assert_eq!(
            recent.matches[1],
            m(
                false,
                MatchKind::Unknown {
                    name: "recent:".into(),
                    text: "recent: CHECK seconds: 60 name: DEFAULT side: source".into()
                }
            )
        );
        assert_eq!(
            &recent.matches[2..],
            &[
                m(false, MatchKind::Dport(Ports(vec![(8000, 8080)]))),
                m(
                    false,
                    MatchKind::TcpFlags {
                        mask: 0x17,
                        comp: 0x02
                    }
                ),
            ]
        );
        assert_eq!(
            rule(&r, "PREROUTING", 3).matches[1..],
            [
                m(false, MatchKind::Dport(Ports(vec![(80, 80), (443, 443)]))),
                m(false, MatchKind::CtState(vec![super::super::CtState::New])),
            ]
        );
        assert_eq!(
            rule(&r, "DOCKER", 1).target,
            Target::Redirect {
                ports: Some((8080, 8080)),
                flags: NatFlags::default()
            }
        );
        assert_eq!(
            rule(&r, "DOCKER", 2).target,
            Target::Mark(MarkOp {
                clear: 0x4000,
                xor: 0
            })
        );
        assert_eq!(
            rule(&r, "DOCKER", 3).target,
            Target::Mark(MarkOp {
                clear: 0x4000,
                xor: 0x4000
            })
        );
        assert_eq!(
            rule(&r, "DOCKER", 4).target,
            Target::CopyMark {
                restore: true,
                nfmask: u32::MAX,
                ctmask: u32::MAX
            }
        );
        assert!(matches!(
            &rule(&r, "DOCKER", 5).target,
            Target::Unknown { name, .. } if name == "WEIRD"
        ));
        let mss = rule(&r, "DOCKER", 6);
        assert!(matches!(mss.target, Target::Continue { .. }));
        assert_eq!(
            mss.matches[1],
            m(
                false,
                MatchKind::TcpFlags {
                    mask: 0x06,
                    comp: 0x02
                }
            )
        );
        assert_eq!(mss.matches.len(), 2);
    }

    #[test]
    fn ip6tables_blank_option_column() {
        let text = "\
Chain INPUT (policy DROP 0 packets, 0 bytes)
 pkts bytes target     prot opt in     out     source               destination
    0     0 ACCEPT     ipv6-icmp    *      *       ::/0                 ::/0
    0     0            all      eth0   *       2001:db8::/32        ::/0
    0     0 ACCEPT     tcp      *      *       ::/0                 ::/0                 tcp dpt:22
";
        let r = parse("v6.txt", text);
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        assert_eq!(r.tables[0].family, Family::Ip6);
        assert_eq!(
            rule(&r, "INPUT", 0).matches,
            vec![m(false, MatchKind::Proto(Proto::Icmpv6))]
        );
        let counted = rule(&r, "INPUT", 1);
        assert_eq!(counted.target, Target::None);
        assert_eq!(
            counted.matches,
            vec![
                m(
                    false,
                    MatchKind::InIface(Iface {
                        name: "eth0".into(),
                        prefix: false
                    })
                ),
                m(
                    false,
                    MatchKind::Src(Prefix {
                        addr: "2001:db8::".parse().unwrap(),
                        len: 32
                    })
                ),
            ]
        );
        assert_eq!(rule(&r, "INPUT", 2).target, Target::Accept);
    }

    #[test]
    fn two_pasted_listings_are_two_tables() {
        let text = "\
# iptables -L -n --line-numbers
Chain INPUT (policy ACCEPT)
num  target     prot opt source               destination
1    ACCEPT     tcp  --  10.0.0.0/8           0.0.0.0/0            tcp spts:1024:65535 dpt:22
# Warning: iptables-legacy tables present, use iptables-legacy to see them
# iptables -t nat -L POSTROUTING -n
Chain POSTROUTING (policy ACCEPT)
target     prot opt source               destination
MASQUERADE  all  --  172.17.0.0/16        0.0.0.0/0
";
        let r = parse("two.txt", text);
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        let names: Vec<_> = r.tables.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["filter", "nat"]);
        assert_eq!(
            r.tables[0].chains[0].rules[0].matches[2..],
            [
                m(false, MatchKind::Sport(Ports(vec![(1024, 65535)]))),
                m(false, MatchKind::Dport(Ports(vec![(22, 22)]))),
            ]
        );
        assert_eq!(r.tables[1].chains[0].base.as_ref().unwrap().priority, 100);
    }

    #[test]
    fn garbage_never_panics() {
        for text in [
            "Chain",
            "Chain X",
            "Chain X (",
            "Chain X (policy)\n target prot opt source destination\n\n x y",
            "Chain X (1 references)\nnum target prot opt source destination\n1 ACCEPT tcp -- 0.0.0.0/0 0.0.0.0/0 /* open",
            "Chain X (1 references)\ntarget prot opt source destination\nDNAT all -- ::/0 ::/0 to:[::1]:80 ! ! match-set",
            "Chain X (1 references)\ntarget prot opt source destination\nA all -- 1 2 tcp dpt: icmptype statistic mode nth every 0 packet 1",
        ] {
            let _ = parse("g.txt", text);
        }
    }

    fn walk_dnat(r: &RuleSet) -> Vec<(String, u64)> {
        let p = Packet::first(
            Tuple::of(Proto::Tcp, "198.51.100.20", 40000, "203.0.113.1", 30080),
            Some("eth0".into()),
            Some("docker0".into()),
        );
        let w = walk(r, &p);
        let mut got: Vec<(String, u64)> = w
            .outcomes
            .iter()
            .map(|o| {
                let d = o.dnat.as_ref().expect("DNAT");
                assert!(o.snat.is_some(), "masqueraded: {o:?}");
                (
                    format!("{}:{}", d.after.dst, d.after.dport),
                    (o.probability * 1000.0).round() as u64,
                )
            })
            .collect();
        got.sort();
        got
    }

    #[test]
    fn a_nodeport_packet_walks_the_listing_like_the_saved_rules() {
        let mut host = Vec::new();
        for (iface, a) in [("eth0", "203.0.113.1"), ("docker0", "172.17.0.1")] {
            host.push(HostAddr {
                iface: iface.into(),
                prefix: crate::rules::eval::host(a.parse().unwrap()),
            });
        }
        let mut listed = parse("nat.txt", KUBE_NAT_V);
        listed.addrs = host.clone();
        let mut saved = iptables::parse("nat.save", KUBE_NAT_SAVE);
        assert!(saved.warnings.is_empty(), "{:?}", saved.warnings);
        saved.addrs = host;
        let a = walk_dnat(&listed);
        assert_eq!(
            a,
            vec![
                ("172.17.0.2:80".to_string(), 500),
                ("172.17.0.3:80".to_string(), 500)
            ]
        );
        assert_eq!(a, walk_dnat(&saved));
    }

    const REC_NAT: &str = include_str!("../../tests/data/rules/kube-proxy-nat-L-nv-recorded.txt");
    const REC_NAT_SAVE: &str =
        include_str!("../../tests/data/rules/kube-proxy-nat-L-nv-recorded.iptables-save.txt");
    const REC_FILTER: &str = include_str!("../../tests/data/rules/docker-filter-L-n-recorded.txt");
    const REC_FILTER_SAVE: &str =
        include_str!("../../tests/data/rules/docker-filter-L-n-recorded.iptables-save.txt");

    /// A recorded listing reads without warnings into the tables and chains of the
    /// same kernel state's iptables-save, rule for rule, with the same targets and no
    /// unknown match.
    #[test]
    fn recorded_listings_read_like_their_saves() {
        for (listing, save, table) in [
            (REC_NAT, REC_NAT_SAVE, "nat"),
            (REC_FILTER, REC_FILTER_SAVE, "filter"),
        ] {
            assert_eq!(InputKind::detect(listing), Some(InputKind::IptablesList));
            let l = crate::rules::parse("listing.txt", listing);
            let s = iptables::parse("save.txt", save);
            assert!(l.warnings.is_empty(), "{:?}", l.warnings);
            assert!(s.warnings.is_empty(), "{:?}", s.warnings);
            let (lt, st) = (&l.tables[0], &s.tables[0]);
            assert_eq!(l.tables.len(), 1);
            assert_eq!(lt.name, table);
            assert_eq!(lt.family, st.family);
            let mut names: Vec<_> = lt.chains.iter().map(|c| c.name.as_str()).collect();
            let mut want: Vec<_> = st.chains.iter().map(|c| c.name.as_str()).collect();
            names.sort_unstable();
            want.sort_unstable();
            assert_eq!(names, want);
            for sc in &st.chains {
                let lc = lt.chain(&sc.name).unwrap();
                // Without -v the listing has no counters.
                let strip = |b: &Option<Base>| {
                    b.clone().map(|b| Base {
                        counters: None,
                        ..b
                    })
                };
                assert_eq!(strip(&lc.base), strip(&sc.base), "{}", sc.name);
                if table == "nat" {
                    assert_eq!(lc.base, sc.base, "{}", sc.name);
                }
                assert_eq!(lc.rules.len(), sc.rules.len(), "{}", sc.name);
                for (lr, sr) in lc.rules.iter().zip(&sc.rules) {
                    assert_eq!(lr.target, sr.target, "{}", lr.text);
                    assert_eq!(lr.comment, sr.comment, "{}", lr.text);
                    assert!(
                        !lr.matches
                            .iter()
                            .any(|m| matches!(m.kind, MatchKind::Unknown { .. })),
                        "{}: {:?}",
                        lr.text,
                        lr.matches
                    );
                    // -v shows everything the rule matches on: the same matches.
                    if table == "nat" {
                        let mut a: Vec<String> =
                            lr.matches.iter().map(|m| format!("{m:?}")).collect();
                        let mut b: Vec<String> =
                            sr.matches.iter().map(|m| format!("{m:?}")).collect();
                        a.sort();
                        b.sort();
                        assert_eq!(a, b, "{}", lr.text);
                    }
                }
            }
        }
        let mut host = Vec::new();
        for (iface, a) in [("eth0", "203.0.113.1"), ("docker0", "172.17.0.1")] {
            host.push(HostAddr {
                iface: iface.into(),
                prefix: crate::rules::eval::host(a.parse().unwrap()),
            });
        }
        let mut l = parse("nat.txt", REC_NAT);
        l.addrs = host.clone();
        let mut s = iptables::parse("nat.save", REC_NAT_SAVE);
        s.addrs = host;
        assert_eq!(walk_dnat(&l), walk_dnat(&s));
        assert_eq!(walk_dnat(&l).len(), 2);
    }
}
