//! Fuzzes the reader of gzip'd tar bundles: arbitrary bytes as a tar stream, and as
//! a gzip'd one. No panic; every file indexed has a relative path that does not
//! climb, and a file kept in memory holds exactly its size.

#![no_main]

use libfuzzer_sys::fuzz_target;
use natcheck::input::archive::{index_tar, Limits};

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        unpacked: 1 << 20,
        ..Limits::DEFAULT
    };
    let gz = flate2::read::MultiGzDecoder::new(data);
    for index in [index_tar("fuzz", data, limits), index_tar("fuzz.gz", gz, limits)] {
        let Ok(index) = index else { continue };
        for (name, m) in index {
            assert!(!name.is_empty() && !name.starts_with('/'), "{name}");
            assert!(name.split('/').all(|c| c != ".." && c != "." && !c.is_empty()), "{name}");
            if let Some(d) = m.data {
                assert_eq!(d.len() as u64, m.size);
            }
        }
    }
});
