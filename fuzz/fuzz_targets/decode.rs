//! Fuzzes `decode::decode`: the first byte picks one of the supported link types, the
//! second says how many bytes the "wire" frame had beyond the captured ones (so snaplen
//! cuts are exercised), the rest is the captured frame. When the first byte's high
//! nibble names a tunnel, the rest is wrapped in that tunnel's headers instead (an
//! Ethernet frame, IPv4 or IPv6, UDP or GRE, the tunnel header), so the fuzzer starts
//! inside tunnels rather than having to find them.
//!
//! Beyond "no panic", it checks invariants later stages rely on: an IP length that fits
//! an IP header, a payload no longer than its packet, ports only where the protocol has
//! them (ICMP: the echo identifier as source, destination 0), a reason for every skip,
//! and fragments whose pieces lie within the frame and reassemble without panicking.

#![no_main]

use libfuzzer_sys::fuzz_target;
use natcheck::decode::defrag::{Limits, Reassembler};
use natcheck::decode::{decode, LINKTYPE_RAW, SUPPORTED_LINK_TYPES};

/// An IPv4 (or IPv6) packet of protocol `proto` around `payload`, its length fields
/// right for the whole.
fn ip(v6: bool, proto: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = if v6 {
        let len = u16::try_from(payload.len()).unwrap_or(u16::MAX);
        let mut h = vec![0x60, 0, 0, 0];
        h.extend_from_slice(&len.to_be_bytes());
        h.extend_from_slice(&[proto, 64]);
        h.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        h.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        h
    } else {
        let len = u16::try_from(payload.len() + 20).unwrap_or(u16::MAX);
        let mut h = vec![0x45, 0];
        h.extend_from_slice(&len.to_be_bytes());
        h.extend_from_slice(&[0, 1, 0x40, 0, 64, proto, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2]);
        h
    };
    h.extend_from_slice(payload);
    h
}

fn udp(dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(payload.len() + 8).unwrap_or(u16::MAX);
    let mut u = vec![0xc0, 0x00];
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&len.to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

/// `inner` in the tunnel `kind` names (1 to 10), as an Ethernet frame; `None` for 0
/// and above 10.
fn tunnelled(kind: u8, inner: &[u8]) -> Option<Vec<u8>> {
    let with = |head: &[u8]| [head, inner].concat();
    let v6 = kind % 2 == 0;
    let packet = match kind {
        1 | 2 => ip(v6, 17, &udp(4789, &with(&[0x08, 0, 0, 0, 0, 0, 1, 0]))),
        3 | 4 => ip(v6, 17, &udp(6081, &with(&[0x01, 0, 0x65, 0x58, 0, 0, 1, 0, 1, 2, 3, 4]))),
        5 => ip(v6, 47, &with(&[0xb0, 0, 0x65, 0x58, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2])),
        6 => ip(v6, 47, &with(&[0x10, 0, 0x88, 0xbe, 0, 0, 0, 1, 0x10, 1, 0, 1, 0, 0, 0, 0])),
        7 => {
            let erspan3 = [0x20, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
            ip(v6, 47, &with(&[&[0x10, 0, 0x22, 0xeb, 0, 0, 0, 1][..], &erspan3].concat()))
        }
        8 => ip(v6, 4, inner),
        9 => ip(false, 41, inner),
        10 => ip(false, 17, &udp(3544, inner)),
        _ => return None,
    };
    let ethertype: &[u8] = if v6 { &[0x86, 0xdd] } else { &[0x08, 0x00] };
    Some([&[2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2][..], ethertype, &packet].concat())
}

fuzz_target!(|data: &[u8]| {
    let [selector, cut, frame @ ..] = data else {
        return;
    };
    let wrapped = tunnelled(selector >> 4, frame);
    let (linktype, frame) = match &wrapped {
        Some(f) => (1, &f[..]),
        None => (
            SUPPORTED_LINK_TYPES[usize::from(*selector) % SUPPORTED_LINK_TYPES.len()],
            frame,
        ),
    };
    let orig_len = u32::try_from(frame.len())
        .unwrap_or(u32::MAX)
        .saturating_add(u32::from(*cut));
    match decode(linktype, frame, orig_len) {
        Ok(d) => {
            let p = d.packet;
            assert!(p.ip_len >= 20, "ip length {} below any IP header", p.ip_len);
            assert!(
                p.payload_len <= p.ip_len,
                "payload {} beyond ip length {}",
                p.payload_len,
                p.ip_len
            );
            assert_eq!((p.ts_ns, p.point), (0, 0));
            if let Some(t) = p.tunnel {
                assert!((1..=natcheck::decode::MAX_TUNNEL_DEPTH).contains(&t.depth));
            }
            if p.tuple.proto.is_icmp() {
                assert_eq!(p.tuple.dport, 0);
            } else if !p.tuple.proto.has_ports() {
                assert_eq!((p.tuple.sport, p.tuple.dport), (0, 0));
            }
            // A fragment's pieces lie within the frame, and reassembly never panics:
            // the frame twice, then as the last fragment, makes whatever datagram it can.
            if let Some(f) = d.fragment {
                assert!(f.header.0 <= f.header.1 && f.header.1 <= frame.len());
                assert!(f.data.0 <= f.data.1 && f.data.1 <= frame.len());
                let mut r = Reassembler::new(Limits::default());
                let mut last = f;
                last.more = false;
                for (frag, ts) in [(f, 0), (f, 1), (last, 2)] {
                    if let Some(dg) = r.push(0u8, &frag, frame, ts) {
                        assert!(dg.bytes.len() <= dg.len);
                        let len = u32::try_from(dg.len).unwrap_or(u32::MAX);
                        let _ = decode(LINKTYPE_RAW, &dg.bytes, len);
                    }
                }
                let _ = r.finish();
            }
        }
        Err(skip) => assert!(!skip.reason().is_empty()),
    }
});
