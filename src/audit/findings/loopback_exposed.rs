//! `loopback-exposed` (FM-10): a loopback destination reached from the network.
//!
//! A packet for 127.0.0.0/8 from an address that is not a loopback one, seen
//! at a point that is not the loopback interface, came in from a link: a neighbour
//! that routes the address to this host (through its MAC) sent it. The kernel drops
//! such a packet as a martian unless something lets it in, and two things do:
//!
//! * a DNAT rule that matches the loopback address on every interface, as Docker's
//!   rule for `-p 127.0.0.1:PORT:CPORT` (`-A DOCKER -d 127.0.0.1/32 ! -i docker0 ...
//!   -j DNAT`, moby/moby#45610) or kube-proxy's localhost NodePorts do: PREROUTING
//!   translates it before routing ever sees the loopback address, and the backend
//!   gets it;
//! * `route_localnet` on the interface it came in by (kube-proxy sets it for its
//!   localhost NodePorts; before 1.18 nothing dropped the rest, CVE-2020-8558): the
//!   host delivers it to its own services bound to 127.0.0.1.
//!
//! Decided from the wire: the packets went on from that point to a hop whose
//! destination is no longer a loopback address (DNAT), or answers left that point from
//! the loopback address (anything answered: the backend through the DNAT, or a local
//! service). Where no capture shows the backend, the connection's conntrack entry does
//! when it was DNATed; without one, answers from the loopback address may come from
//! either, and the words say so. Packets that went no further and were not answered were kept out (Docker
//! 28's raw-table drop, the rule in kube-proxy's `KUBE-FIREWALL` chain for localhost
//! traffic DNAT did not take): no finding. IPv6 has no such case (the kernel drops a packet for `::1`
//! from a link before netfilter), and the test of the address covers `::1` alike.
//! Error when anything answered; warning when the packets were
//! sent on and no answer was captured. One finding per point and destination (a scan
//! of many ports, one per port reached), with every connection.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::audit::ct::CtEntry;
use crate::audit::{Code, Ctx, Detail, Finding, Role, RuleRole, Severity};
use crate::correlate::{Connection, Hop};
use crate::model::Proto;

/// Whether point `p` is the loopback interface: named `lo`, or index 1 in a `-i any`
/// capture whose interfaces were not named (the kernel gives lo index 1 in every
/// network namespace).
fn loopback_point(x: &Ctx, p: usize) -> bool {
    let pt = &x.c.points[p];
    match pt.interface.as_deref() {
        Some(i) => i == "lo" || i == "ifindex 1",
        None => pt.name == "lo",
    }
}

/// Where `conn` came in from the network for a loopback address: (the hop where it
/// arrived, the first later hop that carried it to another address, if any).
fn arrived(x: &Ctx, conn: &Connection) -> Option<(usize, Option<usize>)> {
    let t = |h: &Hop| h.flow.tuple;
    let at = conn.hops.iter().position(|h| {
        t(h).dst.is_loopback() && !t(h).src.is_loopback() && !loopback_point(x, h.point)
    })?;
    let on = (at + 1..conn.hops.len()).find(|&k| !t(&conn.hops[k]).dst.is_loopback());
    Some((at, on))
}

pub fn detect(x: &Ctx) -> Vec<Finding> {
    let c = x.c;
    // Per (point, protocol, loopback address and port reached): (connection, hop where
    // it arrived, hop past the DNAT).
    type Member = (usize, usize, Option<usize>);
    let mut groups: BTreeMap<(usize, Proto, IpAddr, u16), Vec<Member>> = BTreeMap::new();
    for (ci, conn) in c.connections.iter().enumerate() {
        // ICMP errors follow the connection they quote, in its reply direction.
        if conn.icmp_error().is_some() {
            continue;
        }
        let Some((at, on)) = arrived(x, conn) else {
            continue;
        };
        let h = &conn.hops[at];
        if on.is_none() && h.flow.packets[1] == 0 {
            continue;
        }
        let t = h.flow.tuple;
        groups
            .entry((h.point, t.proto, t.dst, t.dport))
            .or_default()
            .push((ci, at, on));
    }
    let mut out = Vec::new();
    for members in groups.into_values() {
        let (ci, at, on) = members[0];
        let conn = &c.connections[ci];
        let h = &conn.hops[at];
        let entry = x.entry_of(ci);
        // Where DNAT sent it: the next hop, or, past the captures, the entry's
        // translation.
        let backend = on.map(|k| conn.hops[k].flow.tuple).or_else(|| {
            entry
                .filter(|e| e.change().dst_addr_changed)
                .map(CtEntry::post)
        });
        let hops = |k: usize, a: usize| &c.connections[k].hops[a];
        // Answers that left the arrival point from the loopback address, and answers
        // anywhere on the connections (the backend's, which may not have left).
        let answers: u64 = members
            .iter()
            .map(|&(k, a, _)| hops(k, a).flow.packets[1])
            .sum();
        let answered = members.iter().any(|&(k, _, _)| {
            c.connections[k]
                .hops
                .iter()
                .any(|hop| hop.flow.packets[1] > 0)
        });
        let mut clients: Vec<IpAddr> = members
            .iter()
            .map(|&(k, a, _)| hops(k, a).flow.tuple.src)
            .collect();
        clients.sort();
        clients.dedup();
        let severity = if answered {
            Severity::Error
        } else {
            Severity::Warning
        };
        let mut f = Finding::new(
            Code::LoopbackExposed,
            severity,
            Detail::LoopbackExposed {
                arrived: h.flow.tuple,
                backend,
                clients,
                answers,
                answered,
            },
        );
        f.tuples = vec![x.seen(h, Role::Seen)];
        f.points = vec![x.name(h.point).to_string()];
        f.evidence.push(x.hop(h));
        if let Some(k) = on {
            let to = &conn.hops[k];
            f.tuples.push(x.seen(to, Role::Translated));
            f.points.push(x.name(to.point).to_string());
            f.evidence.push(x.translation(ci, h, to));
        }
        f.evidence
            .extend(entry.map(|e| crate::audit::Evidence::Entry(e.facts())));
        if let Some(n) = x
            .attribution(ci)
            .and_then(|a| a.outcome())
            .and_then(|o| o.dnat.as_ref())
        {
            f.evidence.extend(x.rule(&n.rule, RuleRole::Translated));
        }
        super::of_connections(x, &mut f, members.iter().map(|&(k, _, _)| k).collect());
        f.packets = members
            .iter()
            .map(|&(k, a, _)| hops(k, a).flow.packets[0])
            .sum();
        out.push(f);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::findings::testing::*;

    const POINTS: [&str; 3] = ["veth-c1", "docker0", "eth0"];

    fn found(scenario: &str) -> Vec<Finding> {
        run(&wire_at(scenario, &POINTS), &[], Code::LoopbackExposed)
    }

    /// A neighbour reaching 127.0.0.1:8080 through Docker's DNAT for
    /// `-p 127.0.0.1:8080:80` (TCP, the container answers), and the host's own UDP and
    /// TCP services on 127.0.0.1 through route_localnet (no NAT at all): each port
    /// reached is one error, with the address it was sent on to, if any.
    #[test]
    fn loopback_destinations_reached_from_the_network() {
        for (s, expect) in [
            (
                "fault-loopback-published",
                vec![(Proto::Tcp, 8080, Some("172.17.0.2:80"))],
            ),
            (
                "fault-localnet-service",
                vec![(Proto::Udp, 53, None), (Proto::Tcp, 8000, None)],
            ),
        ] {
            let fs = found(s);
            assert_eq!(fs.len(), expect.len(), "{s}: {fs:#?}");
            for (proto, port, to) in expect {
                let f = (fs.iter())
                    .find(|f| matches!(&f.detail, Detail::LoopbackExposed { arrived, .. } if arrived.proto == proto && arrived.dport == port))
                    .unwrap_or_else(|| panic!("{s}: no finding for {proto:?} {port}: {fs:#?}"));
                assert_eq!(f.severity, Severity::Error, "{s}: {f:#?}");
                assert_eq!(f.points[0], "eth0", "{s}");
                let Detail::LoopbackExposed {
                    arrived,
                    backend,
                    clients,
                    answers,
                    answered,
                } = &f.detail
                else {
                    unreachable!()
                };
                assert_eq!(arrived.dst.to_string(), "127.0.0.1", "{s}");
                assert_eq!(clients.len(), 1, "{s}");
                assert!(!clients[0].is_loopback(), "{s}");
                assert!(*answered && *answers > 0, "{s}: {f:#?}");
                assert_eq!(
                    backend.map(|b| format!("{}:{}", b.dst, b.dport)).as_deref(),
                    to,
                    "{s}"
                );
                assert!(f.packets > 0, "{s}");
            }
        }
    }

    /// With the uplink alone, the backend past Docker's DNAT is the conntrack entry's
    /// translation; with no entry either, nothing names one (the answers from the
    /// loopback address are still the finding).
    #[test]
    fn the_backend_from_the_entry_when_no_capture_shows_it() {
        let s = "fault-loopback-published";
        let c = wire_at(s, &["eth0"]);
        for (files, to) in [
            (&["conntrack.txt"][..], Some("172.17.0.2")),
            (&[][..], None),
        ] {
            let fs = run_with(&c, s, files, Code::LoopbackExposed);
            assert_eq!(fs.len(), 1, "{files:?}: {fs:#?}");
            let Detail::LoopbackExposed {
                backend, answered, ..
            } = &fs[0].detail
            else {
                unreachable!()
            };
            assert!(*answered, "{files:?}");
            assert_eq!(
                backend.map(|b| b.dst.to_string()).as_deref(),
                to,
                "{files:?}"
            );
            assert_eq!(fs[0].severity, Severity::Error);
        }
    }

    /// Loopback traffic of the host itself (on `lo`, from a loopback address) and every
    /// other recording: nothing.
    #[test]
    fn nothing_without_a_loopback_destination_from_the_network() {
        for s in [
            "userland-proxy",
            "published-port",
            "local-published",
            "masquerade",
        ] {
            assert!(found(s).is_empty(), "{s}");
        }
        let with_lo = run(
            &wire_at("userland-proxy", &["lo", "docker0", "eth0"]),
            &[],
            Code::LoopbackExposed,
        );
        assert!(with_lo.is_empty(), "{with_lo:#?}");
    }
}
