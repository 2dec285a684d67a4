//! The flight recorder (`--ring SIZE`): the capture keeps only the most recent SIZE
//! of packet blocks, on disk, and the bundle's `capture.pcapng` holds them at the
//! stop.
//!
//! Each interface's packet blocks go into segment files of its own, of SIZE/8 at
//! most (a hidden `.ring/` directory of the bundle); whenever the segments hold more
//! than SIZE, the segment whose latest packet is the oldest is deleted, whichever
//! interface it is of. Disk use stays under SIZE and one block, and memory under one
//! block and a small buffer per interface. What each deleted segment held is
//! counted per interface, with its latest timestamp.
//!
//! The window kept is the same for every interface: the cut is the latest timestamp
//! of any discarded packet, and packets at or before it are discarded too, at every
//! interface. Every interface then holds exactly the packets after the cut: a packet
//! kept at one point, sent on after the cut, is kept at the next, so the window
//! makes no loss up. Since segments are deleted oldest in time first, the cut only
//! moves as far as SIZE requires, whichever capture thread handed its packets over
//! late.
//!
//! At the stop, the kept blocks are copied into the capture file one at a time,
//! interface after interface, each segment deleted once copied, and the directory
//! removed.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// The directory of the segments inside the bundle.
pub const DIR: &str = ".ring";
/// The smallest ring.
pub const MIN_SIZE: u64 = 64 << 10;
/// Segments per ring.
const SEGMENTS: u64 = 8;

/// Packets and bytes of blocks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub packets: u64,
    pub bytes: u64,
}

impl Tally {
    fn add(&mut self, bytes: u64) {
        self.packets += 1;
        self.bytes += bytes;
    }

    fn merge(&mut self, o: Tally) {
        self.packets += o.packets;
        self.bytes += o.bytes;
    }
}

/// One segment file of one interface: what it holds and its latest timestamp.
#[derive(Debug)]
struct Segment {
    path: PathBuf,
    iface: u32,
    held: Tally,
    latest_ns: u64,
}

/// A recorder: the segments, and what was discarded.
#[derive(Debug)]
pub struct Recorder {
    dir: PathBuf,
    size: u64,
    segment_size: u64,
    /// Every segment by number (numbers grow: an interface's are in order).
    segments: BTreeMap<u64, Segment>,
    /// The segment each interface writes, and its file.
    current: HashMap<u32, (u64, BufWriter<File>)>,
    next: u64,
    /// Bytes of the segments on disk.
    held: u64,
    discarded: BTreeMap<u32, Tally>,
    /// The latest timestamp of a discarded packet.
    cut_ns: Option<u64>,
}

/// What the file holds after [`Recorder::finish`], and what was left out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Kept {
    pub size: u64,
    pub segment_size: u64,
    /// Per pcapng interface.
    pub kept: BTreeMap<u32, Tally>,
    pub discarded: BTreeMap<u32, Tally>,
    /// Packets at or before this time were discarded at every interface.
    pub cut_ns: Option<u64>,
    /// The first and last packet kept.
    pub first_ns: Option<u64>,
    pub last_ns: Option<u64>,
}

/// The interface and timestamp of an enhanced packet block, and its length.
fn packet_head(b: &[u8]) -> Option<(u32, u64, usize)> {
    let word =
        |at: usize| -> Option<u32> { Some(u32::from_le_bytes(*b.get(at..at + 4)?.first_chunk()?)) };
    let len = word(4)? as usize;
    if word(0)? != 6 || len < 32 || len % 4 != 0 {
        return None;
    }
    let ts = (u64::from(word(12)?) << 32) | u64::from(word(16)?);
    Some((word(8)?, ts, len))
}

fn corrupt(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("flight recorder: {what}"),
    )
}

impl Recorder {
    /// A recorder of `size` bytes with its segments under `bundle/.ring`.
    pub fn new(bundle: &Path, size: u64) -> io::Result<Recorder> {
        let dir = bundle.join(DIR);
        fs::create_dir(&dir)?;
        Ok(Recorder {
            dir,
            size,
            segment_size: (size / SEGMENTS).max(MIN_SIZE / SEGMENTS),
            segments: BTreeMap::new(),
            current: HashMap::new(),
            next: 0,
            held: 0,
            discarded: BTreeMap::new(),
            cut_ns: None,
        })
    }

    /// Appends enhanced packet blocks, each to its interface's segment, and deletes
    /// the oldest segments while more than the size is held.
    pub fn write(&mut self, mut blocks: &[u8]) -> io::Result<()> {
        while !blocks.is_empty() {
            let (iface, ts, len) =
                packet_head(blocks).ok_or_else(|| corrupt("not a packet block"))?;
            let block = blocks
                .get(..len)
                .ok_or_else(|| corrupt("a packet block cut short"))?;
            let full = match self.current.get(&iface) {
                Some((id, _)) => self
                    .segments
                    .get(id)
                    .is_none_or(|s| s.held.bytes >= self.segment_size),
                None => true,
            };
            if full {
                self.start_segment(iface)?;
            }
            let (id, f) = self
                .current
                .get_mut(&iface)
                .ok_or_else(|| corrupt("no segment"))?;
            f.write_all(block)?;
            let seg = self
                .segments
                .get_mut(id)
                .ok_or_else(|| corrupt("no segment"))?;
            seg.held.add(len as u64);
            seg.latest_ns = seg.latest_ns.max(ts);
            self.held += len as u64;
            blocks = &blocks[len..];
            self.trim()?;
        }
        Ok(())
    }

    /// Closes interface `iface`'s segment, if any, and opens a new one.
    fn start_segment(&mut self, iface: u32) -> io::Result<()> {
        if let Some((_, mut f)) = self.current.remove(&iface) {
            f.flush()?;
        }
        let id = self.next;
        self.next += 1;
        let path = self.dir.join(format!("{id:08}-{iface}.blocks"));
        let f = BufWriter::with_capacity(8 << 10, File::create(&path)?);
        self.current.insert(iface, (id, f));
        self.segments.insert(
            id,
            Segment {
                path,
                iface,
                held: Tally::default(),
                latest_ns: 0,
            },
        );
        Ok(())
    }

    /// Deletes the segments whose latest packets are the oldest while more than the
    /// size is held.
    fn trim(&mut self) -> io::Result<()> {
        while self.held > self.size {
            let Some((&id, _)) = self
                .segments
                .iter()
                .min_by_key(|(id, s)| (s.latest_ns, **id))
            else {
                break;
            };
            let Some(old) = self.segments.remove(&id) else {
                break;
            };
            if self.current.get(&old.iface).is_some_and(|(c, _)| *c == id) {
                self.current.remove(&old.iface);
            }
            fs::remove_file(&old.path)?;
            self.held -= old.held.bytes;
            self.discarded.entry(old.iface).or_default().merge(old.held);
            self.cut_ns = self.cut_ns.max(Some(old.latest_ns));
        }
        Ok(())
    }

    /// Copies the packets after the cut into `out`, deleting each segment once
    /// copied and the directory at the end; says what was kept and discarded.
    pub fn finish(mut self, out: &mut impl Write) -> io::Result<Kept> {
        for (_, (_, mut f)) in self.current.drain() {
            f.flush()?;
        }
        let mut kept = Kept {
            size: self.size,
            segment_size: self.segment_size,
            cut_ns: self.cut_ns,
            ..Kept::default()
        };
        let mut segments: Vec<Segment> = std::mem::take(&mut self.segments).into_values().collect();
        segments.sort_by_key(|s| s.iface);
        let mut block = Vec::new();
        for seg in segments {
            let mut r = BufReader::with_capacity(1 << 16, File::open(&seg.path)?);
            let mut head = [0u8; 8];
            loop {
                match r.read_exact(&mut head) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                    Err(e) => return Err(e),
                }
                let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
                if !(32..=(1 << 20)).contains(&len) {
                    return Err(corrupt("a block of an impossible length"));
                }
                block.clear();
                block.extend_from_slice(&head);
                block.resize(len, 0);
                r.read_exact(&mut block[8..])?;
                let (iface, ts, _) =
                    packet_head(&block).ok_or_else(|| corrupt("not a packet block"))?;
                if self.cut_ns.is_some_and(|cut| ts <= cut) {
                    kept.discarded.entry(iface).or_default().add(len as u64);
                    continue;
                }
                out.write_all(&block)?;
                kept.kept.entry(iface).or_default().add(len as u64);
                kept.first_ns = Some(kept.first_ns.map_or(ts, |f| f.min(ts)));
                kept.last_ns = kept.last_ns.max(Some(ts));
            }
            fs::remove_file(&seg.path)?;
        }
        for (iface, t) in std::mem::take(&mut self.discarded) {
            kept.discarded.entry(iface).or_default().merge(t);
        }
        fs::remove_dir(&self.dir)?;
        Ok(kept)
    }
}

impl Kept {
    /// Packets and bytes discarded over every interface.
    pub fn discarded_total(&self) -> Tally {
        let mut t = Tally::default();
        for d in self.discarded.values() {
            t.merge(*d);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::pcapng;

    /// A packet block of interface `iface` at `ts` with `n` bytes of data.
    fn block(iface: u32, ts: u64, n: usize) -> Vec<u8> {
        let mut v = Vec::new();
        pcapng::packet(&mut v, iface, ts, &[&vec![ts as u8; n]], n as u32, 0);
        v
    }

    /// Reads back the blocks of a file: (interface, timestamp).
    fn heads(mut b: &[u8]) -> Vec<(u32, u64)> {
        let mut out = Vec::new();
        while let Some((i, t, len)) = packet_head(b) {
            out.push((i, t));
            b = &b[len..];
        }
        assert!(b.is_empty());
        out
    }

    struct Scratch(PathBuf);
    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn scratch(tag: &str) -> Scratch {
        let d = std::env::temp_dir().join(format!("natcheck-flight-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        Scratch(d)
    }

    #[test]
    fn keeps_the_latest_packets_the_same_window_at_every_interface() {
        let s = scratch("window");
        let one = block(0, 0, 100).len() as u64; // 148 bytes a block
        let mut r = Recorder::new(&s.0, MIN_SIZE).unwrap();
        assert_eq!(r.segment_size, MIN_SIZE / 8);
        // Two interfaces in runs of 10, each run in time order, interface 1 a little
        // behind interface 0; 4000 packets in all, far more than the ring holds.
        let mut most = 0u64;
        for run in 0..200u64 {
            for iface in [0u32, 1] {
                let mut chunk = Vec::new();
                for k in 0..10 {
                    let ts = 1000 + run * 10 + k - u64::from(iface) * 5;
                    chunk.extend(block(iface, ts, 100));
                }
                r.write(&chunk).unwrap();
                let on_disk: u64 = fs::read_dir(s.0.join(DIR))
                    .unwrap()
                    .map(|e| e.unwrap().metadata().unwrap().len())
                    .sum();
                most = most.max(on_disk);
            }
        }
        assert!(most <= MIN_SIZE + r.segment_size, "{most} bytes on disk");
        let mut out = Vec::new();
        let k = r.finish(&mut out).unwrap();
        assert!(!s.0.join(DIR).exists(), "the segments are gone");
        let got = heads(&out);
        let cut = k.cut_ns.unwrap();
        // Everything after the cut and nothing at or before it, at both interfaces.
        for iface in [0u32, 1] {
            let mut ts: Vec<u64> = got
                .iter()
                .filter(|(i, _)| *i == iface)
                .map(|p| p.1)
                .collect();
            ts.sort();
            let last = 1000 + 1999 - u64::from(iface) * 5;
            let want: Vec<u64> = (cut + 1..=last).collect();
            assert_eq!(ts, want, "interface {iface}");
            let t = k.kept[&iface].packets + k.discarded[&iface].packets;
            assert_eq!(t, 2000);
            assert_eq!(k.kept[&iface].bytes, k.kept[&iface].packets * one);
        }
        let kept_bytes = out.len() as u64;
        assert!(
            kept_bytes <= MIN_SIZE && kept_bytes > MIN_SIZE / 2,
            "{kept_bytes}"
        );
        assert_eq!(k.discarded_total().bytes + kept_bytes, 4000 * one);
        assert_eq!(k.first_ns, Some(cut + 1));
        assert_eq!(k.last_ns, Some(2999));
    }

    #[test]
    fn a_capture_that_fits_loses_nothing() {
        let s = scratch("fits");
        let mut r = Recorder::new(&s.0, 1 << 20).unwrap();
        let mut all = Vec::new();
        for i in 0..50u64 {
            all.extend(block((i % 3) as u32, i, 60));
        }
        r.write(&all).unwrap();
        let mut out = Vec::new();
        let k = r.finish(&mut out).unwrap();
        // Interface after interface, each in its order.
        let mut want = heads(&all);
        want.sort_by_key(|(i, _)| *i);
        assert_eq!(heads(&out), want);
        assert_eq!(out.len(), all.len());
        assert_eq!((k.cut_ns, k.discarded_total()), (None, Tally::default()));
        assert!(r_err(&s.0).contains("not a packet block"));
    }

    fn r_err(dir: &Path) -> String {
        let mut r = Recorder::new(dir, 1 << 20).unwrap();
        r.write(&[0u8; 40]).unwrap_err().to_string()
    }
}
