//! Fuzzes the conntrack text reader: any bytes, split into lines, must parse without a
//! panic, and a valid entry placed before and after them must come out intact (garbage
//! never hides the lines around it, not even an XML `<flow>` left open). Mail quoting
//! is transparent: a line read as an entry is read as the same entry after `> `.
#![no_main]

use libfuzzer_sys::fuzz_target;

const GOOD: &str = "ipv4     2 tcp      6 431999 ESTABLISHED src=10.0.1.3 dst=192.0.2.2 sport=40000 dport=8080 src=192.0.2.2 dst=192.0.2.1 sport=8080 dport=8942 [ASSURED] mark=0 use=1 id=675049517\n";

fuzz_target!(|data: &[u8]| {
    // Every line alone.
    for line in data.split(|&b| b == b'\n') {
        let line = String::from_utf8_lossy(line);
        if let Ok(natcheck::conntrack::Line::Entry(e)) = natcheck::conntrack::parse_line(1, &line) {
            match natcheck::conntrack::parse_line(1, &format!("> {line}")) {
                Ok(natcheck::conntrack::Line::Entry(q)) => assert_eq!(q, e, "{line}"),
                other => panic!("quoting changed {line:?}: {other:?}"),
            }
        }
    }
    // The whole input between two good lines; a line break closes the garbage so it
    // cannot run into the last good line.
    let mut text = GOOD.as_bytes().to_vec();
    text.extend_from_slice(data);
    text.push(b'\n');
    text.extend_from_slice(GOOD.as_bytes());
    let dump = natcheck::conntrack::read("fuzz", &text[..]).expect("in-memory read");
    let last_line = 2 + data.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
    let (Some(first), Some(last)) = (dump.entries.first(), dump.entries.last()) else {
        panic!("valid lines lost: {dump:?}");
    };
    assert_eq!((first.line, first.id), (1, Some(675049517)));
    assert_eq!((last.line, last.id), (last_line, Some(675049517)));
    assert_eq!(first.orig, last.orig);
});
