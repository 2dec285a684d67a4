//! `lost` (FM-09, FM-10, FM-13): packets seen at one point and never at the next.
//!
//! * On a link: packets one hop carried and the next did not, while the next point
//!   was capturing, that no earlier rule explained. An error when nothing of the
//!   connection crossed in that direction (blocked), else a warning.
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

use super::leak::gap_facts;
use super::Detected;
use crate::audit::{
    Code, Ctx, Detail, Direction, Evidence, Explained, Finding, PathReason, Role, Severity,
};
use crate::correlate::Hop;
use crate::model::{tcp_flags, Proto};

pub fn on_links(x: &Ctx, explained: &Explained) -> Detected {
    let mut out = Vec::new();
    for (ci, conn) in x.c.connections.iter().enumerate() {
        for (li, l) in conn.links.iter().enumerate() {
            let (up, down) = (&conn.hops[l.from], &conn.hops[l.to]);
            for dir in [Direction::Fwd, Direction::Rev] {
                let (gap, from, to, matched) = match dir {
                    Direction::Fwd => (&l.unmatched.lost_fwd, up, down, l.evidence.matched_fwd),
                    Direction::Rev => (&l.unmatched.lost_rev, down, up, l.evidence.matched_rev),
                };
                let gone = explained.get(ci, li, dir);
                let n = gap.packets.saturating_sub(gone);
                let Some(first) = gap.first_ns else { continue };
                if n == 0 || !x.capturing(to.point, first) {
                    continue;
                }
                let (fname, tname) = (x.name(from.point), x.name(to.point));
                let blocked = matched == 0;
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
                if matched > 0 {
                    f.evidence.push(Evidence::OthersCrossed {
                        packets: matched,
                        direction: dir,
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
                out.push(f);
            }
        }
    }
    out.into()
}

pub fn stopped_short(x: &Ctx, explained: &Explained) -> Detected {
    let c = x.c;
    let mut out = Vec::new();
    for (ci, conn) in c.connections.iter().enumerate() {
        let Some(last) = conn.hops.last() else {
            continue;
        };
        if explained.stopped(ci) {
            // An earlier rule reported why (`snat-port-exhaustion`).
            continue;
        }
        let f = &last.flow;
        if f.packets[0] == 0 || f.packets[1] != 0 || f.icmp_error.is_some() {
            continue;
        }
        let Some((b, via, reason)) = x.expected_next(ci) else {
            continue;
        };
        if !x.capturing(b, last.first_ns) {
            continue;
        }
        let (t, a) = (f.tuple, last.point);
        let (aname, bname) = (x.name(a), x.name(b));
        let (b0, b1) = x.span(b).unwrap_or_default();
        let whole = last.last_ns <= b1;
        let syn_only = syn_only(f);
        let mut finding = Finding::new(
            Code::Lost,
            Severity::Error,
            Detail::Lost {
                from: aname.to_string(),
                to: bname.to_string(),
                direction: Direction::Fwd,
                blocked: true,
                first_tcp_flags: syn_only.then(|| "S".to_string()),
                path_from: x.ids(&via),
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
                conns: x.ids(&via),
                reason,
                from: aname.to_string(),
                to: bname.to_string(),
            },
        ];
        finding.evidence.extend(x.stopped_by(ci));
        finding.evidence.extend(x.stats_evidence());
        finding.conns = vec![ci];
        // A REJECT answers with an ICMP error quoting the blocked packet.
        for (ei, e) in c.connections.iter().enumerate() {
            for h in e.hops.iter().filter(|h| h.point == a) {
                if let Some(err) = &h.flow.icmp_error {
                    if err.quoted.is_some_and(|q| q.canonical() == t.canonical()) {
                        finding.conns.push(ei);
                        finding.evidence.push(Evidence::Rejected {
                            point: aname.to_string(),
                            proto: e.proto,
                            icmp_type: err.icmp_type,
                            code: err.code,
                            conn: e.id.clone(),
                        });
                    }
                }
            }
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

/// Where conntrack or the host's rules say an unanswered connection to the host was
/// to go: the entry whose ORIGINAL is its tuple, or the DNAT of the rules' most
/// likely way; with the evidence for it.
fn meant_for(
    x: &Ctx,
    ci: usize,
    t: &crate::model::Tuple,
) -> (Option<crate::model::Tuple>, Vec<Evidence>) {
    for snap in x.snapshots {
        if let Some(e) = snap.entries.iter().find(|e| e.orig == *t) {
            let post = e.post();
            return (
                (post != *t).then_some(post),
                vec![Evidence::Entry(e.facts())],
            );
        }
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

/// Connections from outside to an address of the host, seen at one point only, that
/// nothing answered while other points were capturing, and that no other rule
/// explains (`stopped_short` knows where such traffic goes; `dropped_by_rules` knows
/// the rule that drops it): blocked on the way in, whichever way it was meant to go.
/// An error when conntrack or the rules say it was DNATed on, else a warning (a host
/// may drop what it does not serve).
pub fn unanswered_to_host(x: &Ctx, _: &Explained) -> Detected {
    let mut out = Vec::new();
    for (ci, conn) in x.c.connections.iter().enumerate() {
        let [h] = conn.hops.as_slice() else { continue };
        let f = &h.flow;
        let t = f.tuple;
        let syn_only = syn_only(f);
        let candidate = f.packets[0] > 0
            && f.packets[1] == 0
            && f.icmp_error.is_none()
            && (syn_only || matches!(t.proto, Proto::Udp | Proto::Sctp))
            && x.topo.host_addrs.contains(&t.dst)
            && !x.topo.is_inside(t.src);
        if !candidate || x.expected_next(ci).is_some() || x.stopped_by(ci).is_some() {
            continue;
        }
        let others: Vec<usize> = (0..x.c.points.len())
            .filter(|&p| p != h.point && x.capturing(p, h.first_ns))
            .collect();
        if others.is_empty() {
            continue;
        }
        let (meant, evidence) = meant_for(x, ci, &t);
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
    fn complete_recordings_lose_nothing() {
        for s in ["masquerade", "masquerade6", "snat-random-fully", "nodeport"] {
            assert!(run(&wire(s), &[], Code::Lost).is_empty(), "{s}");
        }
    }
}
