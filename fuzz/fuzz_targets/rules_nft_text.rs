//! Fuzzes the `nft list ruleset` text reader: any bytes, as a whole input or spliced
//! into a chain, must parse without a panic and with every warning on a line of the
//! input; and any text placed in the slots of one rule line (a statement, a match's
//! value, a mark, a NAT address, a verdict map's elements, a comment) must leave the
//! rules on the lines before and after it intact. The first byte (still part of the input) picks which of these
//! checks an input gets, so that each execution parses one document rather than nine.
#![no_main]

use libfuzzer_sys::fuzz_target;
use natcheck::diag::Location;
use natcheck::rules::{nft, RuleSet, Target};

const HEAD: &str = "table ip t { # handle 1\n\tchain c { # handle 2\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n";
const GOOD: &str = "ip daddr 10.0.0.1 tcp dport 80 counter packets 1 bytes 60 jump x";
const TAIL: &str = "\t}\n}\n";

/// Warnings are located on lines of the input (or the input as a whole).
fn located(rs: &RuleSet, text: &str) {
    let lines = text.split('\n').count() as u64;
    for w in &rs.warnings {
        if let Location::Line { line, column } = w.location {
            assert!(line >= 1 && line <= lines && column >= 1, "{w}\n{text:?}");
        }
    }
}

/// The good rule with this handle is read as written, at this line.
fn good(rs: &RuleSet, handle: u64, line: u64, doc: &str) {
    let c = rs
        .tables
        .iter()
        .find(|t| t.name == "t")
        .and_then(|t| t.chain("c"))
        .unwrap_or_else(|| panic!("chain c lost\n{doc}"));
    let r = c
        .rules
        .iter()
        .find(|r| r.handle == Some(handle))
        .unwrap_or_else(|| panic!("rule {handle} lost: {:?}\n{doc}", c.rules));
    assert_eq!(r.line, line, "{doc}");
    assert_eq!(r.text, "ip daddr 10.0.0.1 tcp dport 80 counter jump x");
    assert_eq!(r.target, Target::Jump("x".into()));
    assert_eq!(r.matches.len(), 3, "{:?}", r.matches);
    assert_eq!(r.counters.map(|c| (c.packets, c.bytes)), Some((1, 60)));
}

fuzz_target!(|data: &[u8]| {
    let Some(&check) = data.first() else {
        return;
    };
    let text = String::from_utf8_lossy(data);

    // The bytes, kept to one line and out of strings and blocks, in a slot of a rule
    // line between two good ones.
    let s = || -> String {
        text.chars()
            .map(|c| match c {
                '\n' | '\r' | '{' | '}' | ';' | '"' | '#' | '\\' => ' ',
                c => c,
            })
            .collect()
    };
    let line = match check % 9 {
        // The bytes alone, and as lines of a chain.
        0 => {
            located(&nft::parse_text("fuzz", &text), &text);
            return;
        }
        1 => {
            let spliced = format!("{HEAD}\t\t{text}\n{TAIL}");
            located(&nft::parse_text("fuzz", &spliced), &spliced);
            return;
        }
        2 => s(),
        3 => format!("ip saddr {} accept", s()),
        4 => format!("meta mark set {}", s()),
        5 => format!("meta l4proto tcp dnat to {}", s()),
        6 => format!("ip daddr . tcp dport vmap {{ {} }}", s()),
        7 => format!(
            "numgen random mod 2 vmap {{ 0 : goto {}, 1 : accept }}",
            s()
        ),
        _ => format!("accept comment \"{}\"", s()),
    };
    let doc = format!(
        "{HEAD}\t\t{GOOD} # handle 3\n\t\t{line} # handle 4\n\t\t{GOOD} # handle 5\n{TAIL}"
    );
    let rs = nft::parse_text("fuzz", &doc);
    located(&rs, &doc);
    good(&rs, 3, 4, &doc);
    good(&rs, 5, 6, &doc);
});
