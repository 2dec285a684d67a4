//! Tunnels: every kind decode opens, nesting, the depth limit, headers cut at every
//! byte, and payloads that only look like tunnels.

use super::*;
use crate::model::{Tunnel, TunnelKind};

/// Node addresses of the underlay.
const N1: [u8; 4] = [192, 0, 2, 101];
const N2: [u8; 4] = [192, 0, 2, 102];
const N1_6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
];
const N2_6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2,
];
const IPPROTO_IPIP: u8 = 4;
const IPPROTO_IPV6: u8 = 41;
const IPPROTO_GRE: u8 = 47;

/// The inner packet every tunnel carries: IPv4 TCP with 11 bytes of payload.
fn inner_v4() -> Vec<u8> {
    let t = tcp_with(
        40000,
        80,
        7,
        tcp_flags::ACK,
        &ts_option(1, 2),
        0,
        b"hello world",
    );
    ipv4(6, A, B, &t)
}

fn inner_v6() -> Vec<u8> {
    ipv6(17, A6, B6, &udp(5353, 53, 0, b"query"))
}

fn vxlan_header(vni: u32) -> Vec<u8> {
    let [_, a, b, c] = vni.to_be_bytes();
    vec![0x08, 0, 0, 0, a, b, c, 0]
}

/// A GRE header with the given protocol and optional checksum, key and sequence.
fn gre(protocol: u16, checksum: bool, key: Option<u32>, seq: Option<u32>) -> Vec<u8> {
    let flags = u8::from(checksum) * 0x80 + u8::from(key.is_some()) * 0x20;
    let flags = flags + u8::from(seq.is_some()) * 0x10;
    let mut h = vec![flags, 0];
    h.extend_from_slice(&protocol.to_be_bytes());
    if checksum {
        h.extend_from_slice(&[0xab, 0xcd, 0, 0]);
    }
    for field in [key, seq].into_iter().flatten() {
        h.extend_from_slice(&field.to_be_bytes());
    }
    h
}

fn geneve(protocol: u16, vni: u32, options: &[u8]) -> Vec<u8> {
    let [_, a, b, c] = vni.to_be_bytes();
    let mut h = vec![(options.len() / 4) as u8, 0];
    h.extend_from_slice(&protocol.to_be_bytes());
    h.extend_from_slice(&[a, b, c, 0]);
    h.extend_from_slice(options);
    h
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn over_udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    eth(0x0800, &ipv4(17, N1, N2, &udp(sport, dport, 0, payload)))
}

/// The packet decoding `inner` (a frame of `linktype`) on its own gives.
fn alone(linktype: u32, inner: &[u8]) -> Packet {
    ok(linktype, inner).packet
}

/// Asserts `frame` decodes to the packet `inner` (of `linktype`) is, inside `tunnel`.
fn carries(frame: &[u8], linktype: u32, inner: &[u8], tunnel: Tunnel) {
    let got = ok(ETHERNET, frame).packet;
    let want = Packet {
        tunnel: Some(tunnel),
        ..alone(linktype, inner)
    };
    assert_eq!(got, want);
}

fn tunnel(kind: TunnelKind, id: Option<u32>, outer: Tuple) -> Tunnel {
    Tunnel {
        kind,
        depth: 1,
        id,
        outer,
    }
}

fn udp4(sport: u16, dport: u16) -> Tuple {
    Tuple {
        proto: Proto::Udp,
        src: v4(N1),
        sport,
        dst: v4(N2),
        dport,
    }
}

fn no_ports(proto: u8, src: IpAddr, dst: IpAddr) -> Tuple {
    Tuple {
        proto: Proto::from_number(proto),
        src,
        sport: 0,
        dst,
        dport: 0,
    }
}

#[test]
fn vxlan_on_either_default_port_gives_the_inner_packet() {
    let inner = eth(0x0800, &inner_v4());
    for port in [4789, 8472] {
        let frame = over_udp(51000, port, &cat(&[&vxlan_header(0x0abcde), &inner]));
        let t = tunnel(TunnelKind::Vxlan, Some(0x0abcde), udp4(51000, port));
        carries(&frame, ETHERNET, &inner, t);
    }
    // Inner VLAN tags are followed, as on any Ethernet frame.
    let tagged = eth_tagged(&[(0x8100, 10)], 0x86dd, &inner_v6());
    let frame = over_udp(51000, 4789, &cat(&[&vxlan_header(7), &tagged]));
    carries(
        &frame,
        ETHERNET,
        &tagged,
        tunnel(TunnelKind::Vxlan, Some(7), udp4(51000, 4789)),
    );
}

#[test]
fn vxlan_ports_come_from_the_options() {
    let inner = eth(0x0800, &inner_v4());
    let payload = cat(&[&vxlan_header(1), &inner]);
    let opts = Options {
        vxlan_ports: vec![9999],
        ..Options::default()
    };
    let on = |dport| {
        let frame = over_udp(1024, dport, &payload);
        decode_with(ETHERNET, &frame, frame.len() as u32, &opts).map(|d| d.packet)
    };
    assert_eq!(on(9999).unwrap().tuple, alone(ETHERNET, &inner).tuple);
    let p = on(4789).unwrap();
    assert_eq!((p.tuple.dport, p.tunnel), (4789, None));
}

#[test]
fn udp_to_a_vxlan_port_without_the_i_flag_stays_udp() {
    let inner = eth(0x0800, &inner_v4());
    let mut header = vxlan_header(1);
    header[0] = 0;
    let frame = over_udp(1024, 4789, &cat(&[&header, &inner]));
    let p = ok(ETHERNET, &frame).packet;
    assert_eq!(
        (p.tuple.proto, p.tuple.dport, p.tunnel),
        (Proto::Udp, 4789, None)
    );
    // Too short for a VXLAN header, even with the I flag.
    let p = ok(ETHERNET, &over_udp(1024, 4789, &[0x08, 0, 0])).packet;
    assert_eq!((p.tuple.dport, p.tunnel), (4789, None));
}

#[test]
fn vxlan_carrying_no_ip_leaves_the_outer_packet() {
    let arp = eth(0x0806, &[0; 28]);
    let frame = over_udp(51000, 4789, &cat(&[&vxlan_header(1), &arp]));
    let p = ok(ETHERNET, &frame).packet;
    assert_eq!((p.tuple, p.tunnel), (udp4(51000, 4789), None));
}

#[test]
fn geneve_carries_ethernet_or_ip_after_its_options() {
    let inner = eth(0x0800, &inner_v4());
    let options = [0x01, 0x02, 0x80, 0x01, 0xde, 0xad, 0xbe, 0xef];
    let frame = over_udp(40001, 6081, &cat(&[&geneve(0x6558, 42, &options), &inner]));
    carries(
        &frame,
        ETHERNET,
        &inner,
        tunnel(TunnelKind::Geneve, Some(42), udp4(40001, 6081)),
    );

    // IPv6 directly after the header, over an IPv6 underlay.
    let payload = cat(&[&geneve(0x86dd, 9, &[]), &inner_v6()]);
    let frame = eth(
        0x86dd,
        &ipv6(17, N1_6, N2_6, &udp(40001, 6081, 0, &payload)),
    );
    let outer = Tuple {
        src: v6(N1_6),
        dst: v6(N2_6),
        ..udp4(40001, 6081)
    };
    carries(
        &frame,
        RAW,
        &inner_v6(),
        tunnel(TunnelKind::Geneve, Some(9), outer),
    );

    // Another version, or a protocol Geneve does not carry here: plain UDP.
    let mut v1 = geneve(0x6558, 1, &[]);
    v1[0] |= 0x40;
    for header in [v1, geneve(0x0806, 1, &[])] {
        let p = ok(ETHERNET, &over_udp(40001, 6081, &cat(&[&header, &inner]))).packet;
        assert_eq!((p.tuple.dport, p.tunnel), (6081, None));
    }
}

#[test]
fn gre_with_checksum_key_and_sequence_carries_ip_or_ethernet() {
    let n = |a| v4(a);
    let outer = no_ports(IPPROTO_GRE, n(N1), n(N2));
    let header = gre(0x0800, true, Some(0x1234_5678), Some(9));
    let frame = eth(
        0x0800,
        &ipv4(IPPROTO_GRE, N1, N2, &cat(&[&header, &inner_v4()])),
    );
    carries(
        &frame,
        RAW,
        &inner_v4(),
        tunnel(TunnelKind::Gre, Some(0x1234_5678), outer),
    );

    // IPv6 in GRE over IPv6, no key.
    let payload = cat(&[&gre(0x86dd, false, None, Some(1)), &inner_v6()]);
    let frame = eth(0x86dd, &ipv6(IPPROTO_GRE, N1_6, N2_6, &payload));
    let outer6 = no_ports(IPPROTO_GRE, v6(N1_6), v6(N2_6));
    carries(
        &frame,
        RAW,
        &inner_v6(),
        tunnel(TunnelKind::Gre, None, outer6),
    );

    // Transparent Ethernet bridging (gretap): an Ethernet frame, VLAN tag and all.
    let tagged = eth_tagged(&[(0x8100, 5)], 0x0800, &inner_v4());
    let payload = cat(&[&gre(0x6558, false, Some(3), None), &tagged]);
    let frame = eth(0x0800, &ipv4(IPPROTO_GRE, N1, N2, &payload));
    carries(
        &frame,
        ETHERNET,
        &tagged,
        tunnel(TunnelKind::Gre, Some(3), outer),
    );
}

#[test]
fn gre_version_one_and_other_payloads_stay_gre() {
    // PPTP's enhanced GRE (version 1, PPP payload).
    let pptp = [0x30, 0x81, 0x88, 0x0b, 0, 4, 0, 1, 0, 0, 0, 1, 0xff, 0x03];
    // Version 0 carrying something not opened (MPLS).
    let mpls = cat(&[&gre(0x8847, false, None, None), &inner_v4()]);
    for payload in [&pptp[..], &mpls] {
        let frame = eth(0x0800, &ipv4(IPPROTO_GRE, N1, N2, payload));
        let p = ok(ETHERNET, &frame).packet;
        assert_eq!((p.tuple.proto, p.tunnel), (Proto::Gre, None));
    }
}

fn erspan2_header(session: u16) -> Vec<u8> {
    let [s0, s1] = session.to_be_bytes();
    vec![0x10, 0x05, s0 & 0x03, s1, 0, 0, 0, 7]
}

fn erspan3_header(session: u16, frame_type: u8, platform: bool) -> Vec<u8> {
    let [s0, s1] = session.to_be_bytes();
    let mut h = vec![0x20, 0x05, s0 & 0x03, s1, 1, 2, 3, 4, 0, 0];
    h.push(frame_type << 2);
    h.push(u8::from(platform));
    if platform {
        h.extend_from_slice(&[0x11; 8]);
    }
    h
}

#[test]
fn erspan_types_one_two_and_three_carry_the_mirrored_frame() {
    let mirrored = eth(0x0800, &inner_v4());
    let outer = no_ports(IPPROTO_GRE, v4(N1), v4(N2));
    let over_gre = |gre_header: Vec<u8>, erspan: &[u8], inner: &[u8]| {
        eth(
            0x0800,
            &ipv4(IPPROTO_GRE, N1, N2, &cat(&[&gre_header, erspan, inner])),
        )
    };
    // Type I: no sequence number, the frame right after GRE.
    let frame = over_gre(gre(0x88be, false, None, None), &[], &mirrored);
    carries(
        &frame,
        ETHERNET,
        &mirrored,
        tunnel(TunnelKind::Erspan, None, outer),
    );
    // Type II: sequence number and an 8-byte header with the session ID.
    let frame = over_gre(
        gre(0x88be, false, None, Some(1)),
        &erspan2_header(0x301),
        &mirrored,
    );
    carries(
        &frame,
        ETHERNET,
        &mirrored,
        tunnel(TunnelKind::Erspan, Some(0x301), outer),
    );
    // Type III, with and without the platform-specific subheader; IP frame type.
    for platform in [false, true] {
        let h = erspan3_header(77, 0, platform);
        let frame = over_gre(gre(0x22eb, false, None, Some(1)), &h, &mirrored);
        carries(
            &frame,
            ETHERNET,
            &mirrored,
            tunnel(TunnelKind::Erspan, Some(77), outer),
        );
    }
    let h = erspan3_header(77, 2, false);
    let frame = over_gre(gre(0x22eb, false, None, Some(1)), &h, &inner_v4());
    carries(
        &frame,
        RAW,
        &inner_v4(),
        tunnel(TunnelKind::Erspan, Some(77), outer),
    );

    // An impossible version or frame type is named where the header starts.
    let mut bad = erspan2_header(1);
    bad[0] = 0x30;
    let frame = over_gre(gre(0x88be, false, None, Some(1)), &bad, &mirrored);
    assert_eq!(
        skip(ETHERNET, &frame).reason(),
        "malformed erspan header at byte 42: version 3"
    );
    let frame = over_gre(
        gre(0x22eb, false, None, Some(1)),
        &erspan3_header(1, 5, false),
        &mirrored,
    );
    assert_eq!(
        skip(ETHERNET, &frame).reason(),
        "malformed erspan header at byte 42: frame type 5"
    );
}

#[test]
fn ip_in_ip_kinds_follow_both_versions() {
    let cases = [
        (false, IPPROTO_IPIP, TunnelKind::Ipip),
        (false, IPPROTO_IPV6, TunnelKind::Sit),
        (true, IPPROTO_IPV6, TunnelKind::Ip6ip6),
        (true, IPPROTO_IPIP, TunnelKind::Ip4ip6),
    ];
    for (outer_v6, proto, kind) in cases {
        let inner = if proto == IPPROTO_IPIP {
            inner_v4()
        } else {
            inner_v6()
        };
        let (frame, outer) = if outer_v6 {
            let frame = eth(0x86dd, &ipv6(proto, N1_6, N2_6, &inner));
            (frame, no_ports(proto, v6(N1_6), v6(N2_6)))
        } else {
            let frame = eth(0x0800, &ipv4(proto, N1, N2, &inner));
            (frame, no_ports(proto, v4(N1), v4(N2)))
        };
        carries(&frame, RAW, &inner, tunnel(kind, None, outer));
    }
    // The version the protocol announced must be the inner packet's.
    let frame = eth(0x0800, &ipv4(IPPROTO_IPIP, N1, N2, &inner_v6()));
    assert_eq!(
        skip(ETHERNET, &frame).reason(),
        "malformed ipv4 header at byte 34: version 6"
    );
}

fn teredo_auth(id: &[u8], value: &[u8]) -> Vec<u8> {
    let mut h = vec![0, 1, id.len() as u8, value.len() as u8];
    h.extend_from_slice(id);
    h.extend_from_slice(value);
    h.extend_from_slice(&[0xaa; 8]);
    h.push(0);
    h
}

const TEREDO_ORIGIN: [u8; 8] = [0, 0, 0x8d, 0xbf, 0x3f, 0xff, 0xfd, 0x9a];

#[test]
fn teredo_carries_ipv6_after_optional_headers_on_either_port() {
    for (sport, dport) in [(3544, 40000), (40000, 3544)] {
        for headers in [vec![], TEREDO_ORIGIN.to_vec(), teredo_auth(b"id", b"val")] {
            let headers = if headers.len() > 8 {
                cat(&[&headers, &TEREDO_ORIGIN])
            } else {
                headers
            };
            let frame = over_udp(sport, dport, &cat(&[&headers, &inner_v6()]));
            let t = tunnel(TunnelKind::Teredo, None, udp4(sport, dport));
            carries(&frame, RAW, &inner_v6(), t);
        }
    }
    // What is not an IPv6 packet filling the datagram is plain UDP to 3544.
    let mut short = inner_v6();
    short[5] -= 1;
    for payload in [b"\x60 not an ipv6 packet, whatever it is".to_vec(), short] {
        let p = ok(ETHERNET, &over_udp(40000, 3544, &payload)).packet;
        assert_eq!((p.tuple.dport, p.tunnel), (3544, None));
    }
}

#[test]
fn nested_tunnels_keep_the_outermost_and_count_the_depth() {
    // IPv4 TCP in VXLAN in GRE in IP in IP.
    let vx = cat(&[&vxlan_header(5), &eth(0x0800, &inner_v4())]);
    let in_gre = ipv4(17, A, B, &udp(1000, 4789, 0, &vx));
    let gre_packet = ipv4(
        IPPROTO_GRE,
        N1,
        B,
        &cat(&[&gre(0x0800, false, Some(2), None), &in_gre]),
    );
    let frame = eth(0x0800, &ipv4(IPPROTO_IPIP, N1, N2, &gre_packet));
    let p = ok(ETHERNET, &frame).packet;
    assert_eq!(p.tuple, alone(RAW, &inner_v4()).tuple);
    let outer = no_ports(IPPROTO_IPIP, v4(N1), v4(N2));
    assert_eq!(
        p.tunnel,
        Some(Tunnel {
            depth: 3,
            ..tunnel(TunnelKind::Ipip, None, outer)
        })
    );

    // Four tunnels are opened, not a fifth: the packet is then an IP-in-IP one.
    let mut packet = inner_v4();
    for _ in 0..5 {
        packet = ipv4(IPPROTO_IPIP, N1, N2, &packet);
    }
    let p = ok(RAW, &packet).packet;
    assert_eq!(p.tuple.proto, Proto::Other(IPPROTO_IPIP));
    assert_eq!(p.tunnel.map(|t| t.depth), Some(MAX_TUNNEL_DEPTH));
}

#[test]
fn fragments_open_once_whole_and_inner_fragments_keep_the_tunnel() {
    // A fragmented outer packet is not opened: its payload is part of the tunnel.
    let first = ipv4_with(IPPROTO_IPIP, N1, N2, 9, 0x2000, &[], &inner_v4()[..24]);
    let d = ok(RAW, &first);
    assert_eq!((d.packet.tunnel, d.fragment.is_some()), (None, true));

    // A fragment inside a tunnel is one, its pieces where the frame holds them.
    let inner_frag = ipv4_with(17, A, B, 9, 0x2000, &[], &udp(1, 2, 0, &[0; 16]));
    let frame = eth(0x0800, &ipv4(IPPROTO_IPIP, N1, N2, &inner_frag));
    let d = ok(ETHERNET, &frame);
    let f = d.fragment.expect("a fragment");
    assert_eq!((f.header, f.key.src), ((34, 54), v4(A)));
    assert_eq!(d.packet.tunnel.map(|t| t.kind), Some(TunnelKind::Ipip));
}

/// Frames whose tunnel header can be recognised from the first `known` bytes of the
/// outer payload (which starts at byte `at`).
fn tunnel_frames() -> Vec<(&'static str, Vec<u8>, usize, usize)> {
    let e = eth(0x0800, &inner_v4());
    let gre_frame = |payload: &[u8]| eth(0x0800, &ipv4(IPPROTO_GRE, N1, N2, payload));
    let erspan3 = erspan3_header(1, 0, true);
    vec![
        (
            "vxlan",
            over_udp(9, 4789, &cat(&[&vxlan_header(1), &e])),
            42,
            1,
        ),
        (
            "geneve",
            over_udp(9, 6081, &cat(&[&geneve(0x6558, 1, &[0; 8]), &e])),
            42,
            4,
        ),
        (
            "gre",
            gre_frame(&cat(&[&gre(0x0800, true, Some(1), Some(1)), &inner_v4()])),
            34,
            4,
        ),
        (
            "gretap",
            gre_frame(&cat(&[&gre(0x6558, false, None, None), &e])),
            34,
            4,
        ),
        (
            "erspan2",
            gre_frame(&cat(&[
                &gre(0x88be, false, None, Some(1)),
                &erspan2_header(1),
                &e,
            ])),
            34,
            4,
        ),
        (
            "erspan3",
            gre_frame(&cat(&[&gre(0x22eb, false, None, Some(1)), &erspan3, &e])),
            34,
            4,
        ),
        (
            "ipip",
            eth(0x0800, &ipv4(IPPROTO_IPIP, N1, N2, &inner_v4())),
            34,
            0,
        ),
        (
            "teredo",
            over_udp(9, 3544, &cat(&[&TEREDO_ORIGIN, &inner_v6()])),
            42,
            2,
        ),
    ]
}

#[test]
fn a_tunnel_cut_anywhere_is_a_located_skip_or_the_cut_inner_packet() {
    for (name, frame, at, known) in tunnel_frames() {
        let whole = ok(ETHERNET, &frame).packet;
        assert!(whole.tunnel.is_some(), "{name}: not opened");
        for cut in at + known..frame.len() {
            match decode(ETHERNET, &frame[..cut], frame.len() as u32) {
                Ok(d) => {
                    let p = d.packet;
                    assert_eq!(p.tunnel, whole.tunnel, "{name} cut at {cut}");
                    assert_eq!(p.tuple, whole.tuple, "{name} cut at {cut}");
                    assert!(p.truncated, "{name} cut at {cut}");
                }
                Err(Skip::Truncated { offset, .. }) => {
                    assert!(
                        offset >= at && offset <= cut,
                        "{name} cut at {cut}: {offset}"
                    )
                }
                Err(s) => panic!("{name} cut at {cut}: {}", s.reason()),
            }
        }
    }
}

#[test]
fn cut_tunnel_headers_name_their_layer_and_offset() {
    let reason =
        |frame: &[u8], cut: usize| match decode(ETHERNET, &frame[..cut], frame.len() as u32) {
            Ok(d) => panic!("unexpected packet {:?}", d.packet),
            Err(s) => s.reason(),
        };
    let frames = tunnel_frames();
    let frame = |name| &frames.iter().find(|f| f.0 == name).unwrap().1;
    for (name, cut, want) in [
        ("vxlan", 45, "truncated vxlan header at byte 42"),
        ("vxlan", 55, "truncated ethernet header at byte 50"),
        ("vxlan", 70, "truncated ipv4 header at byte 64"),
        ("vxlan", 90, "truncated tcp header at byte 84"),
        ("geneve", 55, "truncated geneve header at byte 42"),
        ("gre", 40, "truncated gre header at byte 34"),
        ("erspan2", 45, "truncated erspan header at byte 42"),
        ("erspan3", 60, "truncated erspan header at byte 42"),
        ("ipip", 40, "truncated ipv4 header at byte 34"),
        ("teredo", 45, "truncated teredo header at byte 42"),
        ("teredo", 52, "truncated ipv6 header at byte 50"),
    ] {
        assert_eq!(reason(frame(name), cut), want, "{name} cut at {cut}");
    }
}

#[test]
fn packet_stays_small() {
    // 144 bytes before tunnels were kept, 200 with them.
    assert!(std::mem::size_of::<Packet>() <= 200);
}
