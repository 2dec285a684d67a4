//! Byte-array tests for the decoder: every link type, the IP and transport variants,
//! cut and impossible headers, and the NAT invariance of the payload digest.

use std::net::IpAddr;

use twox_hash::XxHash3_64;

use super::*;
use crate::model::{tcp_flags, LinkDir, Proto, Tuple, L4};

mod tunnels;

// ---------------------------------------------------------------------------------------
// Frame builders. Checksums are real where NAT would rewrite them, so that the NAT test
// shows they stay out of the digest.

const A: [u8; 4] = [10, 0, 1, 2];
const B: [u8; 4] = [192, 0, 2, 2];
const NAT: [u8; 4] = [198, 51, 100, 1];
const A6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a,
];
const B6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0b,
];

fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for part in parts {
        for pair in part.chunks(2) {
            let hi = u32::from(pair[0]) << 8;
            let lo = pair.get(1).map_or(0, |&b| u32::from(b));
            sum += hi | lo;
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn ipv4_with(
    proto: u8,
    src: [u8; 4],
    dst: [u8; 4],
    id: u16,
    frag: u16,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let header_len = 20 + options.len();
    let total = (header_len + payload.len()) as u16;
    let mut h = vec![0x40 | (header_len / 4) as u8, 0];
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&id.to_be_bytes());
    h.extend_from_slice(&frag.to_be_bytes());
    h.extend_from_slice(&[64, proto, 0, 0]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend_from_slice(options);
    let c = checksum(&[&h]);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

fn ipv4(proto: u8, src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
    ipv4_with(proto, src, dst, 0x1234, 0x4000, &[], payload)
}

fn ipv6_with(
    next: u8,
    src: [u8; 16],
    dst: [u8; 16],
    payload_length: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut h = vec![0x60, 0x01, 0x23, 0x45];
    h.extend_from_slice(&payload_length.to_be_bytes());
    h.extend_from_slice(&[next, 63]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend_from_slice(payload);
    h
}

fn ipv6(next: u8, src: [u8; 16], dst: [u8; 16], payload: &[u8]) -> Vec<u8> {
    ipv6_with(next, src, dst, payload.len() as u16, payload)
}

/// TCP header with the given options (padded to 4 bytes by the caller) and payload.
/// The checksum field is set from `csum` so NAT variants can change it.
fn tcp_with(
    sport: u16,
    dport: u16,
    seq: u32,
    flags: u8,
    options: &[u8],
    csum: u16,
    payload: &[u8],
) -> Vec<u8> {
    assert_eq!(options.len() % 4, 0);
    let mut t = Vec::new();
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&seq.to_be_bytes());
    t.extend_from_slice(&0x0bad_cafe_u32.to_be_bytes());
    t.push((((20 + options.len()) / 4) << 4) as u8);
    t.push(flags);
    t.extend_from_slice(&64240u16.to_be_bytes());
    t.extend_from_slice(&csum.to_be_bytes());
    t.extend_from_slice(&[0, 0]);
    t.extend_from_slice(options);
    t.extend_from_slice(payload);
    t
}

/// NOP, NOP, timestamp(TSval, TSecr): the layout Linux sends on established segments.
fn ts_option(tsval: u32, tsecr: u32) -> Vec<u8> {
    let mut o = vec![1, 1, 8, 10];
    o.extend_from_slice(&tsval.to_be_bytes());
    o.extend_from_slice(&tsecr.to_be_bytes());
    o
}

fn udp(sport: u16, dport: u16, csum: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&csum.to_be_bytes());
    u.extend_from_slice(payload);
    u
}

fn icmp(icmp_type: u8, code: u8, rest: [u8; 4], body: &[u8]) -> Vec<u8> {
    let mut m = vec![icmp_type, code, 0, 0];
    m.extend_from_slice(&rest);
    m.extend_from_slice(body);
    let c = checksum(&[&m]);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

fn echo(icmp_type: u8, id: u16, seq: u16, data: &[u8]) -> Vec<u8> {
    let [i0, i1] = id.to_be_bytes();
    let [s0, s1] = seq.to_be_bytes();
    icmp(icmp_type, 0, [i0, i1, s0, s1], data)
}

fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Ethernet with VLAN tags: `tags` are (TPID, VLAN ID) from the outside in.
fn eth_tagged(tags: &[(u16, u16)], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    for (tpid, vid) in tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&vid.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn sll(pkttype: u16, protocol: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = pkttype.to_be_bytes().to_vec();
    f.extend_from_slice(&[0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0]);
    f.extend_from_slice(&protocol.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn sll2(protocol: u16, ifindex: u32, pkttype: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = protocol.to_be_bytes().to_vec();
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&ifindex.to_be_bytes());
    f.extend_from_slice(&[0, 1, pkttype, 6, 2, 0, 0, 0, 0, 1, 0, 0]);
    f.extend_from_slice(payload);
    f
}

fn with_prefix(prefix: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut f = prefix.to_vec();
    f.extend_from_slice(payload);
    f
}

fn ok(linktype: u32, frame: &[u8]) -> Decoded {
    match decode(linktype, frame, frame.len() as u32) {
        Ok(d) => d,
        Err(skip) => panic!("unexpected skip: {}", skip.reason()),
    }
}

fn skip(linktype: u32, frame: &[u8]) -> Skip {
    match decode(linktype, frame, frame.len() as u32) {
        Ok(d) => panic!("unexpected packet: {:?}", d.packet),
        Err(s) => s,
    }
}

fn v4(a: [u8; 4]) -> IpAddr {
    IpAddr::from(a)
}

fn v6(a: [u8; 16]) -> IpAddr {
    IpAddr::from(a)
}

const ETHERNET: u32 = 1;
const RAW: u32 = 101;
const SLL: u32 = 113;
const SLL2: u32 = 276;

/// The reference packet: Ethernet, IPv4, TCP with timestamps and 11 bytes of payload.
fn tcp_frame() -> Vec<u8> {
    let t = tcp_with(
        40000,
        80,
        0x0102_0304,
        tcp_flags::PSH | tcp_flags::ACK,
        &ts_option(1000, 2000),
        0x1111,
        b"hello world",
    );
    eth(0x0800, &ipv4(6, A, B, &t))
}

// ---------------------------------------------------------------------------------------
// Link types

#[test]
fn ethernet_ipv4_tcp_with_timestamp() {
    let d = ok(ETHERNET, &tcp_frame());
    let p = d.packet;
    assert_eq!(d.ifindex, None);
    assert_eq!(p.link_dir, None);
    assert_eq!((p.ts_ns, p.point), (0, 0));
    assert_eq!(
        p.tuple,
        Tuple {
            proto: Proto::Tcp,
            src: v4(A),
            sport: 40000,
            dst: v4(B),
            dport: 80
        }
    );
    assert_eq!(p.ip_id, Some(0x1234));
    assert_eq!(p.ttl, 64);
    assert_eq!(p.ip_len, 20 + 32 + 11);
    assert_eq!(
        p.l4,
        L4::Tcp {
            seq: 0x0102_0304,
            ack: 0x0bad_cafe,
            flags: tcp_flags::PSH | tcp_flags::ACK,
            window: 64240,
            ts: Some((1000, 2000)),
            mss: None,
        }
    );
    assert_eq!(p.payload_len, 11);
    assert_eq!(p.payload_digest, XxHash3_64::oneshot(b"hello world"));
    assert!(!p.truncated);
}

#[test]
fn dont_fragment_and_the_mss_of_a_syn() {
    // MSS 1460, SACK permitted, timestamp, NOP, window scale 7: Linux's SYN options.
    let mut o = vec![2, 4, 0x05, 0xb4, 4, 2];
    o.extend_from_slice(&ts_option(7, 0)[2..]);
    o.extend_from_slice(&[1, 3, 3, 7]);
    let syn = tcp_with(40000, 80, 1, tcp_flags::SYN, &o, 0, &[]);
    let p = ok(RAW, &ipv4(6, A, B, &syn)).packet;
    assert!(p.df);
    let L4::Tcp { mss, ts, .. } = p.l4 else {
        panic!("{:?}", p.l4)
    };
    assert_eq!((mss, ts), (Some(1460), Some((7, 0))));
    // No DF: a packet routers may fragment. IPv6 is never fragmented on the way.
    let p = ok(RAW, &ipv4_with(6, A, B, 1, 0, &[], &syn)).packet;
    assert!(!p.df);
    assert!(ok(RAW, &ipv6(6, A6, B6, &syn)).packet.df);
    // An MSS option with a wrong length, or cut by the capture, is not read.
    let bad = tcp_with(40000, 80, 1, tcp_flags::SYN, &[2, 3, 5, 1], 0, &[]);
    let L4::Tcp { mss, .. } = ok(RAW, &ipv4(6, A, B, &bad)).packet.l4 else {
        panic!()
    };
    assert_eq!(mss, None);
    let frame = ipv4(6, A, B, &syn);
    let cut = decode(RAW, &frame[..20 + 20 + 3], frame.len() as u32).unwrap();
    let L4::Tcp { mss, .. } = cut.packet.l4 else {
        panic!()
    };
    assert_eq!(mss, None);
}

#[test]
fn without_digests_packets_are_the_same_but_for_them() {
    let long = [7u8; 40];
    let tcp = tcp_with(40000, 80, 1, tcp_flags::ACK, &[], 0, &long);
    let quoted = ipv4(17, B, A, &udp(53, 40000, 0, b"dns"));
    let frames = [
        tcp_frame(),
        eth(0x0800, &ipv4(6, A, B, &tcp)),
        eth(0x0800, &ipv4(17, A, B, &udp(1000, 53, 0, b"query"))),
        eth(0x0800, &ipv4(1, A, B, &echo(8, 7, 1, b"ping"))),
        eth(0x0800, &ipv4(1, NAT, A, &icmp(3, 3, [0; 4], &quoted))),
        eth(0x86dd, &ipv6(17, A6, B6, &udp(1000, 53, 0, b"v6"))),
    ];
    let off = Options {
        digests: false,
        ..Options::default()
    };
    for frame in frames {
        let with = ok(ETHERNET, &frame);
        let without = decode_with(ETHERNET, &frame, frame.len() as u32, &off).unwrap();
        assert_ne!(with.packet.payload_digest, 0);
        let expected = Decoded {
            packet: Packet {
                payload_digest: 0,
                payload_head: None,
                ..with.packet
            },
            ..with
        };
        assert_eq!(without, expected);
    }
}

#[test]
fn tcp_payload_head_digests_the_first_sixteen_bytes_captured() {
    let long = b"GET / HTTP/1.1\r\nHost: example\r\n\r\n";
    let frame = |payload: &[u8]| {
        let t = tcp_with(40000, 80, 7, tcp_flags::ACK, &[], 0, payload);
        eth(0x0800, &ipv4(6, A, B, &t))
    };
    let whole = frame(long);
    let p = ok(ETHERNET, &whole).packet;
    assert_eq!(
        p.payload_head,
        Some(XxHash3_64::oneshot(&long[..16]) as u32)
    );
    // A shorter segment that starts alike shares it; a cut capture too, as long as
    // the sixteen bytes are there.
    let short = frame(&long[..20]);
    assert_eq!(ok(ETHERNET, &short).packet.payload_head, p.payload_head);
    let cut = &whole[..14 + 20 + 20 + 16];
    assert_eq!(ok(ETHERNET, cut).packet.payload_head, p.payload_head);
    assert_eq!(
        ok(ETHERNET, &whole[..14 + 20 + 20 + 15])
            .packet
            .payload_head,
        None
    );
    assert_eq!(
        ok(ETHERNET, &frame(b"hello world")).packet.payload_head,
        None
    );
    // Not TCP: none.
    let u = eth(0x0800, &ipv4(17, A, B, &udp(5000, 53, 0, long)));
    assert_eq!(ok(ETHERNET, &u).packet.payload_head, None);
}

#[test]
fn vlan_and_qinq_tags_are_followed() {
    let t = tcp_with(40000, 80, 7, tcp_flags::SYN, &[], 0, b"");
    let ip = ipv4(6, A, B, &t);
    let plain = ok(ETHERNET, &eth(0x0800, &ip)).packet;
    for tags in [
        vec![(0x8100, 10)],
        vec![(0x88a8, 100), (0x8100, 10)],
        vec![(0x9100, 100), (0x8100, 10)],
        vec![(0x88a8, 1), (0x88a8, 2), (0x8100, 3)],
    ] {
        let frame = eth_tagged(&tags, 0x0800, &ip);
        assert_eq!(ok(ETHERNET, &frame).packet, plain, "tags {tags:x?}");
        // A tag cut in half is a truncated tag at its own offset (TCI, then ethertype).
        let last_tag = 14 + 4 * (tags.len() - 1);
        assert_eq!(
            skip(ETHERNET, &frame[..last_tag + 3]),
            Skip::Truncated {
                layer: Layer::Vlan,
                offset: last_tag
            }
        );
    }
    assert_eq!(
        skip(ETHERNET, &eth_tagged(&[(0x8100, 5)], 0x0806, &[0; 28])),
        Skip::NotIp(0x0806)
    );
    // An 802.1BR E-Tag is 8 bytes: TPID, 6 bytes of E-TCI, then the ethertype.
    let mut etag = eth(0x893f, &[0x20, 0, 0, 0x01, 0, 0]);
    etag.extend_from_slice(&0x0800u16.to_be_bytes());
    etag.extend_from_slice(&ip);
    assert_eq!(ok(ETHERNET, &etag).packet, plain);
    assert_eq!(
        skip(ETHERNET, &etag[..21]),
        Skip::Truncated {
            layer: Layer::Vlan,
            offset: 14
        }
    );
}

/// A PPPoE session header (version 1, type 1, code 0, session 0x1234) and the PPP
/// protocol field as given (two bytes, or one when compressed).
fn pppoe(protocol: &[u8], payload: &[u8]) -> Vec<u8> {
    let len = (protocol.len() + payload.len()) as u16;
    let mut p = vec![0x11, 0x00, 0x12, 0x34];
    p.extend_from_slice(&len.to_be_bytes());
    p.extend_from_slice(protocol);
    p.extend_from_slice(payload);
    p
}

#[test]
fn pppoe_sessions_carry_ip_behind_the_ppp_protocol() {
    let t = tcp_with(40000, 80, 7, tcp_flags::SYN, &[], 0, b"");
    let ip4 = ipv4(6, A, B, &t);
    let ip6 = ipv6(6, A6, B6, &t);
    let plain4 = ok(ETHERNET, &eth(0x0800, &ip4)).packet;
    let plain6 = ok(ETHERNET, &eth(0x86dd, &ip6)).packet;
    let frame = eth(0x8864, &pppoe(&[0x00, 0x21], &ip4));
    assert_eq!(ok(ETHERNET, &frame).packet, plain4);
    // Behind a VLAN tag, as access networks send it; IPv6; a compressed protocol field.
    let tagged = eth_tagged(&[(0x8100, 7)], 0x8864, &pppoe(&[0x00, 0x57], &ip6));
    assert_eq!(ok(ETHERNET, &tagged).packet, plain6);
    let compressed = eth(0x8864, &pppoe(&[0x21], &ip4));
    assert_eq!(ok(ETHERNET, &compressed).packet, plain4);
    // PPP's own control protocols are not IP; discovery is another ethertype.
    let lcp = eth(0x8864, &pppoe(&[0xc0, 0x21], &[1, 1, 0, 4]));
    assert_eq!(skip(ETHERNET, &lcp), Skip::NotIpPpp(0xc021));
    assert_eq!(
        skip(ETHERNET, &lcp).reason(),
        "not IP (ppp protocol 0xc021 LCP)"
    );
    assert_eq!(
        skip(ETHERNET, &eth(0x8863, &[0x11, 0x09, 0, 0, 0, 0])).reason(),
        "not IP (ethertype 0x8863 PPPoE discovery)"
    );
    // Cut inside the session header, then inside the protocol field.
    assert_eq!(
        skip(ETHERNET, &frame[..19]),
        Skip::Truncated {
            layer: Layer::Pppoe,
            offset: 14
        }
    );
    assert_eq!(
        skip(ETHERNET, &frame[..21]),
        Skip::Truncated {
            layer: Layer::Ppp,
            offset: 20
        }
    );
}

#[test]
fn ppp_and_cisco_hdlc_links_carry_ip() {
    const PPP: u32 = 9;
    const PPP_HDLC: u32 = 50;
    const C_HDLC: u32 = 104;
    let t = tcp_with(40000, 80, 7, tcp_flags::SYN, &[], 0, b"");
    let ip4 = ipv4(6, A, B, &t);
    let ip6 = ipv6(6, A6, B6, &t);
    let plain4 = ok(RAW, &ip4).packet;
    let plain6 = ok(RAW, &ip6).packet;
    for (linktype, prefix, plain) in [
        // HDLC-like framing (RFC 1662), without it, with a compressed protocol field.
        (PPP, &[0xff, 0x03, 0x00, 0x21][..], plain4),
        (PPP, &[0x00, 0x57][..], plain6),
        (PPP, &[0x21][..], plain4),
        (PPP_HDLC, &[0xff, 0x03, 0x00, 0x57][..], plain6),
        // Cisco HDLC: address, control, ethertype; in LINKTYPE_PPP_HDLC as well.
        (C_HDLC, &[0x0f, 0x00, 0x08, 0x00][..], plain4),
        (C_HDLC, &[0x8f, 0x00, 0x86, 0xdd][..], plain6),
        (PPP_HDLC, &[0x0f, 0x00, 0x08, 0x00][..], plain4),
    ] {
        let ip = if plain == plain4 { &ip4 } else { &ip6 };
        let d = ok(linktype, &with_prefix(prefix, ip));
        assert_eq!(d.packet, plain, "link type {linktype}, {prefix:x?}");
    }
    // MPLS over PPP and over Cisco HDLC.
    let labelled = with_prefix(&mpls_stack(&[100, 200]), &ip4);
    let over_ppp = with_prefix(&[0xff, 0x03, 0x02, 0x81], &labelled);
    assert_eq!(ok(PPP, &over_ppp).packet, plain4);
    let over_hdlc = with_prefix(&[0x0f, 0x00, 0x88, 0x47], &labelled);
    assert_eq!(ok(C_HDLC, &over_hdlc).packet, plain4);
    // What else they carry is named; cut headers are located.
    assert_eq!(
        skip(PPP, &[0xff, 0x03, 0xc0, 0x21, 1, 1, 0, 4]).reason(),
        "not IP (ppp protocol 0xc021 LCP)"
    );
    assert_eq!(
        skip(C_HDLC, &[0x8f, 0x00, 0x80, 0x35, 0, 0, 0, 1]).reason(),
        "not IP (cisco hdlc protocol 0x8035 SLARP)"
    );
    assert_eq!(
        skip(PPP, &[0xff, 0x03, 0x00]),
        Skip::Truncated {
            layer: Layer::Ppp,
            offset: 2
        }
    );
    assert_eq!(
        skip(C_HDLC, &[0x0f, 0x00, 0x08]),
        Skip::Truncated {
            layer: Layer::CiscoHdlc,
            offset: 0
        }
    );
}

/// A LINKTYPE_NFLOG frame of address family `family` logging `packet`: the packet
/// header TLV, a prefix TLV of 5 bytes (padded to 8), then the payload TLV, lengths and
/// types in little- or big-endian order.
fn nflog(family: u8, big_endian: bool, packet: &[u8]) -> Vec<u8> {
    let tlv = |len: usize, kind: u16| -> Vec<u8> {
        let (len, kind) = (len as u16, kind);
        let mut v = Vec::new();
        if big_endian {
            v.extend_from_slice(&len.to_be_bytes());
            v.extend_from_slice(&kind.to_be_bytes());
        } else {
            v.extend_from_slice(&len.to_le_bytes());
            v.extend_from_slice(&kind.to_le_bytes());
        }
        v
    };
    let mut f = vec![family, 0, 0, 5];
    f.extend(tlv(8, 1));
    f.extend_from_slice(&[0x08, 0x00, 3, 0]);
    f.extend(tlv(5, 10));
    f.extend_from_slice(&[b'x', 0, 0, 0]);
    f.extend(tlv(4 + packet.len(), 9));
    f.extend_from_slice(packet);
    f
}

#[test]
fn nflog_frames_give_the_logged_packet() {
    const NFLOG: u32 = 239;
    let t = tcp_with(40000, 80, 7, tcp_flags::SYN, &[], 0, b"");
    let ip4 = ipv4(6, A, B, &t);
    let ip6 = ipv6(6, A6, B6, &t);
    assert_eq!(
        ok(NFLOG, &nflog(2, false, &ip4)).packet,
        ok(RAW, &ip4).packet
    );
    assert_eq!(
        ok(NFLOG, &nflog(10, true, &ip6)).packet,
        ok(RAW, &ip6).packet
    );
    // The family says which IP version to expect.
    assert_eq!(
        skip(NFLOG, &nflog(10, false, &ip4)).reason(),
        "malformed ipv6 header at byte 24: version 4"
    );
    // No payload TLV; a TLV shorter than its header; a cut TLV.
    let no_payload = nflog(2, false, &[])[..20].to_vec();
    assert_eq!(skip(NFLOG, &no_payload), Skip::NflogWithoutPayload);
    let mut zero = nflog(2, false, &ip4);
    zero[4] = 0;
    assert_eq!(
        skip(NFLOG, &zero).reason(),
        "malformed nflog tlv at byte 4: tlv length below 4"
    );
    assert_eq!(
        skip(NFLOG, &nflog(2, false, &ip4)[..6]),
        Skip::Truncated {
            layer: Layer::Nflog,
            offset: 4
        }
    );
}

/// MPLS label stack entries for `labels`, the last with the bottom-of-stack bit.
fn mpls_stack(labels: &[u32]) -> Vec<u8> {
    let mut v = Vec::new();
    for (i, label) in labels.iter().enumerate() {
        let bos = u32::from(i + 1 == labels.len());
        v.extend_from_slice(&((label << 12) | (bos << 8) | 64).to_be_bytes());
    }
    v
}

#[test]
fn mpls_label_stacks_are_followed_to_ip() {
    let t = tcp_with(40000, 80, 7, tcp_flags::SYN, &[], 0, b"");
    let ip4 = ipv4(6, A, B, &t);
    let ip6 = ipv6(6, A6, B6, &t);
    let plain4 = ok(ETHERNET, &eth(0x0800, &ip4)).packet;
    let plain6 = ok(ETHERNET, &eth(0x86dd, &ip6)).packet;
    let one = eth(0x8847, &with_prefix(&mpls_stack(&[16]), &ip4));
    assert_eq!(ok(ETHERNET, &one).packet, plain4);
    let three = eth(0x8847, &with_prefix(&mpls_stack(&[16, 17, 2]), &ip6));
    assert_eq!(ok(ETHERNET, &three).packet, plain6);
    let multicast = eth_tagged(
        &[(0x8100, 3)],
        0x8848,
        &with_prefix(&mpls_stack(&[20, 21]), &ip4),
    );
    assert_eq!(ok(ETHERNET, &multicast).packet, plain4);
    let cooked = sll(0, 0x8847, &with_prefix(&mpls_stack(&[16]), &ip4));
    assert_eq!(ok(SLL, &cooked).packet.tuple, plain4.tuple);
    // An Ethernet pseudowire with its control word is not IP.
    let pw = eth(
        0x8847,
        &with_prefix(&mpls_stack(&[30]), &[0, 0, 0, 0, 0x02, 0, 0, 0]),
    );
    assert_eq!(skip(ETHERNET, &pw), Skip::NotIpMpls);
    assert_eq!(skip(ETHERNET, &pw).reason(), "not IP (mpls payload)");
    // Cut inside the second entry; cut right after the stack.
    assert_eq!(
        skip(ETHERNET, &three[..20]),
        Skip::Truncated {
            layer: Layer::Mpls,
            offset: 18
        }
    );
    assert_eq!(
        skip(ETHERNET, &one[..18]),
        Skip::Truncated {
            layer: Layer::Ip,
            offset: 18
        }
    );
}

#[test]
fn linux_sll_keeps_the_packet_type_as_direction() {
    let ip = ipv4(17, A, B, &udp(5353, 53, 0, b"q"));
    for (pkttype, dir) in [
        (0, Some(LinkDir::In)),
        (3, Some(LinkDir::In)),
        (4, Some(LinkDir::Out)),
        (5, None),
    ] {
        let d = ok(SLL, &sll(pkttype, 0x0800, &ip));
        assert_eq!(d.packet.link_dir, dir, "pkttype {pkttype}");
        assert_eq!(d.ifindex, None);
        assert_eq!(d.packet.tuple.dport, 53);
    }
    // VLAN tags re-inserted by libpcap after the cooked header.
    let tagged = sll(0, 0x8100, &with_prefix(&[0, 10, 0x08, 0x00], &ip));
    assert_eq!(ok(SLL, &tagged).packet.tuple.sport, 5353);
    assert_eq!(
        skip(SLL, &sll(0, 0x0004, b"llc")),
        Skip::NotIpLinuxProtocol(4)
    );
    assert_eq!(skip(SLL, &sll(0, 0x0806, &[0; 28])), Skip::NotIp(0x0806));
    assert_eq!(
        skip(SLL, &sll(0, 0x0800, &ip)[..15]),
        Skip::Truncated {
            layer: Layer::LinuxSll,
            offset: 0
        }
    );
}

#[test]
fn linux_sll2_gives_ifindex_and_direction() {
    let ip6 = ipv6(17, A6, B6, &udp(1000, 53, 0, b"q"));
    let d = ok(SLL2, &sll2(0x86dd, 7, 4, &ip6));
    assert_eq!(d.ifindex, Some(7));
    assert_eq!(d.packet.link_dir, Some(LinkDir::Out));
    assert_eq!(
        d.packet.tuple,
        Tuple {
            proto: Proto::Udp,
            src: v6(A6),
            sport: 1000,
            dst: v6(B6),
            dport: 53
        }
    );
    assert_eq!(d.packet.ip_id, None);
    assert_eq!(d.packet.ttl, 63);
    let frame = sll2(0x0800, 3, 0, &ipv4(17, A, B, &udp(1, 2, 0, b"")));
    assert_eq!(ok(SLL2, &frame).packet.link_dir, Some(LinkDir::In));
    for len in 0..20 {
        assert_eq!(
            skip(SLL2, &frame[..len]),
            Skip::Truncated {
                layer: Layer::LinuxSll2,
                offset: 0
            }
        );
    }
    assert_eq!(
        skip(SLL2, &frame[..20]),
        Skip::Truncated {
            layer: Layer::Ipv4,
            offset: 20
        }
    );
}

#[test]
fn raw_ip_link_types() {
    let ip4 = ipv4(17, A, B, &udp(1, 2, 0, b"x"));
    let ip6 = ipv6(17, A6, B6, &udp(1, 2, 0, b"x"));
    for linktype in [101, 12, 14] {
        assert_eq!(ok(linktype, &ip4).packet.tuple.src, v4(A));
        assert_eq!(ok(linktype, &ip6).packet.tuple.src, v6(A6));
        assert_eq!(skip(linktype, &[0x50, 0, 0, 0]), Skip::NotIpVersion(5));
        assert_eq!(
            skip(linktype, &[]),
            Skip::Truncated {
                layer: Layer::Ip,
                offset: 0
            }
        );
    }
    assert_eq!(ok(228, &ip4).packet.tuple.dst, v4(B));
    assert_eq!(ok(229, &ip6).packet.tuple.dst, v6(B6));
    assert_eq!(
        skip(228, &ip6),
        Skip::Malformed {
            layer: Layer::Ipv4,
            offset: 0,
            problem: Problem::Version(6)
        }
    );
    assert_eq!(
        skip(229, &ip4),
        Skip::Malformed {
            layer: Layer::Ipv6,
            offset: 0,
            problem: Problem::Version(4)
        }
    );
}

#[test]
fn null_and_loop_read_the_family_in_either_byte_order() {
    let ip4 = ipv4(17, A, B, &udp(1, 2, 0, b"x"));
    let ip6 = ipv6(17, A6, B6, &udp(1, 2, 0, b"x"));
    for linktype in [0, 108] {
        assert_eq!(
            ok(linktype, &with_prefix(&2u32.to_le_bytes(), &ip4))
                .packet
                .tuple
                .src,
            v4(A)
        );
        assert_eq!(
            ok(linktype, &with_prefix(&2u32.to_be_bytes(), &ip4))
                .packet
                .tuple
                .src,
            v4(A)
        );
        for af in [10u32, 24, 28, 30] {
            assert_eq!(
                ok(linktype, &with_prefix(&af.to_le_bytes(), &ip6))
                    .packet
                    .tuple
                    .src,
                v6(A6)
            );
            assert_eq!(
                ok(linktype, &with_prefix(&af.to_be_bytes(), &ip6))
                    .packet
                    .tuple
                    .src,
                v6(A6)
            );
        }
        assert_eq!(
            skip(linktype, &with_prefix(&7u32.to_be_bytes(), &ip4)),
            Skip::NotIpFamily(7)
        );
        assert_eq!(
            skip(linktype, &[2, 0, 0]),
            Skip::Truncated {
                layer: Layer::Loopback,
                offset: 0
            }
        );
        // The family and the version nibble must agree.
        assert_eq!(
            skip(linktype, &with_prefix(&2u32.to_le_bytes(), &ip6)),
            Skip::Malformed {
                layer: Layer::Ipv4,
                offset: 4,
                problem: Problem::Version(6)
            }
        );
    }
}

#[test]
fn unsupported_link_types_and_non_ip_frames_are_named() {
    assert_eq!(
        skip(105, b"wifi").reason(),
        "unsupported link type 105 (IEEE802_11)"
    );
    assert_eq!(skip(9999, b"?").reason(), "unsupported link type 9999");
    assert_eq!(
        skip(ETHERNET, &eth(0x0806, &[0; 28])).reason(),
        "not IP (ethertype 0x0806 ARP)"
    );
    assert_eq!(
        skip(ETHERNET, &eth(0x88cc, &[0; 28])).reason(),
        "not IP (ethertype 0x88cc LLDP)"
    );
    assert_eq!(
        skip(ETHERNET, &eth(0x4321, &[0; 28])).reason(),
        "not IP (ethertype 0x4321)"
    );
    assert_eq!(
        skip(ETHERNET, &eth(0x0026, &[0x42; 38])).reason(),
        "not IP (802.3 LLC frame)"
    );
    assert_eq!(
        skip(ETHERNET, &[0; 13]).reason(),
        "truncated ethernet header"
    );
    assert_eq!(
        skip(SLL, &sll(0, 0x000c, b"can")).reason(),
        "not IP (linux sll protocol 0x000c)"
    );
    assert_eq!(
        skip(0, &with_prefix(&7u32.to_le_bytes(), b"x")).reason(),
        "not IP (address family 7)"
    );
    assert_eq!(skip(RAW, &[0x50]).reason(), "not IP (version nibble 5)");
    let mut bad_ihl = ipv4(6, A, B, &[0; 20]);
    bad_ihl[0] = 0x43;
    assert_eq!(
        skip(ETHERNET, &eth(0x0800, &bad_ihl)).reason(),
        "malformed ipv4 header at byte 14: ihl 3 below 5"
    );
    assert_eq!(
        skip(ETHERNET, &tcp_frame()[..40]).reason(),
        "truncated tcp header at byte 34"
    );
}

#[test]
fn pcap_fcs_bits_in_the_link_type_are_ignored() {
    // 0x30000001 and 0x04000001 occur in the headers of real files; tcpdump reads both
    // as Ethernet.
    let mut frame = eth(0x0800, &ipv4(17, A, B, &udp(1, 2, 0, b"x")));
    frame.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
    for linktype in [0x3000_0001, 0x0400_0001] {
        let p = ok(linktype, &frame).packet;
        assert_eq!(
            (p.tuple.dport, p.payload_digest),
            (2, XxHash3_64::oneshot(b"x"))
        );
    }
    assert_eq!(skip(0x3000_0069, b"wifi"), Skip::UnsupportedLinkType(105));
}

#[test]
fn every_supported_link_type_decodes() {
    let ip4 = ipv4(17, A, B, &udp(1, 2, 0, b"x"));
    for &linktype in SUPPORTED_LINK_TYPES {
        let frame = match linktype {
            229 => ipv6(17, A6, B6, &udp(1, 2, 0, b"x")),
            0 | 108 => with_prefix(&2u32.to_be_bytes(), &ip4),
            9 | 50 => with_prefix(&[0xff, 0x03, 0x00, 0x21], &ip4),
            104 => with_prefix(&[0x0f, 0x00, 0x08, 0x00], &ip4),
            239 => nflog(2, false, &ip4),
            1 => eth(0x0800, &ip4),
            113 => sll(0, 0x0800, &ip4),
            276 => sll2(0x0800, 1, 0, &ip4),
            _ => ip4.clone(),
        };
        assert_eq!(
            ok(linktype, &frame).packet.tuple.dport,
            2,
            "link type {linktype}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// IP and transport

#[test]
fn ipv6_extension_headers_are_walked() {
    let t = tcp_with(443, 50000, 99, tcp_flags::ACK, &ts_option(5, 6), 0, b"data");
    // Hop-by-hop (8 bytes, PadN) then destination options (16 bytes) then TCP.
    let mut exts = vec![60, 0, 1, 4, 0, 0, 0, 0];
    exts.extend_from_slice(&[6, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let ip = ipv6(0, A6, B6, &with_prefix(&exts, &t));
    let p = ok(ETHERNET, &eth(0x86dd, &ip)).packet;
    assert_eq!(
        p.tuple,
        Tuple {
            proto: Proto::Tcp,
            src: v6(A6),
            sport: 443,
            dst: v6(B6),
            dport: 50000
        }
    );
    assert_eq!(p.ip_len as usize, ip.len());
    assert_eq!(p.payload_len, 4);
    assert_eq!(p.payload_digest, XxHash3_64::oneshot(b"data"));
    assert!(matches!(
        p.l4,
        L4::Tcp {
            seq: 99,
            ts: Some((5, 6)),
            ..
        }
    ));
    assert_eq!(p.ip_id, None);

    // An atomic fragment header (offset 0, no more fragments) carries an ID.
    let frag = [17, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef];
    let ip = ipv6(44, A6, B6, &with_prefix(&frag, &udp(7, 8, 0, b"u")));
    let p = ok(RAW, &ip).packet;
    assert_eq!(p.ip_id, Some(0xdead_beef));
    assert_eq!(
        (p.tuple.proto, p.tuple.sport, p.l4),
        (Proto::Udp, 7, L4::Udp)
    );

    // A cut extension header is a truncated header at its own offset; a hop-by-hop
    // header after another extension header is malformed.
    let ip = ipv6(0, A6, B6, &with_prefix(&exts, &t));
    assert_eq!(
        skip(RAW, &ip[..40 + 8 + 10]),
        Skip::Truncated {
            layer: Layer::Ipv6DestOptions,
            offset: 48
        }
    );
    let hbh_late = ipv6(
        60,
        A6,
        B6,
        &[0, 0, 1, 4, 0, 0, 0, 0, 6, 0, 1, 4, 0, 0, 0, 0],
    );
    assert_eq!(
        skip(RAW, &hbh_late).reason(),
        "malformed ipv6 hop-by-hop header at byte 48: hop-by-hop header not first"
    );
}

#[test]
fn ipv4_authentication_header_is_stepped_over() {
    let t = tcp_with(22, 40001, 5, tcp_flags::ACK, &[], 0, b"ssh");
    // AH (RFC 4302): next header, payload length 4 (24 bytes), reserved, SPI, sequence,
    // 12 bytes of ICV.
    let mut ah = vec![6, 4, 0, 0, 0, 0, 1, 0, 0, 0, 0, 9];
    ah.extend_from_slice(&[0xcc; 12]);
    let p = ok(RAW, &ipv4(51, A, B, &with_prefix(&ah, &t))).packet;
    assert_eq!(
        (p.tuple.proto, p.tuple.sport, p.tuple.dport),
        (Proto::Tcp, 22, 40001)
    );
    assert_eq!(
        (p.payload_len, p.payload_digest),
        (3, XxHash3_64::oneshot(b"ssh"))
    );
    ah[1] = 0;
    assert_eq!(
        skip(RAW, &ipv4(51, A, B, &with_prefix(&ah, &t))).reason(),
        "malformed ip authentication header at byte 20: payload length 0"
    );
}

#[test]
fn udp_lengths_and_digest() {
    let p = ok(
        ETHERNET,
        &eth(
            0x0800,
            &ipv4(17, A, B, &udp(5353, 53, 0xabcd, b"dns query")),
        ),
    )
    .packet;
    assert_eq!(
        p.tuple,
        Tuple {
            proto: Proto::Udp,
            src: v4(A),
            sport: 5353,
            dst: v4(B),
            dport: 53
        }
    );
    assert_eq!(p.l4, L4::Udp);
    assert_eq!(p.ip_len, 20 + 8 + 9);
    assert_eq!(p.payload_len, 9);
    assert_eq!(p.payload_digest, XxHash3_64::oneshot(b"dns query"));
}

#[test]
fn icmp_echo_uses_the_identifier_as_source_port() {
    for (icmp_type, id) in [(8, 0x4242), (0, 0x4242)] {
        let p = ok(RAW, &ipv4(1, A, B, &echo(icmp_type, id, 3, b"ping data"))).packet;
        assert_eq!(
            p.tuple,
            Tuple {
                proto: Proto::Icmp,
                src: v4(A),
                sport: id,
                dst: v4(B),
                dport: 0
            }
        );
        assert_eq!(
            p.l4,
            L4::Icmp {
                icmp_type,
                code: 0,
                echo: Some((id, 3)),
                quoted: None,
                mtu: None,
            }
        );
        assert_eq!(p.payload_len, 9);
        assert_eq!(p.payload_digest, XxHash3_64::oneshot(b"ping data"));
    }
    // Other ICMP types have no identifier in the tuple.
    let p = ok(RAW, &ipv4(1, A, B, &icmp(13, 0, [0, 1, 0, 1], &[0; 12]))).packet;
    assert_eq!((p.tuple.sport, p.tuple.dport), (0, 0));
    assert_eq!(
        p.l4,
        L4::Icmp {
            icmp_type: 13,
            code: 0,
            echo: None,
            quoted: None,
            mtu: None,
        }
    );
}

/// An ICMP "fragmentation needed" from `router` about a TCP segment `src:sport > dst:dport`.
fn frag_needed(
    router: [u8; 4],
    to: [u8; 4],
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
    seq: u32,
) -> Vec<u8> {
    let inner_tcp = tcp_with(
        sport,
        dport,
        seq,
        tcp_flags::ACK,
        &[],
        checksum(&[&src, &dst]),
        &[0x55; 40],
    );
    let inner = ipv4_with(6, src, dst, 0x7777, 0x4000, &[], &inner_tcp);
    // RFC 1191: next-hop MTU in the low 16 bits of the rest-of-header.
    let msg = icmp(3, 4, [0, 0, 0x05, 0x78], &inner[..28]);
    ipv4(1, router, to, &msg)
}

#[test]
fn icmp_error_carries_the_quoted_tuple() {
    let ip = frag_needed(B, A, A, 40000, B, 443, 0xdead_beef);
    let p = ok(ETHERNET, &eth(0x0800, &ip)).packet;
    assert_eq!(
        p.tuple,
        Tuple {
            proto: Proto::Icmp,
            src: v4(B),
            sport: 0,
            dst: v4(A),
            dport: 0
        }
    );
    let quoted = Tuple {
        proto: Proto::Tcp,
        src: v4(A),
        sport: 40000,
        dst: v4(B),
        dport: 443,
    };
    assert_eq!(
        p.l4,
        L4::Icmp {
            icmp_type: 3,
            code: 4,
            echo: None,
            quoted: Some(quoted),
            mtu: Some(1400),
        }
    );
    assert_eq!(p.payload_len, 28);
    assert!(!p.truncated);

    // Cut the quoted packet at every length: never a panic, the tuple appears once the
    // quoted ports are there, and the outer packet counts as truncated.
    let frame = eth(0x0800, &ip);
    let quoted_at = 14 + 20 + 8;
    for len in quoted_at..frame.len() {
        let p = decode(ETHERNET, &frame[..len], frame.len() as u32)
            .expect("outer headers are complete")
            .packet;
        assert!(p.truncated);
        let L4::Icmp { quoted: q, .. } = p.l4 else {
            panic!("not icmp: {:?}", p.l4)
        };
        assert_eq!(q.is_some(), len >= quoted_at + 20 + 4, "cut at {len}");
    }
}

#[test]
fn icmpv6_echo_and_packet_too_big() {
    let p = ok(RAW, &ipv6(58, A6, B6, &echo(128, 77, 1, b"v6 ping"))).packet;
    assert_eq!(
        p.tuple,
        Tuple {
            proto: Proto::Icmpv6,
            src: v6(A6),
            sport: 77,
            dst: v6(B6),
            dport: 0
        }
    );
    assert_eq!(
        p.l4,
        L4::Icmp {
            icmp_type: 128,
            code: 0,
            echo: Some((77, 1)),
            quoted: None,
            mtu: None,
        }
    );
    assert_eq!(p.payload_digest, XxHash3_64::oneshot(b"v6 ping"));

    let inner = ipv6(17, A6, B6, &udp(6000, 4789, 0x1234, &[0xab; 1400]));
    let ptb = icmp(2, 0, 1280u32.to_be_bytes(), &inner[..1232]);
    let p = ok(SLL2, &sll2(0x86dd, 2, 0, &ipv6(58, B6, A6, &ptb))).packet;
    let quoted = Tuple {
        proto: Proto::Udp,
        src: v6(A6),
        sport: 6000,
        dst: v6(B6),
        dport: 4789,
    };
    assert_eq!(
        p.l4,
        L4::Icmp {
            icmp_type: 2,
            code: 0,
            echo: None,
            quoted: Some(quoted),
            mtu: Some(1280),
        }
    );
    assert_eq!(p.payload_len, 1232);
    assert_eq!(p.tuple.proto, Proto::Icmpv6);
    assert_eq!((p.tuple.sport, p.tuple.dport), (0, 0));
}

#[test]
fn sctp_ports_and_gre_payload() {
    let mut sctp = vec![0x0b, 0x59, 0x0b, 0x5a, 1, 2, 3, 4, 9, 9, 9, 9];
    sctp.extend_from_slice(b"chunk");
    let p = ok(RAW, &ipv4(132, A, B, &sctp)).packet;
    assert_eq!(
        (p.tuple.proto, p.tuple.sport, p.tuple.dport, p.l4),
        (Proto::Sctp, 2905, 2906, L4::Other)
    );
    assert_eq!(
        (p.payload_len, p.payload_digest),
        (5, XxHash3_64::oneshot(b"chunk"))
    );

    // PPTP enhanced GRE (version 1, key and sequence present): NAT's PPTP helper rewrites
    // the call ID in the key field, so only what follows the header is hashed.
    let gre = |call_id: u16| {
        let mut g = vec![0x30, 0x01, 0x88, 0x0b, 0, 5];
        g.extend_from_slice(&call_id.to_be_bytes());
        g.extend_from_slice(&[0, 0, 0, 1]);
        g.extend_from_slice(b"ppp frame");
        ipv4(47, A, B, &g)
    };
    let p = ok(RAW, &gre(1)).packet;
    assert_eq!(
        (p.tuple.proto, p.tuple.sport, p.l4),
        (Proto::Gre, 0, L4::Other)
    );
    assert_eq!(
        (p.payload_len, p.payload_digest),
        (9, XxHash3_64::oneshot(b"ppp frame"))
    );
    assert_eq!(ok(RAW, &gre(2)).packet.payload_digest, p.payload_digest);

    // Unknown protocols are kept with their number; the whole IP payload is hashed.
    let p = ok(RAW, &ipv4(253, A, B, b"experiment")).packet;
    assert_eq!(
        (p.tuple.proto, p.l4, p.payload_len),
        (Proto::Other(253), L4::Other, 10)
    );
    assert_eq!(p.payload_digest, XxHash3_64::oneshot(b"experiment"));
}

#[test]
fn fragments() {
    let datagram = udp(5000, 53, 0x4444, &[0x11; 40]);
    // First fragment: offset 0, more fragments; 24 of the 48 UDP bytes.
    let first = ipv4_with(17, A, B, 0x0042, 0x2000, &[], &datagram[..24]);
    let p = ok(RAW, &first).packet;
    assert_eq!((p.tuple.sport, p.tuple.dport, p.l4), (5000, 53, L4::Udp));
    assert_eq!(
        (p.payload_len, p.payload_digest, p.truncated),
        (16, XxHash3_64::oneshot(&datagram[8..24]), false)
    );
    assert!(!is_non_first_fragment(&p));

    // Second fragment (offset 3 * 8 bytes): no ports, but the ID and the protocol.
    let second = ipv4_with(17, A, B, 0x0042, 3, &[], &datagram[24..]);
    let p = ok(RAW, &second).packet;
    assert_eq!(
        p.tuple,
        Tuple {
            proto: Proto::Udp,
            src: v4(A),
            sport: 0,
            dst: v4(B),
            dport: 0
        }
    );
    assert_eq!((p.l4, p.ip_id, p.payload_len), (L4::Other, Some(0x42), 24));
    assert_eq!(p.payload_digest, XxHash3_64::oneshot(&datagram[24..]));
    assert!(is_non_first_fragment(&p));

    // IPv6 non-first fragment whose next header names a destination options header:
    // the bytes after the fragment header are data and are not parsed as a header.
    let mut frag = vec![60, 0, 0, 0x19, 0, 0, 0, 9];
    frag.extend_from_slice(&[0xff; 16]);
    let p = ok(RAW, &ipv6(44, A6, B6, &frag)).packet;
    assert_eq!(
        (p.tuple.proto, p.l4, p.ip_id, p.payload_len),
        (Proto::Other(60), L4::Other, Some(9), 16)
    );
    assert_eq!(p.payload_digest, XxHash3_64::oneshot(&[0xff; 16]));

    // IPv6 non-first fragment of TCP.
    let mut frag = vec![6, 0, 0, 0x08, 0, 0, 0, 10];
    frag.extend_from_slice(b"tcp data");
    let p = ok(RAW, &ipv6(44, A6, B6, &frag)).packet;
    assert!(is_non_first_fragment(&p));
    assert_eq!(
        (p.tuple.proto, p.tuple.sport, p.ip_id),
        (Proto::Tcp, 0, Some(10))
    );
}

// ---------------------------------------------------------------------------------------
// Cut and impossible headers

#[test]
fn tcp_frame_cut_at_every_length() {
    let frame = tcp_frame();
    let payload_at = 14 + 20 + 32;
    for len in 0..=frame.len() {
        let got = decode(ETHERNET, &frame[..len], frame.len() as u32);
        match len {
            0..14 => assert_eq!(
                got,
                Err(Skip::Truncated {
                    layer: Layer::Ethernet,
                    offset: 0
                }),
                "{len}"
            ),
            14..34 => assert_eq!(
                got,
                Err(Skip::Truncated {
                    layer: Layer::Ipv4,
                    offset: 14
                }),
                "{len}"
            ),
            34..54 => assert_eq!(
                got,
                Err(Skip::Truncated {
                    layer: Layer::Tcp,
                    offset: 34
                }),
                "{len}"
            ),
            _ => {
                let p = got.expect("base headers complete").packet;
                assert_eq!(p.truncated, len < frame.len(), "{len}");
                assert_eq!(p.ip_len, 63, "{len}");
                assert_eq!(p.payload_len, 11, "{len}");
                let L4::Tcp { seq, ts, .. } = p.l4 else {
                    panic!("not tcp")
                };
                assert_eq!(seq, 0x0102_0304);
                // NOP NOP TS: the timestamp is complete 12 option bytes in.
                assert_eq!(ts.is_some(), len >= 54 + 12, "{len}");
                assert_eq!(
                    p.payload_digest,
                    XxHash3_64::oneshot(frame.get(payload_at..len).unwrap_or(&[])),
                    "{len}"
                );
            }
        }
    }
}

#[test]
fn every_link_type_survives_every_cut() {
    let t = tcp_with(1, 2, 3, tcp_flags::SYN, &ts_option(1, 0), 0, b"x");
    let frames = [
        (
            ETHERNET,
            eth_tagged(&[(0x88a8, 1), (0x8100, 2)], 0x86dd, &ipv6(6, A6, B6, &t)),
        ),
        (SLL, sll(4, 0x0800, &ipv4(6, A, B, &t))),
        (
            9,
            with_prefix(&[0xff, 0x03, 0x00, 0x21], &ipv4(6, A, B, &t)),
        ),
        (
            104,
            with_prefix(&[0x0f, 0x00, 0x86, 0xdd], &ipv6(6, A6, B6, &t)),
        ),
        (239, nflog(2, false, &ipv4(6, A, B, &t))),
        (
            ETHERNET,
            eth_tagged(
                &[(0x8100, 2)],
                0x8864,
                &pppoe(&[0, 0x21], &ipv4(6, A, B, &t)),
            ),
        ),
        (
            ETHERNET,
            eth(
                0x8847,
                &with_prefix(&mpls_stack(&[16, 17]), &ipv6(6, A6, B6, &t)),
            ),
        ),
        (
            SLL2,
            sll2(
                0x86dd,
                9,
                0,
                &ipv6(0, A6, B6, &with_prefix(&[6, 0, 1, 4, 0, 0, 0, 0], &t)),
            ),
        ),
        (0, with_prefix(&30u32.to_le_bytes(), &ipv6(6, A6, B6, &t))),
        (
            108,
            with_prefix(
                &2u32.to_be_bytes(),
                &ipv4(1, A, B, &frag_needed(B, A, A, 1, B, 2, 3)),
            ),
        ),
        (
            RAW,
            ipv6(58, B6, A6, &icmp(1, 4, [0; 4], &ipv6(6, A6, B6, &t))),
        ),
    ];
    for (linktype, frame) in frames {
        let whole = ok(linktype, &frame).packet;
        assert!(!whole.truncated);
        for len in 0..frame.len() {
            if let Ok(d) = decode(linktype, &frame[..len], frame.len() as u32) {
                assert!(d.packet.truncated, "link type {linktype} cut at {len}");
                assert_eq!(
                    d.packet.tuple, whole.tuple,
                    "link type {linktype} cut at {len}"
                );
                assert_eq!(d.packet.ip_len, whole.ip_len);
            }
        }
    }
}

#[test]
fn impossible_lengths() {
    // TCP data offset below 5, and beyond the segment.
    let mut t = tcp_with(1, 2, 3, 0, &[], 0, b"");
    t[12] = 0x40;
    assert_eq!(
        skip(RAW, &ipv4(6, A, B, &t)),
        Skip::Malformed {
            layer: Layer::Tcp,
            offset: 20,
            problem: Problem::DataOffset(4)
        }
    );
    t[12] = 0xf0;
    assert_eq!(
        skip(RAW, &ipv4(6, A, B, &t)).reason(),
        "malformed tcp header at byte 20: data offset beyond the segment"
    );

    // An IPv4 total length that leaves no room for the UDP header it announces.
    let mut ip = ipv4(17, A, B, &udp(1, 2, 0, b"abc"));
    ip[2..4].copy_from_slice(&24u16.to_be_bytes());
    assert_eq!(
        skip(RAW, &ip),
        Skip::Malformed {
            layer: Layer::Udp,
            offset: 20,
            problem: Problem::SegmentShorterThanHeader
        }
    );

    // Total length beyond the capture: what was captured, flagged truncated.
    let mut ip = ipv4(17, A, B, &udp(1, 2, 0, b"abc"));
    ip[2..4].copy_from_slice(&1500u16.to_be_bytes());
    let p = ok(RAW, &ip).packet;
    assert_eq!((p.ip_len, p.payload_len, p.truncated), (1500, 1472, true));
    assert_eq!(p.payload_digest, XxHash3_64::oneshot(b"abc"));

    // Total length 0, as GSO/BIG TCP packets carry: the frame's wire length stands in.
    let mut ip = ipv4(
        6,
        A,
        B,
        &tcp_with(1, 2, 3, tcp_flags::ACK, &[], 0, &[7; 100]),
    );
    ip[2..4].copy_from_slice(&0u16.to_be_bytes());
    let p = decode(RAW, &ip, 70_000).expect("gso packet").packet;
    assert_eq!(
        (p.ip_len, p.payload_len, p.truncated),
        (70_000, 70_000 - 40, true)
    );
    let p = ok(RAW, &ip).packet;
    assert_eq!((p.ip_len, p.payload_len, p.truncated), (140, 100, false));
    // Any other total length below the header's own length is impossible (tcpdump's
    // "bad-len", Wireshark's "Bogus IP length"), with or without options.
    for (options, total) in [(&[][..], 19u16), (&[1, 1, 1, 0][..], 20)] {
        let mut ip = ipv4_with(17, A, B, 1, 0, options, &udp(1, 2, 0, b"abc"));
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        assert_eq!(
            skip(RAW, &ip).reason(),
            "malformed ipv4 header: total length below header length"
        );
    }

    // IPv6 payload length 0 with data behind it (jumbogram).
    let ip = ipv6_with(17, A6, B6, 0, &udp(1, 2, 0, b"jumbo"));
    let p = ok(RAW, &ip).packet;
    assert_eq!((p.ip_len, p.payload_len, p.truncated), (53, 5, false));

    // IHL beyond the capture.
    let mut ip = ipv4(6, A, B, &[]);
    ip[0] = 0x4f;
    assert_eq!(
        skip(RAW, &ip),
        Skip::Truncated {
            layer: Layer::Ipv4,
            offset: 0
        }
    );
}

#[test]
fn link_padding_is_not_payload_and_not_truncation() {
    // A bare ACK is 54 bytes on Ethernet; the NIC pads it to 60.
    let ip = ipv4(6, A, B, &tcp_with(1, 2, 3, tcp_flags::ACK, &[], 0, b""));
    let mut frame = eth(0x0800, &ip);
    frame.extend_from_slice(&[0; 6]);
    let p = ok(ETHERNET, &frame).packet;
    assert_eq!(
        (p.ip_len, p.payload_len, p.payload_digest, p.truncated),
        (40, 0, XxHash3_64::oneshot(b""), false)
    );
    // `tcpdump -s 54` keeps the IP packet whole and drops only the padding.
    let p = decode(ETHERNET, &frame[..54], 60)
        .expect("whole ip packet")
        .packet;
    assert!(!p.truncated);
}

// ---------------------------------------------------------------------------------------
// NAT invariance of the digest

/// Rewrites what NAT rewrites in an IPv4 header: an address and the header checksum.
fn nat_ipv4(ip: &mut [u8], src: Option<[u8; 4]>, dst: Option<[u8; 4]>) {
    if let Some(s) = src {
        ip[12..16].copy_from_slice(&s);
    }
    if let Some(d) = dst {
        ip[16..20].copy_from_slice(&d);
    }
    ip[10..12].copy_from_slice(&[0, 0]);
    let ihl = usize::from(ip[0] & 0xf) * 4;
    let c = checksum(&[&ip[..ihl]]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
}

#[test]
fn digest_survives_nat() {
    // TCP: MASQUERADE rewrites the source address and port and both checksums.
    let before = eth(
        0x0800,
        &ipv4(
            6,
            A,
            B,
            &tcp_with(
                40000,
                80,
                9,
                tcp_flags::ACK,
                &ts_option(1, 2),
                0x1111,
                b"GET /",
            ),
        ),
    );
    let mut ip = ipv4(
        6,
        NAT,
        B,
        &tcp_with(
            8942,
            80,
            9,
            tcp_flags::ACK,
            &ts_option(1, 2),
            0x2222,
            b"GET /",
        ),
    );
    nat_ipv4(&mut ip, None, None);
    let after = ok(RAW, &ip).packet;
    let before = ok(ETHERNET, &before).packet;
    assert_ne!(before.tuple, after.tuple);
    assert_eq!(before.payload_digest, after.payload_digest);

    // UDP through DNAT.
    let before = ok(RAW, &ipv4(17, A, B, &udp(5353, 53, 0x1, b"query"))).packet;
    let after = ok(RAW, &ipv4(17, A, NAT, &udp(5353, 5353, 0x2, b"query"))).packet;
    assert_eq!(before.payload_digest, after.payload_digest);

    // ICMP echo: the identifier is NAT's port.
    let before = ok(RAW, &ipv4(1, A, B, &echo(8, 100, 1, b"abcdefgh"))).packet;
    let after = ok(RAW, &ipv4(1, NAT, B, &echo(8, 2000, 1, b"abcdefgh"))).packet;
    assert_eq!(before.payload_digest, after.payload_digest);

    // ICMP error about a masqueraded TCP flow: outside, the router talks to the NAT
    // address about NAT:8942; inside, conntrack has rewritten the outer destination and
    // the quoted source address, port and checksums.
    let outside = ok(RAW, &frag_needed(B, NAT, NAT, 8942, B, 443, 0xfeed)).packet;
    let inside = ok(RAW, &frag_needed(B, A, A, 40000, B, 443, 0xfeed)).packet;
    assert_ne!(outside.l4, inside.l4);
    assert_eq!(outside.payload_digest, inside.payload_digest);
    // The digest does see the invariants: another quoted sequence number differs.
    let other_seq = ok(RAW, &frag_needed(B, A, A, 40000, B, 443, 0xbeef)).packet;
    assert_ne!(other_seq.payload_digest, inside.payload_digest);

    // ICMPv6 packet too big about UDP with the quoted source translated (NAT66).
    let ptb = |src: [u8; 16], sport: u16, csum: u16| {
        let inner = ipv6(17, src, B6, &udp(sport, 4789, csum, &[0xab; 64]));
        ok(
            RAW,
            &ipv6(58, B6, src, &icmp(2, 0, 1280u32.to_be_bytes(), &inner)),
        )
        .packet
    };
    let mut nat6 = A6;
    nat6[15] = 0x99;
    assert_eq!(
        ptb(A6, 6000, 1).payload_digest,
        ptb(nat6, 7000, 2).payload_digest
    );

    // Quoted ICMP echo (time exceeded for a ping): the quoted identifier is rewritten.
    let te = |src: [u8; 4], id: u16| {
        let inner = ipv4(1, src, B, &echo(8, id, 5, b"traceroute"));
        ok(RAW, &ipv4(1, NAT, src, &icmp(11, 0, [0; 4], &inner))).packet
    };
    assert_eq!(te(A, 1).payload_digest, te(NAT, 2).payload_digest);
    let L4::Icmp {
        quoted: Some(q), ..
    } = te(A, 1).l4
    else {
        panic!("no quoted tuple")
    };
    assert_eq!((q.proto, q.sport, q.dport), (Proto::Icmp, 1, 0));
}

/// Frames captured on both sides of a network-namespace router doing iptables and
/// ip6tables MASQUERADE (Linux 6.x): inside (10.0.1.2, fd00:1::2) and outside
/// (198.51.100.1, 2001:db8:1::1). The kernel rewrote the outer destination, the quoted
/// source address and port and every checksum; the digests must not notice.
#[test]
fn kernel_nat_keeps_icmp_error_digests() {
    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }
    let pairs = [
        (
            "port unreachable (udp)",
            "ea011d146ad8aef1f8ed8f0c080045c00049189c00003e019654c00002020a0001020303be2f0000\
            00004500002d6ce940003e1102d30a000102c00002028af3270f00190b95636c6f73656420706f72\
            742070726f6265",
            "42bc748467ac568e9e05a439080045c00049189c00003f017621c0000202c63364010303dd620000\
            00004500002d6ce940003e11e39fc6336401c00002028af3270f0019ec61636c6f73656420706f72\
            742070726f6265",
        ),
        (
            "time exceeded (udp)",
            "ea011d146ad8aef1f8ed8f0c080045c00041db8100003f016a43c63364020a0001020b0056d90000\
            0000450000256d17400001113fad0a000102c0000202ea83829a00110b8d74746c2070726f6265",
            "42bc748467ac568e9e05a439080045c00041db81000040014a10c6336402c63364010b00760c0000\
            0000450000256d1740000111207ac6336401c0000202ea83829a0011ec5974746c2070726f6265",
        ),
        (
            "icmpv6 port unreachable (udp)",
            "ea011d146ad8aef1f8ed8f0c86dd60048f2400493a3e20010db8000200000000000000000002fd00\
            00010000000000000000000000020104b3c600000000600d70890019113efd000001000000000000\
            00000000000220010db8000200000000000000000002dea3270f00198c59636c6f73656420706f72\
            742070726f6265",
            "42bc748467ac568e9e05a43986dd60048f2400493a3f20010db80002000000000000000000022001\
            0db80001000000000000000000010104830f00000000600d70890019113e20010db8000100000000\
            00000000000120010db8000200000000000000000002dea3270f00195ba2636c6f73656420706f72\
            742070726f6265",
        ),
        (
            "icmpv6 time exceeded (udp)",
            "ea011d146ad8aef1f8ed8f0c86dd60075d4100413a3f20010db8000100000000000000000002fd00\
            00010000000000000000000000020300536500000000600ac15400111101fd000001000000000000\
            00000000000220010db8000200000000000000000002ecc5829a00118c5174746c2070726f6265",
            "42bc748467ac568e9e05a43986dd60075d4100413a4020010db80001000000000000000000022001\
            0db8000100000000000000000001030022ae00000000600ac1540011110120010db8000100000000\
            00000000000120010db8000200000000000000000002ecc5829a00115b9a74746c2070726f6265",
        ),
    ];
    for (what, inside, outside) in pairs {
        let inside = ok(ETHERNET, &hex(inside)).packet;
        let outside = ok(ETHERNET, &hex(outside)).packet;
        let (
            L4::Icmp {
                quoted: Some(qi), ..
            },
            L4::Icmp {
                quoted: Some(qo), ..
            },
        ) = (inside.l4, outside.l4)
        else {
            panic!("{what}: no quoted tuples");
        };
        assert_eq!(
            (qi.sport, qi.dst, qi.dport),
            (qo.sport, qo.dst, qo.dport),
            "{what}"
        );
        assert_ne!(qi.src, qo.src, "{what}");
        assert_eq!(inside.payload_digest, outside.payload_digest, "{what}");
        assert_eq!(inside.payload_len, outside.payload_len, "{what}");
    }
}

#[test]
fn informational_icmp_is_not_an_error() {
    // Router solicitation/advertisement, neighbour solicitation/advertisement, MLD
    // query/report/done, MLDv2 report, redirect: none quotes a packet.
    for t in [130, 131, 132, 133, 134, 135, 136, 143] {
        assert!(!is_icmp_error(Proto::Icmpv6, t), "icmpv6 type {t}");
        let d = ok(101, &ipv6(58, A6, B6, &icmp(t, 0, [0; 4], &[0; 16])));
        assert!(
            matches!(
                d.packet.l4,
                L4::Icmp {
                    quoted: None,
                    echo: None,
                    ..
                }
            ),
            "icmpv6 type {t}"
        );
    }
    for t in [1, 2, 3, 4] {
        assert!(is_icmp_error(Proto::Icmpv6, t));
    }
    // ICMP: echo, router advertisement/solicitation, timestamp, address mask, are not
    // errors; unreachable, source quench, redirect, time exceeded, parameter problem are.
    for t in [0, 8, 9, 10, 13, 14, 17, 18] {
        assert!(!is_icmp_error(Proto::Icmp, t), "icmp type {t}");
    }
    for t in [3, 4, 5, 11, 12] {
        assert!(is_icmp_error(Proto::Icmp, t), "icmp type {t}");
    }
    assert!(!is_icmp_error(Proto::Udp, 3));
}

#[test]
fn igmp_is_named() {
    // IGMPv2 membership report to 224.0.0.251.
    let d = ok(
        101,
        &ipv4(
            2,
            A,
            [224, 0, 0, 251],
            &[0x16, 0, 0xfa, 0x04, 224, 0, 0, 251],
        ),
    );
    assert_eq!(d.packet.tuple.proto, Proto::Other(2));
    assert_eq!(d.packet.tuple.proto.name(), "igmp");
    assert_eq!(Proto::Other(3).name(), "proto-3");
}

// ---------------------------------------------------------------------------------------
// Reassembly

use super::defrag::{self, Datagram, Limits, Reassembler};

/// IPv4 fragments of `datagram` (a transport segment) at the given (offset, length)
/// pieces, the last one without more-fragments.
fn v4_fragments(id: u16, datagram: &[u8], pieces: &[(usize, usize)]) -> Vec<Vec<u8>> {
    let end = pieces.iter().map(|&(o, l)| o + l).max().unwrap_or(0);
    pieces
        .iter()
        .map(|&(o, l)| {
            let more = if o + l < end { 0x2000 } else { 0 };
            ipv4_with(
                17,
                A,
                B,
                id,
                more | (o / 8) as u16,
                &[],
                &datagram[o..o + l],
            )
        })
        .collect()
}

/// IPv6 fragments, with a hop-by-hop header before the fragment header.
fn v6_fragments(id: u32, datagram: &[u8], pieces: &[(usize, usize)]) -> Vec<Vec<u8>> {
    let end = pieces.iter().map(|&(o, l)| o + l).max().unwrap_or(0);
    pieces
        .iter()
        .map(|&(o, l)| {
            let more = u16::from(o + l < end);
            let mut p = vec![44, 0, 1, 4, 0, 0, 0, 0];
            p.extend_from_slice(&[17, 0]);
            p.extend_from_slice(&(((o / 8) as u16) << 3 | more).to_be_bytes());
            p.extend_from_slice(&id.to_be_bytes());
            p.extend_from_slice(&datagram[o..o + l]);
            ipv6(0, A6, B6, &p)
        })
        .collect()
}

fn reassemble(r: &mut Reassembler<u8>, frames: &[Vec<u8>], order: &[usize]) -> Vec<Datagram> {
    let mut out = Vec::new();
    for (t, &i) in order.iter().enumerate() {
        let d = ok(RAW, &frames[i]);
        let frag = d.fragment.expect("a fragment");
        out.extend(r.push(0, &frag, &frames[i], t as i64));
    }
    out
}

#[test]
fn fragments_are_reassembled_in_and_out_of_order() {
    let datagram = udp(5000, 53, 0x4444, &[0x11; 100]);
    let whole = ok(RAW, &ipv4_with(17, A, B, 7, 0, &[], &datagram)).packet;
    let whole6 = ok(RAW, &ipv6(17, A6, B6, &datagram)).packet;
    let pieces = [(0, 32), (32, 48), (80, 28)];
    for order in [[0, 1, 2], [2, 0, 1], [1, 2, 0]] {
        for v6 in [false, true] {
            let frames = if v6 {
                v6_fragments(0x01020304, &datagram, &pieces)
            } else {
                v4_fragments(7, &datagram, &pieces)
            };
            let mut r = Reassembler::new(Limits::default());
            let got = reassemble(&mut r, &frames, &order);
            assert_eq!(got.len(), 1, "{order:?} v6 {v6}");
            assert_eq!(got[0].frames, 3);
            let p = decode(RAW, &got[0].bytes, got[0].len as u32).unwrap();
            assert_eq!(p.fragment, None);
            let p = p.packet;
            let want = if v6 { whole6 } else { whole };
            assert_eq!(p.tuple, want.tuple);
            assert_eq!((p.tuple.sport, p.tuple.dport), (5000, 53));
            assert_eq!(p.l4, L4::Udp);
            assert_eq!(
                (p.payload_len, p.payload_digest),
                (100, XxHash3_64::oneshot(&[0x11; 100]))
            );
            assert_eq!(p.payload_digest, want.payload_digest);
            assert!(!p.truncated);
            assert_eq!(r.in_progress(), 0);
            assert!(r.finish().is_empty());
        }
    }
}

#[test]
fn fragment_boundaries_do_not_change_the_datagram_digest() {
    // conntrack reassembles before NAT; the host fragments again on the way out.
    let datagram = udp(5000, 53, 0x4444, &(0..200u8).collect::<Vec<_>>());
    let mut digests = Vec::new();
    for pieces in [
        &[(0, 104), (104, 104)][..],
        &[(0, 48), (48, 96), (144, 64)][..],
    ] {
        let frames = v4_fragments(9, &datagram, pieces);
        let mut r = Reassembler::new(Limits::default());
        let order: Vec<usize> = (0..frames.len()).collect();
        let got = reassemble(&mut r, &frames, &order);
        let p = decode(RAW, &got[0].bytes, got[0].len as u32)
            .unwrap()
            .packet;
        digests.push((p.tuple.sport, p.payload_len, p.payload_digest));
    }
    assert_eq!(digests[0], digests[1]);
}

#[test]
fn overlapping_fragments_discard_the_datagram() {
    let datagram = udp(5000, 53, 0x4444, &[0x11; 100]);
    for v6 in [false, true] {
        let pieces = [(0, 48), (40, 40), (80, 28)];
        let frames = if v6 {
            v6_fragments(5, &datagram, &pieces)
        } else {
            v4_fragments(5, &datagram, &pieces)
        };
        let mut r = Reassembler::new(Limits::default());
        assert!(reassemble(&mut r, &frames, &[0, 1, 2]).is_empty());
        let dropped = r.finish();
        assert_eq!(dropped.get(defrag::OVERLAP), Some(&2), "v6 {v6}");
        assert_eq!(dropped.get(defrag::NEVER_COMPLETED), Some(&1), "v6 {v6}");
    }
    // An exact duplicate is dropped alone.
    let frames = v4_fragments(6, &datagram, &[(0, 48), (48, 60)]);
    let mut r = Reassembler::new(Limits::default());
    let got = reassemble(&mut r, &frames, &[0, 0, 1]);
    assert_eq!(got.len(), 1);
    assert_eq!(r.finish().get(defrag::DUPLICATE), Some(&1));
}

#[test]
fn fragments_never_completed_or_timed_out_are_counted() {
    let datagram = udp(5000, 53, 0x4444, &[0x11; 100]);
    let frames = v4_fragments(8, &datagram, &[(0, 32), (32, 48), (80, 28)]);
    let mut r = Reassembler::new(Limits::default());
    assert!(reassemble(&mut r, &frames, &[0, 2]).is_empty());
    assert_eq!(r.in_progress(), 1);
    assert_eq!(r.finish().get(defrag::NEVER_COMPLETED), Some(&2));

    // The missing fragment arrives after the timeout: too late.
    let limits = Limits {
        timeout_ns: 10,
        ..Limits::default()
    };
    let mut r = Reassembler::new(limits);
    let push = |r: &mut Reassembler<u8>, i: usize, ts| {
        let frag = ok(RAW, &frames[i]).fragment.unwrap();
        r.push(0, &frag, &frames[i], ts)
    };
    assert!(push(&mut r, 0, 0).is_none());
    assert!(push(&mut r, 1, 5).is_none());
    assert!(push(&mut r, 2, 100).is_none());
    assert_eq!(r.dropped().get(defrag::NEVER_COMPLETED), Some(&2));
    assert_eq!(r.in_progress(), 1);
}

#[test]
fn too_many_datagrams_in_progress() {
    let datagram = udp(5000, 53, 0x4444, &[0x11; 100]);
    let limits = Limits {
        max_datagrams: 2,
        ..Limits::default()
    };
    let mut r = Reassembler::new(limits);
    let mut completed = 0;
    for id in 0..5u16 {
        let frames = v4_fragments(id, &datagram, &[(0, 32), (32, 76)]);
        let frag = ok(RAW, &frames[0]).fragment.unwrap();
        assert!(r.push(0, &frag, &frames[0], 0).is_none());
        assert!(r.in_progress() <= 2);
        if id == 4 {
            let frag = ok(RAW, &frames[1]).fragment.unwrap();
            completed += usize::from(r.push(0, &frag, &frames[1], 0).is_some());
        }
    }
    assert_eq!(completed, 1);
    let dropped = r.finish();
    assert_eq!(dropped.get(defrag::TOO_MANY), Some(&3));
    assert_eq!(dropped.get(defrag::NEVER_COMPLETED), Some(&1));
    // Memory: the bytes held are bounded too.
    let limits = Limits {
        max_bytes: 64,
        ..Limits::default()
    };
    let mut r = Reassembler::new(limits);
    for id in 0..3u16 {
        let frames = v4_fragments(id, &datagram, &[(0, 32), (32, 76)]);
        let frag = ok(RAW, &frames[0]).fragment.unwrap();
        assert!(r.push(0, &frag, &frames[0], 0).is_none());
    }
    assert_eq!(r.in_progress(), 2);
    assert_eq!(r.dropped().get(defrag::TOO_MUCH), Some(&1));
}

#[test]
fn cut_fragments_make_a_truncated_datagram() {
    let datagram = udp(5000, 53, 0x4444, &[0x11; 100]);
    let frames = v4_fragments(3, &datagram, &[(0, 48), (48, 60)]);
    let mut r = Reassembler::new(Limits::default());
    let mut got = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        // The snaplen keeps 40 bytes of each IP packet.
        let cut = &f[..40];
        let d = decode(RAW, cut, f.len() as u32).unwrap();
        got.extend(r.push(0, &d.fragment.unwrap(), cut, i as i64));
    }
    assert_eq!(got.len(), 1);
    let p = decode(RAW, &got[0].bytes, got[0].len as u32)
        .unwrap()
        .packet;
    assert_eq!(
        (p.tuple.sport, p.tuple.dport, p.payload_len),
        (5000, 53, 100)
    );
    assert!(p.truncated);
}
