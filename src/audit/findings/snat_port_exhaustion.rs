//! `snat-port-exhaustion` (FM-06): new connections to one destination lost at the NAT
//! host while every source tuple NAT could give them for that destination was held.
//!
//! Source NAT gives a connection a source address and port such that its reply tuple
//! (destination, NAT address, NAT port) is in no other entry. The space is per
//! protocol, NAT address, destination address and destination port: the rule's port
//! range (`--to-ports`, `--to-source ADDR:LO-HI`, nft `snat to ADDR:LO-HI`,
//! `masquerade to :LO-HI`), or the kernel's default for a rule without one (1024-65535
//! for a source port from 1024 up, 600-1023 and 1-511 below; `ip_local_port_range`
//! plays no part). With every tuple taken, the search ends on one in use, conntrack
//! refuses to insert the entry and the packet is dropped (`insert_failed`, `drop`), and
//! so is every retransmission while the tuples stay taken.
//!
//! A new connection whose path stops short before the NAT host (a SYN and its
//! retransmissions or datagrams, no reply, while the next point was capturing: what
//! `lost` calls blocked) was lost to exhaustion when, over the span of its packets,
//! live connections held every usable tuple for its destination: connections captured
//! at the next point to that destination from a NAT address and port of the range
//! (TCP until it closed, UDP until 30 s after its last packet, the shortest UDP
//! timeout), and entries the conntrack event logs saw created before and not ended
//! until after. With the rules, the range is that of the source NAT the connection's
//! first packet meets (and no rule drops it there: then `lost` names the rule); without
//! them the kernel's default is assumed, which a handful of connections never fills.
//! One finding per destination and range, naming the range, the holders and the lost
//! connections, which are explained for `lost`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use foldhash::{HashMap, HashSet};

use super::lost::{stopped_at, syn_only};
use super::Detected;
use crate::audit::{
    Code, Ctx, Detail, Evidence, Explained, Finding, RangeFrom, Role, RuleRole, Severity,
};
use crate::correlate::Hop;
use crate::model::{Proto, Tuple};
use crate::rules::eval::{Fate, RuleRef};
use crate::rules::Target;

/// How long a UDP entry outlives its last packet at the least (`nf_conntrack_udp_timeout`).
const UDP_TIMEOUT_NS: i64 = 30_000_000_000;

/// A NAT range this large or more is not enumerated address by address.
const MAX_ADDRS: u128 = 256;

/// The source tuples NAT can give a connection to one destination.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Alloc {
    /// Protocol, destination address and port after any DNAT.
    dst: Destination,
    nat: Vec<IpAddr>,
    lo: u16,
    hi: u16,
    from: RangeFrom,
    rule: Option<RuleRef>,
}

impl Alloc {
    fn usable(&self) -> u64 {
        self.nat.len() as u64 * (u64::from(self.hi - self.lo) + 1)
    }

    fn gives(&self, t: &Tuple) -> bool {
        (t.proto, t.dst, t.dport) == self.dst
            && self.nat.contains(&t.src)
            && (self.lo..=self.hi).contains(&t.sport)
    }
}

/// The kernel's range for a source NAT without one, by the original source port
/// (`nf_nat_l4proto_unique_tuple`).
fn kernel_default(sport: u16) -> (u16, u16) {
    match sport {
        0..=511 => (1, 511),
        512..=1023 => (600, 1023),
        _ => (1024, 65535),
    }
}

/// Every address from `a` to `b`, when they are of one family and few.
fn addrs_between(a: IpAddr, b: IpAddr) -> Option<Vec<IpAddr>> {
    let (lo, hi, v4) = match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            (u128::from(u32::from(a)), u128::from(u32::from(b)), true)
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), false),
        _ => return None,
    };
    if hi < lo || hi - lo >= MAX_ADDRS {
        return None;
    }
    Some(
        (lo..=hi)
            .map(|n| {
                if v4 {
                    IpAddr::from(std::net::Ipv4Addr::from(n as u32))
                } else {
                    IpAddr::from(std::net::Ipv6Addr::from(n))
                }
            })
            .collect(),
    )
}

/// The source NAT the rules give connection `ci`'s first packet, when they were walked
/// for it: `Some(None)` when they drop it there or do not NAT it.
fn from_rules(x: &Ctx, ci: usize, t: &Tuple, b: usize) -> Option<Option<Alloc>> {
    let rules = x.rules?;
    let a = x.attribution(ci)?;
    if a.chosen.is_some() {
        // A way through the rules that drops it agrees with the wire.
        return Some(None);
    }
    let Some(n) = a
        .walk
        .outcomes
        .iter()
        .filter(|o| matches!(o.fate, Fate::Forwarded))
        .find_map(|o| o.snat.as_ref())
    else {
        return Some(None);
    };
    let (addrs, ports) = match crate::audit::rules::rule_target(rules, &n.rule) {
        Some(Target::Snat { to, .. }) => (to.addrs, to.ports),
        Some(Target::Masquerade { ports, .. }) => (None, *ports),
        _ => return Some(None),
    };
    let nat = match addrs {
        Some((lo, hi)) => addrs_between(lo, hi),
        None if n.to_iface.is_none() => Some(vec![n.after.src]),
        None => seen_nat(x, b),
    };
    let (lo, hi, from) = match ports {
        Some((lo, hi)) => (lo.min(hi), lo.max(hi), RangeFrom::Rule),
        None => {
            let (lo, hi) = kernel_default(t.sport);
            (lo, hi, RangeFrom::KernelDefault)
        }
    };
    Some(nat.map(|nat| Alloc {
        dst: (t.proto, n.after.dst, n.after.dport),
        nat,
        lo,
        hi,
        from,
        rule: Some(n.rule.clone()),
    }))
}

/// The source addresses NAT gave packets leaving at point `b`.
fn seen_nat(x: &Ctx, b: usize) -> Option<Vec<IpAddr>> {
    let v: Vec<IpAddr> = x.topo.nat_addrs.get(&b)?.iter().copied().collect();
    (!v.is_empty()).then_some(v)
}

/// The source tuples connection `ci` (last seen as `t`) could get leaving at `b`.
fn alloc(x: &Ctx, ci: usize, t: &Tuple, b: usize) -> Option<Alloc> {
    if let Some(by_rules) = from_rules(x, ci, t, b) {
        return by_rules;
    }
    let (lo, hi) = kernel_default(t.sport);
    Some(Alloc {
        dst: (t.proto, t.dst, t.dport),
        nat: seen_nat(x, b)?,
        lo,
        hi,
        from: RangeFrom::Assumed,
        rule: None,
    })
}

/// Until when a connection seen as hop `h` held its tuple, at the least.
fn held_until(h: &Hop) -> i64 {
    use crate::flows::TcpState::*;
    match h.flow.tuple.proto {
        Proto::Tcp => match h.flow.tcp.state() {
            Closed | ResetByInitiator | ResetByResponder | ResetByNatHost => h.last_ns,
            _ => i64::MAX,
        },
        Proto::Udp => h.last_ns.saturating_add(UDP_TIMEOUT_NS),
        _ => h.last_ns,
    }
}

/// Who held a tuple of `al` over `[t0, t1]`, by tuple: (connection index or entry
/// place, NAT address, NAT port). A captured connection wins over an entry.
type Holders = BTreeMap<(IpAddr, u16), (Result<usize, String>, IpAddr, u16)>;

/// A possible holder of a tuple: a connection captured with it, or a conntrack entry
/// of the event logs (by index into [`Ctx::lifetimes`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Holder {
    Conn(usize),
    Entry(usize),
}

/// Who could have held a tuple of one range leaving at one point: the connections
/// seen there with a tuple the range gives (in connection order), then the entries
/// the event logs saw with one (in their order), sorted by tuple, that order kept
/// among holders of one tuple. Built once for every connection lost to the range's
/// destination at that point, which is then asked of the holders over its own span
/// without a pass over every connection.
struct Pool {
    held: Vec<Held>,
    /// Distinct tuples: at most this many can ever be held at once.
    tuples: usize,
}

/// A holder of a tuple: (tuple, holder, held from, held until).
type Held = ((IpAddr, u16), Holder, i64, i64);

/// The hops and entries a pool is drawn from, by destination: (point, protocol,
/// destination address and port) → (connection, hop), in connection order; (protocol,
/// destination address and port) → entry of [`Ctx::lifetimes`], in their order.
#[derive(Default)]
struct ByDestination<'a> {
    hops: HashMap<(usize, Destination), Vec<(usize, &'a Hop)>>,
    entries: HashMap<Destination, Vec<usize>>,
}

/// Protocol, destination address and port.
type Destination = (Proto, IpAddr, u16);

impl<'a> ByDestination<'a> {
    fn new(x: &Ctx<'a>) -> ByDestination<'a> {
        let mut out = ByDestination::default();
        for (k, conn) in x.c.connections.iter().enumerate() {
            for h in &conn.hops {
                let t = h.flow.tuple;
                let key = (h.point, (t.proto, t.dst, t.dport));
                out.hops.entry(key).or_default().push((k, h));
            }
        }
        for (i, lt) in x.lifetimes.iter().enumerate() {
            let t = lt.post;
            out.entries
                .entry((t.proto, t.dst, t.dport))
                .or_default()
                .push(i);
        }
        out
    }
}

impl Pool {
    fn new(x: &Ctx, seen: &ByDestination, al: &Alloc, b: usize) -> Pool {
        let hops = seen.hops.get(&(b, al.dst)).into_iter().flatten();
        let entries = seen.entries.get(&al.dst).into_iter().flatten();
        let mut held: Vec<_> = hops
            .filter(|(_, h)| al.gives(&h.flow.tuple))
            .map(|&(k, h)| {
                let t = h.flow.tuple;
                ((t.src, t.sport), Holder::Conn(k), h.first_ns, held_until(h))
            })
            .chain(
                entries
                    .map(|&i| (i, &x.lifetimes[i]))
                    .filter(|(_, lt)| al.gives(&lt.post))
                    .map(|(i, lt)| {
                        let t = lt.post;
                        (
                            (t.src, t.sport),
                            Holder::Entry(i),
                            lt.created_ns,
                            lt.ended_ns,
                        )
                    }),
            )
            .collect();
        held.sort_by_key(|h| h.0);
        let tuples = held.chunk_by(|a, b| a.0 == b.0).count();
        Pool { held, tuples }
    }

    /// The tuples held over `[t0, t1]` by anything but connection `ci`, each with the
    /// first of its holders that held it then.
    fn holders(
        &self,
        ci: usize,
        span: (i64, i64),
    ) -> impl Iterator<Item = ((IpAddr, u16), Holder)> + '_ {
        self.runs()
            .filter_map(move |run| first_holder(run, ci, span))
    }

    /// The holders of each tuple, a run each, in tuple order.
    fn runs(&self) -> impl Iterator<Item = &[Held]> {
        self.held.chunk_by(|a, b| a.0 == b.0)
    }

    /// How many tuples [`Pool::holders`] gives each query (connection, span), in the
    /// queries' order. One sweep over the holders in the order they began to hold,
    /// each tuple keeping the latest end among those begun: thousands of connections
    /// lost to a range that tens of thousands held cost (holders + lost) · log
    /// holders, not their product.
    fn held_counts(&self, queries: &[(usize, (i64, i64))]) -> Vec<usize> {
        let mut tuple = Vec::with_capacity(self.held.len());
        for (n, run) in self.runs().enumerate() {
            tuple.extend(std::iter::repeat_n(n, run.len()));
        }
        // A connection that holds a tuple of the pool itself is left out of its own
        // count: asked directly (a connection lost before the pool's point never is).
        let own: HashSet<usize> = (self.held.iter())
            .filter_map(|h| match h.1 {
                Holder::Conn(k) => Some(k),
                Holder::Entry(_) => None,
            })
            .collect();
        let mut ends: Vec<i64> = self.held.iter().map(|h| h.3).collect();
        ends.sort_unstable();
        ends.dedup();
        let rank = |t: i64| ends.partition_point(|&e| e < t);
        let mut by_start: Vec<usize> = (0..self.held.len()).collect();
        by_start.sort_by_key(|&h| self.held[h].2);
        let mut order: Vec<usize> = (0..queries.len()).collect();
        order.sort_by_key(|&q| queries[q].1 .0);
        // Tuples by the rank of the latest end among their holders begun so far.
        let mut latest: Vec<Option<usize>> = vec![None; self.tuples];
        let mut by_end = Counts::new(ends.len());
        let (mut begun, mut out) = (0, vec![0; queries.len()]);
        for q in order {
            let (ci, (t0, t1)) = queries[q];
            if own.contains(&ci) {
                out[q] = self.holders(ci, (t0, t1)).count();
                continue;
            }
            while let Some(&h) = by_start.get(begun).filter(|&&h| self.held[h].2 <= t0) {
                begun += 1;
                let (r, t) = (rank(self.held[h].3), tuple[h]);
                if latest[t].is_none_or(|old| old < r) {
                    if let Some(old) = latest[t] {
                        by_end.add(old, -1);
                    }
                    by_end.add(r, 1);
                    latest[t] = Some(r);
                }
            }
            out[q] = by_end.from(rank(t1));
        }
        out
    }
}

/// The first holder of one tuple's `run` that held it over `[t0, t1]`, other than
/// connection `ci`.
fn first_holder(run: &[Held], ci: usize, (t0, t1): (i64, i64)) -> Option<((IpAddr, u16), Holder)> {
    run.iter()
        .find(|&&(_, h, from, until)| h != Holder::Conn(ci) && from <= t0 && until >= t1)
        .map(|&(tuple, h, _, _)| (tuple, h))
}

/// Counts by rank, with the sum from a rank up in logarithmic time (a Fenwick tree).
struct Counts(Vec<i64>);

impl Counts {
    fn new(n: usize) -> Counts {
        Counts(vec![0; n + 1])
    }

    fn add(&mut self, rank: usize, d: i64) {
        let mut i = rank + 1;
        while i < self.0.len() {
            self.0[i] += d;
            i += i & i.wrapping_neg();
        }
    }

    /// The sum of the counts below `rank` (at most the number of ranks).
    fn below(&self, rank: usize) -> i64 {
        let (mut i, mut sum) = (rank, 0);
        while i > 0 {
            sum += self.0[i];
            i -= i & i.wrapping_neg();
        }
        sum
    }

    /// The sum of the counts from `rank` up.
    fn from(&self, rank: usize) -> usize {
        (self.below(self.0.len() - 1) - self.below(rank)) as usize
    }
}

/// A connection that stops short before the NAT host: its index and last hop, and the
/// point it never reached.
struct Lost<'a> {
    conn: usize,
    hop: &'a Hop,
    next: usize,
}

impl Lost<'_> {
    fn span(&self) -> (i64, i64) {
        (self.hop.first_ns, self.hop.last_ns)
    }
}

/// New connections whose path stops short, with the tuples they could have had.
fn candidates<'a>(x: &'a Ctx, explained: &Explained) -> BTreeMap<Alloc, Vec<Lost<'a>>> {
    let mut out: BTreeMap<Alloc, Vec<Lost<'a>>> = BTreeMap::new();
    for ci in 0..x.c.connections.len() {
        if explained.stopped(ci) {
            continue;
        }
        let Some((last, b, _, _)) = stopped_at(x, ci) else {
            continue;
        };
        let f = &last.flow;
        let new = match f.tuple.proto {
            Proto::Tcp => syn_only(f),
            p => p.has_ports(),
        };
        if !new {
            continue;
        }
        let Some(al) = alloc(x, ci, &f.tuple, b) else {
            continue;
        };
        out.entry(al).or_default().push(Lost {
            conn: ci,
            hop: last,
            next: b,
        });
    }
    out
}

/// The finding for one destination's range and the connections lost to it.
fn finding(x: &Ctx, al: &Alloc, pool: &Pool, lost: &[Lost]) -> Finding {
    // Each tuple's holder is the first that held it over the span of the first lost
    // connection it was held over; a tuple found is not looked at again (every one
    // is, at the first, when the range was full for it).
    let mut by = Holders::new();
    let mut open: Vec<&[Held]> = pool.runs().collect();
    for l in lost {
        open.retain(|run| {
            let Some(((a, port), h)) = first_holder(run, l.conn, l.span()) else {
                return true;
            };
            let r = match h {
                Holder::Conn(k) => Ok(k),
                Holder::Entry(i) => Err(x.lifetimes[i].place()),
            };
            by.insert((a, port), (r, a, port));
            false
        });
        if open.is_empty() {
            break;
        }
    }
    let name = |r: &Result<usize, String>| match r {
        Ok(k) => x.id(*k),
        Err(place) => place.clone(),
    };
    let held_by: Vec<(String, IpAddr, u16)> =
        by.values().map(|(r, a, p)| (name(r), *a, *p)).collect();
    let conns: Vec<usize> = by
        .values()
        .filter_map(|(r, _, _)| r.as_ref().ok().copied())
        .collect();
    let (from_ns, to_ns) = (
        lost.iter().map(|l| l.hop.first_ns).min().unwrap_or(0),
        lost.iter().map(|l| l.hop.last_ns).max().unwrap_or(0),
    );
    let (a, b) = (lost[0].hop.point, lost[0].next);
    let mut f = Finding::new(
        Code::SnatPortExhaustion,
        Severity::Error,
        Detail::SnatPortExhaustion {
            destination: al.dst,
            nat: al.nat.clone(),
            range: [al.lo, al.hi],
            range_from: al.from,
            usable: al.usable(),
            held: by.len() as u64,
            holders: conns.iter().map(|&k| x.id(k)).collect(),
            entries: by
                .values()
                .filter_map(|(r, _, _)| r.as_ref().err().cloned())
                .collect(),
            lost: lost.iter().map(|l| x.id(l.conn)).collect(),
        },
    );
    f.evidence = lost.iter().map(|l| x.hop(l.hop)).collect();
    if let Some((s0, s1)) = x.span(b) {
        f.evidence.push(Evidence::NoneSeen {
            point: x.name(b).to_string(),
            from_ns: s0,
            to_ns: s1,
            whole: to_ns <= s1,
        });
    }
    f.evidence.push(Evidence::PortRange {
        destination: al.dst,
        nat: al.nat.clone(),
        lo: al.lo,
        hi: al.hi,
        from: al.from,
    });
    f.evidence.extend(
        al.rule
            .as_ref()
            .and_then(|r| x.rule(r, RuleRole::Allocates)),
    );
    f.evidence.push(Evidence::PortsHeld {
        from_ns,
        to_ns,
        held: by.len() as u64,
        usable: al.usable(),
        by: held_by,
    });
    f.evidence
        .extend(x.stats_of(&["insert_failed", "drop", "early_drop"]));
    f.conns = lost
        .iter()
        .map(|l| l.conn)
        .chain(conns.iter().copied())
        .collect();
    f.points = vec![x.name(a).to_string(), x.name(b).to_string()];
    f.tuples = lost.iter().map(|l| x.seen(l.hop, Role::LastSeen)).collect();
    for &k in &conns {
        if let Some(h) = x.c.connections[k].hops.iter().find(|h| h.point == b) {
            f.tuples.push(x.seen(h, Role::Holder));
        }
    }
    f.first_ns = Some(from_ns);
    f.last_ns = Some(to_ns);
    f.packets = lost.iter().map(|l| l.hop.flow.packets[0]).sum();
    f
}

pub fn detect(x: &Ctx, explained: &Explained) -> Detected {
    let mut out = Detected::default();
    let candidates = candidates(x, explained);
    if candidates.is_empty() {
        return out;
    }
    let seen = ByDestination::new(x);
    for (al, cands) in candidates {
        let usable = al.usable();
        let mut pools: BTreeMap<usize, Pool> = BTreeMap::new();
        for l in &cands {
            pools
                .entry(l.next)
                .or_insert_with(|| Pool::new(x, &seen, &al, l.next));
        }
        // How many tuples were held over each lost connection's span. Fewer tuples than
        // the range has ever held: none of its connections can have found them all
        // taken, and none is counted.
        let mut held = vec![0; cands.len()];
        for (&b, pool) in pools.iter().filter(|(_, p)| p.tuples as u64 >= usable) {
            let at: Vec<usize> = (0..cands.len()).filter(|&i| cands[i].next == b).collect();
            let queries: Vec<_> = at
                .iter()
                .map(|&i| (cands[i].conn, cands[i].span()))
                .collect();
            for (i, n) in at.into_iter().zip(pool.held_counts(&queries)) {
                held[i] = n;
            }
        }
        // Connections lost at another point than the first's are another finding.
        let mut groups: BTreeMap<(usize, usize), Vec<Lost>> = BTreeMap::new();
        for (l, n) in cands.into_iter().zip(held) {
            if (n as u64) < usable {
                continue;
            }
            groups.entry((l.hop.point, l.next)).or_default().push(l);
        }
        for ((_, b), lost) in groups {
            for l in &lost {
                out.explains.add_stopped(l.conn);
            }
            out.findings.push(finding(x, &al, &pools[&b], &lost));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::testing::{run, run_with, wire};
    use super::*;

    #[test]
    fn the_kernel_default_range_follows_the_source_port() {
        assert_eq!(kernel_default(40000), (1024, 65535));
        assert_eq!(kernel_default(1023), (600, 1023));
        assert_eq!(kernel_default(22), (1, 511));
        let a: IpAddr = "203.0.113.1".parse().unwrap();
        let b: IpAddr = "203.0.113.3".parse().unwrap();
        assert_eq!(addrs_between(a, b).map(|v| v.len()), Some(3));
        assert_eq!(addrs_between(b, a), None);
        let wide: IpAddr = "203.0.120.0".parse().unwrap();
        assert_eq!(addrs_between(a, wide), None);
    }

    /// The recording's own witnesses: the rules (both families) and `conntrack -S`.
    fn witnesses(s: &str) -> Vec<&'static str> {
        if s.ends_with("udp6") {
            vec!["iptables.txt", "ip6tables.txt", "conntrack-stats.txt"]
        } else {
            vec!["iptables.txt", "conntrack-stats.txt"]
        }
    }

    #[test]
    fn every_port_of_the_rule_range_held_is_exhaustion() {
        for (s, proto, lost_packets) in [
            ("fault-snat-exhaustion", Proto::Tcp, 4),
            ("fault-snat-exhaustion-udp6", Proto::Udp, 3),
        ] {
            let c = wire(s);
            let f = run_with(&c, s, &witnesses(s), Code::SnatPortExhaustion);
            assert_eq!(f.len(), 1, "{s}: {f:#?}");
            let f = &f[0];
            assert_eq!(f.severity, Severity::Error);
            let Detail::SnatPortExhaustion {
                destination,
                range,
                range_from,
                usable,
                held,
                holders,
                lost,
                ..
            } = &f.detail
            else {
                panic!("{:?}", f.detail)
            };
            assert_eq!(destination.0, proto, "{s}");
            assert_eq!(destination.2, if proto == Proto::Tcp { 7000 } else { 53 });
            assert_eq!(
                (*range, *range_from, *usable, *held),
                ([20000, 20001], RangeFrom::Rule, 2, 2),
                "{s}"
            );
            assert_eq!((holders.len(), lost.len()), (2, 1), "{s}");
            assert_eq!(f.packets, lost_packets, "{s}");
            // The kernel counted every lost packet as a failed insert.
            assert!(f.evidence.iter().any(|e| matches!(e,
                Evidence::Stats { counters: v, .. } if v.contains(&("insert_failed".to_string(), lost_packets)))));
            assert!(f.evidence.iter().any(|e| matches!(
                e,
                Evidence::Rule {
                    role: RuleRole::Allocates,
                    ..
                }
            )));
            // The connection is not reported lost as well.
            assert!(run_with(&c, s, &witnesses(s), Code::Lost).is_empty(), "{s}");
        }
    }

    #[test]
    fn a_wide_range_leaves_the_loss_to_lost() {
        // The same recording and rules, the range widened to 10 000 ports: two held
        // connections leave it mostly free, so something else dropped the SYNs.
        let s = "fault-snat-exhaustion";
        let c = wire(s);
        let path = format!("{}/samples/{s}/iptables.txt", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("--to-ports 20000-20001", "--to-ports 20000-29999");
        assert!(text.contains("20000-29999"));
        let rules = crate::rules::parse("iptables.txt", &text);
        let audit = crate::audit::audit(
            &c,
            &Default::default(),
            vec![crate::witness::Witness::Rules(rules)],
        );
        let codes: Vec<Code> = audit.findings.iter().map(|f| f.code).collect();
        assert!(!codes.contains(&Code::SnatPortExhaustion), "{codes:?}");
        assert!(codes.contains(&Code::Lost), "{codes:?}");
    }

    /// The recording's context with its event log, the lost connection, the point it
    /// never reached, and the tuples the rule gives.
    fn lost_and_alloc(
        c: &crate::correlate::Correlation,
    ) -> (crate::audit::topology::Topology, usize, usize, Alloc) {
        let topo = crate::audit::topology::Topology::learn(c, &[]);
        let ci = c
            .connections
            .iter()
            .position(|k| k.hops.len() == 1 && k.proto == Proto::Tcp)
            .expect("the lost connection");
        let b = c.points.iter().position(|p| p.name == "eth0").unwrap();
        let al = Alloc {
            dst: (Proto::Tcp, "203.0.113.2".parse().unwrap(), 7000),
            nat: vec!["203.0.113.1".parse().unwrap()],
            lo: 20000,
            hi: 20001,
            from: RangeFrom::Rule,
            rule: None,
        };
        (topo, ci, b, al)
    }

    /// The tuples held over `span` by anything but connection `ci`, with their holder.
    fn holders(
        x: &Ctx,
        ci: usize,
        b: usize,
        al: &Alloc,
        span: (i64, i64),
    ) -> Vec<((IpAddr, u16), Holder)> {
        let pool = Pool::new(x, &ByDestination::new(x), al, b);
        pool.holders(ci, span).collect()
    }

    /// The sweep's counts against their definition ([`Pool::holders`]) on random pools:
    /// tuples held by several holders, spans that overlap or not, queries by a
    /// connection that holds a tuple itself, open ends.
    #[test]
    fn held_counts_are_the_holders_each_span_has() {
        use crate::correlate::testkit::XorShift;
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for run in 0..400 {
            let tuples = 1 + rng.below(6) as u16;
            let mut held: Vec<Held> = (0..rng.below(24))
                .map(|_| {
                    let from = rng.below(50) as i64;
                    let until = match rng.below(8) {
                        0 => i64::MAX,
                        _ => from + rng.below(50) as i64,
                    };
                    let h = match rng.below(3) {
                        0 => Holder::Entry(rng.below(5) as usize),
                        _ => Holder::Conn(rng.below(8) as usize),
                    };
                    let port = 1024 + rng.below(u64::from(tuples)) as u16;
                    (("203.0.113.1".parse().unwrap(), port), h, from, until)
                })
                .collect();
            held.sort_by_key(|h| h.0);
            let pool = Pool {
                tuples: held.chunk_by(|a, b| a.0 == b.0).count(),
                held,
            };
            let queries: Vec<(usize, (i64, i64))> = (0..rng.below(12))
                .map(|_| {
                    let t0 = rng.below(60) as i64;
                    (rng.below(10) as usize, (t0, t0 + rng.below(40) as i64))
                })
                .collect();
            let want: Vec<usize> = (queries.iter())
                .map(|&(ci, span)| pool.holders(ci, span).count())
                .collect();
            assert_eq!(
                pool.held_counts(&queries),
                want,
                "run {run}: {:?}",
                pool.held
            );
        }
    }

    #[test]
    fn holders_must_be_live_over_the_loss() {
        let c = wire("fault-snat-exhaustion");
        let (topo, ci, b, al) = lost_and_alloc(&c);
        let x = Ctx::new(&c, &topo, &[]);
        let h = &c.connections[ci].hops[0];
        assert_eq!(holders(&x, ci, b, &al, (h.first_ns, h.last_ns)).len(), 2);
        // After the held connections closed (FIN both ways) nothing holds the range;
        // before they opened, neither.
        let end = c.connections.iter().map(|k| k.last_ns()).max().unwrap();
        assert!(holders(&x, ci, b, &al, (end + 1, end + 1)).is_empty());
        let start = c.connections.iter().map(|k| k.first_ns()).min().unwrap();
        assert!(holders(&x, ci, b, &al, (start - 1, start - 1)).is_empty());
    }

    #[test]
    fn the_event_log_names_holders_no_capture_shows() {
        let c = wire("fault-snat-exhaustion");
        let (topo, ci, _, al) = lost_and_alloc(&c);
        let path = format!(
            "{}/samples/fault-snat-exhaustion/events.txt",
            env!("CARGO_MANIFEST_DIR")
        );
        let dump = crate::conntrack::read_path(&path).unwrap();
        let mut x = Ctx::new(&c, &topo, &[]);
        x.lifetimes = crate::audit::ct::Lifetime::of(&[&dump]);
        let h = &c.connections[ci].hops[0];
        // At docker0 no connection carries the NAT address: only the log's entries,
        // created before the SYNs and in TIME_WAIT only after them.
        let docker0 = h.point;
        let held = holders(&x, ci, docker0, &al, (h.first_ns, h.last_ns));
        assert_eq!(held.len(), 2, "{held:?}");
        assert!(held.iter().all(|(_, who)| match who {
            Holder::Entry(i) => x.lifetimes[*i].place().contains("events.txt:"),
            Holder::Conn(_) => false,
        }));
        // A second after the last packet both entries are in TIME_WAIT (events are
        // printed a little after the packets that caused them).
        let end = c.connections.iter().map(|k| k.last_ns()).max().unwrap() + 1_000_000_000;
        assert!(holders(&x, ci, docker0, &al, (end, end)).is_empty());
    }

    #[test]
    fn without_the_rules_the_default_range_is_never_full() {
        // Two held connections do not fill 64512 ports: the loss stays `lost`.
        for s in ["fault-snat-exhaustion", "fault-snat-exhaustion-udp6"] {
            let c = wire(s);
            assert!(run(&c, &[], Code::SnatPortExhaustion).is_empty(), "{s}");
            assert_eq!(run(&c, &[], Code::Lost).len(), 1, "{s}");
        }
    }
}
