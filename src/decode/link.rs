//! Link-layer headers, read by hand: each is a fixed layout of a few bytes, and reading
//! them here gives exact offsets for skip reasons. The result says where the IP header
//! starts and which IP version the link layer announced. What sits between a link
//! header and IP (PPPoE, PPP, Cisco HDLC, MPLS) is `shim.rs`; NFLOG's TLVs `nflog.rs`.

use super::shim::{self, Shim};
use super::skip::{Layer, Skip};
use super::{array, be16, nflog};
use crate::model::LinkDir;

pub const LINKTYPE_NULL: u32 = 0;
pub const LINKTYPE_ETHERNET: u32 = 1;
pub const LINKTYPE_PPP: u32 = 9;
pub const LINKTYPE_PPP_HDLC: u32 = 50;
pub const LINKTYPE_C_HDLC: u32 = 104;
/// DLT_RAW as most systems number it; some old files carry the DLT value, not 101.
pub const DLT_RAW_12: u32 = 12;
/// DLT_RAW as OpenBSD numbers it.
pub const DLT_RAW_14: u32 = 14;
pub const LINKTYPE_RAW: u32 = 101;
pub const LINKTYPE_LOOP: u32 = 108;
pub const LINKTYPE_LINUX_SLL: u32 = 113;
pub const LINKTYPE_NFLOG: u32 = 239;
pub const LINKTYPE_IPV4: u32 = 228;
pub const LINKTYPE_IPV6: u32 = 229;
pub const LINKTYPE_LINUX_SLL2: u32 = 276;

const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
/// The pre-802.1ad QinQ outer tag some switches still emit.
const ETHERTYPE_QINQ_OLD: u16 = 0x9100;
/// IEEE 802.1BR E-Tag: like a VLAN tag, but 8 bytes (TPID, 6 bytes of E-TCI).
const ETHERTYPE_ETAG: u16 = 0x893f;
/// Type/length values up to 1500 are 802.3 lengths, not ethertypes (IEEE 802.3 clause 3.2.6).
const MAX_8023_LENGTH: u16 = 0x05dc;
/// Linux SLL protocol values below this are `ETH_P_*` pseudo-protocols, not ethertypes.
const MIN_ETHERTYPE: u16 = 0x0600;

/// Which IP version the link layer says follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Net {
    V4,
    V6,
    /// Raw IP: the version nibble decides.
    Either,
}

/// What the link layer told us about a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    /// Offset of the IP header in the frame.
    pub offset: usize,
    pub net: Net,
    pub dir: Option<LinkDir>,
    pub ifindex: Option<u32>,
}

/// Reads the link-layer header(s) of `data` for pcap link type `linktype`.
pub fn parse(linktype: u32, data: &[u8]) -> Result<Link, Skip> {
    match linktype {
        LINKTYPE_ETHERNET => ethernet(data, 0),
        LINKTYPE_LINUX_SLL => sll(data),
        LINKTYPE_LINUX_SLL2 => sll2(data),
        LINKTYPE_RAW | DLT_RAW_12 | DLT_RAW_14 => Ok(raw(Net::Either)),
        LINKTYPE_IPV4 => Ok(raw(Net::V4)),
        LINKTYPE_IPV6 => Ok(raw(Net::V6)),
        LINKTYPE_NULL | LINKTYPE_LOOP => loopback(data),
        LINKTYPE_PPP | LINKTYPE_PPP_HDLC => shim::ppp_frame(data).map(via),
        LINKTYPE_C_HDLC => shim::cisco_hdlc(data).map(via),
        LINKTYPE_NFLOG => nflog::payload(data).map(via),
        other => Err(Skip::UnsupportedLinkType(other)),
    }
}

/// The IP header that headers between the link layer and IP lead to, on link types
/// that say nothing of direction or interface.
fn via(shim: Shim) -> Link {
    Link {
        offset: shim.offset,
        net: shim.net,
        dir: None,
        ifindex: None,
    }
}

fn raw(net: Net) -> Link {
    Link {
        offset: 0,
        net,
        dir: None,
        ifindex: None,
    }
}

/// An Ethernet frame starting at `start` in `data`: the frame itself, or one a tunnel
/// carries.
pub(super) fn ethernet(data: &[u8], start: usize) -> Result<Link, Skip> {
    const LEN: usize = 14;
    let ethertype = be16(data, start + 12).ok_or(Skip::Truncated {
        layer: Layer::Ethernet,
        offset: start,
    })?;
    if ethertype <= MAX_8023_LENGTH {
        return Err(Skip::Llc);
    }
    after_ethertype(data, start + LEN, ethertype, None, None)
}

/// LINUX_SLL (libpcap `sll.h`): packet type (2), ARPHRD type (2), address length (2),
/// address (8), protocol (2).
fn sll(data: &[u8]) -> Result<Link, Skip> {
    const LEN: usize = 16;
    let h: &[u8; LEN] = array(data, 0).ok_or(Skip::Truncated {
        layer: Layer::LinuxSll,
        offset: 0,
    })?;
    // The packet type is a 16-bit field holding values 0..=7.
    let dir = if h[0] == 0 { link_dir(h[1]) } else { None };
    let protocol = u16::from_be_bytes([h[14], h[15]]);
    sll_protocol(data, LEN, protocol, dir, None)
}

/// LINUX_SLL2 (libpcap `sll.h`): protocol (2), reserved (2), interface index (4),
/// ARPHRD type (2), packet type (1), address length (1), address (8).
fn sll2(data: &[u8]) -> Result<Link, Skip> {
    const LEN: usize = 20;
    let h: &[u8; LEN] = array(data, 0).ok_or(Skip::Truncated {
        layer: Layer::LinuxSll2,
        offset: 0,
    })?;
    let protocol = u16::from_be_bytes([h[0], h[1]]);
    let ifindex = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
    sll_protocol(data, LEN, protocol, link_dir(h[10]), Some(ifindex))
}

/// `sll_pkttype` (linux/if_packet.h): HOST, BROADCAST, MULTICAST and OTHERHOST were
/// received, OUTGOING was sent. LOOPBACK/USER/KERNEL say nothing about direction.
fn link_dir(pkttype: u8) -> Option<LinkDir> {
    match pkttype {
        0..=3 => Some(LinkDir::In),
        4 => Some(LinkDir::Out),
        _ => None,
    }
}

fn sll_protocol(
    data: &[u8],
    offset: usize,
    protocol: u16,
    dir: Option<LinkDir>,
    ifindex: Option<u32>,
) -> Result<Link, Skip> {
    if protocol < MIN_ETHERTYPE {
        return Err(Skip::NotIpLinuxProtocol(protocol));
    }
    after_ethertype(data, offset, protocol, dir, ifindex)
}

/// Follows VLAN tags (any number, any mix of 802.1Q, 802.1ad and 802.1BR E-Tags), then
/// what the ethertype names ([`shim::after_ethertype`]: IP, a PPPoE session, an MPLS
/// label stack), to the IP header. libpcap re-inserts stripped tags into SLL captures
/// as well, so the cooked link types go through here too.
fn after_ethertype(
    data: &[u8],
    mut offset: usize,
    mut ethertype: u16,
    dir: Option<LinkDir>,
    ifindex: Option<u32>,
) -> Result<Link, Skip> {
    loop {
        // A tag is its TCI (2, or 6 for an E-Tag) then the next ethertype (2).
        let tci_len = match ethertype {
            ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_OLD => 2,
            ETHERTYPE_ETAG => 6,
            _ => break,
        };
        ethertype = be16(data, offset + tci_len).ok_or(Skip::Truncated {
            layer: Layer::Vlan,
            offset,
        })?;
        offset += tci_len + 2;
    }
    let shim = match ethertype {
        t if t <= MAX_8023_LENGTH => return Err(Skip::Llc),
        t => shim::after_ethertype(data, offset, t)?,
    };
    Ok(Link {
        offset: shim.offset,
        net: shim.net,
        dir,
        ifindex,
    })
}

/// LINKTYPE_NULL / LINKTYPE_LOOP: a 4-byte address family. NULL stores it in the
/// capturing host's byte order and LOOP in network order, but files from the wild mix
/// them up, so both orders are tried (the values cannot collide: a family is small).
fn loopback(data: &[u8]) -> Result<Link, Skip> {
    const LEN: usize = 4;
    let bytes: [u8; 4] =
        data.get(..LEN)
            .and_then(|b| b.try_into().ok())
            .ok_or(Skip::Truncated {
                layer: Layer::Loopback,
                offset: 0,
            })?;
    let le = u32::from_le_bytes(bytes);
    let be = u32::from_be_bytes(bytes);
    let net = family(le)
        .or_else(|| family(be))
        .ok_or(Skip::NotIpFamily(le.min(be)))?;
    Ok(Link {
        offset: LEN,
        net,
        dir: None,
        ifindex: None,
    })
}

/// AF_INET is 2 everywhere; AF_INET6 is 24 on NetBSD/OpenBSD (and Npcap), 28 on
/// FreeBSD, 30 on macOS (the LINKTYPE_NULL description at tcpdump.org lists them) and
/// 10 on Linux.
fn family(af: u32) -> Option<Net> {
    match af {
        2 => Some(Net::V4),
        10 | 24 | 28 | 30 => Some(Net::V6),
        _ => None,
    }
}
