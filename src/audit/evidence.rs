//! The facts behind a finding, one per item, as data. `report::explain` writes each
//! as one line of evidence; the same fact reads the same in every finding and format.

use std::net::IpAddr;

use super::{Direction, PathReason, RaceKind, RangeFrom};
use crate::flows::TcpState;
use crate::model::{Proto, Tuple};

/// An endpoint of a tuple: protocol, address, port (ICMP: echo id).
pub type Endpoint = (Proto, IpAddr, u16);

/// A connection's flow at one point: its tuple, packets each way, the time it was
/// seen and, for TCP, how far it got.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HopFacts {
    pub point: String,
    pub tuple: Tuple,
    pub packets: [u64; 2],
    pub first_ns: i64,
    pub last_ns: i64,
    pub tcp_state: Option<TcpState>,
    /// An ICMP error flow's type and code.
    pub icmp_error: Option<(u8, u8)>,
}

/// Packets of one side of a link that the other side did not carry.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct GapFacts {
    pub packets: u64,
    pub first_ns: Option<i64>,
    pub last_ns: Option<i64>,
    pub first_tcp_flags: Option<u8>,
}

/// A conntrack entry as `conntrack -L` shows it, with where it was read.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct EntryFacts {
    pub source: String,
    pub line: u64,
    pub orig: Tuple,
    pub reply: Tuple,
    pub state: Option<String>,
    pub unreplied: bool,
    pub assured: bool,
}

/// A rule of the host's rule set, where it was read and as written.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RuleFacts {
    pub source: String,
    pub table: String,
    pub chain: String,
    /// 1-based line in `source` (0 for rules without lines, such as nft JSON).
    pub line: u64,
    pub handle: Option<u64>,
    pub text: String,
    /// Its counters, when dumped with them, and with `--rules-before` how they changed
    /// since the earlier dump (`baseline`).
    pub counters: Option<crate::rules::Counters>,
    pub change: Option<crate::rules::counters::Change>,
    pub baseline: String,
}

/// What a rule did to the connection's first packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RuleRole {
    /// It dropped it.
    Dropped,
    /// It rejected it (an ICMP error or RST went back).
    Rejected,
    /// Its chain's policy dropped it (the rule is the chain's last).
    Policy,
    /// It made the translation the wire shows.
    Translated,
    /// The rules translate it differently from the wire.
    Disagrees,
    /// A DROP/REJECT in filter INPUT that never saw the packet: DNAT made it forwarded.
    NeverSaw,
    /// It marked the packet for a later masquerade (kube-proxy's KUBE-MARK-MASQ).
    Marked,
    /// Its source NAT gives this traffic its address and port.
    Allocates,
    /// Some way through the rules drops the packet here (a `statistic` branch, a match
    /// that could not be decided).
    MayDrop,
    /// It assigned the connection a NAT helper (`CT --helper`, `ct helper set`).
    AssignsHelper,
    /// It drops packets that fail a reverse-path check (`-m rpfilter --invert`, nft
    /// `fib saddr . iif oif missing`).
    ReversePath,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Evidence {
    /// A rule and what it did.
    Rule { role: RuleRole, rule: RuleFacts },
    /// A connection's flow at one point.
    Hop(HopFacts),
    /// Connection `conn` was translated from `from` at its first point to `to` here.
    Translated {
        conn: String,
        from_point: String,
        from: Tuple,
        to_point: String,
        to: Tuple,
    },
    /// [`Evidence::Translated`] (or only the connection's id when it was not
    /// translated into `point`), with its packets at `point`.
    TranslationAt {
        translated: Option<Box<Evidence>>,
        conn: String,
        packets: [u64; 2],
        point: String,
    },
    /// A tuple at one point became another at the next.
    Moved {
        from_point: String,
        from: Tuple,
        to_point: String,
        to: Tuple,
    },
    /// `packets` of `conn` at `point` are the very packets of this finding.
    SamePackets {
        packets: u64,
        conn: String,
        point: String,
    },
    /// Segments from `peer` to the NAT endpoint that reached the outside point and
    /// never the inside one.
    Untranslated {
        gap: GapFacts,
        peer: Endpoint,
        nat: Endpoint,
        outside: String,
        inside: String,
    },
    /// RSTs from the NAT endpoint that left the outside point, `delay_ns` after the
    /// first untranslated segment, seen nowhere inside.
    HostRst {
        gap: GapFacts,
        nat: Endpoint,
        peer: Endpoint,
        outside: String,
        delay_ns: i64,
    },
    /// Packets of `direction` seen at `from` that never reached `to`.
    NeverReached {
        gap: GapFacts,
        direction: Direction,
        from: String,
        to: String,
    },
    /// Of those, `packets` left `point` as another connection.
    LeftAsAnother { packets: u64, point: String },
    /// `packets` other packets of `direction` crossed.
    OthersCrossed { packets: u64, direction: Direction },
    /// Of those, `sent` segments seen at `from` (`bytes` payload bytes) reached `to`
    /// as `received` segments cut differently (segmentation offloads).
    Resegmented {
        direction: Direction,
        sent: u64,
        received: u64,
        bytes: u64,
        from: String,
        to: String,
    },
    /// `point` was capturing over the span and saw none of the packets; `whole`:
    /// it captured past the last of them.
    NoneSeen {
        point: String,
        from_ns: i64,
        to_ns: i64,
        whole: bool,
    },
    /// Other connections of the same kind went `from` > `to`: the first of them, and
    /// how many.
    OthersWent {
        conns: Vec<String>,
        total: usize,
        reason: PathReason,
        from: String,
        to: String,
    },
    /// An ICMP error (`conn`) at `point` answered the packets: rejected, not dropped.
    Rejected {
        point: String,
        proto: Proto,
        icmp_type: u8,
        code: u8,
        conn: String,
    },
    /// `packets` from `peer` to the NAT endpoint arrived at `point`, none forwarded.
    Arrived {
        point: String,
        packets: u64,
        peer: Endpoint,
        nat: Endpoint,
        first_ns: i64,
        last_ns: i64,
    },
    /// The host answered with an ICMP error (`conn`, `packets` packets).
    HostIcmp {
        proto: Proto,
        icmp_type: u8,
        code: u8,
        packets: u64,
        conn: String,
    },
    /// A fact about packets too large for the path (`pmtu-black-hole`).
    Size(SizeFact),
    /// A fact about packets lost in a tunnel (`underlay-drop`).
    Underlay(UnderlayFact),
    /// A fact about two connections a proxy spliced (`userland-proxy`).
    Splice(SpliceFact),
    /// A fact about replies that came back another way (`asymmetric-route`).
    Route(RouteFact),
    /// Every source translation to `nat` at `point`: how many kept the port, moved
    /// because of a holder, moved with none; the span of new ports when several.
    Census {
        translations: u64,
        nat: IpAddr,
        point: String,
        kept: usize,
        collided: usize,
        free: usize,
        icmp: bool,
        span: Option<(u16, u16)>,
    },
    /// A conntrack entry.
    Entry(EntryFacts),
    /// An event log's `[DESTROY]` of the connection's entry, `before_ns` before the
    /// finding's first packet; `by` names the program that removed it.
    Destroyed {
        source: String,
        line: u64,
        time_ns: i64,
        before_ns: i64,
        by: Option<String>,
    },
    /// `conntrack -S` counters given with the inputs (`insert_failed`, `drop`,
    /// `early_drop`, `invalid`), to rule causes in or out: totals, or how much they
    /// grew `since` an earlier reading.
    Stats {
        counters: Vec<(String, u64)>,
        since: Option<String>,
    },
    /// The lines of the entries concerned.
    Lines(Vec<String>),
    /// The wire's translation between two points (a conntrack entry disagrees).
    WireChange {
        from_point: String,
        from: Tuple,
        to_point: String,
        to: Tuple,
    },
    /// The snapshot's time, recorded when it was taken or estimated.
    SnapshotTime {
        ns: i64,
        source: String,
        recorded: bool,
    },
    /// The snapshot's time against the captures' span.
    SnapshotVsCaptures {
        source: String,
        ns: i64,
        slack_ns: i64,
        from_ns: i64,
        to_ns: i64,
    },
    /// The source tuples NAT can give traffic to `destination`: its addresses and port
    /// range, and where the range came from.
    PortRange {
        destination: Endpoint,
        nat: Vec<IpAddr>,
        lo: u16,
        hi: u16,
        from: RangeFrom,
    },
    /// From `from_ns` to `to_ns`, `held` of the `usable` tuples were held by live
    /// connections: (connection id or conntrack entry, NAT address, NAT port).
    PortsHeld {
        from_ns: i64,
        to_ns: i64,
        held: u64,
        usable: u64,
        by: Vec<(String, IpAddr, u16)>,
    },
    /// `packets` initiator packets seen at `from` never reached `to`, the first at
    /// `first_lost_ns`; a copy sent again reached it, sent at `crossed_ns`.
    Recovered {
        kind: RaceKind,
        packets: u64,
        first_lost_ns: i64,
        crossed_ns: i64,
        tcp_flags: Option<u8>,
        from: String,
        to: String,
    },
    /// Two datagrams of one socket `gap_ns` apart at `point`, the first at `first_ns`;
    /// the second one (else the first) is the one lost.
    Pair {
        point: String,
        first_ns: i64,
        gap_ns: i64,
        lost_second: bool,
    },
    /// A fact about a full conntrack table (`conntrack-table-full`).
    Table(TableFact),
    /// The snapshot's time against a connection's packets.
    SnapshotVsConnection {
        ns: i64,
        slack_ns: i64,
        conn: String,
        from_ns: i64,
        to_ns: i64,
    },
    /// A snapshot taken `after_ns` after a connection's last packet, at `ns`, that
    /// holds no entry for it.
    NoEntry {
        snapshot: String,
        ns: i64,
        after_ns: i64,
    },
}

/// Facts of `conntrack-table-full`: what was lost, what kept crossing, the table's size.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TableFact {
    /// `conns` new connections (`packets` initiator packets) to `destinations` lost at
    /// the host from `from_ns` to `to_ns`.
    NewLost {
        conns: usize,
        packets: u64,
        destinations: Vec<Endpoint>,
        from_ns: i64,
        to_ns: i64,
    },
    /// Meanwhile, connections opened before crossed the host (`existing`), and new
    /// connections did (`new`).
    KeptCrossing {
        existing: Vec<String>,
        new: Vec<String>,
    },
    /// The host's rules were walked for `walked` of the `lost` connections, and no
    /// way through them drops one.
    RulesForward { walked: usize, lost: usize },
    /// The table's size as the inputs give it: the largest entry count, the limit
    /// (`nf_conntrack_max`) and the hash buckets, each with where it was read.
    Size {
        entries: Option<(u64, String)>,
        max: Option<(u64, String)>,
        buckets: Option<(u64, String)>,
    },
}

/// Facts of `pmtu-black-hole`: packet sizes, announced MSS, ICMP errors.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SizeFact {
    /// `packets` data segments of `direction` (`df` of them not to be fragmented) of
    /// `min_len` to `max_len` bytes reached `from` and never `to`.
    TooBig {
        direction: Direction,
        packets: u64,
        df: u64,
        v6: bool,
        min_len: u32,
        max_len: u32,
        first_ns: i64,
        last_ns: i64,
        from: String,
        to: String,
    },
    /// `copies` of them carried bytes sent before, whole again, and none of those
    /// bytes reached `to` in a smaller segment.
    SentAgain { copies: u64, to: String },
    /// `packets` packets of `direction` of up to `max_len` bytes crossed.
    SmallerCrossed {
        direction: Direction,
        packets: u64,
        max_len: u32,
    },
    /// The MSS the initiator and the responder announced in their SYNs, seen at
    /// `point`; `v6` for the header size.
    Mss {
        point: String,
        mss: [Option<u16>; 2],
        v6: bool,
    },
    /// No ICMP error that a packet was too big, about this connection, in any capture.
    NoIcmp { points: Vec<String>, v6: bool },
    /// `packets` ICMP errors "fragmentation needed" / "packet too big" (`conn`) from
    /// `sender` about this connection at `point`, announcing `mtu`; `later`: the
    /// too-large segments went on after the first of them.
    Icmp {
        point: String,
        conn: String,
        sender: IpAddr,
        packets: u64,
        mtu: Option<u32>,
        v6: bool,
        first_ns: i64,
        later: bool,
    },
}

/// Facts of `asymmetric-route`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RouteFact {
    /// The packets at `replies` answer the requests that went by `requests`, as
    /// `joined` says.
    Answer {
        joined: crate::correlate::Joined,
        requests: String,
        replies: String,
    },
    /// The connection's conntrack entry, in a snapshot taken after the first reply,
    /// was (`unreplied`) or was not `[UNREPLIED]`.
    Conntrack { unreplied: bool },
    /// No rule of the rule set given drops on a reverse-path check (`v6`: for IPv6).
    NoRule { v6: bool },
    /// IPv4 reverse-path filtering where the replies arrived, from the settings given:
    /// `net.ipv4.conf.IFACE.rp_filter` and, when given, `net.ipv4.conf.all.rp_filter`
    /// (the higher applies: 0 off, 1 strict, 2 loose).
    RpFilter {
        iface: String,
        at_iface: crate::audit::ct::Setting,
        all: Option<crate::audit::ct::Setting>,
    },
}

/// Facts of `userland-proxy`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SpliceFact {
    /// Connection `conn` ended at `point`: `answered_by` answered its handshake there,
    /// and no other point carries its packets.
    Ended {
        conn: String,
        point: String,
        answered_by: Endpoint,
    },
    /// Connection `inner` opened at `point` (its SYN) `after_ns` after `outer`'s
    /// handshake was answered, with sequence numbers of its own.
    Opened {
        inner: String,
        outer: String,
        point: String,
        after_ns: i64,
    },
    /// The `bytes` that `from` carried one way (`to_backend`: from the client; else
    /// from the backend) went on over `to` in the same order: `compared` segments at
    /// matching offsets agree in their first bytes, the first `lag_ns` later; `to`
    /// carried `carried` bytes.
    SameBytes {
        to_backend: bool,
        from: String,
        to: String,
        bytes: u64,
        carried: u64,
        compared: usize,
        lag_ns: i64,
    },
}

/// A fact about packets lost in a tunnel between two points (`underlay-drop`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum UnderlayFact {
    /// `packets` of connection `conn` going `direction` were lost, their IP lengths
    /// inside the tunnel and their times.
    Lost {
        conn: String,
        direction: Direction,
        packets: u64,
        min_len: u32,
        max_len: u32,
        first_ns: i64,
        last_ns: i64,
    },
    /// Packets of the tunnel that crossed that way: how many, the largest, the last
    /// before the first lost one, and whether none crossed amid the lost ones (then
    /// the first after them).
    Crossed {
        packets: u64,
        max_len: u32,
        before: Option<i64>,
        window: Option<Option<i64>>,
    },
}
