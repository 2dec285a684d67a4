//! Walks one packet through the hooks in kernel order and records every rule it meets.
//!
//! The facts it follows (`netfilter-paths` in the design notes, the kernel's
//! `nf_hook_ops` priorities):
//! * Hooks in path order: PREROUTING, then the routing decision on the destination
//!   *after* DNAT: INPUT for a local address, else FORWARD; then POSTROUTING. A packet
//!   the host sends: OUTPUT, then POSTROUTING.
//! * At one hook, every base chain of every table that sees the packet's family runs
//!   in priority order (lower first; iptables tables have their fixed priorities). An
//!   ACCEPT ends only its own base chain; DROP and REJECT end everything.
//! * Chains of type nat run for the first packet of a connection only; their first
//!   NAT target decides the mapping for that hook.
//! * A jump pushes a return point, a goto does not; RETURN or the end of a user chain
//!   goes back after the jump; in a base chain it applies the policy.
//! * What one packet cannot decide is never guessed: `statistic` matches branch with
//!   their probabilities (kube-proxy's 0.333, 0.5, rest give 1/3 each), unknown matches
//!   branch both ways as assumptions, and an unknown target stops its branch.

use std::cell::Cell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use smallvec::{smallvec, SmallVec};

use super::{
    AddrType, Chain, ChainType, CtState, Hook, Match, MatchKind, NatFlags, NatTo, Prefix, Rule,
    RuleSet, SetDim, SetMember, Target, Verdict,
};
use crate::model::{Proto, Tuple};

/// At most this many branches are followed for one packet; more are cut and said so.
pub const MAX_BRANCHES: usize = 256;

/// Jumps deeper than this are a loop (the kernel refuses loops when rules load; a
/// hand-edited dump may still hold one).
const MAX_DEPTH: usize = 64;

/// The packet to walk: the first packet of a connection as it reaches the host.
#[derive(Clone, Debug, PartialEq)]
pub struct Packet {
    pub tuple: Tuple,
    /// Where it arrived; `None` for a packet the host itself sends (OUTPUT).
    pub in_iface: Option<Arc<str>>,
    /// Where it leaves after routing, when known (from the captures); `None` makes
    /// `-o` matches undecided.
    pub out_iface: Option<Arc<str>>,
    /// conntrack state of the packet (the first packet of a connection is `New`).
    pub ct: CtState,
    /// The skb mark it arrives with.
    pub mark: u32,
    /// TCP flags (the first packet of a TCP connection carries SYN).
    pub tcp_flags: Option<u8>,
}

impl Packet {
    /// The first packet of a connection with this tuple, arriving on `in_iface`.
    pub fn first(tuple: Tuple, in_iface: Option<Arc<str>>, out_iface: Option<Arc<str>>) -> Packet {
        Packet {
            tuple,
            in_iface,
            out_iface,
            ct: CtState::New,
            mark: 0,
            tcp_flags: (tuple.proto == Proto::Tcp).then_some(crate::model::tcp_flags::SYN),
        }
    }
}

/// A rule by where it sits.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RuleRef {
    /// Index of the table in [`RuleSet::tables`].
    pub table: usize,
    /// Index of the chain in the table, and its name.
    pub chain_index: usize,
    pub chain: Arc<str>,
    /// Index of the rule in its chain.
    pub index: usize,
}

impl RuleRef {
    pub fn rule<'a>(&self, rules: &'a RuleSet) -> Option<&'a Rule> {
        rules
            .tables
            .get(self.table)?
            .chains
            .get(self.chain_index)?
            .rules
            .get(self.index)
    }

    /// How its counters changed since the baseline dump, when both dumps counted.
    pub fn change(&self, rules: &RuleSet) -> Option<super::counters::Change> {
        let now = self.rule(rules)?.counters?;
        let base = rules.baseline.as_ref()?;
        Some(base.rule(self.table, self.chain_index, self.index, now))
    }
}

/// Lookups the walk makes for every packet, built once per rule set: the base chains in
/// priority order, chains by name, and the rules of each chain by the one destination
/// address they require, so that a chain of thousands of per-service rules
/// (kube-proxy's KUBE-SERVICES) costs a lookup, not a scan. A chain's rules are indexed
/// (and its name made) when a walk first needs them: the chains no walk enters cost
/// nothing.
#[derive(Debug)]
pub struct Index<'r> {
    set: &'r RuleSet,
    /// Per table: chain name → chain index.
    chains: Vec<HashMap<&'r str, usize>>,
    /// Per table, per chain: its name, shared by every event that names it.
    names: Vec<Vec<OnceLock<Arc<str>>>>,
    /// Per table, per chain.
    rules: Vec<Vec<OnceLock<ChainIndex>>>,
    /// Per hook (by [`Hook`] as a number), its base chains as (table, chain) in priority
    /// order (tables in input order at equal priority).
    bases: [Vec<(usize, usize)>; 5],
}

#[derive(Clone, Debug, Default)]
struct ChainIndex {
    /// Rules with a `-d ADDR/32` (or /128) match, by that address.
    by_dst: HashMap<IpAddr, Vec<usize>>,
    /// Every other rule.
    other: Vec<usize>,
    /// Per rule: the chain its own jump or goto target names, when the table has it.
    jumps: Vec<Option<usize>>,
}

impl ChainIndex {
    /// `chain`'s rules, with `names` the chains of its table by name.
    fn new(chain: &Chain, names: &HashMap<&str, usize>) -> ChainIndex {
        let mut cx = ChainIndex::default();
        for (i, r) in chain.rules.iter().enumerate() {
            let host = r.matches.iter().find_map(|m| match &m.kind {
                MatchKind::Dst(p) if !m.negated && p.len == host(p.addr).len => Some(p.addr),
                _ => None,
            });
            match host {
                Some(a) => cx.by_dst.entry(a).or_default().push(i),
                None => cx.other.push(i),
            }
            cx.jumps.push(match &r.target {
                Target::Jump(c) | Target::Goto(c) => names.get(c.as_str()).copied(),
                _ => None,
            });
        }
        cx
    }
}

impl<'r> Index<'r> {
    pub fn new(set: &'r RuleSet) -> Index<'r> {
        let mut ix = Index::empty(set);
        for t in &set.tables {
            let mut names = HashMap::with_capacity(t.chains.len());
            for (ci, c) in t.chains.iter().enumerate() {
                // The first chain of a name wins, as `Table::chain` finds it.
                names.entry(c.name.as_str()).or_insert(ci);
            }
            ix.chains.push(names);
            ix.names
                .push(t.chains.iter().map(|_| OnceLock::new()).collect());
            ix.rules
                .push(t.chains.iter().map(|_| OnceLock::new()).collect());
        }
        let mut bases: Vec<(i32, Hook, usize, usize)> = Vec::new();
        for (ti, t) in set.tables.iter().enumerate() {
            for (ci, c) in t.chains.iter().enumerate() {
                if let Some(b) = &c.base {
                    bases.push((b.priority, b.hook, ti, ci));
                }
            }
        }
        bases.sort_by_key(|&(p, _, ti, ci)| (p, ti, ci));
        for (_, h, ti, ci) in bases {
            ix.bases[h as usize].push((ti, ci));
        }
        ix
    }

    /// An index of nothing: no chain to enter.
    fn empty(set: &'r RuleSet) -> Index<'r> {
        Index {
            set,
            chains: Vec::new(),
            names: Vec::new(),
            rules: Vec::new(),
            bases: Default::default(),
        }
    }

    /// The name of chain `chain` of table `table`.
    fn name(&self, table: usize, chain: usize) -> Arc<str> {
        match self.names.get(table).and_then(|t| t.get(chain)) {
            Some(name) => name
                .get_or_init(|| Arc::from(self.set.tables[table].chains[chain].name.as_str()))
                .clone(),
            None => Arc::from(""),
        }
    }

    /// The index of chain `name` in table `table`.
    pub fn chain(&self, table: usize, name: &str) -> Option<usize> {
        self.chains.get(table)?.get(name).copied()
    }

    /// The chain `name` that rule `r` jumps to: found when `r`'s chain was indexed if
    /// it is the rule's own target, else (a verdict map's branch) by name.
    fn jump(&self, r: Place, name: &str) -> Option<usize> {
        let own = self
            .rules
            .get(r.table)
            .and_then(|t| t.get(r.chain))
            .and_then(OnceLock::get)
            .and_then(|cx| cx.jumps.get(r.index).copied().flatten());
        own.or_else(|| self.chain(r.table, name))
    }

    /// The rules of a chain that can match a packet to `dst`, in rule order.
    fn candidates(&self, table: usize, chain: usize, dst: IpAddr) -> Candidates<'_> {
        let Some(cx) = self.rules.get(table).and_then(|t| t.get(chain)) else {
            return Candidates::default();
        };
        let cx = cx.get_or_init(|| {
            ChainIndex::new(&self.set.tables[table].chains[chain], &self.chains[table])
        });
        Candidates {
            other: &cx.other,
            hosts: cx.by_dst.get(&dst).map_or(&[][..], Vec::as_slice),
        }
    }
}

/// The rules of a chain that can match a packet: two lists of rule indices in rule
/// order, walked as one.
#[derive(Clone, Copy, Debug, Default)]
struct Candidates<'a> {
    other: &'a [usize],
    hosts: &'a [usize],
}

/// A place in [`Candidates`]: how many of each list were taken.
#[derive(Clone, Copy, Debug, Default)]
struct Cursor {
    other: usize,
    hosts: usize,
}

impl Candidates<'_> {
    /// The candidate at `at`, in rule order, and the place after it.
    fn next(&self, at: Cursor) -> Option<(usize, Cursor)> {
        let take_other = Cursor {
            other: at.other + 1,
            ..at
        };
        let take_host = Cursor {
            hosts: at.hosts + 1,
            ..at
        };
        match (self.other.get(at.other), self.hosts.get(at.hosts)) {
            (Some(&x), Some(&y)) if x < y => Some((x, take_other)),
            (Some(&x), None) => Some((x, take_other)),
            (_, Some(&y)) => Some((y, take_host)),
            (None, None) => None,
        }
    }
}

/// What happened at one step of the walk.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A base chain starts.
    Enter {
        hook: Hook,
        table: usize,
        chain_index: usize,
        chain: Arc<str>,
    },
    /// A rule matched and its target applied.
    Matched(RuleRef),
    /// A rule's match could not be decided and was assumed to hold (`true`) or not.
    Assumed { rule: RuleRef, held: bool },
    /// A `statistic` (or `numgen`) branch was taken with this share.
    Chance { rule: RuleRef, share: f64 },
    /// The chain ended without a verdict: back to the caller, or the policy applies.
    Fell {
        table: usize,
        chain_index: usize,
        chain: Arc<str>,
    },
    /// The routing decision after PREROUTING; `assumed` when no host address was
    /// given, so both ways are followed.
    Routed {
        local: bool,
        dst: IpAddr,
        assumed: bool,
    },
}

/// How the walk ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Fate {
    /// Delivered to a local socket (after INPUT).
    Delivered,
    /// Forwarded and sent on (after POSTROUTING).
    Forwarded,
    /// Sent by the host (after POSTROUTING).
    Sent,
    /// Dropped by this rule, or by the policy of a base chain (`rule: None`).
    Dropped {
        rule: Option<RuleRef>,
        hook: Hook,
        table: usize,
        chain: Arc<str>,
    },
    /// Rejected (an ICMP error or RST goes back).
    Rejected { rule: RuleRef, hook: Hook },
    /// A target natcheck cannot follow.
    Stopped { rule: RuleRef },
}

/// A NAT decision: the rule and the tuple after it.
#[derive(Clone, Debug, PartialEq)]
pub struct Nat {
    pub rule: RuleRef,
    pub hook: Hook,
    /// The tuple with the first address and port of `to`'s ranges (a port in range is
    /// kept).
    pub after: Tuple,
    /// The target's ranges: the kernel takes any address of an address range (by a
    /// hash of the connection's addresses) and may take any port of a port range.
    pub to: NatTo,
    pub flags: NatFlags,
    /// MASQUERADE to an interface whose address no input gave: `after` keeps the old
    /// source address, and the new one is this interface's; or REDIRECT (a DNAT) of a
    /// packet that came in by an interface whose address no input gave: `after` keeps
    /// the old destination address, and the new one is this interface's.
    pub to_iface: Option<String>,
}

/// One way the packet can go.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// The product of the shares of the `statistic` branches taken.
    pub probability: f64,
    pub events: Vec<Event>,
    pub fate: Fate,
    pub dnat: Option<Nat>,
    pub snat: Option<Nat>,
    /// The filter hook after routing: `Input` or `Forward` (`Output` for the host's own).
    pub filter_hook: Option<Hook>,
}

impl Outcome {
    /// How many undecided matches (and routing decisions) the outcome assumed.
    pub fn assumptions(&self) -> usize {
        self.events
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    Event::Assumed { .. } | Event::Routed { assumed: true, .. }
                )
            })
            .count()
    }

    /// Whether the outcome rests on an assumption about an undecided match.
    pub fn assumed(&self) -> bool {
        self.events
            .iter()
            .any(|e| matches!(e, Event::Assumed { .. }))
    }
}

/// Every way the packet can go, most likely first (ties in walk order), and whether
/// branches were cut at [`MAX_BRANCHES`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Walk {
    pub outcomes: Vec<Outcome>,
    pub truncated: bool,
}

/// A rule by its indices while the walk runs; a [`RuleRef`] (with the chain's name)
/// once an outcome names it.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Place {
    table: usize,
    chain: usize,
    index: usize,
}

/// An [`Event`] while the walk runs, naming rules and chains by their indices.
#[derive(Clone, Copy, Debug)]
enum Step {
    Enter {
        hook: Hook,
        table: usize,
        chain: usize,
    },
    Matched(Place),
    Assumed {
        rule: Place,
        held: bool,
    },
    Chance {
        rule: Place,
        share: f64,
    },
    Fell {
        table: usize,
        chain: usize,
    },
    Routed {
        local: bool,
        dst: IpAddr,
        assumed: bool,
    },
}

/// A [`Nat`] while the walk runs.
#[derive(Clone, Copy, Debug)]
struct NatStep {
    rule: Place,
    hook: Hook,
    after: Tuple,
    to: NatTo,
    flags: NatFlags,
    /// MASQUERADE or REDIRECT to an interface whose address no input gave (see
    /// [`Nat::to_iface`]).
    to_iface: bool,
}

/// The state of one branch. The walker keeps every branch's state (see
/// [`Walker::states`]) and its events and NAT decisions (see [`Walker::steps`]), so
/// that what a step of the walk passes on is the branch's index, and a split copies a
/// few numbers, not lists.
#[derive(Clone, Copy, Debug)]
struct State {
    cur: Tuple,
    mark: u32,
    ctmark: u32,
    untracked: bool,
    probability: f64,
    /// The branch's last step in [`Walker::steps`].
    last: Option<usize>,
    /// Indices in [`Walker::nats`].
    dnat: Option<usize>,
    snat: Option<usize>,
    filter_hook: Option<Hook>,
}

impl State {
    fn start(packet: &Packet) -> State {
        State {
            cur: packet.tuple,
            mark: packet.mark,
            ctmark: 0,
            untracked: false,
            probability: 1.0,
            last: None,
            dnat: None,
            snat: None,
            filter_hook: None,
        }
    }
}

/// A branch: the index of its state in [`Walker::states`].
type Br = usize;

/// Whether every match of `rule` holds for `packet` as it arrives, were it delivered
/// locally (INPUT); a match that cannot be decided does not hold.
pub fn matches_plainly(rules: &RuleSet, rule: &Rule, packet: &Packet) -> bool {
    let index = Index::empty(rules);
    let w = Walker::new(rules, &index, packet);
    let s = State::start(packet);
    rule.matches
        .iter()
        .all(|m| matches!(w.test(&s, m, Hook::Input), Test::Yes))
}

/// How a chain ended in one branch.
#[derive(Clone, Copy, Debug, PartialEq)]
enum End {
    Verdict(Verdict, Option<Place>),
    Reject(Place),
    /// Fell off the end or RETURN.
    Return,
    Stop(Place),
}

/// Whether a match holds: yes, no, or a split into branches with shares (`statistic`)
/// or an assumption (unknown).
enum Test {
    Yes,
    No,
    Chance(f64),
    Unknown,
}

/// The branches a step of the walk leads to, in walk order. Most steps lead to one, held
/// in place.
type Branches<T> = SmallVec<[T; 1]>;

struct Walker<'a> {
    rules: &'a RuleSet,
    index: &'a Index<'a>,
    packet: &'a Packet,
    branches: usize,
    truncated: bool,
    /// The state of every branch, by [`Br`].
    states: Vec<State>,
    /// Every step of every branch, each with the step before it in its branch: a
    /// branch's events are the steps back from its last one, shared with the branches
    /// it split from.
    steps: Vec<(Step, Option<usize>)>,
    /// Every NAT decision of every branch.
    nats: Vec<NatStep>,
}

/// A walker's lists, emptied, kept from walk to walk (see [`LISTS`]).
#[derive(Default)]
struct Lists {
    states: Vec<State>,
    steps: Vec<(Step, Option<usize>)>,
    nats: Vec<NatStep>,
}

thread_local! {
    /// The lists of the last walk on this thread, for their room.
    static LISTS: Cell<Lists> = Cell::new(Lists::default());
}

/// Walks `packet` through `rules`.
pub fn walk(rules: &RuleSet, packet: &Packet) -> Walk {
    walk_indexed(rules, &Index::new(rules), packet)
}

/// [`walk`] with the rule set's index built once for many packets.
pub fn walk_indexed(rules: &RuleSet, index: &Index, packet: &Packet) -> Walk {
    let mut w = Walker::new(rules, index, packet);
    let lists = LISTS.take();
    (w.states, w.steps, w.nats) = (lists.states, lists.steps, lists.nats);
    w.states.push(State::start(packet));
    let hooks: &[Hook] = if packet.in_iface.is_some() {
        &[Hook::Prerouting]
    } else {
        &[Hook::Output]
    };
    let mut outcomes = Vec::new();
    w.hooks(0, hooks, &mut outcomes);
    outcomes.sort_by(|a, b| b.probability.total_cmp(&a.probability));
    w.states.clear();
    w.steps.clear();
    w.nats.clear();
    LISTS.set(Lists {
        states: w.states,
        steps: w.steps,
        nats: w.nats,
    });
    Walk {
        outcomes,
        truncated: w.truncated,
    }
}

impl<'a> Walker<'a> {
    fn new(rules: &'a RuleSet, index: &'a Index, packet: &'a Packet) -> Walker<'a> {
        Walker {
            rules,
            index,
            packet,
            branches: 1,
            truncated: false,
            states: Vec::new(),
            steps: Vec::new(),
            nats: Vec::new(),
        }
    }

    /// A new branch with the state of `s`.
    fn fork(&mut self, s: Br) -> Br {
        self.states.push(self.states[s]);
        self.states.len() - 1
    }

    /// Runs the hooks from `path[0]` on, with routing after PREROUTING and OUTPUT; the
    /// outcomes go to `out`.
    fn hooks(&mut self, s: Br, path: &[Hook], out: &mut Vec<Outcome>) {
        let Some((&hook, rest)) = path.split_first() else {
            return;
        };
        for (s, ended) in self.hook(s, hook) {
            if let Some(fate) = ended {
                out.push(self.finish(s, fate));
            } else if !rest.is_empty() {
                self.hooks(s, rest, out);
            } else {
                self.after(s, hook, out);
            }
        }
    }

    /// What follows `hook` once it accepted the packet.
    fn after(&mut self, s: Br, hook: Hook, out: &mut Vec<Outcome>) {
        match hook {
            Hook::Prerouting => {
                let st = &self.states[s];
                let dst = st.cur.dst;
                // A REDIRECT made the destination an address of the host, if not one
                // known.
                let redirected = st.dnat.is_some_and(|i| self.nats[i].to_iface);
                let local = if redirected {
                    Some(true)
                } else {
                    self.local(dst)
                };
                let ways: &[(bool, bool)] = match local {
                    Some(true) => &[(true, false)],
                    Some(false) => &[(false, false)],
                    None if self.grow(1) => &[(true, true), (false, true)],
                    None => &[(false, true)],
                };
                // Each way from the state as routing found it.
                let ways: Branches<(Br, bool, bool)> = ways
                    .iter()
                    .enumerate()
                    .map(|(k, &(local, assumed))| {
                        let s = if k + 1 < ways.len() { self.fork(s) } else { s };
                        (s, local, assumed)
                    })
                    .collect();
                for (s, local, assumed) in ways {
                    self.step(
                        s,
                        Step::Routed {
                            local,
                            dst,
                            assumed,
                        },
                    );
                    if local {
                        self.states[s].filter_hook = Some(Hook::Input);
                        self.hooks(s, &[Hook::Input], out);
                    } else {
                        self.states[s].filter_hook = Some(Hook::Forward);
                        self.hooks(s, &[Hook::Forward, Hook::Postrouting], out);
                    }
                }
            }
            Hook::Output => {
                self.states[s].filter_hook = Some(Hook::Output);
                self.hooks(s, &[Hook::Postrouting], out);
            }
            Hook::Input => out.push(self.finish(s, Fate::Delivered)),
            Hook::Forward => out.push(self.finish(s, Fate::Forwarded)),
            Hook::Postrouting => {
                let fate = if self.packet.in_iface.is_some() {
                    Fate::Forwarded
                } else {
                    Fate::Sent
                };
                out.push(self.finish(s, fate));
            }
        }
    }

    /// Every base chain of `hook` in order. Each branch ends with `None` (accepted:
    /// go on) or the fate that ended it.
    fn hook(&mut self, s: Br, hook: Hook) -> Branches<(Br, Option<Fate>)> {
        let (rules, index) = (self.rules, self.index);
        // The base chains that see packets of this address, in priority order.
        let dst = self.states[s].cur.dst;
        let chains = index.bases[hook as usize].iter().filter_map(|&(ti, ci)| {
            let t = &rules.tables[ti];
            let base = t.chains[ci].base.as_ref()?;
            t.family.sees(dst).then_some((ti, ci, base))
        });
        let mut live: Branches<Br> = smallvec![s];
        let mut done = Branches::new();
        for (ti, ci, base) in chains {
            let mut next = Branches::new();
            for s in live {
                let st = &self.states[s];
                let nat_done = match hook {
                    Hook::Prerouting | Hook::Output => st.dnat.is_some(),
                    _ => st.snat.is_some(),
                };
                if base.kind == ChainType::Nat
                    && (self.packet.ct != CtState::New || st.untracked || nat_done)
                {
                    next.push(s);
                    continue;
                }
                self.step(
                    s,
                    Step::Enter {
                        hook,
                        table: ti,
                        chain: ci,
                    },
                );
                for (s, end) in self.chain(s, hook, ti, ci, 0) {
                    let dropped = |rule: Option<Place>| Fate::Dropped {
                        rule: rule.map(|p| self.rule_ref(p)),
                        hook,
                        table: ti,
                        chain: index.name(ti, ci),
                    };
                    match end {
                        End::Verdict(Verdict::Accept, _) => next.push(s),
                        End::Return if base.policy == Verdict::Accept => next.push(s),
                        End::Return => done.push((s, Some(dropped(None)))),
                        End::Verdict(Verdict::Drop, rule) => done.push((s, Some(dropped(rule)))),
                        End::Reject(rule) => {
                            let rule = self.rule_ref(rule);
                            done.push((s, Some(Fate::Rejected { rule, hook })));
                        }
                        End::Stop(rule) => {
                            let rule = self.rule_ref(rule);
                            done.push((s, Some(Fate::Stopped { rule })));
                        }
                    }
                }
            }
            live = next;
        }
        done.extend(live.into_iter().map(|s| (s, None)));
        done
    }

    /// Runs one chain; every branch with how it ended.
    fn chain(
        &mut self,
        s: Br,
        hook: Hook,
        ti: usize,
        ci: usize,
        depth: usize,
    ) -> Branches<(Br, End)> {
        let rules = self.rules;
        let chain = &rules.tables[ti].chains[ci];
        let candidates = self.index.candidates(ti, ci, self.states[s].cur.dst);
        let mut out = Branches::new();
        // Branches still walking this chain, with where they are in the candidates
        // (last in, first walked).
        let mut live: Branches<(Br, Cursor)> = smallvec![(s, Cursor::default())];
        while let Some((s, mut at)) = live.pop() {
            // Most rules are decided from the packet alone: the rules a match rules out
            // are skipped, one whose every match holds goes on as it is; only the others
            // split or assume.
            let mut found = None;
            while let Some((i, next)) = candidates.next(at) {
                at = next;
                if let Some(split) = self.undecided(s, &chain.rules[i], hook) {
                    found = Some((i, split));
                    break;
                }
            }
            let Some((i, split)) = found else {
                self.step(
                    s,
                    Step::Fell {
                        table: ti,
                        chain: ci,
                    },
                );
                out.push((s, End::Return));
                continue;
            };
            let rule = &chain.rules[i];
            let r = Place {
                table: ti,
                chain: ci,
                index: i,
            };
            let branches = if split {
                self.test_rule(s, rule, r, hook)
            } else {
                smallvec![(s, true)]
            };
            for (s, held) in branches {
                if !held {
                    live.push((s, at));
                    continue;
                }
                self.step(s, Step::Matched(r));
                for (s, end) in self.target(s, &rule.target, r, hook, depth) {
                    match end {
                        None => live.push((s, at)),
                        Some(end) => out.push((s, end)),
                    }
                }
            }
        }
        out
    }

    /// Whether branch `s` meets `rule`: `None` when a match rules it out, else whether
    /// a match could not be decided (the rule splits the branch or assumes).
    fn undecided(&self, s: Br, rule: &Rule, hook: Hook) -> Option<bool> {
        let st = &self.states[s];
        let mut split = false;
        for m in &rule.matches {
            match self.test(st, m, hook) {
                Test::No => return None,
                Test::Yes => {}
                Test::Chance(_) | Test::Unknown => split = true,
            }
        }
        Some(split)
    }

    /// Applies a target; `None` means go on with the next rule.
    fn target(
        &mut self,
        s: Br,
        target: &Target,
        r: Place,
        hook: Hook,
        depth: usize,
    ) -> Branches<(Br, Option<End>)> {
        let st = &mut self.states[s];
        match target {
            Target::None | Target::Log | Target::Continue { .. } | Target::Helper { .. } => {}
            Target::Mark(op) => st.mark = op.apply(st.mark),
            Target::ConnMark(op) => st.ctmark = op.apply(st.ctmark),
            Target::CopyMark {
                restore,
                nfmask,
                ctmask,
            } => {
                // As the kernel's xt_connmark: the copied bits are XORed into the
                // cleared ones.
                if *restore {
                    st.mark = (st.mark & !nfmask) ^ (st.ctmark & ctmask);
                } else {
                    st.ctmark = (st.ctmark & !ctmask) ^ (st.mark & nfmask);
                }
            }
            Target::Notrack => st.untracked = true,
            Target::Accept => return smallvec![(s, Some(End::Verdict(Verdict::Accept, Some(r))))],
            Target::Drop => return smallvec![(s, Some(End::Verdict(Verdict::Drop, Some(r))))],
            Target::Reject { .. } => return smallvec![(s, Some(End::Reject(r)))],
            Target::Return => {
                self.step(
                    s,
                    Step::Fell {
                        table: r.table,
                        chain: r.chain,
                    },
                );
                return smallvec![(s, Some(End::Return))];
            }
            Target::Jump(c) | Target::Goto(c) => {
                let Some(ci) = self.index.jump(r, c).filter(|_| depth < MAX_DEPTH) else {
                    // A loop, or a chain the dump does not hold.
                    return smallvec![(s, Some(End::Stop(r)))];
                };
                let goto = matches!(target, Target::Goto(_));
                return self
                    .chain(s, hook, r.table, ci, depth + 1)
                    .into_iter()
                    .map(|(s, end)| match end {
                        // Back from a jump: the next rule. From a goto: this chain ends.
                        End::Return if !goto => (s, None),
                        end => (s, Some(end)),
                    })
                    .collect();
            }
            Target::Dnat { to, flags } => {
                return self.nat(s, r, hook, *to, *flags, true, false);
            }
            Target::Redirect { ports, flags } => {
                // The address of the interface the packet came in by; the loopback
                // address for the host's own packets. An interface no input gave an
                // address of keeps the destination address, as MASQUERADE does its
                // source.
                let dst = st.cur.dst;
                let addr = match self.packet.in_iface.as_deref() {
                    Some(i) => self.iface_addr(i, dst),
                    None if dst.is_ipv4() => Some(IpAddr::from([127, 0, 0, 1])),
                    None => Some(IpAddr::from(std::net::Ipv6Addr::LOCALHOST)),
                };
                let to = NatTo {
                    addrs: addr.map(|a| (a, a)),
                    ports: *ports,
                };
                return self.nat(s, r, hook, to, *flags, true, addr.is_none());
            }
            Target::Snat { to, flags } => {
                return self.nat(s, r, hook, *to, *flags, false, false);
            }
            Target::Masquerade { ports, flags } => {
                let cur = st.cur;
                let addr = self
                    .packet
                    .out_iface
                    .as_deref()
                    .and_then(|i| self.iface_addr(i, cur.src));
                let to = NatTo {
                    addrs: addr.map(|a| (a, a)),
                    ports: *ports,
                };
                return self.nat(s, r, hook, to, *flags, false, addr.is_none());
            }
            Target::Netmap { to } => {
                let dst = matches!(hook, Hook::Prerouting | Hook::Output);
                let a = to.map(if dst { st.cur.dst } else { st.cur.src });
                let to = NatTo {
                    addrs: Some((a, a)),
                    ports: None,
                };
                return self.nat(s, r, hook, to, NatFlags::default(), dst, false);
            }
            Target::Map { by, branches } => return self.map(s, by, branches, r, hook, depth),
            Target::Unknown { .. } => return smallvec![(s, Some(End::Stop(r)))],
        }
        // A target that only changes the state: go on.
        smallvec![(s, None)]
    }

    /// Records a NAT decision (of the destination when `dst`, else of the source) to
    /// `to`; a NAT target ends its chain like ACCEPT.
    #[allow(clippy::too_many_arguments)]
    fn nat(
        &mut self,
        s: Br,
        r: Place,
        hook: Hook,
        to: NatTo,
        flags: NatFlags,
        dst: bool,
        to_iface: bool,
    ) -> Branches<(Br, Option<End>)> {
        let cur = &self.states[s].cur;
        // A NAT statement of the other family (`dnat ip to` in an `inet` chain, met by
        // an IPv6 packet) does nothing: the kernel skips it and the rule goes on.
        if to.other_family(cur.src) {
            return smallvec![(s, None)];
        }
        let after = if dst {
            nat_dst(cur, &to)
        } else {
            nat_src(cur, &to)
        };
        self.nats.push(NatStep {
            rule: r,
            hook,
            after,
            to,
            flags,
            to_iface,
        });
        let nat = Some(self.nats.len() - 1);
        let st = &mut self.states[s];
        st.cur = after;
        if dst {
            st.dnat = nat;
        } else {
            st.snat = nat;
        }
        smallvec![(s, Some(End::Verdict(Verdict::Accept, Some(r))))]
    }

    /// A verdict map: the branch the key selects, or each branch by its share.
    fn map(
        &mut self,
        s: Br,
        by: &str,
        branches: &[super::Branch],
        r: Place,
        hook: Hook,
        depth: usize,
    ) -> Branches<(Br, Option<End>)> {
        let mut out = Branches::new();
        let mut chosen: SmallVec<[(Br, &Target); 2]> = SmallVec::new();
        let mut undecided = false;
        for b in branches {
            let held = match b.share {
                Some(_) => Some(true),
                None => map_key_matches(&self.states[s], self.packet, by, &b.key),
            };
            if held == Some(false) {
                continue;
            }
            let c = self.fork(s);
            match b.share {
                Some(p) => {
                    self.states[c].probability *= p;
                    self.step(c, Step::Chance { rule: r, share: p });
                }
                None if held.is_none() => {
                    undecided = true;
                    self.step(
                        c,
                        Step::Assumed {
                            rule: r,
                            held: true,
                        },
                    );
                }
                None => {}
            }
            if self.grow(1) {
                chosen.push((c, &b.target));
            }
        }
        let keyed = branches.iter().all(|b| b.share.is_none());
        if keyed && (chosen.is_empty() || undecided) {
            // No key matched (or some could not be decided): the rule does nothing.
            out.push((s, None));
        }
        for (c, t) in chosen {
            out.extend(self.target(c, t, r, hook, depth));
        }
        out
    }

    /// Whether `a` is an address of the host; `None` when no host address is known
    /// (then only loopback addresses are known to be local).
    fn local(&self, a: IpAddr) -> Option<bool> {
        if self.rules.is_local(a) {
            Some(true)
        } else if self.rules.addrs.is_empty() {
            None
        } else {
            Some(false)
        }
    }

    /// The address of `iface` of the same family as `like` (MASQUERADE's source,
    /// REDIRECT's destination).
    fn iface_addr(&self, iface: &str, like: IpAddr) -> Option<IpAddr> {
        self.rules
            .addrs
            .iter()
            .find(|h| h.iface == iface && h.prefix.addr.is_ipv4() == like.is_ipv4())
            .map(|h| h.prefix.addr)
    }

    /// Whether one more branch may be followed.
    fn grow(&mut self, n: usize) -> bool {
        if self.branches + n > MAX_BRANCHES {
            self.truncated = true;
            false
        } else {
            self.branches += n;
            true
        }
    }

    /// The branches of a rule's matches: `(branch, all matches held)`.
    fn test_rule(&mut self, s: Br, rule: &Rule, r: Place, hook: Hook) -> Branches<(Br, bool)> {
        let mut held: Branches<Br> = smallvec![s];
        let mut failed: Branches<Br> = Branches::new();
        for m in &rule.matches {
            let mut next = Branches::new();
            for s in held {
                match self.test(&self.states[s], m, hook) {
                    Test::Yes => next.push(s),
                    Test::No => failed.push(s),
                    Test::Chance(p) => {
                        if self.grow(1) {
                            let no = self.fork(s);
                            self.states[no].probability *= 1.0 - p;
                            failed.push(no);
                        }
                        self.states[s].probability *= p;
                        self.step(s, Step::Chance { rule: r, share: p });
                        next.push(s);
                    }
                    Test::Unknown => {
                        if self.grow(1) {
                            let no = self.fork(s);
                            self.step(
                                no,
                                Step::Assumed {
                                    rule: r,
                                    held: false,
                                },
                            );
                            failed.push(no);
                        }
                        self.step(
                            s,
                            Step::Assumed {
                                rule: r,
                                held: true,
                            },
                        );
                        next.push(s);
                    }
                }
            }
            held = next;
            if held.is_empty() {
                break;
            }
        }
        let mut out: Branches<(Br, bool)> = held.into_iter().map(|s| (s, true)).collect();
        out.extend(failed.into_iter().map(|s| (s, false)));
        out
    }

    /// Appends a step to branch `s`.
    fn step(&mut self, s: Br, step: Step) {
        let st = &mut self.states[s];
        self.steps.push((step, st.last));
        st.last = Some(self.steps.len() - 1);
    }

    /// The rule at `p`, by its chain's name.
    fn rule_ref(&self, p: Place) -> RuleRef {
        RuleRef {
            table: p.table,
            chain_index: p.chain,
            chain: self.index.name(p.table, p.chain),
            index: p.index,
        }
    }

    /// Branch `s` ends: its outcome, with its events and NAT decisions.
    fn finish(&self, s: Br, fate: Fate) -> Outcome {
        let st = &self.states[s];
        // The branch's steps, last first.
        let trail: SmallVec<[Step; 32]> = std::iter::successors(st.last, |&i| self.steps[i].1)
            .map(|i| self.steps[i].0)
            .collect();
        let events: Vec<Event> = trail.iter().rev().map(|&step| self.event(step)).collect();
        let nat = |i: Option<usize>| {
            let n = self.nats[i?];
            Some(Nat {
                rule: self.rule_ref(n.rule),
                hook: n.hook,
                after: n.after,
                to: n.to,
                flags: n.flags,
                to_iface: n.to_iface.then(|| {
                    let iface = match n.hook {
                        Hook::Prerouting => &self.packet.in_iface,
                        _ => &self.packet.out_iface,
                    };
                    iface.as_deref().unwrap_or_default().to_string()
                }),
            })
        };
        Outcome {
            probability: st.probability,
            events,
            fate,
            dnat: nat(st.dnat),
            snat: nat(st.snat),
            filter_hook: st.filter_hook,
        }
    }

    fn event(&self, step: Step) -> Event {
        match step {
            Step::Enter { hook, table, chain } => Event::Enter {
                hook,
                table,
                chain_index: chain,
                chain: self.index.name(table, chain),
            },
            Step::Matched(p) => Event::Matched(self.rule_ref(p)),
            Step::Assumed { rule, held } => Event::Assumed {
                rule: self.rule_ref(rule),
                held,
            },
            Step::Chance { rule, share } => Event::Chance {
                rule: self.rule_ref(rule),
                share,
            },
            Step::Fell { table, chain } => Event::Fell {
                table,
                chain_index: chain,
                chain: self.index.name(table, chain),
            },
            Step::Routed {
                local,
                dst,
                assumed,
            } => Event::Routed {
                local,
                dst,
                assumed,
            },
        }
    }
}

/// Whether a verdict map's key (`10.96.0.10 . tcp . 53`, as nft prints it) is the
/// packet's value of the map's selector (`ip daddr . meta l4proto . th dport`); `None`
/// when a part of it cannot be read.
fn map_key_matches(s: &State, p: &Packet, by: &str, key: &str) -> Option<bool> {
    let sels: Vec<&str> = by.split(" . ").map(str::trim).collect();
    let keys: Vec<&str> = key.split(" . ").map(str::trim).collect();
    if sels.len() != keys.len() {
        return None;
    }
    let t = &s.cur;
    let mut all = true;
    for (sel, k) in sels.iter().zip(&keys) {
        let hit = match *sel {
            "ip daddr" | "ip6 daddr" => addr_in(t.dst, k)?,
            "ip saddr" | "ip6 saddr" => addr_in(t.src, k)?,
            "meta l4proto" | "ip protocol" | "ip6 nexthdr" => {
                let want = match *k {
                    "tcp" => Proto::Tcp,
                    "udp" => Proto::Udp,
                    "sctp" => Proto::Sctp,
                    "icmp" => Proto::Icmp,
                    "icmpv6" | "ipv6-icmp" => Proto::Icmpv6,
                    n => Proto::from_number(n.parse().ok()?),
                };
                want == t.proto
            }
            "th dport" | "tcp dport" | "udp dport" | "sctp dport" => {
                t.proto.has_ports() && port_in(t.dport, k)?
            }
            "th sport" | "tcp sport" | "udp sport" | "sctp sport" => {
                t.proto.has_ports() && port_in(t.sport, k)?
            }
            "meta iifname" | "iifname" => p.in_iface.as_deref() == Some(k.trim_matches('"')),
            "meta oifname" | "oifname" => match p.out_iface.as_deref() {
                Some(i) => i == k.trim_matches('"'),
                None => return None,
            },
            _ => return None,
        };
        all &= hit;
    }
    Some(all)
}

/// `10.0.0.1`, `10.0.0.0/8` or `10.0.0.1-10.0.0.9` holding `a`.
fn addr_in(a: IpAddr, k: &str) -> Option<bool> {
    if let Some((lo, hi)) = k.split_once('-') {
        let (lo, hi): (IpAddr, IpAddr) = (lo.parse().ok()?, hi.parse().ok()?);
        return Some(lo <= a && a <= hi);
    }
    match k.split_once('/') {
        Some((addr, len)) => Some(
            Prefix {
                addr: addr.parse().ok()?,
                len: len.parse().ok()?,
            }
            .contains(a),
        ),
        None => Some(k.parse::<IpAddr>().ok()? == a),
    }
}

/// `80` or `8000-8080` holding `p`.
fn port_in(p: u16, k: &str) -> Option<bool> {
    match k.split_once('-') {
        Some((lo, hi)) => Some(lo.parse::<u16>().ok()? <= p && p <= hi.parse::<u16>().ok()?),
        None => Some(k.parse::<u16>().ok()? == p),
    }
}

/// The tuple after a DNAT to `to` (the first address and port of a range; a port is
/// kept when no port range is given).
fn nat_dst(t: &Tuple, to: &NatTo) -> Tuple {
    let mut a = *t;
    if let Some((lo, _)) = to.addrs {
        a.dst = lo;
    }
    if let Some((lo, hi)) = to.ports {
        if !(lo..=hi).contains(&a.dport) {
            a.dport = lo;
        }
    }
    a
}

/// The tuple after a SNAT to `to` (the port is kept when it is in range: the wire
/// tells whether it had to move).
fn nat_src(t: &Tuple, to: &NatTo) -> Tuple {
    let mut a = *t;
    if let Some((lo, _)) = to.addrs {
        a.src = lo;
    }
    if let Some((lo, hi)) = to.ports {
        if !(lo..=hi).contains(&a.sport) {
            a.sport = lo;
        }
    }
    a
}

fn negate(t: Test, negated: bool) -> Test {
    if !negated {
        return t;
    }
    match t {
        Test::Yes => Test::No,
        Test::No => Test::Yes,
        Test::Chance(p) => Test::Chance(1.0 - p),
        Test::Unknown => Test::Unknown,
    }
}

fn yes(b: bool) -> Test {
    if b {
        Test::Yes
    } else {
        Test::No
    }
}

impl Walker<'_> {
    fn test(&self, s: &State, m: &Match, hook: Hook) -> Test {
        let t = &s.cur;
        let p = self.packet;
        let r = match &m.kind {
            MatchKind::Src(pre) => yes(pre.contains(t.src)),
            MatchKind::Dst(pre) => yes(pre.contains(t.dst)),
            MatchKind::InIface(i) => match (&p.in_iface, hook) {
                (Some(name), Hook::Prerouting | Hook::Input | Hook::Forward) => {
                    yes(i.matches(name))
                }
                _ => Test::No,
            },
            MatchKind::OutIface(i) => match (&p.out_iface, hook) {
                (_, Hook::Prerouting | Hook::Input) => Test::No,
                (Some(name), _) => yes(i.matches(name)),
                (None, _) => Test::Unknown,
            },
            MatchKind::Proto(pr) => yes(*pr == t.proto),
            MatchKind::Sport(ports) => yes(t.proto.has_ports() && ports.contains(t.sport)),
            MatchKind::Dport(ports) => yes(t.proto.has_ports() && ports.contains(t.dport)),
            MatchKind::AnyProto(protos) => yes(protos.contains(&t.proto)),
            MatchKind::EitherPort(ports) => {
                yes(t.proto.has_ports() && (ports.contains(t.sport) || ports.contains(t.dport)))
            }
            MatchKind::AddrType {
                src,
                dst,
                limit_in,
                limit_out,
            } => {
                let undecided =
                    |ty: &[AddrType], a: IpAddr| !ty.is_empty() && self.local(a).is_none();
                if *limit_in || *limit_out || undecided(src, t.src) || undecided(dst, t.dst) {
                    Test::Unknown
                } else {
                    let ok = |ty: &[AddrType], a: IpAddr| {
                        ty.is_empty() || ty.contains(&self.addr_type(a))
                    };
                    yes(ok(src, t.src) && ok(dst, t.dst))
                }
            }
            MatchKind::Set { name, dims } => self.in_set(name, dims, t),
            MatchKind::Mark { value, mask } => yes(s.mark & mask == *value),
            MatchKind::ConnMark { value, mask } => yes(s.ctmark & mask == *value),
            MatchKind::CtState(states) => yes(states.iter().any(|st| match st {
                CtState::Untracked => s.untracked,
                CtState::Snat => s.snat.is_some(),
                CtState::Dnat => s.dnat.is_some(),
                st => !s.untracked && *st == p.ct,
            })),
            MatchKind::CtOrigDst(pre) => yes(pre.contains(p.tuple.dst)),
            MatchKind::CtOrigSrc(pre) => yes(pre.contains(p.tuple.src)),
            MatchKind::CtOrigDstPort(ports) => {
                yes(p.tuple.proto.has_ports() && ports.contains(p.tuple.dport))
            }
            MatchKind::CtDirReply => Test::No,
            MatchKind::Random { probability } => match *probability {
                x if x >= 1.0 => Test::Yes,
                x if x <= 0.0 => Test::No,
                x => Test::Chance(x),
            },
            MatchKind::Nth { every, .. } => match *every {
                0 | 1 => Test::Yes,
                n => Test::Chance(1.0 / f64::from(n)),
            },
            MatchKind::TcpFlags { mask, comp } => match p.tcp_flags {
                Some(f) if t.proto == Proto::Tcp => yes(f & mask == *comp),
                _ => Test::No,
            },
            MatchKind::IcmpType { icmp_type, code } => {
                // The first packet of an ICMP connection is an echo request.
                let (ty, c) = match t.proto {
                    Proto::Icmp => (8, 0),
                    Proto::Icmpv6 => (128, 0),
                    _ => return negate(Test::No, m.negated),
                };
                yes(*icmp_type == ty && code.is_none_or(|x| x == c))
            }
            MatchKind::Family(f) => yes(f.sees(t.src)),
            MatchKind::Comment => Test::Yes,
            MatchKind::Unknown { .. } => Test::Unknown,
        };
        negate(r, m.negated)
    }

    fn addr_type(&self, a: IpAddr) -> AddrType {
        if self.rules.is_local(a) {
            AddrType::Local
        } else if a.is_multicast() {
            AddrType::Multicast
        } else if matches!(a, IpAddr::V4(v) if v.is_broadcast()) {
            AddrType::Broadcast
        } else {
            AddrType::Unicast
        }
    }

    /// `-m set`: each dimension of the set's members against the packet's side.
    fn in_set(&self, name: &str, dims: &[SetDim], t: &Tuple) -> Test {
        let Some(set) = self.rules.sets.get(name) else {
            return Test::Unknown;
        };
        let side = |d: Option<&SetDim>| match d {
            Some(SetDim::Src) => (t.src, t.sport),
            _ => (t.dst, t.dport),
        };
        let (a, _) = side(dims.first());
        let (_, port) = side(dims.get(1).or(dims.first()));
        let hit = set.members.iter().any(|m| match m {
            SetMember::Addr(p) => p.contains(a),
            SetMember::AddrPort(p, proto, (lo, hi)) => {
                p.contains(a) && proto.is_none_or(|x| x == t.proto) && (*lo..=*hi).contains(&port)
            }
            SetMember::Port(proto, (lo, hi)) => {
                let (_, port) = side(dims.first());
                proto.is_none_or(|x| x == t.proto) && (*lo..=*hi).contains(&port)
            }
        });
        yes(hit)
    }
}

/// A prefix holding exactly `a`.
pub fn host(a: IpAddr) -> Prefix {
    Prefix {
        addr: a,
        len: if a.is_ipv4() { 32 } else { 128 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{iptables, HostAddr};

    fn rules(text: &str) -> RuleSet {
        let mut r = if text.is_empty() {
            RuleSet::default()
        } else {
            iptables::parse("rules.txt", text)
        };
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        for (iface, a) in [("eth0", "203.0.113.1"), ("docker0", "172.17.0.1")] {
            r.addrs.push(HostAddr {
                iface: iface.into(),
                prefix: host(a.parse().unwrap()),
            });
        }
        r
    }

    fn tcp(src: &str, sport: u16, dst: &str, dport: u16) -> Tuple {
        Tuple::of(Proto::Tcp, src, sport, dst, dport)
    }

    fn inbound(dport: u16) -> Packet {
        Packet::first(
            tcp("198.51.100.20", 40000, "203.0.113.1", dport),
            Some("eth0".into()),
            Some("docker0".into()),
        )
    }

    fn line_of(r: &RuleSet, rr: &RuleRef) -> u64 {
        rr.rule(r).unwrap().line
    }

    const KUBE: &str = "*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-SVC-WEB - [0:0]
:KUBE-SEP-A - [0:0]
:KUBE-SEP-B - [0:0]
:KUBE-SEP-C - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-POSTROUTING - [0:0]
:cali-PREROUTING - [0:0]
-A PREROUTING -j cali-PREROUTING
-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES
-A POSTROUTING -j KUBE-POSTROUTING
-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-NODEPORTS -p tcp -m tcp --dport 30080 -j KUBE-MARK-MASQ
-A KUBE-NODEPORTS -p tcp -m tcp --dport 30080 -j KUBE-SVC-WEB
-A KUBE-SVC-WEB -m statistic --mode random --probability 0.33333333349 -j KUBE-SEP-A
-A KUBE-SVC-WEB -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-B
-A KUBE-SVC-WEB -j KUBE-SEP-C
-A KUBE-SEP-A -p tcp -m tcp -j DNAT --to-destination 172.17.0.2:80
-A KUBE-SEP-B -p tcp -m tcp -j DNAT --to-destination 172.17.0.3:80
-A KUBE-SEP-C -p tcp -m tcp -j DNAT --to-destination 172.17.0.3:81
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0
-A KUBE-POSTROUTING -j MASQUERADE --random-fully
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER-USER - [0:0]
-A INPUT -p tcp -m tcp --dport 30080 -j DROP
-A FORWARD -j DOCKER-USER
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o docker0 -j ACCEPT
-A DOCKER-USER -p tcp -m conntrack --ctorigdstport 9090 -j DROP
-A DOCKER-USER -j RETURN
COMMIT
";

    #[test]
    fn netmap_maps_the_network_part_of_the_destination_or_the_source_by_hook() {
        const NETMAP: &str = "*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -d 198.18.0.0/16 -i eth0 -j NETMAP --to 172.17.0.0/16
-A POSTROUTING -s 172.17.0.0/16 -o eth0 -j NETMAP --to 198.18.0.0/16
COMMIT
";
        let r = rules(NETMAP);
        let inbound = Packet::first(
            tcp("198.51.100.20", 40000, "198.18.0.3", 7000),
            Some("eth0".into()),
            Some("docker0".into()),
        );
        let w = walk(&r, &inbound);
        let d = w.outcomes[0].dnat.as_ref().expect("mapped");
        assert_eq!(d.after, tcp("198.51.100.20", 40000, "172.17.0.3", 7000));
        assert_eq!(w.outcomes[0].fate, Fate::Forwarded);
        let outbound = Packet::first(
            tcp("172.17.5.9", 40000, "198.51.100.20", 80),
            Some("docker0".into()),
            Some("eth0".into()),
        );
        let w = walk(&r, &outbound);
        let n = w.outcomes[0].snat.as_ref().expect("mapped");
        assert_eq!(n.after, tcp("198.18.5.9", 40000, "198.51.100.20", 80));
        assert!(w.outcomes[0].dnat.is_none());
    }

    /// One `inet` table for both families: `meta nfproto` decides by the packet's
    /// family, and a NAT statement of the other family does nothing (the kernel skips
    /// it and the rule goes on), so the IPv6 packet reaches the `dnat ip6` rule after
    /// the `dnat ip` one its ports match too.
    #[test]
    fn an_inet_table_translates_each_family_by_its_own_statements() {
        const INET: &str = "table inet nat {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		meta nfproto ipv4 tcp dport 8080 dnat ip to 172.17.0.2:80
		meta nfproto ipv6 tcp dport 8080 dnat ip6 to [fd00::2]:80
		udp dport 8053 dnat ip to 172.17.0.2:53
		udp dport 8053 dnat ip6 to [fd00::2]:53
		meta protocol ip6 tcp dport 9000 dnat ip6 to [fd00::3]:90
	}
}
";
        let mut r = crate::rules::nft::text::parse_text("inet.nft", INET);
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        for a in ["203.0.113.1", "2001:db8::1"] {
            r.addrs.push(HostAddr {
                iface: "eth0".into(),
                prefix: host(a.parse().unwrap()),
            });
        }
        let dnat_of = |proto, src: &str, dst: &str, dport| {
            let p = Packet::first(
                Tuple::of(proto, src, 40000, dst, dport),
                Some("eth0".into()),
                None,
            );
            let w = walk(&r, &p);
            assert_eq!(w.outcomes.len(), 1, "{w:#?}");
            assert_eq!(w.outcomes[0].assumptions(), 0, "{w:#?}");
            w.outcomes[0].dnat.as_ref().map(|d| d.after.dst)
        };
        let ip = |a: &str| Some(a.parse::<IpAddr>().unwrap());
        for proto in [Proto::Tcp, Proto::Udp] {
            let port = if proto == Proto::Tcp { 8080 } else { 8053 };
            assert_eq!(
                dnat_of(proto, "198.51.100.20", "203.0.113.1", port),
                ip("172.17.0.2")
            );
            assert_eq!(
                dnat_of(proto, "2001:db8::20", "2001:db8::1", port),
                ip("fd00::2")
            );
        }
        assert_eq!(
            dnat_of(Proto::Tcp, "198.51.100.20", "203.0.113.1", 9000),
            None
        );
        assert_eq!(
            dnat_of(Proto::Tcp, "2001:db8::20", "2001:db8::1", 9000),
            ip("fd00::3")
        );
    }

    #[test]
    fn redirect_goes_to_the_in_interface_address_or_keeps_it_unknown() {
        const PROXY: &str = "*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -i docker0 -p tcp -m tcp --dport 7000 -j REDIRECT --to-ports 15001
-A OUTPUT -p tcp -m tcp --dport 7000 -j REDIRECT --to-ports 15001
COMMIT
";
        // A server outside: REDIRECT makes the packet the host's, whatever it was
        // addressed to.
        let from_container = Packet::first(
            tcp("172.17.0.2", 40000, "198.51.100.10", 7000),
            Some("docker0".into()),
            None,
        );
        let known = rules(PROXY);
        let mut unknown = known.clone();
        unknown.addrs.retain(|h| h.iface != "docker0");
        for (r, to, iface) in [
            (&known, "172.17.0.1", None),
            // No address of docker0 given: the destination address stays as it was,
            // and the outcome names the interface whose address it becomes.
            (&unknown, "198.51.100.10", Some("docker0")),
        ] {
            let w = walk(r, &from_container);
            assert_eq!(w.outcomes.len(), 1, "{w:#?}");
            let o = &w.outcomes[0];
            assert_eq!(o.fate, Fate::Delivered, "{o:#?}");
            let d = o.dnat.as_ref().expect("redirected");
            assert_eq!(d.after.dst, to.parse::<IpAddr>().unwrap());
            assert_eq!(d.after.dport, 15001);
            assert_eq!(d.to_iface.as_deref(), iface);
        }
        // The host's own packets go to the loopback address, which is always known.
        let own = Packet::first(tcp("203.0.113.1", 40000, "198.51.100.10", 7000), None, None);
        let w = walk(&unknown, &own);
        let d = w.outcomes[0].dnat.as_ref().expect("redirected");
        assert_eq!(d.after.dst, "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(d.to_iface, None);
    }

    #[test]
    fn statistic_branches_give_each_endpoint_its_share_and_skip_input() {
        let r = rules(KUBE);
        let w = walk(&r, &inbound(30080));
        assert!(!w.truncated);
        assert_eq!(w.outcomes.len(), 3, "{w:#?}");
        let mut got: Vec<(String, f64)> = w
            .outcomes
            .iter()
            .map(|o| {
                let d = o.dnat.as_ref().expect("every branch DNATs");
                assert_eq!(o.fate, Fate::Forwarded);
                assert_eq!(o.filter_hook, Some(Hook::Forward));
                // Marked for masquerade: KUBE-POSTROUTING masquerades to the address of
                // the interface towards the pod.
                let sn = o.snat.as_ref().expect("masqueraded");
                assert_eq!(sn.after.src, "172.17.0.1".parse::<IpAddr>().unwrap());
                assert!(sn.flags.random_fully);
                (format!("{}:{}", d.after.dst, d.after.dport), o.probability)
            })
            .collect();
        got.sort_by(|a, b| a.0.cmp(&b.0));
        for (ep, p) in &got {
            assert!((p - 1.0 / 3.0).abs() < 1e-6, "{ep}: {p}");
        }
        let total: f64 = got.iter().map(|g| g.1).sum();
        assert!((total - 1.0).abs() < 1e-9);
        // The jump-everything first rule returned: the DNAT still happened after it.
        assert!(w.outcomes[0]
            .events
            .iter()
            .any(|e| matches!(e, Event::Fell { chain, .. } if &**chain == "cali-PREROUTING")));
    }

    #[test]
    fn input_rules_see_only_what_is_delivered_locally() {
        let r = rules(KUBE);
        // A port with no service: no DNAT, so the packet is for the host: INPUT drops it.
        let w = walk(&r, &inbound(30081));
        assert_eq!(w.outcomes.len(), 1);
        let o = &w.outcomes[0];
        assert_eq!(o.filter_hook, Some(Hook::Input));
        assert_eq!(o.fate, Fate::Delivered);
        let w = walk(&r, &inbound(30080));
        assert!(w
            .outcomes
            .iter()
            .all(|o| o.filter_hook == Some(Hook::Forward)));
        // The INPUT DROP matches the packet as it arrived, and is the rule it never met.
        let p = inbound(30080);
        let input = &r.tables[1].chain("INPUT").unwrap().rules[0];
        assert!(matches_plainly(&r, input, &p));
    }

    #[test]
    fn connmark_save_and_restore_copy_through_the_masks() {
        let text = "*mangle\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n-A PREROUTING -j MARK --set-xmark 0x35/0xffffffff\n-A PREROUTING -j CONNMARK --save-mark --nfmask 0xf0 --ctmask 0xff\n-A PREROUTING -j MARK --set-xmark 0x0/0xffffffff\n-A PREROUTING -j CONNMARK --restore-mark --mask 0xff\nCOMMIT\n*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m mark --mark 0x30 -m connmark --mark 0x30 -j DROP\nCOMMIT\n";
        let r = rules(text);
        let w = walk(&r, &inbound(22));
        assert_eq!(w.outcomes.len(), 1);
        assert!(
            matches!(w.outcomes[0].fate, Fate::Dropped { .. }),
            "{:?}",
            w.outcomes[0].fate
        );
    }

    #[test]
    fn multiport_ports_holds_for_either_port() {
        let r = rules("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp -m multiport --ports 22,8000:8080 -j DROP\nCOMMIT\n");
        let fate = |sport, dport| {
            let p = Packet::first(
                tcp("198.51.100.20", sport, "203.0.113.1", dport),
                Some("eth0".into()),
                None,
            );
            let w = walk(&r, &p);
            assert_eq!(w.outcomes.len(), 1);
            matches!(w.outcomes[0].fate, Fate::Dropped { .. })
        };
        assert!(fate(40000, 22));
        assert!(fate(8080, 40000));
        assert!(fate(22, 8000));
        assert!(!fate(40000, 23));
    }

    /// A set member's ports are a range: `ipset add s 203.0.113.1,tcp:8000-8080`
    /// holds every port between, and no other.
    #[test]
    fn set_members_hold_their_port_range() {
        let mut r = rules("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m set --match-set svc dst,dst -j DROP\nCOMMIT\n");
        let sets = crate::rules::ipset::parse(
            "ipsets.txt",
            "create svc hash:ip,port family inet\nadd svc 203.0.113.1,tcp:8000-8080\n",
        );
        assert!(sets.warnings.is_empty(), "{:?}", sets.warnings);
        r.sets = sets.sets;
        let dropped = |dport| {
            let p = Packet::first(
                tcp("198.51.100.20", 40000, "203.0.113.1", dport),
                Some("eth0".into()),
                None,
            );
            matches!(walk(&r, &p).outcomes[0].fate, Fate::Dropped { .. })
        };
        assert!(dropped(8000) && dropped(8040) && dropped(8080));
        assert!(!dropped(7999) && !dropped(8081));
    }

    #[test]
    fn docker_user_drop_on_the_original_port_after_dnat() {
        let text = KUBE.replace(
            "-A KUBE-NODEPORTS -p tcp -m tcp --dport 30080 -j KUBE-SVC-WEB",
            "-A KUBE-NODEPORTS -p tcp -m tcp --dport 30080 -j KUBE-SVC-WEB\n-A KUBE-NODEPORTS -p tcp -m tcp --dport 9090 -j KUBE-SEP-A",
        );
        let r = rules(&text);
        let w = walk(&r, &inbound(9090));
        assert_eq!(w.outcomes.len(), 1);
        match &w.outcomes[0].fate {
            Fate::Dropped {
                rule: Some(rr),
                hook: Hook::Forward,
                ..
            } => {
                assert_eq!(&*rr.chain, "DOCKER-USER");
                let want = text
                    .lines()
                    .position(|l| l.contains("--ctorigdstport 9090"))
                    .unwrap() as u64
                    + 1;
                assert_eq!(line_of(&r, rr), want);
            }
            f => panic!("{f:?}"),
        }
    }

    #[test]
    fn nat_rules_apply_to_the_first_packet_only_and_policies_decide() {
        let r = rules(KUBE);
        let mut p = inbound(30080);
        p.ct = CtState::Established;
        let w = walk(&r, &p);
        assert_eq!(w.outcomes.len(), 1);
        let o = &w.outcomes[0];
        assert!(o.dnat.is_none() && o.snat.is_none());
        // Not DNATed, so for the host; established: INPUT's DROP still applies to it.
        assert!(matches!(o.fate, Fate::Dropped { .. }));
        // Forwarded traffic no FORWARD rule accepts falls to the DROP policy.
        let p = Packet::first(
            tcp("198.51.100.20", 40000, "172.17.0.9", 80),
            Some("eth0".into()),
            Some("eth1".into()),
        );
        let w = walk(&r, &p);
        assert!(matches!(
            &w.outcomes[0].fate,
            Fate::Dropped { rule: None, chain, .. } if &**chain == "FORWARD"
        ));
    }

    #[test]
    fn gotos_return_to_the_callers_caller_and_loops_stop() {
        let r = rules(
            "*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:A - [0:0]
:B - [0:0]
:LOOP - [0:0]
-A FORWARD -j A
-A FORWARD -p tcp --dport 99 -j LOOP
-A FORWARD -j DROP
-A A -g B
-A A -j ACCEPT
-A B -j RETURN
-A LOOP -j LOOP
COMMIT
",
        );
        let p = Packet::first(
            tcp("198.51.100.20", 1, "172.17.0.2", 80),
            Some("eth0".into()),
            Some("docker0".into()),
        );
        let w = walk(&r, &p);
        // B returned past A (goto): A's ACCEPT was never reached; FORWARD's DROP was.
        match &w.outcomes[0].fate {
            Fate::Dropped { rule: Some(rr), .. } => assert_eq!(&*rr.chain, "FORWARD"),
            f => panic!("{f:?}"),
        }
        let mut p = p;
        p.tuple.dport = 99;
        let w = walk(&r, &p);
        assert!(matches!(w.outcomes[0].fate, Fate::Stopped { .. }));
    }

    #[test]
    fn undecided_matches_are_followed_both_ways() {
        let r = rules(
            "*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m recent --rcheck --seconds 60 --name X -j DROP
COMMIT
",
        );
        let p = Packet::first(
            tcp("198.51.100.20", 1, "172.17.0.2", 80),
            Some("eth0".into()),
            None,
        );
        let w = walk(&r, &p);
        assert_eq!(w.outcomes.len(), 2);
        assert!(w.outcomes.iter().all(Outcome::assumed));
        let fates: Vec<bool> = w
            .outcomes
            .iter()
            .map(|o| matches!(o.fate, Fate::Dropped { .. }))
            .collect();
        assert!(fates.contains(&true) && fates.contains(&false));
    }

    /// kube-proxy's nftables mode: a service verdict map keyed by destination,
    /// protocol and port, then `numgen random mod 2` over the endpoints.
    #[test]
    fn verdict_maps_by_key_and_by_numgen() {
        use crate::rules::{Base, Branch, Chain, ChainType, Dialect, Family, NatTo, Table};
        let rule = |target: Target| Rule {
            line: 0,
            handle: Some(1),
            text: String::new(),
            matches: Vec::new(),
            target,
            counters: None,
            comment: None,
        };
        let chain = |name: &str, base: Option<Base>, rules: Vec<Rule>| Chain {
            name: name.into(),
            base,
            rules,
            line: 0,
        };
        let goto = |c: &str| Box::new(Target::Goto(c.into()));
        let dnat = |a: &str| Target::Dnat {
            to: NatTo {
                addrs: Some((a.parse().unwrap(), a.parse().unwrap())),
                ports: Some((8053, 8053)),
            },
            flags: NatFlags::default(),
        };
        let mut r = rules("");
        r.tables.push(Table {
            source: "nft.json".into(),
            name: "kube-proxy".into(),
            family: Family::Ip,
            dialect: Dialect::NftJson,
            chains: vec![
                chain(
                    "nat-prerouting",
                    Some(Base {
                        hook: Hook::Prerouting,
                        priority: -100,
                        kind: ChainType::Nat,
                        policy: Verdict::Accept,
                        counters: None,
                    }),
                    vec![rule(Target::Map {
                        by: "ip daddr . meta l4proto . th dport".into(),
                        branches: vec![
                            Branch {
                                share: None,
                                key: "10.96.0.10 . tcp . 53".into(),
                                target: goto("svc-dns"),
                            },
                            Branch {
                                share: None,
                                key: "10.96.0.11 . udp . 53".into(),
                                target: goto("svc-other"),
                            },
                        ],
                    })],
                ),
                chain(
                    "svc-dns",
                    None,
                    vec![rule(Target::Map {
                        by: "numgen random mod 2".into(),
                        branches: vec![
                            Branch {
                                share: Some(0.5),
                                key: "0".into(),
                                target: goto("ep-a"),
                            },
                            Branch {
                                share: Some(0.5),
                                key: "1".into(),
                                target: goto("ep-b"),
                            },
                        ],
                    })],
                ),
                chain("svc-other", None, vec![rule(dnat("10.244.9.9"))]),
                chain("ep-a", None, vec![rule(dnat("10.244.0.2"))]),
                chain("ep-b", None, vec![rule(dnat("10.244.1.2"))]),
            ],
        });
        let p = Packet::first(
            tcp("198.51.100.20", 40000, "10.96.0.10", 53),
            Some("eth0".into()),
            Some("eth1".into()),
        );
        let w = walk(&r, &p);
        let mut to: Vec<(String, f64)> = w
            .outcomes
            .iter()
            .map(|o| {
                assert!(!o.assumed());
                let d = o.dnat.as_ref().expect("DNAT");
                (d.after.dst.to_string(), o.probability)
            })
            .collect();
        to.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            to,
            [
                ("10.244.0.2".to_string(), 0.5),
                ("10.244.1.2".to_string(), 0.5)
            ]
        );
        // A packet no key holds is not translated.
        let mut q = p.clone();
        q.tuple.dport = 54;
        let w = walk(&r, &q);
        assert_eq!(w.outcomes.len(), 1);
        assert!(w.outcomes[0].dnat.is_none());
    }

    #[test]
    fn branching_is_bounded() {
        let mut text = String::from(
            "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n",
        );
        for i in 0..40 {
            text.push_str(&format!(
                "-A FORWARD -m statistic --mode random --probability 0.5 -j MARK --set-xmark {i}/0xffffffff\n"
            ));
        }
        text.push_str("COMMIT\n");
        let r = rules(&text);
        let p = Packet::first(
            tcp("198.51.100.20", 1, "172.17.0.2", 80),
            Some("eth0".into()),
            None,
        );
        let w = walk(&r, &p);
        assert!(w.truncated);
        assert!(w.outcomes.len() <= MAX_BRANCHES);
    }
}
