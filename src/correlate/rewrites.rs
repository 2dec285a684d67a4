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
//! under the new shift (a receiving hop's segment that merged two of the sender's,
//! GRO, has another length too, but moves no later sequence number). Lookups go by
//! key, each receiver's copy taken once, so the pass is linear.

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
    // An acknowledgement number moves only by a shift the other direction went
    // through: the receiving hop's is the sending hop's less that shift.
    let keep = |d: &Direction, other: &Direction| -> Vec<(usize, usize, bool)> {
        (d.pairs.iter().copied())
            .filter(|&(_, _, ack, rewrite)| rewrite || other.shifts.contains(&-ack))
            .map(|(k, j, _, rewrite)| (k, j, rewrite))
            .collect()
    };
    let (f, r) = (keep(&fwd, &rev), keep(&rev, &fwd));
    let mut pairs = Vec::with_capacity(f.len() + r.len());
    let found = Rewrites {
        fwd: mark(up, down, &f, &fwd.shifts),
        rev: mark(down, up, &r, &rev.shifts),
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

/// One direction's candidate pairs, before the acknowledgement numbers are checked
/// against the other direction.
struct Direction {
    /// (index at the sender, index at the receiver, the receiver's acknowledgement
    /// number minus the sender's, whether the payload was rewritten).
    pairs: Vec<(usize, usize, i64, bool)>,
    /// The shifts the direction went through, in order, from 0.
    shifts: Vec<i64>,
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
            !early(t, j)
                && ts(r, j) - t <= window
                && (i64::from(h.len) - i64::from(g.len)).abs() <= MAX_REWRITE
                && i64::from(h.ack.wrapping_sub(g.ack) as i32).abs() <= MAX_ACK_SHIFT
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
        let rewrite = change != 0
            || (gx.head != gy.head && gx.head != 0 && gy.head != 0)
            || (gx.seq == gy.seq && ack == 0);
        d.pairs.push((k, j, ack, rewrite));
        if change != 0 {
            shift += change;
            d.shifts.push(shift);
        }
    }
    d
}
