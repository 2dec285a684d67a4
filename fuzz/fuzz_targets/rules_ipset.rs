//! Fuzzes the `ipset save` / `ipset list` reader: any bytes, split into lines, must
//! parse without a panic, and a set created and filled after them must come out
//! intact (garbage never hides the lines around it); every warning points into the
//! garbage. Each line is also read from the reader's first state (the lines apart,
//! a blank line between them ends any `ipset list` block), in one document, so that
//! an execution costs one pass over the input, not a parse per line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use natcheck::diag::Location;
use natcheck::model::Proto;
use natcheck::rules::{ipset, Prefix, SetMember};

const GOOD: &str = "create fz-good hash:ip,port family inet hashsize 1024 maxelem 65536\nadd fz-good 10.0.0.1,tcp:80\n";

fuzz_target!(|data: &[u8]| {
    let garbage = String::from_utf8_lossy(data);
    // Every line alone.
    let apart = garbage.lines().collect::<Vec<_>>().join("\n\n");
    let _ = ipset::parse("fuzz", &apart);
    // The whole input before a good set; a blank line ends any `ipset list` block the
    // garbage left open.
    let text = format!("{garbage}\n\n{GOOD}");
    let rs = ipset::parse("fuzz", &text);
    let good_line = text.lines().count() as u64 - 1;
    let set = rs.sets.get("fz-good").expect("the good set is lost");
    assert_eq!(set.kind, "hash:ip,port");
    assert_eq!(
        set.members,
        vec![SetMember::AddrPort(
            Prefix {
                addr: "10.0.0.1".parse().unwrap(),
                len: 32
            },
            Some(Proto::Tcp),
            (80, 80)
        )]
    );
    for w in &rs.warnings {
        match w.location {
            Location::Line { line, .. } => assert!(line < good_line, "{w}"),
            _ => panic!("unlocated warning: {w}"),
        }
    }
});
