//! ICMP and ICMPv6: echo identifiers, and for errors the tuple of the quoted packet and
//! a digest of the parts of it that NAT leaves alone.

use twox_hash::XxHash3_64;

use super::clip;
use super::ip::{quoted_ports, view};
use super::skip::{Layer, Skip};
use super::transport::{
    gre_header_len, Segment, Transport, IPPROTO_GRE, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP,
    IPPROTO_TCP, IPPROTO_UDP,
};
use std::hash::Hasher as _;
use std::net::IpAddr;

use crate::model::{Proto, Tuple, L4};

const ICMP_HEADER_LEN: usize = 8;
const IPV4_FIXED_HEADER_LEN: usize = 20;
const IPV6_HEADER_LEN: usize = 40;

/// Echo request and reply (RFC 792, RFC 4443 4.1-4.2): the messages conntrack keys by
/// their identifier.
pub(super) fn is_echo(proto: Proto, icmp_type: u8) -> bool {
    match proto {
        Proto::Icmp => matches!(icmp_type, 0 | 8),
        Proto::Icmpv6 => matches!(icmp_type, 128 | 129),
        _ => false,
    }
}

/// Error messages that quote the packet they are about, as the kernel counts them
/// (`icmp_is_err()` and `icmpv6_is_err()` in include/linux/icmp.h and icmpv6.h):
/// destination unreachable, source quench, redirect, time exceeded, parameter problem
/// (RFC 792); for ICMPv6 destination unreachable, packet too big, time exceeded and
/// parameter problem (RFC 4443). conntrack treats exactly these as RELATED. Everything
/// else (echo, router and neighbour discovery, MLD, timestamps, ...) is not an error.
pub(crate) fn is_error(proto: Proto, icmp_type: u8) -> bool {
    match proto {
        Proto::Icmp => matches!(icmp_type, 3 | 4 | 5 | 11 | 12),
        Proto::Icmpv6 => matches!(icmp_type, 1..=4),
        _ => false,
    }
}

/// Reads an ICMP (`v6 = false`) or ICMPv6 message.
pub(super) fn read(seg: &Segment<'_>, v6: bool) -> Result<Transport, Skip> {
    let (proto, layer) = if v6 {
        (Proto::Icmpv6, Layer::Icmpv6)
    } else {
        (Proto::Icmp, Layer::Icmp)
    };
    let h: &[u8; ICMP_HEADER_LEN] = seg.header(layer)?;
    let (icmp_type, code) = (h[0], h[1]);
    let body = seg.after(ICMP_HEADER_LEN);
    let payload_len = seg.len.saturating_sub(ICMP_HEADER_LEN);
    let icmp = |echo, quoted| L4::Icmp {
        icmp_type,
        code,
        echo,
        quoted,
        mtu: next_hop_mtu(proto, h),
    };
    if is_echo(proto, icmp_type) {
        let id = u16::from_be_bytes([h[4], h[5]]);
        let seq = u16::from_be_bytes([h[6], h[7]]);
        return Ok(Transport {
            sport: id,
            dport: 0,
            l4: icmp(Some((id, seq)), None),
            payload_len,
            digest: seg.digest(body),
            head: None,
        });
    }
    if is_error(proto, icmp_type) {
        let (quoted, digest) = quoted_packet(h, body);
        return Ok(Transport {
            sport: 0,
            dport: 0,
            l4: icmp(None, quoted),
            payload_len,
            digest: if seg.digests { digest } else { 0 },
            head: None,
        });
    }
    Ok(Transport {
        sport: 0,
        dport: 0,
        l4: icmp(None, None),
        payload_len,
        digest: seg.digest(body),
        head: None,
    })
}

/// The MTU of the next hop that a "fragmentation needed" (ICMP type 3 code 4, RFC 1191
/// 4: the low 16 bits of the rest of the header) or a "packet too big" (ICMPv6 type 2,
/// RFC 4443 3.2: all 32 bits) announces.
fn next_hop_mtu(proto: Proto, h: &[u8; ICMP_HEADER_LEN]) -> Option<u32> {
    match (proto, h[0], h[1]) {
        (Proto::Icmp, 3, 4) => Some(u32::from(u16::from_be_bytes([h[6], h[7]]))),
        (Proto::Icmpv6, 2, _) => Some(u32::from_be_bytes([h[4], h[5], h[6], h[7]])),
        _ => None,
    }
}

/// The tuple of the packet an ICMP error quotes (when its header and ports were
/// captured) and the NAT-invariant digest of the error: the outer type, code and
/// rest-of-header (MTU, pointer), then the quoted packet without addresses, ports and
/// checksums, which `nf_nat_icmp_reply_translation()` (net/netfilter/nf_nat_proto.c)
/// rewrites in the quoted header as well.
fn quoted_packet(outer: &[u8; ICMP_HEADER_LEN], quoted: &[u8]) -> (Option<Tuple>, u64) {
    let mut h = XxHash3_64::default();
    h.write(&outer[..2]);
    h.write(&outer[4..]);
    // The quoted packet is cut wherever the router stopped quoting, so its own length
    // fields never stand in for anything here.
    let Ok((v, ext_err)) = view(quoted, 0) else {
        return (None, h.finish());
    };
    // IPv4: everything before the checksum (version, TOS, total length, ID, flags,
    // fragment offset, TTL, protocol), then the options. IPv6: everything before the
    // addresses (version, traffic class, flow label, payload length, next header, hop
    // limit).
    let fixed_header_len = match v.src {
        IpAddr::V4(_) => {
            h.write(clip(quoted, 0, 10));
            IPV4_FIXED_HEADER_LEN
        }
        IpAddr::V6(_) => {
            h.write(clip(quoted, 0, 8));
            IPV6_HEADER_LEN
        }
    };
    // IPv4 options, AH, IPv6 extension headers: nothing NAT touches.
    h.write(clip(quoted, fixed_header_len, v.l4_start));
    if v.non_first_fragment {
        h.write(v.l4);
    } else {
        hash_quoted_l4(&mut h, v.proto, v.l4);
    }

    let proto = Proto::from_number(v.proto);
    let ports = match (ext_err, v.non_first_fragment) {
        // Cut inside the extension headers: the protocol number is an extension header's.
        (Some(_), false) => None,
        (_, true) if proto.has_ports() || proto.is_icmp() => None,
        (_, true) => Some((0, 0)),
        (None, false) => quoted_ports(proto, v.l4),
    };
    let tuple = ports.map(|(sport, dport)| Tuple {
        proto,
        src: v.src,
        sport,
        dst: v.dst,
        dport,
    });
    (tuple, h.finish())
}

/// Feeds the quoted transport header and payload to `h`, leaving out ports and
/// checksums (and the echo identifier, ICMP's port).
fn hash_quoted_l4(h: &mut XxHash3_64, proto: u8, l4: &[u8]) {
    const ALL: usize = usize::MAX;
    let keep: &[(usize, usize)] = match proto {
        // Sequence, acknowledgment, offset, flags, window; then urgent pointer, options, data.
        IPPROTO_TCP => &[(4, 16), (18, ALL)],
        // Length; then data.
        IPPROTO_UDP => &[(4, 6), (8, ALL)],
        // Verification tag; then chunks.
        IPPROTO_SCTP => &[(4, 8), (12, ALL)],
        IPPROTO_ICMP | IPPROTO_ICMPV6 => {
            let proto = Proto::from_number(proto);
            let echo = l4.first().is_some_and(|&t| is_echo(proto, t));
            // Type and code; then the sequence number (echo) or the rest of the header,
            // and the data.
            if echo {
                &[(0, 2), (6, ALL)]
            } else {
                &[(0, 2), (4, ALL)]
            }
        }
        IPPROTO_GRE => {
            h.write(l4.get(gre_header_len(l4)..).unwrap_or_default());
            return;
        }
        _ => &[(0, ALL)],
    };
    for &(start, end) in keep {
        h.write(clip(l4, start, end));
    }
}
