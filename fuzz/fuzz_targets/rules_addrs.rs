//! Fuzzes the `ip addr` / `ip -o addr` / `ip -j addr` reader: any bytes must parse
//! without a panic and with every warning on a line of the input, and an `ip -o addr`
//! line before and after them must give its address intact.
#![no_main]

use libfuzzer_sys::fuzz_target;
use natcheck::diag::Location;
use natcheck::rules::{addrs, HostAddr, Prefix};

const GOOD: &str = "2: eth0    inet 203.0.113.1/24 brd 203.0.113.255 scope global eth0\\       valid_lft forever preferred_lft forever\n";

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = addrs::parse("fuzz", &text);

    let all = format!("{GOOD}{text}\n{GOOD}");
    let rs = addrs::parse("fuzz", &all);
    let lines = all.split('\n').count() as u64;
    for w in &rs.warnings {
        if let Location::Line { line, column } = w.location {
            assert!(line >= 1 && line <= lines && column >= 1, "{w}\n{all:?}");
        }
    }
    let good = HostAddr {
        iface: "eth0".into(),
        prefix: Prefix {
            addr: "203.0.113.1".parse().unwrap(),
            len: 24,
        },
    };
    assert_eq!(rs.addrs.first(), Some(&good), "{rs:?}");
    assert_eq!(rs.addrs.last(), Some(&good), "{rs:?}");
});
