//! Fuzzes what `natcheck collect` reads from outside itself: arbitrary bytes as a
//! TPACKET_V3 ring block (every packet handed out lies inside the block, and no
//! more packets come out than the block announces), and as text for the `tcpdump
//! -ddd` program reader, the `-i` point parser and the bundle manifest reader (no
//! panic; a program read has 1 to 4096 instructions).

#![no_main]

use libfuzzer_sys::fuzz_target;
use natcheck::bundle::Manifest;
use natcheck::collect::filter::{parse_ddd, MAX_INSNS};
use natcheck::collect::ring::packets;
use natcheck::collect::target::Target;

fuzz_target!(|data: &[u8]| {
    let announced = data
        .get(12..16)
        .map_or(0, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    let range = data.as_ptr_range();
    let mut n = 0u64;
    for p in packets(data) {
        n += 1;
        let inside = p.data.as_ptr_range();
        assert!(
            range.start <= inside.start && inside.end <= range.end,
            "packet outside the block"
        );
    }
    assert!(n <= u64::from(announced), "more packets than announced");

    let text = String::from_utf8_lossy(data);
    if let Ok(prog) = parse_ddd(&text) {
        assert!(!prog.is_empty() && prog.len() <= MAX_INSNS);
    }
    let _ = text.parse::<Target>();
    let _ = Manifest::from_json(&text);
});
