//! Ladders: a connection's packets one by one as they went from hop to hop, for the
//! diagrams that draw them (the HTML report). A packet is followed across the path by
//! the one-for-one matches of every link ([`super::translations`]): the initiator's
//! packets from the first hop onward, the responder's from the last hop backward. Where
//! it stops short of the path's end, and where it starts after the path's start, the
//! link says why: it was not seen at the adjacent hop while that point was capturing
//! (lost, or appeared from nowhere: the same packets the link's `unmatched` gaps
//! count), it crossed in another form (bytes cut differently, a later ACK, a copy, or
//! by a point beside the path), or that point was not capturing.
//!
//! Only the first [`HEAD`] and the last [`TAIL`] packets of a connection are kept, so
//! a connection of a million packets costs a ladder of a few dozen. Built only when
//! asked ([`super::Config::ladders`]): the other reports do without.

use super::paths::Hop;
use super::points::{PointData, Rec};
use super::translations::{capturing, Linked};
use crate::model::Proto;

/// Packets kept from the start of a connection.
pub const HEAD: usize = 48;
/// Packets kept from its end.
pub const TAIL: usize = 16;

/// A connection's packets as they went from hop to hop, in order of their first
/// sighting: the first [`HEAD`], then the last [`TAIL`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ladder {
    pub packets: Vec<Rung>,
    /// Packets left out between the first [`HEAD`] and the last [`TAIL`] (they come
    /// after `packets[HEAD - 1]`).
    pub omitted: u64,
}

/// One packet of a connection across the hops that saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rung {
    /// Sent by the initiator (it travels from the first hop toward the last).
    pub fwd: bool,
    /// TCP flags; `None` for other protocols.
    pub tcp_flags: Option<u8>,
    /// Length of the IP packet.
    pub ip_len: u32,
    /// The hop (index in the connection's hops) it was first seen at.
    pub hop: usize,
    /// Clock-corrected times at `hop` and each next hop on its way that saw it (hop
    /// indices rising for the initiator's packets, falling for the responder's).
    pub times: Vec<i64>,
    /// Why it was not seen at the hop before `hop` on its way, and at the hop after
    /// the last that saw it.
    pub from: Edge,
    pub to: Edge,
}

impl Rung {
    /// The hop of its `j`-th sighting (`times[j]`).
    pub fn hop_at(&self, j: usize) -> usize {
        if self.fwd {
            self.hop + j
        } else {
            self.hop - j
        }
    }

    /// The hop it was last seen at.
    pub fn last_hop(&self) -> usize {
        self.hop_at(self.times.len() - 1)
    }

    /// The hop after the last that saw it, on its way (maybe past the path's end),
    /// and the hop before the first (`None` before the first hop).
    pub fn next_hop(&self) -> Option<usize> {
        let last = self.last_hop();
        if self.fwd {
            Some(last + 1)
        } else {
            last.checked_sub(1)
        }
    }

    pub fn prev_hop(&self) -> Option<usize> {
        if self.fwd {
            self.hop.checked_sub(1)
        } else {
            Some(self.hop + 1)
        }
    }
}

/// What happened at one end of a packet's way along the path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edge {
    /// The path's end: nothing was captured beyond it.
    End,
    /// Not seen at the adjacent hop while its point was capturing: lost (at the end
    /// of its way) or appeared there from nowhere (at its start).
    Unseen,
    /// Crossed, but not one for one: its bytes in segments cut differently, a later
    /// ACK, a copy of a packet that crossed, or replies by a point beside the path.
    Elsewhere,
    /// The adjacent hop's point was not capturing then.
    Uncaptured,
}

/// A hop's records, and for each the record matched one for one at the hop before
/// and at the hop after (`NONE` when there is none).
struct Rail {
    recs: Vec<Rec>,
    prev: Vec<u32>,
    next: Vec<u32>,
}

const NONE: u32 = u32::MAX;

/// The ladder of the connection with hops `hops`, whose links (`links[i]` joins
/// `hops[i]` and `hops[i + 1]`) were just made.
pub(super) fn build(
    points: &[PointData],
    hops: &[Hop],
    links: &[Linked],
    off: &[i64],
    window: i64,
) -> Ladder {
    let mut rails: Vec<Rail> = hops
        .iter()
        .map(|h| {
            let recs = h.recs(&points[h.point]);
            let n = recs.len();
            Rail {
                recs,
                prev: vec![NONE; n],
                next: vec![NONE; n],
            }
        })
        .collect();
    for (i, l) in links.iter().enumerate() {
        for &(a, b) in &l.pairs {
            rails[i].next[a] = b as u32;
            rails[i + 1].prev[b] = a as u32;
        }
    }
    let fwd = |i: usize, k: usize| points[hops[i].point].is_fwd(&rails[i].recs[k]);
    let time = |i: usize, k: usize| rails[i].recs[k].ts - off[hops[i].point];
    // The record a packet went on to from record `k` of hop `i`: one of the same
    // direction, matched one for one at the next hop on its way.
    let step = |i: usize, k: usize, f: bool| -> Option<(usize, usize)> {
        let (j, m) = if f {
            (i + 1, rails[i].next[k])
        } else {
            (i.checked_sub(1)?, rails[i].prev[k])
        };
        (m != NONE && fwd(j, m as usize) == f).then_some((j, m as usize))
    };
    // A packet starts where no packet of its direction came from.
    let mut starts: Vec<(i64, usize, usize)> = Vec::new();
    for (i, r) in rails.iter().enumerate() {
        for k in 0..r.recs.len() {
            let f = fwd(i, k);
            let came = if f {
                i.checked_sub(1).map(|h| (h, r.prev[k]))
            } else {
                (i + 1 < rails.len()).then(|| (i + 1, r.next[k]))
            };
            let started = match came {
                Some((h, m)) if m != NONE => fwd(h, m as usize) != f,
                _ => true,
            };
            if started {
                starts.push((time(i, k), i, k));
            }
        }
    }
    starts.sort_unstable();
    let omitted = starts.len().saturating_sub(HEAD + TAIL);
    if omitted > 0 {
        starts.drain(HEAD..HEAD + omitted);
    }
    // Why a packet of direction `f` at record `k` of hop `i` was not seen at the hop
    // `toward` it (`None` past the path's end).
    let edge = |i: usize, k: usize, toward: Option<usize>| -> Edge {
        let Some(j) = toward.filter(|&j| j < hops.len()) else {
            return Edge::End;
        };
        let (l, side) = if j > i { (i, 0) } else { (j, 1) };
        if links[l].crossed[side][k] {
            return Edge::Elsewhere;
        }
        let t = time(i, k);
        match capturing(&points[hops[j].point], off[hops[j].point], window) {
            Some((a, b)) if a <= t && t <= b => Edge::Unseen,
            _ => Edge::Uncaptured,
        }
    };
    let towards = |i: usize, f: bool, ahead: bool| -> Option<usize> {
        if f == ahead {
            Some(i + 1)
        } else {
            i.checked_sub(1)
        }
    };
    let tcp = hops
        .first()
        .is_some_and(|h| h.flow.tuple.proto == Proto::Tcp);
    let packets = starts
        .into_iter()
        .map(|(_, i, k)| {
            let f = fwd(i, k);
            let r = &rails[i].recs[k];
            let mut times = vec![time(i, k)];
            let (mut h, mut m) = (i, k);
            while let Some((j, n)) = step(h, m, f) {
                times.push(time(j, n));
                (h, m) = (j, n);
            }
            Rung {
                fwd: f,
                tcp_flags: tcp.then_some(r.tcp_flags),
                ip_len: r.ip_len,
                hop: i,
                times,
                from: edge(i, k, towards(i, f, false)),
                to: edge(h, m, towards(h, f, true)),
            }
        })
        .collect();
    Ladder {
        packets,
        omitted: omitted as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::correlate::testkit::{point, tcp, tcp_conv, view, MS, US};
    use crate::correlate::{correlate, Config};

    fn ladders() -> Config {
        Config {
            ladders: true,
            ..Config::default()
        }
    }

    #[test]
    fn follows_each_packet_across_the_path_and_marks_where_it_stopped() {
        let lat = 30 * US;
        let inside = tcp_conv(0, "172.17.0.2:40000", "198.51.100.7:443", 1000);
        let mut outside = view(&inside, "203.0.113.1:40000", "198.51.100.7:443", lat, 1);
        // The request (the fourth packet, an initiator's) never left.
        outside.remove(3);
        let points = vec![point("docker0", 0, &inside), point("eth0", 1, &outside)];
        let c = correlate(points, Vec::new(), ladders());
        let conn = &c.connections[0];
        let l = conn.ladder.as_deref().expect("asked for");
        assert_eq!(l.omitted, 0);
        assert_eq!(l.packets.len(), inside.len());
        // Initiator packets go docker0 -> eth0, replies eth0 -> docker0.
        for p in &l.packets {
            let start = if p.fwd { 0 } else { 1 };
            assert_eq!(p.hop, start, "{p:?}");
            assert_eq!(p.from, Edge::End, "{p:?}");
        }
        let lost: Vec<&Rung> = l.packets.iter().filter(|p| p.to == Edge::Unseen).collect();
        assert_eq!(lost.len(), 1, "{l:?}");
        assert!(lost[0].fwd && lost[0].times == [3 * MS]);
        assert_eq!(lost[0].last_hop(), 0);
        assert_eq!(lost.len() as u64, conn.links[0].unmatched.lost_fwd.packets);
        for p in l.packets.iter().filter(|p| p.to != Edge::Unseen) {
            assert_eq!(p.to, Edge::End, "{p:?}");
            assert_eq!(p.times.len(), 2);
            assert_eq!(p.times[1] - p.times[0], lat);
        }
        // Without asking, no ladder.
        let points = vec![point("docker0", 0, &inside), point("eth0", 1, &outside)];
        let c = correlate(points, Vec::new(), Config::default());
        assert!(c.connections[0].ladder.is_none());
    }

    #[test]
    fn keeps_the_first_and_last_packets_of_a_long_connection() {
        use crate::model::tcp_flags::{ACK, PSH};
        let (client, server) = ("172.17.0.2:40000", "198.51.100.7:443");
        let mut pkts = tcp_conv(0, client, server, 1000);
        pkts.truncate(3);
        for i in 0..100u32 {
            let mut p = tcp(
                (10 + i64::from(i)) * MS,
                client,
                server,
                2000 + i,
                PSH | ACK,
                64,
            );
            p.payload_len = 1;
            p.payload_digest = u64::from(i);
            pkts.push(p);
        }
        let c = correlate(vec![point("eth0", 0, &pkts)], Vec::new(), ladders());
        assert_eq!(c.connections.len(), 1);
        let conn = &c.connections[0];
        let l = conn.ladder.as_deref().unwrap();
        assert_eq!(l.packets.len(), HEAD + TAIL);
        assert_eq!(l.omitted as usize, pkts.len() - HEAD - TAIL);
        let times: Vec<i64> = l.packets.iter().map(|p| p.times[0]).collect();
        assert!(times.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(times[0], conn.hops[0].first_ns);
        assert_eq!(times[HEAD], pkts[pkts.len() - TAIL].ts_ns);
        assert_eq!(*times.last().unwrap(), conn.hops[0].last_ns);
        assert!(l
            .packets
            .iter()
            .all(|p| p.from == Edge::End && p.to == Edge::End));
    }
}
