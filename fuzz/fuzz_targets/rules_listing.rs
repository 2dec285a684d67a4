//! Fuzzes the `iptables -L -n [-v] [--line-numbers]` listing reader: any bytes must
//! parse without a panic and with every warning on a line of the input, and a valid
//! listing pasted before and after them (each after its own command line, as people
//! paste them) must come out intact. Lines of the input that fit the rule columns may
//! add rules after the first listing's rule (with unknown parts where they are no
//! form the reader knows); the last listing is read exactly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use natcheck::diag::Location;
use natcheck::rules::{listing, MatchKind, Target, Verdict};

const GOOD: &str = "# iptables -t filter -L -n -v --line-numbers
Chain FORWARD (policy DROP 7 packets, 420 bytes)
num   pkts bytes target     prot opt in     out     source               destination
1        3   180 ACCEPT     tcp  --  eth0   *       10.0.0.1             0.0.0.0/0            /* web */ tcp dpt:80
";

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = listing::parse("fuzz", &text);

    // The input between two good listings; a line break closes the garbage so it
    // cannot run into the last one.
    let all = format!("{GOOD}{text}\n{GOOD}");
    let rs = listing::parse("fuzz", &all);
    let lines = all.split('\n').count() as u64;
    for w in &rs.warnings {
        if let Location::Line { line, column } = w.location {
            assert!(line >= 1 && line <= lines && column >= 1, "{w}\n{all:?}");
        }
    }
    let last_first_line = 4 + text.split('\n').count() as u64 + 1;
    let (Some(first), Some(last)) = (rs.tables.first(), rs.tables.last()) else {
        panic!("valid lines lost: {rs:?}");
    };
    for (t, line) in [(first, 1), (last, last_first_line)] {
        assert_eq!(t.name, "filter", "{rs:?}");
        let fwd = t.chain("FORWARD").expect("FORWARD kept");
        assert_eq!(fwd.base.as_ref().map(|b| b.policy), Some(Verdict::Drop));
        if line != 1 {
            assert_eq!(fwd.rules.len(), 1, "{rs:?}");
        }
        let rule = fwd.rules.first().expect("the rule kept");
        assert_eq!(rule.line, line + 3);
        assert_eq!(rule.target, Target::Accept);
        assert_eq!(rule.comment.as_deref(), Some("web"));
        assert_eq!(rule.counters.map(|c| (c.packets, c.bytes)), Some((3, 180)));
        assert!(
            !rule
                .matches
                .iter()
                .any(|m| matches!(m.kind, MatchKind::Unknown { .. })),
            "{rule:?}"
        );
    }
});
