//! `lost` (FM-09, FM-10, FM-13): packets seen at one point and never at the next.
//!
//! * On a link: packets one hop carried and the next did not, while the next point
//!   was capturing, that no earlier rule explained. An error when nothing of the
//!   connection crossed in that direction (blocked), else a warning. Correlation
//!   already counts as crossed the TCP segments whose bytes crossed in segments cut
//!   differently, and pure ACKs a later ACK superseded: only bytes, SYNs, FINs, RSTs
//!   and acknowledgements that never reached the next point are lost.
//! * A path that stops short: the last point saw initiator packets and no reply, and
//!   other connections show where such traffic goes next (the same inside prefix to
//!   an outside destination, or the same DNAT'ed endpoint), while that point was
//!   capturing. The usual blocked connection: a SYN dropped in FORWARD never reaches
//!   the uplink, or a full table. A REJECT's ICMP error quoting the packet is named.
//!
//! Packets and paths an earlier rule explained are left out: what left as another
//! connection or drew the host's RST (`leak`), the first packets a connection sent
//! again and got through (`insert-race`), and connections that found every NAT port
//! to their destination taken (`snat-port-exhaustion`).

use foldhash::{HashMap, HashMapExt};

use super::leak::gap_facts;
use super::Detected;
use crate::audit::ct::CtEntry;
use crate::audit::topology::Via;
use crate::audit::PATH_FROM_SHOWN;
use crate::audit::{
    Code, Ctx, Detail, Direction, Evidence, Explained, Finding, PathReason, Role, Severity,
};
use crate::correlate::{Gap, Hop, Resegmented};
use crate::model::{tcp_flags, Proto};

pub fn on_links(x: &Ctx, explained: &Explained) -> Detected {
    let mut out = Vec::new();
    for (ci, conn) in x.c.connections.iter().enumerate() {
        for (li, l) in conn.links.iter().enumerate() {
            let (up, down) = (&conn.hops[l.from], &conn.hops[l.to]);
            for dir in [Direction::Fwd, Direction::Rev] {
                let side = match dir {
                    Direction::Fwd => LinkSide {
                        gap: &l.unmatched.lost_fwd,
                        from: up,
                        to: down,
                        matched: l.evidence.matched_fwd,
                        reseg: l.resegmented.fwd,
                    },
                    Direction::Rev => LinkSide {
                        gap: &l.unmatched.lost_rev,
                        from: down,
                        to: up,
                        matched: l.evidence.matched_rev,
                        reseg: l.resegmented.rev,
                    },
                };
                let gone = explained.get(ci, li, dir);
                out.extend(link_finding(x, ci, dir, &side, gone));
            }
        }
    }
    out.into()
}

/// One direction of a link: the packets the sending hop (`from`) saw and the
/// receiving hop (`to`) did not, and what did cross.
struct LinkSide<'a> {
    gap: &'a Gap,
    from: &'a Hop,
    to: &'a Hop,
    /// Packets matched one for one.
    matched: u64,
    reseg: Resegmented,
}

/// The finding for one direction of a link of connection `ci`, of which `gone`
/// packets an earlier rule explained; none when nothing is left or the receiving
/// point was not capturing.
fn link_finding(x: &Ctx, ci: usize, dir: Direction, s: &LinkSide, gone: u64) -> Option<Finding> {
    let (gap, from, to) = (s.gap, s.from, s.to);
    // Matched one for one, or whose every byte crossed in other segments.
    let crossed = s.matched + s.reseg.sent;
    let n = gap.packets.saturating_sub(gone);
    let first = gap.first_ns?;
    if n == 0 || !x.capturing(to.point, first) {
        return None;
    }
    let (fname, tname) = (x.name(from.point), x.name(to.point));
    let blocked = crossed == 0;
    let mut f = Finding::new(
        Code::Lost,
        if blocked {
            Severity::Error
        } else {
            Severity::Warning
        },
        Detail::Lost {
            from: fname.to_string(),
            to: tname.to_string(),
            direction: dir,
            blocked,
            first_tcp_flags: gap.first_tcp_flags.map(tcp_flags::to_string),
            path_from: Vec::new(),
            path_from_total: 0,
            stopped: None,
        },
    );
    f.evidence = vec![
        x.hop(from),
        x.hop(to),
        Evidence::NeverReached {
            gap: gap_facts(gap),
            direction: dir,
            from: fname.to_string(),
            to: tname.to_string(),
        },
    ];
    if gone > 0 {
        f.evidence.push(Evidence::LeftAsAnother {
            packets: gone,
            point: tname.to_string(),
        });
    }
    if crossed > 0 {
        f.evidence.push(Evidence::OthersCrossed {
            packets: crossed,
            direction: dir,
        });
    }
    if s.reseg.sent > 0 {
        f.evidence.push(Evidence::Resegmented {
            direction: dir,
            sent: s.reseg.sent,
            received: s.reseg.received,
            bytes: s.reseg.bytes,
            from: fname.to_string(),
            to: tname.to_string(),
        });
    }
    f.conns = vec![ci];
    f.points = vec![fname.to_string(), tname.to_string()];
    // As the lost packets travelled: responder packets go the other way.
    f.tuples = vec![x.seen(from, Role::Seen), x.seen(to, Role::Next)];
    if dir == Direction::Rev {
        for t in &mut f.tuples {
            t.tuple = t.tuple.reversed();
        }
    }
    f.first_ns = gap.first_ns;
    f.last_ns = gap.last_ns;
    f.packets = n;
    Some(f)
}

/// Where connection `ci`'s path stops short: its last point saw initiator packets and
/// neither a reply nor an ICMP error, and other connections show where such traffic
/// goes next, a point that was capturing when the first of them passed. The last hop,
/// that next point, the connections that went there, and why. Not for a connection
/// whose opening was not captured: which side sent first is unknown.
pub(super) fn stopped_at<'a>(
    x: &Ctx<'a>,
    ci: usize,
) -> Option<(&'a Hop, usize, Via<'a>, PathReason)> {
    if x.unseen_opening(ci) {
        return None;
    }
    let last = x.c.connections[ci].hops.last()?;
    let f = &last.flow;
    if f.packets[0] == 0 || f.packets[1] != 0 || f.icmp_error.is_some() {
        return None;
    }
    let (b, via, reason) = x.expected_next(ci)?;
    x.capturing(b, last.first_ns)
        .then_some((last, b, via, reason))
}

pub fn stopped_short(x: &Ctx, explained: &Explained) -> Detected {
    let c = x.c;
    let mut out = Vec::new();
    for ci in 0..c.connections.len() {
        if explained.stopped(ci) {
            // An earlier rule reported why (`snat-port-exhaustion`, `conntrack-table-full`).
            continue;
        }
        let Some((last, b, via, reason)) = stopped_at(x, ci) else {
            continue;
        };
        let f = &last.flow;
        let (t, a) = (f.tuple, last.point);
        let (aname, bname) = (x.name(a), x.name(b));
        let (b0, b1) = x.span(b).unwrap_or_default();
        let whole = last.last_ns <= b1;
        let syn_only = syn_only(f);
        let shown: Vec<String> = via.iter().take(PATH_FROM_SHOWN).map(|k| x.id(k)).collect();
        let total = x.via_len(&via);
        let mut finding = Finding::new(
            Code::Lost,
            Severity::Error,
            Detail::Lost {
                from: aname.to_string(),
                to: bname.to_string(),
                direction: Direction::Fwd,
                blocked: true,
                first_tcp_flags: syn_only.then(|| "S".to_string()),
                path_from: shown.clone(),
                path_from_total: total,
                stopped: Some((f.packets[0], reason)),
            },
        );
        finding.evidence = vec![
            x.hop(last),
            Evidence::NoneSeen {
                point: bname.to_string(),
                from_ns: b0,
                to_ns: b1,
                whole,
            },
            Evidence::OthersWent {
                conns: shown,
                total,
                reason,
                from: aname.to_string(),
                to: bname.to_string(),
            },
        ];
        finding.evidence.extend(x.stopped_by(ci));
        finding.evidence.extend(x.stats_evidence());
        finding.conns = vec![ci];
        // A REJECT answers with an ICMP error quoting the blocked packet.
        for q in x.errors_quoting(a, &t) {
            let e = &c.connections[q.conn];
            finding.conns.push(q.conn);
            finding.evidence.push(Evidence::Rejected {
                point: aname.to_string(),
                proto: e.proto,
                icmp_type: q.error.icmp_type,
                code: q.error.code,
                conn: e.id.clone(),
            });
        }
        finding.points = vec![aname.to_string(), bname.to_string()];
        finding.tuples = vec![x.seen(last, Role::LastSeen)];
        finding.first_ns = Some(last.first_ns);
        finding.last_ns = Some(last.last_ns);
        finding.packets = if whole { f.packets[0] } else { 1 };
        out.push(finding);
    }
    out.into()
}

/// Whether a TCP flow shows only its opening SYN (and retransmissions of it).
pub(super) fn syn_only(f: &crate::flows::Flow) -> bool {
    f.tuple.proto == Proto::Tcp
        && f.tcp.syn
        && !f.tcp.syn_ack
        && f.tcp.fin == [false, false]
        && f.tcp.rst == [false, false]
}

/// A connection blocked where it was last seen, one hop `h`: `lost`, blocked, with the
/// initiator packets that point saw and why nothing is known beyond it.
fn blocked_at(x: &Ctx, ci: usize, h: &Hop, severity: Severity, reason: PathReason) -> Finding {
    let f = &h.flow;
    let syn_only = syn_only(f);
    let name = x.name(h.point);
    let mut finding = Finding::new(
        Code::Lost,
        severity,
        Detail::Lost {
            from: name.to_string(),
            to: String::new(),
            direction: Direction::Fwd,
            blocked: true,
            first_tcp_flags: syn_only.then(|| "S".to_string()),
            path_from: Vec::new(),
            path_from_total: 0,
            stopped: Some((f.packets[0], reason)),
        },
    );
    finding.evidence = vec![x.hop(h)];
    finding.conns = vec![ci];
    finding.points = vec![name.to_string()];
    finding.tuples = vec![x.seen(h, Role::LastSeen)];
    finding.first_ns = Some(h.first_ns);
    finding.last_ns = Some(h.last_ns);
    finding.packets = f.packets[0];
    finding
}

/// Connections seen only where they reached the NAT host, unanswered, that no other
/// connection shows the way for, but whose first packet the host's rules drop or
/// reject there (the confirmed way through the rules): blocked at the host.
pub fn dropped_by_rules(x: &Ctx, explained: &Explained) -> Detected {
    let mut out = Vec::new();
    for a in &x.attributions {
        if explained.stopped(a.conn) {
            continue;
        }
        let conn = &x.c.connections[a.conn];
        let ([h], None) = (conn.hops.as_slice(), a.wire) else {
            continue;
        };
        if x.expected_next(a.conn).is_some() {
            // `stopped_short` reports it, with the point it never reached.
            continue;
        }
        let Some(rule) = x.stopped_by(a.conn) else {
            continue;
        };
        let mut finding = blocked_at(x, a.conn, h, Severity::Error, PathReason::HostRules);
        finding.evidence.push(rule);
        finding.evidence.extend(x.stats_evidence());
        out.push(finding);
    }
    out.into()
}

/// Every entry of the conntrack inputs by its ORIGINAL tuple: the first in input
/// order where several share one.
type ByOrig<'a> = HashMap<crate::model::Tuple, &'a CtEntry>;

fn by_orig<'a>(x: &Ctx<'a>) -> ByOrig<'a> {
    let mut m = ByOrig::new();
    for e in x.snapshots.iter().flat_map(|s| &s.entries) {
        m.entry(e.orig).or_insert(e);
    }
    m
}

/// Where conntrack or the host's rules say an unanswered connection to the host was
/// to go: the entry whose ORIGINAL is its tuple, or the DNAT of the rules' most
/// likely way; with the evidence for it.
fn meant_for(
    x: &Ctx,
    entries: &ByOrig,
    ci: usize,
    t: &crate::model::Tuple,
) -> (Option<crate::model::Tuple>, Vec<Evidence>) {
    if let Some(e) = entries.get(t) {
        let post = e.post();
        return (
            (post != *t).then_some(post),
            vec![Evidence::Entry(e.facts())],
        );
    }
    let dnat = x
        .attribution(ci)
        .and_then(|a| a.walk.outcomes.first())
        .and_then(|o| o.dnat.as_ref());
    match dnat {
        Some(n) => (
            Some(n.after),
            x.rule(&n.rule, crate::audit::RuleRole::Translated)
                .into_iter()
                .collect(),
        ),
        None => (None, Vec::new()),
    }
}

/// Connection `ci` when it is new traffic from outside to an address of the host,
/// seen at one point only and unanswered there (and seen opening), that neither other
/// connections (`stopped_at`) nor the rules say where it was to go: its hop and the
/// other points that were capturing when it arrived (at least one).
pub(super) fn unanswered_at_host<'a>(x: &Ctx<'a>, ci: usize) -> Option<(&'a Hop, Vec<usize>)> {
    let [h] = x.c.connections[ci].hops.as_slice() else {
        return None;
    };
    if x.unseen_opening(ci) {
        return None;
    }
    let f = &h.flow;
    let t = f.tuple;
    let candidate = f.packets[0] > 0
        && f.packets[1] == 0
        && f.icmp_error.is_none()
        && (syn_only(f) || matches!(t.proto, Proto::Udp | Proto::Sctp))
        && x.topo.host_addrs.contains(&t.dst)
        && !x.topo.is_inside(t.src);
    if !candidate || x.expected_next(ci).is_some() || x.stopped_by(ci).is_some() {
        return None;
    }
    let others: Vec<usize> = (0..x.c.points.len())
        .filter(|&p| p != h.point && x.capturing(p, h.first_ns))
        .collect();
    (!others.is_empty()).then_some((h, others))
}

/// Connections from outside to an address of the host, seen at one point only, that
/// nothing answered while other points were capturing, and that no other rule
/// explains (`stopped_short` knows where such traffic goes; `dropped_by_rules` knows
/// the rule that drops it): blocked on the way in, whichever way it was meant to go.
/// An error when conntrack or the rules say it was DNATed on, else a warning (a host
/// may drop what it does not serve).
pub fn unanswered_to_host(x: &Ctx, explained: &Explained) -> Detected {
    let mut out = Vec::new();
    // Built at the first connection that needs it.
    let mut entries = None;
    for ci in 0..x.c.connections.len() {
        if explained.stopped(ci) {
            continue;
        }
        let Some((h, others)) = unanswered_at_host(x, ci) else {
            continue;
        };
        let t = h.flow.tuple;
        let entries = entries.get_or_insert_with(|| by_orig(x));
        let (meant, evidence) = meant_for(x, entries, ci, &t);
        let severity = if meant.is_some() {
            Severity::Error
        } else {
            Severity::Warning
        };
        let mut finding = blocked_at(x, ci, h, severity, PathReason::Unanswered(meant));
        for p in others {
            if let Some((a, b)) = x.span(p) {
                finding.evidence.push(Evidence::NoneSeen {
                    point: x.name(p).to_string(),
                    from_ns: a,
                    to_ns: b,
                    whole: h.last_ns <= b,
                });
            }
        }
        finding.evidence.extend(evidence);
        finding.evidence.extend(x.stats_evidence());
        out.push(finding);
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::super::testing::{run, wire};
    use crate::audit::{Code, Detail, Severity};

    #[test]
    fn a_forward_drop_stops_the_path_short() {
        let c = wire("fault-forward-drop");
        let f = run(&c, &[], Code::Lost);
        assert!(!f.is_empty());
        assert!(f.iter().all(|f| f.severity == Severity::Error));
        assert!(f.iter().any(|f| matches!(
            &f.detail,
            Detail::Lost {
                stopped: Some(_),
                blocked: true,
                ..
            }
        )));
    }

    #[test]
    fn only_bytes_that_never_crossed_are_lost_when_cuts_differ() {
        use crate::audit::{Evidence, Finding};
        use crate::correlate::testkit::{data, point, Hdr, MS, US};
        use crate::correlate::{correlate, Config};
        use crate::model::tcp_flags::{ACK, SYN};
        use crate::model::Packet;
        let (client, server, nated) = ("172.17.0.2:40000", "198.51.100.7:443", "203.0.113.1:40000");
        let h = |flags, ack, tsval| Hdr {
            ack,
            tsval: Some(tsval),
            flags,
        };
        let handshake = |c: &str, t: i64| -> Vec<Packet> {
            vec![
                data(t, c, server, 999, 0, h(SYN, 0, 1)),
                data(t + 100 * US, server, c, 4999, 0, h(SYN | ACK, 1000, 2)),
                data(t + 200 * US, c, server, 1000, 0, h(ACK, 5000, 3)),
            ]
        };
        // Inside: two super-packets of 4000 and 2000 bytes.
        let mut inside = handshake(client, 0);
        inside.push(data(MS, client, server, 1000, 4000, h(ACK, 5000, 4)));
        inside.push(data(2 * MS, client, server, 5000, 2000, h(ACK, 5000, 5)));
        // Outside, after one routed hop: the first cut in four, whose third (bytes
        // 3000..4000) never left (`hole`), the second in two.
        let lost = |hole: bool| -> Vec<Finding> {
            let mut outside = handshake(nated, 30 * US);
            for i in (0..4).filter(|&i| !hole || i != 2) {
                let seq = 1000 + i * 1000;
                let t = MS + 30 * US + i64::from(i) * US;
                outside.push(data(t, nated, server, seq, 1000, h(ACK, 5000, 4)));
            }
            for i in 0..2 {
                let t = 2 * MS + 30 * US + i64::from(i) * US;
                let seq = 5000 + i * 1000;
                outside.push(data(t, nated, server, seq, 1000, h(ACK, 5000, 5)));
            }
            for p in outside.iter_mut().filter(|p| p.tuple.dport == 443) {
                p.ttl -= 1;
            }
            let points = vec![point("docker0", 0, &inside), point("eth0", 1, &outside)];
            let c = correlate(points, Vec::new(), Config::default());
            assert_eq!(c.connections.len(), 1);
            run(&c, &[], Code::Lost)
        };
        assert!(lost(false).is_empty());
        let f = lost(true);
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!(f[0].severity, Severity::Warning);
        assert_eq!(f[0].packets, 1);
        assert_eq!(f[0].first_ns, Some(MS));
        assert!(f[0].evidence.iter().any(|e| matches!(
            e,
            Evidence::Resegmented {
                sent: 1,
                received: 2,
                bytes: 2000,
                ..
            }
        )));
    }

    #[test]
    fn complete_recordings_lose_nothing() {
        for s in [
            "masquerade",
            "masquerade6",
            "snat-random-fully",
            "nodeport",
            "bulk-offload",
            "bulk-no-offload",
        ] {
            assert!(run(&wire(s), &[], Code::Lost).is_empty(), "{s}");
        }
    }
}
