//! Fuzzes `decode::decode`: the first byte picks one of the supported link types, the
//! second says how many bytes the "wire" frame had beyond the captured ones (so snaplen
//! cuts are exercised), the rest is the captured frame.
//!
//! Beyond "no panic", it checks invariants later stages rely on: an IP length that fits
//! an IP header, a payload no longer than its packet, ports only where the protocol has
//! them (ICMP: the echo identifier as source, destination 0), a reason for every skip,
//! and fragments whose pieces lie within the frame and reassemble without panicking.

#![no_main]

use libfuzzer_sys::fuzz_target;
use natcheck::decode::defrag::{Limits, Reassembler};
use natcheck::decode::{decode, LINKTYPE_RAW, SUPPORTED_LINK_TYPES};

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
