//! Fuzzes `decode::decode`: the first byte picks one of the supported link types, the
//! second says how many bytes the "wire" frame had beyond the captured ones (so snaplen
//! cuts are exercised), the rest is the captured frame.
//!
//! Beyond "no panic", it checks invariants later stages rely on: an IP length that fits
//! an IP header, a payload no longer than its packet, ports only where the protocol has
//! them (ICMP: the echo identifier as source, destination 0), and a reason for every skip.

#![no_main]

use libfuzzer_sys::fuzz_target;
use natcheck::decode::{decode, SUPPORTED_LINK_TYPES};

fuzz_target!(|data: &[u8]| {
    let [selector, cut, frame @ ..] = data else {
        return;
    };
    let linktype = SUPPORTED_LINK_TYPES[usize::from(*selector) % SUPPORTED_LINK_TYPES.len()];
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
            if p.tuple.proto.is_icmp() {
                assert_eq!(p.tuple.dport, 0);
            } else if !p.tuple.proto.has_ports() {
                assert_eq!((p.tuple.sport, p.tuple.dport), (0, 0));
            }
        }
        Err(skip) => assert!(!skip.reason().is_empty()),
    }
});
