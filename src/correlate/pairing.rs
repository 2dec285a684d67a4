//! Pairing: which packets seen at two points are one packet, and which flows they
//! belong to.
//!
//! [`flow_pairs`] is the cross-point join. For every pair of points (and every point
//! with itself, for hairpin traffic that crosses one interface twice), a merge join of
//! the fingerprint-sorted records pairs each packet with the nearest same-fingerprint
//! packet within the time window; matched packets vote for the pair of flows they
//! belong to. Linear in the number of packets, never all-pairs. Flow pairs with too
//! little evidence are dropped; the rest come out best evidence first.
//!
//! [`match_flows`] pairs the packets of two given flows (or hops) one by one: the
//! orientation of a connection's flows, the order of its hops and its translations all
//! rest on it.

use std::collections::HashMap;

use rayon::prelude::*;

use super::points::{PointData, Rec};

/// Minimum evidence for two flows to be one connection: one TCP packet, one IPv4
/// UDP/ICMP packet with its ID and payload, or two weaker matches.
pub(super) const MIN_EDGE_SCORE: f64 = 0.6;

/// Votes for one flow pair from the cross-point join.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) struct Vote {
    pub packets: u64,
    pub score: f64,
}

/// Flow pair key: (point a, flow a, point b, flow b) with (a, fa) < (b, fb).
pub(super) type EdgeKey = (usize, u32, usize, u32);

/// Flow pairs with at least [`MIN_EDGE_SCORE`] of evidence, best first: by score, then
/// matched packets, then key. `off` holds each point's clock offset.
pub(super) fn flow_pairs(points: &[PointData], off: &[i64], window: i64) -> Vec<(EdgeKey, Vote)> {
    let n = points.len();
    let pairs: Vec<(usize, usize)> = (0..n).flat_map(|a| (a..n).map(move |b| (a, b))).collect();
    let votes: Vec<Vec<(EdgeKey, Vote)>> = pairs
        .par_iter()
        .map(|&(a, b)| join_pair(points, a, b, off, window))
        .collect();
    let mut edges: Vec<(EdgeKey, Vote)> = votes
        .into_iter()
        .flatten()
        .filter(|(_, v)| v.score >= MIN_EDGE_SCORE)
        .collect();
    edges.sort_by(|x, y| {
        y.1.score
            .total_cmp(&x.1.score)
            .then(y.1.packets.cmp(&x.1.packets))
            .then(x.0.cmp(&y.0))
    });
    edges
}

/// Votes per flow pair (flow at the first point, flow at the second).
#[derive(Default)]
struct Votes(HashMap<(u32, u32), Vote>);

impl Votes {
    fn add(&mut self, ra: &Rec, rb: &Rec) {
        let v = self.0.entry((ra.flow, rb.flow)).or_default();
        v.packets += 1;
        // Combine as independent evidence: 1 - Π(1 - w).
        let w = ra.strength.min(rb.strength).weight();
        v.score = 1.0 - (1.0 - v.score) * (1.0 - w);
    }
}

/// Merge join of two points' fingerprint-sorted records (or one point with itself).
fn join_pair(
    points: &[PointData],
    a: usize,
    b: usize,
    off: &[i64],
    window: i64,
) -> Vec<(EdgeKey, Vote)> {
    let votes = if a == b {
        join_hairpin(&points[a], window)
    } else {
        join_across(&points[a], off[a], &points[b], off[b], window)
    };
    let mut out: Vec<(EdgeKey, Vote)> = votes
        .0
        .into_iter()
        .map(|((x, y), v)| ((a, x, b, y), v))
        .collect();
    out.sort_by_key(|(k, _)| *k);
    out
}

/// End of the run of records sharing the fingerprint of `p.by_fp[start]`.
fn run_end(p: &PointData, start: usize) -> usize {
    let fp = p.recs[p.by_fp[start] as usize].fp;
    start
        + p.by_fp[start..]
            .iter()
            .take_while(|&&k| p.recs[k as usize].fp == fp)
            .count()
}

/// Hairpin: the same packet crossing one interface twice, as two flows. Within a run
/// of one fingerprint, each packet pairs with the next unpaired packet of another flow
/// within the window.
fn join_hairpin(p: &PointData, window: i64) -> Votes {
    let mut votes = Votes::default();
    let mut i = 0;
    while i < p.by_fp.len() {
        let end = run_end(p, i);
        let run = &p.by_fp[i..end];
        let mut used = vec![false; run.len()];
        for x in 0..run.len() {
            if used[x] {
                continue;
            }
            let rx = &p.recs[run[x] as usize];
            for y in x + 1..run.len() {
                let ry = &p.recs[run[y] as usize];
                if ry.ts - rx.ts > window {
                    break;
                }
                if !used[y] && ry.flow != rx.flow {
                    used[x] = true;
                    used[y] = true;
                    let (lo, hi) = if rx.flow < ry.flow {
                        (rx, ry)
                    } else {
                        (ry, rx)
                    };
                    votes.add(lo, hi);
                    break;
                }
            }
        }
        i = end;
    }
    votes
}

/// Two points: walk both fingerprint orders together; within a fingerprint both runs
/// are in time order, and packets pair in order when their corrected times are within
/// the window.
fn join_across(pa: &PointData, off_a: i64, pb: &PointData, off_b: i64, window: i64) -> Votes {
    let mut votes = Votes::default();
    let (fa, fb) = (&pa.by_fp, &pb.by_fp);
    let (mut i, mut j) = (0, 0);
    while i < fa.len() && j < fb.len() {
        let ra = &pa.recs[fa[i] as usize];
        let rb = &pb.recs[fb[j] as usize];
        if ra.fp != rb.fp {
            if ra.fp < rb.fp {
                i += 1;
            } else {
                j += 1;
            }
            continue;
        }
        let (ea, eb) = (run_end(pa, i), run_end(pb, j));
        let (mut x, mut y) = (i, j);
        while x < ea && y < eb {
            let rx = &pa.recs[fa[x] as usize];
            let ry = &pb.recs[fb[y] as usize];
            let d = (ry.ts - off_b) - (rx.ts - off_a);
            if d.abs() <= window {
                votes.add(rx, ry);
                x += 1;
                y += 1;
            } else if d < 0 {
                y += 1;
            } else {
                x += 1;
            }
        }
        i = ea;
        j = eb;
    }
    votes
}

/// Pairs the packets of two flows: for each record of `up`, the nearest unused record
/// of `down` with the same fingerprint within the window. Returns index pairs.
pub(super) fn match_flows(
    up: &[Rec],
    up_off: i64,
    down: &[Rec],
    down_off: i64,
    window: i64,
    same_point: bool,
) -> Vec<(usize, usize)> {
    let mut idx: HashMap<u64, Vec<usize>> = HashMap::new();
    for (k, r) in down.iter().enumerate() {
        idx.entry(r.fp).or_default().push(k);
    }
    let mut used = vec![false; down.len()];
    let mut out = Vec::new();
    for (k, r) in up.iter().enumerate() {
        let Some(cands) = idx.get(&r.fp) else {
            continue;
        };
        let t = r.ts - up_off;
        let best = cands
            .iter()
            .copied()
            .filter(|&c| !used[c])
            .filter(|&c| !same_point || down[c].ts >= r.ts)
            .map(|c| ((down[c].ts - down_off - t).abs(), c))
            .filter(|&(d, _)| d <= window)
            .min();
        if let Some((_, c)) = best {
            used[c] = true;
            out.push((k, c));
        }
    }
    out
}
