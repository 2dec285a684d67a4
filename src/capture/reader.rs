//! Streaming frame reader for classic pcap and pcapng, built on `pcap-file`'s slice
//! parsers so that natcheck keeps track of the byte offset of every record. That offset
//! is what a located warning names when a capture is truncated or corrupt.
//!
//! A regular file is mapped into memory ([`FrameReader::mapped`]) and frames are
//! borrowed from the mapping where they lie: nothing is copied, and only a window of
//! the file around the reader is mapped at a time (see `follow_mapping`), so the
//! process does not hold the whole file. Other inputs (pipes, standard input,
//! decompressed streams) are read into a buffer that is refilled as frames are taken
//! from it.
//!
//! Invariants: the buffer never grows past [`MAX_RECORD`] (a length field read from the
//! file never sizes an allocation by itself); a parse error never loses the frames
//! already returned; after an error that cannot be resynchronised the reader ends.
//!
//! pcapng is read block by block in two steps: the block header is checked and the
//! whole block brought into the buffer (a length that cannot be right, or a file that
//! ends inside the block, ends the reading), then the block is parsed into an
//! interface, a packet or nothing of interest. A block that does not parse is skipped
//! with a problem, since the next one is found by its length; only an unreadable
//! interface description ends the reading, because later packets name interfaces by
//! position.

use std::io::{self, Read};
use std::ops::Deref;
use std::time::Duration;

use memmap2::{Advice, Mmap, UncheckedAdvice};

use pcap_file::pcap::{PcapHeader, PcapTsResolution};
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgParseError, PcapNgParser};
use pcap_file::{DataLink, Endianness};

/// The largest record natcheck accepts. libpcap's own limit is 256 KiB per packet
/// (MAXIMUM_SNAPLEN); pcapng blocks add options, and some writers use 16 MiB for
/// D-Bus or USB captures. Anything larger is a corrupt length field.
pub const MAX_RECORD: usize = 16 * 1024 * 1024;

const READ_CHUNK: usize = 1 << 20;

/// How much of a mapped file is mapped ahead of the reader, and how far it reads
/// before the pages behind it are handed back.
const WINDOW: usize = 8 << 20;

/// How far ahead of the frame being read a mapped file's cache lines are asked for
/// (a page).
const PREFETCH_AHEAD: usize = 4096;

/// One captured frame, borrowed from the reader's buffer until the next call.
#[derive(Debug)]
pub struct Frame<'a> {
    /// 1-based frame number in the file (counting packets only, like Wireshark).
    pub number: u64,
    /// Byte offset of the record in the (decompressed) stream.
    pub offset: u64,
    /// Which interface of the file recorded it: 0 for classic pcap; for pcapng the
    /// index into [`FrameReader::interfaces`].
    pub interface: usize,
    pub ts_ns: i64,
    pub linktype: u32,
    pub orig_len: u32,
    pub data: &'a [u8],
}

/// An interface declared by the capture file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub linktype: u32,
    /// pcapng `if_name`, when the writer recorded one.
    pub name: Option<String>,
    /// pcapng `if_description`.
    pub description: Option<String>,
    /// pcapng section number (0-based) that declared it.
    pub section: usize,
}

/// Something wrong in the file, located by byte offset. Frames read before it are good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadProblem {
    pub offset: u64,
    pub frame: Option<u64>,
    pub message: String,
    /// True when reading cannot go on past this point.
    pub fatal: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Pcap,
    PcapNg,
}

enum State {
    Pcap {
        header: PcapHeader,
    },
    PcapNg {
        parser: Box<PcapNgParser>,
        section: usize,
        first_interface: usize,
    },
    Done,
}

/// The bytes the reader parses.
enum Bytes {
    /// Read from a stream into a buffer that is refilled as frames are taken.
    Buffer(Vec<u8>),
    /// A whole file mapped into memory: there is nothing to refill.
    Mapped(Mmap),
}

impl Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Buffer(b) => b,
            Bytes::Mapped(m) => m,
        }
    }
}

/// Reads frames one at a time from any `Read` (file, gzip stream, stdin) or from a
/// file mapped into memory.
pub struct FrameReader<R: Read> {
    src: R,
    buf: Bytes,
    pos: usize,
    end: usize,
    /// Stream offset of `buf[0]`.
    base: u64,
    eof: bool,
    /// Mapped files: where the pages not yet handed back start, where those not yet
    /// mapped ahead of the reader do, and the first byte whose cache line has not
    /// been asked for.
    released: usize,
    populated: usize,
    prefetched: usize,
    state: State,
    format: Format,
    interfaces: Vec<Interface>,
    frames: u64,
    /// Problems found that did not stop reading (skipped blocks).
    pending: Vec<ReadProblem>,
}

/// Result of asking the reader for more.
pub enum Next<'a> {
    Frame(Frame<'a>),
    /// A problem; if `fatal`, the reader is done.
    Problem(ReadProblem),
    End,
}

impl FrameReader<io::Empty> {
    /// Reads a file mapped into memory, detecting pcap or pcapng from its first bytes.
    ///
    /// A file that is truncated while it is mapped cannot be read past its new end:
    /// the process gets SIGBUS. Capture files are appended to, never cut short in
    /// place, so that risk is taken for the speed (no copy of each byte).
    pub fn mapped(map: Mmap) -> Result<Self, ReadProblem> {
        // The kernel reads ahead further, and drops what was read sooner.
        let _ = map.advise(Advice::Sequential);
        let end = map.len();
        FrameReader::start(io::empty(), Bytes::Mapped(map), end)
    }
}

impl<R: Read> FrameReader<R> {
    /// Opens a stream, detecting pcap or pcapng from its first bytes.
    pub fn new(src: R) -> Result<Self, ReadProblem> {
        FrameReader::start(src, Bytes::Buffer(Vec::new()), 0)
    }

    /// Reads the file header: `end` bytes are in `buf` already (all of them when
    /// the file is mapped).
    fn start(src: R, buf: Bytes, end: usize) -> Result<Self, ReadProblem> {
        let mut r = FrameReader {
            src,
            eof: matches!(buf, Bytes::Mapped(_)),
            buf,
            pos: 0,
            end,
            base: 0,
            released: 0,
            populated: 0,
            prefetched: 0,
            state: State::Done,
            format: Format::Pcap,
            interfaces: Vec::new(),
            frames: 0,
            pending: Vec::new(),
        };
        r.fill(24)
            .map_err(|e| r.problem(0, format!("read error: {e}"), true))?;
        let head = &r.buf[r.pos..r.end];
        if head.len() < 4 {
            return Err(r.problem(0, "empty or too short to be a capture file".into(), true));
        }
        if head[..4] == [0x0a, 0x0d, 0x0d, 0x0a] {
            r.format = Format::PcapNg;
            r.start_section()?;
        } else {
            match PcapHeader::from_slice(head) {
                Ok((_, header)) => {
                    r.interfaces.push(Interface {
                        linktype: u32::from(header.datalink),
                        name: None,
                        description: None,
                        section: 0,
                    });
                    r.consume(24);
                    r.state = State::Pcap { header };
                }
                Err(pcap_file::pcap::PcapParseError::IncompleteBuffer(..)) => {
                    return Err(r.problem(0, "file ends inside the pcap file header".into(), true));
                }
                Err(_) => {
                    let magic = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
                    return Err(r.problem(
                        0,
                        format!("not a pcap or pcapng capture (magic 0x{magic:08x})"),
                        true,
                    ));
                }
            }
        }
        Ok(r)
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// Interfaces declared so far (pcapng declares them as it goes).
    pub fn interfaces(&self) -> &[Interface] {
        &self.interfaces
    }

    /// Stream offset of the next unread byte.
    pub fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    fn problem(&self, offset: u64, message: String, fatal: bool) -> ReadProblem {
        ReadProblem {
            offset,
            frame: None,
            message,
            fatal,
        }
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
    }

    /// Makes at least `want` unread bytes available unless the stream ends first.
    /// A mapped file has all its bytes available from the start.
    #[inline]
    fn fill(&mut self, want: usize) -> io::Result<()> {
        if self.end - self.pos >= want || self.eof {
            return Ok(());
        }
        self.refill(want)
    }

    /// [`FrameReader::fill`] when the bytes are not there yet.
    fn refill(&mut self, want: usize) -> io::Result<()> {
        while self.end - self.pos < want && !self.eof {
            let Bytes::Buffer(buf) = &mut self.buf else {
                break;
            };
            if self.pos > 0 && (self.pos == self.end || buf.len() - self.end < READ_CHUNK) {
                buf.copy_within(self.pos..self.end, 0);
                self.base += self.pos as u64;
                self.end -= self.pos;
                self.pos = 0;
            }
            let need = (self.end + want.max(READ_CHUNK)).min(MAX_RECORD + 2 * READ_CHUNK);
            if buf.len() < need {
                buf.resize(need, 0);
            }
            match self.src.read(&mut buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn start_section(&mut self) -> Result<(), ReadProblem> {
        let offset = self.offset();
        loop {
            let avail = &self.buf[self.pos..self.end];
            match PcapNgParser::new(avail) {
                Ok((rem, parser)) => {
                    let used = avail.len() - rem.len();
                    let section = match &self.state {
                        State::PcapNg { section, .. } => section + 1,
                        _ => 0,
                    };
                    self.consume(used);
                    self.state = State::PcapNg {
                        parser: Box::new(parser),
                        section,
                        first_interface: self.interfaces.len(),
                    };
                    return Ok(());
                }
                Err(PcapNgParseError::IncompleteBuffer(needed, _))
                    if !self.eof && needed <= MAX_RECORD =>
                {
                    let want = needed.max(avail.len() + 1);
                    self.fill(want)
                        .map_err(|e| self.problem(offset, format!("read error: {e}"), true))?;
                }
                Err(PcapNgParseError::IncompleteBuffer(needed, have)) => {
                    return Err(self.problem(
                        offset,
                        format!(
                            "section header block cut short (needs {needed} bytes, {have} left)"
                        ),
                        true,
                    ));
                }
                Err(e) => {
                    return Err(self.problem(
                        offset,
                        format!("bad pcapng section header: {e}"),
                        true,
                    ));
                }
            }
        }
    }

    /// Whether the input is a file mapped into memory, whose offsets are those of the
    /// file itself.
    pub fn is_mapped(&self) -> bool {
        matches!(self.buf, Bytes::Mapped(_))
    }

    /// Keeps a window of a mapped file's pages in this process as reading goes on:
    /// the pages behind the reader are handed back to the kernel (they stay in the
    /// page cache), the next [`WINDOW`] bytes are mapped in one call rather than by a
    /// page fault every few pages. Both every [`WINDOW`] bytes.
    fn follow_mapping(&mut self) {
        let Bytes::Mapped(map) = &self.buf else {
            return;
        };
        if self.pos - self.released >= WINDOW {
            let upto = self.pos - self.pos % WINDOW;
            // SAFETY: the mapping is a shared, read-only mapping of a file: dropping
            // its pages only makes the next access read them again from the file,
            // with the same contents. No frame borrows them (`&mut self`).
            let _ = unsafe {
                map.unchecked_advise_range(
                    UncheckedAdvice::DontNeed,
                    self.released,
                    upto - self.released,
                )
            };
            self.released = upto;
        }
        if self.pos + WINDOW > self.populated && self.populated < map.len() {
            let len = WINDOW.min(map.len() - self.populated);
            // Kernels before 5.14 do not know it: pages are then faulted in as read.
            let _ = map.advise_range(Advice::PopulateRead, self.populated, len);
            self.populated += len;
        }
        // Each cache line is asked for a page before the frames in it are read (once
        // its page is mapped: a hint to a page not yet mapped is dropped): the
        // processor's own prefetchers stop at page boundaries, and a frame spans
        // several lines that decoding and the payload digest read in full.
        let ahead = (self.pos + PREFETCH_AHEAD).min(map.len());
        while self.prefetched < ahead {
            crate::mem::prefetch(&map[self.prefetched]);
            self.prefetched += 64;
        }
    }

    /// Returns the next frame, a problem, or the end of the file.
    pub fn next_frame(&mut self) -> Next<'_> {
        self.follow_mapping();
        if let Some(p) = self.pending.pop() {
            return Next::Problem(p);
        }
        match self.state {
            State::Done => Next::End,
            State::Pcap { .. } => self.next_pcap(),
            State::PcapNg { .. } => self.next_pcapng(),
        }
    }

    fn fatal(&mut self, offset: u64, message: String) -> Next<'_> {
        self.state = State::Done;
        Next::Problem(ReadProblem {
            offset,
            frame: Some(self.frames + 1),
            message,
            fatal: true,
        })
    }

    fn next_pcap(&mut self) -> Next<'_> {
        let State::Pcap { header } = &self.state else {
            return Next::End;
        };
        let (endianness, resolution, snaplen) =
            (header.endianness, header.ts_resolution, header.snaplen);
        let linktype = self.interfaces[0].linktype;
        let offset = self.offset();
        if let Err(e) = self.fill(16) {
            return self.fatal(offset, format!("read error: {e}"));
        }
        let avail = self.end - self.pos;
        if avail == 0 {
            self.state = State::Done;
            return Next::End;
        }
        if avail < 16 {
            return self.fatal(
                offset,
                format!("capture ends inside a packet record header ({avail} of 16 bytes)"),
            );
        }
        let mut h = [0u8; 16];
        h.copy_from_slice(&self.buf[self.pos..self.pos + 16]);
        let word = |i: usize| {
            let b = [h[i], h[i + 1], h[i + 2], h[i + 3]];
            match endianness {
                Endianness::Big => u32::from_be_bytes(b),
                Endianness::Little => u32::from_le_bytes(b),
            }
        };
        let incl_len = word(8) as usize;
        // A record longer than both the file's snaplen and libpcap's maximum can only be
        // a corrupt header; there is no way to find the next record after it.
        if incl_len > MAX_RECORD || (incl_len > snaplen.max(262_144) as usize) {
            return self.fatal(
                offset,
                format!("corrupt packet record header: captured length {incl_len} exceeds snaplen {snaplen}"),
            );
        }
        if let Err(e) = self.fill(16 + incl_len) {
            return self.fatal(offset, format!("read error: {e}"));
        }
        let (ts_sec, ts_frac, orig_len) = (word(0), word(4), word(12));
        if self.end - self.pos < 16 + incl_len {
            let have = (self.end - self.pos).saturating_sub(16);
            return self.fatal(
                offset,
                format!(
                    "capture ends inside a packet: {have} of {incl_len} captured bytes present"
                ),
            );
        }
        let used = 16 + incl_len;
        let frac_ns = match resolution {
            PcapTsResolution::MicroSecond => i64::from(ts_frac) * 1_000,
            PcapTsResolution::NanoSecond => i64::from(ts_frac),
        };
        let ts_ns = i64::from(ts_sec) * 1_000_000_000 + frac_ns;
        let start = self.pos + 16;
        self.consume(used);
        self.frames += 1;
        Next::Frame(Frame {
            number: self.frames,
            offset,
            interface: 0,
            ts_ns,
            linktype,
            orig_len: orig_len.max(incl_len as u32),
            data: &self.buf[start..start + incl_len],
        })
    }

    fn next_pcapng(&mut self) -> Next<'_> {
        loop {
            let offset = self.offset();
            let (block_type, block_len) = match self.pcapng_block_head() {
                Ok(BlockHead::End) => {
                    self.state = State::Done;
                    return Next::End;
                }
                // A new section header restarts the parser (it carries its own byte order).
                Ok(BlockHead::Section) => {
                    if let Err(p) = self.start_section() {
                        self.state = State::Done;
                        return Next::Problem(p);
                    }
                    continue;
                }
                Ok(BlockHead::Block { block_type, len }) => (block_type, len),
                Err(message) => return self.fatal(offset, message),
            };
            let content = self.parse_pcapng_block(block_type, block_len);
            // The block's length is sound: parsed or not, the next block follows it.
            self.pos += block_len;
            match content {
                Ok(BlockContent::Interface(iface)) => self.interfaces.push(iface),
                Ok(BlockContent::Packet(p)) => {
                    // A packet of an undeclared interface has no link type to decode by.
                    let Some(linktype) = self.interfaces.get(p.interface).map(|i| i.linktype)
                    else {
                        continue;
                    };
                    let start = self.pos - block_len + p.data_at;
                    self.frames += 1;
                    return Next::Frame(Frame {
                        number: self.frames,
                        offset,
                        interface: p.interface,
                        ts_ns: p.ts_ns,
                        linktype,
                        orig_len: p.orig_len.max(p.data_len as u32),
                        data: &self.buf[start..start + p.data_len],
                    });
                }
                Ok(BlockContent::Other) => {}
                // Later packets name interfaces by position: without this one, every
                // later index would point at the wrong interface.
                Err(message) if block_type == IDB_TYPE => return self.fatal(offset, message),
                Err(message) => {
                    return Next::Problem(ReadProblem {
                        offset,
                        frame: None,
                        message,
                        fatal: false,
                    })
                }
            }
        }
    }

    /// Reads the header of the block at the read position and brings the whole block
    /// into the buffer. An error is the message of a fatal problem: the file ends
    /// inside the block, or its length cannot be right (then no later block can be
    /// found either).
    fn pcapng_block_head(&mut self) -> Result<BlockHead, String> {
        self.fill(12).map_err(|e| format!("read error: {e}"))?;
        let avail = self.end - self.pos;
        if avail == 0 {
            return Ok(BlockHead::End);
        }
        let unread = self.buf.get(self.pos..self.end).unwrap_or_default();
        let Some(&head) = unread.first_chunk::<12>() else {
            return Err(format!(
                "capture ends inside a block header ({avail} of 12 bytes)"
            ));
        };
        let block_type = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        if block_type == SHB_TYPE {
            return Ok(BlockHead::Section);
        }
        let State::PcapNg { parser, .. } = &self.state else {
            return Ok(BlockHead::End);
        };
        let len_bytes = [head[4], head[5], head[6], head[7]];
        let block_len = match parser.section().endianness {
            Endianness::Big => u32::from_be_bytes(len_bytes),
            Endianness::Little => u32::from_le_bytes(len_bytes),
        } as usize;
        if block_len < 12 || block_len % 4 != 0 || block_len > MAX_RECORD {
            return Err(format!("corrupt pcapng block length {block_len}"));
        }
        self.fill(block_len)
            .map_err(|e| format!("read error: {e}"))?;
        let have = self.end - self.pos;
        if have < block_len {
            return Err(format!(
                "capture ends inside a pcapng block: {have} of {block_len} bytes present"
            ));
        }
        Ok(BlockHead::Block {
            block_type,
            len: block_len,
        })
    }

    /// Parses the block at the read position, whose `block_len` bytes are buffered.
    /// An error is the message of a problem with this block alone.
    fn parse_pcapng_block(
        &mut self,
        block_type: u32,
        block_len: usize,
    ) -> Result<BlockContent, String> {
        let State::PcapNg {
            parser,
            section,
            first_interface,
        } = &mut self.state
        else {
            return Ok(BlockContent::Other);
        };
        let block_bytes = &self.buf[self.pos..self.pos + block_len];
        match parser.next_block(block_bytes) {
            Ok((_, block)) => Ok(block_content(block, *section, *first_interface)),
            Err(e) => {
                let what = pcap_file::pcapng::blocks::block_common::block_name(block_type);
                Err(format!("unreadable pcapng {what} block skipped: {e}"))
            }
        }
    }
}

/// pcapng block types the reader handles itself.
const SHB_TYPE: u32 = 0x0A0D_0D0A;
const IDB_TYPE: u32 = 1;

/// What the header of the next pcapng block says.
enum BlockHead {
    /// The stream ends cleanly, between blocks.
    End,
    /// A section header block: the parser starts again.
    Section,
    /// Any other block, whole in the buffer.
    Block { block_type: u32, len: usize },
}

/// What a parsed pcapng block holds for the reader.
#[derive(Debug, PartialEq, Eq)]
enum BlockContent {
    Interface(Interface),
    Packet(PacketAt),
    /// Statistics, name resolution, journal, custom blocks: nothing to decode.
    Other,
}

/// A packet block: which interface of the file recorded it, its time, its original
/// and captured lengths, and where its data starts in the block.
#[derive(Debug, PartialEq, Eq)]
struct PacketAt {
    interface: usize,
    ts_ns: i64,
    orig_len: u32,
    data_len: usize,
    data_at: usize,
}

/// The interface or packet a block declares. `first_interface` is the index of the
/// current section's first interface (packet blocks count interfaces from it);
/// data starts after the 12-byte block header and the block's fixed fields. Simple
/// packet blocks belong to the section's first interface and carry no time.
fn block_content(block: Block<'_>, section: usize, first_interface: usize) -> BlockContent {
    let packet = |interface: usize, ts_ns, orig_len, data_len, data_at| {
        BlockContent::Packet(PacketAt {
            interface: first_interface.saturating_add(interface),
            ts_ns,
            orig_len,
            data_len,
            data_at,
        })
    };
    match block {
        Block::InterfaceDescription(idb) => {
            let mut iface = Interface {
                linktype: u32::from(idb.linktype),
                name: None,
                description: None,
                section,
            };
            for opt in &idb.options {
                match opt {
                    InterfaceDescriptionOption::IfName(n) => iface.name = Some(n.to_string()),
                    InterfaceDescriptionOption::IfDescription(d) => {
                        iface.description = Some(d.to_string())
                    }
                    _ => {}
                }
            }
            BlockContent::Interface(iface)
        }
        Block::EnhancedPacket(b) => packet(
            b.interface_id as usize,
            duration_ns(b.timestamp),
            b.original_len,
            b.data.len(),
            28,
        ),
        Block::Packet(b) => packet(
            usize::from(b.interface_id),
            duration_ns(b.timestamp),
            b.original_len,
            b.data.len(),
            28,
        ),
        Block::SimplePacket(b) => packet(0, 0, b.original_len, b.data.len(), 12),
        _ => BlockContent::Other,
    }
}

fn duration_ns(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// The pcap LINKTYPE_* name of a link type number, for messages. Only the low 16 bits
/// name the link type: a pcap file header keeps FCS length bits in the upper ones
/// (libpcap's `LT_LINKTYPE()`), as the decoder reads them.
pub fn linktype_name(linktype: u32) -> String {
    format!("{:?}", DataLink::from(linktype & 0xffff))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    #[test]
    fn link_type_names_leave_out_the_fcs_bits() {
        assert_eq!(linktype_name(1), "ETHERNET");
        assert_eq!(linktype_name(0x3000_0001), "ETHERNET");
        assert_eq!(linktype_name(0x0400_0071), "LINUX_SLL");
    }

    fn pcap_header(magic: u32, linktype: u32) -> Vec<u8> {
        let mut v = magic.to_le_bytes().to_vec();
        v.extend_from_slice(&2u16.to_le_bytes());
        v.extend_from_slice(&4u16.to_le_bytes());
        v.extend_from_slice(&0i32.to_le_bytes());
        v.extend_from_slice(&0u32.to_le_bytes());
        v.extend_from_slice(&65535u32.to_le_bytes());
        v.extend_from_slice(&linktype.to_le_bytes());
        v
    }

    fn pcap_record(v: &mut Vec<u8>, sec: u32, frac: u32, data: &[u8]) {
        v.extend_from_slice(&sec.to_le_bytes());
        v.extend_from_slice(&frac.to_le_bytes());
        v.extend_from_slice(&(data.len() as u32).to_le_bytes());
        v.extend_from_slice(&(data.len() as u32).to_le_bytes());
        v.extend_from_slice(data);
    }

    /// (number, offset, ts_ns, data) of each frame read.
    type Frames = Vec<(u64, u64, i64, Vec<u8>)>;

    fn collect(bytes: &[u8]) -> (Frames, Vec<ReadProblem>) {
        read_all(FrameReader::new(bytes).expect("header"))
    }

    fn read_all<R: Read>(mut r: FrameReader<R>) -> (Frames, Vec<ReadProblem>) {
        let mut frames = Vec::new();
        let mut problems = Vec::new();
        loop {
            match r.next_frame() {
                Next::Frame(f) => frames.push((f.number, f.offset, f.ts_ns, f.data.to_vec())),
                Next::Problem(p) => {
                    let fatal = p.fatal;
                    problems.push(p);
                    if fatal {
                        break;
                    }
                }
                Next::End => break,
            }
        }
        (frames, problems)
    }

    #[test]
    fn parse_pcap_micro_and_nano() {
        let mut v = pcap_header(0xa1b2c3d4, 1);
        pcap_record(&mut v, 10, 5, b"abc");
        pcap_record(&mut v, 11, 0, b"defg");
        let (frames, problems) = collect(&v);
        assert!(problems.is_empty());
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0], (1, 24, 10_000_005_000, b"abc".to_vec()));
        assert_eq!(frames[1].1, 24 + 16 + 3);

        let mut v = pcap_header(0xa1b23c4d, 1);
        pcap_record(&mut v, 10, 5, b"abc");
        let (frames, _) = collect(&v);
        assert_eq!(frames[0].2, 10_000_000_005);
    }

    /// `bytes` written to a file and mapped.
    fn mapped(bytes: &[u8]) -> Result<FrameReader<io::Empty>, ReadProblem> {
        let mut file = tempfile::tempfile().unwrap();
        io::Write::write_all(&mut file, bytes).unwrap();
        // SAFETY: a file of this test's own, which nothing else changes.
        FrameReader::mapped(unsafe { Mmap::map(&file) }.unwrap())
    }

    #[test]
    fn a_mapped_file_reads_as_its_stream_does() {
        // Frames that cross the point where read pages are handed back, then a cut.
        let mut v = pcap_header(0xa1b2c3d4, 1);
        let mut i = 0u32;
        while v.len() < WINDOW + 100_000 {
            pcap_record(&mut v, i, 0, &[i as u8; 1500]);
            i += 1;
        }
        let cut = &v[..v.len() - 700];
        let r = mapped(cut).unwrap();
        assert!(r.is_mapped());
        let (frames, problems) = read_all(r);
        assert_eq!((frames.len(), problems.len()), (i as usize - 1, 1));
        assert_eq!((frames, problems), collect(cut));

        let mut v = shb();
        idb(&mut v, 1, "docker0", None);
        epb(&mut v, 0, 1, b"first");
        epb(&mut v, 7, 2, b"orphan");
        epb(&mut v, 0, 3, b"third");
        assert_eq!(read_all(mapped(&v).unwrap()), collect(&v));

        let err = mapped(b"hello world, this is text").err().unwrap();
        assert!(err.message.contains("not a pcap or pcapng"));
    }

    #[test]
    fn parse_pcap_big_endian() {
        let mut v = 0xa1b2c3d4u32.to_be_bytes().to_vec();
        v.extend_from_slice(&2u16.to_be_bytes());
        v.extend_from_slice(&4u16.to_be_bytes());
        v.extend_from_slice(&[0; 8]);
        v.extend_from_slice(&65535u32.to_be_bytes());
        v.extend_from_slice(&101u32.to_be_bytes());
        for x in [7u32, 1, 2, 2] {
            v.extend_from_slice(&x.to_be_bytes());
        }
        v.extend_from_slice(b"xy");
        let mut r = FrameReader::new(&v[..]).unwrap();
        assert_eq!(r.interfaces()[0].linktype, 101);
        match r.next_frame() {
            Next::Frame(f) => {
                assert_eq!(f.ts_ns, 7_000_001_000);
                assert_eq!(f.data, b"xy");
            }
            _ => panic!("expected a frame"),
        }
    }

    #[test]
    fn truncated_pcap_keeps_earlier_frames_and_locates_the_cut() {
        let mut v = pcap_header(0xa1b2c3d4, 1);
        pcap_record(&mut v, 1, 0, &[1; 40]);
        pcap_record(&mut v, 2, 0, &[2; 40]);
        let cut = v.len() - 10;
        let (frames, problems) = collect(&v[..cut]);
        assert_eq!(frames.len(), 1);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].fatal);
        assert_eq!(problems[0].offset, 24 + 56);
        assert_eq!(problems[0].frame, Some(2));
        assert!(
            problems[0].message.contains("30 of 40"),
            "{}",
            problems[0].message
        );
    }

    #[test]
    fn impossible_record_length_is_a_located_error_not_an_allocation() {
        let mut v = pcap_header(0xa1b2c3d4, 1);
        v.extend_from_slice(&[0; 8]);
        v.extend_from_slice(&u32::MAX.to_le_bytes());
        v.extend_from_slice(&u32::MAX.to_le_bytes());
        let (frames, problems) = collect(&v);
        assert!(frames.is_empty());
        assert!(problems[0].message.contains("corrupt packet record header"));
    }

    #[test]
    fn not_a_capture() {
        let err = FrameReader::new(&b"hello world, this is text"[..])
            .err()
            .unwrap();
        assert!(
            err.message.contains("not a pcap or pcapng"),
            "{}",
            err.message
        );
        assert!(FrameReader::new(&b""[..]).is_err());
    }

    pub(crate) fn block(v: &mut Vec<u8>, t: u32, body: &[u8]) {
        let len = 12 + body.len().div_ceil(4) * 4;
        v.extend_from_slice(&t.to_le_bytes());
        v.extend_from_slice(&(len as u32).to_le_bytes());
        v.extend_from_slice(body);
        v.resize(v.len() + (len - 12 - body.len()), 0);
        v.extend_from_slice(&(len as u32).to_le_bytes());
    }

    pub(crate) fn shb() -> Vec<u8> {
        let mut body = 0x1A2B3C4Du32.to_le_bytes().to_vec();
        body.extend_from_slice(&1u16.to_le_bytes());
        body.extend_from_slice(&0u16.to_le_bytes());
        body.extend_from_slice(&(-1i64).to_le_bytes());
        let mut v = Vec::new();
        block(&mut v, 0x0A0D0D0A, &body);
        v
    }

    fn idb(v: &mut Vec<u8>, linktype: u16, name: &str, tsresol: Option<u8>) {
        let mut body = linktype.to_le_bytes().to_vec();
        body.extend_from_slice(&0u16.to_le_bytes());
        body.extend_from_slice(&0u32.to_le_bytes());
        let mut opt = |code: u16, val: &[u8]| {
            body.extend_from_slice(&code.to_le_bytes());
            body.extend_from_slice(&(val.len() as u16).to_le_bytes());
            body.extend_from_slice(val);
            body.resize(body.len() + (4 - val.len() % 4) % 4, 0);
        };
        opt(2, name.as_bytes());
        if let Some(r) = tsresol {
            opt(9, &[r]);
        }
        opt(0, &[]);
        block(v, 1, &body);
    }

    pub(crate) fn epb(v: &mut Vec<u8>, iface: u32, ts: u64, data: &[u8]) {
        let mut body = iface.to_le_bytes().to_vec();
        body.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
        body.extend_from_slice(&(ts as u32).to_le_bytes());
        body.extend_from_slice(&(data.len() as u32).to_le_bytes());
        body.extend_from_slice(&(data.len() as u32).to_le_bytes());
        body.extend_from_slice(data);
        block(v, 6, &body);
    }

    #[test]
    fn pcapng_interfaces_names_and_resolutions() {
        let mut v = shb();
        idb(&mut v, 1, "docker0", None);
        idb(&mut v, 113, "eth0", Some(9));
        epb(&mut v, 0, 1_500_000, b"abcde");
        epb(&mut v, 1, 2_000_000_123, b"xyz");
        let mut r = FrameReader::new(&v[..]).unwrap();
        let mut got = Vec::new();
        while let Next::Frame(f) = r.next_frame() {
            got.push((f.interface, f.ts_ns, f.linktype, f.data.to_vec()));
        }
        assert_eq!(r.interfaces().len(), 2);
        assert_eq!(r.interfaces()[0].name.as_deref(), Some("docker0"));
        assert_eq!(r.interfaces()[1].name.as_deref(), Some("eth0"));
        assert_eq!(
            got,
            vec![
                (0, 1_500_000_000, 1, b"abcde".to_vec()),
                (1, 2_000_000_123, 113, b"xyz".to_vec())
            ]
        );
    }

    #[test]
    fn pcapng_cut_mid_block_warns_with_offset() {
        let mut v = shb();
        idb(&mut v, 1, "docker0", None);
        epb(&mut v, 0, 1, b"first");
        let second = v.len();
        epb(&mut v, 0, 2, b"second packet");
        let (frames, problems) = collect(&v[..v.len() - 3]);
        assert_eq!(frames.len(), 1);
        assert_eq!(problems[0].offset, second as u64);
        assert!(problems[0].fatal);
    }

    #[test]
    fn pcapng_bad_interface_id_skips_block_and_goes_on() {
        let mut v = shb();
        idb(&mut v, 1, "docker0", None);
        epb(&mut v, 7, 1, b"orphan");
        epb(&mut v, 0, 2, b"good");
        let (frames, problems) = collect(&v);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].3, b"good".to_vec());
        assert_eq!(problems.len(), 1);
        assert!(!problems[0].fatal);
    }

    #[test]
    fn second_section_counts_interfaces_on_and_simple_packets_have_no_time() {
        let mut v = shb();
        idb(&mut v, 1, "docker0", None);
        v.extend(shb());
        idb(&mut v, 113, "any", None);
        idb(&mut v, 1, "eth0", None);
        epb(&mut v, 1, 5_000_000, b"epb");
        let mut spb = 3u32.to_le_bytes().to_vec();
        spb.extend_from_slice(b"spb");
        block(&mut v, 3, &spb);
        let mut r = FrameReader::new(&v[..]).unwrap();
        let mut got = Vec::new();
        while let Next::Frame(f) = r.next_frame() {
            got.push((f.interface, f.ts_ns, f.linktype, f.data.to_vec()));
        }
        assert_eq!(
            got,
            vec![
                (2, 5_000_000_000, 1, b"epb".to_vec()),
                (1, 0, 113, b"spb".to_vec())
            ]
        );
        let sections: Vec<_> = r.interfaces().iter().map(|i| i.section).collect();
        assert_eq!(sections, [0, 1, 1]);
    }

    #[test]
    fn pcapng_block_header_problems_are_fatal_and_located() {
        let mut v = shb();
        idb(&mut v, 1, "docker0", None);
        let at = v.len();
        // A block length that is not a multiple of 4.
        let mut bad = v.clone();
        bad.extend_from_slice(&6u32.to_le_bytes());
        bad.extend_from_slice(&14u32.to_le_bytes());
        bad.extend_from_slice(&[0; 8]);
        let (frames, problems) = collect(&bad);
        assert!(frames.is_empty());
        assert_eq!((problems[0].offset, problems[0].fatal), (at as u64, true));
        assert_eq!(problems[0].message, "corrupt pcapng block length 14");
        // The file ends 5 bytes into a block header.
        let mut cut = v.clone();
        cut.extend_from_slice(&[6, 0, 0, 0, 32]);
        let (_, problems) = collect(&cut);
        assert_eq!(
            problems[0].message,
            "capture ends inside a block header (5 of 12 bytes)"
        );
        assert_eq!(problems[0].offset, at as u64);
    }
}
