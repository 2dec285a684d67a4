//! Rewrites: TCP payloads a NAT helper (an ALG) edited between two hops.
//!
//! Some protocols carry addresses in their payload: FTP's PORT and EPRT commands and
//! its 227 reply, SIP's headers and SDP, H.323, IRC's DCC offers. The kernel's helpers
//! for them (`nf_nat_ftp`, `nf_nat_sip`, ...; assigned by a raw-table `CT --helper`
//! rule or an nft `ct helper set`) write the translated address in place of the
//! original. Where the new text is longer or shorter, the payload's length changes,
//! and conntrack shifts every later sequence number of that direction by the
//! difference, and the acknowledgement numbers that answer them the other way, for
//! the rest of the connection (`nf_nat_seq_adjust`). The rewritten packet, and every
//! later one of that direction, then has another fingerprint at each hop; the
//! acknowledgements of the other direction do too.
//!
//! What still ties such copies: the flags, the timestamp option, the payload's first
//! bytes, acknowledgement numbers a few bytes apart, and sequence numbers that differ
//! by a running shift: none up to the first rewrite, then the sum of the length
//! changes so far. [`account`] pairs a link's packets left unmatched so, in each
//! direction in time order, each within the window. A pair whose lengths differ
//! moves the shift; it is taken only when one of the sender's next packets pairs
//! under the new shift, and the other direction's acknowledgements moved by as much
//! (a receiving hop's segment that merged two of the sender's, GRO, has another
//! length too, but the acknowledgements that answer it are the same at both hops).
//! A pair must show something a helper does (a shift, another length, other first
//! bytes): two transmissions alike in all of them are a packet and its
//! retransmission. Lookups go by key, each receiver's copy taken once, so the pass is
//! linear.

use std::collections::VecDeque;

use foldhash::{HashMap, HashMapExt};
use serde::Serialize;

use super::segments::Hop;

/// The largest change of a payload's length taken for a rewrite: an address written
/// as text, a few times over (SIP names it in several headers and in its SDP body).
const MAX_REWRITE: i64 = 512;
/// The largest difference of acknowledgement numbers between copies: the other
/// direction's shift, the sum of its rewrites.
const MAX_ACK_SHIFT: i64 = 1 << 16;
/// How many of the sender's next packets may confirm a new shift (one of them lost
/// between the hops leaves the others).
const CONFIRM: usize = 4;
/// Copies with one key looked at for one packet.
const LOOK: usize = 8;

/// One direction of a link's packets a helper rewrote, or shifted in sequence space.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Rewritten {
    /// Packets whose payload was rewritten: another length at the receiving hop, or
    /// other bytes of the same length.
    pub packets: u64,
    /// Packets matched by their shifted sequence or acknowledgement numbers (the
    /// rewritten ones included).
    pub shifted: u64,
    /// The receiving hop's sequence numbers minus the sending hop's after the last
    /// rewrite: the sum of the length changes.
    pub shift: i64,
    /// When the sending hop saw the first rewritten packet (clock-corrected).
    pub first_ns: Option<i64>,
}

impl Rewritten {
    pub const NONE: Rewritten = Rewritten {
        packets: 0,
        shifted: 0,
        shift: 0,
        first_ns: None,
    };

    pub fn is_none(&self) -> bool {
        *self == Rewritten::NONE
    }
}

/// Both directions of a link: initiator packets (sent by the upstream hop) and
/// responder packets (sent by the downstream hop).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Rewrites {
    pub fwd: Rewritten,
    pub rev: Rewritten,
}

impl Rewrites {
    pub fn is_none(&self) -> bool {
        self.fwd.is_none() && self.rev.is_none()
    }
}

/// Pairs, in both directions of a link, the TCP packets the hops did not match one
/// for one whose sequence numbers a helper shifted or whose payload it rewrote, and
/// marks them matched. Returns what was found and the pairs (index at the upstream
/// hop, index at the downstream hop), sorted. `same_point`: both hops are at one
/// point, so the receiving hop's copy comes later.
pub(super) fn account(
    up: &mut Hop,
    down: &mut Hop,
    window: i64,
    same_point: bool,
) -> (Rewrites, Vec<(usize, usize)>) {
    let fwd = one_way(up, down, true, window, same_point);
    let rev = one_way(down, up, false, window, same_point);
    if fwd.pairs.is_empty() && rev.pairs.is_empty() {
        return (Rewrites::default(), Vec::new());
    }
    let ((fp, fs), (rp, rs)) = (fwd.confirmed(&rev), rev.confirmed(&fwd));
    // An acknowledgement number moves only by a shift the other direction went
    // through: the receiving hop's is the sending hop's less that shift.
    let keep = |pairs: &[Pair], other: &[i64]| -> Vec<(usize, usize, bool)> {
        let mut other = other.to_vec();
        other.sort_unstable();
        (pairs.iter())
            .filter(|p| p.rewrite || other.binary_search(&-p.ack).is_ok())
            .map(|p| (p.sent, p.got, p.rewrite))
            .collect()
    };
    let (f, r) = (keep(&fp, &rs), keep(&rp, &fs));
    let mut pairs = Vec::with_capacity(f.len() + r.len());
    let found = Rewrites {
        fwd: mark(up, down, &f, &fs),
        rev: mark(down, up, &r, &rs),
    };
    pairs.extend(f.iter().map(|&(k, j, _)| (k, j)));
    pairs.extend(r.iter().map(|&(k, j, _)| (j, k)));
    pairs.sort_unstable();
    (found, pairs)
}

/// Marks one direction's pairs (index at the sender `s`, index at the receiver `r`,
/// whether the payload was rewritten) matched, and says what they are.
fn mark(s: &mut Hop, r: &mut Hop, pairs: &[(usize, usize, bool)], shifts: &[i64]) -> Rewritten {
    let mut out = Rewritten::default();
    for &(k, j, rewrite) in pairs {
        s.matched[k] = true;
        r.matched[j] = true;
        out.shifted += 1;
        if rewrite {
            out.packets += 1;
            let t = s.recs[k].ts - s.off;
            out.first_ns = Some(out.first_ns.map_or(t, |f| f.min(t)));
        }
    }
    if !pairs.is_empty() {
        out.shift = shifts.last().copied().unwrap_or(0);
    }
    out
}

/// What a receiving hop's copy is looked up by: its sequence number less the shift,
/// its flags and its timestamp option's digest. (Not its first bytes: a rewrite may
/// change them.)
type Key = (u32, u8, u16);

/// One direction's candidate pairs, before they are checked against the other
/// direction.
struct Direction {
    pairs: Vec<Pair>,
    /// The shifts the direction went through, in order, from 0.
    shifts: Vec<i64>,
}

/// A candidate pair of copies of one packet.
#[derive(Clone, Copy)]
struct Pair {
    /// Index at the sender and at the receiver.
    sent: usize,
    got: usize,
    /// The receiver's acknowledgement number minus the sender's.
    ack: i64,
    /// Whether the payload was rewritten.
    rewrite: bool,
    /// The direction's shift from this packet on.
    shift: i64,
}

impl Direction {
    /// The pairs up to the first change of shift the other direction does not
    /// confirm, with the shifts they went through: a rewrite that moved this
    /// direction's sequence numbers by `s` moves the other direction's
    /// acknowledgements of them by `-s`. (Segments merged or cut on the way change
    /// lengths too, but the acknowledgements that answer them are the same at both
    /// hops.)
    fn confirmed(&self, other: &Direction) -> (Vec<Pair>, Vec<i64>) {
        let mut moved: Vec<i64> = other.pairs.iter().map(|o| -o.ack).collect();
        moved.sort_unstable();
        let mut shifts = vec![0];
        let mut pairs = Vec::with_capacity(self.pairs.len());
        for p in &self.pairs {
            if p.shift != *shifts.last().unwrap_or(&0) {
                if moved.binary_search(&p.shift).is_err() {
                    break;
                }
                shifts.push(p.shift);
            }
            pairs.push(*p);
        }
        (pairs, shifts)
    }
}

/// Whether two copies' first bytes were both captured and differ.
fn heads_differ(a: &crate::correlate::points::Seg, b: &crate::correlate::points::Seg) -> bool {
    a.head != 0 && b.head != 0 && a.head != b.head
}

/// One direction (`fwd`: the initiator's) from the sending hop `s` to the receiving
/// hop `r`.
fn one_way(s: &Hop, r: &Hop, fwd: bool, window: i64, later_only: bool) -> Direction {
    let mut d = Direction {
        pairs: Vec::new(),
        shifts: vec![0],
    };
    let open = |h: &Hop, k: usize| {
        let x = &h.recs[k];
        !h.matched[k] && x.seg().is_some() && h.point.is_fwd(x) == fwd
    };
    let sent: Vec<usize> = (0..s.recs.len()).filter(|&k| open(s, k)).collect();
    if sent.is_empty() {
        return d;
    }
    // The receiver's copies by key, each key's in time order.
    let mut by_key: HashMap<Key, VecDeque<usize>> = HashMap::new();
    for k in (0..r.recs.len()).filter(|&k| open(r, k)) {
        let (x, g) = (&r.recs[k], r.recs[k].seg().unwrap_or_default());
        by_key
            .entry((g.seq, x.tcp_flags(), g.ts_key))
            .or_default()
            .push_back(k);
    }
    if by_key.is_empty() {
        return d;
    }
    let ts = |h: &Hop, k: usize| h.recs[k].ts - h.off;
    let early = |t: i64, j: usize| {
        let gap = ts(r, j) - t;
        gap < if later_only { 0 } else { -window }
    };
    // The receiver's copy of sent packet `k` under `shift`, as its key and its place
    // in the key's list.
    let find = |by_key: &HashMap<Key, VecDeque<usize>>, k: usize, shift: i64| {
        let (x, t) = (&s.recs[k], ts(s, k));
        let g = x.seg()?;
        let key = (g.seq.wrapping_add(shift as u32), x.tcp_flags(), g.ts_key);
        let list = by_key.get(&key)?;
        let at = list.iter().take(LOOK).position(|&j| {
            let h = r.recs[j].seg().unwrap_or_default();
            let ack = i64::from(h.ack.wrapping_sub(g.ack) as i32);
            !early(t, j)
                && ts(r, j) - t <= window
                && (i64::from(h.len) - i64::from(g.len)).abs() <= MAX_REWRITE
                && ack.abs() <= MAX_ACK_SHIFT
                // Something a helper does: a shift, another length, other first
                // bytes. Copies alike in all of them whose fingerprints differ are
                // two transmissions (a retransmission's IPv4 ID), not one rewritten.
                && (shift != 0 || ack != 0 || h.len != g.len || heads_differ(&g, &h))
        })?;
        Some((key, at, list[at]))
    };
    let mut shift = 0i64;
    for (i, &k) in sent.iter().enumerate() {
        // Copies too early for this packet are too early for every later one.
        let (t, g) = (ts(s, k), s.recs[k].seg().unwrap_or_default());
        let here = (
            g.seq.wrapping_add(shift as u32),
            s.recs[k].tcp_flags(),
            g.ts_key,
        );
        if let Some(list) = by_key.get_mut(&here) {
            while list.front().is_some_and(|&j| early(t, j)) {
                list.pop_front();
            }
        }
        let Some((key, at, j)) = find(&by_key, k, shift) else {
            continue;
        };
        let (gx, gy) = (
            s.recs[k].seg().unwrap_or_default(),
            r.recs[j].seg().unwrap_or_default(),
        );
        let change = i64::from(gy.len) - i64::from(gx.len);
        // A new shift holds only if one of the sender's next packets follows it.
        let later = &sent[i + 1..];
        if change != 0
            && !later.is_empty()
            && !(later.iter().take(CONFIRM)).any(|&n| find(&by_key, n, shift + change).is_some())
        {
            continue;
        }
        if let Some(list) = by_key.get_mut(&key) {
            list.remove(at);
        }
        let ack = i64::from(gy.ack.wrapping_sub(gx.ack) as i32);
        // Another length, other first bytes, or nothing else that differs: the
        // fingerprints differ, so the payloads do.
        let rewrite = change != 0 || heads_differ(&gx, &gy);
        d.pairs.push(Pair {
            sent: k,
            got: j,
            ack,
            rewrite,
            shift: shift + change,
        });
        if change != 0 {
            shift += change;
            d.shifts.push(shift);
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use crate::correlate::testkit::{data, point, Hdr, MS, US};
    use crate::correlate::{correlate, Config, Link};
    use crate::model::tcp_flags::{ACK, PSH, SYN};
    use crate::model::{NatKind, Packet};

    const CLIENT: &str = "172.17.0.2:40000";
    const NATED: &str = "203.0.113.1:40000";
    const SERVER: &str = "198.51.100.7:21";
    const LAT: i64 = 30 * US;
    const SERVER_SEQ: u32 = 5000;

    /// A client segment (`len` bytes from `seq`, TSval `ts`) inside as sent, and
    /// outside `LAT` later with its sequence number moved by `shift`, `grow` bytes
    /// longer, and other bytes when it grew.
    fn up(t: i64, seq: u32, len: u32, ts: u32, (shift, grow): (u32, u32)) -> [Packet; 2] {
        let h = Hdr {
            ack: SERVER_SEQ,
            tsval: Some(ts),
            flags: PSH | ACK,
        };
        let inside = data(t, CLIENT, SERVER, seq, len, h);
        let mut outside = data(t + LAT, NATED, SERVER, seq + shift, len + grow, h);
        // The rewritten text begins after the payload's first bytes, and the IPv4 ID
        // stays.
        outside.payload_head = inside.payload_head;
        outside.ip_id = inside.ip_id;
        if grow == 0 {
            outside.payload_digest = inside.payload_digest;
        }
        outside.ttl -= 1;
        [inside, outside]
    }

    /// The server's pure ACK of `ack` (outside), `shift` more than inside's.
    fn ack(t: i64, ack: u32, ts: u32, shift: u32) -> [Packet; 2] {
        let h = |ack| Hdr {
            ack,
            tsval: Some(ts),
            flags: ACK,
        };
        let outside = data(t, SERVER, NATED, SERVER_SEQ, 0, h(ack + shift));
        let mut inside = data(t + LAT, SERVER, CLIENT, SERVER_SEQ, 0, h(ack));
        inside.ip_id = outside.ip_id;
        [inside, outside]
    }

    fn handshake() -> Vec<[Packet; 2]> {
        let syn = Hdr {
            ack: 0,
            tsval: Some(1),
            flags: SYN,
        };
        let syn_ack = Hdr {
            ack: 1000,
            tsval: Some(2),
            flags: SYN | ACK,
        };
        let s = data(0, CLIENT, SERVER, 999, 0, syn);
        let mut so = data(LAT, NATED, SERVER, 999, 0, syn);
        so.ttl -= 1;
        let sa = data(100 * US, SERVER, NATED, SERVER_SEQ - 1, 0, syn_ack);
        let sai = data(100 * US + LAT, SERVER, CLIENT, SERVER_SEQ - 1, 0, syn_ack);
        vec![[s, so], [sai, sa]]
    }

    /// The one link of the SNAT connection the two points saw.
    fn link(pairs: Vec<[Packet; 2]>) -> Link {
        let (mut inside, mut outside): (Vec<Packet>, Vec<Packet>) =
            pairs.into_iter().map(|[i, o]| (i, o)).unzip();
        inside.sort_by_key(|p| p.ts_ns);
        outside.sort_by_key(|p| p.ts_ns);
        let points = vec![point("docker0", 0, &inside), point("eth0", 1, &outside)];
        let c = correlate(points, Vec::new(), Config::default());
        assert_eq!(c.connections.len(), 1, "{:#?}", c.connections);
        let l = c.connections[0].links[0].clone();
        assert_eq!(l.change.kind, NatKind::Snat);
        l
    }

    fn unmatched(l: &Link) -> u64 {
        let u = &l.unmatched;
        u.lost_fwd.packets + u.lost_rev.packets + u.appeared_fwd.packets + u.appeared_rev.packets
    }

    #[test]
    fn a_rewrite_that_grows_the_payload_shifts_the_later_sequence_numbers() {
        let mut p = handshake();
        p.push(up(MS, 1000, 20, 3, (0, 0)));
        p.push(ack(2 * MS, 1020, 7, 0));
        // PORT 172,17,0,2,... becomes PORT 203,0,113,1,...: one byte longer.
        p.push(up(3 * MS, 1020, 25, 4, (0, 1)));
        p.push(ack(4 * MS, 1045, 8, 1));
        p.push(up(5 * MS, 1045, 6, 5, (1, 0)));
        p.push(ack(6 * MS, 1051, 9, 1));
        // A second rewrite moves the shift on.
        p.push(up(7 * MS, 1051, 25, 6, (1, 1)));
        p.push(up(8 * MS, 1076, 6, 7, (2, 0)));
        p.push(ack(9 * MS, 1082, 10, 2));
        let l = link(p);
        assert_eq!(unmatched(&l), 0, "{:#?}", l.unmatched);
        assert_eq!(l.rewritten.fwd.packets, 2);
        assert_eq!(l.rewritten.fwd.shifted, 4);
        assert_eq!(l.rewritten.fwd.shift, 2);
        assert_eq!(l.rewritten.fwd.first_ns, Some(3 * MS));
        // The server's ACKs answer shifted numbers: matched, none rewritten.
        assert_eq!(l.rewritten.rev.packets, 0);
        assert_eq!(l.rewritten.rev.shifted, 3);
        assert_eq!((l.evidence.matched_fwd, l.evidence.matched_rev), (6, 5));
        assert!(l.evidence.fields.names().contains(&"tcp.seq+shift"));
        assert!(l.resegmented.is_none());
    }

    #[test]
    fn a_payload_rewritten_to_the_same_length_shifts_nothing() {
        let mut p = handshake();
        // PORT 10,0,0,22,... becomes PORT 10,0,0,33,...: other first bytes.
        let mut same = up(MS, 1000, 25, 3, (0, 0));
        same[1].payload_digest ^= 1;
        same[1].payload_head = same[1].payload_head.map(|h| h ^ 2);
        p.push(same);
        p.push(up(2 * MS, 1025, 6, 4, (0, 0)));
        let l = link(p);
        assert_eq!(unmatched(&l), 0);
        assert_eq!(l.rewritten.fwd.packets, 1);
        assert_eq!(l.rewritten.fwd.shift, 0);
        assert!(l.rewritten.rev.is_none());
    }

    #[test]
    fn segments_merged_on_the_way_are_not_a_rewrite() {
        // GRO: two 20-byte segments with one timestamp arrive as one of 40.
        let mut p = handshake();
        let [a, _] = up(MS, 1000, 20, 3, (0, 0));
        let [b, _] = up(MS + 10 * US, 1020, 20, 3, (0, 0));
        let [_, mut merged] = up(MS + 10 * US, 1000, 40, 3, (0, 0));
        merged.ip_id = Some(1000);
        p.push([a, merged]);
        let mut inside = b;
        inside.ts_ns = MS + 10 * US;
        let l = {
            let mut all = p;
            let tail = ack(3 * MS, 1040, 7, 0);
            all.push(tail);
            let (mut i, mut o): (Vec<Packet>, Vec<Packet>) =
                all.into_iter().map(|[i, o]| (i, o)).unzip();
            i.push(inside);
            i.sort_by_key(|p| p.ts_ns);
            o.sort_by_key(|p| p.ts_ns);
            let points = vec![point("docker0", 0, &i), point("eth0", 1, &o)];
            let c = correlate(points, Vec::new(), Config::default());
            c.connections[0].links[0].clone()
        };
        assert!(l.rewritten.is_none(), "{:?}", l.rewritten);
        assert_eq!(l.resegmented.fwd.sent, 2);
        assert_eq!(l.resegmented.fwd.received, 1);
        assert_eq!(unmatched(&l), 0);
    }

    #[test]
    fn acknowledgements_that_differ_with_no_rewrite_the_other_way_stay_unmatched() {
        let mut p = handshake();
        p.push(up(MS, 1000, 20, 3, (0, 0)));
        // The server's ACK seen inside acknowledges other bytes than the one outside:
        // two ACKs, each lost at one point, not one ACK shifted.
        p.push(ack(2 * MS, 1020, 7, 5));
        let l = link(p);
        assert!(l.rewritten.is_none(), "{:?}", l.rewritten);
        assert_eq!(
            l.unmatched.lost_rev.packets + l.unmatched.appeared_rev.packets,
            2
        );
    }
}
