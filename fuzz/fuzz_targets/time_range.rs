//! Fuzzes the reader of `--since`/`--until` times: arbitrary text. No panic; a time
//! read is written back (RFC 3339, nanoseconds, UTC) as text that reads as the same
//! time, and a range of two times holds the first and not the second.

#![no_main]

use libfuzzer_sys::fuzz_target;
use natcheck::capture::range::{parse_time, rfc3339, TimeRange};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (a, b) = text.split_once('\n').unwrap_or((text, ""));
    let Ok(t) = parse_time(a) else { return };
    assert_eq!(parse_time(&rfc3339(t)), Ok(t), "{a:?}");
    if let Ok(u) = parse_time(b) {
        match TimeRange::new(Some(t), Some(u)) {
            Ok(r) => assert!(r.contains(t) && !r.contains(u)),
            Err(_) => assert!(t >= u),
        }
    }
});
