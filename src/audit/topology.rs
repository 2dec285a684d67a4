//! What the wire says about the NAT host's layout: which addresses sit inside the NAT
//! (and so must never appear on the far side of it), which points are outside, which
//! addresses and ports belong to the host, and which way traffic from inside goes.
//!
//! Everything is learned from connections `correlate` followed across a translation:
//! * a link whose destination changed (DNAT, with or without SNAT) has its inside
//!   downstream: the new destination is an inside address, the upstream point is
//!   outside (unless the client is inside with it: hairpin NAT), and the old
//!   destination endpoint is a published (DNAT) endpoint there;
//! * a link whose source changed and destination did not (SNAT, MASQUERADE) has its
//!   inside upstream: the old source is an inside address, the downstream point is
//!   outside, and the new source is a NAT address of the host at that point.
//!
//! Declared `--inside` prefixes take precedence over learned ones: when given, the
//! learned inside addresses are added as host prefixes only; otherwise each learned
//! address stands for its /24 (IPv4) or /64 (IPv6), the usual size of a container or
//! pod subnet.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use rayon::prelude::*;

use super::Cidr;
use crate::correlate::{Connection, Correlation};
use crate::model::Proto;

/// The connections that show where a connection's kind of traffic goes next from its
/// last point (one next point's lists in [`Topology::egress`] and
/// [`Topology::published`]), less that connection itself. Borrowed from the topology:
/// nothing is copied until they are listed, so asking for every connection that stops
/// short costs no more than the connections themselves, however many went the way.
#[derive(Clone, Copy, Debug)]
pub struct Via<'a> {
    /// Ascending, each connection once.
    lists: [&'a [usize]; 2],
    skip: usize,
}

impl<'a> Via<'a> {
    pub fn new(lists: [&'a [usize]; 2], skip: usize) -> Via<'a> {
        Via { lists, skip }
    }

    /// The connections, ascending, each once.
    pub fn iter(&self) -> impl Iterator<Item = usize> + 'a {
        let ([mut a, mut b], skip) = (self.lists, self.skip);
        std::iter::from_fn(move || loop {
            let k = match (a.first(), b.first()) {
                (None, None) => return None,
                (Some(&x), Some(&y)) if x == y => {
                    (a, b) = (&a[1..], &b[1..]);
                    x
                }
                (Some(&x), Some(&y)) if x < y => {
                    a = &a[1..];
                    x
                }
                (Some(&x), None) => {
                    a = &a[1..];
                    x
                }
                (_, Some(&y)) => {
                    b = &b[1..];
                    y
                }
            };
            if k != skip {
                return Some(k);
            }
        })
    }

    /// How many: counted without listing them when one list holds them all, else by
    /// `union`, told the lists (as [`Via::key`] names them) and how to count their
    /// union (a listing, as long as the lists): it may keep the count for the next
    /// connection asking of the same lists.
    pub fn len_by(
        &self,
        union: impl FnOnce([(usize, usize); 2], &dyn Fn() -> usize) -> usize,
    ) -> usize {
        let skipped = self
            .lists
            .iter()
            .any(|l| l.binary_search(&self.skip).is_ok());
        let all = match self.lists {
            [l, []] | [[], l] => l.len(),
            lists => union(self.key(), &|| Via::new(lists, usize::MAX).iter().count()),
        };
        all - usize::from(skipped)
    }

    /// How many, each time counted anew.
    pub fn len(&self) -> usize {
        self.len_by(|_, count| count())
    }

    /// What names the lists in the topology (where they are, and how long): two with
    /// one key list the same connections, but for the one each leaves out.
    pub fn key(&self) -> [(usize, usize); 2] {
        self.lists.map(|l| (l.as_ptr() as usize, l.len()))
    }

    pub fn is_empty(&self) -> bool {
        // Sorted lists without repeats: the skipped connection is at most one of them.
        self.lists
            .iter()
            .all(|l| l.len() <= 1 && l.iter().all(|&k| k == self.skip))
    }
}

/// Key of a translated endpoint at a point: (point, protocol, address, port).
pub type EndpointKey = (usize, Proto, IpAddr, u16);

#[derive(Clone, Debug, Default)]
pub struct Topology {
    /// Inside prefixes, sorted and deduplicated.
    pub inside: Vec<Cidr>,
    /// The lengths of the inside prefixes, IPv4's then IPv6's, each longest first: an
    /// address lies in at most one prefix of a length ([`Topology::prefix_of`]).
    inside_lens: [Vec<u8>; 2],
    /// True when `inside` starts from `--inside`.
    pub declared: bool,
    /// Per point: inside addresses NAT translated away before packets reached it.
    pub hidden: BTreeMap<usize, BTreeSet<IpAddr>>,
    /// Per point: source addresses SNAT or MASQUERADE gave packets leaving there.
    pub nat_addrs: BTreeMap<usize, BTreeSet<IpAddr>>,
    /// Addresses of the NAT host itself: SNAT sources and DNAT'ed destinations.
    pub host_addrs: BTreeSet<IpAddr>,
    /// DNAT'ed endpoints at the point traffic arrived on → the points it went on to →
    /// connections that did.
    pub published: Routes<EndpointKey>,
    /// Egress routes: (point, inside prefix) → next point → connections taking it, for
    /// connections from that prefix to destinations outside the inside prefixes.
    pub egress: Routes<(usize, Cidr)>,
    /// Translated source endpoints at the point they left on: (point, proto, NAT
    /// address, NAT port) and a connection whose tuple there carries them (once a
    /// link that translated it), sorted: looked up ([`Topology::translated_to`]).
    pub endpoints: Vec<(EndpointKey, usize)>,
    /// Per inside prefix: the points where NAT hides its addresses (downstream of a
    /// source translation of one of them, upstream of a DNAT to one of them). An
    /// address of the prefix seen there untranslated escaped NAT, whether or not that
    /// host had a translated connection of its own.
    pub hidden_prefix: BTreeMap<Cidr, BTreeSet<usize>>,
}

/// Connections a thread reads at least, in each pass of [`Topology::learn`].
const RUN: usize = 4096;

/// Per key, the points it leads to and the connections that went there, in order.
pub type Routes<K> = BTreeMap<K, BTreeMap<usize, Vec<usize>>>;

/// What the translated links of a run of connections say, before the prefixes are
/// drawn from it ([`Topology::learn`]'s first pass).
#[derive(Default)]
struct Seen {
    inside_addrs: BTreeSet<IpAddr>,
    /// Destinations packets were routed to (their TTL fell between the points), by
    /// the point they were routed from: a host does not route packets addressed to
    /// itself.
    routed_to: BTreeSet<(IpAddr, usize)>,
    /// DNAT'ed destinations, by the points on either side of the translation.
    dnat_at: BTreeSet<(IpAddr, usize)>,
    host_addrs: BTreeSet<IpAddr>,
    published: Routes<EndpointKey>,
    hidden: BTreeMap<usize, BTreeSet<IpAddr>>,
    nat_addrs: BTreeMap<usize, BTreeSet<IpAddr>>,
    /// Translated source endpoints and the connections that carried them, in
    /// connection order: sorted once all runs are merged.
    endpoints: Vec<(EndpointKey, usize)>,
}

impl Seen {
    /// Adds connection `ci`'s links.
    fn add(&mut self, ci: usize, conn: &Connection) {
        for l in &conn.links {
            let (up, down) = (&conn.hops[l.from], &conn.hops[l.to]);
            let (before, after) = (&up.flow.tuple, &down.flow.tuple);
            if let (Some(a), Some(b)) = (up.fwd_ttl, down.fwd_ttl) {
                if b < a {
                    self.routed_to.insert((after.dst, up.point));
                }
            }
            let ch = &l.change;
            let published = (up.point, conn.proto, before.dst, before.dport);
            if ch.dst_addr_changed {
                self.inside_addrs.insert(after.dst);
                self.host_addrs.insert(before.dst);
                self.dnat_at.insert((before.dst, up.point));
                self.dnat_at.insert((before.dst, down.point));
                push_route(&mut self.published, published, down.point, ci);
            } else if ch.dport_changed {
                // REDIRECT-like port change on the same address: still published.
                push_route(&mut self.published, published, down.point, ci);
            } else if ch.src_addr_changed {
                self.inside_addrs.insert(before.src);
                // A link at one point (a host with one interface for two networks)
                // shows the address there before NAT: NAT hides nothing at it.
                if up.point != down.point {
                    self.hidden
                        .entry(down.point)
                        .or_default()
                        .insert(before.src);
                }
            }
            if ch.src_addr_changed || ch.sport_changed {
                self.nat_addrs
                    .entry(down.point)
                    .or_default()
                    .insert(after.src);
                self.host_addrs.insert(after.src);
                self.endpoints
                    .push(((down.point, conn.proto, after.src, after.sport), ci));
            }
        }
    }

    /// The facts of a run of connections that came before `later`'s, then `later`'s.
    fn merge(mut self, mut later: Seen) -> Seen {
        self.inside_addrs.append(&mut later.inside_addrs);
        self.routed_to.append(&mut later.routed_to);
        self.dnat_at.append(&mut later.dnat_at);
        self.host_addrs.append(&mut later.host_addrs);
        append_routes(&mut self.published, later.published);
        union_by_key(&mut self.hidden, later.hidden);
        union_by_key(&mut self.nat_addrs, later.nat_addrs);
        self.endpoints.append(&mut later.endpoints);
        self
    }
}

fn push_route<K: Ord>(routes: &mut Routes<K>, key: K, to: usize, ci: usize) {
    routes
        .entry(key)
        .or_default()
        .entry(to)
        .or_default()
        .push(ci);
}

/// Puts `later`'s connections after `routes`' own, key by key.
fn append_routes<K: Ord>(routes: &mut Routes<K>, later: Routes<K>) {
    for (k, m) in later {
        let to = routes.entry(k).or_default();
        for (point, conns) in m {
            to.entry(point).or_default().extend(conns);
        }
    }
}

/// Adds `more`'s sets to `sets`, key by key.
fn union_by_key<K: Ord, V: Ord>(
    sets: &mut BTreeMap<K, BTreeSet<V>>,
    more: BTreeMap<K, BTreeSet<V>>,
) {
    for (k, mut s) in more {
        sets.entry(k).or_default().append(&mut s);
    }
}

impl Topology {
    pub fn learn(c: &Correlation, declared: &[Cidr]) -> Topology {
        // Each pass reads every connection once, on every core, in runs of
        // connections whose facts are merged in connection order.
        let seen = c
            .connections
            .par_iter()
            .enumerate()
            .with_min_len(RUN)
            .fold(Seen::default, |mut s, (ci, conn)| {
                s.add(ci, conn);
                s
            })
            .reduce(Seen::default, Seen::merge);
        let Seen {
            inside_addrs,
            routed_to,
            dnat_at,
            host_addrs,
            published,
            hidden,
            nat_addrs,
            endpoints,
        } = seen;
        let mut t = Topology {
            declared: !declared.is_empty(),
            host_addrs,
            published,
            hidden,
            nat_addrs,
            ..Default::default()
        };
        t.endpoints = endpoints;
        t.endpoints.par_sort_unstable();
        // A DNAT's original destination is taken for the host's (a published port)
        // unless packets to it were routed on from a point beside that DNAT (the same
        // host's interfaces; a router in front of the host routing them to it says
        // nothing): then the DNAT caught traffic passing through (a transparent
        // proxy's REDIRECT, a service's virtual address). Addresses SNAT gave stay the
        // host's.
        let given: BTreeSet<IpAddr> = t.nat_addrs.values().flatten().copied().collect();
        t.host_addrs.retain(|a| {
            given.contains(a)
                || !routed_to
                    .range((*a, 0)..=(*a, usize::MAX))
                    .any(|p| dnat_at.contains(p))
        });
        let mut inside: BTreeSet<Cidr> = declared.iter().copied().collect();
        for a in &inside_addrs {
            if declared.iter().any(|d| d.contains(*a)) {
                continue;
            }
            let len = match (t.declared, a) {
                (true, IpAddr::V4(_)) => 32,
                (true, IpAddr::V6(_)) => 128,
                (false, IpAddr::V4(_)) => 24,
                (false, IpAddr::V6(_)) => 64,
            };
            inside.insert(Cidr::new(*a, len));
        }
        t.set_inside(inside);

        type Hidden = (
            BTreeMap<usize, BTreeSet<IpAddr>>,
            BTreeMap<Cidr, BTreeSet<usize>>,
        );
        let (hidden, hidden_prefix) = c
            .connections
            .par_iter()
            .with_min_len(RUN)
            .fold(Hidden::default, |(mut hidden, mut prefixes), conn| {
                for l in &conn.links {
                    let (up, down) = (&conn.hops[l.from], &conn.hops[l.to]);
                    let ch = &l.change;
                    // A connection turned back at one point shows both sides of its NAT
                    // there: NAT hides nothing at it.
                    let at = if up.point == down.point {
                        None
                    } else if ch.dst_addr_changed {
                        // A client inside a prefix with the address it was DNATed to
                        // (hairpin NAT: a container to its own or a neighbour's
                        // published port) shows the upstream point is inside, not
                        // outside.
                        let (client, to) = (up.flow.tuple.src, down.flow.tuple.dst);
                        if t.shares_prefix(client, to) {
                            None
                        } else {
                            hidden.entry(up.point).or_default().insert(to);
                            t.prefix_of(to).map(|p| (p, up.point))
                        }
                    } else if ch.src_addr_changed {
                        t.prefix_of(up.flow.tuple.src).map(|p| (p, down.point))
                    } else {
                        None
                    };
                    if let Some((p, point)) = at {
                        prefixes.entry(p).or_default().insert(point);
                    }
                }
                (hidden, prefixes)
            })
            .reduce(Hidden::default, |(mut h, mut p), (h2, p2)| {
                union_by_key(&mut h, h2);
                union_by_key(&mut p, p2);
                (h, p)
            });
        union_by_key(&mut t.hidden, hidden);
        t.hidden_prefix = hidden_prefix;
        t.egress = c
            .connections
            .par_iter()
            .enumerate()
            .with_min_len(RUN)
            .fold(
                BTreeMap::default,
                |mut egress: Routes<(usize, Cidr)>, (ci, conn)| {
                    for w in conn.hops.windows(2) {
                        let tu = &w[0].flow.tuple;
                        if w[0].point == w[1].point {
                            continue;
                        }
                        if let Some(p) = t.prefix_of(tu.src) {
                            if t.is_outside_dst(tu.dst) {
                                push_route(&mut egress, (w[0].point, p), w[1].point, ci);
                            }
                        }
                    }
                    egress
                },
            )
            .reduce(BTreeMap::default, |mut a, b| {
                append_routes(&mut a, b);
                a
            });
        // Pushed in connection order, a connection once a hop pair: each list ascending,
        // each connection once.
        for m in t.published.values_mut().chain(t.egress.values_mut()) {
            m.values_mut().for_each(Vec::dedup);
        }
        t
    }

    /// Whether NAT hides `a` at `point`: an address translated away before packets
    /// reached it, or one of an inside prefix whose translations show the point is
    /// outside for it. Never an address SNAT gives packets there: that is what NAT
    /// shows at the point, even from inside a prefix (an overlay node's tunnel address
    /// taken from its own pods' range, as Calico's `tunl0` is).
    pub fn hides(&self, point: usize, a: IpAddr) -> bool {
        if self.nat_addrs.get(&point).is_some_and(|n| n.contains(&a)) {
            return false;
        }
        self.hidden.get(&point).is_some_and(|h| h.contains(&a))
            || self
                .prefix_of(a)
                .and_then(|p| self.hidden_prefix.get(&p))
                .is_some_and(|points| points.contains(&point))
    }

    /// The connections translated to the source endpoint `key` ([`EndpointKey`]), in
    /// order, one a link that did.
    pub fn translated_to(&self, key: EndpointKey) -> impl Iterator<Item = usize> + '_ {
        let from = self.endpoints.partition_point(|(k, _)| *k < key);
        self.endpoints[from..]
            .iter()
            .take_while(move |(k, _)| *k == key)
            .map(|&(_, ci)| ci)
    }

    fn set_inside(&mut self, inside: BTreeSet<Cidr>) {
        self.inside = inside.into_iter().collect();
        self.inside_lens = Default::default();
        for p in &self.inside {
            self.inside_lens[usize::from(p.addr().is_ipv6())].push(p.prefix_len());
        }
        for lens in &mut self.inside_lens {
            lens.sort_unstable_by(|a, b| b.cmp(a));
            lens.dedup();
        }
    }

    /// The most specific inside prefix holding `a`, if any: looked up at each length
    /// the inside prefixes have, not compared with every prefix (a gateway's clients
    /// may lie in thousands).
    pub fn prefix_of(&self, a: IpAddr) -> Option<Cidr> {
        self.inside_lens[usize::from(a.is_ipv6())]
            .iter()
            .map(|&len| Cidr::new(a, len))
            .find(|p| self.inside.binary_search(p).is_ok())
    }

    /// Whether one inside prefix holds both `a` and `b`.
    fn shares_prefix(&self, a: IpAddr, b: IpAddr) -> bool {
        a.is_ipv6() == b.is_ipv6()
            && self.inside_lens[usize::from(a.is_ipv6())]
                .iter()
                .any(|&len| {
                    let p = Cidr::new(a, len);
                    p == Cidr::new(b, len) && self.inside.binary_search(&p).is_ok()
                })
    }

    pub fn is_inside(&self, a: IpAddr) -> bool {
        self.prefix_of(a).is_some()
    }

    /// A destination that traffic from inside reaches by being forwarded out: not
    /// inside, not the host itself, not multicast or broadcast.
    pub fn is_outside_dst(&self, a: IpAddr) -> bool {
        let special = match a {
            IpAddr::V4(v) => v.is_multicast() || v.is_broadcast() || v.is_loopback(),
            IpAddr::V6(v) => v.is_multicast() || v.is_loopback(),
        };
        !special && !self.is_inside(a) && !self.host_addrs.contains(&a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::{InputSpec, ReadOptions};
    use crate::correlate::{self, Config};

    #[test]
    fn the_prefix_of_an_address_is_the_longest_inside_prefix_holding_it() {
        let prefixes = [
            "10.0.0.0/8",
            "10.1.0.0/16",
            "10.1.2.0/24",
            "10.1.2.7/32",
            "172.17.0.0/24",
            "192.0.2.0/24",
            "fd00::/64",
            "fd00::/48",
            "fd01::5/128",
        ];
        let mut t = Topology::default();
        t.set_inside(prefixes.iter().map(|p| p.parse().unwrap()).collect());
        let longest = |a: IpAddr| {
            let holding = t.inside.iter().filter(|p| p.contains(a));
            holding.max_by_key(|p| p.prefix_len()).copied()
        };
        let addrs: Vec<IpAddr> = [
            "10.1.2.7",
            "10.1.2.8",
            "10.1.3.1",
            "10.9.9.9",
            "11.0.0.1",
            "172.17.0.2",
            "172.17.1.2",
            "192.0.2.255",
            "0.0.0.0",
            "fd00::1",
            "fd00:0:0:1::1",
            "fd00:1::1",
            "fd01::5",
            "fd01::6",
            "::1",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        for &a in &addrs {
            assert_eq!(t.prefix_of(a), longest(a), "{a}");
            for &b in &addrs {
                let both = t.inside.iter().any(|p| p.contains(a) && p.contains(b));
                assert_eq!(t.shares_prefix(a, b), both, "{a} {b}");
            }
        }
        let at = |a: &str| t.prefix_of(a.parse().unwrap()).map(|p| p.to_string());
        assert_eq!(at("10.1.2.8").as_deref(), Some("10.1.2.0/24"));
        assert_eq!(at("10.1.2.7").as_deref(), Some("10.1.2.7/32"));
        assert_eq!(at("fd00:0:0:1::1").as_deref(), Some("fd00::/48"));
        assert_eq!(at("11.0.0.1"), None);
    }

    #[test]
    fn via_lists_the_union_of_both_lists_less_the_connection_asking() {
        // Every pair of ascending lists drawn from 0..6 (as bit sets), every skip.
        let list = |bits: u32| -> Vec<usize> { (0..6).filter(|k| bits >> k & 1 == 1).collect() };
        for a in 0..64 {
            for b in 0..64 {
                let (la, lb) = (list(a), list(b));
                for skip in 0..7 {
                    let want: Vec<usize> = list(a | b).into_iter().filter(|&k| k != skip).collect();
                    let via = Via::new([&la, &lb], skip);
                    assert_eq!(via.iter().collect::<Vec<_>>(), want, "{la:?} {lb:?} {skip}");
                    assert_eq!(via.len(), want.len(), "{la:?} {lb:?} {skip}");
                    // The union is asked of only when both lists hold some, and then
                    // it counts both whole: a count kept from another skip serves.
                    let kept = via.len_by(|key, count| {
                        assert!(!la.is_empty() && !lb.is_empty());
                        assert_eq!(key, via.key());
                        let all = list(a | b).len();
                        assert_eq!(count(), all);
                        all
                    });
                    assert_eq!(kept, want.len(), "{la:?} {lb:?} {skip}");
                    assert_eq!(via.is_empty(), want.is_empty(), "{la:?} {lb:?} {skip}");
                }
            }
        }
    }

    fn learn(scenario: &str, declared: &[Cidr]) -> (Correlation, Topology) {
        learn_at(scenario, &["docker0", "eth0"], declared)
    }

    fn learn_at(scenario: &str, points: &[&str], declared: &[Cidr]) -> (Correlation, Topology) {
        let dir = format!("{}/samples/{scenario}", env!("CARGO_MANIFEST_DIR"));
        let specs: Vec<InputSpec> = points
            .iter()
            .map(|p| format!("{dir}/{p}.pcap").parse().expect("input spec"))
            .collect();
        let c = correlate::run(&specs, &ReadOptions::default(), Config::default());
        let t = Topology::learn(&c, declared);
        (c, t)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn masquerade_hides_the_containers_on_the_uplink() {
        let (c, t) = learn("masquerade", &[]);
        let point = |n: &str| c.points.iter().position(|p| p.name == n).unwrap();
        let (docker0, eth0) = (point("docker0"), point("eth0"));
        assert_eq!(t.inside, vec!["172.17.0.0/24".parse::<Cidr>().unwrap()]);
        assert!(!t.declared);
        assert_eq!(
            t.hidden[&eth0],
            BTreeSet::from([ip("172.17.0.2"), ip("172.17.0.3")])
        );
        assert!(!t.hidden.contains_key(&docker0));
        assert_eq!(t.nat_addrs[&eth0], BTreeSet::from([ip("203.0.113.1")]));
        assert!(t.published.is_empty());
        // Every connection from the containers leaves through eth0.
        let routes = &t.egress[&(docker0, t.inside[0])];
        assert_eq!(routes.keys().copied().collect::<Vec<_>>(), [eth0]);
        assert_eq!(routes[&eth0].len(), c.connections.len());
        assert!(t.is_outside_dst(ip("198.51.100.10")));
        assert!(!t.is_outside_dst(ip("203.0.113.1")), "the host itself");
        assert!(!t.is_outside_dst(ip("172.17.0.9")), "inside");
    }

    #[test]
    fn nodeport_publishes_an_endpoint_and_hides_the_backend() {
        let (c, t) = learn("nodeport", &[]);
        let point = |n: &str| c.points.iter().position(|p| p.name == n).unwrap();
        let (docker0, eth0) = (point("docker0"), point("eth0"));
        assert_eq!(t.hidden[&eth0], BTreeSet::from([ip("172.17.0.2")]));
        let key = (eth0, Proto::Tcp, ip("203.0.113.1"), 30080);
        assert_eq!(
            t.published[&key].keys().copied().collect::<Vec<_>>(),
            [docker0]
        );
        // MASQUERADE to the bridge address on the way in.
        assert_eq!(t.nat_addrs[&docker0], BTreeSet::from([ip("172.17.0.1")]));
        assert!(t.host_addrs.contains(&ip("203.0.113.1")));
    }

    #[test]
    fn a_redirected_destination_that_traffic_is_routed_to_is_not_the_hosts() {
        // A container's connections to two servers' port 7000 redirected to a proxy on
        // the host, another container's to the same servers masqueraded out by eth0:
        // the servers are not the host's, its MASQUERADE address is.
        let (c, t) = learn_at("redirect-local", &["veth-c1", "docker0", "eth0"], &[]);
        let redirected: BTreeSet<IpAddr> = c
            .connections
            .iter()
            .filter(|conn| conn.links.iter().any(|l| l.change.dport_changed))
            .map(|conn| conn.hops[0].flow.tuple.dst)
            .collect();
        assert_eq!(redirected.len(), 2, "{redirected:?}");
        for a in &redirected {
            assert!(!t.host_addrs.contains(a), "{a}");
        }
        assert!(t.host_addrs.contains(&ip("203.0.113.1")));
    }

    /// Calico's tunl0 takes its address from the node's own pod range: masquerade to it
    /// puts an address of the clients' prefix on the underlay, which NAT shows there,
    /// not hides.
    #[test]
    fn a_nat_address_inside_the_clients_prefix_is_not_hidden() {
        for s in ["overlay-ipip", "fault-overlay-masq-ipip"] {
            let (c, t) = learn(s, &[]);
            let eth0 = c.points.iter().position(|p| p.name == "eth0").unwrap();
            let nat = *t.nat_addrs[&eth0].first().unwrap();
            assert!(t.is_inside(nat), "{s}: {nat}");
            assert!(!t.hides(eth0, nat), "{s}: {nat}");
        }
    }

    #[test]
    fn declared_prefixes_replace_learned_ones() {
        let d: Cidr = "172.16.0.0/12".parse().unwrap();
        let (_, t) = learn("masquerade", &[d]);
        assert!(t.declared);
        assert_eq!(t.inside, vec![d]);
        let other: Cidr = "10.0.0.0/8".parse().unwrap();
        let (_, t) = learn("masquerade", &[other]);
        // Translated addresses outside the declared prefixes are kept as hosts.
        assert_eq!(
            t.inside,
            vec![
                other,
                "172.17.0.2/32".parse().unwrap(),
                "172.17.0.3/32".parse().unwrap()
            ]
        );
        assert_eq!(
            t.prefix_of(ip("172.17.0.2")),
            Some("172.17.0.2/32".parse().unwrap())
        );
        assert_eq!(t.prefix_of(ip("172.17.0.4")), None);
    }
}
