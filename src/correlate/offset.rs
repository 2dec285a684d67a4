//! Clock offsets between capture points. Captures taken on different hosts disagree on
//! time; before packets can be paired within a time window their clocks must agree.
//!
//! For every pair of points, packets whose fingerprint occurs exactly once at each point
//! are the same packet beyond doubt. Forwarding latency adds to the time differences of
//! the packets that travel one way and subtracts from those that travel the other, so
//! the pair's offset is the midpoint of the median difference of initiator packets and
//! that of responder packets (the median of all of them when only one direction was
//! seen): however unequal the two directions' packet counts, the latency cancels out,
//! and points on two hosts keep the order their packets crossed them in. Pairs are joined into one offset per point by a
//! maximum spanning tree over the number of such packets (of pairs with as many, the
//! shortest round trip first), relative to the first point of each group. Points from one input file share a clock by construction, and estimates
//! below [`SAME_CLOCK_NS`] are forwarding latency rather than skew: both are taken as 0.
//! [`estimate`] does all of it for a run's points.

use rayon::prelude::*;
use serde::Serialize;

use super::points::{PointData, FP_SLICES, PREFETCH_AHEAD};

/// Offsets smaller than this are read as "same clock": a host forwards in microseconds,
/// and NTP-synchronised hosts agree to about this much anyway.
pub const SAME_CLOCK_NS: i64 = 1_000_000;

/// How one point's clock relates to the reference point's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Offset {
    /// Add to the reference point's time to get this point's: corrected time is
    /// `ts - offset_ns`.
    pub offset_ns: i64,
    /// The raw estimate before rounding to 0 (see [`SAME_CLOCK_NS`]).
    pub estimate_ns: i64,
    /// The point this offset is relative to.
    pub reference: usize,
    /// How many unambiguous packets the estimate rests on (0: nothing to go by).
    pub samples: usize,
    /// Why the offset is what it is.
    pub basis: OffsetBasis,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OffsetBasis {
    /// The reference point itself.
    Reference,
    /// Another interface of the same capture file.
    SameFile,
    /// Estimated from packets seen at both points.
    Estimated,
    /// No packet in common with any other point.
    Unrelated,
}

impl OffsetBasis {
    /// The name the JSON report gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            OffsetBasis::Reference => "reference",
            OffsetBasis::SameFile => "same-file",
            OffsetBasis::Estimated => "estimated",
            OffsetBasis::Unrelated => "unrelated",
        }
    }
}

/// One offset per point (see the module documentation), each point pair's packets
/// compared in parallel.
pub fn estimate(points: &[PointData]) -> Vec<Offset> {
    let n = points.len();
    let pairs: Vec<(usize, usize)> = (0..n)
        .flat_map(|a| (a + 1..n).map(move |b| (a, b)))
        .collect();
    let deltas: Vec<PairDelta> = pairs
        .par_iter()
        .map(|&(a, b)| {
            let [mut fwd, mut rev] = unique_deltas(&points[a], &points[b]);
            let samples = fwd.len() + rev.len();
            let (delta, round_trip) = match (fwd.median(), rev.median()) {
                (Some(f), Some(r)) => (
                    f / 2 + r / 2 + (f % 2 + r % 2) / 2,
                    f.saturating_sub(r).unsigned_abs(),
                ),
                (one, other) => (one.or(other).unwrap_or(0), u64::MAX),
            };
            PairDelta {
                a,
                b,
                delta,
                samples,
                round_trip,
            }
        })
        .collect();
    solve(points, &deltas)
}

/// What two points' common packets say of their clocks.
#[derive(Clone, Copy, Debug)]
pub struct PairDelta {
    pub a: usize,
    pub b: usize,
    /// The offset of `b`'s clock from `a`'s.
    pub delta: i64,
    /// How many packets it rests on.
    pub samples: usize,
    /// The forward median less the responder one (`u64::MAX` with one direction only):
    /// the latency there and back between the points. The midpoint is only as good as
    /// the two ways are alike, and the less path lies between two points the less
    /// unlike they can be.
    pub round_trip: u64,
}

/// Time differences of one direction of packets, in the order found: 4 bytes each
/// where they fit (within 2.1 s: points of one host, or of hosts whose clocks agree
/// that well), 8 where they do not. Two points share a packet for each of theirs, so
/// this is the largest list the clock offsets make.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Deltas {
    near: Vec<i32>,
    far: Vec<i64>,
}

impl Deltas {
    fn push(&mut self, d: i64) {
        match i32::try_from(d) {
            Ok(n) => self.near.push(n),
            Err(_) => self.far.push(d),
        }
    }

    pub fn len(&self) -> usize {
        self.near.len() + self.far.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The differences of `parts` one after the other, each given back once copied.
    fn concat(parts: Vec<Deltas>) -> Deltas {
        let mut out = Deltas {
            near: Vec::with_capacity(parts.iter().map(|p| p.near.len()).sum()),
            far: Vec::with_capacity(parts.iter().map(|p| p.far.len()).sum()),
        };
        for p in parts {
            out.near.extend_from_slice(&p.near);
            out.far.extend_from_slice(&p.far);
        }
        out
    }

    /// All of them, in order.
    #[cfg(test)]
    pub fn sorted(&mut self) -> Vec<i64> {
        self.near.sort_unstable();
        self.far.sort_unstable();
        let mut all: Vec<i64> = self.near.iter().map(|&n| i64::from(n)).collect();
        all.extend_from_slice(&self.far);
        all.sort_unstable();
        all
    }

    /// Their [`median`], which sorts them.
    pub fn median(&mut self) -> Option<i64> {
        let n = self.len();
        if n == 0 {
            return None;
        }
        self.near.sort_unstable();
        self.far.sort_unstable();
        // Every far difference lies below or above all the near ones: in order, the
        // far ones below 0, the near ones, the far ones above.
        let (near, far) = (&self.near, &self.far);
        let below = far.partition_point(|&d| d < 0);
        let nth = |k: usize| match k.checked_sub(below) {
            None => far[k],
            Some(i) if i < near.len() => i64::from(near[i]),
            Some(_) => far[k - near.len()],
        };
        Some(if n % 2 == 1 {
            nth(n / 2)
        } else {
            mean(nth(n / 2 - 1), nth(n / 2))
        })
    }
}

/// Time differences (`ts_b - ts_a`) of packets seen exactly once at each of two points:
/// the initiator packets' (as `a` oriented them), then the responder packets'. Each in
/// fingerprint order: the fingerprint space is cut into [`FP_SLICES`] ranges, merged on
/// whatever cores there are and put back in order, so the result is the same on any
/// number of them.
pub fn unique_deltas(a: &PointData, b: &PointData) -> [Deltas; 2] {
    let (sa, sb) = (a.fp_slices(), b.fp_slices());
    let parts: Vec<[Deltas; 2]> = (0..FP_SLICES)
        .into_par_iter()
        .map(|k| unique_deltas_in(a, sa[k]..sa[k + 1], b, sb[k]..sb[k + 1]))
        .collect();
    let (fwd, rev): (Vec<Deltas>, Vec<Deltas>) = parts.into_iter().map(|[f, r]| (f, r)).unzip();
    [Deltas::concat(fwd), Deltas::concat(rev)]
}

/// [`unique_deltas`] over positions `ra` of `a`'s fingerprint order and `rb` of `b`'s,
/// which hold the same fingerprints.
fn unique_deltas_in(
    a: &PointData,
    ra: std::ops::Range<usize>,
    b: &PointData,
    rb: std::ops::Range<usize>,
) -> [Deltas; 2] {
    let mut out = [Deltas::default(), Deltas::default()];
    let (mut i, mut j) = (ra.start, rb.start);
    let (fa, fb) = (&a.by_fp[..ra.end], &b.by_fp[..rb.end]);
    while i < fa.len() && j < fb.len() {
        a.prefetch_fp_order(i + PREFETCH_AHEAD);
        b.prefetch_fp_order(j + PREFETCH_AHEAD);
        // Whether a packet was the initiator's is read from its flow.
        a.prefetch_flow_of(i + PREFETCH_AHEAD / 2);
        let ra = &a.recs[fa[i] as usize];
        let rb = &b.recs[fb[j] as usize];
        if ra.fp() < rb.fp() {
            i += 1;
        } else if ra.fp() > rb.fp() {
            j += 1;
        } else {
            let (run_a, run_b) = (a.run_end(i) - i, b.run_end(j) - j);
            if run_a == 1 && run_b == 1 {
                out[usize::from(!a.is_fwd(ra))].push(rb.ts - ra.ts);
            }
            i += run_a;
            j += run_b;
        }
    }
    out
}

pub fn median(v: &mut [i64]) -> Option<i64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        mean(v[n / 2 - 1], v[n / 2])
    })
}

/// The mean of two values, rounded toward zero, without overflow.
fn mean(a: i64, b: i64) -> i64 {
    a / 2 + b / 2 + (a % 2 + b % 2) / 2
}

/// The `pct`th percentile (0 to 100) of `v`, which it sorts; `None` when empty. The
/// value at rank `(n − 1) · pct / 100` (from 0), interpolated linearly between the two
/// nearest ranks and rounded down: the median's definition, the mean of the two middle
/// values when `n` is even, carried to any rank.
pub fn percentile(v: &mut [i64], pct: u8) -> Option<i64> {
    let last = v.len().checked_sub(1)?;
    v.sort_unstable();
    let pos = last as u128 * u128::from(pct.min(100));
    let lo = (pos / 100) as usize;
    let frac = (pos % 100) as i128;
    let a = i128::from(v[lo]);
    let b = i128::from(*v.get(lo + 1).unwrap_or(&v[lo]));
    // `v` is sorted, so the step is never negative and the result lies in [a, b].
    Some((a + (b - a) * frac / 100) as i64)
}

/// Estimates one offset per point from each point pair's (a < b) estimate. Of pairs
/// resting on as many packets, the tree takes the one with the shortest round trip
/// first: the two ends of one link rather than a pod and a host further down the path,
/// where the time a tunnel takes one way and the other can differ by more than the link
/// itself takes.
pub fn solve(points: &[PointData], pairs: &[PairDelta]) -> Vec<Offset> {
    let n = points.len();
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(parent: &mut [usize], x: usize) -> usize {
        let mut r = x;
        while parent[r] != r {
            r = parent[r];
        }
        let mut x = x;
        while parent[x] != r {
            let next = parent[x];
            parent[x] = r;
            x = next;
        }
        r
    }
    // Tree edges: same-file pairs first (exact), then estimated pairs by sample count,
    // then by round trip.
    let mut edges: Vec<(u8, usize, u64, usize, usize, i64)> = Vec::new();
    for a in 0..n {
        for b in a + 1..n {
            if points[a].input == points[b].input {
                edges.push((0, usize::MAX, 0, a, b, 0));
            }
        }
    }
    for p in pairs {
        if p.samples > 0 && points[p.a].input != points[p.b].input {
            edges.push((1, p.samples, p.round_trip, p.a, p.b, p.delta));
        }
    }
    edges.sort_by(|x, y| {
        x.0.cmp(&y.0)
            .then(y.1.cmp(&x.1))
            .then(x.2.cmp(&y.2))
            .then(x.3.cmp(&y.3))
            .then(x.4.cmp(&y.4))
    });
    let mut adj: Vec<Vec<(usize, i64, usize, bool)>> = vec![Vec::new(); n];
    for (kind, samples, _, a, b, delta) in edges {
        let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
        if ra != rb {
            parent[ra.max(rb)] = ra.min(rb);
            let same_file = kind == 0;
            adj[a].push((b, delta, samples, same_file));
            adj[b].push((a, -delta, samples, same_file));
        }
    }
    let mut out: Vec<Option<Offset>> = vec![None; n];
    for root in 0..n {
        if out[root].is_some() {
            continue;
        }
        let related = !adj[root].is_empty();
        out[root] = Some(Offset {
            offset_ns: 0,
            estimate_ns: 0,
            reference: root,
            samples: 0,
            basis: if related {
                OffsetBasis::Reference
            } else {
                OffsetBasis::Unrelated
            },
        });
        let mut stack = vec![root];
        while let Some(x) = stack.pop() {
            let (base, base_est) = out[x]
                .as_ref()
                .map_or((0, 0), |o| (o.offset_ns, o.estimate_ns));
            let mut next = adj[x].clone();
            next.sort();
            for (y, delta, samples, same_file) in next {
                if out[y].is_some() {
                    continue;
                }
                let (offset_ns, basis) = if same_file {
                    (base, OffsetBasis::SameFile)
                } else if delta.abs() < SAME_CLOCK_NS {
                    (base, OffsetBasis::Estimated)
                } else {
                    (base + delta, OffsetBasis::Estimated)
                };
                out[y] = Some(Offset {
                    offset_ns,
                    estimate_ns: base_est + if same_file { 0 } else { delta },
                    reference: root,
                    samples: if same_file { 0 } else { samples },
                    basis,
                });
                stack.push(y);
            }
        }
    }
    out.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::correlate::points::fp_slice_start;
    use crate::correlate::testkit::{point, tcp_conv, view, MS, US};

    /// A connection seen inside (docker0) and outside (eth0), the outside clock
    /// `skew` ahead, forwarding taking 30 µs.
    fn pair(skew: i64) -> Vec<PointData> {
        let inside = tcp_conv(10 * MS, "172.17.0.2:40000", "198.51.100.7:443", 1000);
        let mut outside = view(&inside, "203.0.113.1:40000", "198.51.100.7:443", 30 * US, 1);
        for p in &mut outside {
            p.ts_ns += skew;
        }
        vec![point("docker0", 0, &inside), point("eth0", 1, &outside)]
    }

    #[test]
    fn estimate_finds_a_skewed_clock() {
        let offsets = estimate(&pair(-40 * MS));
        assert_eq!(offsets[0].basis, OffsetBasis::Reference);
        let o = &offsets[1];
        assert_eq!(
            (o.reference, o.samples, o.basis),
            (0, 6, OffsetBasis::Estimated)
        );
        // Four initiator packets say skew + 30 µs, two responder ones skew - 30 µs: the
        // latency cancels out however unequal the counts.
        assert_eq!(o.offset_ns, -40 * MS);
        assert_eq!(o.estimate_ns, o.offset_ns);
    }

    #[test]
    fn estimate_takes_a_small_difference_for_the_same_clock() {
        let offsets = estimate(&pair(200 * US));
        let o = &offsets[1];
        assert_eq!((o.offset_ns, o.estimate_ns), (0, 200 * US));
        assert_eq!(o.basis, OffsetBasis::Estimated);
    }

    /// A pod's point and its node's uplink on one clock, the tunnel between them taking
    /// 300 µs more one way than the other; the other node's uplink 250 ms ahead, 10 µs
    /// down the wire. As many packets everywhere: the wire's two ends join the hosts,
    /// and the tunnel's unequal ways do not move the offset.
    #[test]
    fn the_shortest_round_trip_joins_two_hosts() {
        let (client, server) = ("172.17.0.2:40000", "172.17.1.2:80");
        let pod = tcp_conv(10 * MS, client, server, 1000);
        let mut a_eth0 = view(&pod, client, server, 20 * US, 1);
        for p in a_eth0
            .iter_mut()
            .filter(|p| p.tuple.src == pod[0].tuple.src)
        {
            p.ts_ns += 300 * US;
        }
        let mut b_eth0 = view(&a_eth0, client, server, 10 * US, 0);
        for p in &mut b_eth0 {
            p.ts_ns += 250 * MS;
        }
        let points = [
            point("a-pod", 0, &pod),
            point("a-eth0", 1, &a_eth0),
            point("b-eth0", 2, &b_eth0),
        ];
        let o = estimate(&points);
        assert_eq!((o[1].offset_ns, o[1].estimate_ns), (0, 150 * US));
        assert_eq!(o[2].offset_ns, 250 * MS);
        assert_eq!(o[2].samples, 6);
    }

    #[test]
    fn points_of_one_file_share_a_clock_and_strangers_are_unrelated() {
        let mut points = pair(5 * MS);
        points[1].input = 0;
        let other = tcp_conv(0, "10.0.0.1:5000", "10.0.0.2:6000", 77);
        points.push(point("lo", 1, &other));
        let offsets = estimate(&points);
        assert_eq!(offsets[1].basis, OffsetBasis::SameFile);
        assert_eq!((offsets[1].offset_ns, offsets[1].samples), (0, 0));
        assert_eq!(offsets[2].basis, OffsetBasis::Unrelated);
        assert_eq!(offsets[2].reference, 2);
    }

    #[test]
    fn unique_deltas_skip_repeated_fingerprints() {
        let inside = tcp_conv(0, "172.17.0.2:40000", "198.51.100.7:443", 1000);
        let outside = view(&inside, "203.0.113.1:40000", "198.51.100.7:443", 30 * US, 1);
        // The SYN again, a second later: its fingerprint is no longer unique inside.
        let mut again = inside.clone();
        let mut syn = inside[0];
        syn.ts_ns += 1000 * MS;
        again.push(syn);
        let (a, b) = (point("a", 0, &again), point("b", 1, &outside));
        let [mut fwd, mut rev] = unique_deltas(&a, &b);
        assert_eq!(fwd.sorted(), [30 * US; 3]);
        assert_eq!(rev.sorted(), [-30 * US; 2]);
    }

    #[test]
    fn unique_deltas_are_the_same_merged_in_slices() {
        // Many connections: their fingerprints fall in every slice.
        let (mut inside, mut outside) = (Vec::new(), Vec::new());
        for k in 0..64u16 {
            let src = format!("172.17.0.2:{}", 40000 + k);
            let isn = 1000 + u32::from(k) * 100_000;
            let conv = tcp_conv(i64::from(k) * MS, &src, "198.51.100.7:443", isn);
            let nat = format!("203.0.113.1:{}", 40000 + k);
            outside.extend(view(
                &conv,
                &nat,
                "198.51.100.7:443",
                (30 + i64::from(k)) * US,
                1,
            ));
            inside.extend(conv);
        }
        inside.sort_by_key(|p| p.ts_ns);
        outside.sort_by_key(|p| p.ts_ns);
        let (a, b) = (point("a", 0, &inside), point("b", 1, &outside));
        let sliced = unique_deltas(&a, &b);
        let whole = unique_deltas_in(&a, 0..a.by_fp.len(), &b, 0..b.by_fp.len());
        assert_eq!(sliced, whole);
        assert!(sliced[0].len() > 64 && sliced[1].len() > 64, "{sliced:?}");
        let slices_used = (0..FP_SLICES)
            .filter(|&k| {
                let lo = fp_slice_start(k).unwrap();
                let hi = fp_slice_start(k + 1);
                a.recs
                    .iter()
                    .any(|r| r.fp() >= lo && hi.is_none_or(|h| r.fp() < h))
            })
            .count();
        assert_eq!(slices_used, FP_SLICES);
    }

    #[test]
    fn deltas_near_and_far_have_the_median_of_all_of_them() {
        // Differences within 2^31 ns and beyond it, either sign, odd and even counts,
        // near only, far only and both.
        let mut rng = crate::correlate::testkit::XorShift(0x5eed);
        for round in 0..300u64 {
            let n = rng.below(40) as usize;
            let far_share = round % 3; // none, some, all
            let v: Vec<i64> = (0..n)
                .map(|_| {
                    let x = rng.below(4_000_000_000) as i64 - 2_000_000_000;
                    match far_share {
                        0 => x / 2,
                        1 if rng.below(2) == 0 => x * 1_000,
                        1 => x,
                        _ => x.signum().max(1) * (3_000_000_000 + x.abs()),
                    }
                })
                .collect();
            let mut d = Deltas::default();
            v.iter().for_each(|&x| d.push(x));
            assert_eq!(d.len(), n);
            assert_eq!(d.median(), median(&mut v.clone()), "{v:?}");
            let mut all = v.clone();
            all.sort_unstable();
            assert_eq!(d.sorted(), all);
        }
    }

    #[test]
    fn median_even_and_odd() {
        assert_eq!(median(&mut [3, 1, 2]), Some(2));
        assert_eq!(median(&mut [4, 1, 2, 3]), Some(2));
        assert_eq!(median(&mut [i64::MAX, i64::MAX]), Some(i64::MAX));
        assert_eq!(median(&mut []), None);
    }

    #[test]
    fn percentile_interpolates_between_ranks() {
        assert_eq!(percentile(&mut [], 99), None);
        assert_eq!(percentile(&mut [7], 99), Some(7));
        // The median's own values.
        for v in [
            &[3, 1, 2][..],
            &[4, 1, 2, 3],
            &[10, 20],
            &[i64::MAX, i64::MAX],
        ] {
            assert_eq!(percentile(&mut v.to_vec(), 50), median(&mut v.to_vec()));
        }
        // Rank 0.99 between 10 and 20: 19.9, rounded down.
        assert_eq!(percentile(&mut [20, 10], 99), Some(19));
        // 1..=100: rank 98.01, between 99 and 100.
        let mut v: Vec<i64> = (1..=100).rev().collect();
        assert_eq!(percentile(&mut v, 99), Some(99));
        assert_eq!(percentile(&mut v, 100), Some(100));
        assert_eq!(percentile(&mut v, 0), Some(1));
        // The full range without overflow: 98 % of the way up from the bottom.
        let p = percentile(&mut [i64::MIN, i64::MAX], 99).unwrap();
        assert!(p > i64::MAX / 100 * 97 && p < i64::MAX / 100 * 99, "{p}");
    }
}
