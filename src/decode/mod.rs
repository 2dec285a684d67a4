//! decode: one captured frame (its pcap link type and bytes) into an owned [`Packet`]
//! summary, or a [`Skip`] saying why there is none.
//!
//! Layers and who reads them:
//! - link (`link.rs`, `shim.rs`, `nflog.rs`, by hand): ETHERNET with any stack of
//!   802.1Q/802.1ad tags and 802.1BR E-Tags, then IP directly, in a PPPoE session or
//!   under an MPLS label stack; LINUX_SLL and LINUX_SLL2 the same way; RAW (101, and
//!   the DLT values 12/14 old files carry), IPV4, IPV6, NULL and LOOP; PPP and
//!   PPP_HDLC (IP, or MPLS then IP, behind the PPP protocol field), C_HDLC (Cisco HDLC);
//!   NFLOG (the packet an iptables/nftables NFLOG rule logged). SLL/SLL2 packet types
//!   become [`LinkDir`](crate::model::LinkDir), the SLL2 interface index becomes
//!   [`Decoded::ifindex`].
//! - tunnels (`tunnel.rs`, by hand): once an IP packet decodes and is not a fragment,
//!   its payload is opened when it is a tunnel and the packet inside is decoded instead
//!   (by the same link and IP code: VLAN tags, MPLS or PPPoE inside an Ethernet frame
//!   are followed), up to [`MAX_TUNNEL_DEPTH`] tunnels deep: IP protocol 4 and 41 (IP in
//!   IP: `ipip`, `sit`, `ip4ip6`, `ip6ip6` by outer and inner version); GRE version 0
//!   with any of its checksum, key and sequence fields, carrying IPv4, IPv6, an Ethernet
//!   frame (0x6558) or ERSPAN (0x88be: type I without a sequence number, type II with
//!   its 8-byte header; 0x22eb: type III, 12 bytes plus 8 when its O bit is set, an
//!   Ethernet frame or, for frame type 2, IP); UDP to a VXLAN port ([`Options`], 4789
//!   and 8472 by default; the 8-byte header with its I flag, then Ethernet), to 6081
//!   (Geneve version 0 with its options, carrying Ethernet, IPv4 or IPv6), or from or
//!   to 3544 over IPv4 (Teredo: optional authentication and origin indication headers,
//!   then an IPv6 packet that fills the rest of the datagram). GRE version 1 (PPTP),
//!   other GRE payloads, UDP to those ports that does not hold such a header (no I
//!   flag, another Geneve version or protocol, no IPv6 packet after Teredo's headers)
//!   and a tunnel whose inner frame is not IP (ARP, ...) are not opened: the outer packet
//!   is the packet. A tunnel header, or the packet inside, that is cut or impossible is
//!   a [`Skip`] naming that header and where it starts. The packet inside carries a
//!   [`Tunnel`]: the outermost tunnel's kind and identifier (VNI, GRE key, ERSPAN
//!   session), its outer tuple and how many tunnels were opened. A fragmented outer
//!   packet is opened after reassembly (the datagram is decoded again); a fragment
//!   inside a tunnel keeps its tunnel, and its [`Fragment`] pieces lie in the frame.
//! - IP (`ip.rs`): etherparse's lax slicer ([`etherparse::LaxIpSlice`]), which keeps
//!   packets whose tail the snaplen cut and walks IPv4 AH and IPv6 extension headers.
//! - transport (`transport.rs`, `icmp.rs`): fixed fields read by hand from length-checked
//!   slices. etherparse's lax slicer gives up on the transport layer of every fragmented
//!   payload (first fragments included) and wants a TCP header complete with its options;
//!   natcheck needs ports from first fragments and seq/ack from headers whose options the
//!   snaplen cut.
//!
//! Invariants:
//! - Never panics on input and never sizes anything from input: every read goes through a
//!   bounds-checked `get`. Nothing is allocated per frame ([`Skip`] is `Copy`; its reason
//!   string is formatted only when asked for).
//! - Checksums are never verified: packets a host sends are captured before checksum
//!   offload fills them in, and a NAT debugger must see those packets too.
//! - `ip_len` and `payload_len` are what was sent (IP length fields); everything hashed is
//!   what was captured. `truncated` is set when bytes of the IP packet that its header
//!   announces are missing from the capture. Link-layer padding or trailers cut by the
//!   snaplen do not count, so a `-s 54` capture of a padded bare ACK is not truncated.
//!   When the IP length field cannot be used (an IPv4 total length of 0, as GSO/BIG
//!   TCP packets carry, or an IPv6 payload length of 0 with data behind it, a
//!   jumbogram) the frame's wire length stands in for it. Any other IPv4 total length
//!   below the header length is impossible: the packet is malformed.
//!
//! `payload_digest` (xxh3-64) is identical on both sides of a NAT, because NAT rewrites
//! addresses, ports and checksums and nothing else, and none of those is hashed:
//! - TCP, UDP, SCTP: the bytes after the transport header (options are not payload);
//! - ICMP/ICMPv6 echo: the echo data (the identifier is NAT's "port" and is left out);
//! - ICMP/ICMPv6 errors: the outer type, code and the 4 bytes after the checksum (MTU,
//!   pointer), then the quoted packet without its addresses, ports and checksums (quoted
//!   IPv4 header minus checksum and addresses, quoted IPv6 header's first 8 bytes, any
//!   extension headers, then the quoted TCP header from the sequence number on minus the
//!   checksum, UDP length, SCTP verification tag, ICMP type/code/sequence, and whatever
//!   payload was quoted). netfilter rewrites the quoted header as well
//!   (`nf_nat_icmp_reply_translation`), so this is the part both sides share;
//! - other ICMP types: the bytes after the 8-byte ICMP header;
//! - GRE not opened as a tunnel: the bytes after the GRE header (the PPTP helper
//!   rewrites the call ID in it);
//!   other protocols: the whole IP payload (generic NAT rewrites only IP addresses);
//! - non-first fragments: the fragment data.
//!
//! TCP packets also carry `payload_head`, a digest of their first 16 payload bytes
//! when captured: segments of one stream cut to different lengths (segmentation
//! offloads) have different digests, but two that start at the same sequence number
//! share their head.
//!
//! When the snaplen cut the payload, the digest covers the captured part only. Both
//! sides of a NAT are usually captured with the same snaplen, so digests still agree;
//! with different snaplens they differ for cut packets and matching has to rely on the
//! other invariants (seq/ack, TSval, IP ID), which sit in the headers.
//!
//! IP fragments (offset ≠ 0 or more-fragments set; an IPv6 atomic fragment is a whole
//! packet) decode like packets and also yield a [`Fragment`]: where the unfragmentable
//! part and the fragment data lie in the frame, and the datagram's [`FragmentKey`].
//! [`defrag`] puts the fragments of one datagram back together (capture does this per
//! capture point), and the whole datagram is decoded once, so that it lands in its
//! flow with its ports and its digest covers the whole transport payload: fragment
//! boundaries may differ between capture points (conntrack reassembles before NAT, the
//! host fragments again on the way out), whole datagrams do not.
//!
//! Decoded on its own, a first fragment (offset 0) looks like a whole packet, with
//! `payload_len` and the digest covering this fragment's share of the transport
//! payload. A non-first fragment has no transport header: its tuple carries the
//! protocol from the IP header with both ports 0, `l4` is [`L4::Other`], `ip_id` is set
//! (IPv4 ID or IPv6 fragment identification), and `payload_len`/digest cover the
//! fragment data. [`is_non_first_fragment`] recognises them for TCP, UDP, ICMP and
//! ICMPv6, the protocols whose whole packets never decode to `L4::Other`.
//!
//! ICMP errors are the messages that quote a packet ([`is_icmp_error`]): ICMP types 3,
//! 4, 5, 11 and 12, ICMPv6 types 1 to 4. Echo, router and neighbour discovery, MLD,
//! timestamps and the other informational messages are not errors.

pub mod defrag;
mod icmp;
mod ip;
mod link;
mod nflog;
mod shim;
mod skip;
mod transport;
mod tunnel;

#[cfg(test)]
mod tests;

use std::net::{IpAddr, Ipv4Addr};

use crate::model::{Packet, Proto, Tunnel, Tuple, L4};

pub use skip::{Layer, Problem, Skip};

/// LINKTYPE_RAW: a frame that is an IP packet, as reassembled datagrams are decoded.
pub const LINKTYPE_RAW: u32 = link::LINKTYPE_RAW;

/// The link types [`decode`] reads (pcap LINKTYPE_* numbers, plus the DLT_RAW values 12
/// and 14 some old files carry). Anything else yields [`Skip::UnsupportedLinkType`].
pub const SUPPORTED_LINK_TYPES: &[u32] = &[
    link::LINKTYPE_NULL,
    link::LINKTYPE_ETHERNET,
    link::LINKTYPE_PPP,
    link::DLT_RAW_12,
    link::DLT_RAW_14,
    link::LINKTYPE_PPP_HDLC,
    link::LINKTYPE_RAW,
    link::LINKTYPE_C_HDLC,
    link::LINKTYPE_LOOP,
    link::LINKTYPE_LINUX_SLL,
    link::LINKTYPE_IPV4,
    link::LINKTYPE_IPV6,
    link::LINKTYPE_NFLOG,
    link::LINKTYPE_LINUX_SLL2,
];

/// A decoded frame: the packet summary (with `ts_ns` and `point` left 0 for the caller
/// to fill) and the interface index a LINUX_SLL2 header names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decoded {
    pub ifindex: Option<u32>,
    pub packet: Packet,
    /// Set when the packet is an IP fragment (offset ≠ 0 or more-fragments set): where
    /// its pieces lie in the frame, for [`defrag`] to put the datagram together.
    pub fragment: Option<Fragment>,
}

impl Decoded {
    /// Nothing decoded yet: what [`decode_into`] starts from.
    pub const EMPTY: Decoded = Decoded {
        ifindex: None,
        packet: Packet {
            ts_ns: 0,
            point: 0,
            link_dir: None,
            tuple: Tuple {
                proto: Proto::Other(0),
                src: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                sport: 0,
                dst: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                dport: 0,
            },
            ip_id: None,
            ttl: 0,
            df: false,
            ip_len: 0,
            l4: L4::Other,
            payload_len: 0,
            payload_digest: 0,
            payload_head: None,
            truncated: false,
            tunnel: None,
        },
        fragment: None,
    };
}

/// What identifies the datagram a fragment belongs to (RFC 791, RFC 8200 4.5): source,
/// destination, protocol of the fragmentable part, and the IPv4 identification or IPv6
/// fragment identification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FragmentKey {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub id: u32,
}

/// Where one IP fragment's pieces lie in its frame (byte ranges `(start, end)` of the
/// frame's captured bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fragment {
    pub key: FragmentKey,
    /// Byte offset of this fragment's data in the datagram's fragmentable part.
    pub offset: usize,
    /// The more-fragments flag.
    pub more: bool,
    /// The part every fragment repeats: the IPv4 header, or the IPv6 header with the
    /// extension headers before the fragment header.
    pub header: (usize, usize),
    /// IPv6: the offset, within `header`, of the byte that names the fragment header.
    pub nh_at: Option<usize>,
    /// The captured fragment data.
    pub data: (usize, usize),
    /// Length of the fragment data as sent.
    pub data_len: usize,
}

/// How many tunnels inside one another [`decode`] opens; the packet inside the last
/// one is the packet, whatever it carries.
pub const MAX_TUNNEL_DEPTH: u8 = 4;

/// What shapes decoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// UDP destination ports whose payload is VXLAN (IANA's 4789 and the 8472 of the
    /// Linux kernel's default and flannel).
    pub vxlan_ports: Vec<u16>,
    /// Whether payloads are digested (`payload_digest`, `payload_head`): what pairs
    /// packets across points, and a large part of decoding a packet. Readers that
    /// only count flows turn it off; every digest is then 0 and every head `None`.
    pub digests: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            vxlan_ports: vec![4789, 8472],
            digests: true,
        }
    }
}

/// Decodes one frame with the default [`Options`]. `linktype` is the pcap LINKTYPE_*
/// number, `data` the captured bytes and `orig_len` the frame's length on the wire.
///
/// Only the low 16 bits of `linktype` name the link type: a pcap file header keeps FCS
/// length bits in the upper ones (libpcap's `LT_LINKTYPE()` masks them off the same
/// way). A trailing FCS never reaches the digest: the IP length fields bound the packet.
pub fn decode(linktype: u32, data: &[u8], orig_len: u32) -> Result<Decoded, Skip> {
    decode_with(linktype, data, orig_len, &Options::default())
}

/// Decodes one frame (see [`decode`]), opening tunnels as `opts` says.
pub fn decode_with(
    linktype: u32,
    data: &[u8],
    orig_len: u32,
    opts: &Options,
) -> Result<Decoded, Skip> {
    let mut decoded = Decoded::EMPTY;
    decode_into(linktype, data, orig_len, opts, &mut decoded)?;
    Ok(decoded)
}

/// Decodes one frame (see [`decode_with`]) into `out`, which a reader of many frames
/// keeps from one frame to the next: the summary is written where it stays, never
/// moved. After a [`Skip`], `out` holds nothing to use.
pub fn decode_into(
    linktype: u32,
    data: &[u8],
    orig_len: u32,
    opts: &Options,
    out: &mut Decoded,
) -> Result<(), Skip> {
    let link = link::parse(linktype & 0xffff, data)?;
    out.ifindex = link.ifindex;
    let mut carried = ip::decode(data, &link, orig_len, opts.digests, out)?;
    let mut tunnel: Option<Tunnel> = None;
    let mut depth = 0;
    // A fragment is opened once reassembled: its payload is only part of the tunnel.
    while out.fragment.is_none() && depth < MAX_TUNNEL_DEPTH {
        let Some(opened) = tunnel::open(data, &out.packet, &carried, opts)? else {
            break;
        };
        let within = data.get(..carried.end).unwrap_or_default();
        let inner = match opened.inner {
            tunnel::Inner::Ip(offset, net) => link::Link {
                offset,
                net,
                ..link
            },
            tunnel::Inner::Ethernet(at) => match link::ethernet(within, at) {
                Ok(l) => link::Link {
                    dir: link.dir,
                    ifindex: link.ifindex,
                    ..l
                },
                // A frame that carries no IP (ARP, LLDP, ...): the outer packet is
                // what there is to see.
                Err(skip) if skip.is_not_ip() => break,
                Err(skip) => return Err(skip),
            },
        };
        let outer = out.packet.tuple;
        let sent = len_u32(carried.sent_end);
        carried = ip::decode(within, &inner, sent, opts.digests, out)?;
        depth += 1;
        tunnel = Some(match tunnel {
            Some(t) => Tunnel { depth, ..t },
            None => Tunnel {
                kind: opened.kind,
                depth,
                id: opened.id,
                outer,
            },
        });
    }
    out.packet.tunnel = tunnel;
    Ok(())
}

/// Whether `p` is a non-first IP fragment as [`decode`] represents it (see the module
/// docs): TCP, UDP, ICMP or ICMPv6 by its IP header, with no transport header.
/// Non-first fragments of other protocols look like whole packets of those protocols.
pub fn is_non_first_fragment(p: &Packet) -> bool {
    matches!(p.l4, L4::Other)
        && matches!(
            p.tuple.proto,
            Proto::Tcp | Proto::Udp | Proto::Icmp | Proto::Icmpv6
        )
}

/// Whether an ICMP (`proto` [`Proto::Icmp`]) or ICMPv6 message of type `icmp_type`
/// is an error that quotes the packet it is about (see the module docs); echo, router
/// and neighbour discovery, MLD and the other informational messages are not.
pub fn is_icmp_error(proto: Proto, icmp_type: u8) -> bool {
    icmp::is_error(proto, icmp_type)
}

/// `N` bytes of `b` at `at`, as an array (so that fixed fields are read with constant
/// indices the compiler checks), or `None` when the slice is too short.
fn array<const N: usize>(b: &[u8], at: usize) -> Option<&[u8; N]> {
    b.get(at..at.checked_add(N)?)?.try_into().ok()
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    array(b, at).map(|a| u16::from_be_bytes(*a))
}

/// `b[start..end]` clipped to what `b` holds (empty when nothing of it is there).
fn clip(b: &[u8], start: usize, end: usize) -> &[u8] {
    let end = end.min(b.len());
    b.get(start.min(end)..end).unwrap_or_default()
}

/// Where `inner` (a sub-slice of `outer`) starts within `outer`.
fn offset_in(outer: &[u8], inner: &[u8]) -> usize {
    (inner.as_ptr() as usize).saturating_sub(outer.as_ptr() as usize)
}

/// Lengths come from 16-bit fields or from the capture's 32-bit length, so they fit a
/// `u32`; saturate rather than wrap if a hostile frame says otherwise.
fn len_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
