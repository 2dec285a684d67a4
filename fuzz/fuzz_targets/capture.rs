//! Fuzzes the capture reader: arbitrary bytes as a pcap or pcapng stream, every frame
//! decoded. Beyond "no panic and no hang", it checks that frames come out numbered in
//! order at increasing offsets inside the input, and that the reader stops after a
//! fatal problem.

#![no_main]

use libfuzzer_sys::fuzz_target;
use natcheck::capture::reader::{FrameReader, Next};
use natcheck::decode::decode;

fuzz_target!(|data: &[u8]| {
    let Ok(mut reader) = FrameReader::new(data) else {
        return;
    };
    let mut last: Option<(u64, u64)> = None;
    loop {
        match reader.next_frame() {
            Next::Frame(f) => {
                assert!(f.offset < data.len() as u64, "frame offset past the input");
                assert!(f.data.len() <= data.len());
                if let Some((n, off)) = last {
                    assert_eq!(f.number, n + 1, "frame numbers skip");
                    assert!(f.offset > off, "offsets go backwards");
                }
                last = Some((f.number, f.offset));
                let _ = decode(f.linktype, f.data, f.orig_len);
            }
            Next::Problem(p) => {
                assert!(
                    p.offset <= data.len() as u64,
                    "problem located past the input"
                );
                if p.fatal {
                    assert!(
                        matches!(reader.next_frame(), Next::End),
                        "reader goes on after a fatal problem"
                    );
                    break;
                }
            }
            Next::End => break,
        }
    }
});
