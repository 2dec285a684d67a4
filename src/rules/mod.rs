//! rules: the host's packet-filtering and NAT rule sets as a witness. Readers turn
//! `iptables-save` (`-c`, legacy and nft variants), `iptables -S`, `iptables -L -n [-v]`
//! listings, `nft list ruleset` (and nft command files), `nft -j list ruleset`, `ipset
//! save` and `ip -o addr` output into one model ([`RuleSet`]: tables of chains of
//! [`Rule`]s, each a list of [`Match`]es and a [`Target`]); `eval` walks one packet
//! through the hooks in kernel order and says which rules it met, which one decided,
//! and what NAT it got.
//!
//! Invariants:
//! * Every reader keeps going past what it does not know: an unknown match or target is
//!   a value ([`MatchKind::Unknown`], [`Target::Unknown`]) that the evaluator follows
//!   both ways, never a guess; a line it cannot read at all is a located warning.
//! * A rule remembers where it came from (file, line, nft handle) and its text as
//!   written, so reports quote the user's own rule.

pub mod addrs;
pub mod counters;
pub mod eval;
pub mod ipset;
pub mod iptables;
pub mod listing;
pub mod nft;

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::diag::Warning;
use crate::model::Proto;

/// Where the rules came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dialect {
    /// `iptables-save` / `ip6tables-save` (with or without `-c`).
    IptablesSave,
    /// `iptables -S` (no table headers: one table per input, named by the reader).
    IptablesS,
    /// `nft -j list ruleset`.
    NftJson,
    /// `nft list ruleset` (with or without `-a`), or a file of nft commands.
    NftText,
}

/// Address family of a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    Ip,
    Ip6,
    /// nft `inet`: both.
    Inet,
    Bridge,
    Arp,
    Netdev,
}

impl Family {
    /// The family as nft names it (`ip`, `ip6`, `inet`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Family::Ip => "ip",
            Family::Ip6 => "ip6",
            Family::Inet => "inet",
            Family::Bridge => "bridge",
            Family::Arp => "arp",
            Family::Netdev => "netdev",
        }
    }

    /// Whether the table sees packets of this address family.
    pub fn sees(self, addr: IpAddr) -> bool {
        match self {
            Family::Ip => addr.is_ipv4(),
            Family::Ip6 => addr.is_ipv6(),
            Family::Inet => true,
            Family::Bridge | Family::Arp | Family::Netdev => false,
        }
    }
}

/// The netfilter hooks of the IP stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Hook {
    Prerouting,
    Input,
    Forward,
    Output,
    Postrouting,
}

impl Hook {
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::Prerouting => "PREROUTING",
            Hook::Input => "INPUT",
            Hook::Forward => "FORWARD",
            Hook::Output => "OUTPUT",
            Hook::Postrouting => "POSTROUTING",
        }
    }
}

/// What a base chain is for (nft `type`; iptables tables map onto these).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChainType {
    Filter,
    /// Consulted for the first packet of a connection only.
    Nat,
    /// mangle OUTPUT: may re-route.
    Route,
}

/// A base chain's place: hook, priority (lower first), type and policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Base {
    pub hook: Hook,
    pub priority: i32,
    pub kind: ChainType,
    /// ACCEPT or DROP.
    pub policy: Verdict,
    /// `[packets:bytes]` of the policy, when dumped with counters.
    pub counters: Option<Counters>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Counters {
    pub packets: u64,
    pub bytes: u64,
}

/// Final verdicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    Accept,
    Drop,
}

/// A rule set read from one input.
#[derive(Clone, Debug, Default)]
pub struct RuleSet {
    /// The input as given on the command line.
    pub source: String,
    pub tables: Vec<Table>,
    /// Named ipsets and nft sets: name → members.
    pub sets: BTreeMap<String, Set>,
    /// Addresses of the host, by interface (from `ip -o addr` / `ip -j addr`).
    pub addrs: Vec<HostAddr>,
    /// True when no input gave `addrs` and they are the few the captures show (the
    /// addresses NAT gave packets or sent them to): an address missing from them may
    /// still be the host's.
    pub addrs_learned: bool,
    pub warnings: Vec<Warning>,
    /// An earlier dump's counters (`--rules-before`), for what grew in between.
    pub baseline: Option<counters::Baseline>,
}

/// One table: iptables `*nat`, or an nft `table ip nat`.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    /// The input it was read from.
    pub source: String,
    pub name: String,
    pub family: Family,
    pub dialect: Dialect,
    pub chains: Vec<Chain>,
}

impl Table {
    pub fn chain(&self, name: &str) -> Option<&Chain> {
        self.chains.iter().find(|c| c.name == name)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Chain {
    pub name: String,
    /// Where it hooks in; `None` for a user chain reached only by jumps.
    pub base: Option<Base>,
    pub rules: Vec<Rule>,
    /// 1-based line of the chain's declaration (0 when not from a line).
    pub line: u64,
}

/// One rule: all matches must hold, then the target applies.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    /// Where it was read: 1-based line (iptables) and nft handle.
    pub line: u64,
    pub handle: Option<u64>,
    /// The rule as written (`-A KUBE-SEP-X -p tcp ... -j DNAT --to-destination ...`).
    pub text: String,
    pub matches: Vec<Match>,
    pub target: Target,
    pub counters: Option<Counters>,
    /// `-m comment --comment` / nft `comment`.
    pub comment: Option<String>,
}

/// A match, possibly negated (`!`).
#[derive(Clone, Debug, PartialEq)]
pub struct Match {
    pub negated: bool,
    pub kind: MatchKind,
}

/// An address prefix (`10.0.0.0/8`, a host address as /32 or /128).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Prefix {
    pub addr: IpAddr,
    pub len: u8,
}

impl Prefix {
    pub fn contains(&self, a: IpAddr) -> bool {
        match (self.addr, a) {
            (IpAddr::V4(p), IpAddr::V4(a)) => {
                let len = u32::from(self.len.min(32));
                let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                u32::from(p) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(p), IpAddr::V6(a)) => {
                let len = u32::from(self.len.min(128));
                let mask = if len == 0 {
                    0
                } else {
                    u128::MAX << (128 - len)
                };
                u128::from(p) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }

    /// `a` with its first `len` bits replaced by the prefix's (NETMAP's 1:1 mapping of
    /// one network onto another); `a` itself when the families differ.
    pub fn map(&self, a: IpAddr) -> IpAddr {
        match (self.addr, a) {
            (IpAddr::V4(p), IpAddr::V4(a)) => {
                let len = u32::from(self.len.min(32));
                let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                IpAddr::V4(((u32::from(p) & mask) | (u32::from(a) & !mask)).into())
            }
            (IpAddr::V6(p), IpAddr::V6(a)) => {
                let len = u32::from(self.len.min(128));
                let mask = if len == 0 {
                    0
                } else {
                    u128::MAX << (128 - len)
                };
                IpAddr::V6(((u128::from(p) & mask) | (u128::from(a) & !mask)).into())
            }
            _ => a,
        }
    }
}

/// Inclusive port ranges (`80`, `8000:8080`, a multiport list).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ports(pub Vec<(u16, u16)>);

impl Ports {
    pub fn contains(&self, p: u16) -> bool {
        self.0.iter().any(|&(lo, hi)| lo <= p && p <= hi)
    }
}

/// An interface name pattern: exact, or a prefix when written with a trailing `+`
/// (iptables) or `*` (nft).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Iface {
    pub name: String,
    pub prefix: bool,
}

impl Iface {
    pub fn matches(&self, name: &str) -> bool {
        if self.prefix {
            name.starts_with(&self.name)
        } else {
            name == self.name
        }
    }
}

/// conntrack states (`--ctstate`, nft `ct state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CtState {
    New,
    Established,
    Related,
    Invalid,
    Untracked,
    Snat,
    Dnat,
}

/// Route types for `-m addrtype` / nft `fib daddr type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AddrType {
    Local,
    Unicast,
    Broadcast,
    Multicast,
    Other,
}

/// One dimension of a `-m set` lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SetDim {
    Src,
    Dst,
}

#[derive(Clone, Debug, PartialEq)]
pub enum MatchKind {
    Src(Prefix),
    Dst(Prefix),
    InIface(Iface),
    OutIface(Iface),
    /// `-p`: the protocol (`Proto::Other(n)` for numbers natcheck has no name for).
    Proto(Proto),
    Sport(Ports),
    Dport(Ports),
    /// nft `meta l4proto { tcp, udp }`: one of these protocols.
    AnyProto(Vec<Proto>),
    /// `-m multiport --ports`: the source or the destination port is listed.
    EitherPort(Ports),
    /// `-m addrtype`: the source's and the destination's route type is one of those
    /// listed (an empty list: any); `--limit-iface-in/out`.
    AddrType {
        src: Vec<AddrType>,
        dst: Vec<AddrType>,
        limit_in: bool,
        limit_out: bool,
    },
    /// `-m set --match-set NAME src,dst`.
    Set {
        name: String,
        dims: Vec<SetDim>,
    },
    /// `-m mark --mark V/M`: `(mark & M) == V`.
    Mark {
        value: u32,
        mask: u32,
    },
    /// `-m connmark --mark V/M`.
    ConnMark {
        value: u32,
        mask: u32,
    },
    /// `-m conntrack --ctstate` / `-m state --state`.
    CtState(Vec<CtState>),
    /// `-m conntrack --ctorigdst` / `--ctorigsrc`: the ORIGINAL tuple, before NAT.
    CtOrigDst(Prefix),
    CtOrigSrc(Prefix),
    CtOrigDstPort(Ports),
    /// `-m conntrack --ctdir ORIGINAL|REPLY`: true for REPLY.
    CtDirReply,
    /// `-m statistic --mode random --probability P`.
    Random {
        probability: f64,
    },
    /// `-m statistic --mode nth --every N --packet K`.
    Nth {
        every: u32,
        packet: u32,
    },
    /// `-m tcp --tcp-flags MASK COMP` (`--syn` is `SYN,RST,ACK,FIN SYN`).
    TcpFlags {
        mask: u8,
        comp: u8,
    },
    /// `-m icmp --icmp-type T[/C]`.
    IcmpType {
        icmp_type: u8,
        code: Option<u8>,
    },
    /// nft `meta nfproto ipv4`, `meta protocol ip6`: the packet is of an address
    /// family the given one sees ([`Family::sees`]: `Inet` for a set of both, a
    /// non-IP family for none).
    Family(Family),
    /// `-m comment`: always true; the text is kept on the rule.
    Comment,
    /// A match the evaluator cannot decide from one packet (`recent`, `socket`,
    /// `physdev`, `limit`, an nft `xt` expression with no arguments, ...): followed
    /// both ways.
    Unknown {
        name: String,
        text: String,
    },
}

/// Where NAT maps to: an address range and an optional port range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NatTo {
    pub addrs: Option<(IpAddr, IpAddr)>,
    pub ports: Option<(u16, u16)>,
}

impl NatTo {
    /// Whether these addresses are of the other family than a packet from `src`: a NAT
    /// statement in an `inet` chain (`dnat ip to`, met by an IPv6 packet) that the
    /// kernel skips, the rule going on.
    pub fn other_family(&self, src: IpAddr) -> bool {
        self.addrs
            .is_some_and(|(a, _)| a.is_ipv4() != src.is_ipv4())
    }
}

/// NAT flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatFlags {
    pub random: bool,
    pub random_fully: bool,
    pub persistent: bool,
}

/// How a MARK/CONNMARK target changes the mark: `mark = (mark & !clear) ^ xor`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MarkOp {
    pub clear: u32,
    pub xor: u32,
}

impl MarkOp {
    pub fn apply(self, mark: u32) -> u32 {
        (mark & !self.clear) ^ self.xor
    }
}

/// One branch of an nft verdict map or `numgen` lookup.
#[derive(Clone, Debug, PartialEq)]
pub struct Branch {
    /// Probability the branch is taken (`numgen random mod N`), or `None` when it is
    /// chosen by the key (`vmap` on a packet field).
    pub share: Option<f64>,
    /// The key values it is chosen for, as nft prints them (`tcp . 30080`).
    pub key: String,
    pub target: Box<Target>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// No target: the rule only counts.
    None,
    Accept,
    Drop,
    /// `REJECT --reject-with ...`.
    Reject {
        with: Option<String>,
    },
    Return,
    Jump(String),
    Goto(String),
    Dnat {
        to: NatTo,
        flags: NatFlags,
    },
    Snat {
        to: NatTo,
        flags: NatFlags,
    },
    Masquerade {
        ports: Option<(u16, u16)>,
        flags: NatFlags,
    },
    Redirect {
        ports: Option<(u16, u16)>,
        flags: NatFlags,
    },
    /// `NETMAP --to PREFIX`: the network part of the destination (in PREROUTING and
    /// OUTPUT) or of the source (in POSTROUTING and INPUT) becomes the prefix's, the
    /// host part stays.
    Netmap {
        to: Prefix,
    },
    Mark(MarkOp),
    ConnMark(MarkOp),
    /// LOG, NFLOG, TRACE: non-terminating.
    Log,
    /// NOTRACK / `CT --notrack`: the packet is untracked (no NAT).
    Notrack,
    /// `CONNMARK --restore-mark` (`restore`: the connection's mark into the packet's)
    /// or `--save-mark` (the packet's into the connection's), through the masks.
    CopyMark {
        restore: bool,
        nfmask: u32,
        ctmask: u32,
    },
    /// Other non-terminating targets natcheck knows are harmless to the path (`CT
    /// --zone`, `TCPMSS`, `CHECKSUM`, ...).
    Continue {
        name: String,
    },
    /// `CT --helper NAME` (iptables), `ct helper set "NAME"` (nft): the connection gets
    /// a NAT helper (an ALG), which may rewrite its payload and expect connections
    /// related to it. Non-terminating.
    Helper {
        name: String,
    },
    /// nft `vmap`/`numgen ... vmap`: one of several targets, by key or by chance.
    Map {
        /// What selects the branch (`numgen random mod 3`, `ip daddr . tcp dport`).
        by: String,
        branches: Vec<Branch>,
    },
    /// A target natcheck cannot follow: the evaluator stops this branch there and
    /// says so.
    Unknown {
        name: String,
        text: String,
    },
}

impl Target {
    /// Whether it is a NAT target (only the nat table has them).
    pub fn is_nat(&self) -> bool {
        matches!(
            self,
            Target::Dnat { .. }
                | Target::Snat { .. }
                | Target::Masquerade { .. }
                | Target::Redirect { .. }
                | Target::Netmap { .. }
        )
    }
}

/// An address of the host on one interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostAddr {
    pub iface: String,
    pub prefix: Prefix,
}

/// A named set: members as prefixes (hash:ip, hash:net), address-port pairs
/// (hash:ip,port) or ports (bitmap:port); a member is `(prefix, proto and ports)`,
/// a range of ports as written (`10.0.0.1,tcp:80-90` is one member, not eleven).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Set {
    pub kind: String,
    pub members: Vec<SetMember>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum SetMember {
    Addr(Prefix),
    /// A prefix, a protocol (any when `None`) and an inclusive port range.
    AddrPort(Prefix, Option<Proto>, (u16, u16)),
    Port(Option<Proto>, (u16, u16)),
}

/// What kind of rules input a text is, by its content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputKind {
    /// `iptables-save`, `ip6tables-save` or `iptables -S`.
    Iptables,
    /// `nft -j list ruleset`.
    NftJson,
    /// `nft list ruleset` / `nft -a list ruleset`, or a file of nft commands.
    NftText,
    /// `ipset save` / `ipset list`.
    Ipset,
    /// `ip -o addr`, `ip addr` or `ip -j addr`.
    Addrs,
    /// `iptables -L -n [-v] [--line-numbers]`.
    IptablesList,
}

impl InputKind {
    /// Recognises an input by its first meaningful line (comments and blank lines
    /// skipped): JSON with `nftables` → nft; other JSON (an array) → `ip -j addr`;
    /// `*table`, `:CHAIN`, `-A`/`-P`/`-N` → iptables; `table FAMILY NAME {`, `flush
    /// ruleset`, `define`, `include`, or an nft command (`add table ip NAME`, `add
    /// rule inet ...`) → nft text; other `create`/`add` → ipset;
    /// `N: IFACE` or `inet`/`inet6` lines → addresses; `Chain NAME (...)`, after a
    /// pasted command line or not → an `iptables -L` listing.
    pub fn detect(text: &str) -> Option<InputKind> {
        let t = text.trim_start();
        if t.starts_with('{') && t.contains("\"nftables\"") {
            return Some(InputKind::NftJson);
        }
        if t.starts_with('[') {
            return Some(InputKind::Addrs);
        }
        let listing = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !listing::is_command_line(l));
        if listing.is_some_and(|l| l.starts_with("Chain ")) {
            return Some(InputKind::IptablesList);
        }
        let first = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#') && !nft::text::is_command_line(l))?;
        let word = first.split_whitespace().next().unwrap_or("");
        if nft::text::is_nft_text(first) {
            Some(InputKind::NftText)
        } else if first.starts_with('*')
            || first.starts_with(':')
            || ["-A", "-P", "-N", "-I"].contains(&word)
        {
            Some(InputKind::Iptables)
        } else if ["create", "add", "Name:"].contains(&word) {
            Some(InputKind::Ipset)
        } else if word.ends_with(':') && word.trim_end_matches(':').parse::<u32>().is_ok() {
            Some(InputKind::Addrs)
        } else {
            None
        }
    }
}

/// Reads every rules input as one rule set, and the earlier dumps `before` (if any)
/// as its baseline for counter deltas.
pub fn read_all(paths: &[String], before: &[String]) -> anyhow::Result<RuleSet> {
    Ok(read_texts(paths, before)?.parse())
}

/// Rules inputs read but not parsed yet (see [`read_texts`]).
#[derive(Clone, Debug, Default)]
pub struct Texts {
    /// (input as given, its text), for the rules and for the earlier dumps.
    rules: Vec<(String, String)>,
    before: Vec<(String, String)>,
}

/// Reads every rules input and earlier dump as text: an input that cannot be read fails
/// here, and [`Texts::parse`] makes the rule set when it is needed.
pub fn read_texts(paths: &[String], before: &[String]) -> anyhow::Result<Texts> {
    let read = |paths: &[String]| {
        paths
            .iter()
            .map(|p| Ok((p.clone(), crate::input::read_text(p)?)))
            .collect::<anyhow::Result<Vec<_>>>()
    };
    Ok(Texts {
        rules: read(paths)?,
        before: read(before)?,
    })
}

impl Texts {
    /// The inputs as one rule set, and the earlier dumps (if any) as its baseline for
    /// counter deltas.
    pub fn parse(&self) -> RuleSet {
        let merged = |inputs: &[(String, String)]| {
            let mut rules = RuleSet::default();
            for (path, text) in inputs {
                rules.merge(parse(path, text));
            }
            rules
        };
        let mut rules = merged(&self.rules);
        if !self.before.is_empty() {
            rules.compare_with(merged(&self.before));
        }
        rules
    }
}

/// Parses a rules input of any recognised kind; an unrecognised one is a warning.
pub fn parse(source: &str, text: &str) -> RuleSet {
    match InputKind::detect(text) {
        Some(InputKind::Iptables) => iptables::parse(source, text),
        Some(InputKind::NftJson) => nft::parse_json(source, text),
        Some(InputKind::NftText) => nft::parse_text(source, text),
        Some(InputKind::Ipset) => ipset::parse(source, text),
        Some(InputKind::Addrs) => addrs::parse(source, text),
        Some(InputKind::IptablesList) => listing::parse(source, text),
        None => RuleSet {
            source: source.to_string(),
            warnings: vec![Warning {
                source: source.to_string(),
                location: crate::diag::Location::File,
                message: "not a rule set: expected iptables-save, iptables -S, iptables -L, nft list ruleset, nft -j list ruleset, ipset save or ip addr output".into(),
            }],
            ..RuleSet::default()
        },
    }
}

impl RuleSet {
    /// Merges another input's tables, sets and addresses into this one (a host's
    /// `iptables-save`, `ip6tables-save`, `nft -j`, `ipset save` and `ip addr` read
    /// together).
    pub fn merge(&mut self, other: RuleSet) {
        if self.source.is_empty() {
            self.source = other.source;
        } else if !other.source.is_empty() {
            self.source = format!("{}, {}", self.source, other.source);
        }
        self.tables.extend(other.tables);
        self.drop_iptables_nft_twins();
        self.sets.extend(other.sets);
        self.addrs.extend(other.addrs);
        self.warnings.extend(other.warnings);
        self.drop_moot_xt_warnings();
    }

    /// The warning that an nft listing holds iptables-nft's `xt` expressions is about
    /// the tables iptables-save also gave: once those twins are left out, it stays
    /// only for an input of which a table still read holds one.
    fn drop_moot_xt_warnings(&mut self) {
        let tables = &self.tables;
        self.warnings.retain(|w| {
            !nft::is_xt_warning(w)
                || tables
                    .iter()
                    .any(|t| t.source == w.source && nft::holds_xt(t))
        });
    }

    /// iptables-nft keeps its tables in nf_tables, so `nft -j list ruleset` of such a
    /// host shows them again (their matches as bare `xt` expressions, without
    /// arguments). Given both, the iptables-save table is the complete one: its nft twin
    /// (same family and name, base chains with iptables' upper-case names) is left out,
    /// so that no rule is walked twice.
    fn drop_iptables_nft_twins(&mut self) {
        let saved: Vec<(Family, String)> = self
            .tables
            .iter()
            .filter(|t| t.dialect != Dialect::NftJson)
            .map(|t| (t.family, t.name.clone()))
            .collect();
        self.tables.retain(|t| {
            let twin = t.dialect == Dialect::NftJson
                && saved.contains(&(t.family, t.name.clone()))
                && t.chains
                    .iter()
                    .any(|c| c.base.is_some() && iptables::builtin(&t.name, &c.name).is_some());
            !twin
        });
    }

    /// Takes `before`, an earlier dump of the same rules, as the baseline for counter
    /// deltas; its reading warnings and what cannot be compared become warnings here.
    pub fn compare_with(&mut self, before: RuleSet) {
        let (baseline, warnings) = counters::Baseline::between(&before, self);
        self.warnings.extend(before.warnings);
        self.warnings.extend(warnings);
        self.baseline = Some(baseline);
    }

    /// Whether `a` is an address of the host (addrtype LOCAL: any address on any
    /// interface, and 127.0.0.0/8).
    pub fn is_local(&self, a: IpAddr) -> bool {
        a.is_loopback() || self.addrs.iter().any(|h| h.prefix.addr == a)
    }
}
