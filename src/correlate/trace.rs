//! Packets one by one, for the connections a report details ([`Trace`] says which):
//! every packet of the connection as one row, with where it was at each hop (the path's
//! hops, then the return hops) and when, what it was (direction, TCP flags, size) and
//! the invariant fields it was matched on. Rows are the packets the translations step
//! matched one for one across its links, joined hop after hop; nothing is matched again
//! here. A packet that crossed a link with no twin of its own (its bytes in other
//! segments, a later ACK, a copy of one that crossed) is [`Sighting::Accounted`] on the
//! far side. The table report lists the rows; the HTML report draws them as ladders.
//!
//! A [`Cap`] keeps the first and the last packets of a connection only: only those
//! rows are made, so a connection of a million packets costs a few dozen.

use std::collections::BTreeSet;

use super::components::UnionFind;
use super::fingerprint::FieldSets;
use super::points::{PointData, Rec};
use super::translations::capturing;
use super::Connection;

/// The connections whose packets are kept one by one ([`Connection::packets`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trace {
    /// Every connection, each with the packets `cap` keeps (`None`: all of them).
    pub all: bool,
    pub cap: Option<Cap>,
    /// These connections (by id), with every packet.
    pub named: BTreeSet<String>,
}

/// Which packets of a connection a trace keeps: the first `first` and the last
/// `last`, in the order they were first seen (all of them when there are no more).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cap {
    pub first: usize,
    pub last: usize,
}

impl Trace {
    /// Whether connection `id` is traced, and then which packets it keeps
    /// (`Some(None)`: all).
    pub fn cap_of(&self, id: &str) -> Option<Option<Cap>> {
        if self.named.contains(id) {
            Some(None)
        } else {
            self.all.then_some(self.cap)
        }
    }
}

/// Where a packet was at one hop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sighting {
    /// Seen there, at this clock-corrected time.
    Seen(i64),
    /// Not seen there as such, but it crossed: its bytes in other segments, a later
    /// ACK standing for it, or a copy of it that crossed.
    Accounted,
    /// Not seen there, while its point was capturing.
    Unseen,
    /// Not seen there: its point was not capturing when the packet was first seen
    /// (within the matching window).
    Uncaptured,
}

/// One packet of a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// Sent by the initiator.
    pub fwd: bool,
    /// TCP flags, for TCP.
    pub tcp_flags: Option<u8>,
    /// Length of the IP packet.
    pub ip_len: u32,
    /// The field sets it was matched on (its fields: [`FieldSets::names`]).
    pub field_sets: FieldSets,
    /// Where it was at each hop: `hops[i]`, then `returns[j].hop`.
    pub at: Vec<Sighting>,
}

impl Packet {
    /// The first time it was seen, and at which hop.
    pub fn first(&self) -> Option<(i64, usize)> {
        self.at
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                Sighting::Seen(t) => Some((*t, i)),
                _ => None,
            })
            .min()
    }
}

/// A connection's packets, in the order they were first seen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Packets {
    /// The packets kept: all of them, or the first [`Cap::first`] then the last
    /// [`Cap::last`].
    pub rows: Vec<Packet>,
    /// How many of `rows` are the first packets: the `total - rows.len()` left out
    /// come after them.
    pub head: usize,
    /// How many packets the connection had in all.
    pub total: usize,
}

/// Whether each record of a hop crossed a link: a flag a record, on the stack for a
/// flow of up to 64 packets.
pub(super) type Crossed = smallvec::SmallVec<[bool; 64]>;

/// What one link between two hops matched, packet by packet (hops are numbered as
/// [`Packet::at`] is; records in `Hop::recs` order).
pub(super) struct Edge {
    pub up: usize,
    pub down: usize,
    /// Which records of each hop crossed, one for one or otherwise.
    pub crossed: [Crossed; 2],
    /// Records matched one for one, by sequence numbers a NAT helper shifted, and by
    /// the bytes they carried.
    pub pairs: Vec<(usize, usize)>,
    pub shifted: Vec<(usize, usize)>,
    pub segments: Vec<(usize, usize)>,
}

/// The packets of `c` from the matches of its links, those `cap` keeps. `window`
/// widens each point's capture span, as the matching does.
pub(super) fn build(
    points: &[PointData],
    c: &Connection,
    edges: &[Edge],
    off: &[i64],
    window: i64,
    cap: Option<Cap>,
) -> Packets {
    let hops: Vec<_> = c.all_hops().collect();
    let recs: Vec<std::borrow::Cow<[Rec]>> =
        hops.iter().map(|h| h.recs(&points[h.point])).collect();
    let mut start = Vec::with_capacity(recs.len() + 1);
    start.push(0);
    for r in &recs {
        start.push(start[start.len() - 1] + r.len());
    }
    let node = |hop: usize, i: usize| start[hop] + i;
    let n = start[recs.len()];
    let mut uf = UnionFind::new(n);
    let mut paired = vec![false; n];
    for e in edges {
        for &(a, b) in e.pairs.iter().chain(&e.shifted) {
            let (x, y) = (node(e.up, a), node(e.down, b));
            paired[x] = true;
            paired[y] = true;
            let (rx, ry) = (uf.find(x), uf.find(y));
            if rx != ry {
                uf.union(rx, ry);
            }
        }
    }
    let time = |h: usize, i: usize| recs[h][i].ts - off[hops[h].point];
    // One packet per set of records joined, and its first sighting: (time, hop, record).
    let mut packet_of_root = vec![usize::MAX; n];
    let mut packet_of = vec![0; n];
    let mut first: Vec<(i64, usize, usize)> = Vec::new();
    for (h, hop_recs) in recs.iter().enumerate() {
        for i in 0..hop_recs.len() {
            let root = uf.find(node(h, i));
            if packet_of_root[root] == usize::MAX {
                packet_of_root[root] = first.len();
                first.push((i64::MAX, h, i));
            }
            let k = packet_of_root[root];
            packet_of[node(h, i)] = k;
            let t = time(h, i);
            if t < first[k].0 {
                first[k] = (t, h, i);
            }
        }
    }
    let mut order: Vec<usize> = (0..first.len()).collect();
    order.sort_by_key(|&k| first[k]);
    let total = order.len();
    let (head, tail) = match cap {
        Some(cap) if cap.first + cap.last < total => (cap.first, cap.last),
        _ => (total, 0),
    };
    // Rows only for the packets kept, their facts from the first sighting.
    let kept: Vec<usize> = order[..head]
        .iter()
        .chain(&order[total - tail..])
        .copied()
        .collect();
    let mut row_of = vec![usize::MAX; total];
    let mut rows: Vec<Packet> = kept
        .iter()
        .enumerate()
        .map(|(row, &k)| {
            row_of[k] = row;
            let (_, h, i) = first[k];
            let r = &recs[h][i];
            Packet {
                fwd: points[hops[h].point].is_fwd(r),
                tcp_flags: r.seg().is_some().then_some(r.tcp_flags()),
                ip_len: r.ip_len(),
                field_sets: FieldSets::default(),
                at: vec![Sighting::Unseen; recs.len()],
            }
        })
        .collect();
    let row = |x: usize| Some(row_of[packet_of[x]]).filter(|&r| r != usize::MAX);
    for (h, hop_recs) in recs.iter().enumerate() {
        for i in 0..hop_recs.len() {
            let Some(k) = row(node(h, i)) else { continue };
            let t = time(h, i);
            if !matches!(rows[k].at[h], Sighting::Seen(s) if s <= t) {
                rows[k].at[h] = Sighting::Seen(t);
            }
        }
    }
    for e in edges {
        for &(a, _) in &e.pairs {
            if let Some(k) = row(node(e.up, a)) {
                rows[k].field_sets.add(recs[e.up][a].fields());
            }
        }
        for &(a, _) in &e.shifted {
            if let Some(k) = row(node(e.up, a)) {
                rows[k].field_sets.add(recs[e.up][a].shifted_fields());
            }
        }
        for &(a, b) in &e.segments {
            let set = recs[e.up][a].segment_fields();
            for k in [row(node(e.up, a)), row(node(e.down, b))]
                .into_iter()
                .flatten()
            {
                rows[k].field_sets.add(set);
            }
        }
        // Crossed with no twin of its own anywhere: accounted for on the far side.
        for (side, (here, there)) in [(e.up, e.down), (e.down, e.up)].into_iter().enumerate() {
            for (i, _) in e.crossed[side].iter().enumerate().filter(|(_, &c)| c) {
                let x = node(here, i);
                let Some(k) = row(x) else { continue };
                let at = &mut rows[k].at[there];
                if !paired[x] && *at == Sighting::Unseen {
                    *at = Sighting::Accounted;
                }
            }
        }
    }
    // Not seen where its point was not capturing then.
    let spans: Vec<Option<(i64, i64)>> = hops
        .iter()
        .map(|h| capturing(&points[h.point], off[h.point], window))
        .collect();
    for (r, &k) in rows.iter_mut().zip(&kept) {
        let t = first[k].0;
        for (at, span) in r.at.iter_mut().zip(&spans) {
            let captured = span.is_some_and(|(a, b)| a <= t && t <= b);
            if *at == Sighting::Unseen && !captured {
                *at = Sighting::Uncaptured;
            }
        }
    }
    Packets { rows, head, total }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::correlate::testkit::{lost_request, point, tcp, tcp_conv, view, MS, US};
    use crate::correlate::{correlate, Config};
    use crate::model::tcp_flags::{ACK, PSH, RST, SYN};

    /// One connection through SNAT, its request lost and a reset made by the host,
    /// correlated with `trace`.
    fn packets(trace: Trace) -> Vec<Option<Box<Packets>>> {
        let lat = 30 * US;
        let (inside, outside) = lost_request(lat);
        let other = tcp_conv(10 * MS, "172.17.0.3:40000", "198.51.100.7:443", 9000);
        let other_out = view(&other, "203.0.113.1:40001", "198.51.100.7:443", lat, 1);
        let points = vec![
            point("docker0", 0, &[inside, other].concat()),
            point("eth0", 1, &[outside, other_out].concat()),
        ];
        let config = Config {
            trace,
            ..Config::default()
        };
        let c = correlate(points, Vec::new(), config);
        c.connections.into_iter().map(|c| c.packets).collect()
    }

    #[test]
    fn every_packet_with_where_and_when_it_was_seen() {
        let named = Trace {
            named: ["c1".to_string()].into(),
            ..Trace::default()
        };
        let got = packets(named);
        assert_eq!(got.len(), 2);
        assert!(got[1].is_none(), "only the connection named is traced");
        let p = got[0].as_deref().expect("c1 traced");
        assert_eq!(p.total, 7);
        let lat = 30 * US;
        let seen = |t: i64| Sighting::Seen(t);
        let row = |fwd: bool, flags: u8, at: [Sighting; 2]| (fwd, Some(flags), at.to_vec());
        let rows: Vec<_> = p
            .rows
            .iter()
            .map(|r| (r.fwd, r.tcp_flags, r.at.clone()))
            .collect();
        assert_eq!(
            rows,
            [
                row(true, SYN, [seen(0), seen(lat)]),
                // Replies reach eth0 first.
                row(false, SYN | ACK, [seen(MS), seen(MS - lat)]),
                row(true, ACK, [seen(2 * MS), seen(2 * MS + lat)]),
                row(true, PSH | ACK, [seen(3 * MS), Sighting::Unseen]),
                row(false, ACK, [seen(4 * MS), seen(4 * MS - lat)]),
                row(
                    true,
                    crate::model::tcp_flags::FIN | ACK,
                    [seen(5 * MS), seen(5 * MS + lat)]
                ),
                row(false, RST, [seen(6 * MS), Sighting::Unseen]),
            ]
        );
        assert_eq!(p.rows[1].first(), Some((MS - lat, 1)));
        assert_eq!(
            p.rows[0].field_sets.names().as_slice(),
            ["ip.id", "tcp.seq", "tcp.ack", "tcp.flags", "payload"]
        );
        assert!(
            p.rows[3].field_sets.is_empty(),
            "the lost request matched nothing"
        );
    }

    #[test]
    fn connections_named_are_traced_as_when_every_one_is() {
        // Named, the connections are linked once all are numbered; traced all, as
        // they are made: the packets are the same.
        let named = Trace {
            named: ["c1".to_string(), "c2".to_string()].into(),
            ..Trace::default()
        };
        let all = Trace {
            all: true,
            ..Trace::default()
        };
        let got = packets(named);
        assert!(got.iter().all(Option::is_some));
        assert_eq!(got, packets(all));
    }

    #[test]
    fn every_connection_up_to_a_cap_or_none() {
        let all = Trace {
            all: true,
            cap: Some(Cap { first: 2, last: 0 }),
            ..Trace::default()
        };
        for p in packets(all) {
            let p = p.expect("every connection traced");
            assert_eq!((p.rows.len(), p.head), (2, 2));
            assert!(p.total > 2);
        }
        assert!(packets(Trace::default()).iter().all(Option::is_none));
    }

    #[test]
    fn the_first_and_last_packets_and_where_a_point_was_not_capturing() {
        let (client, server) = ("172.17.0.2:40000", "198.51.100.7:443");
        let mut inside = tcp_conv(0, client, server, 1000);
        inside.truncate(3);
        for i in 0..30u32 {
            let mut p = tcp(
                5_000 * MS + i64::from(i) * MS,
                client,
                server,
                2000 + i,
                PSH | ACK,
                64,
            );
            p.payload_len = 1;
            p.payload_digest = u64::from(i);
            inside.push(p);
        }
        // eth0 started capturing seconds after the handshake.
        let lat = 30 * US;
        let outside = view(&inside[3..], "203.0.113.1:40000", server, lat, 1);
        let points = vec![point("docker0", 0, &inside), point("eth0", 1, &outside)];
        let trace = Trace {
            all: true,
            cap: Some(Cap { first: 4, last: 2 }),
            ..Trace::default()
        };
        let config = Config {
            trace,
            ..Config::default()
        };
        let c = correlate(points, Vec::new(), config);
        assert_eq!(c.connections.len(), 1);
        let p = c.connections[0].packets.as_deref().expect("traced");
        assert_eq!((p.rows.len(), p.head, p.total), (6, 4, inside.len()));
        let firsts: Vec<i64> = p.rows.iter().map(|r| r.first().unwrap().0).collect();
        let want: Vec<i64> = [&inside[..4], &inside[inside.len() - 2..]]
            .concat()
            .iter()
            .map(|x| x.ts_ns)
            .collect();
        assert_eq!(firsts, want);
        let at_eth0: Vec<Sighting> = p.rows.iter().map(|r| r.at[1]).collect();
        // The handshake came before; its last pure ACK stands for itself in the later
        // ACKs eth0 saw.
        assert_eq!(
            at_eth0[..3],
            [
                Sighting::Uncaptured,
                Sighting::Uncaptured,
                Sighting::Accounted
            ]
        );
        assert_eq!(at_eth0[3], Sighting::Seen(5_000 * MS + lat));
        assert_eq!(at_eth0[5], Sighting::Seen(5_029 * MS + lat));
        // Without a cap, every packet.
        let lost = packets(Trace {
            all: true,
            ..Trace::default()
        });
        let p = lost[0].as_deref().unwrap();
        assert_eq!((p.rows.len(), p.head, p.total), (7, 7, 7));
    }
}
