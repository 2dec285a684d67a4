//! Rules in words and JSON: a rule by where it sits and as written, a connection's way
//! through the host's rules (the correlate reports' `rules:` lines and JSON `rules`),
//! and the `natcheck explain` trace of one packet, readable like a call stack.

use std::fmt::Write as _;

use serde::Serialize;

use super::fmt::{dst, tuple_proto};
use crate::audit::rules::Attribution;
use crate::audit::WitnessSummary;
use crate::model::Tuple;
use crate::rules::counters::Change;
use crate::rules::eval::{Event, Fate, Nat, Outcome, Packet, RuleRef, Walk};
use crate::rules::{Counters, Hook, RuleSet, Target};

/// A rule as reports name it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RuleJson<'a> {
    pub source: &'a str,
    pub table: &'a str,
    pub chain: &'a str,
    /// 1-based line in `source`; 0 for rules read without lines (nft JSON).
    pub line: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handle: Option<u64>,
    pub text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<&'a str>,
    /// `[packets:bytes]` when the rules were dumped with counters (`iptables-save -c`,
    /// nft `counter`): totals since the chain was last written; a nat rule counts
    /// first packets (connections) only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counters: Option<CountersJson>,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct CountersJson {
    pub packets: u64,
    pub bytes: u64,
    /// With `--rules-before`: how the counter changed since the earlier dump.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since_before: Option<ChangeJson>,
}

/// `{"change": "grew", "packets": 3, "bytes": 180}`; `reset` (the counter went down:
/// the chain was rewritten in between) and `new` (no such rule before) carry no
/// difference.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ChangeJson {
    pub change: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packets: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
}

impl ChangeJson {
    pub fn of(c: Change) -> ChangeJson {
        let (change, by) = match c {
            Change::Grew(by) => ("grew", Some(by)),
            Change::Reset => ("reset", None),
            Change::New => ("new", None),
        };
        ChangeJson {
            change,
            packets: by.map(|b| b.packets),
            bytes: by.map(|b| b.bytes),
        }
    }
}

/// `[counter: 12 packets]`, with `--rules-before` `[counter: 12 packets, +3 since
/// before.txt]`; empty without counters.
pub fn counted(counters: Option<Counters>, change: Option<Change>, baseline: &str) -> String {
    let Some(c) = counters else {
        return String::new();
    };
    let since = match change {
        Some(Change::Grew(by)) => format!(", +{} since {baseline}", by.packets),
        Some(Change::Reset) => format!(", reset since {baseline}"),
        Some(Change::New) => format!(", rule added since {baseline}"),
        None => String::new(),
    };
    format!("  [counter: {} packets{since}]", c.packets)
}

fn baseline_source(rules: &RuleSet) -> &str {
    rules.baseline.as_ref().map_or("", |b| b.source.as_str())
}

/// The rule at `r`.
pub fn rule_json<'a>(rules: &'a RuleSet, r: &RuleRef) -> Option<RuleJson<'a>> {
    let t = rules.tables.get(r.table)?;
    let ch = t.chains.get(r.chain_index)?;
    let rule = ch.rules.get(r.index)?;
    Some(RuleJson {
        source: &t.source,
        table: &t.name,
        chain: &ch.name,
        line: rule.line,
        handle: rule.handle,
        text: &rule.text,
        comment: rule.comment.as_deref(),
        counters: rule.counters.map(|c| CountersJson {
            packets: c.packets,
            bytes: c.bytes,
            since_before: r.change(rules).map(ChangeJson::of),
        }),
    })
}

/// `nat KUBE-SEP-WEB1 (iptables.txt:31): -A KUBE-SEP-WEB1 ... -j DNAT ...`.
pub fn rule_line(rules: &RuleSet, r: &RuleRef) -> String {
    match rule_json(rules, r) {
        Some(j) => {
            let place = match (j.line, j.handle) {
                (0, Some(h)) => format!("{} handle {h}", j.source),
                (line, Some(h)) => format!("{}:{line}, handle {h}", j.source),
                (line, None) => format!("{}:{line}", j.source),
            };
            let counted = counted(
                r.rule(rules).and_then(|x| x.counters),
                r.change(rules),
                baseline_source(rules),
            );
            format!("{} {} ({place}): {}{counted}", j.table, j.chain, j.text)
        }
        None => format!("{} rule {}", r.chain, r.index + 1),
    }
}

/// `line 31: -A KUBE-SEP-WEB1 ...` (`handle 7: ...` for nft rules, `line 40, handle 7:
/// ...` for nft rules read from text).
fn rule_short(rules: &RuleSet, r: &RuleRef) -> String {
    match rule_json(rules, r) {
        Some(j) => match (j.line, j.handle) {
            (0, Some(h)) => format!("handle {h}: {}", j.text),
            (line, Some(h)) => format!("line {line}, handle {h}: {}", j.text),
            (line, None) => format!("line {line}: {}", j.text),
        },
        None => format!("{} rule {}", r.chain, r.index + 1),
    }
}

/// `rules: FILE: rule set of 25 rules, 6 connections walked through it, 6 agree with
/// the wire`.
pub fn witness_line(w: &WitnessSummary) -> String {
    format!(
        "{}: rule set of {}, {} walked through it, {} agree with the wire",
        w.source,
        crate::report::fmt::plural(w.entries as u64, "rule", "rules"),
        crate::report::fmt::plural(w.on_wire as u64, "connection", "connections"),
        w.agree
    )
}

fn fate_word(f: &Fate) -> &'static str {
    match f {
        Fate::Delivered => "delivered",
        Fate::Forwarded => "forwarded",
        Fate::Sent => "sent",
        Fate::Dropped { .. } => "dropped",
        Fate::Rejected { .. } => "rejected",
        Fate::Stopped { .. } => "stopped",
    }
}

/// The chains a way through the rules entered, per base chain, in the order entered:
/// `nat PREROUTING: KUBE-SERVICES, KUBE-NODEPORTS`.
pub fn chains(rules: &RuleSet, o: &Outcome) -> Vec<String> {
    let mut out: Vec<(String, Vec<&str>)> = Vec::new();
    for e in &o.events {
        match e {
            Event::Enter { table, chain, .. } => {
                let t = rules.tables.get(*table).map_or("", |t| t.name.as_str());
                out.push((format!("{t} {chain}"), Vec::new()));
            }
            Event::Matched(r) => {
                if let (Some(Target::Jump(c) | Target::Goto(c)), Some((_, entered))) =
                    (crate::audit::rules::rule_target(rules, r), out.last_mut())
                {
                    entered.push(c);
                }
            }
            _ => {}
        }
    }
    out.into_iter()
        .map(|(base, entered)| {
            if entered.is_empty() {
                base
            } else {
                format!("{base}: {}", entered.join(", "))
            }
        })
        .collect()
}

/// A connection's way through the rules, one line each, for the text and Markdown
/// connection blocks.
pub fn attribution_lines(rules: &RuleSet, a: &Attribution) -> Vec<String> {
    let p = &a.packet;
    let mut out = vec![format!(
        "rules: walked {}{}{}: {} way{} through the rules{}",
        tuple_proto(&p.tuple),
        p.in_iface
            .as_deref()
            .map(|i| format!(" in {i}"))
            .unwrap_or_default(),
        p.out_iface
            .as_deref()
            .map(|i| format!(" out {i}"))
            .unwrap_or_default(),
        a.walk.outcomes.len(),
        if a.walk.outcomes.len() == 1 { "" } else { "s" },
        match a.outcome() {
            Some(o) if a.walk.outcomes.len() > 1 => format!(
                "; the wire confirms one, taken with probability {:.3}",
                o.probability
            ),
            Some(_) => "; the wire confirms it".into(),
            None => "; none agrees with the wire".into(),
        }
    )];
    let Some(o) = a.outcome() else {
        return out;
    };
    for (what, n) in [("dnat", &o.dnat), ("snat", &o.snat)] {
        if let Some(n) = n {
            out.push(format!("rules: {what} by {}", rule_line(rules, &n.rule)));
        }
    }
    match &o.fate {
        Fate::Dropped { rule: Some(r), .. } => {
            out.push(format!("rules: dropped by {}", rule_line(rules, r)))
        }
        Fate::Dropped {
            rule: None,
            table,
            chain,
            ..
        } => out.push(format!(
            "rules: dropped by the policy of {} {chain}",
            rules.tables.get(*table).map_or("", |t| t.name.as_str())
        )),
        Fate::Rejected { rule, .. } => {
            out.push(format!("rules: rejected by {}", rule_line(rules, rule)))
        }
        _ => {}
    }
    if let Some(h) = o.filter_hook {
        let why = match (h, &o.dnat) {
            (Hook::Forward, Some(n)) => format!(
                " (not INPUT: after DNAT the destination {} is not an address of this host)",
                dst(&n.after)
            ),
            _ => String::new(),
        };
        out.push(format!("rules: filter {}{why}", h.as_str()));
    }
    out.push(format!(
        "rules: chains entered: {}",
        chains(rules, o).join("; ")
    ));
    out
}

/// A NAT decision in JSON.
#[derive(Serialize)]
pub struct NatJson<'a> {
    #[serde(flatten)]
    pub rule: Option<RuleJson<'a>>,
    pub to: &'a Tuple,
    /// MASQUERADE or REDIRECT to an interface whose address no input gave: its name;
    /// `to` then keeps the old address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_interface: Option<&'a str>,
    /// The target's address range, when it has more than one address: `to` holds the
    /// first, and the kernel takes any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_range: Option<[std::net::IpAddr; 2]>,
}

/// A connection's way through the rules in JSON (`connections[].rules`).
#[derive(Serialize)]
pub struct AttributionJson<'a> {
    pub walked: &'a Tuple,
    pub in_iface: Option<&'a str>,
    pub out_iface: Option<&'a str>,
    /// How many ways through the rules there are.
    pub outcomes: usize,
    /// Whether the walk was cut at its branch limit.
    pub truncated: bool,
    /// Whether one way agrees with the wire; the fields below describe it.
    pub agrees: bool,
    pub probability: Option<f64>,
    pub fate: Option<&'static str>,
    pub filter_hook: Option<&'static str>,
    pub dnat: Option<NatJson<'a>>,
    pub snat: Option<NatJson<'a>>,
    /// The rule that dropped or rejected it.
    pub decided_by: Option<RuleJson<'a>>,
    pub chains: Vec<String>,
}

fn nat_json<'a>(rules: &'a RuleSet, n: &'a Option<Nat>) -> Option<NatJson<'a>> {
    n.as_ref().map(|n| NatJson {
        rule: rule_json(rules, &n.rule),
        to: &n.after,
        to_interface: n.to_iface.as_deref(),
        to_range: n
            .to
            .addrs
            .filter(|(lo, hi)| lo != hi)
            .map(|(lo, hi)| [lo, hi]),
    })
}

pub fn attribution_json<'a>(rules: &'a RuleSet, a: &'a Attribution) -> AttributionJson<'a> {
    let o = a.outcome();
    AttributionJson {
        walked: &a.packet.tuple,
        in_iface: a.packet.in_iface.as_deref(),
        out_iface: a.packet.out_iface.as_deref(),
        outcomes: a.walk.outcomes.len(),
        truncated: a.walk.truncated,
        agrees: o.is_some(),
        probability: o.map(|o| o.probability),
        fate: o.map(|o| fate_word(&o.fate)),
        filter_hook: o.and_then(|o| o.filter_hook).map(Hook::as_str),
        dnat: o.and_then(|o| nat_json(rules, &o.dnat)),
        snat: o.and_then(|o| nat_json(rules, &o.snat)),
        decided_by: o.and_then(|o| match &o.fate {
            Fate::Dropped { rule: Some(r), .. } | Fate::Rejected { rule: r, .. } => {
                rule_json(rules, r)
            }
            _ => None,
        }),
        chains: o.map(|o| chains(rules, o)).unwrap_or_default(),
    }
}

/// The `natcheck explain` trace of one packet: every way through the rules, each as
/// the hooks, chains and rules it met, indented like a call stack.
pub fn trace(rules: &RuleSet, packet: &Packet, walk: &Walk) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "packet: {}{}{} ({})",
        tuple_proto(&packet.tuple),
        packet
            .in_iface
            .as_deref()
            .map_or_else(|| " from this host".to_string(), |i| format!(" in {i}")),
        packet
            .out_iface
            .as_deref()
            .map(|i| format!(" out {i}"))
            .unwrap_or_default(),
        format!("{:?}", packet.ct).to_lowercase()
    );
    let n = walk.outcomes.len();
    let _ = writeln!(
        out,
        "{n} way{} through the rules{}",
        if n == 1 { "" } else { "s" },
        if walk.truncated {
            " (more were cut: the rules branch too much to follow every way)"
        } else {
            ""
        }
    );
    for (i, o) in walk.outcomes.iter().enumerate() {
        out.push('\n');
        out.push_str(&outcome_text(rules, packet, o, i + 1, n));
    }
    out
}

/// A base chain's policy and priority; `None` for a user chain.
fn base_policy(rules: &RuleSet, table: usize, chain: usize) -> Option<(&'static str, i32)> {
    let b = rules.tables.get(table)?.chains.get(chain)?.base.as_ref()?;
    let p = match b.policy {
        crate::rules::Verdict::Accept => "ACCEPT",
        crate::rules::Verdict::Drop => "DROP",
    };
    Some((p, b.priority))
}

/// One step of the trace, indented by the chains entered so far (`stack`: a jump
/// pushes, a goto replaces, the end of a chain pops).
fn event_line<'a>(
    rules: &'a RuleSet,
    packet: &Packet,
    o: &Outcome,
    e: &'a Event,
    stack: &mut Vec<&'a str>,
    out: &mut String,
) {
    let pad = "  ".repeat(stack.len() + 1);
    match e {
        Event::Enter {
            hook,
            table,
            chain_index,
            chain,
        } => {
            let t = rules.tables.get(*table);
            let policy = base_policy(rules, *table, *chain_index)
                .map(|(p, prio)| format!(" (policy {p}, priority {prio})"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {} {} {chain}{policy}",
                hook.as_str(),
                t.map_or("", |t| t.name.as_str())
            );
            *stack = vec![&**chain];
        }
        Event::Matched(r) => {
            let target = crate::audit::rules::rule_target(rules, r);
            let nat = [(&o.dnat, true), (&o.snat, false)]
                .into_iter()
                .filter_map(|(n, dst)| Some((n.as_ref()?, dst)))
                .find(|(n, _)| &n.rule == r)
                .map(|(n, dst)| match nat_to(n, dst) {
                    Some(to) => {
                        let end = if dst { "destination" } else { "source" };
                        format!("  => {end} becomes {to}")
                    }
                    None => format!("  => now {}", crate::report::fmt::tuple(&n.after)),
                })
                .or_else(|| match target {
                    Some(Target::Dnat { to, .. } | Target::Snat { to, .. })
                        if to.other_family(packet.tuple.src) =>
                    {
                        let (a, p) = if packet.tuple.src.is_ipv4() {
                            ("IPv6", "IPv4")
                        } else {
                            ("IPv4", "IPv6")
                        };
                        Some(format!(
                            "  => nothing: an {a} translation, skipped for an {p} packet (the rule goes on)"
                        ))
                    }
                    Some(Target::Helper { name }) => Some(format!(
                        "  => NAT helper `{name}` assigned: it will rewrite the addresses the payload carries and expect the connections the payload announces"
                    )),
                    _ => None,
                })
                .unwrap_or_default();
            // Counters in the trace only when there is a difference to tell.
            let counted = match rules.baseline {
                Some(_) => counted(
                    r.rule(rules).and_then(|x| x.counters),
                    r.change(rules),
                    baseline_source(rules),
                ),
                None => String::new(),
            };
            let _ = writeln!(out, "  {pad}{}{counted}{nat}", rule_short(rules, r));
            match target {
                Some(Target::Jump(c)) => stack.push(c),
                Some(Target::Goto(c)) => {
                    stack.pop();
                    stack.push(c);
                }
                _ => {}
            }
        }
        Event::Assumed { rule, held } => {
            let _ = writeln!(
                out,
                "  {pad}(assumed: {} {} although a match of it cannot be decided)",
                rule_short(rules, rule).split(':').next().unwrap_or(""),
                if *held { "matches" } else { "does not match" }
            );
        }
        Event::Chance { rule, share } => {
            let _ = writeln!(
                out,
                "  {pad}(branch taken with probability {share:.3} at {} rule {})",
                rule.chain,
                rule.index + 1
            );
        }
        Event::Fell {
            table,
            chain_index,
            chain,
        } => {
            let end = base_policy(rules, *table, *chain_index)
                .map_or("back to the rule after the jump".to_string(), |(p, _)| {
                    format!("the policy, {p}")
                });
            let _ = writeln!(out, "  {pad}(end of {chain}: {end})");
            if stack.len() > 1 {
                stack.pop();
            }
        }
        Event::Routed {
            local,
            dst,
            assumed,
        } => {
            // REDIRECT to an interface whose address no input gave.
            let redirected = o.dnat.as_ref().and_then(|n| n.to_iface.as_deref());
            if let (true, Some(i)) = (*local, redirected) {
                let _ = writeln!(out, "  routing: redirected to the address of {i}: INPUT");
                stack.clear();
                return;
            }
            let _ = writeln!(
                out,
                "  routing: {dst} is {}{}",
                if *local {
                    "an address of this host: INPUT"
                } else {
                    "not an address of this host: FORWARD"
                },
                if *assumed {
                    " (assumed: no host address was given; add `ip -o addr` output with --rules)"
                } else {
                    ""
                }
            );
            stack.clear();
        }
    }
}

/// Where a NAT decision maps to when that is not one endpoint (the new destination,
/// `dst`, or source): the address of an interface no input gave one of, or one
/// address of a range (with the destination's port, which a range leaves alone).
fn nat_to(n: &Nat, dst: bool) -> Option<String> {
    let addr = match (&n.to_iface, n.to.addrs) {
        (Some(i), _) => format!("the address of {i}"),
        (None, Some((lo, hi))) if lo != hi => format!("one address of {lo}-{hi}"),
        _ => return None,
    };
    Some(if dst && n.after.proto.has_ports() {
        format!("{addr}, port {}", n.after.dport)
    } else {
        addr
    })
}

fn outcome_text(rules: &RuleSet, packet: &Packet, o: &Outcome, i: usize, n: usize) -> String {
    let mut out = String::new();
    let mut nat = Vec::new();
    if let Some(d) = &o.dnat {
        let to = nat_to(d, true).unwrap_or_else(|| dst(&d.after));
        nat.push(format!("DNAT to {to}"));
    }
    if let Some(s) = &o.snat {
        let to = nat_to(s, false).unwrap_or_else(|| crate::report::fmt::src(&s.after));
        nat.push(format!("SNAT to {to}"));
    }
    let _ = writeln!(
        out,
        "way {i} of {n}: probability {:.3}{}: {}{}",
        o.probability,
        if o.assumed() {
            ", assuming undecided matches"
        } else {
            ""
        },
        fate_word(&o.fate),
        if nat.is_empty() {
            String::new()
        } else {
            format!("; {}", nat.join(", "))
        }
    );
    let mut stack: Vec<&str> = Vec::new();
    for e in &o.events {
        event_line(rules, packet, o, e, &mut stack, &mut out);
    }
    let _ = writeln!(out, "  => {}", fate_word(&o.fate));
    out
}

/// One way through the rules in the `natcheck.explain/1` document.
#[derive(Serialize)]
pub struct WayJson<'a> {
    pub probability: f64,
    /// Whether it rests on matches that could not be decided.
    pub assumed: bool,
    pub fate: &'static str,
    pub filter_hook: Option<&'static str>,
    pub dnat: Option<NatJson<'a>>,
    pub snat: Option<NatJson<'a>>,
    pub decided_by: Option<RuleJson<'a>>,
    /// Every rule that matched, in order.
    pub matched: Vec<RuleJson<'a>>,
    pub chains: Vec<String>,
}

/// The `natcheck.explain/1` document.
#[derive(Serialize)]
pub struct ExplainJson<'a> {
    pub schema: &'static str,
    pub packet: &'a Tuple,
    pub in_iface: Option<&'a str>,
    pub out_iface: Option<&'a str>,
    pub truncated: bool,
    pub ways: Vec<WayJson<'a>>,
    pub warnings: &'a [crate::diag::Warning],
}

pub fn explain_json<'a>(rules: &'a RuleSet, packet: &'a Packet, walk: &'a Walk) -> ExplainJson<'a> {
    ExplainJson {
        schema: "natcheck.explain/1",
        packet: &packet.tuple,
        in_iface: packet.in_iface.as_deref(),
        out_iface: packet.out_iface.as_deref(),
        truncated: walk.truncated,
        ways: walk
            .outcomes
            .iter()
            .map(|o| WayJson {
                probability: o.probability,
                assumed: o.assumed(),
                fate: fate_word(&o.fate),
                filter_hook: o.filter_hook.map(Hook::as_str),
                dnat: nat_json(rules, &o.dnat),
                snat: nat_json(rules, &o.snat),
                decided_by: match &o.fate {
                    Fate::Dropped { rule: Some(r), .. } | Fate::Rejected { rule: r, .. } => {
                        rule_json(rules, r)
                    }
                    _ => None,
                },
                matched: o
                    .events
                    .iter()
                    .filter_map(|e| match e {
                        Event::Matched(r) => rule_json(rules, r),
                        _ => None,
                    })
                    .collect(),
                chains: chains(rules, o),
            })
            .collect(),
        warnings: &rules.warnings,
    }
}
