//! Fuzzes the `--filter` parser: any text parses or fails with a column inside it (or
//! one past its end) without a panic, and what parses obeys the language's algebra on
//! a few tuples of every shape: `not (E)` is the opposite of E, `(E)`, `E or E` and
//! `E and E` are E.
#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use natcheck::filter::Filter;
use natcheck::model::{Proto, Tuple};

fn tuple(proto: Proto, src: &str, sport: u16, dst: &str, dport: u16) -> Tuple {
    let addr = |a: &str| a.parse::<IpAddr>().expect("an address");
    Tuple {
        proto,
        src: addr(src),
        sport,
        dst: addr(dst),
        dport,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let f = match Filter::parse(text) {
        Ok(f) => f,
        Err(e) => {
            assert!(e.column >= 1 && e.column <= text.chars().count() + 1, "{e}");
            return;
        }
    };
    let tuples = [
        tuple(Proto::Tcp, "172.17.0.2", 40000, "203.0.113.2", 80),
        tuple(Proto::Udp, "fd00::2", 53, "2001:db8::1", 5353),
        tuple(Proto::Icmp, "10.0.0.1", 7, "10.0.0.2", 0),
        tuple(Proto::Icmpv6, "::1", 0, "ff02::1", 0),
        tuple(Proto::Sctp, "0.0.0.0", 0, "255.255.255.255", 65535),
    ];
    let same = |other: &str, negated: bool| match Filter::parse(other) {
        Ok(g) => {
            for t in &tuples {
                assert_eq!(g.matches(t), f.matches(t) != negated, "{other:?} on {t:?}");
            }
        }
        // Only the added level of nesting may refuse it.
        Err(e) => assert!(e.message.contains("nested deeper"), "{other:?}: {e}"),
    };
    same(&format!("not ({text})"), true);
    same(&format!("({text})"), false);
    same(&format!("({text}) or ({text})"), false);
    same(&format!("({text}) and ({text})"), false);
});
