//! Streams: the bytes each side of a TCP connection sent, as its first hop saw them,
//! for connections that no link translated.
//!
//! A userland proxy (docker-proxy, socat, a REDIRECT sidecar) splices two TCP
//! connections: the client's ends at the host, and the proxy opens one of its own to
//! the backend. No invariant field joins them (their ports, sequence numbers and
//! timestamps are unrelated, and neither is translated); what they share is the
//! bytes, in the same order, a little later on the other connection. A [`Stream`]
//! keeps what it takes to see that: where each of the first data segments starts in
//! the stream (bytes after the SYN's sequence number), its length, its first bytes
//! ([`crate::model::Packet::payload_head`]) and when it was first seen. Sequence
//! offsets do not depend on how the sender cut the stream, so two connections that
//! carried the same bytes agree wherever both have a segment starting at one offset,
//! at offset 0 at least.

use rayon::prelude::*;

use super::paths::Hop;
use super::points::{PointData, Rec};
use super::Connection;
use crate::model::tcp_flags::{ACK, SYN};
use crate::model::{NatKind, Proto};

/// How many of the first data segments a [`Stream`] keeps.
pub const CHUNKS: usize = 8;

/// One side's bytes of a TCP connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stream {
    /// Clock-corrected time of the SYN (the initiator's side) or SYN-ACK (the
    /// responder's) that opened this side, and its sequence number.
    pub syn_ns: i64,
    pub isn: u32,
    /// The data segments with the lowest offsets, first copy each, by offset.
    pub chunks: Vec<Chunk>,
    /// Payload bytes sent: the furthest offset a data segment reached.
    pub bytes: u64,
}

/// A data segment's place in its stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// Bytes after the SYN's sequence number (0: the first byte of the stream).
    pub offset: u32,
    pub len: u32,
    /// Digest of the first payload bytes, 0 when fewer were captured.
    pub head: u32,
    /// Clock-corrected time of the first copy.
    pub ts: i64,
}

/// Both sides of a connection: the initiator's bytes and the responder's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Streams {
    pub fwd: Stream,
    pub rev: Stream,
}

impl Stream {
    /// The segment that starts at `offset`, when one of the first ones does.
    pub fn at(&self, offset: u32) -> Option<&Chunk> {
        self.chunks
            .binary_search_by_key(&offset, |c| c.offset)
            .ok()
            .map(|i| &self.chunks[i])
    }

    /// Keeps a data segment at `offset` if it is among the lowest offsets seen
    /// (records come in time order, so the first copy of an offset stays).
    fn add(&mut self, c: Chunk) {
        self.bytes = self.bytes.max(u64::from(c.offset) + u64::from(c.len));
        let Err(i) = self.chunks.binary_search_by_key(&c.offset, |x| x.offset) else {
            return;
        };
        if i < CHUNKS {
            self.chunks.insert(i, c);
            self.chunks.truncate(CHUNKS);
        }
    }
}

/// Fills `streams` for every TCP connection that no link translated, whose SYN and
/// SYN-ACK its first hop saw.
pub(super) fn summarize(points: &[PointData], conns: &mut [Connection], off: &[i64]) {
    conns.par_iter_mut().for_each(|c| {
        let untranslated = c.links.iter().all(|l| l.change.kind == NatKind::None);
        if c.proto == Proto::Tcp && untranslated {
            c.streams = c
                .hops
                .first()
                .and_then(|h| streams(&points[h.point], h, off[h.point]))
                .map(Box::new);
        }
    });
}

/// The streams of one hop (clock offset `off`), when it saw both SYNs.
fn streams(p: &PointData, h: &Hop, off: i64) -> Option<Streams> {
    let recs = h.recs(p);
    let open = |fwd: bool| -> Option<Stream> {
        let want = if fwd { SYN } else { SYN | ACK };
        let r = recs
            .iter()
            .find(|r| p.is_fwd(r) == fwd && r.tcp_flags() & (SYN | ACK) == want)?;
        Some(Stream {
            syn_ns: r.ts - off,
            isn: r.seg()?.seq,
            ..Stream::default()
        })
    };
    let mut s = Streams {
        fwd: open(true)?,
        rev: open(false)?,
    };
    for r in recs.iter() {
        let side = if p.is_fwd(r) { &mut s.fwd } else { &mut s.rev };
        if let Some(c) = chunk(r, side.isn, off) {
            side.add(c);
        }
    }
    Some(s)
}

/// A data segment's chunk in the stream whose SYN had sequence number `isn`; none
/// for segments without data, SYNs, and bytes before the stream's start.
fn chunk(r: &Rec, isn: u32, off: i64) -> Option<Chunk> {
    let s = r.seg()?;
    if s.len == 0 || r.tcp_flags() & SYN != 0 {
        return None;
    }
    let offset = s.seq.wrapping_sub(isn.wrapping_add(1));
    (offset < 1 << 31).then_some(Chunk {
        offset,
        len: s.len,
        head: s.head,
        ts: r.ts - off,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::correlate::testkit::{data, point, tcp, Hdr, MS, US};
    use crate::correlate::{correlate, Config};

    #[test]
    fn the_first_segments_by_offset_first_copy_each() {
        let (c, s) = ("172.17.0.1:41000", "172.17.0.2:80");
        let h = |tsval| Hdr {
            ack: 7001,
            tsval: Some(tsval),
            flags: ACK,
        };
        let mut packets = vec![
            tcp(0, c, s, 999, SYN, 64),
            tcp(10 * US, s, c, 7000, SYN | ACK, 64),
        ];
        // Twelve 100-byte segments, the second one sent again later.
        for i in 0..12u32 {
            packets.push(data(
                MS + i64::from(i) * US,
                c,
                s,
                1000 + 100 * i,
                100,
                h(i),
            ));
        }
        packets.push(data(9 * MS, c, s, 1100, 100, h(99)));
        let pts = vec![point("docker0", 0, &packets)];
        let conn = &correlate(pts, Vec::new(), Config::default()).connections[0];
        let st = conn.streams.as_deref().expect("streams");
        assert_eq!((st.fwd.isn, st.fwd.syn_ns), (999, 0));
        assert_eq!((st.rev.isn, st.rev.syn_ns), (7000, 10 * US));
        let offsets: Vec<u32> = st.fwd.chunks.iter().map(|c| c.offset).collect();
        assert_eq!(
            offsets,
            (0..CHUNKS as u32).map(|i| i * 100).collect::<Vec<_>>()
        );
        assert_eq!(st.fwd.at(100).map(|c| c.ts), Some(MS + US));
        assert_eq!(st.fwd.bytes, 1200);
        assert!(st.rev.chunks.is_empty());
    }
}
