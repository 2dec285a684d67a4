//! Headers between a link layer and IP: what an ethertype names (IP, a PPPoE session,
//! an MPLS label stack), the PPP protocol field of PPP links and PPPoE, and Cisco HDLC.
//! Each is a few fixed bytes, read by hand; the result says where the IP header starts.

use super::link::Net;
use super::skip::{Layer, Skip};
use super::{array, be16};

pub(super) const ETHERTYPE_IPV4: u16 = 0x0800;
pub(super) const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_MPLS: u16 = 0x8847;
const ETHERTYPE_MPLS_MULTICAST: u16 = 0x8848;
const ETHERTYPE_PPPOE_SESSION: u16 = 0x8864;
/// PPP protocol numbers (RFC 1332, RFC 5072, RFC 3032) of what a PPP link carries.
const PPP_IPV4: u16 = 0x0021;
const PPP_IPV6: u16 = 0x0057;
const PPP_MPLS: u16 = 0x0281;
const PPP_MPLS_MULTICAST: u16 = 0x0283;
/// RFC 1662 3.1: the all-stations address and the unnumbered-information control byte.
const HDLC_ADDRESS: u8 = 0xff;
const HDLC_CONTROL: u8 = 0x03;
/// Cisco HDLC unicast and multicast addresses.
const CISCO_UNICAST: u8 = 0x0f;
const CISCO_MULTICAST: u8 = 0x8f;

/// Where the IP header starts, and which version the headers before it announced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shim {
    pub offset: usize,
    pub net: Net,
}

/// What follows an ethertype (after any VLAN tags) at `offset`.
pub fn after_ethertype(data: &[u8], offset: usize, ethertype: u16) -> Result<Shim, Skip> {
    match ethertype {
        ETHERTYPE_IPV4 => Ok(Shim {
            offset,
            net: Net::V4,
        }),
        ETHERTYPE_IPV6 => Ok(Shim {
            offset,
            net: Net::V6,
        }),
        ETHERTYPE_PPPOE_SESSION => pppoe_session(data, offset),
        ETHERTYPE_MPLS | ETHERTYPE_MPLS_MULTICAST => mpls(data, offset),
        t => Err(Skip::NotIp(t)),
    }
}

/// A PPPoE session header (RFC 2516 4: version and type, code, session id, length; 6
/// bytes) at `offset`, then the PPP protocol field.
fn pppoe_session(data: &[u8], offset: usize) -> Result<Shim, Skip> {
    const LEN: usize = 6;
    array::<LEN>(data, offset).ok_or(Skip::Truncated {
        layer: Layer::Pppoe,
        offset,
    })?;
    ppp_protocol(data, offset + LEN)
}

/// A frame of LINKTYPE_PPP or LINKTYPE_PPP_HDLC: the PPP protocol field, after the
/// HDLC-like address and control bytes when they are there (RFC 1662 3.1; LINKTYPE_PPP
/// may leave them out). LINKTYPE_PPP_HDLC also carries Cisco HDLC frames, told apart
/// by their address byte.
pub fn ppp_frame(data: &[u8]) -> Result<Shim, Skip> {
    match data {
        [HDLC_ADDRESS, HDLC_CONTROL, ..] => ppp_protocol(data, 2),
        [CISCO_UNICAST | CISCO_MULTICAST, ..] => cisco_hdlc(data),
        _ => ppp_protocol(data, 0),
    }
}

/// The PPP protocol field at `offset` (RFC 1661 2): two bytes, or one when protocol
/// field compression left out the leading zero (the first byte of a two-byte protocol
/// is even, a compressed one odd).
fn ppp_protocol(data: &[u8], offset: usize) -> Result<Shim, Skip> {
    let truncated = Skip::Truncated {
        layer: Layer::Ppp,
        offset,
    };
    let first = *data.get(offset).ok_or(truncated)?;
    let (protocol, len) = if first & 1 == 1 {
        (u16::from(first), 1)
    } else {
        (be16(data, offset).ok_or(truncated)?, 2)
    };
    let offset = offset + len;
    match protocol {
        PPP_IPV4 => Ok(Shim {
            offset,
            net: Net::V4,
        }),
        PPP_IPV6 => Ok(Shim {
            offset,
            net: Net::V6,
        }),
        PPP_MPLS | PPP_MPLS_MULTICAST => mpls(data, offset),
        p => Err(Skip::NotIpPpp(p)),
    }
}

/// A Cisco HDLC header (address, control, then an ethertype; 4 bytes), as
/// LINKTYPE_C_HDLC frames start.
pub fn cisco_hdlc(data: &[u8]) -> Result<Shim, Skip> {
    const LEN: usize = 4;
    let h: &[u8; LEN] = array(data, 0).ok_or(Skip::Truncated {
        layer: Layer::CiscoHdlc,
        offset: 0,
    })?;
    match u16::from_be_bytes([h[2], h[3]]) {
        t @ (ETHERTYPE_IPV4 | ETHERTYPE_IPV6 | ETHERTYPE_MPLS | ETHERTYPE_MPLS_MULTICAST) => {
            after_ethertype(data, LEN, t)
        }
        t => Err(Skip::NotIpCiscoHdlc(t)),
    }
}

/// An MPLS label stack (RFC 3032 2.1: 4-byte entries, the last with the bottom-of-stack
/// bit) at `offset`, then the payload, which carries no type: IP when its first nibble
/// is 4 or 6 (as routers and Wireshark guess), else a pseudowire or a control word.
fn mpls(data: &[u8], mut offset: usize) -> Result<Shim, Skip> {
    const ENTRY: usize = 4;
    const BOTTOM_OF_STACK: u8 = 0x01;
    loop {
        let entry: &[u8; ENTRY] = array(data, offset).ok_or(Skip::Truncated {
            layer: Layer::Mpls,
            offset,
        })?;
        offset += ENTRY;
        if entry[2] & BOTTOM_OF_STACK != 0 {
            break;
        }
    }
    let net = match data.get(offset).map(|b| b >> 4) {
        Some(4) => Net::V4,
        Some(6) => Net::V6,
        // Cut right after the stack: the IP layer names what is missing.
        None => Net::Either,
        Some(_) => return Err(Skip::NotIpMpls),
    };
    Ok(Shim { offset, net })
}
