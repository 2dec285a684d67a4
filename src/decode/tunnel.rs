//! Tunnel headers: whether an IP packet's payload is a tunnel natcheck opens (IP in IP,
//! GRE, ERSPAN, VXLAN, Geneve, Teredo) and, if so, where the packet it carries starts.
//! Each header is a few fixed bytes read by hand, so a cut or impossible one is
//! reported at its byte offset. `mod.rs` decodes what the tunnel carries with the link
//! and IP code every frame goes through.

use super::ip::Carried;
use super::link::Net;
use super::shim::{ETHERTYPE_IPV4, ETHERTYPE_IPV6};
use super::skip::{Layer, Problem, Skip};
use super::transport::{gre_header_len, IPPROTO_GRE, IPPROTO_UDP};
use super::{array, be16, Options};
use crate::model::{Packet, TunnelKind};

const IPPROTO_IPIP: u8 = 4;
const IPPROTO_IPV6: u8 = 41;
const UDP_HEADER_LEN: usize = 8;
/// Transparent Ethernet bridging: an Ethernet frame follows.
const ETHERTYPE_TEB: u16 = 0x6558;
const ETHERTYPE_ERSPAN_2: u16 = 0x88be;
const ETHERTYPE_ERSPAN_3: u16 = 0x22eb;
const GENEVE_PORT: u16 = 6081;
const TEREDO_PORT: u16 = 3544;
const IPV6_HEADER_LEN: usize = 40;

/// What a tunnel header leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Inner {
    /// An Ethernet frame starting at this offset of the frame.
    Ethernet(usize),
    /// An IP packet starting at this offset, of the version the tunnel announced.
    Ip(usize, Net),
}

/// A tunnel header natcheck opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Opened {
    pub kind: TunnelKind,
    /// VNI, GRE key or ERSPAN session ID.
    pub id: Option<u32>,
    pub inner: Inner,
}

/// Whether the payload of `outer` (whose segment lies at `c` in `data`) is a tunnel, and
/// where what it carries starts. `Ok(None)`: not a tunnel (or not one natcheck opens), the
/// outer packet is the packet. `Err`: a tunnel header that is cut or impossible.
pub(super) fn open(
    data: &[u8],
    outer: &Packet,
    c: &Carried,
    opts: &Options,
) -> Result<Option<Opened>, Skip> {
    let data = data.get(..c.end).unwrap_or_default();
    let v4 = outer.tuple.src.is_ipv4();
    let ip = |kind, net| {
        Ok(Some(Opened {
            kind,
            id: None,
            inner: Inner::Ip(c.start, net),
        }))
    };
    match (c.proto, v4) {
        (IPPROTO_IPIP, true) => ip(TunnelKind::Ipip, Net::V4),
        (IPPROTO_IPIP, false) => ip(TunnelKind::Ip4ip6, Net::V4),
        (IPPROTO_IPV6, true) => ip(TunnelKind::Sit, Net::V6),
        (IPPROTO_IPV6, false) => ip(TunnelKind::Ip6ip6, Net::V6),
        (IPPROTO_GRE, _) => gre(data, c.start),
        (IPPROTO_UDP, _) => {
            let at = c.start + UDP_HEADER_LEN;
            let sent = c.sent_end.saturating_sub(at);
            let (sport, dport) = (outer.tuple.sport, outer.tuple.dport);
            if opts.vxlan_ports.contains(&dport) {
                vxlan(data, at, sent)
            } else if dport == GENEVE_PORT {
                geneve(data, at, sent)
            } else if v4 && (sport == TEREDO_PORT || dport == TEREDO_PORT) {
                teredo(data, at, sent)
            } else {
                Ok(None)
            }
        }
        _ => Ok(None),
    }
}

fn truncated(layer: Layer, offset: usize) -> Skip {
    Skip::Truncated { layer, offset }
}

/// GRE version 0 (RFC 2784, with RFC 2890's key and sequence number) at `at`: IP, an
/// Ethernet frame (transparent Ethernet bridging) or ERSPAN. Version 1 (PPTP) and
/// headers with the deprecated routing bit are not opened, nor other payloads.
fn gre(data: &[u8], at: usize) -> Result<Option<Opened>, Skip> {
    const CHECKSUM: u8 = 0x80;
    const ROUTING: u8 = 0x40;
    const KEY: u8 = 0x20;
    const SEQUENCE: u8 = 0x10;
    let Some(h) = array::<4>(data, at) else {
        // Too little of the header to know what it carries: the GRE packet stays.
        return Ok(None);
    };
    let (flags, version) = (h[0], h[1] & 0x07);
    if version != 0 || flags & ROUTING != 0 {
        return Ok(None);
    }
    let protocol = u16::from_be_bytes([h[2], h[3]]);
    if !matches!(
        protocol,
        ETHERTYPE_IPV4 | ETHERTYPE_IPV6 | ETHERTYPE_TEB | ETHERTYPE_ERSPAN_2 | ETHERTYPE_ERSPAN_3
    ) {
        return Ok(None);
    }
    let gre_bytes = data.get(at..).unwrap_or_default();
    let len = gre_header_len(gre_bytes);
    if gre_bytes.len() < len {
        return Err(truncated(Layer::Gre, at));
    }
    let key_at = at + 4 + usize::from(flags & CHECKSUM != 0) * 4;
    let key = (flags & KEY != 0)
        .then(|| array::<4>(data, key_at).map(|k| u32::from_be_bytes(*k)))
        .flatten();
    let inner = at + len;
    let opened = |kind, id, inner| Ok(Some(Opened { kind, id, inner }));
    match protocol {
        ETHERTYPE_IPV4 => opened(TunnelKind::Gre, key, Inner::Ip(inner, Net::V4)),
        ETHERTYPE_IPV6 => opened(TunnelKind::Gre, key, Inner::Ip(inner, Net::V6)),
        ETHERTYPE_TEB => opened(TunnelKind::Gre, key, Inner::Ethernet(inner)),
        // ERSPAN type I has no sequence number and no header of its own.
        ETHERTYPE_ERSPAN_2 if flags & SEQUENCE == 0 => {
            opened(TunnelKind::Erspan, None, Inner::Ethernet(inner))
        }
        ETHERTYPE_ERSPAN_2 => erspan2(data, inner),
        _ => erspan3(data, inner),
    }
}

/// The ERSPAN session ID: the low 10 bits of bytes 2 and 3 of types II and III.
fn session_id(h: &[u8]) -> Option<u32> {
    Some(u32::from(be16(h, 2)? & 0x03ff))
}

/// ERSPAN type II: an 8-byte header (version 1), then the mirrored Ethernet frame.
fn erspan2(data: &[u8], at: usize) -> Result<Option<Opened>, Skip> {
    const LEN: usize = 8;
    let h: &[u8; LEN] = array(data, at).ok_or(truncated(Layer::Erspan, at))?;
    erspan_version(h[0] >> 4, 1, at)?;
    Ok(Some(Opened {
        kind: TunnelKind::Erspan,
        id: session_id(h),
        inner: Inner::Ethernet(at + LEN),
    }))
}

/// ERSPAN type III: a 12-byte header (version 2), 8 more bytes of platform-specific
/// subheader when its O bit is set, then the mirrored frame: Ethernet (frame type 0)
/// or IP (frame type 2).
fn erspan3(data: &[u8], at: usize) -> Result<Option<Opened>, Skip> {
    const LEN: usize = 12;
    const PLATFORM_LEN: usize = 8;
    let h: &[u8; LEN] = array(data, at).ok_or(truncated(Layer::Erspan, at))?;
    erspan_version(h[0] >> 4, 2, at)?;
    let mut inner = at + LEN;
    if h[11] & 0x01 != 0 {
        array::<PLATFORM_LEN>(data, inner).ok_or(truncated(Layer::Erspan, at))?;
        inner += PLATFORM_LEN;
    }
    let inner = match (h[10] >> 2) & 0x1f {
        0 => Inner::Ethernet(inner),
        2 => Inner::Ip(inner, Net::Either),
        frame_type => {
            return Err(Skip::Malformed {
                layer: Layer::Erspan,
                offset: at,
                problem: Problem::FrameType(frame_type),
            })
        }
    };
    Ok(Some(Opened {
        kind: TunnelKind::Erspan,
        id: session_id(h),
        inner,
    }))
}

fn erspan_version(version: u8, want: u8, at: usize) -> Result<(), Skip> {
    if version == want {
        Ok(())
    } else {
        Err(Skip::Malformed {
            layer: Layer::Erspan,
            offset: at,
            problem: Problem::Version(version),
        })
    }
}

/// The 24-bit VNI in bytes 4 to 6 of a VXLAN or Geneve header.
fn vni(h: &[u8; 8]) -> u32 {
    u32::from_be_bytes([0, h[4], h[5], h[6]])
}

/// VXLAN (RFC 7348) at `at`, `sent` bytes of UDP payload: an 8-byte header whose I flag
/// says the VNI is valid, then an Ethernet frame. A payload without the I flag, or too
/// short for the header, is not VXLAN.
fn vxlan(data: &[u8], at: usize, sent: usize) -> Result<Option<Opened>, Skip> {
    const LEN: usize = 8;
    const FLAG_I: u8 = 0x08;
    match data.get(at) {
        Some(flags) if flags & FLAG_I != 0 && sent >= LEN => {}
        _ => return Ok(None),
    }
    let h: &[u8; LEN] = array(data, at).ok_or(truncated(Layer::Vxlan, at))?;
    Ok(Some(Opened {
        kind: TunnelKind::Vxlan,
        id: Some(vni(h)),
        inner: Inner::Ethernet(at + LEN),
    }))
}

/// Geneve (RFC 8926) at `at`: version 0, options length in 4-byte words, protocol
/// (an Ethernet frame or IP), VNI; then the options and what the protocol names. Other
/// versions and protocols are not opened.
fn geneve(data: &[u8], at: usize, sent: usize) -> Result<Option<Opened>, Skip> {
    const LEN: usize = 8;
    let (Some(&first), Some(protocol)) = (data.get(at), be16(data, at + 2)) else {
        return Ok(None);
    };
    let inner = |offset| match protocol {
        ETHERTYPE_TEB => Some(Inner::Ethernet(offset)),
        ETHERTYPE_IPV4 => Some(Inner::Ip(offset, Net::V4)),
        ETHERTYPE_IPV6 => Some(Inner::Ip(offset, Net::V6)),
        _ => None,
    };
    let header_len = LEN + usize::from(first & 0x3f) * 4;
    let Some(inner) = inner(at + header_len).filter(|_| first >> 6 == 0 && sent >= header_len)
    else {
        return Ok(None);
    };
    let h: &[u8; LEN] = array(data, at).ok_or(truncated(Layer::Geneve, at))?;
    if data.len() < at + header_len {
        return Err(truncated(Layer::Geneve, at));
    }
    Ok(Some(Opened {
        kind: TunnelKind::Geneve,
        id: Some(vni(h)),
        inner,
    }))
}

/// Teredo (RFC 4380 5.1.1) at `at`: an optional authentication header (indicator
/// 0x0001), an optional origin indication (0x0000), then an IPv6 packet that fills the
/// rest of the UDP payload. A payload that does not hold one is not Teredo.
fn teredo(data: &[u8], mut at: usize, sent: usize) -> Result<Option<Opened>, Skip> {
    const AUTH: u16 = 0x0001;
    const ORIGIN: u16 = 0x0000;
    const ORIGIN_LEN: usize = 8;
    /// Nonce (8) and confirmation byte (1) after the client identifier and value.
    const AUTH_TAIL: usize = 9;
    let end = at + sent;
    let mut headers = false;
    if be16(data, at) == Some(AUTH) {
        let h: &[u8; 4] = array(data, at).ok_or(truncated(Layer::Teredo, at))?;
        let len = 4 + usize::from(h[2]) + usize::from(h[3]) + AUTH_TAIL;
        if data.len() < at + len {
            return Err(truncated(Layer::Teredo, at));
        }
        at += len;
        headers = true;
    }
    if be16(data, at) == Some(ORIGIN) {
        array::<ORIGIN_LEN>(data, at).ok_or(truncated(Layer::Teredo, at))?;
        at += ORIGIN_LEN;
        headers = true;
    }
    // The IPv6 header's payload length must account for the rest of the datagram.
    let payload_len = match (data.get(at), be16(data, at + 4)) {
        (Some(b), Some(len)) if b >> 4 == 6 => usize::from(len),
        // Headers seen, the packet after them cut: the IP layer says where.
        (_, None) if headers && at < end => {
            return Ok(Some(Opened {
                kind: TunnelKind::Teredo,
                id: None,
                inner: Inner::Ip(at, Net::V6),
            }))
        }
        _ => return Ok(None),
    };
    if at + IPV6_HEADER_LEN + payload_len != end {
        return Ok(None);
    }
    Ok(Some(Opened {
        kind: TunnelKind::Teredo,
        id: None,
        inner: Inner::Ip(at, Net::V6),
    }))
}
