//! Small owned value types shared by every stage of the pipeline: protocols, tuples,
//! decoded packet summaries and the NAT vocabulary (`snat`, `dnat`, ...).
//!
//! Everything here is `Copy` or cheap to clone, holds no borrowed capture bytes and has
//! a total order, so later stages can sort it into deterministic output and move it
//! across rayon threads freely.

use std::fmt;
use std::net::IpAddr;

use serde::{Serialize, Serializer};

/// How long conntrack keeps a UDP, ICMP or established TCP entry after its last
/// packet: a tuple quiet for longer is a new entry, NATed afresh. The kernel's defaults
/// (nf_conntrack-sysctl.rst) unless the host's settings say otherwise
/// ([`CtTimeouts::set`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtTimeouts {
    /// `nf_conntrack_udp_timeout`: a UDP entry not (yet) a stream.
    pub udp_ns: i64,
    /// `nf_conntrack_udp_timeout_stream`: a UDP entry answered and still active 2 s
    /// after it was made.
    pub udp_stream_ns: i64,
    /// `nf_conntrack_icmp_timeout`.
    pub icmp_ns: i64,
    /// `nf_conntrack_icmpv6_timeout`.
    pub icmpv6_ns: i64,
    /// `nf_conntrack_tcp_timeout_established`: an established TCP entry. Flows do
    /// not end by it (a TCP tuple is one flow until a SYN after its close); a
    /// connection quiet for longer lost its entry ([`CtTimeouts::tcp_established`]).
    pub tcp_established_ns: i64,
}

impl Default for CtTimeouts {
    fn default() -> Self {
        const S: i64 = 1_000_000_000;
        CtTimeouts {
            udp_ns: 30 * S,
            udp_stream_ns: 120 * S,
            icmp_ns: 30 * S,
            icmpv6_ns: 30 * S,
            tcp_established_ns: 432_000 * S,
        }
    }
}

impl CtTimeouts {
    /// Sets the timeout the setting `name` (as `sysctl` prints it:
    /// `net.netfilter.nf_conntrack_udp_timeout`) holds to `seconds`; returns whether
    /// `name` is one of them.
    pub fn set(&mut self, name: &str, seconds: u32) -> bool {
        let slot = match name.strip_prefix("net.netfilter.") {
            Some("nf_conntrack_udp_timeout") => &mut self.udp_ns,
            Some("nf_conntrack_udp_timeout_stream") => &mut self.udp_stream_ns,
            Some("nf_conntrack_icmp_timeout") => &mut self.icmp_ns,
            Some("nf_conntrack_icmpv6_timeout") => &mut self.icmpv6_ns,
            Some("nf_conntrack_tcp_timeout_established") => &mut self.tcp_established_ns,
            _ => return false,
        };
        *slot = i64::from(seconds) * 1_000_000_000;
        true
    }

    /// How long conntrack keeps the entry of a `proto` flow after its last packet,
    /// and the setting that says so: for UDP the stream timeout once the flow was
    /// answered (`replied`) and still active 2 s after it began (`active_ns` from its
    /// first packet to its last), as the kernel decides. `None` where time does not
    /// end the entry here (TCP ends by its flags; other protocols are left whole).
    pub fn after_last(
        &self,
        proto: Proto,
        replied: bool,
        active_ns: i64,
    ) -> Option<(i64, &'static str)> {
        const STREAM_AFTER_NS: i64 = 2_000_000_000;
        Some(match proto {
            Proto::Udp if replied && active_ns > STREAM_AFTER_NS => (
                self.udp_stream_ns,
                "net.netfilter.nf_conntrack_udp_timeout_stream",
            ),
            Proto::Udp => (self.udp_ns, "net.netfilter.nf_conntrack_udp_timeout"),
            Proto::Icmp => (self.icmp_ns, "net.netfilter.nf_conntrack_icmp_timeout"),
            Proto::Icmpv6 => (self.icmpv6_ns, "net.netfilter.nf_conntrack_icmpv6_timeout"),
            _ => return None,
        })
    }

    /// How long conntrack keeps an established TCP entry after its last packet, and
    /// the setting that says so.
    pub fn tcp_established(&self) -> (i64, &'static str) {
        (
            self.tcp_established_ns,
            "net.netfilter.nf_conntrack_tcp_timeout_established",
        )
    }
}

/// IP protocol of a connection. Unknown numbers are kept, never rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
    Icmp,
    Icmpv6,
    Sctp,
    Gre,
    Other(u8),
}

impl Proto {
    pub fn from_number(n: u8) -> Proto {
        match n {
            6 => Proto::Tcp,
            17 => Proto::Udp,
            1 => Proto::Icmp,
            58 => Proto::Icmpv6,
            132 => Proto::Sctp,
            47 => Proto::Gre,
            n => Proto::Other(n),
        }
    }

    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
            Proto::Icmp => 1,
            Proto::Icmpv6 => 58,
            Proto::Sctp => 132,
            Proto::Gre => 47,
            Proto::Other(n) => n,
        }
    }

    /// The protocol [`Proto::name`] wrote (`tcp`, ..., `igmp`, `proto-N`).
    pub fn from_name(name: &str) -> Option<Proto> {
        Some(match name {
            "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            "icmp" => Proto::Icmp,
            "icmpv6" => Proto::Icmpv6,
            "sctp" => Proto::Sctp,
            "gre" => Proto::Gre,
            "igmp" => Proto::Other(2),
            other => Proto::from_number(other.strip_prefix("proto-")?.parse().ok()?),
        })
    }

    /// Protocol name as conntrack spells it (`tcp`, `udp`, `icmp`, `icmpv6`, `igmp`, ...);
    /// numbers natcheck has no name for print as `proto-N`.
    pub fn name(self) -> String {
        match self {
            Proto::Tcp => "tcp".into(),
            Proto::Udp => "udp".into(),
            Proto::Icmp => "icmp".into(),
            Proto::Icmpv6 => "icmpv6".into(),
            Proto::Sctp => "sctp".into(),
            Proto::Gre => "gre".into(),
            Proto::Other(2) => "igmp".into(),
            Proto::Other(n) => format!("proto-{n}"),
        }
    }

    /// Whether the tuple's port fields carry ports (TCP, UDP, SCTP). For ICMP echo the
    /// `sport` field carries the echo identifier instead and `dport` is always 0.
    pub fn has_ports(self) -> bool {
        matches!(self, Proto::Tcp | Proto::Udp | Proto::Sctp)
    }

    pub fn is_icmp(self) -> bool {
        matches!(self, Proto::Icmp | Proto::Icmpv6)
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl Serialize for Proto {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

/// A 5-tuple in one direction. For ICMP/ICMPv6 echo, `sport` is the echo identifier and
/// `dport` is 0 (conntrack keys ICMP the same way); other ICMP types have both at 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tuple {
    pub proto: Proto,
    pub src: IpAddr,
    pub sport: u16,
    pub dst: IpAddr,
    pub dport: u16,
}

impl Tuple {
    /// The tuple of the other direction. ICMP echo keeps its identifier in `sport` in
    /// both directions (request and reply carry the same identifier), so only the
    /// addresses swap.
    pub fn reversed(&self) -> Tuple {
        if self.proto.is_icmp() {
            return Tuple {
                src: self.dst,
                dst: self.src,
                ..*self
            };
        }
        Tuple {
            proto: self.proto,
            src: self.dst,
            sport: self.dport,
            dst: self.src,
            dport: self.sport,
        }
    }

    /// The direction-independent key of this tuple: the tuple or its reverse, whichever
    /// sorts first. Both directions of one flow share it.
    pub fn canonical(&self) -> Tuple {
        let r = self.reversed();
        if r < *self {
            r
        } else {
            *self
        }
    }

    /// The ports as reports write them: both for protocols with ports, the echo
    /// identifier alone for ICMP, none otherwise.
    pub fn shown_ports(&self) -> (Option<u16>, Option<u16>) {
        if self.proto.has_ports() {
            (Some(self.sport), Some(self.dport))
        } else if self.proto.is_icmp() {
            (Some(self.sport), None)
        } else {
            (None, None)
        }
    }
}

/// JSON shape of a tuple: `{"proto", "src", "sport", "dst", "dport"}`. Ports are null
/// where the protocol has none; for ICMP echo `sport` is the identifier and `dport` null.
impl Serialize for Tuple {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let (sport, dport) = self.shown_ports();
        let mut st = s.serialize_struct("Tuple", 5)?;
        st.serialize_field("proto", &self.proto)?;
        st.serialize_field("src", &self.src)?;
        st.serialize_field("sport", &sport)?;
        st.serialize_field("dst", &self.dst)?;
        st.serialize_field("dport", &dport)?;
        st.end()
    }
}

/// Formats an address and port the way tools print them: `10.0.0.1:80`, `[2001:db8::1]:80`.
pub fn fmt_endpoint(addr: IpAddr, port: Option<u16>) -> String {
    match (addr, port) {
        (IpAddr::V4(a), Some(p)) => format!("{a}:{p}"),
        (IpAddr::V6(a), Some(p)) => format!("[{a}]:{p}"),
        (a, None) => a.to_string(),
    }
}

#[cfg(test)]
impl Tuple {
    /// A tuple from its parts written out, for tests.
    pub fn of(proto: Proto, src: &str, sport: u16, dst: &str, dport: u16) -> Tuple {
        Tuple {
            proto,
            src: src.parse().expect("an address"),
            sport,
            dst: dst.parse().expect("an address"),
            dport,
        }
    }
}

/// TCP flag bits as they appear in byte 13 of the TCP header.
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;

    /// tcpdump-style flag string: `S`, `S.`, `P.`, `F.`, `R`, ...
    pub fn to_string(flags: u8) -> String {
        let mut s = String::new();
        for (bit, c) in [
            (SYN, 'S'),
            (FIN, 'F'),
            (PSH, 'P'),
            (RST, 'R'),
            (URG, 'U'),
            (ECE, 'E'),
            (CWR, 'W'),
        ] {
            if flags & bit != 0 {
                s.push(c);
            }
        }
        if flags & ACK != 0 {
            s.push('.');
        }
        if s.is_empty() {
            s.push_str("none");
        }
        s
    }
}

/// Link-layer direction recorded by LINUX_SLL / LINUX_SLL2 (`sll_pkttype`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinkDir {
    /// PACKET_HOST, PACKET_BROADCAST, PACKET_MULTICAST, PACKET_OTHERHOST: received.
    In,
    /// PACKET_OUTGOING: sent by this host.
    Out,
}

/// The transport-layer facts natcheck keeps about one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum L4 {
    Tcp {
        seq: u32,
        ack: u32,
        flags: u8,
        window: u16,
        /// TCP timestamp option (RFC 7323): (TSval, TSecr).
        ts: Option<(u32, u32)>,
        /// Maximum segment size option (RFC 9293 3.7.1), which SYNs carry.
        mss: Option<u16>,
    },
    Udp,
    Icmp {
        icmp_type: u8,
        code: u8,
        /// Echo identifier and sequence number (echo request/reply only).
        echo: Option<(u16, u16)>,
        /// For ICMP errors: the tuple of the packet the error quotes, in the quoted
        /// packet's own direction, when enough of it was captured.
        quoted: Option<Tuple>,
        /// The next-hop MTU that "fragmentation needed" (ICMP type 3 code 4, RFC 1191)
        /// or "packet too big" (ICMPv6 type 2, RFC 8201) announces.
        mtu: Option<u32>,
    },
    Other,
}

/// Owned summary of one decoded packet. Everything later stages need, nothing more:
/// the capture bytes are dropped as soon as this is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet {
    /// Capture timestamp, nanoseconds since the Unix epoch (before any clock offset).
    pub ts_ns: i64,
    /// Index of the capture point in the run's point table.
    pub point: u16,
    /// Direction from the link layer, when the link type records it (SLL/SLL2).
    pub link_dir: Option<LinkDir>,
    pub tuple: Tuple,
    /// IPv4 identification field; `None` for IPv6 (unless a fragment header carried one).
    pub ip_id: Option<u32>,
    /// TTL or hop limit.
    pub ttl: u8,
    /// The packet may not be fragmented on its way: IPv4's don't-fragment flag, and
    /// every IPv6 packet (routers never fragment IPv6).
    pub df: bool,
    /// Length of the IP packet as sent on the wire (IP header + payload), from the
    /// IP header's length field, not from how much was captured.
    pub ip_len: u32,
    pub l4: L4,
    /// Length of the transport payload as sent (from the IP length fields).
    pub payload_len: u32,
    /// Digest of the transport payload bytes that were captured (xxh3 of at most the
    /// captured part; for ICMP errors, of the NAT-invariant parts of the quoted packet).
    pub payload_digest: u64,
    /// TCP only: a 32-bit digest of the first 16 payload bytes, when they were
    /// captured. Segments cut to different lengths from one stream (segmentation
    /// offloads) differ in `payload_digest`, but two that start at the same sequence
    /// number share this.
    pub payload_head: Option<u32>,
    /// True when the capture snapped part of this packet away.
    pub truncated: bool,
    /// The tunnel this packet travelled in, when decode opened one (the packet is then
    /// the inner one).
    pub tunnel: Option<Tunnel>,
}

/// The kinds of tunnel decode opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TunnelKind {
    /// VXLAN (RFC 7348) over UDP.
    Vxlan,
    /// Geneve (RFC 8926) over UDP.
    Geneve,
    /// GRE (RFC 2784, RFC 2890) carrying IP or an Ethernet frame.
    Gre,
    /// ERSPAN (types I, II, III) over GRE: a mirrored Ethernet frame.
    Erspan,
    /// IPv4 in IPv4 (RFC 2003).
    Ipip,
    /// IPv6 in IPv4 (RFC 4213, 6in4).
    Sit,
    /// IPv6 in IPv6 (RFC 2473).
    Ip6ip6,
    /// IPv4 in IPv6 (RFC 2473).
    Ip4ip6,
    /// Teredo (RFC 4380): IPv6 in UDP over IPv4.
    Teredo,
}

impl TunnelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TunnelKind::Vxlan => "vxlan",
            TunnelKind::Geneve => "geneve",
            TunnelKind::Gre => "gre",
            TunnelKind::Erspan => "erspan",
            TunnelKind::Ipip => "ipip",
            TunnelKind::Sit => "sit",
            TunnelKind::Ip6ip6 => "ip6ip6",
            TunnelKind::Ip4ip6 => "ip4ip6",
            TunnelKind::Teredo => "teredo",
        }
    }

    /// What the tunnel's header calls the identifier [`Tunnel::id`] holds: `VNI`
    /// (VXLAN, Geneve), `key` (GRE), `session` (ERSPAN); `None` for the tunnels that
    /// carry none.
    pub fn id_name(self) -> Option<&'static str> {
        match self {
            TunnelKind::Vxlan | TunnelKind::Geneve => Some("VNI"),
            TunnelKind::Gre => Some("key"),
            TunnelKind::Erspan => Some("session"),
            _ => None,
        }
    }
}

/// The tunnel around a decoded packet: the outermost tunnel's kind and identifier, its
/// underlay tuple, and how many tunnels were opened to reach the packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tunnel {
    pub kind: TunnelKind,
    /// Tunnels opened, 1 for a packet in one tunnel (nested tunnels: up to 4).
    pub depth: u8,
    /// VXLAN/Geneve VNI, GRE key, ERSPAN session ID, when the header carries one.
    pub id: Option<u32>,
    /// The outermost IP packet's tuple: node addresses, and UDP ports for the UDP
    /// tunnels (GRE and IP in IP have none).
    pub outer: Tuple,
}

impl Tunnel {
    /// The bytes the tunnel puts around the packet inside, and whether that is exact:
    /// the outer IP header (20 bytes, 40 over IPv6), then VXLAN's UDP and VXLAN
    /// headers and the inner Ethernet header (30), Geneve's (30 and its options),
    /// GRE's (4, 8 with a key, more with other optional fields), Teredo's UDP header
    /// (8). ERSPAN's headers depend on its version: none given.
    pub fn overhead(&self) -> Option<(u32, bool)> {
        let ip = if self.outer.src.is_ipv6() { 40 } else { 20 };
        let (inner, exact) = match self.kind {
            TunnelKind::Vxlan => (30, true),
            TunnelKind::Geneve => (30, false),
            TunnelKind::Gre => (if self.id.is_some() { 8 } else { 4 }, false),
            TunnelKind::Erspan => return None,
            TunnelKind::Ipip | TunnelKind::Sit | TunnelKind::Ip6ip6 | TunnelKind::Ip4ip6 => {
                (0, true)
            }
            TunnelKind::Teredo => (8, true),
        };
        Some((ip + inner, exact))
    }

    /// The tunnels of a packet found inside `inner` once `outer` was opened (a datagram
    /// reassembled from fragments a tunnel carried): the outer one, counting both.
    pub fn around(outer: Option<Tunnel>, inner: Option<Tunnel>) -> Option<Tunnel> {
        match (outer, inner) {
            (Some(o), Some(i)) => Some(Tunnel {
                depth: o.depth.saturating_add(i.depth),
                ..o
            }),
            (o, i) => o.or(i),
        }
    }
}

/// JSON shape of a tunnel: `{"kind", "id", "depth", "src", "dst", "sport", "dport"}`;
/// `id` and the ports are null where the tunnel has none.
impl Serialize for Tunnel {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let ports = self.outer.proto.has_ports();
        let mut st = s.serialize_struct("Tunnel", 7)?;
        st.serialize_field("kind", &self.kind)?;
        st.serialize_field("id", &self.id)?;
        st.serialize_field("depth", &self.depth)?;
        st.serialize_field("src", &self.outer.src)?;
        st.serialize_field("dst", &self.outer.dst)?;
        st.serialize_field("sport", &ports.then_some(self.outer.sport))?;
        st.serialize_field("dport", &ports.then_some(self.outer.dport))?;
        st.end()
    }
}

/// What NAT did between two views of one connection, both in the initiator's direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NatKind {
    None,
    Snat,
    Dnat,
    SnatDnat,
}

impl NatKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NatKind::None => "none",
            NatKind::Snat => "snat",
            NatKind::Dnat => "dnat",
            NatKind::SnatDnat => "snat+dnat",
        }
    }

    pub fn has_snat(self) -> bool {
        matches!(self, NatKind::Snat | NatKind::SnatDnat)
    }

    pub fn has_dnat(self) -> bool {
        matches!(self, NatKind::Dnat | NatKind::SnatDnat)
    }
}

impl fmt::Display for NatKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for NatKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The translation between the tuple a connection had before a NAT point and after it,
/// both written in the initiator's direction. The same vocabulary serves the wire
/// (`correlate`) and conntrack (`conntrack`: before = ORIGINAL, after = reverse of REPLY).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct NatChange {
    pub kind: NatKind,
    /// The source address was kept but the source port changed: netfilter had to move
    /// the port because the tuple it wanted was taken (or `--random`/`--random-fully`).
    pub port_reallocated: bool,
    /// The source address changed.
    pub src_addr_changed: bool,
    /// The source port changed (with or without an address change).
    pub sport_changed: bool,
    pub dst_addr_changed: bool,
    pub dport_changed: bool,
}

impl NatChange {
    /// Classifies the change from `before` to `after` (same protocol, both in the
    /// initiator's direction). A source-port-only change is SNAT with
    /// `port_reallocated`; a source address change that also moves the port is SNAT
    /// with `port_reallocated` as well, since MASQUERADE keeps the port when it can.
    pub fn between(before: &Tuple, after: &Tuple) -> NatChange {
        let src_addr_changed = before.src != after.src;
        let sport_changed = before.sport != after.sport;
        let dst_addr_changed = before.dst != after.dst;
        let dport_changed = before.dport != after.dport;
        let snat = src_addr_changed || sport_changed;
        let dnat = dst_addr_changed || dport_changed;
        let kind = match (snat, dnat) {
            (false, false) => NatKind::None,
            (true, false) => NatKind::Snat,
            (false, true) => NatKind::Dnat,
            (true, true) => NatKind::SnatDnat,
        };
        NatChange {
            kind,
            port_reallocated: sport_changed,
            src_addr_changed,
            sport_changed,
            dst_addr_changed,
            dport_changed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(src: &str, sport: u16, dst: &str, dport: u16) -> Tuple {
        Tuple::of(Proto::Tcp, src, sport, dst, dport)
    }

    #[test]
    fn a_tunnel_adds_its_outer_header_and_its_own() {
        let tun = |kind, id, src: &str| Tunnel {
            kind,
            depth: 1,
            id,
            outer: Tuple::of(Proto::Udp, src, 40000, src, 4789),
        };
        let v4 = "203.0.113.1";
        let v6 = "2001:db8::1";
        assert_eq!(
            tun(TunnelKind::Vxlan, Some(1), v4).overhead(),
            Some((50, true))
        );
        assert_eq!(
            tun(TunnelKind::Vxlan, Some(1), v6).overhead(),
            Some((70, true))
        );
        assert_eq!(
            tun(TunnelKind::Geneve, Some(1), v4).overhead(),
            Some((50, false))
        );
        assert_eq!(
            tun(TunnelKind::Gre, Some(9), v4).overhead(),
            Some((28, false))
        );
        assert_eq!(tun(TunnelKind::Gre, None, v4).overhead(), Some((24, false)));
        assert_eq!(tun(TunnelKind::Ipip, None, v4).overhead(), Some((20, true)));
        assert_eq!(
            tun(TunnelKind::Ip6ip6, None, v6).overhead(),
            Some((40, true))
        );
        assert_eq!(tun(TunnelKind::Erspan, Some(1), v4).overhead(), None);
    }

    #[test]
    fn canonical_is_direction_independent() {
        let a = t("10.0.0.2", 40000, "192.0.2.2", 80);
        assert_eq!(a.canonical(), a.reversed().canonical());
        assert_eq!(a.reversed().sport, 80);
    }

    #[test]
    fn icmp_echo_reply_reverses_to_its_request() {
        let req = Tuple {
            proto: Proto::Icmp,
            src: "10.0.0.2".parse().unwrap(),
            sport: 3073,
            dst: "192.0.2.2".parse().unwrap(),
            dport: 0,
        };
        let reply = Tuple {
            src: req.dst,
            dst: req.src,
            ..req
        };
        assert_eq!(req.reversed(), reply);
        assert_eq!(req.canonical(), reply.canonical());
    }

    #[test]
    fn classify_masquerade_keeping_port() {
        let c = NatChange::between(
            &t("10.0.1.2", 40000, "192.0.2.2", 80),
            &t("192.0.2.1", 40000, "192.0.2.2", 80),
        );
        assert_eq!(c.kind, NatKind::Snat);
        assert!(!c.port_reallocated);
    }

    #[test]
    fn classify_port_reallocation_and_dnat() {
        let c = NatChange::between(
            &t("10.0.1.3", 40000, "192.0.2.2", 80),
            &t("192.0.2.1", 8942, "192.0.2.2", 80),
        );
        assert_eq!(c.kind, NatKind::Snat);
        assert!(c.port_reallocated);
        let d = NatChange::between(
            &t("198.51.100.2", 5555, "203.0.113.1", 8080),
            &t("198.51.100.2", 5555, "10.0.1.2", 80),
        );
        assert_eq!(d.kind, NatKind::Dnat);
        let both = NatChange::between(
            &t("198.51.100.2", 5555, "203.0.113.1", 30080),
            &t("10.0.1.1", 5555, "10.0.1.2", 80),
        );
        assert_eq!(both.kind, NatKind::SnatDnat);
        assert_eq!(both.to_owned().kind.as_str(), "snat+dnat");
    }

    #[test]
    fn flag_strings_read_like_tcpdump() {
        assert_eq!(tcp_flags::to_string(tcp_flags::SYN), "S");
        assert_eq!(tcp_flags::to_string(tcp_flags::SYN | tcp_flags::ACK), "S.");
        assert_eq!(tcp_flags::to_string(tcp_flags::PSH | tcp_flags::ACK), "P.");
    }
}
