//! Fuzzes the ctnetlink entry reader (`natcheck snapshot` and `collect` read the
//! kernel's conntrack table through it): any bytes as the attributes after the
//! nfgenmsg header must read without a panic, with any error at an offset inside
//! them; an entry that reads is written as conntrack text that reads back as the
//! same connection (the snapshot file correlate reads later), wherever the text can
//! say it: an ICMP id without its type (which the kernel never sends) has no text
//! form, since a lone `id=` is the entry's id, and the printer writes ports only for
//! the protocols whose tuples carry them (keys for GRE, ids for ICMP).
#![no_main]

use libfuzzer_sys::fuzz_target;
use natcheck::conntrack::netlink::{parse_entry, LabelNames, ParseContext};
use natcheck::conntrack::{parse_line, write_entry, Line};
use natcheck::model::{Proto, Tuple};

/// The tuple as the text says it.
fn as_printed(mut t: Tuple) -> Tuple {
    let ports = matches!(
        t.proto,
        Proto::Tcp | Proto::Udp | Proto::Sctp | Proto::Gre | Proto::Other(33 | 136)
    );
    if !ports && !t.proto.is_icmp() {
        (t.sport, t.dport) = (0, 0);
    }
    t
}

fuzz_target!(|data: &[u8]| {
    let Some((&family, attrs)) = data.split_first() else {
        return;
    };
    let ctx = ParseContext {
        labels: LabelNames::parse("0 zero\n1 one\n"),
        now_s: 1_700_000_000,
    };
    let entry = match parse_entry(family, attrs, &ctx) {
        Ok(e) => e,
        Err(e) => {
            assert!(
                e.offset <= attrs.len(),
                "{e:?} beyond {} bytes",
                attrs.len()
            );
            return;
        }
    };
    if entry.orig.proto.is_icmp() && (entry.orig_icmp.is_none() || entry.reply_icmp.is_none()) {
        return;
    }
    let mut text = String::new();
    write_entry(&entry, &mut text);
    match parse_line(1, &text) {
        Ok(Line::Entry(back)) => {
            assert_eq!(back.orig, as_printed(entry.orig), "{text}");
            assert_eq!(back.reply, as_printed(entry.reply), "{text}");
        }
        other => panic!("written entry not read back: {text:?} -> {other:?}"),
    }
});
