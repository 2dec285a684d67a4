//! Opening an input named on the command line: a path, or `-` for standard input;
//! a name ending in `.gz` is decompressed (every member of a multi-member file). A
//! path `ARCHIVE/PATH` under a gzip'd tar archive (`b.tar.gz/capture.pcapng`) names
//! a file inside it, read where it lies ([`archive`]). Reading long shows how far it
//! has got ([`progress`]).

pub mod archive;
pub mod progress;

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use anyhow::Context;
use memmap2::Mmap;

/// A file, or a file inside a gzip'd tar archive (`ARCHIVE/PATH`).
pub fn open_file(path: &Path) -> io::Result<Box<dyn Read + Send>> {
    match File::open(path) {
        Ok(f) => Ok(Box::new(f)),
        Err(e) => archive::open_member(path).unwrap_or(Err(e)),
    }
}

/// The regular file at `path` mapped into memory, to be read where it lies; `None`
/// when it is something else (a pipe, a device, a file inside an archive), empty, or
/// cannot be mapped: it is read as a stream then.
pub fn map_file(path: &Path) -> Option<Mmap> {
    // Looked at before it is opened: opening a named pipe to find out would take the
    // place of the reader its writer waits for.
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() || meta.len() == 0 {
        return None;
    }
    let file = File::open(path).ok()?;
    // SAFETY: the mapping is read only. A file changed in place while it is read
    // shows the new bytes, which are parsed as untrusted like any others; one cut
    // short while mapped ends the process with SIGBUS (see `FrameReader::mapped`).
    unsafe { Mmap::map(&file) }.ok()
}

/// The input as a byte stream.
pub fn open(path: &str) -> anyhow::Result<Box<dyn Read>> {
    if path == "-" {
        return Ok(Box::new(std::io::stdin().lock()));
    }
    let f = open_file(Path::new(path)).with_context(|| format!("{path}: cannot open"))?;
    let f = progress::Reading::start(path, Some(Path::new(path))).count(f);
    Ok(if path.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(f)))
    } else {
        Box::new(f)
    })
}

/// The whole input as text; bytes that are not UTF-8 become U+FFFD (pasted output is
/// not always clean).
pub fn read_text(path: &str) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    open(path)?
        .read_to_end(&mut bytes)
        .with_context(|| format!("{path}: read failed"))?;
    Ok(String::from_utf8(bytes)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
}
