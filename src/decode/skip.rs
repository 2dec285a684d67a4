//! Why a frame produced no packet, as small `Copy` values. Reasons are formatted only
//! when asked for, so skipping a frame never allocates.

use std::fmt;

use pcap_file::DataLink;

/// A header natcheck reads, named in skip reasons.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Layer {
    Ethernet,
    /// An 802.1Q / 802.1ad tag (4 bytes after the MAC addresses or the previous tag).
    Vlan,
    /// A PPPoE session header (6 bytes after the ethertype).
    Pppoe,
    /// A PPP protocol field.
    Ppp,
    /// An MPLS label stack entry.
    Mpls,
    /// A Cisco HDLC header (address, control, protocol).
    CiscoHdlc,
    /// The LINKTYPE_NFLOG header or one of its TLVs.
    Nflog,
    LinuxSll,
    LinuxSll2,
    /// The 4-byte address family of LINKTYPE_NULL / LINKTYPE_LOOP.
    Loopback,
    /// An IP header whose version is not known yet (the frame ended before it).
    Ip,
    Ipv4,
    Ipv6,
    Ipv6HopByHop,
    Ipv6Routing,
    Ipv6Fragment,
    Ipv6DestOptions,
    IpAuth,
    Tcp,
    Udp,
    Sctp,
    Icmp,
    Icmpv6,
    /// A GRE header (with its optional checksum, key and sequence number).
    Gre,
    /// An ERSPAN type II or III header (after GRE).
    Erspan,
    Vxlan,
    Geneve,
    /// A Teredo authentication header or origin indication.
    Teredo,
}

impl Layer {
    pub fn name(self) -> &'static str {
        match self {
            Layer::Ethernet => "ethernet header",
            Layer::Vlan => "vlan tag",
            Layer::Pppoe => "pppoe header",
            Layer::Ppp => "ppp protocol field",
            Layer::Mpls => "mpls label",
            Layer::CiscoHdlc => "cisco hdlc header",
            Layer::Nflog => "nflog tlv",
            Layer::LinuxSll => "linux sll header",
            Layer::LinuxSll2 => "linux sll2 header",
            Layer::Loopback => "null/loop header",
            Layer::Ip => "ip header",
            Layer::Ipv4 => "ipv4 header",
            Layer::Ipv6 => "ipv6 header",
            Layer::Ipv6HopByHop => "ipv6 hop-by-hop header",
            Layer::Ipv6Routing => "ipv6 routing header",
            Layer::Ipv6Fragment => "ipv6 fragment header",
            Layer::Ipv6DestOptions => "ipv6 destination options header",
            Layer::IpAuth => "ip authentication header",
            Layer::Tcp => "tcp header",
            Layer::Udp => "udp header",
            Layer::Sctp => "sctp header",
            Layer::Icmp => "icmp header",
            Layer::Icmpv6 => "icmpv6 header",
            Layer::Gre => "gre header",
            Layer::Erspan => "erspan header",
            Layer::Vxlan => "vxlan header",
            Layer::Geneve => "geneve header",
            Layer::Teredo => "teredo header",
        }
    }
}

/// What is wrong with a header that was captured in full but cannot be right.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Problem {
    /// The IP version nibble disagrees with what the link layer announced.
    Version(u8),
    /// IPv4 IHL below 5 (the header cannot be shorter than 20 bytes).
    Ihl(u8),
    /// TCP data offset below 5.
    DataOffset(u8),
    /// The TCP data offset points past the end of the segment the IP header announces.
    DataOffsetBeyondSegment,
    /// The IP length fields leave less room than the transport header needs.
    SegmentShorterThanHeader,
    /// An IPv6 hop-by-hop header somewhere other than right after the IPv6 header.
    HopByHopNotFirst,
    /// An authentication header with payload length 0 (RFC 4302 needs at least 1).
    AuthZeroLen,
    /// An IPv4 total length other than 0 (which GSO and BIG TCP packets carry) below the
    /// header length.
    TotalLengthBelowHeader,
    /// An NFLOG TLV length shorter than the TLV header.
    TlvShorterThanHeader,
    /// An ERSPAN type III frame type other than Ethernet (0) and IP (2).
    FrameType(u8),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Version(v) => write!(f, "version {v}"),
            Problem::Ihl(ihl) => write!(f, "ihl {ihl} below 5"),
            Problem::DataOffset(d) => write!(f, "data offset {d} below 5"),
            Problem::DataOffsetBeyondSegment => f.write_str("data offset beyond the segment"),
            Problem::SegmentShorterThanHeader => f.write_str("ip length leaves no room for it"),
            Problem::HopByHopNotFirst => f.write_str("hop-by-hop header not first"),
            Problem::AuthZeroLen => f.write_str("payload length 0"),
            Problem::TotalLengthBelowHeader => f.write_str("total length below header length"),
            Problem::TlvShorterThanHeader => f.write_str("tlv length below 4"),
            Problem::FrameType(t) => write!(f, "frame type {t}"),
        }
    }
}

/// Why a frame produced no packet. Counted per [`Skip::reason`], never fatal.
///
/// Every variant holds only small `Copy` data with a bounded set of values, so the
/// reason strings stay usable as counter keys (no lengths, addresses or ports in them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Skip {
    /// A pcap LINKTYPE_* natcheck does not decode.
    UnsupportedLinkType(u32),
    /// An ethertype (Ethernet, VLAN, SLL, SLL2) other than IPv4/IPv6.
    NotIp(u16),
    /// An IEEE 802.3 frame: the type field is a length (≤ 1500) and an LLC header follows.
    Llc,
    /// A LINUX_SLL/SLL2 protocol field below 0x0600: not an ethertype but a Linux
    /// `ETH_P_*` / `ARPHRD_*`-specific value (802.2, CAN, netlink, ...).
    NotIpLinuxProtocol(u16),
    /// A PPP protocol other than IPv4/IPv6 (LCP, IPCP, CHAP, ...).
    NotIpPpp(u16),
    /// An MPLS payload that is not IP (a pseudowire, or a control word).
    NotIpMpls,
    /// A Cisco HDLC protocol other than IPv4, IPv6 and MPLS (SLARP, CDP, OSI, ...).
    NotIpCiscoHdlc(u16),
    /// An NFLOG message that logged no packet (no NFULA_PAYLOAD TLV).
    NflogWithoutPayload,
    /// A NULL/LOOP address family that is not AF_INET/AF_INET6 on any system.
    NotIpFamily(u32),
    /// A raw-IP link type whose first nibble is neither 4 nor 6.
    NotIpVersion(u8),
    /// The capture ended inside this header (snaplen or a cut frame). `offset` is where
    /// the header starts in the frame.
    Truncated { layer: Layer, offset: usize },
    /// The header was captured but is impossible.
    Malformed {
        layer: Layer,
        offset: usize,
        problem: Problem,
    },
}

impl Skip {
    /// Whether the frame carries something other than IP (as opposed to an IP packet
    /// natcheck cannot read).
    pub fn is_not_ip(&self) -> bool {
        !matches!(
            self,
            Skip::Truncated { .. } | Skip::Malformed { .. } | Skip::UnsupportedLinkType(_)
        )
    }

    /// Short, stable reason used as a counter key in summaries.
    pub fn reason(&self) -> String {
        self.to_string()
    }
}

/// Names for the ethertypes that show up on Linux hosts and bridges, so that the
/// common skip reasons read without a lookup table.
fn ethertype_name(t: u16) -> Option<&'static str> {
    Some(match t {
        0x0806 => "ARP",
        0x0842 => "Wake-on-LAN",
        0x22f0 => "AVTP",
        0x6558 => "transparent ethernet bridging",
        0x8035 => "RARP",
        0x809b => "AppleTalk",
        0x80f3 => "AARP",
        0x8137 => "IPX",
        0x8808 => "ethernet flow control",
        0x8809 => "slow protocols (LACP)",
        0x8847 => "MPLS",
        0x8848 => "MPLS multicast",
        0x8863 => "PPPoE discovery",
        0x8864 => "PPPoE session",
        0x886d => "Intel ANS",
        0x888e => "EAPOL",
        0x8892 => "PROFINET",
        0x889a => "HyperSCSI",
        0x88a2 => "ATA over Ethernet",
        0x88a4 => "EtherCAT",
        0x88b8 => "GOOSE",
        0x88cc => "LLDP",
        0x88e1 => "HomePlug",
        0x88e5 => "MACsec",
        0x88e7 => "PBB",
        0x88f7 => "PTP",
        0x88fb => "PRP",
        0x8902 => "CFM",
        0x8906 => "FCoE",
        0x8914 => "FCoE initialization",
        0x8915 => "RoCE",
        0x891d => "TTEthernet",
        0x893a => "IEEE 1905.1",
        0x892f => "HSR",
        0x9000 => "loopback test",
        _ => return None,
    })
}

/// Names for the PPP control protocols a PPPoE or PPP link carries between datagrams.
fn ppp_protocol_name(p: u16) -> Option<&'static str> {
    Some(match p {
        0x8021 => "IPCP",
        0x8057 => "IPV6CP",
        0xc021 => "LCP",
        0xc023 => "PAP",
        0xc223 => "CHAP",
        0x80fd => "CCP",
        0x00fd => "compressed datagram",
        0x0281 => "MPLS",
        _ => return None,
    })
}

/// Names for what Cisco HDLC links carry besides IP.
fn cisco_hdlc_protocol_name(p: u16) -> Option<&'static str> {
    Some(match p {
        0x8035 => "SLARP",
        0x2000 => "CDP",
        0xfefe => "OSI",
        _ => return None,
    })
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Skip::UnsupportedLinkType(l) => match DataLink::from(l) {
                DataLink::Unknown(_) => write!(f, "unsupported link type {l}"),
                name => write!(f, "unsupported link type {l} ({name:?})"),
            },
            Skip::NotIp(t) => match ethertype_name(t) {
                Some(name) => write!(f, "not IP (ethertype 0x{t:04x} {name})"),
                None => write!(f, "not IP (ethertype 0x{t:04x})"),
            },
            Skip::Llc => f.write_str("not IP (802.3 LLC frame)"),
            Skip::NotIpLinuxProtocol(p) => write!(f, "not IP (linux sll protocol 0x{p:04x})"),
            Skip::NotIpPpp(p) => match ppp_protocol_name(p) {
                Some(name) => write!(f, "not IP (ppp protocol 0x{p:04x} {name})"),
                None => write!(f, "not IP (ppp protocol 0x{p:04x})"),
            },
            Skip::NotIpMpls => f.write_str("not IP (mpls payload)"),
            Skip::NotIpCiscoHdlc(p) => match cisco_hdlc_protocol_name(p) {
                Some(name) => write!(f, "not IP (cisco hdlc protocol 0x{p:04x} {name})"),
                None => write!(f, "not IP (cisco hdlc protocol 0x{p:04x})"),
            },
            Skip::NflogWithoutPayload => f.write_str("not IP (nflog message without payload)"),
            Skip::NotIpFamily(af) => write!(f, "not IP (address family {af})"),
            Skip::NotIpVersion(v) => write!(f, "not IP (version nibble {v})"),
            Skip::Truncated { layer, offset } => {
                write!(f, "truncated {}", layer.name())?;
                at_byte(f, offset)
            }
            Skip::Malformed {
                layer,
                offset,
                problem,
            } => {
                write!(f, "malformed {}", layer.name())?;
                at_byte(f, offset)?;
                write!(f, ": {problem}")
            }
        }
    }
}

/// Headers at the start of the frame need no offset; later ones say where they start.
fn at_byte(f: &mut fmt::Formatter<'_>, offset: usize) -> fmt::Result {
    if offset == 0 {
        Ok(())
    } else {
        write!(f, " at byte {offset}")
    }
}
