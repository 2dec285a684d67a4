//! Fuzzes the iptables-save / iptables -S reader: any bytes must parse without a panic,
//! and a valid table placed before and after them must come out intact (garbage never
//! hides the lines around it).
#![no_main]

use libfuzzer_sys::fuzz_target;
use natcheck::rules::{Target, Verdict};

const GOOD: &str = "*filter\n:FORWARD DROP [0:0]\n-A FORWARD -s 10.0.0.1/32 -p tcp -m tcp --dport 80 -m comment --comment \"web\" -j ACCEPT\nCOMMIT\n";

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = natcheck::rules::iptables::parse("fuzz", &text);
    // The input between two good tables; a line break closes the garbage so it cannot
    // run into the last table.
    let mut all = String::from(GOOD);
    all.push_str(&text);
    all.push('\n');
    all.push_str(GOOD);
    let rs = natcheck::rules::iptables::parse("fuzz", &all);
    let last_first_line = 4 + text.split('\n').count() as u64 + 1;
    let (Some(first), Some(last)) = (rs.tables.first(), rs.tables.last()) else {
        panic!("valid lines lost: {rs:?}");
    };
    for (t, line) in [(first, 1), (last, last_first_line)] {
        assert_eq!(t.name, "filter");
        let fwd = t.chain("FORWARD").expect("FORWARD kept");
        assert_eq!(fwd.base.as_ref().map(|b| b.policy), Some(Verdict::Drop));
        assert_eq!(fwd.rules.len(), 1, "{rs:?}");
        assert_eq!(fwd.rules[0].line, line + 2);
        assert_eq!(fwd.rules[0].target, Target::Accept);
        assert_eq!(fwd.rules[0].comment.as_deref(), Some("web"));
    }
});
