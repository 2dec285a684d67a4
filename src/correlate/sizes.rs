//! Sizes: one direction of a link measured by packet size, after the packets that
//! crossed are known (one for one, or byte for byte where offloads cut the stream
//! differently).
//!
//! A path that carries less than its ends assume passes small packets and loses large
//! ones: the largest packet that crossed bounds what the path carries, and TCP data
//! segments that did not cross and are larger than that (`oversize`) are what it did
//! not carry. Whether the sender learned of it shows in what it did next: segments
//! sent again whole (the same first sequence number), and whether their bytes ever
//! reached the receiving hop in other, smaller segments. Sizes are IP lengths as sent;
//! the largest that crossed is taken at the receiving hop, so a super-packet that
//! crossed cut into MSS-sized segments counts at their size.
//!
//! Whatever the protocol, every packet that did not cross is also measured against
//! those that did, by length and by time ([`Missing`]): a path that loses packets of
//! one kind, or everything for a while, shows it there.

use foldhash::HashSet;

use super::points::{PointData, Rec};
use crate::model::tcp_flags::SYN;

/// One direction of a link by packet size. The packets that did not cross are boxed:
/// a link that lost nothing (most) keeps 56 bytes a direction, not 176.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sizes {
    /// Packets of this direction the receiving hop got from the sending hop, and the
    /// IP length of the largest as the receiving hop got it.
    pub crossed: u64,
    pub crossed_max: u32,
    /// TCP data segments the sending hop saw that did not cross and are larger than
    /// `crossed_max` ([`Sizes::oversize`]).
    oversize: Option<Box<Oversize>>,
    /// When the packets that crossed were sent: the first and the last (sending hop,
    /// clock-corrected).
    pub crossed_span: Option<(i64, i64)>,
    /// Every packet of this direction the sending hop saw that did not cross, whatever
    /// its protocol and size ([`Sizes::missing`]).
    missing: Option<Box<Missing>>,
}

impl Sizes {
    /// The TCP data segments the sending hop saw that did not cross and are larger
    /// than `crossed_max`.
    pub fn oversize(&self) -> Option<Oversize> {
        self.oversize.as_deref().copied()
    }

    /// Every packet of this direction the sending hop saw that did not cross.
    pub fn missing(&self) -> Option<Missing> {
        self.missing.as_deref().copied()
    }
}

/// The packets of one direction of a link that did not cross, by length and by time
/// against those that did (sending hop, clock-corrected).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Missing {
    pub packets: u64,
    /// The smallest and largest IP length.
    pub min_len: u32,
    pub max_len: u32,
    pub first_ns: i64,
    pub last_ns: i64,
    /// Packets that crossed between the first and the last of them.
    pub crossed_amid: u64,
    /// The last packet that crossed before the first of them, and the first after the
    /// last.
    pub crossed_before: Option<i64>,
    pub crossed_after: Option<i64>,
}

/// Both directions of a link: initiator packets (sent by the upstream hop) and
/// responder packets (sent by the downstream hop).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sizing {
    pub fwd: Sizes,
    pub rev: Sizes,
}

/// TCP data segments that did not cross a link and are larger than every packet of
/// their direction that did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Oversize {
    pub packets: u64,
    /// Of them, those that may not be fragmented on the way (IPv4 DF, or IPv6).
    pub df: u64,
    /// The smallest and largest IP length.
    pub min_len: u32,
    pub max_len: u32,
    /// Clock-corrected times of the first and last.
    pub first_ns: i64,
    pub last_ns: i64,
    /// Copies of bytes the sending hop had seen sent before: segments that start at a
    /// sequence number a data segment started at earlier.
    pub resent: u64,
    /// Whether the first byte of any of them reached the receiving hop in a segment
    /// of its own (the sender cut it smaller, or an earlier copy crossed).
    pub delivered: bool,
    /// Other packets of this direction the sending hop saw from the first of them on
    /// that did not cross either: not larger than `crossed_max`.
    pub smaller_lost: u64,
}

/// One hop of a link as [`measure`] reads it: its point, its records in time order,
/// its clock offset, and which records crossed (matched or accounted for).
#[derive(Clone, Copy)]
pub(super) struct Side<'a> {
    pub point: &'a PointData,
    pub recs: &'a [Rec],
    pub off: i64,
    pub crossed: &'a [bool],
}

impl<'a> Side<'a> {
    /// The records of one direction (`fwd`: the initiator's), with whether they crossed.
    fn of(&self, fwd: bool) -> impl Iterator<Item = (&'a Rec, bool)> + '_ {
        self.recs
            .iter()
            .zip(self.crossed.iter().copied())
            .filter(move |(r, _)| self.point.is_fwd(r) == fwd)
    }
}

/// Whether a record is a TCP segment with data (a SYN's data is left out).
fn data(r: &Rec) -> Option<(u32, u32)> {
    let s = r.seg()?;
    (s.len > 0 && r.tcp_flags() & SYN == 0).then_some((s.seq, s.len))
}

/// Measures one direction (`fwd`: the initiator's) of a link from the sending hop
/// `send` to the receiving hop `recv`, counting what the sending hop saw within
/// `span` (clock-corrected: while the receiving point was capturing).
pub(super) fn measure(send: Side, recv: Side, fwd: bool, span: (i64, i64)) -> Sizes {
    let mut out = Sizes::default();
    for (r, _) in recv.of(fwd).filter(|(_, c)| *c) {
        out.crossed += 1;
        out.crossed_max = out.crossed_max.max(r.ip_len());
    }
    let max = out.crossed_max;
    // The sequence numbers sent so far, kept from the first oversize segment on (made
    // then from the records before it): most links have none.
    let mut sent: Option<HashSet<u32>> = None;
    let mut over: Option<Oversize> = None;
    let mut starts: Vec<u32> = Vec::new();
    // The first and the latest time a record crossed.
    let mut crossed_span: Option<(i64, i64)> = None;
    let mut missing: Option<Missing> = None;
    for (i, (r, crossed)) in send.of(fwd).enumerate() {
        let t = r.ts - send.off;
        let seg = data(r);
        // Whether an earlier data segment had its sequence number (known here once
        // the numbers are kept).
        let mut again = match (sent.as_mut(), seg) {
            (Some(sent), Some((seq, _))) => !sent.insert(seq),
            _ => false,
        };
        if crossed {
            crossed_span = Some((crossed_span.map_or(t, |(first, _)| first), t));
        }
        if crossed || t < span.0 || t > span.1 {
            continue;
        }
        let m = missing.get_or_insert(Missing {
            min_len: r.ip_len(),
            first_ns: t,
            crossed_before: crossed_span.map(|(_, last)| last),
            ..Missing::default()
        });
        m.packets += 1;
        m.min_len = m.min_len.min(r.ip_len());
        m.max_len = m.max_len.max(r.ip_len());
        m.last_ns = t;
        match seg.filter(|_| r.ip_len() > max) {
            Some((seq, _)) => {
                if sent.is_none() {
                    let mut before: HashSet<u32> = (send.of(fwd).take(i))
                        .filter_map(|(r, _)| data(r).map(|(seq, _)| seq))
                        .collect();
                    again = !before.insert(seq);
                    sent = Some(before);
                }
                let o = over.get_or_insert(Oversize {
                    min_len: r.ip_len(),
                    first_ns: t,
                    ..Oversize::default()
                });
                o.packets += 1;
                o.df += u64::from(r.df());
                o.min_len = o.min_len.min(r.ip_len());
                o.max_len = o.max_len.max(r.ip_len());
                o.last_ns = t;
                o.resent += u64::from(again);
                starts.push(seq);
            }
            None => {
                if let Some(o) = over.as_mut() {
                    o.smaller_lost += 1;
                }
            }
        }
    }
    out.crossed_span = crossed_span;
    if let Some(m) = missing.as_mut() {
        // Records come in time order: those that crossed after the first missing one
        // and up to the last, and the first after that.
        for t in (send.of(fwd).filter(|(_, c)| *c)).map(|(r, _)| r.ts - send.off) {
            if t > m.last_ns {
                m.crossed_after = Some(t);
                break;
            }
            m.crossed_amid += u64::from(t > m.first_ns);
        }
    }
    out.missing = missing.map(Box::new);
    if let Some(mut o) = over {
        let got: Vec<(u32, u32)> = recv.of(fwd).filter_map(|(r, _)| data(r)).collect();
        o.delivered = starts
            .iter()
            .any(|&s| got.iter().any(|&(seq, len)| s.wrapping_sub(seq) < len));
        out.oversize = Some(Box::new(o));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::correlate::testkit::{data as seg, point, tcp, Hdr, MS};
    use crate::model::tcp_flags::{ACK, SYN};
    use crate::model::Packet;

    const C: &str = "172.17.0.2:40000";
    const S: &str = "203.0.113.2:7000";

    fn h(tsval: u32) -> Hdr {
        Hdr {
            ack: 5000,
            tsval: Some(tsval),
            flags: ACK,
        }
    }

    /// The records of one point's only flow, all crossed unless listed.
    fn side(p: &PointData, lost: &[usize]) -> (Vec<Rec>, Vec<bool>) {
        let recs = p.recs.clone();
        let crossed = (0..recs.len()).map(|k| !lost.contains(&k)).collect();
        (recs, crossed)
    }

    fn sizes(sender: &[Packet], lost: &[usize], receiver: &[Packet]) -> Sizes {
        let (ps, pr) = (point("a", 0, sender), point("b", 1, receiver));
        let (rs, cs) = side(&ps, lost);
        let (rr, cr) = side(&pr, &[]);
        measure(
            Side {
                point: &ps,
                recs: &rs,
                off: 0,
                crossed: &cs,
            },
            Side {
                point: &pr,
                recs: &rr,
                off: 0,
                crossed: &cr,
            },
            true,
            (i64::MIN, i64::MAX),
        )
    }

    #[test]
    fn what_did_not_cross_by_length_and_time_against_what_did() {
        // Crossed: the SYN, a small request, one amid the lost, one after them.
        let sender = vec![
            tcp(0, C, S, 999, SYN, 64),
            seg(MS, C, S, 1000, 40, h(1)),
            seg(2 * MS, C, S, 1040, 1448, h(2)),
            seg(3 * MS, C, S, 2488, 40, h(3)),
            seg(4 * MS, C, S, 1040, 1448, h(4)),
            seg(5 * MS, C, S, 2528, 40, h(5)),
        ];
        let receiver: Vec<Packet> = [0, 1, 3, 5].iter().map(|&k| sender[k]).collect();
        let s = sizes(&sender, &[2, 4], &receiver);
        assert_eq!(s.crossed_span, Some((0, 5 * MS)));
        let m = s.missing.expect("lost packets");
        assert_eq!((m.packets, m.first_ns, m.last_ns), (2, 2 * MS, 4 * MS));
        assert_eq!(m.min_len, m.max_len);
        assert!(m.min_len > s.crossed_max);
        assert_eq!(m.crossed_amid, 1);
        assert_eq!(
            (m.crossed_before, m.crossed_after),
            (Some(MS), Some(5 * MS))
        );
        // Nothing lost: no such record; nothing crossed: no span.
        assert_eq!(sizes(&sender, &[], &sender).missing, None);
        let none = sizes(&sender, &[0, 1, 2, 3, 4, 5], &[]);
        assert_eq!(none.crossed_span, None);
        let m = none.missing.unwrap();
        assert_eq!(
            (m.packets, m.crossed_before, m.crossed_after),
            (6, None, None)
        );
    }

    #[test]
    fn large_segments_sent_again_and_never_delivered() {
        // A SYN, a small request that crossed, two full-size segments lost, the first
        // sent again whole, lost again.
        let sender = vec![
            tcp(0, C, S, 999, SYN, 64),
            seg(MS, C, S, 1000, 40, h(1)),
            seg(2 * MS, C, S, 1040, 1448, h(2)),
            seg(2 * MS, C, S, 2488, 1448, h(2)),
            seg(200 * MS, C, S, 1040, 1448, h(3)),
        ];
        let receiver = sender[..2].to_vec();
        let s = sizes(&sender, &[2, 3, 4], &receiver);
        assert_eq!((s.crossed, s.crossed_max), (2, 92));
        let o = s.oversize.expect("oversize");
        assert_eq!((o.packets, o.df, o.min_len, o.max_len), (3, 3, 1500, 1500));
        assert_eq!((o.first_ns, o.last_ns), (2 * MS, 200 * MS));
        assert_eq!((o.resent, o.delivered, o.smaller_lost), (1, false, 0));

        // The sender learned: the same bytes again in smaller segments, which crossed.
        let mut sender2 = sender.clone();
        sender2.push(seg(300 * MS, C, S, 1040, 1348, h(4)));
        let mut receiver2 = receiver.clone();
        receiver2.push(sender2[5]);
        let o = sizes(&sender2, &[2, 3, 4], &receiver2).oversize.unwrap();
        assert!(o.delivered);

        // Everything lost from some moment on, small packets too: not a size matter.
        let mut sender3 = sender.clone();
        sender3.push(seg(300 * MS, C, S, 1040, 10, h(5)));
        let o = sizes(&sender3, &[2, 3, 4, 5], &receiver).oversize.unwrap();
        assert_eq!(o.smaller_lost, 1);

        // The first oversize segment repeats the start of a small one that crossed
        // (a retransmission that carried more): sent again, too.
        let sender4 = vec![
            tcp(0, C, S, 999, SYN, 64),
            seg(MS, C, S, 1000, 40, h(1)),
            seg(2 * MS, C, S, 1040, 40, h(2)),
            seg(200 * MS, C, S, 1040, 1448, h(3)),
        ];
        let o = sizes(&sender4, &[3], &sender4[..3]).oversize.unwrap();
        assert_eq!((o.packets, o.resent), (1, 1));
    }

    #[test]
    fn nothing_oversize_when_every_data_segment_crossed() {
        let sender = vec![
            tcp(0, C, S, 999, SYN, 64),
            seg(MS, C, S, 1000, 1448, h(1)),
            seg(2 * MS, C, S, 2448, 1448, h(2)),
        ];
        let s = sizes(&sender, &[], &sender);
        assert_eq!((s.crossed, s.crossed_max, s.oversize), (3, 1500, None));
    }
}
