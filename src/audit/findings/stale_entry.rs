//! `stale-entry` (FM-12): a flow that keeps being DNATed to a backend the host no
//! longer sends new flows to. NAT is decided on a flow's first packet; later packets
//! follow its conntrack entry, and every packet refreshes the entry, so a UDP sender
//! that never pauses stays on the old backend after an endpoint or rule change, into a
//! black hole or a closed port.
//!
//! A DNATed connection is stale when a newer connection to the same service (same
//! protocol, address and port as it arrived) went to another backend while this one
//! was still sending, and either its own backend answered it with ICMP errors (port
//! or host unreachable) or the rule set given (`--rules`) sends the newer one where it
//! went and this one elsewhere. Load balancing alone (several backends, all
//! answering) is not stale, nor is a rule set that matches neither connection (that
//! is `rule-contradiction`). Error: the flow is black-holed or on a removed backend.

use std::collections::BTreeMap;

use foldhash::{HashMap, HashMapExt};

use crate::audit::{Code, Ctx, Detail, Finding, Role, RuleRole, Severity};
use crate::correlate::{Connection, Hop};
use crate::model::{NatKind, Tuple};

/// Why a connection is stale, as found.
pub struct Stale {
    /// The hop before the DNAT and the hop with the translated tuple.
    pub before: usize,
    pub after: usize,
    /// The backend the rules now choose, when rules were given.
    pub by_rules: Option<Tuple>,
    /// A newer connection to the same service sent elsewhere, and the ICMP errors its
    /// own backend answered with: (error connections, error packets).
    pub newer: Option<usize>,
    pub errors: (Vec<usize>, u64),
}

/// The DNAT link of a connection: (hop before, hop after).
fn dnat_link(conn: &Connection) -> Option<(usize, usize)> {
    if conn.icmp_error().is_some() {
        return None;
    }
    let l = conn
        .links
        .iter()
        .find(|l| matches!(l.change.kind, NatKind::Dnat | NatKind::SnatDnat))?;
    Some((l.from, l.to))
}

/// A backend: the address and port connections were translated to.
type Backend = (std::net::IpAddr, u16);

/// A service's connections by backend, each backend's as (first packet, connection).
type Started = BTreeMap<Backend, Vec<(i64, usize)>>;

fn backend(t: &Tuple) -> Backend {
    (t.dst, t.dport)
}

/// Every stale connection, by index, ascending.
pub fn stale(x: &Ctx) -> Vec<(usize, Stale)> {
    let c = x.c;
    let first: Vec<i64> = c.connections.iter().map(Connection::first_ns).collect();
    // Connections by the service they addressed, (point, proto, dst, dport), then by
    // the backend they went to, each backend's by first packet: the newer connection
    // sent elsewhere is a search in each other backend's, not a pass over every
    // connection to the service (a busy service has thousands).
    let mut by_service: HashMap<(usize, Tuple), Started> = HashMap::new();
    let mut links = Vec::with_capacity(c.connections.len());
    for (ci, conn) in c.connections.iter().enumerate() {
        let link = dnat_link(conn);
        if let Some((b, a)) = link {
            let t = conn.hops[b].flow.tuple;
            let key = Tuple {
                src: t.dst,
                sport: 0,
                ..t
            };
            by_service
                .entry((conn.hops[b].point, key))
                .or_default()
                .entry(backend(&conn.hops[a].flow.tuple))
                .or_default()
                .push((first[ci], ci));
        }
        links.push(link);
    }
    for backends in by_service.values_mut() {
        backends.values_mut().for_each(|v| v.sort_unstable());
    }
    let mut out = Vec::new();
    for (ci, conn) in c.connections.iter().enumerate() {
        let Some((before, after)) = links[ci] else {
            continue;
        };
        let (up, down) = (&conn.hops[before], &conn.hops[after]);
        // The errors its backend answered with, at the points after the DNAT.
        let quoting = |h: &Hop| {
            let t = h.flow.tuple;
            x.errors_quoting(h.point, &t)
                .iter()
                .filter(move |q| q.error.quoted == Some(t))
                .map(|q| q.conn)
        };
        let mut errs: Vec<usize> = conn.hops[after..].iter().flat_map(quoting).collect();
        errs.sort_unstable();
        errs.dedup();
        let err_packets: u64 = errs
            .iter()
            .map(|&k| {
                c.connections[k]
                    .hops
                    .iter()
                    .map(|h| h.flow.packets[0])
                    .max()
                    .unwrap_or(0)
            })
            .sum();
        let key = Tuple {
            src: up.flow.tuple.dst,
            sport: 0,
            ..up.flow.tuple
        };
        // The first connection to the service that started while this one was sending
        // and went to another backend (of two that started at once, the first).
        let (t0, t1) = (first[ci], conn.last_ns());
        let newer = by_service
            .get(&(up.point, key))
            .into_iter()
            .flatten()
            .filter(|(b, _)| **b != backend(&down.flow.tuple))
            .filter_map(|(_, started)| {
                started
                    .get(started.partition_point(|&(f, _)| f <= t0))
                    .filter(|&&(f, _)| f < t1)
            })
            .min()
            .map(|&(_, k)| k);
        // The rules given tell the same only if they were already in force for the
        // newer connection (a dump from elsewhere or another time contradicts both:
        // `rule-contradiction`).
        let newer_agrees = newer
            .and_then(|k| x.attribution(k))
            .is_some_and(|a| a.chosen.is_some());
        let by_rules = x.attribution(ci).filter(|_| newer_agrees).and_then(|a| {
            let best = a.walk.outcomes.first()?;
            let now = best.dnat.as_ref()?.after;
            (a.chosen.is_none() && backend(&now) != backend(&down.flow.tuple)).then_some(now)
        });
        let by_wire = newer.is_some() && !errs.is_empty();
        if by_rules.is_none() && !by_wire {
            continue;
        }
        out.push((
            ci,
            Stale {
                before,
                after,
                by_rules,
                newer,
                errors: (errs, err_packets),
            },
        ));
    }
    out
}

/// The stale connections' indices, ascending.
pub fn stale_conns(x: &Ctx) -> Vec<usize> {
    stale(x).into_iter().map(|(k, _)| k).collect()
}

pub fn detect(x: &Ctx) -> Vec<Finding> {
    let c = x.c;
    let mut out = Vec::new();
    for (ci, s) in stale(x) {
        let conn = &c.connections[ci];
        let (up, down) = (&conn.hops[s.before], &conn.hops[s.after]);
        let newer = s.newer.and_then(|k| {
            let other = &c.connections[k];
            let (_, oa) = dnat_link(other)?;
            Some((k, other.hops[oa].flow.tuple))
        });
        let mut f = Finding::new(
            Code::StaleEntry,
            Severity::Error,
            Detail::StaleEntry {
                service: up.flow.tuple,
                stale: down.flow.tuple,
                now_by_rules: s.by_rules,
                now_on_wire: newer.map(|(_, t)| t),
                newer: newer.map(|(k, _)| x.id(k)),
                error_packets: s.errors.1,
            },
        );
        f.tuples = vec![x.seen(up, Role::Original), x.seen(down, Role::Translated)];
        f.points = vec![x.name(up.point).to_string(), x.name(down.point).to_string()];
        f.evidence.push(x.hop(up));
        f.evidence.push(x.hop(down));
        if let Some((k, _)) = newer {
            let other = &c.connections[k];
            if let Some((ob, oa)) = dnat_link(other) {
                let (b, a) = (&other.hops[ob], &other.hops[oa]);
                f.evidence.push(x.translation(k, b, a));
            }
        }
        for &e in &s.errors.0 {
            if let Some(h) = c.connections[e].hops.first() {
                f.evidence.push(x.hop(h));
            }
        }
        if let Some(a) = x.attribution(ci) {
            if let Some(n) = a.walk.outcomes.first().and_then(|o| o.dnat.as_ref()) {
                f.evidence.extend(x.rule(&n.rule, RuleRole::Disagrees));
            }
        }
        f.evidence
            .extend(x.destroyed_before(&up.flow.tuple, i64::MAX));
        f.packets = down.flow.packets[0] + down.flow.packets[1];
        f.first_ns = Some(conn.first_ns());
        f.last_ns = Some(conn.last_ns());
        f.conns = std::iter::once(ci)
            .chain(newer.map(|(k, _)| k))
            .chain(s.errors.0.iter().copied())
            .collect();
        out.push(f);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::findings::testing::*;

    #[test]
    fn a_flow_left_on_its_old_backend_is_stale_from_the_wire_alone() {
        // A published port outside-in, and a service address inside-out.
        for s in ["stale-udp", "stale-udp-vip"] {
            // The container's veth shows the service address, which the bridge (with
            // bridge netfilter) already shows DNATed.
            let got = run(
                &wire_at(s, &["docker0", "eth0", "veth-c1"]),
                &[],
                Code::StaleEntry,
            );
            assert_eq!(got.len(), 1, "{s}: {got:?}");
            let Detail::StaleEntry {
                stale,
                now_on_wire,
                error_packets,
                ..
            } = &got[0].detail
            else {
                panic!()
            };
            let now = now_on_wire.expect("the newer connection's backend");
            assert_ne!((stale.dst, stale.dport), (now.dst, now.dport), "{s}");
            assert!(*error_packets > 0, "{s}");
        }
    }

    #[test]
    fn load_balancing_and_clean_samples_are_not_stale() {
        for s in ["nodeport", "published-port", "kube-nft", "masquerade"] {
            assert!(run(&wire(s), &[], Code::StaleEntry).is_empty(), "{s}");
        }
    }
}
