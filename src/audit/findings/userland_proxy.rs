//! `userland-proxy` (FM-11): a proxy (docker-proxy, socat, a REDIRECT sidecar) ended
//! the client's TCP connection and opened one of its own to the backend, copying the
//! bytes both ways. Nothing joins the two connections but their bytes and timing:
//! their addresses, ports, sequence numbers and timestamps are unrelated, and neither
//! is translated. They pair when, on two TCP connections that no link translated and
//! whose handshakes were seen:
//!
//! * the proxy's SYN follows the answer to the client's SYN, while the client's
//!   connection is still open and within the matching window of the client's first
//!   bytes (a proxy connects on accept, or on the first request);
//! * both carried bytes both ways, and the segments that start at the same offset in
//!   the two streams agree in their first bytes, at offset 0 at least: the client's
//!   bytes going on over the proxy's connection, the backend's coming back over the
//!   client's, each later than the copy it repeats (within the window). A proxy's copy
//!   always follows what it copies, so the two ways run in opposite order between
//!   the connections; two independent connections that carry the same bytes (the
//!   same request sent twice, a second transfer of one file) are later on the second
//!   one both ways;
//! * the two started from different sequence numbers (one connection seen twice is
//!   not a splice).
//!
//! Each connection is the client's side of one pair and the proxy's side of one
//! pair at most, closest in time first. A warning when the backend sees another
//! address than a client elsewhere (the client's address is lost), else info: a
//! client on the host itself (loopback, or an address of the host), or a proxy that
//! kept the client's address (transparent).

use std::collections::{BTreeMap, BTreeSet};

use crate::audit::{Code, Ctx, Detail, Evidence, Finding, Role, Severity, SpliceFact, SpliceFacts};
use crate::correlate::{Connection, Stream, Streams};
use crate::model::Proto;

pub fn detect(x: &Ctx) -> Vec<Finding> {
    let window = x.c.config.window_ns;
    let legs: Vec<(usize, &Streams)> =
        x.c.connections
            .iter()
            .enumerate()
            .filter_map(|(ci, c)| c.streams.as_deref().map(|s| (ci, s)))
            .collect();
    // Connections by the first bytes each side sent (a pair shares them), in the
    // order of their SYNs.
    let mut by_key: BTreeMap<(u32, u32), Vec<(i64, usize)>> = BTreeMap::new();
    for (k, (_, s)) in legs.iter().enumerate() {
        if let Some(key) = key(s) {
            by_key.entry(key).or_default().push((s.fwd.syn_ns, k));
        }
    }
    for bucket in by_key.values_mut() {
        bucket.sort_unstable();
    }
    let mut pairs: Vec<Pair> = Vec::new();
    for (oc, os) in &legs {
        let Some(bucket) = key(os).and_then(|k| by_key.get(&k)) else {
            continue;
        };
        let open_until = x.c.connections[*oc].last_ns();
        let latest = latest_open(os, open_until, window);
        // Only connections opened after the client's handshake was answered.
        let from = bucket.partition_point(|&(syn, _)| syn < os.rev.syn_ns);
        for &(_, i) in &bucket[from..] {
            let (ic, is) = legs[i];
            if is.fwd.syn_ns > latest {
                break;
            }
            if ic == *oc {
                continue;
            }
            pairs.extend(
                splice(os, is, open_until, window).map(|(after_ns, ways)| Pair {
                    outer: *oc,
                    inner: ic,
                    after_ns,
                    ways,
                }),
            );
        }
    }
    pairs.sort_by_key(|p| (p.after_ns, p.lag(), p.outer, p.inner));
    let (mut outer, mut inner) = (BTreeSet::new(), BTreeSet::new());
    let mut out = Vec::new();
    for p in pairs {
        if !outer.contains(&p.outer) && !inner.contains(&p.inner) {
            outer.insert(p.outer);
            inner.insert(p.inner);
            out.push(finding(x, &p));
        }
    }
    out
}

/// The first bytes a connection's pair must share: those of both sides' first
/// segments, when both sides sent some and both were captured.
fn key(s: &Streams) -> Option<(u32, u32)> {
    let head = |st: &Stream| st.at(0).map(|c| c.head).filter(|&h| h != 0);
    Some((head(&s.fwd)?, head(&s.rev)?))
}

/// One way's bytes on both connections: how many segments agreed, the lag of the
/// first byte, and the bytes each connection carried (where they came from first,
/// where they went on).
#[derive(Clone, Copy, Debug)]
struct Agreed {
    compared: usize,
    lag_ns: i64,
    bytes: [u64; 2],
}

/// A candidate pair: the client's connection, the proxy's, how long after the
/// client's handshake the proxy's SYN left, and each way's agreement (towards the
/// backend, back to the client).
struct Pair {
    outer: usize,
    inner: usize,
    after_ns: i64,
    ways: [Agreed; 2],
}

impl Pair {
    fn lag(&self) -> i64 {
        self.ways[0].lag_ns.max(self.ways[1].lag_ns)
    }
}

/// Whether `inner` is a proxy's connection carrying the bytes of `outer` (whose last
/// packet was at `open_until`): when it opened after `outer`'s handshake was answered
/// and before `outer` ended, and each way's agreement.
fn splice(
    outer: &Streams,
    inner: &Streams,
    open_until: i64,
    window: i64,
) -> Option<(i64, [Agreed; 2])> {
    if inner.fwd.isn == outer.fwd.isn {
        return None;
    }
    let after = inner.fwd.syn_ns - outer.rev.syn_ns;
    if after < 0 || inner.fwd.syn_ns > latest_open(outer, open_until, window) {
        return None;
    }
    let to_backend = agree(&outer.fwd, &inner.fwd, window)?;
    let to_client = agree(&inner.rev, &outer.rev, window)?;
    Some((after, [to_backend, to_client]))
}

/// The latest a proxy's connection for `outer` (whose last packet was at
/// `open_until`) can open: while it is open, within the window of its first bytes
/// (or of the answer to its SYN when the client sent nothing yet).
fn latest_open(outer: &Streams, open_until: i64, window: i64) -> i64 {
    let first = outer
        .fwd
        .at(0)
        .map_or(outer.rev.syn_ns, |c| c.ts.max(outer.rev.syn_ns));
    (first + window).min(open_until)
}

/// Whether the bytes of `from` went on over `to` in the same order: segments at the
/// same offsets whose first bytes agree (offset 0 among them), each copy on `to`
/// later than on `from` within the window.
fn agree(from: &Stream, to: &Stream, window: i64) -> Option<Agreed> {
    let mut compared = 0;
    let mut first = None;
    for c in &from.chunks {
        let Some(d) = to.at(c.offset) else { continue };
        if c.head == 0 || d.head == 0 {
            continue;
        }
        let lag = d.ts - c.ts;
        if c.head != d.head || lag < 0 || lag > window {
            return None;
        }
        compared += 1;
        if c.offset == 0 {
            first = Some(lag);
        }
    }
    Some(Agreed {
        compared,
        lag_ns: first?,
        bytes: [from.bytes, to.bytes],
    })
}

fn finding(x: &Ctx, p: &Pair) -> Finding {
    let (o, i) = (&x.c.connections[p.outer], &x.c.connections[p.inner]);
    let (end, start) = (last(o), first(i));
    let (ot, it) = (end.flow.tuple, start.flow.tuple);
    let local = ot.src.is_loopback()
        || ot.src == ot.dst
        || ot.src == it.src
        || x.topo.host_addrs.contains(&ot.src);
    let lost = it.src != ot.src;
    let mut f = Finding::new(
        Code::UserlandProxy,
        if lost && !local {
            Severity::Warning
        } else {
            Severity::Info
        },
        Detail::UserlandProxy(SpliceFacts {
            outer: o.id.clone(),
            outer_tuple: ot,
            inner: i.id.clone(),
            inner_tuple: it,
            address_lost: lost,
            local_client: local,
        }),
    );
    let (ep, sp) = (x.name(end.point), x.name(start.point));
    f.evidence = vec![
        x.hop(end),
        x.hop(start),
        Evidence::Splice(SpliceFact::Ended {
            conn: o.id.clone(),
            point: ep.to_string(),
            answered_by: (Proto::Tcp, ot.dst, ot.dport),
        }),
        Evidence::Splice(SpliceFact::Opened {
            inner: i.id.clone(),
            outer: o.id.clone(),
            point: sp.to_string(),
            after_ns: p.after_ns,
        }),
    ];
    for (k, a) in p.ways.iter().enumerate() {
        let (from, to) = if k == 0 { (o, i) } else { (i, o) };
        f.evidence.push(Evidence::Splice(SpliceFact::SameBytes {
            to_backend: k == 0,
            from: from.id.clone(),
            to: to.id.clone(),
            bytes: a.bytes[0],
            carried: a.bytes[1],
            compared: a.compared,
            lag_ns: a.lag_ns,
        }));
    }
    f.conns = vec![p.outer, p.inner];
    f.points = vec![ep.to_string()];
    if sp != ep {
        f.points.push(sp.to_string());
    }
    f.tuples = vec![x.seen(end, Role::Before), x.seen(start, Role::After)];
    f.first_ns = Some(o.first_ns());
    f.last_ns = Some(o.last_ns().max(i.last_ns()));
    f.packets = end.flow.total_packets() + start.flow.total_packets();
    f
}

fn last(c: &Connection) -> &crate::correlate::Hop {
    c.hops
        .last()
        .unwrap_or_else(|| unreachable!("a connection has a hop"))
}

fn first(c: &Connection) -> &crate::correlate::Hop {
    c.hops
        .first()
        .unwrap_or_else(|| unreachable!("a connection has a hop"))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{run, wire};
    use super::splice;
    use crate::audit::{Code, Detail, Severity};
    use crate::correlate::{Chunk, Stream, Streams};

    #[test]
    fn each_client_connection_pairs_with_the_proxys_own() {
        let c = wire("userland-proxy");
        let f = run(&c, &[], Code::UserlandProxy);
        // Two clients from outside; the host's own client came over lo, not captured.
        assert_eq!(f.len(), 2, "{f:#?}");
        let mut proxies = std::collections::BTreeSet::new();
        for f in &f {
            assert_eq!(f.severity, Severity::Warning);
            let Detail::UserlandProxy(d) = &f.detail else {
                panic!("{:?}", f.detail)
            };
            assert!(d.address_lost && !d.local_client);
            assert_eq!((d.outer_tuple.dport, d.inner_tuple.dport), (8080, 80));
            assert_ne!(d.outer_tuple.src, d.inner_tuple.src);
            proxies.insert(d.inner_tuple.src);
            assert_eq!(f.points, ["eth0", "docker0"]);
            assert_eq!(f.conns.len(), 2);
        }
        // One proxy: every backend connection comes from its address.
        assert_eq!(proxies.len(), 1);
    }

    #[test]
    fn an_ipv6_client_through_a_proxy_to_an_ipv4_backend() {
        let c = wire("userland-proxy6");
        let f = run(&c, &[], Code::UserlandProxy);
        assert_eq!(f.len(), 2, "{f:#?}");
        for f in &f {
            let Detail::UserlandProxy(d) = &f.detail else {
                panic!()
            };
            assert!(d.outer_tuple.src.is_ipv6() && d.inner_tuple.src.is_ipv4());
            assert_eq!(f.severity, Severity::Warning);
        }
    }

    /// A side of a connection opened at `syn_ns` whose first bytes (digest `head`)
    /// were seen at `ts`.
    fn side(syn_ns: i64, isn: u32, head: u32, ts: i64) -> Stream {
        Stream {
            syn_ns,
            isn,
            chunks: vec![Chunk {
                offset: 0,
                len: 40,
                head,
                ts,
            }],
            bytes: 40,
        }
    }

    fn streams(fwd: Stream, rev: Stream) -> Streams {
        Streams { fwd, rev }
    }

    #[test]
    fn the_two_ways_run_in_opposite_order_between_the_legs() {
        const W: i64 = 1_000_000_000;
        // The client's connection: SYN at 0, answered at 10; request at 1000, the
        // response reaches the client at 1300.
        let outer = streams(side(0, 1, 0xa, 1000), side(10, 2, 0xb, 1300));
        // The proxy's: SYN at 100; the request goes on at 1100, the backend answers at 1200.
        let inner = streams(side(100, 3, 0xa, 1100), side(110, 4, 0xb, 1200));
        let (after, ways) = splice(&outer, &inner, 5000, W).expect("a splice");
        assert_eq!(after, 90);
        assert_eq!((ways[0].lag_ns, ways[1].lag_ns), (100, 100));
        // The other way round it is no splice.
        assert!(splice(&inner, &outer, 5000, W).is_none());
        // Two independent connections with the same bytes: the second is later both
        // ways (the same request sent twice).
        let twin = streams(side(100, 3, 0xa, 1100), side(110, 4, 0xb, 1400));
        assert!(splice(&outer, &twin, 5000, W).is_none());
        // Opened after the client's connection ended; one connection seen twice.
        assert!(splice(&outer, &inner, 50, W).is_none());
        let same = streams(side(100, 1, 0xa, 1100), side(110, 4, 0xb, 1200));
        assert!(splice(&outer, &same, 5000, W).is_none());
        // Bytes one way only: nothing to tell a copy from a coincidence.
        let mut quiet = Stream {
            chunks: Vec::new(),
            bytes: 0,
            ..side(10, 2, 0, 0)
        };
        let one_way = streams(side(0, 1, 0xa, 1000), quiet.clone());
        quiet.syn_ns = 110;
        assert!(splice(&one_way, &streams(side(100, 3, 0xa, 1100), quiet), 5000, W).is_none());
        // Other bytes at the same offset.
        let other = streams(side(100, 3, 0xc, 1100), side(110, 4, 0xb, 1200));
        assert!(splice(&outer, &other, 5000, W).is_none());
    }

    #[test]
    fn no_proxy_where_every_connection_is_one() {
        for s in [
            "masquerade",
            "published-port",
            "nodeport",
            "kube-rules",
            "bulk-offload",
            "fault-pmtu-black-hole",
        ] {
            assert!(run(&wire(s), &[], Code::UserlandProxy).is_empty(), "{s}");
        }
    }
}
