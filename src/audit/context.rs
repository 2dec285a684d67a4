//! What every rule reads: the correlation, the topology learned from it, the witness
//! views, and small lookups over them (point names, capture spans, a hop as evidence).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use foldhash::{HashMap, HashMapExt};

use super::ct::{self, Snapshot};
use super::helpers;
use super::rules::Attribution;
use super::topology::{Topology, Via};
use super::{Direction, Evidence, HopFacts, PathReason, Role, Seen};
use super::{RuleFacts, RuleRole};
use crate::correlate::{Connection, Correlation, Hop};
use crate::flows::IcmpError;
use crate::model::{Proto, Tuple};
use crate::rules::eval::{Fate, RuleRef};
use crate::rules::RuleSet;

/// An ICMP error as a connection's hop carries it ([`Ctx::errors_quoting`]).
#[derive(Clone, Copy, Debug)]
pub struct ErrorHop<'a> {
    /// The error's connection and the hop's index in it.
    pub conn: usize,
    pub hop: usize,
    pub at: &'a Hop,
    pub error: &'a IcmpError,
}

/// The TTLs (IPv6 hop limits) hosts start their packets with: Linux, BSD and macOS 64,
/// Windows 128, network gear 255. A forwarded packet leaves with one less.
pub const INITIAL_TTLS: [u8; 3] = [64, 128, 255];

pub struct Ctx<'a> {
    pub c: &'a Correlation,
    pub topo: &'a Topology,
    /// The conntrack inputs, as snapshots.
    pub snapshots: &'a [Snapshot],
    /// Connection index by id.
    idx: HashMap<&'a str, usize>,
    /// Where each tuple is a hop: tuple → (connection, hop).
    pub hops_by_tuple: ct::HopIndex,
    /// Each connection's conntrack entries, located once ([`ct::locate`]): connection
    /// → (snapshot, entry) indices, in input order.
    entries: HashMap<usize, Vec<(usize, usize)>>,
    /// Each snapshot's time ([`ct::check_time`]), by snapshot index.
    times: Vec<Option<ct::SnapTime>>,
    /// Every `[DESTROY]` event of the event logs given ([`Ctx::set_destroyed`]), and
    /// their indices by ORIGINAL tuple, in order.
    destroyed: Vec<ct::Destroyed>,
    destroyed_by_orig: HashMap<Tuple, Vec<usize>>,
    /// The ICMP errors each point saw, by the tuple they quote (either direction): (point,
    /// quoted tuple made canonical) → the errors, in connection and hop order.
    errors: HashMap<(usize, Tuple), Vec<ErrorHop<'a>>>,
    /// How many connections two of the topology's lists hold together, by the lists'
    /// key ([`Ctx::via_len`]).
    unions: Mutex<HashMap<[(usize, usize); 2], usize>>,
    /// Every connection the event logs saw created, with how long it held its tuple.
    pub lifetimes: Vec<ct::Lifetime>,
    /// `conntrack -S` counters, when statistics were given.
    pub stats: ct::Stats,
    /// The table's limit and the counts the inputs give.
    pub table: ct::TableSize,
    /// Numeric settings pasted or collected with the conntrack inputs (`sysctl -a`
    /// lines, a bundle's `sysctl.txt`), by name: the last one given.
    pub sysctls: std::collections::BTreeMap<String, ct::Setting>,
    /// conntrack's UDP, ICMP and established TCP timeouts those settings give (the
    /// kernel's defaults where they give none): the ones the flows were split at
    /// ([`Ctx::set_timeouts`]).
    pub timeouts: crate::model::CtTimeouts,
    /// The host's rule set, when given, and each walked connection's way through it.
    pub rules: Option<&'a RuleSet>,
    pub attributions: Vec<Attribution>,
    /// Connections whose opening the captures did not see (by index; empty when
    /// every capture ran from the start): what their first packet met is unknown.
    pub opening_unseen: Vec<bool>,
    /// The connections a NAT helper expected, each with its master (indices:
    /// [`helpers::expected`]).
    pub expected: BTreeMap<usize, usize>,
}

/// A `[DESTROY]` at `t` as evidence, `before_ns` counted to `at`.
fn destroyed(d: &ct::Destroyed, t: i64, at: i64) -> Evidence {
    Evidence::Destroyed {
        source: d.source.clone(),
        line: d.line,
        time_ns: t,
        before_ns: at.saturating_sub(t),
        by: d.by.clone(),
    }
}

impl<'a> Ctx<'a> {
    pub fn new(c: &'a Correlation, topo: &'a Topology, snapshots: &'a [Snapshot]) -> Ctx<'a> {
        Ctx::with_index(c, topo, snapshots, ct::index(c))
    }

    /// [`Ctx::new`] with the index of the hops by tuple already built.
    pub fn with_index(
        c: &'a Correlation,
        topo: &'a Topology,
        snapshots: &'a [Snapshot],
        hops_by_tuple: ct::HopIndex,
    ) -> Ctx<'a> {
        let idx = c
            .connections
            .iter()
            .enumerate()
            .map(|(i, k)| (k.id.as_str(), i))
            .collect();
        let mut entries: HashMap<usize, Vec<(usize, usize)>> = HashMap::new();
        for (si, s) in snapshots.iter().enumerate() {
            for (ei, e) in s.entries.iter().enumerate() {
                if let Some((ci, _)) = ct::locate(c, &hops_by_tuple, e) {
                    entries.entry(ci).or_default().push((si, ei));
                }
            }
        }
        let times = (snapshots.iter())
            .map(|s| ct::check_time(c, &hops_by_tuple, s, &Default::default()))
            .collect();
        let mut errors: HashMap<(usize, Tuple), Vec<ErrorHop>> = HashMap::new();
        for (conn, k) in c.connections.iter().enumerate() {
            for (hop, at) in k.hops.iter().enumerate() {
                let Some(error) = at.flow.icmp_error.as_deref() else {
                    continue;
                };
                if let Some(q) = error.quoted {
                    errors
                        .entry((at.point, q.canonical()))
                        .or_default()
                        .push(ErrorHop {
                            conn,
                            hop,
                            at,
                            error,
                        });
                }
            }
        }
        let mut x = Ctx {
            c,
            topo,
            snapshots,
            idx,
            hops_by_tuple,
            entries,
            times,
            destroyed: Vec::new(),
            destroyed_by_orig: HashMap::new(),
            errors,
            unions: Mutex::new(HashMap::new()),
            lifetimes: Vec::new(),
            stats: ct::Stats::default(),
            table: ct::TableSize::default(),
            sysctls: Default::default(),
            timeouts: Default::default(),
            rules: None,
            attributions: Vec::new(),
            opening_unseen: Vec::new(),
            expected: BTreeMap::new(),
        };
        x.expected = helpers::expected(c, |ci| x.has_helper(ci));
        x
    }

    /// The same context with the rule set and every translated or stopped connection
    /// walked through it, and every connection the host sent itself whose tuple before
    /// NAT only its conntrack entry shows.
    pub fn with_rules(mut self, rules: &'a RuleSet) -> Ctx<'a> {
        self.rules = Some(rules);
        // The host's own connections that NAT translated before any capture point:
        // their entries give the tuple the host sent.
        let sent: BTreeMap<usize, Tuple> =
            ct::upstream_entries(&self.hops_by_tuple, self.snapshots)
                .into_iter()
                .filter(|(ci, e)| self.sent_by_host(*ci, &e.orig))
                .map(|(ci, e)| (ci, e.orig))
                .collect();
        let walked = super::rules::attribute(
            self.c,
            rules,
            &|ci| self.expected_next(ci).map(|(b, via, _)| (b, via)),
            &sent,
        );
        // A connection has a helper, too, when its way through the rules assigns one.
        let assigned: BTreeSet<usize> = (walked.iter())
            .filter(|a| helpers::assigned(rules, a).is_some())
            .map(|a| a.conn)
            .collect();
        if !assigned.is_empty() {
            self.expected =
                helpers::expected(self.c, |ci| assigned.contains(&ci) || self.has_helper(ci));
        }
        // A connection a helper expected took its master's NAT, not a nat rule's: the
        // rules are not asked to explain it.
        let by_helper = |a: &Attribution| a.chosen.is_none() && self.expected.contains_key(&a.conn);
        self.attributions = walked
            .into_iter()
            .filter(|a| !self.unseen_opening(a.conn) && !by_helper(a))
            .collect();
        self
    }

    /// Whether the host itself sent a first packet with tuple `t`: it came from the
    /// address it went to (the host reaching its own published port) or from an
    /// address of the host (`ip addr` among the rules, or one NAT gave it).
    pub fn opened_by_host(&self, t: &Tuple) -> bool {
        t.src == t.dst
            || self.topo.host_addrs.contains(&t.src)
            || self.rules.is_some_and(|r| r.is_local(t.src))
    }

    /// Whether the host itself sent connection `ci`'s first packet, which left with
    /// tuple `t` before NAT (its entry says) and reached no capture point untranslated:
    /// [`Ctx::opened_by_host`], or its packets left the first point with a TTL a sender
    /// starts with ([`INITIAL_TTLS`]), which routing through this host would have
    /// lowered, from an address that is not inside (a container's bridged packets keep
    /// theirs).
    pub fn sent_by_host(&self, ci: usize, t: &Tuple) -> bool {
        self.opened_by_host(t)
            || (self.c.connections[ci].hops.first())
                .and_then(|h| h.fwd_ttl)
                .is_some_and(|ttl| INITIAL_TTLS.contains(&ttl) && !self.topo.is_inside(t.src))
    }

    /// Whether connection `ci` has a NAT helper by what the captures and conntrack
    /// say: its payload seen rewritten, or an entry of it names one.
    pub fn has_helper(&self, ci: usize) -> bool {
        helpers::rewrote(&self.c.connections[ci])
            || self.entries_of(ci).any(|(_, e)| e.helper.is_some())
    }

    /// Connection `ci`'s conntrack entries with the snapshot each is from, in input
    /// order.
    pub fn entries_of(
        &self,
        ci: usize,
    ) -> impl Iterator<Item = (&'a Snapshot, &'a ct::CtEntry)> + '_ {
        self.timed_entries_of(ci).map(|(s, e, _)| (s, e))
    }

    /// Connection `ci`'s entry in the conntrack inputs: a table's before an event
    /// log's.
    pub fn entry_of(&self, ci: usize) -> Option<&'a ct::CtEntry> {
        self.entries_of(ci)
            .min_by_key(|(s, _)| s.from_events)
            .map(|(_, e)| e)
    }

    /// [`Ctx::entries_of`], each with its snapshot's time ([`Ctx::snap_times`]).
    pub fn timed_entries_of(
        &self,
        ci: usize,
    ) -> impl Iterator<Item = (&'a Snapshot, &'a ct::CtEntry, Option<ct::SnapTime>)> + '_ {
        let snapshots = self.snapshots;
        self.entries
            .get(&ci)
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .map(move |&(si, ei)| {
                let s = &snapshots[si];
                (s, &s.entries[ei], self.times[si])
            })
    }

    /// Every snapshot's time ([`ct::check_time`]: none for an event log), in order.
    pub fn snap_times(&self) -> &[Option<ct::SnapTime>] {
        &self.times
    }

    /// Whether connection `ci` was not seen opening (its first packets discarded).
    pub fn unseen_opening(&self, ci: usize) -> bool {
        self.opening_unseen.get(ci).copied().unwrap_or(false)
    }

    /// The rule (or chain policy) that dropped or rejected connection `ci`'s first
    /// packet in the way through the rules the wire confirms.
    pub fn stopped_by(&self, ci: usize) -> Option<Evidence> {
        let o = self.attribution(ci)?.outcome()?;
        match &o.fate {
            Fate::Dropped { rule: Some(r), .. } => self.rule(r, RuleRole::Dropped),
            Fate::Rejected { rule, .. } => self.rule(rule, RuleRole::Rejected),
            Fate::Dropped {
                rule: None,
                table,
                chain,
                ..
            } => {
                let rules = self.rules?;
                let t = rules.tables.get(*table)?;
                let ci = t.chains.iter().position(|c| *c.name == **chain)?;
                let ch = &t.chains[ci];
                Some(Evidence::Rule {
                    role: RuleRole::Policy,
                    rule: RuleFacts {
                        source: t.source.clone(),
                        table: t.name.clone(),
                        chain: ch.name.clone(),
                        line: ch.line,
                        handle: None,
                        text: format!(":{} DROP", ch.name),
                        counters: ch.base.as_ref().and_then(|b| b.counters),
                        change: rules
                            .baseline
                            .as_ref()
                            .zip(ch.base.as_ref())
                            .and_then(|(base, b)| Some(base.policy(*table, ci, b.counters?))),
                        baseline: rules
                            .baseline
                            .as_ref()
                            .map_or(String::new(), |b| b.source.clone()),
                    },
                })
            }
            _ => None,
        }
    }

    /// The `[DESTROY]` events of the entry whose ORIGINAL is `orig` that carry a time,
    /// with it.
    fn destroys_of(&self, orig: &Tuple) -> impl Iterator<Item = (i64, &ct::Destroyed)> {
        (self.destroyed_by_orig.get(orig).into_iter().flatten())
            .map(|&i| &self.destroyed[i])
            .filter_map(|d| d.time_ns.map(|t| (t, d)))
    }

    /// The latest `[DESTROY]` of the entry whose ORIGINAL is `orig`, at or before
    /// `at` (corrected capture time; event logs of the same host share its clock).
    pub fn destroyed_before(&self, orig: &Tuple, at: i64) -> Option<Evidence> {
        (self.destroys_of(orig))
            .filter(|&(t, _)| t <= at)
            .max_by_key(|&(t, _)| t)
            .map(|(t, d)| destroyed(d, t, at))
    }

    /// The first `[DESTROY]` of the entry whose ORIGINAL is `orig` within `from..=to`,
    /// with `before_ns` counted to `at` (negative for an event after it): the end of
    /// an entry that held from `from` on, which the packet at `at` found gone (the
    /// kernel notices an expired entry when the next packet looks it up, so the event
    /// may come a little after that packet's capture).
    pub fn destroyed_within(
        &self,
        orig: &Tuple,
        (from, to): (i64, i64),
        at: i64,
    ) -> Option<Evidence> {
        (self.destroys_of(orig))
            .filter(|(t, _)| (from..=to).contains(t))
            .min_by_key(|&(t, _)| t)
            .map(|(t, d)| destroyed(d, t, at))
    }

    /// The host's conntrack timeouts (its settings among the inputs), and the
    /// snapshots' times estimated again with them when they are not the kernel's
    /// defaults.
    pub fn set_timeouts(&mut self, timeouts: crate::model::CtTimeouts) {
        if timeouts != self.timeouts {
            self.times = (self.snapshots.iter())
                .map(|s| ct::check_time(self.c, &self.hops_by_tuple, s, &timeouts))
                .collect();
        }
        self.timeouts = timeouts;
    }

    /// The `[DESTROY]` events of the event logs given, in their order.
    pub fn set_destroyed(&mut self, destroyed: Vec<ct::Destroyed>) {
        let mut by_orig: HashMap<Tuple, Vec<usize>> = HashMap::new();
        for (i, d) in destroyed.iter().enumerate() {
            by_orig.entry(d.orig).or_default().push(i);
        }
        self.destroyed = destroyed;
        self.destroyed_by_orig = by_orig;
    }

    /// The ICMP errors seen at `point` that quote a packet of `t` or of its reverse, in
    /// connection and hop order.
    pub fn errors_quoting(&self, point: usize, t: &Tuple) -> &[ErrorHop<'a>] {
        self.errors
            .get(&(point, t.canonical()))
            .map_or(&[], Vec::as_slice)
    }

    /// The `conntrack -S` counters that tell a full table, an insert race or invalid
    /// packets apart, when statistics were given.
    pub fn stats_evidence(&self) -> Option<Evidence> {
        self.stats_of(&["insert_failed", "drop", "early_drop", "invalid"])
    }

    /// These `conntrack -S` counters, those the statistics given have.
    pub fn stats_of(&self, keys: &[&str]) -> Option<Evidence> {
        let counters: Vec<(String, u64)> = keys
            .iter()
            .filter_map(|k| self.stats.counts.get(*k).map(|n| (k.to_string(), *n)))
            .collect();
        (!counters.is_empty()).then(|| Evidence::Stats {
            counters,
            since: self.stats.since.clone(),
        })
    }

    /// The walk of connection `ci`, when it was walked.
    pub fn attribution(&self, ci: usize) -> Option<&Attribution> {
        // Walked in connection order.
        let a = &self.attributions;
        a.binary_search_by_key(&ci, |x| x.conn).ok().map(|k| &a[k])
    }

    /// A rule as evidence.
    pub fn rule(&self, r: &RuleRef, role: RuleRole) -> Option<Evidence> {
        let rules = self.rules?;
        let t = rules.tables.get(r.table)?;
        let ch = t.chains.get(r.chain_index)?;
        let rule = ch.rules.get(r.index)?;
        Some(Evidence::Rule {
            role,
            rule: RuleFacts {
                source: t.source.clone(),
                table: t.name.clone(),
                chain: ch.name.clone(),
                line: rule.line,
                handle: rule.handle,
                text: rule.text.clone(),
                counters: rule.counters,
                change: r.change(rules),
                baseline: rules
                    .baseline
                    .as_ref()
                    .map_or(String::new(), |b| b.source.clone()),
            },
        })
    }

    pub fn name(&self, p: usize) -> &'a str {
        &self.c.points[p].name
    }

    /// The index of the connection with this id.
    pub fn conn_index(&self, id: &str) -> Option<usize> {
        self.idx.get(id).copied()
    }

    pub fn id(&self, k: usize) -> String {
        self.c.connections[k].id.clone()
    }

    pub fn ids(&self, ks: &[usize]) -> Vec<String> {
        ks.iter().map(|&k| self.id(k)).collect()
    }

    /// A point's capture span, clock-corrected: from its first packet to its last, less
    /// the window at each end of the time range it was read in (a packet's copies
    /// there may lie outside the range, unread).
    pub fn span(&self, p: usize) -> Option<(i64, i64)> {
        let pt = &self.c.points[p];
        let read = (pt.first_ns?, pt.last_ns?);
        let (a, b) = self.c.range.inner(read, self.c.config.window_ns)?;
        Some((a - pt.clock.offset_ns, b - pt.clock.offset_ns))
    }

    /// Whether point `p` was capturing at corrected time `t`.
    pub fn capturing(&self, p: usize, t: i64) -> bool {
        self.span(p).is_some_and(|(a, b)| t >= a && t <= b)
    }

    pub fn seen(&self, h: &Hop, role: Role) -> Seen {
        Seen {
            point: self.name(h.point).to_string(),
            role,
            tuple: h.flow.tuple,
        }
    }

    /// Connection `ci`'s translation from hop `from` to hop `to` as evidence.
    pub fn translation(&self, ci: usize, from: &Hop, to: &Hop) -> Evidence {
        self.translation_of(self.id(ci), from, to)
    }

    fn translation_of(&self, conn: String, from: &Hop, to: &Hop) -> Evidence {
        Evidence::Translated {
            conn,
            from_point: self.name(from.point).to_string(),
            from: from.flow.tuple,
            to_point: self.name(to.point).to_string(),
            to: to.flow.tuple,
        }
    }

    /// A hop as evidence.
    pub fn hop(&self, h: &Hop) -> Evidence {
        let f = &h.flow;
        Evidence::Hop(HopFacts {
            point: self.name(h.point).to_string(),
            tuple: f.tuple,
            packets: f.packets,
            first_ns: h.first_ns,
            last_ns: h.last_ns,
            tcp_state: (f.tuple.proto == Proto::Tcp).then(|| f.tcp.state()),
            icmp_error: f.icmp_error.as_ref().map(|e| (e.icmp_type, e.code)),
        })
    }

    /// Where connection `ci`'s kind of traffic goes after its last point, and why: the
    /// next point and the connections that went there, when exactly one point is next.
    pub fn expected_next(&self, ci: usize) -> Option<(usize, Via<'a>, PathReason)> {
        let topo: &'a Topology = self.topo;
        let conn = &self.c.connections[ci];
        let last = conn.hops.last()?;
        let (t, a) = (last.flow.tuple, last.point);
        let egress = topo
            .prefix_of(t.src)
            .filter(|_| topo.is_outside_dst(t.dst))
            .and_then(|p| Some((p, topo.egress.get(&(a, p))?)));
        let published = topo.published.get(&(a, conn.proto, t.dst, t.dport));
        let why = match (published, egress) {
            (Some(_), _) => PathReason::Published(t),
            (None, Some((p, _))) => PathReason::Egress(p),
            (None, None) => return None,
        };
        let egress = egress.map(|(_, m)| m);
        let list = |m: Option<&'a BTreeMap<usize, Vec<usize>>>, b: usize| {
            m.and_then(|m| m.get(&b)).map_or(&[][..], Vec::as_slice)
        };
        let points: BTreeSet<usize> = egress
            .into_iter()
            .chain(published)
            .flat_map(|m| m.keys().copied())
            .collect();
        let mut next = points.into_iter().filter_map(|b| {
            let via = Via::new([list(egress, b), list(published, b)], ci);
            let on_path = conn.hops.iter().any(|h| h.point == b);
            (!on_path && !via.is_empty()).then_some((b, via))
        });
        // Several next points (several uplinks) leave the path unknown.
        match (next.next(), next.next()) {
            (Some((b, via)), None) => Some((b, via, why)),
            _ => None,
        }
    }

    /// How many connections `via` names ([`expected_next`](Ctx::expected_next)), the
    /// union of two lists counted once however many connections ask of them.
    pub fn via_len(&self, via: &Via) -> usize {
        via.len_by(|key, count| {
            let mut unions = self.unions.lock().expect("no panic holds it");
            *unions.entry(key).or_insert_with(count)
        })
    }

    /// How `k` was translated into `point`, when it was.
    pub fn translated(&self, k: &Connection, point: usize) -> Option<Evidence> {
        let i = k.hops.iter().position(|h| h.point == point)?;
        (i != 0).then(|| self.translation_of(k.id.clone(), &k.hops[0], &k.hops[i]))
    }
}

/// Lost packets an earlier rule accounted for (they left as another connection, the
/// host answered them, or a finding of its own names why): per link, (connection, link,
/// direction) → packets; and connections whose path stops short for a reason already
/// reported. Rules run in order; each sees what the ones before it explained.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Explained {
    links: BTreeMap<(usize, usize, Direction), u64>,
    stopped: BTreeSet<usize>,
}

impl Explained {
    pub fn get(&self, conn: usize, link: usize, dir: Direction) -> u64 {
        self.links.get(&(conn, link, dir)).copied().unwrap_or(0)
    }

    pub fn add(&mut self, conn: usize, link: usize, dir: Direction, packets: u64) {
        *self.links.entry((conn, link, dir)).or_default() += packets;
    }

    /// Whether an earlier rule said why connection `conn`'s path stops short.
    pub fn stopped(&self, conn: usize) -> bool {
        self.stopped.contains(&conn)
    }

    pub fn add_stopped(&mut self, conn: usize) {
        self.stopped.insert(conn);
    }

    pub fn merge(&mut self, other: Explained) {
        for ((c, l, d), n) in other.links {
            self.add(c, l, d, n);
        }
        self.stopped.extend(other.stopped);
    }
}
