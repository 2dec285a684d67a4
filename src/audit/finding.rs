//! What a finding is, as data: its [`Code`] and [`Severity`], the connections, points
//! and tuples it is about, the time range and packet count behind it, code-specific
//! facts ([`Detail`], also the JSON report's `detail`) and the evidence, one
//! [`Evidence`] fact per item. No sentence is written here: `report` turns findings
//! into words, the same words in every format.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Serialize, Serializer};

use super::Evidence;
use crate::correlate::Joined;
use crate::model::{Proto, Tuple};

/// Declares a string-named enum once: variants, their stable names, `ALL`, `as_str`,
/// `Display`, `FromStr` and serialization as the name.
macro_rules! named_enum {
    ($(#[$m:meta])* pub enum $name:ident { $($(#[$vm:meta])* $v:ident = $s:literal,)+ }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name { $($(#[$vm])* $v,)+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$v,)+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$v => $s,)+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<$name, String> {
                $name::ALL
                    .iter()
                    .copied()
                    .find(|c| c.as_str() == s)
                    .ok_or_else(|| format!("unknown {} `{s}`", stringify!($name).to_lowercase()))
            }
        }
    };
}

named_enum! {
    /// How bad a finding is. Ordered: `Info < Warning < Error`.
    pub enum Severity {
        /// A fact worth knowing (a port NAT moved), not a fault.
        Info = "info",
        /// Something that may break some traffic, or evidence that is incomplete.
        Warning = "warning",
        /// Traffic was dropped, leaked or could not be translated.
        Error = "error",
    }
}

named_enum! {
    /// Stable finding codes (a contract: never renamed or repurposed). Each has one
    /// file under `audit/findings/` and one in `report/explain/`.
    pub enum Code {
        /// Packets seen at one point and never at the next one on their path.
        Lost = "lost",
        /// Packets that escaped NAT: an inside address on the outside, or the NAT
        /// host's own RST answering a segment conntrack would not translate.
        Leak = "leak",
        /// Packets arriving at a NAT address that belong to no translation.
        Unsolicited = "unsolicited",
        /// NAT changed the source port.
        PortReallocated = "port-reallocated",
        /// The translation on the wire differs from the conntrack entry's.
        CtContradiction = "ct-contradiction",
        /// A connection translated on the wire across a snapshot's time has no entry.
        CtMissing = "ct-missing",
        /// A NATed entry active while the captures ran, with no packet on the wire.
        CtUnobserved = "ct-unobserved",
        /// An entry marked `[UNREPLIED]` although replies were on the wire.
        CtUnreplied = "ct-unreplied",
        /// A DNAT back to the client itself without masquerade (hairpin), in a
        /// conntrack entry.
        CtHairpinNoMasq = "ct-hairpin-no-masq",
        /// Several entries of one snapshot share a reply tuple.
        CtDuplicate = "ct-duplicate",
        /// The host's rules translate or filter a connection otherwise than the wire
        /// shows.
        RuleContradiction = "rule-contradiction",
        /// A DROP/REJECT rule in filter INPUT meant for traffic that DNAT sends to
        /// FORWARD: it never sees it.
        InputBypassed = "input-bypassed",
        /// Connections DNATed to a backend and SNATed to the host on their way in: the
        /// backend sees the host, not the client.
        ClientAddressLost = "client-address-lost",
        /// A flow left on a backend the host no longer sends new flows to.
        StaleEntry = "stale-entry",
        /// A translation no rule of the rule set given can make: IPVS, eBPF, or rules
        /// not given.
        NotNetfilter = "not-netfilter",
        /// New connections to one destination lost at the NAT host while every source
        /// port NAT could give them for it was held.
        SnatPortExhaustion = "snat-port-exhaustion",
        /// The first packet(s) of a connection lost at the NAT host and recovered by a
        /// copy sent again: the insert race's signature.
        InsertRace = "insert-race",
        /// TCP segments too large for the path between two points, lost again and again
        /// while smaller packets cross, and PMTU discovery never told the sender.
        PmtuBlackHole = "pmtu-black-hole",
        /// A proxy on the host ends the client's TCP connection and opens its own to the
        /// backend with the same bytes: the backend sees the proxy's address.
        UserlandProxy = "userland-proxy",
        /// A connection's replies came back by another interface than its requests left
        /// by, and went no further (strict reverse-path filtering).
        AsymmetricRoute = "asymmetric-route",
        /// A connection DNATed back to its own client with its source left alone
        /// (hairpin without masquerade), on the wire.
        HairpinNoMasq = "hairpin-no-masq",
        /// New connections to several destinations lost at a host whose conntrack
        /// table was full, while its existing connections kept crossing.
        ConntrackTableFull = "conntrack-table-full",
        /// Pod-to-pod traffic whose source was masqueraded (its destination kept) on its
        /// way into an overlay tunnel to another node.
        OverlayMasq = "overlay-masq",
        /// Packets that left one node in a tunnel and never reached the other: the
        /// underlay between them dropped them.
        UnderlayDrop = "underlay-drop",
        /// A connection DNATed back out of the interface it came in by, to a server
        /// other than the client, with its source left alone: the server answers the
        /// client directly, past the host.
        HairpinDirectReply = "hairpin-direct-reply",
        /// A NAT helper (an ALG: FTP, SIP, TFTP, ...) rewrote a connection's payload,
        /// or translated connections it expected as it translated their master.
        NatHelper = "nat-helper",
        /// A connection every capture shows already translated: its conntrack entry
        /// holds the tuple before NAT, which no capture point saw (NAT in OUTPUT for the
        /// host's own connections, or an interface not captured).
        NatBeforeCapture = "nat-before-capture",
        /// Packets from the network to a loopback address that the host let in: DNATed
        /// on to a backend, or delivered to its own services (`route_localnet`).
        LoopbackExposed = "loopback-exposed",
        /// A UDP or ICMP tuple quiet past conntrack's timeout whose next packets NAT
        /// mapped otherwise (a new entry).
        RemappedAfterIdle = "remapped-after-idle",
        /// A connection NAT sent on under another tuple partway through: its conntrack
        /// entry was lost (expired while idle, deleted, evicted) and a later packet made
        /// a new entry (TCP: picked up mid-stream).
        StateLost = "state-lost",
    }
}

impl Severity {
    /// Most severe first, the order reports count them in.
    pub const WORST_FIRST: [Severity; 3] = [Severity::Error, Severity::Warning, Severity::Info];
}

named_enum! {
    /// What a tuple is in a finding.
    pub enum Role {
        /// Packets that left a point untranslated.
        Leaked = "leaked",
        /// The translated traffic, or the translation's tuple at a point.
        Translated = "translated",
        /// Where packets were seen before they were lost.
        Seen = "seen",
        /// The point they never reached.
        Next = "next",
        /// The last point of a path that stops short.
        LastSeen = "last-seen",
        /// Packets that belong to no translation.
        Unsolicited = "unsolicited",
        /// A translation to the same NAT endpoint.
        Translation = "translation",
        /// Before and after a port moved.
        Before = "before",
        After = "after",
        /// The connection holding the wanted port.
        Holder = "holder",
        /// The tuple before NAT (a conntrack entry's ORIGINAL).
        Original = "original",
        /// What the wire shows after NAT.
        Wire = "wire",
        /// Where a connection's requests went, when its replies came back another way.
        Requests = "requests",
    }
}

/// A tuple at a capture point, in the initiator's direction, with what it is in the
/// finding.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Seen {
    pub point: String,
    pub role: Role,
    #[serde(flatten)]
    pub tuple: Tuple,
}

/// Which way packets were going, relative to the connection's initiator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Initiator to responder.
    Fwd,
    /// Responder to initiator.
    Rev,
}

named_enum! {
    /// How packets escaped NAT.
    pub enum LeakKind {
        /// Packets on an outside point carrying an address NAT hides there.
        InsideAddress = "inside-address",
        /// The NAT host answered an untranslated segment with its own RST.
        HostRst = "host-rst",
    }
}

named_enum! {
    /// How a source-NAT allocator behaved across every translation to one NAT address
    /// at one point.
    pub enum AllocatorMode {
        /// Ports kept except where another connection held the tuple (the default).
        Collision = "collision",
        /// Every port moved, into a narrow span (`--to-ports`, `ADDR:LO-HI`).
        Range = "range",
        /// Every port moved with nobody holding it (`--random`, `--random-fully`).
        Random = "random",
        /// Some kept, some moved with no holder captured.
        Mixed = "mixed",
        /// One port moved with no holder captured and no other translation to that
        /// address to compare: a port range, a random pick or a holder the captures
        /// missed, one translation cannot tell.
        Undetermined = "undetermined",
    }
}

named_enum! {
    /// Where the port range of a source NAT came from.
    pub enum RangeFrom {
        /// The rule's own range (`--to-ports`, `--to-source ADDR:LO-HI`, nft `to :LO-HI`).
        Rule = "rule",
        /// The rule gives none: the kernel's default for the source port.
        KernelDefault = "kernel-default",
        /// No rules were given: the kernel's default for a rule without a range.
        Assumed = "assumed",
    }
}

named_enum! {
    /// What was lost and sent again, in an insert race's signature.
    pub enum RaceKind {
        /// A connection's first SYN (or SYNs); a retransmission crossed.
        Syn = "syn",
        /// One of two datagrams of one socket sent together (A and AAAA queries); it
        /// was resent and crossed then.
        DatagramPair = "datagram-pair",
    }
}

/// Why a path that stops short was expected to go on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PathReason {
    /// Traffic from this inside prefix to outside destinations left that way.
    Egress(super::Cidr),
    /// Traffic to this DNAT'ed endpoint went that way.
    Published(Tuple),
    /// The host's rules drop or reject it at the point it arrived.
    HostRules,
    /// Sent to an address of the host, which neither answered nor forwarded it; where
    /// conntrack or the rules say it was to go, when either does.
    Unanswered(Option<Tuple>),
}

/// How many of the connections that show the way a lost connection was to go (its
/// `path_from`) a finding names: a finding per lost connection, each naming every
/// connection that went the way, would grow with the product of the two counts.
pub const PATH_FROM_SHOWN: usize = 16;

/// Code-specific facts, for scripts (the JSON report's `detail`, written by
/// `report::json`) and for the words `report` writes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Detail {
    Lost {
        /// The point the packets were seen at, and the next one they never reached.
        from: String,
        to: String,
        direction: Direction,
        /// Nothing of the connection ever reached `to` in this direction.
        blocked: bool,
        first_tcp_flags: Option<String>,
        /// Connections whose path shows that `to` comes after `from` (for packets of a
        /// connection never seen at `to` at all): the first [`PATH_FROM_SHOWN`] of
        /// them, and how many there are.
        path_from: Vec<String>,
        path_from_total: usize,
        /// A path that stops short: the initiator packets its last point saw, and why
        /// the next point was expected.
        stopped: Option<(u64, PathReason)>,
    },
    Leak {
        kind: LeakKind,
        inside_address: Option<IpAddr>,
        /// Connections that translated this same traffic.
        translated_by: Vec<String>,
        /// Host RST: whether the outside point is downstream (SNAT alone), and the
        /// TCP flags of the first untranslated segment.
        host_rst: Option<(bool, Option<u8>)>,
    },
    Unsolicited {
        /// The NAT endpoint the packets were sent to.
        nat_address: IpAddr,
        nat_port: Option<u16>,
        /// The peer that sent them.
        from_address: IpAddr,
        from_port: Option<u16>,
        /// Connections translated to this NAT endpoint, and the peer they talked to.
        translations: Vec<String>,
        /// The tuple of the first translation seen at the point (the peer it talked
        /// to is the expected one).
        expected: Option<Tuple>,
        /// The packets' tuple, and the tuple at the point of the first connection in
        /// `translations`.
        seen: Tuple,
        first_translation: Option<Tuple>,
    },
    PortReallocated {
        wanted_sport: u16,
        got_sport: u16,
        colliding: Option<String>,
        colliding_started_first: Option<bool>,
        mode: AllocatorMode,
        /// The observed span of allocated ports when `mode` is `range`.
        range: Option<[u16; 2]>,
        /// ICMP ids rather than ports; the tuple after the move.
        moved: (bool, Tuple),
    },
    Rules {
        /// The tuple the connection's first packet had when it reached the host.
        walked: Tuple,
        /// What the wire shows after the host (`None`: it went no further).
        wire: Option<Tuple>,
        /// The tuple after the NAT of the rules' most likely way, and whether that way
        /// stops the packet (dropped, rejected, or a target natcheck cannot follow).
        rules: Option<Tuple>,
        stopped: bool,
        /// How many ways through the rules there are, and whether they rest on
        /// matches that could not be decided.
        outcomes: usize,
        assumed: bool,
    },
    ClientAddressLost {
        /// The first connection's tuple as it arrived (the service it addressed).
        service: Tuple,
        /// The source the backend saw instead of the client's.
        seen_as: IpAddr,
        /// The client addresses it hid.
        clients: Vec<IpAddr>,
        /// The way through the rules went through kube-proxy's chain for traffic from
        /// outside the cluster (`externalTrafficPolicy: Cluster`).
        external_cluster: bool,
    },
    LoopbackExposed {
        /// The first connection's tuple where it arrived from the network.
        arrived: Tuple,
        /// Its tuple past the DNAT that sent it on; none when the host took it itself.
        backend: Option<Tuple>,
        /// The addresses that reached it.
        clients: Vec<IpAddr>,
        /// Answers that left the arrival point from the loopback address.
        answers: u64,
        /// Whether anything answered, there or beyond the DNAT.
        answered: bool,
    },
    StateLost {
        /// The connection's tuple at its first point (its entry's ORIGINAL).
        tuple: Tuple,
        /// Its tuple at the point where it changed: before the loss, and that of the
        /// packets after it.
        before: Tuple,
        after: Tuple,
        /// How long the connection had been quiet before the first packet sent on
        /// under `after`; none when that packet was its first at the point before.
        idle_ns: Option<i64>,
        /// The established TCP timeout, the setting that holds it, and where that was
        /// read (none: the kernel's default).
        timeout_ns: i64,
        sysctl: String,
        given_at: Option<String>,
        /// What came back under `after`: replies, and whether one was a RST.
        replies: u64,
        reset: bool,
    },
    RemappedAfterIdle {
        /// The tuple both lives had at their first point.
        tuple: Tuple,
        /// The earlier life's tuple at the first later point where the two differ, and
        /// the later life's there.
        before: Tuple,
        after: Tuple,
        /// From the earlier life's last packet to the later one's first.
        idle_ns: i64,
        /// The timeout the quiet spell passed, the setting that holds it
        /// (`net.netfilter.nf_conntrack_udp_timeout`), and where that setting was read
        /// (none: the kernel's default).
        timeout_ns: i64,
        sysctl: String,
        given_at: Option<String>,
    },
    OverlayMasq {
        /// The first connection's tuple before its source was rewritten.
        original: Tuple,
        /// The source the destination saw instead of the client's.
        seen_as: IpAddr,
        /// The client addresses it hid, and the destinations (pods behind the tunnel).
        clients: Vec<IpAddr>,
        destinations: Vec<IpAddr>,
        /// The tunnel the translated packets went into (the first connection's).
        tunnel: crate::model::Tunnel,
    },
    StaleEntry {
        /// The flow as it arrived, and as it left for its old backend.
        service: Tuple,
        stale: Tuple,
        /// Where the host sends the same first packet now: by the rules given, and by
        /// the newer connection `newer` on the wire.
        now_by_rules: Option<Tuple>,
        now_on_wire: Option<Tuple>,
        newer: Option<String>,
        /// ICMP error packets the old backend answered with.
        error_packets: u64,
    },
    SnatPortExhaustion {
        /// The destination whose tuples ran out: protocol, address, port.
        destination: super::Endpoint,
        /// The source addresses NAT could give, and the port range, with its origin.
        nat: Vec<IpAddr>,
        range: [u16; 2],
        range_from: RangeFrom,
        /// Tuples the addresses and range give, and how many live connections held one
        /// while the packets were lost.
        usable: u64,
        held: u64,
        /// The captured connections holding them, and conntrack entries holding the
        /// others (`file:line`).
        holders: Vec<String>,
        entries: Vec<String>,
        /// The connections whose packets were lost.
        lost: Vec<String>,
    },
    InsertRace {
        kind: RaceKind,
        /// The point the packets were seen at, and the next one they never reached.
        from: String,
        to: String,
        /// From the first lost packet to the first copy of it that crossed.
        recovered_after_ns: i64,
        /// A datagram pair: the time between its two datagrams.
        pair_gap_ns: Option<i64>,
    },
    PmtuBlackHole(PmtuFacts),
    UserlandProxy(SpliceFacts),
    AsymmetricRoute(RouteFacts),
    /// `hairpin-no-masq`: the client's tuple towards the published endpoint, the
    /// point its DNATed packets came back to, how many arrived there and how many
    /// answers left it.
    HairpinNoMasq {
        client: Tuple,
        back_at: String,
        delivered: u64,
        replies: u64,
    },
    /// `hairpin-direct-reply`: the client's tuple where it started, the tuple the
    /// translation sent back out of `at`, how many packets left so, and the server's
    /// answers as it sent them at the first point past the translation that saw any.
    HairpinDirectReply {
        client: Tuple,
        server: Tuple,
        at: String,
        delivered: u64,
        answers: u64,
        answers_at: Option<String>,
    },
    NatHelper {
        /// The helper's name, when an entry or a rule gives it (`ftp`).
        helper: Option<String>,
        /// Packets whose payload it rewrote, initiator's and responder's, and the
        /// shift of each direction's sequence numbers after them.
        rewritten: [u64; 2],
        shift: [i64; 2],
        /// The connections it expected (ids).
        expected: Vec<String>,
    },
    TableFull(TableFullFacts),
    UnderlayDrop(UnderlayFacts),
    Conntrack {
        /// The entry (`file:line`), or the snapshot file for `ct-missing`.
        entry: String,
        /// The tuple the wire shows after the translation, when it was captured.
        wire: Option<Tuple>,
        /// The tuple after NAT according to conntrack (reverse of the REPLY tuple).
        conntrack: Option<Tuple>,
        facts: CtFacts,
    },
}

/// `pmtu-black-hole`: the segments that did not fit between two points, by IP length.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PmtuFacts {
    /// The point the segments were seen at and the next one they never reached.
    pub from: String,
    pub to: String,
    pub direction: Direction,
    /// The largest packet of that direction that crossed, and the smallest and largest
    /// segment that did not.
    pub crossed_max: u32,
    pub failed: (u32, u32),
    /// Copies of bytes sent again whole.
    pub resent: u64,
    /// The MSS the initiator and the responder announced in their SYNs (at `from`).
    pub mss: [Option<u16>; 2],
    /// IPv6 (MSS to MTU: 60 bytes of headers rather than 40).
    pub v6: bool,
    /// The next-hop MTU an ICMP error about the connection announced, and the points
    /// such errors were seen at.
    pub icmp_mtu: Option<u32>,
    pub icmp_points: Vec<String>,
    /// The tunnel the segments were to enter at `to` (they travelled plain before
    /// it): its headers are added to them on the underlay.
    pub tunnel: Option<crate::model::Tunnel>,
}

impl PmtuFacts {
    /// The MTU the evidence implies: what an ICMP error announced, else the range
    /// from the largest packet that crossed to one byte below the smallest that failed.
    pub fn mtu(&self) -> (u32, u32) {
        match self.icmp_mtu {
            Some(m) => (m, m),
            None => (self.crossed_max, self.failed.0.saturating_sub(1)),
        }
    }
}

/// `underlay-drop`: packets lost in a tunnel one way between two points, and what they
/// have in common.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct UnderlayFacts {
    /// The point the packets left in the tunnel, and the one beyond the underlay they
    /// never reached.
    pub from: String,
    pub to: String,
    /// The tunnel as the first lost packets travelled in it.
    pub tunnel: crate::model::Tunnel,
    /// The smallest and largest lost packet (IP length inside the tunnel).
    pub lost_len: (u32, u32),
    /// Packets of the tunnel that crossed that way, and the largest.
    pub crossed: u64,
    pub crossed_max: u32,
    /// Every lost packet was larger than every one that crossed.
    pub larger: bool,
    /// Nothing of the tunnel crossed that way from the first lost packet to the last:
    /// then when the first crossed after them (`None`: nothing did).
    pub window: Option<Option<i64>>,
}

/// `asymmetric-route`: where a connection's requests went, where its replies came
/// back, and the point towards the initiator they never reached.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RouteFacts {
    pub requests: String,
    pub replies: String,
    pub not_reached: String,
    /// How the replies were told to be this connection's.
    pub joined: Joined,
    /// Responder packets of the connection that reached `not_reached` by any way.
    pub crossed: u64,
    /// The replies' source and the address they were sent to (the tuple at `requests`
    /// reversed), and whether the requests were translated on the way there.
    pub reply: Tuple,
    pub translated: bool,
    /// With a conntrack snapshot taken after the replies: whether the connection's
    /// entry was still `[UNREPLIED]`.
    pub unreplied: Option<bool>,
}

/// `userland-proxy`: the two connections a proxy spliced.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SpliceFacts {
    /// The client's connection (id) and its tuple where it ended: the client, the
    /// endpoint the proxy listens on.
    pub outer: String,
    pub outer_tuple: Tuple,
    /// The proxy's connection and its tuple where it began: the address the backend
    /// sees, the backend.
    pub inner: String,
    pub inner_tuple: Tuple,
    /// The backend sees another address than the client's.
    pub address_lost: bool,
    /// The client is the host itself (loopback, or an address of the host).
    pub local_client: bool,
}

/// `conntrack-table-full`: the new connections lost, what kept crossing, and what the
/// kernel said.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TableFullFacts {
    /// The connections lost and their destinations (protocol, address, port where
    /// they were last seen), each destination once.
    pub lost: Vec<String>,
    pub destinations: Vec<super::Endpoint>,
    /// Connections opened before the first lost packet that crossed the host after
    /// it, and new connections that crossed the host while others were lost.
    pub flowing: Vec<String>,
    pub crossed: Vec<String>,
    /// `conntrack -S`: dropped packets no failed insert explains (`drop` −
    /// `insert_failed`), evictions (`early_drop`), and the earlier reading they grew
    /// from when they are a growth.
    pub drops: Option<u64>,
    pub early_drop: Option<u64>,
    pub since: Option<String>,
    /// The largest entry count given, `nf_conntrack_max`, `nf_conntrack_buckets`.
    pub entries: Option<u64>,
    pub max: Option<u64>,
    pub buckets: Option<u64>,
}

/// What a conntrack finding's words need beyond the tuples.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct CtFacts {
    /// The entry's ORIGINAL tuple.
    pub orig: Option<Tuple>,
    /// `ct-contradiction`: the point where the wire shows the other translation, and
    /// the translation the wire shows.
    pub wire_point: Option<String>,
    pub wire_change: Option<crate::model::NatChange>,
    /// `ct-duplicate`: how many entries share the reply tuple, the tuple, its zone.
    pub shared_reply: Option<(usize, Tuple, u16)>,
    /// `ct-unobserved`: how long before the snapshot conntrack last saw a packet.
    pub idle_ns: Option<i64>,
    /// `ct-missing`: the snapshot's file.
    pub snapshot: Option<String>,
    /// `nat-before-capture`: the host itself opened the connection (its source is one
    /// of the host's addresses), so NAT translated it in OUTPUT.
    pub local: bool,
}

/// One finding. Findings sort most severe first, then by code, time, connections and
/// points ([`Finding::sort_key`]), ties broken by everything else.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Finding {
    pub code: Code,
    pub severity: Severity,
    /// Indices (into `Correlation::connections`) of the connections it concerns, the
    /// one it is mainly about first.
    pub conns: Vec<usize>,
    /// The same connections' ids.
    pub connections: Vec<String>,
    pub points: Vec<String>,
    pub tuples: Vec<Seen>,
    /// Corrected times of the first and last packet behind it.
    pub first_ns: Option<i64>,
    pub last_ns: Option<i64>,
    pub packets: u64,
    pub detail: Detail,
    /// The evidence, one fact per item.
    pub evidence: Vec<Evidence>,
}

impl Finding {
    /// A finding with its code, severity and detail; the rest is filled by the rule.
    pub fn new(code: Code, severity: Severity, detail: Detail) -> Finding {
        Finding {
            code,
            severity,
            conns: Vec::new(),
            connections: Vec::new(),
            points: Vec::new(),
            tuples: Vec::new(),
            first_ns: None,
            last_ns: None,
            packets: 0,
            detail,
            evidence: Vec::new(),
        }
    }

    /// The report order: most severe first, then code, time, connections, points.
    pub fn sort_key(&self) -> impl Ord + '_ {
        (
            std::cmp::Reverse(self.severity),
            self.code,
            self.first_ns,
            &self.conns,
            &self.points,
        )
    }

    /// The protocol the finding is about, from its first tuple.
    pub fn proto(&self) -> Option<Proto> {
        self.tuples.first().map(|s| s.tuple.proto)
    }
}
