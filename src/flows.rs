//! flows: per capture point, bidirectional flows keyed by the 5-tuple, each oriented in
//! its initiator's direction, with counters, first/last time and TCP handshake/close
//! state. Knows nothing about other points: pairing flows across points is `correlate`.
//!
//! Orientation, in order of evidence: the sender of a SYN without ACK; the receiver of
//! a SYN-ACK; the sender of an ICMP echo request; the receiver of an echo reply; when
//! one port is privileged (< 1024) and the other is not, the side with the
//! unprivileged port, else when one port is ephemeral (32768 and up, where systems
//! pick client ports) and the other is not, the side with the ephemeral port; else the
//! sender of the first packet seen. A capture that starts while connections are open
//! (or a slice of one: `--since`) sees many without their handshake. A TCP tuple that
//! is reused after its connection closed (a new SYN with another initial sequence
//! number) starts a new flow, as Wireshark's TCP streams do; so does a UDP or ICMP
//! tuple used again after a quiet spell longer than conntrack keeps its entry (the
//! host's timeouts when given, else the kernel's defaults: 30 s, or 120 s for an
//! active UDP stream): the kernel made a new entry for it and may have translated it
//! otherwise.

use std::hash::{BuildHasher, Hash, Hasher};
use std::net::IpAddr;

use hashbrown::HashTable;
use rayon::prelude::*;
use serde::Serialize;

use crate::capture::{self, InputResult, InputSpec, ReadOptions};
use crate::community_id;
use crate::decode;
use crate::model::{tcp_flags, CtTimeouts, Packet, Proto, Tunnel, Tuple, L4};

/// Which side of a flow sent a packet, relative to the first packet seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Side {
    /// Sent by the sender of the flow's first packet.
    A,
    B,
}

/// How a flow's initiator was decided (weakest last).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum InitiatorEvidence {
    Syn,
    SynAck,
    EchoRequest,
    EchoReply,
    Ports,
    FirstPacket,
}

/// TCP handshake and close flags seen, in the initiator's orientation once finished.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TcpSeen {
    pub syn: bool,
    pub syn_ack: bool,
    /// FIN from the initiator, from the responder.
    pub fin: [bool; 2],
    /// RST from the initiator, from the responder.
    pub rst: [bool; 2],
}

/// Where a TCP connection got to, from the flags seen at one point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TcpState {
    ResetByInitiator,
    ResetByResponder,
    Closed,
    Closing,
    Established,
    SynSent,
    MidStream,
    /// Reset by a RST that the NAT host made itself (seen at this point and at no
    /// point upstream): never what the flags of one point alone say.
    ResetByNatHost,
}

impl TcpState {
    /// The state's stable name (JSON `tcp_state`, reports).
    pub fn as_str(self) -> &'static str {
        match self {
            TcpState::ResetByInitiator => "reset-by-initiator",
            TcpState::ResetByResponder => "reset-by-responder",
            TcpState::Closed => "closed",
            TcpState::Closing => "closing",
            TcpState::Established => "established",
            TcpState::SynSent => "syn-sent",
            TcpState::MidStream => "mid-stream",
            TcpState::ResetByNatHost => "reset-by-nat-host",
        }
    }
}

impl TcpSeen {
    /// The state the flags imply: a RST wins over FINs, FINs over the handshake.
    pub fn state(&self) -> TcpState {
        match () {
            _ if self.rst[0] => TcpState::ResetByInitiator,
            _ if self.rst[1] => TcpState::ResetByResponder,
            _ if self.fin[0] && self.fin[1] => TcpState::Closed,
            _ if self.fin[0] || self.fin[1] => TcpState::Closing,
            _ if self.syn_ack => TcpState::Established,
            _ if self.syn => TcpState::SynSent,
            _ => TcpState::MidStream,
        }
    }
}

/// What an ICMP error flow is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct IcmpError {
    pub icmp_type: u8,
    pub code: u8,
    pub quoted: Option<Tuple>,
    /// The next-hop MTU a "fragmentation needed" or "packet too big" announces.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
}

impl IcmpError {
    /// The error part of a packet, when it is an ICMP error: a message that quotes a
    /// packet (destination unreachable, time exceeded, ...), never an echo, router or
    /// neighbour discovery, MLD or other informational message.
    pub fn of(p: &Packet) -> Option<IcmpError> {
        match p.l4 {
            L4::Icmp {
                icmp_type,
                code,
                echo: None,
                quoted,
                mtu,
            } if decode::is_icmp_error(p.tuple.proto, icmp_type) => Some(IcmpError {
                icmp_type,
                code,
                quoted,
                mtu,
            }),
            _ => None,
        }
    }
}

/// One bidirectional flow at one capture point.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Flow {
    /// The tuple in the initiator's direction (after [`FlowTable::finish`]).
    pub tuple: Tuple,
    pub initiator: InitiatorEvidence,
    pub first_ns: i64,
    pub last_ns: i64,
    /// Packets and IP bytes from the initiator (`[0]`) and from the responder (`[1]`).
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
    /// Transport payload bytes from the initiator and from the responder. Unlike
    /// packets and IP bytes, TCP data counts the same however offloads cut it.
    #[serde(skip)]
    pub payload: [u64; 2],
    pub tcp: TcpSeen,
    /// TCP: the maximum segment size the initiator announced in its SYN and the
    /// responder in its SYN-ACK, when seen.
    #[serde(skip)]
    pub mss: [Option<u16>; 2],
    /// ICMP errors only: type and code of the first error, and the tuple of the packet
    /// the errors quote (in that packet's own direction). ICMP errors about different
    /// connections are different flows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp_error: Option<Box<IcmpError>>,
    /// The tunnel the first packet of each direction travelled in (initiator,
    /// responder), when decode opened one: see [`Flow::tunnels`]. Boxed: most flows
    /// travel in none, and two tunnels take 112 bytes.
    #[serde(skip)]
    tunnels: Option<Box<[Option<Tunnel>; 2]>>,
    /// True when the orientation was flipped by `finish`: side A is then the responder.
    #[serde(skip)]
    pub a_is_responder: bool,
    #[serde(skip)]
    evidence: [Option<InitiatorEvidence>; 2],
    #[serde(skip)]
    syn_seq: Option<u32>,
    /// Every packet was link-local control traffic (see [`is_control`]).
    #[serde(skip)]
    control: bool,
}

// A flow is kept per flow and point, and again in its connection's hop: what is
// seldom there (tunnels, ICMP errors) is boxed to keep it this small.
const _: () = assert!(std::mem::size_of::<Flow>() <= 152);

impl Flow {
    /// The flow's Community ID (seed 0), as Zeek and Suricata compute it for the same
    /// packets. ICMP: an error's type and code; an echo exchange by its request type
    /// (the identifier is in `tuple.sport`). `None` for other ICMP, whose message
    /// type the flow does not keep.
    pub fn community_id(&self) -> Option<String> {
        let t = &self.tuple;
        let ports = if t.proto.has_ports() {
            community_id::Ports::Transport {
                src: t.sport,
                dst: t.dport,
            }
        } else if t.proto.is_icmp() {
            let echo = self.initiator == InitiatorEvidence::EchoRequest || t.sport != 0;
            match (&self.icmp_error, echo) {
                (Some(e), _) => community_id::Ports::Icmp {
                    icmp_type: e.icmp_type,
                    code: e.code,
                },
                (None, true) => community_id::Ports::Icmp {
                    icmp_type: if t.proto == Proto::Icmp { 8 } else { 128 },
                    code: 0,
                },
                (None, false) => return None,
            }
        } else {
            community_id::Ports::None
        };
        community_id::v1(0, t.src, t.dst, t.proto.number(), ports)
    }

    fn new(p: &Packet) -> Flow {
        Flow {
            tuple: p.tuple,
            initiator: InitiatorEvidence::FirstPacket,
            first_ns: p.ts_ns,
            last_ns: p.ts_ns,
            packets: [0; 2],
            bytes: [0; 2],
            payload: [0; 2],
            tcp: TcpSeen::default(),
            mss: [None; 2],
            icmp_error: IcmpError::of(p).map(Box::new),
            tunnels: None,
            a_is_responder: false,
            evidence: [None; 2],
            syn_seq: None,
            control: true,
        }
    }

    /// Index into `packets`/`bytes` for a side, once oriented.
    pub fn dir_index(&self, side: Side) -> usize {
        match (side, self.a_is_responder) {
            (Side::A, false) | (Side::B, true) => 0,
            _ => 1,
        }
    }

    pub fn total_packets(&self) -> u64 {
        self.packets[0] + self.packets[1]
    }

    /// Turns the flow around: the responder becomes the initiator. Used when another
    /// capture point holds stronger evidence of who initiated the connection.
    pub fn flip(&mut self) {
        self.a_is_responder = !self.a_is_responder;
        self.tuple = self.tuple.reversed();
        self.packets.swap(0, 1);
        self.bytes.swap(0, 1);
        self.payload.swap(0, 1);
        self.mss.swap(0, 1);
        if let Some(t) = self.tunnels.as_deref_mut() {
            t.swap(0, 1);
        }
        self.tcp.fin.swap(0, 1);
        self.tcp.rst.swap(0, 1);
    }

    /// The tunnel the flow's packets travelled in: that of its first initiator packet
    /// (of its first responder packet when only replies were seen).
    pub fn tunnel(&self) -> Option<&Tunnel> {
        let [fwd, rev] = self.tunnels.as_deref()?;
        fwd.as_ref().or(rev.as_ref())
    }

    /// The tunnel the first packet of each direction travelled in (initiator,
    /// responder), when decode opened one.
    pub fn tunnels(&self) -> [Option<Tunnel>; 2] {
        self.tunnels.as_deref().copied().unwrap_or_default()
    }

    /// Keeps `t` as direction `i`'s tunnel unless that direction already has one.
    fn set_tunnel(&mut self, i: usize, t: Tunnel) {
        let slot = &mut self.tunnels.get_or_insert_default()[i];
        if slot.is_none() {
            *slot = Some(t);
        }
    }

    /// The tunnel of the first responder packet, when it is not the reverse of
    /// [`Flow::tunnel`]: UDP tunnels pick their source port from the inner packet's
    /// addresses and ports, so the replies come back under another outer tuple.
    pub fn reply_tunnel(&self) -> Option<&Tunnel> {
        let Some([Some(fwd), Some(rev)]) = self.tunnels.as_deref() else {
            return None;
        };
        (rev.outer != fwd.outer.reversed()).then_some(rev)
    }

    /// Whether the flow is link-local control traffic (see [`is_control`]): every
    /// packet of it was.
    pub fn is_control(&self) -> bool {
        self.control
    }

    /// Whether only one direction was seen.
    pub fn is_one_way(&self) -> bool {
        self.packets[0] == 0 || self.packets[1] == 0
    }

    /// The tuple of the packets a one-way flow carried (its tuple, or the reverse when
    /// only responder packets were seen).
    pub fn sending_tuple(&self) -> Tuple {
        if self.packets[0] == 0 && self.packets[1] > 0 {
            self.tuple.reversed()
        } else {
            self.tuple
        }
    }

    /// Folds in the other half of a connection seen at the same point under another
    /// tuple: `reply` carries this connection's responder packets (already oriented so
    /// that they count as its responder side).
    pub fn absorb_reply(&mut self, reply: &Flow) {
        self.first_ns = self.first_ns.min(reply.first_ns);
        self.last_ns = self.last_ns.max(reply.last_ns);
        self.packets[1] += reply.packets[1];
        self.bytes[1] += reply.bytes[1];
        self.payload[1] += reply.payload[1];
        self.tcp.syn_ack |= reply.tcp.syn_ack;
        self.mss[1] = self.mss[1].or(reply.mss[1]);
        if let [_, Some(t)] = reply.tunnels() {
            self.set_tunnel(1, t);
        }
        self.tcp.fin[1] |= reply.tcp.fin[1];
        self.tcp.rst[1] |= reply.tcp.rst[1];
        self.initiator = self.initiator.min(reply.initiator);
    }

    /// Records evidence that `side` initiated the flow, keeping the strongest.
    fn claim(&mut self, side: Side, ev: InitiatorEvidence) {
        let slot = &mut self.evidence[side as usize];
        if slot.is_none_or(|cur| ev < cur) {
            *slot = Some(ev);
        }
    }

    fn add(&mut self, side: Side, p: &Packet) {
        self.first_ns = self.first_ns.min(p.ts_ns);
        self.last_ns = self.last_ns.max(p.ts_ns);
        // Counters are kept relative to side A until `finish` orients the flow.
        let i = side as usize;
        // Once a packet was not control traffic, the flow is not: no need to look again.
        self.control = self.control && is_control(p);
        self.packets[i] += 1;
        self.bytes[i] += u64::from(p.ip_len);
        self.payload[i] += u64::from(p.payload_len);
        if let Some(t) = p.tunnel {
            self.set_tunnel(i, t);
        }
        match p.l4 {
            L4::Tcp {
                flags, seq, mss, ..
            } => {
                let syn = flags & tcp_flags::SYN != 0;
                let ack = flags & tcp_flags::ACK != 0;
                if syn {
                    self.mss[i] = self.mss[i].or(mss);
                }
                if syn && !ack {
                    self.tcp.syn = true;
                    self.syn_seq.get_or_insert(seq);
                    self.claim(side, InitiatorEvidence::Syn);
                } else if syn && ack {
                    self.tcp.syn_ack = true;
                    self.claim(other(side), InitiatorEvidence::SynAck);
                }
                if flags & tcp_flags::FIN != 0 {
                    self.tcp.fin[i] = true;
                }
                if flags & tcp_flags::RST != 0 {
                    self.tcp.rst[i] = true;
                }
            }
            L4::Icmp {
                icmp_type: 8 | 128,
                echo: Some(_),
                ..
            } => self.claim(side, InitiatorEvidence::EchoRequest),
            L4::Icmp {
                icmp_type: 0 | 129,
                echo: Some(_),
                ..
            } => self.claim(other(side), InitiatorEvidence::EchoReply),
            _ => {}
        }
    }

    /// Whether `p` opens a new connection on the flow's tuple: a new SYN on a tuple
    /// whose connection is over (both FINs or a RST) with a different initial
    /// sequence number, or a UDP datagram or ICMP message after a quiet spell longer
    /// than conntrack keeps the entry ([`Flow::expired_at`]).
    fn is_reuse(&self, p: &Packet, timeouts: &CtTimeouts) -> bool {
        let L4::Tcp { flags, seq, .. } = p.l4 else {
            return self.expired_at(p.ts_ns, timeouts);
        };
        let closed = (self.tcp.fin[0] && self.tcp.fin[1]) || self.tcp.rst[0] || self.tcp.rst[1];
        flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN
            && closed
            && self.syn_seq.is_some_and(|s| s != seq)
    }

    /// Whether conntrack has forgotten the flow by `ts`, so that a packet then is a
    /// new entry, translated afresh (perhaps otherwise: the port it had may be
    /// another's by then): a UDP flow [`CtTimeouts::udp_ns`] after its last packet (30
    /// s by default), or [`CtTimeouts::udp_stream_ns`] (120 s) once it is a stream,
    /// answered and still active 2 s after it began; an ICMP or ICMPv6 exchange
    /// [`CtTimeouts::icmp_ns`] or [`CtTimeouts::icmpv6_ns`] (30 s) after its last
    /// message. ICMP errors belong to the connection they quote and TCP ends by its
    /// flags, never by time here; other protocols are left whole. Counters are still
    /// side A's (the first packet's sender: conntrack's original direction) when this
    /// is asked.
    fn expired_at(&self, ts: i64, t: &CtTimeouts) -> bool {
        let replied = self.packets[1] > 0;
        let timeout = t.after_last(
            self.tuple.proto,
            replied,
            self.last_ns.saturating_sub(self.first_ns),
        );
        match timeout {
            Some((ns, _)) if self.icmp_error.is_none() => ts.saturating_sub(self.last_ns) > ns,
            _ => false,
        }
    }

    fn finish(&mut self) {
        let (side, ev) = match self.evidence {
            [Some(a), Some(b)] if b < a => (Side::B, b),
            [Some(a), _] => (Side::A, a),
            [None, Some(b)] => (Side::B, b),
            [None, None] => match port_guess(&self.tuple) {
                Some(side) => (side, InitiatorEvidence::Ports),
                None => (Side::A, InitiatorEvidence::FirstPacket),
            },
        };
        self.initiator = ev;
        if side == Side::B {
            self.flip();
        }
    }
}

/// Whether a packet is link-local control traffic, which NAT never handles: IGMP;
/// ICMPv6 router and neighbour discovery, redirects and MLD; ICMP router discovery;
/// DHCP and DHCPv6; anything to or from a multicast, broadcast or unspecified address
/// (mDNS, LLMNR, SSDP, ...); and anything between two link-local addresses.
pub fn is_control(p: &Packet) -> bool {
    let t = &p.tuple;
    let informational = match (t.proto, p.l4) {
        (Proto::Icmpv6, L4::Icmp { icmp_type, .. }) => matches!(icmp_type, 130..=137 | 143),
        (Proto::Icmp, L4::Icmp { icmp_type, .. }) => matches!(icmp_type, 9 | 10),
        (Proto::Other(IPPROTO_IGMP), _) => true,
        _ => false,
    };
    let ports = (t.sport.min(t.dport), t.sport.max(t.dport));
    let dhcp = t.proto == Proto::Udp && matches!(ports, (67, 68) | (546, 547));
    informational
        || dhcp
        || [t.src, t.dst].iter().any(|&a| is_group_or_unspecified(a))
        || (is_link_local(t.src) && is_link_local(t.dst))
}

const IPPROTO_IGMP: u8 = 2;

fn is_group_or_unspecified(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(a) => a.is_multicast() || a.is_broadcast() || a.is_unspecified(),
        IpAddr::V6(a) => a.is_multicast() || a.is_unspecified(),
    }
}

fn is_link_local(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(a) => a.is_link_local(),
        IpAddr::V6(a) => a.segments()[0] & 0xffc0 == 0xfe80,
    }
}

/// Takes the link-local control flows (see [`is_control`]) out of every point's list
/// and counts them per point, by point name, in the input's stats.
pub fn hide_control(inputs: &mut [InputFlows]) {
    for input in inputs {
        for p in &mut input.points {
            let before = p.flows.len();
            p.flows.retain(|f| !f.is_control());
            let hidden = (before - p.flows.len()) as u64;
            if hidden > 0 {
                *input
                    .input
                    .stats
                    .control_flows
                    .entry(p.info.name.clone())
                    .or_insert(0) += hidden;
            }
        }
    }
}

fn other(side: Side) -> Side {
    match side {
        Side::A => Side::B,
        Side::B => Side::A,
    }
}

/// Which side initiated, judging by ports alone: the side with the unprivileged port
/// when exactly one port is privileged (below 1024); else the side with the ephemeral
/// port when exactly one is ephemeral: 32768 and up, the union of the ranges clients
/// are given their ports from (Linux 32768-60999, IANA's dynamic 49152-65535 that
/// BSD, macOS and Windows use). A service listens below that (NodePorts
/// 30000-32767 too). `tuple` is in side A's direction.
fn port_guess(tuple: &Tuple) -> Option<Side> {
    if !tuple.proto.has_ports() {
        return None;
    }
    let one_of = |is: fn(u16) -> bool| match (is(tuple.sport), is(tuple.dport)) {
        (true, false) => Some(Side::A),
        (false, true) => Some(Side::B),
        _ => None,
    };
    one_of(|p| p >= 1024).or_else(|| one_of(|p| p >= EPHEMERAL))
}

/// The lowest port systems give clients by default (Linux's `ip_local_port_range`).
const EPHEMERAL: u16 = 32768;

/// The flows of one capture point.
#[derive(Clone, Debug, Default)]
pub struct FlowTable {
    flows: Vec<Flow>,
    /// Current flow for each key, as its number in `flows`, and 32 bits of the key's
    /// hash ([`FlowTable::hash`]): the key is the flow's own (its tuple and quoted
    /// tuple), so an entry is 8 bytes, not a copy of the key (96), and the table grows
    /// without reading a flow again to hash its key (each read was a cache miss).
    index: HashTable<(u32, u32)>,
    /// The keys come from the capture, so an attacker may choose them: a keyed hasher,
    /// but a fast one (foldhash's random state, not SipHash), since every packet is
    /// looked up.
    hasher: foldhash::fast::RandomState,
    /// When a quiet UDP or ICMP tuple becomes a new flow.
    timeouts: CtTimeouts,
}

/// What finds a packet's flow: its tuple whichever way it was sent, and for an ICMP
/// error, the tuple it quotes (likewise). Kept as the packet has them, and hashed and
/// compared the same whichever way round each is: no canonical tuple is made.
#[derive(Clone, Copy, Debug)]
struct FlowKey {
    tuple: Tuple,
    quoted: Option<Tuple>,
}

impl FlowKey {
    fn of(p: &Packet) -> FlowKey {
        FlowKey {
            tuple: p.tuple,
            quoted: IcmpError::of(p).and_then(|e| e.quoted),
        }
    }

    /// The quoted part of the key of `f`'s packets (none but for an ICMP error's).
    fn quoted_of(f: &Flow) -> Option<Tuple> {
        f.icmp_error.as_ref().and_then(|e| e.quoted)
    }

    /// Whether two quoted tuples (or none) are the same either way round.
    fn same_quoted(a: Option<Tuple>, b: Option<Tuple>) -> bool {
        match (a, b) {
            (None, None) => true,
            (Some(a), Some(b)) => a == b || a == b.reversed(),
            _ => false,
        }
    }
}

impl PartialEq for FlowKey {
    fn eq(&self, o: &FlowKey) -> bool {
        (self.tuple == o.tuple || self.tuple == o.tuple.reversed())
            && FlowKey::same_quoted(self.quoted, o.quoted)
    }
}

impl Eq for FlowKey {}

/// Hashed as a few whole words rather than field by field: every packet is hashed.
/// Keys equal either way round write equal words.
impl Hash for FlowKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_tuple(&self.tuple, state);
        if let Some(q) = &self.quoted {
            hash_tuple(q, state);
        }
    }
}

/// The words of a tuple, the same for its reverse: its two ends (address and port)
/// in numeric order, or for ICMP, whose reverse swaps only the addresses (an echo's
/// identifier stays the source port), the two addresses in order and the ports as
/// they are.
fn hash_tuple<H: Hasher>(t: &Tuple, state: &mut H) {
    let (proto, icmp) = (u64::from(t.proto.number()), t.proto.is_icmp());
    match (t.src, t.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let (s, d) = (u64::from(s.to_bits()), u64::from(d.to_bits()));
            let (sport, dport) = (u64::from(t.sport), u64::from(t.dport));
            let (a, b) = if icmp {
                (s.min(d) << 16 | sport, s.max(d) << 16 | dport)
            } else {
                let (a, b) = (s << 16 | sport, d << 16 | dport);
                (a.min(b), a.max(b))
            };
            state.write_u64(a << 8 | proto);
            state.write_u64(b);
        }
        (s, d) => {
            let bits = |a: IpAddr| match a {
                IpAddr::V4(a) => u128::from(a.to_bits()),
                IpAddr::V6(a) => a.to_bits(),
            };
            let (mut a, mut b) = ((bits(s), t.sport), (bits(d), t.dport));
            if icmp {
                (a.0, b.0) = (a.0.min(b.0), a.0.max(b.0));
            } else if b < a {
                (a, b) = (b, a);
            }
            state.write_u128(a.0);
            state.write_u128(b.0);
            state.write_u64(u64::from(a.1) << 24 | u64::from(b.1) << 8 | proto);
        }
    }
}

impl FlowTable {
    /// An empty table that ends quiet UDP and ICMP flows at `timeouts` (the default
    /// table: the kernel's default timeouts).
    pub fn new(timeouts: CtTimeouts) -> FlowTable {
        FlowTable {
            timeouts,
            ..FlowTable::default()
        }
    }

    /// Adds a packet; returns the index of its flow and which side sent it.
    pub fn push(&mut self, p: &Packet) -> (usize, Side) {
        let key = FlowKey::of(p);
        let short = self.hasher.hash_one(key) as u32;
        let hash = Self::hash(short);
        let flows = &mut self.flows;
        // A flow's key is its tuple either way round (and its quoted tuple): compared
        // as such, not made canonical at each probe.
        let rev = p.tuple.reversed();
        let found = self.index.find_mut(hash, |&(i, _)| {
            let f = &flows[i as usize];
            (f.tuple == p.tuple || f.tuple == rev)
                && FlowKey::same_quoted(FlowKey::quoted_of(f), key.quoted)
        });
        let idx = match found {
            Some(&mut (i, _)) if !flows[i as usize].is_reuse(p, &self.timeouts) => i as usize,
            found => {
                flows.push(Flow::new(p));
                let new = u32::try_from(flows.len() - 1).expect("fewer than 2^32 flows");
                match found {
                    // A new connection on the key's tuple: the key's flow from now on.
                    Some((i, _)) => *i = new,
                    None => {
                        self.index
                            .insert_unique(hash, (new, short), |&(_, h)| Self::hash(h));
                    }
                }
                new as usize
            }
        };
        let flow = &mut self.flows[idx];
        let side = if p.tuple == flow.tuple {
            Side::A
        } else {
            Side::B
        };
        flow.add(side, p);
        (idx, side)
    }

    /// The table's hash of a key from the 32 bits kept of it: in both the low bits
    /// (which pick the bucket) and the high ones (the tag compared first).
    fn hash(short: u32) -> u64 {
        u64::from(short) << 32 | u64::from(short)
    }

    /// Orients every flow. Flow indices returned by `push` stay valid.
    pub fn finish(mut self) -> Vec<Flow> {
        for f in &mut self.flows {
            f.finish();
        }
        self.flows
    }
}

/// The flows of one capture point, oriented, in discovery order.
#[derive(Clone, Debug)]
pub struct PointFlows {
    pub info: capture::PointInfo,
    pub flows: Vec<Flow>,
}

/// One input read into per-point flow tables.
#[derive(Clone, Debug)]
pub struct InputFlows {
    pub input: InputResult,
    pub points: Vec<PointFlows>,
}

/// Reads one input into flow tables, calling `observe(point, flow, side, packet)` for
/// every packet as it streams by. `point` is the discovery number of the point: map it
/// through `input.remap` to index `points` (the final order is known only at the end).
pub fn read_input_flows(
    spec: &InputSpec,
    opts: &ReadOptions,
    mut observe: impl FnMut(usize, usize, Side, &Packet),
) -> InputFlows {
    let mut tables: Vec<FlowTable> = Vec::new();
    let input = capture::read_input(spec, opts, |local, packet| {
        if tables.len() <= local {
            tables.resize_with(local + 1, || FlowTable::new(opts.timeouts));
        }
        let (flow, side) = tables[local].push(packet);
        observe(local, flow, side, packet);
    });
    tables.resize_with(input.points.len(), FlowTable::default);
    let mut by_point: Vec<Option<Vec<Flow>>> = vec![None; input.points.len()];
    for (local, table) in tables.into_iter().enumerate() {
        by_point[input.remap[local]] = Some(table.finish());
    }
    let points = input
        .points
        .iter()
        .zip(by_point)
        .map(|(info, flows)| PointFlows {
            info: info.clone(),
            flows: flows.unwrap_or_default(),
        })
        .collect();
    InputFlows { input, points }
}

/// Reads every input in parallel (one rayon task per input) and names points uniquely.
/// The result is in input order whatever the thread count. Flows need no payload
/// digests: none is computed.
pub fn read_all(specs: &[InputSpec], opts: &ReadOptions) -> Vec<InputFlows> {
    let mut opts = opts.clone();
    opts.decode.digests = false;
    let opts = &opts;
    let mut all: Vec<InputFlows> = specs
        .par_iter()
        .map(|spec| read_input_flows(spec, opts, |_, _, _, _| {}))
        .collect();
    let mut inputs: Vec<InputResult> = all.iter().map(|f| f.input.clone()).collect();
    capture::finish_inputs(specs, &mut inputs, opts);
    for (f, input) in all.iter_mut().zip(inputs) {
        for (pf, info) in f.points.iter_mut().zip(&input.points) {
            pf.info = info.clone();
        }
        f.input = input;
    }
    all
}

/// Sorts flows for output: by first time, then tuple.
pub fn sort_for_output(flows: &mut [Flow]) {
    flows.sort_by(|a, b| a.first_ns.cmp(&b.first_ns).then(a.tuple.cmp(&b.tuple)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tcp_flags::*;

    fn tcp(ts: i64, src: &str, sport: u16, dst: &str, dport: u16, flags: u8, seq: u32) -> Packet {
        Packet {
            ts_ns: ts,
            point: 0,
            link_dir: None,
            tuple: Tuple {
                proto: Proto::Tcp,
                src: src.parse().unwrap(),
                sport,
                dst: dst.parse().unwrap(),
                dport,
            },
            ip_id: Some(1),
            ttl: 64,
            ip_len: 60,
            l4: L4::Tcp {
                seq,
                ack: 0,
                flags,
                window: 0,
                ts: None,
                mss: None,
            },
            payload_len: 0,
            payload_digest: 0,
            payload_head: None,
            truncated: false,
            tunnel: None,
            df: true,
        }
    }

    #[test]
    fn syn_sender_is_initiator_even_when_seen_second() {
        let mut t = FlowTable::default();
        // Capture started between SYN-ACK... the SYN-ACK is seen first.
        t.push(&tcp(
            1,
            "198.51.100.2",
            8080,
            "10.0.0.2",
            40000,
            SYN | ACK,
            5,
        ));
        t.push(&tcp(2, "10.0.0.2", 40000, "198.51.100.2", 8080, ACK, 1));
        let flows = t.finish();
        assert_eq!(flows.len(), 1);
        assert_eq!(flows[0].tuple.sport, 40000);
        assert_eq!(flows[0].initiator, InitiatorEvidence::SynAck);
        assert_eq!(flows[0].packets, [1, 1]);
        assert!(flows[0].tcp.syn_ack && !flows[0].tcp.syn);
    }

    #[test]
    fn a_flow_keeps_the_tunnel_of_its_first_packet() {
        let vxlan = Tunnel {
            kind: crate::model::TunnelKind::Vxlan,
            depth: 1,
            id: Some(42),
            outer: Tuple::of(Proto::Udp, "192.0.2.101", 51000, "192.0.2.102", 4789),
        };
        let mut t = FlowTable::default();
        let reply = tcp(1, "198.51.100.2", 80, "10.0.0.2", 40000, SYN | ACK, 5);
        t.push(&Packet {
            tunnel: Some(vxlan),
            ..reply
        });
        t.push(&tcp(2, "10.0.0.2", 40000, "198.51.100.2", 80, ACK, 1));
        t.push(&tcp(3, "10.0.0.9", 40000, "198.51.100.2", 80, SYN, 1));
        let flows = t.finish();
        let tunnels: Vec<_> = flows.iter().map(|f| (f.tuple.src, f.tunnel())).collect();
        let a = "10.0.0.2".parse().unwrap();
        let b = "10.0.0.9".parse().unwrap();
        // The SYN-ACK came first, in a tunnel: the flow is oriented from its initiator,
        // whose packet came unwrapped, so the replies' tunnel is the one shown.
        assert_eq!(tunnels, [(a, Some(&vxlan)), (b, None)]);
        assert_eq!(flows[0].reply_tunnel(), None);
    }

    #[test]
    fn replies_in_a_tunnel_of_another_outer_tuple_show_it() {
        let tunnel = |sport, src: &str, dst: &str| Tunnel {
            kind: crate::model::TunnelKind::Geneve,
            depth: 1,
            id: Some(7),
            outer: Tuple::of(Proto::Udp, src, sport, dst, 6081),
        };
        let (n1, n2) = ("192.0.2.101", "192.0.2.102");
        let mut t = FlowTable::default();
        for (ts, (p, tun)) in [
            (
                tcp(1, "10.0.0.2", 40000, "198.51.100.2", 80, SYN, 1),
                tunnel(51000, n1, n2),
            ),
            (
                tcp(2, "198.51.100.2", 80, "10.0.0.2", 40000, SYN | ACK, 5),
                tunnel(40404, n2, n1),
            ),
            (
                tcp(3, "10.0.0.2", 40000, "198.51.100.2", 80, ACK, 2),
                tunnel(9, n1, n2),
            ),
        ]
        .into_iter()
        .enumerate()
        {
            t.push(&Packet {
                tunnel: Some(tun),
                ts_ns: ts as i64,
                ..p
            });
        }
        let flows = t.finish();
        assert_eq!(flows[0].tunnel(), Some(&tunnel(51000, n1, n2)));
        assert_eq!(flows[0].reply_tunnel(), Some(&tunnel(40404, n2, n1)));
        let json = serde_json::to_value(flows[0].tunnel()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"kind": "geneve", "id": 7, "depth": 1, "src": n1,
                "dst": n2, "sport": 51000, "dport": 6081})
        );
    }

    #[test]
    fn each_side_keeps_the_mss_of_its_syn() {
        let with_mss = |mut p: Packet, m: u16| {
            if let L4::Tcp { mss, .. } = &mut p.l4 {
                *mss = Some(m);
            }
            p
        };
        let mut t = FlowTable::default();
        let (c, s) = (("10.0.0.2", 40000), ("198.51.100.2", 8080));
        // The SYN-ACK first (its MSS is the responder's), then the SYN's retransmission.
        t.push(&with_mss(tcp(1, s.0, s.1, c.0, c.1, SYN | ACK, 5), 1400));
        t.push(&with_mss(tcp(2, c.0, c.1, s.0, s.1, SYN, 4), 1460));
        t.push(&with_mss(tcp(3, c.0, c.1, s.0, s.1, ACK, 5), 1200));
        let flows = t.finish();
        assert_eq!(flows[0].tuple.sport, 40000);
        assert_eq!(flows[0].mss, [Some(1460), Some(1400)]);
    }

    #[test]
    fn both_directions_find_one_key_and_icmp_errors_their_own() {
        use std::hash::BuildHasher;
        let state = foldhash::fast::RandomState::default();
        let key = |p: &Packet| (FlowKey::of(p), state.hash_one(FlowKey::of(p)));
        for (a, b) in [
            ("10.0.0.2", "198.51.100.2"),
            ("2001:db8::2", "2001:db8:1::2"),
        ] {
            let fwd = tcp(1, a, 40000, b, 80, SYN, 1);
            let rev = tcp(2, b, 80, a, 40000, SYN | ACK, 7);
            assert_eq!(key(&fwd), key(&rev));
            assert_ne!(key(&fwd).0, key(&tcp(3, a, 40001, b, 80, SYN, 1)).0);
        }
        // Two errors between the same hosts about different connections.
        let error = |sport| {
            let mut p = icmp6(1, "2001:db8::1", "2001:db8::2", 1);
            if let L4::Icmp { quoted, .. } = &mut p.l4 {
                *quoted = Some(Tuple::of(
                    Proto::Udp,
                    "2001:db8::2",
                    sport,
                    "2001:db8::9",
                    53,
                ));
            }
            p
        };
        assert_ne!(key(&error(1000)).0, key(&error(1001)).0);
        assert_eq!(key(&error(1000)), key(&error(1000)));
    }

    #[test]
    fn ports_decide_when_no_handshake_is_seen() {
        let mut t = FlowTable::default();
        t.push(&tcp(1, "198.51.100.2", 443, "10.0.0.2", 40000, ACK, 5));
        let flows = t.finish();
        assert_eq!(flows[0].tuple.dport, 443);
        assert_eq!(flows[0].initiator, InitiatorEvidence::Ports);
        assert_eq!(flows[0].packets, [0, 1]);
    }

    #[test]
    fn an_ephemeral_port_decides_between_two_unprivileged_ones() {
        // A capture that starts mid-transfer: the server (8080) sends first.
        for (server, client) in [(8080, 40000), (8443, 60999), (30080, 32768), (5000, 65535)] {
            let mut t = FlowTable::default();
            t.push(&tcp(1, "198.51.100.2", server, "10.0.0.2", client, ACK, 5));
            t.push(&tcp(2, "10.0.0.2", client, "198.51.100.2", server, ACK, 1));
            let flows = t.finish();
            assert_eq!(flows[0].tuple.sport, client, "{server} {client}");
            assert_eq!(flows[0].initiator, InitiatorEvidence::Ports);
            assert_eq!(flows[0].packets, [1, 1]);
        }
        // Both ephemeral, or neither: the first packet's sender, as before.
        for (a, b) in [(40000, 50000), (8080, 20000), (32767, 9000)] {
            let mut t = FlowTable::default();
            t.push(&tcp(1, "198.51.100.2", a, "10.0.0.2", b, ACK, 5));
            let flows = t.finish();
            assert_eq!(flows[0].tuple.sport, a, "{a} {b}");
            assert_eq!(flows[0].initiator, InitiatorEvidence::FirstPacket);
        }
        // A privileged port outranks an ephemeral one: 40000 -> 443 stays.
        let mut t = FlowTable::default();
        t.push(&tcp(1, "10.0.0.2", 443, "198.51.100.2", 40000, ACK, 5));
        assert_eq!(t.finish()[0].tuple.dport, 443);
    }

    #[test]
    fn an_echo_reply_seen_first_makes_its_receiver_the_initiator() {
        let echo = |ts, src: &str, dst: &str, icmp_type, proto| {
            let mut p = tcp(ts, src, 0, dst, 0, 0, 0);
            p.tuple.proto = proto;
            p.tuple.sport = 3073;
            p.l4 = L4::Icmp {
                icmp_type,
                code: 0,
                echo: Some((3073, 1)),
                quoted: None,
                mtu: None,
            };
            p
        };
        for (proto, request, reply, a, b) in [
            (Proto::Icmp, 8, 0, "10.0.0.2", "198.51.100.2"),
            (Proto::Icmpv6, 128, 129, "2001:db8::2", "2001:db8:1::2"),
        ] {
            let mut t = FlowTable::default();
            t.push(&echo(1, b, a, reply, proto));
            let flows = t.finish();
            assert_eq!(flows[0].tuple.src, a.parse::<IpAddr>().unwrap());
            assert_eq!(flows[0].initiator, InitiatorEvidence::EchoReply);
            assert_eq!(flows[0].packets, [0, 1]);
            // A request seen later outranks the reply's evidence, and agrees with it.
            let mut t = FlowTable::default();
            t.push(&echo(1, b, a, reply, proto));
            t.push(&echo(2, a, b, request, proto));
            let flows = t.finish();
            assert_eq!(flows[0].tuple.src, a.parse::<IpAddr>().unwrap());
            assert_eq!(flows[0].initiator, InitiatorEvidence::EchoRequest);
        }
    }

    #[test]
    fn tuple_reuse_after_close_is_a_new_flow() {
        let mut t = FlowTable::default();
        let c = ("10.0.0.2", 40000, "198.51.100.2", 80);
        t.push(&tcp(1, c.0, c.1, c.2, c.3, SYN, 100));
        t.push(&tcp(2, c.2, c.3, c.0, c.1, SYN | ACK, 7));
        t.push(&tcp(3, c.0, c.1, c.2, c.3, FIN | ACK, 101));
        t.push(&tcp(4, c.2, c.3, c.0, c.1, FIN | ACK, 8));
        // A retransmitted SYN with the same ISN is not a new connection.
        t.push(&tcp(5, c.0, c.1, c.2, c.3, SYN, 100));
        t.push(&tcp(6, c.0, c.1, c.2, c.3, SYN, 9000));
        // The new connection's reply finds it, not the closed one.
        assert_eq!(
            t.push(&tcp(7, c.2, c.3, c.0, c.1, SYN | ACK, 5)),
            (1, Side::B)
        );
        let flows = t.finish();
        assert_eq!(flows.len(), 2);
        assert_eq!(flows[0].packets, [3, 2]);
        assert_eq!(flows[0].tcp.fin, [true, true]);
        assert_eq!(flows[1].packets, [1, 1]);
    }

    #[test]
    fn a_udp_or_icmp_tuple_quiet_past_its_conntrack_timeout_is_a_new_flow() {
        const S: i64 = 1_000_000_000;
        let udp = |ts: i64, reply: bool| {
            let (a, b) = (("10.0.0.2", 40003), ("198.51.100.2", 53));
            let (src, dst) = if reply { (b, a) } else { (a, b) };
            let mut p = tcp(ts, src.0, src.1, dst.0, dst.1, 0, 0);
            p.tuple.proto = Proto::Udp;
            p.l4 = L4::Udp;
            p
        };
        // A query answered at once: 30 s; a packet at 30 s is still the entry's.
        let mut t = FlowTable::default();
        t.push(&udp(0, false));
        t.push(&udp(S / 100, true));
        assert_eq!(t.push(&udp(30 * S + S / 100, false)).0, 0);
        let mut t = FlowTable::default();
        t.push(&udp(0, false));
        t.push(&udp(S / 100, true));
        assert_eq!(t.push(&udp(31 * S, false)), (1, Side::A));
        // Its reply finds the new flow, and an earlier timestamp (out of order) is no
        // quiet spell.
        assert_eq!(t.push(&udp(31 * S + S / 10, true)), (1, Side::B));
        assert_eq!(t.push(&udp(30 * S, false)).0, 1);
        assert_eq!(t.finish().len(), 2);
        // A stream (answered, active past 2 s) is kept 120 s; unanswered, 30 s.
        let mut t = FlowTable::default();
        t.push(&udp(0, false));
        t.push(&udp(S / 100, true));
        t.push(&udp(3 * S, false));
        assert_eq!(t.push(&udp(100 * S, false)).0, 0);
        assert_eq!(t.push(&udp(221 * S, false)).0, 1);
        let mut t = FlowTable::default();
        t.push(&udp(0, false));
        t.push(&udp(3 * S, false));
        assert_eq!(t.push(&udp(34 * S, false)).0, 1);
        // An echo exchange: 30 s. TCP keeps its tuple however quiet.
        let echo = |ts: i64, icmp_type| {
            let mut p = tcp(ts, "10.0.0.2", 20036, "198.51.100.2", 0, 0, 0);
            p.tuple.proto = Proto::Icmp;
            p.l4 = L4::Icmp {
                icmp_type,
                code: 0,
                echo: Some((20036, 1)),
                quoted: None,
                mtu: None,
            };
            p
        };
        let mut t = FlowTable::default();
        t.push(&echo(0, 8));
        assert_eq!(t.push(&echo(29 * S, 8)).0, 0);
        assert_eq!(t.push(&echo(60 * S, 8)).0, 1);
        // The host's own timeouts, when given.
        let mut t = FlowTable::new(CtTimeouts {
            icmp_ns: 61 * S,
            ..CtTimeouts::default()
        });
        t.push(&echo(0, 8));
        assert_eq!(t.push(&echo(60 * S, 8)).0, 0);
        assert_eq!(t.push(&echo(122 * S, 8)).0, 1);
        // Timestamps at the ends of the clock (a corrupt capture) decide without
        // overflowing.
        let mut t = FlowTable::default();
        t.push(&udp(i64::MIN, false));
        assert_eq!(t.push(&udp(i64::MAX, true)).0, 1);
        let mut t = FlowTable::default();
        t.push(&tcp(0, "10.0.0.2", 40000, "198.51.100.2", 80, ACK, 1));
        assert_eq!(
            t.push(&tcp(
                3600 * S,
                "10.0.0.2",
                40000,
                "198.51.100.2",
                80,
                ACK,
                1
            ))
            .0,
            0
        );
    }

    #[test]
    fn every_flow_is_found_again_as_the_index_grows() {
        let mut t = FlowTable::default();
        let src = |i: u32| format!("10.{}.{}.2", i >> 8, i & 0xff);
        for i in 0..5_000u32 {
            let s = src(i);
            assert_eq!(
                t.push(&tcp(1, &s, 40000, "198.51.100.2", 80, SYN, 1)).0,
                i as usize
            );
        }
        // Each flow's reply, after the index grew several times over.
        for i in (0..5_000u32).rev() {
            let s = src(i);
            let got = t.push(&tcp(2, "198.51.100.2", 80, &s, 40000, SYN | ACK, 1));
            assert_eq!(got, (i as usize, Side::B));
        }
        assert!(t.finish().iter().all(|f| f.packets == [1, 1]));
    }

    fn icmp6(ts: i64, src: &str, dst: &str, icmp_type: u8) -> Packet {
        let mut p = tcp(ts, src, 0, dst, 0, 0, 0);
        p.tuple.proto = Proto::Icmpv6;
        p.l4 = L4::Icmp {
            icmp_type,
            code: 0,
            echo: None,
            quoted: None,
            mtu: None,
        };
        p
    }

    #[test]
    fn neighbour_discovery_and_mld_are_not_icmp_errors() {
        let mut t = FlowTable::default();
        for (i, ty) in [133, 134, 135, 136, 130, 143].into_iter().enumerate() {
            t.push(&icmp6(i as i64, "fe80::1", "ff02::1", ty));
        }
        t.push(&icmp6(9, "2001:db8::1", "2001:db8::2", 1));
        let flows = t.finish();
        assert_eq!(flows.len(), 2);
        assert_eq!(flows[0].icmp_error, None);
        assert_eq!(flows[1].icmp_error.as_ref().map(|e| e.icmp_type), Some(1));
    }

    #[test]
    fn link_local_control_traffic_is_recognised() {
        let nd = icmp6(1, "fd00::1", "fd00::2", 136);
        assert!(is_control(&nd));
        assert!(is_control(&icmp6(1, "fe80::1", "ff02::16", 143)));
        assert!(!is_control(&icmp6(1, "2001:db8::1", "2001:db8::2", 1)));
        let mut igmp = tcp(1, "10.0.0.2", 0, "224.0.0.22", 0, 0, 0);
        igmp.tuple.proto = Proto::Other(2);
        igmp.l4 = L4::Other;
        assert!(is_control(&igmp));
        let mut dhcp = tcp(1, "0.0.0.0", 68, "255.255.255.255", 67, 0, 0);
        dhcp.tuple.proto = Proto::Udp;
        dhcp.l4 = L4::Udp;
        assert!(is_control(&dhcp));
        let mut mdns = tcp(1, "10.0.0.2", 5353, "224.0.0.251", 5353, 0, 0);
        mdns.tuple.proto = Proto::Udp;
        mdns.l4 = L4::Udp;
        assert!(is_control(&mdns));
        assert!(is_control(&tcp(1, "fe80::1", 40000, "fe80::2", 22, SYN, 1)));
        assert!(!is_control(&tcp(
            1,
            "10.0.0.2",
            40000,
            "198.51.100.2",
            80,
            SYN,
            1
        )));

        // A flow is control traffic when all its packets are.
        let mut t = FlowTable::default();
        t.push(&nd);
        t.push(&tcp(2, "10.0.0.2", 40000, "198.51.100.2", 80, SYN, 1));
        let flows = t.finish();
        assert!(flows[0].is_control());
        assert!(!flows[1].is_control());
    }
}
